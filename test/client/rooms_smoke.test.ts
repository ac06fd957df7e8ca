import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client, registerUser, type TestUser } from "../helpers/http.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

let ts: TestServer;
let c: Client;
let alice: TestUser;
let bob: TestUser;

beforeAll(async () => {
  ts = await startTestServer();
  c = new Client(ts.baseUrl);
  alice = await registerUser(c);
  bob = await registerUser(c);
});
afterAll(async () => {
  await ts?.close();
});

describe("rooms smoke", () => {
  for (const version of ["1", "3", "9", "10", "11", "12"]) {
    it(`create, invite, join, send, sync in room version ${version}`, async () => {
      const created = await c.post("/_matrix/client/v3/createRoom", { room_version: version, name: "Test", invite: [bob.userId] }, { token: alice.accessToken });
      expect(created.status, created.text).toBe(200);
      const roomId = created.body.room_id as string;
      const initial = await c.get("/_matrix/client/v3/sync", { token: bob.accessToken });
      expect(initial.status, initial.text).toBe(200);
      expect(Object.keys((initial.body.rooms as { invite: object }).invite)).toContain(roomId);
      const join = await c.post(`/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/join`, {}, { token: bob.accessToken });
      expect(join.status, join.text).toBe(200);
      const sent = await c.put(`/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/t1`, { msgtype: "m.text", body: "hello" }, { token: alice.accessToken });
      expect(sent.status, sent.text).toBe(200);
      const s2 = await c.get(`/_matrix/client/v3/sync?since=${initial.body.next_batch}`, { token: bob.accessToken });
      expect(s2.status, s2.text).toBe(200);
      const room = (s2.body.rooms as { join: Record<string, { timeline: { events: { type: string; content: { body?: string } }[] } }> }).join[roomId]!;
      expect(room.timeline.events.map((e) => e.type)).toContain("m.room.message");
      const msgs = await c.get(`/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/messages?dir=b&limit=50`, { token: bob.accessToken });
      expect(msgs.status, msgs.text).toBe(200);
      expect((msgs.body.chunk as unknown[]).length).toBeGreaterThan(5);
    });
  }
});
