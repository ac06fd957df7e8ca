/** Client config: global and per-room account data. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client, expectError, registerUser, type TestUser } from "../helpers/http.js";
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

const ROOM = "!room:test.local";
const globalUrl = (userId: string, type: string) => `/_matrix/client/v3/user/${encodeURIComponent(userId)}/account_data/${encodeURIComponent(type)}`;
const roomUrl = (userId: string, roomId: string, type: string) =>
  `/_matrix/client/v3/user/${encodeURIComponent(userId)}/rooms/${encodeURIComponent(roomId)}/account_data/${encodeURIComponent(type)}`;

describe("global account data", () => {
  let u: TestUser;
  beforeAll(async () => {
    u = await registerUser(c);
  });

  it("PUT then GET returns the content", async () => {
    const content = { theme: "dark", nested: { list: [1, 2, 3], flag: true }, unicode: "ünïcødé 🎉" };
    const put = await c.put(globalUrl(u.userId, "org.example.settings"), content, { token: u.accessToken });
    expect(put.status).toBe(200);
    expect(put.body).toEqual({});
    const get = await c.get(globalUrl(u.userId, "org.example.settings"), { token: u.accessToken });
    expect(get.status).toBe(200);
    expect(get.body).toEqual(content);
  });

  it("PUT replaces the previous content", async () => {
    await c.put(globalUrl(u.userId, "org.example.replace"), { a: 1, b: 2 }, { token: u.accessToken });
    await c.put(globalUrl(u.userId, "org.example.replace"), { c: 3 }, { token: u.accessToken });
    expect((await c.get(globalUrl(u.userId, "org.example.replace"), { token: u.accessToken })).body).toEqual({ c: 3 });
  });

  it("an empty object is valid content", async () => {
    expect((await c.put(globalUrl(u.userId, "org.example.empty"), {}, { token: u.accessToken })).status).toBe(200);
    expect((await c.get(globalUrl(u.userId, "org.example.empty"), { token: u.accessToken })).body).toEqual({});
  });

  it("an unknown type → 404 M_NOT_FOUND", async () => {
    expectError(await c.get(globalUrl(u.userId, "org.example.never_set"), { token: u.accessToken }), 404, "M_NOT_FOUND");
  });

  it("is served on r0 too", async () => {
    await c.put(globalUrl(u.userId, "org.example.r0"), { r: 0 }, { token: u.accessToken });
    expect((await c.get(globalUrl(u.userId, "org.example.r0").replace("/v3/", "/r0/"), { token: u.accessToken })).body).toEqual({ r: 0 });
  });

  it("m.fully_read and m.push_rules → 405 M_BAD_JSON", async () => {
    expectError(await c.put(globalUrl(u.userId, "m.fully_read"), { event_id: "$x" }, { token: u.accessToken }), 405, "M_BAD_JSON");
    expectError(await c.put(globalUrl(u.userId, "m.push_rules"), { global: {} }, { token: u.accessToken }), 405, "M_BAD_JSON");
  });

  it("a non-object body → 400 M_BAD_JSON; unparsable → 400 M_NOT_JSON", async () => {
    for (const body of [[1, 2], '"text"', "42", "null"]) {
      expectError(await c.put(globalUrl(u.userId, "org.example.bad"), body, { token: u.accessToken }), 400, "M_BAD_JSON");
    }
    expectError(await c.put(globalUrl(u.userId, "org.example.bad"), "{oops", { token: u.accessToken }), 400, "M_NOT_JSON");
    expectError(await c.get(globalUrl(u.userId, "org.example.bad"), { token: u.accessToken }), 404, "M_NOT_FOUND");
  });

  it("needs an access token", async () => {
    expectError(await c.get(globalUrl(u.userId, "org.example.settings")), 401, "M_MISSING_TOKEN");
    expectError(await c.put(globalUrl(u.userId, "org.example.settings"), { a: 1 }), 401, "M_MISSING_TOKEN");
  });
});

describe("per-room account data", () => {
  let u: TestUser;
  beforeAll(async () => {
    u = await registerUser(c);
  });

  it("PUT then GET, kept apart from global data and from other rooms", async () => {
    expect((await c.put(roomUrl(u.userId, ROOM, "org.example.tag"), { room: 1 }, { token: u.accessToken })).status).toBe(200);
    expect((await c.get(roomUrl(u.userId, ROOM, "org.example.tag"), { token: u.accessToken })).body).toEqual({ room: 1 });
    expectError(await c.get(globalUrl(u.userId, "org.example.tag"), { token: u.accessToken }), 404, "M_NOT_FOUND");
    expectError(await c.get(roomUrl(u.userId, "!other:test.local", "org.example.tag"), { token: u.accessToken }), 404, "M_NOT_FOUND");
    await c.put(globalUrl(u.userId, "org.example.tag"), { global: 1 }, { token: u.accessToken });
    expect((await c.get(roomUrl(u.userId, ROOM, "org.example.tag"), { token: u.accessToken })).body).toEqual({ room: 1 });
  });

  it("an unknown type → 404 M_NOT_FOUND", async () => {
    expectError(await c.get(roomUrl(u.userId, ROOM, "org.example.never"), { token: u.accessToken }), 404, "M_NOT_FOUND");
  });

  it("an invalid room id → 400 M_INVALID_PARAM", async () => {
    for (const roomId of ["not-a-room", "#alias:test.local", "!nodomain"]) {
      expectError(await c.put(roomUrl(u.userId, roomId, "org.example.tag"), { a: 1 }, { token: u.accessToken }), 400, "M_INVALID_PARAM");
      expectError(await c.get(roomUrl(u.userId, roomId, "org.example.tag"), { token: u.accessToken }), 400, "M_INVALID_PARAM");
    }
  });

  it("m.fully_read and m.push_rules → 405 M_BAD_JSON", async () => {
    expectError(await c.put(roomUrl(u.userId, ROOM, "m.fully_read"), { event_id: "$x" }, { token: u.accessToken }), 405, "M_BAD_JSON");
    expectError(await c.put(roomUrl(u.userId, ROOM, "m.push_rules"), {}, { token: u.accessToken }), 405, "M_BAD_JSON");
  });

  it("a non-object body → 400 M_BAD_JSON", async () => {
    expectError(await c.put(roomUrl(u.userId, ROOM, "org.example.tag"), [1], { token: u.accessToken }), 400, "M_BAD_JSON");
  });
});

describe("another user's account data", () => {
  it("GET and PUT → 403 M_FORBIDDEN, global and per room", async () => {
    const u = await registerUser(c);
    const other = await registerUser(c);
    await c.put(globalUrl(other.userId, "org.example.secret"), { s: 1 }, { token: other.accessToken });
    await c.put(roomUrl(other.userId, ROOM, "org.example.secret"), { s: 2 }, { token: other.accessToken });
    expectError(await c.get(globalUrl(other.userId, "org.example.secret"), { token: u.accessToken }), 403, "M_FORBIDDEN");
    expectError(await c.put(globalUrl(other.userId, "org.example.secret"), { s: 9 }, { token: u.accessToken }), 403, "M_FORBIDDEN");
    expectError(await c.get(roomUrl(other.userId, ROOM, "org.example.secret"), { token: u.accessToken }), 403, "M_FORBIDDEN");
    expectError(await c.put(roomUrl(other.userId, ROOM, "org.example.secret"), { s: 9 }, { token: u.accessToken }), 403, "M_FORBIDDEN");
    // Also for types that do not exist: no existence oracle.
    expectError(await c.get(globalUrl(other.userId, "org.example.none"), { token: u.accessToken }), 403, "M_FORBIDDEN");
    expect((await c.get(globalUrl(other.userId, "org.example.secret"), { token: other.accessToken })).body).toEqual({ s: 1 });
    expect((await c.get(roomUrl(other.userId, ROOM, "org.example.secret"), { token: other.accessToken })).body).toEqual({ s: 2 });
  });
});
