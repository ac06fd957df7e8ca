/**
 * Guests in rooms (spec "Guest access"): a guest joins only rooms whose m.room.guest_access is `can_join`, its
 * member event says `kind: "guest"` (as Synapse), and when the room's guest access is revoked this server's
 * guests leave the room (Synapse's behaviour; the spec leaves it to servers).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client, expectError, registerUser, type TestUser } from "../helpers/http.js";
import { createRoom, enc, getState, inviteUser, setState, V3 } from "../helpers/rooms.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

let ts: TestServer;
let c: Client;

beforeAll(async () => {
  ts = await startTestServer({ config: { allow_guest_access: true } });
  c = new Client(ts.baseUrl);
});
afterAll(async () => {
  await ts?.close();
});

async function guest(): Promise<TestUser> {
  const res = await c.post(`${V3}/register?kind=guest`, {});
  expect(res.status, res.text).toBe(200);
  return { userId: res.body.user_id as string, accessToken: res.body.access_token as string, deviceId: res.body.device_id as string, password: "" };
}

const join = (u: TestUser, roomId: string) => c.post(`${V3}/rooms/${enc(roomId)}/join`, {}, { token: u.accessToken });

describe("guest access", () => {
  it("a guest may join only a room with guest_access can_join; its member event says kind guest", async () => {
    const alice = await registerUser(c);
    const g = await guest();
    // public_chat: guest access forbidden.
    const closed = await createRoom(c, alice, { preset: "public_chat" });
    expectError(await join(g, closed), 403, "M_FORBIDDEN");
    expectError(await c.post(`${V3}/join/${enc(closed)}`, {}, { token: g.accessToken }), 403, "M_FORBIDDEN");
    // No m.room.guest_access at all is no permission either.
    const none = await createRoom(c, alice, { preset: "public_chat", initial_state: [{ type: "m.room.guest_access", content: {} }] });
    expectError(await join(g, none), 403, "M_FORBIDDEN");
    // An invite does not open a room to guests.
    const invited = await createRoom(c, alice, { preset: "private_chat", initial_state: [{ type: "m.room.guest_access", content: { guest_access: "forbidden" } }] });
    await inviteUser(c, alice, invited, g.userId);
    expectError(await join(g, invited), 403, "M_FORBIDDEN");

    await setState(c, alice, closed, "m.room.guest_access", "", { guest_access: "can_join" });
    const ok = await join(g, closed);
    expect(ok.status, ok.text).toBe(200);
    expect(await getState(c, alice, closed, "m.room.member", g.userId)).toMatchObject({ membership: "join", kind: "guest" });
    // Registered users are not affected by guest access.
    const bob = await registerUser(c);
    expect((await join(bob, none)).status).toBe(200);
  });

  it("revoking guest access makes this server's guests leave; registered members stay", async () => {
    const alice = await registerUser(c);
    const bob = await registerUser(c);
    const g = await guest();
    const invitedGuest = await guest();
    const roomId = await createRoom(c, alice, { preset: "public_chat", initial_state: [{ type: "m.room.guest_access", content: { guest_access: "can_join" } }] });
    expect((await join(g, roomId)).status).toBe(200);
    expect((await join(bob, roomId)).status).toBe(200);
    await inviteUser(c, alice, roomId, invitedGuest.userId);
    // Only a change away from can_join removes guests.
    await setState(c, alice, roomId, "m.room.topic", "", { topic: "still open" });
    expect((await getState(c, alice, roomId, "m.room.member", g.userId)).membership).toBe("join");

    await setState(c, alice, roomId, "m.room.guest_access", "", { guest_access: "forbidden" });
    // No polling: the PUT answers once this server's guests have left (SyTest reads the membership at once).
    const left = await getState(c, alice, roomId, "m.room.member", g.userId);
    expect(left.membership).toBe("leave");
    expect(left.kind).toBe("guest");
    const ev = await c.get<{ sender: string }>(`${V3}/rooms/${enc(roomId)}/state/m.room.member/${enc(g.userId)}?format=event`, { token: alice.accessToken });
    // The guest leaves as itself (no power levels involved).
    expect(ev.body.sender).toBe(g.userId);
    expect((await getState(c, alice, roomId, "m.room.member", bob.userId)).membership).toBe("join");
    // An invite to a guest is not guest membership (only the guest's own member events say kind guest).
    expect((await getState(c, alice, roomId, "m.room.member", invitedGuest.userId)).membership).toBe("invite");
    expectError(await join(g, roomId), 403, "M_FORBIDDEN");
  });
});
