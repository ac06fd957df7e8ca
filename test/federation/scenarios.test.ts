/**
 * Two Myelin servers sharing rooms, beyond joining and chatting (join.test.ts): leaves, kicks and bans across
 * servers in both directions, and the ephemeral traffic between them (typing, read receipts, presence).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startServerPair } from "../helpers/federation.js";
import { closeFederatedServers } from "../helpers/federation_close.js";
import { Client, registerUser, type TestUser } from "../helpers/http.js";
import { createRoom, enc, getState, poll, send, setState, sync, syncUntil, V3, type ClientEvent, type SyncResponse } from "../helpers/rooms.js";
import type { TestServer } from "../helpers/server.js";

let hs1: TestServer;
let hs2: TestServer;
let c1: Client;
let c2: Client;
/** alice and carol live on hs1, bob and dave on hs2. */
let alice: TestUser;
let carol: TestUser;
let bob: TestUser;
let dave: TestUser;

beforeAll(async () => {
  ({ hs1, hs2, c1, c2 } = await startServerPair());
  [alice, carol] = await Promise.all([registerUser(c1), registerUser(c1)]);
  [bob, dave] = await Promise.all([registerUser(c2), registerUser(c2)]);
});
afterAll(async () => {
  await closeFederatedServers([hs1, hs2]);
});

function serverOf(c: Client): TestServer {
  return c === c1 ? hs1 : hs2;
}

/** A user of `c`'s server joins a room on the other server (over federation) or on its own. */
async function join(c: Client, u: TestUser, roomId: string, via = "hs1.test"): Promise<void> {
  const r = await c.post(`${V3}/join/${enc(roomId)}?server_name=${via}`, {}, { token: u.accessToken });
  expect(r.status, r.text).toBe(200);
}

/** The user's membership as the server of `c` sees it in the room's current state. */
function membershipOn(c: Client, roomId: string, userId: string): Promise<string | undefined> {
  return serverOf(c).server.services.membership.currentMembership(roomId, userId);
}

/** Waits until the server of `c` has `userId` at `membership` in the room's current state. */
async function waitMembership(c: Client, roomId: string, userId: string, membership: string): Promise<void> {
  await poll(async () => ((await membershipOn(c, roomId, userId)) === membership ? true : undefined), 10_000);
}

function isMember(e: ClientEvent, target: string, membership: string, sender?: string): boolean {
  return e.type === "m.room.member" && e.state_key === target && e.content.membership === membership && (sender === undefined || e.sender === sender);
}

/** A fresh public room of alice's on hs1 with bob (hs2) joined, seen as joined on both sides. */
async function sharedRoom(extra: TestUser[] = []): Promise<string> {
  const roomId = await createRoom(c1, alice, { preset: "public_chat" });
  await join(c2, bob, roomId);
  for (const u of extra) await join(u === carol ? c1 : c2, u, roomId);
  await waitMembership(c1, roomId, bob.userId, "join");
  return roomId;
}

describe("leave, kick and ban across servers", () => {
  it("a kick by alice reaches bob's /sync on hs2 under rooms.leave; bob can rejoin", async () => {
    const roomId = await sharedRoom();
    const since = (await sync(c2, bob)).next_batch;
    const kick = await c1.post(`${V3}/rooms/${enc(roomId)}/kick`, { user_id: bob.userId, reason: "out you go" }, { token: alice.accessToken });
    expect(kick.status, kick.text).toBe(200);

    const s = await syncUntil(c2, bob, since, (r) => r.rooms.leave[roomId] !== undefined);
    const left = s.rooms.leave[roomId]!;
    const kickEvent = left.timeline.events.find((e) => isMember(e, bob.userId, "leave", alice.userId));
    expect(kickEvent, JSON.stringify(left)).toBeDefined();
    expect(kickEvent!.content.reason).toBe("out you go");
    expect(await membershipOn(c2, roomId, bob.userId)).toBe("leave");

    // Rejoining goes through hs1 again (hs2 no longer has a user in the room).
    await join(c2, bob, roomId);
    await waitMembership(c1, roomId, bob.userId, "join");
    await send(c1, alice, roomId, "welcome back");
    await syncUntil(c2, bob, s.next_batch, (r) => r.rooms.join[roomId]?.timeline.events.some((e) => e.content.body === "welcome back") ?? false);
  });

  it("a ban by alice reaches hs2; bob's join is then refused with 403 until he is unbanned", async () => {
    const roomId = await sharedRoom();
    const since = (await sync(c2, bob)).next_batch;
    const ban = await c1.post(`${V3}/rooms/${enc(roomId)}/ban`, { user_id: bob.userId, reason: "spam" }, { token: alice.accessToken });
    expect(ban.status, ban.text).toBe(200);

    const s = await syncUntil(c2, bob, since, (r) => r.rooms.leave[roomId]?.timeline.events.some((e) => isMember(e, bob.userId, "ban", alice.userId)) ?? false);
    expect(s.rooms.join[roomId]).toBeUndefined();
    // hs2 knows he is banned.
    expect(await membershipOn(c2, roomId, bob.userId)).toBe("ban");

    const refused = await c2.post(`${V3}/join/${enc(roomId)}?server_name=hs1.test`, {}, { token: bob.accessToken });
    expect(refused.status, refused.text).toBe(403);
    expect(refused.body.errcode).toBe("M_FORBIDDEN");
    expect(await membershipOn(c1, roomId, bob.userId)).toBe("ban");

    const unban = await c1.post(`${V3}/rooms/${enc(roomId)}/unban`, { user_id: bob.userId }, { token: alice.accessToken });
    expect(unban.status, unban.text).toBe(200);
    await join(c2, bob, roomId);
    await waitMembership(c1, roomId, bob.userId, "join");
  });

  it("bob leaving on his own is seen by hs1", async () => {
    const roomId = await sharedRoom();
    const since = (await sync(c1, alice)).next_batch;
    const leave = await c2.post(`${V3}/rooms/${enc(roomId)}/leave`, {}, { token: bob.accessToken });
    expect(leave.status, leave.text).toBe(200);
    await syncUntil(c1, alice, since, (r) => r.rooms.join[roomId]?.timeline.events.some((e) => isMember(e, bob.userId, "leave", bob.userId)) ?? false);
    expect(await membershipOn(c1, roomId, bob.userId)).toBe("leave");
    // bob sees the room as left on hs2 too.
    const s = await sync(c2, bob);
    expect(s.rooms.join[roomId]).toBeUndefined();
  });

  it("an hs2 user with power kicks and bans hs1 users", async () => {
    const roomId = await sharedRoom([carol]);
    // dave (hs2) joins too, so hs2 stays in the room whatever happens to hs1's users.
    await join(c2, dave, roomId);
    await waitMembership(c1, roomId, dave.userId, "join");
    const pl = await getState(c1, alice, roomId, "m.room.power_levels");
    await setState(c1, alice, roomId, "m.room.power_levels", "", { ...pl, users: { ...(pl.users as object), [bob.userId]: 100 } });
    await poll(async () => {
      const seen = await getState(c2, bob, roomId, "m.room.power_levels");
      return (seen.users as Record<string, number>)[bob.userId] === 100 ? true : undefined;
    });
    await waitMembership(c2, roomId, carol.userId, "join");

    const since = (await sync(c1, carol)).next_batch;
    const kick = await c2.post(`${V3}/rooms/${enc(roomId)}/kick`, { user_id: carol.userId, reason: "bye" }, { token: bob.accessToken });
    expect(kick.status, kick.text).toBe(200);
    const s = await syncUntil(c1, carol, since, (r) => r.rooms.leave[roomId]?.timeline.events.some((e) => isMember(e, carol.userId, "leave", bob.userId)) ?? false);
    expect(await membershipOn(c1, roomId, carol.userId)).toBe("leave");

    // And a ban of an hs1 user, who then cannot join on hs1 itself.
    const ban = await c2.post(`${V3}/rooms/${enc(roomId)}/ban`, { user_id: carol.userId }, { token: bob.accessToken });
    expect(ban.status, ban.text).toBe(200);
    await waitMembership(c1, roomId, carol.userId, "ban");
    const refused = await c1.post(`${V3}/rooms/${enc(roomId)}/join`, {}, { token: carol.accessToken });
    expect(refused.status, refused.text).toBe(403);
    expect(s.rooms.join[roomId]).toBeUndefined();
  });

  it("the creator who left, leaving no local member, is invited back by a remote admin and rejoins through them", async () => {
    const roomId = await createRoom(c1, alice, { preset: "private_chat" });
    const invite = await c1.post(`${V3}/rooms/${enc(roomId)}/invite`, { user_id: bob.userId }, { token: alice.accessToken });
    expect(invite.status, invite.text).toBe(200);
    await poll(async () => ((await sync(c2, bob)).rooms.invite?.[roomId] ? true : undefined));
    await join(c2, bob, roomId);
    await waitMembership(c1, roomId, bob.userId, "join");
    const pl = await getState(c1, alice, roomId, "m.room.power_levels");
    await setState(c1, alice, roomId, "m.room.power_levels", "", { ...pl, users: { ...(pl.users as object), [bob.userId]: 100 } });
    await poll(async () => ((await getState(c2, bob, roomId, "m.room.power_levels")).users as Record<string, number>)[bob.userId] === 100 ? true : undefined);
    const leave = await c1.post(`${V3}/rooms/${enc(roomId)}/leave`, {}, { token: alice.accessToken });
    expect(leave.status, leave.text).toBe(200);
    await waitMembership(c2, roomId, alice.userId, "leave");

    const since = (await sync(c1, alice)).next_batch;
    const reinvite = await c2.post(`${V3}/rooms/${enc(roomId)}/invite`, { user_id: alice.userId }, { token: bob.accessToken });
    expect(reinvite.status, reinvite.text).toBe(200);
    await syncUntil(c1, alice, since, (r) => r.rooms.invite?.[roomId] !== undefined);
    const rejoin = await c1.post(`${V3}/join/${enc(roomId)}`, {}, { token: alice.accessToken });
    expect(rejoin.status, rejoin.text).toBe(200);
    await syncUntil(c1, alice, since, (r) => r.rooms.join[roomId] !== undefined);
    expect(await membershipOn(c1, roomId, alice.userId)).toBe("join");
    await send(c2, bob, roomId, "welcome back");
    await syncUntil(c1, alice, since, (r) => r.rooms.join[roomId]?.timeline.events.some((e) => e.content.body === "welcome back") ?? false);
  });

  it("an hs2 user without power cannot kick an hs1 user (refused on hs2, nothing reaches hs1)", async () => {
    const roomId = await sharedRoom([carol]);
    await waitMembership(c2, roomId, carol.userId, "join");
    const kick = await c2.post(`${V3}/rooms/${enc(roomId)}/kick`, { user_id: carol.userId }, { token: bob.accessToken });
    expect(kick.status, kick.text).toBe(403);
    // A message sent after it arrives, and carol is still joined.
    await send(c2, bob, roomId, "after the kick attempt");
    await poll(async () => {
      const s = await c1.get(`${V3}/rooms/${enc(roomId)}/messages?dir=b&limit=5`, { token: carol.accessToken });
      return (s.body.chunk as ClientEvent[]).some((e) => e.content.body === "after the kick attempt") ? true : undefined;
    });
    expect(await membershipOn(c1, roomId, carol.userId)).toBe("join");
  });
});

describe("typing, receipts and presence across servers", () => {
  function ephemeral(s: SyncResponse, roomId: string, type: string): Record<string, unknown>[] {
    return (s.rooms.join[roomId]?.ephemeral.events ?? []).filter((e) => e.type === type).map((e) => e.content);
  }

  it("bob typing on hs2 shows in alice's /sync on hs1, and stopping clears it", async () => {
    const roomId = await sharedRoom();
    const since = (await sync(c1, alice)).next_batch;
    const t = await c2.put(`${V3}/rooms/${enc(roomId)}/typing/${enc(bob.userId)}`, { typing: true, timeout: 20_000 }, { token: bob.accessToken });
    expect(t.status, t.text).toBe(200);
    const s = await syncUntil(c1, alice, since, (r) => ephemeral(r, roomId, "m.typing").some((c) => (c.user_ids as string[]).includes(bob.userId)));
    const stop = await c2.put(`${V3}/rooms/${enc(roomId)}/typing/${enc(bob.userId)}`, { typing: false }, { token: bob.accessToken });
    expect(stop.status, stop.text).toBe(200);
    await syncUntil(c1, alice, s.next_batch, (r) => ephemeral(r, roomId, "m.typing").some((c) => !(c.user_ids as string[]).includes(bob.userId)));
  });

  it("alice's m.read receipt on hs1 reaches bob's /sync on hs2", async () => {
    const roomId = await sharedRoom();
    const eventId = await send(c2, bob, roomId, "read me");
    // hs1 must have the event before alice can mark it read.
    await poll(async () => ((await hs1.server.services.roomCore.events.get(eventId)) ? true : undefined));
    const since = (await sync(c2, bob)).next_batch;
    const r = await c1.post(`${V3}/rooms/${enc(roomId)}/receipt/m.read/${enc(eventId)}`, {}, { token: alice.accessToken });
    expect(r.status, r.text).toBe(200);
    await syncUntil(c2, bob, since, (s) =>
      ephemeral(s, roomId, "m.receipt").some((c) => {
        const byType = c[eventId] as Record<string, Record<string, { ts: number }>> | undefined;
        return byType?.["m.read"]?.[alice.userId] !== undefined;
      }),
    );
  });

  it("a join brings the presence both ways: the joiner's to the room's servers, the members' to the joiner's", async () => {
    const [erin, frank] = [await registerUser(c1), await registerUser(c2)];
    for (const [c, u, msg] of [[c1, erin, "erin here"], [c2, frank, "frank here"]] as const) {
      expect((await c.put(`${V3}/presence/${enc(u.userId)}/status`, { presence: "online", status_msg: msg }, { token: u.accessToken })).status).toBe(200);
    }
    // They share no room yet, so neither server has heard of the other user's presence (nor will by a change).
    const roomId = await createRoom(c1, erin, { preset: "public_chat" });
    await join(c2, frank, roomId);
    const statusOn = async (c: Client, viewer: TestUser, userId: string) => (await c.get(`${V3}/presence/${enc(userId)}/status`, { token: viewer.accessToken })).body;
    await poll(async () => ((await statusOn(c1, erin, frank.userId)).status_msg === "frank here" ? true : undefined));
    await poll(async () => ((await statusOn(c2, frank, erin.userId)).status_msg === "erin here" ? true : undefined));
    expect(await statusOn(c1, erin, frank.userId)).toMatchObject({ presence: "online" });
    expect(typeof (await statusOn(c2, frank, erin.userId)).last_active_ago).toBe("number");
  });

  it("bob's presence reaches alice, who shares a room with him", async () => {
    await sharedRoom();
    const since = (await sync(c1, alice)).next_batch;
    const p = await c2.put(`${V3}/presence/${enc(bob.userId)}/status`, { presence: "online", status_msg: "federating" }, { token: bob.accessToken });
    expect(p.status, p.text).toBe(200);
    await syncUntil(c1, alice, since, (s) => s.presence.events.some((e) => e.sender === bob.userId && e.content.status_msg === "federating"));
    const got = await c1.get(`${V3}/presence/${enc(bob.userId)}/status`, { token: alice.accessToken });
    expect(got.status, got.text).toBe(200);
    expect(got.body.presence).toBe("online");
    expect(got.body.status_msg).toBe("federating");
  });
});
