/**
 * The published room directory for clients (spec "Published Room Directory"): a room's visibility
 * (GET/PUT /directory/list/room/{roomId}) and the listing (GET/POST /publicRooms) with search and pagination.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client, expectError, registerUser, uniqueName, type TestUser } from "../helpers/http.js";
import { createRoom, enc, joinRoom, setState, V3, type Json } from "../helpers/rooms.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

let ts: TestServer;
let c: Client;
let alice: TestUser;
let bob: TestUser;

beforeAll(async () => {
  ts = await startTestServer();
  c = new Client(ts.baseUrl);
  alice = await registerUser(c);
  bob = await registerUser(c);
});
afterAll(async () => {
  await ts?.close();
});

const listPath = (roomId: string) => `${V3}/directory/list/room/${enc(roomId)}`;

interface Listing {
  chunk: Json[];
  next_batch?: string;
  prev_batch?: string;
  total_room_count_estimate?: number;
}

describe("directory visibility", () => {
  it("is private by default, public when created with visibility public; anyone may read it", async () => {
    const priv = await createRoom(c, alice, { preset: "public_chat" });
    const pub = await createRoom(c, alice, { preset: "public_chat", visibility: "public" });
    expect((await c.get(listPath(priv))).body).toEqual({ visibility: "private" });
    expect((await c.get(listPath(pub))).body).toEqual({ visibility: "public" });
    expectError(await c.get(listPath("!unknown:test.local")), 404, "M_NOT_FOUND");
  });

  it("room admins may change it (public by default); other members and outsiders get 403", async () => {
    const roomId = await createRoom(c, alice, { preset: "public_chat" });
    expectError(await c.put(listPath(roomId), { visibility: "public" }, { token: bob.accessToken }), 403, "M_FORBIDDEN");
    await joinRoom(c, bob, roomId);
    expectError(await c.put(listPath(roomId), { visibility: "public" }, { token: bob.accessToken }), 403, "M_FORBIDDEN");
    expect((await c.get(listPath(roomId))).body).toEqual({ visibility: "private" });

    expect((await c.put(listPath(roomId), {}, { token: alice.accessToken })).status).toBe(200);
    expect((await c.get(listPath(roomId))).body).toEqual({ visibility: "public" });
    // Raising bob to the canonical alias level makes him a room admin for this purpose.
    await setState(c, alice, roomId, "m.room.power_levels", "", { users: { [bob.userId]: 50 }, events: { "m.room.canonical_alias": 50 } });
    expect((await c.put(listPath(roomId), { visibility: "private" }, { token: bob.accessToken })).status).toBe(200);
    expect((await c.get(listPath(roomId))).body).toEqual({ visibility: "private" });
  });

  it("400 for a bad visibility, 404 for an unknown room, 401 without a token", async () => {
    const roomId = await createRoom(c, alice, { preset: "public_chat" });
    expectError(await c.put(listPath(roomId), { visibility: "secret" }, { token: alice.accessToken }), 400, "M_BAD_JSON");
    expectError(await c.put(listPath("!unknown:test.local"), {}, { token: alice.accessToken }), 404, "M_NOT_FOUND");
    expectError(await c.put(listPath(roomId), {}), 401, "M_MISSING_TOKEN");
  });
});

describe("/publicRooms", () => {
  const tag = uniqueName("dir");
  const byName = new Map<string, string>();

  beforeAll(async () => {
    // Five published rooms with 1..5 joined members, one unpublished, a space with 6.
    const users = [alice, bob, ...(await Promise.all([registerUser(c), registerUser(c), registerUser(c), registerUser(c)]))];
    for (let i = 1; i <= 5; i++) {
      const roomId = await createRoom(c, alice, { preset: "public_chat", visibility: "public", name: `${tag} room ${i}`, topic: i === 3 ? "All about CHEESE" : `topic ${i}` });
      for (const u of users.slice(1, i)) await joinRoom(c, u, roomId);
      byName.set(`room ${i}`, roomId);
    }
    byName.set("hidden", await createRoom(c, alice, { preset: "public_chat", name: `${tag} hidden` }));
    const space = await createRoom(c, alice, { preset: "public_chat", visibility: "public", name: `${tag} space`, creation_content: { type: "m.space" }, room_alias_name: `${tag}_space` });
    for (const u of users.slice(1)) await joinRoom(c, u, space);
    byName.set("space", space);
  });

  const search = async (filter: Json, extra: Json = {}) => (await c.post<Listing>(`${V3}/publicRooms`, { filter, ...extra }, { token: bob.accessToken })).body;
  const names = (l: Listing) => l.chunk.map((r) => String(r.name).slice(tag.length + 1));

  it("lists published rooms, largest first, with the chunk shape", async () => {
    const res = await c.get<Listing>(`${V3}/publicRooms`, { token: bob.accessToken });
    expect(res.status).toBe(200);
    const ours = res.body.chunk.filter((r) => String(r.name).startsWith(tag));
    expect(ours.map((r) => String(r.name).slice(tag.length + 1))).toEqual(["space", "room 5", "room 4", "room 3", "room 2", "room 1"]);
    expect(ours[1]).toEqual({
      room_id: byName.get("room 5"),
      name: `${tag} room 5`,
      topic: "topic 5",
      num_joined_members: 5,
      world_readable: false,
      guest_can_join: false,
      join_rule: "public",
    });
    expect(ours[0]).toMatchObject({ room_type: "m.space", canonical_alias: `#${tag}_space:test.local`, num_joined_members: 6 });
  });

  it("searches name, topic and canonical alias, case-insensitively", async () => {
    expect(names(await search({ generic_search_term: `${tag} ROOM 2` }))).toEqual(["room 2"]);
    expect(names(await search({ generic_search_term: "cheese" })).filter((n) => n.startsWith("room"))).toEqual(["room 3"]);
    expect(names(await search({ generic_search_term: `#${tag}_SPACE` }))).toEqual(["space"]);
    expect((await search({ generic_search_term: `${tag} hidden` })).chunk).toEqual([]);
  });

  it("filters by room_types (null: rooms without a type)", async () => {
    expect(names(await search({ generic_search_term: tag, room_types: ["m.space"] }))).toEqual(["space"]);
    expect(names(await search({ generic_search_term: tag, room_types: [null] }))).toEqual(["room 5", "room 4", "room 3", "room 2", "room 1"]);
  });

  it("paginates forwards with next_batch and back with prev_batch, on GET and POST", async () => {
    const p1 = await search({ generic_search_term: tag }, { limit: 2 });
    expect(names(p1)).toEqual(["space", "room 5"]);
    expect(p1.prev_batch).toBeUndefined();
    expect(p1.total_room_count_estimate).toBe(6);
    const p2 = await search({ generic_search_term: tag }, { limit: 2, since: p1.next_batch });
    expect(names(p2)).toEqual(["room 4", "room 3"]);
    const p3 = await search({ generic_search_term: tag }, { limit: 2, since: p2.next_batch });
    expect(names(p3)).toEqual(["room 2", "room 1"]);
    expect(p3.next_batch).toBeUndefined();
    const back = await search({ generic_search_term: tag }, { limit: 2, since: p3.prev_batch });
    expect(names(back)).toEqual(["room 4", "room 3"]);

    // GET pages through everything (our rooms among them) the same way.
    const seen: string[] = [];
    let since: string | undefined;
    do {
      const page = await c.get<Listing>(`${V3}/publicRooms?limit=3${since ? `&since=${enc(since)}` : ""}`, { token: bob.accessToken });
      expect(page.status).toBe(200);
      expect(page.body.chunk.length).toBeLessThanOrEqual(3);
      seen.push(...page.body.chunk.map((r) => r.room_id as string));
      since = page.body.next_batch;
    } while (since);
    expect(new Set(seen).size).toBe(seen.length);
    for (const id of [1, 2, 3, 4, 5].map((i) => byName.get(`room ${i}`)!)) expect(seen).toContain(id);
  });

  it("POST takes null for an absent field (as Synapse): a first page asked for with since: null", async () => {
    const res = await c.post<Listing>(`${V3}/publicRooms`, { limit: 2, since: null, filter: { generic_search_term: tag, room_types: null }, third_party_instance_id: null, include_all_networks: null }, { token: bob.accessToken });
    expect(res.status, res.text).toBe(200);
    expect(names(res.body)).toEqual(["space", "room 5"]);
    const all = await c.post<Listing>(`${V3}/publicRooms`, { limit: null, filter: null }, { token: bob.accessToken });
    expect(all.status, all.text).toBe(200);
    expectError(await c.post(`${V3}/publicRooms`, { since: 5 }, { token: bob.accessToken }), 400, "M_BAD_JSON");
  });

  it("400 for a malformed token or limit; 401 without a token (allow_public_rooms_without_auth is off)", async () => {
    expectError(await c.get(`${V3}/publicRooms?since=garbage`, { token: bob.accessToken }), 400, "M_INVALID_PARAM");
    expectError(await c.get(`${V3}/publicRooms?limit=-1`, { token: bob.accessToken }), 400, "M_INVALID_PARAM");
    expectError(await c.get(`${V3}/publicRooms`), 401, "M_MISSING_TOKEN");
    expectError(await c.post(`${V3}/publicRooms`, {}), 401, "M_MISSING_TOKEN");
  });

  it("a room taken out of the directory disappears from it", async () => {
    const roomId = byName.get("room 1")!;
    expect((await c.put(listPath(roomId), { visibility: "private" }, { token: alice.accessToken })).status).toBe(200);
    expect(names(await search({ generic_search_term: tag }))).not.toContain("room 1");
    expect((await c.put(listPath(roomId), { visibility: "public" }, { token: alice.accessToken })).status).toBe(200);
  });
});

describe("/publicRooms without authentication", () => {
  it("is open when allow_public_rooms_without_auth is set", async () => {
    const open = await startTestServer({ config: { allow_public_rooms_without_auth: true } });
    try {
      const res = await new Client(open.baseUrl).get(`${V3}/publicRooms`);
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ chunk: [] });
    } finally {
      await open.close();
    }
  });
});
