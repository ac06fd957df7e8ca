/**
 * Self-destructing messages (MSC2228, Synapse's experimental `enable_ephemeral_messages`): a message whose content
 * carries `org.matrix.self_destruct_after` is pruned at that time — /messages, GET /event and /sync show it with empty
 * content, search no longer finds it — across a restart, and for events from other servers too. Without the option
 * nothing expires.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startServerPair } from "../helpers/federation.js";
import { Client, registerUser, type TestUser } from "../helpers/http.js";
import { V3, createRoom, enc, joinRoom, messages, send } from "../helpers/rooms.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

const KEY = "org.matrix.self_destruct_after";
const ON = { enable_ephemeral_messages: true };

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function eventContent(c: Client, u: TestUser, roomId: string, eventId: string): Promise<unknown> {
  const res = await c.get(`${V3}/rooms/${enc(roomId)}/event/${enc(eventId)}`, { token: u.accessToken });
  expect(res.status, res.text).toBe(200);
  return res.body.content;
}

async function searchCount(c: Client, u: TestUser, term: string): Promise<number> {
  const res = await c.post(`${V3}/search`, { search_categories: { room_events: { search_term: term } } }, { token: u.accessToken });
  expect(res.status, res.text).toBe(200);
  const body = res.body as { search_categories: { room_events: { results: unknown[] } } };
  return body.search_categories.room_events.results.length;
}

describe("with enable_ephemeral_messages", () => {
  let ts: TestServer;
  let c: Client;
  beforeAll(async () => {
    ts = await startTestServer({ config: ON });
    c = new Client(ts.baseUrl);
  });
  afterAll(async () => {
    await ts?.close();
  });

  it("a message is pruned when it expires; others and state events are kept", async () => {
    const u = await registerUser(c);
    const other = await registerUser(c);
    const roomId = await createRoom(c, u, { preset: "public_chat" });
    await joinRoom(c, other, roomId);
    const doomed = await send(c, u, roomId, { msgtype: "m.text", body: "vanishing quokka", [KEY]: Date.now() + 700 });
    const kept = await send(c, u, roomId, { msgtype: "m.text", body: "lasting quokka" });
    // A state event never expires, whatever its content says.
    const topic = await c.put(`${V3}/rooms/${enc(roomId)}/state/m.room.topic/`, { topic: "quokkas", [KEY]: Date.now() + 100 }, { token: u.accessToken });
    expect(topic.status).toBe(200);
    expect(await eventContent(c, other, roomId, doomed)).toMatchObject({ body: "vanishing quokka" });
    expect(await searchCount(c, other, "vanishing")).toBe(1);

    await waitFor("the expiry", async () => {
      const content = await eventContent(c, other, roomId, doomed);
      return Object.keys(content as object).length === 0 ? true : undefined;
    });
    const page = await messages(c, other, roomId, { limit: 20 });
    expect(page.chunk.find((e) => e.event_id === doomed)?.content).toEqual({});
    expect(page.chunk.find((e) => e.event_id === kept)?.content).toMatchObject({ body: "lasting quokka" });
    expect(await searchCount(c, other, "vanishing")).toBe(0);
    expect(await searchCount(c, other, "lasting")).toBe(1);
    const state = await c.get(`${V3}/rooms/${enc(roomId)}/state/m.room.topic/`, { token: u.accessToken });
    expect(state.body.topic).toBe("quokkas");
    // The sender sees it pruned too: it is gone from the server, not hidden from some.
    const sync = await c.get(`${V3}/sync`, { token: u.accessToken });
    const body = sync.body as { rooms: { join: Record<string, { timeline: { events: { event_id: string; content: unknown }[] } }> } };
    const inSync = body.rooms.join[roomId]!.timeline.events.find((e) => e.event_id === doomed);
    if (inSync) expect(inSync.content).toEqual({});
  });

  it("an expiry that passed while the server was down is applied at start", async () => {
    const u = await registerUser(c);
    const roomId = await createRoom(c, u);
    const doomed = await send(c, u, roomId, { msgtype: "m.text", body: "before the restart", [KEY]: Date.now() + 1500 });
    await ts.stop();
    await new Promise((r) => setTimeout(r, 1600));
    ts = await ts.restart();
    c = new Client(ts.baseUrl);
    await waitFor("the expiry after restart", async () => {
      const content = await eventContent(c, u, roomId, doomed);
      return Object.keys(content as object).length === 0 ? true : undefined;
    });
  });

  it("a timestamp that is not an integer is ignored", async () => {
    const u = await registerUser(c);
    const roomId = await createRoom(c, u);
    const id = await send(c, u, roomId, { msgtype: "m.text", body: "stays", [KEY]: String(Date.now() + 100) });
    await new Promise((r) => setTimeout(r, 400));
    expect(await eventContent(c, u, roomId, id)).toMatchObject({ body: "stays" });
  });
});

describe("without enable_ephemeral_messages (the default)", () => {
  it("nothing expires", async () => {
    const ts = await startTestServer();
    try {
      const c = new Client(ts.baseUrl);
      const u = await registerUser(c);
      const roomId = await createRoom(c, u);
      const id = await send(c, u, roomId, { msgtype: "m.text", body: "stays", [KEY]: Date.now() + 100 });
      await new Promise((r) => setTimeout(r, 500));
      expect(await eventContent(c, u, roomId, id)).toMatchObject({ body: "stays" });
    } finally {
      await ts.close();
    }
  });
});

describe("over federation", () => {
  it("a message from another server expires on this one", async () => {
    const { hs1, hs2, c1, c2 } = await startServerPair({ hs1: { config: ON }, hs2: { config: ON } });
    try {
      const alice = await registerUser(c1, "alice");
      const bob = await registerUser(c2, "bob");
      const roomId = await createRoom(c1, alice, { preset: "public_chat" });
      const join = await c2.post(`${V3}/join/${enc(roomId)}?via=hs1.test`, {}, { token: bob.accessToken });
      expect(join.status, join.text).toBe(200);
      const doomed = await send(c1, alice, roomId, { msgtype: "m.text", body: "across", [KEY]: Date.now() + 1500 });
      const seen = await waitFor("the message on hs2", async () => {
        const res = await c2.get(`${V3}/rooms/${enc(roomId)}/event/${enc(doomed)}`, { token: bob.accessToken });
        return res.status === 200 ? (res.body.content as Record<string, unknown>) : undefined;
      });
      expect(seen.body).toBe("across");
      await waitFor("the expiry on hs2", async () => {
        const content = await eventContent(c2, bob, roomId, doomed);
        return Object.keys(content as object).length === 0 ? true : undefined;
      });
    } finally {
      await hs1.close();
      await hs2.close();
    }
  });
});
