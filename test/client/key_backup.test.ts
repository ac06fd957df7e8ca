/**
 * Server-side key backups (spec "Server-side key backups", key_backup.yaml) over HTTP: every /room_keys endpoint,
 * the rule for keeping the better key of a session, etag and count, writes to a version that is not the current one,
 * deletion at each level, deactivation, and bad input (status and errcode, never a 5xx).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client, expectError, registerUser, type Response, type TestUser } from "../helpers/http.js";
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

const V3 = "/_matrix/client/v3";
const ALGORITHM = "m.megolm_backup.v1.curve25519-aes-sha2";
const enc = encodeURIComponent;

interface KeyData {
  first_message_index: number;
  forwarded_count: number;
  is_verified: boolean;
  session_data: Record<string, unknown>;
}

function key(first_message_index: number, forwarded_count: number, is_verified: boolean, tag = "x"): KeyData {
  return { first_message_index, forwarded_count, is_verified, session_data: { ephemeral: `e-${tag}`, ciphertext: `c-${tag}`, mac: `m-${tag}` } };
}

const authData = (pk = "pubkey") => ({ public_key: pk, signatures: { "@x:example.org": { "ed25519:DEV": "sig" } } });

async function createVersion(u: TestUser, auth = authData()): Promise<string> {
  const res = await c.post(`${V3}/room_keys/version`, { algorithm: ALGORITHM, auth_data: auth }, { token: u.accessToken });
  expect(res.status, res.text).toBe(200);
  expect(typeof res.body.version).toBe("string");
  return res.body.version as string;
}

function keysUrl(version: string, roomId?: string, sessionId?: string): string {
  let path = `${V3}/room_keys/keys`;
  if (roomId !== undefined) path += `/${enc(roomId)}`;
  if (sessionId !== undefined) path += `/${enc(sessionId)}`;
  return `${path}?version=${enc(version)}`;
}

async function putKey(u: TestUser, version: string, roomId: string, sessionId: string, data: KeyData): Promise<{ etag: string; count: number }> {
  const res = await c.put(keysUrl(version, roomId, sessionId), data, { token: u.accessToken });
  expect(res.status, res.text).toBe(200);
  return res.body as { etag: string; count: number };
}

async function getKey(u: TestUser, version: string, roomId: string, sessionId: string): Promise<Response> {
  return c.get(keysUrl(version, roomId, sessionId), { token: u.accessToken });
}

async function info(u: TestUser, version?: string): Promise<Record<string, unknown>> {
  const res = await c.get(`${V3}/room_keys/version${version === undefined ? "" : `/${version}`}`, { token: u.accessToken });
  expect(res.status, res.text).toBe(200);
  return res.body;
}

describe("room_keys/version", () => {
  it("GET with no backup → 404 M_NOT_FOUND", async () => {
    const u = await registerUser(c);
    expectError(await c.get(`${V3}/room_keys/version`, { token: u.accessToken }), 404, "M_NOT_FOUND");
    expectError(await c.get(`${V3}/room_keys/version/1`, { token: u.accessToken }), 404, "M_NOT_FOUND");
  });

  it("POST creates versions as strings; GET gives the latest with count and etag; GET by version gives that one", async () => {
    const u = await registerUser(c);
    const v1 = await createVersion(u, authData("one"));
    const latest = await info(u);
    expect(latest).toEqual({ algorithm: ALGORITHM, auth_data: authData("one"), count: 0, etag: expect.any(String), version: v1 });
    const v2 = await createVersion(u, authData("two"));
    expect(v2).not.toBe(v1);
    expect((await info(u)).version).toBe(v2);
    expect((await info(u)).auth_data).toEqual(authData("two"));
    expect((await info(u, v1)).auth_data).toEqual(authData("one"));
    // The r0 path is served too.
    expect((await c.get("/_matrix/client/r0/room_keys/version", { token: u.accessToken })).body.version).toBe(v2);
  });

  it("versions are per user", async () => {
    const a = await registerUser(c);
    const b = await registerUser(c);
    const v = await createVersion(a);
    expectError(await c.get(`${V3}/room_keys/version`, { token: b.accessToken }), 404, "M_NOT_FOUND");
    expectError(await c.get(`${V3}/room_keys/version/${v}`, { token: b.accessToken }), 404, "M_NOT_FOUND");
    expectError(await c.get(keysUrl(v), { token: b.accessToken }), 404, "M_NOT_FOUND");
  });

  it("more than ten versions can be created (numbers compare as numbers)", async () => {
    const u = await registerUser(c);
    let last = "";
    for (let i = 0; i < 12; i++) last = await createVersion(u);
    expect((await info(u)).version).toBe(last);
  });

  it("an unknown algorithm is kept as opaque; the spec's algorithm needs auth_data.public_key", async () => {
    const u = await registerUser(c);
    const res = await c.post(`${V3}/room_keys/version`, { algorithm: "org.example.backup", auth_data: { anything: 1 } }, { token: u.accessToken });
    expect(res.status).toBe(200);
    expect((await info(u)).algorithm).toBe("org.example.backup");
    // Any value, as Synapse keeps it (older clients and SyTest send a string), and session_data likewise.
    const opaque = await c.post(`${V3}/room_keys/version`, { algorithm: "org.example.backup", auth_data: "opaque" }, { token: u.accessToken });
    expect(opaque.status, opaque.text).toBe(200);
    expect((await info(u)).auth_data).toBe("opaque");
    const v = String(opaque.body.version);
    const put = await c.put(`${V3}/room_keys/keys/${enc("!r:example.org")}/s1?version=${v}`, { first_message_index: 0, forwarded_count: 0, is_verified: false, session_data: "sealed" }, { token: u.accessToken });
    expect(put.status, put.text).toBe(200);
    const got = await c.get(`${V3}/room_keys/keys/${enc("!r:example.org")}/s1?version=${v}`, { token: u.accessToken });
    expect(got.body.session_data).toBe("sealed");
    expectError(await c.post(`${V3}/room_keys/version`, { algorithm: ALGORITHM, auth_data: {} }, { token: u.accessToken }), 400, "M_MISSING_PARAM");
    expectError(await c.post(`${V3}/room_keys/version`, { algorithm: ALGORITHM, auth_data: { public_key: 5 } }, { token: u.accessToken }), 400, "M_INVALID_PARAM");
    expectError(await c.post(`${V3}/room_keys/version`, { algorithm: ALGORITHM, auth_data: { public_key: "k", signatures: [] } }, { token: u.accessToken }), 400, "M_INVALID_PARAM");
  });

  it("POST with a bad body: missing fields, wrong types, not an object, too large", async () => {
    const u = await registerUser(c);
    const post = (body: unknown) => c.post(`${V3}/room_keys/version`, body, { token: u.accessToken });
    expectError(await post({ auth_data: authData() }), 400, "M_MISSING_PARAM");
    expectError(await post({ algorithm: ALGORITHM }), 400, "M_MISSING_PARAM");
    expectError(await post({}), 400, "M_MISSING_PARAM");
    expectError(await post({ algorithm: 1, auth_data: authData() }), 400, "M_INVALID_PARAM");
    expectError(await post({ algorithm: "", auth_data: authData() }), 400, "M_INVALID_PARAM");
    expectError(await post({ algorithm: ALGORITHM, auth_data: "opaque" }), 400, "M_INVALID_PARAM");
    expectError(await post({ algorithm: ALGORITHM, auth_data: [] }), 400, "M_INVALID_PARAM");
    expectError(await post({ algorithm: "org.example.other", auth_data: null }), 400, "M_INVALID_PARAM");
    expectError(await post([1, 2]), 400, "M_BAD_JSON");
    expectError(await post("{not json"), 400, "M_NOT_JSON");
    expectError(await post({ algorithm: ALGORITHM, auth_data: { public_key: "x".repeat(100_000) } }), 413, "M_TOO_LARGE");
    // Nothing was created.
    expectError(await c.get(`${V3}/room_keys/version`, { token: u.accessToken }), 404, "M_NOT_FOUND");
  });

  it("PUT updates auth_data of the current version; version in the body is optional but must match", async () => {
    const u = await registerUser(c);
    const v = await createVersion(u);
    const put = (version: string, body: unknown) => c.put(`${V3}/room_keys/version/${version}`, body, { token: u.accessToken });
    let res = await put(v, { algorithm: ALGORITHM, auth_data: authData("new"), version: v });
    expect(res.status, res.text).toBe(200);
    expect(res.body).toEqual({});
    expect((await info(u, v)).auth_data).toEqual(authData("new"));
    res = await put(v, { algorithm: ALGORITHM, auth_data: authData("newer") });
    expect(res.status).toBe(200);
    expect((await info(u)).auth_data).toEqual(authData("newer"));

    expectError(await put(v, { algorithm: ALGORITHM, auth_data: authData(), version: "999" }), 400, "M_INVALID_PARAM");
    expectError(await put(v, { algorithm: ALGORITHM, auth_data: authData(), version: Number(v) }), 400, "M_INVALID_PARAM");
    expectError(await put(v, { algorithm: "org.example.other", auth_data: authData() }), 400, "M_INVALID_PARAM");
    expectError(await put(v, { auth_data: authData() }), 400, "M_MISSING_PARAM");
    expectError(await put(v, { algorithm: ALGORITHM }), 400, "M_MISSING_PARAM");
    expectError(await put(v, { algorithm: ALGORITHM, auth_data: 3 }), 400, "M_INVALID_PARAM");
    expectError(await put("999", { algorithm: ALGORITHM, auth_data: authData() }), 404, "M_NOT_FOUND");
    expectError(await put("bogus", { algorithm: ALGORITHM, auth_data: authData() }), 404, "M_NOT_FOUND");
    expect((await info(u)).auth_data).toEqual(authData("newer"));
  });

  it("PUT of an older version → 403 M_WRONG_ROOM_KEYS_VERSION with current_version; a deleted one → 404", async () => {
    const u = await registerUser(c);
    const v1 = await createVersion(u, authData("one"));
    const v2 = await createVersion(u, authData("two"));
    const res = await c.put(`${V3}/room_keys/version/${v1}`, { algorithm: ALGORITHM, auth_data: authData("changed") }, { token: u.accessToken });
    expect(expectError(res, 403, "M_WRONG_ROOM_KEYS_VERSION").current_version).toBe(v2);
    expect((await info(u, v1)).auth_data).toEqual(authData("one"));
    await c.delete(`${V3}/room_keys/version/${v2}`, undefined, { token: u.accessToken });
    expectError(await c.put(`${V3}/room_keys/version/${v2}`, { algorithm: ALGORITHM, auth_data: authData() }, { token: u.accessToken }), 404, "M_NOT_FOUND");
  });

  it("DELETE removes the version and its keys; the previous version becomes current; again → 200; unknown → 404", async () => {
    const u = await registerUser(c);
    const v1 = await createVersion(u);
    const v2 = await createVersion(u);
    await putKey(u, v2, "!room:example.org", "s1", key(0, 0, false));
    let res = await c.delete(`${V3}/room_keys/version/${v2}`, undefined, { token: u.accessToken });
    expect(res.status, res.text).toBe(200);
    expect(res.body).toEqual({});
    expect((await info(u)).version).toBe(v1);
    expectError(await c.get(`${V3}/room_keys/version/${v2}`, { token: u.accessToken }), 404, "M_NOT_FOUND");
    expectError(await c.get(keysUrl(v2), { token: u.accessToken }), 404, "M_NOT_FOUND");
    // "If the backup was previously deleted, the call should succeed rather than returning an error."
    res = await c.delete(`${V3}/room_keys/version/${v2}`, undefined, { token: u.accessToken });
    expect(res.status).toBe(200);
    expectError(await c.delete(`${V3}/room_keys/version/999`, undefined, { token: u.accessToken }), 404, "M_NOT_FOUND");
    expectError(await c.delete(`${V3}/room_keys/version/bogus`, undefined, { token: u.accessToken }), 404, "M_NOT_FOUND");
    // A new version never reuses a deleted number, and starts empty.
    const v3 = await createVersion(u);
    expect(Number(v3)).toBeGreaterThan(Number(v2));
    expect((await c.get(keysUrl(v3), { token: u.accessToken })).body).toEqual({ rooms: {} });
    await c.delete(`${V3}/room_keys/version/${v1}`, undefined, { token: u.accessToken });
    await c.delete(`${V3}/room_keys/version/${v3}`, undefined, { token: u.accessToken });
    expectError(await c.get(`${V3}/room_keys/version`, { token: u.accessToken }), 404, "M_NOT_FOUND");
  });

  it("needs an access token and is refused to guests", async () => {
    expectError(await c.get(`${V3}/room_keys/version`), 401, "M_MISSING_TOKEN");
    expectError(await c.put(keysUrl("1", "!r:x", "s"), key(0, 0, false)), 401, "M_MISSING_TOKEN");
    const g = await c.post(`${V3}/register?kind=guest`, {});
    expect(g.status).toBe(200);
    const token = g.body.access_token as string;
    expectError(await c.post(`${V3}/room_keys/version`, { algorithm: ALGORITHM, auth_data: authData() }, { token }), 403, "M_GUEST_ACCESS_FORBIDDEN");
    expectError(await c.get(keysUrl("1"), { token }), 403, "M_GUEST_ACCESS_FORBIDDEN");
  });
});

describe("room_keys/keys", () => {
  const room = "!abcd:example.org";

  it("an empty backup: a missing session → 404, a room → {sessions:{}}, all → {rooms:{}}; an unknown version → 404", async () => {
    const u = await registerUser(c);
    const v = await createVersion(u);
    expectError(await getKey(u, v, "!notaroom", "notasession"), 404, "M_NOT_FOUND");
    expect((await c.get(keysUrl(v, "!notaroom"), { token: u.accessToken })).body).toEqual({ sessions: {} });
    expect((await c.get(keysUrl(v), { token: u.accessToken })).body).toEqual({ rooms: {} });
    expectError(await c.get(keysUrl("bogusversion"), { token: u.accessToken }), 404, "M_NOT_FOUND");
    expectError(await c.get(keysUrl("999", room), { token: u.accessToken }), 404, "M_NOT_FOUND");
  });

  it("PUT at each level stores keys and answers {etag, count}; GET at each level reads them back", async () => {
    const u = await registerUser(c);
    const v = await createVersion(u);
    const r1 = await putKey(u, v, room, "s1", key(3, 0, false, "a"));
    expect(r1).toEqual({ etag: expect.any(String), count: 1 });

    let res = await c.put(keysUrl(v, room), { sessions: { s2: key(0, 1, true, "b"), s3: key(5, 0, false, "c") } }, { token: u.accessToken });
    expect(res.status, res.text).toBe(200);
    expect(res.body.count).toBe(3);
    expect(res.body.etag).not.toBe(r1.etag);

    const other = "!other:example.org";
    res = await c.put(keysUrl(v), { rooms: { [other]: { sessions: { t1: key(1, 0, false, "d") } }, [room]: { sessions: { s4: key(0, 0, false, "e") } } } }, { token: u.accessToken });
    expect(res.status, res.text).toBe(200);
    expect(res.body.count).toBe(5);

    expect((await getKey(u, v, room, "s1")).body).toEqual(key(3, 0, false, "a"));
    expect((await c.get(keysUrl(v, room), { token: u.accessToken })).body).toEqual({
      sessions: { s1: key(3, 0, false, "a"), s2: key(0, 1, true, "b"), s3: key(5, 0, false, "c"), s4: key(0, 0, false, "e") },
    });
    expect((await c.get(keysUrl(v), { token: u.accessToken })).body).toEqual({
      rooms: {
        [room]: { sessions: { s1: key(3, 0, false, "a"), s2: key(0, 1, true, "b"), s3: key(5, 0, false, "c"), s4: key(0, 0, false, "e") } },
        [other]: { sessions: { t1: key(1, 0, false, "d") } },
      },
    });
    const i = await info(u);
    expect(i.count).toBe(5);
    expect(i.etag).toBe(res.body.etag);
    // A room whose id needs escaping, and a session id with '/' and '+' (base64), round-trip through the path.
    await putKey(u, v, "!we/ird?:example.org", "ab/c+d=", key(0, 0, false, "f"));
    expect((await getKey(u, v, "!we/ird?:example.org", "ab/c+d=")).body).toEqual(key(0, 0, false, "f"));
  });

  it("keeps the better key: is_verified wins, then lower first_message_index, then lower forwarded_count", async () => {
    const u = await registerUser(c);
    const v = await createVersion(u);
    const stored = async () => (await getKey(u, v, room, "s")).body.session_data as { ephemeral: string };
    const start = await putKey(u, v, room, "s", key(5, 5, false, "start"));
    // Worse in every way, and a tie: kept as is, the etag does not move.
    let r = await putKey(u, v, room, "s", key(6, 5, false, "worse-index"));
    expect(r.etag).toBe(start.etag);
    r = await putKey(u, v, room, "s", key(5, 6, false, "worse-count"));
    r = await putKey(u, v, room, "s", key(5, 5, false, "tie"));
    expect(r).toEqual(start);
    expect(await stored()).toEqual({ ephemeral: "e-start", ciphertext: "c-start", mac: "m-start" });
    // Lower forwarded_count with the same index replaces it.
    r = await putKey(u, v, room, "s", key(5, 4, false, "better-count"));
    expect(r.etag).not.toBe(start.etag);
    expect((await stored()).ephemeral).toBe("e-better-count");
    // Lower first_message_index wins even with a higher forwarded_count.
    r = await putKey(u, v, room, "s", key(4, 9, false, "better-index"));
    expect((await stored()).ephemeral).toBe("e-better-index");
    // Verified wins even with a worse index and count.
    r = await putKey(u, v, room, "s", key(10, 10, true, "verified"));
    expect((await stored()).ephemeral).toBe("e-verified");
    const verifiedEtag = r.etag;
    // An unverified key never replaces a verified one, however good its index (Synapse's cascade would let it).
    r = await putKey(u, v, room, "s", key(0, 0, false, "unverified"));
    expect(r.etag).toBe(verifiedEtag);
    expect((await stored()).ephemeral).toBe("e-verified");
    // Among verified keys the index and count decide again.
    await putKey(u, v, room, "s", key(2, 0, true, "verified-better"));
    expect(await getKey(u, v, room, "s").then((x) => x.body)).toEqual(key(2, 0, true, "verified-better"));
    expect(r.count).toBe(1);
  });

  it("etag changes whenever the keys change, and only then; count follows", async () => {
    const u = await registerUser(c);
    const v = await createVersion(u);
    const e0 = (await info(u)).etag as string;
    const a = await putKey(u, v, room, "s1", key(1, 0, false));
    expect(a.etag).not.toBe(e0);
    const b = await putKey(u, v, room, "s1", key(1, 0, false));
    expect(b).toEqual(a);
    const cc = await putKey(u, v, room, "s2", key(1, 0, false));
    expect(cc.count).toBe(2);
    expect(new Set([e0, a.etag, cc.etag]).size).toBe(3);
    // Deleting nothing changes nothing; deleting something moves the etag.
    let res = await c.delete(keysUrl(v, room, "nosuch"), undefined, { token: u.accessToken });
    expect(res.body).toEqual(cc);
    res = await c.delete(keysUrl(v, room, "s1"), undefined, { token: u.accessToken });
    expect(res.body.count).toBe(1);
    expect([e0, a.etag, cc.etag]).not.toContain(res.body.etag);
    // Updating auth_data is not a change of keys.
    const before = await info(u);
    await c.put(`${V3}/room_keys/version/${v}`, { algorithm: ALGORITHM, auth_data: authData("rotated") }, { token: u.accessToken });
    expect((await info(u)).etag).toBe(before.etag);
  });

  it("one body naming a session twice (in two levels of nesting) keeps the better key", async () => {
    const u = await registerUser(c);
    const v = await createVersion(u);
    // JSON objects cannot repeat a key, but a session can appear once per room: two rooms, same session id, kept apart.
    const res = await c.put(keysUrl(v), { rooms: { "!a:x": { sessions: { s: key(3, 0, false, "a") } }, "!b:x": { sessions: { s: key(1, 0, false, "b") } } } }, { token: u.accessToken });
    expect(res.body.count).toBe(2);
    expect((await getKey(u, v, "!a:x", "s")).body).toEqual(key(3, 0, false, "a"));
    expect((await getKey(u, v, "!b:x", "s")).body).toEqual(key(1, 0, false, "b"));
  });

  it("writes to an older version → 403 M_WRONG_ROOM_KEYS_VERSION with current_version; reads of it still work", async () => {
    const u = await registerUser(c);
    const v1 = await createVersion(u);
    await putKey(u, v1, room, "s1", key(0, 0, false, "old"));
    const v2 = await createVersion(u);
    for (const url of [keysUrl(v1, room, "s2"), keysUrl(v1, room), keysUrl(v1)]) {
      const body = url === keysUrl(v1, room, "s2") ? key(0, 0, false) : url === keysUrl(v1, room) ? { sessions: {} } : { rooms: {} };
      const res = await c.put(url, body, { token: u.accessToken });
      expect(expectError(res, 403, "M_WRONG_ROOM_KEYS_VERSION").current_version).toBe(v2);
    }
    expect((await getKey(u, v1, room, "s1")).body).toEqual(key(0, 0, false, "old"));
    expect((await info(u, v1)).count).toBe(1);
    // Deleting keys of the older version is allowed (as Synapse).
    const del = await c.delete(keysUrl(v1), undefined, { token: u.accessToken });
    expect(del.status).toBe(200);
    expect(del.body.count).toBe(0);
  });

  it("writes to a version that does not exist → 404 M_NOT_FOUND, with or without a current version", async () => {
    const u = await registerUser(c);
    expectError(await c.put(keysUrl("1", room, "s"), key(0, 0, false), { token: u.accessToken }), 404, "M_NOT_FOUND");
    const v = await createVersion(u);
    expectError(await c.put(keysUrl(String(Number(v) + 1), room, "s"), key(0, 0, false), { token: u.accessToken }), 404, "M_NOT_FOUND");
    expectError(await c.put(keysUrl("bogus", room), { sessions: {} }, { token: u.accessToken }), 404, "M_NOT_FOUND");
    expectError(await c.delete(keysUrl("bogus"), undefined, { token: u.accessToken }), 404, "M_NOT_FOUND");
    await c.delete(`${V3}/room_keys/version/${v}`, undefined, { token: u.accessToken });
    expectError(await c.put(keysUrl(v, room, "s"), key(0, 0, false), { token: u.accessToken }), 404, "M_NOT_FOUND");
  });

  it("DELETE at each level: one session, one room, everything", async () => {
    const u = await registerUser(c);
    const v = await createVersion(u);
    const r2 = "!r2:example.org";
    await c.put(keysUrl(v), { rooms: { [room]: { sessions: { a: key(0, 0, false), b: key(0, 0, false) } }, [r2]: { sessions: { c: key(0, 0, false), d: key(0, 0, false) } } } }, {
      token: u.accessToken,
    });
    let res = await c.delete(keysUrl(v, room, "a"), undefined, { token: u.accessToken });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ etag: expect.any(String), count: 3 });
    expectError(await getKey(u, v, room, "a"), 404, "M_NOT_FOUND");
    res = await c.delete(keysUrl(v, r2), undefined, { token: u.accessToken });
    expect(res.body.count).toBe(1);
    expect((await c.get(keysUrl(v, r2), { token: u.accessToken })).body).toEqual({ sessions: {} });
    expect(Object.keys((await c.get(keysUrl(v), { token: u.accessToken })).body.rooms as object)).toEqual([room]);
    res = await c.delete(keysUrl(v), undefined, { token: u.accessToken });
    expect(res.body.count).toBe(0);
    expect((await c.get(keysUrl(v), { token: u.accessToken })).body).toEqual({ rooms: {} });
    expect((await info(u)).count).toBe(0);
    // The version itself stays.
    expect((await info(u)).version).toBe(v);
  });

  it("the version query parameter is required", async () => {
    const u = await registerUser(c);
    await createVersion(u);
    for (const path of ["/room_keys/keys", `/room_keys/keys/${enc(room)}`, `/room_keys/keys/${enc(room)}/s`]) {
      expectError(await c.get(`${V3}${path}`, { token: u.accessToken }), 400, "M_MISSING_PARAM");
      expectError(await c.delete(`${V3}${path}`, undefined, { token: u.accessToken }), 400, "M_MISSING_PARAM");
      expectError(await c.put(`${V3}${path}`, {}, { token: u.accessToken }), 400, "M_MISSING_PARAM");
    }
    expectError(await c.get(`${V3}/room_keys/keys?version=1&version=2`, { token: u.accessToken }), 400, "M_INVALID_PARAM");
  });

  it("bad key bodies → 400 with the spec's errcodes, and nothing is stored", async () => {
    const u = await registerUser(c);
    const v = await createVersion(u);
    const put = (url: string, body: unknown) => c.put(url, body, { token: u.accessToken });
    const s = keysUrl(v, room, "s");
    const good = key(0, 0, false);
    expectError(await put(s, { ...good, is_verified: "yes" }), 400, "M_INVALID_PARAM");
    expectError(await put(s, { ...good, is_verified: 1 }), 400, "M_INVALID_PARAM");
    expectError(await put(s, { ...good, first_message_index: "1" }), 400, "M_INVALID_PARAM");
    expectError(await put(s, { ...good, first_message_index: 1.5 }), 400, "M_INVALID_PARAM");
    expectError(await put(s, { ...good, first_message_index: -1 }), 400, "M_INVALID_PARAM");
    expectError(await put(s, { ...good, forwarded_count: null }), 400, "M_INVALID_PARAM");
    expectError(await put(s, { ...good, session_data: null }), 400, "M_INVALID_PARAM");
    for (const f of ["first_message_index", "forwarded_count", "is_verified", "session_data"] as const) {
      const partial: Record<string, unknown> = { ...good };
      delete partial[f];
      expectError(await put(s, partial), 400, "M_MISSING_PARAM");
    }
    expectError(await put(s, [good]), 400, "M_BAD_JSON");
    expectError(await put(s, "not json"), 400, "M_NOT_JSON");

    const r = keysUrl(v, room);
    expectError(await put(r, {}), 400, "M_MISSING_PARAM");
    expectError(await put(r, { sessions: [] }), 400, "M_INVALID_PARAM");
    expectError(await put(r, { sessions: { s: "x" } }), 400, "M_INVALID_PARAM");
    // One bad session among good ones: the whole request fails and none is stored.
    expectError(await put(r, { sessions: { ok: good, bad: { ...good, is_verified: null } } }), 400, "M_INVALID_PARAM");
    expectError(await put(r, { sessions: { ["s".repeat(300)]: good } }), 400, "M_INVALID_PARAM");

    const all = keysUrl(v);
    expectError(await put(all, {}), 400, "M_MISSING_PARAM");
    expectError(await put(all, { rooms: "x" }), 400, "M_INVALID_PARAM");
    expectError(await put(all, { rooms: { [room]: [] } }), 400, "M_INVALID_PARAM");
    expectError(await put(all, { rooms: { [room]: {} } }), 400, "M_MISSING_PARAM");
    expectError(await put(all, { rooms: { [room]: { sessions: { ok: good } }, "!b:x": { sessions: { bad: {} } } } }), 400, "M_MISSING_PARAM");

    expect((await c.get(keysUrl(v), { token: u.accessToken })).body).toEqual({ rooms: {} });
    expect((await info(u)).count).toBe(0);
  });

  it("concurrent uploads of one new session both succeed and leave the better key", async () => {
    const u = await registerUser(c);
    const v = await createVersion(u);
    const uploads = [];
    for (let i = 0; i < 10; i++) uploads.push(c.put(keysUrl(v, room, "race"), key(10 - i, 0, false, `k${i}`), { token: u.accessToken }));
    const results = await Promise.all(uploads);
    for (const res of results) expect(res.status, res.text).toBe(200);
    expect((await getKey(u, v, room, "race")).body).toEqual(key(1, 0, false, "k9"));
    expect((await info(u)).count).toBe(1);
  });

  it("a large upload (1,000 sessions over 20 rooms) is stored and counted", async () => {
    const u = await registerUser(c);
    const v = await createVersion(u);
    const rooms: Record<string, { sessions: Record<string, KeyData> }> = {};
    for (let i = 0; i < 1000; i++) ((rooms[`!r${i % 20}:example.org`] ??= { sessions: {} }).sessions[`session${i}`] = key(i, 0, false, String(i)));
    const res = await c.put(keysUrl(v), { rooms }, { token: u.accessToken });
    expect(res.status, res.text).toBe(200);
    expect(res.body.count).toBe(1000);
    const back = await c.get(keysUrl(v), { token: u.accessToken });
    expect(back.body).toEqual({ rooms });
  });
});

describe("deactivation", () => {
  it("deletes the user's backups and keys", async () => {
    const u = await registerUser(c);
    const v = await createVersion(u);
    await putKey(u, v, "!r:example.org", "s", key(0, 0, false));
    const res = await c.post(
      `${V3}/account/deactivate`,
      { auth: { type: "m.login.password", identifier: { type: "m.id.user", user: u.userId }, password: u.password } },
      { token: u.accessToken },
    );
    expect(res.status, res.text).toBe(200);
    const store = ts.server.services.storage.keyBackup;
    expect(await store.currentVersion(u.userId)).toBeUndefined();
    expect(await store.versionIncludingDeleted(u.userId, Number(v))).toBeUndefined();
    expect(await store.count(u.userId, Number(v))).toBe(0);
  });
});
