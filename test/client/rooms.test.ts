/**
 * Room creation and membership over HTTP (spec "Creation", "Room membership"): createRoom with every option and
 * room version, join by id and alias, invite, leave, forget, kick, ban, unban, knock, restricted joins and
 * joined_rooms, with the permission failures the spec names.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client, expectError, registerUser, uniqueName, type TestUser } from "../helpers/http.js";
import {
  V3,
  allState,
  createRoom,
  enc,
  findState,
  getState,
  inviteUser,
  joinRoom,
  leaveRoom,
  roomWith,
  send,
  setState,
  sync,
  syncUntil,
  type ClientEvent,
} from "../helpers/rooms.js";
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

const user = () => registerUser(c);
const post = (u: TestUser, path: string, body: unknown = {}) => c.post(`${V3}${path}`, body, { token: u.accessToken });

async function membershipOf(viewer: TestUser, roomId: string, userId: string): Promise<string | undefined> {
  const res = await c.get(`${V3}/rooms/${enc(roomId)}/state/m.room.member/${enc(userId)}`, { token: viewer.accessToken });
  return res.status === 200 ? (res.body.membership as string) : undefined;
}

describe("createRoom", () => {
  it("defaults to private_chat in room version 12, with the creator joined and privileged", async () => {
    const alice = await user();
    const res = await post(alice, "/createRoom", {});
    expect(res.status, res.text).toBe(200);
    expect(Object.keys(res.body)).toEqual(["room_id"]);
    const roomId = res.body.room_id as string;
    // v12: the room id is the create event's hash, without a server part.
    expect(roomId).toMatch(/^![A-Za-z0-9_-]{43}$/);
    const state = await allState(c, alice, roomId);
    const create = findState(state, "m.room.create")!;
    expect(create.content.room_version).toBe("12");
    expect(create.content.creator).toBeUndefined();
    expect(create.sender).toBe(alice.userId);
    expect(`!${create.event_id.slice(1)}`).toBe(roomId);
    expect(findState(state, "m.room.member", alice.userId)!.content.membership).toBe("join");
    expect(findState(state, "m.room.join_rules")!.content).toEqual({ join_rule: "invite" });
    expect(findState(state, "m.room.history_visibility")!.content).toEqual({ history_visibility: "shared" });
    expect(findState(state, "m.room.guest_access")!.content).toEqual({ guest_access: "can_join" });
    const pl = findState(state, "m.room.power_levels")!.content;
    // v12 creators have infinite power and must not be listed in users.
    expect(pl.users).toEqual({});
    expect(pl.invite).toBe(0);
    expect(pl.state_default).toBe(50);
    expect(pl.events_default).toBe(0);
    expect((pl.events as Record<string, number>)["m.room.power_levels"]).toBe(100);
    expect(findState(state, "m.room.name")).toBeUndefined();
    expect(findState(state, "m.room.canonical_alias")).toBeUndefined();
  });

  it("identical createRoom requests at once give distinct v12 rooms (the id is the create event's hash)", async () => {
    const alice = await registerUser(c);
    const answers = await Promise.all(Array.from({ length: 8 }, () => c.post(`${V3}/createRoom`, { room_version: "12" }, { token: alice.accessToken })));
    expect(answers.map((a) => a.status)).toEqual(Array(8).fill(200));
    expect(new Set(answers.map((a) => a.body.room_id)).size).toBe(8);
  });

  it("puts the creator at 100 in rooms before v12", async () => {
    const alice = await user();
    const roomId = await createRoom(c, alice, { room_version: "11" });
    const pl = await getState(c, alice, roomId, "m.room.power_levels");
    expect(pl.users).toEqual({ [alice.userId]: 100 });
    const create = await getState(c, alice, roomId, "m.room.create");
    expect(create.creator).toBeUndefined();
    const v10 = await createRoom(c, alice, { room_version: "10" });
    expect((await getState(c, alice, v10, "m.room.create")).creator).toBe(alice.userId);
  });

  it("public_chat preset: public join rule, shared history, no guests, invite power 50", async () => {
    const alice = await user();
    const roomId = await createRoom(c, alice, { preset: "public_chat" });
    expect(await getState(c, alice, roomId, "m.room.join_rules")).toEqual({ join_rule: "public" });
    expect(await getState(c, alice, roomId, "m.room.history_visibility")).toEqual({ history_visibility: "shared" });
    // No guests: no m.room.guest_access at all, which means "forbidden" (as Synapse sends it only for can_join).
    expectError(await c.get(`/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/state/m.room.guest_access/`, { token: alice.accessToken }), 404, "M_NOT_FOUND");
    expect((await getState(c, alice, roomId, "m.room.power_levels")).invite).toBe(50);
  });

  it("visibility public implies the public_chat preset", async () => {
    const alice = await user();
    const roomId = await createRoom(c, alice, { visibility: "public" });
    expect(await getState(c, alice, roomId, "m.room.join_rules")).toEqual({ join_rule: "public" });
    expectError(await c.get(`/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/state/m.room.guest_access/`, { token: alice.accessToken }), 404, "M_NOT_FOUND");
    // An explicit preset wins over the visibility's default.
    const priv = await createRoom(c, alice, { visibility: "public", preset: "private_chat" });
    expect(await getState(c, alice, priv, "m.room.join_rules")).toEqual({ join_rule: "invite" });
  });

  it("trusted_private_chat gives invitees the creator's power (v11: power level 100; v12: additional creators)", async () => {
    const alice = await user();
    const bob = await user();
    const v11 = await createRoom(c, alice, { preset: "trusted_private_chat", room_version: "11", invite: [bob.userId] });
    expect((await getState(c, alice, v11, "m.room.power_levels")).users).toEqual({ [alice.userId]: 100, [bob.userId]: 100 });
    expect(await getState(c, alice, v11, "m.room.join_rules")).toEqual({ join_rule: "invite" });
    const v12 = await createRoom(c, alice, { preset: "trusted_private_chat", invite: [bob.userId] });
    expect((await getState(c, alice, v12, "m.room.create")).additional_creators).toEqual([bob.userId]);
    expect((await getState(c, alice, v12, "m.room.power_levels")).users).toEqual({});
  });

  it("room_alias_name creates the alias and the canonical alias event", async () => {
    const alice = await user();
    const local = `alias_${Date.now().toString(36)}`;
    const res = await post(alice, "/createRoom", { room_alias_name: local });
    expect(res.status, res.text).toBe(200);
    const alias = `#${local}:test.local`;
    expect(res.body.room_alias).toBe(alias);
    const roomId = res.body.room_id as string;
    expect(await getState(c, alice, roomId, "m.room.canonical_alias")).toEqual({ alias });
    const dir = await c.get(`${V3}/directory/room/${enc(alias)}`);
    expect(dir.status, dir.text).toBe(200);
    expect(dir.body).toEqual({ room_id: roomId, servers: ["test.local"] });
  });

  it("name and topic become m.room.name and m.room.topic (with m.topic)", async () => {
    const alice = await user();
    const roomId = await createRoom(c, alice, { name: "The Room", topic: "All about it" });
    expect(await getState(c, alice, roomId, "m.room.name")).toEqual({ name: "The Room" });
    const topic = await getState(c, alice, roomId, "m.room.topic");
    expect(topic.topic).toBe("All about it");
    expect(topic["m.topic"]).toEqual([{ mimetype: "text/plain", body: "All about it" }]);
  });

  it("invite invites each user, with is_direct on the invite", async () => {
    const alice = await user();
    const bob = await user();
    const carol = await user();
    const roomId = await createRoom(c, alice, { invite: [bob.userId, carol.userId], is_direct: true });
    const bobMember = await getState(c, alice, roomId, "m.room.member", bob.userId);
    expect(bobMember.membership).toBe("invite");
    expect(bobMember.is_direct).toBe(true);
    expect((await getState(c, alice, roomId, "m.room.member", carol.userId)).membership).toBe("invite");
    const s = await sync(c, bob);
    const invite = s.rooms.invite[roomId];
    expect(invite).toBeDefined();
    const own = invite!.invite_state.events.find((e) => e.type === "m.room.member" && e.state_key === bob.userId)!;
    expect(own.content.is_direct).toBe(true);
    // Without is_direct the flag is absent.
    const other = await createRoom(c, alice, { invite: [bob.userId] });
    expect((await getState(c, alice, other, "m.room.member", bob.userId)).is_direct).toBeUndefined();
  });

  it("initial_state adds state and overrides the preset's", async () => {
    const alice = await user();
    const roomId = await createRoom(c, alice, {
      preset: "private_chat",
      initial_state: [
        { type: "m.room.join_rules", content: { join_rule: "public" } },
        { type: "m.room.history_visibility", state_key: "", content: { history_visibility: "joined" } },
        { type: "org.example.custom", state_key: "k", content: { x: 1 } },
      ],
    });
    expect(await getState(c, alice, roomId, "m.room.join_rules")).toEqual({ join_rule: "public" });
    expect(await getState(c, alice, roomId, "m.room.history_visibility")).toEqual({ history_visibility: "joined" });
    expect(await getState(c, alice, roomId, "org.example.custom", "k")).toEqual({ x: 1 });
    const state = await allState(c, alice, roomId);
    // One join rules event only: the preset's is not sent when initial_state has it.
    expect(state.filter((e) => e.type === "m.room.join_rules")).toHaveLength(1);
  });

  it("power_level_content_override merges over the defaults", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await createRoom(c, alice, {
      room_version: "11",
      power_level_content_override: { users_default: 10, events: { "m.room.topic": 75 }, users: { [bob.userId]: 60 } },
    });
    const pl = await getState(c, alice, roomId, "m.room.power_levels");
    expect(pl.users_default).toBe(10);
    expect((pl.events as Record<string, number>)["m.room.topic"]).toBe(75);
    expect((pl.events as Record<string, number>)["m.room.name"]).toBe(50);
    expect(pl.users).toEqual({ [alice.userId]: 100, [bob.userId]: 60 });
  });

  it("creation_content is merged into m.room.create (but cannot set the room version)", async () => {
    const alice = await user();
    const roomId = await createRoom(c, alice, { creation_content: { "m.federate": false, type: "m.space", room_version: "1" } });
    const create = await getState(c, alice, roomId, "m.room.create");
    expect(create["m.federate"]).toBe(false);
    expect(create.type).toBe("m.space");
    expect(create.room_version).toBe("12");
  });

  for (const version of ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"]) {
    it(`creates a working room in version ${version}`, async () => {
      const alice = await user();
      const bob = await user();
      const roomId = await createRoom(c, alice, { room_version: version, preset: "public_chat", name: `v${version}` });
      if (version === "12") expect(roomId).toMatch(/^![A-Za-z0-9_-]{43}$/);
      else expect(roomId).toMatch(/^![A-Za-z]+:test\.local$/);
      const create = await getState(c, alice, roomId, "m.room.create");
      expect(create.room_version).toBe(version);
      await joinRoom(c, bob, roomId);
      const eventId = await send(c, bob, roomId, `hello v${version}`);
      if (version === "1" || version === "2") expect(eventId).toMatch(/^\$[A-Za-z0-9]+:test\.local$/);
      else if (version === "3") expect(eventId).toMatch(/^\$[A-Za-z0-9+/]{43}$/);
      else expect(eventId).toMatch(/^\$[A-Za-z0-9_-]{43}$/);
      const ev = await c.get(`${V3}/rooms/${enc(roomId)}/event/${enc(eventId)}`, { token: alice.accessToken });
      expect(ev.status, ev.text).toBe(200);
      expect(ev.body.content).toEqual({ msgtype: "m.text", body: `hello v${version}` });
    });
  }

  it("rejects an unknown room version with 400 M_UNSUPPORTED_ROOM_VERSION", async () => {
    const alice = await user();
    expectError(await post(alice, "/createRoom", { room_version: "99" }), 400, "M_UNSUPPORTED_ROOM_VERSION");
    expectError(await post(alice, "/createRoom", { room_version: "org.example.unknown" }), 400, "M_UNSUPPORTED_ROOM_VERSION");
  });

  it("rejects a taken alias with 400 M_ROOM_IN_USE", async () => {
    const alice = await user();
    const local = `taken_${Date.now().toString(36)}`;
    await createRoom(c, alice, { room_alias_name: local });
    expectError(await post(alice, "/createRoom", { room_alias_name: local }), 400, "M_ROOM_IN_USE");
  });

  it("rejects an invalid alias localpart with 400 M_INVALID_PARAM", async () => {
    const alice = await user();
    for (const bad of ["with:colon", "with space", "tab\there"]) {
      expectError(await post(alice, "/createRoom", { room_alias_name: bad }), 400, "M_INVALID_PARAM");
    }
  });

  it("rejects initial state the creator could not have sent with 400 M_INVALID_ROOM_STATE", async () => {
    const alice = await user();
    // The override leaves the creator below the level needed for m.room.name.
    const low = await post(alice, "/createRoom", { room_version: "11", name: "x", power_level_content_override: { users: { [alice.userId]: 10 } } });
    expectError(low, 400, "M_INVALID_ROOM_STATE");
    const badState = await post(alice, "/createRoom", { room_version: "11", initial_state: [{ type: "m.room.topic", state_key: "@someone:test.local", content: {} }] });
    expectError(badState, 400, "M_INVALID_ROOM_STATE");
  });

  it("rejects an invalid invitee with 400 M_INVALID_PARAM, an unknown local one with 404, before creating anything", async () => {
    const alice = await user();
    expectError(await post(alice, "/createRoom", { invite: ["not-a-user-id"] }), 400, "M_INVALID_PARAM");
    expectError(await post(alice, "/createRoom", { invite: ["@nobody_by_that_name:test.local"] }), 404, "M_NOT_FOUND");
    expect((await c.get(`${V3}/joined_rooms`, { token: alice.accessToken })).body.joined_rooms).toEqual([]);
  });

  it("rejects wrongly typed fields with 400 M_BAD_JSON", async () => {
    const alice = await user();
    const bad = [
      { name: 5 },
      { topic: ["x"] },
      { invite: "@bob:test.local" },
      { preset: "bogus_chat" },
      { visibility: "secret" },
      { is_direct: "yes" },
      { room_version: 12 },
      { creation_content: "x" },
      { initial_state: { type: "m.room.name" } },
      { initial_state: [{ type: "m.room.name" }] },
      { power_level_content_override: [] },
      { initial_state: [{ type: "m.room.member", state_key: "@x:test.local", content: { membership: "join" } }] },
    ];
    for (const body of bad) {
      const res = await post(alice, "/createRoom", body);
      expect(res.status, `${JSON.stringify(body)} → ${res.text}`).toBe(400);
      expect(res.body.errcode, JSON.stringify(body)).toBe("M_BAD_JSON");
    }
    expectError(await c.post(`${V3}/createRoom`, "{not json", { token: alice.accessToken }), 400, "M_NOT_JSON");
  });

  it("requires authentication", async () => {
    expectError(await c.post(`${V3}/createRoom`, {}), 401, "M_MISSING_TOKEN");
  });
});

describe("join", () => {
  it("joins a public room by id and by alias", async () => {
    const alice = await user();
    const bob = await user();
    const carol = await user();
    const local = `join_${Date.now().toString(36)}`;
    const roomId = await createRoom(c, alice, { preset: "public_chat", room_alias_name: local });
    const byId = await post(bob, `/rooms/${enc(roomId)}/join`);
    expect(byId.status, byId.text).toBe(200);
    expect(byId.body).toEqual({ room_id: roomId });
    const byAlias = await post(carol, `/join/${enc(`#${local}:test.local`)}`, { reason: "hi" });
    expect(byAlias.status, byAlias.text).toBe(200);
    expect(byAlias.body).toEqual({ room_id: roomId });
    const member = await getState(c, alice, roomId, "m.room.member", carol.userId);
    expect(member.membership).toBe("join");
    expect(member.reason).toBe("hi");
    // POST /join/{roomId} works with an id too, and joining again changes nothing (no new event).
    const before = await c.get(`${V3}/rooms/${enc(roomId)}/state/m.room.member/${enc(bob.userId)}?format=event`, { token: alice.accessToken });
    const again = await post(bob, `/join/${enc(roomId)}`);
    expect(again.status, again.text).toBe(200);
    const after = await c.get(`${V3}/rooms/${enc(roomId)}/state/m.room.member/${enc(bob.userId)}?format=event`, { token: alice.accessToken });
    expect(after.body.event_id).toBe(before.body.event_id);
    const joined = await c.get(`${V3}/rooms/${enc(roomId)}/joined_members`, { token: alice.accessToken });
    expect(Object.keys(joined.body.joined as object).sort()).toEqual([alice.userId, bob.userId, carol.userId].sort());
  });

  it("puts the joiner's profile on the member event", async () => {
    const alice = await user();
    const bob = await user();
    await c.put(`${V3}/profile/${enc(bob.userId)}/displayname`, { displayname: "Bobby" }, { token: bob.accessToken });
    const roomId = await roomWith(c, alice, [bob]);
    expect((await getState(c, alice, roomId, "m.room.member", bob.userId)).displayname).toBe("Bobby");
  });

  it("puts the body's other keys into the member event (as Synapse): custom content and a per-room profile", async () => {
    const alice = await user();
    const bob = await user();
    const carol = await user();
    await c.put(`${V3}/profile/${enc(bob.userId)}/displayname`, { displayname: "Bobby" }, { token: bob.accessToken });
    const alias = `#${uniqueName("joincontent")}:test.local`;
    const roomId = await createRoom(c, alice, { preset: "public_chat", room_alias_name: alias.slice(1, alias.indexOf(":")) });
    const byId = await post(bob, `/rooms/${enc(roomId)}/join`, { foo: "bar", reason: "hi", membership: "leave", join_authorised_via_users_server: alice.userId });
    expect(byId.status, byId.text).toBe(200);
    // The profile fills in what the body leaves out; `membership` and the resident's vouching field are not the client's.
    expect(await getState(c, alice, roomId, "m.room.member", bob.userId)).toEqual({ membership: "join", displayname: "Bobby", foo: "bar", reason: "hi" });
    const byAlias = await post(carol, `/join/${enc(alias)}`, { foo: { nested: 1 }, displayname: "Carol here" });
    expect(byAlias.status, byAlias.text).toBe(200);
    expect(await getState(c, alice, roomId, "m.room.member", carol.userId)).toMatchObject({ membership: "join", displayname: "Carol here", foo: { nested: 1 } });
    expectError(await post(carol, `/join/${enc(roomId)}`, { displayname: "x".repeat(300) }), 400, "M_BAD_JSON");
  });

  it("refuses an invite-only room without an invite (403), and accepts with one", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await createRoom(c, alice, { preset: "private_chat" });
    expectError(await post(bob, `/rooms/${enc(roomId)}/join`), 403, "M_FORBIDDEN");
    await inviteUser(c, alice, roomId, bob.userId);
    expect((await post(bob, `/rooms/${enc(roomId)}/join`)).status).toBe(200);
    expect(await membershipOf(alice, roomId, bob.userId)).toBe("join");
  });

  it("404s an unknown alias and an unknown room, 400s a malformed id", async () => {
    const bob = await user();
    expectError(await post(bob, `/join/${enc("#nope_nothing:test.local")}`), 404, "M_NOT_FOUND");
    expectError(await post(bob, `/join/${enc("!unknownroom:test.local")}`), 404, "M_NOT_FOUND");
    expectError(await post(bob, `/join/${enc("not-a-room")}`), 400, "M_INVALID_PARAM");
    expectError(await post(bob, `/rooms/${enc("not-a-room")}/join`), 400, "M_INVALID_PARAM");
  });
});

describe("invite", () => {
  it("invites a user, who sees it in /sync with invite_state, and joins", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await createRoom(c, alice, { name: "Invite me" });
    const res = await post(alice, `/rooms/${enc(roomId)}/invite`, { user_id: bob.userId, reason: "join us" });
    expect(res.status, res.text).toBe(200);
    expect(res.body).toEqual({});
    const member = await getState(c, alice, roomId, "m.room.member", bob.userId);
    expect(member).toMatchObject({ membership: "invite", reason: "join us" });
    const s = await sync(c, bob);
    const stripped = s.rooms.invite[roomId]!.invite_state.events;
    expect(stripped.find((e) => e.type === "m.room.name")!.content).toEqual({ name: "Invite me" });
    expect(stripped.find((e) => e.type === "m.room.member" && e.state_key === bob.userId)!.sender).toBe(alice.userId);
    await joinRoom(c, bob, roomId);
    expect(await membershipOf(alice, roomId, bob.userId)).toBe("join");
  });

  it("403 when the inviter is not in the room", async () => {
    const alice = await user();
    const bob = await user();
    const carol = await user();
    const roomId = await createRoom(c, alice, { preset: "public_chat" });
    expectError(await post(bob, `/rooms/${enc(roomId)}/invite`, { user_id: carol.userId }), 403, "M_FORBIDDEN");
  });

  it("403 when the target is already joined or banned", async () => {
    const alice = await user();
    const bob = await user();
    const carol = await user();
    const roomId = await roomWith(c, alice, [bob]);
    expectError(await post(alice, `/rooms/${enc(roomId)}/invite`, { user_id: bob.userId }), 403, "M_FORBIDDEN");
    expect((await post(alice, `/rooms/${enc(roomId)}/ban`, { user_id: carol.userId })).status).toBe(200);
    expectError(await post(alice, `/rooms/${enc(roomId)}/invite`, { user_id: carol.userId }), 403, "M_FORBIDDEN");
  });

  it("403 without the invite power level", async () => {
    const alice = await user();
    const bob = await user();
    const carol = await user();
    // public_chat: invite needs 50.
    const roomId = await roomWith(c, alice, [bob]);
    expectError(await post(bob, `/rooms/${enc(roomId)}/invite`, { user_id: carol.userId }), 403, "M_FORBIDDEN");
  });

  it("404 for an unknown local user, 400 for a malformed user id or body", async () => {
    const alice = await user();
    const roomId = await createRoom(c, alice);
    expectError(await post(alice, `/rooms/${enc(roomId)}/invite`, { user_id: "@nobody_here_at_all:test.local" }), 404, "M_NOT_FOUND");
    expectError(await post(alice, `/rooms/${enc(roomId)}/invite`, { user_id: "nobody" }), 400, "M_INVALID_PARAM");
    const typed = await post(alice, `/rooms/${enc(roomId)}/invite`, { user_id: 5 });
    expect(typed.status).toBe(400);
    expectError(await post(alice, `/rooms/${enc("bad room")}/invite`, { user_id: alice.userId }), 400, "M_INVALID_PARAM");
  });
});

describe("leave and forget", () => {
  it("leaves a room, and rejects an invite by leaving", async () => {
    const alice = await user();
    const bob = await user();
    const carol = await user();
    const roomId = await roomWith(c, alice, [bob]);
    const res = await post(bob, `/rooms/${enc(roomId)}/leave`, { reason: "bye" });
    expect(res.status, res.text).toBe(200);
    expect(res.body).toEqual({});
    expect(await getState(c, alice, roomId, "m.room.member", bob.userId)).toMatchObject({ membership: "leave", reason: "bye" });
    const jr = await c.get(`${V3}/joined_rooms`, { token: bob.accessToken });
    expect(jr.body.joined_rooms).not.toContain(roomId);
    // Rejecting an invite.
    await inviteUser(c, alice, roomId, carol.userId);
    await leaveRoom(c, carol, roomId);
    expect(await membershipOf(alice, roomId, carol.userId)).toBe("leave");
  });

  it("rejects a local invite to a room every local member has left since (as Synapse), sending the leave here", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await createRoom(c, alice, { preset: "private_chat" });
    await inviteUser(c, alice, roomId, bob.userId);
    await leaveRoom(c, alice, roomId);
    const res = await post(bob, `/rooms/${enc(roomId)}/leave`);
    expect(res.status, res.text).toBe(200);
    const head = await ts.server.services.roomCore.persister.head(roomId);
    const memberId = head!.state.get(`${"m.room.member".length}:m.room.member${bob.userId}`);
    expect((await ts.server.services.roomCore.events.get(memberId!))!.event.content.membership).toBe("leave");
    // No longer invited: a second rejection is refused.
    expect((await post(bob, `/rooms/${enc(roomId)}/leave`)).status).toBeGreaterThanOrEqual(400);
  });

  it("403 when leaving a room one is not in; 404 for an unknown room", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await createRoom(c, alice, { preset: "public_chat" });
    expectError(await post(bob, `/rooms/${enc(roomId)}/leave`), 403, "M_FORBIDDEN");
    expectError(await post(bob, `/rooms/${enc("!nosuchroom:test.local")}/leave`), 404, "M_NOT_FOUND");
  });

  it("forget: 400 while joined, then the room disappears from /sync (even with include_leave)", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await roomWith(c, alice, [bob]);
    await send(c, bob, roomId, "before leaving");
    expectError(await post(bob, `/rooms/${enc(roomId)}/forget`), 400, "M_UNKNOWN");
    const before = await sync(c, bob);
    await leaveRoom(c, bob, roomId);
    const includeLeave = { room: { include_leave: true } };
    const left = await sync(c, bob, { filter: includeLeave });
    expect(left.rooms.leave[roomId]).toBeDefined();
    const res = await post(bob, `/rooms/${enc(roomId)}/forget`);
    expect(res.status, res.text).toBe(200);
    expect(res.body).toEqual({});
    const after = await sync(c, bob, { filter: includeLeave });
    expect(after.rooms.leave[roomId]).toBeUndefined();
    expect(after.rooms.join[roomId]).toBeUndefined();
    const incremental = await sync(c, bob, { since: before.next_batch, filter: includeLeave });
    expect(incremental.rooms.leave[roomId]).toBeUndefined();
    // Rejoining brings the room back; leaving again shows the room as left (the old forget does not hide it).
    await joinRoom(c, bob, roomId);
    const rejoined = await sync(c, bob);
    expect(rejoined.rooms.join[roomId]).toBeDefined();
    await leaveRoom(c, bob, roomId);
    const leftAgain = await sync(c, bob, { since: rejoined.next_batch });
    expect(leftAgain.rooms.leave[roomId]).toBeDefined();
    expect((await sync(c, bob, { filter: includeLeave })).rooms.leave[roomId]).toBeDefined();
  });

  it("forget: 404 for rooms never joined", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await createRoom(c, alice, { preset: "public_chat" });
    expectError(await post(bob, `/rooms/${enc(roomId)}/forget`), 404, "M_NOT_FOUND");
    expectError(await post(bob, `/rooms/${enc("!nosuchroom:test.local")}/forget`), 404, "M_NOT_FOUND");
  });
});

describe("kick, ban, unban", () => {
  it("kicks with a reason; 403 without the kick power", async () => {
    const alice = await user();
    const bob = await user();
    const carol = await user();
    const roomId = await roomWith(c, alice, [bob, carol]);
    expectError(await post(bob, `/rooms/${enc(roomId)}/kick`, { user_id: carol.userId }), 403, "M_FORBIDDEN");
    const res = await post(alice, `/rooms/${enc(roomId)}/kick`, { user_id: carol.userId, reason: "spam" });
    expect(res.status, res.text).toBe(200);
    expect(res.body).toEqual({});
    const state = await allState(c, alice, roomId);
    const member = findState(state, "m.room.member", carol.userId)!;
    expect(member.content).toMatchObject({ membership: "leave", reason: "spam" });
    expect(member.sender).toBe(alice.userId);
    // Kicked users may rejoin a public room.
    await joinRoom(c, carol, roomId);
  });

  it("403 kicking someone not in the room, or as a non-member", async () => {
    const alice = await user();
    const bob = await user();
    const carol = await user();
    const roomId = await roomWith(c, alice, [bob]);
    expectError(await post(alice, `/rooms/${enc(roomId)}/kick`, { user_id: carol.userId }), 403, "M_FORBIDDEN");
    expectError(await post(carol, `/rooms/${enc(roomId)}/kick`, { user_id: bob.userId }), 403, "M_FORBIDDEN");
  });

  it("403 kicking a user who already left, even repeating the kick that removed them (same reason)", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await roomWith(c, alice, [bob]);
    expect((await post(alice, `/rooms/${enc(roomId)}/kick`, { user_id: bob.userId, reason: "testing" })).status).toBe(200);
    expectError(await post(alice, `/rooms/${enc(roomId)}/kick`, { user_id: bob.userId, reason: "testing" }), 403, "M_FORBIDDEN");
    // Likewise an unban of someone not banned, even when it would repeat their current member event.
    expectError(await post(alice, `/rooms/${enc(roomId)}/unban`, { user_id: bob.userId, reason: "testing" }), 403, "M_FORBIDDEN");
  });

  it("a banned user may not read the room (403), a user who left reads it as of the leave (as Synapse)", async () => {
    const alice = await user();
    const bob = await user();
    const carol = await user();
    const roomId = await roomWith(c, alice, [bob, carol]);
    await send(c, alice, roomId, "before");
    await post(alice, `/rooms/${enc(roomId)}/ban`, { user_id: bob.userId });
    await leaveRoom(c, carol, roomId);
    await send(c, alice, roomId, "after");
    const r = (u: TestUser, path: string) => c.get(`${V3}/rooms/${enc(roomId)}${path}`, { token: u.accessToken });
    for (const path of ["/state", `/state/m.room.member/${enc(bob.userId)}`, "/members", "/messages?dir=b"]) {
      expectError(await r(bob, path), 403, "M_FORBIDDEN");
      expect((await r(carol, path)).status, path).toBe(200);
    }
    // Unless the history is world readable.
    await setState(c, alice, roomId, "m.room.history_visibility", "", { history_visibility: "world_readable" });
    expect((await r(bob, "/state")).status).toBe(200);
  });

  it("a user cannot kick someone with higher or equal power", async () => {
    const alice = await user();
    const bob = await user();
    const carol = await user();
    const roomId = await roomWith(c, alice, [bob, carol], { room_version: "11", power_level_content_override: { users: { [bob.userId]: 50, [carol.userId]: 50 } } });
    expectError(await post(bob, `/rooms/${enc(roomId)}/kick`, { user_id: carol.userId }), 403, "M_FORBIDDEN");
    expectError(await post(bob, `/rooms/${enc(roomId)}/kick`, { user_id: alice.userId }), 403, "M_FORBIDDEN");
  });

  it("bans, keeps the banned user out, unbans", async () => {
    const alice = await user();
    const bob = await user();
    const carol = await user();
    const roomId = await roomWith(c, alice, [bob, carol]);
    expectError(await post(bob, `/rooms/${enc(roomId)}/ban`, { user_id: carol.userId }), 403, "M_FORBIDDEN");
    const res = await post(alice, `/rooms/${enc(roomId)}/ban`, { user_id: carol.userId, reason: "abuse" });
    expect(res.status, res.text).toBe(200);
    expect(await getState(c, alice, roomId, "m.room.member", carol.userId)).toMatchObject({ membership: "ban", reason: "abuse" });
    expectError(await post(carol, `/rooms/${enc(roomId)}/join`), 403, "M_FORBIDDEN");
    expectError(await post(carol, `/rooms/${enc(roomId)}/leave`), 403, "M_FORBIDDEN");
    expectError(await post(bob, `/rooms/${enc(roomId)}/unban`, { user_id: carol.userId }), 403, "M_FORBIDDEN");
    const unban = await post(alice, `/rooms/${enc(roomId)}/unban`, { user_id: carol.userId });
    expect(unban.status, unban.text).toBe(200);
    expect(await membershipOf(alice, roomId, carol.userId)).toBe("leave");
    await joinRoom(c, carol, roomId);
  });

  it("bans a user who never joined", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await createRoom(c, alice, { preset: "public_chat" });
    expect((await post(alice, `/rooms/${enc(roomId)}/ban`, { user_id: bob.userId })).status).toBe(200);
    expectError(await post(bob, `/join/${enc(roomId)}`), 403, "M_FORBIDDEN");
  });

  it("400 for a missing user_id", async () => {
    const alice = await user();
    const roomId = await createRoom(c, alice);
    for (const action of ["kick", "ban", "unban"]) expectError(await post(alice, `/rooms/${enc(roomId)}/${action}`, {}), 400, "M_BAD_JSON");
  });
});

describe("knock", () => {
  for (const version of ["7", "10", "12"]) {
    it(`knocks on a knock room in v${version}, then is invited and joins`, async () => {
      const alice = await user();
      const bob = await user();
      const roomId = await createRoom(c, alice, { room_version: version, name: "Knock knock", initial_state: [{ type: "m.room.join_rules", content: { join_rule: "knock" } }] });
      expectError(await post(bob, `/rooms/${enc(roomId)}/join`), 403, "M_FORBIDDEN");
      const before = await sync(c, alice);
      const res = await post(bob, `/knock/${enc(roomId)}`, { reason: "let me in" });
      expect(res.status, res.text).toBe(200);
      expect(res.body).toEqual({ room_id: roomId });
      expect(await getState(c, alice, roomId, "m.room.member", bob.userId)).toMatchObject({ membership: "knock", reason: "let me in" });
      // The knocker sees the room under rooms.knock with stripped state.
      const s = await sync(c, bob);
      const knock = s.rooms.knock[roomId];
      expect(knock).toBeDefined();
      expect(knock!.knock_state.events.find((e) => e.type === "m.room.name")!.content).toEqual({ name: "Knock knock" });
      expect(knock!.knock_state.events.find((e) => e.type === "m.room.member" && e.state_key === bob.userId)!.content.membership).toBe("knock");
      // The room's members see the knock.
      const seen = await syncUntil(c, alice, before.next_batch, (r) => (r.rooms.join[roomId]?.timeline.events ?? []).some((e) => e.type === "m.room.member" && e.state_key === bob.userId));
      expect(seen.rooms.join[roomId]!.timeline.events.find((e) => e.state_key === bob.userId)!.content.membership).toBe("knock");
      await inviteUser(c, alice, roomId, bob.userId);
      await joinRoom(c, bob, roomId);
      expect(await membershipOf(alice, roomId, bob.userId)).toBe("join");
    });
  }

  it("knocks by alias", async () => {
    const alice = await user();
    const bob = await user();
    const local = `knock_${Date.now().toString(36)}`;
    const roomId = await createRoom(c, alice, { room_alias_name: local, initial_state: [{ type: "m.room.join_rules", content: { join_rule: "knock" } }] });
    const res = await post(bob, `/knock/${enc(`#${local}:test.local`)}`);
    expect(res.status, res.text).toBe(200);
    expect(res.body.room_id).toBe(roomId);
  });

  it("a knock can be withdrawn by leaving and refused by a kick", async () => {
    const alice = await user();
    const bob = await user();
    const carol = await user();
    const roomId = await createRoom(c, alice, { initial_state: [{ type: "m.room.join_rules", content: { join_rule: "knock" } }] });
    await post(bob, `/knock/${enc(roomId)}`);
    await leaveRoom(c, bob, roomId);
    expect(await membershipOf(alice, roomId, bob.userId)).toBe("leave");
    await post(carol, `/knock/${enc(roomId)}`);
    expect((await post(alice, `/rooms/${enc(roomId)}/kick`, { user_id: carol.userId })).status).toBe(200);
    expect(await membershipOf(alice, roomId, carol.userId)).toBe("leave");
  });

  it("refuses knocking in room versions before 7, on rooms that do not allow it, and when joined", async () => {
    const alice = await user();
    const bob = await user();
    const v6 = await createRoom(c, alice, { room_version: "6", initial_state: [{ type: "m.room.join_rules", content: { join_rule: "knock" } }] });
    expectError(await post(bob, `/knock/${enc(v6)}`), 403, "M_FORBIDDEN");
    const inviteOnly = await createRoom(c, alice, { preset: "private_chat" });
    expectError(await post(bob, `/knock/${enc(inviteOnly)}`), 403, "M_FORBIDDEN");
    const pub = await roomWith(c, alice, [bob]);
    expectError(await post(bob, `/knock/${enc(pub)}`), 403, "M_FORBIDDEN");
    expectError(await post(bob, `/knock/${enc("#no_such_alias_x:test.local")}`), 404, "M_NOT_FOUND");
  });
});

describe("restricted joins", () => {
  for (const version of ["8", "10", "12"]) {
    it(`v${version}: members of an allowed room may join; others get 403`, async () => {
      const alice = await user();
      const bob = await user();
      const carol = await user();
      const space = await roomWith(c, alice, [bob], { room_version: version });
      const roomId = await createRoom(c, alice, {
        room_version: version,
        initial_state: [{ type: "m.room.join_rules", content: { join_rule: "restricted", allow: [{ type: "m.room_membership", room_id: space }] } }],
      });
      expectError(await post(carol, `/rooms/${enc(roomId)}/join`), 403, "M_FORBIDDEN");
      const res = await post(bob, `/rooms/${enc(roomId)}/join`);
      expect(res.status, res.text).toBe(200);
      const member = await getState(c, alice, roomId, "m.room.member", bob.userId);
      expect(member.membership).toBe("join");
      expect(member.join_authorised_via_users_server).toBe(alice.userId);
      // An invite still lets anyone in.
      await inviteUser(c, alice, roomId, carol.userId);
      await joinRoom(c, carol, roomId);
      expect((await getState(c, alice, roomId, "m.room.member", carol.userId)).join_authorised_via_users_server).toBeUndefined();
    });
  }

  it("v10: knock_restricted allows both joining via the allowed room and knocking", async () => {
    const alice = await user();
    const bob = await user();
    const carol = await user();
    const space = await roomWith(c, alice, [bob], { room_version: "10" });
    const roomId = await createRoom(c, alice, {
      room_version: "10",
      initial_state: [{ type: "m.room.join_rules", content: { join_rule: "knock_restricted", allow: [{ type: "m.room_membership", room_id: space }] } }],
    });
    await joinRoom(c, bob, roomId);
    expectError(await post(carol, `/rooms/${enc(roomId)}/join`), 403, "M_FORBIDDEN");
    expect((await post(carol, `/knock/${enc(roomId)}`)).status).toBe(200);
  });
});

describe("joined_rooms", () => {
  it("lists exactly the rooms the user is joined to", async () => {
    const alice = await user();
    const bob = await user();
    const empty = await c.get(`${V3}/joined_rooms`, { token: bob.accessToken });
    expect(empty.status).toBe(200);
    expect(empty.body).toEqual({ joined_rooms: [] });
    const a = await roomWith(c, alice, [bob]);
    const b = await roomWith(c, alice, [bob]);
    const invitedOnly = await createRoom(c, alice, { invite: [bob.userId] });
    const left = await roomWith(c, alice, [bob]);
    await leaveRoom(c, bob, left);
    const res = await c.get(`${V3}/joined_rooms`, { token: bob.accessToken });
    expect((res.body.joined_rooms as string[]).sort()).toEqual([a, b].sort());
    expect(res.body.joined_rooms).not.toContain(invitedOnly);
  });
});

describe("profile propagation", () => {
  it("a new displayname or avatar becomes a member event in every joined room", async () => {
    const alice = await user();
    const bob = await user();
    const a = await roomWith(c, alice, [bob]);
    const b = await roomWith(c, alice, [bob]);
    const left = await roomWith(c, alice, [bob]);
    await leaveRoom(c, bob, left);
    const before = await sync(c, alice);
    const res = await c.put(`${V3}/profile/${enc(bob.userId)}/displayname`, { displayname: "Robert" }, { token: bob.accessToken });
    expect(res.status, res.text).toBe(200);
    await c.put(`${V3}/profile/${enc(bob.userId)}/avatar_url`, { avatar_url: "mxc://test.local/robert" }, { token: bob.accessToken });
    for (const roomId of [a, b]) {
      expect(await getState(c, alice, roomId, "m.room.member", bob.userId)).toMatchObject({ membership: "join", displayname: "Robert", avatar_url: "mxc://test.local/robert" });
    }
    expect((await getState(c, alice, left, "m.room.member", bob.userId)).membership).toBe("leave");
    const seen = await syncUntil(c, alice, before.next_batch, (s) =>
      [a, b].every((r) => (s.rooms.join[r]?.timeline.events ?? []).some((e) => e.state_key === bob.userId && e.content.displayname === "Robert")),
    );
    const ev = seen.rooms.join[a]!.timeline.events.find((e) => e.state_key === bob.userId && e.content.displayname === "Robert")!;
    expect(ev.unsigned!.prev_content).toMatchObject({ membership: "join" });
  });
});

describe("membership in /sync and state", () => {
  it("membership changes show as state events with prev_content", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await roomWith(c, alice, [bob]);
    await setState(c, bob, roomId, "m.room.member", bob.userId, { membership: "join", displayname: "New name" });
    const res = await c.get(`${V3}/rooms/${enc(roomId)}/state/m.room.member/${enc(bob.userId)}?format=event`, { token: alice.accessToken });
    expect(res.status, res.text).toBe(200);
    const ev = res.body as unknown as ClientEvent;
    expect(ev.content.displayname).toBe("New name");
    expect(ev.unsigned!.prev_content).toMatchObject({ membership: "join" });
  });
});
