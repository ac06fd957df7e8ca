/**
 * Synapse's shared-secret registration (/_synapse/admin/v1/register, as register_new_matrix_user uses it) and the
 * server_version endpoint.
 */
import { createHmac } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client, expectError, login, uniqueName } from "../helpers/http.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

const SECRET = "test-shared-secret"; // from the test server's base config
const REGISTER = "/_synapse/admin/v1/register";

let ts: TestServer;
let c: Client;

beforeAll(async () => {
  ts = await startTestServer();
  c = new Client(ts.baseUrl);
});
afterAll(async () => {
  await ts?.close();
});

/** register_new_matrix_user's MAC: HMAC-SHA1 keyed by the shared secret over nonce\0user\0password\0admin|notadmin. */
function mac(nonce: string, username: string, password: string, admin: boolean, secret = SECRET, userType?: string): string {
  const message = `${nonce}\x00${username}\x00${password}\x00${admin ? "admin" : "notadmin"}${userType ? `\x00${userType}` : ""}`;
  return createHmac("sha1", Buffer.from(secret, "utf8")).update(Buffer.from(message, "utf8")).digest("hex");
}

async function nonce(client = c): Promise<string> {
  const res = await client.get(REGISTER);
  expect(res.status).toBe(200);
  expect(typeof res.body.nonce).toBe("string");
  return res.body.nonce as string;
}

describe("GET /_synapse/admin/v1/register", () => {
  it("hands out a fresh nonce each time", async () => {
    const a = await nonce();
    const b = await nonce();
    expect(a).not.toBe(b);
    expect(a.length).toBeGreaterThanOrEqual(16);
  });
});

describe("POST /_synapse/admin/v1/register", () => {
  it("creates a user with a correct MAC; the user can log in", async () => {
    const username = uniqueName();
    const n = await nonce();
    const res = await c.post(REGISTER, { nonce: n, username, password: "s3cret pw", admin: false, mac: mac(n, username, "s3cret pw", false) });
    expect(res.status).toBe(200);
    expect(res.body.user_id).toBe(`@${username}:test.local`);
    expect(res.body.home_server).toBe("test.local");
    expect(typeof res.body.access_token).toBe("string");
    expect(typeof res.body.device_id).toBe("string");
    const who = await c.get("/_matrix/client/v3/account/whoami", { token: res.body.access_token as string });
    expect(who.body.user_id).toBe(`@${username}:test.local`);
    expect((await login(c, username, "s3cret pw")).status).toBe(200);
    const row = await ts.server.services.storage.users.get(`@${username}:test.local`);
    expect(row?.is_admin).toBe(0);
  });

  it("admin: true makes a server admin (and the flag is covered by the MAC)", async () => {
    const username = uniqueName("admin");
    const n = await nonce();
    const res = await c.post(REGISTER, { nonce: n, username, password: "pw", admin: true, mac: mac(n, username, "pw", true) });
    expect(res.status).toBe(200);
    expect((await ts.server.services.storage.users.get(res.body.user_id as string))?.is_admin).toBe(1);

    // A MAC computed for notadmin does not authorise an admin.
    const other = uniqueName("admin");
    const n2 = await nonce();
    expectError(await c.post(REGISTER, { nonce: n2, username: other, password: "pw", admin: true, mac: mac(n2, other, "pw", false) }), 403, "M_FORBIDDEN");
  });

  it("sets the displayname when given", async () => {
    const username = uniqueName();
    const n = await nonce();
    const res = await c.post(REGISTER, { nonce: n, username, password: "pw", displayname: "Shared Secret User", mac: mac(n, username, "pw", false) });
    expect(res.status).toBe(200);
    const profile = await c.get(`/_matrix/client/v3/profile/${encodeURIComponent(res.body.user_id as string)}`);
    expect(profile.body.displayname).toBe("Shared Secret User");
  });

  it("a reused nonce → 400", async () => {
    const n = await nonce();
    const first = uniqueName();
    expect((await c.post(REGISTER, { nonce: n, username: first, password: "pw", mac: mac(n, first, "pw", false) })).status).toBe(200);
    const second = uniqueName();
    const res = await c.post(REGISTER, { nonce: n, username: second, password: "pw", mac: mac(n, second, "pw", false) });
    expect(res.status).toBe(400);
    expect(typeof res.body.errcode).toBe("string");
  });

  it("an unknown nonce → 400", async () => {
    const username = uniqueName();
    const res = await c.post(REGISTER, { nonce: "made-up", username, password: "pw", mac: mac("made-up", username, "pw", false) });
    expect(res.status).toBe(400);
  });

  it("a wrong MAC → 403 M_FORBIDDEN, and the nonce is used up", async () => {
    const username = uniqueName();
    const n = await nonce();
    expectError(await c.post(REGISTER, { nonce: n, username, password: "pw", mac: mac(n, username, "pw", false, "wrong secret") }), 403, "M_FORBIDDEN");
    expectError(await c.post(REGISTER, { nonce: n, username, password: "pw", mac: "00" }), 400, "M_UNKNOWN");
    const row = await ts.server.services.storage.users.get(`@${username}:test.local`);
    expect(row).toBeUndefined();
  });

  it("a MAC over a different password does not authorise this one", async () => {
    const username = uniqueName();
    const n = await nonce();
    expectError(await c.post(REGISTER, { nonce: n, username, password: "pw", mac: mac(n, username, "other", false) }), 403, "M_FORBIDDEN");
  });

  it("a user_type is covered by the MAC", async () => {
    const username = uniqueName("bot");
    const n = await nonce();
    expectError(await c.post(REGISTER, { nonce: n, username, password: "pw", user_type: "bot", mac: mac(n, username, "pw", false) }), 403, "M_FORBIDDEN");
    const n2 = await nonce();
    const res = await c.post(REGISTER, { nonce: n2, username, password: "pw", user_type: "bot", mac: mac(n2, username, "pw", false, SECRET, "bot") });
    expect(res.status).toBe(200);
  });

  it("a taken or invalid username → 400", async () => {
    const username = uniqueName();
    const n = await nonce();
    expect((await c.post(REGISTER, { nonce: n, username, password: "pw", mac: mac(n, username, "pw", false) })).status).toBe(200);
    const n2 = await nonce();
    expectError(await c.post(REGISTER, { nonce: n2, username, password: "pw", mac: mac(n2, username, "pw", false) }), 400, "M_USER_IN_USE");
    const n3 = await nonce();
    expectError(await c.post(REGISTER, { nonce: n3, username: "bad name", password: "pw", mac: mac(n3, "bad name", "pw", false) }), 400, "M_INVALID_USERNAME");
  });

  it("missing fields → 400 M_BAD_JSON", async () => {
    const n = await nonce();
    expectError(await c.post(REGISTER, { nonce: n, username: uniqueName(), password: "pw" }), 400, "M_BAD_JSON");
  });

  it("works when public registration is disabled", async () => {
    const closed = await startTestServer({ config: { enable_registration: false } });
    try {
      const cc = new Client(closed.baseUrl);
      const username = uniqueName();
      const n = await nonce(cc);
      const res = await cc.post(REGISTER, { nonce: n, username, password: "pw", mac: mac(n, username, "pw", false) });
      expect(res.status).toBe(200);
    } finally {
      await closed.close();
    }
  });

  it("without registration_shared_secret → 400 for GET and POST", async () => {
    const off = await startTestServer({ config: { registration_shared_secret: null } });
    try {
      const oc = new Client(off.baseUrl);
      expect((await oc.get(REGISTER)).status).toBe(400);
      const username = uniqueName();
      const res = await oc.post(REGISTER, { nonce: "n", username, password: "pw", mac: mac("n", username, "pw", false) });
      expect(res.status).toBe(400);
      expect(typeof res.body.errcode).toBe("string");
    } finally {
      await off.close();
    }
  });
});

describe("GET /_synapse/admin/v1/server_version", () => {
  it("names the server version", async () => {
    const res = await c.get("/_synapse/admin/v1/server_version");
    expect(res.status).toBe(200);
    expect(res.body.server_version).toMatch(/\d+\.\d+\.\d+.*Myelin/);
  });
});
