/**
 * A small typed reader over the parsed YAML: every access names the key it reads, so a wrong type stops start-up
 * with a message like `config key "listeners[0].port": expected an integer between 1 and 65535, got "abc"`, and
 * every key never read can be reported as unknown.
 */

export class ConfigError extends Error {}

type Obj = Record<string, unknown>;

function describe(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "a list";
  if (typeof v === "object") return "a mapping";
  return `${typeof v} ${JSON.stringify(v)}`;
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000, y: 31_536_000_000 };
const SIZE_UNITS: Record<string, number> = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

export class ConfigReader {
  private readonly seen = new Set<string>();

  constructor(
    private readonly obj: Obj,
    readonly path: string,
  ) {}

  private name(key: string): string {
    return this.path ? `${this.path}.${key}` : key;
  }

  private fail(key: string, expected: string, got: unknown): never {
    throw new ConfigError(`config key "${this.name(key)}": expected ${expected}, got ${describe(got)}`);
  }

  has(key: string): boolean {
    return this.obj[key] !== undefined && this.obj[key] !== null;
  }

  raw(key: string): unknown {
    this.seen.add(key);
    return this.obj[key];
  }

  /** Marks keys as known without reading them (accepted for Synapse compatibility, no effect here). */
  accept(...keys: string[]): void {
    for (const k of keys) this.seen.add(k);
  }

  string(key: string): string | undefined;
  string(key: string, def: string): string;
  string(key: string, def?: string): string | undefined {
    const v = this.raw(key);
    if (v === undefined || v === null) return def;
    if (typeof v !== "string") this.fail(key, "a string", v);
    return v;
  }

  requireString(key: string): string {
    const v = this.string(key);
    if (v === undefined || v === "") throw new ConfigError(`config key "${this.name(key)}" is required (a string)`);
    return v;
  }

  bool(key: string, def: boolean): boolean {
    const v = this.raw(key);
    if (v === undefined || v === null) return def;
    if (typeof v !== "boolean") this.fail(key, "true or false", v);
    return v;
  }

  int(key: string, def: number, min = -Infinity, max = Infinity): number {
    const v = this.raw(key);
    if (v === undefined || v === null) return def;
    if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
      this.fail(key, `an integer${Number.isFinite(min) ? ` between ${min} and ${max}` : ""}`, v);
    }
    return v;
  }

  number(key: string, def: number): number {
    const v = this.raw(key);
    if (v === undefined || v === null) return def;
    if (typeof v !== "number" || !Number.isFinite(v)) this.fail(key, "a number", v);
    return v;
  }

  /** Synapse durations: an integer of milliseconds, or a string like "30s", "5m", "1h", "7d", "1w", "1y". */
  duration(key: string): number | undefined;
  duration(key: string, def: number): number;
  duration(key: string, def?: number): number | undefined {
    const v = this.raw(key);
    if (v === undefined || v === null) return def;
    if (typeof v === "number" && Number.isInteger(v) && v >= 0) return v;
    if (typeof v === "string") {
      const m = /^(\d+)\s*(ms|s|m|h|d|w|y)?$/.exec(v.trim());
      if (m) return Number(m[1]) * DURATION_UNITS[m[2] ?? "ms"]!;
    }
    this.fail(key, 'a duration (milliseconds, or a string like "30s", "5m", "1h", "7d")', v);
  }

  /** Synapse sizes: an integer of bytes, or a string like "50M", "10K", "1G". */
  size(key: string, def: number): number {
    const v = this.raw(key);
    if (v === undefined || v === null) return def;
    if (typeof v === "number" && Number.isInteger(v) && v >= 0) return v;
    if (typeof v === "string") {
      const m = /^(\d+)\s*([kmgt]?)b?$/i.exec(v.trim());
      if (m) return Number(m[1]) * SIZE_UNITS[m[2]!.toLowerCase()]!;
    }
    this.fail(key, 'a size (bytes, or a string like "50M")', v);
  }

  stringList(key: string, def: string[] = []): string[] {
    const v = this.raw(key);
    if (v === undefined || v === null) return def;
    if (!Array.isArray(v) || v.some((x) => typeof x !== "string")) this.fail(key, "a list of strings", v);
    return v as string[];
  }

  /** A mapping of strings to strings (e.g. a key server's verify_keys); absent → undefined. */
  stringMap(key: string): Record<string, string> | undefined {
    const v = this.raw(key);
    if (v === undefined || v === null) return undefined;
    if (typeof v !== "object" || Array.isArray(v)) this.fail(key, "a mapping of strings", v);
    for (const [k, x] of Object.entries(v as Obj)) {
      if (typeof x !== "string") throw new ConfigError(`config key "${this.name(key)}.${k}": expected a string, got ${describe(x)}`);
    }
    return v as Record<string, string>;
  }

  /** A nested mapping; absent → an empty reader (so defaults apply). */
  section(key: string): ConfigReader {
    const v = this.raw(key);
    if (v === undefined || v === null) return new ConfigReader({}, this.name(key));
    if (typeof v !== "object" || Array.isArray(v)) this.fail(key, "a mapping", v);
    return new ConfigReader(v as Obj, this.name(key));
  }

  list(key: string): ConfigReader[] | undefined {
    const v = this.raw(key);
    if (v === undefined || v === null) return undefined;
    if (!Array.isArray(v)) this.fail(key, "a list", v);
    return v.map((item, i) => {
      if (typeof item !== "object" || item === null || Array.isArray(item)) {
        throw new ConfigError(`config key "${this.name(key)}[${i}]": expected a mapping, got ${describe(item)}`);
      }
      return new ConfigReader(item as Obj, `${this.name(key)}[${i}]`);
    });
  }

  /** The keys present in this mapping. */
  keys(): string[] {
    return Object.keys(this.obj);
  }

  /** Keys present in the file that nothing read or accepted. */
  unknownKeys(): string[] {
    return Object.keys(this.obj)
      .filter((k) => !this.seen.has(k))
      .map((k) => this.name(k));
  }
}
