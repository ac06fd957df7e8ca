/**
 * "At the door": what every client meets before any feature — the exact `Content-Type: application/json`, Matrix
 * errors for requests Node's HTTP parser refuses (over raw sockets), long URLs, and /capabilities telling the truth.
 */
import { connect } from "node:net";
import { connect as connectTls } from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client, expectError, registerUser, type Response, type TestUser } from "../helpers/http.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

let ts: TestServer;
let c: Client;
let alice: TestUser;
let port: number;

beforeAll(async () => {
  ts = await startTestServer();
  c = new Client(ts.baseUrl);
  alice = await registerUser(c);
  port = Number(new URL(ts.baseUrl).port);
});
afterAll(async () => {
  await ts?.close();
});

interface RawResponse {
  statusLine: string;
  status: number;
  headers: Record<string, string>;
  body: string;
  /** The server closed the connection after answering. */
  closed: boolean;
}

/** Sends bytes as they are over a fresh TCP connection; reads one response, and whether the server then closes. */
function raw(data: string | Buffer, opts: { host?: string; port?: number; tls?: boolean } = {}): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const to = { port: opts.port ?? port, host: opts.host ?? "127.0.0.1" };
    const socket = opts.tls ? connectTls({ ...to, rejectUnauthorized: false }) : connect(to);
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no close from the server; got ${JSON.stringify(Buffer.concat(chunks).toString("latin1").slice(0, 300))}`));
    }, 10_000);
    socket.on("data", (d) => chunks.push(d));
    // A reset after the answer (the server no longer reading what we still send) is not a failure.
    socket.on("error", () => {});
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      const text = Buffer.concat(chunks).toString("utf8");
      const split = text.indexOf("\r\n\r\n");
      if (split < 0) return reject(new Error(`no complete response: ${JSON.stringify(text.slice(0, 300))}`));
      const [statusLine, ...lines] = text.slice(0, split).split("\r\n");
      const headers: Record<string, string> = {};
      for (const l of lines) {
        const i = l.indexOf(":");
        headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
      }
      const length = Number(headers["content-length"]);
      resolve({ statusLine: statusLine!, status: Number(statusLine!.split(" ")[1]), headers, body: text.slice(split + 4, split + 4 + length), closed: true });
    };
    socket.on("end", () => {
      socket.end();
      finish();
    });
    socket.on("close", finish);
    socket.write(data);
  });
}

/** A Matrix error over a raw socket: status, the exact JSON Content-Type, a body with errcode and error, then closed. */
function expectRawError(res: RawResponse, status: number, errcode: string): void {
  expect(res.status, res.statusLine).toBe(status);
  expect(res.statusLine).toMatch(new RegExp(`^HTTP/1\\.1 ${status} \\S`));
  expect(res.headers["content-type"]).toBe("application/json");
  expect(res.headers["connection"]).toBe("close");
  const body = JSON.parse(res.body) as Record<string, unknown>;
  expect(body.errcode).toBe(errcode);
  expect(typeof body.error).toBe("string");
  // Never Fastify's or Node's own shape.
  expect(body).not.toHaveProperty("statusCode");
  expect(res.closed).toBe(true);
}

async function expectStillServing(): Promise<void> {
  const res = await c.get("/_matrix/client/versions");
  expect(res.status).toBe(200);
}

function expectJsonType(res: Response, what: string): void {
  expect(res.headers.get("content-type"), what).toBe("application/json");
  expect(typeof res.body, what).toBe("object");
}

describe("Content-Type is exactly application/json", () => {
  it("on a 200, a 404, a 405, a 400 M_NOT_JSON, a 401, a 413 and an OPTIONS preflight", async () => {
    expectJsonType(await c.get("/_matrix/client/versions"), "200");
    expectJsonType(await c.get("/_matrix/client/v3/account/whoami", { token: alice.accessToken }), "200 authenticated");
    const notFound = await c.get("/_matrix/client/v3/no_such_endpoint");
    expectError(notFound, 404, "M_UNRECOGNIZED");
    expectJsonType(notFound, "404");
    const wrongMethod = await c.post("/_matrix/client/versions", {});
    expectError(wrongMethod, 405, "M_UNRECOGNIZED");
    expectJsonType(wrongMethod, "405");
    const notJson = await c.post("/_matrix/client/v3/login", "{nope");
    expectError(notJson, 400, "M_NOT_JSON");
    expectJsonType(notJson, "400");
    const missingToken = await c.get("/_matrix/client/v3/account/whoami");
    expectError(missingToken, 401, "M_MISSING_TOKEN");
    expectJsonType(missingToken, "401");
    const uia = await c.post("/_matrix/client/v3/register", {});
    expect(uia.status).toBe(401);
    expectJsonType(uia, "401 UIA");
    const tooLarge = await c.post("/_matrix/client/v3/login", JSON.stringify({ padding: "x".repeat(11 * 1024 * 1024) }));
    expectError(tooLarge, 413, "M_TOO_LARGE");
    expectJsonType(tooLarge, "413");
    const preflight = await c.request("OPTIONS", "/_matrix/client/v3/login", {
      headers: { origin: "https://app.example", "access-control-request-method": "POST", "access-control-request-headers": "authorization, content-type" },
    });
    expect(preflight.status).toBe(200);
    expectJsonType(preflight, "OPTIONS");
    expect(preflight.headers.get("access-control-allow-origin")).toBe("*");
  });

  it("on errors Fastify raises before routing: bad percent-encoding, an over-long path parameter", async () => {
    // Bad percent-encoding in a path parameter: 400 M_UNKNOWN.
    const badPath = await c.get("/_matrix/client/v3/profile/%E0%A4%A");
    expectError(badPath, 400, "M_UNKNOWN");
    expectJsonType(badPath, "bad path encoding");
    expect(badPath.headers.get("access-control-allow-origin")).toBe("*");
    // A path parameter past 2048 characters: 414 M_TOO_LARGE.
    const longParam = await c.get(`/_matrix/client/v3/profile/${"a".repeat(3000)}`);
    expectError(longParam, 414, "M_TOO_LARGE");
    expectJsonType(longParam, "long parameter");
    await expectStillServing();
  });

  it("bad percent-encoding in the query is a Matrix error, not a crash", async () => {
    const res = await c.get("/_matrix/client/v3/sync?filter=%ZZ%7B&timeout=0", { token: alice.accessToken });
    expect(res.status).toBeGreaterThanOrEqual(400);
    expect(res.status).toBeLessThan(500);
    expect(typeof res.body.errcode).toBe("string");
    expectJsonType(res, "bad query encoding");
  });

  it("over HEAD and keep-alive too, on raw sockets", async () => {
    const res = await raw("GET /_matrix/client/versions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    expect(res.status).toBe(200);
    expect(res.headers["content-type"]).toBe("application/json");
    const head = await raw("HEAD /_matrix/client/versions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    expect(head.status).toBe(200);
    expect(head.headers["content-type"]).toBe("application/json");
  });

  it("a JSON body that is not valid UTF-8 → 400 M_NOT_JSON (not decoded with U+FFFD)", async () => {
    // {"username": "a\x81b"}: 0x81 is no UTF-8 sequence.
    const body = Buffer.concat([Buffer.from('{"username": "a'), Buffer.from([0x81]), Buffer.from('b", "password": "pw"}')]);
    const res = await fetch(`${ts.baseUrl}/_matrix/client/v3/register`, { method: "POST", headers: { "content-type": "application/json" }, body });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { errcode: string }).errcode).toBe("M_NOT_JSON");
    // Valid UTF-8 beyond ASCII is fine.
    const ok = await c.put(`/_matrix/client/v3/profile/${encodeURIComponent(alice.userId)}/displayname`, { displayname: "Ålice ☃ 😀" }, { token: alice.accessToken });
    expect(ok.status, ok.text).toBe(200);
  });

  it("non-JSON answers keep their own types", async () => {
    expect((await c.get("/")).headers.get("content-type")).toBe("text/html; charset=utf-8");
    expect((await c.get("/health")).headers.get("content-type")).toBe("text/plain; charset=utf-8");
  });
});

describe("requests Node's HTTP parser refuses are Matrix errors", () => {
  it("headers over the limit → 431 M_TOO_LARGE", async () => {
    const res = await raw(`GET /_matrix/client/versions HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(70 * 1024)}\r\n\r\n`);
    expectRawError(res, 431, "M_TOO_LARGE");
    expect(res.headers["access-control-allow-origin"]).toBe("*");
    await expectStillServing();
  });

  it("a 100 KiB URL → 431 M_TOO_LARGE, and the answer arrives whole", async () => {
    const res = await raw(`GET /_matrix/client/v3/sync?filter=${"a".repeat(100 * 1024)} HTTP/1.1\r\nHost: x\r\n\r\n`);
    expectRawError(res, 431, "M_TOO_LARGE");
    await expectStillServing();
  });

  it("a garbage request line → 400 M_UNRECOGNIZED", async () => {
    for (const line of ["GARBAGE\r\n\r\n", "\x00\x01\x02 hello\r\n\r\n", "GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", "GET / HTTP/9.9\r\nHost: x\r\n\r\n", "GET foo HTTP/1.1\r\nHost: x\r\n\r\n"]) {
      expectRawError(await raw(line), 400, "M_UNRECOGNIZED");
    }
    await expectStillServing();
  });

  it("conflicting Content-Length and Transfer-Encoding, bad Content-Length, bad Transfer-Encoding → 400 M_UNKNOWN", async () => {
    const login = "POST /_matrix/client/v3/login HTTP/1.1\r\nHost: x\r\n";
    for (const req of [
      `${login}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
      `${login}Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd`,
      `${login}Content-Length: abc\r\n\r\n`,
      `${login}Transfer-Encoding: chunked, gzip\r\n\r\n`,
    ]) {
      expectRawError(await raw(req), 400, "M_UNKNOWN");
    }
    await expectStillServing();
  });

  it("invalid chunked framing mid-body → 400 M_UNKNOWN", async () => {
    const res = await raw("POST /_matrix/client/v3/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n");
    expectRawError(res, 400, "M_UNKNOWN");
    await expectStillServing();
  });

  it("a malformed header → 400 M_UNKNOWN", async () => {
    expectRawError(await raw("GET /_matrix/client/versions HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n"), 400, "M_UNKNOWN");
    await expectStillServing();
  });

  it("a request without Host is served, as by Synapse", async () => {
    const res = await raw("GET /_matrix/client/versions HTTP/1.1\r\nConnection: close\r\n\r\n");
    expect(res.status).toBe(200);
    expect(res.headers["content-type"]).toBe("application/json");
  });
});

describe("long URLs", () => {
  it("a 16 KiB inline filter on /sync is served", async () => {
    const rooms: string[] = [];
    for (let i = 0; JSON.stringify({ room: { not_rooms: rooms } }).length < 16 * 1024; i++) rooms.push(`!room${i.toString().padStart(6, "0")}:test.local`);
    const filter = JSON.stringify({ room: { not_rooms: rooms, timeline: { limit: 5 } } });
    const path = `/_matrix/client/v3/sync?timeout=0&filter=${encodeURIComponent(filter)}`;
    expect(path.length).toBeGreaterThan(16 * 1024);
    const res = await c.get(path, { token: alice.accessToken });
    expect(res.status, res.text).toBe(200);
    expectJsonType(res, "long /sync");
    expect(typeof res.body.next_batch).toBe("string");
  });
});

describe("extra bind addresses get the same handling", () => {
  it("431 as a Matrix error, exact JSON type and long URLs on the second address", async () => {
    const other = await startTestServer({
      config: { listeners: [{ port: 8008, bind_addresses: ["127.0.0.1", "127.0.0.2"], type: "http", resources: [{ names: ["client"] }] }] },
    });
    try {
      const second = other.server.addresses.find((a) => a.host === "127.0.0.2");
      expect(second).toBeDefined();
      const at = { host: "127.0.0.2", port: second!.port };
      expectRawError(await raw(`GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(70 * 1024)}\r\n\r\n`, at), 431, "M_TOO_LARGE");
      expectRawError(await raw("GARBAGE\r\n\r\n", at), 400, "M_UNRECOGNIZED");
      const long = await raw(`GET /_matrix/client/versions?x=${"a".repeat(30 * 1024)} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`, at);
      expect(long.status).toBe(200);
      expect(long.headers["content-type"]).toBe("application/json");
      const notFound = await raw("GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", at);
      expect(notFound.status).toBe(404);
      expect(notFound.headers["content-type"]).toBe("application/json");
    } finally {
      await other.close();
    }
  });
});

describe("a TLS listener gets the same handling", () => {
  it("431 as a Matrix error and the exact JSON type over HTTPS", async () => {
    const other = await startTestServer({ tls: true });
    try {
      const at = { port: other.tlsPort!, tls: true };
      expectRawError(await raw(`GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(70 * 1024)}\r\n\r\n`, at), 431, "M_TOO_LARGE");
      const long = await raw(`GET /_matrix/key/v2/server?x=${"a".repeat(30 * 1024)} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`, at);
      expect(long.status).toBe(200);
      expect(long.headers["content-type"]).toBe("application/json");
    } finally {
      await other.close();
    }
  });
});

describe("/capabilities says what is enabled", () => {
  it("by default: every capability with its spec shape", async () => {
    const res = await c.get("/_matrix/client/v3/capabilities", { token: alice.accessToken });
    expect(res.status).toBe(200);
    expectJsonType(res, "capabilities");
    const caps = res.body.capabilities as Record<string, unknown>;
    expect(caps["m.change_password"]).toEqual({ enabled: true });
    expect(caps["m.set_displayname"]).toEqual({ enabled: true });
    expect(caps["m.set_avatar_url"]).toEqual({ enabled: true });
    expect(caps["m.3pid_changes"]).toEqual({ enabled: true });
    expect(caps["m.get_login_token"]).toEqual({ enabled: false });
    expect(caps["m.profile_fields"]).toEqual({ enabled: true });
    const rv = caps["m.room_versions"] as { default: string; available: Record<string, string> };
    expect(rv.available[rv.default]).toBe("stable");
  });

  it("enable_set_displayname: false → the capability says so and PUT/DELETE displayname are 403 M_FORBIDDEN", async () => {
    const other = await startTestServer({ config: { enable_set_displayname: false } });
    try {
      const oc = new Client(other.baseUrl);
      const bob = await registerUser(oc);
      const caps = (await oc.get("/_matrix/client/v3/capabilities", { token: bob.accessToken })).body.capabilities as Record<string, unknown>;
      expect(caps["m.set_displayname"]).toEqual({ enabled: false });
      expect(caps["m.set_avatar_url"]).toEqual({ enabled: true });
      expect(caps["m.profile_fields"]).toEqual({ enabled: true, disallowed: ["displayname"] });

      const profile = `/_matrix/client/v3/profile/${encodeURIComponent(bob.userId)}`;
      expectError(await oc.put(`${profile}/displayname`, { displayname: "Bob" }, { token: bob.accessToken }), 403, "M_FORBIDDEN");
      expectError(await oc.delete(`${profile}/displayname`, undefined, { token: bob.accessToken }), 403, "M_FORBIDDEN");
      // The other fields are still the user's to change.
      expect((await oc.put(`${profile}/avatar_url`, { avatar_url: "mxc://test.local/abc" }, { token: bob.accessToken })).status).toBe(200);
      expect((await oc.put(`${profile}/org.example.job`, { "org.example.job": "tester" }, { token: bob.accessToken })).status).toBe(200);

      // A server admin still may (as Synapse's by_admin).
      const admin = await other.server.services.accounts.register({ username: "doorAdmin".toLowerCase(), password: "pw", admin: true });
      const adminProfile = `/_matrix/client/v3/profile/${encodeURIComponent(admin.userId)}`;
      expect((await oc.put(`${adminProfile}/displayname`, { displayname: "The Admin" }, { token: admin.accessToken! })).status).toBe(200);
    } finally {
      await other.close();
    }
  });

  it("enable_set_avatar_url: false → PUT avatar_url is 403 M_FORBIDDEN", async () => {
    const other = await startTestServer({ config: { enable_set_avatar_url: false } });
    try {
      const oc = new Client(other.baseUrl);
      const bob = await registerUser(oc);
      const caps = (await oc.get("/_matrix/client/v3/capabilities", { token: bob.accessToken })).body.capabilities as Record<string, unknown>;
      expect(caps["m.set_avatar_url"]).toEqual({ enabled: false });
      expect(caps["m.set_displayname"]).toEqual({ enabled: true });
      expect(caps["m.profile_fields"]).toEqual({ enabled: true, disallowed: ["avatar_url"] });
      const profile = `/_matrix/client/v3/profile/${encodeURIComponent(bob.userId)}`;
      expectError(await oc.put(`${profile}/avatar_url`, { avatar_url: "mxc://test.local/abc" }, { token: bob.accessToken }), 403, "M_FORBIDDEN");
      expect((await oc.put(`${profile}/displayname`, { displayname: "Bob" }, { token: bob.accessToken })).status).toBe(200);
    } finally {
      await other.close();
    }
  });
});
