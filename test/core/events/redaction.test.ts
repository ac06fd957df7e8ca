/**
 * Redaction rules written from the spec text, for every rule set and especially room versions 10–12, which the
 * Synapse oracle does not cover (v10 uses the v9 algorithm; v11 and v12 the v11 algorithm).
 */
import { describe, expect, it } from "vitest";
import { redactPdu } from "../../../src/core/events/index.js";
import type { JsonObject } from "../../../src/core/json/types.js";
import { getRoomVersion, ROOM_VERSIONS, type RoomVersion } from "../../../src/core/rooms/versions.js";

const rv = (id: string): RoomVersion => getRoomVersion(id)!;
const ALL = [...ROOM_VERSIONS.keys()];
const before11 = ALL.filter((id) => Number(id) < 11);
const from11 = ["11", "12"];

function pdu(type: string, content: JsonObject, extra: JsonObject = {}): JsonObject {
  return {
    type,
    content,
    room_id: "!room:example.org",
    sender: "@alice:example.org",
    origin: "example.org",
    origin_server_ts: 1700000000000,
    depth: 5,
    prev_events: ["$prev"],
    auth_events: ["$auth"],
    prev_state: [],
    membership: "join",
    hashes: { sha256: "hash" },
    signatures: { "example.org": { "ed25519:a": "sig" } },
    unsigned: { age_ts: 1, redacted_because: { type: "m.room.redaction" } },
    "org.example.top": "gone",
    ...extra,
  };
}

describe("top-level keys", () => {
  it.each(before11)("v%s keeps origin, membership and prev_state", (id) => {
    const out = redactPdu(rv(id), pdu("m.room.message", { body: "hi" }, { state_key: "" }));
    expect(Object.keys(out).sort()).toEqual(
      ["auth_events", "content", "depth", "hashes", "membership", "origin", "origin_server_ts", "prev_events", "prev_state", "room_id", "sender", "signatures", "state_key", "type"],
    );
    expect(out.content).toEqual({});
  });

  it.each(from11)("v%s no longer keeps origin, membership and prev_state", (id) => {
    const out = redactPdu(rv(id), pdu("m.room.message", { body: "hi" }, { state_key: "" }));
    expect(Object.keys(out).sort()).toEqual(
      ["auth_events", "content", "depth", "hashes", "origin_server_ts", "prev_events", "room_id", "sender", "signatures", "state_key", "type"],
    );
  });

  it.each(ALL)("v%s keeps event_id, drops unsigned and always has content", (id) => {
    const out = redactPdu(rv(id), { type: "m.room.message", event_id: "$e:example.org", unsigned: { age: 1 } });
    expect(out).toEqual({ type: "m.room.message", event_id: "$e:example.org", content: {} });
  });

  it("treats a __proto__ key as data", () => {
    const input = JSON.parse('{"type":"m.room.member","__proto__":{"polluted":true},"content":{"membership":"join","__proto__":{"x":1}}}') as JsonObject;
    const out = redactPdu(rv("11"), input);
    expect(Object.getPrototypeOf(out)).toBe(Object.prototype);
    expect(Object.getPrototypeOf(out.content)).toBe(Object.prototype);
    expect(out).toEqual({ type: "m.room.member", content: { membership: "join" } });
    expect(({} as JsonObject).polluted).toBeUndefined();
  });

  it("does not modify its input", () => {
    const input = pdu("m.room.power_levels", { users: { "@a:b": 100 }, invite: 0, other: 1 });
    const copy = structuredClone(input);
    redactPdu(rv("11"), input);
    expect(input).toEqual(copy);
  });
});

describe("m.room.member", () => {
  const content = {
    membership: "invite",
    displayname: "Bob",
    avatar_url: "mxc://x/y",
    join_authorised_via_users_server: "@admin:example.org",
    third_party_invite: { display_name: "bob@example.com", signed: { mxid: "@bob:example.org", token: "abc", signatures: {} } },
  };
  it.each(["1", "6", "7", "8"])("v%s keeps only membership", (id) => {
    expect(redactPdu(rv(id), pdu("m.room.member", content)).content).toEqual({ membership: "invite" });
  });
  it.each(["9", "10"])("v%s also keeps join_authorised_via_users_server", (id) => {
    expect(redactPdu(rv(id), pdu("m.room.member", content)).content).toEqual({
      membership: "invite",
      join_authorised_via_users_server: "@admin:example.org",
    });
  });
  it.each(from11)("v%s also keeps third_party_invite, holding only signed", (id) => {
    expect(redactPdu(rv(id), pdu("m.room.member", content)).content).toEqual({
      membership: "invite",
      join_authorised_via_users_server: "@admin:example.org",
      third_party_invite: { signed: { mxid: "@bob:example.org", token: "abc", signatures: {} } },
    });
  });
  it.each(from11)("v%s: a third_party_invite object without signed stays as {}, a non-object one goes (as Synapse)", (id) => {
    expect(redactPdu(rv(id), pdu("m.room.member", { membership: "invite", third_party_invite: { display_name: "x" } })).content).toEqual({
      membership: "invite",
      third_party_invite: {},
    });
    expect(redactPdu(rv(id), pdu("m.room.member", { membership: "invite", third_party_invite: "x" })).content).toEqual({ membership: "invite" });
  });
});

describe("m.room.create", () => {
  const content = { creator: "@alice:example.org", room_version: "11", "m.federate": false, predecessor: { room_id: "!old:x" }, additional_creators: ["@bob:x"] };
  it.each(before11)("v%s keeps only creator", (id) => {
    expect(redactPdu(rv(id), pdu("m.room.create", content, { state_key: "" })).content).toEqual({ creator: "@alice:example.org" });
  });
  it.each(from11)("v%s keeps all content", (id) => {
    const out = redactPdu(rv(id), pdu("m.room.create", content, { state_key: "" }));
    expect(out.content).toEqual(content);
  });
  it("v12: a create event without room_id stays without room_id", () => {
    const { room_id: _r, ...create } = pdu("m.room.create", { room_version: "12" }, { state_key: "" });
    const out = redactPdu(rv("12"), create);
    expect(Object.hasOwn(out, "room_id")).toBe(false);
    expect(out.content).toEqual({ room_version: "12" });
  });
});

describe("m.room.join_rules", () => {
  const content = { join_rule: "restricted", allow: [{ type: "m.room_membership", room_id: "!a:b" }], extra: 1 };
  it.each(["1", "6", "7"])("v%s keeps join_rule", (id) => {
    expect(redactPdu(rv(id), pdu("m.room.join_rules", content)).content).toEqual({ join_rule: "restricted" });
  });
  it.each(["8", "9", "10", "11", "12"])("v%s also keeps allow", (id) => {
    expect(redactPdu(rv(id), pdu("m.room.join_rules", content)).content).toEqual({ join_rule: "restricted", allow: content.allow });
  });
});

describe("m.room.power_levels", () => {
  const content = {
    ban: 50, events: { "m.room.name": 50 }, events_default: 0, invite: 0, kick: 50, redact: 50, state_default: 50,
    users: { "@alice:example.org": 100 }, users_default: 0, notifications: { room: 50 }, historical: 100,
  };
  const kept = { ban: 50, events: { "m.room.name": 50 }, events_default: 0, kick: 50, redact: 50, state_default: 50, users: { "@alice:example.org": 100 }, users_default: 0 };
  it.each(before11)("v%s keeps the eight listed keys but not invite", (id) => {
    expect(redactPdu(rv(id), pdu("m.room.power_levels", content)).content).toEqual(kept);
  });
  it.each(from11)("v%s also keeps invite", (id) => {
    expect(redactPdu(rv(id), pdu("m.room.power_levels", content)).content).toEqual({ ...kept, invite: 0 });
  });
});

describe("m.room.redaction", () => {
  it.each(before11)("v%s keeps neither the top-level nor content.redacts", (id) => {
    const out = redactPdu(rv(id), pdu("m.room.redaction", { redacts: "$x", reason: "spam" }, { redacts: "$x" }));
    expect(out.content).toEqual({});
    expect(Object.hasOwn(out, "redacts")).toBe(false);
  });
  it.each(from11)("v%s keeps content.redacts", (id) => {
    const out = redactPdu(rv(id), pdu("m.room.redaction", { redacts: "$x", reason: "spam" }, { redacts: "$x" }));
    expect(out.content).toEqual({ redacts: "$x" });
    expect(Object.hasOwn(out, "redacts")).toBe(false);
  });
});

describe("other types", () => {
  it.each(ALL)("v%s: history_visibility keeps history_visibility", (id) => {
    expect(redactPdu(rv(id), pdu("m.room.history_visibility", { history_visibility: "shared", x: 1 })).content).toEqual({ history_visibility: "shared" });
  });
  it.each(ALL)("v%s: m.room.aliases keeps aliases only in v1-v5", (id) => {
    const out = redactPdu(rv(id), pdu("m.room.aliases", { aliases: ["#a:b"] }, { state_key: "b" }));
    expect(out.content).toEqual(rv(id).redaction === "v1" ? { aliases: ["#a:b"] } : {});
  });
  it.each(ALL)("v%s: other events lose all content, including relations", (id) => {
    const out = redactPdu(rv(id), pdu("m.room.message", { body: "x", "m.relates_to": { rel_type: "m.thread", event_id: "$t" } }));
    expect(out.content).toEqual({});
  });
});
