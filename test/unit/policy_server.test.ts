/** Policy Servers, the pure part (spec v1.18 "Policy Servers"): core/rooms/policy_server.ts. */
import { describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config/config.js";
import { ConfigError } from "../../src/config/reader.js";
import { signingKeyFromSeed } from "../../src/core/crypto/ed25519.js";
import { signJson } from "../../src/core/crypto/signing.js";
import { stateMapKey, type PDU } from "../../src/core/events/event.js";
import { redactPdu } from "../../src/core/events/redaction.js";
import { hashAndSignEvent } from "../../src/core/events/signing.js";
import { encodeBase64Url } from "../../src/core/json/base64.js";
import type { JsonObject } from "../../src/core/json/types.js";
import {
  hasValidPolicyServerSignature,
  memberEventsOfServer,
  needsPolicyServerSignature,
  policyServerFromContent,
  POLICY_SERVER_KEY_ID,
  recommendedForInclusion,
  roomPolicyServer,
  withPolicyServerSignature,
  type PolicyServer,
} from "../../src/core/rooms/policy_server.js";
import { getRoomVersion } from "../../src/core/rooms/versions.js";

const V12 = getRoomVersion("12")!;
const V10 = getRoomVersion("10")!;
const SENDER_KEY = signingKeyFromSeed("a_1", Buffer.alloc(32, 1));
const PS_KEY = signingKeyFromSeed("policy_server", Buffer.alloc(32, 2));
const OTHER_KEY = signingKeyFromSeed("policy_server", Buffer.alloc(32, 3));
const PS: PolicyServer = { serverName: "policy.example.org", ed25519: PS_KEY.publicKeyBase64 };

function message(version = V12, fields: JsonObject = {}): PDU {
  const pdu: PDU = {
    type: "m.room.message",
    room_id: "!room:example.org",
    sender: "@alice:example.org",
    content: { msgtype: "m.text", body: "hello" },
    depth: 5,
    origin_server_ts: 1_700_000_000_000,
    prev_events: ["$prev"],
    auth_events: ["$create", "$power", "$member"],
    hashes: {},
    ...fields,
  };
  return hashAndSignEvent(version, pdu, "example.org", SENDER_KEY);
}

/** The Policy Server's answer to /sign: its signature over the redacted event. */
function psAnswer(version: typeof V12, pdu: PDU, key = PS_KEY, serverName = PS.serverName): JsonObject {
  const signed = signJson(redactPdu(version, pdu), serverName, key);
  return { [serverName]: { [POLICY_SERVER_KEY_ID]: (signed.signatures as Record<string, Record<string, string>>)[serverName]![key.keyId]! } };
}

describe("policyServerFromContent: a valid m.room.policy", () => {
  it("needs a string via and public_keys.ed25519", () => {
    expect(policyServerFromContent({ via: "policy.example.org", public_keys: { ed25519: "abc" } })).toEqual({ serverName: "policy.example.org", ed25519: "abc" });
    // Other algorithms may be listed besides ed25519.
    expect(policyServerFromContent({ via: "ps.org:8448", public_keys: { ed25519: "abc", other: "x" } })).toEqual({ serverName: "ps.org:8448", ed25519: "abc" });
  });

  it("is invalid (no Policy Server) when a field is missing or of the wrong type", () => {
    for (const content of [
      undefined,
      null,
      "policy.example.org",
      {},
      { via: "policy.example.org" },
      { public_keys: { ed25519: "abc" } },
      { via: 42, public_keys: { ed25519: "abc" } },
      { via: "policy.example.org", public_keys: "abc" },
      { via: "policy.example.org", public_keys: {} },
      { via: "policy.example.org", public_keys: { ed25519: 1 } },
      { via: "policy.example.org", public_key: "abc" },
      // Not a server name: nothing could be asked.
      { via: "not a server", public_keys: { ed25519: "abc" } },
      { via: "", public_keys: { ed25519: "abc" } },
    ]) {
      expect(policyServerFromContent(content), JSON.stringify(content)).toBeUndefined();
    }
  });
});

describe("roomPolicyServer: whether a room uses a Policy Server", () => {
  const content = { via: "policy.example.org", public_keys: { ed25519: "abc" } };

  it("uses it when the via server has a joined user", () => {
    const asked: string[] = [];
    expect(roomPolicyServer(content, (s) => (asked.push(s), true))).toEqual({ serverName: "policy.example.org", ed25519: "abc" });
    expect(asked).toEqual(["policy.example.org"]);
  });

  it("does not when the via server has no joined user, there is no m.room.policy, or it is invalid", () => {
    expect(roomPolicyServer(content, () => false)).toBeUndefined();
    expect(roomPolicyServer(undefined, () => true)).toBeUndefined();
    expect(roomPolicyServer({ via: "policy.example.org" }, () => true)).toBeUndefined();
  });
});

describe("memberEventsOfServer", () => {
  it("finds the member events of users on exactly that server", () => {
    const state = new Map<string, string>([
      [stateMapKey("m.room.member", "@a:hs2.test"), "$a"],
      [stateMapKey("m.room.member", "@b:hs2.test"), "$b"],
      [stateMapKey("m.room.member", "@c:evil-hs2.test"), "$c"],
      [stateMapKey("m.room.member", "@d:sub.hs2.test"), "$d"],
      [stateMapKey("m.room.member", "@e:hs2.test:8448"), "$e"],
      [stateMapKey("m.room.member", "@f:hs1.test"), "$f"],
      // Not member events, though their state keys look like user ids.
      [stateMapKey("m.room.other", "@g:hs2.test"), "$g"],
      [stateMapKey("m.room.policy", ""), "$p"],
    ]);
    expect(memberEventsOfServer(state, "hs2.test").sort()).toEqual(["$a", "$b"]);
    expect(memberEventsOfServer(state, "hs2.test:8448")).toEqual(["$e"]);
    expect(memberEventsOfServer(state, "nobody.test")).toEqual([]);
  });
});

describe("needsPolicyServerSignature", () => {
  it("exempts only the m.room.policy state event with an empty state key", () => {
    expect(needsPolicyServerSignature({ type: "m.room.policy", state_key: "" })).toBe(false);
    expect(needsPolicyServerSignature({ type: "m.room.policy", state_key: "x" })).toBe(true);
    expect(needsPolicyServerSignature({ type: "m.room.policy" })).toBe(true);
    expect(needsPolicyServerSignature({ type: "m.room.member", state_key: "@a:hs1.test" })).toBe(true);
    expect(needsPolicyServerSignature({ type: "m.room.power_levels", state_key: "" })).toBe(true);
    expect(needsPolicyServerSignature({ type: "m.room.message" })).toBe(true);
  });
});

describe("Policy Server signatures", () => {
  for (const version of [V12, V10]) {
    it(`a signature from the key in m.room.policy is valid (room version ${version.id})`, () => {
      const pdu = message(version);
      expect(hasValidPolicyServerSignature(version, pdu, PS)).toBe(false);
      const signed = withPolicyServerSignature(pdu, PS, psAnswer(version, pdu))!;
      expect(hasValidPolicyServerSignature(version, signed, PS)).toBe(true);
      // The sender's signature is still there and still valid.
      expect((signed.signatures as JsonObject)["example.org"]).toEqual((pdu.signatures as JsonObject)["example.org"]);
    });
  }

  it("the key may be URL-safe base64 (as the spec's example)", () => {
    const pdu = message();
    const signed = withPolicyServerSignature(pdu, PS, psAnswer(V12, pdu))!;
    expect(hasValidPolicyServerSignature(V12, signed, { ...PS, ed25519: encodeBase64Url(PS_KEY.publicKey) })).toBe(true);
  });

  it("is invalid from another key, under another server name, or over another event", () => {
    const pdu = message();
    expect(hasValidPolicyServerSignature(V12, withPolicyServerSignature(pdu, PS, psAnswer(V12, pdu, OTHER_KEY))!, PS)).toBe(false);
    // Signed by the right key but filed under the sender's name rather than the Policy Server's.
    const misfiled = withPolicyServerSignature(pdu, { ...PS, serverName: "example.org" }, psAnswer(V12, pdu, PS_KEY, "example.org"))!;
    expect(hasValidPolicyServerSignature(V12, misfiled, PS)).toBe(false);
    // A signature for one event copied onto another.
    const other = message(V12, { content: { msgtype: "m.text", body: "other" }, origin_server_ts: 1 });
    expect(hasValidPolicyServerSignature(V12, withPolicyServerSignature(other, PS, psAnswer(V12, pdu))!, PS)).toBe(false);
    // A key that is not base64, or garbage as the signature: invalid, never a throw.
    const signed = withPolicyServerSignature(pdu, PS, psAnswer(V12, pdu))!;
    expect(hasValidPolicyServerSignature(V12, signed, { ...PS, ed25519: "not base64!" })).toBe(false);
    expect(hasValidPolicyServerSignature(V12, withPolicyServerSignature(pdu, PS, { [PS.serverName]: { [POLICY_SERVER_KEY_ID]: "AAAA" } })!, PS)).toBe(false);
  });

  it("withPolicyServerSignature keeps every signature already there and takes only ed25519:policy_server", () => {
    // The Policy Server's name is also the sender's: its answer need not repeat the sender's own signature.
    const pdu = message(V12, { sender: "@mod:policy.example.org" });
    const ownKey = signingKeyFromSeed("a_own", Buffer.alloc(32, 4));
    const bySender = hashAndSignEvent(V12, pdu, "policy.example.org", ownKey);
    const answer: JsonObject = { ...psAnswer(V12, bySender), elsewhere: { "ed25519:x": "sig" } };
    (answer[PS.serverName] as JsonObject)["ed25519:extra"] = "ignored";
    const signed = withPolicyServerSignature(bySender, PS, answer)!;
    const sigs = signed.signatures as Record<string, Record<string, string>>;
    expect(Object.keys(sigs).sort()).toEqual(["example.org", "policy.example.org"]);
    expect(Object.keys(sigs["policy.example.org"]!).sort()).toEqual(["ed25519:a_own", POLICY_SERVER_KEY_ID]);
    expect(hasValidPolicyServerSignature(V12, signed, PS)).toBe(true);
  });

  it("withPolicyServerSignature: no signature in the answer is undefined", () => {
    const pdu = message();
    for (const answer of [{}, null, [], { [PS.serverName]: {} }, { [PS.serverName]: { "ed25519:other": "sig" } }, { other: { [POLICY_SERVER_KEY_ID]: "sig" } }, { [PS.serverName]: { [POLICY_SERVER_KEY_ID]: 5 } }]) {
      expect(withPolicyServerSignature(pdu, PS, answer), JSON.stringify(answer)).toBeUndefined();
    }
  });
});

describe("recommendedForInclusion", () => {
  const pdu = message();
  const event = { type: "m.room.message", pdu };

  it("is recommended when the room uses no Policy Server", () => {
    expect(recommendedForInclusion(V12, event, undefined)).toBe(true);
  });

  it("otherwise needs a valid signature, except for the m.room.policy state event", () => {
    expect(recommendedForInclusion(V12, event, PS)).toBe(false);
    expect(recommendedForInclusion(V12, { ...event, pdu: withPolicyServerSignature(pdu, PS, psAnswer(V12, pdu))! }, PS)).toBe(true);
    expect(recommendedForInclusion(V12, { type: "m.room.policy", state_key: "", pdu }, PS)).toBe(true);
    expect(recommendedForInclusion(V12, { type: "m.room.policy", state_key: "other", pdu }, PS)).toBe(false);
  });
});

describe("config: policy_server (served at /.well-known/matrix/policy_server)", () => {
  const doc = (extra: Record<string, unknown> = {}) => ({ server_name: "example.org", listeners: [{ port: 8008 }], ...extra });

  it("is absent by default", () => {
    expect(parseConfig(doc(), "/etc/myelin").config.policyServer).toBeUndefined();
  });

  it("holds the public keys as the endpoint serves them", () => {
    const parsed = parseConfig(doc({ policy_server: { public_keys: { ed25519: PS_KEY.publicKeyBase64, other: "xyz" } } }), "/etc/myelin");
    expect(parsed.config.policyServer).toEqual({ public_keys: { ed25519: PS_KEY.publicKeyBase64, other: "xyz" } });
    expect(parsed.warnings).toEqual([]);
    // The spec's example key is URL-safe base64.
    const example = "6yhHGKhCiXTSEN2ksjV7kX_N6rBQZ3Xb-M7LlC6NS-s";
    expect(parseConfig(doc({ policy_server: { public_keys: { ed25519: example } } }), "/etc/myelin").config.policyServer).toEqual({ public_keys: { ed25519: example } });
  });

  it("needs an ed25519 key of 32 bytes", () => {
    expect(() => parseConfig(doc({ policy_server: {} }), "/etc/myelin")).toThrow(ConfigError);
    expect(() => parseConfig(doc({ policy_server: { public_keys: { other: "xyz" } } }), "/etc/myelin")).toThrow(/needs an "ed25519" key/);
    expect(() => parseConfig(doc({ policy_server: { public_keys: { ed25519: "AAAA" } } }), "/etc/myelin")).toThrow(/32 bytes/);
    expect(() => parseConfig(doc({ policy_server: { public_keys: { ed25519: 5 } } }), "/etc/myelin")).toThrow(ConfigError);
  });
});
