import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client, expectError, login, registerUser, uniqueName } from "../helpers/http.js";
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
