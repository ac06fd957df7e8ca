/**
 * The legacy client API (spec r0.6.1, as Synapse still serves it): the GET /events stream, GET /events/{eventId},
 * GET /initialSync and GET /rooms/{roomId}/initialSync — what each answers, how the stream pages and long-polls,
 * what it shows a member, an invitee and a peeking non-member, and every refusal with its status and errcode.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client, expectError, registerUser, type TestUser } from "../helpers/http.js";
import { V3, createRoom, enc, inviteUser, joinRoom, leaveRoom, roomWith, send, setState, sync, type Json } from "../helpers/rooms.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

let ts: TestServer;
let c: Client;

beforeAll(async () => {
  ts = await startTestServer({ config: { allow_guest_access: true } });
  c = new Client(ts.baseUrl);
});
afterAll(async () => {
  await ts?.close();
});

interface StreamEvent extends Json {
  type: string;
  content: Json;
  room_id?: string;
  event_id?: string;
  sender?: string;
  user_id?: string;
  state_key?: string;
  age?: number;
  unsigned?: Json;
}
interface Page extends Json {
  chunk: StreamEvent[];
  start: string;
  end: string;
}

const R0 = "/_matrix/client/r0";
const user = () => registerUser(c);

async function events(u: { accessToken: string }, params: Record<string, string | number> = {}, prefix = R0) {
  const q = new URLSearchParams(Object.entries(params).map(([k, v]): [string, string] => [k, String(v)]));
  return c.get<Page>(`${prefix}/events?${q}`, { token: u.accessToken });
}

/** The stream's current end for a user (timeout 0, no from): where a later call continues. */
async function streamEnd(u: TestUser): Promise<string> {
  const res = await events(u, { timeout: 0 });
  expect(res.status, res.text).toBe(200);
  return res.body.end;
}

/**
 * Reads the stream from `from` until `pred` matches an event (returned with everything read so far), following each
 * answer's `end`; fails at the deadline.
 */
async function streamUntil(u: { accessToken: string }, from: string, pred: (e: StreamEvent) => boolean, params: Record<string, string | number> = {}, deadlineMs = 10_000) {
  const deadline = Date.now() + deadlineMs;
  const seen: StreamEvent[] = [];
  let at = from;
  while (Date.now() < deadline) {
    const res = await events(u, { ...params, from: at, timeout: 1000 });
    expect(res.status, res.text).toBe(200);
    seen.push(...res.body.chunk);
    at = res.body.end;
    const hit = res.body.chunk.find(pred);
    if (hit) return { hit, seen, end: at };
  }
  throw new Error("streamUntil: no matching event before the deadline");
}

async function guest(): Promise<{ userId: string; accessToken: string }> {
  const res = await c.post(`${V3}/register?kind=guest`, {});
  expect(res.status, res.text).toBe(200);
  return { userId: res.body.user_id as string, accessToken: res.body.access_token as string };
}

const isMessage = (body: string) => (e: StreamEvent) => e.type === "m.room.message" && e.content.body === body;

describe("GET /events", () => {
  it("answers chunk, start and end at once with timeout=0, under r0, v3 and api/v1", async () => {
    const alice = await user();
    for (const prefix of [R0, V3, "/_matrix/client/api/v1"]) {
      const res = await events(alice, { timeout: 0 }, prefix);
      expect(res.status, res.text).toBe(200);
      expect(res.body.chunk).toEqual([]);
      expect(typeof res.body.start).toBe("string");
      expect(res.body.end).toBe(res.body.start);
    }
  });

  it("streams new room events of joined rooms in the legacy event format, then continues from end", async () => {
    const alice = await user();
    const roomId = await createRoom(c, alice);
    const from = await streamEnd(alice);
    const eventId = await send(c, alice, roomId, "hello stream");
    const { hit, end } = await streamUntil(alice, from, isMessage("hello stream"));
    expect(hit).toMatchObject({ event_id: eventId, room_id: roomId, sender: alice.userId, user_id: alice.userId, type: "m.room.message" });
    expect(typeof hit.age).toBe("number");
    // Nothing new since `end`.
    const again = await events(alice, { from: end, timeout: 0 });
    expect(again.status).toBe(200);
    expect(again.body.chunk).toEqual([]);
    expect(again.body.end).toBe(end);
  });

  it("long-polls until something happens", async () => {
    const alice = await user();
    const roomId = await createRoom(c, alice);
    const from = await streamEnd(alice);
    const started = Date.now();
    const waiting = events(alice, { from, timeout: 20_000 });
    await new Promise((r) => setTimeout(r, 200));
    await send(c, alice, roomId, "wake up");
    const res = await waiting;
    expect(res.status).toBe(200);
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(res.body.chunk.some(isMessage("wake up"))).toBe(true);
  });

  it("returns an empty chunk after the timeout when nothing happens", async () => {
    const alice = await user();
    const from = await streamEnd(alice);
    const res = await events(alice, { from, timeout: 600 });
    expect(res.status).toBe(200);
    expect(res.body.chunk).toEqual([]);
    expect(res.body.start).toBe(from);
  });

  it("pages with limit in stream order, every event exactly once", async () => {
    const alice = await user();
    const roomA = await createRoom(c, alice);
    const roomB = await createRoom(c, alice);
    let at = await streamEnd(alice);
    const sent: string[] = [];
    for (let i = 0; i < 8; i++) sent.push(await send(c, alice, i % 2 === 0 ? roomA : roomB, `m${i}`));
    const got: string[] = [];
    for (let i = 0; i < 10 && got.length < sent.length; i++) {
      const res = await events(alice, { from: at, timeout: 0, limit: 3 });
      expect(res.status).toBe(200);
      const msgs = res.body.chunk.filter((e) => e.type === "m.room.message");
      expect(msgs.length).toBeLessThanOrEqual(3);
      got.push(...msgs.map((e) => e.event_id!));
      at = res.body.end;
    }
    expect(got).toEqual(sent);
  });

  it("shows the user their invite to a room they are not in, and a join brings the joiner's presence", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await createRoom(c, alice, { preset: "private_chat" });
    const bobFrom = await streamEnd(bob);
    await inviteUser(c, alice, roomId, bob.userId);
    const { hit } = await streamUntil(bob, bobFrom, (e) => e.type === "m.room.member" && e.state_key === bob.userId);
    expect(hit).toMatchObject({ room_id: roomId, sender: alice.userId, content: { membership: "invite" } });

    const aliceFrom = await streamEnd(alice);
    await joinRoom(c, bob, roomId);
    const { seen } = await streamUntil(alice, aliceFrom, (e) => e.type === "m.presence" && (e.content.user_id as string) === bob.userId);
    expect(seen.some((e) => e.type === "m.room.member" && e.state_key === bob.userId && e.content.membership === "join")).toBe(true);
    const presence = seen.find((e) => e.type === "m.presence" && e.content.user_id === bob.userId)!;
    expect(presence.content.presence).toBe("online");
  });

  it("hides events the user may not see (history_visibility joined) but shows their own join", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await createRoom(c, alice, { preset: "public_chat", initial_state: [{ type: "m.room.history_visibility", state_key: "", content: { history_visibility: "joined" } }] });
    const bobFrom = await streamEnd(bob);
    await send(c, alice, roomId, "before bob");
    await joinRoom(c, bob, roomId);
    await send(c, alice, roomId, "after bob");
    const { seen } = await streamUntil(bob, bobFrom, isMessage("after bob"));
    expect(seen.some(isMessage("before bob"))).toBe(false);
    expect(seen.some((e) => e.type === "m.room.member" && e.state_key === bob.userId)).toBe(true);
  });

  it("carries typing, receipts, presence and account data with their room ids", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await roomWith(c, alice, [bob]);
    const eventId = await send(c, alice, roomId, "read me");
    let from = await streamEnd(alice);

    expect((await c.put(`${V3}/rooms/${enc(roomId)}/typing/${enc(bob.userId)}`, { typing: true, timeout: 30_000 }, { token: bob.accessToken })).status).toBe(200);
    let r = await streamUntil(alice, from, (e) => e.type === "m.typing");
    expect(r.hit).toEqual({ type: "m.typing", room_id: roomId, content: { user_ids: [bob.userId] } });
    from = r.end;

    expect((await c.post(`${V3}/rooms/${enc(roomId)}/receipt/m.read/${enc(eventId)}`, {}, { token: bob.accessToken })).status).toBe(200);
    r = await streamUntil(alice, from, (e) => e.type === "m.receipt");
    expect(r.hit.room_id).toBe(roomId);
    expect(Object.keys((r.hit.content[eventId] as Json)["m.read"] as Json)).toContain(bob.userId);
    from = r.end;

    expect((await c.put(`${V3}/presence/${enc(bob.userId)}/status`, { presence: "unavailable", status_msg: "away" }, { token: bob.accessToken })).status).toBe(200);
    r = await streamUntil(alice, from, (e) => e.type === "m.presence" && e.content.user_id === bob.userId && e.content.presence === "unavailable");
    expect(r.hit).toMatchObject({ sender: bob.userId, content: { status_msg: "away" } });
    from = r.end;

    expect((await c.put(`${V3}/user/${enc(alice.userId)}/account_data/org.example.global`, { a: 1 }, { token: alice.accessToken })).status).toBe(200);
    expect((await c.put(`${V3}/user/${enc(alice.userId)}/rooms/${enc(roomId)}/account_data/org.example.room`, { b: 2 }, { token: alice.accessToken })).status).toBe(200);
    r = await streamUntil(alice, from, (e) => e.type === "org.example.room");
    const all = r.seen;
    expect(all.find((e) => e.type === "org.example.global")).toEqual({ type: "org.example.global", content: { a: 1 } });
    expect(r.hit).toEqual({ type: "org.example.room", room_id: roomId, content: { b: 2 } });
  });

  it("accepts /sync's next_batch as from", async () => {
    const alice = await user();
    const roomId = await createRoom(c, alice);
    const s = await sync(c, alice);
    await send(c, alice, roomId, "after sync");
    const res = await events(alice, { from: s.next_batch, timeout: 0 });
    expect(res.status, res.text).toBe(200);
    expect(res.body.chunk.some(isMessage("after sync"))).toBe(true);
  });

  it("lets a non-member (and a guest) peek into a world_readable room with room_id, and only that room", async () => {
    const alice = await user();
    const carol = await user();
    const roomId = await createRoom(c, alice, { preset: "public_chat" });
    await setState(c, alice, roomId, "m.room.history_visibility", "", { history_visibility: "world_readable" });
    const g = await guest();
    for (const peeker of [carol, g]) {
      const first = await events(peeker, { room_id: roomId, timeout: 0 });
      expect(first.status, first.text).toBe(200);
      const waiting = events(peeker, { room_id: roomId, from: first.body.end, timeout: 20_000 });
      await new Promise((r) => setTimeout(r, 200));
      await send(c, alice, roomId, `for peekers ${peeker.userId}`);
      const res = await waiting;
      expect(res.status).toBe(200);
      expect(res.body.chunk.some(isMessage(`for peekers ${peeker.userId}`))).toBe(true);
      expect(res.body.chunk.every((e) => e.room_id === roomId)).toBe(true);
    }
  });

  it("gives a peeker the room members' presence, receipts and typing", async () => {
    const alice = await user();
    const carol = await user();
    const roomId = await createRoom(c, alice, { preset: "public_chat" });
    await setState(c, alice, roomId, "m.room.history_visibility", "", { history_visibility: "world_readable" });
    const eventId = await send(c, alice, roomId, "peeked");
    let from = (await events(carol, { room_id: roomId, timeout: 0 })).body.end;

    expect((await c.put(`${V3}/presence/${enc(alice.userId)}/status`, { presence: "online", status_msg: "peek me" }, { token: alice.accessToken })).status).toBe(200);
    let r = await streamUntil(carol, from, (e) => e.type === "m.presence" && e.content.user_id === alice.userId, { room_id: roomId });
    expect(r.hit.content.status_msg).toBe("peek me");
    from = r.end;

    expect((await c.post(`${V3}/rooms/${enc(roomId)}/receipt/m.read/${enc(eventId)}`, {}, { token: alice.accessToken })).status).toBe(200);
    r = await streamUntil(carol, from, (e) => e.type === "m.receipt", { room_id: roomId });
    expect(r.hit.room_id).toBe(roomId);
    from = r.end;

    expect((await c.put(`${V3}/rooms/${enc(roomId)}/typing/${enc(alice.userId)}`, { typing: true, timeout: 10_000 }, { token: alice.accessToken })).status).toBe(200);
    r = await streamUntil(carol, from, (e) => e.type === "m.typing", { room_id: roomId });
    expect(r.hit).toEqual({ type: "m.typing", room_id: roomId, content: { user_ids: [alice.userId] } });
  });

  it("refuses peeking into a room whose history is not world_readable, and an unknown room: 403 M_FORBIDDEN", async () => {
    const alice = await user();
    const carol = await user();
    const roomId = await createRoom(c, alice, { preset: "public_chat" });
    await send(c, alice, roomId, "private");
    expectError(await events(carol, { room_id: roomId, timeout: 0 }), 403, "M_FORBIDDEN");
    expectError(await events(carol, { room_id: "!nope:test.local", timeout: 0 }), 403, "M_FORBIDDEN");
  });

  it("refuses bad parameters and a missing token", async () => {
    const alice = await user();
    const from = await streamEnd(alice);
    expectError(await events(alice, { from, limit: "hello" }), 400, "M_INVALID_PARAM");
    expectError(await events(alice, { from, limit: -2 }), 400, "M_INVALID_PARAM");
    expectError(await events(alice, { from, timeout: "hello" }), 400, "M_INVALID_PARAM");
    expectError(await events(alice, { from: "not-a-token", timeout: 0 }), 400, "M_INVALID_PARAM");
    expectError(await events(alice, { room_id: "no-room-id", timeout: 0 }), 400, "M_INVALID_PARAM");
    expectError(await c.get(`${R0}/events?timeout=0`), 401, "M_MISSING_TOKEN");
    expectError(await events({ accessToken: "bogus" }, { timeout: 0 }), 401, "M_UNKNOWN_TOKEN");
  });

  it("requires room_id from guests: 400 M_MISSING_PARAM", async () => {
    const g = await guest();
    expectError(await events(g, { timeout: 0 }), 400, "M_MISSING_PARAM");
  });
});

describe("GET /events/{eventId}", () => {
  it("returns a visible event, 404 M_NOT_FOUND for an unknown one and 403 M_FORBIDDEN for a hidden one", async () => {
    const alice = await user();
    const carol = await user();
    const roomId = await createRoom(c, alice, { preset: "private_chat" });
    const eventId = await send(c, alice, roomId, "single");
    const res = await c.get<StreamEvent>(`${R0}/events/${enc(eventId)}`, { token: alice.accessToken });
    expect(res.status, res.text).toBe(200);
    expect(res.body).toMatchObject({ event_id: eventId, room_id: roomId, user_id: alice.userId, content: { body: "single" } });
    expectError(await c.get(`${R0}/events/${enc("$unknown:test.local")}`, { token: alice.accessToken }), 404, "M_NOT_FOUND");
    expectError(await c.get(`${R0}/events/${enc(eventId)}`, { token: carol.accessToken }), 403, "M_FORBIDDEN");
  });
});

interface RoomSnapshot extends Json {
  room_id: string;
  membership?: string;
  visibility?: string;
  inviter?: string;
  invite?: StreamEvent;
  messages: { chunk: StreamEvent[]; start: string; end: string };
  state: StreamEvent[];
  presence?: StreamEvent[];
  receipts?: StreamEvent[];
  account_data: StreamEvent[];
}

describe("GET /initialSync", () => {
  it("lists joined rooms with state and messages, invites with the inviter, and left rooms only with archived", async () => {
    const alice = await user();
    const bob = await user();
    const joined = await createRoom(c, alice, { preset: "public_chat", visibility: "public", topic: "the topic" });
    await send(c, alice, joined, "hello snapshot");
    await c.put(`${V3}/user/${enc(alice.userId)}/rooms/${enc(joined)}/tags/u.work`, { order: 0.5 }, { token: alice.accessToken });
    await c.put(`${V3}/user/${enc(alice.userId)}/account_data/org.example.global`, { g: true }, { token: alice.accessToken });
    const invited = await createRoom(c, bob, { preset: "private_chat" });
    await inviteUser(c, bob, invited, alice.userId);
    const left = await createRoom(c, bob, { preset: "public_chat" });
    await joinRoom(c, alice, left);
    await send(c, bob, left, "before leaving");
    await leaveRoom(c, alice, left);
    await send(c, bob, left, "after leaving");

    const res = await c.get<{ rooms: RoomSnapshot[]; presence: StreamEvent[]; account_data: StreamEvent[]; receipts: StreamEvent[]; end: string }>(`${R0}/initialSync`, { token: alice.accessToken });
    expect(res.status, res.text).toBe(200);
    const byId = new Map(res.body.rooms.map((r) => [r.room_id, r]));
    const j = byId.get(joined)!;
    expect(j).toMatchObject({ membership: "join", visibility: "public" });
    expect(j.state.find((e) => e.type === "m.room.topic")?.content).toMatchObject({ topic: "the topic" });
    expect(j.messages.chunk.at(-1)?.content.body).toBe("hello snapshot");
    expect(j.messages.chunk.length).toBeLessThanOrEqual(10);
    expect(j.account_data).toContainEqual({ type: "m.tag", content: { tags: { "u.work": { order: 0.5 } } } });
    const inv = byId.get(invited)!;
    expect(inv).toMatchObject({ membership: "invite", visibility: "private", inviter: bob.userId, invite: { state_key: alice.userId, content: { membership: "invite" } } });
    expect(byId.has(left)).toBe(false);
    expect(res.body.account_data).toContainEqual({ type: "org.example.global", content: { g: true } });
    expect(typeof res.body.end).toBe("string");
    expect(Array.isArray(res.body.presence) && Array.isArray(res.body.receipts)).toBe(true);

    // /events continues from `end`.
    await send(c, alice, joined, "after snapshot");
    const next = await events(alice, { from: res.body.end, timeout: 0 });
    expect(next.body.chunk.some(isMessage("after snapshot"))).toBe(true);

    const archived = await c.get<{ rooms: RoomSnapshot[] }>(`${R0}/initialSync?archived=true&limit=2`, { token: alice.accessToken });
    expect(archived.status).toBe(200);
    const l = archived.body.rooms.find((r) => r.room_id === left)!;
    expect(l.membership).toBe("leave");
    expect(l.messages.chunk.map((e) => e.content.body ?? e.content.membership)).toEqual(["before leaving", "leave"]);
  });

  it("gives no messages with limit=0 and refuses a non-numeric limit: 400 M_INVALID_PARAM", async () => {
    const alice = await user();
    const roomId = await createRoom(c, alice);
    await send(c, alice, roomId, "x");
    const res = await c.get<{ rooms: RoomSnapshot[] }>(`${V3}/initialSync?limit=0`, { token: alice.accessToken });
    expect(res.status).toBe(200);
    expect(res.body.rooms.find((r) => r.room_id === roomId)!.messages.chunk).toEqual([]);
    expectError(await c.get(`${V3}/initialSync?limit=hello`, { token: alice.accessToken }), 400, "M_INVALID_PARAM");
    expectError(await c.get(`${V3}/initialSync`), 401, "M_MISSING_TOKEN");
  });
});

describe("GET /rooms/{roomId}/initialSync", () => {
  it("gives a member the room with membership, state, messages, presence and receipts", async () => {
    const alice = await user();
    await streamEnd(alice); // marks alice online
    const roomId = await createRoom(c, alice, { preset: "public_chat" });
    const eventId = await send(c, alice, roomId, "room snapshot");
    await c.post(`${V3}/rooms/${enc(roomId)}/receipt/m.read/${enc(eventId)}`, {}, { token: alice.accessToken });
    const res = await c.get<RoomSnapshot>(`${V3}/rooms/${enc(roomId)}/initialSync?limit=5`, { token: alice.accessToken });
    expect(res.status, res.text).toBe(200);
    expect(res.body).toMatchObject({ room_id: roomId, membership: "join" });
    expect(res.body.messages.chunk.length).toBeLessThanOrEqual(5);
    expect(res.body.messages.chunk.at(-1)).toMatchObject({ event_id: eventId, room_id: roomId });
    const me = res.body.state.find((e) => e.type === "m.room.member" && e.state_key === alice.userId)!;
    expect(me).toMatchObject({ user_id: alice.userId, content: { membership: "join" } });
    expect(res.body.presence).toContainEqual(expect.objectContaining({ type: "m.presence", content: expect.objectContaining({ user_id: alice.userId, presence: "online" }) }));
    expect(res.body.receipts?.[0]).toMatchObject({ type: "m.receipt", room_id: roomId });
    const limited = await c.get<RoomSnapshot>(`${V3}/rooms/${enc(roomId)}/initialSync?limit=0`, { token: alice.accessToken });
    expect(limited.body.messages.chunk).toEqual([]);
  });

  it("shows a world_readable room to a non-member (no membership), whose /events then continues from messages.end", async () => {
    const alice = await user();
    const carol = await user();
    const roomId = await createRoom(c, alice, { preset: "public_chat" });
    await setState(c, alice, roomId, "m.room.history_visibility", "", { history_visibility: "world_readable" });
    await send(c, alice, roomId, "readable");
    const res = await c.get<RoomSnapshot>(`${V3}/rooms/${enc(roomId)}/initialSync`, { token: carol.accessToken });
    expect(res.status, res.text).toBe(200);
    expect(res.body.membership).toBeUndefined();
    expect(res.body.messages.chunk.some(isMessage("readable"))).toBe(true);
    await send(c, alice, roomId, "next one");
    const { hit } = await streamUntil(carol, res.body.messages.end, isMessage("next one"), { room_id: roomId });
    expect(hit.room_id).toBe(roomId);
  });

  it("shows a departed user the room as it was when they left, without presence or receipts", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await roomWith(c, alice, [bob]);
    await setState(c, alice, roomId, "org.example.state", "", { v: "before" });
    await send(c, alice, roomId, "M1");
    await leaveRoom(c, bob, roomId);
    await setState(c, alice, roomId, "org.example.state", "", { v: "after" });
    await send(c, alice, roomId, "M2");
    const res = await c.get<RoomSnapshot>(`${V3}/rooms/${enc(roomId)}/initialSync?limit=2`, { token: bob.accessToken });
    expect(res.status, res.text).toBe(200);
    expect(res.body.membership).toBe("leave");
    expect(res.body.state.find((e) => e.type === "org.example.state")?.content).toEqual({ v: "before" });
    expect(res.body.messages.chunk.map((e) => e.content.body ?? e.content.membership)).toEqual(["M1", "leave"]);
    expect(res.body.presence).toEqual([]);
    expect(res.body.receipts).toEqual([]);
  });

  it("refuses a non-member of a room that is not world_readable (403 M_FORBIDDEN), a bad room id and a bad limit (400)", async () => {
    const alice = await user();
    const carol = await user();
    const roomId = await createRoom(c, alice, { preset: "public_chat" });
    expectError(await c.get(`${V3}/rooms/${enc(roomId)}/initialSync`, { token: carol.accessToken }), 403, "M_FORBIDDEN");
    expectError(await c.get(`${V3}/rooms/${enc("!unknown:test.local")}/initialSync`, { token: carol.accessToken }), 403, "M_FORBIDDEN");
    expectError(await c.get(`${V3}/rooms/not-a-room/initialSync`, { token: carol.accessToken }), 400, "M_INVALID_PARAM");
    expectError(await c.get(`${V3}/rooms/${enc(roomId)}/initialSync?limit=x`, { token: alice.accessToken }), 400, "M_INVALID_PARAM");
  });
});
