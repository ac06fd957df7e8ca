/**
 * Guests joining rooms on other servers (spec "Guest access"): the room's m.room.guest_access is known only once
 * this server is in the room, so a guest's remote join goes ahead and is undone (403) when the room does not allow
 * guests to join.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startServerPair } from "../helpers/federation.js";
import { Client, registerUser, type TestUser } from "../helpers/http.js";
import { createRoom, enc, poll, V3 } from "../helpers/rooms.js";
import type { TestServer } from "../helpers/server.js";

let hs1: TestServer;
let hs2: TestServer;
let c1: Client;
let c2: Client;
let owner: TestUser;

beforeAll(async () => {
  ({ hs1, hs2, c1, c2 } = await startServerPair({ hs2: { config: { allow_guest_access: true } } }));
  owner = await registerUser(c1, "owner");
});
afterAll(async () => {
  await hs1?.close();
  await hs2?.close();
});

async function guest(): Promise<{ userId: string; token: string }> {
  const res = await c2.post(`${V3}/register?kind=guest`, {});
  expect(res.status, res.text).toBe(200);
  return { userId: res.body.user_id as string, token: res.body.access_token as string };
}

async function invitedRoom(guestAccess: string, guestId: string): Promise<string> {
  const roomId = await createRoom(c1, owner, { preset: "private_chat", initial_state: [{ type: "m.room.guest_access", state_key: "", content: { guest_access: guestAccess } }] });
  const invite = await c1.post(`${V3}/rooms/${enc(roomId)}/invite`, { user_id: guestId }, { token: owner.accessToken });
  expect(invite.status, invite.text).toBe(200);
  return roomId;
}

async function invites(token: string): Promise<string[]> {
  const body = (await c2.get(`${V3}/sync`, { token })).body as { rooms?: { invite?: Record<string, unknown> } };
  return Object.keys(body.rooms?.invite ?? {});
}

async function memberOnHs1(roomId: string, userId: string): Promise<string | undefined> {
  const res = await c1.get(`${V3}/rooms/${enc(roomId)}/state/m.room.member/${enc(userId)}`, { token: owner.accessToken });
  return res.status === 200 ? (res.body.membership as string) : undefined;
}

describe("a guest invited to a room on another server", () => {
  it("joins when the room's guest access is can_join", async () => {
    const g = await guest();
    const roomId = await invitedRoom("can_join", g.userId);
    await poll(async () => ((await invites(g.token)).includes(roomId) ? true : undefined));
    const join = await c2.post(`${V3}/join/${enc(roomId)}`, {}, { token: g.token });
    expect(join.status, join.text).toBe(200);
    expect(await memberOnHs1(roomId, g.userId)).toBe("join");
  });

  it("is refused (and left again) when the room forbids guests", async () => {
    const g = await guest();
    const roomId = await invitedRoom("forbidden", g.userId);
    await poll(async () => ((await invites(g.token)).includes(roomId) ? true : undefined));
    const join = await c2.post(`${V3}/join/${enc(roomId)}`, {}, { token: g.token });
    expect(join.status).toBe(403);
    expect(join.body.errcode).toBe("M_FORBIDDEN");
    await poll(async () => ((await memberOnHs1(roomId, g.userId)) === "leave" ? true : undefined));
  });
});
