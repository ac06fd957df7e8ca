/**
 * Room summaries (spec v1.15 GET /_matrix/client/v1/room_summary/{roomIdOrAlias}, and MSC3266's unstable paths):
 * joined, public, private, invited and restricted rooms, by alias, without a token, over federation; a room the
 * requester may not preview is 404 M_NOT_FOUND.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startServerPair, type ServerPair } from "../helpers/federation.js";
import { closeFederatedServers } from "../helpers/federation_close.js";
import { Client, expectError, registerUser, uniqueName, type TestUser } from "../helpers/http.js";
import { createRoom, enc, inviteUser, joinRoom } from "../helpers/rooms.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

const summaryUrl = (roomIdOrAlias: string, via: string[] = []) => `/_matrix/client/v1/room_summary/${enc(roomIdOrAlias)}${via.length ? `?${via.map((v) => `via=${enc(v)}`).join("&")}` : ""}`;

const restricted = (allowedRoomId: string) => ({
  room_version: "10",
  preset: "private_chat",
  initial_state: [{ type: "m.room.join_rules", state_key: "", content: { join_rule: "restricted", allow: [{ type: "m.room_membership", room_id: allowedRoomId }] } }],
});

describe("GET /room_summary on one server", () => {
  let ts: TestServer;
  let c: Client;
  let alice: TestUser;
  let bob: TestUser;
  let carol: TestUser;
  let publicRoom: string;
  let privateRoom: string;
  let space: string;
  let restrictedRoom: string;
  let alias: string;

  beforeAll(async () => {
    ts = await startTestServer({ config: { allow_guest_access: true } });
    c = new Client(ts.baseUrl);
    alice = await registerUser(c);
    bob = await registerUser(c);
    carol = await registerUser(c);
    const aliasName = uniqueName("summary");
    alias = `#${aliasName}:test.local`;
    publicRoom = await createRoom(c, alice, { preset: "public_chat", name: "Public", topic: "open to all", room_alias_name: aliasName });
    privateRoom = await createRoom(c, alice, {
      preset: "private_chat",
      name: "Private",
      initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }],
    });
    space = await createRoom(c, alice, { preset: "public_chat", name: "Space", creation_content: { type: "m.space" } });
    restrictedRoom = await createRoom(c, alice, { ...restricted(space), name: "Restricted" });
    await joinRoom(c, bob, space);
  });
  afterAll(async () => {
    await ts?.close();
  });

  it("a joined member gets the room's summary and their membership", async () => {
    const res = await c.get(summaryUrl(privateRoom), { token: alice.accessToken });
    expect(res.status, res.text).toBe(200);
    expect(res.body).toEqual({
      room_id: privateRoom,
      name: "Private",
      num_joined_members: 1,
      world_readable: false,
      // The private_chat preset lets guests join.
      guest_can_join: true,
      join_rule: "invite",
      encryption: "m.megolm.v1.aes-sha2",
      room_version: expect.any(String),
      membership: "join",
    });
  });

  it("a public room is shown to anyone, with membership leave for a non-member and none without a token", async () => {
    const res = await c.get(summaryUrl(publicRoom), { token: bob.accessToken });
    expect(res.status, res.text).toBe(200);
    expect(res.body).toMatchObject({ room_id: publicRoom, name: "Public", topic: "open to all", canonical_alias: alias, join_rule: "public", membership: "leave" });
    const anon = await c.get(summaryUrl(publicRoom));
    expect(anon.status, anon.text).toBe(200);
    expect(anon.body.room_id).toBe(publicRoom);
    expect(anon.body).not.toHaveProperty("membership");
    expect(anon.body).not.toHaveProperty("children_state");
  });

  it("a private room is 404 M_NOT_FOUND to a non-member and without a token, and shown to an invitee", async () => {
    expectError(await c.get(summaryUrl(privateRoom), { token: bob.accessToken }), 404, "M_NOT_FOUND");
    expectError(await c.get(summaryUrl(privateRoom)), 404, "M_NOT_FOUND");
    const dave = await registerUser(c);
    await inviteUser(c, alice, privateRoom, dave.userId);
    const res = await c.get(summaryUrl(privateRoom), { token: dave.accessToken });
    expect(res.status, res.text).toBe(200);
    expect(res.body.membership).toBe("invite");
  });

  it("a restricted room is shown to members of an allowed room, with allowed_room_ids, and hidden from others", async () => {
    const res = await c.get(summaryUrl(restrictedRoom), { token: bob.accessToken });
    expect(res.status, res.text).toBe(200);
    expect(res.body).toMatchObject({ room_id: restrictedRoom, join_rule: "restricted", allowed_room_ids: [space], room_version: "10", membership: "leave" });
    expectError(await c.get(summaryUrl(restrictedRoom), { token: carol.accessToken }), 404, "M_NOT_FOUND");
  });

  it("a space has its room_type", async () => {
    expect((await c.get(summaryUrl(space))).body).toMatchObject({ room_id: space, room_type: "m.space" });
  });

  it("resolves an alias; an unknown alias or room is 404", async () => {
    const res = await c.get(summaryUrl(alias), { token: bob.accessToken });
    expect(res.status, res.text).toBe(200);
    expect(res.body.room_id).toBe(publicRoom);
    expectError(await c.get(summaryUrl("#nothing-here:test.local"), { token: bob.accessToken }), 404, "M_NOT_FOUND");
    expectError(await c.get(summaryUrl("!unknown:test.local"), { token: bob.accessToken }), 404, "M_NOT_FOUND");
  });

  it("guests may ask", async () => {
    const guest = await c.post("/_matrix/client/v3/register?kind=guest", {});
    expect(guest.status, guest.text).toBe(200);
    const res = await c.get(summaryUrl(publicRoom), { token: guest.body.access_token as string });
    expect(res.status, res.text).toBe(200);
    expect(res.body.membership).toBe("leave");
  });

  it("400 M_INVALID_PARAM for something that is neither a room id nor an alias, or a bad via", async () => {
    expectError(await c.get(summaryUrl("nonsense"), { token: bob.accessToken }), 400, "M_INVALID_PARAM");
    expectError(await c.get(summaryUrl(publicRoom, ["not a server!"]), { token: bob.accessToken }), 400, "M_INVALID_PARAM");
  });

  it("the unstable MSC3266 paths answer the same", async () => {
    const stable = (await c.get(summaryUrl(publicRoom), { token: bob.accessToken })).body;
    for (const path of [`/_matrix/client/unstable/im.nheko.summary/rooms/${enc(publicRoom)}/summary`, `/_matrix/client/unstable/im.nheko.summary/summary/${enc(publicRoom)}`]) {
      const res = await c.get(path, { token: bob.accessToken });
      expect(res.status, res.text).toBe(200);
      expect(res.body).toEqual(stable);
    }
    const versions = await c.get("/_matrix/client/versions");
    expect((versions.body.unstable_features as Record<string, boolean>)["im.nheko.summary"]).toBe(true);
  });
});

describe("GET /room_summary of a room on another server", () => {
  let pair: ServerPair;
  let bob: TestUser;
  let carol: TestUser;
  let remotePublic: string;
  let remotePrivate: string;
  let remoteAlias: string;

  beforeAll(async () => {
    pair = await startServerPair();
    bob = await registerUser(pair.c1);
    carol = await registerUser(pair.c2);
    const aliasName = uniqueName("remote");
    remoteAlias = `#${aliasName}:hs2.test`;
    remotePublic = await createRoom(pair.c2, carol, { preset: "public_chat", name: "Over there", room_alias_name: aliasName });
    remotePrivate = await createRoom(pair.c2, carol, { preset: "private_chat", name: "Secret" });
  });
  afterAll(async () => {
    await closeFederatedServers([pair?.hs1, pair?.hs2]);
  });

  it("asks the via servers (or the room id's server) for a room this server is not in", async () => {
    for (const via of [["hs2.test"], []]) {
      const res = await pair.c1.get(summaryUrl(remotePublic, via), { token: bob.accessToken });
      expect(res.status, res.text).toBe(200);
      expect(res.body).toMatchObject({ room_id: remotePublic, name: "Over there", join_rule: "public", num_joined_members: 1, membership: "leave" });
      expect(res.body).not.toHaveProperty("children_state");
    }
    const anon = await pair.c1.get(summaryUrl(remotePublic, ["hs2.test"]));
    expect(anon.status, anon.text).toBe(200);
    expect(anon.body).not.toHaveProperty("membership");
  });

  it("resolves another server's alias over federation", async () => {
    const res = await pair.c1.get(summaryUrl(remoteAlias), { token: bob.accessToken });
    expect(res.status, res.text).toBe(200);
    expect(res.body.room_id).toBe(remotePublic);
  });

  it("404 for a remote room the server may not see, or when no server knows it", async () => {
    expectError(await pair.c1.get(summaryUrl(remotePrivate, ["hs2.test"]), { token: bob.accessToken }), 404, "M_NOT_FOUND");
    expectError(await pair.c1.get(summaryUrl("!nothing:nowhere.test", ["nowhere.test"]), { token: bob.accessToken }), 404, "M_NOT_FOUND");
  });
});
