import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client, expectError, login, registerUser, uniqueName, type Response } from "../helpers/http.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

const REGISTER = "/_matrix/client/v3/register";

let ts: TestServer;
let c: Client;

beforeAll(async () => {
  ts = await startTestServer();
  c = new Client(ts.baseUrl);
});
afterAll(async () => {
  await ts?.close();
});

describe("POST /register", () => {
  it("answers the first request with the UIA flows and a session", async () => {
    const res = await c.post("/_matrix/client/v3/register", { username: uniqueName(), password: "pw" });
    expect(res.status).toBe(401);
    expect(res.body.flows).toEqual([{ stages: ["m.login.dummy"] }]);
    expect(typeof res.body.session).toBe("string");
    expect(res.body.params).toEqual({});
    expect(res.body.errcode).toBeUndefined();
  });

  it("registers with the dummy stage and returns a working token", async () => {
    const u = await registerUser(c);
    expect(u.userId).toMatch(/^@user\d+_[a-z0-9]+:test\.local$/);
    const who = await c.get("/_matrix/client/v3/account/whoami", { token: u.accessToken });
    expect(who.status).toBe(200);
    expect(who.body).toEqual({ user_id: u.userId, device_id: u.deviceId, is_guest: false });
  });

  it("lower-cases the username", async () => {
    const name = uniqueName("Upper");
    const u = await registerUser(c, name);
    expect(u.userId).toBe(`@${name.toLowerCase()}:test.local`);
  });

  it("rejects a taken username before UIA with M_USER_IN_USE", async () => {
    const u = await registerUser(c);
    const localpart = u.userId.slice(1).split(":")[0];
    expectError(await c.post("/_matrix/client/v3/register", { username: localpart, password: "x" }), 400, "M_USER_IN_USE");
  });

  it("rejects invalid usernames with M_INVALID_USERNAME", async () => {
    for (const username of ["", "bad name", "ümlaut", "_reserved", "a:b", "x".repeat(260)]) {
      expectError(await c.post("/_matrix/client/v3/register", { username, password: "x" }), 400, "M_INVALID_USERNAME");
    }
  });

  it("answers wrong types with M_BAD_JSON and non-JSON with M_NOT_JSON", async () => {
    expectError(await c.post("/_matrix/client/v3/register", { username: 5 }), 400, "M_BAD_JSON");
    expectError(await c.post("/_matrix/client/v3/register", "{not json"), 400, "M_NOT_JSON");
    expectError(await c.post("/_matrix/client/v3/register", [1, 2]), 400, "M_BAD_JSON");
  });

  it("honours inhibit_login", async () => {
    const username = uniqueName();
    const first = await c.post("/_matrix/client/v3/register", { username, password: "pw", inhibit_login: true });
    const res = await c.post("/_matrix/client/v3/register", { username, password: "pw", inhibit_login: true, auth: { type: "m.login.dummy", session: first.body.session } });
    expect(res.status).toBe(200);
    expect(res.body.user_id).toBe(`@${username}:test.local`);
    expect(res.body.access_token).toBeUndefined();
    expect(res.body.device_id).toBeUndefined();
    expect((await login(c, username, "pw")).status).toBe(200);
  });

  it("GET /register/available", async () => {
    const u = await registerUser(c);
    expect((await c.get(`/_matrix/client/v3/register/available?username=${uniqueName()}`)).body).toEqual({ available: true });
    expectError(await c.get(`/_matrix/client/v3/register/available?username=${u.userId.slice(1).split(":")[0]}`), 400, "M_USER_IN_USE");
    expectError(await c.get(`/_matrix/client/v3/register/available?username=no%20spaces`), 400, "M_INVALID_USERNAME");
    expectError(await c.get(`/_matrix/client/v3/register/available`), 400, "M_MISSING_PARAM");
  });
});

describe("POST /register options", () => {
  it("honours device_id and initial_device_display_name", async () => {
    const username = uniqueName();
    const body = { username, password: "pw", device_id: "MYDEVICE", initial_device_display_name: "My phone" };
    const first = await c.post(REGISTER, body);
    const res = await c.post(REGISTER, { ...body, auth: { type: "m.login.dummy", session: first.body.session } });
    expect(res.status).toBe(200);
    expect(res.body.device_id).toBe("MYDEVICE");
    const dev = await c.get("/_matrix/client/v3/devices/MYDEVICE", { token: res.body.access_token as string });
    expect(dev.status).toBe(200);
    expect(dev.body).toMatchObject({ device_id: "MYDEVICE", display_name: "My phone" });
  });

  it("returns a refresh token and expires_in_ms when refresh_token is true", async () => {
    const username = uniqueName();
    const first = await c.post(REGISTER, { username, password: "pw", refresh_token: true });
    const res = await c.post(REGISTER, { username, password: "pw", refresh_token: true, auth: { type: "m.login.dummy", session: first.body.session } });
    expect(res.status).toBe(200);
    expect(typeof res.body.refresh_token).toBe("string");
    expect(res.body.expires_in_ms).toBe(ts.config.refreshableAccessTokenLifetimeMs);
    expect(res.body.refresh_token).not.toBe(res.body.access_token);
    expect((await c.get("/_matrix/client/v3/account/whoami", { token: res.body.access_token as string })).status).toBe(200);
  });

  it("without refresh_token, returns neither refresh_token nor expires_in_ms", async () => {
    const username = uniqueName();
    const first = await c.post(REGISTER, { username, password: "pw" });
    const res = await c.post(REGISTER, { username, password: "pw", auth: { type: "m.login.dummy", session: first.body.session } });
    expect(res.status).toBe(200);
    expect(Object.keys(res.body).sort()).toEqual(["access_token", "device_id", "home_server", "user_id"]);
    expect(res.body.home_server).toBe("test.local");
  });

  it("generates a numeric user id when no username is given", async () => {
    const first = await c.post(REGISTER, { password: "pw" });
    const res = await c.post(REGISTER, { auth: { type: "m.login.dummy", session: first.body.session } });
    expect(res.status).toBe(200);
    expect(res.body.user_id).toMatch(/^@\d+:test\.local$/);
  });

  it("requires a password", async () => {
    const first = await c.post(REGISTER, { username: uniqueName() });
    expectError(await c.post(REGISTER, { auth: { type: "m.login.dummy", session: first.body.session } }), 400, "M_MISSING_PARAM");
  });

  it("rejects an unknown kind", async () => {
    expectError(await c.post(`${REGISTER}?kind=robot`, {}), 400, "M_INVALID_PARAM");
  });
});

describe("POST /register: UIA sessions", () => {
  it("a later request may carry only `auth`: the first request's parameters apply", async () => {
    const username = uniqueName();
    const first = await c.post(REGISTER, { username, password: "first pw", initial_device_display_name: "From the first request" });
    expect(first.status).toBe(401);
    const res = await c.post(REGISTER, { auth: { type: "m.login.dummy", session: first.body.session } });
    expect(res.status).toBe(200);
    expect(res.body.user_id).toBe(`@${username}:test.local`);
    expect((await login(c, username, "first pw")).status).toBe(200);
    const dev = await c.get(`/_matrix/client/v3/devices/${res.body.device_id as string}`, { token: res.body.access_token as string });
    expect(dev.body.display_name).toBe("From the first request");
  });

  it("never stores the password in plain text in the UIA session", async () => {
    const username = uniqueName();
    const secret = `plaintext-${uniqueName()}`;
    const first = await c.post(REGISTER, { username, password: secret });
    const row = await ts.server.services.storage.uia.get(first.body.session as string);
    expect(row).toBeDefined();
    expect(JSON.stringify(row)).not.toContain(secret);
    expect((await c.post(REGISTER, { auth: { type: "m.login.dummy", session: first.body.session } })).status).toBe(200);
    expect((await login(c, username, secret)).status).toBe(200);
  });

  it("ignores a client-supplied password_hash", async () => {
    const first = await c.post(REGISTER, { username: uniqueName(), password_hash: "$2b$04$abcdefghijklmnopqrstuu" });
    expectError(await c.post(REGISTER, { auth: { type: "m.login.dummy", session: first.body.session } }), 400, "M_MISSING_PARAM");
  });

  it("a completed session answers a replay with the same user, logged in afresh (as Synapse)", async () => {
    for (const username of [uniqueName(), undefined]) {
      const first = await c.post(REGISTER, { username, password: "pw" });
      const auth = { type: "m.login.dummy", session: first.body.session };
      const done = await c.post(REGISTER, { username, password: "pw", auth });
      expect(done.status, done.text).toBe(200);
      const again = await c.post(REGISTER, { username, password: "pw", auth });
      expect(again.status, again.text).toBe(200);
      expect(again.body.user_id).toBe(done.body.user_id);
      expect(typeof again.body.access_token).toBe("string");
      expect(again.body.access_token).not.toBe(done.body.access_token);
      const who = await c.get("/_matrix/client/v3/account/whoami", { token: again.body.access_token as string });
      expect(who.body.user_id).toBe(done.body.user_id);
    }
    // The session does not make another username register: a replay is the same user whatever it asks for.
    const first = await c.post(REGISTER, { username: uniqueName(), password: "pw" });
    const auth = { type: "m.login.dummy", session: first.body.session };
    const done = await c.post(REGISTER, { password: "pw", auth });
    const other = await c.post(REGISTER, { username: uniqueName(), password: "pw", auth });
    expect(other.status, other.text).toBe(200);
    expect(other.body.user_id).toBe(done.body.user_id);
    // Someone else's session is no way to take a registered username.
    const taken = (done.body.user_id as string).slice(1).split(":")[0]!;
    const fresh = await c.post(REGISTER, { username: taken, password: "pw" });
    expectError(fresh, 400, "M_USER_IN_USE");
  });

  it("an unknown session id is refused with 400", async () => {
    const res = await c.post(REGISTER, { username: uniqueName(), password: "pw", auth: { type: "m.login.dummy", session: "no-such-session" } });
    expectError(res, 400, "M_INVALID_PARAM");
  });

  it("a session started on one endpoint cannot be used on another → 403", async () => {
    const u = await registerUser(c);
    const first = await c.post(REGISTER, { username: uniqueName(), password: "pw" });
    const res = await c.post(
      "/_matrix/client/v3/account/password",
      { new_password: "hijacked", auth: { type: "m.login.password", identifier: { type: "m.id.user", user: u.userId }, password: u.password, session: first.body.session } },
      { token: u.accessToken },
    );
    expectError(res, 403, "M_FORBIDDEN");
    // The password did not change.
    expect((await login(c, u.userId, u.password)).status).toBe(200);
  });

  it("a stage that is not in the flows is refused inside the 401", async () => {
    const first = await c.post(REGISTER, { username: uniqueName(), password: "pw" });
    const res = await c.post(REGISTER, { auth: { type: "m.login.password", session: first.body.session, password: "x", user: "y" } });
    expect(res.status).toBe(401);
    expect(res.body.flows).toEqual([{ stages: ["m.login.dummy"] }]);
    expect(res.body.session).toBe(first.body.session);
    expect(typeof res.body.errcode).toBe("string");
  });

  it("a malformed auth dict is 400 M_BAD_JSON", async () => {
    expectError(await c.post(REGISTER, { username: uniqueName(), password: "pw", auth: "dummy" }), 400, "M_BAD_JSON");
    expectError(await c.post(REGISTER, { username: uniqueName(), password: "pw", auth: { type: "m.login.dummy", session: 5 } }), 400, "M_BAD_JSON");
  });
});

describe("guest registration", () => {
  it("is refused with M_GUEST_ACCESS_FORBIDDEN unless allow_guest_access", async () => {
    expectError(await c.post(`${REGISTER}?kind=guest`, {}), 403, "M_GUEST_ACCESS_FORBIDDEN");
  });

  describe("with allow_guest_access", () => {
    let gs: TestServer;
    let gc: Client;
    beforeAll(async () => {
      gs = await startTestServer({ config: { allow_guest_access: true } });
      gc = new Client(gs.baseUrl);
    });
    afterAll(async () => {
      await gs?.close();
    });

    async function registerGuest(): Promise<Response> {
      const res = await gc.post(`${REGISTER}?kind=guest`, { initial_device_display_name: "Guest browser" });
      expect(res.status).toBe(200);
      return res;
    }

    it("gives a guest account with a token; whoami says is_guest", async () => {
      const res = await registerGuest();
      expect(res.body.user_id).toMatch(/^@\d+:test\.local$/);
      expect(typeof res.body.access_token).toBe("string");
      expect(typeof res.body.device_id).toBe("string");
      const who = await gc.get("/_matrix/client/v3/account/whoami", { token: res.body.access_token as string });
      expect(who.body).toEqual({ user_id: res.body.user_id, device_id: res.body.device_id, is_guest: true });
    });

    it("ignores a username and password for guests", async () => {
      const res = await gc.post(`${REGISTER}?kind=guest`, { username: "wantedname", password: "pw" });
      expect(res.status).toBe(200);
      expect(res.body.user_id).not.toBe("@wantedname:test.local");
    });

    it("guests may use guest endpoints but not the others", async () => {
      const res = await registerGuest();
      const token = res.body.access_token as string;
      const userId = encodeURIComponent(res.body.user_id as string);
      expect((await gc.get("/_matrix/client/v3/capabilities", { token })).status).toBe(200);
      expect((await gc.put(`/_matrix/client/v3/user/${userId}/account_data/org.example.guest`, { a: 1 }, { token })).status).toBe(200);
      expectError(await gc.get("/_matrix/client/v3/devices", { token }), 403, "M_GUEST_ACCESS_FORBIDDEN");
      expectError(await gc.post("/_matrix/client/v3/account/password", { new_password: "x" }, { token }), 403, "M_GUEST_ACCESS_FORBIDDEN");
      expectError(await gc.post("/_matrix/client/v3/account/deactivate", {}, { token }), 403, "M_GUEST_ACCESS_FORBIDDEN");
      expectError(await gc.get("/_matrix/client/v3/account/3pid", { token }), 403, "M_GUEST_ACCESS_FORBIDDEN");
      expect((await gc.post("/_matrix/client/v3/logout", {}, { token })).status).toBe(200);
      expectError(await gc.get("/_matrix/client/v3/account/whoami", { token }), 401, "M_UNKNOWN_TOKEN");
    });

    it("a guest upgrades to a full user with guest_access_token and its own localpart (through UIA)", async () => {
      const res = await registerGuest();
      const guestToken = res.body.access_token as string;
      const userId = res.body.user_id as string;
      const localpart = userId.slice(1, userId.indexOf(":"));
      const body = { username: localpart, password: "upgraded password 1", guest_access_token: guestToken };
      const first = await gc.post(REGISTER, body);
      expect(first.status, first.text).toBe(401);
      const done = await gc.post(REGISTER, { ...body, auth: { type: "m.login.dummy", session: first.body.session } });
      expect(done.status, done.text).toBe(200);
      expect(done.body.user_id).toBe(userId);
      const who = await gc.get("/_matrix/client/v3/account/whoami", { token: done.body.access_token as string });
      expect(who.body).toMatchObject({ user_id: userId, is_guest: false });
      // The guest's own token now belongs to a full user too.
      expect((await gc.get("/_matrix/client/v3/devices", { token: guestToken })).status).toBe(200);
      expect((await login(gc, userId, "upgraded password 1")).status).toBe(200);
      // Done once: it is no guest any more.
      expectError(await gc.post(REGISTER, { ...body, auth: { type: "m.login.dummy" } }), 403, "M_FORBIDDEN");
    });

    it("a guest token cannot take another user's name", async () => {
      const a = await registerGuest();
      const b = await registerGuest();
      const other = a.body.user_id as string;
      const body = { username: other.slice(1, other.indexOf(":")), password: "pw pw pw pw", guest_access_token: b.body.access_token };
      expectError(await gc.post(REGISTER, body), 403, "M_FORBIDDEN");
      expectError(await gc.post(REGISTER, { ...body, guest_access_token: "not a token" }), 403, "M_FORBIDDEN");
      const full = await registerUser(gc);
      expectError(await gc.post(REGISTER, { ...body, username: full.userId.slice(1, full.userId.indexOf(":")), guest_access_token: full.accessToken }), 403, "M_FORBIDDEN");
      expectError(await gc.post(REGISTER, { password: "pw pw pw pw", guest_access_token: b.body.access_token }), 400, "M_MISSING_PARAM");
    });

    it("guests cannot log in with a password", async () => {
      const res = await registerGuest();
      expectError(await login(gc, res.body.user_id as string, ""), 403, "M_FORBIDDEN");
    });
  });
});

describe("registration disabled", () => {
  let ds: TestServer;
  let dc: Client;
  beforeAll(async () => {
    ds = await startTestServer({ config: { enable_registration: false } });
    dc = new Client(ds.baseUrl);
  });
  afterAll(async () => {
    await ds?.close();
  });

  it("POST /register → 403 M_FORBIDDEN", async () => {
    expectError(await dc.post(REGISTER, { username: uniqueName(), password: "pw" }), 403, "M_FORBIDDEN");
    expectError(await dc.post(REGISTER, { username: uniqueName(), password: "pw", auth: { type: "m.login.dummy" } }), 403, "M_FORBIDDEN");
  });

  it("GET /register/available and the token validity check → 403 M_FORBIDDEN", async () => {
    expectError(await dc.get(`${REGISTER}/available?username=${uniqueName()}`), 403, "M_FORBIDDEN");
    expectError(await dc.get("/_matrix/client/v1/register/m.login.registration_token/validity?token=abc"), 403, "M_FORBIDDEN");
  });

  it("guest registration is still governed by allow_guest_access", async () => {
    expectError(await dc.post(`${REGISTER}?kind=guest`, {}), 403, "M_GUEST_ACCESS_FORBIDDEN");
  });
});

describe("registration_requires_token", () => {
  let rs: TestServer;
  let rc: Client;
  const VALIDITY = "/_matrix/client/v1/register/m.login.registration_token/validity";
  beforeAll(async () => {
    rs = await startTestServer({ config: { enable_registration_without_verification: false, registration_requires_token: true } });
    rc = new Client(rs.baseUrl);
  });
  afterAll(async () => {
    await rs?.close();
  });

  async function addToken(opts: { usesAllowed?: number | null; expiry?: number | null } = {}): Promise<string> {
    const token = uniqueName("tok");
    await rs.server.services.storage.registrationTokens.insert({ token, uses_allowed: opts.usesAllowed ?? null, pending: 0, completed: 0, expiry_time: opts.expiry ?? null });
    return token;
  }

  /** Runs the token stage then the dummy stage; returns the last response. */
  async function registerWithToken(token: string, username = uniqueName()): Promise<Response> {
    const first = await rc.post(REGISTER, { username, password: "pw" });
    expect(first.status).toBe(401);
    const session = first.body.session;
    const afterToken = await rc.post(REGISTER, { auth: { type: "m.login.registration_token", token, session } });
    if (afterToken.status !== 401 || afterToken.body.errcode !== undefined) return afterToken;
    expect(afterToken.body.completed).toEqual(["m.login.registration_token"]);
    return rc.post(REGISTER, { auth: { type: "m.login.dummy", session } });
  }

  it("offers the token stage before the dummy stage", async () => {
    const res = await rc.post(REGISTER, { username: uniqueName(), password: "pw" });
    expect(res.status).toBe(401);
    expect(res.body.flows).toEqual([{ stages: ["m.login.registration_token", "m.login.dummy"] }]);
  });

  it("the dummy stage alone is not enough", async () => {
    const first = await rc.post(REGISTER, { username: uniqueName(), password: "pw" });
    const res = await rc.post(REGISTER, { auth: { type: "m.login.dummy", session: first.body.session } });
    expect(res.status).toBe(401);
    expect(res.body.completed).toEqual(["m.login.dummy"]);
  });

  it("an invalid token fails the stage: 401 with an errcode, the flows and the session", async () => {
    const first = await rc.post(REGISTER, { username: uniqueName(), password: "pw" });
    const res = await rc.post(REGISTER, { auth: { type: "m.login.registration_token", token: "wrong", session: first.body.session } });
    expect(res.status).toBe(401);
    expect(res.body.errcode).toBe("M_UNAUTHORIZED");
    expect(typeof res.body.error).toBe("string");
    expect(res.body.flows).toEqual([{ stages: ["m.login.registration_token", "m.login.dummy"] }]);
    expect(res.body.session).toBe(first.body.session);
    // As Synapse, `completed` is present (empty) once an auth dict was sent.
    expect(res.body.completed).toEqual([]);
  });

  it("a valid token registers, and its use is counted", async () => {
    const token = await addToken();
    const res = await registerWithToken(token);
    expect(res.status).toBe(200);
    expect(typeof res.body.access_token).toBe("string");
    const row = await rs.server.services.storage.registrationTokens.get(token);
    expect(row).toMatchObject({ completed: 1, pending: 0 });
  });

  it("a token whose uses are exhausted is refused", async () => {
    const token = await addToken({ usesAllowed: 1 });
    expect((await rc.get(`${VALIDITY}?token=${token}`)).body).toEqual({ valid: true });
    expect((await registerWithToken(token)).status).toBe(200);
    expect((await rc.get(`${VALIDITY}?token=${token}`)).body).toEqual({ valid: false });
    const res = await registerWithToken(token);
    expect(res.status).toBe(401);
    expect(res.body.errcode).toBe("M_UNAUTHORIZED");
  });

  it("repeating the token stage in one session reserves only one use", async () => {
    const token = await addToken({ usesAllowed: 2 });
    const first = await rc.post(REGISTER, { username: uniqueName(), password: "pw" });
    const session = first.body.session;
    for (let i = 0; i < 3; i++) {
      const res = await rc.post(REGISTER, { auth: { type: "m.login.registration_token", token, session } });
      expect(res.body.completed).toEqual(["m.login.registration_token"]);
      expect(res.body.errcode).toBeUndefined();
    }
    expect(await rs.server.services.storage.registrationTokens.get(token)).toMatchObject({ pending: 1, completed: 0 });
    expect((await rc.post(REGISTER, { auth: { type: "m.login.dummy", session } })).status).toBe(200);
    expect(await rs.server.services.storage.registrationTokens.get(token)).toMatchObject({ pending: 0, completed: 1 });
    // The second use is still available.
    expect((await rc.get(`${VALIDITY}?token=${token}`)).body).toEqual({ valid: true });
    expect((await registerWithToken(token)).status).toBe(200);
  });

  it("switching tokens within a session releases the first one", async () => {
    const a = await addToken({ usesAllowed: 1 });
    const b = await addToken({ usesAllowed: 1 });
    const first = await rc.post(REGISTER, { username: uniqueName(), password: "pw" });
    const session = first.body.session;
    await rc.post(REGISTER, { auth: { type: "m.login.registration_token", token: a, session } });
    expect((await rc.get(`${VALIDITY}?token=${a}`)).body).toEqual({ valid: false });
    await rc.post(REGISTER, { auth: { type: "m.login.registration_token", token: b, session } });
    expect((await rc.get(`${VALIDITY}?token=${a}`)).body).toEqual({ valid: true });
    expect((await rc.post(REGISTER, { auth: { type: "m.login.dummy", session } })).status).toBe(200);
    expect(await rs.server.services.storage.registrationTokens.get(b)).toMatchObject({ pending: 0, completed: 1 });
    expect(await rs.server.services.storage.registrationTokens.get(a)).toMatchObject({ pending: 0, completed: 0 });
  });

  it("an expired token is refused", async () => {
    const token = await addToken({ expiry: Date.now() - 1000 });
    expect((await rc.get(`${VALIDITY}?token=${token}`)).body).toEqual({ valid: false });
    const res = await registerWithToken(token);
    expect(res.status).toBe(401);
    expect(res.body.errcode).toBe("M_UNAUTHORIZED");
  });

  it("GET …/validity", async () => {
    const token = await addToken({ usesAllowed: 5, expiry: Date.now() + 3_600_000 });
    const res = await rc.get(`${VALIDITY}?token=${token}`);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ valid: true });
    expect((await rc.get(`${VALIDITY}?token=unknown-token`)).body).toEqual({ valid: false });
    expectError(await rc.get(VALIDITY), 400, "M_MISSING_PARAM");
  });
});

describe("rc_registration", () => {
  it("limits registrations per address: 429 M_LIMIT_EXCEEDED with retry_after_ms and Retry-After", async () => {
    const ls = await startTestServer({ config: { rc_registration: { per_second: 0.01, burst_count: 2 } } });
    try {
      const lc = new Client(ls.baseUrl);
      await registerUser(lc);
      await registerUser(lc);
      const res = await lc.post(REGISTER, { username: uniqueName(), password: "pw" });
      const body = expectError(res, 429, "M_LIMIT_EXCEEDED");
      expect(body.retry_after_ms).toEqual(expect.any(Number));
      expect(body.retry_after_ms as number).toBeGreaterThan(0);
      expect(Number(res.headers.get("retry-after"))).toBe(Math.ceil((body.retry_after_ms as number) / 1000));
    } finally {
      await ls.close();
    }
  });
});
