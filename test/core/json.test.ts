import { describe, expect, it } from "vitest";
import { canonicalJson } from "../../src/core/json/canonical.js";

describe("canonical JSON smoke", () => {
  it("sorts keys", () => {
    expect(canonicalJson({ b: 1, a: [true, null, "x"] })).toBe('{"a":[true,null,"x"],"b":1}');
  });
});
