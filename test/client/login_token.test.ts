/**
 * Login tokens (spec "Token-based login", POST /login/get_token, Synapse's `login_via_existing_session`): issued
 * behind UIA (or not, with require_ui_auth: false), single use, short-lived, advertised in GET /login and
 * /capabilities; absent when disabled.
 */
import * as sdk from "matrix-js-sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client, expectError, registerUser, type TestUser } from "../helpers/http.js";
import { V3, poll } from "../helpers/rooms.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

const GET_TOKEN = "/_matrix/client/v1/login/get_token";

let uia: TestServer;
let noUia: TestServer;
let disabled: TestServer;
let c: Client;
let cNoUia: Client;
let cDisabled: Client;

beforeAll(async () => {
  uia = await startTestServer({ config: { login_via_existing_session: { enabled: true } } });
  noUia = await startTestServer({ config: { login_via_existing_session: { enabled: true, require_ui_auth: false, token_timeout: "200ms" } } });
  disabled = await startTestServer();
  c = new Client(uia.baseUrl);
  cNoUia = new Client(noUia.baseUrl);
  cDisabled = new Client(disabled.baseUrl);
});
afterAll(async () => {
  await Promise.all([uia?.close(), noUia?.close(), disabled?.close()]);
});

/** get_token through the password stage of UIA. */
async function getTokenWithUia(u: TestUser): Promise<{ login_token: string; expires_in_ms: number }> {
  const first = await c.post(GET_TOKEN, {}, { token: u.accessToken });
  expect(first.status, first.text).toBe(401);
  const res = await c.post(
    GET_TOKEN,
    { auth: { type: "m.login.password", identifier: { type: "m.id.user", user: u.userId }, password: u.password, session: first.body.session } },
    { token: u.accessToken },
  );
  expect(res.status, res.text).toBe(200);
  return res.body as { login_token: string; expires_in_ms: number };
}

const tokenLogin = (client: Client, token: unknown, extra: Record<string, unknown> = {}) => client.post(`${V3}/login`, { type: "m.login.token", token, ...extra });

describe("POST /login/get_token with UIA (the default)", () => {
  it("asks for the password stage, then issues a token valid for token_timeout (5 minutes by default)", async () => {
    const u = await registerUser(c);
    const first = await c.post(GET_TOKEN, {}, { token: u.accessToken });
    expect(first.status).toBe(401);
    expect(first.body.flows).toEqual([{ stages: ["m.login.password"] }]);
    expect(first.body.session).toEqual(expect.any(String));
    const wrong = await c.post(GET_TOKEN, { auth: { type: "m.login.password", identifier: { type: "m.id.user", user: u.userId }, password: "wrong", session: first.body.session } }, { token: u.accessToken });
    expect(wrong.status).toBe(401);
    expect(wrong.body.errcode).toBe("M_FORBIDDEN");
    const ok = await c.post(GET_TOKEN, { auth: { type: "m.login.password", identifier: { type: "m.id.user", user: u.userId }, password: u.password, session: first.body.session } }, { token: u.accessToken });
    expect(ok.status, ok.text).toBe(200);
    expect(ok.body).toEqual({ login_token: expect.any(String), expires_in_ms: 300_000 });
  });

  it("the token logs a new device in as the same user, once: a second use is 403 M_FORBIDDEN", async () => {
    const u = await registerUser(c);
    const { login_token } = await getTokenWithUia(u);
    const res = await tokenLogin(c, login_token, { device_id: "NEWDEVICE" });
    expect(res.status, res.text).toBe(200);
    expect(res.body).toMatchObject({ user_id: u.userId, device_id: "NEWDEVICE", access_token: expect.any(String) });
    const whoami = await c.get(`${V3}/account/whoami`, { token: res.body.access_token as string });
    expect(whoami.body).toMatchObject({ user_id: u.userId, device_id: "NEWDEVICE" });
    expectError(await tokenLogin(c, login_token), 403, "M_FORBIDDEN");
  });

  it("a finished UIA session cannot be replayed for another token (the spec: always re-prompt)", async () => {
    const u = await registerUser(c);
    const first = await c.post(GET_TOKEN, {}, { token: u.accessToken });
    const auth = { type: "m.login.password", identifier: { type: "m.id.user", user: u.userId }, password: u.password, session: first.body.session };
    expect((await c.post(GET_TOKEN, { auth }, { token: u.accessToken })).status).toBe(200);
    expectError(await c.post(GET_TOKEN, { auth: { session: first.body.session } }, { token: u.accessToken }), 400, "M_INVALID_PARAM");
  });

  it("is rate limited to one token a minute per user (429 M_LIMIT_EXCEEDED), counted after UIA", async () => {
    const u = await registerUser(c);
    await getTokenWithUia(u);
    const first = await c.post(GET_TOKEN, {}, { token: u.accessToken });
    expect(first.status).toBe(401);
    const res = await c.post(GET_TOKEN, { auth: { type: "m.login.password", identifier: { type: "m.id.user", user: u.userId }, password: u.password, session: first.body.session } }, { token: u.accessToken });
    expect(expectError(res, 429, "M_LIMIT_EXCEEDED").retry_after_ms).toEqual(expect.any(Number));
  });

  it("needs an access token; bad bodies are 400", async () => {
    expectError(await c.post(GET_TOKEN, {}), 401, "M_MISSING_TOKEN");
    const u = await registerUser(c);
    expectError(await c.post(GET_TOKEN, { auth: "nope" }, { token: u.accessToken }), 400, "M_BAD_JSON");
    expectError(await c.post(GET_TOKEN, "[]", { token: u.accessToken }), 400, "M_BAD_JSON");
  });
});

describe("POST /login with m.login.token", () => {
  it("unknown, missing and wrongly typed tokens", async () => {
    expectError(await tokenLogin(c, "myl_nonsense"), 403, "M_FORBIDDEN");
    expectError(await c.post(`${V3}/login`, { type: "m.login.token" }), 403, "M_FORBIDDEN");
    expectError(await tokenLogin(c, 42), 400, "M_BAD_JSON");
  });

  it("an expired token is 403 M_FORBIDDEN", async () => {
    const u = await registerUser(cNoUia);
    const issuedAt = Date.now();
    const res = await cNoUia.post(GET_TOKEN, {}, { token: u.accessToken });
    expect(res.status, res.text).toBe(200);
    expect(res.body.expires_in_ms).toBe(200);
    // Wait for the clock to pass the expiry (not a fixed sleep: a condition with a deadline).
    await poll(async () => (Date.now() > issuedAt + 250 ? true : undefined));
    expectError(await tokenLogin(cNoUia, res.body.login_token), 403, "M_FORBIDDEN");
  });

  it("a token of a user deactivated meanwhile is refused; a locked user's is 401 M_USER_LOCKED", async () => {
    const gone = await registerUser(cNoUia);
    // Tokens issued by the service (as SSO will), with a lifetime that outlasts a slow machine.
    const t1 = await noUia.server.services.loginTokens.issue(gone.userId, { ttlMs: 60_000 });
    await noUia.server.services.storage.users.setDeactivated(gone.userId, true);
    expectError(await tokenLogin(cNoUia, t1.token), 403, "M_USER_DEACTIVATED");
    // A user locked since the token was issued.
    const locked = await registerUser(cNoUia);
    const t2 = await noUia.server.services.loginTokens.issue(locked.userId, { ttlMs: 60_000, authProviderId: "oidc-test" });
    await noUia.server.services.storage.users.setLocked(locked.userId, true);
    expectError(await tokenLogin(cNoUia, t2.token), 401, "M_USER_LOCKED");
  });

  it("LoginTokens.consume returns the user and the auth provider, once", async () => {
    const u = await registerUser(cNoUia);
    const svc = noUia.server.services.loginTokens;
    const t = await svc.issue(u.userId, { ttlMs: 60_000, authProviderId: "oidc-test", authProviderSessionId: "sess1" });
    await expect(svc.consume(t.token)).resolves.toEqual({ userId: u.userId, authProviderId: "oidc-test", authProviderSessionId: "sess1" });
    await expect(svc.consume(t.token)).rejects.toMatchObject({ status: 403, errcode: "M_FORBIDDEN" });
  });
});

describe("without UIA (require_ui_auth: false)", () => {
  it("a logged-in user gets a token at once", async () => {
    const u = await registerUser(cNoUia);
    const res = await cNoUia.post(GET_TOKEN, {}, { token: u.accessToken });
    expect(res.status, res.text).toBe(200);
    expect(res.body).toEqual({ login_token: expect.any(String), expires_in_ms: 200 });
  });
});

describe("advertising", () => {
  it("enabled: GET /login lists m.login.token with get_login_token: true; m.get_login_token is enabled", async () => {
    const flows = (await c.get(`${V3}/login`)).body.flows as Record<string, unknown>[];
    expect(flows).toContainEqual({ type: "m.login.token", get_login_token: true });
    expect(flows).toContainEqual({ type: "m.login.password" });
    const u = await registerUser(c);
    const caps = (await c.get(`${V3}/capabilities`, { token: u.accessToken })).body.capabilities as Record<string, unknown>;
    expect(caps["m.get_login_token"]).toEqual({ enabled: true });
  });

  it("disabled (the default): no endpoint (404 M_UNRECOGNIZED, as Synapse), no flow, capability false, m.login.token unknown", async () => {
    const u = await registerUser(cDisabled);
    expectError(await cDisabled.post(GET_TOKEN, {}, { token: u.accessToken }), 404, "M_UNRECOGNIZED");
    expect((await cDisabled.get(`${V3}/login`)).body.flows).toEqual([{ type: "m.login.password" }]);
    const caps = (await cDisabled.get(`${V3}/capabilities`, { token: u.accessToken })).body.capabilities as Record<string, unknown>;
    expect(caps["m.get_login_token"]).toEqual({ enabled: false });
    expectError(await tokenLogin(cDisabled, "myl_anything"), 400, "M_UNKNOWN");
  });
});

describe("through matrix-js-sdk", () => {
  it("requestLoginToken with UIA, then loginWithToken on a second client", async () => {
    const u = await registerUser(c);
    const first = sdk.createClient({ baseUrl: uia.baseUrl, accessToken: u.accessToken, userId: u.userId, logger: quietLogger });
    const challenge = await first.requestLoginToken().catch((e: unknown) => e);
    expect(challenge).toBeInstanceOf(sdk.MatrixError);
    const session = (challenge as sdk.MatrixError).data.session as string;
    const issued = await first.requestLoginToken({ type: "m.login.password", identifier: { type: "m.id.user", user: u.userId }, password: u.password, session } as never);
    const token = (issued as { login_token: string }).login_token;
    const second = sdk.createClient({ baseUrl: uia.baseUrl, logger: quietLogger });
    const res = await second.loginWithToken(token);
    expect(res.user_id).toBe(u.userId);
    expect(res.access_token).toEqual(expect.any(String));
  });
});

const quietLogger: NonNullable<sdk.ICreateClientOpts["logger"]> = {
  trace: () => {},
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: (...msg: unknown[]) => console.error(...msg),
  getChild: () => quietLogger,
};
