/** Device management: list, get, rename, delete (UIA), bulk delete; a user only ever sees their own devices. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client, expectError, login, registerUser, type TestUser } from "../helpers/http.js";
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

const DEVICES = "/_matrix/client/v3/devices";
const WHOAMI = "/_matrix/client/v3/account/whoami";

interface Device {
  device_id: string;
  display_name?: string;
  last_seen_ts?: number;
  last_seen_ip?: string;
}

function passwordAuth(u: TestUser, password = u.password, session?: unknown): Record<string, unknown> {
  const auth: Record<string, unknown> = { type: "m.login.password", identifier: { type: "m.id.user", user: u.userId }, password };
  if (session !== undefined) auth.session = session;
  return auth;
}

async function newDevice(u: TestUser, extra: Record<string, unknown> = {}): Promise<{ token: string; deviceId: string; refreshToken?: string }> {
  const res = await login(c, u.userId, u.password, extra);
  expect(res.status).toBe(200);
  return { token: res.body.access_token as string, deviceId: res.body.device_id as string, refreshToken: res.body.refresh_token as string | undefined };
}

async function listDevices(token: string): Promise<Device[]> {
  const res = await c.get(DEVICES, { token });
  expect(res.status).toBe(200);
  return res.body.devices as Device[];
}

describe("GET /devices", () => {
  it("lists the user's devices with device_id, display_name, last_seen_ts and last_seen_ip", async () => {
    const u = await registerUser(c);
    const before = Date.now();
    const second = await newDevice(u, { initial_device_display_name: "Second device" });
    // Last-seen data is written in batches off the request path; flush it rather than wait for the timer.
    await c.get(WHOAMI, { token: second.token });
    await ts.server.services.devices.flushSeen();
    const devices = await listDevices(u.accessToken);
    expect(devices.map((d) => d.device_id).sort()).toEqual([u.deviceId, second.deviceId].sort());
    const d = devices.find((x) => x.device_id === second.deviceId)!;
    expect(d.display_name).toBe("Second device");
    expect(d.last_seen_ts).toBeGreaterThanOrEqual(before - 1000);
    expect(d.last_seen_ts).toBeLessThanOrEqual(Date.now());
    expect(d.last_seen_ip).toMatch(/^(::ffff:)?127\.0\.0\.1$/);
    for (const dev of devices) {
      for (const key of Object.keys(dev)) expect(["device_id", "display_name", "last_seen_ts", "last_seen_ip"]).toContain(key);
    }
  });

  it("does not show another user's devices", async () => {
    const u = await registerUser(c);
    const other = await registerUser(c);
    const ids = (await listDevices(u.accessToken)).map((d) => d.device_id);
    expect(ids).toEqual([u.deviceId]);
    expect(ids).not.toContain(other.deviceId);
  });

  it("needs an access token", async () => {
    expectError(await c.get(DEVICES), 401, "M_MISSING_TOKEN");
  });
});

describe("GET /devices/{deviceId}", () => {
  it("returns one device", async () => {
    const u = await registerUser(c);
    const res = await c.get(`${DEVICES}/${u.deviceId}`, { token: u.accessToken });
    expect(res.status).toBe(200);
    expect(res.body.device_id).toBe(u.deviceId);
  });

  it("unknown device, or another user's → 404 M_NOT_FOUND", async () => {
    const u = await registerUser(c);
    const other = await registerUser(c);
    expectError(await c.get(`${DEVICES}/NOSUCHDEVICE`, { token: u.accessToken }), 404, "M_NOT_FOUND");
    expectError(await c.get(`${DEVICES}/${other.deviceId}`, { token: u.accessToken }), 404, "M_NOT_FOUND");
  });

  it("device ids with URL-special characters work", async () => {
    const u = await registerUser(c);
    const odd = await newDevice(u, { device_id: "dev/with?odd#chars" });
    expect(odd.deviceId).toBe("dev/with?odd#chars");
    const res = await c.get(`${DEVICES}/${encodeURIComponent(odd.deviceId)}`, { token: u.accessToken });
    expect(res.status).toBe(200);
    expect(res.body.device_id).toBe("dev/with?odd#chars");
  });
});

describe("PUT /devices/{deviceId}", () => {
  it("renames a device", async () => {
    const u = await registerUser(c);
    const res = await c.put(`${DEVICES}/${u.deviceId}`, { display_name: "Renamed" }, { token: u.accessToken });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({});
    expect((await c.get(`${DEVICES}/${u.deviceId}`, { token: u.accessToken })).body.display_name).toBe("Renamed");
  });

  it("without display_name leaves the name unchanged", async () => {
    const u = await registerUser(c);
    await c.put(`${DEVICES}/${u.deviceId}`, { display_name: "Kept" }, { token: u.accessToken });
    expect((await c.put(`${DEVICES}/${u.deviceId}`, {}, { token: u.accessToken })).status).toBe(200);
    expect((await c.get(`${DEVICES}/${u.deviceId}`, { token: u.accessToken })).body.display_name).toBe("Kept");
  });

  it("unknown device, or another user's → 404 M_NOT_FOUND, and the other's name is unchanged", async () => {
    const u = await registerUser(c);
    const other = await registerUser(c);
    expectError(await c.put(`${DEVICES}/NOSUCHDEVICE`, { display_name: "x" }, { token: u.accessToken }), 404, "M_NOT_FOUND");
    expectError(await c.put(`${DEVICES}/${other.deviceId}`, { display_name: "Hijacked" }, { token: u.accessToken }), 404, "M_NOT_FOUND");
    expect((await c.get(`${DEVICES}/${other.deviceId}`, { token: other.accessToken })).body.display_name).toBeUndefined();
  });

  it("a wrongly typed display_name → 400 M_BAD_JSON", async () => {
    const u = await registerUser(c);
    expectError(await c.put(`${DEVICES}/${u.deviceId}`, { display_name: 42 }, { token: u.accessToken }), 400, "M_BAD_JSON");
  });
});

describe("DELETE /devices/{deviceId}", () => {
  it("needs UIA with the user's password", async () => {
    const u = await registerUser(c);
    const d = await newDevice(u);
    const first = await c.delete(`${DEVICES}/${d.deviceId}`, {}, { token: u.accessToken });
    expect(first.status).toBe(401);
    expect(first.body.flows).toEqual([{ stages: ["m.login.password"] }]);
    expect(typeof first.body.session).toBe("string");
    const wrong = await c.delete(`${DEVICES}/${d.deviceId}`, { auth: passwordAuth(u, "wrong", first.body.session) }, { token: u.accessToken });
    expect(wrong.status).toBe(401);
    expect(wrong.body.errcode).toBe("M_FORBIDDEN");
    expect((await c.get(WHOAMI, { token: d.token })).status).toBe(200);
  });

  it("UIA as another user (with that user's right password) → a plain 403, not the UIA 401 (as Synapse)", async () => {
    const u = await registerUser(c);
    const other = await registerUser(c);
    const d = await newDevice(u);
    const first = await c.delete(`${DEVICES}/${d.deviceId}`, {}, { token: u.accessToken });
    const res = await c.delete(`${DEVICES}/${d.deviceId}`, { auth: passwordAuth(other, other.password, first.body.session) }, { token: u.accessToken });
    expectError(res, 403, "M_FORBIDDEN");
    expect(res.body.flows).toBeUndefined();
    expect((await c.get(WHOAMI, { token: d.token })).status).toBe(200);
  });

  it("also asks for UIA when the request has no body", async () => {
    const u = await registerUser(c);
    const d = await newDevice(u);
    const res = await c.request("DELETE", `${DEVICES}/${d.deviceId}`, { token: u.accessToken });
    expect(res.status).toBe(401);
    expect(res.body.flows).toEqual([{ stages: ["m.login.password"] }]);
    expectError(await c.delete(`${DEVICES}/${d.deviceId}`, [1], { token: u.accessToken }), 400, "M_BAD_JSON");
  });

  it("deletes the device and kills its access and refresh tokens", async () => {
    const u = await registerUser(c);
    const d = await newDevice(u, { refresh_token: true });
    const first = await c.delete(`${DEVICES}/${d.deviceId}`, {}, { token: u.accessToken });
    const res = await c.delete(`${DEVICES}/${d.deviceId}`, { auth: passwordAuth(u, u.password, first.body.session) }, { token: u.accessToken });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({});
    expectError(await c.get(WHOAMI, { token: d.token }), 401, "M_UNKNOWN_TOKEN");
    expectError(await c.post("/_matrix/client/v3/refresh", { refresh_token: d.refreshToken }), 401, "M_UNKNOWN_TOKEN");
    expectError(await c.get(`${DEVICES}/${d.deviceId}`, { token: u.accessToken }), 404, "M_NOT_FOUND");
    expect((await listDevices(u.accessToken)).map((x) => x.device_id)).toEqual([u.deviceId]);
  });

  it("a device may delete itself", async () => {
    const u = await registerUser(c);
    const res = await c.delete(`${DEVICES}/${u.deviceId}`, { auth: passwordAuth(u) }, { token: u.accessToken });
    expect(res.status).toBe(200);
    expectError(await c.get(WHOAMI, { token: u.accessToken }), 401, "M_UNKNOWN_TOKEN");
  });

  it("an unknown or already deleted device → 200 after UIA (spec: 'or had been removed previously')", async () => {
    const u = await registerUser(c);
    expect((await c.delete(`${DEVICES}/NOSUCHDEVICE`, {}, { token: u.accessToken })).status).toBe(401);
    expect((await c.delete(`${DEVICES}/NOSUCHDEVICE`, { auth: passwordAuth(u) }, { token: u.accessToken })).status).toBe(200);
  });

  it("cannot delete another user's device", async () => {
    const u = await registerUser(c);
    const other = await registerUser(c);
    const res = await c.delete(`${DEVICES}/${other.deviceId}`, { auth: passwordAuth(u) }, { token: u.accessToken });
    expect(res.status).toBe(200);
    expect((await c.get(WHOAMI, { token: other.accessToken })).status).toBe(200);
    expect((await listDevices(other.accessToken)).map((d) => d.device_id)).toEqual([other.deviceId]);
  });

  it("a UIA session for one device cannot delete another → 403", async () => {
    const u = await registerUser(c);
    const a = await newDevice(u);
    const b = await newDevice(u);
    const first = await c.delete(`${DEVICES}/${a.deviceId}`, {}, { token: u.accessToken });
    const res = await c.delete(`${DEVICES}/${b.deviceId}`, { auth: passwordAuth(u, u.password, first.body.session) }, { token: u.accessToken });
    expectError(res, 403, "M_FORBIDDEN");
    expect((await c.get(WHOAMI, { token: b.token })).status).toBe(200);
  });

  it("a UIA session belongs to its user", async () => {
    const u = await registerUser(c);
    const other = await registerUser(c);
    const first = await c.delete(`${DEVICES}/${u.deviceId}`, {}, { token: u.accessToken });
    const res = await c.delete(`${DEVICES}/${u.deviceId}`, { auth: passwordAuth(other, other.password, first.body.session) }, { token: other.accessToken });
    expectError(res, 403, "M_FORBIDDEN");
  });
});

describe("POST /delete_devices", () => {
  it("deletes several devices after UIA, ignoring unknown ids", async () => {
    const u = await registerUser(c);
    const a = await newDevice(u);
    const b = await newDevice(u);
    const keep = await newDevice(u);
    const body = { devices: [a.deviceId, b.deviceId, "NOSUCHDEVICE"] };
    const first = await c.post("/_matrix/client/v3/delete_devices", body, { token: u.accessToken });
    expect(first.status).toBe(401);
    expect(first.body.flows).toEqual([{ stages: ["m.login.password"] }]);
    const res = await c.post("/_matrix/client/v3/delete_devices", { ...body, auth: passwordAuth(u, u.password, first.body.session) }, { token: u.accessToken });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({});
    for (const token of [a.token, b.token]) expectError(await c.get(WHOAMI, { token }), 401, "M_UNKNOWN_TOKEN");
    expect((await c.get(WHOAMI, { token: keep.token })).status).toBe(200);
    expect((await listDevices(u.accessToken)).map((d) => d.device_id).sort()).toEqual([u.deviceId, keep.deviceId].sort());
  });

  it("a wrong password deletes nothing", async () => {
    const u = await registerUser(c);
    const a = await newDevice(u);
    const res = await c.post("/_matrix/client/v3/delete_devices", { devices: [a.deviceId], auth: passwordAuth(u, "wrong") }, { token: u.accessToken });
    expect(res.status).toBe(401);
    expect(res.body.errcode).toBe("M_FORBIDDEN");
    expect((await c.get(WHOAMI, { token: a.token })).status).toBe(200);
  });

  it("does not touch another user's devices", async () => {
    const u = await registerUser(c);
    const other = await registerUser(c);
    const res = await c.post("/_matrix/client/v3/delete_devices", { devices: [other.deviceId], auth: passwordAuth(u) }, { token: u.accessToken });
    expect(res.status).toBe(200);
    expect((await c.get(WHOAMI, { token: other.accessToken })).status).toBe(200);
  });

  it("a missing or malformed devices list → 400 M_BAD_JSON", async () => {
    const u = await registerUser(c);
    expectError(await c.post("/_matrix/client/v3/delete_devices", { auth: passwordAuth(u) }, { token: u.accessToken }), 400, "M_BAD_JSON");
    expectError(await c.post("/_matrix/client/v3/delete_devices", { devices: "ABC", auth: passwordAuth(u) }, { token: u.accessToken }), 400, "M_BAD_JSON");
    expectError(await c.post("/_matrix/client/v3/delete_devices", { devices: [1, 2], auth: passwordAuth(u) }, { token: u.accessToken }), 400, "M_BAD_JSON");
  });
});
