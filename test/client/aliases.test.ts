/**
 * Room aliases over HTTP (spec "Room aliases", m.room.canonical_alias): the directory's GET/PUT/DELETE,
 * /rooms/{roomId}/aliases, and validation of canonical alias events.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client, expectError, registerUser, type TestUser } from "../helpers/http.js";
import { V3, createRoom, enc, getState, joinRoom, roomWith, setState } from "../helpers/rooms.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

let ts: TestServer;
let c: Client;

beforeAll(async () => {
  ts = await startTestServer();
  c = new Client(ts.baseUrl);
});
afterAll(async () => {
  await ts?.close();
});

const user = () => registerUser(c);
let n = 0;
const newAlias = (prefix = "a") => `#${prefix}${++n}_${Date.now().toString(36)}:test.local`;
const dir = (alias: string) => `${V3}/directory/room/${enc(alias)}`;
const putAlias = (u: TestUser, alias: string, roomId: unknown) => c.put(dir(alias), { room_id: roomId }, { token: u.accessToken });

describe("directory/room", () => {
  it("PUT creates a mapping, GET resolves it (without auth), PUT again is 409", async () => {
    const alice = await user();
    const roomId = await createRoom(c, alice);
    const alias = newAlias();
    const put = await putAlias(alice, alias, roomId);
    expect(put.status, put.text).toBe(200);
    expect(put.body).toEqual({});
    const get = await c.get(dir(alias));
    expect(get.status).toBe(200);
    expect(get.body).toEqual({ room_id: roomId, servers: ["test.local"] });
    const authed = await c.get(dir(alias), { token: alice.accessToken });
    expect(authed.body.room_id).toBe(roomId);
    const other = await createRoom(c, alice);
    const again = await putAlias(alice, alias, other);
    expect(again.status, again.text).toBe(409);
    expect(typeof again.body.errcode).toBe("string");
    expect((await c.get(dir(alias))).body.room_id).toBe(roomId);
  });

  it("404 for an unknown alias; 400 for a malformed one", async () => {
    const alice = await user();
    expectError(await c.get(dir("#nothing_here_at_all:test.local")), 404, "M_NOT_FOUND");
    expectError(await c.get(dir("not-an-alias")), 400, "M_INVALID_PARAM");
    const roomId = await createRoom(c, alice);
    expectError(await putAlias(alice, "no-hash:test.local", roomId), 400, "M_INVALID_PARAM");
    expectError(await putAlias(alice, "#missing-server", roomId), 400, "M_INVALID_PARAM");
  });

  it("PUT refuses other servers' aliases, unknown rooms, non-members and bad bodies", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await createRoom(c, alice, { preset: "public_chat" });
    expectError(await putAlias(alice, "#elsewhere:other.example", roomId), 400, "M_INVALID_PARAM");
    expectError(await putAlias(alice, newAlias(), "!nosuchroom:test.local"), 404, "M_NOT_FOUND");
    expectError(await putAlias(alice, newAlias(), "not-a-room"), 400, "M_INVALID_PARAM");
    expectError(await putAlias(bob, newAlias(), roomId), 403, "M_FORBIDDEN");
    expectError(await c.put(dir(newAlias()), {}, { token: alice.accessToken }), 400, "M_BAD_JSON");
    expectError(await putAlias(alice, newAlias(), 5), 400, "M_BAD_JSON");
    expectError(await c.put(dir(newAlias()), { room_id: roomId }), 401, "M_MISSING_TOKEN");
  });

  it("DELETE by the alias's creator removes it; unknown aliases are 404", async () => {
    const alice = await user();
    const roomId = await createRoom(c, alice);
    const alias = newAlias();
    await putAlias(alice, alias, roomId);
    const del = await c.delete(dir(alias), undefined, { token: alice.accessToken });
    expect(del.status, del.text).toBe(200);
    expect(del.body).toEqual({});
    expectError(await c.get(dir(alias)), 404, "M_NOT_FOUND");
    expectError(await c.delete(dir(alias), undefined, { token: alice.accessToken }), 404, "M_NOT_FOUND");
    // The alias can be reused afterwards.
    expect((await putAlias(alice, alias, roomId)).status).toBe(200);
  });

  it("DELETE needs to be the creator or allowed to change the canonical alias", async () => {
    const alice = await user();
    const bob = await user();
    const carol = await user();
    const roomId = await roomWith(c, alice, [bob, carol], { room_version: "11", power_level_content_override: { users: { [carol.userId]: 50 } } });
    const byBob = newAlias("bob");
    expect((await putAlias(bob, byBob, roomId)).status).toBe(200);
    const byAlice = newAlias("alice");
    await putAlias(alice, byAlice, roomId);
    // Bob (power 0) may delete his own alias but not Alice's.
    expectError(await c.delete(dir(byAlice), undefined, { token: bob.accessToken }), 403, "M_FORBIDDEN");
    const outsider = await user();
    expectError(await c.delete(dir(byAlice), undefined, { token: outsider.accessToken }), 403, "M_FORBIDDEN");
    expect((await c.delete(dir(byBob), undefined, { token: bob.accessToken })).status).toBe(200);
    // Carol has the power to set m.room.canonical_alias (50), so she may delete Alice's.
    expect((await c.delete(dir(byAlice), undefined, { token: carol.accessToken })).status).toBe(200);
  });
});

describe("deleting an alias the room names", () => {
  it("takes it out of m.room.canonical_alias (alias and alt_aliases), keeping the rest", async () => {
    const alice = await user();
    const roomId = await createRoom(c, alice);
    const main = newAlias("main");
    const alt = newAlias("alt");
    const kept = newAlias("kept");
    for (const a of [main, alt, kept]) expect((await putAlias(alice, a, roomId)).status).toBe(200);
    await setState(c, alice, roomId, "m.room.canonical_alias", "", { alias: main, alt_aliases: [alt, kept] });
    expect((await c.delete(dir(main), undefined, { token: alice.accessToken })).status).toBe(200);
    expect(await getState(c, alice, roomId, "m.room.canonical_alias")).toEqual({ alt_aliases: [alt, kept] });
    expect((await c.delete(dir(alt), undefined, { token: alice.accessToken })).status).toBe(200);
    expect(await getState(c, alice, roomId, "m.room.canonical_alias")).toEqual({ alt_aliases: [kept] });
  });

  it("a deleter without the power to change the event still deletes the alias, leaving the event as it is", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await roomWith(c, alice, [bob]);
    const byBob = newAlias("bobs");
    expect((await putAlias(bob, byBob, roomId)).status).toBe(200);
    await setState(c, alice, roomId, "m.room.canonical_alias", "", { alias: byBob });
    expect((await c.delete(dir(byBob), undefined, { token: bob.accessToken })).status).toBe(200);
    expectError(await c.get(dir(byBob)), 404, "M_NOT_FOUND");
    expect(await getState(c, alice, roomId, "m.room.canonical_alias")).toEqual({ alias: byBob });
  });
});

describe("rooms/{roomId}/aliases", () => {
  it("lists the room's local aliases for members; 403 for others unless world readable", async () => {
    const alice = await user();
    const bob = await user();
    const local = `listed_${Date.now().toString(36)}`;
    const roomId = await createRoom(c, alice, { preset: "public_chat", room_alias_name: local });
    const extra = newAlias("extra");
    await putAlias(alice, extra, roomId);
    const res = await c.get(`${V3}/rooms/${enc(roomId)}/aliases`, { token: alice.accessToken });
    expect(res.status, res.text).toBe(200);
    expect((res.body.aliases as string[]).sort()).toEqual([`#${local}:test.local`, extra].sort());
    expectError(await c.get(`${V3}/rooms/${enc(roomId)}/aliases`, { token: bob.accessToken }), 403, "M_FORBIDDEN");
    await joinRoom(c, bob, roomId);
    expect((await c.get(`${V3}/rooms/${enc(roomId)}/aliases`, { token: bob.accessToken })).status).toBe(200);
    const open = await createRoom(c, alice, { preset: "public_chat", initial_state: [{ type: "m.room.history_visibility", content: { history_visibility: "world_readable" } }] });
    const outsider = await user();
    const readable = await c.get(`${V3}/rooms/${enc(open)}/aliases`, { token: outsider.accessToken });
    expect(readable.status, readable.text).toBe(200);
    expect(readable.body).toEqual({ aliases: [] });
    expectError(await c.get(`${V3}/rooms/${enc("bad")}/aliases`, { token: alice.accessToken }), 400, "M_INVALID_PARAM");
  });
});

describe("m.room.canonical_alias", () => {
  it("accepts aliases that point to the room", async () => {
    const alice = await user();
    const roomId = await createRoom(c, alice);
    const main = newAlias("main");
    const alt = newAlias("alt");
    await putAlias(alice, main, roomId);
    await putAlias(alice, alt, roomId);
    await setState(c, alice, roomId, "m.room.canonical_alias", "", { alias: main, alt_aliases: [alt] });
    expect(await getState(c, alice, roomId, "m.room.canonical_alias")).toEqual({ alias: main, alt_aliases: [alt] });
    // Removing the alias entirely is fine.
    await setState(c, alice, roomId, "m.room.canonical_alias", "", {});
    expect(await getState(c, alice, roomId, "m.room.canonical_alias")).toEqual({});
  });

  it("400 M_BAD_ALIAS when an alias does not point to the room", async () => {
    const alice = await user();
    const roomId = await createRoom(c, alice);
    const otherRoom = await createRoom(c, alice);
    const elsewhere = newAlias("elsewhere");
    await putAlias(alice, elsewhere, otherRoom);
    const mine = newAlias("mine");
    await putAlias(alice, mine, roomId);
    const put = (content: object) => c.put(`${V3}/rooms/${enc(roomId)}/state/m.room.canonical_alias/`, content, { token: alice.accessToken });
    expectError(await put({ alias: elsewhere }), 400, "M_BAD_ALIAS");
    expectError(await put({ alias: newAlias("unmapped") }), 400, "M_BAD_ALIAS");
    expectError(await put({ alias: mine, alt_aliases: [elsewhere] }), 400, "M_BAD_ALIAS");
    expectError(await put({ alias: "not an alias" }), 400, "M_INVALID_PARAM");
    expectError(await put({ alt_aliases: "#x:test.local" }), 400, "M_BAD_JSON");
    expectError(await getStateError(alice, roomId), 404, "M_NOT_FOUND");
  });

  it("power still applies: 403 without the canonical alias power level", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await roomWith(c, alice, [bob]);
    const alias = newAlias();
    await putAlias(alice, alias, roomId);
    expectError(await c.put(`${V3}/rooms/${enc(roomId)}/state/m.room.canonical_alias/`, { alias }, { token: bob.accessToken }), 403, "M_FORBIDDEN");
  });
});

function getStateError(u: TestUser, roomId: string) {
  return c.get(`${V3}/rooms/${enc(roomId)}/state/m.room.canonical_alias/`, { token: u.accessToken });
}
