/**
 * Mutual rooms (spec v1.19 GET /_matrix/client/v1/mutual_rooms, and MSC2666's unstable path as Synapse serves it):
 * the rooms both users are joined to, the count, batches with tokens bound to the two users, and the errors.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client, expectError, registerUser, type TestUser } from "../helpers/http.js";
import { createRoom, enc, inviteUser, joinRoom, leaveRoom } from "../helpers/rooms.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

interface Page {
  joined: string[];
  count: number;
  next_batch?: string;
  next_batch_token?: string;
}

let ts: TestServer;
let c: Client;
let alice: TestUser;
let bob: TestUser;
let carol: TestUser;
/** Rooms alice and bob are both joined to, in room id order. */
let shared: string[];

const url = (userId: string, from?: string) => `/_matrix/client/v1/mutual_rooms?user_id=${enc(userId)}${from !== undefined ? `&from=${enc(from)}` : ""}`;
const unstableUrl = (userId: string, token?: string) => `/_matrix/client/unstable/uk.half-shot.msc2666/user/mutual_rooms?user_id=${enc(userId)}${token !== undefined ? `&batch_token=${enc(token)}` : ""}`;

beforeAll(async () => {
  ts = await startTestServer();
  c = new Client(ts.baseUrl);
  alice = await registerUser(c);
  bob = await registerUser(c);
  carol = await registerUser(c);
  shared = [];
  for (let i = 0; i < 5; i++) {
    const roomId = await createRoom(c, alice, { preset: "public_chat" });
    await joinRoom(c, bob, roomId);
    shared.push(roomId);
  }
  shared.sort();
  // Not mutual: alice's alone, one bob left, one bob is only invited to.
  await createRoom(c, alice, {});
  const left = await createRoom(c, alice, { preset: "public_chat" });
  await joinRoom(c, bob, left);
  await leaveRoom(c, bob, left);
  const invited = await createRoom(c, alice, {});
  await inviteUser(c, alice, invited, bob.userId);
});
afterAll(async () => {
  await ts?.close();
});

describe("GET /mutual_rooms", () => {
  it("lists the rooms both are joined to, with the count", async () => {
    const res = await c.get<Page>(url(bob.userId), { token: alice.accessToken });
    expect(res.status, res.text).toBe(200);
    expect([...res.body.joined].sort()).toEqual(shared);
    expect(res.body.count).toBe(5);
    expect(res.body.next_batch).toBeUndefined();
    expect((await c.get<Page>(url(carol.userId), { token: alice.accessToken })).body).toEqual({ joined: [], count: 0 });
    // "If the provided user_id is not a valid user, the server MUST return an empty list of rooms."
    expect((await c.get<Page>(url("@nobody:test.local"), { token: alice.accessToken })).body).toEqual({ joined: [], count: 0 });
  });

  it("pages in batches with tokens bound to the two users", async () => {
    ts.server.services.mutualRooms.batchSize = 2;
    try {
      const seen: string[] = [];
      let from: string | undefined;
      let pages = 0;
      do {
        const res = await c.get<Page>(url(bob.userId, from), { token: alice.accessToken });
        expect(res.status, res.text).toBe(200);
        expect(res.body.count).toBe(5);
        seen.push(...res.body.joined);
        from = res.body.next_batch;
        pages++;
      } while (from !== undefined && pages < 10);
      expect(pages).toBe(3);
      expect(seen).toEqual(shared);

      const first = (await c.get<Page>(url(bob.userId), { token: alice.accessToken })).body.next_batch!;
      expectError(await c.get(url(carol.userId, first), { token: alice.accessToken }), 400, "M_INVALID_PARAM");
      expectError(await c.get(url(alice.userId, first), { token: bob.accessToken }), 400, "M_INVALID_PARAM");
      expectError(await c.get(url(bob.userId, "garbage"), { token: alice.accessToken }), 400, "M_INVALID_PARAM");

      // MSC2666's names.
      const unstable = await c.get<Page>(unstableUrl(bob.userId), { token: alice.accessToken });
      expect(unstable.status, unstable.text).toBe(200);
      expect(unstable.body.joined).toEqual(shared.slice(0, 2));
      const second = await c.get<Page>(unstableUrl(bob.userId, unstable.body.next_batch_token), { token: alice.accessToken });
      expect(second.body.joined).toEqual(shared.slice(2, 4));
    } finally {
      ts.server.services.mutualRooms.batchSize = 100;
    }
  });

  it("400 M_INVALID_PARAM for oneself, a missing, repeated or malformed user id (422 for oneself on the unstable path, as Synapse)", async () => {
    expectError(await c.get(url(alice.userId), { token: alice.accessToken }), 400, "M_INVALID_PARAM");
    expectError(await c.get(url("not-a-user"), { token: alice.accessToken }), 400, "M_INVALID_PARAM");
    expectError(await c.get(`/_matrix/client/v1/mutual_rooms?user_id=${enc(bob.userId)}&user_id=${enc(carol.userId)}`, { token: alice.accessToken }), 400, "M_INVALID_PARAM");
    expectError(await c.get("/_matrix/client/v1/mutual_rooms", { token: alice.accessToken }), 400, "M_MISSING_PARAM");
    expectError(await c.get(unstableUrl(alice.userId), { token: alice.accessToken }), 422, "M_INVALID_PARAM");
    expectError(await c.get(url(bob.userId)), 401, "M_MISSING_TOKEN");
    const versions = await c.get("/_matrix/client/versions");
    expect((versions.body.unstable_features as Record<string, boolean>)["uk.half-shot.msc2666.query_mutual_rooms"]).toBe(true);
  });
});
