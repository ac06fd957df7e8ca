/**
 * Room tagging (spec "Room Tagging"): GET/PUT/DELETE of tags, their errors (as Synapse answers them), and their
 * delivery as `m.tag` room account data through /sync.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client, expectError, registerUser, type TestUser } from "../helpers/http.js";
import { V3, createRoom, enc, leaveRoom, sync, syncUntil, type BasicEvent, type SyncResponse } from "../helpers/rooms.js";
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

const tagsUrl = (userId: string, roomId: string, version = "v3") => `/_matrix/client/${version}/user/${enc(userId)}/rooms/${enc(roomId)}/tags`;
const tagUrl = (userId: string, roomId: string, tag: string, version = "v3") => `${tagsUrl(userId, roomId, version)}/${enc(tag)}`;

async function getTags(u: TestUser, roomId: string): Promise<Record<string, unknown>> {
  const res = await c.get(tagsUrl(u.userId, roomId), { token: u.accessToken });
  expect(res.status).toBe(200);
  return res.body.tags as Record<string, unknown>;
}

async function putTag(u: TestUser, roomId: string, tag: string, body: unknown = {}): Promise<void> {
  const res = await c.put(tagUrl(u.userId, roomId, tag), body, { token: u.accessToken });
  expect(res.status, res.text).toBe(200);
  expect(res.body).toEqual({});
}

function mTag(s: SyncResponse, roomId: string): BasicEvent | undefined {
  return (s.rooms.join[roomId]?.account_data.events ?? []).find((e) => e.type === "m.tag");
}

describe("tags", () => {
  let u: TestUser;
  let roomId: string;
  beforeAll(async () => {
    u = await registerUser(c);
    roomId = await createRoom(c, u);
  });

  it("a room without tags has {}", async () => {
    expect(await c.get(tagsUrl(u.userId, roomId), { token: u.accessToken }).then((r) => r.body)).toEqual({ tags: {} });
  });

  it("PUT adds tags with their content, GET lists them, PUT again replaces one", async () => {
    await putTag(u, roomId, "m.favourite", { order: 0.25 });
    await putTag(u, roomId, "u.Work", {});
    await putTag(u, roomId, "org.example.custom", { order: 1, "org.example.colour": "red" });
    expect(await getTags(u, roomId)).toEqual({ "m.favourite": { order: 0.25 }, "u.Work": {}, "org.example.custom": { order: 1, "org.example.colour": "red" } });
    await putTag(u, roomId, "m.favourite", { order: 0.75 });
    expect((await getTags(u, roomId))["m.favourite"]).toEqual({ order: 0.75 });
  });

  it("DELETE removes one tag and keeps the others; deleting an absent tag is 200", async () => {
    const room = await createRoom(c, u);
    await putTag(u, room, "m.lowpriority", {});
    await putTag(u, room, "u.keep", { order: 0.5 });
    const del = await c.delete(tagUrl(u.userId, room, "m.lowpriority"), undefined, { token: u.accessToken });
    expect(del.status).toBe(200);
    expect(del.body).toEqual({});
    expect(await getTags(u, room)).toEqual({ "u.keep": { order: 0.5 } });
    const again = await c.delete(tagUrl(u.userId, room, "m.lowpriority"), undefined, { token: u.accessToken });
    expect(again.status).toBe(200);
    expect((await c.delete(tagUrl(u.userId, room, "u.never"), undefined, { token: u.accessToken })).status).toBe(200);
    expect(await getTags(u, room)).toEqual({ "u.keep": { order: 0.5 } });
  });

  it("tag names are taken from the path, non-ASCII and encoded slashes included", async () => {
    const room = await createRoom(c, u);
    await putTag(u, room, "u.Café ☕", { order: 0.1 });
    await putTag(u, room, "u.a/b", {});
    expect(await getTags(u, room)).toEqual({ "u.Café ☕": { order: 0.1 }, "u.a/b": {} });
  });

  it("a tag of exactly 255 bytes is accepted; 256 bytes → 400 M_INVALID_PARAM", async () => {
    const room = await createRoom(c, u);
    // "é" is two bytes in UTF-8: 2 + 126 * 2 + 1 = 255.
    const max = `u.${"é".repeat(126)}x`;
    expect(Buffer.byteLength(max)).toBe(255);
    await putTag(u, room, max, {});
    expectError(await c.put(tagUrl(u.userId, room, `${max}y`), {}, { token: u.accessToken }), 400, "M_INVALID_PARAM");
    expect(Object.keys(await getTags(u, room))).toEqual([max]);
  });

  it("order: any number is kept as sent (as Synapse); a non-number → 400 M_BAD_JSON", async () => {
    const room = await createRoom(c, u);
    await putTag(u, room, "u.zero", { order: 0 });
    await putTag(u, room, "u.big", { order: 2.5 });
    for (const order of ["0.5", null, true, { n: 1 }, [0.5]]) {
      expectError(await c.put(tagUrl(u.userId, room, "u.bad"), { order }, { token: u.accessToken }), 400, "M_BAD_JSON");
    }
    expect(await getTags(u, room)).toEqual({ "u.zero": { order: 0 }, "u.big": { order: 2.5 } });
  });

  it("a body that is not a JSON object → 400 M_BAD_JSON; not JSON → 400 M_NOT_JSON", async () => {
    for (const body of ["[0.5]", '"text"', "42", "null"]) {
      expectError(await c.put(tagUrl(u.userId, roomId, "u.bad"), body, { token: u.accessToken }), 400, "M_BAD_JSON");
    }
    expectError(await c.put(tagUrl(u.userId, roomId, "u.bad"), "{oops", { token: u.accessToken }), 400, "M_NOT_JSON");
    expect(await getTags(u, roomId)).not.toHaveProperty("u.bad");
  });

  it("is served on r0 too", async () => {
    const room = await createRoom(c, u);
    expect((await c.put(tagUrl(u.userId, room, "u.r0", "r0"), { order: 0.3 }, { token: u.accessToken })).status).toBe(200);
    expect((await c.get(tagsUrl(u.userId, room, "r0"), { token: u.accessToken })).body).toEqual({ tags: { "u.r0": { order: 0.3 } } });
    expect((await c.delete(tagUrl(u.userId, room, "u.r0", "r0"), undefined, { token: u.accessToken })).status).toBe(200);
    expect(await getTags(u, room)).toEqual({});
  });

  it("two concurrent PUTs of different tags both survive", async () => {
    const room = await createRoom(c, u);
    const names = Array.from({ length: 12 }, (_, i) => `u.concurrent${i}`);
    const results = await Promise.all(names.map((t, i) => c.put(tagUrl(u.userId, room, t), { order: i / 20 }, { token: u.accessToken })));
    expect(results.map((r) => r.status)).toEqual(names.map(() => 200));
    expect(Object.keys(await getTags(u, room)).sort()).toEqual([...names].sort());
    // A pair, the case the lock exists for.
    const room2 = await createRoom(c, u);
    await Promise.all([putTag(u, room2, "m.favourite", { order: 0.1 }), putTag(u, room2, "u.Work", {})]);
    expect(await getTags(u, room2)).toEqual({ "m.favourite": { order: 0.1 }, "u.Work": {} });
  });

  it("tags are per user and per room", async () => {
    const other = await registerUser(c);
    const shared = await createRoom(c, u, { preset: "public_chat" });
    expect((await c.post(`${V3}/join/${enc(shared)}`, {}, { token: other.accessToken })).status).toBe(200);
    await putTag(u, shared, "u.mine", {});
    await putTag(other, shared, "u.theirs", {});
    expect(await getTags(u, shared)).toEqual({ "u.mine": {} });
    expect(await getTags(other, shared)).toEqual({ "u.theirs": {} });
    expect(await getTags(u, await createRoom(c, u))).toEqual({});
  });
});

describe("rooms and membership (as Synapse)", () => {
  it("PUT in a room the user has no membership in → 403 M_FORBIDDEN; unknown rooms too", async () => {
    const u = await registerUser(c);
    const owner = await registerUser(c);
    const theirs = await createRoom(c, owner);
    expectError(await c.put(tagUrl(u.userId, theirs, "u.x"), {}, { token: u.accessToken }), 403, "M_FORBIDDEN");
    expectError(await c.put(tagUrl(u.userId, "!nonexistent:test.local", "u.x"), {}, { token: u.accessToken }), 403, "M_FORBIDDEN");
    expectError(await c.put(tagUrl(u.userId, "not-a-room-id", "u.x"), {}, { token: u.accessToken }), 403, "M_FORBIDDEN");
    expect(await getTags(u, theirs)).toEqual({});
  });

  it("GET and DELETE do not check the room: {} and 200", async () => {
    const u = await registerUser(c);
    expect((await c.get(tagsUrl(u.userId, "!nonexistent:test.local"), { token: u.accessToken })).body).toEqual({ tags: {} });
    expect((await c.delete(tagUrl(u.userId, "!nonexistent:test.local", "u.x"), undefined, { token: u.accessToken })).status).toBe(200);
  });

  it("after leaving, the user may still tag the room (any membership will do), and an invite is enough", async () => {
    const u = await registerUser(c);
    const owner = await registerUser(c);
    const room = await createRoom(c, u);
    await leaveRoom(c, u, room);
    await putTag(u, room, "u.archived", {});
    expect(await getTags(u, room)).toEqual({ "u.archived": {} });
    const invited = await createRoom(c, owner);
    expect((await c.post(`${V3}/rooms/${enc(invited)}/invite`, { user_id: u.userId }, { token: owner.accessToken })).status).toBe(200);
    await putTag(u, invited, "u.later", {});
  });
});

describe("authorisation", () => {
  it("another user's tags → 403 M_FORBIDDEN for GET, PUT and DELETE", async () => {
    const u = await registerUser(c);
    const other = await registerUser(c);
    const room = await createRoom(c, other);
    await putTag(other, room, "u.secret", {});
    expectError(await c.get(tagsUrl(other.userId, room), { token: u.accessToken }), 403, "M_FORBIDDEN");
    expectError(await c.put(tagUrl(other.userId, room, "u.evil"), {}, { token: u.accessToken }), 403, "M_FORBIDDEN");
    expectError(await c.delete(tagUrl(other.userId, room, "u.secret"), undefined, { token: u.accessToken }), 403, "M_FORBIDDEN");
    expect(await getTags(other, room)).toEqual({ "u.secret": {} });
  });

  it("needs an access token: 401 M_MISSING_TOKEN, 401 M_UNKNOWN_TOKEN", async () => {
    const u = await registerUser(c);
    const room = await createRoom(c, u);
    expectError(await c.get(tagsUrl(u.userId, room)), 401, "M_MISSING_TOKEN");
    expectError(await c.put(tagUrl(u.userId, room, "u.x"), {}), 401, "M_MISSING_TOKEN");
    expectError(await c.delete(tagUrl(u.userId, room, "u.x")), 401, "M_MISSING_TOKEN");
    expectError(await c.get(tagsUrl(u.userId, room), { token: "not-a-token" }), 401, "M_UNKNOWN_TOKEN");
    expectError(await c.put(tagUrl(u.userId, room, "u.x"), {}, { token: "not-a-token" }), 401, "M_UNKNOWN_TOKEN");
    expectError(await c.delete(tagUrl(u.userId, room, "u.x"), undefined, { token: "not-a-token" }), 401, "M_UNKNOWN_TOKEN");
  });

  it("guests → 403 M_GUEST_ACCESS_FORBIDDEN (not in the spec's guest list; Synapse refuses them)", async () => {
    const g = await c.post("/_matrix/client/v3/register?kind=guest", {});
    expect(g.status).toBe(200);
    const guestId = g.body.user_id as string;
    const token = g.body.access_token as string;
    const room = "!any:test.local";
    expectError(await c.get(tagsUrl(guestId, room), { token }), 403, "M_GUEST_ACCESS_FORBIDDEN");
    expectError(await c.put(tagUrl(guestId, room, "u.x"), {}, { token }), 403, "M_GUEST_ACCESS_FORBIDDEN");
    expectError(await c.delete(tagUrl(guestId, room, "u.x"), undefined, { token }), 403, "M_GUEST_ACCESS_FORBIDDEN");
  });
});

describe("m.tag room account data", () => {
  it("initial /sync carries the room's m.tag; later changes arrive incrementally", async () => {
    const u = await registerUser(c);
    const roomId = await createRoom(c, u);
    await putTag(u, roomId, "m.favourite", { order: 0.5 });

    const initial = await sync(c, u);
    expect(mTag(initial, roomId)).toEqual({ type: "m.tag", content: { tags: { "m.favourite": { order: 0.5 } } } });

    await putTag(u, roomId, "u.Work", {});
    const s1 = await syncUntil(c, u, initial.next_batch, (s) => mTag(s, roomId) !== undefined);
    expect(mTag(s1, roomId)!.content).toEqual({ tags: { "m.favourite": { order: 0.5 }, "u.Work": {} } });

    const del = await c.delete(tagUrl(u.userId, roomId, "m.favourite"), undefined, { token: u.accessToken });
    expect(del.status).toBe(200);
    const s2 = await syncUntil(c, u, s1.next_batch, (s) => mTag(s, roomId) !== undefined);
    expect(mTag(s2, roomId)!.content).toEqual({ tags: { "u.Work": {} } });

    // Nothing new: an incremental sync that returns without the room's m.tag.
    const s3 = await sync(c, u, { since: s2.next_batch, timeout: 0 });
    expect(mTag(s3, roomId)).toBeUndefined();
  });

  it("a long-polling /sync wakes up for a tag change", async () => {
    const u = await registerUser(c);
    const roomId = await createRoom(c, u);
    const s0 = await sync(c, u);
    const waiting = c.get<SyncResponse>(`${V3}/sync?since=${enc(s0.next_batch)}&timeout=20000`, { token: u.accessToken });
    // The put lands while the sync is (most likely) waiting; either way the response must carry it.
    await putTag(u, roomId, "u.woken", {});
    const res = await waiting;
    expect(res.status).toBe(200);
    const s1 = mTag(res.body, roomId) ? res.body : await syncUntil(c, u, res.body.next_batch, (s) => mTag(s, roomId) !== undefined);
    expect(mTag(s1, roomId)!.content).toEqual({ tags: { "u.woken": {} } });
  });

  it("the generic room account data API reads and writes the same m.tag object (Synapse accepts m.tag there)", async () => {
    const u = await registerUser(c);
    const roomId = await createRoom(c, u);
    const dataUrl = `${V3}/user/${enc(u.userId)}/rooms/${enc(roomId)}/account_data/m.tag`;
    await putTag(u, roomId, "u.one", { order: 0.2 });
    expect((await c.get(dataUrl, { token: u.accessToken })).body).toEqual({ tags: { "u.one": { order: 0.2 } } });
    expect((await c.put(dataUrl, { tags: { "u.two": {} } }, { token: u.accessToken })).status).toBe(200);
    expect(await getTags(u, roomId)).toEqual({ "u.two": {} });
    // Content of another shape set there reads as no tags, and the next tag change repairs it.
    expect((await c.put(dataUrl, { tags: "nonsense" }, { token: u.accessToken })).status).toBe(200);
    expect(await getTags(u, roomId)).toEqual({});
    await putTag(u, roomId, "u.three", {});
    expect(await getTags(u, roomId)).toEqual({ "u.three": {} });
  });
});
