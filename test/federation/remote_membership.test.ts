/**
 * The joining server's side of membership against a resident that behaves as other homeservers do, not as Myelin
 * does. hs1 (Myelin) joins, leaves, knocks and invites through hs2.test, which is a real Myelin behind a
 * FederationProxy that changes one thing per test:
 *  - make_* templates without `origin_server_ts` and with the resident's `origin` (Synapse 1.63 and SyTest):
 *    our event fills in the time, replaces `origin` with ours (dropped from room v11 on), and the resident accepts it;
 *  - an invite whose server refuses or fails make_leave is rejected locally (a leave on top of the invite); a knock
 *    is not withdrawn that way;
 *  - a refused make_join reaches the client with the remote's status, errcode and fields;
 *  - no /v2/send_join, /v2/send_leave or /v2/invite (404 without a Matrix error, or M_UNRECOGNIZED): v1 is used;
 *  - a send_join answer whose state lacks the create event, or whose create event is of another room version, is
 *    refused; a make_join answer without `room_version` is room version 1, and its template is signed and sent as
 *    the resident made it, the event's format being checked once the send_join answer is in.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stateMapKey } from "../../src/core/events/event.js";
import { eventIdOf } from "../../src/core/events/ids.js";
import { getRoomVersion } from "../../src/core/rooms/versions.js";
import type { JsonObject } from "../../src/core/json/types.js";
import { FederationProxy } from "../helpers/fed_proxy.js";
import { startFederatedServer, TestNetwork } from "../helpers/federation.js";
import { closeFederatedServers } from "../helpers/federation_close.js";
import { Client, expectError, registerUser, type TestUser } from "../helpers/http.js";
import { createRoom, enc, messages, poll, send, V3 } from "../helpers/rooms.js";
import type { TestServer } from "../helpers/server.js";

let network: TestNetwork;
let hs1: TestServer;
let hs2: TestServer;
let proxy: FederationProxy;
let c1: Client;
let c2: Client;
let alice: TestUser;

beforeAll(async () => {
  network = new TestNetwork();
  hs1 = await startFederatedServer(network, "hs1.test");
  hs2 = await startFederatedServer(network, "hs2.test");
  // From now on hs2.test is reached through the proxy (nothing has contacted it yet).
  proxy = await new FederationProxy(hs2.tlsPort!).start(network, "hs2.test");
  c1 = new Client(hs1.baseUrl);
  c2 = new Client(hs2.baseUrl);
  alice = await registerUser(c2);
});
afterAll(async () => {
  await closeFederatedServers([hs1, hs2]);
  await proxy?.close();
});

function reset(): void {
  proxy.intercept = undefined;
  proxy.rewrite = undefined;
  proxy.seen.length = 0;
}

/** A template as SyTest's and Synapse 1.63's residents hand out: no origin_server_ts, and `origin` naming them. */
function likeOtherResidents(prefix: string): void {
  proxy.rewrite = (req, answer) => {
    if (!req.path.startsWith(prefix) || answer.status !== 200) return undefined;
    const body = answer.body as { event: JsonObject };
    delete body.event.origin_server_ts;
    body.event.origin = "hs2.test";
    return answer;
  };
}

/** The member event of `userId` in hs2's current state, as stored (the PDU hs1 built). */
async function storedMember(roomId: string, userId: string): Promise<JsonObject | undefined> {
  const head = await hs2.server.services.roomCore.persister.head(roomId);
  const id = head?.state.get(stateMapKey("m.room.member", userId));
  return id ? (await hs2.server.services.roomCore.events.get(id))?.event.pdu : undefined;
}

/** A user's membership in a room their server is not in (an invite received over federation). */
async function outOfBand(server: TestServer, roomId: string, userId: string): Promise<string | undefined> {
  const id = await server.server.services.storage.rooms.currentStateEventId(roomId, "m.room.member", userId);
  const e = id ? await server.server.services.roomCore.events.get(id) : undefined;
  return e?.event.content.membership as string | undefined;
}

async function membershipOnHs2(roomId: string, userId: string): Promise<string | undefined> {
  return hs2.server.services.membership.currentMembership(roomId, userId);
}

describe("events built from a resident's template", () => {
  it("join: origin_server_ts is filled in, the resident's origin dropped; the resident accepts the join", async () => {
    reset();
    likeOtherResidents("/_matrix/federation/v1/make_join/");
    const roomId = await createRoom(c2, alice, { preset: "public_chat" });
    const bob = await registerUser(c1);
    const before = Date.now();
    const join = await c1.post(`${V3}/join/${enc(roomId)}?server_name=hs2.test`, {}, { token: bob.accessToken });
    expect(join.status, join.text).toBe(200);
    const pdu = (await storedMember(roomId, bob.userId))!;
    expect(pdu.content).toMatchObject({ membership: "join" });
    expect(pdu.origin_server_ts).toBeGreaterThanOrEqual(before);
    expect(pdu).not.toHaveProperty("origin");
    // The room works: bob's message reaches alice.
    await send(c1, bob, roomId, "built from a bare template");
    await poll(async () => ((await messages(c2, alice, roomId, { limit: 5 })).chunk.some((e) => e.content.body === "built from a bare template") ? true : undefined));
  });

  it("leave (rejecting an invite): the same, through /v1/send_leave when the resident has no /v2", async () => {
    reset();
    likeOtherResidents("/_matrix/federation/v1/make_leave/");
    proxy.intercept = (req) => (req.path.startsWith("/_matrix/federation/v2/send_leave/") ? { status: 404, body: "" } : undefined);
    const roomId = await createRoom(c2, alice, { preset: "private_chat" });
    const carol = await registerUser(c1);
    expect((await c2.post(`${V3}/rooms/${enc(roomId)}/invite`, { user_id: carol.userId }, { token: alice.accessToken })).status).toBe(200);
    await poll(async () => ((await outOfBand(hs1, roomId, carol.userId)) === "invite" ? true : undefined));
    const leave = await c1.post(`${V3}/rooms/${enc(roomId)}/leave`, {}, { token: carol.accessToken });
    expect(leave.status, leave.text).toBe(200);
    expect(await membershipOnHs2(roomId, carol.userId)).toBe("leave");
    const pdu = (await storedMember(roomId, carol.userId))!;
    expect(typeof pdu.origin_server_ts).toBe("number");
    expect(pdu).not.toHaveProperty("origin");
    expect(proxy.requests("/_matrix/federation/v2/send_leave/")).toHaveLength(1);
    expect(proxy.requests("/_matrix/federation/v1/send_leave/")).toHaveLength(1);
  });

  it("join in a room version before 11: the resident's origin is replaced with ours", async () => {
    reset();
    likeOtherResidents("/_matrix/federation/v1/make_join/");
    const roomId = await createRoom(c2, alice, { preset: "public_chat", room_version: "10" });
    const bob = await registerUser(c1);
    const join = await c1.post(`${V3}/join/${enc(roomId)}?server_name=hs2.test`, {}, { token: bob.accessToken });
    expect(join.status, join.text).toBe(200);
    expect((await storedMember(roomId, bob.userId))!.origin).toBe("hs1.test");
  });

  it("knock: the same (v10: origin is ours)", async () => {
    reset();
    likeOtherResidents("/_matrix/federation/v1/make_knock/");
    const roomId = await createRoom(c2, alice, { preset: "private_chat", room_version: "10", initial_state: [{ type: "m.room.join_rules", state_key: "", content: { join_rule: "knock" } }] });
    const dave = await registerUser(c1);
    const knock = await c1.post(`${V3}/knock/${enc(roomId)}?server_name=hs2.test`, {}, { token: dave.accessToken });
    expect(knock.status, knock.text).toBe(200);
    await poll(async () => ((await membershipOnHs2(roomId, dave.userId)) === "knock" ? true : undefined));
    expect((await storedMember(roomId, dave.userId))!.origin).toBe("hs1.test");
  });
});

describe("rejecting an invite when its server will not take the leave", () => {
  for (const [what, answer] of [
    ["refuses make_leave (403)", { status: 403, body: { errcode: "M_FORBIDDEN", error: "no" } }],
    ["fails make_leave (500)", { status: 500, body: {} }],
  ] as const) {
    it(`${what}: the invite is rejected locally, with a leave of ours on top of it; a knock is not`, async () => {
      reset();
      for (const version of ["1", "10"]) {
        const roomId = await createRoom(c2, alice, { preset: "private_chat", room_version: version });
        const carol = await registerUser(c1);
        expect((await c2.post(`${V3}/rooms/${enc(roomId)}/invite`, { user_id: carol.userId }, { token: alice.accessToken })).status).toBe(200);
        await poll(async () => ((await outOfBand(hs1, roomId, carol.userId)) === "invite" ? true : undefined));
        const inviteId = (await hs1.server.services.storage.rooms.currentStateEventId(roomId, "m.room.member", carol.userId))!;
        proxy.intercept = (req) => (req.path.startsWith("/_matrix/federation/v1/make_leave/") ? answer : undefined);
        const leave = await c1.post(`${V3}/rooms/${enc(roomId)}/leave`, { reason: "not now" }, { token: carol.accessToken });
        expect(leave.status, leave.text).toBe(200);
        expect(await outOfBand(hs1, roomId, carol.userId)).toBe("leave");
        const id = (await hs1.server.services.storage.rooms.currentStateEventId(roomId, "m.room.member", carol.userId))!;
        const pdu = (await hs1.server.services.roomCore.events.get(id))!.event.pdu;
        const ref = version === "1" ? (pdu.prev_events as unknown[][])[0]![0] : (pdu.prev_events as string[])[0];
        expect(ref).toBe(inviteId);
        expect(pdu).toMatchObject({ sender: carol.userId, state_key: carol.userId, content: { membership: "leave", reason: "not now" } });
        // Carol's /sync shows the room under leave, with her leave as its timeline (include_leave for an initial sync).
        const s = await c1.get(`${V3}/sync?filter=${enc(JSON.stringify({ room: { include_leave: true } }))}`, { token: carol.accessToken });
        expect(s.status, s.text).toBe(200);
        const left = (s.body.rooms as { leave: Record<string, { timeline: { events: { event_id: string }[] } }> }).leave[roomId];
        expect(left?.timeline.events.map((e) => e.event_id)).toEqual([id]);
        // hs2 never heard of it: the invite stands there.
        expect(await membershipOnHs2(roomId, carol.userId)).toBe("invite");
        proxy.intercept = undefined;
      }
    });
  }

  it("a knock whose server is unreachable is not withdrawn locally: 502", async () => {
    reset();
    const roomId = await createRoom(c2, alice, { preset: "private_chat", room_version: "10", initial_state: [{ type: "m.room.join_rules", state_key: "", content: { join_rule: "knock" } }] });
    const erin = await registerUser(c1);
    expect((await c1.post(`${V3}/knock/${enc(roomId)}?server_name=hs2.test`, {}, { token: erin.accessToken })).status).toBe(200);
    proxy.intercept = (req) => (req.path.startsWith("/_matrix/federation/v1/make_leave/") ? { status: 500, body: {} } : undefined);
    expectError(await c1.post(`${V3}/rooms/${enc(roomId)}/leave`, {}, { token: erin.accessToken }), 502, "M_UNKNOWN");
    expect(await outOfBand(hs1, roomId, erin.userId)).toBe("knock");
    proxy.intercept = undefined;
  });
});

describe("which servers a membership event is sent to", () => {
  /** Whether some transaction hs1 sent to hs2 carried the event. */
  const sentToHs2 = (eventId: string) =>
    proxy.requests("/_matrix/federation/v1/send/").some((r) => ((r.body as { pdus?: JsonObject[] }).pdus ?? []).some((p) => eventIdOf(getRoomVersion("10")!, p) === eventId));

  it("an invite goes by /invite only; a kick of a server's last member reaches it", async () => {
    reset();
    const owner = await registerUser(c1);
    const roomId = await createRoom(c1, owner, { preset: "private_chat", room_version: "10" });
    const guest = await registerUser(c2);
    expect((await c1.post(`${V3}/rooms/${enc(roomId)}/invite`, { user_id: guest.userId }, { token: owner.accessToken })).status).toBe(200);
    const inviteId = (await hs1.server.services.storage.rooms.currentStateEventId(roomId, "m.room.member", guest.userId))!;
    expect(proxy.requests("/_matrix/federation/v2/invite/")).toHaveLength(1);
    expect((await c2.post(`${V3}/join/${enc(roomId)}?server_name=hs1.test`, {}, { token: guest.accessToken })).status).toBe(200);
    const kick = await c1.post(`${V3}/rooms/${enc(roomId)}/kick`, { user_id: guest.userId }, { token: owner.accessToken });
    expect(kick.status).toBe(200);
    const kickEvent = (await hs1.server.services.storage.rooms.currentStateEventId(roomId, "m.room.member", guest.userId))!;
    await poll(async () => (sentToHs2(kickEvent) ? true : undefined));
    expect(sentToHs2(inviteId)).toBe(false);
    await poll(async () => ((await membershipOnHs2(roomId, guest.userId)) === "leave" ? true : undefined));
  });
});

describe("a resident refusing make_join", () => {
  it("its errcode and message reach the client with its status", async () => {
    reset();
    proxy.intercept = (req) => (req.path.startsWith("/_matrix/federation/v1/make_join/") ? { status: 400, body: { errcode: "M_TEST_ERROR_CODE", error: "denied!" } } : undefined);
    const roomId = await createRoom(c2, alice, { preset: "public_chat" });
    const bob = await registerUser(c1);
    const res = await c1.post(`${V3}/join/${enc(roomId)}?server_name=hs2.test`, {}, { token: bob.accessToken });
    expect(expectError(res, 400, "M_TEST_ERROR_CODE").error).toBe("denied!");
  });

  it("M_INCOMPATIBLE_ROOM_VERSION keeps its room_version", async () => {
    reset();
    proxy.intercept = (req) =>
      req.path.startsWith("/_matrix/federation/v1/make_join/") ? { status: 400, body: { errcode: "M_INCOMPATIBLE_ROOM_VERSION", error: "y u no upgrade", room_version: "org.example.v99" } } : undefined;
    const roomId = await createRoom(c2, alice, { preset: "public_chat" });
    const bob = await registerUser(c1);
    const res = await c1.post(`${V3}/join/${enc(roomId)}?server_name=hs2.test`, {}, { token: bob.accessToken });
    expect(expectError(res, 400, "M_INCOMPATIBLE_ROOM_VERSION").room_version).toBe("org.example.v99");
  });

  it("a make_join answer naming a room version we do not know is M_INCOMPATIBLE_ROOM_VERSION with it", async () => {
    reset();
    proxy.rewrite = (req, answer) => (req.path.startsWith("/_matrix/federation/v1/make_join/") ? { status: 200, body: { ...(answer.body as JsonObject), room_version: "org.example.v99" } } : undefined);
    const roomId = await createRoom(c2, alice, { preset: "public_chat" });
    const bob = await registerUser(c1);
    const res = await c1.post(`${V3}/join/${enc(roomId)}?server_name=hs2.test`, {}, { token: bob.accessToken });
    expect(expectError(res, 400, "M_INCOMPATIBLE_ROOM_VERSION").room_version).toBe("org.example.v99");
  });
});

describe("v1 fallbacks", () => {
  for (const [label, answer] of [
    ["404 without a body", { status: 404, body: "" }],
    ["400 M_UNRECOGNIZED", { status: 400, body: { errcode: "M_UNRECOGNIZED", error: "Unrecognized request" } }],
  ] as const) {
    it(`a resident answering /v2/send_join with ${label} gets /v1/send_join`, async () => {
      reset();
      proxy.intercept = (req) => (req.path.startsWith("/_matrix/federation/v2/send_join/") ? answer : undefined);
      const roomId = await createRoom(c2, alice, { preset: "public_chat" });
      const bob = await registerUser(c1);
      const join = await c1.post(`${V3}/join/${enc(roomId)}?server_name=hs2.test`, {}, { token: bob.accessToken });
      expect(join.status, join.text).toBe(200);
      expect(proxy.requests("/_matrix/federation/v1/send_join/")).toHaveLength(1);
      expect(await membershipOnHs2(roomId, bob.userId)).toBe("join");
    });
  }

  it("a real error from /v2/send_join (a JSON M_NOT_FOUND) is no reason to try v1: the client gets it", async () => {
    reset();
    proxy.intercept = (req) => (req.path.startsWith("/_matrix/federation/v2/send_join/") ? { status: 404, body: { errcode: "M_NOT_FOUND", error: "Unknown room" } } : undefined);
    const roomId = await createRoom(c2, alice, { preset: "public_chat" });
    const bob = await registerUser(c1);
    const join = await c1.post(`${V3}/join/${enc(roomId)}?server_name=hs2.test`, {}, { token: bob.accessToken });
    expectError(join, 404, "M_NOT_FOUND");
    expect(proxy.requests("/_matrix/federation/v1/send_join/")).toHaveLength(0);
  });

  it("an invitee's server without /v2/invite gets /v1/invite in a room of v1-format events; in newer rooms it cannot be invited", async () => {
    reset();
    proxy.intercept = (req) => (req.path.startsWith("/_matrix/federation/v2/invite/") ? { status: 404, body: "" } : undefined);
    const inviter = await registerUser(c1);
    const old = await createRoom(c1, inviter, { room_version: "1" });
    const ok = await c1.post(`${V3}/rooms/${enc(old)}/invite`, { user_id: alice.userId }, { token: inviter.accessToken });
    expect(ok.status, ok.text).toBe(200);
    expect(proxy.requests("/_matrix/federation/v1/invite/")).toHaveLength(1);
    await poll(async () => ((await outOfBand(hs2, old, alice.userId)) === "invite" ? true : undefined));

    const modern = await createRoom(c1, inviter, { room_version: "10" });
    const refused = await c1.post(`${V3}/rooms/${enc(modern)}/invite`, { user_id: alice.userId }, { token: inviter.accessToken });
    expectError(refused, 400, "M_UNSUPPORTED_ROOM_VERSION");
    expect(proxy.requests("/_matrix/federation/v1/invite/")).toHaveLength(1);
  });
});

describe("checking the send_join answer", () => {
  it("a state without the create event (still in the auth chain) is refused", async () => {
    reset();
    proxy.rewrite = (req, answer) => {
      if (!req.path.startsWith("/_matrix/federation/v2/send_join/") || answer.status !== 200) return undefined;
      const body = answer.body as { state: JsonObject[]; auth_chain: JsonObject[] };
      const create = body.state.find((e) => e.type === "m.room.create")!;
      body.state = body.state.filter((e) => e !== create);
      if (!body.auth_chain.some((e) => e.type === "m.room.create")) body.auth_chain.push(create);
      return answer;
    };
    const roomId = await createRoom(c2, alice, { preset: "public_chat" });
    const bob = await registerUser(c1);
    const join = await c1.post(`${V3}/join/${enc(roomId)}?server_name=hs2.test`, {}, { token: bob.accessToken });
    expect(expectError(join, 404, "M_NOT_FOUND").error).toMatch(/create event/);
    expect(await hs1.server.services.membership.currentMembership(roomId, bob.userId)).not.toBe("join");
  });

  it("a create event of another room version than make_join said is refused", async () => {
    reset();
    proxy.rewrite = (req, answer) => {
      if (!req.path.startsWith("/_matrix/federation/v2/send_join/") || answer.status !== 200) return undefined;
      const body = answer.body as { state: JsonObject[] };
      const create = body.state.find((e) => e.type === "m.room.create")!;
      create.content = { ...(create.content as JsonObject), room_version: "org.example.other" };
      return answer;
    };
    const roomId = await createRoom(c2, alice, { preset: "public_chat", room_version: "10" });
    const bob = await registerUser(c1);
    const join = await c1.post(`${V3}/join/${enc(roomId)}?server_name=hs2.test`, {}, { token: bob.accessToken });
    expect(expectError(join, 404, "M_NOT_FOUND").error).toMatch(/room version/);
  });

  it("a make_join answer without room_version is room version 1: its template is signed and sent as it is, and a create event of an unknown version in the send_join answer is refused", async () => {
    reset();
    // As SyTest's resident in a room of a version nobody knows: no `room_version` in make_join (so "1" is
    // assumed), a template with v3-style prev_events (not a valid v1 event), and a send_join answer whose create
    // event names that version.
    const roomId = await createRoom(c2, alice, { preset: "public_chat", room_version: "10" });
    const unknownCreate: JsonObject = {
      type: "m.room.create", state_key: "", room_id: roomId, sender: alice.userId, event_id: "$create:hs2.test", origin: "hs2.test",
      origin_server_ts: 1, depth: 1, prev_events: [], auth_events: [], hashes: { sha256: "AAAA" }, signatures: {},
      content: { creator: alice.userId, room_version: "org.example.unknown" },
    };
    proxy.rewrite = (req, answer) => {
      if (!req.path.startsWith("/_matrix/federation/v1/make_join/") || answer.status !== 200) return undefined;
      const body = answer.body as JsonObject;
      delete body.room_version;
      return answer;
    };
    proxy.intercept = (req) => (req.path.startsWith("/_matrix/federation/v2/send_join/") ? { status: 200, body: { state: [unknownCreate], auth_chain: [] } } : undefined);
    const bob = await registerUser(c1);
    const join = await c1.post(`${V3}/join/${enc(roomId)}?server_name=hs2.test`, {}, { token: bob.accessToken });
    expect(expectError(join, 404, "M_NOT_FOUND").error).toMatch(/room version org\.example\.unknown/);
    // The event went to the resident as the template made it: a v1 event id of ours, the template's prev_events.
    const sent = proxy.requests("/_matrix/federation/v2/send_join/");
    expect(sent).toHaveLength(1);
    const pdu = sent[0]!.body as JsonObject;
    expect(pdu.event_id).toMatch(/:hs1\.test$/);
    expect((pdu.prev_events as unknown[]).every((p) => typeof p === "string")).toBe(true);
    expect((pdu.signatures as JsonObject)["hs1.test"]).toBeDefined();
    expect(await hs1.server.services.membership.currentMembership(roomId, bob.userId)).not.toBe("join");
    // Nothing of the room was kept.
    expect(await hs1.server.services.roomCore.persister.head(roomId)).toBeUndefined();
  });

  it("a template that makes no valid event is refused once the send_join answer is in, before anything is kept", async () => {
    reset();
    // make_join says nothing of the version (so "1"), the room's create event agrees, but the template's
    // prev_events are not v1 references: the resident accepted an event that is not valid in its room.
    const roomId = await createRoom(c2, alice, { preset: "public_chat", room_version: "10" });
    const v1Create: JsonObject = {
      type: "m.room.create", state_key: "", room_id: roomId, sender: alice.userId, event_id: "$create:hs2.test", origin: "hs2.test",
      origin_server_ts: 1, depth: 1, prev_events: [], auth_events: [], hashes: { sha256: "AAAA" }, signatures: {},
      content: { creator: alice.userId },
    };
    proxy.rewrite = (req, answer) => {
      if (!req.path.startsWith("/_matrix/federation/v1/make_join/") || answer.status !== 200) return undefined;
      delete (answer.body as JsonObject).room_version;
      return answer;
    };
    proxy.intercept = (req) => (req.path.startsWith("/_matrix/federation/v2/send_join/") ? { status: 200, body: { state: [v1Create], auth_chain: [] } } : undefined);
    const bob = await registerUser(c1);
    const join = await c1.post(`${V3}/join/${enc(roomId)}?server_name=hs2.test`, {}, { token: bob.accessToken });
    expect(expectError(join, 404, "M_NOT_FOUND").error).toMatch(/template that makes no valid event/);
    expect(proxy.requests("/_matrix/federation/v2/send_join/")).toHaveLength(1);
    expect(await hs1.server.services.roomCore.persister.head(roomId)).toBeUndefined();
  });
});
