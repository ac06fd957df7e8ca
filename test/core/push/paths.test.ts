// Dot-separated property paths (src/core/push/paths.ts): the appendix's `\.` and `\\` escapes, other backslashes
// literal, and lookups that only follow an event's own object properties.
import { describe, expect, it } from "vitest";
import type { JsonObject } from "../../../src/core/json/types.js";
import { lookupProperty, parsePropertyPath } from "../../../src/core/push/paths.js";

describe("parsePropertyPath", () => {
  it.each([
    ["content.body", ["content", "body"]],
    ["type", ["type"]],
    ["content.m\\.relates_to", ["content", "m.relates_to"]],
    ["content.m\\.relates_to.rel_type", ["content", "m.relates_to", "rel_type"]],
    ["content.m\\\\foo", ["content", "m\\foo"]],
    ["content.m\\\\.foo", ["content", "m\\", "foo"]],
    ["content.\\x", ["content", "\\x"]], // other escapes stay as they are
    ["a\\", ["a\\"]],
    ["a..b", ["a", "", "b"]],
    ["", [""]],
    ["content.m\\.mentions.user_ids", ["content", "m.mentions", "user_ids"]],
  ])("%j", (key, parts) => {
    expect(parsePropertyPath(key)).toEqual(parts);
  });
});

describe("lookupProperty", () => {
  const event = JSON.parse(
    '{"type":"m.room.message","content":{"body":"hi","m.relates_to":{"rel_type":"m.replace"},"m\\\\foo":1,"list":[1,2],' +
      '"nested":{"null":null},"__proto__":{"x":"own"}}}',
  ) as JsonObject;

  it.each([
    ["type", "m.room.message"],
    ["content.body", "hi"],
    ["content.m\\.relates_to.rel_type", "m.replace"],
    ["content.m\\\\foo", 1],
    ["content.list", [1, 2]],
    ["content.nested.null", null],
    ["content.__proto__.x", "own"], // an own property named __proto__ (JSON.parse makes one)
    ["content.missing", undefined],
    ["content.body.length", undefined], // strings are not objects
    ["content.list.0", undefined], // arrays are values, not steps
    ["content.constructor", undefined], // only own properties
    ["content.toString", undefined],
    ["content.m.relates_to.rel_type", undefined], // unescaped dots split
  ])("%j", (key, expected) => {
    expect(lookupProperty(event, parsePropertyPath(key))).toEqual(expected);
  });

  it("does not reach Object.prototype through a missing __proto__", () => {
    expect(lookupProperty({ content: {} }, ["content", "__proto__"])).toBeUndefined();
  });
});
