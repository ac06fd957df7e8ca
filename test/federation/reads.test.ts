/**
 * What hs1 serves hs2 about its rooms: /event, /state, /state_ids, /event_auth, /backfill, /get_missing_events and
 * /timestamp_to_event, with server ACLs, the "server in room" rule and history visibility for servers. Requests
 * are signed by hs2's federation client; hs2's users get into hs1's rooms by a real remote join.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventIdOf } from "../../src/core/events/ids.js";
import type { JsonObject } from "../../src/core/json/types.js";
import { getRoomVersion } from "../../src/core/rooms/versions.js";
import { FederationError } from "../../src/federation/errors.js";
import type { QueryValue } from "../../src/federation/client.js";
import { startServerPair } from "../helpers/federation.js";
import { Client, registerUser, type TestUser } from "../helpers/http.js";
import { createRoom, enc, send, setState, V3 } from "../helpers/rooms.js";
import type { TestServer } from "../helpers/server.js";

const V1 = "/_matrix/federation/v1";
let hs1: TestServer;
let hs2: TestServer;
let c1: Client;
let c2: Client;
let alice: TestUser;
let bob: TestUser;

beforeAll(async () => {
  ({ hs1, hs2, c1, c2 } = await startServerPair());
  alice = await registerUser(c1);
  bob = await registerUser(c2);
});
afterAll(async () => {
  await Promise.all([hs1?.close(), hs2?.close()]);
});

interface Answer {
  status: number;
  body: JsonObject;
}

/** A request to hs1 signed by hs2; errors come back as their status and body. */
async function asHs2(method: "GET" | "POST", path: string, query?: Record<string, QueryValue>, body?: JsonObject): Promise<Answer> {
  const client = hs2.server.services.federationClient;
  try {
    const res = method === "GET" ? await client.get("hs1.test", path, query) : await client.post("hs1.test", path, body ?? {});
    return { status: 200, body: res };
  } catch (e) {
    if (e instanceof FederationError && e.reason === "http") return { status: e.status!, body: (e.details.body ?? {}) as JsonObject };
    throw e;
  }
}

function expectErr(a: Answer, status: number, errcode: string): void {
  expect({ status: a.status, errcode: a.body.errcode }).toEqual({ status, errcode });
}

/** Bob (hs2) joins an hs1 room through hs2, as a client would: make_join/send_join over federation. */
async function bobJoins(roomId: string): Promise<void> {
  const r = await c2.post(`${V3}/join/${enc(roomId)}?server_name=hs1.test`, {}, { token: bob.accessToken });
  expect(r.status, r.text).toBe(200);
}

const pdus = (a: Answer) => a.body.pdus as JsonObject[];
const bodiesOf = (list: JsonObject[]) => list.map((p) => (p.content as JsonObject).body);

describe("GET /event/{eventId}", () => {
  it("serves the PDU in a transaction-shaped body, as stored and signed", async () => {
    const roomId = await createRoom(c1, alice, { preset: "public_chat", initial_state: [{ type: "m.room.history_visibility", content: { history_visibility: "world_readable" } }] });
    const eventId = await send(c1, alice, roomId, "hello");
    const a = await asHs2("GET", `${V1}/event/${enc(eventId)}`);
    expect(a.status).toBe(200);
    expect(a.body).toEqual({ origin: "hs1.test", origin_server_ts: expect.any(Number), pdus: [expect.any(Object)] });
    const pdu = pdus(a)[0]!;
    expect(pdu).toMatchObject({ type: "m.room.message", room_id: roomId, sender: alice.userId, content: { body: "hello" } });
    expect(pdu.hashes).toHaveProperty("sha256");
    expect(Object.keys(pdu.signatures as JsonObject)).toEqual(["hs1.test"]);
    // v3+ PDUs carry no event_id (it is their reference hash) and no unsigned.
    expect(pdu).not.toHaveProperty("event_id");
    expect(pdu).not.toHaveProperty("unsigned");
    const version = getRoomVersion(String((await hs1.server.services.storage.rooms.get(roomId))!.room_version))!;
    expect(eventIdOf(version, pdu)).toBe(eventId);
  });

  it("includes event_id in room versions 1 and 2", async () => {
    const roomId = await createRoom(c1, alice, { preset: "public_chat", room_version: "1", initial_state: [{ type: "m.room.history_visibility", content: { history_visibility: "world_readable" } }] });
    const eventId = await send(c1, alice, roomId, "v1");
    expect(pdus(await asHs2("GET", `${V1}/event/${enc(eventId)}`))[0]!.event_id).toBe(eventId);
  });

  it("serves a redacted event redacted", async () => {
    const roomId = await createRoom(c1, alice, { preset: "public_chat", initial_state: [{ type: "m.room.history_visibility", content: { history_visibility: "world_readable" } }] });
    const eventId = await send(c1, alice, roomId, "regret");
    const r = await c1.put(`${V3}/rooms/${enc(roomId)}/redact/${enc(eventId)}/t1`, {}, { token: alice.accessToken });
    expect(r.status, r.text).toBe(200);
    const pdu = pdus(await asHs2("GET", `${V1}/event/${enc(eventId)}`))[0]!;
    expect(pdu.content).toEqual({});
    expect(pdu.signatures).toBeDefined();
  });

  it("404 M_NOT_FOUND for an unknown event", async () => {
    expectErr(await asHs2("GET", `${V1}/event/${enc("$nope")}`), 404, "M_NOT_FOUND");
  });

  it("403 M_FORBIDDEN to a server not in a room that is not world readable", async () => {
    const roomId = await createRoom(c1, alice, { preset: "public_chat" });
    const eventId = await send(c1, alice, roomId, "members only");
    expectErr(await asHs2("GET", `${V1}/event/${enc(eventId)}`), 403, "M_FORBIDDEN");
  });
});

describe("server ACLs", () => {
  it("403 M_FORBIDDEN on every room endpoint for a denied server, even one in the room", async () => {
    const roomId = await createRoom(c1, alice, { preset: "public_chat", initial_state: [{ type: "m.room.history_visibility", content: { history_visibility: "world_readable" } }] });
    await bobJoins(roomId);
    const eventId = await send(c1, alice, roomId, "before the ACL");
    expect((await asHs2("GET", `${V1}/event/${enc(eventId)}`)).status).toBe(200);
    expect((await asHs2("GET", `${V1}/state_ids/${enc(roomId)}`, { event_id: eventId })).status).toBe(200);

    await setState(c1, alice, roomId, "m.room.server_acl", "", { allow: ["*"], deny: ["HS2.test"] });
    const checks: Answer[] = [
      await asHs2("GET", `${V1}/event/${enc(eventId)}`),
      await asHs2("GET", `${V1}/state/${enc(roomId)}`, { event_id: eventId }),
      await asHs2("GET", `${V1}/state_ids/${enc(roomId)}`, { event_id: eventId }),
      await asHs2("GET", `${V1}/event_auth/${enc(roomId)}/${enc(eventId)}`),
      await asHs2("GET", `${V1}/backfill/${enc(roomId)}`, { v: [eventId], limit: 5 }),
      await asHs2("POST", `${V1}/get_missing_events/${enc(roomId)}`, undefined, { earliest_events: [], latest_events: [eventId] }),
      await asHs2("GET", `${V1}/timestamp_to_event/${enc(roomId)}`, { ts: 0, dir: "f" }),
    ];
    for (const a of checks) expectErr(a, 403, "M_FORBIDDEN");
  });

  it("ignores the requesting server's port and allows servers the ACL allows", async () => {
    const roomId = await createRoom(c1, alice, {
      preset: "public_chat",
      initial_state: [
        { type: "m.room.history_visibility", content: { history_visibility: "world_readable" } },
        { type: "m.room.server_acl", content: { allow: ["hs?.test"], deny: ["evil.test"] } },
      ],
    });
    const eventId = await send(c1, alice, roomId, "allowed");
    expect((await asHs2("GET", `${V1}/event/${enc(eventId)}`)).status).toBe(200);
  });
});

describe("the state at an event", () => {
  let roomId: string;
  let name1: string;
  let name2: string;
  let message: string;

  beforeAll(async () => {
    roomId = await createRoom(c1, alice, { preset: "public_chat", name: "one" });
    await bobJoins(roomId);
    name1 = (await hs1.server.services.storage.rooms.currentStateEventId(roomId, "m.room.name", ""))!;
    name2 = await setState(c1, alice, roomId, "m.room.name", "", { name: "two" });
    message = await send(c1, alice, roomId, "after the rename");
  });

  it("/state_ids is the state before the event (the event's own key as it was), with the auth chain", async () => {
    const atRename = await asHs2("GET", `${V1}/state_ids/${enc(roomId)}`, { event_id: name2 });
    expect(atRename.status).toBe(200);
    const ids = atRename.body.pdu_ids as string[];
    expect(ids).toContain(name1);
    expect(ids).not.toContain(name2);
    const atMessage = (await asHs2("GET", `${V1}/state_ids/${enc(roomId)}`, { event_id: message })).body.pdu_ids as string[];
    expect(atMessage).toContain(name2);
    expect(atMessage).not.toContain(name1);
    expect(atMessage).toHaveLength(ids.length);

    // The auth chain: every auth event of the state, recursively; the create event has none and is in it.
    const chain = atRename.body.auth_chain_ids as string[];
    const create = (await hs1.server.services.storage.rooms.currentStateEventId(roomId, "m.room.create", ""))!;
    expect(chain).toContain(create);
    expect(chain).not.toContain(name1);
  });

  it("/state returns the same, as PDUs", async () => {
    const a = await asHs2("GET", `${V1}/state/${enc(roomId)}`, { event_id: message });
    expect(a.status).toBe(200);
    const state = a.body.pdus as JsonObject[];
    const ids = (await asHs2("GET", `${V1}/state_ids/${enc(roomId)}`, { event_id: message })).body;
    expect(state).toHaveLength((ids.pdu_ids as string[]).length);
    expect(state.find((p) => p.type === "m.room.name")?.content).toEqual({ name: "two" });
    expect(state.filter((p) => p.type === "m.room.member").map((p) => p.state_key).sort()).toEqual([alice.userId, bob.userId].sort());
    expect((a.body.auth_chain as JsonObject[]).length).toBe((ids.auth_chain_ids as string[]).length);
    expect((a.body.auth_chain as JsonObject[]).some((p) => p.type === "m.room.create")).toBe(true);
  });

  it("404 M_NOT_FOUND for an unknown room or event, 400 without event_id", async () => {
    expectErr(await asHs2("GET", `${V1}/state_ids/${enc("!unknown:hs1.test")}`, { event_id: message }), 404, "M_NOT_FOUND");
    expectErr(await asHs2("GET", `${V1}/state_ids/${enc(roomId)}`, { event_id: "$unknown" }), 404, "M_NOT_FOUND");
    expectErr(await asHs2("GET", `${V1}/state/${enc(roomId)}`, { event_id: "$unknown" }), 404, "M_NOT_FOUND");
    expectErr(await asHs2("GET", `${V1}/state_ids/${enc(roomId)}`), 400, "M_MISSING_PARAM");
  });

  it("/event_auth returns the event's auth chain", async () => {
    const a = await asHs2("GET", `${V1}/event_auth/${enc(roomId)}/${enc(message)}`);
    expect(a.status).toBe(200);
    const types = (a.body.auth_chain as JsonObject[]).map((p) => `${String(p.type)}|${String(p.state_key)}`);
    expect(types).toEqual(expect.arrayContaining(["m.room.create|", "m.room.power_levels|", `m.room.member|${alice.userId}`]));
    expect(types).not.toContain("m.room.name|");
    expectErr(await asHs2("GET", `${V1}/event_auth/${enc(roomId)}/${enc("$unknown")}`), 404, "M_NOT_FOUND");
  });

  it("state and auth chains need the server in the room, even when the room is world readable", async () => {
    const open = await createRoom(c1, alice, { preset: "public_chat", initial_state: [{ type: "m.room.history_visibility", content: { history_visibility: "world_readable" } }] });
    const eventId = await send(c1, alice, open, "x");
    expectErr(await asHs2("GET", `${V1}/state_ids/${enc(open)}`, { event_id: eventId }), 403, "M_FORBIDDEN");
    expectErr(await asHs2("GET", `${V1}/state/${enc(open)}`, { event_id: eventId }), 403, "M_FORBIDDEN");
    expectErr(await asHs2("GET", `${V1}/event_auth/${enc(open)}/${enc(eventId)}`), 403, "M_FORBIDDEN");
    // ... while the visibility-filtered endpoints answer.
    expect((await asHs2("GET", `${V1}/event/${enc(eventId)}`)).status).toBe(200);
  });
});

describe("backfill and missing events", () => {
  let roomId: string;
  const ids: string[] = [];

  beforeAll(async () => {
    roomId = await createRoom(c1, alice, { preset: "public_chat", initial_state: [{ type: "m.room.history_visibility", content: { history_visibility: "world_readable" } }] });
    for (let i = 0; i < 110; i++) ids.push(await send(c1, alice, roomId, `m${i}`));
  });

  it("/backfill walks back from the given events, newest first, including them", async () => {
    const a = await asHs2("GET", `${V1}/backfill/${enc(roomId)}`, { v: [ids[109]!], limit: 3 });
    expect(a.status).toBe(200);
    expect(a.body).toMatchObject({ origin: "hs1.test", origin_server_ts: expect.any(Number) });
    expect(bodiesOf(pdus(a))).toEqual(["m109", "m108", "m107"]);
    // From two points at once: breadth-first by depth, no duplicates.
    const two = await asHs2("GET", `${V1}/backfill/${enc(roomId)}`, { v: [ids[50]!, ids[52]!], limit: 4 });
    expect(bodiesOf(pdus(two))).toEqual(["m52", "m51", "m50", "m49"]);
  });

  it("/backfill caps the limit at 100, and reaches the room's creation", async () => {
    expect(pdus(await asHs2("GET", `${V1}/backfill/${enc(roomId)}`, { v: [ids[109]!], limit: 1000 }))).toHaveLength(100);
    const early = pdus(await asHs2("GET", `${V1}/backfill/${enc(roomId)}`, { v: [ids[2]!], limit: 100 }));
    expect(early[early.length - 1]!.type).toBe("m.room.create");
  });

  it("/backfill: 400 without v or limit, 404 for an unknown room", async () => {
    expectErr(await asHs2("GET", `${V1}/backfill/${enc(roomId)}`, { limit: 3 }), 400, "M_MISSING_PARAM");
    expectErr(await asHs2("GET", `${V1}/backfill/${enc(roomId)}`, { v: [ids[3]!] }), 400, "M_MISSING_PARAM");
    expectErr(await asHs2("GET", `${V1}/backfill/${enc("!unknown:hs1.test")}`, { v: [ids[3]!], limit: 3 }), 404, "M_NOT_FOUND");
  });

  it("/get_missing_events returns the events between earliest and latest, oldest first", async () => {
    const a = await asHs2("POST", `${V1}/get_missing_events/${enc(roomId)}`, undefined, { earliest_events: [ids[10]!], latest_events: [ids[14]!], limit: 10 });
    expect(a.status).toBe(200);
    expect(bodiesOf(a.body.events as JsonObject[])).toEqual(["m11", "m12", "m13"]);
  });

  it("/get_missing_events: default limit 10, capped at 20, and min_depth", async () => {
    const dflt = await asHs2("POST", `${V1}/get_missing_events/${enc(roomId)}`, undefined, { earliest_events: [], latest_events: [ids[100]!] });
    expect(bodiesOf(dflt.body.events as JsonObject[])).toEqual(Array.from({ length: 10 }, (_, i) => `m${90 + i}`));
    const capped = await asHs2("POST", `${V1}/get_missing_events/${enc(roomId)}`, undefined, { earliest_events: [], latest_events: [ids[100]!], limit: 1000 });
    expect(capped.body.events as JsonObject[]).toHaveLength(20);
    const depth = Number(((await asHs2("GET", `${V1}/event/${enc(ids[98]!)}`)).body.pdus as JsonObject[])[0]!.depth);
    const shallow = await asHs2("POST", `${V1}/get_missing_events/${enc(roomId)}`, undefined, { earliest_events: [], latest_events: [ids[100]!], min_depth: depth });
    expect(bodiesOf(shallow.body.events as JsonObject[])).toEqual(["m98", "m99"]);
  });

  it("/get_missing_events: 400 for a malformed body; missing lists read as empty (as Synapse does)", async () => {
    expectErr(await asHs2("POST", `${V1}/get_missing_events/${enc(roomId)}`, undefined, { earliest_events: "x", latest_events: [ids[3]!] }), 400, "M_BAD_JSON");
    const noEarliest = await asHs2("POST", `${V1}/get_missing_events/${enc(roomId)}`, undefined, { latest_events: [ids[3]!], limit: 2 });
    expect(noEarliest.status).toBe(200);
    expect(noEarliest.body.events as JsonObject[]).toHaveLength(2);
  });

  it("/timestamp_to_event finds the closest event in either direction", async () => {
    const first = (await asHs2("GET", `${V1}/timestamp_to_event/${enc(roomId)}`, { ts: 0, dir: "f" })).body;
    expect(first).toEqual({ event_id: expect.any(String), origin_server_ts: expect.any(Number) });
    const created = await hs1.server.services.storage.rooms.currentStateEventId(roomId, "m.room.create", "");
    expect(first.event_id).toBe(created);
    const last = (await asHs2("GET", `${V1}/timestamp_to_event/${enc(roomId)}`, { ts: Date.now() + 60_000, dir: "b" })).body;
    expect(last.event_id).toBe(ids[109]);
    expectErr(await asHs2("GET", `${V1}/timestamp_to_event/${enc(roomId)}`, { ts: Date.now() + 60_000, dir: "f" }), 404, "M_NOT_FOUND");
    expectErr(await asHs2("GET", `${V1}/timestamp_to_event/${enc(roomId)}`, { ts: 0, dir: "x" }), 400, "M_INVALID_PARAM");
  });

  it("a server not in a room that is not world readable gets 403", async () => {
    const closed = await createRoom(c1, alice, { preset: "private_chat" });
    const e = await send(c1, alice, closed, "secret");
    expectErr(await asHs2("GET", `${V1}/backfill/${enc(closed)}`, { v: [e], limit: 5 }), 403, "M_FORBIDDEN");
    expectErr(await asHs2("POST", `${V1}/get_missing_events/${enc(closed)}`, undefined, { earliest_events: [], latest_events: [e] }), 403, "M_FORBIDDEN");
    expectErr(await asHs2("GET", `${V1}/timestamp_to_event/${enc(closed)}`, { ts: 0, dir: "f" }), 403, "M_FORBIDDEN");
  });
});

describe("history visibility for servers", () => {
  it("joined: events from before the server's user joined are served redacted, later ones in full", async () => {
    const roomId = await createRoom(c1, alice, { preset: "public_chat", initial_state: [{ type: "m.room.history_visibility", content: { history_visibility: "joined" } }] });
    const before = await send(c1, alice, roomId, "before bob");
    await bobJoins(roomId);
    const after = await send(c1, alice, roomId, "after bob");

    expect(pdus(await asHs2("GET", `${V1}/event/${enc(before)}`))[0]!.content).toEqual({});
    expect(pdus(await asHs2("GET", `${V1}/event/${enc(after)}`))[0]!.content).toMatchObject({ body: "after bob" });
    const back = pdus(await asHs2("GET", `${V1}/backfill/${enc(roomId)}`, { v: [after], limit: 50 }));
    const messages = back.filter((p) => p.type === "m.room.message");
    expect(messages.map((p) => (p.content as JsonObject).body)).toEqual(["after bob", undefined]);
    // Bob's own join is visible (the state after it has him joined); the redacted form keeps what auth needs.
    const join = back.find((p) => p.type === "m.room.member" && p.state_key === bob.userId)!;
    expect((join.content as JsonObject).membership).toBe("join");
    const missing = await asHs2("POST", `${V1}/get_missing_events/${enc(roomId)}`, undefined, { earliest_events: [], latest_events: [after], limit: 20 });
    const redactedBefore = (missing.body.events as JsonObject[]).find((p) => p.type === "m.room.message")!;
    expect(redactedBefore.content).toEqual({});
  });

  it("shared: every event is served in full to a server in the room", async () => {
    const roomId = await createRoom(c1, alice, { preset: "public_chat", initial_state: [{ type: "m.room.history_visibility", content: { history_visibility: "shared" } }] });
    const before = await send(c1, alice, roomId, "before bob");
    await bobJoins(roomId);
    expect(pdus(await asHs2("GET", `${V1}/event/${enc(before)}`))[0]!.content).toMatchObject({ body: "before bob" });
  });

  it("world_readable then joined: a server outside the room sees the open period only", async () => {
    const roomId = await createRoom(c1, alice, { preset: "public_chat", initial_state: [{ type: "m.room.history_visibility", content: { history_visibility: "joined" } }] });
    const hidden = await send(c1, alice, roomId, "hidden");
    const change = await setState(c1, alice, roomId, "m.room.history_visibility", "", { history_visibility: "world_readable" });
    const open = await send(c1, alice, roomId, "open");
    const events = pdus(await asHs2("GET", `${V1}/backfill/${enc(roomId)}`, { v: [open], limit: 5 }));
    expect(events.map((p) => p.type)).toEqual(["m.room.message", "m.room.history_visibility", "m.room.message", expect.any(String), expect.any(String)]);
    expect(events[0]!.content).toMatchObject({ body: "open" });
    expect(events[1]!.content).toEqual({ history_visibility: "world_readable" });
    expect(events[2]!.content).toEqual({});
    expect(pdus(await asHs2("GET", `${V1}/event/${enc(change)}`))[0]!.content).toEqual({ history_visibility: "world_readable" });
    expect(pdus(await asHs2("GET", `${V1}/event/${enc(hidden)}`))[0]!.content).toEqual({});
  });
});
