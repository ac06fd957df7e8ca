/**
 * TURN credentials (spec "Voice over IP" → GET /voip/turnServer) from Synapse's `turn_*` keys: time-limited
 * credentials from a shared secret (verified here by recomputing the HMAC, as the TURN server does), static
 * credentials, `{}` without a TURN server, and `turn_allow_guests`.
 */
import { createHmac } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config/config.js";
import { ConfigError } from "../../src/config/reader.js";
import { TurnService } from "../../src/services/voip.js";
import { Client, expectError, registerUser } from "../helpers/http.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

const TURN = "/_matrix/client/v3/voip/turnServer";
const URIS = ["turn:turn.example.com:3478?transport=udp", "turn:turn.example.com:3478?transport=tcp", "turns:turn.example.com:5349?transport=tcp"];
const SECRET = "n0t-so-s3cret shared with coturn";

const servers: TestServer[] = [];
async function server(config: Record<string, unknown>): Promise<Client> {
  const ts = await startTestServer({ config: { allow_guest_access: true, ...config } });
  servers.push(ts);
  return new Client(ts.baseUrl);
}
afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
});

async function guestToken(c: Client): Promise<string> {
  const res = await c.post("/_matrix/client/v3/register?kind=guest", {});
  expect(res.status).toBe(200);
  return res.body.access_token as string;
}

describe("with turn_shared_secret", () => {
  let c: Client;
  beforeAll(async () => {
    c = await server({ turn_uris: URIS, turn_shared_secret: SECRET, turn_user_lifetime: "1d" });
  });

  it("answers <expiry>:<user id> and base64(HMAC-SHA1(secret, username)), with the uris and ttl", async () => {
    const u = await registerUser(c);
    const before = Math.floor(Date.now() / 1000);
    const res = await c.get(TURN, { token: u.accessToken });
    const after = Math.floor(Date.now() / 1000);
    expect(res.status).toBe(200);
    expect(Object.keys(res.body).sort()).toEqual(["password", "ttl", "uris", "username"]);
    expect(res.body.uris).toEqual(URIS);
    expect(res.body.ttl).toBe(86_400);

    const username = res.body.username as string;
    const m = /^(\d+):(.+)$/.exec(username);
    expect(m).not.toBeNull();
    const expiry = Number(m![1]);
    expect(m![2]).toBe(u.userId);
    expect(expiry).toBeGreaterThanOrEqual(before + 86_400);
    expect(expiry).toBeLessThanOrEqual(after + 86_400);

    const expected = createHmac("sha1", SECRET).update(username).digest("base64");
    expect(res.body.password).toBe(expected);
    // Standard padded base64 of a 20-byte digest, as coturn computes it.
    expect(res.body.password).toMatch(/^[A-Za-z0-9+/]{27}=$/);
  });

  it("is served on r0 too", async () => {
    const u = await registerUser(c);
    const res = await c.get(TURN.replace("/v3/", "/r0/"), { token: u.accessToken });
    expect(res.status).toBe(200);
    expect(res.body.password).toBe(createHmac("sha1", SECRET).update(res.body.username as string).digest("base64"));
  });

  it("guests get credentials by default (turn_allow_guests: true)", async () => {
    const token = await guestToken(c);
    const res = await c.get(TURN, { token });
    expect(res.status).toBe(200);
    expect(res.body.uris).toEqual(URIS);
  });

  it("needs an access token: 401 M_MISSING_TOKEN, 401 M_UNKNOWN_TOKEN", async () => {
    expectError(await c.get(TURN), 401, "M_MISSING_TOKEN");
    expectError(await c.get(TURN, { token: "not-a-token" }), 401, "M_UNKNOWN_TOKEN");
  });

  it("POST → 405 M_UNRECOGNIZED", async () => {
    const u = await registerUser(c);
    expectError(await c.post(TURN, {}, { token: u.accessToken }), 405, "M_UNRECOGNIZED");
  });
});

describe("turn_user_lifetime", () => {
  it("defaults to 1h", async () => {
    const c = await server({ turn_uris: URIS, turn_shared_secret: SECRET });
    const u = await registerUser(c);
    const res = await c.get(TURN, { token: u.accessToken });
    expect(res.body.ttl).toBe(3600);
    const expiry = Number((res.body.username as string).split(":")[0]);
    expect(Math.abs(expiry - (Date.now() / 1000 + 3600))).toBeLessThan(5);
  });

  it("takes milliseconds too; ttl is whole seconds", async () => {
    const c = await server({ turn_uris: URIS, turn_shared_secret: SECRET, turn_user_lifetime: 90_500 });
    const u = await registerUser(c);
    expect((await c.get(TURN, { token: u.accessToken })).body.ttl).toBe(90);
  });
});

describe("static credentials", () => {
  it("turn_username / turn_password are handed out as they are", async () => {
    const c = await server({ turn_uris: URIS, turn_username: "turnuser", turn_password: "turnpass", turn_user_lifetime: "10m" });
    const u = await registerUser(c);
    const res = await c.get(TURN, { token: u.accessToken });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ username: "turnuser", password: "turnpass", uris: URIS, ttl: 600 });
  });

  it("the shared secret wins when both are configured (as Synapse)", async () => {
    const c = await server({ turn_uris: URIS, turn_shared_secret: SECRET, turn_username: "turnuser", turn_password: "turnpass" });
    const u = await registerUser(c);
    const res = await c.get(TURN, { token: u.accessToken });
    expect(res.body.username).toMatch(new RegExp(`^\\d+:${u.userId.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`));
    expect(res.body.password).toBe(createHmac("sha1", SECRET).update(res.body.username as string).digest("base64"));
  });
});

describe("without a TURN server", () => {
  it("answers {} (as Synapse), and still needs an access token", async () => {
    const c = await server({});
    const u = await registerUser(c);
    const res = await c.get(TURN, { token: u.accessToken });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({});
    expectError(await c.get(TURN), 401, "M_MISSING_TOKEN");
  });

  it("a half-configured TURN server is none: {} (as Synapse)", async () => {
    const c = await server({ turn_uris: URIS, turn_username: "only-a-username" });
    const u = await registerUser(c);
    expect((await c.get(TURN, { token: u.accessToken })).body).toEqual({});
    const base = { server_name: "test.local", listeners: [{ port: 8008, type: "http", resources: [{ names: ["client"] }] }] };
    for (const keys of [
      { turn_shared_secret: SECRET },
      { turn_uris: [], turn_shared_secret: SECRET },
      { turn_uris: URIS },
      { turn_uris: URIS, turn_password: "only-a-password" },
      { turn_uris: URIS, turn_shared_secret: "" },
      { turn_uris: URIS, turn_shared_secret: SECRET, turn_user_lifetime: 0 },
    ]) {
      const turn = new TurnService(parseConfig({ ...base, ...keys }, "/tmp").config.turn);
      expect(turn.credentials("@u:test.local"), JSON.stringify(keys)).toEqual({});
    }
  });
});

describe("turn_allow_guests: false", () => {
  it("refuses guests with 403 M_GUEST_ACCESS_FORBIDDEN, and still serves users", async () => {
    const c = await server({ turn_uris: URIS, turn_shared_secret: SECRET, turn_allow_guests: false });
    expectError(await c.get(TURN, { token: await guestToken(c) }), 403, "M_GUEST_ACCESS_FORBIDDEN");
    const u = await registerUser(c);
    expect((await c.get(TURN, { token: u.accessToken })).body.uris).toEqual(URIS);
  });
});

describe("TurnService", () => {
  it("expiry is now + lifetime in whole unix seconds (rounded down, as Synapse's %d)", () => {
    const turn = new TurnService({ uris: URIS, sharedSecret: SECRET, userLifetimeMs: 86_400_000, allowGuests: true }, () => 1_700_000_000_999);
    const creds = turn.credentials("@alice:example.org");
    expect(creds).toEqual({
      username: "1700086400:@alice:example.org",
      password: createHmac("sha1", SECRET).update("1700086400:@alice:example.org").digest("base64"),
      uris: URIS,
      ttl: 86_400,
    });
  });
});

describe("config", () => {
  const base = { server_name: "test.local", listeners: [{ port: 8008, type: "http", resources: [{ names: ["client"] }] }] };

  it("reads Synapse's keys and defaults", () => {
    expect(parseConfig(base, "/tmp").config.turn).toEqual({ uris: [], userLifetimeMs: 3_600_000, allowGuests: true });
    const { config, warnings } = parseConfig(
      { ...base, turn_uris: URIS, turn_shared_secret: SECRET, turn_username: "u", turn_password: "p", turn_user_lifetime: "2h", turn_allow_guests: false },
      "/tmp",
    );
    expect(config.turn).toEqual({ uris: URIS, sharedSecret: SECRET, username: "u", password: "p", userLifetimeMs: 7_200_000, allowGuests: false });
    expect(warnings).toEqual([]);
  });

  it("refuses wrong types, naming the key, and never quotes the secret", () => {
    expect(() => parseConfig({ ...base, turn_uris: "turn:x" }, "/tmp")).toThrow(/turn_uris/);
    expect(() => parseConfig({ ...base, turn_user_lifetime: "soon" }, "/tmp")).toThrow(/turn_user_lifetime/);
    expect(() => parseConfig({ ...base, turn_allow_guests: "no" }, "/tmp")).toThrow(/turn_allow_guests/);
    try {
      parseConfig({ ...base, turn_shared_secret: SECRET, turn_shared_secret_path: "/etc/turn.secret" }, "/tmp");
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError);
      expect((e as Error).message).toMatch(/turn_shared_secret_path/);
      expect((e as Error).message).not.toContain(SECRET);
    }
    expect(() => parseConfig({ ...base, turn_shared_secret_path: "/etc/turn.secret" }, "/tmp")).toThrow(/turn_shared_secret_path/);
  });
});
