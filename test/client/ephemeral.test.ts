/**
 * Ephemeral data over HTTP (spec "Typing Notifications", "Receipts", "Read Markers", "Presence"): what each
 * endpoint accepts and refuses, and what other users then receive through /sync.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client, expectError, registerUser, type TestUser } from "../helpers/http.js";
import { V3, createRoom, enc, roomWith, send, sync, syncUntil, type BasicEvent, type SyncResponse } from "../helpers/rooms.js";
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

function ephemeral(s: SyncResponse, roomId: string, type: string): BasicEvent[] {
  return (s.rooms.join[roomId]?.ephemeral.events ?? []).filter((e) => e.type === type);
}
const typingUsers = (s: SyncResponse, roomId: string): string[] | undefined => {
  const t = ephemeral(s, roomId, "m.typing");
  return t.length > 0 ? (t[t.length - 1]!.content.user_ids as string[]) : undefined;
};
type ReceiptContent = Record<string, Record<string, Record<string, { ts: number; thread_id?: string }>>>;
const receiptContent = (s: SyncResponse, roomId: string): ReceiptContent | undefined => {
  const r = ephemeral(s, roomId, "m.receipt");
  return r.length > 0 ? (r[0]!.content as ReceiptContent) : undefined;
};

async function typing(u: TestUser, roomId: string, body: object, target = u.userId) {
  return c.put(`${room(roomId)}/typing/${enc(target)}`, body, { token: u.accessToken });
}

describe("typing", () => {
  it("shows in the other user's /sync and clears when the user stops", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await roomWith(c, alice, [bob]);
    const s0 = await sync(c, bob);
    const res = await typing(alice, roomId, { typing: true, timeout: 30_000 });
    expect(res.status, res.text).toBe(200);
    expect(res.body).toEqual({});
    const s1 = await syncUntil(c, bob, s0.next_batch, (s) => typingUsers(s, roomId) !== undefined);
    expect(typingUsers(s1, roomId)).toEqual([alice.userId]);
    // An initial sync shows current typing too.
    expect(typingUsers(await sync(c, bob), roomId)).toEqual([alice.userId]);
    expect((await typing(alice, roomId, { typing: false })).status).toBe(200);
    const s2 = await syncUntil(c, bob, s1.next_batch, (s) => typingUsers(s, roomId) !== undefined);
    expect(typingUsers(s2, roomId)).toEqual([]);
  });

  it("expires after the timeout", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await roomWith(c, alice, [bob]);
    const s0 = await sync(c, bob);
    await typing(alice, roomId, { typing: true, timeout: 300 });
    const s1 = await syncUntil(c, bob, s0.next_batch, (s) => typingUsers(s, roomId) !== undefined);
    expect(typingUsers(s1, roomId)).toEqual([alice.userId]);
    const s2 = await syncUntil(c, bob, s1.next_batch, (s) => typingUsers(s, roomId) !== undefined, { deadlineMs: 10_000 });
    expect(typingUsers(s2, roomId)).toEqual([]);
  });

  it("wakes a waiting /sync", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await roomWith(c, alice, [bob]);
    const s0 = await sync(c, bob);
    const started = Date.now();
    const waiting = c.get<SyncResponse>(`${V3}/sync?since=${enc(s0.next_batch)}&timeout=20000`, { token: bob.accessToken });
    await typing(alice, roomId, { typing: true, timeout: 10_000 });
    const s1 = (await waiting).body;
    expect(Date.now() - started).toBeLessThan(10_000);
    const users = typingUsers(s1, roomId) ?? typingUsers(await syncUntil(c, bob, s1.next_batch, (s) => typingUsers(s, roomId) !== undefined), roomId);
    expect(users).toEqual([alice.userId]);
  });

  it("403 for another user's typing or a room one is not in; 400 for a bad body", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await roomWith(c, alice, [bob]);
    expectError(await typing(bob, roomId, { typing: true }, alice.userId), 403, "M_FORBIDDEN");
    const carol = await user();
    expectError(await typing(carol, roomId, { typing: true }), 403, "M_FORBIDDEN");
    expectError(await typing(alice, roomId, {}), 400, "M_BAD_JSON");
    expectError(await typing(alice, roomId, { typing: "yes" }), 400, "M_BAD_JSON");
    expectError(await typing(alice, roomId, { typing: true, timeout: "long" }), 400, "M_BAD_JSON");
  });
});

describe("receipts", () => {
  it("m.read receipts reach the other members", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await roomWith(c, alice, [bob]);
    const eventId = await send(c, alice, roomId, "read me");
    const s0 = await sync(c, alice);
    const res = await c.post(`${room(roomId)}/receipt/m.read/${enc(eventId)}`, {}, { token: bob.accessToken });
    expect(res.status, res.text).toBe(200);
    expect(res.body).toEqual({});
    const s1 = await syncUntil(c, alice, s0.next_batch, (s) => receiptContent(s, roomId) !== undefined);
    const content = receiptContent(s1, roomId)!;
    expect(typeof content[eventId]!["m.read"]![bob.userId]!.ts).toBe("number");
    expect(content[eventId]!["m.read"]![bob.userId]!.thread_id).toBeUndefined();
    // An initial sync carries it too.
    expect(receiptContent(await sync(c, alice), roomId)![eventId]!["m.read"]![bob.userId]).toBeDefined();
  });

  it("m.read.private receipts reach only their owner", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await roomWith(c, alice, [bob]);
    const eventId = await send(c, alice, roomId, "private");
    const a0 = await sync(c, alice);
    const b0 = await sync(c, bob);
    expect((await c.post(`${room(roomId)}/receipt/m.read.private/${enc(eventId)}`, {}, { token: bob.accessToken })).status).toBe(200);
    const mine = await syncUntil(c, bob, b0.next_batch, (s) => receiptContent(s, roomId) !== undefined);
    expect(receiptContent(mine, roomId)![eventId]!["m.read.private"]![bob.userId]).toBeDefined();
    // Alice hears nothing of it: send a marker event and check the receipt never arrived before it.
    await send(c, bob, roomId, "marker");
    const theirs = await syncUntil(c, alice, a0.next_batch, (s) => (s.rooms.join[roomId]?.timeline.events ?? []).some((e) => e.content.body === "marker"));
    expect(receiptContent(theirs, roomId)).toBeUndefined();
    expect(receiptContent(await sync(c, alice), roomId)).toBeUndefined();
  });

  it("threaded receipts carry thread_id", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await roomWith(c, alice, [bob]);
    const root = await send(c, alice, roomId, "root");
    const reply = await send(c, alice, roomId, { msgtype: "m.text", body: "in thread", "m.relates_to": { rel_type: "m.thread", event_id: root } });
    const s0 = await sync(c, alice);
    expect((await c.post(`${room(roomId)}/receipt/m.read/${enc(reply)}`, { thread_id: root }, { token: bob.accessToken })).status).toBe(200);
    expect((await c.post(`${room(roomId)}/receipt/m.read/${enc(root)}`, { thread_id: "main" }, { token: bob.accessToken })).status).toBe(200);
    const s1 = await syncUntil(c, alice, s0.next_batch, (s) => {
      const r = receiptContent(s, roomId);
      return r !== undefined && r[reply] !== undefined && r[root] !== undefined;
    });
    const content = receiptContent(s1, roomId)!;
    expect(content[reply]!["m.read"]![bob.userId]!.thread_id).toBe(root);
    expect(content[root]!["m.read"]![bob.userId]!.thread_id).toBe("main");
  });

  it("400 for unknown receipt types and invalid thread ids; 404 for unknown events; 403 outside the room", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await roomWith(c, alice, [bob]);
    const eventId = await send(c, alice, roomId, "x");
    const post = (type: string, ev: string, body: unknown, u: TestUser = bob) => c.post(`${room(roomId)}/receipt/${type}/${enc(ev)}`, body, { token: u.accessToken });
    const unknownType = await post("m.bogus", eventId, {});
    expect(unknownType.status, unknownType.text).toBe(400);
    for (const threadId of ["", "not-an-event", 5, null]) expectError(await post("m.read", eventId, { thread_id: threadId }), 400, "M_INVALID_PARAM");
    // m.fully_read cannot be threaded.
    expectError(await post("m.fully_read", eventId, { thread_id: "main" }), 400, "M_INVALID_PARAM");
    expectError(await post("m.read", "$unknown_event", {}), 404, "M_NOT_FOUND");
    const other = await createRoom(c, alice);
    const elsewhere = await send(c, alice, other, "elsewhere");
    expectError(await post("m.read", elsewhere, {}), 404, "M_NOT_FOUND");
    expectError(await post("m.read", eventId, {}, await user()), 403, "M_FORBIDDEN");
  });

  it("m.fully_read through the receipt endpoint sets the read marker", async () => {
    const alice = await user();
    const roomId = await createRoom(c, alice);
    const eventId = await send(c, alice, roomId, "x");
    expect((await c.post(`${room(roomId)}/receipt/m.fully_read/${enc(eventId)}`, {}, { token: alice.accessToken })).status).toBe(200);
    const ad = await c.get(`${V3}/user/${enc(alice.userId)}/rooms/${enc(roomId)}/account_data/m.fully_read`, { token: alice.accessToken });
    expect(ad.body).toEqual({ event_id: eventId });
  });
});

describe("read markers", () => {
  it("sets m.fully_read room account data and the read receipts", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await roomWith(c, alice, [bob]);
    const first = await send(c, alice, roomId, "one");
    const second = await send(c, alice, roomId, "two");
    const a0 = await sync(c, alice);
    const b0 = await sync(c, bob);
    const res = await c.post(`${room(roomId)}/read_markers`, { "m.fully_read": first, "m.read": second, "m.read.private": second }, { token: bob.accessToken });
    expect(res.status, res.text).toBe(200);
    expect(res.body).toEqual({});
    const ad = await c.get(`${V3}/user/${enc(bob.userId)}/rooms/${enc(roomId)}/account_data/m.fully_read`, { token: bob.accessToken });
    expect(ad.body).toEqual({ event_id: first });
    const mine = await syncUntil(c, bob, b0.next_batch, (s) => (s.rooms.join[roomId]?.account_data.events ?? []).some((e) => e.type === "m.fully_read"));
    expect(mine.rooms.join[roomId]!.account_data.events).toContainEqual({ type: "m.fully_read", content: { event_id: first } });
    const theirs = await syncUntil(c, alice, a0.next_batch, (s) => receiptContent(s, roomId) !== undefined);
    const content = receiptContent(theirs, roomId)!;
    expect(content[second]!["m.read"]![bob.userId]).toBeDefined();
    expect(content[second]!["m.read.private"]).toBeUndefined();
    // The read marker is private: it never appears in Alice's sync as account data.
    expect(theirs.rooms.join[roomId]!.account_data.events).toEqual([]);
  });

  it("404 for unknown events, 403 outside the room, 400 for wrong types", async () => {
    const alice = await user();
    const roomId = await createRoom(c, alice);
    expectError(await c.post(`${room(roomId)}/read_markers`, { "m.fully_read": "$nope" }, { token: alice.accessToken }), 404, "M_NOT_FOUND");
    const ev = await send(c, alice, roomId, "x");
    expectError(await c.post(`${room(roomId)}/read_markers`, { "m.fully_read": ev }, { token: (await user()).accessToken }), 403, "M_FORBIDDEN");
    expectError(await c.post(`${room(roomId)}/read_markers`, { "m.fully_read": 5 }, { token: alice.accessToken }), 400, "M_BAD_JSON");
  });
});

describe("presence", () => {
  it("PUT and GET one's own presence with a status message", async () => {
    const alice = await user();
    const put = await c.put(`${V3}/presence/${enc(alice.userId)}/status`, { presence: "unavailable", status_msg: "lunch" }, { token: alice.accessToken });
    expect(put.status, put.text).toBe(200);
    expect(put.body).toEqual({});
    const get = await c.get(`${V3}/presence/${enc(alice.userId)}/status`, { token: alice.accessToken });
    expect(get.status).toBe(200);
    expect(get.body).toMatchObject({ presence: "unavailable", status_msg: "lunch", currently_active: false });
    expect(typeof get.body.last_active_ago).toBe("number");
    await c.put(`${V3}/presence/${enc(alice.userId)}/status`, { presence: "online" }, { token: alice.accessToken });
    const online = await c.get(`${V3}/presence/${enc(alice.userId)}/status`, { token: alice.accessToken });
    expect(online.body).toMatchObject({ presence: "online", currently_active: true });
  });

  it("403 setting another user's presence; 400 for an invalid state", async () => {
    const alice = await user();
    const bob = await user();
    expectError(await c.put(`${V3}/presence/${enc(alice.userId)}/status`, { presence: "online" }, { token: bob.accessToken }), 403, "M_FORBIDDEN");
    const bad = await c.put(`${V3}/presence/${enc(alice.userId)}/status`, { presence: "sleeping" }, { token: alice.accessToken });
    expect(bad.status).toBe(400);
    expectError(await c.put(`${V3}/presence/${enc(alice.userId)}/status`, {}, { token: alice.accessToken }), 400, "M_BAD_JSON");
  });

  it("others see it when they share a room, through GET and /sync", async () => {
    const alice = await user();
    const bob = await user();
    const stranger = await user();
    await roomWith(c, alice, [bob]);
    const b0 = await sync(c, bob);
    const s0 = await sync(c, stranger);
    await c.put(`${V3}/presence/${enc(alice.userId)}/status`, { presence: "unavailable", status_msg: "away" }, { token: alice.accessToken });
    const get = await c.get(`${V3}/presence/${enc(alice.userId)}/status`, { token: bob.accessToken });
    expect(get.status, get.text).toBe(200);
    expect(get.body).toMatchObject({ presence: "unavailable", status_msg: "away" });
    expectError(await c.get(`${V3}/presence/${enc(alice.userId)}/status`, { token: stranger.accessToken }), 403, "M_FORBIDDEN");
    const s1 = await syncUntil(c, bob, b0.next_batch, (s) => s.presence.events.some((e) => e.sender === alice.userId && e.content.status_msg === "away"));
    const ev = s1.presence.events.find((e) => e.sender === alice.userId)!;
    expect(ev.type).toBe("m.presence");
    expect(ev.content).toMatchObject({ presence: "unavailable", status_msg: "away" });
    // The stranger's sync never carries it.
    const s2 = await sync(c, stranger, { since: s0.next_batch });
    expect(s2.presence.events.some((e) => e.sender === alice.userId)).toBe(false);
  });

  it("a newly shared room brings the other members' current presence to both sides", async () => {
    const alice = await user();
    const bob = await user();
    await c.put(`${V3}/presence/${enc(alice.userId)}/status`, { presence: "unavailable", status_msg: "busy" }, { token: alice.accessToken });
    const roomId = await createRoom(c, alice, { preset: "public_chat" });
    const a0 = await sync(c, alice, { set_presence: "unavailable" });
    const b0 = await sync(c, bob);
    // Nothing changes in either presence from here; only the room becomes shared.
    await c.post(`${V3}/join/${enc(roomId)}`, {}, { token: bob.accessToken });
    const b1 = await sync(c, bob, { since: b0.next_batch });
    expect(b1.presence.events.find((e) => e.sender === alice.userId)?.content).toMatchObject({ presence: "unavailable", status_msg: "busy" });
    const a1 = await sync(c, alice, { since: a0.next_batch, set_presence: "unavailable" });
    expect(a1.presence.events.find((e) => e.sender === bob.userId)?.content).toMatchObject({ presence: "online" });
    // Only once.
    const b2 = await sync(c, bob, { since: b1.next_batch });
    expect(b2.presence.events.some((e) => e.sender === alice.userId)).toBe(false);
  });
});
