/**
 * OpenID (spec "OpenID"): a user requests a token (POST /user/{userId}/openid/request_token) and a third party
 * exchanges it for the user's id at the federation API's /openid/userinfo, without any X-Matrix signature.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client, expectError, registerUser } from "../helpers/http.js";
import { V3, enc } from "../helpers/rooms.js";
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

const USERINFO = "/_matrix/federation/v1/openid/userinfo";
const requestToken = (userId: string, token: string, body: unknown = {}) => c.post(`${V3}/user/${enc(userId)}/openid/request_token`, body, { token });

describe("OpenID tokens", () => {
  it("a token from request_token is exchanged for the user's id; the server still knows it after a restart", async () => {
    const alice = await registerUser(c);
    const res = await requestToken(alice.userId, alice.accessToken);
    expect(res.status, res.text).toBe(200);
    expect(res.body).toEqual({ access_token: expect.any(String), token_type: "Bearer", matrix_server_name: "test.local", expires_in: 3600 });
    const info = await c.get(`${USERINFO}?access_token=${enc(res.body.access_token as string)}`);
    expect(info.status, info.text).toBe(200);
    expect(info.body).toEqual({ sub: alice.userId });
    // The client access token itself is no OpenID token.
    expectError(await c.get(`${USERINFO}?access_token=${enc(alice.accessToken)}`), 401, "M_UNKNOWN_TOKEN");
    ts = await ts.restart();
    c = new Client(ts.baseUrl);
    expect((await c.get(`${USERINFO}?access_token=${enc(res.body.access_token as string)}`)).body).toEqual({ sub: alice.userId });
  });

  it("tokens for other users are refused; forged, truncated and missing tokens are 401", async () => {
    const alice = await registerUser(c);
    const bob = await registerUser(c);
    expectError(await requestToken(bob.userId, alice.accessToken), 403, "M_FORBIDDEN");
    expectError(await requestToken(alice.userId, alice.accessToken, []), 400, "M_BAD_JSON");
    const token = (await requestToken(alice.userId, alice.accessToken)).body.access_token as string;
    const [payload, mac] = token.split(".") as [string, string];
    const forged = `${Buffer.from(JSON.stringify([bob.userId, Date.now() + 3_600_000])).toString("base64url")}.${mac}`;
    for (const bad of [forged, payload, `${payload}.`, "an/invalid/token", "x".repeat(5000)]) {
      expectError(await c.get(`${USERINFO}?access_token=${enc(bad)}`), 401, "M_UNKNOWN_TOKEN");
    }
    expectError(await c.get(USERINFO), 401, "M_UNKNOWN_TOKEN");
  });
});
