/**
 * Send-to-device messaging over HTTP (spec "Send-to-Device messaging"): PUT /sendToDevice to devices of one user and
 * of others, `*`, idempotent transaction ids (also across a restart), delivery in /sync with acknowledgement by the
 * next sync, paging of large backlogs, long-poll wake-up, deletion with the device, and bad bodies. Also local
 * device-list changes in /sync's `device_lists`.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client, expectError, login, registerUser, type TestUser } from "../helpers/http.js";
import { V3, enc, nextTxn, roomWith, sync, syncUntil, type SyncResponse } from "../helpers/rooms.js";
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

interface ToDeviceEvent {
  sender: string;
  type: string;
  content: Record<string, unknown>;
}

const events = (s: SyncResponse) => s.to_device.events as ToDeviceEvent[];

async function sendToDevice(from: TestUser, messages: Record<string, Record<string, unknown>>, opts: { type?: string; txnId?: string; client?: Client } = {}) {
  return (opts.client ?? c).put(`${V3}/sendToDevice/${enc(opts.type ?? "m.test")}/${enc(opts.txnId ?? nextTxn())}`, { messages }, { token: from.accessToken });
}

/** A second device (session) of a user. */
async function secondDevice(u: TestUser, client = c): Promise<TestUser> {
  const r = await login(client, u.userId, u.password);
  expect(r.status, r.text).toBe(200);
  return { ...u, accessToken: r.body.access_token as string, deviceId: r.body.device_id as string };
}

describe("sendToDevice", () => {
  it("delivers to another device of the same user, not to the sender's", async () => {
    const a1 = await registerUser(c);
    const a2 = await secondDevice(a1);
    const s1 = (await sync(c, a1)).next_batch;
    const s2 = (await sync(c, a2)).next_batch;
    const r = await sendToDevice(a1, { [a1.userId]: { [a2.deviceId]: { hello: "self" } } }, { type: "m.room_key_request" });
    expect(r.status, r.text).toBe(200);
    expect(r.body).toEqual({});
    const got = await sync(c, a2, { since: s2 });
    expect(events(got)).toEqual([{ sender: a1.userId, type: "m.room_key_request", content: { hello: "self" } }]);
    expect(events(await sync(c, a1, { since: s1 }))).toEqual([]);
  });

  it("delivers to another user's device, and `*` to all of their devices", async () => {
    const alice = await registerUser(c);
    const b1 = await registerUser(c);
    const b2 = await secondDevice(b1);
    const since1 = (await sync(c, b1)).next_batch;
    const since2 = (await sync(c, b2)).next_batch;
    expect((await sendToDevice(alice, { [b1.userId]: { [b1.deviceId]: { n: 1 } } })).status).toBe(200);
    expect((await sendToDevice(alice, { [b1.userId]: { "*": { n: 2 } } })).status).toBe(200);
    const r1 = await sync(c, b1, { since: since1 });
    const r2 = await sync(c, b2, { since: since2 });
    expect(events(r1).map((e) => e.content)).toEqual([{ n: 1 }, { n: 2 }]);
    expect(events(r2).map((e) => e.content)).toEqual([{ n: 2 }]);
    expect(events(r1)[0]!.sender).toBe(alice.userId);
    // An unknown device gets nothing (and is no error).
    expect((await sendToDevice(alice, { [b1.userId]: { NOSUCHDEVICE: { n: 3 } } })).status).toBe(200);
    expect(events(await sync(c, b1, { since: r1.next_batch }))).toEqual([]);
  });

  it("a message naming a device wins over `*` for that device (one message per device per transaction)", async () => {
    const alice = await registerUser(c);
    const b1 = await registerUser(c);
    const b2 = await secondDevice(b1);
    await sendToDevice(alice, { [b1.userId]: { "*": { to: "all" }, [b2.deviceId]: { to: "b2" } } });
    expect(events(await sync(c, b1)).map((e) => e.content)).toEqual([{ to: "all" }]);
    expect(events(await sync(c, b2)).map((e) => e.content)).toEqual([{ to: "b2" }]);
  });

  it("is idempotent per device and transaction id", async () => {
    const alice = await registerUser(c);
    const bob = await registerUser(c);
    const since = (await sync(c, bob)).next_batch;
    const txnId = nextTxn();
    for (let i = 0; i < 3; i++) expect((await sendToDevice(alice, { [bob.userId]: { "*": { once: true } } }, { txnId })).status).toBe(200);
    // The same transaction id from another device of the sender is another transaction.
    const alice2 = await secondDevice(alice);
    expect((await sendToDevice(alice2, { [bob.userId]: { "*": { once: false } } }, { txnId })).status).toBe(200);
    const got = await sync(c, bob, { since });
    expect(events(got).map((e) => e.content)).toEqual([{ once: true }, { once: false }]);
  });

  it("keeps messages until the client syncs past them, then deletes them", async () => {
    const alice = await registerUser(c);
    const bob = await registerUser(c);
    const since = (await sync(c, bob)).next_batch;
    await sendToDevice(alice, { [bob.userId]: { [bob.deviceId]: { keep: 1 } } });
    const first = await sync(c, bob, { since });
    expect(events(first)).toHaveLength(1);
    // The response was lost: the same token gets the message again.
    const again = await sync(c, bob, { since });
    expect(events(again).map((e) => e.content)).toEqual([{ keep: 1 }]);
    // Syncing with the next token acknowledges it: it is gone from the store.
    const next = await sync(c, bob, { since: first.next_batch });
    expect(events(next)).toEqual([]);
    const left = await ts.server.services.storage.deviceInbox.since(bob.userId, bob.deviceId, 0, Number.MAX_SAFE_INTEGER, 10);
    expect(left).toEqual([]);
    // An initial sync after that has nothing either.
    expect(events(await sync(c, bob))).toEqual([]);
  });

  it("pages a large backlog, 100 messages per sync, in order", async () => {
    const alice = await registerUser(c);
    const bob = await registerUser(c);
    let since = (await sync(c, bob)).next_batch;
    for (let i = 0; i < 130; i++) await sendToDevice(alice, { [bob.userId]: { [bob.deviceId]: { i } } });
    const seen: number[] = [];
    const sizes: number[] = [];
    for (let round = 0; round < 4; round++) {
      const s = await sync(c, bob, { since });
      sizes.push(events(s).length);
      seen.push(...events(s).map((e) => e.content.i as number));
      since = s.next_batch;
    }
    expect(sizes).toEqual([100, 30, 0, 0]);
    expect(seen).toEqual(Array.from({ length: 130 }, (_, i) => i));
  });

  it("wakes a waiting long-poll /sync", async () => {
    const alice = await registerUser(c);
    const bob = await registerUser(c);
    const since = (await sync(c, bob)).next_batch;
    const started = Date.now();
    const waiting = sync(c, bob, { since, timeout: 20_000 });
    await new Promise((r) => setTimeout(r, 300));
    await sendToDevice(alice, { [bob.userId]: { "*": { wake: true } } });
    const s = await waiting;
    expect(events(s).map((e) => e.content)).toEqual([{ wake: true }]);
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it("deleting a device deletes its inbox", async () => {
    const alice = await registerUser(c);
    const b1 = await registerUser(c);
    const b2 = await secondDevice(b1);
    await sendToDevice(alice, { [b1.userId]: { "*": { doomed: true } } });
    const logout = await c.post(`${V3}/logout`, {}, { token: b2.accessToken });
    expect(logout.status, logout.text).toBe(200);
    const inbox = ts.server.services.storage.deviceInbox;
    expect(await inbox.since(b1.userId, b2.deviceId, 0, Number.MAX_SAFE_INTEGER, 10)).toEqual([]);
    expect(await inbox.since(b1.userId, b1.deviceId, 0, Number.MAX_SAFE_INTEGER, 10)).toHaveLength(1);
  });

  it("rejects bad bodies with Matrix errors", async () => {
    const alice = await registerUser(c);
    const put = (body: unknown) => c.put(`${V3}/sendToDevice/m.test/${nextTxn()}`, body, { token: alice.accessToken });
    expectError(await put({}), 400, "M_BAD_JSON");
    expectError(await put({ messages: [] }), 400, "M_BAD_JSON");
    expectError(await put({ messages: "x" }), 400, "M_BAD_JSON");
    expectError(await put({ messages: { [alice.userId]: ["x"] } }), 400, "M_BAD_JSON");
    expectError(await put({ messages: { [alice.userId]: { DEV: "not an object" } } }), 400, "M_BAD_JSON");
    expectError(await put({ messages: { "not-a-user": { DEV: {} } } }), 400, "M_INVALID_PARAM");
    expectError(await put([1, 2]), 400, "M_BAD_JSON");
    const notJson = await c.request("PUT", `${V3}/sendToDevice/m.test/${nextTxn()}`, { token: alice.accessToken, body: "{nope", headers: { "content-type": "application/json" } });
    expect(notJson.status).toBe(400);
    expect(String(notJson.body?.errcode)).toMatch(/^M_(NOT_JSON|BAD_JSON)$/);
    expectError(await c.put(`${V3}/sendToDevice/m.test/${nextTxn()}`, { messages: {} }), 401, "M_MISSING_TOKEN");
    // An empty map is fine (nothing to send); the r0 path works too.
    expect((await put({ messages: {} })).status).toBe(200);
    expect((await c.put(`/_matrix/client/r0/sendToDevice/m.test/${nextTxn()}`, { messages: {} }, { token: alice.accessToken })).status).toBe(200);
  });
});

describe("device_lists in /sync for local device changes", () => {
  it("a new login shows the user as changed to room-mates and to the user's other devices", async () => {
    const alice = await registerUser(c);
    const bob = await registerUser(c);
    const stranger = await registerUser(c);
    await roomWith(c, alice, [bob]);
    const bobSince = (await sync(c, bob)).next_batch;
    const aliceSince = (await sync(c, alice)).next_batch;
    const strangerSince = (await sync(c, stranger)).next_batch;
    // A waiting /sync wakes for it (syncUntil long-polls).
    const waiting = syncUntil(c, bob, bobSince, (r) => r.device_lists.changed.includes(alice.userId));
    await new Promise((r) => setTimeout(r, 200));
    await secondDevice(alice);
    const s = await waiting;
    const own = await syncUntil(c, alice, aliceSince, (r) => r.device_lists.changed.includes(alice.userId));
    expect(own.device_lists.changed).toContain(alice.userId);
    // Someone sharing no room with alice hears nothing.
    expect((await sync(c, stranger, { since: strangerSince })).device_lists.changed).not.toContain(alice.userId);
    // Renaming and deleting a device are changes too.
    const after = (await sync(c, bob, { since: s.next_batch })).next_batch;
    expect((await c.put(`${V3}/devices/${enc(alice.deviceId)}`, { display_name: "phone" }, { token: alice.accessToken })).status).toBe(200);
    expect((await syncUntil(c, bob, after, (r) => r.device_lists.changed.includes(alice.userId))).device_lists.changed).toContain(alice.userId);
  });

  it("a room-mate who leaves the last shared room is in `left`", async () => {
    const alice = await registerUser(c);
    const bob = await registerUser(c);
    const roomId = await roomWith(c, alice, [bob]);
    const since = (await sync(c, alice)).next_batch;
    expect((await c.post(`${V3}/rooms/${enc(roomId)}/leave`, {}, { token: bob.accessToken })).status).toBe(200);
    const s = await syncUntil(c, alice, since, (r) => r.device_lists.left.includes(bob.userId));
    expect(s.device_lists.changed).not.toContain(bob.userId);
  });
});

describe("across a restart", () => {
  it("a retried transaction id sends nothing twice, and pending messages stay", async () => {
    const alice = await registerUser(c);
    const bob = await registerUser(c);
    const since = (await sync(c, bob)).next_batch;
    const txnId = nextTxn();
    expect((await sendToDevice(alice, { [bob.userId]: { "*": { n: 1 } } }, { txnId })).status).toBe(200);
    ts = await ts.restart();
    c = new Client(ts.baseUrl);
    expect((await sendToDevice(alice, { [bob.userId]: { "*": { n: 1 } } }, { txnId })).status).toBe(200);
    const first = await sync(c, bob, { since });
    expect(events(first).map((e) => e.content)).toEqual([{ n: 1 }]);
    // Acknowledged, then restarted: new messages get ids above every token handed out, so none is skipped.
    await sync(c, bob, { since: first.next_batch });
    ts = await ts.restart();
    c = new Client(ts.baseUrl);
    expect((await sendToDevice(alice, { [bob.userId]: { "*": { n: 2 } } })).status).toBe(200);
    expect(events(await sync(c, bob, { since: first.next_batch })).map((e) => e.content)).toEqual([{ n: 2 }]);
  });
});
