/**
 * The X-Matrix Authorization header: RFC 9110 parsing rules as the spec states them, the compatibility rules for
 * older servers, and headers built to confuse a parser.
 */
import { describe, expect, it } from "vitest";
import { generateSigningKey } from "../../../src/core/crypto/ed25519.js";
import { verifyJsonSignature } from "../../../src/core/crypto/signing.js";
import { formatXMatrix, parseXMatrix, requestSigningJson, signRequest, XMatrixParseError } from "../../../src/core/federation/xmatrix.js";

const SPEC_EXAMPLE = 'X-Matrix origin="origin.hs.example.com",destination="destination.hs.example.com",key="ed25519:key1",sig="ABCDEF..."';

describe("parseXMatrix", () => {
  it("reads the spec's example", () => {
    expect(parseXMatrix(SPEC_EXAMPLE)).toEqual({ origin: "origin.hs.example.com", destination: "destination.hs.example.com", key: "ed25519:key1", sig: "ABCDEF..." });
  });

  it("treats the scheme and parameter names case-insensitively, in any order", () => {
    expect(parseXMatrix('x-matrix SIG="s",Key="ed25519:k",ORIGIN="a.example"')).toEqual({ origin: "a.example", key: "ed25519:k", sig: "s" });
    expect(parseXMatrix('X-MATRIX Origin="a.example",Destination="b.example",KEY="ed25519:k",Sig="s"').destination).toBe("b.example");
  });

  it("accepts several spaces after the scheme and spaces or tabs around commas and equals signs", () => {
    const parsed = parseXMatrix('X-Matrix   origin="a.example" ,\tdestination = "b.example"\t, key="ed25519:k" ,sig="s"  ');
    expect(parsed).toEqual({ origin: "a.example", destination: "b.example", key: "ed25519:k", sig: "s" });
  });

  it("accepts token values unquoted, with colons (and base64's / + =) allowed for older senders", () => {
    expect(parseXMatrix("X-Matrix origin=a.example:8448,key=ed25519:a_Bc,sig=ab+/cd=")).toEqual({ origin: "a.example:8448", key: "ed25519:a_Bc", sig: "ab+/cd=" });
  });

  it("unescapes backslash pairs in quoted values and keeps commas, equals signs and spaces inside quotes", () => {
    expect(parseXMatrix('X-Matrix origin="a.example",key="ed25519:k",sig="a\\bc\\\\d\\"e"').sig).toBe('abc\\d"e');
    expect(parseXMatrix('X-Matrix origin="a.example",key="ed25519:k",sig="x,y=z w"').sig).toBe("x,y=z w");
  });

  it("makes destination optional (older senders) and ignores unknown parameters and empty list elements", () => {
    expect(parseXMatrix('X-Matrix origin="a.example",,key="ed25519:k", ,sig="s",future="x",other=y')).toEqual({ origin: "a.example", key: "ed25519:k", sig: "s" });
  });

  const bad: [string, string][] = [
    ["another scheme", 'Bearer origin="a.example",key="ed25519:k",sig="s"'],
    ["a scheme without separator", 'X-Matrixorigin="a.example",key="ed25519:k",sig="s"'],
    ["a scheme prefix", 'X-Matrix-Foo origin="a.example",key="ed25519:k",sig="s"'],
    ["the scheme alone", "X-Matrix "],
    ["no origin", 'X-Matrix key="ed25519:k",sig="s"'],
    ["no key", 'X-Matrix origin="a.example",sig="s"'],
    ["no sig", 'X-Matrix origin="a.example",key="ed25519:k"'],
    ["the spec prose's `signature` instead of `sig`", 'X-Matrix origin="a.example",key="ed25519:k",signature="s"'],
    ["a repeated origin", 'X-Matrix origin="a.example",key="ed25519:k",sig="s",origin="evil.example"'],
    ["a repeated name in other case", 'X-Matrix origin="a.example",key="ed25519:k",sig="s",SIG="t"'],
    ["an unterminated quote", 'X-Matrix origin="a.example,key="ed25519:k",sig="s'],
    ["text after a quoted value", 'X-Matrix origin="a.example"x,key="ed25519:k",sig="s"'],
    ["a missing comma", 'X-Matrix origin="a.example" key="ed25519:k",sig="s"'],
    ["a parameter without value", 'X-Matrix origin,key="ed25519:k",sig="s"'],
    ["an empty unquoted value", 'X-Matrix origin=,key="ed25519:k",sig="s"'],
    ["a newline in a quoted value", 'X-Matrix origin="a.example",key="ed25519:k",sig="s\nInjected: x"'],
    ["a NUL in a quoted value", 'X-Matrix origin="a.example\u0000",key="ed25519:k",sig="s"'],
    ["a trailing backslash", 'X-Matrix origin="a.example",key="ed25519:k",sig="s\\'],
    ["an origin that is not a server name", 'X-Matrix origin="not a server",key="ed25519:k",sig="s"'],
    ["an origin with a path", 'X-Matrix origin="a.example/evil",key="ed25519:k",sig="s"'],
    ["a destination that is not a server name", 'X-Matrix origin="a.example",destination="b example",key="ed25519:k",sig="s"'],
    ["a name with a separator character", 'X-Matrix ori(gin="a.example",key="ed25519:k",sig="s"'],
    ["a semicolon-separated list", 'X-Matrix origin="a.example";key="ed25519:k";sig="s"'],
  ];
  for (const [what, header] of bad) {
    it(`rejects ${what}`, () => {
      expect(() => parseXMatrix(header)).toThrow(XMatrixParseError);
    });
  }
});

describe("formatXMatrix", () => {
  it("writes one space after X-Matrix, lower-case names, quoted values and no spaces around commas", () => {
    expect(formatXMatrix({ origin: "origin.hs.example.com", destination: "destination.hs.example.com", key: "ed25519:key1", sig: "ABCDEF..." })).toBe(SPEC_EXAMPLE);
  });

  it("escapes quotes and backslashes, and round-trips through the parser", () => {
    const auth = { origin: "a.example:8448", destination: "[::1]:8448", key: "ed25519:k", sig: 'we"ird\\sig' };
    expect(parseXMatrix(formatXMatrix(auth))).toEqual(auth);
  });
});

describe("request signing", () => {
  it("builds the signed object with content only when there is a body", () => {
    expect(requestSigningJson({ method: "GET", uri: "/_matrix/federation/v1/version", origin: "a", destination: "b" })).toEqual({
      method: "GET",
      uri: "/_matrix/federation/v1/version",
      origin: "a",
      destination: "b",
    });
    expect(requestSigningJson({ method: "PUT", uri: "/x?y=1", origin: "a", destination: "b", content: { pdus: [] } }).content).toEqual({ pdus: [] });
  });

  it("signs so that the receiver can rebuild the object from the header and verify it", () => {
    const key = generateSigningKey();
    const req = { method: "PUT", uri: "/_matrix/federation/v1/send/1?x=%20", origin: "a.example", destination: "b.example", content: { edus: [{ a: 1 }] } };
    const auth = parseXMatrix(signRequest(req, key));
    expect(auth).toMatchObject({ origin: "a.example", destination: "b.example", key: key.keyId });
    const rebuilt = { ...requestSigningJson(req), signatures: { [auth.origin]: { [auth.key]: auth.sig } } };
    expect(verifyJsonSignature(rebuilt, "a.example", key.keyId, key.publicKeyBase64)).toBe(true);
    // Any change to what was signed breaks it.
    for (const change of [{ method: "POST" }, { uri: "/_matrix/federation/v1/send/2?x=%20" }, { destination: "c.example" }, { content: { edus: [] } }]) {
      const tampered = { ...requestSigningJson({ ...req, ...change }), signatures: rebuilt.signatures };
      expect(verifyJsonSignature(tampered, "a.example", key.keyId, key.publicKeyBase64)).toBe(false);
    }
  });
});
