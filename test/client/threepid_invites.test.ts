/**
 * Third-party invites on one server: inviting an email address (bound: a plain invite; unbound: store-invite and an
 * m.room.third_party_invite), the identity server's onbind turning it into the member invite, /join with
 * third_party_signed, and the proofs that are refused (wrong key, revoked key, wrong target).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateSigningKey } from "../../src/core/crypto/ed25519.js";
import { Client, expectError, registerUser, type TestUser } from "../helpers/http.js";
import { allState, createRoom, getState, joinRoom, leaveRoom } from "../helpers/rooms.js";
import { startTestServer, type TestServer } from "../helpers/server.js";
import { FakeIdentityServer } from "../helpers/threepid.js";

const V3 = "/_matrix/client/v3";
const ONBIND = "/_matrix/federation/v1/3pid/onbind";

let is: FakeIdentityServer;
let ts: TestServer;
let c: Client;
let alice: TestUser;
let bob: TestUser;

beforeAll(async () => {
  is = await new FakeIdentityServer().start();
  ts = await startTestServer({ config: { ip_range_whitelist: ["127.0.0.1"], use_insecure_ssl_client_just_for_testing_do_not_use: true } });
  c = new Client(ts.baseUrl);
  alice = await registerUser(c);
  bob = await registerUser(c);
});
afterAll(async () => {
  await ts?.close();
  await is?.close();
});

const enc = encodeURIComponent;
let n = 0;
const address = () => `invitee${++n}@example.org`;
const invite3pid = (u: TestUser, roomId: string, email: string, extra: Record<string, unknown> = {}) =>
  c.post(`${V3}/rooms/${enc(roomId)}/invite`, { id_server: is.name, id_access_token: FakeIdentityServer.ACCESS_TOKEN, medium: "email", address: email, ...extra }, { token: u.accessToken });

/** Invites an unbound address; returns the m.room.third_party_invite's token. */
async function unboundInvite(roomId: string, email: string): Promise<string> {
  const res = await invite3pid(alice, roomId, email);
  expect(res.status, res.text).toBe(200);
  const tpi = (await allState(c, alice, roomId)).find((e) => e.type === "m.room.third_party_invite" && is.invites.at(-1)?.address === email);
  expect(tpi).toBeDefined();
  return tpi!.state_key!;
}

/** What the identity server sends once `email` is bound to `mxid`. */
function onbindBody(roomId: string, email: string, mxid: string, token: string, key = is.key) {
  return is.sign({ medium: "email", address: email, mxid, invites: [{ medium: "email", address: email, room_id: roomId, sender: alice.userId, token, mxid, signed: is.sign({ mxid, token }, key) }] });
}

describe("POST /rooms/{roomId}/invite with a 3PID", () => {
  it("invites the user an address is bound to", async () => {
    const roomId = await createRoom(c, alice);
    const email = address();
    is.bindings.set(`email\0${email}`, bob.userId);
    const res = await invite3pid(alice, roomId, email);
    expect(res.status, res.text).toBe(200);
    expect((await getState(c, alice, roomId, "m.room.member", bob.userId)).membership).toBe("invite");
  });

  it("stores an invite for an unbound address, which onbind turns into the member invite", async () => {
    const roomId = await createRoom(c, alice, { name: "Lemurs" });
    const email = address();
    const token = await unboundInvite(roomId, email);
    const stored = is.invites.at(-1)!;
    expect(stored).toMatchObject({ medium: "email", address: email, room_id: roomId, sender: alice.userId, room_name: "Lemurs", room_join_rules: "invite" });
    const content = await getState(c, alice, roomId, "m.room.third_party_invite", token);
    expect(content).toMatchObject({ display_name: "i...@e...", public_key: is.key.publicKeyBase64 });
    expect((content.public_keys as unknown[]).length).toBe(1);

    const res = await c.post(ONBIND, onbindBody(roomId, email, bob.userId, token));
    expect(res.status, res.text).toBe(200);
    const member = await getState(c, alice, roomId, "m.room.member", bob.userId);
    expect(member.membership).toBe("invite");
    expect((member.third_party_invite as Record<string, unknown>).display_name).toBe("i...@e...");
    await joinRoom(c, bob, roomId);
    expect((await getState(c, alice, roomId, "m.room.member", bob.userId)).membership).toBe("join");
  });

  it("works after the inviter left, and onbind is accepted as PUT too", async () => {
    const carol = await registerUser(c);
    const roomId = await createRoom(c, alice, { preset: "public_chat" });
    await joinRoom(c, carol, roomId);
    const email = address();
    const token = await unboundInvite(roomId, email);
    await leaveRoom(c, alice, roomId);
    const res = await c.put(ONBIND, onbindBody(roomId, email, bob.userId, token));
    expect(res.status, res.text).toBe(200);
    expect((await getState(c, carol, roomId, "m.room.member", bob.userId)).membership).toBe("invite");
  });

  it("refuses proofs signed by another key, for a revoked key, or for another user", async () => {
    const roomId = await createRoom(c, alice);
    const email = address();
    const token = await unboundInvite(roomId, email);
    expectError(await c.post(ONBIND, onbindBody(roomId, email, bob.userId, token, generateSigningKey())), 403, "M_FORBIDDEN");
    expectError(await c.post(ONBIND, onbindBody(roomId, email, bob.userId, "no-such-token")), 403, "M_FORBIDDEN");
    // A proof for bob presented as carol's invite.
    const body = onbindBody(roomId, email, bob.userId, token);
    (body.invites as Record<string, unknown>[])[0]!.mxid = "@carol:test.local";
    expectError(await c.post(ONBIND, body), 403, "M_FORBIDDEN");
    is.revoked.add(is.key.publicKeyBase64);
    try {
      expectError(await c.post(ONBIND, onbindBody(roomId, email, bob.userId, token)), 403, "M_FORBIDDEN");
    } finally {
      is.revoked.clear();
    }
    expectError(await c.post(ONBIND, { invites: [{ room_id: roomId }] }), 400, "M_BAD_JSON");
    expectError(await c.post(`${V3}/rooms/${enc(roomId)}/join`, {}, { token: bob.accessToken }), 403, "M_FORBIDDEN");
  });

  it("joins with third_party_signed", async () => {
    const roomId = await createRoom(c, alice);
    const token = await unboundInvite(roomId, address());
    const proof = is.sign({ mxid: bob.userId, sender: alice.userId, token });
    const res = await c.post(`${V3}/join/${enc(roomId)}`, { third_party_signed: proof }, { token: bob.accessToken });
    expect(res.status, res.text).toBe(200);
    expect((await getState(c, alice, roomId, "m.room.member", bob.userId)).membership).toBe("join");
    expectError(await c.post(`${V3}/join/${enc(roomId)}`, { third_party_signed: { mxid: bob.userId } }, { token: bob.accessToken }), 400, "M_BAD_JSON");
  });

  it("invites 3PIDs in createRoom", async () => {
    const email = address();
    is.bindings.set(`email\0${email}`, bob.userId);
    const res = await c.post(`${V3}/createRoom`, { invite_3pid: [{ id_server: is.name, id_access_token: FakeIdentityServer.ACCESS_TOKEN, medium: "email", address: email }] }, { token: alice.accessToken });
    expect(res.status, res.text).toBe(200);
    expect((await getState(c, alice, res.body.room_id as string, "m.room.member", bob.userId)).membership).toBe("invite");
    expectError(await c.post(`${V3}/createRoom`, { invite_3pid: [{ medium: "email", address: email }] }, { token: alice.accessToken }), 400, "M_MISSING_PARAM");
  });

  it("checks the request and the inviter", async () => {
    const roomId = await createRoom(c, alice);
    const email = address();
    expectError(await invite3pid(alice, roomId, email, { id_access_token: undefined }), 400, "M_MISSING_PARAM");
    expectError(await invite3pid(alice, roomId, email, { id_server: "not a server" }), 400, "M_INVALID_PARAM");
    expectError(await invite3pid(alice, roomId, email, { id_access_token: "wrong" }), 401, "M_UNAUTHORIZED");
    expectError(await invite3pid(bob, roomId, email), 403, "M_FORBIDDEN");
    expectError(await invite3pid(alice, roomId, "+441234", { medium: "msisdn" }), 400, "M_UNRECOGNIZED");
  });

  it("needs a server signature for exchange_third_party_invite", async () => {
    const res = await c.put(`/_matrix/federation/v1/exchange_third_party_invite/${enc("!x:test.local")}`, {});
    expect(res.status).toBe(401);
  });
});
