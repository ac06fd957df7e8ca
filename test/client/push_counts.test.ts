/**
 * Notification counts (spec "Receiving notifications", "Marking notifications as read"): the counts in /sync come
 * from push rules evaluated for every event, move in the same response as the event, and come down with read
 * receipts (m.read, m.read.private, threaded), read markers and the user's own events; GET /notifications lists them.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client, expectError, registerUser, type TestUser } from "../helpers/http.js";
import { startTestServer, type TestServer } from "../helpers/server.js";
import { enc, roomWith, send, setState, sync, syncUntil, V3, type Json, type SyncResponse } from "../helpers/rooms.js";

let ts: TestServer;
let c: Client;

beforeAll(async () => {
  ts = await startTestServer();
  c = new Client(ts.baseUrl);
});
afterAll(async () => {
  await ts?.close();
});

type Counts = { notification_count?: number; highlight_count?: number };
function countsIn(s: SyncResponse, roomId: string): Counts | undefined {
  return s.rooms.join[roomId]?.unread_notifications;
}

async function receipt(user: TestUser, roomId: string, eventId: string, type = "m.read", threadId?: string): Promise<void> {
  const res = await c.post(`${V3}/rooms/${enc(roomId)}/receipt/${type}/${enc(eventId)}`, threadId ? { thread_id: threadId } : {}, { token: user.accessToken });
  expect(res.status).toBe(200);
}

/** Bob's counts for the room once his /sync shows the event. */
async function countsAfter(bob: TestUser, since: string, roomId: string, eventId: string, params: Record<string, string | number | boolean | object> = {}): Promise<{ counts: Counts; sync: SyncResponse }> {
  const s = await syncUntil(c, bob, since, (r) => (r.rooms.join[roomId]?.timeline.events ?? []).some((e) => e.event_id === eventId), { params });
  return { counts: countsIn(s, roomId)!, sync: s };
}

describe("unread notification counts in /sync", () => {
  it("a message counts in the same /sync that carries it; a mention highlights; a receipt clears both", async () => {
    const alice = await registerUser(c);
    const bob = await registerUser(c);
    const carol = await registerUser(c);
    // Three members: not a one-to-one room, so .m.rule.message (notify, no sound) applies.
    const roomId = await roomWith(c, alice, [bob, carol]);
    const first = await sync(c, bob);
    expect(countsIn(first, roomId)).toEqual({ notification_count: 0, highlight_count: 0 });

    const m1 = await send(c, alice, roomId, "hello");
    let r = await countsAfter(bob, first.next_batch, roomId, m1);
    expect(r.counts).toEqual({ notification_count: 1, highlight_count: 0 });

    const m2 = await send(c, alice, roomId, { msgtype: "m.text", body: "hey bob", "m.mentions": { user_ids: [bob.userId] } });
    r = await countsAfter(bob, r.sync.next_batch, roomId, m2);
    expect(r.counts).toEqual({ notification_count: 2, highlight_count: 1 });

    // Carol was not mentioned: one notification each, no highlight.
    const carolSync = await sync(c, carol);
    expect(countsIn(carolSync, roomId)).toEqual({ notification_count: 2, highlight_count: 0 });

    // Bob reads the first message: the mention is still unread.
    await receipt(bob, roomId, m1);
    let s = await syncUntil(c, bob, r.sync.next_batch, (x) => countsIn(x, roomId)?.notification_count === 1);
    expect(countsIn(s, roomId)).toEqual({ notification_count: 1, highlight_count: 1 });
    // A private receipt further on reads the rest.
    await receipt(bob, roomId, m2, "m.read.private");
    s = await syncUntil(c, bob, s.next_batch, (x) => countsIn(x, roomId)?.notification_count === 0);
    expect(countsIn(s, roomId)).toEqual({ notification_count: 0, highlight_count: 0 });
    // An older m.read after a newer private one changes nothing (the further receipt counts).
    await receipt(bob, roomId, m1);
    expect(countsIn(await sync(c, bob), roomId)).toEqual({ notification_count: 0, highlight_count: 0 });
  });

  it("a one-to-one room notifies (with sound); the sender's own messages never count; sending reads the room", async () => {
    const alice = await registerUser(c);
    const bob = await registerUser(c);
    const roomId = await roomWith(c, alice, [bob]);
    const m1 = await send(c, alice, roomId, "one");
    await send(c, alice, roomId, "two");
    const s = await sync(c, bob);
    expect(countsIn(s, roomId)?.notification_count).toBe(2);
    expect(countsIn(await sync(c, alice), roomId)?.notification_count).toBe(0);
    // Bob answers: everything up to his own message is read.
    const reply = await send(c, bob, roomId, "answer");
    const after = await countsAfter(bob, s.next_batch, roomId, reply);
    expect(after.counts.notification_count).toBe(0);

    const notes = await c.get<{ notifications: { event: { event_id: string }; read: boolean; actions: unknown[] }[] }>(`${V3}/notifications`, { token: bob.accessToken });
    expect(notes.status).toBe(200);
    const n1 = notes.body.notifications.find((n) => n.event.event_id === m1)!;
    expect(n1.read).toBe(true);
    expect(n1.actions).toEqual(["notify", { set_tweak: "sound", value: "default" }]);
  });

  it("concurrent sends by two members, written in shared batches, count for each other and read for the sender", async () => {
    const alice = await registerUser(c);
    const bob = await registerUser(c);
    const roomId = await roomWith(c, alice, [bob]);
    // Many sends in flight at once go into one group commit: the sender's read position moves several times there.
    await Promise.all([...Array(20).keys()].map((i) => send(c, i % 2 === 0 ? alice : bob, roomId, `burst ${i}`)));
    const last = await send(c, alice, roomId, "last");
    const s = await sync(c, bob);
    expect(s.rooms.join[roomId]?.timeline.events.some((e) => e.event_id === last)).toBe(true);
    // Bob's count: alice's messages after bob's own newest one, and at least the last one.
    expect(countsIn(s, roomId)?.notification_count).toBeGreaterThanOrEqual(1);
    expect(countsIn(s, roomId)?.notification_count).toBeLessThanOrEqual(11);
    expect(countsIn(await sync(c, alice), roomId)?.notification_count).toBe(0);
    const notes = await c.get<{ notifications: { event: { event_id: string } }[] }>(`${V3}/notifications?limit=50`, { token: bob.accessToken });
    expect(notes.body.notifications.filter((n) => n.event.event_id === last)).toHaveLength(1);
  });

  it("read markers with m.read clear the counts; m.fully_read alone does not", async () => {
    const alice = await registerUser(c);
    const bob = await registerUser(c);
    const carol = await registerUser(c);
    const roomId = await roomWith(c, alice, [bob, carol]);
    const m1 = await send(c, alice, roomId, "a");
    const m2 = await send(c, alice, roomId, "b");
    expect(countsIn(await sync(c, bob), roomId)?.notification_count).toBe(2);
    let res = await c.post(`${V3}/rooms/${enc(roomId)}/read_markers`, { "m.fully_read": m2 }, { token: bob.accessToken });
    expect(res.status).toBe(200);
    expect(countsIn(await sync(c, bob), roomId)?.notification_count).toBe(2);
    res = await c.post(`${V3}/rooms/${enc(roomId)}/read_markers`, { "m.fully_read": m2, "m.read": m1 }, { token: bob.accessToken });
    expect(res.status).toBe(200);
    expect(countsIn(await sync(c, bob), roomId)?.notification_count).toBe(1);
  });

  it("threads: unread_thread_notifications per thread, threaded receipts clear only their thread", async () => {
    const alice = await registerUser(c);
    const bob = await registerUser(c);
    const carol = await registerUser(c);
    const roomId = await roomWith(c, alice, [bob, carol]);
    const root = await send(c, alice, roomId, "root");
    const inThread = (body: string) => ({ msgtype: "m.text", body, "m.relates_to": { rel_type: "m.thread", event_id: root, is_falling_back: true, "m.in_reply_to": { event_id: root } } });
    const t1 = await send(c, alice, roomId, inThread("t1"));
    const t2 = await send(c, alice, roomId, { ...inThread("t2 @bob"), "m.mentions": { user_ids: [bob.userId] } });
    const filter = { room: { timeline: { unread_thread_notifications: true } } };

    let s = await sync(c, bob, { filter });
    let room = s.rooms.join[roomId] as unknown as { unread_notifications: Counts; unread_thread_notifications: Record<string, Counts> };
    expect(room.unread_notifications).toEqual({ notification_count: 1, highlight_count: 0 });
    expect(room.unread_thread_notifications).toEqual({ [root]: { notification_count: 2, highlight_count: 1 } });
    // Without the filter, every thread counts in the room's figure.
    expect(countsIn(await sync(c, bob), roomId)).toEqual({ notification_count: 3, highlight_count: 1 });

    // A receipt in the thread reads only the thread.
    await receipt(bob, roomId, t1, "m.read", root);
    s = await sync(c, bob, { filter });
    room = s.rooms.join[roomId] as unknown as typeof room;
    expect(room.unread_notifications).toEqual({ notification_count: 1, highlight_count: 0 });
    expect(room.unread_thread_notifications).toEqual({ [root]: { notification_count: 1, highlight_count: 1 } });
    // A main-timeline receipt reads the main timeline only.
    await receipt(bob, roomId, root, "m.read", "main");
    s = await sync(c, bob, { filter });
    room = s.rooms.join[roomId] as unknown as typeof room;
    expect(room.unread_notifications).toEqual({ notification_count: 0, highlight_count: 0 });
    expect(room.unread_thread_notifications).toEqual({ [root]: { notification_count: 1, highlight_count: 1 } });
    // An unthreaded receipt reads everything before it.
    await receipt(bob, roomId, t2);
    s = await sync(c, bob, { filter });
    room = s.rooms.join[roomId] as unknown as typeof room;
    expect(room.unread_notifications).toEqual({ notification_count: 0, highlight_count: 0 });
    expect(room.unread_thread_notifications).toEqual({});
  });

  it("notices, edits, reactions and member events do not notify; @room from someone with power highlights", async () => {
    const alice = await registerUser(c);
    const bob = await registerUser(c);
    const carol = await registerUser(c);
    const roomId = await roomWith(c, alice, [bob, carol]);
    const m = await send(c, alice, roomId, "original");
    await send(c, alice, roomId, { msgtype: "m.notice", body: "notice" });
    await send(c, alice, roomId, { msgtype: "m.text", body: "* edited", "m.new_content": { msgtype: "m.text", body: "edited" }, "m.relates_to": { rel_type: "m.replace", event_id: m } });
    await send(c, carol, roomId, { "m.relates_to": { rel_type: "m.annotation", event_id: m, key: "👍" } }, "m.reaction");
    await setState(c, alice, roomId, "m.room.topic", "", { topic: "a topic" });
    expect(countsIn(await sync(c, bob), roomId)).toEqual({ notification_count: 1, highlight_count: 0 });
    // Alice created the room (power 100): her @room highlights. Carol (power 0) cannot notify the room.
    await send(c, alice, roomId, { msgtype: "m.text", body: "@room hi", "m.mentions": { room: true } });
    await send(c, carol, roomId, { msgtype: "m.text", body: "@room hi", "m.mentions": { room: true } });
    expect(countsIn(await sync(c, bob), roomId)).toEqual({ notification_count: 3, highlight_count: 1 });
  });

  it("legacy mentions: a body with the user's display name or localpart highlights, unless m.mentions is there", async () => {
    const alice = await registerUser(c);
    const bob = await registerUser(c);
    const carol = await registerUser(c);
    const roomId = await roomWith(c, alice, [bob, carol]);
    const res = await c.put(`${V3}/profile/${enc(bob.userId)}/displayname`, { displayname: "Bobby Tables" }, { token: bob.accessToken });
    expect(res.status).toBe(200);
    const bobLocal = bob.userId.slice(1).split(":")[0]!;
    await send(c, alice, roomId, "ask bobby tables!");
    await send(c, alice, roomId, `hello ${bobLocal}.`);
    await send(c, alice, roomId, { msgtype: "m.text", body: "bobby tables again", "m.mentions": {} });
    expect(countsIn(await sync(c, bob), roomId)).toEqual({ notification_count: 3, highlight_count: 2 });
    expect(countsIn(await sync(c, carol), roomId)).toEqual({ notification_count: 3, highlight_count: 0 });
  });

  it("muting a room with a room rule stops its counts, without changing other rooms", async () => {
    const alice = await registerUser(c);
    const bob = await registerUser(c);
    const carol = await registerUser(c);
    const muted = await roomWith(c, alice, [bob, carol]);
    const other = await roomWith(c, alice, [bob, carol]);
    const res = await c.put(`${V3}/pushrules/global/room/${enc(muted)}`, { actions: [] }, { token: bob.accessToken });
    expect(res.status).toBe(200);
    await send(c, alice, muted, "shh");
    await send(c, alice, other, "hi");
    const s = await sync(c, bob);
    expect(countsIn(s, muted)?.notification_count).toBe(0);
    expect(countsIn(s, other)?.notification_count).toBe(1);
    expect(countsIn(await sync(c, carol), muted)?.notification_count).toBe(1);
  });

  it("a muted room stays muted after a restart (who changed their rules is known from the start)", async () => {
    const alice = await registerUser(c);
    const bob = await registerUser(c);
    const muted = await roomWith(c, alice, [bob]);
    expect((await c.put(`${V3}/pushrules/global/room/${enc(muted)}`, { actions: [] }, { token: bob.accessToken })).status).toBe(200);
    ts = await ts.restart();
    c = new Client(ts.baseUrl);
    await send(c, alice, muted, "still quiet");
    expect(countsIn(await sync(c, bob), muted)?.notification_count).toBe(0);
  });

  it("an invite notifies the invitee (GET /notifications); members who joined later do not count earlier messages", async () => {
    const alice = await registerUser(c);
    const bob = await registerUser(c);
    const dave = await registerUser(c);
    const roomId = await roomWith(c, alice, [bob]);
    await send(c, alice, roomId, "before dave");
    const invite = await c.post(`${V3}/rooms/${enc(roomId)}/invite`, { user_id: dave.userId }, { token: alice.accessToken });
    expect(invite.status).toBe(200);
    const notes = await c.get<{ notifications: { event: { type: string; content: Json }; room_id: string; read: boolean; ts: number }[] }>(`${V3}/notifications`, { token: dave.accessToken });
    expect(notes.body.notifications).toHaveLength(1);
    expect(notes.body.notifications[0]!.event.type).toBe("m.room.member");
    expect(notes.body.notifications[0]!.room_id).toBe(roomId);
    expect(notes.body.notifications[0]!.read).toBe(false);
    expect(typeof notes.body.notifications[0]!.ts).toBe("number");
    const join = await c.post(`${V3}/join/${enc(roomId)}`, {}, { token: dave.accessToken });
    expect(join.status).toBe(200);
    expect(countsIn(await sync(c, dave), roomId)?.notification_count).toBe(0);
    await send(c, alice, roomId, "after dave");
    expect(countsIn(await sync(c, dave), roomId)?.notification_count).toBe(1);
  });
});

describe("GET /notifications", () => {
  it("lists notifications newest first, pages with from/next_token, filters only=highlight", async () => {
    const alice = await registerUser(c);
    const bob = await registerUser(c);
    const carol = await registerUser(c);
    const roomId = await roomWith(c, alice, [bob, carol]);
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push(await send(c, alice, roomId, i === 2 ? { msgtype: "m.text", body: "ping", "m.mentions": { user_ids: [bob.userId] } } : `msg ${i}`));
    type Page = { notifications: { event: { event_id: string }; actions: unknown[] }[]; next_token?: string };
    const p1 = await c.get<Page>(`${V3}/notifications?limit=3`, { token: bob.accessToken });
    expect(p1.body.notifications.map((n) => n.event.event_id)).toEqual([ids[4], ids[3], ids[2]]);
    expect(p1.body.next_token).toBeDefined();
    const p2 = await c.get<Page>(`${V3}/notifications?limit=3&from=${p1.body.next_token}`, { token: bob.accessToken });
    expect(p2.body.notifications.map((n) => n.event.event_id)).toEqual([ids[1], ids[0]]);
    const hl = await c.get<Page>(`${V3}/notifications?only=highlight`, { token: bob.accessToken });
    expect(hl.body.notifications.map((n) => n.event.event_id)).toEqual([ids[2]]);
    expect(hl.body.notifications[0]!.actions).toContainEqual({ set_tweak: "highlight" });
  });

  it("errors: bad from / limit → 400 M_INVALID_PARAM; no token → 401", async () => {
    const bob = await registerUser(c);
    expectError(await c.get(`${V3}/notifications?from=abc`, { token: bob.accessToken }), 400, "M_INVALID_PARAM");
    expectError(await c.get(`${V3}/notifications?limit=-1`, { token: bob.accessToken }), 400, "M_INVALID_PARAM");
    expectError(await c.get(`${V3}/notifications`), 401, "M_MISSING_TOKEN");
  });
});
