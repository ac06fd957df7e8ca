/**
 * The user directory (POST /user_directory/search) over HTTP: who is found (shared rooms, public rooms,
 * search_all_users), how terms match and rank, limit/limited, updates as memberships, profiles, room publicity and
 * accounts change, the build from current state on an upgraded database, bad input, and matrix-js-sdk's call.
 * Directory updates run after the event commits: a test waits for the directory's worker (`idle()`) before asserting
 * that someone is *not* found.
 */
import * as sdk from "matrix-js-sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client, expectError, registerUser, uniqueName, type TestUser } from "../helpers/http.js";
import { V3, createRoom, enc, inviteUser, joinRoom, leaveRoom, setState } from "../helpers/rooms.js";
import { startTestServer, type TestServer } from "../helpers/server.js";
import { startServerPair } from "../helpers/federation.js";
import { poll } from "../helpers/rooms.js";

const SEARCH = `${V3}/user_directory/search`;

interface Found {
  user_id: string;
  display_name?: string;
  avatar_url?: string;
}
interface SearchBody {
  results: Found[];
  limited: boolean;
}

let ts: TestServer;
let c: Client;

beforeAll(async () => {
  ts = await startTestServer({ config: { allow_guest_access: true } });
  c = new Client(ts.baseUrl);
});
afterAll(async () => {
  await ts?.close();
});

async function settled(server: TestServer = ts): Promise<void> {
  await server.server.services.userDirectory.idle();
}

async function search(u: TestUser, term: string, limit?: number, client = c, server = ts): Promise<SearchBody> {
  await settled(server);
  const res = await client.post<SearchBody>(SEARCH, limit === undefined ? { search_term: term } : { search_term: term, limit }, { token: u.accessToken });
  expect(res.status, res.text).toBe(200);
  return res.body;
}

async function ids(u: TestUser, term: string, limit?: number, client = c, server = ts): Promise<string[]> {
  return (await search(u, term, limit, client, server)).results.map((r) => r.user_id);
}

async function setName(u: TestUser, name: string, client = c): Promise<void> {
  const res = await client.put(`${V3}/profile/${enc(u.userId)}/displayname`, { displayname: name }, { token: u.accessToken });
  expect(res.status, res.text).toBe(200);
}

/** A user with a display name that no other test uses. */
async function named(prefix: string, name?: string, client = c): Promise<{ u: TestUser; name: string }> {
  const u = await registerUser(client, uniqueName(prefix.toLowerCase()));
  const n = name ?? `${prefix} ${uniqueName("n")}`;
  await setName(u, n, client);
  return { u, name: n };
}

describe("who is found", () => {
  it("a user sharing a private room is found; one sharing none, in no public room, is not", async () => {
    const { u: alice, name } = await named("Alice");
    const bob = await registerUser(c);
    const carol = await registerUser(c);
    const roomId = await createRoom(c, alice, { preset: "private_chat" });
    await inviteUser(c, alice, roomId, bob.userId);
    await joinRoom(c, bob, roomId);

    expect(await ids(bob, name)).toEqual([alice.userId]);
    expect(await ids(carol, name)).toEqual([]);
    // Not yourself through a private room (as Synapse).
    expect(await ids(alice, name)).toEqual([]);
    // An invite is not a shared room.
    await inviteUser(c, alice, roomId, carol.userId);
    expect(await ids(carol, name)).toEqual([]);
  });

  it("a member of a public room is found by anyone", async () => {
    const { u: dora, name } = await named("Dora");
    await createRoom(c, dora, { preset: "public_chat" });
    const stranger = await registerUser(c);
    const res = await search(stranger, name);
    expect(res).toEqual({ limited: false, results: [{ user_id: dora.userId, display_name: name }] });
  });

  it("a member of a world_readable room is found by anyone", async () => {
    const { u: wren, name } = await named("Wren");
    await createRoom(c, wren, { preset: "private_chat", initial_state: [{ type: "m.room.history_visibility", state_key: "", content: { history_visibility: "world_readable" } }] });
    expect(await ids(await registerUser(c), name)).toEqual([wren.userId]);
  });

  it("after leaving the only shared room, no longer found; still found while another room is shared", async () => {
    const { u: erin, name } = await named("Erin");
    const frank = await registerUser(c);
    const r1 = await createRoom(c, erin, { preset: "private_chat", invite: [frank.userId] });
    const r2 = await createRoom(c, erin, { preset: "private_chat", invite: [frank.userId] });
    await joinRoom(c, frank, r1);
    await joinRoom(c, frank, r2);
    expect(await ids(frank, name)).toEqual([erin.userId]);
    await leaveRoom(c, frank, r1);
    expect(await ids(frank, name)).toEqual([erin.userId]);
    await leaveRoom(c, erin, r2);
    expect(await ids(frank, name)).toEqual([]);
  });

  it("joining then leaving a public room: appears, then disappears", async () => {
    const owner = await registerUser(c);
    const roomId = await createRoom(c, owner, { preset: "public_chat" });
    const { u: gus, name } = await named("Gus");
    const searcher = await registerUser(c);
    expect(await ids(searcher, name)).toEqual([]);
    await joinRoom(c, gus, roomId);
    expect(await ids(searcher, name)).toEqual([gus.userId]);
    await leaveRoom(c, gus, roomId);
    expect(await ids(searcher, name)).toEqual([]);
    // A ban is not a join either.
    await joinRoom(c, gus, roomId);
    expect(await ids(searcher, name)).toEqual([gus.userId]);
    expect((await c.post(`${V3}/rooms/${enc(roomId)}/ban`, { user_id: gus.userId }, { token: owner.accessToken })).status).toBe(200);
    expect(await ids(searcher, name)).toEqual([]);
  });

  it("a room turned from public to invite-only (and back, and world_readable) updates results", async () => {
    const owner = await registerUser(c);
    const { u: hal, name } = await named("Hal");
    const searcher = await registerUser(c);
    const roomId = await createRoom(c, owner, { preset: "private_chat", invite: [hal.userId] });
    await joinRoom(c, hal, roomId);
    expect(await ids(searcher, name)).toEqual([]);

    await setState(c, owner, roomId, "m.room.join_rules", "", { join_rule: "public" });
    expect(await ids(searcher, name)).toEqual([hal.userId]);
    await setState(c, owner, roomId, "m.room.join_rules", "", { join_rule: "invite" });
    expect(await ids(searcher, name)).toEqual([]);

    await setState(c, owner, roomId, "m.room.history_visibility", "", { history_visibility: "world_readable" });
    expect(await ids(searcher, name)).toEqual([hal.userId]);
    // Still world_readable: a join-rule change to and from public leaves them visible.
    await setState(c, owner, roomId, "m.room.join_rules", "", { join_rule: "public" });
    await setState(c, owner, roomId, "m.room.join_rules", "", { join_rule: "invite" });
    expect(await ids(searcher, name)).toEqual([hal.userId]);
    await setState(c, owner, roomId, "m.room.history_visibility", "", { history_visibility: "shared" });
    expect(await ids(searcher, name)).toEqual([]);
    // Members of the now private room still find each other.
    expect(await ids(owner, name)).toEqual([hal.userId]);
  });

  it("a deactivated user is gone at once, from public and private rooms", async () => {
    const { u: ivy, name } = await named("Ivy");
    const friend = await registerUser(c);
    await createRoom(c, ivy, { preset: "public_chat" });
    const priv = await createRoom(c, ivy, { preset: "private_chat", invite: [friend.userId] });
    await joinRoom(c, friend, priv);
    expect(await ids(friend, name)).toEqual([ivy.userId]);
    const auth = { type: "m.login.password", identifier: { type: "m.id.user", user: ivy.userId }, password: ivy.password };
    const res = await c.post(`${V3}/account/deactivate`, { auth }, { token: ivy.accessToken });
    expect(res.status, res.text).toBe(200);
    expect(await ids(friend, name)).toEqual([]);
    expect(await ids(friend, ivy.userId)).toEqual([]);
  });

  it("user_directory.enabled: false answers with no results", async () => {
    const { u: jo, name } = await named("Jo");
    await createRoom(c, jo, { preset: "public_chat" });
    const searcher = await registerUser(c);
    expect(await ids(searcher, name)).toEqual([jo.userId]);
    ts.config.userDirectory.enabled = false;
    try {
      expect(await search(searcher, name)).toEqual({ limited: false, results: [] });
    } finally {
      ts.config.userDirectory.enabled = true;
    }
  });
});

describe("matching and ranking", () => {
  let searcher: TestUser;
  let roomId: string;
  beforeAll(async () => {
    searcher = await registerUser(c);
    roomId = await createRoom(c, searcher, { preset: "public_chat" });
  });

  async function member(localpart: string, name: string | null, avatar?: string): Promise<TestUser> {
    const u = await registerUser(c, localpart);
    if (name !== null) await setName(u, name);
    if (avatar) expect((await c.put(`${V3}/profile/${enc(u.userId)}/avatar_url`, { avatar_url: avatar }, { token: u.accessToken })).status).toBe(200);
    await joinRoom(c, u, roomId);
    return u;
  }

  it("word prefixes of the display name and the user id, case-insensitively and unicode-aware", async () => {
    const tag = uniqueName("k").replace(/_/g, "");
    const u = await member(`smith.${tag}`, `Zoë Ångström ${tag}`);
    for (const term of [tag, tag.toUpperCase(), `zo ${tag}`, `ÅNG ${tag}`, `ångs ${tag}`, `Zoë Ångström ${tag}`, u.userId, `smi ${tag}`, `@smith.${tag}`]) {
      expect(await ids(searcher, term), term).toEqual([u.userId]);
    }
    // Every word must match, from its start.
    for (const term of [`${tag} nobody`, `oë ${tag}`, tag.slice(1)]) expect(await ids(searcher, term), term).toEqual([]);
    // Words only: a term of punctuation finds no one.
    expect(await search(searcher, " @:. ")).toEqual({ limited: false, results: [] });
  });

  it("'ali' finds 'Alice Smith' and @alice…; 'smi' finds 'Alice Smith'", async () => {
    const tag = uniqueName("t").replace(/_/g, "");
    const bySmith = await member(`x${tag}`, `Alice Smith ${tag}`);
    const byId = await member(`alice${tag}`, `Someone ${tag}`);
    expect((await ids(searcher, `ali ${tag}`)).sort()).toEqual([bySmith.userId, byId.userId].sort());
    expect(await ids(searcher, `smi ${tag}`)).toEqual([bySmith.userId]);
  });

  it("an exact user-id match ranks above display-name prefix matches; profile info breaks ties", async () => {
    const tag = uniqueName("r").replace(/_/g, "");
    const nameMatch = await member(`a${tag}x`, `${tag}y fan`);
    const exactId = await member(tag, null);
    const idPrefix = await member(`${tag}z`, null);
    const withAvatar = await member(`b${tag}x`, `${tag}y fan`, "mxc://test.local/avatar");
    // localpart exact > localpart prefix > display-name prefix (with an avatar first).
    expect(await ids(searcher, tag)).toEqual([exactId.userId, idPrefix.userId, withAvatar.userId, nameMatch.userId]);
    const found = (await search(searcher, tag)).results;
    expect(found[2]).toEqual({ user_id: withAvatar.userId, display_name: `${tag}y fan`, avatar_url: "mxc://test.local/avatar" });
    // Registration gives the localpart as display name (as Synapse).
    expect(found[0]).toEqual({ user_id: exactId.userId, display_name: tag });
  });

  it("limit and limited", async () => {
    const tag = uniqueName("l").replace(/_/g, "");
    for (let i = 0; i < 5; i++) await member(`${tag}m${i}`, null);
    const three = await search(searcher, tag, 3);
    expect(three.results).toHaveLength(3);
    expect(three.limited).toBe(true);
    const all = await search(searcher, tag);
    expect(all.results).toHaveLength(5);
    expect(all.limited).toBe(false);
    expect((await search(searcher, tag, 5)).limited).toBe(false);
    // Above Synapse's cap of 50, and null ("not given"), are fine.
    expect((await search(searcher, tag, 1000)).results).toHaveLength(5);
    const nullLimit = await c.post<SearchBody>(SEARCH, { search_term: tag, limit: null }, { token: searcher.accessToken });
    expect(nullLimit.body.results).toHaveLength(5);
    // 0 (or below) returns nothing; there were more.
    expect(await search(searcher, tag, 0)).toEqual({ limited: true, results: [] });
    expect(await search(searcher, tag, -3)).toEqual({ limited: true, results: [] });
  });

  it("a display-name change is reflected; per-room names are not", async () => {
    const tag = uniqueName("p").replace(/_/g, "");
    const u = await member(`q${tag}`, `Old ${tag}`);
    expect(await ids(searcher, `old ${tag}`)).toEqual([u.userId]);
    await setName(u, `New ${tag}`);
    expect(await ids(searcher, `old ${tag}`)).toEqual([]);
    expect((await search(searcher, `new ${tag}`)).results).toEqual([{ user_id: u.userId, display_name: `New ${tag}` }]);
    // A room nickname (member event only) does not change the directory.
    await setState(c, u, roomId, "m.room.member", u.userId, { membership: "join", displayname: `Nick ${tag}` });
    expect(await ids(searcher, `nick ${tag}`)).toEqual([]);
    expect(await ids(searcher, `new ${tag}`)).toEqual([u.userId]);
  });
});

describe("bad input", () => {
  let u: TestUser;
  beforeAll(async () => {
    u = await registerUser(c);
  });

  it("a missing or non-string search_term, or a non-integer limit, is 400 M_BAD_JSON", async () => {
    for (const body of [{}, { limit: 5 }, { search_term: 5 }, { search_term: null }, { search_term: "x", limit: "5" }, { search_term: "x", limit: 1.5 }, { search_term: "x", limit: true }, [], "\"x\""]) {
      expectError(await c.post(SEARCH, body, { token: u.accessToken }), 400, "M_BAD_JSON");
    }
    expectError(await c.post(SEARCH, "{not json", { token: u.accessToken }), 400, "M_NOT_JSON");
  });

  it("needs an access token, and guests may not search", async () => {
    expectError(await c.post(SEARCH, { search_term: "x" }), 401, "M_MISSING_TOKEN");
    const guest = await c.post(`${V3}/register?kind=guest`, {});
    expect(guest.status, guest.text).toBe(200);
    expectError(await c.post(SEARCH, { search_term: "x" }, { token: guest.body.access_token as string }), 403, "M_GUEST_ACCESS_FORBIDDEN");
  });

  it("a very long term is fine", async () => {
    const res = await c.post(SEARCH, { search_term: "ab ".repeat(5000) + "é".repeat(5000) }, { token: u.accessToken });
    expect(res.status, res.text).toBe(200);
    expect(res.body).toEqual({ limited: false, results: [] });
  });
});

describe("matrix-js-sdk", () => {
  it("searchUserDirectory finds a room-mate", async () => {
    const { u: kim, name } = await named("Kim");
    const lee = await registerUser(c);
    const roomId = await createRoom(c, kim, { preset: "private_chat", invite: [lee.userId] });
    await joinRoom(c, lee, roomId);
    await settled();
    const client = sdk.createClient({ baseUrl: ts.baseUrl, accessToken: lee.accessToken, userId: lee.userId, logger: quiet });
    const res = await client.searchUserDirectory({ term: name.split(" ")[1]!, limit: 5 });
    expect(res).toEqual({ limited: false, results: [{ user_id: kim.userId, display_name: name }] });
  });
});

describe("search_all_users, and a directory built on an upgraded database", () => {
  let ts2: TestServer;
  let c2: Client;
  beforeAll(async () => {
    ts2 = await startTestServer({ config: { user_directory: { search_all_users: true } } });
    c2 = new Client(ts2.baseUrl);
  });
  afterAll(async () => {
    await ts2?.close();
  });

  it("with search_all_users, every local user is found but yourself and the deactivated", async () => {
    const { u: lone, name } = await named("Lone", undefined, c2);
    const other = await registerUser(c2);
    expect(await ids(other, name, undefined, c2, ts2)).toEqual([lone.userId]);
    expect(await ids(lone, name, undefined, c2, ts2)).toEqual([]);
  });

  it("a database without a directory has one built from current state at start", async () => {
    const { u: mia, name } = await named("Mia", undefined, c2);
    const { u: ned, name: nedName } = await named("Ned", undefined, c2);
    const roomId = await createRoom(c2, mia, { preset: "private_chat", invite: [ned.userId] });
    await joinRoom(c2, ned, roomId);
    await settled(ts2);
    // As a server upgraded from before the directory existed: empty tables, no position.
    const db = ts2.server.services.storage.db;
    for (const t of ["user_directory", "user_directory_tokens", "users_in_public_rooms", "users_who_share_private_rooms", "user_directory_stream_pos"] as const) await db.deleteFrom(t).execute();
    expect(await ids(ned, name, undefined, c2, ts2)).toEqual([]);

    ts2 = await ts2.restart();
    c2 = new Client(ts2.baseUrl);
    ts2.config.userDirectory.searchAllUsers = false;
    expect(await ids(ned, name, undefined, c2, ts2)).toEqual([mia.userId]);
    expect(await ids(mia, nedName, undefined, c2, ts2)).toEqual([ned.userId]);
    // And it keeps following from there.
    await leaveRoom(c2, ned, roomId);
    expect(await ids(mia, nedName, undefined, c2, ts2)).toEqual([]);
  });

  it("after a restart, it catches up on the events written since its saved position", async () => {
    ts2.config.userDirectory.searchAllUsers = false;
    const { u: oli, name } = await named("Oli", undefined, c2);
    const pam = await registerUser(c2);
    const roomId = await createRoom(c2, oli, { preset: "private_chat", invite: [pam.userId] });
    await joinRoom(c2, pam, roomId);
    expect(await ids(pam, name, undefined, c2, ts2)).toEqual([oli.userId]);
    // As if the server died after the join committed but before the directory saw it.
    const storage = ts2.server.services.storage;
    const join = await storage.db
      .selectFrom("events")
      .select("stream_ordering")
      .where("room_id", "=", roomId)
      .where("type", "=", "m.room.member")
      .where("state_key", "=", pam.userId)
      .executeTakeFirstOrThrow();
    await storage.db.deleteFrom("users_who_share_private_rooms").where("room_id", "=", roomId).execute();
    await storage.userDirectory.setStreamPos(join.stream_ordering - 1);
    expect(await ids(pam, name, undefined, c2, ts2)).toEqual([]);

    ts2 = await ts2.restart();
    c2 = new Client(ts2.baseUrl);
    ts2.config.userDirectory.searchAllUsers = false;
    expect(await ids(pam, name, undefined, c2, ts2)).toEqual([oli.userId]);
    expect(await ts2.server.services.storage.userDirectory.streamPos()).toBeGreaterThanOrEqual(join.stream_ordering);
  });
});

describe("remote users (two servers)", () => {
  let hs1: TestServer;
  let hs2: TestServer;
  let c1: Client;
  let c2: Client;
  beforeAll(async () => {
    ({ hs1, hs2, c1, c2 } = await startServerPair({ hs1: { config: { user_directory: { prefer_local_users: true } } } }));
  });
  afterAll(async () => {
    await hs1?.close();
    await hs2?.close();
  });

  /** Polls hs1's directory (as `u`) until `pred` holds of the results. */
  async function until(u: TestUser, term: string, pred: (r: Found[]) => boolean): Promise<Found[]> {
    return poll(async () => {
      const res = await search(u, term, undefined, c1, hs1);
      return pred(res.results) ? res.results : undefined;
    });
  }

  it("a remote user is found after joining a shared private room, with the profile their server reports", async () => {
    const tag = uniqueName("f").replace(/_/g, "");
    const alice = await registerUser(c1);
    const bob = await registerUser(c2, `bob${tag}`);
    await setName(bob, `Remote Bobby ${tag}`, c2);
    const roomId = await createRoom(c1, alice, { preset: "private_chat", invite: [bob.userId] });
    await poll(async () => {
      const r = await c2.post(`${V3}/join/${enc(roomId)}?server_name=hs1.test`, {}, { token: bob.accessToken });
      return r.status === 200 ? true : undefined;
    });
    // Found by user id at once; the display name arrives from hs2's profile (not from a private room's member event).
    await until(alice, `bob${tag}`, (r) => r.some((f) => f.user_id === bob.userId));
    const found = await until(alice, `bobby ${tag}`, (r) => r.length > 0);
    expect(found).toEqual([{ user_id: bob.userId, display_name: `Remote Bobby ${tag}` }]);
    // And on hs2, which joined the room with its whole state, bob finds alice.
    await poll(async () => ((await ids(bob, alice.userId, undefined, c2, hs2)).includes(alice.userId) ? true : undefined));
    // Not to a local user who shares no room with them.
    expect(await ids(await registerUser(c1), `bob${tag}`, undefined, c1, hs1)).toEqual([]);
    // Gone once they leave the only room they shared with us.
    expect((await c2.post(`${V3}/rooms/${enc(roomId)}/leave`, {}, { token: bob.accessToken })).status).toBe(200);
    await until(alice, `bob${tag}`, (r) => r.length === 0);
    expect(await hs1.server.services.storage.userDirectory.get(bob.userId)).toBeUndefined();
  });

  it("joining a remote public room by invite: its members are found at once; after leaving, they are gone (SyTest)", async () => {
    const tag = uniqueName("h").replace(/_/g, "");
    const creator = await registerUser(c1);
    await setName(creator, `Creator ${tag}`, c1);
    const remote = await registerUser(c2);
    const roomId = await createRoom(c1, creator, { preset: "public_chat", invite: [remote.userId] });
    await poll(async () => {
      const r = await c2.post(`${V3}/join/${enc(roomId)}?server_name=hs1.test`, {}, { token: remote.accessToken });
      return r.status === 200 ? true : undefined;
    });
    // No polling: once the join has answered and the directory's worker is idle, the room's members are in.
    expect(await ids(remote, `creator ${tag}`, undefined, c2, hs2)).toEqual([creator.userId]);
    expect((await c2.post(`${V3}/rooms/${enc(roomId)}/leave`, {}, { token: remote.accessToken })).status).toBe(200);
    expect(await ids(remote, `creator ${tag}`, undefined, c2, hs2)).toEqual([]);
  });

  it("prefer_local_users ranks local users first; exclude_remote_users drops remote ones", async () => {
    const tag = uniqueName("g").replace(/_/g, "");
    // The remote user's id sorts first ("@a…" < "@z…"), so only the preference puts the local one ahead.
    const remote = await registerUser(c2, `a${tag}`);
    await setName(remote, `Pal ${tag}`, c2);
    const local = await registerUser(c1, `z${tag}`);
    await setName(local, `Pal ${tag}`, c1);
    const roomId = await createRoom(c1, local, { preset: "public_chat" });
    await poll(async () => {
      const r = await c2.post(`${V3}/join/${enc(roomId)}?server_name=hs1.test`, {}, { token: remote.accessToken });
      return r.status === 200 ? true : undefined;
    });
    const searcher = await registerUser(c1);
    // In a public room, the member event's display name is the remote user's directory profile.
    const found = await until(searcher, `pal ${tag}`, (r) => r.length === 2);
    expect(found.map((f) => f.user_id)).toEqual([local.userId, remote.userId]);
    expect(found[1]).toEqual({ user_id: remote.userId, display_name: `Pal ${tag}` });
    hs1.config.userDirectory.preferLocalUsers = false;
    try {
      expect(await ids(searcher, `pal ${tag}`, undefined, c1, hs1)).toEqual([remote.userId, local.userId]);
      hs1.config.userDirectory.excludeRemoteUsers = true;
      expect(await ids(searcher, `pal ${tag}`, undefined, c1, hs1)).toEqual([local.userId]);
    } finally {
      hs1.config.userDirectory.preferLocalUsers = true;
      hs1.config.userDirectory.excludeRemoteUsers = false;
    }
  });
});

const quiet: NonNullable<sdk.ICreateClientOpts["logger"]> = {
  trace: () => {},
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: (...msg: unknown[]) => console.error(...msg),
  getChild: () => quiet,
};
