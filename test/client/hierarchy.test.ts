/**
 * The client space hierarchy (spec "Spaces", GET /_matrix/client/v1/rooms/{roomId}/hierarchy): the depth-first walk
 * in the spec's child order, what a user may see (joined, public, restricted to a room they are in; private rooms
 * hidden), max_depth, suggested_only, limit and from pagination without repeats, the errors; matrix-js-sdk's
 * getRoomHierarchy; and children on another server fetched over federation and cached.
 */
import * as sdk from "matrix-js-sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startServerPair, type ServerPair } from "../helpers/federation.js";
import { closeFederatedServers } from "../helpers/federation_close.js";
import { Client, expectError, registerUser, type Response, type TestUser } from "../helpers/http.js";
import { createRoom, enc, joinRoom, setState, type StrippedEvent } from "../helpers/rooms.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

interface HierarchyRoom {
  room_id: string;
  name?: string;
  room_type?: string;
  join_rule?: string;
  num_joined_members: number;
  world_readable: boolean;
  guest_can_join: boolean;
  room_version?: string;
  allowed_room_ids?: string[];
  children_state: StrippedEvent[];
}
interface HierarchyPage {
  rooms: HierarchyRoom[];
  next_batch?: string;
}

const hierarchyUrl = (roomId: string, q: Record<string, string | number | boolean> = {}) => {
  const s = new URLSearchParams(Object.entries(q).map(([k, v]): [string, string] => [k, String(v)])).toString();
  return `/_matrix/client/v1/rooms/${enc(roomId)}/hierarchy${s ? `?${s}` : ""}`;
};

async function page(c: Client, u: TestUser, roomId: string, q: Record<string, string | number | boolean> = {}): Promise<HierarchyPage> {
  const res = await c.get<HierarchyPage>(hierarchyUrl(roomId, q), { token: u.accessToken });
  expect(res.status, res.text).toBe(200);
  return res.body;
}

/** Every page from the first, following next_batch. */
async function allPages(c: Client, u: TestUser, roomId: string, q: Record<string, string | number | boolean> = {}): Promise<HierarchyPage[]> {
  const pages: HierarchyPage[] = [];
  let from: string | undefined;
  do {
    const p = await page(c, u, roomId, from ? { ...q, from } : q);
    pages.push(p);
    from = p.next_batch;
  } while (from && pages.length < 50);
  return pages;
}

const ids = (p: HierarchyPage) => p.rooms.map((r) => r.room_id);
const space = (name: string, body: Record<string, unknown> = {}) => ({ preset: "public_chat", name, creation_content: { type: "m.space" }, ...body });
const restricted = (allowedRoomId: string) => ({
  room_version: "10",
  preset: "private_chat",
  initial_state: [{ type: "m.room.join_rules", state_key: "", content: { join_rule: "restricted", allow: [{ type: "m.room_membership", room_id: allowedRoomId }] } }],
});

describe("GET /hierarchy on one server", () => {
  let ts: TestServer;
  let c: Client;
  let alice: TestUser;
  let bob: TestUser;
  /** The space tree: S → [Sub (order a) → [X, Y private, S again], A (order b), P private, R restricted to S, R2 restricted to Other, C]. */
  let S: string, Sub: string, X: string, Y: string, A: string, P: string, R: string, R2: string, C: string, Other: string;

  beforeAll(async () => {
    ts = await startTestServer();
    c = new Client(ts.baseUrl);
    alice = await registerUser(c);
    bob = await registerUser(c);
    S = await createRoom(c, alice, space("Space", { topic: "the root" }));
    Sub = await createRoom(c, alice, space("Sub"));
    X = await createRoom(c, alice, { preset: "public_chat", name: "X" });
    Y = await createRoom(c, alice, { preset: "private_chat", name: "Y" });
    A = await createRoom(c, alice, { preset: "public_chat", name: "A" });
    P = await createRoom(c, alice, { preset: "private_chat", name: "P" });
    Other = await createRoom(c, alice, { preset: "private_chat", name: "Other" });
    R = await createRoom(c, alice, { ...restricted(S), name: "R" });
    R2 = await createRoom(c, alice, { ...restricted(Other), name: "R2" });
    C = await createRoom(c, alice, { preset: "public_chat", name: "C" });
    const via = ["test.local"];
    await setState(c, alice, S, "m.space.child", A, { via, order: "b" });
    await setState(c, alice, S, "m.space.child", Sub, { via, order: "a", suggested: true });
    await setState(c, alice, S, "m.space.child", P, { via });
    await setState(c, alice, S, "m.space.child", R, { via });
    await setState(c, alice, S, "m.space.child", R2, { via });
    await setState(c, alice, S, "m.space.child", C, { via });
    // Not children: without via (a removed child), or not a room id.
    await setState(c, alice, S, "m.space.child", "!gone:test.local", {});
    await setState(c, alice, S, "m.space.child", "not-a-room", { via });
    await setState(c, alice, Sub, "m.space.child", X, { via, suggested: true });
    await setState(c, alice, Sub, "m.space.child", Y, { via });
    // A loop back to the root: shown once.
    await setState(c, alice, Sub, "m.space.child", S, { via });
    await joinRoom(c, bob, S);
  });
  afterAll(async () => {
    await ts?.close();
  });

  it("walks depth first in the spec's order, showing what the user may see: joined, public, restricted to a room they are in", async () => {
    const p = await page(c, bob, S);
    expect(ids(p)).toEqual([S, Sub, X, A, R, C]);
    expect(p.next_batch).toBeUndefined();
    const root = p.rooms[0]!;
    expect(root).toMatchObject({ room_id: S, name: "Space", topic: "the root", room_type: "m.space", join_rule: "public", num_joined_members: 2, world_readable: false, guest_can_join: false, room_version: expect.any(String) });
    expect(root.children_state.map((e) => e.state_key)).toEqual([Sub, A, P, R, R2, C]);
    expect(root.children_state[0]).toEqual({ type: "m.space.child", state_key: Sub, content: { via: ["test.local"], order: "a", suggested: true }, sender: alice.userId, origin_server_ts: expect.any(Number) });
    // Not a space: no children listed.
    expect(p.rooms.find((r) => r.room_id === A)!.children_state).toEqual([]);
    expect(p.rooms.find((r) => r.room_id === R)).toMatchObject({ join_rule: "restricted", allowed_room_ids: [S], room_version: "10" });
  });

  it("a member of every room sees the private and restricted ones too", async () => {
    expect(ids(await page(c, alice, S))).toEqual([S, Sub, X, Y, A, P, R, R2, C]);
  });

  it("max_depth stops the walk at that depth", async () => {
    expect(ids(await page(c, bob, S, { max_depth: 0 }))).toEqual([S]);
    expect(ids(await page(c, bob, S, { max_depth: 1 }))).toEqual([S, Sub, A, R, C]);
  });

  it("suggested_only follows only suggested children", async () => {
    const p = await page(c, bob, S, { suggested_only: true });
    expect(ids(p)).toEqual([S, Sub, X]);
    expect(p.rooms[0]!.children_state.map((e) => e.state_key)).toEqual([Sub]);
  });

  it("limit and from page through the walk without repeats or gaps", async () => {
    const pages = await allPages(c, alice, S, { limit: 2 });
    expect(pages.map((p) => p.rooms.length)).toEqual([2, 2, 2, 2, 1]);
    expect(pages.flatMap(ids)).toEqual([S, Sub, X, Y, A, P, R, R2, C]);
    expect(pages.at(-1)!.next_batch).toBeUndefined();
    // A token can be used again (a retried request) and gives the same page.
    const first = await page(c, alice, S, { limit: 3 });
    const again = await page(c, alice, S, { limit: 3, from: first.next_batch! });
    expect(ids(await page(c, alice, S, { limit: 3, from: first.next_batch! }))).toEqual(ids(again));
  });

  it("a limit above 50 is capped", async () => {
    expect((await page(c, alice, S, { limit: 1000 })).rooms).toHaveLength(9);
  });

  it("400 M_INVALID_PARAM for an unknown token, one of another user or of other parameters, and for a bad limit or max_depth", async () => {
    const get = (u: TestUser, q: Record<string, string | number | boolean>, roomId = S) => c.get(hierarchyUrl(roomId, q), { token: u.accessToken });
    const { next_batch } = await page(c, alice, S, { limit: 1, max_depth: 3 });
    expect(next_batch).toBeDefined();
    expectError(await get(alice, { from: "nonsense" }), 400, "M_INVALID_PARAM");
    expectError(await get(alice, { from: next_batch!, max_depth: 2 }), 400, "M_INVALID_PARAM");
    expectError(await get(alice, { from: next_batch! }), 400, "M_INVALID_PARAM");
    expectError(await get(alice, { from: next_batch!, max_depth: 3, suggested_only: true }), 400, "M_INVALID_PARAM");
    expectError(await get(alice, { from: next_batch!, max_depth: 3 }, Sub), 400, "M_INVALID_PARAM");
    expectError(await get(bob, { from: next_batch!, max_depth: 3 }), 400, "M_INVALID_PARAM");
    expect((await get(alice, { from: next_batch!, max_depth: 3 })).status).toBe(200);
    for (const limit of ["0", "-1", "abc", "1.5"]) expectError(await get(alice, { limit }), 400, "M_INVALID_PARAM");
    for (const max_depth of ["-1", "x"]) expectError(await get(alice, { max_depth }), 400, "M_INVALID_PARAM");
    expectError(await get(alice, { suggested_only: "yes" }), 400, "M_INVALID_PARAM");
  });

  it("403 M_FORBIDDEN when the user may not see the root (private, unknown); 400 for a bad room id; 401 without a token", async () => {
    expectError(await c.get(hierarchyUrl(P), { token: bob.accessToken }), 403, "M_FORBIDDEN");
    expectError(await c.get(hierarchyUrl("!unknown:test.local"), { token: bob.accessToken }), 403, "M_FORBIDDEN");
    expectError(await c.get(hierarchyUrl("not-a-room"), { token: bob.accessToken }), 400, "M_INVALID_PARAM");
    expectError(await c.get(hierarchyUrl(S)), 401, "M_MISSING_TOKEN");
    // A public room the user is not in is a root they may walk.
    const carol = await registerUser(c);
    expect(ids(await page(c, carol, S))).toEqual([S, Sub, X, A, C]);
  });

  it("matrix-js-sdk's getRoomHierarchy pages through it", async () => {
    const client = sdk.createClient({ baseUrl: ts.baseUrl, accessToken: bob.accessToken, userId: bob.userId, logger: quietLogger });
    const first = await client.getRoomHierarchy(S, 4);
    expect(first.rooms.map((r) => r.room_id)).toEqual([S, Sub, X, A]);
    expect(first.next_batch).toBeDefined();
    const second = await client.getRoomHierarchy(S, 4, undefined, false, first.next_batch);
    expect(second.rooms.map((r) => r.room_id)).toEqual([R, C]);
    expect(second.next_batch).toBeUndefined();
    expect((await client.getRoomHierarchy(S, 10, 1, true)).rooms.map((r) => r.room_id)).toEqual([S, Sub]);
    client.stopClient();
  });
});

const quietLogger: NonNullable<sdk.ICreateClientOpts["logger"]> = {
  trace: () => {},
  debug: () => {},
  info: () => {},
  warn: (...msg: unknown[]) => console.warn(...msg),
  error: (...msg: unknown[]) => console.error(...msg),
  getChild: () => quietLogger,
};

describe("GET /hierarchy with children on another server", () => {
  let pair: ServerPair;
  let alice: TestUser;
  let bob: TestUser;
  let carol: TestUser;
  let space: string;
  let remoteRoom: string;
  let remoteSpace: string;
  let remoteLeaf: string;
  let remotePrivate: string;
  let remoteRestricted: string;

  beforeAll(async () => {
    pair = await startServerPair();
    const { c1, c2 } = pair;
    alice = await registerUser(c1);
    bob = await registerUser(c1);
    carol = await registerUser(c2);
    space = await createRoom(c1, alice, { preset: "public_chat", name: "Home space", creation_content: { type: "m.space" } });
    remoteRoom = await createRoom(c2, carol, { preset: "public_chat", name: "Remote room" });
    remoteSpace = await createRoom(c2, carol, { preset: "public_chat", name: "Remote space", creation_content: { type: "m.space" } });
    remoteLeaf = await createRoom(c2, carol, { preset: "public_chat", name: "Remote leaf" });
    remotePrivate = await createRoom(c2, carol, { preset: "private_chat", name: "Remote private" });
    // Restricted to the home space, which hs2 has no member in: hs2 cannot tell that hs1 users are in it, so it refuses.
    remoteRestricted = await createRoom(c2, carol, { ...restricted(space), name: "Remote restricted" });
    const via = ["hs2.test"];
    await setState(pair.c1, alice, space, "m.space.child", remoteRoom, { via, order: "1" });
    await setState(pair.c1, alice, space, "m.space.child", remoteSpace, { via, order: "2" });
    await setState(pair.c1, alice, space, "m.space.child", remotePrivate, { via, order: "3" });
    await setState(pair.c1, alice, space, "m.space.child", remoteRestricted, { via, order: "4" });
    // An unreachable server's room is left out.
    await setState(pair.c1, alice, space, "m.space.child", "!lost:nowhere.test", { via: ["nowhere.test"], order: "5" });
    await setState(c2, carol, remoteSpace, "m.space.child", remoteLeaf, { via });
    await joinRoom(c1, bob, space);
  });
  afterAll(async () => {
    await closeFederatedServers([pair?.hs1, pair?.hs2]);
  });

  it("describes rooms this server is not in from their via servers, hiding what the user may not see", async () => {
    const p = await page(pair.c1, bob, space);
    expect(ids(p)).toEqual([space, remoteRoom, remoteSpace, remoteLeaf]);
    expect(p.rooms[1]).toMatchObject({ room_id: remoteRoom, name: "Remote room", join_rule: "public", num_joined_members: 1, children_state: [] });
    expect(p.rooms[2]!.room_type).toBe("m.space");
    expect(p.rooms[2]!.children_state.map((e) => e.state_key)).toEqual([remoteLeaf]);
    expect(p.rooms[3]).toMatchObject({ room_id: remoteLeaf, name: "Remote leaf" });
    // hs1 is in none of them.
    expect(await pair.hs1.server.services.rooms.headIfKnown(remoteRoom)).toBeUndefined();
  });

  it("keeps other servers' answers for a while", async () => {
    await page(pair.c1, bob, space);
    await setState(pair.c2, carol, remoteRoom, "m.room.name", "", { name: "Renamed" });
    const direct = await pair.c2.get<{ name: string }>(`/_matrix/client/v3/rooms/${enc(remoteRoom)}/state/m.room.name`, { token: carol.accessToken });
    expect(direct.body.name).toBe("Renamed");
    const cached: Response<HierarchyPage> = await pair.c1.get<HierarchyPage>(hierarchyUrl(space), { token: bob.accessToken });
    expect(cached.body.rooms.find((r) => r.room_id === remoteRoom)!.name).toBe("Remote room");
    const stats = pair.hs1.server.services.caches.stats().find((s) => s.name === "remote_hierarchies")!;
    expect(stats.hits).toBeGreaterThan(0);
  });
});
