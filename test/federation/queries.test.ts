/**
 * Federation queries between hs1 and hs2: directory and profile queries, the published room directory (over
 * federation, and for clients with `server`), the space hierarchy, and the E2EE/OpenID/3PID endpoints that answer
 * with empty results or the spec's errors until those features exist.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { JsonObject } from "../../src/core/json/types.js";
import type { QueryValue } from "../../src/federation/client.js";
import { FederationError } from "../../src/federation/errors.js";
import { startServerPair } from "../helpers/federation.js";
import { Client, expectError, registerUser, uniqueName, type TestUser } from "../helpers/http.js";
import { createRoom, enc, setState, V3 } from "../helpers/rooms.js";
import type { TestServer } from "../helpers/server.js";

const V1 = "/_matrix/federation/v1";
let hs1: TestServer;
let hs2: TestServer;
let c1: Client;
let c2: Client;
let alice: TestUser;
let bob: TestUser;

beforeAll(async () => {
  ({ hs1, hs2, c1, c2 } = await startServerPair({ hs1: { config: { allow_public_rooms_over_federation: true } } }));
  alice = await registerUser(c1);
  bob = await registerUser(c2);
});
afterAll(async () => {
  await Promise.all([hs1?.close(), hs2?.close()]);
});

interface Answer {
  status: number;
  body: JsonObject;
}

/** A signed request from `from` to `to`; errors come back as their status and body. */
async function fed(from: TestServer, to: string, method: "GET" | "POST" | "PUT", path: string, query?: Record<string, QueryValue>, body?: JsonObject): Promise<Answer> {
  const client = from.server.services.federationClient;
  try {
    const res = method === "GET" ? await client.get(to, path, query) : method === "POST" ? await client.post(to, path, body ?? {}) : await client.put(to, path, body ?? {});
    return { status: 200, body: res };
  } catch (e) {
    if (e instanceof FederationError && e.reason === "http") return { status: e.status!, body: (e.details.body ?? {}) as JsonObject };
    throw e;
  }
}
const asHs2 = (method: "GET" | "POST" | "PUT", path: string, query?: Record<string, QueryValue>, body?: JsonObject) => fed(hs2, "hs1.test", method, path, query, body);

function expectErr(a: Answer, status: number, errcode: string): void {
  expect({ status: a.status, errcode: a.body.errcode }).toEqual({ status, errcode });
}

async function bobJoins(roomId: string): Promise<void> {
  const r = await c2.post(`${V3}/join/${enc(roomId)}?server_name=hs1.test`, {}, { token: bob.accessToken });
  expect(r.status, r.text).toBe(200);
}

describe("GET /query/directory", () => {
  it("resolves a local alias to the room and the servers in it", async () => {
    const name = uniqueName("alias");
    const roomId = await createRoom(c1, alice, { preset: "public_chat", room_alias_name: name });
    const alias = `#${name}:hs1.test`;
    expect((await asHs2("GET", `${V1}/query/directory`, { room_alias: alias })).body).toEqual({ room_id: roomId, servers: ["hs1.test"] });
    await bobJoins(roomId);
    expect((await asHs2("GET", `${V1}/query/directory`, { room_alias: alias })).body).toEqual({ room_id: roomId, servers: ["hs1.test", "hs2.test"] });
  });

  it("404 M_NOT_FOUND for an unknown alias; 400 for a missing or malformed one", async () => {
    expectErr(await asHs2("GET", `${V1}/query/directory`, { room_alias: "#nope:hs1.test" }), 404, "M_NOT_FOUND");
    expectErr(await asHs2("GET", `${V1}/query/directory`), 400, "M_MISSING_PARAM");
    expectErr(await asHs2("GET", `${V1}/query/directory`, { room_alias: "nope" }), 400, "M_INVALID_PARAM");
  });
});

describe("GET /query/profile", () => {
  it("returns the whole profile, or only the requested field", async () => {
    const u = await registerUser(c1);
    expect((await c1.put(`${V3}/profile/${enc(u.userId)}/displayname`, { displayname: "Ursula" }, { token: u.accessToken })).status).toBe(200);
    expect((await asHs2("GET", `${V1}/query/profile`, { user_id: u.userId })).body).toEqual({ displayname: "Ursula" });
    expect((await asHs2("GET", `${V1}/query/profile`, { user_id: u.userId, field: "displayname" })).body).toEqual({ displayname: "Ursula" });
    // An unset field is left out, not a 404 ("should exclude it from the response body"): Synapse 1.67 asks for
    // displayname and avatar_url separately and fails a client's whole GET /profile on a 404 for either.
    const unset = await asHs2("GET", `${V1}/query/profile`, { user_id: u.userId, field: "avatar_url" });
    expect(unset.status).toBe(200);
    expect(unset.body).toEqual({});
    // Myelin asking for it still answers its client 404 for the field, and the whole profile without it.
    expectErr(await c2.get(`${V3}/profile/${enc(u.userId)}/avatar_url`, { token: bob.accessToken }), 404, "M_NOT_FOUND");
    expect((await c2.get(`${V3}/profile/${enc(u.userId)}`, { token: bob.accessToken })).body).toEqual({ displayname: "Ursula" });
  });

  it("a remote answer's null displayname/avatar_url (as Synapse sends for unset fields) is unset to our clients", async () => {
    const u = await registerUser(c1);
    expect((await c1.put(`${V3}/profile/${enc(u.userId)}/displayname`, { displayname: "Nell" }, { token: u.accessToken })).status).toBe(200);
    const profile = hs2.server.services.profile;
    const real = profile.remote!;
    // Synapse 1.67 answers {"displayname": "Nell", "avatar_url": null}; Myelin itself leaves the field out.
    profile.remote = async (userId, field) => ({ ...(await real(userId, field)), avatar_url: null });
    try {
      expect((await c2.get(`${V3}/profile/${enc(u.userId)}`, { token: bob.accessToken })).body).toEqual({ displayname: "Nell" });
      expectErr(await c2.get(`${V3}/profile/${enc(u.userId)}/avatar_url`, { token: bob.accessToken }), 404, "M_NOT_FOUND");
      expect((await c2.get(`${V3}/profile/${enc(u.userId)}/displayname`, { token: bob.accessToken })).body).toEqual({ displayname: "Nell" });
    } finally {
      profile.remote = real;
    }
  });

  it("404 for unknown users and users of other servers", async () => {
    expectErr(await asHs2("GET", `${V1}/query/profile`, { user_id: "@nobody:hs1.test" }), 404, "M_NOT_FOUND");
    expectErr(await asHs2("GET", `${V1}/query/profile`, { user_id: "@nobody:hs1.test", field: "displayname" }), 404, "M_NOT_FOUND");
    expectErr(await asHs2("GET", `${V1}/query/profile`, { user_id: bob.userId }), 404, "M_NOT_FOUND");
    expectErr(await asHs2("GET", `${V1}/query/profile`), 400, "M_MISSING_PARAM");
  });
});

describe("/publicRooms", () => {
  const tag = uniqueName("fedroom");
  const rooms: string[] = [];

  beforeAll(async () => {
    for (let i = 0; i < 3; i++) rooms.push(await createRoom(c1, alice, { preset: "public_chat", visibility: "public", name: `${tag} ${i}`, topic: `topic ${i}` }));
    await createRoom(c1, alice, { preset: "public_chat", name: `${tag} unlisted` });
  });

  it("GET lists this server's published rooms with the chunk shape, paginated", async () => {
    const first = await asHs2("GET", `${V1}/publicRooms`, { limit: 2 });
    expect(first.status).toBe(200);
    const all = await asHs2("GET", `${V1}/publicRooms`);
    const ours = (all.body.chunk as JsonObject[]).filter((r) => String(r.name).startsWith(tag));
    expect(ours.map((r) => r.room_id).sort()).toEqual([...rooms].sort());
    expect(ours[0]).toEqual({
      room_id: expect.any(String),
      name: expect.stringContaining(tag),
      topic: expect.stringContaining("topic"),
      num_joined_members: 1,
      world_readable: false,
      guest_can_join: false,
      join_rule: "public",
    });
    expect(first.body.chunk as JsonObject[]).toHaveLength(2);
    expect(typeof first.body.next_batch).toBe("string");
    const next = await asHs2("GET", `${V1}/publicRooms`, { limit: 2, since: first.body.next_batch as string });
    const seen = [...(first.body.chunk as JsonObject[]), ...(next.body.chunk as JsonObject[])].map((r) => r.room_id);
    expect(new Set(seen).size).toBe(seen.length);
  });

  it("POST filters by generic_search_term", async () => {
    const a = await asHs2("POST", `${V1}/publicRooms`, undefined, { filter: { generic_search_term: `${tag} 1` } });
    expect((a.body.chunk as JsonObject[]).map((r) => r.room_id)).toEqual([rooms[1]]);
    expect(a.body.total_room_count_estimate).toBe(1);
  });

  it("a server that does not share its directory answers 403 (allow_public_rooms_over_federation)", async () => {
    expectErr(await fed(hs1, "hs2.test", "GET", `${V1}/publicRooms`), 403, "M_FORBIDDEN");
  });

  it("clients read another server's directory with `server`", async () => {
    const got = await c2.get(`${V3}/publicRooms?server=hs1.test&limit=100`, { token: bob.accessToken });
    expect(got.status, got.text).toBe(200);
    expect((got.body.chunk as JsonObject[]).filter((r) => String(r.name).startsWith(tag))).toHaveLength(3);
    const searched = await c2.post(`${V3}/publicRooms?server=hs1.test`, { filter: { generic_search_term: `${tag} 2` } }, { token: bob.accessToken });
    expect((searched.body.chunk as JsonObject[]).map((r) => r.room_id)).toEqual([rooms[2]]);
    // hs2's own directory (hs2 keeps it to itself over federation, not from its own users).
    expect((await c2.get(`${V3}/publicRooms?server=hs2.test`, { token: bob.accessToken })).status).toBe(200);
    expectError(await c1.get(`${V3}/publicRooms?server=hs2.test`, { token: alice.accessToken }), 502, "M_UNKNOWN");
  });
});

describe("GET /hierarchy/{roomId}", () => {
  let space: string;
  let open: string;
  let suggested: string;
  let closed: string;

  beforeAll(async () => {
    space = await createRoom(c1, alice, { preset: "public_chat", name: "Space", creation_content: { type: "m.space" } });
    open = await createRoom(c1, alice, { preset: "public_chat", name: "Open" });
    suggested = await createRoom(c1, alice, { preset: "public_chat", name: "Suggested" });
    closed = await createRoom(c1, alice, { preset: "private_chat", name: "Closed" });
    await setState(c1, alice, space, "m.space.child", open, { via: ["hs1.test"], order: "b" });
    await setState(c1, alice, space, "m.space.child", suggested, { via: ["hs1.test"], suggested: true, order: "a" });
    await setState(c1, alice, space, "m.space.child", closed, { via: ["hs1.test"] });
    await setState(c1, alice, space, "m.space.child", "!unknown:elsewhere.test", { via: ["elsewhere.test"] });
    // Not children: no via, or removed (empty content).
    await setState(c1, alice, space, "m.space.child", "!novia:hs1.test", {});
    await setState(c1, alice, open, "m.space.child", suggested, { via: ["hs1.test"] });
  });

  it("returns the space, its accessible children and the inaccessible ones", async () => {
    const a = await asHs2("GET", `${V1}/hierarchy/${enc(space)}`);
    expect(a.status).toBe(200);
    const room = a.body.room as JsonObject;
    expect(room).toMatchObject({ room_id: space, name: "Space", room_type: "m.space", num_joined_members: 1, world_readable: false, guest_can_join: false, join_rule: "public", room_version: expect.any(String) });
    const childrenState = room.children_state as JsonObject[];
    // Spec ordering: by `order`, then those without it.
    expect(childrenState.map((c) => c.state_key)).toEqual([suggested, open, closed, "!unknown:elsewhere.test"]);
    expect(childrenState[0]).toEqual({ type: "m.space.child", state_key: suggested, content: { via: ["hs1.test"], suggested: true, order: "a" }, sender: alice.userId, origin_server_ts: expect.any(Number) });
    const children = a.body.children as JsonObject[];
    expect(children.map((c) => c.room_id)).toEqual([suggested, open]);
    expect((children[1]!.children_state as JsonObject[]).map((c) => c.state_key)).toEqual([suggested]);
    expect(a.body.inaccessible_children).toEqual([closed]);
  });

  it("suggested_only keeps the suggested children", async () => {
    const a = await asHs2("GET", `${V1}/hierarchy/${enc(space)}`, { suggested_only: true });
    expect((a.body.room as JsonObject).children_state as JsonObject[]).toHaveLength(1);
    expect((a.body.children as JsonObject[]).map((c) => c.room_id)).toEqual([suggested]);
    expect(a.body.inaccessible_children).toEqual([]);
  });

  it("404 for an unknown room or one the server can neither peek nor join", async () => {
    expectErr(await asHs2("GET", `${V1}/hierarchy/${enc("!nope:hs1.test")}`), 404, "M_NOT_FOUND");
    expectErr(await asHs2("GET", `${V1}/hierarchy/${enc(closed)}`), 404, "M_NOT_FOUND");
  });
});

describe("devices, keys, OpenID and third-party invites", () => {
  it("GET /user/devices: a local user's devices (no keys uploaded here) and stream_id, 404 otherwise", async () => {
    const r = await asHs2("GET", `${V1}/user/devices/${enc(alice.userId)}`);
    expect(r.body).toEqual({ user_id: alice.userId, stream_id: expect.any(Number), devices: [{ device_id: alice.deviceId }] });
    // The stream_id is that of alice's newest device-list change: her registration's device.
    expect(r.body.stream_id).toBeGreaterThan(0);
    expectErr(await asHs2("GET", `${V1}/user/devices/${enc("@nobody:hs1.test")}`), 404, "M_NOT_FOUND");
    expectErr(await asHs2("GET", `${V1}/user/devices/${enc(bob.userId)}`), 404, "M_NOT_FOUND");
  });

  it("POST /user/keys/query and /user/keys/claim answer for local users only (none with keys here)", async () => {
    const q = await asHs2("POST", `${V1}/user/keys/query`, undefined, { device_keys: { [alice.userId]: [], [bob.userId]: [] } });
    expect(q.body).toEqual({ device_keys: { [alice.userId]: {} }, master_keys: {}, self_signing_keys: {} });
    const c = await asHs2("POST", `${V1}/user/keys/claim`, undefined, { one_time_keys: { [alice.userId]: { DEVICE: "signed_curve25519" } } });
    expect(c.body).toEqual({ one_time_keys: {} });
    expectErr(await asHs2("POST", `${V1}/user/keys/query`, undefined, {}), 400, "M_BAD_JSON");
  });

  it("GET /openid/userinfo needs no signature and knows no token yet", async () => {
    const res = await new Client(hs1.baseUrl).get(`${V1}/openid/userinfo?access_token=abc`);
    expectError(res, 401, "M_UNKNOWN_TOKEN");
    // Spec: 401 for a token "not recognized"; none at all is no better (as Synapse), not a 400.
    expectError(await new Client(hs1.baseUrl).get(`${V1}/openid/userinfo`), 401, "M_UNKNOWN_TOKEN");
  });

  it("PUT /exchange_third_party_invite refuses what is not a third-party invite event: 400 M_BAD_JSON", async () => {
    expectErr(await asHs2("PUT", `${V1}/exchange_third_party_invite/${enc("!r:hs1.test")}`, undefined, { type: "m.room.member" }), 400, "M_BAD_JSON");
  });
});
