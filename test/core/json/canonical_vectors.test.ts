/**
 * Canonical JSON and the spec appendix's signing test vectors (test/fixtures/events/canonical-json.json: the
 * Synapse/canonicaljson oracle, with the spec's text deciding where the library differs).
 */
import { describe, expect, it } from "vitest";
import { signingKeyFromSeed } from "../../../src/core/crypto/ed25519.js";
import { signJson, signingInput, verifyJsonSignature } from "../../../src/core/crypto/signing.js";
import { contentHashInput, hashAndSignEvent, referenceHashInput, verifyEventSignature } from "../../../src/core/events/index.js";
import { decodeBase64 } from "../../../src/core/json/base64.js";
import { canonicalJson, canonicalJsonBytes, CanonicalJsonError, compareCodePoints } from "../../../src/core/json/canonical.js";
import { JsonSyntaxError, parseJson } from "../../../src/core/json/parse.js";
import { getRoomVersion } from "../../../src/core/rooms/versions.js";
import { readFixture, type CanonicalJsonVectors } from "../events/fixtures.js";

const vectors = readFixture<CanonicalJsonVectors>("canonical-json.json");

/** How a received text fares: thrown by the parser, flagged as non-canonical, or unencodable. */
function rejection(input: string): "syntax" | "numbers" | "encoding" | null {
  let parsed;
  try {
    parsed = parseJson(input);
  } catch (e) {
    expect(e).toBeInstanceOf(JsonSyntaxError);
    return "syntax";
  }
  if (parsed.hasNonCanonicalNumbers) return "numbers";
  try {
    canonicalJson(parsed.value);
  } catch (e) {
    expect(e).toBeInstanceOf(CanonicalJsonError);
    return "encoding";
  }
  return null;
}

describe("valid canonical JSON cases", () => {
  it.each(vectors.valid.map((c) => [c.name, c] as const))("%s", (_name, c) => {
    const out = canonicalJson(JSON.parse(c.input));
    expect(out).toBe(c.canonical);
    expect(canonicalJsonBytes(JSON.parse(c.input)).toString("hex")).toBe(c.canonical_utf8_hex);
    // The strict parser accepts every one of them (including the integer -0, which is 0) without a flag.
    const parsed = parseJson(c.input);
    expect(parsed.hasNonCanonicalNumbers).toBe(false);
    expect(parsed.hasDuplicateKeys).toBe(false);
    expect(canonicalJson(parsed.value)).toBe(c.canonical);
    // Canonical output is a fixed point.
    expect(canonicalJson(JSON.parse(out))).toBe(out);
  });
});

describe("integral numbers written with a fraction or exponent", () => {
  it.each(vectors.integral_numbers_in_non_integer_syntax.map((c) => [c.name, c] as const))("%s is flagged", (_name, c) => {
    expect(rejection(c.input)).toBe("numbers");
    // JSON.parse alone cannot see the difference: the value is an integer and would encode as the spec example.
    expect(canonicalJson(JSON.parse(c.input))).toBe(c.spec_canonical_if_normalised);
  });
});

describe("must reject", () => {
  it.each(vectors.must_reject.map((c) => [c.name, c] as const))("%s", (name, c) => {
    const how = rejection(c.input);
    expect(how).not.toBeNull();
    if (/surrogate/.test(name)) expect(how).toBe("encoding");
    if (/NaN token|Infinity token|leading zero/.test(name)) expect(how).toBe("syntax");
    if (/^non-integer|exponent|2\^|1e400/.test(name)) expect(how).toBe("numbers");
  });

  it("floats, unsafe integers and non-JSON values throw when encoding", () => {
    for (const v of [1.5, 2 ** 53, -(2 ** 53), Infinity, NaN, { a: [0.1] }, undefined, () => 1, 10n]) {
      expect(() => canonicalJson(v)).toThrow(CanonicalJsonError);
    }
    expect(canonicalJson(2 ** 53 - 1)).toBe("9007199254740991");
    expect(canonicalJson(-0)).toBe("0");
  });
});

describe("spec appendix canonical JSON examples", () => {
  it.each(vectors.spec_canonical_json_examples.map((c, i) => [i, c] as const))("example %i", (_i, c) => {
    expect(canonicalJson(JSON.parse(c.input))).toBe(c.expected);
  });
});

describe("parseJson number tokens", () => {
  it("flags exactly the numbers canonical JSON cannot carry", () => {
    const flagged = (text: string): boolean => parseJson(text).hasNonCanonicalNumbers;
    for (const ok of ["0", "-0", "[9007199254740991,-9007199254740991]", '{"1.5":"1e10","a":["-0.0"]}', "123456789012345", "[true,false,null]"]) {
      expect(flagged(ok), ok).toBe(false);
    }
    for (const bad of ["1.0", "-0.0", "1e10", "1E2", "[1,2.5]", "9007199254740992", "-9007199254740992", "12345678901234567890", '{"a":{"b":[0.1]}}']) {
      expect(flagged(bad), bad).toBe(true);
    }
  });
});

describe("duplicate keys", () => {
  it("are reported, and the last value wins as in every other JSON library servers use", () => {
    const parsed = parseJson('{"a":1,"b":{"a":2,"a":3},"a":4}');
    expect(parsed.hasDuplicateKeys).toBe(true);
    expect(canonicalJson(parsed.value)).toBe('{"a":4,"b":{"a":3}}');
    expect(parseJson('{"a":{"a":1},"b":[{"a":1},{"a":2}],"c\\u0041":1,"cA ":2}').hasDuplicateKeys).toBe(false);
    expect(parseJson('{"cA":1,"c\\u0041":2}').hasDuplicateKeys).toBe(true);
  });
});

describe("compareCodePoints", () => {
  it("orders astral characters after every BMP character, unlike a UTF-16 sort", () => {
    const keys = ["\u{1F600}", "\uFFFF", "\uE000", "z", "\u00E9", "a\u0000", "a", "\u{10000}"];
    expect([...keys].sort(compareCodePoints)).toEqual(["a", "a\u0000", "z", "\u00E9", "\uE000", "\uFFFF", "\u{10000}", "\u{1F600}"]);
    // The default sort compares code units, where a surrogate (0xD83D) is below 0xE000: the bug this avoids.
    expect(["\uE000", "\u{1F600}"].sort()).toEqual(["\u{1F600}", "\uE000"]);
    expect(compareCodePoints("\u{1F600}", "\uFFFF")).toBeGreaterThan(0);
    expect(compareCodePoints("\uFFFF", "\u{1F600}")).toBeLessThan(0);
    expect(compareCodePoints("\u{1F600}", "\u{1F601}")).toBeLessThan(0);
    expect(compareCodePoints("ab", "ab")).toBe(0);
    expect(compareCodePoints("ab", "abc")).toBeLessThan(0);
  });
});

describe("spec appendix signing test vectors", () => {
  const sv = vectors.spec_signing_test_vectors;
  const seed = decodeBase64(sv.seed_unpadded_base64)!;
  const key = signingKeyFromSeed(sv.key_id.slice("ed25519:".length), seed);

  it("derives the published public key", () => {
    expect(key.keyId).toBe(sv.key_id);
    expect(key.publicKeyBase64).toBe(sv.public_key_unpadded_base64);
  });

  it.each(sv.json_signing.map((c, i) => [i, c] as const))("JSON signing %i", (_i, c) => {
    expect(signingInput(c.input).toString("utf8")).toBe(c.signing_input);
    const signed = signJson(c.input, sv.server_name, key);
    expect(signed).toEqual(c.expected);
    expect(verifyJsonSignature(c.expected, sv.server_name, sv.key_id, sv.public_key_unpadded_base64)).toBe(true);
  });

  it.each(sv.event_signing.map((c, i) => [i, c] as const))("event signing %i (pre-v11 redaction)", (_i, c) => {
    // These vectors predate room version 11: `origin` is kept, which is the v1 algorithm's behaviour.
    const v1 = getRoomVersion("1")!;
    const before = structuredClone(c.input);
    expect(contentHashInput(c.input).toString("utf8")).toBe(c.content_hash_input);
    const signed = hashAndSignEvent(v1, c.input, sv.server_name, key);
    expect(signed).toEqual(c.expected);
    expect(referenceHashInput(v1, signed).toString("utf8")).toBe(c.redacted_signing_input);
    expect(verifyEventSignature(v1, signed, sv.server_name, sv.key_id, sv.public_key_unpadded_base64)).toBe(true);
    // The input is not modified.
    expect(c.input).toEqual(before);
  });
});
