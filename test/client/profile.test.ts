/** Profiles: the whole profile, displayname, avatar_url, m.tz and custom fields (spec v1.16), with their limits. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client, expectError, registerUser, uniqueName, type TestUser } from "../helpers/http.js";
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

const profileUrl = (userId: string, key?: string) =>
  `/_matrix/client/v3/profile/${encodeURIComponent(userId)}${key === undefined ? "" : `/${encodeURIComponent(key)}`}`;
const localpart = (u: TestUser) => u.userId.slice(1).split(":")[0]!;

describe("GET /profile/{userId}", () => {
  it("a new user's display name is the localpart, with no avatar", async () => {
    const u = await registerUser(c);
    const res = await c.get(profileUrl(u.userId));
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ displayname: localpart(u) });
  });

  it("works with and without an access token", async () => {
    const u = await registerUser(c);
    const other = await registerUser(c);
    expect((await c.get(profileUrl(u.userId), { token: other.accessToken })).status).toBe(200);
    expect((await c.get(profileUrl(u.userId, "displayname"))).body).toEqual({ displayname: localpart(u) });
  });

  it("an unknown user → 404 M_NOT_FOUND", async () => {
    expectError(await c.get(profileUrl(`@${uniqueName("nobody")}:test.local`)), 404, "M_NOT_FOUND");
    expectError(await c.get(profileUrl(`@${uniqueName("nobody")}:test.local`, "displayname")), 404, "M_NOT_FOUND");
  });

  it("a user of a server that cannot be reached → 502 (as Synapse), never a 500", async () => {
    const res = await c.get(profileUrl("@someone:elsewhere.example"));
    expect(res.status).toBe(502);
    expect(typeof res.body.errcode).toBe("string");
  });
});

describe("displayname and avatar_url", () => {
  it("PUT then GET displayname, reflected in the whole profile", async () => {
    const u = await registerUser(c);
    const res = await c.put(profileUrl(u.userId, "displayname"), { displayname: "Alice Wonderland 🐇" }, { token: u.accessToken });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({});
    expect((await c.get(profileUrl(u.userId, "displayname"))).body).toEqual({ displayname: "Alice Wonderland 🐇" });
    expect((await c.get(profileUrl(u.userId))).body).toEqual({ displayname: "Alice Wonderland 🐇" });
  });

  it("PUT then GET avatar_url", async () => {
    const u = await registerUser(c);
    expect((await c.put(profileUrl(u.userId, "avatar_url"), { avatar_url: "mxc://test.local/abcDEF123" }, { token: u.accessToken })).status).toBe(200);
    expect((await c.get(profileUrl(u.userId, "avatar_url"))).body).toEqual({ avatar_url: "mxc://test.local/abcDEF123" });
    expect((await c.get(profileUrl(u.userId))).body).toEqual({ displayname: localpart(u), avatar_url: "mxc://test.local/abcDEF123" });
  });

  it("an unset avatar_url → 404 M_NOT_FOUND", async () => {
    const u = await registerUser(c);
    expectError(await c.get(profileUrl(u.userId, "avatar_url")), 404, "M_NOT_FOUND");
  });

  it("avatar_url that is not an mxc URI → 400", async () => {
    const u = await registerUser(c);
    for (const avatar_url of ["https://example.org/a.png", 42, { url: "mxc://a/b" }]) {
      expectError(await c.put(profileUrl(u.userId, "avatar_url"), { avatar_url }, { token: u.accessToken }), 400, "M_BAD_JSON");
    }
  });

  it("displayname must be a string of reasonable length", async () => {
    const u = await registerUser(c);
    expectError(await c.put(profileUrl(u.userId, "displayname"), { displayname: 42 }, { token: u.accessToken }), 400, "M_BAD_JSON");
    expectError(await c.put(profileUrl(u.userId, "displayname"), { displayname: "x".repeat(257) }, { token: u.accessToken }), 400, "M_BAD_JSON");
  });

  it("DELETE displayname removes it", async () => {
    const u = await registerUser(c);
    expect((await c.delete(profileUrl(u.userId, "displayname"), undefined, { token: u.accessToken })).status).toBe(200);
    expectError(await c.get(profileUrl(u.userId, "displayname")), 404, "M_NOT_FOUND");
  });

  it("needs an access token to change", async () => {
    const u = await registerUser(c);
    expectError(await c.put(profileUrl(u.userId, "displayname"), { displayname: "x" }), 401, "M_MISSING_TOKEN");
    expectError(await c.delete(profileUrl(u.userId, "displayname")), 401, "M_MISSING_TOKEN");
  });
});

describe("custom profile fields", () => {
  it("PUT, GET and DELETE a custom field of any JSON type", async () => {
    const u = await registerUser(c);
    for (const value of ["tester", 42, true, null, ["a", 1], { nested: { ok: true } }]) {
      expect((await c.put(profileUrl(u.userId, "org.example.job"), { "org.example.job": value }, { token: u.accessToken })).status).toBe(200);
      const res = await c.get(profileUrl(u.userId, "org.example.job"));
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ "org.example.job": value });
    }
    expect((await c.get(profileUrl(u.userId))).body).toEqual({ displayname: localpart(u), "org.example.job": { nested: { ok: true } } });
    const del = await c.delete(profileUrl(u.userId, "org.example.job"), undefined, { token: u.accessToken });
    expect(del.status).toBe(200);
    expect(del.body).toEqual({});
    expectError(await c.get(profileUrl(u.userId, "org.example.job")), 404, "M_NOT_FOUND");
    expect((await c.get(profileUrl(u.userId))).body).toEqual({ displayname: localpart(u) });
  });

  it("m.tz", async () => {
    const u = await registerUser(c);
    expect((await c.put(profileUrl(u.userId, "m.tz"), { "m.tz": "Europe/London" }, { token: u.accessToken })).status).toBe(200);
    expect((await c.get(profileUrl(u.userId, "m.tz"))).body).toEqual({ "m.tz": "Europe/London" });
    expect((await c.get(profileUrl(u.userId))).body["m.tz"]).toBe("Europe/London");
    expectError(await c.put(profileUrl(u.userId, "m.tz"), { "m.tz": 5 }, { token: u.accessToken }), 400, "M_BAD_JSON");
  });

  it("an unset custom field → 404 M_NOT_FOUND; deleting it is fine", async () => {
    const u = await registerUser(c);
    expectError(await c.get(profileUrl(u.userId, "org.example.unset")), 404, "M_NOT_FOUND");
    expect((await c.delete(profileUrl(u.userId, "org.example.unset"), undefined, { token: u.accessToken })).status).toBe(200);
  });

  it("an invalid key → 400 M_INVALID_PARAM on GET, PUT and DELETE", async () => {
    const u = await registerUser(c);
    for (const key of ["nodots", "Org.example.upper", "1org.example", "org..example", "org.example.", "org.ex-ample", "org.example job"]) {
      expectError(await c.put(profileUrl(u.userId, key), { [key]: "x" }, { token: u.accessToken }), 400, "M_INVALID_PARAM");
      expectError(await c.get(profileUrl(u.userId, key)), 400, "M_INVALID_PARAM");
      expectError(await c.delete(profileUrl(u.userId, key), undefined, { token: u.accessToken }), 400, "M_INVALID_PARAM");
    }
  });

  it("a key over 255 bytes → 400 M_KEY_TOO_LARGE", async () => {
    const u = await registerUser(c);
    const key = `org.example.${"k".repeat(250)}`;
    expectError(await c.put(profileUrl(u.userId, key), { [key]: "x" }, { token: u.accessToken }), 400, "M_KEY_TOO_LARGE");
    const max = `org.example.${"k".repeat(255 - "org.example.".length)}`;
    expect((await c.put(profileUrl(u.userId, max), { [max]: "x" }, { token: u.accessToken })).status).toBe(200);
  });

  it("a profile over 64 KiB → 400 M_PROFILE_TOO_LARGE, and nothing is stored", async () => {
    const u = await registerUser(c);
    expectError(await c.put(profileUrl(u.userId, "org.example.big"), { "org.example.big": "x".repeat(65 * 1024) }, { token: u.accessToken }), 400, "M_PROFILE_TOO_LARGE");
    expectError(await c.get(profileUrl(u.userId, "org.example.big")), 404, "M_NOT_FOUND");
    // Two fields that fit alone but not together.
    expect((await c.put(profileUrl(u.userId, "org.example.a"), { "org.example.a": "a".repeat(40 * 1024) }, { token: u.accessToken })).status).toBe(200);
    expectError(await c.put(profileUrl(u.userId, "org.example.b"), { "org.example.b": "b".repeat(30 * 1024) }, { token: u.accessToken }), 400, "M_PROFILE_TOO_LARGE");
    // Replacing a field counts its new size, not old plus new.
    expect((await c.put(profileUrl(u.userId, "org.example.a"), { "org.example.a": "c".repeat(50 * 1024) }, { token: u.accessToken })).status).toBe(200);
  });

  it("the body missing the key → 400 M_MISSING_PARAM", async () => {
    const u = await registerUser(c);
    expectError(await c.put(profileUrl(u.userId, "org.example.job"), { "org.example.other": "x" }, { token: u.accessToken }), 400, "M_MISSING_PARAM");
    expectError(await c.put(profileUrl(u.userId, "displayname"), {}, { token: u.accessToken }), 400, "M_MISSING_PARAM");
  });

  it("a non-object body → 400 M_BAD_JSON; unparsable → M_NOT_JSON", async () => {
    const u = await registerUser(c);
    expectError(await c.put(profileUrl(u.userId, "displayname"), ["x"], { token: u.accessToken }), 400, "M_BAD_JSON");
    expectError(await c.put(profileUrl(u.userId, "displayname"), "{nope", { token: u.accessToken }), 400, "M_NOT_JSON");
  });
});

describe("another user's profile", () => {
  it("setting or deleting it → 403 M_FORBIDDEN, and nothing changes", async () => {
    const u = await registerUser(c);
    const other = await registerUser(c);
    expectError(await c.put(profileUrl(other.userId, "displayname"), { displayname: "Hacked" }, { token: u.accessToken }), 403, "M_FORBIDDEN");
    expectError(await c.put(profileUrl(other.userId, "org.example.job"), { "org.example.job": "x" }, { token: u.accessToken }), 403, "M_FORBIDDEN");
    expectError(await c.delete(profileUrl(other.userId, "displayname"), undefined, { token: u.accessToken }), 403, "M_FORBIDDEN");
    expect((await c.get(profileUrl(other.userId))).body).toEqual({ displayname: localpart(other) });
  });

  it("setting a nonexistent user's profile → 403 M_FORBIDDEN", async () => {
    const u = await registerUser(c);
    expectError(await c.put(profileUrl(`@${uniqueName("nobody")}:test.local`, "displayname"), { displayname: "x" }, { token: u.accessToken }), 403, "M_FORBIDDEN");
  });
});

describe("require_auth_for_profile_requests", () => {
  it("then reading a profile needs an access token", async () => {
    const rs = await startTestServer({ config: { require_auth_for_profile_requests: true } });
    try {
      const rc = new Client(rs.baseUrl);
      const u = await registerUser(rc);
      expectError(await rc.get(profileUrl(u.userId)), 401, "M_MISSING_TOKEN");
      expectError(await rc.get(profileUrl(u.userId, "displayname")), 401, "M_MISSING_TOKEN");
      expect((await rc.get(profileUrl(u.userId), { token: u.accessToken })).status).toBe(200);
    } finally {
      await rs.close();
    }
  });
});
