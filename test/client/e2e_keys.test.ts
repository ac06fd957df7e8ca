/**
 * E2EE keys over HTTP (spec "End-to-End Encryption", Key management API): POST /keys/upload (device keys checked
 * and self-signed, identity kept, one-time and fallback keys, caps), /keys/query, /keys/claim (atomic under
 * concurrency, fallback keys), /keys/changes, the key counts in /sync, and keys going with a deleted device.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { signJson } from "../../src/core/crypto/signing.js";
import type { JsonObject } from "../../src/core/json/types.js";
import { curveKey, makeDevice, signedOtks, type TestDevice } from "../helpers/e2e.js";
import { Client, expectError, login, registerUser, type TestUser } from "../helpers/http.js";
import { V3, roomWith, sync, type Json } from "../helpers/rooms.js";
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

const upload = (u: TestUser, body: Json) => c.post<Json>(`${V3}/keys/upload`, body, { token: u.accessToken });
const query = (u: TestUser, deviceKeys: Json, extra: Json = {}) => c.post<Json>(`${V3}/keys/query`, { device_keys: deviceKeys, ...extra }, { token: u.accessToken });
const claim = (u: TestUser, oneTimeKeys: Json) => c.post<Json>(`${V3}/keys/claim`, { one_time_keys: oneTimeKeys }, { token: u.accessToken });

async function userWithKeys(): Promise<{ u: TestUser; d: TestDevice }> {
  const u = await registerUser(c);
  const d = makeDevice(u.userId, u.deviceId);
  const r = await upload(u, { device_keys: d.deviceKeys });
  expect(r.status, r.text).toBe(200);
  return { u, d };
}

describe("POST /keys/upload", () => {
  it("stores self-signed device keys and one-time keys; counts include signed_curve25519 0", async () => {
    const u = await registerUser(c);
    const d = makeDevice(u.userId, u.deviceId);
    const empty = await upload(u, {});
    expect(empty.body).toEqual({ one_time_key_counts: { signed_curve25519: 0 } });
    const r = await upload(u, { device_keys: d.deviceKeys, one_time_keys: signedOtks(d, 5) });
    expect(r.status, r.text).toBe(200);
    expect(r.body).toEqual({ one_time_key_counts: { signed_curve25519: 5 } });
    // An identical re-upload (a retry) is fine and adds nothing.
    const again = await upload(u, { device_keys: d.deviceKeys });
    expect(again.body).toEqual({ one_time_key_counts: { signed_curve25519: 5 } });
    const q = await query(u, { [u.userId]: [] });
    const mine = (q.body.device_keys as Record<string, Record<string, JsonObject>>)[u.userId]![u.deviceId]!;
    expect(mine.keys).toEqual(d.deviceKeys.keys);
    expect(mine.signatures).toEqual(d.deviceKeys.signatures);
    expect(mine.unsigned).toEqual({});
  });

  it("refuses device keys for another user or device, unsigned, badly signed or malformed; stores nothing", async () => {
    const u = await registerUser(c);
    const other = makeDevice("@someone:else", u.deviceId);
    expectError(await upload(u, { device_keys: other.deviceKeys }), 400, "M_INVALID_PARAM");
    expectError(await upload(u, { device_keys: makeDevice(u.userId, "NOTMINE").deviceKeys }), 400, "M_INVALID_PARAM");
    const d = makeDevice(u.userId, u.deviceId);
    const { signatures: _s, ...unsigned } = d.deviceKeys;
    expectError(await upload(u, { device_keys: unsigned }), 400, "M_BAD_JSON");
    expectError(await upload(u, { device_keys: { ...unsigned, signatures: {} } }), 400, "M_INVALID_SIGNATURE");
    // Signed by some other key.
    const forged = signJson(unsigned as JsonObject, u.userId, makeDevice(u.userId, u.deviceId).signing);
    expectError(await upload(u, { device_keys: forged }), 400, "M_INVALID_SIGNATURE");
    // Content changed after signing.
    expectError(await upload(u, { device_keys: { ...d.deviceKeys, algorithms: ["x"] } }), 400, "M_INVALID_SIGNATURE");
    // Not base64, wrong key names, wrong types.
    const bad = signJson({ ...(unsigned as JsonObject), keys: { ...(unsigned.keys as JsonObject), [`curve25519:${u.deviceId}`]: "not base64!" } }, u.userId, d.signing);
    expectError(await upload(u, { device_keys: bad }), 400, "M_INVALID_PARAM");
    const misnamed = signJson({ ...(unsigned as JsonObject), keys: { ...(unsigned.keys as JsonObject), "curve25519:OTHER": curveKey() } }, u.userId, d.signing);
    expectError(await upload(u, { device_keys: misnamed }), 400, "M_INVALID_PARAM");
    expectError(await upload(u, { device_keys: "x" }), 400, "M_BAD_JSON");
    // Once any of algorithms, keys and signatures is given, all three must be, well-typed.
    expectError(await upload(u, { device_keys: { user_id: u.userId, device_id: u.deviceId, keys: { "ed25519:test": curveKey() } } }), 400, "M_BAD_JSON");
    expectError(await upload(u, { device_keys: { ...d.deviceKeys, algorithms: "x" } }), 400, "M_BAD_JSON");
    expectError(await upload(u, { device_keys: { ...d.deviceKeys, keys: [] } }), 400, "M_BAD_JSON");
    expectError(await upload(u, { device_keys: { device_id: u.deviceId } }), 400, "M_BAD_JSON");
    expectError(await upload(u, { device_keys: { user_id: u.userId, device_id: 7 } }), 400, "M_BAD_JSON");
    const noEd = signJson({ ...(unsigned as JsonObject), keys: { [`curve25519:${u.deviceId}`]: curveKey() } }, u.userId, d.signing);
    expectError(await upload(u, { device_keys: noEd }), 400, "M_BAD_JSON");
    // A bad one-time key refuses the whole upload: the good device keys beside it are not stored either.
    expectError(await upload(u, { device_keys: d.deviceKeys, one_time_keys: { "signed_curve25519:a": { key: "!!" } } }), 400, "M_INVALID_PARAM");
    const q = await query(u, { [u.userId]: [] });
    expect(q.body.device_keys).toEqual({ [u.userId]: {} });
  });

  it("device_keys naming only the user and device is a device without identity keys (as Synapse): stored, shown, announced", async () => {
    const u = await registerUser(c);
    const mate = await registerUser(c);
    await roomWith(c, mate, [u]);
    const since = (await sync(c, mate)).next_batch;
    const r = await upload(u, { device_keys: { user_id: u.userId, device_id: u.deviceId }, one_time_keys: { "ed25519:test": curveKey() } });
    expect(r.status, r.text).toBe(200);
    expect(r.body).toEqual({ one_time_key_counts: { signed_curve25519: 0, ed25519: 1 } });
    const q = await query(mate, { [u.userId]: [] });
    expect((q.body.device_keys as Json)[u.userId]).toEqual({ [u.deviceId]: { user_id: u.userId, device_id: u.deviceId, unsigned: {} } });
    expect((await sync(c, mate, { since })).device_lists.changed).toContain(u.userId);
    // It may gain identity keys later (it had none to keep); then it keeps them.
    const d = makeDevice(u.userId, u.deviceId);
    expect((await upload(u, { device_keys: d.deviceKeys })).status).toBe(200);
    const q2 = await query(mate, { [u.userId]: [] });
    expect(((q2.body.device_keys as Json)[u.userId] as Record<string, JsonObject>)[u.deviceId]!.keys).toEqual(d.deviceKeys.keys);
    expectError(await upload(u, { device_keys: { user_id: u.userId, device_id: u.deviceId } }), 400, "M_INVALID_PARAM");
  });

  it("keeps a device's identity: different keys for an existing device id are refused", async () => {
    const { u } = await userWithKeys();
    expectError(await upload(u, { device_keys: makeDevice(u.userId, u.deviceId).deviceKeys }), 400, "M_INVALID_PARAM");
  });

  it("one-time keys: names, signatures, identical re-upload fine, different content refused, caps", async () => {
    const { u, d } = await userWithKeys();
    const otks = signedOtks(d, 3);
    expect((await upload(u, { one_time_keys: otks })).body).toEqual({ one_time_key_counts: { signed_curve25519: 3 } });
    expect((await upload(u, { one_time_keys: otks })).body).toEqual({ one_time_key_counts: { signed_curve25519: 3 } });
    expectError(await upload(u, { one_time_keys: { "signed_curve25519:k0": signJson({ key: curveKey() }, u.userId, d.signing) } }), 400, "M_INVALID_PARAM");
    expectError(await upload(u, { one_time_keys: { nocolon: curveKey() } }), 400, "M_INVALID_PARAM");
    expectError(await upload(u, { one_time_keys: { "signed_curve25519:x": curveKey() } }), 400, "M_INVALID_SIGNATURE");
    expectError(await upload(u, { one_time_keys: { "signed_curve25519:x": { key: curveKey() } } }), 400, "M_INVALID_SIGNATURE");
    expectError(await upload(u, { one_time_keys: { "signed_curve25519:x": signJson({ key: curveKey() }, u.userId, makeDevice(u.userId, u.deviceId).signing) } }), 400, "M_INVALID_SIGNATURE");
    expectError(await upload(u, { one_time_keys: { "curve25519:x": "short" } }), 400, "M_INVALID_PARAM");
    expectError(await upload(u, { one_time_keys: { "curve25519:x": 5 } }), 400, "M_BAD_JSON");
    expectError(await upload(u, { one_time_keys: signedOtks(d, 501, "big") }), 400, "M_INVALID_PARAM");
    for (let i = 0; i < 2; i++) expect((await upload(u, { one_time_keys: signedOtks(d, 450, `p${i}_`) })).status).toBe(200);
    expectError(await upload(u, { one_time_keys: signedOtks(d, 200, "over") }), 400, "M_INVALID_PARAM");
    expect((await upload(u, {})).body).toEqual({ one_time_key_counts: { signed_curve25519: 903 } });
    // Other algorithms are the client's business.
    expect((await upload(u, { one_time_keys: { "my_algorithm:1": "abc" } })).body).toEqual({ one_time_key_counts: { signed_curve25519: 903, my_algorithm: 1 } });
  });

  it("needs a device; bad JSON is 400", async () => {
    const u = await registerUser(c);
    const r = await c.post(`${V3}/keys/upload`, "[1", { token: u.accessToken });
    expect(r.status).toBe(400);
    expectError(await upload(u, { one_time_keys: [] }), 400, "M_BAD_JSON");
    expectError(await c.post(`${V3}/keys/upload`, {}), 401, "M_MISSING_TOKEN");
  });
});

describe("POST /keys/claim", () => {
  it("hands each key out once, then the fallback key, which stays (used)", async () => {
    const { u, d } = await userWithKeys();
    const fb = signJson({ key: curveKey(), fallback: true }, u.userId, d.signing);
    expect((await upload(u, { one_time_keys: signedOtks(d, 2), fallback_keys: { "signed_curve25519:fb1": fb } })).status).toBe(200);
    let s = await sync(c, u);
    expect(s.device_unused_fallback_key_types).toEqual(["signed_curve25519"]);
    expect(s.device_one_time_keys_count).toEqual({ signed_curve25519: 2 });
    const claimer = await registerUser(c);
    const got = new Set<string>();
    for (let i = 0; i < 2; i++) {
      const r = await claim(claimer, { [u.userId]: { [u.deviceId]: "signed_curve25519" } });
      expect(r.status, r.text).toBe(200);
      const keys = (r.body.one_time_keys as Json)[u.userId] as Record<string, Record<string, unknown>>;
      got.add(Object.keys(keys[u.deviceId]!)[0]!);
    }
    expect(got).toEqual(new Set(["signed_curve25519:k0", "signed_curve25519:k1"]));
    for (let i = 0; i < 2; i++) {
      const r = await claim(claimer, { [u.userId]: { [u.deviceId]: "signed_curve25519" } });
      expect(r.body.one_time_keys).toEqual({ [u.userId]: { [u.deviceId]: { "signed_curve25519:fb1": fb } } });
      expect(r.body.failures).toEqual({});
    }
    s = await sync(c, u);
    expect(s.device_unused_fallback_key_types).toEqual([]);
    expect(s.device_one_time_keys_count).toEqual({ signed_curve25519: 0 });
    // A new fallback key replaces the used one, unused; the same one again changes nothing.
    const fb2 = signJson({ key: curveKey(), fallback: true }, u.userId, d.signing);
    await upload(u, { fallback_keys: { "signed_curve25519:fb2": fb2 } });
    expect((await sync(c, u)).device_unused_fallback_key_types).toEqual(["signed_curve25519"]);
    const r = await claim(claimer, { [u.userId]: { [u.deviceId]: "signed_curve25519" } });
    expect(r.body.one_time_keys).toEqual({ [u.userId]: { [u.deviceId]: { "signed_curve25519:fb2": fb2 } } });
    await upload(u, { fallback_keys: { "signed_curve25519:fb2": fb2 } });
    expect((await sync(c, u)).device_unused_fallback_key_types).toEqual([]);
    expectError(await upload(u, { fallback_keys: { "signed_curve25519:a": fb, "signed_curve25519:b": fb2 } }), 400, "M_INVALID_PARAM");
  });

  it("is atomic: concurrent claims never get the same key", async () => {
    const { u, d } = await userWithKeys();
    await upload(u, { one_time_keys: signedOtks(d, 30) });
    const claimer = await registerUser(c);
    const results = await Promise.all(Array.from({ length: 40 }, () => claim(claimer, { [u.userId]: { [u.deviceId]: "signed_curve25519" } })));
    const ids: string[] = [];
    for (const r of results) {
      expect(r.status, r.text).toBe(200);
      const dev = ((r.body.one_time_keys as Json)[u.userId] as Json | undefined)?.[u.deviceId] as Json | undefined;
      if (dev) ids.push(...Object.keys(dev));
    }
    expect(ids.length).toBe(30);
    expect(new Set(ids).size).toBe(30);
  });

  it("unknown users, devices and algorithms give nothing; bad bodies are 400", async () => {
    const u = await registerUser(c);
    const r = await claim(u, { [`@nobody:${ts.config.serverName}`]: { X: "signed_curve25519" }, [u.userId]: { NODEVICE: "signed_curve25519" } });
    expect(r.body).toEqual({ one_time_keys: {}, failures: {} });
    expectError(await claim(u, { notauser: { X: "a" } }), 400, "M_INVALID_PARAM");
    expectError(await claim(u, { [u.userId]: { X: 1 } }), 400, "M_BAD_JSON");
    expectError(await c.post(`${V3}/keys/claim`, { one_time_keys: {}, timeout: "x" }, { token: u.accessToken }), 400, "M_BAD_JSON");
  });
});

describe("POST /keys/query", () => {
  it("returns devices (all or named) with display names; users without keys get {}", async () => {
    const { u, d } = await userWithKeys();
    await c.put(`${V3}/devices/${u.deviceId}`, { display_name: "phone" }, { token: u.accessToken });
    const other = await registerUser(c);
    const q = await query(other, { [u.userId]: [u.deviceId], [other.userId]: [], [`@ghost:${ts.config.serverName}`]: [] });
    expect(q.status, q.text).toBe(200);
    const dk = q.body.device_keys as Record<string, Record<string, JsonObject>>;
    expect(dk[u.userId]![u.deviceId]!.unsigned).toEqual({ device_display_name: "phone" });
    expect(dk[u.userId]![u.deviceId]!.keys).toEqual(d.deviceKeys.keys);
    expect(dk[other.userId]).toEqual({});
    expect(dk[`@ghost:${ts.config.serverName}`]).toEqual({});
    expect(q.body.failures).toEqual({});
    expect((await query(other, { [u.userId]: ["NOPE"] })).body.device_keys).toEqual({ [u.userId]: {} });
  });

  it("many users at once: each device with its own name, read in one batch (not one read per user)", async () => {
    const users = await Promise.all(Array.from({ length: 12 }, () => userWithKeys()));
    await Promise.all(users.map(({ u }, i) => c.put(`${V3}/devices/${u.deviceId}`, { display_name: `dev ${i}` }, { token: u.accessToken })));
    const viewer = await registerUser(c);
    const devices = ts.server.services.storage.devices;
    const perUser = vi.spyOn(devices, "list");
    const batched = vi.spyOn(devices, "namesOf");
    try {
      const q = await query(viewer, Object.fromEntries(users.map(({ u }) => [u.userId, []])));
      const dk = q.body.device_keys as Record<string, Record<string, JsonObject>>;
      users.forEach(({ u }, i) => expect(dk[u.userId]![u.deviceId]!.unsigned).toEqual({ device_display_name: `dev ${i}` }));
      expect(perUser).not.toHaveBeenCalled();
      expect(batched).toHaveBeenCalledTimes(1);
    } finally {
      perUser.mockRestore();
      batched.mockRestore();
    }
  });

  it("refuses bad bodies and too many users", async () => {
    const u = await registerUser(c);
    expectError(await query(u, { "not a user": [] }), 400, "M_INVALID_PARAM");
    expectError(await query(u, { [u.userId]: "x" }), 400, "M_BAD_JSON");
    expectError(await c.post(`${V3}/keys/query`, { device_keys: 3 }, { token: u.accessToken }), 400, "M_BAD_JSON");
    const many = Object.fromEntries(Array.from({ length: 5001 }, (_, i) => [`@u${i}:localhost`, []]));
    expectError(await query(u, many), 400, "M_INVALID_PARAM");
  });
});

describe("device deletion and /keys/changes", () => {
  it("a deleted or logged-out device's keys go; room-mates see the change in /sync and /keys/changes", async () => {
    const { u, d } = await userWithKeys();
    const mate = await registerUser(c);
    await roomWith(c, mate, [u]);
    await upload(u, { one_time_keys: signedOtks(d, 3) });
    const from = (await sync(c, mate)).next_batch;
    // A second device with keys, then logged out.
    const l = await login(c, u.userId, u.password);
    const second: TestUser = { ...u, accessToken: l.body.access_token as string, deviceId: l.body.device_id as string };
    const d2 = makeDevice(u.userId, second.deviceId);
    await upload(second, { device_keys: d2.deviceKeys, one_time_keys: signedOtks(d2, 2) });
    const mid = (await sync(c, mate)).next_batch;
    const ch = await c.get<Json>(`${V3}/keys/changes?from=${from}&to=${mid}`, { token: mate.accessToken });
    expect(ch.status, ch.text).toBe(200);
    expect(ch.body.changed).toContain(u.userId);
    expect((await c.post(`${V3}/logout`, {}, { token: second.accessToken })).status).toBe(200);
    const s = await sync(c, mate, { since: mid });
    expect(s.device_lists.changed).toContain(u.userId);
    const q = await query(mate, { [u.userId]: [] });
    expect(Object.keys((q.body.device_keys as Json)[u.userId] as Json)).toEqual([u.deviceId]);
    const cl = await claim(mate, { [u.userId]: { [second.deviceId]: "signed_curve25519" } });
    expect(cl.body.one_time_keys).toEqual({});
    const rows = await ts.server.services.storage.e2eKeys.countOneTimeKeys(u.userId, second.deviceId);
    expect(rows).toEqual({});
    // Nothing changed after the last token.
    const end = (await sync(c, mate)).next_batch;
    expect((await c.get<Json>(`${V3}/keys/changes?from=${end}&to=${end}`, { token: mate.accessToken })).body).toEqual({ changed: [], left: [] });
    expectError(await c.get(`${V3}/keys/changes?from=${end}`, { token: mate.accessToken }), 400, "M_MISSING_PARAM");
    expectError(await c.get(`${V3}/keys/changes?from=garbage&to=${end}`, { token: mate.accessToken }), 400, "M_INVALID_PARAM");
  });

  it("users who leave the last shared room are in `left`", async () => {
    const a = await registerUser(c);
    const b = await registerUser(c);
    const roomId = await roomWith(c, a, [b]);
    const from = (await sync(c, a)).next_batch;
    await c.post(`${V3}/rooms/${encodeURIComponent(roomId)}/leave`, {}, { token: b.accessToken });
    const to = (await sync(c, a)).next_batch;
    const ch = await c.get<Json>(`${V3}/keys/changes?from=${from}&to=${to}`, { token: a.accessToken });
    expect(ch.body.left).toContain(b.userId);
    expect(ch.body.changed).not.toContain(b.userId);
  });
});
