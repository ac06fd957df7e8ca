/**
 * Gaps in a room's DAG (server-server API, "Backfilling and retrieving missing events"), with hs1 (Myelin) receiving
 * from hs2.test, a real Myelin behind a FederationProxy that answers hs1's get_missing_events, state_ids, event and
 * backfill requests as a test scripts them; the PDUs are forged as hs2 with its real key:
 *  - an event pushed to hs1 whose prev events hs2 then withholds is dropped, and the state at the gap is not asked
 *    for (as Synapse: a pushed event could become the room's only extremity, its state the sender's word);
 *  - the state across a gap (for an event get_missing_events returned) leaves out what the auth rules rejected: a
 *    made-up power-levels event cannot take over the room;
 *  - a prev event in another room is no part of this room's history: the state at it is asked for, never borrowed;
 *  - paging back from a /sync timeline whose oldest event has a gap under it backfills the gap.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { authEventTypesFor } from "../../src/core/events/auth_events.js";
import { stateMapKey } from "../../src/core/events/event.js";
import { signNewEvent } from "../../src/core/events/signing.js";
import type { JsonObject } from "../../src/core/json/types.js";
import { FederationProxy, type ProxiedRequest, type ProxyAnswer } from "../helpers/fed_proxy.js";
import { startFederatedServer, TestNetwork } from "../helpers/federation.js";
import { closeFederatedServers } from "../helpers/federation_close.js";
import { Client, registerUser, type TestUser } from "../helpers/http.js";
import { createRoom, enc, poll, send, sync, V3 } from "../helpers/rooms.js";
import type { TestServer } from "../helpers/server.js";

let hs1: TestServer;
let hs2: TestServer;
let proxy: FederationProxy;
let c1: Client;
let c2: Client;
let alice: TestUser;
let bob: TestUser;
let txn = 0;

beforeAll(async () => {
  const network = new TestNetwork();
  hs1 = await startFederatedServer(network, "hs1.test");
  hs2 = await startFederatedServer(network, "hs2.test");
  proxy = await new FederationProxy(hs2.tlsPort!).start(network, "hs2.test");
  c1 = new Client(hs1.baseUrl);
  c2 = new Client(hs2.baseUrl);
  alice = await registerUser(c1);
  bob = await registerUser(c2);
});
afterAll(async () => {
  await closeFederatedServers([hs1, hs2]);
  await proxy?.close();
});

/** alice's room (v10 unless told) on hs1 with bob (hs2) joined, as hs1 sees it. */
async function sharedRoom(version = "10"): Promise<string> {
  proxy.intercept = undefined;
  const roomId = await createRoom(c1, alice, { preset: "public_chat", room_version: version });
  const r = await c2.post(`${V3}/join/${enc(roomId)}?server_name=hs1.test`, {}, { token: bob.accessToken });
  expect(r.status, r.text).toBe(200);
  await poll(async () => ((await hs1.server.services.membership.currentMembership(roomId, bob.userId)) === "join" ? true : undefined));
  return roomId;
}

const head = async (roomId: string) => (await hs1.server.services.roomCore.persister.head(roomId))!;

/** A PDU of bob's for hs1's room, signed by hs2, on the given prev events (default: hs1's extremities). */
async function forge(roomId: string, draft: { type: string; content: JsonObject; state_key?: string }, opts: { prev?: string[]; depth?: number } = {}): Promise<{ id: string; pdu: JsonObject }> {
  const h = await head(roomId);
  const ev = { ...draft, sender: bob.userId };
  const auth = authEventTypesFor(h.version, ev)
    .map(([t, k]) => h.state.get(stateMapKey(t, k)))
    .filter((x): x is string => x !== undefined);
  const prev = opts.prev ?? [...h.extremities];
  const pdu: JsonObject = { ...ev, room_id: roomId, auth_events: auth, prev_events: prev, depth: opts.depth ?? h.maxDepth + 1, origin_server_ts: Date.now(), hashes: {} };
  if (h.version.eventIdFormat === "v1") {
    // Rooms v1/v2: the event names its own id, and cites others as [id, {sha256}] (the hash is not checked).
    pdu.event_id = `$forged${txn++}:hs2.test`;
    pdu.auth_events = auth.map((id) => [id, {}]);
    pdu.prev_events = prev.map((id) => [id, {}]);
  }
  const signed = signNewEvent(h.version, pdu, "hs2.test", hs2.signingKey);
  return { id: signed.eventId, pdu: signed.pdu };
}

/** hs2 pushes PDUs to hs1; the per-PDU results. */
async function push(pdus: JsonObject[]): Promise<Record<string, { error?: string }>> {
  const res = await hs2.server.services.federationClient.put("hs1.test", `/_matrix/federation/v1/send/gaps-${txn++}`, { origin: "hs2.test", origin_server_ts: Date.now(), pdus, edus: [] });
  return res.pdus as Record<string, { error?: string }>;
}

/** Scripts hs2's answers: `routes` maps a path prefix to an answer; anything else goes to the real hs2. */
function answer(routes: Record<string, (req: ProxiedRequest) => ProxyAnswer | undefined>): void {
  proxy.seen.length = 0;
  proxy.intercept = (req) => {
    for (const [prefix, fn] of Object.entries(routes)) if (req.path.startsWith(prefix)) return fn(req);
    return undefined;
  };
}

const eventAnswer = (events: Map<string, JsonObject>) => (req: ProxiedRequest): ProxyAnswer => {
  const id = decodeURIComponent(req.path.slice("/_matrix/federation/v1/event/".length));
  const pdu = events.get(id);
  return pdu ? { status: 200, body: { origin: "hs2.test", origin_server_ts: Date.now(), pdus: [pdu] } } : { status: 404, body: { errcode: "M_NOT_FOUND", error: "no" } };
};

describe("an event pushed with prev events its sender withholds", () => {
  it("is dropped with an error for its PDU, and the state at the gap is never asked for", async () => {
    const roomId = await sharedRoom();
    const hidden = await forge(roomId, { type: "m.room.message", content: { body: "never sent" } });
    const sent = await forge(roomId, { type: "m.room.message", content: { body: "sent" } }, { prev: [hidden.id], depth: (await head(roomId)).maxDepth + 2 });
    answer({ "/_matrix/federation/v1/get_missing_events/": () => ({ status: 200, body: { events: [] } }) });
    const results = await push([sent.pdu]);
    expect(results[sent.id]?.error).toMatch(/prev_events/);
    expect(proxy.requests("/_matrix/federation/v1/get_missing_events/")).toHaveLength(1);
    expect(proxy.requests("/_matrix/federation/v1/state_ids/")).toHaveLength(0);
    expect(await hs1.server.services.roomCore.events.get(sent.id)).toBeUndefined();
  });
});

describe("the state across a gap", () => {
  for (const version of ["1", "10"]) {
  it(`leaves out a made-up power-levels event the auth rules reject: alice keeps her power (room version ${version})`, async () => {
    const roomId = await sharedRoom(version);
    const h = await head(roomId);
    const create = h.state.get(stateMapKey("m.room.create", ""))!;
    const bobJoin = h.state.get(stateMapKey("m.room.member", bob.userId))!;
    // bob (power 0) gives himself everything and alice nothing; it cites the real power levels, so it is rejected.
    const grab = await forge(roomId, { type: "m.room.power_levels", state_key: "", content: { users: { [bob.userId]: 100, [alice.userId]: 0 } } }, { prev: ["$nowhere"], depth: 1 });
    const c = await forge(roomId, { type: "m.room.message", content: { body: "c" } }, { prev: ["$nowhere"], depth: h.maxDepth + 5 });
    const d = await forge(roomId, { type: "m.room.message", content: { body: "d" } }, { prev: [c.id], depth: h.maxDepth + 6 });
    const e = await forge(roomId, { type: "m.room.message", content: { body: "e" } }, { prev: [d.id], depth: h.maxDepth + 7 });
    answer({
      "/_matrix/federation/v1/get_missing_events/": () => ({ status: 200, body: { events: [d.pdu] } }),
      "/_matrix/federation/v1/state_ids/": () => ({ status: 200, body: { pdu_ids: [create, bobJoin, grab.id], auth_chain_ids: [create, bobJoin] } }),
      "/_matrix/federation/v1/event/": eventAnswer(new Map([[grab.id, grab.pdu], [c.id, c.pdu]])),
      "/_matrix/federation/v1/event_auth/": () => ({ status: 404, body: { errcode: "M_NOT_FOUND", error: "no" } }),
    });
    await push([e.pdu]);
    expect(proxy.requests("/_matrix/federation/v1/state_ids/").length).toBeGreaterThan(0);
    expect((await hs1.server.services.roomCore.events.get(grab.id))?.rejected).toBe(true);
    const pl = await c1.get(`${V3}/rooms/${enc(roomId)}/state/m.room.power_levels/`, { token: alice.accessToken });
    expect((pl.body.users as Record<string, number>)[alice.userId]).toBe(100);
    expect((pl.body.users as Record<string, number>)[bob.userId]).toBeUndefined();
  });
  }
});

describe("paging back into a gap", () => {
  it("backfills the gap under the oldest event of a /sync timeline; a prev event in another room is not this room's history", async () => {
    const roomId = await sharedRoom();
    const elsewhere = await createRoom(c1, alice, { preset: "public_chat", room_version: "10" });
    const p = await send(c1, alice, elsewhere, "event P, another room");
    const h = await head(roomId);
    const stateIds = [...h.state.values()];
    // Q cites P (another room); R and S follow Q. hs1 gets S, fetches R, and bridges the gap at Q with its state.
    const q = await forge(roomId, { type: "m.room.message", content: { body: "event Q" } }, { prev: [p], depth: h.maxDepth + 1 });
    const r = await forge(roomId, { type: "m.room.message", content: { body: "event R" } }, { prev: [q.id], depth: h.maxDepth + 2 });
    const s = await forge(roomId, { type: "m.room.message", content: { body: "event S" } }, { prev: [r.id], depth: h.maxDepth + 3 });
    answer({
      "/_matrix/federation/v1/get_missing_events/": () => ({ status: 200, body: { events: [r.pdu] } }),
      "/_matrix/federation/v1/state_ids/": () => ({ status: 200, body: { pdu_ids: stateIds, auth_chain_ids: [] } }),
      "/_matrix/federation/v1/event/": eventAnswer(new Map()),
      "/_matrix/federation/v1/backfill/": () => ({ status: 200, body: { origin: "hs2.test", origin_server_ts: Date.now(), pdus: [q.pdu] } }),
    });
    expect((await push([s.pdu]))[s.id]).toEqual({});
    const since = (await sync(c1, alice, { filter: JSON.stringify({ room: { timeline: { limit: 2 } } }) })).rooms.join[roomId]!;
    expect(since.timeline.events.map((x) => x.event_id)).toEqual([r.id, s.id]);
    const page = await c1.get(`${V3}/rooms/${enc(roomId)}/messages?dir=b&limit=10&from=${enc(since.timeline.prev_batch!)}`, { token: alice.accessToken });
    expect(page.status, page.text).toBe(200);
    expect(proxy.requests("/_matrix/federation/v1/backfill/").map((x) => x.query.getAll("v"))).toEqual([[r.id]]);
    const chunk = page.body.chunk as { event_id: string }[];
    expect(chunk[0]?.event_id).toBe(q.id);
    expect(chunk.map((x) => x.event_id)).not.toContain(p);
    // Q's state was asked for at P, in this room, rather than taken from P's room.
    expect(proxy.requests("/_matrix/federation/v1/state_ids/").some((x) => x.query.get("event_id") === p)).toBe(true);
  });
});
