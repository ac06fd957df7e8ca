/**
 * GET /sync over HTTP (spec "Syncing", "Filtering"): the response's shape, initial and incremental syncs,
 * long-polling, full_state, set_presence, filters (inline and stored), timeline limits, lazy-loaded members,
 * left/invited/knocked rooms, and prev_batch continuing into /messages.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client, expectError, login, registerUser, type TestUser } from "../helpers/http.js";
import {
  V3,
  bodies,
  createRoom,
  enc,
  findState,
  inviteUser,
  joinRoom,
  leaveRoom,
  messages,
  roomWith,
  send,
  setState,
  sync,
  syncPath,
  syncUntil,
  type ClientEvent,
  type SyncResponse,
} from "../helpers/rooms.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

let ts: TestServer;
let c: Client;

beforeAll(async () => {
  ts = await startTestServer();
  c = new Client(ts.baseUrl);
});
afterAll(async () => {
  await ts?.close();
});

const user = () => registerUser(c);

async function sendMany(u: TestUser, roomId: string, n: number, prefix = "m"): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) ids.push(await send(c, u, roomId, `${prefix}${i}`));
  return ids;
}

const timelineIds = (s: SyncResponse, roomId: string) => (s.rooms.join[roomId]?.timeline.events ?? []).map((e) => e.event_id);

describe("initial sync", () => {
  it("has every top-level section and the joined room's sections", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await roomWith(c, alice, [bob], { name: "Shape" });
    await send(c, bob, roomId, "hi");
    const s = await sync(c, alice);
    expect(typeof s.next_batch).toBe("string");
    expect(s.rooms).toEqual({ join: expect.any(Object), invite: expect.any(Object), leave: expect.any(Object), knock: expect.any(Object) });
    expect(Array.isArray(s.account_data.events)).toBe(true);
    expect(Array.isArray(s.presence.events)).toBe(true);
    expect(Array.isArray(s.to_device.events)).toBe(true);
    expect(s.device_lists).toEqual({ changed: expect.any(Array), left: expect.any(Array) });
    const r = s.rooms.join[roomId]!;
    expect(r).toBeDefined();
    expect(Array.isArray(r.timeline.events)).toBe(true);
    expect(typeof r.timeline.limited).toBe("boolean");
    expect(typeof r.timeline.prev_batch).toBe("string");
    expect(Array.isArray(r.state.events)).toBe(true);
    expect(Array.isArray(r.ephemeral.events)).toBe(true);
    expect(Array.isArray(r.account_data.events)).toBe(true);
    expect(r.unread_notifications).toEqual({ notification_count: expect.any(Number), highlight_count: expect.any(Number) });
    expect(r.summary["m.joined_member_count"]).toBe(2);
    expect(r.summary["m.invited_member_count"]).toBe(0);
    const last = r.timeline.events[r.timeline.events.length - 1]!;
    expect(last).toMatchObject({ type: "m.room.message", sender: bob.userId, content: { msgtype: "m.text", body: "hi" } });
    expect(typeof last.event_id).toBe("string");
    expect(typeof last.origin_server_ts).toBe("number");
    expect(last.room_id).toBeUndefined();
    // Timeline and state together make the room: nothing is in both.
    const all = [...r.state.events, ...r.timeline.events];
    expect(new Set(all.map((e) => e.event_id)).size).toBe(all.length);
    const stateTypes = new Set(all.filter((e) => e.state_key !== undefined).map((e) => e.type));
    for (const t of ["m.room.create", "m.room.power_levels", "m.room.join_rules", "m.room.name", "m.room.member"]) expect(stateTypes.has(t), t).toBe(true);
  });

  it("limits the timeline to 10 by default, with limited and the state before it", async () => {
    const alice = await user();
    const roomId = await createRoom(c, alice, { name: "Busy" });
    await sendMany(alice, roomId, 15);
    const s = await sync(c, alice);
    const r = s.rooms.join[roomId]!;
    expect(r.timeline.events).toHaveLength(10);
    expect(r.timeline.limited).toBe(true);
    expect(bodies(r.timeline.events)).toEqual(Array.from({ length: 10 }, (_, i) => `m${i + 5}`));
    expect(findState(r.state.events, "m.room.create")).toBeDefined();
    expect(findState(r.state.events, "m.room.name")!.content).toEqual({ name: "Busy" });
    // A short room is not limited.
    const small = await createRoom(c, alice);
    const s2 = await sync(c, alice);
    expect(s2.rooms.join[small]!.timeline.limited).toBe(false);
  });

  it("summary heroes name unnamed rooms; counts include invites", async () => {
    const alice = await user();
    const bob = await user();
    const carol = await user();
    const dave = await user();
    const roomId = await roomWith(c, alice, [bob, carol]);
    await inviteUser(c, alice, roomId, dave.userId);
    const s = await sync(c, alice);
    const summary = s.rooms.join[roomId]!.summary;
    expect(summary["m.joined_member_count"]).toBe(3);
    expect(summary["m.invited_member_count"]).toBe(1);
    expect([...summary["m.heroes"]!].sort()).toEqual([bob.userId, carol.userId, dave.userId].sort());
    expect(summary["m.heroes"]).not.toContain(alice.userId);
    // A named room needs no heroes.
    const named = await roomWith(c, alice, [bob], { name: "Named" });
    const s2 = await sync(c, alice);
    expect(s2.rooms.join[named]!.summary["m.heroes"]).toBeUndefined();
  });

  it("carries global and room account data", async () => {
    const alice = await user();
    const roomId = await createRoom(c, alice);
    await c.put(`${V3}/user/${enc(alice.userId)}/account_data/org.example.global`, { g: 1 }, { token: alice.accessToken });
    await c.put(`${V3}/user/${enc(alice.userId)}/rooms/${enc(roomId)}/account_data/org.example.room`, { r: 2 }, { token: alice.accessToken });
    const s = await sync(c, alice);
    expect(s.account_data.events).toContainEqual({ type: "org.example.global", content: { g: 1 } });
    expect(s.rooms.join[roomId]!.account_data.events).toContainEqual({ type: "org.example.room", content: { r: 2 } });
    const before = s.next_batch;
    await c.put(`${V3}/user/${enc(alice.userId)}/rooms/${enc(roomId)}/account_data/org.example.room`, { r: 3 }, { token: alice.accessToken });
    const inc = await sync(c, alice, { since: before });
    expect(inc.rooms.join[roomId]!.account_data.events).toEqual([{ type: "org.example.room", content: { r: 3 } }]);
    expect(inc.rooms.join[roomId]!.timeline.events).toEqual([]);
  });

  it("shows transaction_id only to the sending device", async () => {
    const alice = await user();
    const roomId = await createRoom(c, alice);
    const res = await c.put(`${V3}/rooms/${enc(roomId)}/send/m.room.message/my-txn`, { msgtype: "m.text", body: "t" }, { token: alice.accessToken });
    const mine = (await sync(c, alice)).rooms.join[roomId]!.timeline.events.find((e) => e.event_id === res.body.event_id)!;
    expect(mine.unsigned!.transaction_id).toBe("my-txn");
    const other = await login(c, alice.userId, alice.password);
    const otherDevice: TestUser = { ...alice, accessToken: other.body.access_token as string, deviceId: other.body.device_id as string };
    const theirs = (await sync(c, otherDevice)).rooms.join[roomId]!.timeline.events.find((e) => e.event_id === res.body.event_id)!;
    expect(theirs.unsigned?.transaction_id).toBeUndefined();
  });

  it("rejects a malformed since token and set_presence with 400", async () => {
    const alice = await user();
    expectError(await c.get(syncPath({ since: "garbage" }), { token: alice.accessToken }), 400, "M_INVALID_PARAM");
    expectError(await c.get(syncPath({ set_presence: "dancing" }), { token: alice.accessToken }), 400, "M_INVALID_PARAM");
    expectError(await c.get(syncPath({ timeout: "soon" }), { token: alice.accessToken }), 400, "M_INVALID_PARAM");
    expectError(await c.get(syncPath({ full_state: "maybe" }), { token: alice.accessToken }), 400, "M_INVALID_PARAM");
    expectError(await c.get(syncPath()), 401, "M_MISSING_TOKEN");
  });
});

describe("incremental sync", () => {
  it("returns only what happened since the token", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await roomWith(c, alice, [bob]);
    await send(c, alice, roomId, "old");
    const first = await sync(c, bob);
    const nothing = await sync(c, bob, { since: first.next_batch });
    expect(nothing.rooms.join[roomId]).toBeUndefined();
    expect(typeof nothing.next_batch).toBe("string");
    await send(c, alice, roomId, "new1");
    await setState(c, alice, roomId, "m.room.topic", "", { topic: "T" });
    await send(c, alice, roomId, "new2");
    const inc = await sync(c, bob, { since: first.next_batch });
    const r = inc.rooms.join[roomId]!;
    expect(r.timeline.events.map((e) => e.content.body ?? e.type)).toEqual(["new1", "m.room.topic", "new2"]);
    expect(r.timeline.limited).toBe(false);
    expect(r.state.events).toEqual([]);
    // The next token continues from there.
    const after = await sync(c, bob, { since: inc.next_batch });
    expect(after.rooms.join[roomId]).toBeUndefined();
  });

  it("a limited incremental timeline carries the state changes in the gap", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await roomWith(c, alice, [bob]);
    const filter = { room: { timeline: { limit: 2 } } };
    const first = await sync(c, bob, { filter });
    await setState(c, alice, roomId, "m.room.name", "", { name: "Gap name" });
    await sendMany(alice, roomId, 5);
    const inc = await sync(c, bob, { since: first.next_batch, filter });
    const r = inc.rooms.join[roomId]!;
    expect(bodies(r.timeline.events)).toEqual(["m3", "m4"]);
    expect(r.timeline.limited).toBe(true);
    expect(findState(r.state.events, "m.room.name")!.content).toEqual({ name: "Gap name" });
    // Only changes: unchanged state is not repeated.
    expect(findState(r.state.events, "m.room.create")).toBeUndefined();
  });

  it("full_state returns the whole state even when nothing changed", async () => {
    const alice = await user();
    const roomId = await createRoom(c, alice, { name: "Full" });
    const first = await sync(c, alice);
    const full = await sync(c, alice, { since: first.next_batch, full_state: true });
    const r = full.rooms.join[roomId]!;
    expect(r).toBeDefined();
    expect(findState([...r.state.events, ...r.timeline.events], "m.room.create")).toBeDefined();
    expect(findState([...r.state.events, ...r.timeline.events], "m.room.name")!.content).toEqual({ name: "Full" });
  });

  it("a room joined since the token comes with its state and recent timeline", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await createRoom(c, alice, { preset: "public_chat", name: "Joined later" });
    await send(c, alice, roomId, "history");
    const first = await sync(c, bob);
    expect(first.rooms.join[roomId]).toBeUndefined();
    await joinRoom(c, bob, roomId);
    const inc = await sync(c, bob, { since: first.next_batch });
    const r = inc.rooms.join[roomId]!;
    const all = [...r.state.events, ...r.timeline.events];
    expect(findState(all, "m.room.create")).toBeDefined();
    expect(findState(all, "m.room.name")!.content).toEqual({ name: "Joined later" });
    expect(findState(all, "m.room.member", bob.userId)!.content.membership).toBe("join");
    expect(bodies(r.timeline.events)).toContain("history");
  });

  it("a room left since the token appears under leave, with the events up to the leave", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await roomWith(c, alice, [bob]);
    const first = await sync(c, bob);
    await send(c, alice, roomId, "before leave");
    await leaveRoom(c, bob, roomId);
    await send(c, alice, roomId, "after leave");
    const inc = await sync(c, bob, { since: first.next_batch });
    expect(inc.rooms.join[roomId]).toBeUndefined();
    const left = inc.rooms.leave[roomId]!;
    expect(left).toBeDefined();
    const tl = left.timeline.events;
    expect(bodies(tl)).toEqual(["before leave"]);
    expect(tl[tl.length - 1]).toMatchObject({ type: "m.room.member", state_key: bob.userId, content: { membership: "leave" } });
    // And then it is gone from later incremental syncs.
    const later = await sync(c, bob, { since: inc.next_batch });
    expect(later.rooms.leave[roomId]).toBeUndefined();
  });

  it("joining and leaving between two syncs still gives the room's state under leave", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await createRoom(c, alice, { preset: "public_chat", name: "Brief visit" });
    const first = await sync(c, bob);
    await joinRoom(c, bob, roomId);
    await send(c, alice, roomId, "while there");
    await leaveRoom(c, bob, roomId);
    const inc = await sync(c, bob, { since: first.next_batch });
    const left = inc.rooms.leave[roomId]!;
    const all = [...left.state.events, ...left.timeline.events];
    expect(findState(all, "m.room.create")).toBeDefined();
    expect(findState(all, "m.room.name")!.content).toEqual({ name: "Brief visit" });
    expect(bodies(left.timeline.events)).toContain("while there");
  });

  it("a displayname change is an incremental update, not a full state resend", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await roomWith(c, alice, [bob], { name: "Names" });
    const first = await sync(c, alice);
    await c.put(`${V3}/profile/${enc(bob.userId)}/displayname`, { displayname: "Bobbo" }, { token: bob.accessToken });
    const inc = await syncUntil(c, alice, first.next_batch, (s) => (s.rooms.join[roomId]?.timeline.events ?? []).some((e) => e.state_key === bob.userId));
    const r = inc.rooms.join[roomId]!;
    expect(r.state.events).toEqual([]);
    expect(r.timeline.events.find((e) => e.state_key === bob.userId)!.content).toMatchObject({ membership: "join", displayname: "Bobbo" });
  });

  it("the summary has at most 5 heroes and follows membership changes", async () => {
    const alice = await user();
    const others = await Promise.all(Array.from({ length: 6 }, () => user()));
    const roomId = await roomWith(c, alice, others);
    const first = await sync(c, alice);
    expect(first.rooms.join[roomId]!.summary["m.heroes"]).toHaveLength(5);
    expect(first.rooms.join[roomId]!.summary["m.joined_member_count"]).toBe(7);
    await leaveRoom(c, others[0]!, roomId);
    const inc = await sync(c, alice, { since: first.next_batch });
    expect(inc.rooms.join[roomId]!.summary["m.joined_member_count"]).toBe(6);
  });

  it("kicks and bans show under leave too", async () => {
    const alice = await user();
    const bob = await user();
    const carol = await user();
    const roomId = await roomWith(c, alice, [bob, carol]);
    const b0 = await sync(c, bob);
    const c0 = await sync(c, carol);
    await c.post(`${V3}/rooms/${enc(roomId)}/kick`, { user_id: bob.userId }, { token: alice.accessToken });
    await c.post(`${V3}/rooms/${enc(roomId)}/ban`, { user_id: carol.userId }, { token: alice.accessToken });
    const b1 = await sync(c, bob, { since: b0.next_batch });
    const kicked = b1.rooms.leave[roomId]!.timeline.events.at(-1)!;
    expect(kicked).toMatchObject({ sender: alice.userId, state_key: bob.userId, content: { membership: "leave" } });
    const c1 = await sync(c, carol, { since: c0.next_batch });
    expect(c1.rooms.leave[roomId]!.timeline.events.at(-1)!.content.membership).toBe("ban");
  });

  it("include_leave shows left rooms in an initial sync; without it they are absent", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await roomWith(c, alice, [bob]);
    await send(c, bob, roomId, "bye soon");
    await leaveRoom(c, bob, roomId);
    const plain = await sync(c, bob);
    expect(plain.rooms.leave[roomId]).toBeUndefined();
    expect(plain.rooms.join[roomId]).toBeUndefined();
    const withLeave = await sync(c, bob, { filter: { room: { include_leave: true } } });
    const left = withLeave.rooms.leave[roomId]!;
    expect(left).toBeDefined();
    expect(bodies(left.timeline.events)).toContain("bye soon");
    expect(left.timeline.events.at(-1)!.content.membership).toBe("leave");
  });
});

describe("invites and knocks in /sync", () => {
  it("an invite appears under invite with stripped state, incrementally too, then moves to join", async () => {
    const alice = await user();
    const bob = await user();
    const first = await sync(c, bob);
    const roomId = await createRoom(c, alice, { name: "Invited", topic: "about", room_version: "11" });
    await inviteUser(c, alice, roomId, bob.userId);
    const inc = await sync(c, bob, { since: first.next_batch });
    const inv = inc.rooms.invite[roomId]!;
    expect(inv).toBeDefined();
    const stripped = inv.invite_state.events;
    for (const e of stripped) expect(Object.keys(e)).toEqual(expect.arrayContaining(["type", "state_key", "sender", "content"]));
    expect(stripped.find((e) => e.type === "m.room.name")!.content).toEqual({ name: "Invited" });
    expect(stripped.find((e) => e.type === "m.room.create")).toBeDefined();
    expect(stripped.find((e) => e.type === "m.room.join_rules")!.content).toEqual({ join_rule: "invite" });
    expect(stripped.find((e) => e.type === "m.room.member" && e.state_key === bob.userId)!.content.membership).toBe("invite");
    // The inviter's member event says who invited.
    expect(stripped.find((e) => e.type === "m.room.member" && e.state_key === alice.userId)).toBeDefined();
    // Not repeated in the next incremental sync.
    const again = await sync(c, bob, { since: inc.next_batch });
    expect(again.rooms.invite[roomId]).toBeUndefined();
    await joinRoom(c, bob, roomId);
    const joined = await sync(c, bob, { since: inc.next_batch });
    expect(joined.rooms.invite[roomId]).toBeUndefined();
    expect(joined.rooms.join[roomId]).toBeDefined();
  });

  it("a rejected invite shows under leave", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await createRoom(c, alice, { invite: [bob.userId] });
    const first = await sync(c, bob);
    expect(first.rooms.invite[roomId]).toBeDefined();
    await leaveRoom(c, bob, roomId);
    const inc = await sync(c, bob, { since: first.next_batch });
    expect(inc.rooms.invite[roomId]).toBeUndefined();
    expect(inc.rooms.leave[roomId]).toBeDefined();
  });

  it("a knock appears under knock with knock_state", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await createRoom(c, alice, { name: "Knockable", initial_state: [{ type: "m.room.join_rules", content: { join_rule: "knock" } }] });
    const first = await sync(c, bob);
    await c.post(`${V3}/knock/${enc(roomId)}`, {}, { token: bob.accessToken });
    const inc = await sync(c, bob, { since: first.next_batch });
    const k = inc.rooms.knock[roomId]!;
    expect(k).toBeDefined();
    expect(k.knock_state.events.find((e) => e.type === "m.room.name")!.content).toEqual({ name: "Knockable" });
    expect(k.knock_state.events.find((e) => e.type === "m.room.join_rules")!.content).toEqual({ join_rule: "knock" });
    expect(k.knock_state.events.find((e) => e.type === "m.room.member" && e.state_key === bob.userId)!.content.membership).toBe("knock");
    const initial = await sync(c, bob);
    expect(initial.rooms.knock[roomId]).toBeDefined();
  });
});

describe("long-polling", () => {
  it("a waiting /sync returns promptly when another user sends", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await roomWith(c, alice, [bob]);
    const first = await sync(c, bob);
    const started = Date.now();
    const waiting = c.get<SyncResponse>(syncPath({ since: first.next_batch, timeout: 20_000 }), { token: bob.accessToken });
    const eventId = await send(c, alice, roomId, "wake up");
    const res = await waiting;
    const elapsed = Date.now() - started;
    expect(res.status).toBe(200);
    // Well before the 20 s timeout (the bound is loose on purpose: this is not a benchmark).
    expect(elapsed).toBeLessThan(10_000);
    let s = res.body;
    // If the response raced ahead of the send (nothing yet), the next long-poll must carry it.
    if (!timelineIds(s, roomId).includes(eventId)) s = await syncUntil(c, bob, s.next_batch, (r) => timelineIds(r, roomId).includes(eventId));
    expect(timelineIds(s, roomId)).toContain(eventId);
  });

  it("wakes for an invite to a room the user is not in yet", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await createRoom(c, alice);
    const first = await sync(c, bob);
    const started = Date.now();
    const waiting = c.get<SyncResponse>(syncPath({ since: first.next_batch, timeout: 20_000 }), { token: bob.accessToken });
    await inviteUser(c, alice, roomId, bob.userId);
    let s = (await waiting).body;
    expect(Date.now() - started).toBeLessThan(10_000);
    if (!s.rooms.invite[roomId]) s = await syncUntil(c, bob, s.next_batch, (r) => r.rooms.invite[roomId] !== undefined);
    expect(s.rooms.invite[roomId]).toBeDefined();
  });

  it("times out with an empty response and a usable next_batch", async () => {
    const alice = await user();
    const roomId = await createRoom(c, alice);
    const first = await sync(c, alice);
    const started = Date.now();
    const res = await c.get<SyncResponse>(syncPath({ since: first.next_batch, timeout: 500 }), { token: alice.accessToken });
    const elapsed = Date.now() - started;
    expect(res.status).toBe(200);
    expect(elapsed).toBeGreaterThanOrEqual(400);
    expect(typeof res.body.next_batch).toBe("string");
    expect(Object.keys(res.body.rooms.join)).toEqual([]);
    await send(c, alice, roomId, "later");
    const next = await sync(c, alice, { since: res.body.next_batch });
    expect(bodies(next.rooms.join[roomId]!.timeline.events)).toEqual(["later"]);
  });

  it("an initial sync never waits", async () => {
    const alice = await user();
    await createRoom(c, alice);
    const started = Date.now();
    const res = await c.get(syncPath({ timeout: 30_000 }), { token: alice.accessToken });
    expect(res.status).toBe(200);
    expect(Date.now() - started).toBeLessThan(10_000);
  });
});

describe("set_presence", () => {
  it("sets the user's presence from the sync", async () => {
    const alice = await user();
    await sync(c, alice, { set_presence: "unavailable" });
    const p = await c.get(`${V3}/presence/${enc(alice.userId)}/status`, { token: alice.accessToken });
    expect(p.body.presence).toBe("unavailable");
    await sync(c, alice);
    expect((await c.get(`${V3}/presence/${enc(alice.userId)}/status`, { token: alice.accessToken })).body.presence).toBe("online");
    // offline: the sync does not mark the user online.
    await c.put(`${V3}/presence/${enc(alice.userId)}/status`, { presence: "offline" }, { token: alice.accessToken });
    await sync(c, alice, { set_presence: "offline" });
    expect((await c.get(`${V3}/presence/${enc(alice.userId)}/status`, { token: alice.accessToken })).body.presence).toBe("offline");
  });
});

describe("filters", () => {
  it("stores a filter, reads it back, and syncs with it by id", async () => {
    const alice = await user();
    const roomId = await createRoom(c, alice);
    await sendMany(alice, roomId, 4);
    await send(c, alice, roomId, { a: 1 }, "org.example.other");
    const def = { room: { timeline: { limit: 3, types: ["m.room.message"] } }, presence: { not_types: ["*"] } };
    const res = await c.post(`${V3}/user/${enc(alice.userId)}/filter`, def, { token: alice.accessToken });
    expect(res.status, res.text).toBe(200);
    const filterId = res.body.filter_id as string;
    expect(typeof filterId).toBe("string");
    const got = await c.get(`${V3}/user/${enc(alice.userId)}/filter/${enc(filterId)}`, { token: alice.accessToken });
    expect(got.status).toBe(200);
    expect(got.body).toEqual(def);
    const s = await sync(c, alice, { filter: filterId });
    const r = s.rooms.join[roomId]!;
    // The limit counts matching events: three messages, the other event type skipped, and older messages left.
    expect(r.timeline.events.map((e) => e.type)).toEqual(["m.room.message", "m.room.message", "m.room.message"]);
    expect(r.timeline.limited).toBe(true);
  });

  it("unknown filter ids: 400 M_INVALID_PARAM in /sync, 404 from GET; other users' filters are off limits", async () => {
    const alice = await user();
    const bob = await user();
    expectError(await c.get(syncPath({ filter: "99999" }), { token: alice.accessToken }), 400, "M_INVALID_PARAM");
    expectError(await c.get(syncPath({ filter: "not-a-number" }), { token: alice.accessToken }), 400, "M_INVALID_PARAM");
    expectError(await c.get(`${V3}/user/${enc(alice.userId)}/filter/99999`, { token: alice.accessToken }), 404, "M_NOT_FOUND");
    const res = await c.post(`${V3}/user/${enc(alice.userId)}/filter`, {}, { token: alice.accessToken });
    const id = res.body.filter_id as string;
    // Bob cannot use or read Alice's filter.
    expectError(await c.get(syncPath({ filter: id }), { token: bob.accessToken }), 400, "M_INVALID_PARAM");
    expectError(await c.get(`${V3}/user/${enc(alice.userId)}/filter/${id}`, { token: bob.accessToken }), 403, "M_FORBIDDEN");
    expectError(await c.post(`${V3}/user/${enc(alice.userId)}/filter`, {}, { token: bob.accessToken }), 403, "M_FORBIDDEN");
  });

  it("rejects invalid filters with 400", async () => {
    const alice = await user();
    const bad = [{ room: { timeline: { limit: "ten" } } }, { event_format: "xml" }, { room: { rooms: "!a:b" } }, { presence: { types: [1] } }];
    for (const f of bad) {
      const res = await c.post(`${V3}/user/${enc(alice.userId)}/filter`, f, { token: alice.accessToken });
      expect(res.status, JSON.stringify(f)).toBe(400);
      const inline = await c.get(syncPath({ filter: f }), { token: alice.accessToken });
      expect(inline.status, JSON.stringify(f)).toBe(400);
      expect(inline.body.errcode).toBe("M_INVALID_PARAM");
    }
    expectError(await c.get(syncPath({ filter: "{not json" }), { token: alice.accessToken }), 400, "M_INVALID_PARAM");
  });

  it("inline filters select rooms, event types and senders", async () => {
    const alice = await user();
    const bob = await user();
    const a = await roomWith(c, alice, [bob]);
    const b = await roomWith(c, alice, [bob]);
    await send(c, alice, a, "from alice");
    await send(c, bob, a, "from bob");
    const onlyA = await sync(c, alice, { filter: { room: { rooms: [a] } } });
    expect(Object.keys(onlyA.rooms.join)).toEqual([a]);
    const notA = await sync(c, alice, { filter: { room: { not_rooms: [a] } } });
    expect(Object.keys(notA.rooms.join)).not.toContain(a);
    expect(Object.keys(notA.rooms.join)).toContain(b);
    const fromBob = await sync(c, alice, { filter: { room: { rooms: [a], timeline: { senders: [bob.userId] } } } });
    expect(fromBob.rooms.join[a]!.timeline.events.every((e) => e.sender === bob.userId)).toBe(true);
    expect(bodies(fromBob.rooms.join[a]!.timeline.events)).toEqual(["from bob"]);
    const noState = await sync(c, alice, { filter: { room: { rooms: [a], state: { not_types: ["*"] } } } });
    expect(noState.rooms.join[a]!.state.events).toEqual([]);
    const fields = await sync(c, alice, { filter: { event_fields: ["type", "content.body"], room: { rooms: [a], timeline: { types: ["m.room.message"] } } } });
    expect(fields.rooms.join[a]!.timeline.events).toEqual([
      { type: "m.room.message", content: { body: "from alice" } },
      { type: "m.room.message", content: { body: "from bob" } },
    ]);
  });

  it("a timeline filter is applied before the limit: the newest matching events fill it", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await roomWith(c, alice, [bob]);
    await sendMany(bob, roomId, 3, "bob");
    await sendMany(alice, roomId, 40, "noise");
    const s = await sync(c, alice, { filter: { room: { rooms: [roomId], timeline: { senders: [bob.userId], limit: 2 } } } });
    const tl = s.rooms.join[roomId]!.timeline;
    expect(bodies(tl.events)).toEqual(["bob1", "bob2"]);
    expect(tl.limited).toBe(true);
    // Incrementally too: one match among many non-matching events since the token.
    await send(c, bob, roomId, "bob3");
    await sendMany(alice, roomId, 15, "more");
    const next = await sync(c, alice, { since: s.next_batch, filter: { room: { rooms: [roomId], timeline: { senders: [bob.userId], limit: 2 } } } });
    expect(bodies(next.rooms.join[roomId]!.timeline.events)).toEqual(["bob3"]);
    expect(next.rooms.join[roomId]!.timeline.limited).toBe(false);
  });

  it("lazy_load_members sends only the members the timeline needs (and the user's own)", async () => {
    const alice = await user();
    const bob = await user();
    const carol = await user();
    const dave = await user();
    const roomId = await roomWith(c, alice, [bob, carol, dave]);
    await sendMany(carol, roomId, 12, "c");
    const filter = { room: { rooms: [roomId], state: { lazy_load_members: true } } };
    const s = await sync(c, bob, { filter });
    const r = s.rooms.join[roomId]!;
    const members = r.state.events.filter((e) => e.type === "m.room.member").map((e) => e.state_key);
    expect(members.sort()).toEqual([bob.userId, carol.userId].sort());
    // Other state is still there.
    expect(findState(r.state.events, "m.room.create")).toBeDefined();
    // Counts still cover everyone.
    expect(r.summary["m.joined_member_count"]).toBe(4);
    const full = await sync(c, bob, { filter: { room: { rooms: [roomId] } } });
    expect(full.rooms.join[roomId]!.state.events.filter((e) => e.type === "m.room.member")).toHaveLength(4);
  });
});

describe("lazy-loading members, incrementally", () => {
  it("a gapped incremental sync carries the membership changes from the gap", async () => {
    const alice = await user();
    const bob = await user();
    const charlie = await user();
    const dave = await user();
    const roomId = await roomWith(c, alice, [bob, charlie]);
    await send(c, charlie, roomId, "hello");
    await sendMany(bob, roomId, 10, "b");
    const filter = { room: { rooms: [roomId], state: { lazy_load_members: true }, timeline: { limit: 10 } } };
    const first = await sync(c, alice, { filter });
    const firstMembers = first.rooms.join[roomId]!.state.events.filter((e) => e.type === "m.room.member").map((e) => e.state_key);
    expect(firstMembers.sort()).toEqual([alice.userId, bob.userId].sort());
    await leaveRoom(c, charlie, roomId);
    await joinRoom(c, dave, roomId);
    await sendMany(bob, roomId, 10, "c");
    const inc = await sync(c, alice, { since: first.next_batch, filter });
    const r = inc.rooms.join[roomId]!;
    expect(r.timeline.limited).toBe(true);
    expect(r.timeline.events.some((e) => e.type === "m.room.member")).toBe(false);
    const members = Object.fromEntries(r.state.events.filter((e) => e.type === "m.room.member").map((e) => [e.state_key, e.content.membership]));
    expect(members[charlie.userId]).toBe("leave");
    expect(members[dave.userId]).toBe("join");
  });

  // Spec: `state` is the state "between the time indicated by the `since` parameter, and the **start** of the
  // `timeline`", with lazy-loading "the member events required to display the senders of the timeline events".
  it("a gapped incremental sync also carries the membership of a timeline sender the client was never sent", async () => {
    const alice = await user();
    const bob = await user();
    const charlie = await user();
    const dave = await user();
    const roomId = await roomWith(c, alice, [bob, charlie]);
    await sendMany(bob, roomId, 10, "b");
    const filter = { room: { rooms: [roomId], state: { lazy_load_members: true }, timeline: { limit: 10 } } };
    const first = await sync(c, alice, { filter });
    const firstMembers = first.rooms.join[roomId]!.state.events.filter((e) => e.type === "m.room.member").map((e) => e.state_key);
    expect(firstMembers.sort()).toEqual([alice.userId, bob.userId].sort());
    await joinRoom(c, dave, roomId);
    await sendMany(dave, roomId, 10, "d");
    await sendMany(charlie, roomId, 10, "c");
    const inc = await sync(c, alice, { since: first.next_batch, filter });
    const r = inc.rooms.join[roomId]!;
    expect(r.timeline.limited).toBe(true);
    expect(new Set(r.timeline.events.map((e) => e.sender))).toEqual(new Set([charlie.userId]));
    const members = Object.fromEntries(r.state.events.filter((e) => e.type === "m.room.member").map((e) => [e.state_key, e.content.membership]));
    // Charlie speaks in the timeline; Dave joined in the gap.
    expect(members).toEqual({ [charlie.userId]: "join", [dave.userId]: "join" });
  });

  it("a non-gapped incremental sync whose timeline starts with a leave carries the leaver's membership at the timeline's start", async () => {
    const alice = await user();
    const bob = await user();
    const charlie = await user();
    const roomId = await roomWith(c, alice, [bob, charlie]);
    await send(c, charlie, roomId, "hello");
    await sendMany(bob, roomId, 10, "b");
    const filter = { room: { rooms: [roomId], state: { lazy_load_members: true }, timeline: { limit: 10 } } };
    const first = await sync(c, alice, { filter });
    const firstMembers = first.rooms.join[roomId]!.state.events.filter((e) => e.type === "m.room.member").map((e) => e.state_key);
    expect(firstMembers.sort()).toEqual([alice.userId, bob.userId].sort());
    await leaveRoom(c, charlie, roomId);
    await sendMany(bob, roomId, 5, "after");
    const inc = await sync(c, alice, { since: first.next_batch, filter });
    const r = inc.rooms.join[roomId]!;
    expect(r.timeline.limited).toBe(false);
    expect(r.timeline.events[0]).toMatchObject({ type: "m.room.member", state_key: charlie.userId, content: { membership: "leave" } });
    expect(r.timeline.events).toHaveLength(6);
    // Not the leave (it comes after the start of the timeline): the join the client needs to show the leave's sender.
    const members = r.state.events.filter((e) => e.type === "m.room.member");
    expect(members.map((e) => [e.state_key, e.content.membership])).toEqual([[charlie.userId, "join"]]);
  });
});

describe("prev_batch", () => {
  it("continues into /messages with no gaps or duplicates", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await roomWith(c, alice, [bob]);
    await sendMany(alice, roomId, 25, "h");
    const s = await sync(c, bob, { filter: { room: { timeline: { limit: 5 } } } });
    const tl = s.rooms.join[roomId]!.timeline;
    expect(tl.limited).toBe(true);
    expect(bodies(tl.events)).toEqual(["h20", "h21", "h22", "h23", "h24"]);
    const older: ClientEvent[] = [];
    let from = tl.prev_batch!;
    for (let i = 0; i < 20; i++) {
      const page = await messages(c, bob, roomId, { from, limit: 7 });
      older.push(...page.chunk);
      if (!page.end) break;
      from = page.end;
    }
    const olderBodies = bodies(older);
    expect(olderBodies.slice(0, 20)).toEqual(Array.from({ length: 20 }, (_, i) => `h${19 - i}`));
    const ids = [...older, ...tl.events].map((e) => e.event_id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(older.at(-1)!.type).toBe("m.room.create");
    // Same for an incremental limited sync.
    await sendMany(alice, roomId, 8, "n");
    const inc = await sync(c, bob, { since: s.next_batch, filter: { room: { timeline: { limit: 3 } } } });
    const itl = inc.rooms.join[roomId]!.timeline;
    expect(itl.limited).toBe(true);
    expect(bodies(itl.events)).toEqual(["n5", "n6", "n7"]);
    const gap = await messages(c, bob, roomId, { from: itl.prev_batch!, limit: 5 });
    expect(bodies(gap.chunk)).toEqual(["n4", "n3", "n2", "n1", "n0"]);
  });

  it("an unlimited incremental timeline's prev_batch also points just before it", async () => {
    const alice = await user();
    const roomId = await createRoom(c, alice);
    await send(c, alice, roomId, "a");
    const s = await sync(c, alice);
    await send(c, alice, roomId, "b");
    const inc = await sync(c, alice, { since: s.next_batch });
    const tl = inc.rooms.join[roomId]!.timeline;
    expect(tl.limited).toBe(false);
    const page = await messages(c, alice, roomId, { from: tl.prev_batch!, limit: 1 });
    expect(bodies(page.chunk)).toEqual(["a"]);
  });
});

describe("newly joined rooms", () => {
  it("a displayname change is not a new join: only the new events, no full state", async () => {
    const alice = await user();
    const roomId = await createRoom(c, alice);
    const first = await sync(c, alice);
    const memberId = await setState(c, alice, roomId, "m.room.member", alice.userId, { membership: "join", displayname: "boris" });
    const msgId = await send(c, alice, roomId, "after the rename");
    const inc = await sync(c, alice, { since: first.next_batch });
    const r = inc.rooms.join[roomId]!;
    expect(r.timeline.events.map((e) => e.event_id)).toEqual([memberId, msgId]);
    expect(r.timeline.limited).toBe(false);
    expect(r.state.events).toEqual([]);
  });

  it("a room joined since the token is limited in the incremental sync, even when its whole history fits", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await createRoom(c, alice, { preset: "public_chat" });
    await sendMany(alice, roomId, 3);
    const first = await sync(c, bob);
    await joinRoom(c, bob, roomId);
    const filter = { room: { timeline: { types: ["m.room.message"], limit: 10 } } };
    const inc = await sync(c, bob, { since: first.next_batch, filter });
    const r = inc.rooms.join[roomId]!;
    expect(bodies(r.timeline.events)).toEqual(["m0", "m1", "m2"]);
    expect(r.timeline.limited).toBe(true);
    // The state block is the room's full state.
    expect(findState(r.state.events, "m.room.create")).toBeDefined();
  });

  it("the members of a newly joined room bring their presence, offline when they never set any", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await createRoom(c, alice, { preset: "public_chat" });
    const first = await sync(c, bob);
    await joinRoom(c, bob, roomId);
    const inc = await sync(c, bob, { since: first.next_batch, set_presence: "offline" });
    const p = inc.presence.events.filter((e) => e.sender === alice.userId);
    expect(p).toHaveLength(1);
    expect(p[0]).toMatchObject({ type: "m.presence", content: { presence: expect.any(String) } });
    // Once only.
    const again = await sync(c, bob, { since: inc.next_batch, set_presence: "offline", timeout: 0 });
    expect(again.presence.events.filter((e) => e.sender === alice.userId)).toEqual([]);
  });
});

describe("history visibility and the timeline limit", () => {
  it("events the user may not see do not use up the limit: current state behind them still reaches the timeline", async () => {
    const creator = await user();
    const syncer = await user();
    const invitee = await user();
    const roomId = await roomWith(c, creator, [syncer]);
    await setState(c, creator, roomId, "m.room.history_visibility", "", { history_visibility: "joined" });
    await inviteUser(c, creator, roomId, invitee.userId);
    await leaveRoom(c, syncer, roomId);
    await joinRoom(c, invitee, roomId);
    await sendMany(creator, roomId, 30, "hidden");
    const first = await sync(c, syncer);
    await joinRoom(c, syncer, roomId);
    const inc = await sync(c, syncer, { since: first.next_batch });
    const tl = inc.rooms.join[roomId]!.timeline.events;
    // The 30 messages were sent while the syncer was away (history "joined"): not shown, and not counted.
    expect(bodies(tl)).toEqual([]);
    expect(tl.some((e) => e.type === "m.room.member" && e.state_key === invitee.userId && e.content.membership === "join")).toBe(true);
    expect(tl.at(-1)).toMatchObject({ type: "m.room.member", state_key: syncer.userId });
  });
});

describe("lazy-loading members across syncs", () => {
  const llFilter = (roomId: string, extra: Record<string, unknown> = {}) => ({ room: { rooms: [roomId], state: { lazy_load_members: true, ...extra }, timeline: { limit: 10 } } });
  const memberKeys = (s: SyncResponse, roomId: string) => (s.rooms.join[roomId]?.state.events ?? []).filter((e) => e.type === "m.room.member").map((e) => e.state_key!).sort();

  it("an incremental sync sends the member events of new senders only, and never again to the same device", async () => {
    const alice = await user();
    const bob = await user();
    const charlie = await user();
    const roomId = await roomWith(c, alice, [bob, charlie]);
    await sendMany(bob, roomId, 10, "b");
    const filter = llFilter(roomId);
    const first = await sync(c, alice, { filter });
    expect(memberKeys(first, roomId)).toEqual([alice.userId, bob.userId].sort());
    await send(c, charlie, roomId, "from charlie");
    await send(c, bob, roomId, "from bob");
    const inc = await sync(c, alice, { since: first.next_batch, filter });
    // Charlie is new to this device; bob and alice herself it already has.
    expect(memberKeys(inc, roomId)).toEqual([charlie.userId]);
    await send(c, charlie, roomId, "again");
    const inc2 = await sync(c, alice, { since: inc.next_batch, filter });
    expect(memberKeys(inc2, roomId)).toEqual([]);
    // include_redundant_members: all the senders' member events, every time (still not the user's own).
    const redundant = llFilter(roomId, { include_redundant_members: true });
    await send(c, bob, roomId, "bob again");
    const inc3 = await sync(c, alice, { since: inc2.next_batch, filter: redundant });
    expect(memberKeys(inc3, roomId)).toEqual([bob.userId]);
  });

  it("a gapped incremental sync carries the gap's member changes and the senders' members, minus those the device has", async () => {
    const alice = await user();
    const bob = await user();
    const charlie = await user();
    const dave = await user();
    const roomId = await roomWith(c, alice, [bob, charlie]);
    await sendMany(bob, roomId, 10, "b");
    const filter = llFilter(roomId);
    const first = await sync(c, alice, { filter });
    await joinRoom(c, dave, roomId);
    await sendMany(charlie, roomId, 20, "c");
    const inc = await sync(c, alice, { since: first.next_batch, filter });
    expect(inc.rooms.join[roomId]!.timeline.limited).toBe(true);
    expect(memberKeys(inc, roomId)).toEqual([charlie.userId, dave.userId].sort());
    await leaveRoom(c, dave, roomId);
    await sendMany(charlie, roomId, 20, "d");
    const inc2 = await sync(c, alice, { since: inc.next_batch, filter });
    const state = inc2.rooms.join[roomId]!.state.events.filter((e) => e.type === "m.room.member");
    expect(state.map((e) => [e.state_key, e.content.membership])).toEqual([[dave.userId, "leave"]]);
  });

  it("a device that syncs from an older token (its last response lost) gets the members again", async () => {
    const alice = await user();
    const bob = await user();
    const charlie = await user();
    const roomId = await roomWith(c, alice, [bob]);
    const filter = llFilter(roomId);
    const first = await sync(c, alice, { filter });
    await joinRoom(c, charlie, roomId);
    await send(c, charlie, roomId, "hi");
    // This response carries charlie's join in its timeline, but never reaches the client.
    const lost = await sync(c, alice, { since: first.next_batch, filter });
    expect(lost.rooms.join[roomId]!.timeline.events.some((e) => e.type === "m.room.member" && e.state_key === charlie.userId)).toBe(true);
    await send(c, charlie, roomId, "hi again");
    const retry = await sync(c, alice, { since: first.next_batch, filter: { room: { ...filter.room, timeline: { limit: 1 } } } });
    expect(bodies(retry.rooms.join[roomId]!.timeline.events)).toEqual(["hi again"]);
    expect(memberKeys(retry, roomId)).toEqual([charlie.userId]);
  });
});

describe("event_format", () => {
  it('"federation" serves events as PDUs, with event_id and unsigned', async () => {
    const alice = await user();
    const roomId = await createRoom(c, alice);
    const id = await send(c, alice, roomId, "as a pdu");
    const s = await sync(c, alice, { filter: { event_format: "federation", room: { rooms: [roomId], timeline: { limit: 1 } } } });
    const e = s.rooms.join[roomId]!.timeline.events[0]! as unknown as Record<string, unknown>;
    expect(e).toMatchObject({ event_id: id, room_id: roomId, sender: alice.userId, type: "m.room.message", content: { body: "as a pdu" } });
    for (const k of ["prev_events", "auth_events", "depth", "hashes", "signatures", "origin_server_ts", "unsigned"]) expect(e).toHaveProperty(k);
    const client = await sync(c, alice, { filter: { room: { rooms: [roomId], timeline: { limit: 1 } } } });
    expect(client.rooms.join[roomId]!.timeline.events[0]).not.toHaveProperty("hashes");
  });
});

describe("prev_batch of a timeline holding the whole room", () => {
  it("points at the end of the timeline, so /members?at= and /messages see the room as of the response", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await createRoom(c, alice, { preset: "public_chat" });
    await send(c, alice, roomId, "hello");
    const s = await sync(c, alice);
    const tl = s.rooms.join[roomId]!.timeline;
    expect(tl.events[0]!.type).toBe("m.room.create");
    expect(tl.limited).toBe(false);
    await joinRoom(c, bob, roomId);
    const members = await c.get<{ chunk: ClientEvent[] }>(`${V3}/rooms/${enc(roomId)}/members?at=${enc(tl.prev_batch!)}`, { token: alice.accessToken });
    expect(members.status, members.text).toBe(200);
    expect(members.body.chunk.map((e) => e.state_key)).toEqual([alice.userId]);
    const page = await messages(c, alice, roomId, { from: tl.prev_batch!, limit: 50 });
    expect(page.chunk.map((e) => e.event_id)).toEqual(tl.events.map((e) => e.event_id).reverse());
    expect(page.end).toBeUndefined();
  });

  it("an empty from in /messages is no token (from the end backwards)", async () => {
    const alice = await user();
    const roomId = await createRoom(c, alice);
    await send(c, alice, roomId, "latest");
    const res = await c.get<{ chunk: ClientEvent[] }>(`${V3}/rooms/${enc(roomId)}/messages?dir=b&from=&limit=1`, { token: alice.accessToken });
    expect(res.status, res.text).toBe(200);
    expect(bodies(res.body.chunk)).toEqual(["latest"]);
  });
});

describe("ignored users", () => {
  const ignore = async (u: TestUser, ignored: string[]) => {
    const res = await c.put(`${V3}/user/${enc(u.userId)}/account_data/m.ignored_user_list`, { ignored_users: Object.fromEntries(ignored.map((i) => [i, {}])) }, { token: u.accessToken });
    expect(res.status, res.text).toBe(200);
  };

  it("their messages are left out of /sync, their state events are not", async () => {
    const alice = await user();
    const bob = await user();
    const carol = await user();
    const roomId = await roomWith(c, alice, [bob, carol]);
    await send(c, bob, roomId, "bob1");
    await send(c, carol, roomId, "carol1");
    await ignore(alice, [bob.userId]);
    const s = await sync(c, alice);
    const r = s.rooms.join[roomId]!;
    expect(bodies(r.timeline.events)).toEqual(["carol1"]);
    expect(r.timeline.events.some((e) => e.type === "m.room.member" && e.state_key === bob.userId) || findState(r.state.events, "m.room.member", bob.userId)).toBeTruthy();
    // Incrementally: a room where only the ignored user spoke has nothing to say.
    await send(c, bob, roomId, "bob2");
    const inc = await sync(c, alice, { since: s.next_batch, timeout: 0 });
    expect(inc.rooms.join[roomId]).toBeUndefined();
    const rename = await setState(c, bob, roomId, "m.room.member", bob.userId, { membership: "join", displayname: "still bob" });
    const inc2 = await sync(c, alice, { since: inc.next_batch });
    expect(inc2.rooms.join[roomId]!.timeline.events.map((e) => e.event_id)).toEqual([rename]);
    // Un-ignored: new messages come through again.
    await ignore(alice, []);
    await send(c, bob, roomId, "bob3");
    const inc3 = await syncUntil(c, alice, inc2.next_batch, (x) => bodies(x.rooms.join[roomId]?.timeline.events ?? []).includes("bob3"));
    expect(bodies(inc3.rooms.join[roomId]!.timeline.events)).toEqual(["bob3"]);
  });

  it("their invites are not sent, in initial or incremental syncs", async () => {
    const alice = await user();
    const bob = await user();
    const before = await sync(c, alice);
    await ignore(alice, [bob.userId]);
    const roomId = await createRoom(c, bob);
    await inviteUser(c, bob, roomId, alice.userId);
    const inc = await sync(c, alice, { since: before.next_batch, timeout: 0 });
    expect(inc.rooms.invite[roomId]).toBeUndefined();
    const full = await sync(c, alice);
    expect(full.rooms.invite[roomId]).toBeUndefined();
  });
});
