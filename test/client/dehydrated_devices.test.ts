/**
 * Dehydrated devices over HTTP (MSC3814, /_matrix/client/unstable/org.matrix.msc3814.v1/): PUT (keys checked as
 * /keys/upload checks them, replacing any previous dehydrated device), GET, DELETE, the device's to-device messages
 * in acknowledged batches, its place in /keys/query, GET /devices and the device-list stream, and /versions.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { JsonObject } from "../../src/core/json/types.js";
import { makeDevice, signedOtks, type TestDevice } from "../helpers/e2e.js";
import { Client, expectError, registerUser, type TestUser } from "../helpers/http.js";
import { V3, enc, nextTxn, roomWith, sync, type Json } from "../helpers/rooms.js";
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

const DD = "/_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device";
const deviceData = { algorithm: "org.matrix.msc3814.v1.olm", device_pickle: "opaque" };

/** A PUT body for a fresh dehydrated device of `u`, with keys signed by it. */
function dehydrated(u: TestUser, deviceId: string, extra: Json = {}): { body: Json; d: TestDevice } {
  const d = makeDevice(u.userId, deviceId);
  return { d, body: { device_id: deviceId, device_data: deviceData, initial_device_display_name: "Backup device", device_keys: d.deviceKeys, one_time_keys: signedOtks(d, 3), ...extra } };
}

const put = (u: TestUser, body: unknown) => c.put<Json>(DD, body, { token: u.accessToken });
const events = (u: TestUser, deviceId: string, body: Json = {}) => c.post<{ events: JsonObject[]; next_batch: string }>(`${DD}/${enc(deviceId)}/events`, body, { token: u.accessToken });
const queryDevices = async (viewer: TestUser, userId: string) =>
  ((await c.post<Json>(`${V3}/keys/query`, { device_keys: { [userId]: [] } }, { token: viewer.accessToken })).body.device_keys as Record<string, Record<string, JsonObject>>)[userId]!;
const sendTo = (from: TestUser, userId: string, deviceId: string, content: Json) =>
  c.put(`${V3}/sendToDevice/m.room.encrypted/${nextTxn()}`, { messages: { [userId]: { [deviceId]: content } } }, { token: from.accessToken });

describe("PUT / GET / DELETE dehydrated_device", () => {
  it("stores the device: GET gives its id and data; keys in /keys/query; left out of GET /devices; announced", async () => {
    const u = await registerUser(c);
    const mate = await registerUser(c);
    await roomWith(c, u, [mate]);
    const since = (await sync(c, mate)).next_batch;
    const { body, d } = dehydrated(u, "DEHYDRATED1");
    const r = await put(u, body);
    expect(r.status, r.text).toBe(200);
    expect(r.body).toEqual({ device_id: "DEHYDRATED1" });
    expect((await c.get(DD, { token: u.accessToken })).body).toEqual({ device_id: "DEHYDRATED1", device_data: deviceData });
    const keys = await queryDevices(mate, u.userId);
    expect(keys.DEHYDRATED1!.keys).toEqual(d.deviceKeys.keys);
    expect(keys.DEHYDRATED1!.unsigned).toEqual({ device_display_name: "Backup device" });
    // Its one-time keys can be claimed, as any device's.
    const cl = await c.post<Json>(`${V3}/keys/claim`, { one_time_keys: { [u.userId]: { DEHYDRATED1: "signed_curve25519" } } }, { token: mate.accessToken });
    expect(Object.keys(((cl.body.one_time_keys as Json)[u.userId] as Json).DEHYDRATED1 as Json)).toHaveLength(1);
    const list = (await c.get<{ devices: { device_id: string }[] }>(`${V3}/devices`, { token: u.accessToken })).body.devices.map((x) => x.device_id);
    expect(list).toEqual([u.deviceId]);
    expect((await sync(c, mate, { since })).device_lists.changed).toContain(u.userId);
    // It has no session: no access token was made for it.
    const tokens = await ts.server.services.storage.db.selectFrom("access_tokens").select("device_id").where("user_id", "=", u.userId).execute();
    expect(tokens.map((t) => t.device_id)).toEqual([u.deviceId]);
  });

  it("a new one replaces the previous, which goes with its keys and messages; bad keys change nothing", async () => {
    const u = await registerUser(c);
    const sender = await registerUser(c);
    expect((await put(u, dehydrated(u, "OLDDEVICE").body)).status).toBe(200);
    expect((await sendTo(sender, u.userId, "OLDDEVICE", { n: 1 })).status).toBe(200);
    // Refused before anything is replaced: a bad signature, a malformed key, a missing device_data.
    const bad = dehydrated(u, "NEWDEVICE");
    expectError(await put(u, { ...bad.body, device_keys: { ...bad.d.deviceKeys, algorithms: ["tampered"] } }), 400, "M_INVALID_SIGNATURE");
    expectError(await put(u, { ...bad.body, device_keys: { user_id: u.userId, device_id: "NEWDEVICE", keys: {} } }), 400, "M_BAD_JSON");
    expectError(await put(u, { ...bad.body, device_keys: makeDevice(u.userId, "OTHER").deviceKeys }), 400, "M_INVALID_PARAM");
    expectError(await put(u, { ...bad.body, one_time_keys: { "signed_curve25519:x": "not signed" } }), 400, "M_INVALID_SIGNATURE");
    expectError(await put(u, { ...bad.body, device_data: "x" }), 400, "M_BAD_JSON");
    expectError(await put(u, { ...bad.body, device_id: "" }), 400, "M_BAD_JSON");
    expectError(await put(u, [1]), 400, "M_BAD_JSON");
    // A logged-in device cannot become the dehydrated one.
    const own = dehydrated(u, u.deviceId);
    expectError(await put(u, own.body), 400, "M_INVALID_PARAM");
    // The upload's limits too.
    expectError(await put(u, { ...bad.body, one_time_keys: signedOtks(bad.d, 501) }), 400, "M_INVALID_PARAM");
    expect((await c.get<Json>(DD, { token: u.accessToken })).body.device_id).toBe("OLDDEVICE");
    expect(Object.keys(await queryDevices(u, u.userId))).toEqual(["OLDDEVICE"]);

    expect((await put(u, bad.body)).status).toBe(200);
    expect((await c.get<Json>(DD, { token: u.accessToken })).body.device_id).toBe("NEWDEVICE");
    expect(Object.keys(await queryDevices(u, u.userId))).toEqual(["NEWDEVICE"]);
    expectError(await events(u, "OLDDEVICE"), 403, "M_FORBIDDEN");
    expect(await ts.server.services.storage.deviceInbox.since(u.userId, "OLDDEVICE", 0, Number.MAX_SAFE_INTEGER, 10)).toEqual([]);
    // The same id again replaces it too (new keys are allowed: it is a new device).
    expect((await put(u, dehydrated(u, "NEWDEVICE").body)).status).toBe(200);
  });

  it("DELETE removes it with its keys; GET and DELETE without one are 404 M_NOT_FOUND", async () => {
    const u = await registerUser(c);
    expectError(await c.get(DD, { token: u.accessToken }), 404, "M_NOT_FOUND");
    expectError(await c.delete(DD, undefined, { token: u.accessToken }), 404, "M_NOT_FOUND");
    expect((await put(u, dehydrated(u, "GOINGAWAY").body)).status).toBe(200);
    const del = await c.delete<Json>(DD, undefined, { token: u.accessToken });
    expect(del.status, del.text).toBe(200);
    expect(del.body).toEqual({ device_id: "GOINGAWAY" });
    expectError(await c.get(DD, { token: u.accessToken }), 404, "M_NOT_FOUND");
    expect(Object.keys(await queryDevices(u, u.userId))).toEqual([]);
    expectError(await c.get(DD), 401, "M_MISSING_TOKEN");
  });

  it("a dehydrated device deleted through DELETE /devices/{id} is gone from GET dehydrated_device too", async () => {
    const u = await registerUser(c);
    expect((await put(u, dehydrated(u, "VIADEVICES").body)).status).toBe(200);
    await ts.server.services.devices.delete(u.userId, ["VIADEVICES"]);
    expectError(await c.get(DD, { token: u.accessToken }), 404, "M_NOT_FOUND");
  });
});

describe("POST dehydrated_device/{deviceId}/events", () => {
  it("hands out the device's to-device messages; next_batch acknowledges them; an empty batch ends", async () => {
    const u = await registerUser(c);
    const sender = await registerUser(c);
    expect((await put(u, dehydrated(u, "INBOXDEV").body)).status).toBe(200);
    expect((await sendTo(sender, u.userId, "INBOXDEV", { n: 1 })).status).toBe(200);
    // `*` reaches it too, as every device of the user.
    expect((await c.put(`${V3}/sendToDevice/m.room.encrypted/${nextTxn()}`, { messages: { [u.userId]: { "*": { n: 2 } } } }, { token: sender.accessToken })).status).toBe(200);
    const first = await events(u, "INBOXDEV");
    expect(first.status, first.text).toBe(200);
    expect(first.body.events).toEqual([
      { sender: sender.userId, type: "m.room.encrypted", content: { n: 1 } },
      { sender: sender.userId, type: "m.room.encrypted", content: { n: 2 } },
    ]);
    // Not acknowledged yet: asked again without a token, the same messages.
    expect((await events(u, "INBOXDEV")).body.events).toHaveLength(2);
    const end = await events(u, "INBOXDEV", { next_batch: first.body.next_batch });
    expect(end.body.events).toEqual([]);
    expect(typeof end.body.next_batch).toBe("string");
    // Acknowledged: gone for good.
    expect((await events(u, "INBOXDEV")).body.events).toEqual([]);
    expectError(await events(u, u.deviceId), 403, "M_FORBIDDEN");
    expectError(await events(u, "INBOXDEV", { next_batch: "garbage" }), 400, "M_INVALID_PARAM");
    expectError(await events(sender, "INBOXDEV"), 403, "M_FORBIDDEN");
  });

  it("comes in batches of at most 100", async () => {
    const u = await registerUser(c);
    const sender = await registerUser(c);
    expect((await put(u, dehydrated(u, "BIGINBOX").body)).status).toBe(200);
    for (let i = 0; i < 105; i++) await sendTo(sender, u.userId, "BIGINBOX", { i });
    const first = await events(u, "BIGINBOX");
    expect(first.body.events).toHaveLength(100);
    const second = await events(u, "BIGINBOX", { next_batch: first.body.next_batch });
    expect(second.body.events.map((e) => (e.content as Json).i)).toEqual([100, 101, 102, 103, 104]);
    expect((await events(u, "BIGINBOX", { next_batch: second.body.next_batch })).body.events).toEqual([]);
  });
});
