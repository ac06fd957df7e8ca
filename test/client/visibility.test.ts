/**
 * History visibility (spec "Room History Visibility"): for each setting, which events a user sees through /sync,
 * /messages, /context and /event depending on when they were invited, joined and left.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client, expectError, registerUser, type TestUser } from "../helpers/http.js";
import { V3, bodies, createRoom, enc, inviteUser, joinRoom, leaveRoom, messages, send, setState, sync, type ClientEvent } from "../helpers/rooms.js";
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
const room = (roomId: string) => `${V3}/rooms/${enc(roomId)}`;
const ALL = ["before invite", "after invite", "after join", "after leave"] as const;
type Label = (typeof ALL)[number];

interface Scenario {
  roomId: string;
  alice: TestUser;
  bob: TestUser;
  ids: Record<Label, string>;
  /** Bob's initial sync taken while he was joined (before leaving), and a sync from before his join. */
  joinedSync: ClientEvent[];
  joinIncremental: ClientEvent[];
}

/**
 * Alice makes a room with the given visibility and sends a message at each step: before inviting Bob, after
 * inviting him, after he joined, and after he left.
 */
async function scenario(visibility: string, roomVersion = "12"): Promise<Scenario> {
  const alice = await user();
  const bob = await user();
  const roomId = await createRoom(c, alice, { preset: "public_chat", room_version: roomVersion, initial_state: [{ type: "m.room.history_visibility", content: { history_visibility: visibility } }] });
  const ids = {} as Record<Label, string>;
  ids["before invite"] = await send(c, alice, roomId, "before invite");
  const beforeJoin = await sync(c, bob);
  await inviteUser(c, alice, roomId, bob.userId);
  ids["after invite"] = await send(c, alice, roomId, "after invite");
  await joinRoom(c, bob, roomId);
  ids["after join"] = await send(c, alice, roomId, "after join");
  const filter = { room: { timeline: { limit: 50 } } };
  const joinedSync = (await sync(c, bob, { filter })).rooms.join[roomId]!.timeline.events;
  const joinIncremental = (await sync(c, bob, { filter, since: beforeJoin.next_batch })).rooms.join[roomId]!.timeline.events;
  await leaveRoom(c, bob, roomId);
  ids["after leave"] = await send(c, alice, roomId, "after leave");
  return { roomId, alice, bob, ids, joinedSync, joinIncremental };
}

async function eventVisible(u: TestUser, roomId: string, eventId: string): Promise<boolean> {
  const res = await c.get(`${room(roomId)}/event/${enc(eventId)}`, { token: u.accessToken });
  if (res.status === 200) return true;
  expectError(res, 404, "M_NOT_FOUND");
  return false;
}

async function contextVisible(u: TestUser, roomId: string, eventId: string): Promise<boolean> {
  const res = await c.get(`${room(roomId)}/context/${enc(eventId)}?limit=20`, { token: u.accessToken });
  if (res.status !== 200) {
    expectError(res, 404, "M_NOT_FOUND");
    return false;
  }
  // Whatever surrounds a visible event must be visible too.
  const around = [...(res.body.events_before as ClientEvent[]), ...(res.body.events_after as ClientEvent[])];
  for (const e of around) if (e.type === "m.room.message") expect(await eventVisible(u, roomId, e.event_id), `context around ${eventId}`).toBe(true);
  return true;
}

/** Checks every way Bob can read the room against the messages he should see while joined and after leaving. */
async function expectBobSees(s: Scenario, whileJoined: Label[], afterLeaving: Label[]): Promise<void> {
  const { roomId, bob, ids } = s;
  const joinedExpected = whileJoined.filter((l) => l !== "after leave");
  expect(bodies(s.joinedSync), "initial /sync while joined").toEqual(joinedExpected);
  expect(bodies(s.joinIncremental), "incremental /sync that joined the room").toEqual(joinedExpected);
  // /messages after leaving: up to the leave only (or everything, when world readable).
  const page = await messages(c, bob, roomId, { limit: 100 });
  expect(bodies(page.chunk).reverse(), "/messages after leaving").toEqual(afterLeaving);
  const fwd = await messages(c, bob, roomId, { dir: "f", limit: 100 });
  expect(bodies(fwd.chunk), "/messages forwards after leaving").toEqual(afterLeaving);
  // /sync's leave section (include_leave).
  const left = (await sync(c, bob, { filter: { room: { include_leave: true, timeline: { limit: 50 } } } })).rooms.leave[roomId];
  expect(left, "rooms.leave").toBeDefined();
  expect(bodies(left!.timeline.events), "/sync rooms.leave timeline").toEqual(afterLeaving.filter((l) => l !== "after leave"));
  for (const label of ALL) {
    const visible = afterLeaving.includes(label);
    expect(await eventVisible(bob, roomId, ids[label]), `/event ${label}`).toBe(visible);
    expect(await contextVisible(bob, roomId, ids[label]), `/context ${label}`).toBe(visible);
  }
}

describe("history visibility", () => {
  it("world_readable: everything, even after leaving and for non-members", async () => {
    const s = await scenario("world_readable");
    await expectBobSees(s, ["before invite", "after invite", "after join"], [...ALL]);
    // Someone who never joined can read it all.
    const carol = await user();
    const page = await messages(c, carol, s.roomId, { limit: 100 });
    expect(bodies(page.chunk).reverse()).toEqual([...ALL]);
    expect(await eventVisible(carol, s.roomId, s.ids["before invite"])).toBe(true);
    expect(await contextVisible(carol, s.roomId, s.ids["after leave"])).toBe(true);
    const state = await c.get(`${room(s.roomId)}/state`, { token: carol.accessToken });
    expect(state.status).toBe(200);
  });

  it("shared: all history up to the leave, once joined", async () => {
    const s = await scenario("shared");
    await expectBobSees(s, ["before invite", "after invite", "after join"], ["before invite", "after invite", "after join"]);
  });

  it("invited: from the invite on, up to the leave", async () => {
    const s = await scenario("invited");
    await expectBobSees(s, ["after invite", "after join"], ["after invite", "after join"]);
  });

  it("joined: only while joined", async () => {
    const s = await scenario("joined");
    await expectBobSees(s, ["after join"], ["after join"]);
  });

  it("applies to older room versions too (v1, v6)", async () => {
    for (const v of ["1", "6"]) {
      const s = await scenario("joined", v);
      await expectBobSees(s, ["after join"], ["after join"]);
    }
  });

  for (const visibility of ["shared", "invited", "joined"]) {
    it(`${visibility}: non-members see nothing (403 for /messages, 404 for /event and /context)`, async () => {
      const alice = await user();
      const carol = await user();
      const roomId = await createRoom(c, alice, { preset: "public_chat", initial_state: [{ type: "m.room.history_visibility", content: { history_visibility: visibility } }] });
      const id = await send(c, alice, roomId, "secret");
      expectError(await c.get(`${room(roomId)}/messages?dir=b`, { token: carol.accessToken }), 403, "M_FORBIDDEN");
      expect(await eventVisible(carol, roomId, id)).toBe(false);
      expect(await contextVisible(carol, roomId, id)).toBe(false);
      expectError(await c.get(`${room(roomId)}/state`, { token: carol.accessToken }), 403, "M_FORBIDDEN");
    });
  }

  it("uses the visibility in force at each event", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await createRoom(c, alice, { preset: "public_chat", initial_state: [{ type: "m.room.history_visibility", content: { history_visibility: "joined" } }] });
    const hidden = await send(c, alice, roomId, "while joined-only");
    await setState(c, alice, roomId, "m.room.history_visibility", "", { history_visibility: "shared" });
    const shown = await send(c, alice, roomId, "while shared");
    await joinRoom(c, bob, roomId);
    const page = await messages(c, bob, roomId, { limit: 100 });
    expect(bodies(page.chunk).reverse()).toEqual(["while shared"]);
    expect(await eventVisible(bob, roomId, hidden)).toBe(false);
    expect(await eventVisible(bob, roomId, shown)).toBe(true);
    // The change to shared is itself visible (its new value allows it).
    expect(page.chunk.some((e) => e.type === "m.room.history_visibility")).toBe(true);
  });

  it("history visibility changes are seen on their boundaries", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await createRoom(c, alice, { preset: "public_chat" });
    await setState(c, alice, roomId, "m.room.history_visibility", "", { history_visibility: "joined" });
    await send(c, alice, roomId, "1");
    await setState(c, alice, roomId, "m.room.history_visibility", "", { history_visibility: "invited" });
    await send(c, alice, roomId, "2");
    await setState(c, alice, roomId, "m.room.history_visibility", "", { history_visibility: "shared" });
    await send(c, alice, roomId, "3");
    await joinRoom(c, bob, roomId);
    const tl = (await sync(c, bob)).rooms.join[roomId]!.timeline.events;
    // The change to joined (shared before it) and the change to shared are visible; "invited" and messages 1, 2 are not.
    expect(tl.slice(-4).map((e) => `${e.type}:${(e.content.history_visibility ?? e.content.body ?? e.content.membership) as string}`)).toEqual([
      "m.room.history_visibility:joined",
      "m.room.history_visibility:shared",
      "m.room.message:3",
      "m.room.member:join",
    ]);
  });

  it("current state set while the user could not see the room still reaches their /sync", async () => {
    const creator = await user();
    const syncer = await user();
    const invitee = await user();
    const roomId = await createRoom(c, creator, { preset: "public_chat" });
    await joinRoom(c, syncer, roomId);
    await setState(c, creator, roomId, "m.room.history_visibility", "", { history_visibility: "joined" });
    await inviteUser(c, creator, roomId, invitee.userId);
    const before = await sync(c, syncer);
    await leaveRoom(c, syncer, roomId);
    await joinRoom(c, invitee, roomId);
    await setState(c, creator, roomId, "m.room.topic", "", { topic: "set while away" });
    await joinRoom(c, syncer, roomId);
    for (const s of [await sync(c, syncer, { since: before.next_batch }), await sync(c, syncer)]) {
      const r = s.rooms.join[roomId]!;
      const all = [...r.state.events, ...r.timeline.events];
      const member = all.filter((e) => e.type === "m.room.member" && e.state_key === invitee.userId).at(-1);
      expect(member?.content.membership).toBe("join");
      expect(all.filter((e) => e.type === "m.room.topic").at(-1)?.content.topic).toBe("set while away");
    }
  });

  it("a user who rejects an invite sees their own leave, even when history is joined-only", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await createRoom(c, alice, { initial_state: [{ type: "m.room.history_visibility", content: { history_visibility: "joined" } }] });
    await inviteUser(c, alice, roomId, bob.userId);
    const before = await sync(c, bob);
    expect(before.rooms.invite[roomId]).toBeDefined();
    await leaveRoom(c, bob, roomId);
    const s = await sync(c, bob, { since: before.next_batch });
    const left = s.rooms.leave[roomId]!;
    expect(left).toBeDefined();
    expect(left.timeline.events.at(-1)).toMatchObject({ type: "m.room.member", state_key: bob.userId, content: { membership: "leave" } });
  });

  it("a departed user's /messages starts at their leave, however much happened since", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await createRoom(c, alice, { preset: "public_chat" });
    await joinRoom(c, bob, roomId);
    await send(c, alice, roomId, "M1");
    await send(c, alice, roomId, "M2");
    await leaveRoom(c, bob, roomId);
    for (let i = 0; i < 12; i++) await send(c, alice, roomId, `after ${i}`);
    const page = await messages(c, bob, roomId, { limit: 2 });
    expect(page.chunk[0]).toMatchObject({ type: "m.room.member", state_key: bob.userId, content: { membership: "leave" } });
    expect(page.chunk[1]!.content.body).toBe("M2");
    const next = await messages(c, bob, roomId, { limit: 1, from: page.end! });
    expect(bodies(next.chunk)).toEqual(["M1"]);
    // Forwards: nothing past the leave.
    const fwd = await messages(c, bob, roomId, { dir: "f", from: page.end!, limit: 50 });
    expect(fwd.chunk.map((e) => e.content.body ?? e.content.membership)).toEqual(["M2", "leave"]);
    expect(fwd.end).toBeUndefined();
  });

  it("a user who rejoins sees the events of both stays, not the gap (joined)", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await createRoom(c, alice, { preset: "public_chat", initial_state: [{ type: "m.room.history_visibility", content: { history_visibility: "joined" } }] });
    await joinRoom(c, bob, roomId);
    await send(c, alice, roomId, "first stay");
    await leaveRoom(c, bob, roomId);
    await send(c, alice, roomId, "gap");
    await joinRoom(c, bob, roomId);
    await send(c, alice, roomId, "second stay");
    const page = await messages(c, bob, roomId, { limit: 100 });
    expect(bodies(page.chunk).reverse()).toEqual(["first stay", "second stay"]);
    const s = await sync(c, bob, { filter: { room: { timeline: { limit: 50 } } } });
    expect(bodies(s.rooms.join[roomId]!.timeline.events)).toEqual(["first stay", "second stay"]);
  });
});
