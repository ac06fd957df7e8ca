/** Event signing for every room version (v10–12 have no Synapse vectors), and the signatures a receiver requires. */
import { describe, expect, it } from "vitest";
import { signingKeyFromSeed } from "../../../src/core/crypto/ed25519.js";
import {
  computeContentHash,
  computeEventId,
  contentHashMatches,
  eventSignatures,
  hashAndSignEvent,
  redactPdu,
  requiredSignatureServers,
  verifyEventSignature,
} from "../../../src/core/events/index.js";
import type { JsonObject } from "../../../src/core/json/types.js";
import { ROOM_VERSIONS } from "../../../src/core/rooms/versions.js";
import { KEY, OTHER_KEY, rv, SERVER, signed, skeleton } from "./helpers.js";

const ALL = [...ROOM_VERSIONS.keys()];
const verify = (id: string, pdu: JsonObject, key = KEY, server = SERVER): boolean =>
  verifyEventSignature(rv(id), pdu, server, key.keyId, key.publicKeyBase64);

describe.each(ALL)("room version %s", (id) => {
  const v = rv(id);

  it("signs the redacted form and copies the signature onto the full event", () => {
    const input = { ...skeleton(v), unsigned: { age_ts: 5 } };
    const before = structuredClone(input);
    const pdu = hashAndSignEvent(v, input, SERVER, KEY);
    expect(input).toEqual(before);
    expect(pdu.hashes).toEqual({ sha256: computeContentHash(input) });
    expect(contentHashMatches(pdu)).toBe(true);
    expect(pdu.unsigned).toEqual({ age_ts: 5 });
    expect(Object.keys(eventSignatures(pdu))).toEqual([SERVER]);
    expect(verify(id, pdu)).toBe(true);
    expect(verify(id, redactPdu(v, pdu))).toBe(true);
    expect(verify(id, { ...pdu, unsigned: { age_ts: 999 } })).toBe(true);
    // The wrong key, server or key id fails.
    expect(verify(id, pdu, OTHER_KEY)).toBe(false);
    expect(verify(id, pdu, KEY, "other.org")).toBe(false);
    expect(verifyEventSignature(v, pdu, SERVER, KEY.keyId, OTHER_KEY.publicKeyBase64)).toBe(false);
  });

  it("the signature covers the essential fields and the content hash, not the rest", () => {
    const pdu = signed(v);
    expect(verify(id, { ...pdu, content: { body: "changed" } })).toBe(true);
    expect(contentHashMatches({ ...pdu, content: { body: "changed" } })).toBe(false);
    for (const [key, value] of Object.entries({ depth: 4, origin_server_ts: 1, sender: "@mallory:example.org", type: "m.room.other", hashes: { sha256: "x" } })) {
      expect(verify(id, { ...pdu, [key]: value }), key).toBe(false);
    }
  });

  it("keeps existing signatures and other hash algorithms", () => {
    const first = hashAndSignEvent(v, { ...skeleton(v), hashes: { sha512: "keep" } }, "other.org", OTHER_KEY);
    const second = hashAndSignEvent(v, first, SERVER, KEY);
    expect((second.hashes as JsonObject).sha512).toBe("keep");
    expect(verify(id, second)).toBe(true);
    expect(verify(id, second, OTHER_KEY, "other.org")).toBe(true);
    const sameServer = hashAndSignEvent(v, second, SERVER, signingKeyFromSeed("second", Buffer.alloc(32, 3)));
    expect(Object.keys(eventSignatures(sameServer)[SERVER]!).sort()).toEqual(["ed25519:second", "ed25519:test"]);
  });

  it("requires the sender's server", () => {
    const pdu = signed(v);
    expect(requiredSignatureServers(v, pdu)).toEqual([SERVER]);
    expect(requiredSignatureServers(v, { ...pdu, sender: "@bob:other.org:8448" })[0]).toBe("other.org:8448");
  });
});

describe("legacy origin fields", () => {
  it("origin is signed before v11 and not from v11 (a forged origin verifies only in v11+)", () => {
    for (const id of ALL) {
      const pdu = signed(rv(id), { origin: SERVER });
      expect(verify(id, { ...pdu, origin: "forged.org" }), `v${id}`).toBe(rv(id).redaction === "v11");
    }
  });

  it("v11: content.redacts of a redaction is signed, its reason is not", () => {
    const v11 = rv("11");
    const pdu = signed(v11, { type: "m.room.redaction", content: { redacts: "$target", reason: "spam" } });
    expect(verify("11", { ...pdu, content: { redacts: "$other", reason: "spam" } })).toBe(false);
    expect(verify("11", { ...pdu, content: { redacts: "$target" } })).toBe(true);
    // Before v11 redaction keeps neither the top-level redacts nor content: only the content hash covers them
    // (the gap MSC2176 closed), so a changed target still verifies but fails the hash check.
    const v10 = rv("10");
    const old = signed(v10, { type: "m.room.redaction", redacts: "$target", content: { redacts: "$target" } });
    expect(verify("10", { ...old, content: { redacts: "$other" } })).toBe(true);
    expect(verify("10", { ...old, redacts: "$other" })).toBe(true);
    expect(contentHashMatches({ ...old, redacts: "$other" })).toBe(false);
  });

  it("v11/v12: the whole create content is signed and part of the event id", () => {
    for (const id of ["11", "12"]) {
      const v = rv(id);
      const pdu = signed(v, { type: "m.room.create", state_key: "", content: { room_version: id, "m.federate": false } });
      expect(verify(id, { ...pdu, content: { room_version: id } })).toBe(false);
      expect(computeEventId(v, { ...pdu, content: { room_version: id } })).not.toBe(computeEventId(v, pdu));
    }
  });
});

describe("requiredSignatureServers", () => {
  it("rooms v1/v2 also require the event_id's server", () => {
    for (const id of ["1", "2"]) {
      const v = rv(id);
      expect(requiredSignatureServers(v, signed(v, { event_id: "$abc:origin.org", sender: "@u:example.org" }))).toEqual(["example.org", "origin.org"]);
      expect(requiredSignatureServers(v, signed(v, { event_id: "$abc:example.org" }))).toEqual(["example.org"]);
    }
    const v3 = rv("3");
    expect(requiredSignatureServers(v3, { ...signed(v3), event_id: "$abc:origin.org" })).toEqual(["example.org"]);
  });

  it("a third-party invite does not require the sender's server", () => {
    const content = { membership: "invite", third_party_invite: { display_name: "b", signed: { mxid: "@bob:b.org", token: "t", signatures: {} } } };
    for (const id of ALL) {
      const v = rv(id);
      const pdu = signed(v, { type: "m.room.member", state_key: "@bob:b.org", sender: "@alice:a.org", content, event_id: v.eventIdFormat === "v1" ? "$e:b.org" : undefined });
      expect(requiredSignatureServers(v, pdu), `v${id}`).toEqual(v.eventIdFormat === "v1" ? ["b.org"] : []);
      // A plain invite does.
      expect(requiredSignatureServers(v, { ...pdu, content: { membership: "invite" } })[0]).toBe("a.org");
    }
  });

  it("a restricted join requires the authorising user's server where restricted rooms exist", () => {
    for (const id of ALL) {
      const v = rv(id);
      const join = signed(v, {
        type: "m.room.member",
        state_key: "@bob:b.org",
        sender: "@bob:b.org",
        content: { membership: "join", join_authorised_via_users_server: "@admin:resident.org" },
        event_id: v.eventIdFormat === "v1" ? "$e:b.org" : undefined,
      });
      expect(requiredSignatureServers(v, join), `v${id}`).toEqual(v.restrictedJoinRule ? ["b.org", "resident.org"] : ["b.org"]);
      const leave = { ...join, content: { membership: "leave", join_authorised_via_users_server: "@admin:resident.org" } };
      expect(requiredSignatureServers(v, leave)).toEqual(["b.org"]);
    }
  });

  it("throws on ids that parsePdu would have rejected", () => {
    const v = rv("10");
    expect(() => requiredSignatureServers(v, { ...signed(v), sender: "nobody" })).toThrow(/sender/);
    const bad = { ...signed(v), type: "m.room.member", content: { membership: "join", join_authorised_via_users_server: 5 } };
    expect(() => requiredSignatureServers(v, bad)).toThrow(/join_authorised_via_users_server/);
    const v1 = rv("1");
    expect(() => requiredSignatureServers(v1, { ...signed(v1), event_id: "$nodomain" })).toThrow(/event_id/);
  });
});

describe("eventSignatures", () => {
  it("returns well-formed entries only", () => {
    expect(eventSignatures({ signatures: { a: { "ed25519:1": "s", bad: 5 }, b: "x" } })).toEqual({ a: { "ed25519:1": "s" } });
    expect(eventSignatures({})).toEqual({});
    const hostile = JSON.parse('{"signatures":{"__proto__":{"ed25519:1":"s"}}}') as JsonObject;
    const sigs = eventSignatures(hostile);
    expect(Object.getPrototypeOf(sigs)).toBe(Object.prototype);
    expect(Object.keys(sigs)).toEqual(["__proto__"]);
  });
});
