// Synapse's federation admin API: the backoff state of each destination, the rooms shared with it, and resetting
// a backed-off connection (GET/POST /_synapse/admin/v1/federation/destinations...).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startServerPair } from "../helpers/federation.js";
import { closeFederatedServers } from "../helpers/federation_close.js";
import { Client, expectError, registerUser, type TestUser } from "../helpers/http.js";
import { createRoom, enc, poll, send, V3 } from "../helpers/rooms.js";
import type { TestServer } from "../helpers/server.js";

const BASE = "/_synapse/admin/v1/federation/destinations";
let hs1: TestServer;
let hs2: TestServer;
let c1: Client;
let c2: Client;
let admin: TestUser;
let alice: TestUser;
let bob: TestUser;
let roomId: string;

beforeAll(async () => {
  ({ hs1, hs2, c1, c2 } = await startServerPair());
  admin = await registerUser(c1);
  await hs1.server.services.storage.users.setAdmin(admin.userId, true);
  alice = await registerUser(c1);
  bob = await registerUser(c2);
  roomId = await createRoom(c1, alice, { preset: "public_chat" });
  const join = await c2.post(`${V3}/join/${enc(roomId)}?via=hs1.test`, {}, { token: bob.accessToken });
  expect(join.status, join.text).toBe(200);
  // A destination is known once something has been sent to it.
  await send(c1, alice, roomId, "hello hs2");
  await poll(async () => (hs1.server.services.federationSender.status().some((d) => d.destination === "hs2.test" && d.lastSuccessfulStreamOrdering > 0) ? true : undefined));
});
afterAll(async () => {
  await closeFederatedServers([hs1, hs2]);
});

describe("federation destinations admin API", () => {
  it("needs a server admin", async () => {
    expectError(await c1.get(BASE), 401, "M_MISSING_TOKEN");
    expectError(await c1.get(BASE, { token: alice.accessToken }), 403, "M_FORBIDDEN");
    expectError(await c1.get(`${BASE}/hs2.test`, { token: alice.accessToken }), 403, "M_FORBIDDEN");
    expectError(await c1.post(`${BASE}/hs2.test/reset_connection`, {}, { token: alice.accessToken }), 403, "M_FORBIDDEN");
  });

  it("lists destinations and shows one, with the rooms shared with it", async () => {
    const list = await c1.get(BASE, { token: admin.accessToken });
    expect(list.status, list.text).toBe(200);
    const hs2Entry = (list.body.destinations as { destination: string }[]).find((d) => d.destination === "hs2.test");
    expect(hs2Entry).toMatchObject({ destination: "hs2.test", retry_interval: 0, failure_ts: null });
    expect(list.body.total).toBe((list.body.destinations as unknown[]).length);

    const one = await c1.get(`${BASE}/hs2.test`, { token: admin.accessToken });
    expect(one.status, one.text).toBe(200);
    expect(Object.keys(one.body).sort()).toEqual(["destination", "failure_ts", "last_successful_stream_ordering", "retry_interval", "retry_last_ts"]);

    const rooms = await c1.get(`${BASE}/hs2.test/rooms`, { token: admin.accessToken });
    expect(rooms.status, rooms.text).toBe(200);
    expect((rooms.body.rooms as { room_id: string }[]).map((r) => r.room_id)).toContain(roomId);
    expect(rooms.body.total).toBeGreaterThanOrEqual(1);

    expectError(await c1.get(`${BASE}/nowhere.test`, { token: admin.accessToken }), 404, "M_NOT_FOUND");
    expectError(await c1.get(`${BASE}/nowhere.test/rooms`, { token: admin.accessToken }), 404, "M_NOT_FOUND");
  });

  it("validates paging and ordering as Synapse does", async () => {
    expectError(await c1.get(`${BASE}?order_by=nonsense`, { token: admin.accessToken }), 400, "M_INVALID_PARAM");
    expectError(await c1.get(`${BASE}?dir=x`, { token: admin.accessToken }), 400, "M_INVALID_PARAM");
    expectError(await c1.get(`${BASE}?from=-1`, { token: admin.accessToken }), 400, "M_INVALID_PARAM");
    expectError(await c1.get(`${BASE}?limit=abc`, { token: admin.accessToken }), 400, "M_INVALID_PARAM");
    const empty = await c1.get(`${BASE}?destination=no-such-name`, { token: admin.accessToken });
    expect(empty.body).toEqual({ destinations: [], total: 0 });
    const none = await c1.get(`${BASE}?limit=0`, { token: admin.accessToken });
    expect(none.body.destinations).toEqual([]);
    expect(none.body.next_token).toBe("0");
  });

  it("shows the backoff of a destination that is down, and reset_connection retries it", async () => {
    expectError(await c1.post(`${BASE}/hs2.test/reset_connection`, {}, { token: admin.accessToken }), 400, "M_UNKNOWN");
    await hs2.stop();
    await send(c1, alice, roomId, "while hs2 is down");
    const backedOff = await poll(async () => {
      const d = (await c1.get(`${BASE}/hs2.test`, { token: admin.accessToken })).body;
      return (d.retry_interval as number) > 0 ? d : undefined;
    });
    expect(backedOff.failure_ts).toEqual(expect.any(Number));
    expect(backedOff.retry_last_ts).toBeGreaterThan(0);
    const reset = await c1.post(`${BASE}/hs2.test/reset_connection`, {}, { token: admin.accessToken });
    expect(reset.status, reset.text).toBe(200);
    expect(reset.body).toEqual({});
    expectError(await c1.post(`${BASE}/nowhere.test/reset_connection`, {}, { token: admin.accessToken }), 404, "M_NOT_FOUND");
  });
});
