/**
 * POST /rooms/{roomId}/upgrade over raw HTTP (spec "Room Upgrades", server behaviour): the replacement room's
 * create event and copied state, the tombstone, aliases, the old room's restricted power levels, the upgrading
 * user's temporary raise, v12 creators, and the error cases.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client, expectError, registerUser, uniqueName, type Response, type TestUser } from "../helpers/http.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

type Json = Record<string, unknown>;
interface Ev {
  event_id: string;
  type: string;
  sender: string;
  content: Json;
  state_key?: string;
}

const enc = encodeURIComponent;
const V3 = "/_matrix/client/v3";

let ts: TestServer;
let c: Client;
let alice: TestUser;
let bob: TestUser;
let carol: TestUser;
let dave: TestUser;
let txn = 0;

beforeAll(async () => {
  ts = await startTestServer();
  c = new Client(ts.baseUrl);
  alice = await registerUser(c);
  bob = await registerUser(c);
  carol = await registerUser(c);
  dave = await registerUser(c);
});
afterAll(async () => {
  await ts?.close();
});

async function createRoom(user: TestUser, body: Json): Promise<string> {
  const r = await c.post(`${V3}/createRoom`, { preset: "public_chat", ...body }, { token: user.accessToken });
  expect(r.status, r.text).toBe(200);
  return r.body.room_id as string;
}

async function join(user: TestUser, roomId: string): Promise<void> {
  const r = await c.post(`${V3}/rooms/${enc(roomId)}/join`, {}, { token: user.accessToken });
  expect(r.status, r.text).toBe(200);
}

async function send(user: TestUser, roomId: string, body: string): Promise<Response> {
  return c.put(`${V3}/rooms/${enc(roomId)}/send/m.room.message/t${++txn}`, { msgtype: "m.text", body }, { token: user.accessToken });
}

async function setState(user: TestUser, roomId: string, type: string, content: Json, stateKey = ""): Promise<void> {
  const r = await c.put(`${V3}/rooms/${enc(roomId)}/state/${enc(type)}/${enc(stateKey)}`, content, { token: user.accessToken });
  expect(r.status, r.text).toBe(200);
}

function getState(user: TestUser, roomId: string, type: string, stateKey = ""): Promise<Response> {
  return c.get(`${V3}/rooms/${enc(roomId)}/state/${enc(type)}/${enc(stateKey)}`, { token: user.accessToken });
}

async function state(user: TestUser, roomId: string, type: string, stateKey = ""): Promise<Json> {
  const r = await getState(user, roomId, type, stateKey);
  expect(r.status, `${type}/${stateKey}: ${r.text}`).toBe(200);
  return r.body;
}

async function stateEvent(user: TestUser, roomId: string, type: string, stateKey = ""): Promise<Ev> {
  const r = await c.get<Ev>(`${V3}/rooms/${enc(roomId)}/state/${enc(type)}/${enc(stateKey)}?format=event`, { token: user.accessToken });
  expect(r.status, r.text).toBe(200);
  return r.body;
}

function upgrade(user: TestUser, roomId: string, body: Json): Promise<Response> {
  return c.post(`${V3}/rooms/${enc(roomId)}/upgrade`, body, { token: user.accessToken });
}

async function upgraded(user: TestUser, roomId: string, body: Json): Promise<string> {
  const r = await upgrade(user, roomId, body);
  expect(r.status, r.text).toBe(200);
  expect(typeof r.body.replacement_room).toBe("string");
  return r.body.replacement_room as string;
}

async function timeline(user: TestUser, roomId: string): Promise<Ev[]> {
  const r = await c.get<{ chunk: Ev[] }>(`${V3}/rooms/${enc(roomId)}/messages?dir=f&limit=100`, { token: user.accessToken });
  expect(r.status, r.text).toBe(200);
  return r.body.chunk;
}

describe("upgrading a room", () => {
  const aliasName = uniqueName("main");
  let alias: string;
  let altAlias: string;
  const remoteAlias = "#remote:elsewhere.example";
  let oldRoom: string;
  let newRoom: string;
  let lastEvent: string;
  const copied: Record<string, Json> = {};

  beforeAll(async () => {
    alias = `#${aliasName}:test.local`;
    altAlias = `#${uniqueName("alt")}:test.local`;
    oldRoom = await createRoom(alice, {
      room_version: "10",
      visibility: "public",
      room_alias_name: aliasName,
      name: "Old room",
      topic: "Things",
      power_level_content_override: { users: { [bob.userId]: 50 } },
      initial_state: [
        { type: "m.room.avatar", content: { url: "mxc://test.local/avatar" } },
        { type: "m.room.encryption", content: { algorithm: "m.megolm.v1.aes-sha2" } },
        { type: "m.room.server_acl", content: { allow: ["*"], deny: ["evil.example"], allow_ip_literals: false } },
        { type: "m.room.history_visibility", content: { history_visibility: "world_readable" } },
        { type: "m.room.guest_access", content: { guest_access: "can_join" } },
        { type: "org.example.custom", content: { sender_sensitive: true } },
      ],
    });
    await join(bob, oldRoom);
    await join(dave, oldRoom);
    const put = await c.put(`${V3}/directory/room/${enc(altAlias)}`, { room_id: oldRoom }, { token: alice.accessToken });
    expect(put.status, put.text).toBe(200);
    await setState(alice, oldRoom, "m.room.canonical_alias", { alias, alt_aliases: [altAlias, remoteAlias] });
    const ban = await c.post(`${V3}/rooms/${enc(oldRoom)}/ban`, { user_id: carol.userId, reason: "spam" }, { token: alice.accessToken });
    expect(ban.status, ban.text).toBe(200);
    for (const type of ["m.room.name", "m.room.topic", "m.room.avatar", "m.room.encryption", "m.room.server_acl", "m.room.history_visibility", "m.room.guest_access", "m.room.join_rules", "m.room.power_levels"]) {
      copied[type] = await state(alice, oldRoom, type);
    }
    const sent = await send(alice, oldRoom, "last words");
    lastEvent = sent.body.event_id as string;
    newRoom = await upgraded(alice, oldRoom, { new_version: "11" });
  });

  it("creates the replacement room with a predecessor", async () => {
    expect(newRoom).not.toBe(oldRoom);
    const create = await stateEvent(alice, newRoom, "m.room.create");
    expect(create.sender).toBe(alice.userId);
    expect(create.content.room_version).toBe("11");
    // predecessor.event_id is "the last known event in the old room": the tombstone (as Synapse), not the message
    // sent before the upgrade.
    const tombstone = await stateEvent(alice, oldRoom, "m.room.tombstone");
    expect(tombstone.content.replacement_room).toBe(newRoom);
    expect(lastEvent).not.toBe(tombstone.event_id);
    expect(create.content.predecessor).toEqual({ room_id: oldRoom, event_id: tombstone.event_id });
    // v11 create events have no `creator`; no room type was set, so none is copied.
    expect(create.content).not.toHaveProperty("creator");
    expect(create.content).not.toHaveProperty("type");
  });

  it("copies the transferable state, with the power levels as they were", async () => {
    for (const [type, content] of Object.entries(copied)) expect(await state(alice, newRoom, type), type).toEqual(content);
    expect(copied["m.room.power_levels"]!.users).toEqual({ [alice.userId]: 100, [bob.userId]: 50 });
    // Neither custom state nor memberships other than the upgrader's come along.
    expectError(await getState(alice, newRoom, "org.example.custom"), 404, "M_NOT_FOUND");
    expect((await state(alice, newRoom, "m.room.member", alice.userId)).membership).toBe("join");
    expectError(await getState(alice, newRoom, "m.room.member", bob.userId), 404, "M_NOT_FOUND");
  });

  it("copies bans", async () => {
    expect(await state(alice, newRoom, "m.room.member", carol.userId)).toMatchObject({ membership: "ban", reason: "spam" });
  });

  it("sends the tombstone and restricts the old room", async () => {
    expect(await state(alice, oldRoom, "m.room.tombstone")).toEqual({ body: "This room has been replaced", replacement_room: newRoom });
    const pl = await state(alice, oldRoom, "m.room.power_levels");
    expect(pl.events_default).toBe(50);
    expect(pl.invite).toBe(50);
    expect(pl.users).toEqual(copied["m.room.power_levels"]!.users);
    // Dave (level 0) can no longer speak there; he can in the new room once he joins.
    expectError(await send(dave, oldRoom, "still here?"), 403, "M_FORBIDDEN");
    await join(dave, newRoom);
    expect((await send(dave, newRoom, "moved")).status).toBe(200);
  });

  it("moves local aliases and splits the canonical alias", async () => {
    for (const a of [alias, altAlias]) {
      const r = await c.get(`${V3}/directory/room/${enc(a)}`, { token: bob.accessToken });
      expect(r.status, r.text).toBe(200);
      expect(r.body.room_id).toBe(newRoom);
    }
    expect(await state(alice, newRoom, "m.room.canonical_alias")).toEqual({ alias, alt_aliases: [altAlias] });
    expect(await state(alice, oldRoom, "m.room.canonical_alias")).toEqual({ alt_aliases: [remoteAlias] });
  });

  it("moves the room directory listing", async () => {
    expect((await ts.server.services.storage.rooms.get(newRoom))?.is_public).toBe(1);
    expect((await ts.server.services.storage.rooms.get(oldRoom))?.is_public).toBe(0);
  });
});

describe("power levels of the upgrading user", () => {
  it("raises a moderator for the copy, then restores their level", async () => {
    const oldRoom = await createRoom(alice, { room_version: "11" });
    await join(bob, oldRoom);
    const pl = await state(alice, oldRoom, "m.room.power_levels");
    // Alice steps down to moderator but may still upgrade; bob is the admin.
    await setState(alice, oldRoom, "m.room.power_levels", {
      ...pl,
      users: { [alice.userId]: 50, [bob.userId]: 100 },
      events: { ...(pl.events as Json), "m.room.tombstone": 50 },
    });
    const newRoom = await upgraded(alice, oldRoom, { new_version: "11" });

    const levels = (await timeline(alice, newRoom)).filter((e) => e.type === "m.room.power_levels");
    expect(levels).toHaveLength(2);
    // First as high as the highest level any state event needs, then as in the old room.
    expect(levels[0]!.content.users).toEqual({ [alice.userId]: 100, [bob.userId]: 100 });
    expect(levels[1]!.content.users).toEqual({ [alice.userId]: 50, [bob.userId]: 100 });
    expect((await state(alice, newRoom, "m.room.power_levels")).users).toEqual({ [alice.userId]: 50, [bob.userId]: 100 });

    // In the old room alice may not change power levels: the tombstone is there, the levels are unchanged.
    expect((await state(alice, oldRoom, "m.room.tombstone")).replacement_room).toBe(newRoom);
    expect((await state(alice, oldRoom, "m.room.power_levels")).events_default).toBe(0);
  });

  it("turns string power levels of older room versions into integers", async () => {
    const oldRoom = await createRoom(alice, { room_version: "9", power_level_content_override: { state_default: "50", users: { [bob.userId]: " 20 " } } });
    expect((await state(alice, oldRoom, "m.room.power_levels")).state_default).toBe("50");
    const newRoom = await upgraded(alice, oldRoom, { new_version: "11" });
    const pl = await state(alice, newRoom, "m.room.power_levels");
    expect(pl.state_default).toBe(50);
    expect(pl.users).toEqual({ [alice.userId]: 100, [bob.userId]: 20 });
  });
});

describe("upgrading to room version 12", () => {
  it("makes the upgrader and additional_creators the creators, unlisted in power levels", async () => {
    const oldRoom = await createRoom(alice, { room_version: "11", power_level_content_override: { users: { [bob.userId]: 50, [dave.userId]: 50 } } });
    await send(alice, oldRoom, "hello");
    const newRoom = await upgraded(alice, oldRoom, { new_version: "12", additional_creators: [bob.userId] });
    // v12 room ids are the create event's hash, without a server name.
    expect(newRoom).toMatch(/^![A-Za-z0-9_-]+$/);
    const create = await stateEvent(alice, newRoom, "m.room.create");
    expect(create.content.room_version).toBe("12");
    expect(create.content.additional_creators).toEqual([bob.userId]);
    // The tombstone names the new room, whose id is the create event's hash: no event id can be given.
    expect(create.content.predecessor).toEqual({ room_id: oldRoom });
    const pl = await state(alice, newRoom, "m.room.power_levels");
    expect(pl.users).toEqual({ [dave.userId]: 50 });
    // Bob, a creator, has unlimited power once he joins.
    await join(bob, newRoom);
    await setState(bob, newRoom, "m.room.power_levels", { ...pl, users: { [dave.userId]: 75 } });
    expect((await state(alice, oldRoom, "m.room.tombstone")).replacement_room).toBe(newRoom);
  });

  it("gives old creators level 100 when a v12 room is upgraded to an earlier version", async () => {
    const oldRoom = await createRoom(alice, { room_version: "12" });
    expect((await state(alice, oldRoom, "m.room.power_levels")).users).toEqual({});
    const newRoom = await upgraded(alice, oldRoom, { new_version: "11" });
    expect((await state(alice, newRoom, "m.room.power_levels")).users).toEqual({ [alice.userId]: 100 });
  });
});

describe("room types", () => {
  it("copies the room type, m.federate and a space's children", async () => {
    const oldRoom = await createRoom(alice, {
      room_version: "11",
      creation_content: { type: "m.space", "m.federate": false },
      initial_state: [
        { type: "m.space.child", state_key: "!child:test.local", content: { via: ["test.local"] } },
        { type: "m.space.child", state_key: "!removed:test.local", content: {} },
      ],
    });
    const newRoom = await upgraded(alice, oldRoom, { new_version: "11" });
    const create = await stateEvent(alice, newRoom, "m.room.create");
    expect(create.content).toMatchObject({ type: "m.space", "m.federate": false });
    expect(await state(alice, newRoom, "m.space.child", "!child:test.local")).toEqual({ via: ["test.local"] });
    expectError(await getState(alice, newRoom, "m.space.child", "!removed:test.local"), 404, "M_NOT_FOUND");
  });
});

describe("errors", () => {
  let roomId: string;

  beforeAll(async () => {
    roomId = await createRoom(alice, { room_version: "10", power_level_content_override: { users: { [bob.userId]: 99 } } });
    await join(bob, roomId);
    await join(dave, roomId);
  });

  it("rejects unknown room versions and malformed bodies", async () => {
    expectError(await upgrade(alice, roomId, { new_version: "999" }), 400, "M_UNSUPPORTED_ROOM_VERSION");
    expectError(await upgrade(alice, roomId, {}), 400, "M_MISSING_PARAM");
    expectError(await upgrade(alice, roomId, { new_version: 11 }), 400, "M_BAD_JSON");
    expectError(await upgrade(alice, roomId, { new_version: "12", additional_creators: "@x:test.local" }), 400, "M_BAD_JSON");
    expectError(await upgrade(alice, roomId, { new_version: "12", additional_creators: ["not a user"] }), 400, "M_INVALID_PARAM");
    expectError(await upgrade(alice, "not-a-room", { new_version: "11" }), 400, "M_INVALID_PARAM");
  });

  it("is 404 for an unknown room", async () => {
    expectError(await upgrade(alice, "!unknown:test.local", { new_version: "11" }), 404, "M_NOT_FOUND");
  });

  it("is 403 without the power to send m.room.tombstone, or outside the room", async () => {
    expectError(await upgrade(bob, roomId, { new_version: "11" }), 403, "M_FORBIDDEN");
    expectError(await upgrade(dave, roomId, { new_version: "11" }), 403, "M_FORBIDDEN");
    expectError(await upgrade(carol, roomId, { new_version: "11" }), 403, "M_FORBIDDEN");
    const left = await createRoom(alice, { room_version: "10" });
    await join(carol, left);
    expect((await c.post(`${V3}/rooms/${enc(left)}/leave`, {}, { token: carol.accessToken })).status).toBe(200);
    expectError(await upgrade(carol, left, { new_version: "11" }), 403, "M_FORBIDDEN");
    expectError(await getState(alice, roomId, "m.room.tombstone"), 404, "M_NOT_FOUND");
  });

  it("answers a repeated upgrade with the same room and refuses another user meanwhile", async () => {
    const other = await createRoom(alice, { room_version: "10", power_level_content_override: { users: { [bob.userId]: 100 } } });
    await join(bob, other);
    // A refused attempt does not block the next one.
    expectError(await upgrade(dave, other, { new_version: "11" }), 403, "M_FORBIDDEN");
    const first = await upgraded(alice, other, { new_version: "11" });
    expect(await upgraded(alice, other, { new_version: "11" })).toBe(first);
    expectError(await upgrade(bob, other, { new_version: "11" }), 400, "M_UNKNOWN");
  });
});

describe("what the local users of the old room keep (as Synapse)", () => {
  it("room tags, m.direct and push rules about the room are copied to the new room for every joined local user", async () => {
    const oldRoom = await createRoom(alice, { room_version: "10" });
    await join(bob, oldRoom);
    const put = (u: TestUser, path: string, body: Json) => c.put(`${V3}${path}`, body, { token: u.accessToken });
    expect((await put(bob, `/user/${enc(bob.userId)}/rooms/${enc(oldRoom)}/tags/u.work`, { order: 0.5 })).status).toBe(200);
    expect((await put(bob, `/user/${enc(bob.userId)}/account_data/m.direct`, { [alice.userId]: [oldRoom] })).status).toBe(200);
    expect((await put(bob, `/pushrules/global/room/${enc(oldRoom)}`, { actions: ["notify"] })).status).toBe(200);
    const cond = { kind: "event_match", key: "room_id", pattern: oldRoom };
    expect((await put(bob, `/pushrules/global/override/${enc("my-rule")}`, { conditions: [cond], actions: [] })).status).toBe(200);
    expect((await put(alice, `/user/${enc(alice.userId)}/rooms/${enc(oldRoom)}/tags/m.favourite`, {})).status).toBe(200);

    const newRoom = await upgraded(alice, oldRoom, { new_version: "11" });
    const tags = await c.get(`${V3}/user/${enc(bob.userId)}/rooms/${enc(newRoom)}/tags`, { token: bob.accessToken });
    expect(tags.body).toEqual({ tags: { "u.work": { order: 0.5 } } });
    const aliceTags = await c.get(`${V3}/user/${enc(alice.userId)}/rooms/${enc(newRoom)}/tags`, { token: alice.accessToken });
    expect(aliceTags.body).toEqual({ tags: { "m.favourite": {} } });
    const direct = await c.get(`${V3}/user/${enc(bob.userId)}/account_data/m.direct`, { token: bob.accessToken });
    expect(direct.body).toEqual({ [alice.userId]: [oldRoom, newRoom] });
    const roomRule = await c.get(`${V3}/pushrules/global/room/${enc(newRoom)}`, { token: bob.accessToken });
    expect(roomRule.status, roomRule.text).toBe(200);
    expect(roomRule.body.actions).toEqual(["notify"]);
    const override = await c.get(`${V3}/pushrules/global/override/${enc(newRoom)}`, { token: bob.accessToken });
    expect(override.body.conditions).toEqual([{ ...cond, pattern: newRoom }]);
    // The old room's rules stay.
    expect((await c.get(`${V3}/pushrules/global/room/${enc(oldRoom)}`, { token: bob.accessToken })).status).toBe(200);
  });

  it("a tombstone naming its own room is refused with 400, as a state event or sent as a message", async () => {
    const roomId = await createRoom(alice, { room_version: "10" });
    expectError(await c.put(`${V3}/rooms/${enc(roomId)}/state/m.room.tombstone/`, { replacement_room: roomId, body: "x" }, { token: alice.accessToken }), 400, "M_BAD_JSON");
    expectError(await c.put(`${V3}/rooms/${enc(roomId)}/send/m.room.tombstone/t${++txn}`, { replacement_room: roomId }, { token: alice.accessToken }), 400, "M_BAD_JSON");
    expectError(await getState(alice, roomId, "m.room.tombstone"), 404, "M_NOT_FOUND");
  });
});
