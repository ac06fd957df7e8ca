/** Account management: password change and deactivation (both behind UIA m.login.password), 3PIDs, password policy. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client, expectError, login, registerUser, uniqueName, type Response, type TestUser } from "../helpers/http.js";
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

const PASSWORD = "/_matrix/client/v3/account/password";
const DEACTIVATE = "/_matrix/client/v3/account/deactivate";
const WHOAMI = "/_matrix/client/v3/account/whoami";

function passwordAuth(u: TestUser, password = u.password, session?: unknown): Record<string, unknown> {
  const auth: Record<string, unknown> = { type: "m.login.password", identifier: { type: "m.id.user", user: u.userId }, password };
  if (session !== undefined) auth.session = session;
  return auth;
}

function expectUiaChallenge(res: Response): void {
  expect(res.status).toBe(401);
  expect(res.body.flows).toEqual([{ stages: ["m.login.password"] }]);
  expect(res.body.params).toEqual({});
  expect(typeof res.body.session).toBe("string");
}

/** A second device for `u`, with its access token. */
async function secondDevice(client: Client, u: TestUser): Promise<{ token: string; deviceId: string }> {
  const res = await login(client, u.userId, u.password);
  expect(res.status).toBe(200);
  return { token: res.body.access_token as string, deviceId: res.body.device_id as string };
}

describe("POST /account/password", () => {
  it("needs an access token", async () => {
    expectError(await c.post(PASSWORD, { new_password: "x" }), 401, "M_MISSING_TOKEN");
  });

  it("answers without auth with the m.login.password flow", async () => {
    const u = await registerUser(c);
    const res = await c.post(PASSWORD, { new_password: "new password" }, { token: u.accessToken });
    expectUiaChallenge(res);
    expect(res.body.errcode).toBeUndefined();
    expect(res.body.completed).toBeUndefined();
  });

  it("a wrong password → 401 with errcode M_FORBIDDEN and the flows", async () => {
    const u = await registerUser(c);
    const first = await c.post(PASSWORD, { new_password: "new password" }, { token: u.accessToken });
    const res = await c.post(PASSWORD, { new_password: "new password", auth: passwordAuth(u, "wrong", first.body.session) }, { token: u.accessToken });
    expectUiaChallenge(res);
    expect(res.body.errcode).toBe("M_FORBIDDEN");
    expect(typeof res.body.error).toBe("string");
    expect(res.body.session).toBe(first.body.session);
    // As Synapse: `completed` is there, empty, once the client has sent an auth dict.
    expect(res.body.completed).toEqual([]);
    // Nothing changed.
    expect((await login(c, u.userId, u.password)).status).toBe(200);
  });

  it("another user's credentials do not authenticate this user: a plain 403, not the UIA 401 (as Synapse)", async () => {
    const u = await registerUser(c);
    const other = await registerUser(c);
    const res = await c.post(PASSWORD, { new_password: "new password", auth: passwordAuth(other) }, { token: u.accessToken });
    expectError(res, 403, "M_FORBIDDEN");
    expect(res.body.flows).toBeUndefined();
    expect((await login(c, u.userId, u.password)).status).toBe(200);
    // With the other user's wrong password it stays a UIA failure to retry.
    const wrong = await c.post(PASSWORD, { new_password: "new password", auth: passwordAuth(other, "wrong") }, { token: u.accessToken });
    expect(wrong.status).toBe(401);
    expect(wrong.body.errcode).toBe("M_FORBIDDEN");
  });

  it("changes the password: the new one logs in, the old one does not", async () => {
    const u = await registerUser(c);
    const res = await c.post(PASSWORD, { new_password: "brand new password", auth: passwordAuth(u) }, { token: u.accessToken });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({});
    expect((await login(c, u.userId, "brand new password")).status).toBe(200);
    expectError(await login(c, u.userId, u.password), 403, "M_FORBIDDEN");
  });

  it("logout_devices defaults to true: other devices go, the requester's token stays", async () => {
    const u = await registerUser(c);
    const other = await secondDevice(c, u);
    const refreshable = await login(c, u.userId, u.password, { refresh_token: true });
    const res = await c.post(PASSWORD, { new_password: "pw after", auth: passwordAuth(u) }, { token: u.accessToken });
    expect(res.status).toBe(200);
    expectError(await c.get(WHOAMI, { token: other.token }), 401, "M_UNKNOWN_TOKEN");
    expectError(await c.get(WHOAMI, { token: refreshable.body.access_token as string }), 401, "M_UNKNOWN_TOKEN");
    expectError(await c.post("/_matrix/client/v3/refresh", { refresh_token: refreshable.body.refresh_token }), 401, "M_UNKNOWN_TOKEN");
    expect((await c.get(WHOAMI, { token: u.accessToken })).status).toBe(200);
    const devices = (await c.get("/_matrix/client/v3/devices", { token: u.accessToken })).body.devices as { device_id: string }[];
    expect(devices.map((d) => d.device_id)).toEqual([u.deviceId]);
  });

  it("logout_devices false keeps the other devices", async () => {
    const u = await registerUser(c);
    const other = await secondDevice(c, u);
    const res = await c.post(PASSWORD, { new_password: "pw after", logout_devices: false, auth: passwordAuth(u) }, { token: u.accessToken });
    expect(res.status).toBe(200);
    expect((await c.get(WHOAMI, { token: other.token })).status).toBe(200);
    const devices = (await c.get("/_matrix/client/v3/devices", { token: u.accessToken })).body.devices as { device_id: string }[];
    expect(devices.map((d) => d.device_id).sort()).toEqual([u.deviceId, other.deviceId].sort());
  });

  it("the first request's parameters apply when a later one carries only auth", async () => {
    const u = await registerUser(c);
    const other = await secondDevice(c, u);
    const first = await c.post(PASSWORD, { new_password: "from the first request", logout_devices: false }, { token: u.accessToken });
    expectUiaChallenge(first);
    const res = await c.post(PASSWORD, { auth: passwordAuth(u, u.password, first.body.session) }, { token: u.accessToken });
    expect(res.status).toBe(200);
    expect((await login(c, u.userId, "from the first request")).status).toBe(200);
    expect((await c.get(WHOAMI, { token: other.token })).status).toBe(200);
  });

  it("never stores the new password in plain text in the UIA session", async () => {
    const u = await registerUser(c);
    const secret = `plaintext-${uniqueName()}`;
    const first = await c.post(PASSWORD, { new_password: secret }, { token: u.accessToken });
    const row = await ts.server.services.storage.uia.get(first.body.session as string);
    expect(row).toBeDefined();
    expect(JSON.stringify(row)).not.toContain(secret);
    const res = await c.post(PASSWORD, { auth: passwordAuth(u, u.password, first.body.session) }, { token: u.accessToken });
    expect(res.status).toBe(200);
    expect((await login(c, u.userId, secret)).status).toBe(200);
  });

  it("ignores a client-supplied new_password_hash", async () => {
    const u = await registerUser(c);
    const res = await c.post(PASSWORD, { new_password_hash: "$2b$04$abcdefghijklmnopqrstuu", auth: passwordAuth(u) }, { token: u.accessToken });
    expectError(res, 400, "M_MISSING_PARAM");
    expect((await login(c, u.userId, u.password)).status).toBe(200);
  });

  it("a missing new_password → 400 M_MISSING_PARAM; a wrongly typed one → 400 M_BAD_JSON", async () => {
    const u = await registerUser(c);
    expectError(await c.post(PASSWORD, { auth: passwordAuth(u) }, { token: u.accessToken }), 400, "M_MISSING_PARAM");
    expectError(await c.post(PASSWORD, { new_password: 12345, auth: passwordAuth(u) }, { token: u.accessToken }), 400, "M_BAD_JSON");
  });
});

describe("password_config.policy", () => {
  let ps: TestServer;
  let pc: Client;
  beforeAll(async () => {
    ps = await startTestServer({
      config: { password_config: { policy: { enabled: true, minimum_length: 10, require_digit: true, require_symbol: true, require_lowercase: true, require_uppercase: true } } },
    });
    pc = new Client(ps.baseUrl);
  });
  afterAll(async () => {
    await ps?.close();
  });

  const STRONG = "Str0ng&Secure";

  it("a weak new password → 400 M_WEAK_PASSWORD, checked before UIA", async () => {
    const u = await registerUser(pc, uniqueName(), STRONG);
    for (const weak of ["Sh0rt!", "NoDigits&Here", "n0symbolshere1A", "NOLOWER&CASE1", "noupper&case1"]) {
      expectError(await pc.post(PASSWORD, { new_password: weak }, { token: u.accessToken }), 400, "M_WEAK_PASSWORD");
      expectError(await pc.post(PASSWORD, { new_password: weak, auth: passwordAuth(u) }, { token: u.accessToken }), 400, "M_WEAK_PASSWORD");
    }
    expect((await login(pc, u.userId, STRONG)).status).toBe(200);
    expect((await pc.post(PASSWORD, { new_password: "An0ther&Strong", auth: passwordAuth(u) }, { token: u.accessToken })).status).toBe(200);
  });

  it("registration with a weak password → 400 M_WEAK_PASSWORD before UIA", async () => {
    expectError(await pc.post("/_matrix/client/v3/register", { username: uniqueName(), password: "weak" }), 400, "M_WEAK_PASSWORD");
    expect((await pc.post("/_matrix/client/v3/register", { username: uniqueName(), password: STRONG })).status).toBe(401);
  });
});

describe("POST /account/deactivate", () => {
  it("answers without auth with the m.login.password flow", async () => {
    const u = await registerUser(c);
    expectUiaChallenge(await c.post(DEACTIVATE, {}, { token: u.accessToken }));
    expect((await c.get(WHOAMI, { token: u.accessToken })).status).toBe(200);
  });

  it("a wrong password → 401 with errcode M_FORBIDDEN, and the account stays", async () => {
    const u = await registerUser(c);
    const res = await c.post(DEACTIVATE, { auth: passwordAuth(u, "wrong") }, { token: u.accessToken });
    expectUiaChallenge(res);
    expect(res.body.errcode).toBe("M_FORBIDDEN");
    // A session begun with a failed stage still lists what is done: nothing.
    expect(res.body.completed).toEqual([]);
    expect((await c.get(WHOAMI, { token: u.accessToken })).status).toBe(200);
  });

  it("deactivates: login fails, every token is dead, devices are gone, the profile stays without erase", async () => {
    const u = await registerUser(c);
    const other = await secondDevice(c, u);
    const refreshable = await login(c, u.userId, u.password, { refresh_token: true });
    await c.put(`/_matrix/client/v3/user/${encodeURIComponent(u.userId)}/account_data/org.example.x`, { a: 1 }, { token: u.accessToken });
    const res = await c.post(DEACTIVATE, { auth: passwordAuth(u) }, { token: u.accessToken });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ id_server_unbind_result: "success" }); // Synapse: nothing was bound, so nothing failed to unbind

    expectError(await login(c, u.userId, u.password), 403, "M_USER_DEACTIVATED");
    for (const token of [u.accessToken, other.token, refreshable.body.access_token as string]) {
      expectError(await c.get(WHOAMI, { token }), 401, "M_UNKNOWN_TOKEN");
    }
    expectError(await c.post("/_matrix/client/v3/refresh", { refresh_token: refreshable.body.refresh_token }), 401, "M_UNKNOWN_TOKEN");
    expect(await ts.server.services.storage.devices.list(u.userId)).toEqual([]);
    expect(await ts.server.services.storage.accountData.get(u.userId, "", "org.example.x")).toBeUndefined();
    // Not erased: the profile is still there.
    const profile = await c.get(`/_matrix/client/v3/profile/${encodeURIComponent(u.userId)}`);
    expect(profile.status).toBe(200);
    expect(profile.body.displayname).toBe(u.userId.slice(1).split(":")[0]);
    // The user id cannot be registered again.
    expectError(await c.post("/_matrix/client/v3/register", { username: u.userId.slice(1).split(":")[0], password: "pw" }), 400, "M_USER_IN_USE");
  });

  it("erase: true clears the profile", async () => {
    const u = await registerUser(c);
    const base = `/_matrix/client/v3/profile/${encodeURIComponent(u.userId)}`;
    expect((await c.put(`${base}/avatar_url`, { avatar_url: "mxc://test.local/abc" }, { token: u.accessToken })).status).toBe(200);
    expect((await c.put(`${base}/org.example.job`, { "org.example.job": "tester" }, { token: u.accessToken })).status).toBe(200);
    const res = await c.post(DEACTIVATE, { erase: true, auth: passwordAuth(u) }, { token: u.accessToken });
    expect(res.status).toBe(200);
    expectError(await c.get(base), 404, "M_NOT_FOUND");
    expectError(await c.get(`${base}/displayname`), 404, "M_NOT_FOUND");
    expectError(await c.get(`${base}/avatar_url`), 404, "M_NOT_FOUND");
  });

  it("a wrongly typed erase → 400 M_BAD_JSON", async () => {
    const u = await registerUser(c);
    expectError(await c.post(DEACTIVATE, { erase: "yes", auth: passwordAuth(u) }, { token: u.accessToken }), 400, "M_BAD_JSON");
  });

  it("needs an access token", async () => {
    expectError(await c.post(DEACTIVATE, {}), 401, "M_MISSING_TOKEN");
  });
});

describe("GET /account/3pid", () => {
  it("returns an empty list", async () => {
    const u = await registerUser(c);
    const res = await c.get("/_matrix/client/v3/account/3pid", { token: u.accessToken });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ threepids: [] });
    expectError(await c.get("/_matrix/client/v3/account/3pid"), 401, "M_MISSING_TOKEN");
  });
});
