/**
 * Canonical JSON (spec appendix "Canonical JSON"): the shortest UTF-8 JSON encoding with object keys sorted by
 * Unicode code point, integers only within [-(2**53)+1, (2**53)-1], no `-0`, no floats.
 */
import type { JsonValue } from "./types.js";

export class CanonicalJsonError extends Error {}

export const MAX_SAFE_INT = Number.MAX_SAFE_INTEGER; // 2**53 - 1

/**
 * A number kept as the literal text it was received as (`1.1`, `1e5`, `12345678901234567890`): canonical JSON
 * writes it back verbatim. Only `parseJsonKeepingNumbers` makes these, for checking the X-Matrix signature of a
 * request whose body canonical JSON cannot express: the sender signed its own encoding of the number, which is
 * the text it sent. Nothing else ever holds one, so events and our own signatures stay strictly canonical.
 */
export class JsonNumberLiteral {
  constructor(readonly text: string) {}
}

/** Orders strings by Unicode code point. JavaScript's default sort compares UTF-16 code units, which puts astral
 * characters (surrogate pairs, 0xD800-0xDFFF) before BMP characters in 0xE000-0xFFFF: wrong for Matrix. */
export function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    // Both in or both out of the surrogate range: code unit order is code point order.
    const xs = x >= 0xd800 && x <= 0xdfff;
    const ys = y >= 0xd800 && y <= 0xdfff;
    if (xs === ys) return x - y;
    return xs ? 1 : -1; // a surrogate (astral code point) sorts after any BMP unit it is compared with here
  }
  return a.length - b.length;
}

/** Encodes a value as canonical JSON text. Throws CanonicalJsonError for floats, unsafe integers, lone
 * surrogates and non-JSON values. `-0` is written as `0`, as in the spec's example. */
export function canonicalJson(value: unknown): string {
  const out: string[] = [];
  write(value, out);
  return out.join("");
}

/** Canonical JSON as UTF-8 bytes: what gets hashed and signed. */
export function canonicalJsonBytes(value: unknown): Buffer {
  return Buffer.from(canonicalJson(value), "utf8");
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

function writeString(s: string, out: string[]): void {
  if (LONE_SURROGATE.test(s)) throw new CanonicalJsonError("string contains a lone surrogate");
  // JSON.stringify escapes exactly what canonical JSON escapes: `"`, `\`, and control characters below 0x20
  // (using \b \t \n \f \r where they exist and lowercase \u00XX otherwise); everything else is literal.
  out.push(JSON.stringify(s));
}

function write(value: unknown, out: string[]): void {
  switch (typeof value) {
    case "string":
      writeString(value, out);
      return;
    case "number":
      if (!Number.isInteger(value)) throw new CanonicalJsonError(`number ${value} is not an integer`);
      if (value > MAX_SAFE_INT || value < -MAX_SAFE_INT) throw new CanonicalJsonError(`integer ${value} out of range`);
      out.push(Object.is(value, -0) ? "0" : String(value));
      return;
    case "boolean":
      out.push(value ? "true" : "false");
      return;
    case "object": {
      if (value === null) {
        out.push("null");
        return;
      }
      if (value instanceof JsonNumberLiteral) {
        out.push(value.text);
        return;
      }
      if (Array.isArray(value)) {
        out.push("[");
        for (let i = 0; i < value.length; i++) {
          if (i > 0) out.push(",");
          write(value[i], out);
        }
        out.push("]");
        return;
      }
      const obj = value as Record<string, unknown>;
      const keys = Object.keys(obj).filter((k) => obj[k] !== undefined).sort(compareCodePoints);
      out.push("{");
      for (let i = 0; i < keys.length; i++) {
        if (i > 0) out.push(",");
        const k = keys[i]!;
        writeString(k, out);
        out.push(":");
        write(obj[k], out);
      }
      out.push("}");
      return;
    }
    default:
      throw new CanonicalJsonError(`cannot encode a ${typeof value} as JSON`);
  }
}

/** Deep-checks that a parsed value can be canonically encoded (no floats, no unsafe integers). */
export function isCanonicalEncodable(value: JsonValue): boolean {
  try {
    canonicalJson(value);
    return true;
  } catch {
    return false;
  }
}
