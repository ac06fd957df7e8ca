/**
 * Server administration (spec "Server administration"): GET /admin/whois/{userId} — for the user looked up, or a
 * server admin — lists the user's devices with the last connection seen on each.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client, expectError, registerUser } from "../helpers/http.js";
import { V3, enc, poll } from "../helpers/rooms.js";
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

type Whois = { user_id: string; devices: Record<string, { sessions: { connections: { ip: string; last_seen: number; user_agent: string }[] }[] }> };

describe("GET /admin/whois/{userId}", () => {
  it("a user sees their own devices with the last connection of each", async () => {
    const alice = await registerUser(c);
    await c.get(`${V3}/account/whoami`, { token: alice.accessToken, headers: { "user-agent": "whois-test/1.0" } });
    const body = await poll(async () => {
      const res = await c.get<Whois>(`${V3}/admin/whois/${enc(alice.userId)}`, { token: alice.accessToken, headers: { "user-agent": "whois-test/1.0" } });
      expect(res.status, res.text).toBe(200);
      const conns = Object.values(res.body.devices).flatMap((d) => d.sessions[0]!.connections);
      return conns.length > 0 ? res.body : undefined;
    });
    expect(body.user_id).toBe(alice.userId);
    expect(Object.keys(body.devices)).toEqual([alice.deviceId]);
    expect(body.devices[alice.deviceId]!.sessions[0]!.connections[0]).toEqual({ ip: expect.any(String), last_seen: expect.any(Number), user_agent: "whois-test/1.0" });
  });

  it("other users' details are for server admins only; admins get 404 for unknown users", async () => {
    const alice = await registerUser(c);
    const bob = await registerUser(c);
    expectError(await c.get(`${V3}/admin/whois/${enc(bob.userId)}`, { token: alice.accessToken }), 403, "M_FORBIDDEN");
    // The refusal does not depend on whether the user exists.
    expectError(await c.get(`${V3}/admin/whois/${enc("@nobody:test.local")}`, { token: alice.accessToken }), 403, "M_FORBIDDEN");
    await ts.server.services.storage.users.setAdmin(alice.userId, true);
    ts.server.services.tokens.invalidateUser(alice.userId);
    const res = await c.get<Whois>(`${V3}/admin/whois/${enc(bob.userId)}`, { token: alice.accessToken });
    expect(res.status, res.text).toBe(200);
    expect(res.body.user_id).toBe(bob.userId);
    expect(Object.keys(res.body.devices)).toEqual([bob.deviceId]);
    expectError(await c.get(`${V3}/admin/whois/${enc("@nobody:test.local")}`, { token: alice.accessToken }), 404, "M_NOT_FOUND");
    expectError(await c.get(`${V3}/admin/whois/${enc("not a user id")}`, { token: alice.accessToken }), 400, "M_INVALID_PARAM");
    expectError(await c.get(`${V3}/admin/whois/${enc(bob.userId)}`), 401, "M_MISSING_TOKEN");
  });
});
