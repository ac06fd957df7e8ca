// Bundled aggregations (spec "Aggregations of child events"): which edits count, and history visibility.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client, registerUser, type TestUser } from "../helpers/http.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

let ts: TestServer;
let c: Client;
let alice: TestUser;
let bob: TestUser;
const enc = encodeURIComponent;
let txn = 0;

beforeAll(async () => {
  ts = await startTestServer();
  c = new Client(ts.baseUrl);
  alice = await registerUser(c);
  bob = await registerUser(c);
});
afterAll(async () => {
  await ts?.close();
});

async function send(u: TestUser, roomId: string, content: Record<string, unknown>): Promise<string> {
  const r = await c.put(`/_matrix/client/v3/rooms/${enc(roomId)}/send/m.room.message/a${txn++}`, content, { token: u.accessToken });
  expect(r.status, r.text).toBe(200);
  return r.body.event_id as string;
}

async function relations(u: TestUser, roomId: string, eventId: string) {
  const r = await c.get(`/_matrix/client/v3/rooms/${enc(roomId)}/event/${enc(eventId)}`, { token: u.accessToken });
  expect(r.status, r.text).toBe(200);
  return ((r.body.unsigned as Record<string, unknown>)?.["m.relations"] ?? {}) as Record<string, Record<string, unknown>>;
}

describe("bundled m.replace", () => {
  it("ignores an edit without m.new_content and an edit of an edit", async () => {
    const roomId = (await c.post("/_matrix/client/v3/createRoom", {}, { token: alice.accessToken })).body.room_id as string;
    const original = await send(alice, roomId, { msgtype: "m.text", body: "hello" });
    const good = await send(alice, roomId, { msgtype: "m.text", body: "* hi", "m.new_content": { msgtype: "m.text", body: "hi" }, "m.relates_to": { rel_type: "m.replace", event_id: original } });
    // Later, but invalid: no m.new_content.
    await send(alice, roomId, { msgtype: "m.text", body: "* bad", "m.relates_to": { rel_type: "m.replace", event_id: original } });
    const rel = await relations(alice, roomId, original);
    expect((rel["m.replace"] as { event_id: string }).event_id).toBe(good);
    // An edit of the edit does not make the edit an original.
    await send(alice, roomId, { msgtype: "m.text", body: "* x", "m.new_content": { msgtype: "m.text", body: "x" }, "m.relates_to": { rel_type: "m.replace", event_id: good } });
    expect((await relations(alice, roomId, good))["m.replace"]).toBeUndefined();
  });
});

describe("bundled m.thread and history visibility", () => {
  it("a member who left does not see later thread replies in the summary", async () => {
    const roomId = (await c.post("/_matrix/client/v3/createRoom", { preset: "public_chat", initial_state: [{ type: "m.room.history_visibility", content: { history_visibility: "joined" } }] }, { token: alice.accessToken })).body.room_id as string;
    await c.post(`/_matrix/client/v3/rooms/${enc(roomId)}/join`, {}, { token: bob.accessToken });
    const root = await send(alice, roomId, { msgtype: "m.text", body: "root" });
    const early = await send(alice, roomId, { msgtype: "m.text", body: "r1", "m.relates_to": { rel_type: "m.thread", event_id: root } });
    await c.post(`/_matrix/client/v3/rooms/${enc(roomId)}/leave`, {}, { token: bob.accessToken });
    await send(alice, roomId, { msgtype: "m.text", body: "r2 (after bob left)", "m.relates_to": { rel_type: "m.thread", event_id: root } });
    const forBob = (await relations(bob, roomId, root))["m.thread"] as { count: number; latest_event: { event_id: string } };
    expect(forBob.count).toBe(1);
    expect(forBob.latest_event.event_id).toBe(early);
    const forAlice = (await relations(alice, roomId, root))["m.thread"] as { count: number };
    expect(forAlice.count).toBe(2);
  });
});
