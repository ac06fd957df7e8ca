/**
 * Simplified Sliding Sync (MSC4186) over raw HTTP: the room list (count, ranges, order by activity), room results
 * (timeline, required_state with wildcards, $LAZY and $ME, deltas), subscriptions, filters, invites, connection
 * positions (M_UNKNOWN_POS, retries, a restart), long-polling, and the extensions.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client, expectError, login, registerUser, type Response, type TestUser } from "../helpers/http.js";
import { V3, createRoom, enc, inviteUser, joinRoom, leaveRoom, messages, nextTxn, roomWith, send, setState, type Json } from "../helpers/rooms.js";
import { startTestServer, type TestServer } from "../helpers/server.js";
import { makeDevice, signedOtks } from "../helpers/e2e.js";

const PATH = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync";

let ts: TestServer;
let c: Client;

beforeAll(async () => {
  ts = await startTestServer();
  c = new Client(ts.baseUrl);
});
afterAll(async () => {
  await ts?.close();
});

interface SsRoom {
  initial?: boolean;
  name?: string;
  avatar?: string;
  heroes?: { user_id: string; displayname?: string }[];
  required_state?: Json[];
  timeline?: Json[];
  prev_batch?: string;
  limited?: boolean;
  num_live?: number;
  bump_stamp?: number;
  joined_count?: number;
  invited_count?: number;
  notification_count?: number;
  highlight_count?: number;
  is_dm?: boolean;
  invite_state?: Json[];
  membership?: string;
}
interface SsResponse {
  pos: string;
  lists: Record<string, { count: number }>;
  rooms: Record<string, SsRoom>;
  extensions: Record<string, Json>;
}

function raw(u: TestUser, body: Json, query: Record<string, string | number> = {}, client = c): Promise<Response> {
  const q = new URLSearchParams(Object.entries(query).map(([k, v]): [string, string] => [k, String(v)])).toString();
  return client.post(`${PATH}${q ? `?${q}` : ""}`, body, { token: u.accessToken });
}

async function ss(u: TestUser, body: Json, query: Record<string, string | number> = {}, client = c): Promise<SsResponse> {
  const res = await raw(u, body, query, client);
  if (res.status !== 200) throw new Error(`sliding sync: ${res.status} ${res.text}`);
  return res.body as unknown as SsResponse;
}

const user = () => registerUser(c);
const list = (extra: Json = {}) => ({ ranges: [[0, 19]], timeline_limit: 1, required_state: [], ...extra });
const bodiesOf = (r: SsRoom | undefined) => (r?.timeline ?? []).filter((e) => e.type === "m.room.message").map((e) => (e.content as Json).body);
const stateTypes = (r: SsRoom | undefined) => (r?.required_state ?? []).map((e) => `${e.type as string}|${e.state_key as string}`).sort();

/** The first `n` room ids of the user's list in order, one single-room range at a time (fresh connections). */
async function order(u: TestUser, n = 2): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(...Object.keys((await ss(u, { conn_id: "order", lists: { all: list({ ranges: [[i, i]], timeline_limit: 0 }) } })).rooms));
  return out;
}

describe("room list", () => {
  it("counts the rooms and returns those in the ranges, newest activity first", async () => {
    const alice = await user();
    const rooms: string[] = [];
    for (let i = 0; i < 5; i++) rooms.push(await createRoom(c, alice, { name: `R${i}` }));
    const r = await ss(alice, { lists: { all: list({ ranges: [[0, 2]] }) } });
    expect(r.lists.all!.count).toBe(5);
    expect(Object.keys(r.rooms).sort()).toEqual([rooms[4], rooms[3], rooms[2]].sort());
    expect(r.rooms[rooms[4]!]!.initial).toBe(true);
    expect(r.rooms[rooms[4]!]!.name).toBe("R4");

    // A message moves the oldest room to the top.
    await send(c, alice, rooms[0]!, "bump");
    expect(await order(alice)).toEqual([rooms[0], rooms[4]]);
    // Any event orders the list (MSC4186 "Activity ordering"); only the bump types move bump_stamp.
    const before = await ss(alice, { lists: { all: list() } });
    await setState(c, alice, rooms[1]!, "m.room.topic", "", { topic: "t" });
    expect(await order(alice)).toEqual([rooms[1], rooms[0]]);
    const after = await ss(alice, { lists: { all: list() } });
    expect(after.rooms[rooms[1]!]!.bump_stamp).toBe(before.rooms[rooms[1]!]!.bump_stamp);
    expect(after.rooms[rooms[1]!]!.bump_stamp).toBeLessThan(after.rooms[rooms[0]!]!.bump_stamp!);
    await send(c, alice, rooms[1]!, "bump2");
    const last = await ss(alice, { lists: { all: list() } });
    expect(last.rooms[rooms[1]!]!.bump_stamp).toBeGreaterThan(last.rooms[rooms[0]!]!.bump_stamp!);
  });

  it("a room just joined comes to the top though its last message is older", async () => {
    const alice = await user();
    const bob = await user();
    const old = await createRoom(c, bob, { preset: "public_chat" });
    await send(c, bob, old, "long ago");
    const mine = await createRoom(c, alice, {});
    await send(c, alice, mine, "recent");
    const r1 = await ss(alice, { lists: { all: list({ ranges: [[0, 0]] }) } });
    expect(Object.keys(r1.rooms)).toEqual([mine]);
    await joinRoom(c, alice, old);
    const r2 = await ss(alice, { lists: { all: list({ ranges: [[0, 0]] }) } }, { pos: r1.pos });
    expect(Object.keys(r2.rooms)).toEqual([old]);
    expect(bodiesOf(r2.rooms[old])).toEqual([]);
    expect(r2.rooms[old]!.timeline!.at(-1)!.type).toBe("m.room.member");
  });

  it("incremental: a room moving into the range is sent; rooms without news are left out", async () => {
    const alice = await user();
    const a = await createRoom(c, alice, { name: "A" });
    const b = await createRoom(c, alice, { name: "B" });
    const top = await createRoom(c, alice, { name: "Top" });
    const first = await ss(alice, { lists: { all: list({ ranges: [[0, 0]] }) } });
    expect(Object.keys(first.rooms)).toEqual([top]);
    const idle = await ss(alice, { lists: { all: list({ ranges: [[0, 0]] }) } }, { pos: first.pos });
    expect(idle.rooms).toEqual({});
    await send(c, alice, a, "hello");
    const next = await ss(alice, { lists: { all: list({ ranges: [[0, 0]] }) } }, { pos: idle.pos });
    expect(Object.keys(next.rooms)).toEqual([a]);
    expect(next.rooms[a]!.initial).toBe(true);
    expect(next.rooms[a]!.num_live).toBe(1);
    // Widening the range sends the room not sent yet (and not those sent without news since).
    const wider = await ss(alice, { lists: { all: list({ ranges: [[0, 2]] }) } }, { pos: next.pos });
    expect(Object.keys(wider.rooms)).toEqual([b]);
    expect(wider.rooms[b]!.initial).toBe(true);
  });

  it("the kept list follows changes between passes: order, moved windows, and filters whose inputs change", async () => {
    const alice = await user();
    const bob = await user();
    const old = await createRoom(c, alice, { name: "Old" });
    const space = await createRoom(c, alice, { name: "Space", creation_content: { type: "m.space" } });
    const [r0, r1, r2, r3] = [await createRoom(c, alice, { name: "R0" }), await createRoom(c, alice, { name: "R1" }), await createRoom(c, alice, { name: "R2" }), await createRoom(c, alice, { name: "R3" })];
    const filters = { enc: { is_encrypted: true }, fav: { tags: ["m.favourite"] }, dms: { is_dm: true }, inSpace: { spaces: [space] }, rooms: { not_room_types: ["m.space"] } };
    /** A fresh connection's window of one list: its count and rooms in order (everything is sent to a new one). */
    const probe = async (f: Json, ranges = [[0, 9]]) => {
      const r = await ss(alice, { conn_id: "probe", lists: { l: list({ filters: f, ranges, timeline_limit: 0 }) } });
      return [r.lists.l!.count, ...Object.keys(r.rooms)];
    };
    // A long-lived connection with every list: its passes keep the user's list and filter sets up to date.
    const kept = (ranges = [[0, 1]]) => ({ conn_id: "kept", lists: { all: list({ ranges, timeline_limit: 0 }), ...Object.fromEntries(Object.entries(filters).map(([k, f]) => [k, list({ filters: f, ranges: [[0, 0]], timeline_limit: 0 })])) } });
    let r = await ss(alice, kept());
    expect(Object.values(r.lists).map((l) => l.count)).toEqual([6, 0, 0, 0, 0, 5]);
    expect(await probe({}, [[0, 1]])).toEqual([6, r3, r2]);

    // The oldest room moves to the top: the kept connection gets just that room; windows shift by one.
    await send(c, alice, r0, "up");
    r = await ss(alice, kept(), { pos: r.pos });
    expect(Object.keys(r.rooms)).toEqual([r0]);
    expect(await probe(filters.rooms, [[1, 2]])).toEqual([5, r3, r2]);

    // Each filter's input changes: the room's own state, tags, m.direct, the space's children.
    await setState(c, alice, r1, "m.room.encryption", "", { algorithm: "m.megolm.v1.aes-sha2" });
    expect((await c.put(`${V3}/user/${enc(alice.userId)}/rooms/${enc(r2)}/tags/m.favourite`, {}, { token: alice.accessToken })).status).toBe(200);
    expect((await c.put(`${V3}/user/${enc(alice.userId)}/account_data/m.direct`, { [bob.userId]: [r3] }, { token: alice.accessToken })).status).toBe(200);
    await setState(c, alice, space, "m.space.child", r0, { via: ["localhost"] });
    r = await ss(alice, kept(), { pos: r.pos });
    expect(Object.values(r.lists).map((l) => l.count)).toEqual([6, 1, 1, 1, 1, 5]);
    expect(r.rooms[r3]?.is_dm).toBe(true);
    expect(await probe({}, [[0, 4]])).toEqual([6, space, r1, r0, r3, r2]);
    expect(await probe(filters.enc)).toEqual([1, r1]);
    expect(await probe(filters.fav)).toEqual([1, r2]);
    expect(await probe(filters.dms)).toEqual([1, r3]);
    expect(await probe(filters.inSpace)).toEqual([1, r0]);
    expect(await probe(filters.rooms, [[1, 2]])).toEqual([5, r0, r3]);
    // A window moved down on the kept connection sends the rooms it had not sent.
    r = await ss(alice, kept([[3, 5]]), { pos: r.pos });
    expect(Object.keys(r.rooms).filter((id) => (r.rooms[id] as { lists?: string[] }).lists?.includes("all"))).toEqual([old]);

    // Undoing each input.
    await setState(c, alice, space, "m.space.child", r0, {});
    expect((await c.request("DELETE", `${V3}/user/${enc(alice.userId)}/rooms/${enc(r2)}/tags/m.favourite`, { token: alice.accessToken })).status).toBe(200);
    expect((await c.put(`${V3}/user/${enc(alice.userId)}/account_data/m.direct`, {}, { token: alice.accessToken })).status).toBe(200);
    r = await ss(alice, kept(), { pos: r.pos });
    expect(Object.values(r.lists).map((l) => l.count)).toEqual([6, 1, 0, 0, 0, 5]);
    // The user's own memberships change: a room left shows once (on the connection that saw it), a join is listed.
    await leaveRoom(c, alice, r0);
    const joined = await createRoom(c, bob, { name: "Bob's" });
    await inviteUser(c, bob, joined, alice.userId);
    r = await ss(alice, kept(), { pos: r.pos });
    expect(r.rooms[joined]?.membership).toBe("invite");
    expect(r.rooms[r0]?.membership).toBe("leave");
    expect(Object.values(r.lists).map((l) => l.count)).toEqual([7, 1, 0, 0, 0, 6]);
    await joinRoom(c, alice, joined);
    r = await ss(alice, kept(), { pos: r.pos });
    expect(r.rooms[joined]?.membership).toBe("join");
    expect(Object.values(r.lists).map((l) => l.count)).toEqual([6, 1, 0, 0, 0, 5]);
    expect(await probe({}, [[0, 4]])).toEqual([6, joined, space, r1, r3, r2]);
  });

  it("a room the user left shows once; a kick stays in the list", async () => {
    const alice = await user();
    const bob = await user();
    const left = await roomWith(c, alice, [bob], { name: "Left" });
    const kicked = await roomWith(c, alice, [bob], { name: "Kicked" });
    const r1 = await ss(bob, { lists: { all: list() } });
    expect(r1.lists.all!.count).toBe(2);
    await leaveRoom(c, bob, left);
    const kick = await c.post(`${V3}/rooms/${enc(kicked)}/kick`, { user_id: bob.userId }, { token: alice.accessToken });
    expect(kick.status).toBe(200);
    const r2 = await ss(bob, { lists: { all: list() } }, { pos: r1.pos });
    expect(r2.rooms[left]!.membership).toBe("leave");
    expect(r2.rooms[kicked]!.membership).toBe("leave");
    const r3 = await ss(bob, { lists: { all: list() } }, { pos: r2.pos });
    expect(r3.lists.all!.count).toBe(1);
    const fresh = await ss(bob, { lists: { all: list() } });
    expect(Object.keys(fresh.rooms)).toEqual([kicked]);
  });

  it("a withdrawn invite shows as a leave with nothing of the room", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await createRoom(c, alice, { name: "Secret", topic: "hidden" });
    await send(c, alice, roomId, "private");
    await inviteUser(c, alice, roomId, bob.userId);
    const r1 = await ss(bob, { lists: { all: list({ timeline_limit: 5, required_state: [["*", "*"]] }) } });
    expect(r1.rooms[roomId]!.membership).toBe("invite");
    expect((await c.post(`${V3}/rooms/${enc(roomId)}/kick`, { user_id: bob.userId }, { token: alice.accessToken })).status).toBe(200);
    const r2 = await ss(bob, { lists: { all: list({ timeline_limit: 5, required_state: [["*", "*"]] }) } }, { pos: r1.pos });
    const room = r2.rooms[roomId]!;
    expect(room.membership).toBe("leave");
    expect(room.required_state).toEqual([]);
    expect(room.timeline).toEqual([]);
    expect(room.name).toBeUndefined();
  });
});

describe("room results", () => {
  it("timeline_limit, limited, prev_batch into /messages, counts, heroes", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await roomWith(c, alice, [bob]);
    for (let i = 0; i < 5; i++) await send(c, bob, roomId, `m${i}`);
    const r = await ss(alice, { lists: { all: list({ timeline_limit: 3 }) } });
    const room = r.rooms[roomId]!;
    expect(bodiesOf(room)).toEqual(["m2", "m3", "m4"]);
    expect(room.limited).toBe(true);
    expect(room.joined_count).toBe(2);
    expect(room.invited_count).toBe(0);
    expect(room.heroes?.map((h) => h.user_id)).toEqual([bob.userId]);
    expect(room.notification_count).toBeGreaterThanOrEqual(0);
    expect(typeof room.bump_stamp).toBe("number");
    const page = await messages(c, alice, roomId, { from: room.prev_batch!, limit: 2 });
    expect(page.chunk.map((e) => (e.content as Json).body)).toEqual(["m1", "m0"]);

    // Incremental: only the new events, num_live counting them.
    await send(c, bob, roomId, "m5");
    const r2 = await ss(alice, { lists: { all: list({ timeline_limit: 3 }) } }, { pos: r.pos });
    expect(bodiesOf(r2.rooms[roomId])).toEqual(["m5"]);
    expect(r2.rooms[roomId]!.initial).toBeUndefined();
    expect(r2.rooms[roomId]!.limited).toBe(false);
    expect(r2.rooms[roomId]!.num_live).toBe(1);
    // The pos works as a /messages token (as a next_batch does).
    const after = await messages(c, alice, roomId, { from: r2.pos, limit: 1 });
    expect(after.chunk.map((e) => (e.content as Json).body)).toEqual(["m5"]);
  });

  it("notification counts: a room whose counts a receipt cleared comes again with just the counts", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await roomWith(c, alice, [bob]);
    const r1 = await ss(alice, { lists: { all: list() } });
    const eventId = await send(c, bob, roomId, "unread");
    const r2 = await ss(alice, { lists: { all: list() } }, { pos: r1.pos });
    expect(r2.rooms[roomId]!.notification_count).toBe(1);
    expect((await c.post(`${V3}/rooms/${enc(roomId)}/receipt/m.read/${enc(eventId)}`, {}, { token: alice.accessToken })).status).toBe(200);
    const r3 = await ss(alice, { lists: { all: list() } }, { pos: r2.pos, timeout: 2000 });
    expect(r3.rooms[roomId]!.notification_count).toBe(0);
    expect(r3.rooms[roomId]!.timeline).toBeUndefined();
    const r4 = await ss(alice, { lists: { all: list() } }, { pos: r3.pos });
    expect(r4.rooms).toEqual({});
  });

  it("required_state: exact pairs, wildcards, $ME, $LAZY, and only deltas later", async () => {
    const alice = await user();
    const bob = await user();
    const carol = await user();
    const roomId = await roomWith(c, alice, [bob, carol], { name: "State" });
    await setState(c, alice, roomId, "org.example.thing", "a", { v: 1 });
    await setState(c, alice, roomId, "org.example.thing", "b", { v: 2 });
    await send(c, bob, roomId, "from bob");

    const exact = await ss(alice, { lists: { all: list({ required_state: [["m.room.name", ""], ["m.room.create", ""]] }) } });
    expect(stateTypes(exact.rooms[roomId])).toEqual(["m.room.create|", "m.room.name|"]);

    const wild = await ss(alice, { conn_id: "wild", lists: { all: list({ required_state: [["org.example.thing", "*"], ["*", "b"]] }) } });
    expect(stateTypes(wild.rooms[roomId])).toEqual(["org.example.thing|a", "org.example.thing|b"]);

    const me = await ss(alice, { conn_id: "me", lists: { all: list({ required_state: [["m.room.member", "$ME"]] }) } });
    expect(stateTypes(me.rooms[roomId])).toEqual([`m.room.member|${alice.userId}`]);

    const all = await ss(alice, { conn_id: "all", lists: { all: list({ required_state: [["*", "*"]] }) } });
    expect(stateTypes(all.rooms[roomId])).toContain(`m.room.member|${carol.userId}`);

    const lazy = await ss(alice, { conn_id: "lazy", lists: { all: list({ timeline_limit: 1, required_state: [["m.room.member", "$LAZY"]] }) } });
    expect(stateTypes(lazy.rooms[roomId])).toEqual([`m.room.member|${bob.userId}`]);

    // Second response: only what changed. Bob (already sent) again is not repeated; carol's member comes lazily.
    await send(c, bob, roomId, "again");
    const lazy2 = await ss(alice, { conn_id: "lazy", lists: { all: list({ timeline_limit: 1, required_state: [["m.room.member", "$LAZY"]] }) } }, { pos: lazy.pos });
    expect(lazy2.rooms[roomId]!.required_state).toEqual([]);
    await send(c, carol, roomId, "from carol");
    const lazy3 = await ss(alice, { conn_id: "lazy", lists: { all: list({ timeline_limit: 1, required_state: [["m.room.member", "$LAZY"]] }) } }, { pos: lazy2.pos });
    expect(stateTypes(lazy3.rooms[roomId])).toEqual([`m.room.member|${carol.userId}`]);
    // Without a gap, a membership change comes too (dave joins, nobody speaks).
    const dave = await user();
    await joinRoom(c, dave, roomId);
    const lazy4 = await ss(alice, { conn_id: "lazy", lists: { all: list({ timeline_limit: 1, required_state: [["m.room.member", "$LAZY"]] }) } }, { pos: lazy3.pos });
    expect(stateTypes(lazy4.rooms[roomId])).toEqual([`m.room.member|${dave.userId}`]);

    await setState(c, alice, roomId, "m.room.name", "", { name: "Renamed" });
    await setState(c, alice, roomId, "m.room.topic", "", { topic: "not asked for" });
    const exact2 = await ss(alice, { lists: { all: list({ required_state: [["m.room.name", ""], ["m.room.create", ""]] }) } }, { pos: exact.pos });
    expect(stateTypes(exact2.rooms[roomId])).toEqual(["m.room.name|"]);
    expect(exact2.rooms[roomId]!.name).toBe("Renamed");

    // The config grows: the state it adds is sent at once, without news in the room.
    const grown = await ss(alice, { lists: { all: list({ required_state: [["m.room.name", ""], ["m.room.create", ""], ["m.room.topic", ""]] }) } }, { pos: exact2.pos });
    expect(stateTypes(grown.rooms[roomId])).toEqual(["m.room.topic|"]);
  });

  it("a larger timeline_limit re-sends the newest events as an expanded timeline; limit 0 sends none", async () => {
    const alice = await user();
    const roomId = await createRoom(c, alice, {});
    for (let i = 0; i < 4; i++) await send(c, alice, roomId, `e${i}`);
    const r0 = await ss(alice, { lists: { all: list({ timeline_limit: 0 }) } });
    expect(r0.rooms[roomId]!.timeline).toEqual([]);
    expect(r0.rooms[roomId]!.limited).toBe(true);
    const r1 = await ss(alice, { lists: { all: list({ timeline_limit: 1 }) } }, { pos: r0.pos });
    expect(bodiesOf(r1.rooms[roomId])).toEqual(["e3"]);
    expect((r1.rooms[roomId] as Json).expanded_timeline).toBe(true);
    const r3 = await ss(alice, { lists: { all: list({ timeline_limit: 3 }) } }, { pos: r1.pos });
    expect(bodiesOf(r3.rooms[roomId])).toEqual(["e1", "e2", "e3"]);
    // Back to a smaller limit: nothing new to send.
    const small = await ss(alice, { lists: { all: list({ timeline_limit: 1 }) } }, { pos: r3.pos });
    expect(small.rooms).toEqual({});
  });

  it("room_subscriptions: a room outside every list, with its own config; unknown rooms are ignored", async () => {
    const alice = await user();
    const sub = await createRoom(c, alice, { name: "Sub" });
    for (let i = 0; i < 3; i++) await send(c, alice, sub, `s${i}`);
    const other = await createRoom(c, alice, { name: "Top" });
    const r = await ss(alice, {
      lists: { all: list({ ranges: [[0, 0]] }) },
      room_subscriptions: { [sub]: { timeline_limit: 2, required_state: [["m.room.name", ""]] }, "!nope:test.local": { timeline_limit: 1 } },
    });
    expect(Object.keys(r.rooms).sort()).toEqual([other, sub].sort());
    expect(bodiesOf(r.rooms[sub])).toEqual(["s1", "s2"]);
    expect(stateTypes(r.rooms[sub])).toEqual(["m.room.name|"]);
  });

  it("filters: is_dm, is_encrypted, is_invite, room_types", async () => {
    const alice = await user();
    const bob = await user();
    const dm = await createRoom(c, alice, { is_direct: true });
    await c.put(`${V3}/user/${enc(alice.userId)}/account_data/m.direct`, { [bob.userId]: [dm] }, { token: alice.accessToken });
    const encrypted = await createRoom(c, alice, { initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }] });
    const space = await createRoom(c, alice, { creation_content: { type: "m.space" } });
    const invited = await createRoom(c, bob, {});
    await inviteUser(c, bob, invited, alice.userId);

    const r = await ss(alice, {
      lists: {
        dms: list({ filters: { is_dm: true } }),
        enc: list({ filters: { is_encrypted: true } }),
        invites: list({ filters: { is_invite: true } }),
        spaces: list({ filters: { room_types: ["m.space"] } }),
        rooms: list({ filters: { not_room_types: ["m.space"], is_invite: false } }),
      },
    });
    expect(r.lists.dms!.count).toBe(1);
    expect(r.lists.enc!.count).toBe(1);
    expect(r.lists.invites!.count).toBe(1);
    expect(r.lists.spaces!.count).toBe(1);
    expect(r.lists.rooms!.count).toBe(2);
    expect(r.rooms[dm]!.is_dm).toBe(true);
    const r0 = await ss(alice, { conn_id: "dm", lists: { enc: list({ filters: { is_encrypted: true } }) } });
    expect(r0.rooms[encrypted]!.is_dm).toBe(false);
    // Marking a room as a DM sends it again with is_dm, even without news in it.
    await c.put(`${V3}/user/${enc(alice.userId)}/account_data/m.direct`, { [bob.userId]: [dm, encrypted] }, { token: alice.accessToken });
    const dmChange = await ss(alice, { conn_id: "dm", lists: { enc: list({ filters: { is_encrypted: true } }) } }, { pos: r0.pos });
    expect(dmChange.rooms[encrypted]?.is_dm).toBe(true);
    await c.put(`${V3}/user/${enc(alice.userId)}/account_data/m.direct`, { [bob.userId]: [dm] }, { token: alice.accessToken });
    // Tags: tags and not_tags (which wins).
    expect((await c.put(`${V3}/user/${enc(alice.userId)}/rooms/${enc(encrypted)}/tags/m.favourite`, { order: 0.5 }, { token: alice.accessToken })).status).toBe(200);
    expect((await c.put(`${V3}/user/${enc(alice.userId)}/rooms/${enc(space)}/tags/m.favourite`, {}, { token: alice.accessToken })).status).toBe(200);
    expect((await c.put(`${V3}/user/${enc(alice.userId)}/rooms/${enc(space)}/tags/m.lowpriority`, {}, { token: alice.accessToken })).status).toBe(200);
    const tagged = await ss(alice, { conn_id: "tags", lists: { fav: list({ filters: { tags: ["m.favourite"] } }), notlow: list({ filters: { tags: ["m.favourite"], not_tags: ["m.lowpriority"] } }) } });
    expect(tagged.lists.fav!.count).toBe(2);
    expect(tagged.lists.notlow!.count).toBe(1);
    expect(r.rooms[encrypted]!.is_dm).toBe(false);
    expect(r.rooms[space]).toBeDefined();
    // An invite: stripped state only.
    const inv = r.rooms[invited]!;
    expect(inv.membership).toBe("invite");
    expect(inv.invite_state?.some((e) => e.type === "m.room.member" && e.state_key === alice.userId)).toBe(true);
    expect(inv.timeline).toBeUndefined();

    // Joining turns the invite into a full (initial) room.
    await joinRoom(c, alice, invited);
    const r2 = await ss(alice, { lists: { invites: list({ filters: { is_invite: true } }), rooms: list({ filters: { is_invite: false }, timeline_limit: 1 }) } }, { pos: r.pos });
    expect(r2.lists.invites!.count).toBe(0);
    expect(r2.rooms[invited]!.initial).toBe(true);
    expect(r2.rooms[invited]!.membership).toBe("join");
  });
});

describe("room_name_like", () => {
  it("matches part of the name, case-insensitively (an invite by its stripped name), follows renames; a bad value is 400", async () => {
    const alice = await user();
    const bob = await user();
    const cats = await createRoom(c, alice, { name: "All About Cats" });
    await createRoom(c, alice, { name: "Dogs" });
    await createRoom(c, alice, {});
    const invite = await createRoom(c, bob, { name: "cat pictures" });
    await inviteUser(c, bob, invite, alice.userId);
    const body = { conn_id: "names", lists: { l: list({ filters: { room_name_like: "CAT" }, timeline_limit: 0 }) } };
    let r = await ss(alice, body);
    expect(r.lists.l!.count).toBe(2);
    expect(Object.keys(r.rooms).sort()).toEqual([cats, invite].sort());
    await setState(c, alice, cats, "m.room.name", "", { name: "All About Dogs" });
    r = await ss(alice, body, { pos: r.pos });
    expect(r.lists.l!.count).toBe(1);
    expectError(await raw(alice, { lists: { l: list({ filters: { room_name_like: 5 } }) } }), 400, "M_BAD_JSON");
  });
});

describe("client shapes", () => {
  it("answers Element X's two connections (room list, encryption) as it sends them", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await roomWith(c, alice, [bob], { name: "EX" });
    await send(c, bob, roomId, "hello EX");
    const roomList = {
      conn_id: "room-list",
      lists: {
        all_rooms: {
          ranges: [[0, 19]],
          timeline_limit: 1,
          include_heroes: true,
          filters: { not_room_types: ["m.space"] },
          required_state: [
            ["m.room.encryption", ""], ["m.room.member", "$LAZY"], ["m.room.member", "$ME"], ["m.room.name", ""], ["m.room.canonical_alias", ""],
            ["m.room.power_levels", ""], ["org.matrix.msc3401.call.member", "*"], ["m.room.join_rules", ""], ["m.room.tombstone", ""], ["m.room.create", ""],
            ["m.room.history_visibility", ""], ["m.room.pinned_events", ""], ["m.room.topic", ""], ["m.room.avatar", ""],
          ],
        },
      },
      room_subscriptions: {},
      extensions: { account_data: { enabled: true }, receipts: { enabled: true, rooms: ["*"] }, typing: { enabled: true } },
    };
    const r = await ss(alice, roomList, { timeout: 0 });
    const room = r.rooms[roomId]!;
    expect(room.name).toBe("EX");
    expect(bodiesOf(room)).toEqual(["hello EX"]);
    expect(stateTypes(room)).toEqual(expect.arrayContaining(["m.room.create|", "m.room.name|", `m.room.member|${alice.userId}`, `m.room.member|${bob.userId}`]));
    const encryption = { conn_id: "encryption", extensions: { to_device: { enabled: true }, e2ee: { enabled: true } } };
    const e = await ss(alice, encryption, { timeout: 0 });
    expect(e.rooms).toEqual({});
    expect(e.extensions.to_device).toEqual({ next_batch: expect.any(String), events: [] });
    const again = await ss(alice, { ...encryption, extensions: { to_device: { enabled: true, since: (e.extensions.to_device as Json).next_batch }, e2ee: { enabled: true } } }, { pos: e.pos, timeout: 0 });
    expect(again.extensions.e2ee).toMatchObject({ device_lists: { changed: [], left: [] } });
  });
});

describe("connections", () => {
  it("an unknown, foreign or malformed pos is M_UNKNOWN_POS; a retried pos works", async () => {
    const alice = await user();
    const bob = await user();
    await createRoom(c, alice, {});
    const r = await ss(alice, { lists: { all: list() } });
    expectError(await raw(alice, { lists: { all: list() } }, { pos: "garbage" }), 400, "M_UNKNOWN_POS");
    expectError(await raw(alice, { lists: { all: list() } }, { pos: "s1_0_0_0_0_0_0~999999999" }), 400, "M_UNKNOWN_POS");
    expectError(await raw(bob, { lists: { all: list() } }, { pos: r.pos }), 400, "M_UNKNOWN_POS");
    expectError(await raw(alice, { conn_id: "other", lists: { all: list() } }, { pos: r.pos }), 400, "M_UNKNOWN_POS");
    // A retry of the same pos answers the same way (the first answer was lost).
    const roomId = await createRoom(c, alice, { name: "new" });
    const a1 = await ss(alice, { lists: { all: list() } }, { pos: r.pos });
    const a2 = await ss(alice, { lists: { all: list() } }, { pos: r.pos });
    expect(Object.keys(a1.rooms)).toEqual([roomId]);
    expect(Object.keys(a2.rooms)).toEqual([roomId]);
    // Continuing from the second answer makes the older positions unknown.
    await ss(alice, { lists: { all: list() } }, { pos: a2.pos });
    expectError(await raw(alice, { lists: { all: list() } }, { pos: r.pos }), 400, "M_UNKNOWN_POS");
    expectError(await raw(alice, { lists: { all: list() } }, { pos: a1.pos }), 400, "M_UNKNOWN_POS");
  });

  it("concurrent requests (a cancelled one still running) both answer; either pos continues", async () => {
    const alice = await user();
    const roomId = await createRoom(c, alice, { name: "race" });
    const fresh = await Promise.all([raw(alice, { conn_id: "race", lists: { all: list() } }), raw(alice, { conn_id: "race", lists: { all: list() } })]);
    expect(fresh.map((r) => r.status)).toEqual([200, 200]);
    // The later start won: its pos works.
    const ok = (await Promise.all(fresh.map((r) => raw(alice, { conn_id: "race", lists: { all: list() } }, { pos: (r.body as unknown as SsResponse).pos })))).map((r) => r.status);
    expect(ok).toContain(200);
    const base = await ss(alice, { conn_id: "race2", lists: { all: list() } });
    await send(c, alice, roomId, "both see this");
    const [a, b] = await Promise.all([ss(alice, { conn_id: "race2", lists: { all: list() } }, { pos: base.pos }), ss(alice, { conn_id: "race2", lists: { all: list() } }, { pos: base.pos })]);
    expect(bodiesOf(a.rooms[roomId])).toEqual(["both see this"]);
    expect(bodiesOf(b.rooms[roomId])).toEqual(["both see this"]);
    const next = await ss(alice, { conn_id: "race2", lists: { all: list() } }, { pos: b.pos });
    expect(next.rooms).toEqual({});
  });

  it("an abandoned answer's rooms do not count as sent once its sibling is used", async () => {
    const alice = await user();
    const second = await createRoom(c, alice, { name: "second" });
    const top = await createRoom(c, alice, { name: "top" });
    const r = await ss(alice, { lists: { all: list({ ranges: [[0, 0]] }) } });
    expect(Object.keys(r.rooms)).toEqual([top]);
    // This answer (sending `second`) is lost; the client retries from the same pos with the narrower range.
    const lost = await ss(alice, { lists: { all: list({ ranges: [[0, 1]] }) } }, { pos: r.pos });
    expect(Object.keys(lost.rooms)).toEqual([second]);
    const retried = await ss(alice, { lists: { all: list({ ranges: [[0, 0]] }) } }, { pos: r.pos });
    expect(retried.rooms).toEqual({});
    const next = await ss(alice, { lists: { all: list({ ranges: [[0, 1]] }) } }, { pos: retried.pos });
    expect(Object.keys(next.rooms)).toEqual([second]);
    expect(next.rooms[second]!.initial).toBe(true);
    // Once the client continues past the retried pos, the lost answer's pos is gone.
    await ss(alice, { lists: { all: list({ ranges: [[0, 1]] }) } }, { pos: next.pos });
    expectError(await raw(alice, { lists: { all: list() } }, { pos: lost.pos }), 400, "M_UNKNOWN_POS");
  });

  it("a request without pos starts the connection over; conn_ids are separate connections", async () => {
    const alice = await user();
    const roomId = await createRoom(c, alice, { name: "again" });
    const a = await ss(alice, { conn_id: "a", lists: { all: list() } });
    const b = await ss(alice, { conn_id: "b", lists: { all: list() } });
    expect(a.rooms[roomId]!.initial).toBe(true);
    expect(b.rooms[roomId]!.initial).toBe(true);
    const fresh = await ss(alice, { conn_id: "a", lists: { all: list() } });
    expect(fresh.rooms[roomId]!.initial).toBe(true);
    expectError(await raw(alice, { conn_id: "a", lists: { all: list() } }, { pos: a.pos }), 400, "M_UNKNOWN_POS");
    expect((await raw(alice, { conn_id: "b", lists: { all: list() } }, { pos: b.pos })).status).toBe(200);
  });

  it("sticky settings: a list of only ranges keeps the rest; a complete list replaces it", async () => {
    const alice = await user();
    const enc1 = await createRoom(c, alice, { name: "E", initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }] });
    const plain = await createRoom(c, alice, { name: "P" });
    const r1 = await ss(alice, { lists: { l: list({ ranges: [[0, 0]], timeline_limit: 2, required_state: [["m.room.name", ""]], filters: { is_encrypted: true } }) } });
    expect(r1.lists.l!.count).toBe(1);
    const r2 = await ss(alice, { lists: { l: { ranges: [[0, 5]] } } }, { pos: r1.pos });
    expect(r2.lists.l!.count).toBe(1);
    const r3 = await ss(alice, { lists: { l: list({ ranges: [[0, 5]] }) } }, { pos: r2.pos });
    expect(r3.lists.l!.count).toBe(2);
    expect(Object.keys(r3.rooms)).toEqual([plain]);
    expect(r1.rooms[enc1]!.name).toBe("E");
  });

  it("deleting a device drops its connections", async () => {
    const alice = await user();
    const second = await login(c, alice.userId, alice.password);
    const device = { ...alice, accessToken: second.body.access_token as string, deviceId: second.body.device_id as string };
    await ss(device, { conn_id: "x", lists: { all: list() } });
    const store = ts.server.services.storage.slidingSync;
    expect(await store.connectionsOf(alice.userId, device.deviceId)).toHaveLength(1);
    let res = await c.delete(`${V3}/devices/${enc(device.deviceId)}`, {}, { token: alice.accessToken });
    res = await c.delete(`${V3}/devices/${enc(device.deviceId)}`, { auth: { type: "m.login.password", identifier: { type: "m.id.user", user: alice.userId }, password: alice.password, session: res.body.session } }, { token: alice.accessToken });
    expect(res.status, res.text).toBe(200);
    expect(await store.connectionsOf(alice.userId, device.deviceId)).toEqual([]);
  });

  it("housekeeping drops idle connections: their pos is then unknown", async () => {
    const alice = await user();
    const r = await ss(alice, { conn_id: "idle", lists: { all: list() } });
    const store = ts.server.services.storage.slidingSync;
    const [conn] = (await store.connectionsOf(alice.userId, alice.deviceId)).filter((x) => x.conn_id === "idle");
    // Only connections last used before the cut-off go.
    await store.deleteIdleBefore(conn!.last_used_ts);
    expect((await raw(alice, { conn_id: "idle", lists: { all: list() } }, { pos: r.pos })).status).toBe(200);
    await store.deleteIdleBefore(Date.now() + 60_000);
    expectError(await raw(alice, { conn_id: "idle", lists: { all: list() } }, { pos: r.pos }), 400, "M_UNKNOWN_POS");
  });

  it("rejects malformed bodies with 400 and never resets the connection", async () => {
    const alice = await user();
    const bad: [Json | string, string][] = [
      ["[1,2]", "M_BAD_JSON"],
      [{ lists: [] }, "M_BAD_JSON"],
      [{ lists: { a: { ranges: [[0, -1]], timeline_limit: 1 } } }, "M_INVALID_PARAM"],
      [{ lists: { a: { ranges: [[5, 2]], timeline_limit: 1 } } }, "M_INVALID_PARAM"],
      [{ lists: { a: { ranges: [[0, 1e30]], timeline_limit: 1 } } }, "M_INVALID_PARAM"],
      [{ lists: { a: { ranges: [[0]], timeline_limit: 1 } } }, "M_BAD_JSON"],
      [{ lists: { a: { ranges: "0-9", timeline_limit: 1 } } }, "M_BAD_JSON"],
      [{ lists: { a: { ranges: [[0, 1]], timeline_limit: "ten" } } }, "M_BAD_JSON"],
      [{ lists: { a: { ranges: [[0, 1]], timeline_limit: -1 } } }, "M_INVALID_PARAM"],
      [{ lists: { a: { ranges: [[0, 1]], required_state: [["m.room.name"]] } } }, "M_BAD_JSON"],
      [{ lists: { a: { ranges: [[0, 1]], filters: { is_dm: "yes" } } } }, "M_BAD_JSON"],
      [{ conn_id: 5 }, "M_BAD_JSON"],
      [{ room_subscriptions: { "!a:b": 3 } }, "M_BAD_JSON"],
      [{ extensions: { to_device: { enabled: true, since: "x" } } }, "M_INVALID_PARAM"],
      [{ lists: Object.fromEntries(Array.from({ length: 101 }, (_, i) => [`l${i}`, list()])) }, "M_INVALID_PARAM"],
    ];
    const ok = await ss(alice, { lists: { all: list() } });
    for (const [body, errcode] of bad) {
      const res = typeof body === "string" ? await c.request("POST", PATH, { token: alice.accessToken, body }) : await raw(alice, body, { pos: ok.pos });
      expect(res.status, JSON.stringify(body).slice(0, 80)).toBe(400);
      expect(res.body.errcode as unknown, JSON.stringify(body).slice(0, 80)).toBe(errcode);
    }
    expectError(await raw(alice, {}, { timeout: "soon" }), 400, "M_INVALID_PARAM");
    expectError(await raw(alice, {}, { set_presence: "dancing" }), 400, "M_INVALID_PARAM");
    // The connection is still there.
    expect((await raw(alice, { lists: { all: list() } }, { pos: ok.pos })).status).toBe(200);
    expect((await c.post(PATH, {})).status).toBe(401);
  });

  it("long-polls: woken by a message, or answering empty at the timeout", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await roomWith(c, alice, [bob]);
    const r = await ss(alice, { lists: { all: list() } });
    const t0 = Date.now();
    const empty = await ss(alice, { lists: { all: list() } }, { pos: r.pos, timeout: 300 });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    expect(empty.rooms).toEqual({});
    const waiting = ss(alice, { lists: { all: list() } }, { pos: empty.pos, timeout: 10_000 });
    await new Promise((res) => setTimeout(res, 100));
    const t1 = Date.now();
    await send(c, bob, roomId, "wake up");
    const woken = await waiting;
    expect(Date.now() - t1).toBeLessThan(5000);
    expect(bodiesOf(woken.rooms[roomId])).toEqual(["wake up"]);
  });

  it("survives a restart", async () => {
    const own = await startTestServer();
    try {
      const oc = new Client(own.baseUrl);
      const alice = await registerUser(oc);
      const roomId = await createRoom(oc, alice, { name: "Durable" });
      const r = await ss(alice, { lists: { all: list({ required_state: [["m.room.name", ""]] }) } }, {}, oc);
      expect(r.rooms[roomId]!.initial).toBe(true);
      const again = await own.restart();
      try {
        const ac = new Client(again.baseUrl);
        await send(ac, alice, roomId, "after restart");
        const r2 = await ss(alice, { lists: { all: list({ required_state: [["m.room.name", ""]] }) } }, { pos: r.pos }, ac);
        expect(r2.rooms[roomId]!.initial).toBeUndefined();
        expect(bodiesOf(r2.rooms[roomId])).toEqual(["after restart"]);
        expect(r2.rooms[roomId]!.required_state).toEqual([]);
      } finally {
        await again.close();
      }
    } finally {
      await own.close();
    }
  });
});

describe("extensions", () => {
  it("to_device: delivered until acknowledged by the next since, never lost or repeated", async () => {
    const alice = await user();
    const bob = await user();
    const sendTd = async (n: number) => {
      const messages = { [bob.userId]: { [bob.deviceId]: { n } } };
      const res = await c.put(`${V3}/sendToDevice/m.test/${nextTxn()}`, { messages }, { token: alice.accessToken });
      expect(res.status).toBe(200);
    };
    for (let i = 0; i < 3; i++) await sendTd(i);
    const ext = (since?: string, limit = 2) => ({ extensions: { to_device: { enabled: true, limit, ...(since ? { since } : {}) } } });
    const r1 = await ss(bob, ext());
    const td1 = r1.extensions.to_device as { next_batch: string; events: Json[] };
    expect(td1.events.map((e) => (e.content as Json).n)).toEqual([0, 1]);
    // Not acknowledged (the answer was lost): the same messages again.
    const retry = await ss(bob, ext(undefined), { pos: r1.pos });
    expect((retry.extensions.to_device as { events: Json[] }).events.map((e) => (e.content as Json).n)).toEqual([0, 1]);
    await sendTd(3);
    const r2 = await ss(bob, ext(td1.next_batch), { pos: r1.pos });
    const td2 = r2.extensions.to_device as { next_batch: string; events: Json[] };
    expect(td2.events.map((e) => (e.content as Json).n)).toEqual([2, 3]);
    const r3 = await ss(bob, ext(td2.next_batch), { pos: r2.pos });
    expect((r3.extensions.to_device as { events: Json[] }).events).toEqual([]);
  });

  it("e2ee: key counts and device_lists changes", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await createRoom(c, alice, { preset: "public_chat" });
    const device = makeDevice(alice.userId, alice.deviceId);
    const keys = await c.post(`${V3}/keys/upload`, { device_keys: device.deviceKeys, one_time_keys: signedOtks(device, 2) }, { token: alice.accessToken });
    expect(keys.status, keys.text).toBe(200);
    const r1 = await ss(alice, { extensions: { e2ee: { enabled: true } } });
    const e1 = r1.extensions.e2ee as { device_one_time_keys_count: Record<string, number>; device_lists: { changed: string[] } };
    expect(e1.device_one_time_keys_count.signed_curve25519).toBe(2);
    // Sticky: later requests need not repeat the extension.
    await joinRoom(c, bob, roomId);
    const r2 = await ss(alice, {}, { pos: r1.pos });
    const e2 = r2.extensions.e2ee as { device_lists: { changed: string[]; left: string[] } };
    expect(e2.device_lists.changed).toContain(bob.userId);
    await leaveRoom(c, bob, roomId);
    const r3 = await ss(alice, {}, { pos: r2.pos });
    expect((r3.extensions.e2ee as { device_lists: { left: string[] } }).device_lists.left).toContain(bob.userId);
  });

  it("account_data, receipts and typing for the rooms in the lists", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await roomWith(c, alice, [bob]);
    const eventId = await send(c, bob, roomId, "read me");
    await c.put(`${V3}/user/${enc(alice.userId)}/account_data/org.example.global`, { g: 1 }, { token: alice.accessToken });
    await c.put(`${V3}/user/${enc(alice.userId)}/rooms/${enc(roomId)}/account_data/org.example.room`, { r: 1 }, { token: alice.accessToken });
    const body = { lists: { all: list() }, extensions: { account_data: { enabled: true }, receipts: { enabled: true }, typing: { enabled: true } } };
    const r1 = await ss(alice, body);
    const ad = r1.extensions.account_data as { global: Json[]; rooms: Record<string, Json[]> };
    expect(ad.global.some((e) => e.type === "org.example.global")).toBe(true);
    expect(ad.global.some((e) => e.type === "m.push_rules")).toBe(true);
    expect(ad.rooms[roomId]?.some((e) => e.type === "org.example.room")).toBe(true);

    expect((await c.post(`${V3}/rooms/${enc(roomId)}/receipt/m.read/${enc(eventId)}`, {}, { token: bob.accessToken })).status).toBe(200);
    expect((await c.put(`${V3}/rooms/${enc(roomId)}/typing/${enc(bob.userId)}`, { typing: true, timeout: 30000 }, { token: bob.accessToken })).status).toBe(200);
    const r2 = await ss(alice, body, { pos: r1.pos, timeout: 1000 });
    const receipts = (r2.extensions.receipts as { rooms: Record<string, Json> }).rooms[roomId];
    expect(receipts?.type).toBe("m.receipt");
    expect(JSON.stringify(receipts)).toContain(bob.userId);
    const typing = (r2.extensions.typing as { rooms: Record<string, { content: { user_ids: string[] } }> }).rooms[roomId];
    expect(typing?.content.user_ids).toEqual([bob.userId]);
    // Only changes afterwards.
    const r3 = await ss(alice, body, { pos: r2.pos });
    expect((r3.extensions.account_data as { global: Json[] }).global).toEqual([]);
    expect((r3.extensions.receipts as { rooms: Json }).rooms).toEqual({});
  });
});
