// Two Myelin servers on loopback: a user of hs2 joins a room on hs1 (by alias and by id), and messages flow both
// ways to /sync on both sides, in several room versions.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { signNewEvent } from "../../src/core/events/signing.js";
import type { JsonObject } from "../../src/core/json/types.js";
import { getRoomVersion } from "../../src/core/rooms/versions.js";
import { FederationError } from "../../src/federation/errors.js";
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
let txn = 0;

beforeAll(async () => {
  ({ hs1, hs2, c1, c2 } = await startServerPair());
  alice = await registerUser(c1, "alice");
  bob = await registerUser(c2, "bob");
});
afterAll(async () => {
  await hs1?.close();
  await hs2?.close();
});

/** Polls /sync until `pred` finds what it wants in the room's timeline (deadline 10 s). */
async function waitForTimeline(c: Client, u: TestUser, roomId: string, pred: (e: { type: string; content: Record<string, unknown>; sender: string }) => boolean): Promise<void> {
  const deadline = Date.now() + 10_000;
  let since: string | undefined;
  while (Date.now() < deadline) {
    const r = await c.get(`/_matrix/client/v3/sync?timeout=2000${since ? `&since=${enc(since)}` : ""}`, { token: u.accessToken });
    expect(r.status, r.text).toBe(200);
    since = r.body.next_batch as string;
    const room = (r.body.rooms as { join: Record<string, { timeline: { events: { type: string; content: Record<string, unknown>; sender: string }[] } }> }).join[roomId];
    if (room?.timeline.events.some(pred)) return;
  }
  throw new Error("timed out waiting for the event in /sync");
}

async function send(c: Client, u: TestUser, roomId: string, body: string): Promise<string> {
  const r = await c.put(`/_matrix/client/v3/rooms/${enc(roomId)}/send/m.room.message/f${txn++}`, { msgtype: "m.text", body }, { token: u.accessToken });
  expect(r.status, r.text).toBe(200);
  return r.body.event_id as string;
}

describe("joining a room on another server", () => {
  for (const version of ["12", "10", "1"]) {
    it(`joins and chats both ways (room version ${version})`, async () => {
      const created = await c1.post("/_matrix/client/v3/createRoom", { preset: "public_chat", room_version: version }, { token: alice.accessToken });
      expect(created.status, created.text).toBe(200);
      const roomId = created.body.room_id as string;
      await send(c1, alice, roomId, "before bob");

      const join = await c2.post(`/_matrix/client/v3/join/${enc(roomId)}?via=hs1.test`, {}, { token: bob.accessToken });
      expect(join.status, join.text).toBe(200);
      expect(join.body.room_id).toBe(roomId);

      // hs2 now holds the room's state.
      const members = await c2.get(`/_matrix/client/v3/rooms/${enc(roomId)}/joined_members`, { token: bob.accessToken });
      expect(members.status, members.text).toBe(200);
      expect(Object.keys(members.body.joined as object).sort()).toEqual([alice.userId, bob.userId].sort());

      // hs1 learns of bob's join; messages flow both ways.
      await waitForTimeline(c1, alice, roomId, (e) => e.type === "m.room.member" && e.sender === bob.userId);
      await send(c1, alice, roomId, "hello bob");
      await waitForTimeline(c2, bob, roomId, (e) => e.content.body === "hello bob");
      await send(c2, bob, roomId, "hello alice");
      await waitForTimeline(c1, alice, roomId, (e) => e.content.body === "hello alice");
    });
  }

  it("joins by room id through server_name", async () => {
    const created = await c1.post("/_matrix/client/v3/createRoom", { preset: "public_chat" }, { token: alice.accessToken });
    const roomId = created.body.room_id as string;
    const join = await c2.post(`/_matrix/client/v3/join/${enc(roomId)}?server_name=hs1.test`, {}, { token: bob.accessToken });
    expect(join.status, join.text).toBe(200);
  });

  it("joins by a room alias of the other server", async () => {
    const alias = `alias_${Date.now().toString(36)}`;
    const created = await c1.post("/_matrix/client/v3/createRoom", { preset: "public_chat", room_alias_name: alias }, { token: alice.accessToken });
    const join = await c2.post(`/_matrix/client/v3/join/${enc(`#${alias}:hs1.test`)}`, {}, { token: bob.accessToken });
    expect(join.status, join.text).toBe(200);
    expect(join.body.room_id).toBe(created.body.room_id);
  });

  it("a private room refuses the join with 403", async () => {
    const created = await c1.post("/_matrix/client/v3/createRoom", { preset: "private_chat" }, { token: alice.accessToken });
    const roomId = created.body.room_id as string;
    const join = await c2.post(`/_matrix/client/v3/join/${enc(roomId)}?server_name=hs1.test`, {}, { token: bob.accessToken });
    expect(join.status, join.text).toBe(403);
    expect(join.body.errcode).toBe("M_FORBIDDEN");
  });
});

describe("restricted rooms (server-server \"Restricted rooms\")", () => {
  async function restrictedRoom(version: string, allowRoom: string, extra: Record<string, unknown> = {}): Promise<string> {
    const created = await c1.post(
      "/_matrix/client/v3/createRoom",
      {
        preset: "private_chat",
        room_version: version,
        initial_state: [{ type: "m.room.join_rules", state_key: "", content: { join_rule: "restricted", allow: [{ type: "m.room_membership", room_id: allowRoom }] } }],
        ...extra,
      },
      { token: alice.accessToken },
    );
    expect(created.status, created.text).toBe(200);
    return created.body.room_id as string;
  }

  for (const version of ["12", "10"]) {
    it(`a member of the allowed room joins through the resident server, which vouches for it (room version ${version})`, async () => {
      const space = (await c1.post("/_matrix/client/v3/createRoom", { preset: "public_chat", room_version: version }, { token: alice.accessToken })).body.room_id as string;
      const roomId = await restrictedRoom(version, space);
      const carol = await registerUser(c2);
      // Not in the space: refused, by make_join already.
      const refused = await c2.post(`/_matrix/client/v3/join/${enc(roomId)}?via=hs1.test`, {}, { token: carol.accessToken });
      expect(refused.status, refused.text).toBe(403);
      expect(refused.body.errcode).toBe("M_FORBIDDEN");

      expect((await c2.post(`/_matrix/client/v3/join/${enc(space)}?via=hs1.test`, {}, { token: bob.accessToken })).status).toBe(200);
      const join = await c2.post(`/_matrix/client/v3/join/${enc(roomId)}?via=hs1.test`, {}, { token: bob.accessToken });
      expect(join.status, join.text).toBe(200);
      const member = await c1.get(`/_matrix/client/v3/rooms/${enc(roomId)}/state/m.room.member/${enc(bob.userId)}`, { token: alice.accessToken });
      expect(member.status, member.text).toBe(200);
      expect(member.body).toMatchObject({ membership: "join", join_authorised_via_users_server: alice.userId });
      await send(c2, bob, roomId, "in the restricted room");
      await waitForTimeline(c1, alice, roomId, (e) => e.content.body === "in the restricted room");
    });
  }

  it("400 M_UNABLE_TO_AUTHORISE_JOIN when the resident server knows none of the allowed rooms", async () => {
    const roomId = await restrictedRoom("10", "!elsewhere:hs3.test");
    const join = await c2.post(`/_matrix/client/v3/join/${enc(roomId)}?via=hs1.test`, {}, { token: bob.accessToken });
    expect(join.status, join.text).toBe(400);
    expect(join.body.errcode).toBe("M_UNABLE_TO_AUTHORISE_JOIN");
  });

  it("400 M_UNABLE_TO_GRANT_JOIN when no resident user may invite", async () => {
    const space = (await c1.post("/_matrix/client/v3/createRoom", { preset: "public_chat", room_version: "10" }, { token: alice.accessToken })).body.room_id as string;
    const roomId = await restrictedRoom("10", space, { power_level_content_override: { invite: 101 } });
    const dave = await registerUser(c2);
    expect((await c2.post(`/_matrix/client/v3/join/${enc(space)}?via=hs1.test`, {}, { token: dave.accessToken })).status).toBe(200);
    const join = await c2.post(`/_matrix/client/v3/join/${enc(roomId)}?via=hs1.test`, {}, { token: dave.accessToken });
    expect(join.status, join.text).toBe(400);
    expect(join.body.errcode).toBe("M_UNABLE_TO_GRANT_JOIN");
  });

  it("send_join does not vouch for a user who meets no condition, whatever the event claims", async () => {
    const space = (await c1.post("/_matrix/client/v3/createRoom", { preset: "public_chat", room_version: "10" }, { token: alice.accessToken })).body.room_id as string;
    const roomId = await restrictedRoom("10", space);
    const frank = await registerUser(c2);
    const eve = await registerUser(c2);
    expect((await c2.post(`/_matrix/client/v3/join/${enc(space)}?via=hs1.test`, {}, { token: frank.accessToken })).status).toBe(200);
    // hs2 takes the template made for frank (who qualifies) and turns it into a join for eve (who does not).
    const client = hs2.server.services.federationClient;
    const made = await client.get("hs1.test", `/_matrix/federation/v1/make_join/${enc(roomId)}/${enc(frank.userId)}`, { ver: ["10"] });
    const template = made.event as JsonObject;
    expect((template.content as JsonObject).join_authorised_via_users_server).toBe(alice.userId);
    const pdu: JsonObject = { ...template, sender: eve.userId, state_key: eve.userId, hashes: {} };
    const signed = signNewEvent(getRoomVersion("10")!, pdu, "hs2.test", hs2.signingKey);
    const err = await client.put("hs1.test", `/_matrix/federation/v2/send_join/${enc(roomId)}/${enc(signed.eventId)}`, signed.pdu).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(FederationError);
    expect((err as FederationError).status).toBe(403);
    const member = await c1.get(`/_matrix/client/v3/rooms/${enc(roomId)}/state/m.room.member/${enc(eve.userId)}`, { token: alice.accessToken });
    expect(member.status).toBe(404);
  });
});

describe("knocking on a room of another server", () => {
  async function membershipOn(c: Client, u: TestUser, roomId: string, userId: string): Promise<string | undefined> {
    const r = await c.get(`/_matrix/client/v3/rooms/${enc(roomId)}/state/m.room.member/${enc(userId)}`, { token: u.accessToken });
    return r.status === 200 ? (r.body.membership as string) : undefined;
  }
  async function until(pred: () => Promise<boolean>): Promise<void> {
    const deadline = Date.now() + 10_000;
    while (!(await pred())) {
      if (Date.now() > deadline) throw new Error("timed out");
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  for (const version of ["12", "10"]) {
    it(`knocks, shows knock_state, withdraws, knocks again and is let in (room version ${version})`, async () => {
      const created = await c1.post(
        "/_matrix/client/v3/createRoom",
        { preset: "private_chat", room_version: version, name: "Knock here", initial_state: [{ type: "m.room.join_rules", state_key: "", content: { join_rule: "knock" } }] },
        { token: alice.accessToken },
      );
      const roomId = created.body.room_id as string;
      const knocker = await registerUser(c2);
      const knock = await c2.post(`/_matrix/client/v3/knock/${enc(roomId)}?via=hs1.test`, { reason: "let me in" }, { token: knocker.accessToken });
      expect(knock.status, knock.text).toBe(200);
      expect(knock.body).toEqual({ room_id: roomId });

      const sync = await c2.get("/_matrix/client/v3/sync", { token: knocker.accessToken });
      const knockState = (sync.body.rooms as { knock: Record<string, { knock_state: { events: { type: string; content: Record<string, unknown> }[] } }> }).knock[roomId];
      expect(knockState, sync.text).toBeDefined();
      const types = knockState!.knock_state.events.map((e) => e.type);
      expect(types).toContain("m.room.join_rules");
      expect(knockState!.knock_state.events.find((e) => e.type === "m.room.name")?.content.name).toBe("Knock here");
      await until(async () => (await membershipOn(c1, alice, roomId, knocker.userId)) === "knock");

      // Withdrawing the knock goes through a resident server too.
      const leave = await c2.post(`/_matrix/client/v3/rooms/${enc(roomId)}/leave`, {}, { token: knocker.accessToken });
      expect(leave.status, leave.text).toBe(200);
      await until(async () => (await membershipOn(c1, alice, roomId, knocker.userId)) === "leave");

      expect((await c2.post(`/_matrix/client/v3/knock/${enc(roomId)}?via=hs1.test`, {}, { token: knocker.accessToken })).status).toBe(200);
      await until(async () => (await membershipOn(c1, alice, roomId, knocker.userId)) === "knock");
      expect((await c1.post(`/_matrix/client/v3/rooms/${enc(roomId)}/invite`, { user_id: knocker.userId }, { token: alice.accessToken })).status).toBe(200);
      await until(async () => {
        const r = await c2.get("/_matrix/client/v3/sync", { token: knocker.accessToken });
        return Boolean((r.body.rooms as { invite: Record<string, unknown> }).invite[roomId]);
      });
      const join = await c2.post(`/_matrix/client/v3/join/${enc(roomId)}`, {}, { token: knocker.accessToken });
      expect(join.status, join.text).toBe(200);
      await until(async () => (await membershipOn(c1, alice, roomId, knocker.userId)) === "join");
    });
  }

  it("a room that does not allow knocking refuses with 403", async () => {
    const created = await c1.post("/_matrix/client/v3/createRoom", { preset: "private_chat" }, { token: alice.accessToken });
    const roomId = created.body.room_id as string;
    const knocker = await registerUser(c2);
    const knock = await c2.post(`/_matrix/client/v3/knock/${enc(roomId)}?via=hs1.test`, {}, { token: knocker.accessToken });
    expect(knock.status, knock.text).toBe(403);
    expect(knock.body.errcode).toBe("M_FORBIDDEN");
  });
});

describe("inviting a user of another server", () => {
  it("the invite reaches the invitee's /sync with stripped state; accepting it joins through the inviter's server", async () => {
    const created = await c1.post("/_matrix/client/v3/createRoom", { preset: "private_chat", name: "Secret club" }, { token: alice.accessToken });
    const roomId = created.body.room_id as string;
    const inv = await c1.post(`/_matrix/client/v3/rooms/${enc(roomId)}/invite`, { user_id: bob.userId }, { token: alice.accessToken });
    expect(inv.status, inv.text).toBe(200);

    const deadline = Date.now() + 10_000;
    let invite: { invite_state: { events: { type: string; content: Record<string, unknown> }[] } } | undefined;
    while (!invite && Date.now() < deadline) {
      const s = await c2.get("/_matrix/client/v3/sync", { token: bob.accessToken });
      invite = (s.body.rooms as { invite: Record<string, typeof invite> }).invite[roomId];
    }
    expect(invite).toBeDefined();
    expect(invite!.invite_state.events.find((e) => e.type === "m.room.name")?.content.name).toBe("Secret club");
    expect(invite!.invite_state.events.some((e) => e.type === "m.room.member" && e.content.membership === "invite")).toBe(true);

    const join = await c2.post(`/_matrix/client/v3/rooms/${enc(roomId)}/join`, {}, { token: bob.accessToken });
    expect(join.status, join.text).toBe(200);
    await waitForTimeline(c1, alice, roomId, (e) => e.type === "m.room.member" && e.sender === bob.userId && e.content.membership === "join");
  });

  it("rejecting a remote invite sends the leave through the inviter's server", async () => {
    const created = await c1.post("/_matrix/client/v3/createRoom", { preset: "private_chat" }, { token: alice.accessToken });
    const roomId = created.body.room_id as string;
    expect((await c1.post(`/_matrix/client/v3/rooms/${enc(roomId)}/invite`, { user_id: bob.userId }, { token: alice.accessToken })).status).toBe(200);
    const leave = await c2.post(`/_matrix/client/v3/rooms/${enc(roomId)}/leave`, {}, { token: bob.accessToken });
    expect(leave.status, leave.text).toBe(200);
    await waitForTimeline(c1, alice, roomId, (e) => e.type === "m.room.member" && e.sender === bob.userId && e.content.membership === "leave");
  });

  it("inviting a user of another server who does not exist succeeds: that server countersigns it, as Synapse does", async () => {
    const created = await c1.post("/_matrix/client/v3/createRoom", {}, { token: alice.accessToken });
    const r = await c1.post(`/_matrix/client/v3/rooms/${enc(created.body.room_id as string)}/invite`, { user_id: "@nobody:hs2.test" }, { token: alice.accessToken });
    expect(r.status, r.text).toBe(200);
  });
});

describe("history from before the join", () => {
  it("/messages backfills from the other server", async () => {
    const created = await c1.post("/_matrix/client/v3/createRoom", { preset: "public_chat", initial_state: [{ type: "m.room.history_visibility", content: { history_visibility: "world_readable" } }] }, { token: alice.accessToken });
    const roomId = created.body.room_id as string;
    for (let i = 0; i < 15; i++) await send(c1, alice, roomId, `old ${i}`);
    const join = await c2.post(`/_matrix/client/v3/join/${enc(roomId)}?via=hs1.test`, {}, { token: bob.accessToken });
    expect(join.status, join.text).toBe(200);
    const bodies: string[] = [];
    let from: string | undefined;
    for (let page = 0; page < 10; page++) {
      const r = await c2.get(`/_matrix/client/v3/rooms/${enc(roomId)}/messages?dir=b&limit=10${from ? `&from=${enc(from)}` : ""}`, { token: bob.accessToken });
      expect(r.status, r.text).toBe(200);
      for (const e of r.body.chunk as { type: string; content: { body?: string } }[]) if (e.type === "m.room.message") bodies.push(e.content.body!);
      if (!r.body.end) break;
      from = r.body.end as string;
    }
    expect(bodies).toEqual(Array.from({ length: 15 }, (_, i) => `old ${14 - i}`));
  });
});
