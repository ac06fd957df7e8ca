/**
 * Account erasure: deactivation with `erase: true` (spec "Account deactivation"; Synapse's erased_users). The erased
 * user's events stay readable to those who were joined when they were sent, and come redacted to everyone else —
 * later joiners, in /sync, /messages and GET /event — from then on, across restarts.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client, registerUser, type TestUser } from "../helpers/http.js";
import { V3, createRoom, enc, joinRoom, messages, send, sync, type SyncResponse } from "../helpers/rooms.js";
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

async function deactivate(u: TestUser, erase: boolean): Promise<void> {
  const auth = { type: "m.login.password", identifier: { type: "m.id.user", user: u.userId }, password: u.password };
  const res = await c.post(`${V3}/account/deactivate`, { auth, erase }, { token: u.accessToken });
  expect(res.status, res.text).toBe(200);
}

function inTimeline(s: SyncResponse, roomId: string, eventId: string) {
  return s.rooms.join[roomId]?.timeline.events.find((e) => e.event_id === eventId);
}

describe("deactivation with erase: true", () => {
  it("original members still read the messages; later joiners get them redacted", async () => {
    const creator = await registerUser(c);
    const member = await registerUser(c);
    const joiner = await registerUser(c);
    const roomId = await createRoom(c, creator, { preset: "public_chat" });
    await joinRoom(c, member, roomId);
    const messageId = await send(c, creator, roomId, "body1");
    await joinRoom(c, joiner, roomId);
    expect(inTimeline(await sync(c, joiner), roomId, messageId)?.content).toMatchObject({ body: "body1" });

    await deactivate(creator, true);

    expect(inTimeline(await sync(c, member), roomId, messageId)?.content).toMatchObject({ body: "body1" });
    const seen = inTimeline(await sync(c, joiner), roomId, messageId);
    expect(seen?.type).toBe("m.room.message");
    expect(seen?.content).toEqual({});
    const page = await messages(c, joiner, roomId, { limit: 50 });
    expect(page.chunk.find((e) => e.event_id === messageId)?.content).toEqual({});
    const one = await c.get(`${V3}/rooms/${enc(roomId)}/event/${enc(messageId)}`, { token: joiner.accessToken });
    expect(one.status).toBe(200);
    expect(one.body.content).toEqual({});
    const forMember = await c.get(`${V3}/rooms/${enc(roomId)}/event/${enc(messageId)}`, { token: member.accessToken });
    expect(forMember.body.content).toMatchObject({ body: "body1" });

    // Remembered across a restart.
    ts = await ts.restart();
    c = new Client(ts.baseUrl);
    expect(inTimeline(await sync(c, joiner), roomId, messageId)?.content).toEqual({});
    expect(inTimeline(await sync(c, member), roomId, messageId)?.content).toMatchObject({ body: "body1" });
  });

  it("without erase, nothing is redacted", async () => {
    const creator = await registerUser(c);
    const stays = await registerUser(c);
    const joiner = await registerUser(c);
    const roomId = await createRoom(c, creator, { preset: "public_chat" });
    await joinRoom(c, stays, roomId);
    const messageId = await send(c, creator, roomId, "kept");
    await deactivate(creator, false);
    await joinRoom(c, joiner, roomId);
    const page = await messages(c, joiner, roomId, { limit: 50 });
    expect(page.chunk.find((e) => e.event_id === messageId)?.content).toMatchObject({ body: "kept" });
  });
});
