/**
 * Dot-separated property paths (spec appendix "Dot-separated property paths"): `content.m\.relates_to.rel_type`
 * names `rel_type` inside `m.relates_to` inside `content`. A backslash escapes a dot or a backslash; any other
 * backslash is literal (`\x` stays `\x`).
 */
import type { JsonObject, JsonValue } from "../json/types.js";

/** Splits a dotted key into property names, undoing the `\.` and `\\` escapes. */
export function parsePropertyPath(key: string): string[] {
  const parts: string[] = [];
  let current = "";
  for (let i = 0; i < key.length; i++) {
    const c = key[i];
    if (c === "\\") {
      const next = key[i + 1];
      if (next === "." || next === "\\") {
        current += next;
        i++;
      } else {
        current += c;
      }
    } else if (c === ".") {
      parts.push(current);
      current = "";
    } else {
      current += c;
    }
  }
  parts.push(current);
  return parts;
}

/**
 * The value at `path` inside `event`, or undefined when a step is missing or not an object. Arrays are values, not
 * steps: the spec's paths only descend objects. Only own properties count, so `constructor` or `__proto__` never
 * reach into Object.prototype.
 */
export function lookupProperty(event: JsonObject, path: readonly string[]): JsonValue | undefined {
  let value: JsonValue = event;
  for (const name of path) {
    if (typeof value !== "object" || value === null || Array.isArray(value) || !Object.hasOwn(value, name)) {
      return undefined;
    }
    value = (value as JsonObject)[name] as JsonValue;
  }
  return value;
}
