/**
 * Reporting content (spec "Reporting content"): events (reporter joined and able to see the event), rooms (v1.13)
 * and users (v1.14); each report stored for admins; answers that reveal no more than the spec allows; rc_reports.
 */
import * as sdk from "matrix-js-sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client, expectError, registerUser, type TestUser } from "../helpers/http.js";
import { V3, createRoom, enc, joinRoom, leaveRoom, send } from "../helpers/rooms.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

let ts: TestServer;
let c: Client;

beforeAll(async () => {
  // A small rc_reports bucket that does not refill within the test, to see the 429.
  ts = await startTestServer({ config: { rc_reports: { per_second: 0.001, burst_count: 3 } } });
  c = new Client(ts.baseUrl);
});
afterAll(async () => {
  await ts?.close();
});

const reports = () => ts.server.services.storage.reports;

async function roomWithMessage(): Promise<{ owner: TestUser; member: TestUser; roomId: string; eventId: string }> {
  const owner = await registerUser(c);
  const member = await registerUser(c);
  const roomId = await createRoom(c, owner, { preset: "public_chat" });
  await joinRoom(c, member, roomId);
  const eventId = await send(c, owner, roomId, "something rude");
  return { owner, member, roomId, eventId };
}

describe("POST /rooms/{roomId}/report/{eventId}", () => {
  it("a joined member reports an event: 200 {} and the report is stored with the whole body", async () => {
    const { member, roomId, eventId } = await roomWithMessage();
    const res = await c.post(`${V3}/rooms/${enc(roomId)}/report/${enc(eventId)}`, { reason: "spam", score: -100 }, { token: member.accessToken });
    expect(res.status, res.text).toBe(200);
    expect(res.body).toEqual({});
    const stored = await reports().eventReports(roomId);
    expect(stored).toHaveLength(1);
    expect(stored[0]).toMatchObject({ room_id: roomId, event_id: eventId, user_id: member.userId, reason: "spam" });
    expect(JSON.parse(stored[0]!.content)).toEqual({ reason: "spam", score: -100 });
    // Both fields are optional (score was removed in v1.18).
    expect((await c.post(`${V3}/rooms/${enc(roomId)}/report/${enc(eventId)}`, {}, { token: member.accessToken })).status).toBe(200);
    expect((await reports().eventReports(roomId))[1]!.reason).toBeNull();
  });

  it("wrong types are 400 M_BAD_JSON (as Synapse), a score outside -100..0 is 400 M_INVALID_PARAM", async () => {
    const { member, roomId, eventId } = await roomWithMessage();
    const path = `${V3}/rooms/${enc(roomId)}/report/${enc(eventId)}`;
    expectError(await c.post(path, { reason: 5 }, { token: member.accessToken }), 400, "M_BAD_JSON");
    expectError(await c.post(path, { score: "bad" }, { token: member.accessToken }), 400, "M_BAD_JSON");
    expectError(await c.post(path, { score: -1.5 }, { token: member.accessToken }), 400, "M_BAD_JSON");
    expectError(await c.post(path, { score: 1 }, { token: member.accessToken }), 400, "M_INVALID_PARAM");
    expectError(await c.post(path, { score: -101 }, { token: member.accessToken }), 400, "M_INVALID_PARAM");
    expectError(await c.post(path, "[]", { token: member.accessToken }), 400, "M_BAD_JSON");
    expectError(await c.post(`${V3}/rooms/not-a-room/report/${enc(eventId)}`, {}, { token: member.accessToken }), 400, "M_INVALID_PARAM");
    expectError(await c.post(path, {}), 401, "M_MISSING_TOKEN");
    expect(await reports().eventReports(roomId)).toHaveLength(0);
  });

  it("the same 404 for an unknown event, an unknown room, another room's event, a redacted event, or a reporter not joined", async () => {
    const { owner, member, roomId, eventId } = await roomWithMessage();
    const outsider = await registerUser(c);
    const other = await createRoom(c, owner);
    const otherEvent = await send(c, owner, other, "elsewhere");
    const cases: [string, string, TestUser][] = [
      [roomId, "$nosuchevent", member],
      ["!nosuchroom:test.local", eventId, member],
      [roomId, otherEvent, member],
      [roomId, eventId, outsider],
    ];
    const messages = new Set<string>();
    for (const [r, e, u] of cases) messages.add(expectError(await c.post(`${V3}/rooms/${enc(r)}/report/${enc(e)}`, { reason: "x" }, { token: u.accessToken }), 404, "M_NOT_FOUND").error as string);
    // A member who left can no longer report (the spec: "The caller must be joined to the room").
    await leaveRoom(c, member, roomId);
    messages.add(expectError(await c.post(`${V3}/rooms/${enc(roomId)}/report/${enc(eventId)}`, {}, { token: member.accessToken }), 404, "M_NOT_FOUND").error as string);
    // A redacted event (the spec allows 404 here too).
    const redacted = await send(c, owner, roomId, "to be redacted");
    const red = await c.post(`${V3}/rooms/${enc(roomId)}/redact/${enc(redacted)}`, {}, { token: owner.accessToken });
    expect(red.status, red.text).toBe(200);
    messages.add(expectError(await c.post(`${V3}/rooms/${enc(roomId)}/report/${enc(redacted)}`, {}, { token: owner.accessToken }), 404, "M_NOT_FOUND").error as string);
    // One message for every case: nothing tells them apart.
    expect(messages.size).toBe(1);
    expect(await reports().eventReports(roomId)).toHaveLength(0);
  });

  it("an event from before the reporter joined, in a room whose history is for joined members only, is not theirs to report", async () => {
    const owner = await registerUser(c);
    const late = await registerUser(c);
    const roomId = await createRoom(c, owner, { preset: "public_chat", initial_state: [{ type: "m.room.history_visibility", state_key: "", content: { history_visibility: "joined" } }] });
    const before = await send(c, owner, roomId, "before you came");
    await joinRoom(c, late, roomId);
    expectError(await c.post(`${V3}/rooms/${enc(roomId)}/report/${enc(before)}`, {}, { token: late.accessToken }), 404, "M_NOT_FOUND");
    const after = await send(c, owner, roomId, "after you came");
    expect((await c.post(`${V3}/rooms/${enc(roomId)}/report/${enc(after)}`, {}, { token: late.accessToken })).status).toBe(200);
  });

  it("through matrix-js-sdk: client.reportEvent", async () => {
    const { member, roomId, eventId } = await roomWithMessage();
    const client = sdk.createClient({ baseUrl: ts.baseUrl, accessToken: member.accessToken, userId: member.userId, logger: quietLogger });
    await client.reportEvent(roomId, eventId, -50, "offensive");
    expect((await reports().eventReports(roomId)).map((r) => r.reason)).toEqual(["offensive"]);
    const err = await client.reportEvent(roomId, "$missing", -50, "x").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(sdk.MatrixError);
    expect((err as sdk.MatrixError).errcode).toBe("M_NOT_FOUND");
  });
});

describe("POST /rooms/{roomId}/report", () => {
  it("anyone may report a room they are not in; the report is stored", async () => {
    const owner = await registerUser(c);
    const reporter = await registerUser(c);
    const roomId = await createRoom(c, owner);
    const res = await c.post(`${V3}/rooms/${enc(roomId)}/report`, { reason: "" }, { token: reporter.accessToken });
    expect(res.status, res.text).toBe(200);
    expect(res.body).toEqual({});
    expect(await reports().roomReports(roomId)).toMatchObject([{ room_id: roomId, user_id: reporter.userId, reason: "" }]);
  });

  it("reason is required and a string (400 M_BAD_JSON); an unknown room is 404 M_NOT_FOUND; a bad room ID 400", async () => {
    const u = await registerUser(c);
    const owner = await registerUser(c);
    const roomId = await createRoom(c, owner);
    expectError(await c.post(`${V3}/rooms/${enc(roomId)}/report`, {}, { token: u.accessToken }), 400, "M_BAD_JSON");
    expectError(await c.post(`${V3}/rooms/${enc(roomId)}/report`, { reason: null }, { token: u.accessToken }), 400, "M_BAD_JSON");
    expectError(await c.post(`${V3}/rooms/${enc("!nope:test.local")}/report`, { reason: "x" }, { token: u.accessToken }), 404, "M_NOT_FOUND");
    expectError(await c.post(`${V3}/rooms/nope/report`, { reason: "x" }, { token: u.accessToken }), 400, "M_INVALID_PARAM");
  });

  it("rc_reports limits each reporter: 429 M_LIMIT_EXCEEDED with retry_after_ms once the bucket is full", async () => {
    const owner = await registerUser(c);
    const u = await registerUser(c);
    const roomId = await createRoom(c, owner);
    for (let i = 0; i < 3; i++) expect((await c.post(`${V3}/rooms/${enc(roomId)}/report`, { reason: `r${i}` }, { token: u.accessToken })).status).toBe(200);
    const body = expectError(await c.post(`${V3}/rooms/${enc(roomId)}/report`, { reason: "again" }, { token: u.accessToken }), 429, "M_LIMIT_EXCEEDED");
    expect(body.retry_after_ms).toEqual(expect.any(Number));
    // User reports share the reporter's bucket; another reporter has their own.
    expectError(await c.post(`${V3}/users/${enc(owner.userId)}/report`, { reason: "x" }, { token: u.accessToken }), 429, "M_LIMIT_EXCEEDED");
    expect((await c.post(`${V3}/rooms/${enc(roomId)}/report`, { reason: "mine" }, { token: owner.accessToken })).status).toBe(200);
    expect(await reports().roomReports(roomId)).toHaveLength(4);
  });
});

describe("POST /users/{userId}/report", () => {
  it("a local user's report is stored; unknown and remote users get the same 200 and nothing is stored", async () => {
    const reporter = await registerUser(c);
    const target = await registerUser(c);
    for (const userId of [target.userId, "@nobody_here:test.local", "@someone:elsewhere.example"]) {
      const res = await c.post(`${V3}/users/${enc(userId)}/report`, { reason: "harassment" }, { token: reporter.accessToken });
      expect(res.status, `${userId}: ${res.text}`).toBe(200);
      expect(res.body).toEqual({});
    }
    expect(await reports().userReports(target.userId)).toMatchObject([{ target_user_id: target.userId, user_id: reporter.userId, reason: "harassment" }]);
    expect(await reports().userReports("@nobody_here:test.local")).toEqual([]);
    expect(await reports().userReports("@someone:elsewhere.example")).toEqual([]);
  });

  it("bad input: a missing or non-string reason or one over 1000 characters is 400 M_BAD_JSON; a bad user ID 400 M_INVALID_PARAM", async () => {
    const target = await registerUser(c);
    const path = `${V3}/users/${enc(target.userId)}/report`;
    // Each reporter's rc_reports bucket holds three.
    const r1 = await registerUser(c);
    expectError(await c.post(path, {}, { token: r1.accessToken }), 400, "M_BAD_JSON");
    expectError(await c.post(path, { reason: ["x"] }, { token: r1.accessToken }), 400, "M_BAD_JSON");
    expectError(await c.post(path, { reason: "x".repeat(1001) }, { token: r1.accessToken }), 400, "M_BAD_JSON");
    const r2 = await registerUser(c);
    expectError(await c.post(`${V3}/users/not-a-user/report`, { reason: "x" }, { token: r2.accessToken }), 400, "M_INVALID_PARAM");
    expectError(await c.post(path, { reason: "x" }), 401, "M_MISSING_TOKEN");
    expect(await reports().userReports(target.userId)).toEqual([]);
  });
});

const quietLogger: NonNullable<sdk.ICreateClientOpts["logger"]> = {
  trace: () => {},
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: (...msg: unknown[]) => console.error(...msg),
  getChild: () => quietLogger,
};
