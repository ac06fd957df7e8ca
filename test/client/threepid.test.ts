/**
 * Email 3PIDs: the requestToken endpoints and their emails (a fake SMTP server), submit_token links, registration
 * with m.login.email.identity, login by email, the /account/3pid endpoints, and binding at a fake identity server.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client, expectError, registerUser, uniqueName, type TestUser } from "../helpers/http.js";
import { startTestServer, type TestServer } from "../helpers/server.js";
import { FakeIdentityServer, FakeSmtp, linkOf } from "../helpers/threepid.js";

const V3 = "/_matrix/client/v3";
const OPEN = { per_second: 10_000, burst_count: 100_000 };

let smtp: FakeSmtp;
let is: FakeIdentityServer;
let ts: TestServer;
let c: Client;

beforeAll(async () => {
  smtp = await new FakeSmtp().start();
  is = await new FakeIdentityServer().start();
  ts = await startTestServer({
    config: {
      email: { smtp_host: "127.0.0.1", smtp_port: smtp.port, notif_from: "%(app)s <noreply@test.local>", app_name: "Myelin Test" },
      // The identity server is on loopback, which the default blacklist refuses; its certificate is self-signed.
      ip_range_whitelist: ["127.0.0.1"],
      use_insecure_ssl_client_just_for_testing_do_not_use: true,
      rc_3pid_validation: OPEN,
    },
  });
  c = new Client(ts.baseUrl);
});
afterAll(async () => {
  await ts?.close();
  await smtp?.close();
  await is?.close();
});

const secret = () => `secret${Math.random().toString(36).slice(2)}.=_-`;
const email = () => `${uniqueName("mail")}@Example.ORG`;

/** The emailed link, pointed at the test server (public_baseurl is a placeholder). */
async function emailedLink(to: string): Promise<URL> {
  const link = new URL(linkOf(await smtp.next(to.toLowerCase().replace(/@.*/, (d) => d))));
  const base = new URL(ts.baseUrl);
  link.host = base.host;
  return link;
}

/** requestToken then follow the link: a validated session. */
async function validated(path: string, address: string): Promise<{ sid: string; clientSecret: string }> {
  const clientSecret = secret();
  const res = await c.post(`${V3}${path}`, { client_secret: clientSecret, email: address, send_attempt: 1 });
  expect(res.status, res.text).toBe(200);
  const link = await emailedLink(address);
  // A password reset link shows a confirmation form, which posts back to it.
  const page = await fetch(link, { method: path.startsWith("/account/password") ? "POST" : "GET" });
  expect(page.status).toBe(200);
  return { sid: res.body.sid as string, clientSecret };
}

async function addEmail(u: TestUser, address: string): Promise<void> {
  const { sid, clientSecret } = await validated("/account/3pid/email/requestToken", address);
  const first = await c.post(`${V3}/account/3pid/add`, { sid, client_secret: clientSecret }, { token: u.accessToken });
  expect(first.status).toBe(401);
  const res = await c.post(
    `${V3}/account/3pid/add`,
    { sid, client_secret: clientSecret, auth: { type: "m.login.password", session: first.body.session, identifier: { type: "m.id.user", user: u.userId }, password: u.password } },
    { token: u.accessToken },
  );
  expect(res.status, res.text).toBe(200);
}

describe("POST /register/email/requestToken and m.login.email.identity", () => {
  it("offers an email flow next to the dummy one", async () => {
    const res = await c.post(`${V3}/register`, { username: uniqueName(), password: "pw" });
    expect(res.status).toBe(401);
    expect(res.body.flows).toEqual([{ stages: ["m.login.dummy"] }, { stages: ["m.login.email.identity"] }]);
  });

  it("registers with a validated email, which then is the account's and logs in", async () => {
    const address = email();
    const username = uniqueName();
    const first = await c.post(`${V3}/register`, { username, password: "pw-of-mine", device_id: "DEV" });
    const session = first.body.session as string;
    const clientSecret = secret();
    const req = await c.post(`${V3}/register/email/requestToken`, { client_secret: clientSecret, email: address, send_attempt: 1 });
    expect(req.status).toBe(200);
    const sid = req.body.sid as string;
    expect(typeof sid).toBe("string");
    const mail = await smtp.next(address.toLowerCase());
    expect(mail.from).toBe("noreply@test.local");
    expect(mail.raw).toContain("Myelin Test");

    const auth = { type: "m.login.email.identity", session, threepid_creds: { sid, client_secret: clientSecret } };
    // Not validated yet: the stage fails inside the 401.
    const early = await c.post(`${V3}/register`, { username, password: "pw-of-mine", auth });
    expect(early.status).toBe(401);
    expect(early.body.errcode).toBe("M_UNAUTHORIZED");
    expect(early.body.completed).toEqual([]);

    const link = new URL(linkOf(mail));
    expect(link.pathname).toBe("/_matrix/client/unstable/registration/email/submit_token");
    link.host = new URL(ts.baseUrl).host;
    const page = await fetch(link);
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toContain("text/html");

    const res = await c.post(`${V3}/register`, { username, password: "pw-of-mine", device_id: "DEV", auth });
    expect(res.status, res.text).toBe(200);
    const token = res.body.access_token as string;
    const list = await c.get(`${V3}/account/3pid`, { token });
    expect(list.status).toBe(200);
    const threepids = list.body.threepids as Record<string, unknown>[];
    expect(threepids).toHaveLength(1);
    expect(threepids[0]).toMatchObject({ medium: "email", address: address.toLowerCase() });
    expect(typeof threepids[0]!.validated_at).toBe("number");
    expect(typeof threepids[0]!.added_at).toBe("number");

    // Login by email: the m.id.thirdparty identifier, and the deprecated top-level medium/address.
    const byId = await c.post(`${V3}/login`, { type: "m.login.password", identifier: { type: "m.id.thirdparty", medium: "email", address }, password: "pw-of-mine" });
    expect(byId.status, byId.text).toBe(200);
    expect(byId.body.user_id).toBe(res.body.user_id);
    const legacy = await c.post(`${V3}/login`, { type: "m.login.password", medium: "email", address: address.toLowerCase(), password: "pw-of-mine" });
    expect(legacy.status).toBe(200);
    expectError(await c.post(`${V3}/login`, { type: "m.login.password", medium: "email", address: address.toLowerCase(), password: "wrong" }), 403, "M_FORBIDDEN");
    expectError(await c.post(`${V3}/login`, { type: "m.login.password", medium: "email", address: "nobody@example.org", password: "pw-of-mine" }), 403, "M_FORBIDDEN");

    // The address is taken now.
    expectError(await c.post(`${V3}/register/email/requestToken`, { client_secret: secret(), email: address, send_attempt: 1 }), 400, "M_THREEPID_IN_USE");
    expectError(await c.post(`${V3}/account/3pid/email/requestToken`, { client_secret: secret(), email: address, send_attempt: 1 }), 400, "M_THREEPID_IN_USE");
  });

  it("checks its parameters", async () => {
    const path = `${V3}/register/email/requestToken`;
    expectError(await c.post(path, { client_secret: "bad secret!", email: email(), send_attempt: 1 }), 400, "M_INVALID_PARAM");
    expectError(await c.post(path, { client_secret: "x".repeat(256), email: email(), send_attempt: 1 }), 400, "M_INVALID_PARAM");
    expectError(await c.post(path, { client_secret: secret(), email: "not-an-email", send_attempt: 1 }), 400, "M_INVALID_PARAM");
    expectError(await c.post(path, { client_secret: secret(), email: email() }), 400, "M_MISSING_PARAM");
    expectError(await c.post(path, { email: email(), send_attempt: 1 }), 400, "M_MISSING_PARAM");
    expectError(await c.post(path, { client_secret: secret(), email: email(), send_attempt: 1, next_link: "javascript:alert(1)" }), 400, "M_INVALID_PARAM");
    expectError(await c.post(path, { client_secret: secret(), email: email(), send_attempt: "1" }), 400, "M_BAD_JSON");
  });

  it("sends again only for a higher send_attempt, in the same session", async () => {
    const address = email();
    const clientSecret = secret();
    const path = `${V3}/register/email/requestToken`;
    const a = await c.post(path, { client_secret: clientSecret, email: address, send_attempt: 1 });
    await smtp.next(address.toLowerCase());
    const b = await c.post(path, { client_secret: clientSecret, email: address, send_attempt: 1 });
    expect(b.body.sid).toBe(a.body.sid);
    const again = await c.post(path, { client_secret: clientSecret, email: address, send_attempt: 2 });
    expect(again.body.sid).toBe(a.body.sid);
    await smtp.next(address.toLowerCase());
    expect(smtp.mails.filter((m) => m.to.includes(address.toLowerCase()))).toHaveLength(0);
    // Another client secret is another session.
    const other = await c.post(path, { client_secret: secret(), email: address, send_attempt: 1 });
    expect(other.body.sid).not.toBe(a.body.sid);
    await smtp.next(address.toLowerCase());
  });

  it("redirects to next_link once validated", async () => {
    const address = email();
    const res = await c.post(`${V3}/register/email/requestToken`, { client_secret: secret(), email: address, send_attempt: 1, next_link: "https://app.example.org/done" });
    expect(res.status).toBe(200);
    const page = await fetch(await emailedLink(address), { redirect: "manual" });
    expect(page.status).toBe(302);
    expect(page.headers.get("location")).toBe("https://app.example.org/done");
  });
});

describe("submit_token links", () => {
  it("work once; a reused, altered or expired link is refused", async () => {
    const address = email();
    const clientSecret = secret();
    const req = await c.post(`${V3}/account/3pid/email/requestToken`, { client_secret: clientSecret, email: address, send_attempt: 1 });
    const link = await emailedLink(address);
    expect(link.pathname).toBe("/_matrix/client/unstable/add_threepid/email/submit_token");

    const wrongSecret = new URL(link);
    wrongSecret.searchParams.set("client_secret", "other");
    expect((await fetch(wrongSecret)).status).toBe(400);
    const wrongToken = new URL(link);
    wrongToken.searchParams.set("token", "guess");
    expect((await fetch(wrongToken)).status).toBe(400);
    const missing = new URL(link);
    missing.searchParams.delete("sid");
    expect((await fetch(missing)).status).toBe(400);

    expect((await fetch(link)).status).toBe(200);
    const reused = await fetch(link);
    expect(reused.status).toBe(400);
    expect(await reused.text()).toContain("not found or has expired");

    // An expired token (its lifetime is validation_token_lifetime).
    const second = await c.post(`${V3}/account/3pid/email/requestToken`, { client_secret: clientSecret, email: address, send_attempt: 2 });
    expect(second.body.sid).toBe(req.body.sid);
    const later = await emailedLink(address);
    await ts.server.services.storage.db.updateTable("threepid_validation_tokens").set({ expires_ts: 0 }).execute();
    expect((await fetch(later)).status).toBe(400);
  });
});

describe("/account/3pid", () => {
  it("adds an email with UIA, refuses unvalidated sessions and wrong secrets, deletes it", async () => {
    const u = await registerUser(c);
    const address = email();
    // Unvalidated session.
    const clientSecret = secret();
    const req = await c.post(`${V3}/account/3pid/email/requestToken`, { client_secret: clientSecret, email: address, send_attempt: 1 });
    const sid = req.body.sid as string;
    const link = await emailedLink(address);
    const first = await c.post(`${V3}/account/3pid/add`, { sid, client_secret: clientSecret }, { token: u.accessToken });
    expect(first.status).toBe(401);
    expect(first.body.flows).toEqual([{ stages: ["m.login.password"] }]);
    const auth = { type: "m.login.password", session: first.body.session, identifier: { type: "m.id.user", user: u.userId }, password: u.password };
    expectError(await c.post(`${V3}/account/3pid/add`, { sid, client_secret: clientSecret, auth }, { token: u.accessToken }), 400, "M_THREEPID_AUTH_FAILED");

    expect((await fetch(link)).status).toBe(200);
    // Wrong client secret for a validated session.
    expectError(await c.post(`${V3}/account/3pid`, { three_pid_creds: { sid, client_secret: "wrong" } }, { token: u.accessToken }), 400, "M_THREEPID_AUTH_FAILED");
    expectError(await c.post(`${V3}/account/3pid`, { three_pid_creds: { sid: "unknown", client_secret: clientSecret } }, { token: u.accessToken }), 400, "M_THREEPID_AUTH_FAILED");
    expectError(await c.post(`${V3}/account/3pid`, {}, { token: u.accessToken }), 400, "M_MISSING_PARAM");
    // The deprecated POST /account/3pid (no UIA) adds it.
    const added = await c.post(`${V3}/account/3pid`, { three_pid_creds: { sid, client_secret: clientSecret } }, { token: u.accessToken });
    expect(added.status, added.text).toBe(200);
    expect(((await c.get(`${V3}/account/3pid`, { token: u.accessToken })).body.threepids as unknown[]).length).toBe(1);

    // Another user cannot take it with the same session.
    const v = await registerUser(c);
    expectError(await c.post(`${V3}/account/3pid`, { three_pid_creds: { sid, client_secret: clientSecret } }, { token: v.accessToken }), 400, "M_THREEPID_IN_USE");

    const del = await c.post(`${V3}/account/3pid/delete`, { medium: "email", address }, { token: u.accessToken });
    expect(del.status).toBe(200);
    expect(del.body).toEqual({ id_server_unbind_result: "no-support" });
    expect((await c.get(`${V3}/account/3pid`, { token: u.accessToken })).body.threepids).toEqual([]);
    expectError(await c.post(`${V3}/login`, { type: "m.login.password", medium: "email", address, password: u.password }), 403, "M_FORBIDDEN");
    expectError(await c.post(`${V3}/account/3pid/delete`, { medium: "email" }, { token: u.accessToken }), 400, "M_MISSING_PARAM");
  });

  it("adds through /account/3pid/add and uses the email for password-reset requestToken", async () => {
    const u = await registerUser(c);
    const address = email();
    expectError(await c.post(`${V3}/account/password/email/requestToken`, { client_secret: secret(), email: address, send_attempt: 1 }), 400, "M_THREEPID_NOT_FOUND");
    await addEmail(u, address);
    const res = await c.post(`${V3}/account/password/email/requestToken`, { client_secret: secret(), email: address, send_attempt: 1 });
    expect(res.status).toBe(200);
    const link = await emailedLink(address);
    expect(link.pathname).toBe("/_synapse/client/password_reset/email/submit_token");
    // Opening the link only asks for confirmation (mail scanners open links): the session is not validated yet.
    const form = await fetch(link);
    expect(form.status).toBe(200);
    const html = await form.text();
    expect(html).toContain('<form method="post"');
    const sid = res.body.sid as string;
    expect(await ts.server.services.threepids.validation.validatedSession(sid, link.searchParams.get("client_secret"))).toBeUndefined();
    const confirmed = await fetch(link, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: "" });
    expect(confirmed.status).toBe(200);
    expect(await ts.server.services.threepids.validation.validatedSession(sid, link.searchParams.get("client_secret"))).toMatchObject({ medium: "email" });
    expect((await fetch(link, { method: "POST" })).status).toBe(400);
  });

  it("refuses an expired session", async () => {
    const u = await registerUser(c);
    const address = email();
    const { sid, clientSecret } = await validated("/account/3pid/email/requestToken", address);
    await ts.server.services.storage.db.updateTable("threepid_validation_sessions").set({ created_ts: 0 }).where("session_id", "=", sid).execute();
    expectError(await c.post(`${V3}/account/3pid`, { three_pid_creds: { sid, client_secret: clientSecret } }, { token: u.accessToken }), 400, "M_THREEPID_AUTH_FAILED");
  });

  it("needs an access token", async () => {
    expectError(await c.get(`${V3}/account/3pid`), 401, "M_MISSING_TOKEN");
    expectError(await c.post(`${V3}/account/3pid/add`, {}), 401, "M_MISSING_TOKEN");
    expectError(await c.post(`${V3}/account/3pid/bind`, {}), 401, "M_MISSING_TOKEN");
  });

  it("reports m.3pid_changes", async () => {
    const u = await registerUser(c);
    const caps = (await c.get(`${V3}/capabilities`, { token: u.accessToken })).body.capabilities as Record<string, unknown>;
    expect(caps["m.3pid_changes"]).toEqual({ enabled: true });
  });
});

describe("identity server binding", () => {
  const bind = (u: TestUser, sid: string, extra: Record<string, unknown> = {}) =>
    c.post(`/_matrix/client/unstable/account/3pid/bind`, { id_server: is.name, id_access_token: FakeIdentityServer.ACCESS_TOKEN, sid, client_secret: "cs", ...extra }, { token: u.accessToken });

  it("binds, then unbinds at the identity server it was bound to", async () => {
    const u = await registerUser(c);
    const address = "bound1@example.org";
    is.validate("sid1", "email", address);
    const res = await bind(u, "sid1");
    expect(res.status, res.text).toBe(200);
    expect(is.bindings.get(`email\0${address}`)).toBe(u.userId);
    const req = is.requests.find((r) => r.path === "/_matrix/identity/v2/3pid/bind")!;
    expect(req.body).toEqual({ sid: "sid1", client_secret: "cs", mxid: u.userId });

    const unbind = await c.post(`${V3}/account/3pid/unbind`, { medium: "email", address }, { token: u.accessToken });
    expect(unbind.status).toBe(200);
    expect(unbind.body).toEqual({ id_server_unbind_result: "success" });
    expect(is.bindings.has(`email\0${address}`)).toBe(false);
    const signed = is.requests.filter((r) => r.path === "/_matrix/identity/v2/3pid/unbind").at(-1)!;
    expect(String(signed.headers.authorization)).toMatch(/^X-Matrix origin="?test\.local"?,/);
    expect(signed.body).toEqual({ mxid: u.userId, threepid: { medium: "email", address } });
    // Nothing recorded any more, and no id_server named.
    expect((await c.post(`${V3}/account/3pid/unbind`, { medium: "email", address }, { token: u.accessToken })).body).toEqual({ id_server_unbind_result: "no-support" });
  });

  it("passes the identity server's errors on, and refuses bad id_server names", async () => {
    const u = await registerUser(c);
    expectError(await bind(u, "sid-unknown"), 400, "M_SESSION_NOT_VALIDATED");
    is.validate("sid2", "email", "bound2@example.org");
    expectError(await bind(u, "sid2", { id_access_token: "wrong" }), 401, "M_UNAUTHORIZED");
    expectError(await bind(u, "sid2", { id_server: "bad name/x" }), 400, "M_INVALID_PARAM");
    expectError(await bind(u, "sid2", { id_server: undefined }), 400, "M_MISSING_PARAM");
  });

  it("unbinds a 3PID bound out of band at the named identity server, on delete", async () => {
    const u = await registerUser(c);
    is.bindings.set("email\0oob@example.org", u.userId);
    const res = await c.post(`${V3}/account/3pid/delete`, { medium: "email", address: "oob@example.org", id_server: is.name }, { token: u.accessToken });
    expect(res.body).toEqual({ id_server_unbind_result: "success" });
    expect(is.bindings.has("email\0oob@example.org")).toBe(false);
  });

  it("unbinds everything at deactivation", async () => {
    const u = await registerUser(c);
    is.validate("sid3", "email", "bound3@example.org");
    expect((await bind(u, "sid3")).status).toBe(200);
    const first = await c.post(`${V3}/account/deactivate`, {}, { token: u.accessToken });
    const res = await c.post(
      `${V3}/account/deactivate`,
      { auth: { type: "m.login.password", session: first.body.session, identifier: { type: "m.id.user", user: u.userId }, password: u.password } },
      { token: u.accessToken },
    );
    expect(res.status, res.text).toBe(200);
    expect(res.body).toEqual({ id_server_unbind_result: "success" });
    expect(is.bindings.has("email\0bound3@example.org")).toBe(false);
  });
});

describe("without an email section, and with registrations_require_3pid", () => {
  let plain: TestServer;
  let strict: TestServer;
  beforeAll(async () => {
    plain = await startTestServer();
    strict = await startTestServer({
      config: {
        email: { smtp_host: "127.0.0.1", smtp_port: smtp.port, notif_from: "noreply@strict.local" },
        registrations_require_3pid: ["email"],
        enable_3pid_changes: false,
        rc_3pid_validation: { per_second: 0.001, burst_count: 1 },
      },
    });
  });
  afterAll(async () => {
    await plain?.close();
    await strict?.close();
  });

  it("cannot validate emails without an SMTP server", async () => {
    const p = new Client(plain.baseUrl);
    expectError(await p.post(`${V3}/register/email/requestToken`, { client_secret: secret(), email: email(), send_attempt: 1 }), 400, "M_THREEPID_MEDIUM_NOT_SUPPORTED");
    expect((await p.post(`${V3}/register`, { username: uniqueName(), password: "pw" })).body.flows).toEqual([{ stages: ["m.login.dummy"] }]);
  });

  it("offers only the email flow, limits sending, and refuses 3PID changes", async () => {
    const s = new Client(strict.baseUrl);
    expect((await s.post(`${V3}/register`, { username: uniqueName(), password: "pw" })).body.flows).toEqual([{ stages: ["m.login.email.identity"] }]);
    const address = email();
    const clientSecret = secret();
    expect((await s.post(`${V3}/register/email/requestToken`, { client_secret: clientSecret, email: address, send_attempt: 1 })).status).toBe(200);
    await smtp.next(address.toLowerCase());
    expectError(await s.post(`${V3}/register/email/requestToken`, { client_secret: clientSecret, email: address, send_attempt: 2 }), 429, "M_LIMIT_EXCEEDED");
    // Per client too: another address from the same client.
    expectError(await s.post(`${V3}/register/email/requestToken`, { client_secret: secret(), email: email(), send_attempt: 1 }), 429, "M_LIMIT_EXCEEDED");
    expectError(await s.post(`${V3}/account/3pid/email/requestToken`, { client_secret: secret(), email: email(), send_attempt: 1 }), 400, "M_FORBIDDEN");
    const u = await strictUser(strict);
    const caps = (await s.get(`${V3}/capabilities`, { token: u })).body.capabilities as Record<string, unknown>;
    expect(caps["m.3pid_changes"]).toEqual({ enabled: false });
    expectError(await s.post(`${V3}/account/3pid/delete`, { medium: "email", address }, { token: u }), 400, "M_FORBIDDEN");
  });
});

/** A user on a server whose registration needs an email: made with the shared-secret admin API. */
async function strictUser(server: TestServer): Promise<string> {
  const { createHmac } = await import("node:crypto");
  const s = new Client(server.baseUrl);
  const nonce = (await s.get("/_synapse/admin/v1/register")).body.nonce as string;
  const username = uniqueName();
  const mac = createHmac("sha1", "test-shared-secret").update(`${nonce}\0${username}\0pw\0notadmin`).digest("hex");
  const res = await s.post("/_synapse/admin/v1/register", { nonce, username, password: "pw", mac });
  expect(res.status, res.text).toBe(200);
  return res.body.access_token as string;
}

describe("password reset by email", () => {
  it("resets the password of the account the validated email belongs to, logging its devices out", async () => {
    const u = await registerUser(c);
    const address = email();
    await addEmail(u, address);
    const { sid, clientSecret } = await validated("/account/password/email/requestToken", address);
    const first = await c.post(`${V3}/account/password`, { new_password: "brand new pw" });
    expect(first.status).toBe(401);
    expect(first.body.flows).toEqual([{ stages: ["m.login.email.identity"] }]);
    // A wrong secret fails the stage.
    const wrong = await c.post(`${V3}/account/password`, { auth: { type: "m.login.email.identity", session: first.body.session, threepid_creds: { sid, client_secret: "nope" } } });
    expect(wrong.status).toBe(401);
    expect(wrong.body.errcode).toBe("M_UNAUTHORIZED");
    const res = await c.post(`${V3}/account/password`, { auth: { type: "m.login.email.identity", session: first.body.session, threepid_creds: { sid, client_secret: clientSecret } } });
    expect(res.status, res.text).toBe(200);
    expectError(await c.get(`${V3}/account/whoami`, { token: u.accessToken }), 401, "M_UNKNOWN_TOKEN");
    const login = await c.post(`${V3}/login`, { type: "m.login.password", identifier: { type: "m.id.thirdparty", medium: "email", address }, password: "brand new pw" });
    expect(login.status).toBe(200);
  });
});
