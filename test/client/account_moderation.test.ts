/**
 * Account moderation (spec "Account moderation", v1.18 admin endpoints): GET/PUT /admin/suspend and /admin/lock for
 * server admins, the m.account_moderation capability, and their effects — a locked account's tokens answer 401
 * M_USER_LOCKED with soft_logout everywhere but /logout; a suspended account reads and syncs but gets 403
 * M_USER_SUSPENDED for what the spec recommends forbidding.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client, expectError, login, registerUser, type TestUser } from "../helpers/http.js";
import { V3, createRoom, enc, inviteUser, joinRoom, nextTxn, send, sync } from "../helpers/rooms.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

const V1 = "/_matrix/client/v1";
let ts: TestServer;
let c: Client;

beforeAll(async () => {
  ts = await startTestServer();
  c = new Client(ts.baseUrl);
});
afterAll(async () => {
  await ts?.close();
});

async function registerAdmin(): Promise<TestUser> {
  const admin = await registerUser(c);
  await ts.server.services.storage.users.setAdmin(admin.userId, true);
  ts.server.services.tokens.invalidateUser(admin.userId);
  return admin;
}

const put = (admin: TestUser, action: "suspend" | "lock", userId: string, body: unknown) => c.put(`${V1}/admin/${action}/${enc(userId)}`, body, { token: admin.accessToken });
const get = (admin: TestUser, action: "suspend" | "lock", userId: string) => c.get(`${V1}/admin/${action}/${enc(userId)}`, { token: admin.accessToken });

describe.each([
  ["suspend", "suspended"],
  ["lock", "locked"],
] as const)("GET/PUT /admin/%s/{userId}", (action, field) => {
  it("an admin sets and reads the flag", async () => {
    const admin = await registerAdmin();
    const u = await registerUser(c);
    expect((await get(admin, action, u.userId)).body).toEqual({ [field]: false });
    const on = await put(admin, action, u.userId, { [field]: true });
    expect(on.status, on.text).toBe(200);
    expect(on.body).toEqual({ [field]: true });
    expect((await get(admin, action, u.userId)).body).toEqual({ [field]: true });
    expect((await put(admin, action, u.userId, { [field]: false })).body).toEqual({ [field]: false });
    expect((await get(admin, action, u.userId)).body).toEqual({ [field]: false });
  });

  it("non-admins get 403 M_FORBIDDEN before any lookup, whether or not the user exists", async () => {
    const u = await registerUser(c);
    const target = await registerUser(c);
    for (const userId of [target.userId, "@nobody:test.local", "@x:elsewhere.example", "garbage"]) {
      expectError(await get(u, action, userId), 403, "M_FORBIDDEN");
      expectError(await put(u, action, userId, { [field]: true }), 403, "M_FORBIDDEN");
    }
    expectError(await c.get(`${V1}/admin/${action}/${enc(target.userId)}`), 401, "M_MISSING_TOKEN");
  });

  it("admin errors: remote user 400 M_INVALID_PARAM, unknown or deactivated user 404 M_NOT_FOUND, another admin or oneself 403", async () => {
    const admin = await registerAdmin();
    const other = await registerAdmin();
    const gone = await registerUser(c);
    await ts.server.services.storage.users.setDeactivated(gone.userId, true);
    expectError(await get(admin, action, "@x:elsewhere.example"), 400, "M_INVALID_PARAM");
    expectError(await put(admin, action, "@x:elsewhere.example", { [field]: true }), 400, "M_INVALID_PARAM");
    expectError(await get(admin, action, "not a user"), 400, "M_INVALID_PARAM");
    expectError(await get(admin, action, "@nobody:test.local"), 404, "M_NOT_FOUND");
    expectError(await put(admin, action, "@nobody:test.local", { [field]: true }), 404, "M_NOT_FOUND");
    expectError(await get(admin, action, gone.userId), 404, "M_NOT_FOUND");
    expectError(await get(admin, action, other.userId), 403, "M_FORBIDDEN");
    expectError(await put(admin, action, other.userId, { [field]: true }), 403, "M_FORBIDDEN");
    // An admin may look at their own account but not change it.
    expect((await get(admin, action, admin.userId)).body).toEqual({ [field]: false });
    expectError(await put(admin, action, admin.userId, { [field]: true }), 403, "M_FORBIDDEN");
  });

  it("the body needs a boolean: 400 M_BAD_JSON otherwise", async () => {
    const admin = await registerAdmin();
    const u = await registerUser(c);
    expectError(await put(admin, action, u.userId, {}), 400, "M_BAD_JSON");
    expectError(await put(admin, action, u.userId, { [field]: "yes" }), 400, "M_BAD_JSON");
    expectError(await put(admin, action, u.userId, "not json"), 400, "M_NOT_JSON");
    expect((await get(admin, action, u.userId)).body).toEqual({ [field]: false });
  });
});

describe("m.account_moderation capability", () => {
  it("is offered to server admins only", async () => {
    const admin = await registerAdmin();
    const u = await registerUser(c);
    const a = await c.get(`${V3}/capabilities`, { token: admin.accessToken });
    expect((a.body.capabilities as Record<string, unknown>)["m.account_moderation"]).toEqual({ suspend: true, lock: true });
    const b = await c.get(`${V3}/capabilities`, { token: u.accessToken });
    expect(b.body.capabilities as Record<string, unknown>).not.toHaveProperty("m.account_moderation");
  });
});

describe("a locked account", () => {
  it("every authenticated endpoint answers 401 M_USER_LOCKED with soft_logout; the token survives and unlocking restores it", async () => {
    const admin = await registerAdmin();
    const u = await registerUser(c);
    await put(admin, "lock", u.userId, { locked: true });
    for (const [method, path, body] of [
      ["GET", `${V3}/account/whoami`, undefined],
      ["GET", `${V3}/sync?timeout=0`, undefined],
      ["POST", `${V3}/createRoom`, {}],
      ["GET", `${V3}/capabilities`, undefined],
      ["PUT", `${V3}/profile/${enc(u.userId)}/displayname`, { displayname: "x" }],
    ] as const) {
      const res = await c.request(method, path, { token: u.accessToken, body });
      const err = expectError(res, 401, "M_USER_LOCKED");
      expect(err.soft_logout, `${method} ${path}`).toBe(true);
    }
    // No new access token either: password login refuses.
    expectError(await login(c, u.userId, u.password), 401, "M_USER_LOCKED");
    await put(admin, "lock", u.userId, { locked: false });
    const whoami = await c.get(`${V3}/account/whoami`, { token: u.accessToken });
    expect(whoami.status, whoami.text).toBe(200);
    expect(whoami.body.user_id).toBe(u.userId);
  });

  it("may still log out (/logout and /logout/all)", async () => {
    const admin = await registerAdmin();
    const u = await registerUser(c);
    const second = await login(c, u.userId, u.password);
    expect(second.status).toBe(200);
    await put(admin, "lock", u.userId, { locked: true });
    expect((await c.post(`${V3}/logout`, {}, { token: u.accessToken })).status).toBe(200);
    await put(admin, "lock", u.userId, { locked: false });
    // The logged-out token is gone; the other session lived through the lock.
    expectError(await c.get(`${V3}/account/whoami`, { token: u.accessToken }), 401, "M_UNKNOWN_TOKEN");
    expect((await c.get(`${V3}/account/whoami`, { token: second.body.access_token as string })).status).toBe(200);
    await put(admin, "lock", u.userId, { locked: true });
    expect((await c.post(`${V3}/logout/all`, {}, { token: second.body.access_token as string })).status).toBe(200);
    await put(admin, "lock", u.userId, { locked: false });
    expectError(await c.get(`${V3}/account/whoami`, { token: second.body.access_token as string }), 401, "M_UNKNOWN_TOKEN");
  });

  it("cannot refresh its access token", async () => {
    const admin = await registerAdmin();
    const u = await registerUser(c);
    const r = await login(c, u.userId, u.password, { refresh_token: true });
    await put(admin, "lock", u.userId, { locked: true });
    const res = await c.post(`${V3}/refresh`, { refresh_token: r.body.refresh_token });
    expect(expectError(res, 401, "M_USER_LOCKED").soft_logout).toBe(true);
  });
});

describe("a suspended account", () => {
  it("can read, sync, leave and redact its own events, but joining, inviting, creating rooms, sending and profile changes are 403 M_USER_SUSPENDED", async () => {
    const admin = await registerAdmin();
    const owner = await registerUser(c);
    const u = await registerUser(c);
    const roomId = await createRoom(c, owner, { preset: "public_chat" });
    const other = await createRoom(c, owner, { preset: "public_chat" });
    const third = await createRoom(c, owner, { preset: "public_chat" });
    await joinRoom(c, u, roomId);
    await joinRoom(c, u, third);
    const mine = await send(c, u, roomId, "mine");
    const theirs = await send(c, owner, roomId, "theirs");
    await inviteUser(c, owner, other, u.userId);
    await put(admin, "suspend", u.userId, { suspended: true });

    // Reading works.
    expect((await c.get(`${V3}/account/whoami`, { token: u.accessToken })).status).toBe(200);
    const s = await sync(c, u);
    expect(Object.keys(s.rooms.join ?? {})).toContain(roomId);
    expect((await c.get(`${V3}/rooms/${enc(roomId)}/messages?dir=b`, { token: u.accessToken })).status).toBe(200);
    // Logging in again works (the new session is suspended too).
    const again = await login(c, u.userId, u.password);
    expect(again.status, again.text).toBe(200);

    const tok = { token: u.accessToken };
    const forbiddenActions: [string, string, unknown][] = [
      ["PUT", `${V3}/rooms/${enc(roomId)}/send/m.room.message/${nextTxn()}`, { msgtype: "m.text", body: "hi" }],
      ["POST", `${V3}/rooms/${enc(roomId)}/send/m.room.message`, { msgtype: "m.text", body: "hi" }],
      ["PUT", `${V3}/rooms/${enc(roomId)}/state/m.room.topic/`, { topic: "x" }],
      ["POST", `${V3}/createRoom`, {}],
      ["POST", `${V3}/join/${enc(other)}`, {}],
      ["POST", `${V3}/rooms/${enc(other)}/join`, {}],
      ["POST", `${V3}/knock/${enc(other)}`, {}],
      ["POST", `${V3}/rooms/${enc(roomId)}/invite`, { user_id: owner.userId }],
      ["PUT", `${V3}/profile/${enc(u.userId)}/displayname`, { displayname: "new" }],
      ["DELETE", `${V3}/profile/${enc(u.userId)}/avatar_url`, undefined],
      ["POST", `${V3}/rooms/${enc(roomId)}/redact/${enc(theirs)}`, {}],
      ["POST", `${V3}/rooms/${enc(roomId)}/upgrade`, { new_version: "10" }],
    ];
    for (const [method, path, body] of forbiddenActions) expectError(await c.request(method, path, { ...tok, body }), 403, "M_USER_SUSPENDED");
    // Media uploads too, as Synapse (direct, and the asynchronous /create).
    const upload = await fetch(`${ts.baseUrl}/_matrix/media/v3/upload?filename=a.txt`, { method: "POST", headers: { authorization: `Bearer ${u.accessToken}`, "content-type": "text/plain" }, body: "hello" });
    expect(upload.status).toBe(403);
    expect(((await upload.json()) as { errcode: string }).errcode).toBe("M_USER_SUSPENDED");
    expectError(await c.post(`/_matrix/media/v1/create`, {}, tok), 403, "M_USER_SUSPENDED");

    // Redacting one's own event and leaving (also rejecting an invite) stay allowed.
    const red = await c.post(`${V3}/rooms/${enc(roomId)}/redact/${enc(mine)}`, {}, tok);
    expect(red.status, red.text).toBe(200);
    expect((await c.post(`${V3}/rooms/${enc(other)}/leave`, {}, tok)).status).toBe(200);
    expect((await c.post(`${V3}/rooms/${enc(third)}/leave`, {}, tok)).status).toBe(200);

    // Unsuspending restores everything.
    await put(admin, "suspend", u.userId, { suspended: false });
    expect((await c.put(`${V3}/rooms/${enc(roomId)}/send/m.room.message/${nextTxn()}`, { msgtype: "m.text", body: "back" }, tok)).status).toBe(200);
    expect((await c.put(`${V3}/profile/${enc(u.userId)}/displayname`, { displayname: "new" }, tok)).status).toBe(200);
    expect((await c.post(`${V3}/join/${enc(third)}`, {}, tok)).status).toBe(200);
  });

  it("assertNotSuspended is the service check other features call (e.g. media upload)", async () => {
    const admin = await registerAdmin();
    const u = await registerUser(c);
    const mod = ts.server.services.accountModeration;
    await expect(mod.assertNotSuspended(u.userId)).resolves.toBeUndefined();
    await put(admin, "suspend", u.userId, { suspended: true });
    await expect(mod.assertNotSuspended(u.userId)).rejects.toMatchObject({ status: 403, errcode: "M_USER_SUSPENDED" });
  });
});
