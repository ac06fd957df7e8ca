// Server ACLs on the write path (spec "Server Access Control Lists"): a denied server cannot join, and its PDUs and
// EDUs are dropped.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startServerPair } from "../helpers/federation.js";
import { Client, registerUser, type TestUser } from "../helpers/http.js";
import type { TestServer } from "../helpers/server.js";

const enc = encodeURIComponent;
let hs1: TestServer;
let hs2: TestServer;
let c1: Client;
let c2: Client;
let alice: TestUser;
let bob: TestUser;

beforeAll(async () => {
  ({ hs1, hs2, c1, c2 } = await startServerPair());
  alice = await registerUser(c1, "alice");
  bob = await registerUser(c2, "bob");
});
afterAll(async () => {
  await hs1?.close();
  await hs2?.close();
});

describe("server ACLs", () => {
  it("a denied server cannot join", async () => {
    const roomId = (await c1.post("/_matrix/client/v3/createRoom", { preset: "public_chat", initial_state: [{ type: "m.room.server_acl", content: { allow: ["*"], deny: ["hs2.test"] } }] }, { token: alice.accessToken })).body.room_id as string;
    const join = await c2.post(`/_matrix/client/v3/join/${enc(roomId)}?via=hs1.test`, {}, { token: bob.accessToken });
    expect(join.status, join.text).toBe(403);
  });

  it("after an ACL denies a joined server, its messages are dropped", async () => {
    const roomId = (await c1.post("/_matrix/client/v3/createRoom", { preset: "public_chat" }, { token: alice.accessToken })).body.room_id as string;
    expect((await c2.post(`/_matrix/client/v3/join/${enc(roomId)}?via=hs1.test`, {}, { token: bob.accessToken })).status).toBe(200);
    const acl = await c1.put(`/_matrix/client/v3/rooms/${enc(roomId)}/state/m.room.server_acl/`, { allow: ["*"], deny: ["hs2.test"] }, { token: alice.accessToken });
    expect(acl.status, acl.text).toBe(200);
    // hs2 learns of the ACL, then bob sends; hs1 must not accept it.
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      const st = await c2.get(`/_matrix/client/v3/rooms/${enc(roomId)}/state/m.room.server_acl/`, { token: bob.accessToken });
      if (st.status === 200) break;
    }
    const sent = await c2.put(`/_matrix/client/v3/rooms/${enc(roomId)}/send/m.room.message/acl1`, { msgtype: "m.text", body: "denied?" }, { token: bob.accessToken });
    expect(sent.status).toBe(200);
    const marker = await c1.put(`/_matrix/client/v3/rooms/${enc(roomId)}/send/m.room.message/acl2`, { msgtype: "m.text", body: "marker" }, { token: alice.accessToken });
    expect(marker.status).toBe(200);
    // Give hs2's transaction time to arrive (bounded), then check hs1 never stored bob's message.
    const until = Date.now() + 2000;
    let found = false;
    while (Date.now() < until && !found) {
      const msgs = await c1.get(`/_matrix/client/v3/rooms/${enc(roomId)}/messages?dir=b&limit=20`, { token: alice.accessToken });
      found = (msgs.body.chunk as { content: { body?: string } }[]).some((e) => e.content.body === "denied?");
    }
    expect(found).toBe(false);
  });
});
