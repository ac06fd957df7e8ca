/**
 * E2EE keys across two servers on loopback (server-server "End-to-End Encryption", "Device Management"): remote
 * /keys/query and /keys/claim through /user/keys/query and /user/keys/claim, the remote device-list cache kept from
 * m.device_list_update (following prev_id; a gap forces a resync through /user/devices), m.signing_key_update,
 * deleted devices, and an unreachable server in `failures`.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { signJson } from "../../src/core/crypto/signing.js";
import type { JsonObject } from "../../src/core/json/types.js";
import { curveKey, makeCrossSigning, makeDevice, signedOtks, type TestDevice } from "../helpers/e2e.js";
import { startFederatedServer, startServerPair, TestNetwork } from "../helpers/federation.js";
import { closeFederatedServers } from "../helpers/federation_close.js";
import { Client, login, registerUser, type TestUser } from "../helpers/http.js";
import { V3, enc, poll, roomWith, sync, syncUntil, type Json } from "../helpers/rooms.js";
import type { TestServer } from "../helpers/server.js";

let hs1: TestServer;
let hs2: TestServer;
let c1: Client;
let c2: Client;

beforeAll(async () => {
  ({ hs1, hs2, c1, c2 } = await startServerPair());
});
afterAll(async () => {
  await closeFederatedServers([hs1, hs2]);
});

const query = (c: Client, u: TestUser, users: Record<string, string[]>, extra: Json = {}) => c.post<Json>(`${V3}/keys/query`, { device_keys: users, ...extra }, { token: u.accessToken });
const deviceKeysOf = (r: { body: Json }, userId: string) => ((r.body.device_keys as Json)[userId] ?? {}) as Record<string, JsonObject>;

async function withKeys(c: Client): Promise<{ u: TestUser; d: TestDevice }> {
  const u = await registerUser(c);
  const d = makeDevice(u.userId, u.deviceId);
  const r = await c.post(`${V3}/keys/upload`, { device_keys: d.deviceKeys, one_time_keys: signedOtks(d, 2) }, { token: u.accessToken });
  expect(r.status, r.text).toBe(200);
  return { u, d };
}

/** alice@hs1 and bob@hs2 (with keys) in one room, bob having joined over federation. */
async function pair(): Promise<{ alice: TestUser; bob: TestUser; bobDevice: TestDevice; roomId: string }> {
  const alice = await registerUser(c1);
  const { u: bob, d: bobDevice } = await withKeys(c2);
  const roomId = await roomWith(c1, alice, []);
  await c1.post(`${V3}/rooms/${enc(roomId)}/invite`, { user_id: bob.userId }, { token: alice.accessToken });
  const j = await c2.post(`${V3}/join/${enc(roomId)}`, {}, { token: bob.accessToken });
  expect(j.status, j.text).toBe(200);
  await poll(async () => ((await hs1.server.services.storage.rooms.roomsForUser(bob.userId, ["join"])).length > 0 ? true : undefined));
  return { alice, bob, bobDevice, roomId };
}

let txn = 0;
/** An EDU sent to hs1 as hs2, over HTTP (signed by hs2). */
async function eduFromHs2(edu_type: string, content: JsonObject): Promise<void> {
  await hs2.server.services.federationClient.put("hs1.test", `/_matrix/federation/v1/send/e2e-${Date.now()}-${txn++}`, { origin: "hs2.test", origin_server_ts: Date.now(), pdus: [], edus: [{ edu_type, content }] });
}

describe("remote keys", () => {
  it("query and claim a remote user's keys; the cache follows m.device_list_update with keys", async () => {
    const { alice, bob, bobDevice } = await pair();
    const q = await query(c1, alice, { [bob.userId]: [] });
    expect(q.status, q.text).toBe(200);
    expect(deviceKeysOf(q, bob.userId)[bob.deviceId]!.keys).toEqual(bobDevice.deviceKeys.keys);
    expect(q.body.failures).toEqual({});
    // The first query resynced bob's list: it is now cached and current.
    const [cached] = await hs1.server.services.storage.e2eKeys.remoteUsers([bob.userId]);
    expect(cached?.stale).toBe(0);

    // A second device of bob's with keys arrives as m.device_list_update (with `keys`), and shows from the cache.
    const since = (await sync(c1, alice)).next_batch;
    const l = await login(c2, bob.userId, bob.password);
    const bob2: TestUser = { ...bob, accessToken: l.body.access_token as string, deviceId: l.body.device_id as string };
    const d2 = makeDevice(bob.userId, bob2.deviceId);
    await c2.post(`${V3}/keys/upload`, { device_keys: d2.deviceKeys }, { token: bob2.accessToken });
    await syncUntil(c1, alice, since, (s) => s.device_lists.changed.includes(bob.userId));
    await poll(async () => ((await hs1.server.services.storage.e2eKeys.remoteDevices([bob.userId])).find((r) => r.device_id === bob2.deviceId)?.key_json ? true : undefined));
    const q2 = await query(c1, alice, { [bob.userId]: [bob2.deviceId] });
    expect(Object.keys(deviceKeysOf(q2, bob.userId))).toEqual([bob2.deviceId]);

    // Claims go to hs2; each key once.
    const claimed = new Set<string>();
    for (let i = 0; i < 3; i++) {
      const r = await c1.post<Json>(`${V3}/keys/claim`, { one_time_keys: { [bob.userId]: { [bob.deviceId]: "signed_curve25519" } } }, { token: alice.accessToken });
      expect(r.status, r.text).toBe(200);
      const keys = ((r.body.one_time_keys as Json)[bob.userId] as Json | undefined)?.[bob.deviceId] as Json | undefined;
      for (const k of Object.keys(keys ?? {})) claimed.add(k);
    }
    expect(claimed).toEqual(new Set(["signed_curve25519:k0", "signed_curve25519:k1"]));

    // Bob logs the second device out: the deletion reaches hs1's cache.
    const since2 = (await sync(c1, alice)).next_batch;
    await c2.post(`${V3}/logout`, {}, { token: bob2.accessToken });
    await syncUntil(c1, alice, since2, (s) => s.device_lists.changed.includes(bob.userId));
    await poll(async () => (!(await hs1.server.services.storage.e2eKeys.remoteDevices([bob.userId])).some((r) => r.device_id === bob2.deviceId) ? true : undefined));
    expect(Object.keys(deviceKeysOf(await query(c1, alice, { [bob.userId]: [] }), bob.userId))).toEqual([bob.deviceId]);
  });

  it("a resync is a device-list change for local room-mates; the current cache then answers without asking", async () => {
    const { alice, bob } = await pair();
    const since = (await sync(c1, alice)).next_batch;
    const first = await query(c1, alice, { [bob.userId]: [] }); // no cache yet: resynced through /user/devices
    expect(Object.keys(deviceKeysOf(first, bob.userId))).toEqual([bob.deviceId]);
    // alice's client is told bob's list changed (as Synapse notifies after every resync).
    await syncUntil(c1, alice, since, (s) => s.device_lists.changed.includes(bob.userId));
    // hs2 now refuses every request: the current cache answers, with nothing in failures.
    const fed = hs1.server.services.federationClient;
    const { get, post } = fed;
    fed.get = fed.post = () => Promise.reject(new Error("hs2 is down"));
    try {
      const second = await query(c1, alice, { [bob.userId]: [] });
      expect(second.body.failures).toEqual({});
      expect(second.body.device_keys).toEqual(first.body.device_keys);
    } finally {
      Object.assign(fed, { get, post });
    }
  });

  it("a prev_id chain is applied from the EDU; a gap forces a resync through /user/devices", async () => {
    const { alice, bob } = await pair();
    await query(c1, alice, { [bob.userId]: [] }); // resync: cached
    const store = hs1.server.services.storage.e2eKeys;
    const [before] = await store.remoteUsers([bob.userId]);
    // In the chain (prev_id = what hs1 applied last): applied as sent, no resync (hs2 knows no such device).
    const chained = makeDevice(bob.userId, "CHAINED");
    await eduFromHs2("m.device_list_update", { user_id: bob.userId, device_id: "CHAINED", stream_id: before!.stream_id + 100, prev_id: [before!.stream_id], deleted: false, keys: chained.deviceKeys });
    expect(Object.keys(deviceKeysOf(await query(c1, alice, { [bob.userId]: [] }), bob.userId)).sort()).toEqual(["CHAINED", bob.deviceId].sort());
    // An unknown prev_id: hs1 missed updates and resyncs, getting hs2's real list (without either invented device).
    await eduFromHs2("m.device_list_update", { user_id: bob.userId, device_id: "GAPPED", stream_id: before!.stream_id + 300, prev_id: [before!.stream_id + 200], deleted: false, keys: makeDevice(bob.userId, "GAPPED").deviceKeys });
    expect(Object.keys(deviceKeysOf(await query(c1, alice, { [bob.userId]: [] }), bob.userId))).toEqual([bob.deviceId]);
    const [after] = await store.remoteUsers([bob.userId]);
    expect(after!.stream_id).toBe(await hs2.server.services.deviceLists.streamIdOf(bob.userId));
    // Updates about another server's users are ignored.
    await eduFromHs2("m.device_list_update", { user_id: alice.userId, device_id: "X", stream_id: 1, prev_id: [], deleted: true });
    expect((await hs1.server.services.storage.e2eKeys.deviceKeys([alice.userId])).length).toBe(0);
  });

  it("cross-signing keys reach the other server (m.signing_key_update, /user/devices)", async () => {
    const { alice, bob } = await pair();
    await query(c1, alice, { [bob.userId]: [] });
    const since = (await sync(c1, alice)).next_batch;
    const deviceStream = await hs2.server.services.deviceLists.streamIdOf(bob.userId);
    const cs = makeCrossSigning(bob.userId);
    const r = await c2.post(`${V3}/keys/device_signing/upload`, { master_key: cs.masterKey, self_signing_key: cs.selfSigningKey, user_signing_key: cs.userSigningKey }, { token: bob.accessToken });
    expect(r.status, r.text).toBe(200);
    await syncUntil(c1, alice, since, (s) => s.device_lists.changed.includes(bob.userId));
    await poll(async () => ((await hs1.server.services.storage.e2eKeys.crossSigningKeys([bob.userId])).length === 2 ? true : undefined));
    const q = await query(c1, alice, { [bob.userId]: [] });
    expect((q.body.master_keys as Json)[bob.userId]).toEqual(cs.masterKey);
    expect((q.body.self_signing_keys as Json)[bob.userId]).toEqual(cs.selfSigningKey);
    expect(q.body.user_signing_keys).toEqual({});
    // /user/devices as served by hs2 carries the keys too; the user-signing key never leaves its server.
    const devices = await hs1.server.services.federationClient.get("hs2.test", `/_matrix/federation/v1/user/devices/${enc(bob.userId)}`);
    expect(devices.master_key).toEqual(cs.masterKey);
    expect(devices.self_signing_key).toEqual(cs.selfSigningKey);
    expect(devices.user_signing_key).toBeUndefined();
    // The cross-signing change went as m.signing_key_update, not on the m.device_list_update chain: the next
    // device update's prev_id (and /user/devices' stream_id) still names bob's last device update.
    expect(devices.stream_id).toBe(deviceStream);
    expect(((devices.devices as JsonObject[])[0]!.keys as JsonObject).user_id).toBe(bob.userId);
    // A signing-key update for another server's user is ignored.
    const forged = makeCrossSigning(alice.userId);
    await eduFromHs2("m.signing_key_update", { user_id: alice.userId, master_key: forged.masterKey });
    expect((await hs1.server.services.storage.e2eKeys.crossSigningKeys([alice.userId])).length).toBe(0);
  });

  it("user/keys/query and user/keys/claim answer only for local users; bad bodies are 400", async () => {
    const { u, d } = await withKeys(c2);
    const fed = hs1.server.services.federationClient;
    const res = await fed.post("hs2.test", "/_matrix/federation/v1/user/keys/query", { device_keys: { [u.userId]: [], "@x:hs1.test": [] } });
    expect(Object.keys(res.device_keys as Json)).toEqual([u.userId]);
    expect(((res.device_keys as Json)[u.userId] as Json)[u.deviceId]).toMatchObject({ keys: d.deviceKeys.keys });
    const fb = signJson({ key: curveKey(), fallback: true }, u.userId, d.signing);
    await c2.post(`${V3}/keys/upload`, { fallback_keys: { "signed_curve25519:fb": fb } }, { token: u.accessToken });
    for (let i = 0; i < 4; i++) {
      const cl = await fed.post("hs2.test", "/_matrix/federation/v1/user/keys/claim", { one_time_keys: { [u.userId]: { [u.deviceId]: "signed_curve25519" } } });
      const got = Object.keys(((cl.one_time_keys as Json)[u.userId] as Json)[u.deviceId] as Json);
      expect(got).toEqual([i < 2 ? `signed_curve25519:k${i}` : "signed_curve25519:fb"]);
    }
    await expect(fed.post("hs2.test", "/_matrix/federation/v1/user/keys/query", { device_keys: { [u.userId]: "x" } })).rejects.toMatchObject({ details: { status: 400 } });
    await expect(fed.post("hs2.test", "/_matrix/federation/v1/user/keys/claim", { one_time_keys: 5 })).rejects.toMatchObject({ details: { status: 400 } });
  });
});

describe("a dehydrated device (MSC3814)", () => {
  it("is in the other server's /keys/query and gets its to-device messages over federation", async () => {
    const { alice, bob } = await pair();
    const d = makeDevice(alice.userId, "ALICEDEHYDRATED");
    const dd = "/_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device";
    const r = await c1.put(dd, { device_id: d.deviceId, device_data: { algorithm: "x" }, device_keys: d.deviceKeys, one_time_keys: signedOtks(d, 1) }, { token: alice.accessToken });
    expect(r.status, r.text).toBe(200);
    await poll(async () => (deviceKeysOf(await query(c2, bob, { [alice.userId]: [] }), alice.userId)[d.deviceId] ? true : undefined));
    const send = await c2.put(`${V3}/sendToDevice/m.room.encrypted/dd-${Date.now()}`, { messages: { [alice.userId]: { [d.deviceId]: { ciphertext: "for the dehydrated device" } } } }, { token: bob.accessToken });
    expect(send.status, send.text).toBe(200);
    const got = await poll(async () => {
      const e = await c1.post<{ events: JsonObject[] }>(`${dd}/${d.deviceId}/events`, {}, { token: alice.accessToken });
      return e.body.events.length > 0 ? e.body.events : undefined;
    });
    expect(got).toEqual([{ sender: bob.userId, type: "m.room.encrypted", content: { ciphertext: "for the dehydrated device" } }]);
  });
});

describe("an unreachable server", () => {
  it("goes into failures of /keys/query and /keys/claim, within the timeout", async () => {
    const network = new TestNetwork();
    const lonely = await startFederatedServer(network, "lonely.test");
    try {
      const c = new Client(lonely.baseUrl);
      const u = await registerUser(c);
      const started = Date.now();
      const q = await query(c, u, { [u.userId]: [], "@bob:down.test": [] }, { timeout: 2000 });
      expect(q.status, q.text).toBe(200);
      expect((q.body.failures as Json)["down.test"]).toMatchObject({ status: 503 });
      expect((q.body.device_keys as Json)[u.userId]).toEqual({});
      const cl = await c.post<Json>(`${V3}/keys/claim`, { one_time_keys: { "@bob:down.test": { D: "signed_curve25519" } }, timeout: 2000 }, { token: u.accessToken });
      expect((cl.body.failures as Json)["down.test"]).toMatchObject({ status: 503 });
      expect(Date.now() - started).toBeLessThan(10_000);
    } finally {
      await lonely.close();
    }
  });
});
