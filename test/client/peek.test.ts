/**
 * Peeking (MSC2753): POST /peek/{roomIdOrAlias} makes a world-readable room follow the peeking device in /sync under
 * `rooms.peek` — in full in the first sync after the peek, then only what is new — until unpeek, a join, or the room
 * ceasing to be world-readable. Other devices of the user see nothing of it. Refused (403) for rooms that are not
 * world-readable.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client, login, registerUser, uniqueName, type TestUser } from "../helpers/http.js";
import { V3, createRoom, enc, joinRoom, send, setState, sync, syncUntil, type SyncResponse } from "../helpers/rooms.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

let ts: TestServer;
let c: Client;
let alice: TestUser;

beforeAll(async () => {
  ts = await startTestServer();
  c = new Client(ts.baseUrl);
  alice = await registerUser(c);
});
afterAll(async () => {
  await ts?.close();
});

type Rooms = SyncResponse["rooms"] & { peek?: Record<string, { timeline: { events: { type: string; content: Record<string, unknown> }[]; limited: boolean; prev_batch: string }; state: { events: unknown[] }; ephemeral: { events: unknown[] } }> };
const peeked = (s: SyncResponse) => (s.rooms as Rooms).peek ?? {};

async function worldReadableRoom(body: Record<string, unknown> = {}): Promise<string> {
  const roomId = await createRoom(c, alice, body);
  await setState(c, alice, roomId, "m.room.history_visibility", "", { history_visibility: "world_readable" });
  return roomId;
}

const peek = (u: TestUser, roomIdOrAlias: string) => c.post(`${V3}/peek/${enc(roomIdOrAlias)}`, {}, { token: u.accessToken });

describe("POST /peek", () => {
  it("a world_readable room comes in full in the next sync, then only with what is new, never unchanged", async () => {
    const roomId = await worldReadableRoom();
    const bob = await registerUser(c);
    const since = (await sync(c, bob)).next_batch;
    const res = await peek(bob, roomId);
    expect(res.status, res.text).toBe(200);
    expect(res.body).toEqual({ room_id: roomId });
    await send(c, alice, roomId, "something to peek");

    const first = await syncUntil(c, bob, since, (s) => peeked(s)[roomId]?.timeline.events.some((e) => e.content.body === "something to peek") ?? false);
    const room = peeked(first)[roomId]!;
    expect(room.timeline.events[0]!.type).toBe("m.room.create");
    expect(room.timeline.events.at(-1)!.content.body).toBe("something to peek");
    expect(room.state.events).toEqual([]);
    expect(room.ephemeral).toEqual({ events: [] });
    expect(typeof room.timeline.prev_batch).toBe("string");
    expect(Object.keys(first.rooms.join)).toEqual([]);

    const again = await sync(c, bob, { since: first.next_batch });
    expect(peeked(again)[roomId]).toBeUndefined();

    await send(c, alice, roomId, "something else to peek");
    const next = await syncUntil(c, bob, first.next_batch, (s) => peeked(s)[roomId] !== undefined);
    expect(peeked(next)[roomId]!.timeline.events.map((e) => e.content.body)).toEqual(["something else to peek"]);
  });

  it("a waiting sync is woken by a message in the peeked room", async () => {
    const roomId = await worldReadableRoom();
    const bob = await registerUser(c);
    expect((await peek(bob, roomId)).status).toBe(200);
    const since = (await sync(c, bob)).next_batch;
    const waiting = sync(c, bob, { since, timeout: 5000 });
    await new Promise((r) => setTimeout(r, 200));
    const t0 = Date.now();
    await send(c, alice, roomId, "wake up");
    const s = await waiting;
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(peeked(s)[roomId]!.timeline.events.map((e) => e.content.body)).toEqual(["wake up"]);
  });

  it("by room alias", async () => {
    const aliasName = uniqueName("peekalias");
    const roomId = await worldReadableRoom({ room_alias_name: aliasName });
    const bob = await registerUser(c);
    const res = await peek(bob, `#${aliasName}:test.local`);
    expect(res.body).toEqual({ room_id: roomId });
    const s = await sync(c, bob);
    expect(peeked(s)[roomId]).toBeDefined();
  });

  it("only the device that peeked sees the room", async () => {
    const roomId = await worldReadableRoom();
    const bob = await registerUser(c);
    const second = await login(c, bob.userId, bob.password);
    const bob2: TestUser = { ...bob, accessToken: second.body.access_token as string, deviceId: second.body.device_id as string };
    expect((await peek(bob, roomId)).status).toBe(200);
    await send(c, alice, roomId, "for device one");
    expect(peeked(await sync(c, bob))[roomId]).toBeDefined();
    expect(peeked(await sync(c, bob2))).toEqual({});
  });

  it.each(["shared", "invited", "joined"])("a room with %s history_visibility: 403 M_FORBIDDEN", async (visibility) => {
    const roomId = await createRoom(c, alice);
    await setState(c, alice, roomId, "m.room.history_visibility", "", { history_visibility: visibility });
    const res = await peek(await registerUser(c), roomId);
    expect(res.status).toBe(403);
    expect(res.body.errcode).toBe("M_FORBIDDEN");
  });

  it("an unknown room is 404 M_NOT_FOUND; a malformed id or alias 400; no token 401", async () => {
    const bob = await registerUser(c);
    const unknown = await peek(bob, "!nowhere:test.local");
    expect([unknown.status, unknown.body.errcode]).toEqual([404, "M_NOT_FOUND"]);
    const alias = await peek(bob, "#nowhere:test.local");
    expect([alias.status, alias.body.errcode]).toEqual([404, "M_NOT_FOUND"]);
    const bad = await peek(bob, "not-a-room");
    expect(bad.status).toBe(400);
    const anon = await c.post(`${V3}/peek/${enc("!x:test.local")}`, {});
    expect([anon.status, anon.body.errcode]).toEqual([401, "M_MISSING_TOKEN"]);
  });
});

describe("how a peek ends", () => {
  it("unpeek: the room no longer comes", async () => {
    const roomId = await worldReadableRoom();
    const bob = await registerUser(c);
    await peek(bob, roomId);
    const s1 = await sync(c, bob);
    expect(peeked(s1)[roomId]).toBeDefined();
    const res = await c.post(`${V3}/rooms/${enc(roomId)}/unpeek`, {}, { token: bob.accessToken });
    expect([res.status, res.body]).toEqual([200, {}]);
    await send(c, alice, roomId, "after unpeek");
    expect(peeked(await sync(c, bob, { since: s1.next_batch }))).toEqual({});
    // Peeking again brings the room in full again.
    await peek(bob, roomId);
    const s2 = await sync(c, bob, { since: s1.next_batch });
    expect(peeked(s2)[roomId]!.timeline.events[0]!.type).toBe("m.room.create");
  });

  it("joining moves the room from peek to join", async () => {
    const roomId = await worldReadableRoom({ preset: "public_chat" });
    const bob = await registerUser(c);
    await peek(bob, roomId);
    const s1 = await sync(c, bob);
    expect(peeked(s1)[roomId]).toBeDefined();
    await joinRoom(c, bob, roomId);
    const s2 = await syncUntil(c, bob, s1.next_batch, (s) => s.rooms.join[roomId] !== undefined);
    expect(peeked(s2)[roomId]).toBeUndefined();
    await send(c, alice, roomId, "now a member");
    const s3 = await syncUntil(c, bob, s2.next_batch, (s) => s.rooms.join[roomId] !== undefined);
    expect(peeked(s3)).toEqual({});
  });

  it("the room ceasing to be world_readable ends the peek", async () => {
    const roomId = await worldReadableRoom();
    const bob = await registerUser(c);
    await peek(bob, roomId);
    const s1 = await sync(c, bob);
    await setState(c, alice, roomId, "m.room.history_visibility", "", { history_visibility: "shared" });
    await send(c, alice, roomId, "private now");
    expect(peeked(await sync(c, bob, { since: s1.next_batch }))).toEqual({});
    await setState(c, alice, roomId, "m.room.history_visibility", "", { history_visibility: "world_readable" });
    expect(peeked(await sync(c, bob, { since: s1.next_batch }))).toEqual({});
  });

  it("a peek survives a restart", async () => {
    const roomId = await worldReadableRoom();
    const bob = await registerUser(c);
    await peek(bob, roomId);
    const since = (await sync(c, bob)).next_batch;
    ts = await ts.restart();
    c = new Client(ts.baseUrl);
    await send(c, alice, roomId, "after the restart");
    const s = await syncUntil(c, bob, since, (r) => peeked(r)[roomId] !== undefined);
    expect(peeked(s)[roomId]!.timeline.events.map((e) => e.content.body)).toEqual(["after the restart"]);
  });
});
