/**
 * Third-party invites across servers: the invitee's server is not in the room, so the identity server's onbind makes
 * it ask the inviter's server (exchange_third_party_invite), which sends the invite over federation.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { startServerPair } from "../helpers/federation.js";
import { expectError, registerUser, type Client, type TestUser } from "../helpers/http.js";
import { createRoom, getState, poll } from "../helpers/rooms.js";
import type { TestServer } from "../helpers/server.js";
import { FakeIdentityServer } from "../helpers/threepid.js";

const V3 = "/_matrix/client/v3";
const enc = encodeURIComponent;

let is: FakeIdentityServer;
let hs1: TestServer;
let hs2: TestServer;
let c1: Client;
let c2: Client;
let alice: TestUser;
let bob: TestUser;

beforeAll(async () => {
  is = await new FakeIdentityServer().start();
  const config = { use_insecure_ssl_client_just_for_testing_do_not_use: true };
  ({ hs1, hs2, c1, c2 } = await startServerPair({ hs1: { config }, hs2: { config } }));
  alice = await registerUser(c1, "alice");
  bob = await registerUser(c2, "bob");
});
afterAll(async () => {
  await hs1?.close();
  await hs2?.close();
  await is?.close();
});

it("an unbound 3PID invite reaches a user of another server once bound, who can join", async () => {
  const roomId = await createRoom(c1, alice);
  const res = await c1.post(
    `${V3}/rooms/${enc(roomId)}/invite`,
    { id_server: is.name, id_access_token: FakeIdentityServer.ACCESS_TOKEN, medium: "email", address: "bob@example.org" },
    { token: alice.accessToken },
  );
  expect(res.status, res.text).toBe(200);
  const token = `invite-token-${is.invites.length}`;
  const signed = is.sign({ mxid: bob.userId, token });
  const onbind = is.sign({ medium: "email", address: "bob@example.org", mxid: bob.userId, invites: [{ medium: "email", address: "bob@example.org", room_id: roomId, sender: alice.userId, token, mxid: bob.userId, signed }] });
  const bound = await c2.post("/_matrix/federation/v1/3pid/onbind", onbind);
  expect(bound.status, bound.text).toBe(200);

  const member = await getState(c1, alice, roomId, "m.room.member", bob.userId);
  expect(member.membership).toBe("invite");
  expect((member.third_party_invite as Record<string, unknown>).display_name).toBe("i...@e...");
  // bob's server got the invite (PUT /invite) and lets him join through hs1.
  await poll(async () => {
    const r = await c2.post(`${V3}/join/${enc(roomId)}?server_name=hs1.test`, {}, { token: bob.accessToken });
    return r.status === 200 ? true : undefined;
  });
  await poll(async () => ((await getState(c1, alice, roomId, "m.room.member", bob.userId)).membership === "join" ? true : undefined));
});

it("the inviter's server refuses an exchange for a user it does not have, or without a matching third-party invite", async () => {
  const roomId = await createRoom(c1, alice);
  const onbind = (sender: string, token: string) =>
    is.sign({ medium: "email", address: "x@example.org", mxid: bob.userId, invites: [{ medium: "email", address: "x@example.org", room_id: roomId, sender, token, mxid: bob.userId, signed: is.sign({ mxid: bob.userId, token }) }] });
  // No such m.room.third_party_invite: hs1 answers 403, which hs2 passes on.
  expect((await c2.post("/_matrix/federation/v1/3pid/onbind", onbind(alice.userId, "nothing"))).status).toBeGreaterThanOrEqual(400);
  expectError(await c1.get(`${V3}/rooms/${enc(roomId)}/state/m.room.member/${enc(bob.userId)}`, { token: alice.accessToken }), 404, "M_NOT_FOUND");
});
