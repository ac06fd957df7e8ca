// Spec "Transaction identifiers": a retried PUT with the same txnId (same device, same endpoint) is the same event,
// even after the server restarted in between.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client, registerUser, type TestUser } from "../helpers/http.js";
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

describe("transaction ids", () => {
  it("a retry after a restart returns the original event", async () => {
    const roomId = (await c.post("/_matrix/client/v3/createRoom", {}, { token: alice.accessToken })).body.room_id as string;
    const path = `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/retry-me`;
    const first = await c.put(path, { msgtype: "m.text", body: "once" }, { token: alice.accessToken });
    expect(first.status).toBe(200);
    ts = await ts.restart();
    c = new Client(ts.baseUrl);
    const again = await c.put(path, { msgtype: "m.text", body: "once" }, { token: alice.accessToken });
    expect(again.status).toBe(200);
    expect(again.body.event_id).toBe(first.body.event_id);
    const msgs = await c.get(`/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/messages?dir=b&limit=50`, { token: alice.accessToken });
    expect(msgs.status, msgs.text).toBe(200);
    const bodies = (msgs.body.chunk as { type: string; content: { body?: string } }[]).filter((e) => e.type === "m.room.message").map((e) => e.content.body);
    expect(bodies).toEqual(["once"]);
  });

  it("the same txnId in another room or from another device is a new event", async () => {
    const r1 = (await c.post("/_matrix/client/v3/createRoom", {}, { token: alice.accessToken })).body.room_id as string;
    const r2 = (await c.post("/_matrix/client/v3/createRoom", {}, { token: alice.accessToken })).body.room_id as string;
    const a = await c.put(`/_matrix/client/v3/rooms/${encodeURIComponent(r1)}/send/m.room.message/same`, { body: "1", msgtype: "m.text" }, { token: alice.accessToken });
    const b = await c.put(`/_matrix/client/v3/rooms/${encodeURIComponent(r2)}/send/m.room.message/same`, { body: "2", msgtype: "m.text" }, { token: alice.accessToken });
    expect(a.body.event_id).not.toBe(b.body.event_id);
    const login = await c.post("/_matrix/client/v3/login", { type: "m.login.password", identifier: { type: "m.id.user", user: alice.userId }, password: alice.password });
    const other = await c.put(`/_matrix/client/v3/rooms/${encodeURIComponent(r1)}/send/m.room.message/same`, { body: "1", msgtype: "m.text" }, { token: login.body.access_token as string });
    expect(other.body.event_id).not.toBe(a.body.event_id);
  });
});
