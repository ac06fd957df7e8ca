/**
 * The Synapse 1.63.1 oracle (test/fixtures/events/signed-events.json): for every event of room versions 1–9, the
 * five checks of the fixture README — content hash, redaction, reference hash / signing input, event id, signature.
 */
import { describe, expect, it } from "vitest";
import { sha256Base64, verifyJsonSignature } from "../../../src/core/crypto/signing.js";
import {
  computeContentHash,
  computeEventId,
  computeReferenceHash,
  contentHashInput,
  contentHashMatches,
  eventIdOf,
  parsePdu,
  redactPdu,
  referenceHashInput,
  requiredSignatureServers,
  verifyEventSignature,
} from "../../../src/core/events/index.js";
import { encodeBase64 } from "../../../src/core/json/base64.js";
import { canonicalJson } from "../../../src/core/json/canonical.js";
import type { JsonObject } from "../../../src/core/json/types.js";
import { getRoomVersion, type RoomVersion } from "../../../src/core/rooms/versions.js";
import { readFixture, type SignedEvents, type SignedEventVector } from "./fixtures.js";

const data = readFixture<SignedEvents>("signed-events.json");
const publicKey = data.server_key.public_key_unpadded_base64;
const byVersion = new Map<string, SignedEventVector[]>();
for (const e of data.events) byVersion.set(e.room_version, [...(byVersion.get(e.room_version) ?? []), e]);

function version(id: string): RoomVersion {
  const v = getRoomVersion(id);
  if (!v) throw new Error(`unknown room version ${id}`);
  return v;
}

/** The same PDU carrying the kind of `unsigned` Synapse stores and relays: it must change nothing. */
function withUnsigned(pdu: JsonObject): JsonObject {
  return { ...pdu, unsigned: { age_ts: 1795510785448, age: 12, replaces_state: "$x", invite_room_state: [{ a: 1.5 }] } };
}

it("covers 218 events over room versions 1-9", () => {
  expect(data.events).toHaveLength(218);
  expect([...byVersion.keys()].sort()).toEqual(["1", "2", "3", "4", "5", "6", "7", "8", "9"]);
});

describe.each([...byVersion.keys()])("room version %s", (roomVersion) => {
  const v = version(roomVersion);
  const events = byVersion.get(roomVersion)!;

  describe.each(events.map((e) => [e.scenario_label, e] as const))("%s", (_label, e) => {
    it("1. content hash input and hash", () => {
      expect(contentHashInput(e.pdu).toString("utf8")).toBe(e.content_hash_input);
      expect(computeContentHash(e.pdu)).toBe(e.content_hash);
      expect(e.pdu.hashes).toEqual({ sha256: e.content_hash });
      expect(contentHashMatches(e.pdu)).toBe(true);
      expect(computeContentHash(withUnsigned(e.pdu))).toBe(e.content_hash);
    });

    it("2. redaction", () => {
      expect(redactPdu(v, e.pdu)).toEqual(e.redacted);
      expect(redactPdu(v, withUnsigned(e.pdu))).toEqual(e.redacted);
      // Redaction is idempotent: a redacted copy redacts to itself.
      expect(redactPdu(v, e.redacted)).toEqual(e.redacted);
    });

    it("3. signing input and reference hash", () => {
      const input = referenceHashInput(v, e.pdu);
      expect(input.toString("utf8")).toBe(e.canonical_json_of_redacted_without_signatures_unsigned);
      expect(sha256Base64(input)).toBe(e.reference_hash);
      expect(encodeBase64(computeReferenceHash(v, e.pdu))).toBe(e.reference_hash);
      expect(encodeBase64(computeReferenceHash(v, withUnsigned(e.pdu)))).toBe(e.reference_hash);
      // A redacted copy has the same reference hash as the full event.
      expect(encodeBase64(computeReferenceHash(v, e.redacted))).toBe(e.reference_hash);
    });

    it("4. event id", () => {
      if (v.eventIdFormat === "v1") {
        expect(e.reference_hash_event_id).toBeNull();
        expect(eventIdOf(v, e.pdu)).toBe(e.event_id);
        expect(() => computeEventId(v, e.pdu)).toThrow();
      } else {
        expect(computeEventId(v, e.pdu)).toBe(e.event_id);
        expect(e.reference_hash_event_id).toBe(e.event_id);
        expect(eventIdOf(v, withUnsigned(e.pdu))).toBe(e.event_id);
      }
    });

    it("5. signature verifies over the redacted form only", () => {
      const { server_name: server, key_id: keyId } = e.signature;
      expect(verifyEventSignature(v, e.pdu, server, keyId, publicKey)).toBe(true);
      expect(verifyEventSignature(v, e.redacted, server, keyId, publicKey)).toBe(true);
      expect(verifyEventSignature(v, withUnsigned(e.pdu), server, keyId, publicKey)).toBe(true);
      // Checked as plain JSON (no redaction), the full event verifies only if redaction removed nothing.
      expect(verifyJsonSignature(e.pdu, server, keyId, publicKey)).toBe(!e.redaction_changes_event);
      expect(e.redaction_changes_event).toBe(canonicalJson(e.pdu) !== canonicalJson(e.redacted));
    });

    it("parses as a valid PDU and needs only the sender's server's signature", () => {
      const result = parsePdu(v, withUnsigned(e.pdu));
      if (!result.ok) throw new Error(result.error);
      const ev = result.event;
      expect(ev.event_id).toBe(e.event_id);
      expect(ev.pdu).toEqual(e.pdu);
      expect(ev.room_id).toBe(e.pdu.room_id);
      expect(ev.prev_events.every((id) => typeof id === "string" && id.startsWith("$"))).toBe(true);
      expect(ev.auth_events).toHaveLength((e.pdu.auth_events as unknown[]).length);
      if (e.pdu.type === "m.room.redaction") expect(ev.redacts).toBe(e.pdu.redacts);
      expect(requiredSignatureServers(v, e.pdu)).toEqual(["synapse.test"]);
    });

    it("a tampered content fails the content hash but keeps the signature valid when redaction removes it", () => {
      const content = { ...(e.pdu.content as JsonObject), "org.example.tampered": true };
      const tampered = { ...e.pdu, content };
      expect(contentHashMatches(tampered)).toBe(false);
      const { server_name: server, key_id: keyId } = e.signature;
      // No pre-v11 redaction rule keeps an unknown content key, so the signature does not cover it.
      expect(verifyEventSignature(v, tampered, server, keyId, publicKey)).toBe(true);
    });
  });
});
