/**
 * Single sign-on through CAS (spec "Client login via SSO"; Synapse's `cas_config`), against a fake CAS server on
 * 127.0.0.1: the redirect, ticket validation, the confirmation page or whitelisted redirect with a `loginToken`,
 * `m.login.token`, first-login registration and mapping of existing users, required attributes, display names, and
 * re-authentication (UIA `m.login.sso` through the fallback page) including the wrong user.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config/config.js";
import { Client, registerUser, type TestUser } from "../helpers/http.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

const V3 = "/_matrix/client/v3";

/** A CAS server: `tickets` maps a ticket to the XML its validation answers; every request is recorded. */
class FakeCas {
  readonly tickets = new Map<string, string>();
  readonly requests: URL[] = [];
  private server!: Server;
  url = "";

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      const u = new URL(req.url ?? "/", "http://cas.invalid");
      this.requests.push(u);
      if (u.pathname === "/cas/proxyValidate") {
        const xml = this.tickets.get(u.searchParams.get("ticket") ?? "") ?? failure("INVALID_TICKET");
        res.writeHead(200, { "content-type": "text/xml" }).end(xml);
        return;
      }
      res.writeHead(404).end();
    });
    await new Promise<void>((r) => this.server.listen(0, "127.0.0.1", r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/cas`;
  }

  stop(): Promise<void> {
    return new Promise((r) => this.server.close(() => r()));
  }
}

function success(user: string, attributes: Record<string, string> = {}): string {
  const attrs = Object.entries(attributes).map(([k, v]) => `<cas:${k}>${v}</cas:${k}>`).join("");
  return `<cas:serviceResponse xmlns:cas='http://www.yale.edu/tp/cas'><cas:authenticationSuccess><cas:user>${user}</cas:user><cas:attributes>${attrs}</cas:attributes></cas:authenticationSuccess></cas:serviceResponse>`;
}

function failure(code: string): string {
  return `<cas:serviceResponse xmlns:cas='http://www.yale.edu/tp/cas'><cas:authenticationFailure code="${code}">Ticket not recognized</cas:authenticationFailure></cas:serviceResponse>`;
}

const REDIRECT = "https://client.example/app?p=1#/login";
let ticketCounter = 0;

let cas: FakeCas;
let ts: TestServer;
let c: Client;

beforeAll(async () => {
  cas = new FakeCas();
  await cas.start();
  ts = await startTestServer({
    config: {
      cas_config: { server_url: cas.url, displayname_attribute: "displayName", required_attributes: {} },
      sso: { client_whitelist: ["https://trusted.example/"] },
    },
  });
  c = new Client(ts.baseUrl);
});
afterAll(async () => {
  await ts?.close();
  await cas?.stop();
});

/** Where the browser goes for a service URL: the server's public_baseurl (a placeholder port here) is this server. */
function browse(server: TestServer, service: string, ticket: string): Promise<globalThis.Response> {
  const local = `${server.baseUrl}/${service.slice(server.config.publicBaseurl.length)}`;
  return fetch(`${local}&ticket=${ticket}`, { redirect: "manual" });
}

async function getRaw(path: string): Promise<globalThis.Response> {
  return fetch(ts.baseUrl + path, { redirect: "manual" });
}

/** The ticket URL CAS would send the browser back to, from the service URL the server gave CAS. */
async function casLogin(user: string, redirectUrl = REDIRECT, attributes: Record<string, string> = {}): Promise<globalThis.Response> {
  const res = await getRaw(`${V3}/login/sso/redirect?redirectUrl=${encodeURIComponent(redirectUrl)}`);
  expect(res.status).toBe(302);
  const service = new URL(res.headers.get("location")!).searchParams.get("service")!;
  const ticket = `ST-${++ticketCounter}`;
  cas.tickets.set(ticket, success(user, attributes));
  return browse(ts, service, ticket);
}

function loginTokenIn(html: string): string {
  const m = /loginToken=([^"&#]+)/.exec(html);
  expect(m, html).not.toBeNull();
  return decodeURIComponent(m![1]!);
}

async function tokenLogin(token: string, extra: Record<string, unknown> = {}) {
  return c.post(`${V3}/login`, { type: "m.login.token", token, ...extra });
}

describe("GET /login", () => {
  it("lists m.login.sso with the CAS provider, the old m.login.cas, and m.login.token", async () => {
    const res = await c.get(`${V3}/login`);
    const flows = res.body.flows as { type: string; identity_providers?: unknown[] }[];
    expect(flows.map((f) => f.type)).toEqual(expect.arrayContaining(["m.login.password", "m.login.cas", "m.login.sso", "m.login.token"]));
    expect(flows.find((f) => f.type === "m.login.sso")?.identity_providers).toEqual([{ id: "cas", name: "CAS" }]);
  });
});

describe("redirects to CAS", () => {
  it("sends the browser to {server_url}/login with our ticket URL as the service", async () => {
    for (const path of ["/login/sso/redirect", "/login/cas/redirect", "/login/sso/redirect/cas"]) {
      const res = await getRaw(`${V3}${path}?redirectUrl=${encodeURIComponent(REDIRECT)}`);
      expect(res.status, path).toBe(302);
      const loc = new URL(res.headers.get("location")!);
      expect(`${loc.origin}${loc.pathname}`).toBe(`${cas.url}/login`);
      expect(loc.searchParams.get("service")).toBe(`${ts.config.publicBaseurl}_matrix/client/r0/login/cas/ticket?redirectUrl=${encodeURIComponent(REDIRECT)}`);
    }
  });

  it("refuses a missing redirectUrl and an unknown provider", async () => {
    const missing = await c.get(`${V3}/login/sso/redirect`);
    expect(missing.status).toBe(400);
    expect(missing.body.errcode).toBe("M_MISSING_PARAM");
    const unknown = await c.get(`${V3}/login/sso/redirect/github?redirectUrl=x`);
    expect(unknown.status).toBe(404);
    expect(unknown.body.errcode).toBe("M_NOT_FOUND");
  });
});

describe("the ticket", () => {
  it("validates with CAS, registers a new user under Synapse's mapping, and gives a login token once", async () => {
    const res = await casLogin("New.User!", REDIRECT, { displayName: "New User" });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/html/);
    expect(res.headers.get("content-security-policy")).toContain("frame-ancestors 'none'");
    expect(res.headers.get("x-frame-options")).toBe("DENY");
    const html = await res.text();
    // The confirmation page links to the client with the token in the query, before the fragment.
    expect(html).toContain("https://client.example/app?p=1&amp;loginToken=");
    expect(html).toContain("#/login");
    const validate = cas.requests.filter((u) => u.pathname === "/cas/proxyValidate").at(-1)!;
    expect(validate.searchParams.get("service")).toBe(`${ts.config.publicBaseurl}_matrix/client/r0/login/cas/ticket?redirectUrl=${encodeURIComponent(REDIRECT)}`);

    const token = loginTokenIn(html);
    const login = await tokenLogin(token);
    expect(login.status, login.text).toBe(200);
    const userId = `@new.user=21:${ts.config.serverName}`;
    expect(login.body.user_id).toBe(userId);
    const profile = await c.get(`${V3}/profile/${encodeURIComponent(userId)}/displayname`);
    expect(profile.body.displayname).toBe("New User");
    const again = await tokenLogin(token);
    expect(again.status).toBe(403);
    expect(again.body.errcode).toBe("M_FORBIDDEN");

    // The next CAS login of the same user is the same account.
    const second = await tokenLogin(loginTokenIn(await (await casLogin("New.User!")).text()));
    expect(second.body.user_id).toBe(userId);
  });

  it("redirects straight to a whitelisted client", async () => {
    const res = await casLogin("whitelisted", "https://trusted.example/#/home");
    expect(res.status).toBe(302);
    const loc = res.headers.get("location")!;
    expect(loc).toMatch(/^https:\/\/trusted\.example\/\?loginToken=[^#]+#\/home$/);
  });

  it("a refused ticket is an error page, and nobody is logged in", async () => {
    const res = await getRaw(`/_matrix/client/r0/login/cas/ticket?redirectUrl=${encodeURIComponent(REDIRECT)}&ticket=forged`);
    expect(res.status).toBe(401);
    expect(await res.text()).not.toContain("loginToken");
    const noTicket = await c.get(`/_matrix/client/r0/login/cas/ticket?redirectUrl=x`);
    expect(noTicket.status).toBe(400);
    expect(noTicket.body.errcode).toBe("M_MISSING_PARAM");
  });

  it("an existing user logs in as themselves (mapped on first CAS login)", async () => {
    const u = await registerUser(c);
    const localpart = u.userId.slice(1, u.userId.indexOf(":"));
    const login = await tokenLogin(loginTokenIn(await (await casLogin(localpart)).text()));
    expect(login.body.user_id).toBe(u.userId);
  });
});

describe("required_attributes", () => {
  it("a CAS user without them cannot log in", async () => {
    const cas2 = new FakeCas();
    await cas2.start();
    const s = await startTestServer({ config: { cas_config: { server_url: cas2.url, required_attributes: { department: "eng", staff: null } } } });
    try {
      const redirect = await fetch(`${s.baseUrl}${V3}/login/sso/redirect?redirectUrl=x`, { redirect: "manual" });
      const service = new URL(redirect.headers.get("location")!).searchParams.get("service")!;
      cas2.tickets.set("t1", success("outsider", { department: "sales", staff: "yes" }));
      expect((await browse(s, service, "t1")).status).toBe(401);
      cas2.tickets.set("t2", success("insider", { department: "eng", staff: "yes" }));
      const ok = await browse(s, service, "t2");
      expect(ok.status).toBe(200);
      expect(await ok.text()).toContain("loginToken=");
    } finally {
      await s.close();
      await cas2.stop();
    }
  });
});

describe("re-authentication with SSO (UIA)", () => {
  async function casDevice(u: TestUser, deviceId: string): Promise<void> {
    const localpart = u.userId.slice(1, u.userId.indexOf(":"));
    const login = await tokenLogin(loginTokenIn(await (await casLogin(localpart)).text()), { device_id: deviceId });
    expect(login.status, login.text).toBe(200);
  }

  async function startDeletion(u: TestUser, deviceId: string): Promise<string> {
    const res = await c.delete(`${V3}/devices/${deviceId}`, {}, { token: u.accessToken });
    expect(res.status).toBe(401);
    const flows = (res.body.flows as { stages: string[] }[]).map((f) => f.stages);
    expect(flows).toEqual(expect.arrayContaining([["m.login.password"], ["m.login.sso"]]));
    return res.body.session as string;
  }

  async function ssoStage(session: string, casUser: string): Promise<globalThis.Response> {
    const fallback = await getRaw(`${V3}/auth/m.login.sso/fallback/web?session=${encodeURIComponent(session)}`);
    expect(fallback.status).toBe(200);
    const link = /href="([^"]+)"/.exec(await fallback.text())![1]!.replaceAll("&amp;", "&");
    const service = new URL(link).searchParams.get("service")!;
    const ticket = `UIA-${++ticketCounter}`;
    cas.tickets.set(ticket, success(casUser));
    return browse(ts, service, ticket);
  }

  it("offers m.login.sso to a user CAS knows, and completes the stage through the fallback page", async () => {
    const u = await registerUser(c);
    await casDevice(u, "CASDEV1");
    const session = await startDeletion(u, "CASDEV1");
    const done = await ssoStage(session, u.userId.slice(1, u.userId.indexOf(":")));
    expect(done.status).toBe(200);
    const html = await done.text();
    expect(html).toContain("authDone");
    // The page's one inline script is allowed by its hash, nothing else.
    expect(done.headers.get("content-security-policy")).toMatch(/script-src 'sha256-[A-Za-z0-9+/=]+'/);
    const del = await c.delete(`${V3}/devices/CASDEV1`, { auth: { session } }, { token: u.accessToken });
    expect(del.status, del.text).toBe(200);
    expect((await c.get(`${V3}/devices/CASDEV1`, { token: u.accessToken })).status).toBe(404);
  });

  it("SSO as another user completes the stage but the operation is refused with 403", async () => {
    const u = await registerUser(c);
    await casDevice(u, "CASDEV2");
    const session = await startDeletion(u, "CASDEV2");
    expect((await ssoStage(session, "somebody-else")).status).toBe(200);
    const del = await c.delete(`${V3}/devices/CASDEV2`, { auth: { session } }, { token: u.accessToken });
    expect(del.status).toBe(403);
    expect(del.body.errcode).toBe("M_FORBIDDEN");
    expect((await c.get(`${V3}/devices/CASDEV2`, { token: u.accessToken })).status).toBe(200);
  });

  it("a user CAS never saw gets only the password flow; an unknown session is an error page", async () => {
    const u = await registerUser(c);
    await c.post(`${V3}/login`, { type: "m.login.password", identifier: { type: "m.id.user", user: u.userId }, password: u.password, device_id: "PWDEV" });
    const res = await c.delete(`${V3}/devices/PWDEV`, {}, { token: u.accessToken });
    expect((res.body.flows as { stages: string[] }[]).map((f) => f.stages)).toEqual([["m.login.password"]]);
    cas.tickets.set("uia-unknown", success("x"));
    const page = await getRaw(`/_matrix/client/r0/login/cas/ticket?session=nosuchsession&ticket=uia-unknown`);
    expect(page.status).toBe(400);
  });
});

describe("configuration", () => {
  it("cas_config needs server_url unless disabled", () => {
    expect(() => parseConfig({ server_name: "a.test", listeners: [{ port: 8008 }], cas_config: {} }, "/tmp")).toThrow(/server_url/);
    expect(parseConfig({ server_name: "a.test", listeners: [{ port: 8008 }], cas_config: { enabled: false } }, "/tmp").config.cas).toBeUndefined();
  });
});
