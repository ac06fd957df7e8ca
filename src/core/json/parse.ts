/**
 * Parsing JSON received from clients and servers. `JSON.parse` validates syntax but silently loses two things the
 * Matrix spec cares about: numbers written as floats or exponents (`1.0`, `1e10`, `-0.0`) or beyond ±(2**53-1), which
 * canonical JSON forbids in room versions 6+, and duplicate object keys, which make a signed object ambiguous.
 * `parseJson` reports both, so callers can reject per room version or per endpoint.
 */
import { randomBytes } from "node:crypto";
import { JsonNumberLiteral } from "./canonical.js";
import type { JsonValue } from "./types.js";

export interface ParsedJson {
  value: JsonValue;
  /** A number with a fraction or exponent, or outside the canonical integer range, was present. */
  hasNonCanonicalNumbers: boolean;
  /** An object with the same key twice was present. */
  hasDuplicateKeys: boolean;
}

export class JsonSyntaxError extends Error {}

const MAX_DEPTH = 512;

export function parseJson(text: string): ParsedJson {
  let value: JsonValue;
  try {
    value = JSON.parse(text) as JsonValue;
  } catch (e) {
    throw new JsonSyntaxError((e as Error).message);
  }
  const scan = scanJson(text);
  return { value, ...scan };
}

/**
 * One pass over syntactically valid JSON text: checks number tokens and object keys without building values.
 * Throws JsonSyntaxError for nesting deeper than MAX_DEPTH (deep nesting is a cheap denial-of-service).
 */
function scanJson(text: string): { hasNonCanonicalNumbers: boolean; hasDuplicateKeys: boolean } {
  let hasNonCanonicalNumbers = false;
  let hasDuplicateKeys = false;
  // Stack of containers: a Set of keys for objects, null for arrays.
  const stack: (Set<string> | null)[] = [];
  let expectKey = false;
  const n = text.length;
  let i = 0;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      const start = i;
      i++;
      let escaped = false;
      while (i < n) {
        const d = text.charCodeAt(i);
        if (d === 0x5c) {
          escaped = true;
          i += 2;
          continue;
        }
        if (d === 0x22) break;
        i++;
      }
      i++;
      const top = stack[stack.length - 1];
      if (expectKey && top) {
        const raw = text.slice(start + 1, i - 1);
        const key = escaped ? (JSON.parse(text.slice(start, i)) as string) : raw;
        if (top.has(key)) hasDuplicateKeys = true;
        else top.add(key);
        expectKey = false;
      }
      continue;
    }
    if (c === 0x7b /* { */) {
      stack.push(new Set());
      if (stack.length > MAX_DEPTH) throw new JsonSyntaxError("JSON nested too deeply");
      expectKey = true;
      i++;
      continue;
    }
    if (c === 0x5b /* [ */) {
      stack.push(null);
      if (stack.length > MAX_DEPTH) throw new JsonSyntaxError("JSON nested too deeply");
      i++;
      continue;
    }
    if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      stack.pop();
      i++;
      continue;
    }
    if (c === 0x2c /* , */) {
      expectKey = stack[stack.length - 1] != null;
      i++;
      continue;
    }
    if (c === 0x2d /* - */ || (c >= 0x30 && c <= 0x39)) {
      const start = i;
      i = numberTokenEnd(text, i);
      if (!hasNonCanonicalNumbers && !isCanonicalIntegerToken(text.slice(start, i))) hasNonCanonicalNumbers = true;
      continue;
    }
    i++;
  }
  return { hasNonCanonicalNumbers, hasDuplicateKeys };
}

/** Where the number token starting at `start` (a `-` or a digit) ends: digits, `.`, `e`/`E` and signs. */
function numberTokenEnd(text: string, start: number): number {
  let i = start + 1;
  while (i < text.length) {
    const d = text.charCodeAt(i);
    if ((d >= 0x30 && d <= 0x39) || d === 0x2e || d === 0x65 || d === 0x45 || d === 0x2b || d === 0x2d) i++;
    else break;
  }
  return i;
}

/**
 * A number token that canonical JSON allows: an integer without fraction or exponent, within ±(2**53-1).
 * `-0` is allowed: it is the integer 0 written with a sign, which the spec's own example ("Canonical JSON",
 * `{"a": -0, ...}` → `{"a":0,...}`) normalises rather than rejects, and which Synapse accepts in strict room
 * versions (Python reads it as the int 0). Rejecting it would drop events the rest of the federation accepts.
 */
export function isCanonicalIntegerToken(token: string): boolean {
  if (!/^-?(0|[1-9][0-9]*)$/.test(token)) return false;
  if (token.length < 16) return true;
  const v = Number(token);
  return Number.isSafeInteger(v) && String(v) === token;
}

/**
 * Parses JSON text, keeping every number that is not a canonical integer as a JsonNumberLiteral of its exact text
 * (see there: for re-encoding a signed request body as its sender did). Other values are as JSON.parse gives them.
 * Throws JsonSyntaxError.
 */
export function parseJsonKeepingNumbers(text: string): unknown {
  // Each such number is swapped for a string no JSON text can contain by chance (a random marker behind a NUL,
  // which a JSON string can only hold escaped), parsed, and swapped back.
  const marker = `\\u0000num-${randomBytes(8).toString("hex")}-`;
  const literals: string[] = [];
  let out = "";
  let last = 0;
  const n = text.length;
  let i = 0;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      i++;
      while (i < n && text.charCodeAt(i) !== 0x22) i += text.charCodeAt(i) === 0x5c ? 2 : 1;
      i++;
      continue;
    }
    if (c === 0x2d /* - */ || (c >= 0x30 && c <= 0x39)) {
      const start = i;
      i = numberTokenEnd(text, i);
      const token = text.slice(start, i);
      if (!isCanonicalIntegerToken(token)) {
        out += `${text.slice(last, start)}"${marker}${literals.length}"`;
        literals.push(token);
        last = i;
      }
      continue;
    }
    i++;
  }
  out += text.slice(last);
  let value: unknown;
  try {
    value = JSON.parse(out);
  } catch (e) {
    throw new JsonSyntaxError((e as Error).message);
  }
  if (literals.length === 0) return value;
  const prefix = JSON.parse(`"${marker}"`) as string;
  const restore = (v: unknown): unknown => {
    if (typeof v === "string") return v.startsWith(prefix) ? new JsonNumberLiteral(literals[Number(v.slice(prefix.length))]!) : v;
    if (Array.isArray(v)) return v.map(restore);
    if (typeof v === "object" && v !== null) {
      const o: Record<string, unknown> = {};
      // defineProperty: a "__proto__" key stays a key, as JSON.parse made it.
      for (const [k, x] of Object.entries(v)) Object.defineProperty(o, k, { value: restore(x), enumerable: true, writable: true, configurable: true });
      return o;
    }
    return v;
  };
  return restore(value);
}
