/** parsePdu: the event format of every room version, and adversarial input. */
import { describe, expect, it } from "vitest";
import { computeEventId, MAX_PDU_BYTES, parsePdu, roomIdForCreateEvent, verifyEventSignature, redactPdu, referenceHashInput } from "../../../src/core/events/index.js";
import type { Event, ParsePduOptions } from "../../../src/core/events/index.js";
import { canonicalJson } from "../../../src/core/json/canonical.js";
import { parseJson } from "../../../src/core/json/parse.js";
import type { JsonObject, JsonValue } from "../../../src/core/json/types.js";
import { ROOM_VERSIONS, type RoomVersion } from "../../../src/core/rooms/versions.js";
import { readFixture, type NonStrictNumberEvents } from "./fixtures.js";
import { KEY, ref, rv, SERVER, signed, V12_ROOM_ID } from "./helpers.js";

const ALL = [...ROOM_VERSIONS.keys()];
const LEGACY_IDS = ALL.filter((id) => rv(id).eventIdFormat === "v1");
const HASH_IDS = ALL.filter((id) => rv(id).eventIdFormat !== "v1");

function ok(v: RoomVersion, pdu: unknown, opts?: ParsePduOptions): Event {
  const r = parsePdu(v, pdu, opts);
  if (!r.ok) throw new Error(`expected a valid PDU, got: ${r.error}`);
  return r.event;
}

function rejected(v: RoomVersion, pdu: unknown, opts?: ParsePduOptions): string {
  const r = parsePdu(v, pdu, opts);
  if (r.ok) throw new Error("expected the PDU to be rejected");
  return r.error;
}

describe.each(ALL)("room version %s", (id) => {
  const v = rv(id);

  it("accepts a well-formed PDU and normalises it", () => {
    const pdu: JsonObject = { ...signed(v), unsigned: { age: 5, "org.example": 1.5 } };
    const e = ok(v, pdu);
    expect(e.event_id).toBe(v.eventIdFormat === "v1" ? `$local:${SERVER}` : computeEventId(v, pdu));
    expect(e.room_id).toBe(pdu.room_id);
    expect(e.prev_events).toEqual([v.eventIdFormat === "v1" ? `$prev:${SERVER}` : "$prev"]);
    expect(e.auth_events).toHaveLength(3);
    expect(e.pdu).not.toHaveProperty("unsigned");
    expect(e.pdu).toEqual(signed(v));
    expect(e.type).toBe("m.room.message");
    expect(e).not.toHaveProperty("state_key");
    expect(e).not.toHaveProperty("redacts");
    expect(e.depth).toBe(3);
  });

  it("requires each key with its JSON type", () => {
    const broken: [string, JsonValue | undefined][] = [
      ["type", undefined], ["type", 5], ["sender", undefined], ["sender", "alice"], ["sender", "@alice"], ["sender", "@alice:bad host"],
      ["content", undefined], ["content", "x"], ["content", []], ["content", null],
      ["depth", undefined], ["depth", -1], ["depth", "3"], ["depth", 2 ** 53 - 1 + 2],
      ["origin_server_ts", undefined], ["origin_server_ts", "1700000000000"],
      ["room_id", undefined], ["room_id", 1], ["room_id", "room:example.org"],
      ["prev_events", undefined], ["prev_events", "$prev"], ["auth_events", undefined], ["auth_events", {}],
      ["hashes", undefined], ["hashes", {}], ["hashes", { sha256: 1 }], ["hashes", "x"],
      ["signatures", undefined], ["signatures", []], ["signatures", { [SERVER]: "sig" }], ["signatures", { [SERVER]: { "ed25519:x": 1 } }],
      ["state_key", 1], ["state_key", null],
    ];
    for (const [key, value] of broken) {
      // Applied after signing: parsePdu checks shape only, so signature validity does not matter here.
      const pdu: JsonObject = { ...signed(v) };
      if (value === undefined) delete pdu[key];
      else pdu[key] = value;
      expect(rejected(v, pdu), `${key}=${JSON.stringify(value)}`).toMatch(new RegExp(`${key}|canonical JSON`));
    }
  });

  it("accepts depth 0 and 2^53-1, historical user ids, and any string state_key", () => {
    ok(v, signed(v, { depth: 0 }));
    ok(v, signed(v, { depth: Number.MAX_SAFE_INTEGER }));
    ok(v, signed(v, { sender: "@Alice Ünicode:example.org" }));
    ok(v, signed(v, { sender: "@:example.org" }));
    expect(ok(v, signed(v, { state_key: "" })).state_key).toBe("");
    expect(ok(v, signed(v, { state_key: "some/key with spaces" })).state_key).toBe("some/key with spaces");
  });

  it("enforces the 255-byte limits in UTF-8 bytes", () => {
    ok(v, signed(v, { type: "t".repeat(255) }));
    expect(rejected(v, signed(v, { type: "t".repeat(256) }))).toMatch(/type/);
    expect(rejected(v, signed(v, { type: "é".repeat(128) }))).toMatch(/type/); // 128 characters, 256 bytes
    ok(v, signed(v, { state_key: "k".repeat(255) }));
    expect(rejected(v, signed(v, { state_key: "ü".repeat(128) }))).toMatch(/state_key/);
    const longSender = "@" + "a".repeat(255 - 1 - `:${SERVER}`.length) + `:${SERVER}`;
    ok(v, signed(v, { sender: longSender }));
    expect(rejected(v, signed(v, { sender: "@a" + longSender.slice(1) }))).toMatch(/sender/);
    if (!v.roomIdIsCreateEventHash) {
      const longRoom = "!" + "r".repeat(255 - 1 - `:${SERVER}`.length) + `:${SERVER}`;
      ok(v, signed(v, { room_id: longRoom }));
      expect(rejected(v, signed(v, { room_id: "!r" + longRoom.slice(1) }))).toMatch(/room_id/);
    }
  });

  it("enforces the 65536-byte limit on the whole PDU, signatures included, unsigned excluded", () => {
    const base = canonicalJson(signed(v, { content: { body: "" } })).length;
    const fits = signed(v, { content: { body: "x".repeat(MAX_PDU_BYTES - base) } });
    expect(Buffer.byteLength(canonicalJson(fits))).toBe(MAX_PDU_BYTES);
    ok(v, { ...fits, unsigned: { padding: "y".repeat(1000) } });
    const over = signed(v, { content: { body: "x".repeat(MAX_PDU_BYTES - base + 1) } });
    expect(rejected(v, over)).toMatch(/65536/);
    // Multi-byte characters count as their UTF-8 length.
    expect(rejected(v, signed(v, { content: { body: "é".repeat((MAX_PDU_BYTES - base) / 2 + 1) } }))).toMatch(/65536/);
  });

  it("allows at most 20 prev_events and 10 auth_events", () => {
    const refs = (n: number): JsonValue[] => Array.from({ length: n }, (_, i) => ref(v, `$e${i}`));
    expect(ok(v, signed(v, { prev_events: refs(20), auth_events: refs(10) })).prev_events).toHaveLength(20);
    expect(rejected(v, signed(v, { prev_events: refs(21) }))).toMatch(/prev_events/);
    expect(rejected(v, signed(v, { auth_events: refs(11) }))).toMatch(/auth_events/);
    ok(v, signed(v, { prev_events: [], auth_events: [] }));
  });

  it("rejects numbers canonical JSON cannot carry, whatever the version", () => {
    for (const bad of [1.5, 2 ** 53, -(2 ** 53), 1e300]) {
      const pdu = { ...signed(v), content: { body: "x", n: bad } };
      expect(rejected(v, pdu)).toMatch(/canonical JSON/);
    }
    expect(rejected(v, { ...signed(v), origin_server_ts: 1.5 })).toMatch(/canonical JSON/);
    expect(rejected(v, { ...signed(v), content: { body: "lone \ud800 surrogate" } })).toMatch(/surrogate/);
    expect(rejected(v, { ...signed(v), content: { ["\udc00"]: 1 } })).toMatch(/surrogate/);
    // What JSON.parse cannot show (1e10, 1.0) the caller reports with the parser's flag.
    const text = '{"n":1e10}';
    expect(parseJson(text).hasNonCanonicalNumbers).toBe(true);
    expect(rejected(v, signed(v), { hasNonCanonicalNumbers: true })).toMatch(v.strictCanonicalJson ? /requires canonical JSON/ : /hashed/);
    ok(v, signed(v, { content: { body: "x", n: -0, max: 2 ** 53 - 1, min: -(2 ** 53 - 1) } }), { hasNonCanonicalNumbers: false });
  });

  it("rejects a non-object", () => {
    for (const bad of [null, [], "pdu", 5, undefined]) expect(rejected(v, bad)).toMatch(/object/);
  });
});

describe.each(LEGACY_IDS)("room version %s (v1 event format)", (id) => {
  const v = rv(id);
  it("requires event_id with a server name and [id, hash] pairs", () => {
    expect(rejected(v, signed(v, { event_id: undefined }))).toMatch(/event_id/);
    expect(rejected(v, signed(v, { event_id: "$nodomain" }))).toMatch(/event_id/);
    expect(rejected(v, signed(v, { event_id: "nodollar:example.org" }))).toMatch(/event_id/);
    expect(rejected(v, signed(v, { event_id: "$" + "e".repeat(243) + ":example.org" }))).toMatch(/event_id/);
    expect(rejected(v, signed(v, { prev_events: ["$prev:example.org"] }))).toMatch(/prev_events\[0\]/);
    expect(rejected(v, signed(v, { auth_events: [["$a:example.org"]] }))).toMatch(/auth_events\[0\]/);
    expect(rejected(v, signed(v, { auth_events: [["$a:example.org", { sha256: "h" }, "extra"]] }))).toMatch(/auth_events\[0\]/);
    expect(rejected(v, signed(v, { prev_events: [[1, { sha256: "h" }]] }))).toMatch(/prev_events\[0\]/);
    expect(rejected(v, signed(v, { prev_events: [["$p:example.org", "h"]] }))).toMatch(/prev_events\[0\]/);
    expect(rejected(v, signed(v, { prev_events: [["$p:example.org", { sha256: 5 }]] }))).toMatch(/prev_events\[0\]/);
    // An empty hash object is tolerated: nothing checks it and old servers emitted them.
    expect(ok(v, signed(v, { prev_events: [["$p:example.org", {}]] })).prev_events).toEqual(["$p:example.org"]);
  });
});

describe.each(HASH_IDS)("room version %s (hash event ids)", (id) => {
  const v = rv(id);
  it("rejects an event_id key and [id, hash] pairs", () => {
    expect(rejected(v, signed(v, { event_id: "$claimed" }))).toMatch(/event_id/);
    expect(rejected(v, signed(v, { prev_events: [["$prev", { sha256: "h" }]] }))).toMatch(/prev_events\[0\]/);
    expect(rejected(v, signed(v, { auth_events: [5] }))).toMatch(/auth_events\[0\]/);
    expect(rejected(v, signed(v, { auth_events: ["nodollar"] }))).toMatch(/auth_events\[0\]/);
  });
  it("derives the event id from the reference hash", () => {
    const pdu = signed(v);
    const e = ok(v, pdu);
    expect(e.event_id).toMatch(v.eventIdFormat === "v3" ? /^\$[A-Za-z0-9+/]{43}$/ : /^\$[A-Za-z0-9_-]{43}$/);
    // Changing a field the redaction removes changes the content hash, hence the event id too.
    expect(ok(v, signed(v, { content: { body: "other" } })).event_id).not.toBe(e.event_id);
  });
});

describe("redacts", () => {
  const pre11 = ALL.filter((id) => !rv(id).redactsInContent);
  it.each(pre11)("v%s: the top-level redacts of an m.room.redaction", (id) => {
    const v = rv(id);
    expect(ok(v, signed(v, { type: "m.room.redaction", redacts: "$target", content: { reason: "spam" } })).redacts).toBe("$target");
    expect(ok(v, signed(v, { type: "m.room.redaction", content: { redacts: "$target" } }))).not.toHaveProperty("redacts");
    expect(rejected(v, signed(v, { type: "m.room.redaction", redacts: 5 }))).toMatch(/redacts/);
    expect(rejected(v, signed(v, { type: "m.room.message", redacts: ["$x"] }))).toMatch(/redacts/);
    expect(ok(v, signed(v, { type: "m.room.message", redacts: "$x" }))).not.toHaveProperty("redacts");
  });
  it.each(["11", "12"])("v%s: content.redacts; a top-level redacts is an ignored extra key", (id) => {
    const v = rv(id);
    expect(ok(v, signed(v, { type: "m.room.redaction", content: { redacts: "$target", reason: "spam" } })).redacts).toBe("$target");
    const both = ok(v, signed(v, { type: "m.room.redaction", redacts: "$top", content: { redacts: "$target" } }));
    expect(both.redacts).toBe("$target");
    expect(ok(v, signed(v, { type: "m.room.redaction", redacts: "$top", content: {} }))).not.toHaveProperty("redacts");
    ok(v, signed(v, { type: "m.room.redaction", redacts: 5, content: { redacts: "$target" } }));
    expect(rejected(v, signed(v, { type: "m.room.redaction", content: { redacts: 5 } }))).toMatch(/content\.redacts/);
    // content.redacts means nothing on other event types.
    expect(ok(v, signed(v, { type: "m.room.message", content: { redacts: 5 } }))).not.toHaveProperty("redacts");
  });
});

describe("room version 12 create events", () => {
  const v12 = rv("12");
  const create = (fields: Record<string, JsonValue | undefined> = {}): JsonObject =>
    signed(v12, {
      type: "m.room.create",
      state_key: "",
      room_id: undefined,
      content: { room_version: "12" },
      depth: 1,
      prev_events: [],
      auth_events: [],
      ...fields,
    });

  it("have no room_id; the room id is the event id with ! for $", () => {
    const pdu = create();
    expect(pdu).not.toHaveProperty("room_id");
    const e = ok(v12, pdu);
    expect(e.event_id).toBe(computeEventId(v12, pdu));
    expect(e.room_id).toBe("!" + e.event_id.slice(1));
    expect(e.room_id).toBe(roomIdForCreateEvent(e.event_id));
    expect(e.room_id).toMatch(/^![A-Za-z0-9_-]{43}$/);
    expect(e.pdu).not.toHaveProperty("room_id");
    // The reference hash covers no room_id, so the derivation is not circular.
    expect(referenceHashInput(v12, pdu).toString()).not.toContain("room_id");
    // And events in that room name it.
    ok(v12, signed(v12, { room_id: e.room_id, prev_events: [e.event_id], auth_events: [] }));
  });

  it("with a room_id are rejected", () => {
    expect(rejected(v12, create({ room_id: V12_ROOM_ID }))).toMatch(/room_id/);
  });

  it("other versions still require room_id on create events", () => {
    for (const id of ["1", "3", "11"]) {
      const v = rv(id);
      expect(rejected(v, signed(v, { type: "m.room.create", state_key: "", room_id: undefined }))).toMatch(/room_id/);
    }
  });
});

describe("restricted joins", () => {
  const join = (via: JsonValue) => ({ type: "m.room.member", state_key: "@alice:example.org", content: { membership: "join", join_authorised_via_users_server: via } });
  it.each(ALL.filter((id) => rv(id).restrictedJoinRule))("v%s: join_authorised_via_users_server must be a user id on a join", (id) => {
    const v = rv(id);
    ok(v, signed(v, join("@admin:other.org")));
    expect(rejected(v, signed(v, join(5)))).toMatch(/join_authorised_via_users_server/);
    expect(rejected(v, signed(v, join("admin")))).toMatch(/join_authorised_via_users_server/);
  });
  it.each(["1", "6", "7"])("v%s: has no meaning, so no check", (id) => {
    const v = rv(id);
    ok(v, signed(v, join(5)));
  });
});

describe("room versions 1-5 with non-canonical numbers (Synapse accepted and signed these)", () => {
  const data = readFixture<NonStrictNumberEvents>("nonstrict-numbers-events.json");
  const signedOnes = data.events.filter((e) => e.pdu_json_text !== undefined);

  it.each(signedOnes.map((e) => [e.room_version, e] as const))("v%s: refused by parsePdu, yet the redacted form verifies", (id, e) => {
    const v = rv(id);
    const parsed = parseJson(e.pdu_json_text!);
    expect(parsed.hasNonCanonicalNumbers).toBe(true);
    expect(rejected(v, parsed.value, { hasNonCanonicalNumbers: true })).toMatch(/hashed/);
    // JSON.parse loses 1.5/1e10/-0.0 only inside content, which redaction removes: the signature and the event id
    // still check out, which is what lets a server reference or redact such an event.
    const pdu = parsed.value as JsonObject;
    expect(redactPdu(v, pdu)).toEqual(e.redacted);
    expect(referenceHashInput(v, pdu).toString()).toBe(e.canonical_json_of_redacted_without_signatures_unsigned);
    expect(verifyEventSignature(v, pdu, e.signature!.server_name, e.signature!.key_id, data.server_key.public_key_unpadded_base64)).toBe(true);
    if (v.eventIdFormat !== "v1") expect(computeEventId(v, pdu)).toBe(e.event_id);
  });

  it("room version 6 refused to create it", () => {
    const v6 = data.events.find((e) => e.room_version === "6");
    expect(v6?.pdu_json_text).toBeUndefined();
  });
});

describe("signature and unsigned independence", () => {
  it("parsing does not depend on unsigned and does not verify signatures", () => {
    const v = rv("10");
    const pdu = signed(v);
    const a = ok(v, { ...pdu, unsigned: { age_ts: 1 } });
    const b = ok(v, { ...pdu, signatures: { [SERVER]: { [KEY.keyId]: "forged" } } });
    expect(a.event_id).toBe(b.event_id);
  });
});
