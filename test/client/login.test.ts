/** Login, access-token authentication, refresh tokens and soft logout, logout, whoami. */
import bcrypt from "bcryptjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hashToken } from "../../src/services/tokens.js";
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

const LOGIN = "/_matrix/client/v3/login";
const WHOAMI = "/_matrix/client/v3/account/whoami";
const REFRESH = "/_matrix/client/v3/refresh";

const localpart = (u: TestUser) => u.userId.slice(1).split(":")[0]!;

/** Polls `fn` until `done` holds or the deadline passes; returns the last result. */
async function pollUntil<T>(fn: () => Promise<T>, done: (v: T) => boolean, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (done(v) || Date.now() > deadline) return v;
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe("GET /login", () => {
  it("lists the password flow", async () => {
    const res = await c.get(LOGIN);
    expect(res.status).toBe(200);
    expect(res.body.flows).toEqual([{ type: "m.login.password" }]);
  });
});

describe("POST /login", () => {
  let u: TestUser;
  beforeAll(async () => {
    u = await registerUser(c, uniqueName("Login"));
  });

  it("logs in with m.id.user and a localpart, returning the spec's fields", async () => {
    const res = await login(c, localpart(u), u.password);
    expect(res.status).toBe(200);
    expect(res.body.user_id).toBe(u.userId);
    expect(typeof res.body.access_token).toBe("string");
    expect(typeof res.body.device_id).toBe("string");
    expect(res.body.home_server).toBe("test.local");
    expect(res.body.well_known).toEqual({ "m.homeserver": { base_url: "http://127.0.0.1:8008/" } });
    expect(res.body.refresh_token).toBeUndefined();
    expect(res.body.expires_in_ms).toBeUndefined();
    const who = await c.get(WHOAMI, { token: res.body.access_token as string });
    expect(who.body).toEqual({ user_id: u.userId, device_id: res.body.device_id, is_guest: false });
  });

  it("accepts the full user id and any case of the localpart", async () => {
    for (const user of [u.userId, u.userId.toUpperCase().replace(":TEST.LOCAL", ":test.local"), localpart(u).toUpperCase()]) {
      const res = await login(c, user, u.password);
      expect(res.status, user).toBe(200);
      expect(res.body.user_id).toBe(u.userId);
    }
  });

  it("accepts the legacy top-level user field", async () => {
    const res = await c.post(LOGIN, { type: "m.login.password", user: localpart(u), password: u.password });
    expect(res.status).toBe(200);
    expect(res.body.user_id).toBe(u.userId);
  });

  it("each login is a new device unless device_id is given; initial_device_display_name names it", async () => {
    const a = await login(c, u.userId, u.password, { initial_device_display_name: "Laptop" });
    const b = await login(c, u.userId, u.password);
    expect(a.body.device_id).not.toBe(b.body.device_id);
    const dev = await c.get(`/_matrix/client/v3/devices/${a.body.device_id as string}`, { token: b.body.access_token as string });
    expect(dev.body.display_name).toBe("Laptop");
  });

  it("wrong password → 403 M_FORBIDDEN", async () => {
    expectError(await login(c, u.userId, "wrong password"), 403, "M_FORBIDDEN");
  });

  it("unknown user → 403 M_FORBIDDEN, the same answer as a wrong password", async () => {
    const res = expectError(await login(c, uniqueName("ghost"), "whatever"), 403, "M_FORBIDDEN");
    const wrong = expectError(await login(c, u.userId, "wrong password"), 403, "M_FORBIDDEN");
    expect(res.error).toBe(wrong.error);
  });

  it("a user of another server → 403 M_FORBIDDEN", async () => {
    expectError(await login(c, `@${localpart(u)}:elsewhere.example`, u.password), 403, "M_FORBIDDEN");
  });

  it("unknown login type → 400 M_UNKNOWN", async () => {
    expectError(await c.post(LOGIN, { type: "m.login.fingerprint", identifier: { type: "m.id.user", user: u.userId } }), 400, "M_UNKNOWN");
  });

  it("missing type → 400 M_BAD_JSON; missing identifier → 400 M_MISSING_PARAM; missing password → 400", async () => {
    expectError(await c.post(LOGIN, { identifier: { type: "m.id.user", user: u.userId }, password: u.password }), 400, "M_BAD_JSON");
    expectError(await c.post(LOGIN, { type: "m.login.password", password: u.password }), 400, "M_MISSING_PARAM");
    expectError(await c.post(LOGIN, { type: "m.login.password", identifier: { type: "m.id.user", user: u.userId } }), 400, "M_BAD_JSON");
    expectError(await c.post(LOGIN, { type: "m.login.password", identifier: { type: "m.id.user" }, password: u.password }), 400, "M_BAD_JSON");
    expectError(await c.post(LOGIN, { type: "m.login.password", identifier: { type: "m.id.unknown", user: "x" }, password: u.password }), 400, "M_UNKNOWN");
  });

  it("a deactivated user → 403 M_USER_DEACTIVATED", async () => {
    const d = await registerUser(c);
    const deact = await c.post(
      "/_matrix/client/v3/account/deactivate",
      { auth: { type: "m.login.password", identifier: { type: "m.id.user", user: d.userId }, password: d.password } },
      { token: d.accessToken },
    );
    expect(deact.status).toBe(200);
    expectError(await login(c, d.userId, d.password), 403, "M_USER_DEACTIVATED");
  });

  it("login reusing a device_id keeps the device and invalidates that device's old token", async () => {
    const v = await registerUser(c);
    const first = await login(c, v.userId, v.password, { device_id: "REUSED", initial_device_display_name: "Original name" });
    expect(first.body.device_id).toBe("REUSED");
    const second = await login(c, v.userId, v.password, { device_id: "REUSED" });
    expect(second.status).toBe(200);
    expect(second.body.device_id).toBe("REUSED");
    expectError(await c.get(WHOAMI, { token: first.body.access_token as string }), 401, "M_UNKNOWN_TOKEN");
    expect((await c.get(WHOAMI, { token: second.body.access_token as string })).body.device_id).toBe("REUSED");
    const devices = (await c.get("/_matrix/client/v3/devices", { token: v.accessToken })).body.devices as { device_id: string; display_name?: string }[];
    expect(devices.filter((d) => d.device_id === "REUSED")).toEqual([expect.objectContaining({ device_id: "REUSED", display_name: "Original name" })]);
    // The registration device is untouched.
    expect((await c.get(WHOAMI, { token: v.accessToken })).status).toBe(200);
  });
});

describe("access tokens", () => {
  let u: TestUser;
  beforeAll(async () => {
    u = await registerUser(c);
  });

  it("missing token → 401 M_MISSING_TOKEN", async () => {
    expectError(await c.get(WHOAMI), 401, "M_MISSING_TOKEN");
  });

  it("garbage token → 401 M_UNKNOWN_TOKEN with soft_logout false", async () => {
    const body = expectError(await c.get(WHOAMI, { token: "not-a-real-token" }), 401, "M_UNKNOWN_TOKEN");
    expect(body.soft_logout).toBe(false);
  });

  it("the access_token query parameter works", async () => {
    const res = await c.get(`${WHOAMI}?access_token=${encodeURIComponent(u.accessToken)}`);
    expect(res.status).toBe(200);
    expect(res.body.user_id).toBe(u.userId);
    expectError(await c.get(`${WHOAMI}?access_token=garbage`), 401, "M_UNKNOWN_TOKEN");
  });

  it("the Bearer scheme is case-insensitive", async () => {
    expect((await c.get(WHOAMI, { headers: { authorization: `bearer ${u.accessToken}` } })).status).toBe(200);
  });

  it("a malformed Authorization header → 401 M_MISSING_TOKEN", async () => {
    for (const authorization of ["Basic dXNlcjpwYXNz", "Bearer", "Bearer two tokens", u.accessToken]) {
      expectError(await c.get(WHOAMI, { headers: { authorization } }), 401, "M_MISSING_TOKEN");
    }
  });
});

describe("POST /logout and /logout/all", () => {
  it("/logout kills the token and deletes the device, leaving other devices alone", async () => {
    const u = await registerUser(c);
    const other = await login(c, u.userId, u.password);
    const res = await c.post("/_matrix/client/v3/logout", {}, { token: other.body.access_token as string });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({});
    expectError(await c.get(WHOAMI, { token: other.body.access_token as string }), 401, "M_UNKNOWN_TOKEN");
    const devices = (await c.get("/_matrix/client/v3/devices", { token: u.accessToken })).body.devices as { device_id: string }[];
    expect(devices.map((d) => d.device_id)).toEqual([u.deviceId]);
  });

  it("/logout also revokes the device's refresh token", async () => {
    const u = await registerUser(c);
    const s = await login(c, u.userId, u.password, { refresh_token: true });
    expect((await c.post("/_matrix/client/v3/logout", {}, { token: s.body.access_token as string })).status).toBe(200);
    expectError(await c.post(REFRESH, { refresh_token: s.body.refresh_token }), 401, "M_UNKNOWN_TOKEN");
  });

  it("/logout needs a valid token", async () => {
    expectError(await c.post("/_matrix/client/v3/logout", {}), 401, "M_MISSING_TOKEN");
    expectError(await c.post("/_matrix/client/v3/logout", {}, { token: "garbage" }), 401, "M_UNKNOWN_TOKEN");
  });

  it("/logout/all kills every token and device of the user, and no one else's", async () => {
    const u = await registerUser(c);
    const bystander = await registerUser(c);
    const s1 = await login(c, u.userId, u.password);
    const s2 = await login(c, u.userId, u.password, { refresh_token: true });
    const res = await c.post("/_matrix/client/v3/logout/all", {}, { token: s1.body.access_token as string });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({});
    for (const token of [u.accessToken, s1.body.access_token as string, s2.body.access_token as string]) {
      expectError(await c.get(WHOAMI, { token }), 401, "M_UNKNOWN_TOKEN");
    }
    expectError(await c.post(REFRESH, { refresh_token: s2.body.refresh_token }), 401, "M_UNKNOWN_TOKEN");
    const again = await login(c, u.userId, u.password);
    const devices = (await c.get("/_matrix/client/v3/devices", { token: again.body.access_token as string })).body.devices as { device_id: string }[];
    expect(devices.map((d) => d.device_id)).toEqual([again.body.device_id]);
    expect((await c.get(WHOAMI, { token: bystander.accessToken })).status).toBe(200);
  });
});

describe("refresh tokens", () => {
  async function refresh(token: unknown): Promise<Response> {
    return c.post(REFRESH, { refresh_token: token });
  }

  it("login with refresh_token returns a refresh token and expires_in_ms", async () => {
    const u = await registerUser(c);
    const res = await login(c, u.userId, u.password, { refresh_token: true });
    expect(res.status).toBe(200);
    expect(typeof res.body.refresh_token).toBe("string");
    expect(res.body.expires_in_ms).toBe(ts.config.refreshableAccessTokenLifetimeMs);
  });

  it("/refresh gives working tokens for the same device", async () => {
    const u = await registerUser(c);
    const s = await login(c, u.userId, u.password, { refresh_token: true });
    const r = await refresh(s.body.refresh_token);
    expect(r.status).toBe(200);
    expect(Object.keys(r.body).sort()).toEqual(["access_token", "expires_in_ms", "refresh_token"]);
    expect(r.body.access_token).not.toBe(s.body.access_token);
    expect(r.body.refresh_token).not.toBe(s.body.refresh_token);
    const who = await c.get(WHOAMI, { token: r.body.access_token as string });
    expect(who.body).toEqual({ user_id: u.userId, device_id: s.body.device_id, is_guest: false });
    // The chain continues.
    const r2 = await refresh(r.body.refresh_token);
    expect(r2.status).toBe(200);
    expect((await c.get(WHOAMI, { token: r2.body.access_token as string })).status).toBe(200);
  });

  it("the old refresh token works until the new access token is used, then 401 M_UNKNOWN_TOKEN", async () => {
    const u = await registerUser(c);
    const s = await login(c, u.userId, u.password, { refresh_token: true });
    const old = s.body.refresh_token;
    const r1 = await refresh(old);
    expect(r1.status).toBe(200);
    // The response was "lost": the client retries with the old refresh token, which still works.
    const r2 = await refresh(old);
    expect(r2.status).toBe(200);
    expect((await c.get(WHOAMI, { token: r2.body.access_token as string })).status).toBe(200);
    // Now the new access token was used: the old refresh token is revoked.
    expectError(await refresh(old), 401, "M_UNKNOWN_TOKEN");
    // And the new refresh token carries on.
    expect((await refresh(r2.body.refresh_token)).status).toBe(200);
  });

  it("using the new refresh token also revokes the old one", async () => {
    const u = await registerUser(c);
    const s = await login(c, u.userId, u.password, { refresh_token: true });
    const r1 = await refresh(s.body.refresh_token);
    expect((await refresh(r1.body.refresh_token)).status).toBe(200);
    expectError(await refresh(s.body.refresh_token), 401, "M_UNKNOWN_TOKEN");
  });

  it("an unknown refresh token → 401 M_UNKNOWN_TOKEN; a missing one → 400", async () => {
    const body = expectError(await refresh("myr_not_a_token"), 401, "M_UNKNOWN_TOKEN");
    expect(body.soft_logout).toBe(false);
    expectError(await c.post(REFRESH, {}), 400, "M_BAD_JSON");
    expectError(await refresh(42), 400, "M_BAD_JSON");
  });

  it("an access token is not a refresh token", async () => {
    const u = await registerUser(c);
    expectError(await refresh(u.accessToken), 401, "M_UNKNOWN_TOKEN");
  });

  describe("with a short refreshable_access_token_lifetime", () => {
    let ss: TestServer;
    let sc: Client;
    beforeAll(async () => {
      ss = await startTestServer({ config: { refreshable_access_token_lifetime: 300 } });
      sc = new Client(ss.baseUrl);
    });
    afterAll(async () => {
      await ss?.close();
    });

    it("an expired refreshable access token → 401 M_UNKNOWN_TOKEN with soft_logout true; /refresh recovers", async () => {
      const u = await registerUser(sc);
      const s = await login(sc, u.userId, u.password, { refresh_token: true });
      expect(s.body.expires_in_ms).toBe(300);
      const token = s.body.access_token as string;
      const res = await pollUntil(
        () => sc.get(WHOAMI, { token }),
        (r) => r.status !== 200,
      );
      const body = expectError(res, 401, "M_UNKNOWN_TOKEN");
      expect(body.soft_logout).toBe(true);
      const r = await sc.post(REFRESH, { refresh_token: s.body.refresh_token });
      expect(r.status).toBe(200);
      const who = await sc.get(WHOAMI, { token: r.body.access_token as string });
      expect(who.body.device_id).toBe(s.body.device_id);
    });

    it("tokens issued without refresh_token do not expire", async () => {
      const u = await registerUser(sc);
      const s = await login(sc, u.userId, u.password);
      expect(s.body.expires_in_ms).toBeUndefined();
      // Wait until a refreshable token issued after this one has expired, then check this one still works.
      const probe = await login(sc, u.userId, u.password, { refresh_token: true });
      await pollUntil(
        () => sc.get(WHOAMI, { token: probe.body.access_token as string }),
        (r) => r.status !== 200,
      );
      expect((await sc.get(WHOAMI, { token: s.body.access_token as string })).status).toBe(200);
    });
  });
});

describe("refresh_token_lifetime", () => {
  it("an expired refresh token → 401 M_UNKNOWN_TOKEN without soft_logout", async () => {
    // Both tokens are issued at the same instant with the same lifetime, so once the access token has expired the
    // refresh token has too.
    const es = await startTestServer({ config: { refreshable_access_token_lifetime: 200, refresh_token_lifetime: 200 } });
    try {
      const ec = new Client(es.baseUrl);
      const u = await registerUser(ec);
      const s = await login(ec, u.userId, u.password, { refresh_token: true });
      const token = s.body.access_token as string;
      expectError(await pollUntil(() => ec.get(WHOAMI, { token }), (r) => r.status !== 200), 401, "M_UNKNOWN_TOKEN");
      const body = expectError(await ec.post(REFRESH, { refresh_token: s.body.refresh_token }), 401, "M_UNKNOWN_TOKEN");
      expect(body.soft_logout).toBe(false);
    } finally {
      await es.close();
    }
  });
});

describe("rc_login", () => {
  it("address: logins from one address beyond burst_count → 429 M_LIMIT_EXCEEDED", async () => {
    const OPEN = { per_second: 10_000, burst_count: 100_000 };
    const ls = await startTestServer({ config: { rc_login: { address: { per_second: 0.01, burst_count: 3 }, account: OPEN, failed_attempts: OPEN } } });
    try {
      const lc = new Client(ls.baseUrl);
      const u = await registerUser(lc);
      expect((await login(lc, u.userId, u.password)).status).toBe(200);
      expect((await login(lc, u.userId, "wrong")).status).toBe(403);
      expect((await login(lc, uniqueName(), "wrong")).status).toBe(403);
      const res = await login(lc, u.userId, u.password);
      const body = expectError(res, 429, "M_LIMIT_EXCEEDED");
      expect(body.retry_after_ms as number).toBeGreaterThan(0);
      expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(0);
    } finally {
      await ls.close();
    }
  });

  describe("per account", () => {
    let ls: TestServer;
    let lc: Client;
    beforeAll(async () => {
      const OPEN = { per_second: 10_000, burst_count: 100_000 };
      ls = await startTestServer({ config: { rc_login: { address: OPEN, account: { per_second: 0.01, burst_count: 2 }, failed_attempts: { per_second: 0.01, burst_count: 2 } } } });
      lc = new Client(ls.baseUrl);
    });
    afterAll(async () => {
      await ls?.close();
    });

    it("account: successful logins to one account beyond burst_count → 429; other accounts unaffected", async () => {
      const u = await registerUser(lc);
      const other = await registerUser(lc);
      expect((await login(lc, u.userId, u.password)).status).toBe(200);
      expect((await login(lc, u.userId, u.password)).status).toBe(200);
      expectError(await login(lc, u.userId, u.password), 429, "M_LIMIT_EXCEEDED");
      expect((await login(lc, other.userId, other.password)).status).toBe(200);
    });

    it("failed_attempts: after burst_count wrong passwords even the right one → 429", async () => {
      const u = await registerUser(lc);
      expectError(await login(lc, u.userId, "wrong 1"), 403, "M_FORBIDDEN");
      expectError(await login(lc, u.userId, "wrong 2"), 403, "M_FORBIDDEN");
      expectError(await login(lc, u.userId, u.password), 429, "M_LIMIT_EXCEEDED");
    });

    it("failed attempts do not use up the account's login allowance", async () => {
      const u = await registerUser(lc);
      expectError(await login(lc, u.userId, "wrong"), 403, "M_FORBIDDEN");
      expect((await login(lc, u.userId, u.password)).status).toBe(200);
      expect((await login(lc, u.userId, u.password)).status).toBe(200);
    });
  });
});

describe("credential storage", () => {
  it("passwords are stored as argon2id hashes; access and refresh tokens only as hashes", async () => {
    const u = await registerUser(c);
    const row = await ts.server.services.storage.users.get(u.userId);
    expect(row?.password_hash).toMatch(/^\$argon2id\$/);
    expect(row?.password_hash).not.toContain(u.password);
    const s = await login(c, u.userId, u.password, { refresh_token: true });
    const { tokens } = ts.server.services.storage;
    expect(await tokens.lookupAccessToken(u.accessToken)).toBeUndefined();
    expect(await tokens.lookupAccessToken(hashToken(u.accessToken))).toMatchObject({ user_id: u.userId, device_id: u.deviceId });
    expect(await tokens.lookupRefreshToken(s.body.refresh_token as string)).toBeUndefined();
    expect(await tokens.lookupRefreshToken(hashToken(s.body.refresh_token as string))).toMatchObject({ user_id: u.userId });
    // At least 128 random bits.
    expect(Buffer.from(u.accessToken.replace(/^[a-z]+_/, ""), "base64url").length).toBeGreaterThanOrEqual(16);
  });

  it("a Synapse bcrypt hash verifies, so an imported Synapse user can log in", async () => {
    const u = await registerUser(c);
    await ts.server.services.storage.users.setPasswordHash(u.userId, bcrypt.hashSync("synapse password", 4).replace(/^\$2a\$/, "$2b$"));
    expect((await login(c, u.userId, "synapse password")).status).toBe(200);
    expectError(await login(c, u.userId, u.password), 403, "M_FORBIDDEN");
  });
});

describe("GET /account/whoami", () => {
  it("returns user_id, device_id and is_guest", async () => {
    const u = await registerUser(c);
    const res = await c.get(WHOAMI, { token: u.accessToken });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ user_id: u.userId, device_id: u.deviceId, is_guest: false });
    expect((await c.get("/_matrix/client/r0/account/whoami", { token: u.accessToken })).body).toEqual(res.body);
  });
});
