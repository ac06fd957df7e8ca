/**
 * Policy Servers (spec v1.18): hs1 (Myelin, under test) in rooms whose m.room.policy names ps.test. ps.test is
 * another Myelin with a joined user and one extra route, a stub POST /_matrix/policy/v1/sign that signs with the
 * key in m.room.policy and refuses bodies containing "spam". hs1 asks it to sign its users' events, passes its
 * refusal to the client, asks again for received events that lack its signature and soft-fails those it still
 * refuses, never asks for the m.room.policy event, and ignores a Policy Server with no joined user.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { FastifyInstance } from "fastify";
import { randomBytes } from "node:crypto";
import { defineFederationRoute } from "../../src/api/federation/auth.js";
import { generateSigningKey, signingKeyFromSeed, type SigningKey } from "../../src/core/crypto/ed25519.js";
import { signJson, type Signatures } from "../../src/core/crypto/signing.js";
import { authEventTypesFor } from "../../src/core/events/auth_events.js";
import { stateMapKey } from "../../src/core/events/event.js";
import { redactPdu } from "../../src/core/events/redaction.js";
import { signNewEvent } from "../../src/core/events/signing.js";
import { isJsonObject, type JsonObject } from "../../src/core/json/types.js";
import { hasValidPolicyServerSignature, POLICY_SERVER_KEY_ID, type PolicyServer } from "../../src/core/rooms/policy_server.js";
import { getRoomVersion } from "../../src/core/rooms/versions.js";
import { MatrixError } from "../../src/errors.js";
import type { Services } from "../../src/services/services.js";
import { startFederatedServer, TestNetwork, testRoutes } from "../helpers/federation.js";
import { closeFederatedServers } from "../helpers/federation_close.js";
import { Client, expectError, registerUser, type TestUser } from "../helpers/http.js";
import { createRoom, enc, messages, nextTxn, poll, send, setState, sync, syncUntil, V3 } from "../helpers/rooms.js";
import type { TestServer } from "../helpers/server.js";

const PS_KEY = signingKeyFromSeed("policy_server", randomBytes(32));
const PS: PolicyServer = { serverName: "ps.test", ed25519: PS_KEY.publicKeyBase64 };
const POLICY = { via: "ps.test", public_keys: { ed25519: PS_KEY.publicKeyBase64 } };
const SPAM_ERROR = "The message appears to contain possible spam";

/** What the stub Policy Server was asked to sign. */
interface SignRequest {
  origin: string;
  eventType: unknown;
  stateKey: unknown;
  body: unknown;
}
const signRequests: SignRequest[] = [];

/** ps.test's extra route: the stub Policy Server. */
function policyServerRoutes(app: FastifyInstance, services: Services): void {
  testRoutes(app, services);
  defineFederationRoute(app, services, {
    method: "POST",
    paths: ["/_matrix/policy/v1/sign"],
    handler: async ({ origin, body }) => {
      const pdu = body as JsonObject;
      const content = isJsonObject(pdu.content) ? pdu.content : {};
      signRequests.push({ origin, eventType: pdu.type, stateKey: pdu.state_key, body: content.body });
      if (typeof content.body === "string" && content.body.includes("spam")) throw new MatrixError(400, "M_FORBIDDEN", SPAM_ERROR);
      const version = (await services.roomCore.events.roomVersion(String(pdu.room_id))) ?? getRoomVersion("12")!;
      const signed = signJson(redactPdu(version, pdu), "ps.test", PS_KEY);
      return { "ps.test": { [POLICY_SERVER_KEY_ID]: (signed.signatures as Signatures)["ps.test"]![POLICY_SERVER_KEY_ID]! } };
    },
  });
}

let network: TestNetwork;
let hs1: TestServer;
let ps: TestServer;
let c1: Client;
let cps: Client;
let alice: TestUser;
let mod: TestUser;
/** A room using ps.test as its Policy Server, mod (ps.test) joined. */
let roomId: string;

beforeAll(async () => {
  network = new TestNetwork();
  hs1 = await startFederatedServer(network, "hs1.test", { config: { policy_server: { public_keys: { ed25519: PS_KEY.publicKeyBase64 } } } });
  ps = await startFederatedServer(network, "ps.test", { server: { routes: policyServerRoutes } });
  c1 = new Client(hs1.baseUrl);
  cps = new Client(ps.baseUrl);
  alice = await registerUser(c1);
  mod = await registerUser(cps);
  roomId = await createRoom(c1, alice, { preset: "public_chat" });
  const j = await cps.post(`${V3}/join/${enc(roomId)}?server_name=hs1.test`, {}, { token: mod.accessToken });
  expect(j.status, j.text).toBe(200);
  await poll(async () => ((await hs1.server.services.membership.currentMembership(roomId, mod.userId)) === "join" ? true : undefined));
});
afterAll(async () => {
  await closeFederatedServers([hs1, ps]);
});

const events = () => hs1.server.services.roomCore.events;
const version = async (r: string) => (await hs1.server.services.roomCore.persister.head(r))!.version;
const text = (body: string): JsonObject => ({ msgtype: "m.text", body });

/**
 * A PDU for a room on hs1, built on hs1's head as a server `as` would build it and signed with `as.key`;
 * `psKey` adds a Policy Server signature made with that key.
 */
async function buildPdu(
  room: string,
  draft: { type: string; sender: string; content: JsonObject; state_key?: string },
  as: { name: string; key: SigningKey },
  psKey?: SigningKey,
): Promise<{ eventId: string; pdu: JsonObject }> {
  const head = (await hs1.server.services.roomCore.persister.head(room))!;
  const authIds = authEventTypesFor(head.version, draft)
    .map(([t, k]) => head.state.get(stateMapKey(t, k)))
    .filter((x): x is string => x !== undefined);
  const pdu: JsonObject = {
    auth_events: authIds,
    prev_events: [...head.extremities],
    type: draft.type,
    room_id: room,
    sender: draft.sender,
    content: draft.content,
    depth: head.maxDepth + 1,
    origin_server_ts: Date.now(),
    hashes: {},
  };
  if (draft.state_key !== undefined) pdu.state_key = draft.state_key;
  const signed = signNewEvent(head.version, pdu, as.name, as.key);
  if (psKey) {
    const sig = (signJson(redactPdu(head.version, signed.pdu), "ps.test", psKey).signatures as Signatures)["ps.test"]![psKey.keyId]!;
    // Beside, not instead of, the sender server's own signature (ps.test may be both).
    const sigs = signed.pdu.signatures as Signatures;
    signed.pdu.signatures = { ...sigs, "ps.test": { ...(sigs["ps.test"] ?? {}), [POLICY_SERVER_KEY_ID]: sig } };
  }
  return { eventId: signed.eventId, pdu: signed.pdu };
}

/** PUT /send/{txnId} on hs1 from ps.test. */
function pushFromPs(pdus: JsonObject[]): Promise<JsonObject> {
  return ps.server.services.federationClient.put("hs1.test", `/_matrix/federation/v1/send/${enc(nextTxn())}`, { origin: "ps.test", origin_server_ts: Date.now(), pdus, edus: [] });
}

async function timelineIds(r: string): Promise<string[]> {
  return (await messages(c1, alice, r, { limit: 100 })).chunk.map((e) => e.event_id);
}

describe("Policy Servers", () => {
  it("the m.room.policy event is sent without asking; then local events carry the Policy Server's signature", async () => {
    const policyId = await setState(c1, alice, roomId, "m.room.policy", "", POLICY);
    expect(signRequests.filter((r) => r.eventType === "m.room.policy")).toEqual([]);
    expect((await events().get(policyId))!.softFailed).toBe(false);

    const msgId = await send(c1, alice, roomId, "hello, moderated room");
    const topicId = await setState(c1, alice, roomId, "m.room.topic", "", { topic: "state events are signed too" });
    const v = await version(roomId);
    for (const id of [msgId, topicId]) {
      const stored = (await events().get(id))!;
      expect(hasValidPolicyServerSignature(v, stored.event.pdu, PS), id).toBe(true);
      // hs1's own signature is kept beside it.
      expect(Object.keys((stored.event.pdu.signatures as JsonObject)["hs1.test"] as JsonObject)).toEqual([hs1.signingKey.keyId]);
    }
    expect(signRequests).toContainEqual({ origin: "hs1.test", eventType: "m.room.message", stateKey: undefined, body: "hello, moderated room" });
    expect(signRequests).toContainEqual({ origin: "hs1.test", eventType: "m.room.topic", stateKey: "", body: undefined });
    // Other servers get the event with the signature.
    const onPs = await poll(() => ps.server.services.roomCore.events.get(msgId));
    expect(hasValidPolicyServerSignature(v, onPs.event.pdu, PS)).toBe(true);
  });

  it("an invite to the Policy Server's own server keeps its signature when the invitee's server signs it too", async () => {
    const invitee = await registerUser(cps);
    const r = await c1.post(`${V3}/rooms/${enc(roomId)}/invite`, { user_id: invitee.userId }, { token: alice.accessToken });
    expect(r.status, r.text).toBe(200);
    const inviteId = (await hs1.server.services.roomCore.persister.head(roomId))!.state.get(stateMapKey("m.room.member", invitee.userId))!;
    const sigs = (await events().get(inviteId))!.event.pdu.signatures as Signatures;
    expect(hasValidPolicyServerSignature(await version(roomId), (await events().get(inviteId))!.event.pdu, PS)).toBe(true);
    // ps.test's own signature as the invitee's server, beside the Policy Server's.
    expect(Object.keys(sigs["ps.test"]!).sort()).toEqual([ps.signingKey.keyId, POLICY_SERVER_KEY_ID].sort());
  });

  it("a refusal fails the send with the Policy Server's error, and the event goes nowhere", async () => {
    const before = signRequests.length;
    const res = await c1.put(`${V3}/rooms/${enc(roomId)}/send/m.room.message/${nextTxn()}`, text("buy cheap spam"), { token: alice.accessToken });
    expect(expectError(res, 400, "M_FORBIDDEN").error).toBe(SPAM_ERROR);
    expect(signRequests.length).toBe(before + 1);
    const since = (await sync(c1, alice)).next_batch;
    await send(c1, alice, roomId, "marker after the refusal");
    await syncUntil(c1, alice, since, (s) => s.rooms.join[roomId]?.timeline.events.some((e) => e.content.body === "marker after the refusal") ?? false);
    expect((await messages(c1, alice, roomId, { limit: 50 })).chunk.map((e) => e.content.body)).not.toContain("buy cheap spam");
    // The room still works afterwards.
    await poll(async () => ((await messages(cps, mod, roomId, { limit: 10 })).chunk.some((e) => e.content.body === "marker after the refusal") ? true : undefined));
  });

  it("a received event without the Policy Server's signature gets a fresh one, or is soft-failed", async () => {
    const psServer = { name: "ps.test", key: ps.signingKey };
    const v = await version(roomId);
    const since = (await sync(c1, alice)).next_batch;

    // Unsigned but acceptable: hs1 asks the Policy Server, which signs it.
    const plain = await buildPdu(roomId, { type: "m.room.message", sender: mod.userId, content: text("unsigned but fine") }, psServer);
    expect(await pushFromPs([plain.pdu])).toEqual({ pdus: { [plain.eventId]: {} } });
    const plainStored = (await events().get(plain.eventId))!;
    expect(plainStored.softFailed).toBe(false);
    expect(hasValidPolicyServerSignature(v, plainStored.event.pdu, PS)).toBe(true);
    expect(signRequests).toContainEqual({ origin: "hs1.test", eventType: "m.room.message", stateKey: undefined, body: "unsigned but fine" });

    // Already signed: accepted without asking.
    const asked = signRequests.length;
    const signed = await buildPdu(roomId, { type: "m.room.message", sender: mod.userId, content: text("signed already") }, psServer, PS_KEY);
    expect(await pushFromPs([signed.pdu])).toEqual({ pdus: { [signed.eventId]: {} } });
    expect((await events().get(signed.eventId))!.softFailed).toBe(false);
    expect(signRequests.length).toBe(asked);

    // Unsigned, and refused when asked: soft-failed (processed, so no error for the sender, as step 6).
    const spam = await buildPdu(roomId, { type: "m.room.message", sender: mod.userId, content: text("unsigned spam") }, psServer);
    expect(await pushFromPs([spam.pdu])).toEqual({ pdus: { [spam.eventId]: {} } });
    expect((await events().get(spam.eventId))!.softFailed).toBe(true);

    // Signed with some other key (not the one in m.room.policy), and refused when asked again: soft-failed.
    const forged = await buildPdu(roomId, { type: "m.room.message", sender: mod.userId, content: text("forged spam") }, psServer, signingKeyFromSeed("policy_server", randomBytes(32)));
    expect(await pushFromPs([forged.pdu])).toEqual({ pdus: { [forged.eventId]: {} } });
    expect((await events().get(forged.eventId))!.softFailed).toBe(true);
    expect(signRequests.filter((r) => r.body === "forged spam")).toHaveLength(1);

    // Soft-failed events never reach clients, nor become forward extremities.
    await send(c1, alice, roomId, "marker after the junk");
    const s = await syncUntil(c1, alice, since, (r) => r.rooms.join[roomId]?.timeline.events.some((e) => e.content.body === "marker after the junk") ?? false);
    const seen = [...s.rooms.join[roomId]!.timeline.events.map((e) => e.event_id), ...(await timelineIds(roomId))];
    expect(seen).toContain(plain.eventId);
    expect(seen).toContain(signed.eventId);
    expect(seen).not.toContain(spam.eventId);
    expect(seen).not.toContain(forged.eventId);
    expect((await hs1.server.services.roomCore.persister.head(roomId))!.extremities).not.toContain(spam.eventId);
  });

  it("another server's m.room.policy event is exempt; its other events are signed when they arrive", async () => {
    const pl = await c1.get(`${V3}/rooms/${enc(roomId)}/state/m.room.power_levels/`, { token: alice.accessToken });
    await setState(c1, alice, roomId, "m.room.power_levels", "", { ...pl.body, users: { ...(pl.body.users as JsonObject), [mod.userId]: 100 } });
    await poll(async () => {
      const r = await cps.get(`${V3}/rooms/${enc(roomId)}/state/m.room.power_levels/`, { token: mod.accessToken });
      return (r.body.users as Record<string, number> | undefined)?.[mod.userId] === 100 ? true : undefined;
    });
    // ps.test (a Myelin) asks nobody for its own events: it is named as the Policy Server, and is not one itself.
    const before = signRequests.length;
    const updated = { ...POLICY, note: "updated by the moderator" };
    const policyId = await setState(cps, mod, roomId, "m.room.policy", "", updated);
    const got = await poll(async () => {
      const r = await c1.get(`${V3}/rooms/${enc(roomId)}/state/m.room.policy/`, { token: alice.accessToken });
      return r.body.note === updated.note ? r.body : undefined;
    });
    expect(got).toEqual(updated);
    expect((await events().get(policyId))!.softFailed).toBe(false);
    expect(signRequests.slice(before).filter((r) => r.eventType === "m.room.policy")).toEqual([]);

    // A message from ps.test, sent without a signature: hs1 gets one and shows it.
    const msgId = await send(cps, mod, roomId, "the moderator speaks");
    const stored = await poll(async () => (await events().get(msgId)) ?? undefined);
    expect(stored.softFailed).toBe(false);
    expect(hasValidPolicyServerSignature(await version(roomId), stored.event.pdu, PS)).toBe(true);
    // Stored is not yet streamed: /messages shows the event once the stream position passes it.
    await poll(async () => ((await timelineIds(roomId)).includes(msgId) ? true : undefined));
  });

  it("a room whose Policy Server has no joined user does not use it", async () => {
    // A room naming ps.test that ps.test never joined.
    const lonely = await createRoom(c1, alice, { preset: "public_chat" });
    await setState(c1, alice, lonely, "m.room.policy", "", POLICY);
    const before = signRequests.length;
    const id = await send(c1, alice, lonely, "spam nobody checks");
    expect(signRequests.length).toBe(before);
    expect((await events().get(id))!.event.pdu.signatures).not.toHaveProperty("ps.test");

    // The Policy Server's only user leaves the first room: it stops using it (the leave itself is still checked).
    const leave = await cps.post(`${V3}/rooms/${enc(roomId)}/leave`, {}, { token: mod.accessToken });
    expect(leave.status, leave.text).toBe(200);
    await poll(async () => ((await hs1.server.services.membership.currentMembership(roomId, mod.userId)) === "leave" ? true : undefined));
    const afterLeave = signRequests.length;
    const id2 = await send(c1, alice, roomId, "spam after the Policy Server left");
    expect(signRequests.length).toBe(afterLeave);
    expect(await timelineIds(roomId)).toContain(id2);
  });

  it("an unreachable Policy Server: local sends fail (502), received events lacking its signature are soft-failed", async () => {
    // gone.test has a joined user but cannot be reached: hs1 holds its key (as if fetched earlier), and its join
    // arrives relayed by ps.test.
    const gone = { name: "gone.test", key: generateSigningKey() };
    await hs1.server.services.storage.serverKeys.upsertKeys([
      { server_name: "gone.test", key_id: gone.key.keyId, verify_key: gone.key.publicKeyBase64, valid_until_ts: Date.now() + 3_600_000, from_server: "gone.test", ts_added_ms: Date.now(), key_json: "{}" },
    ]);
    const room = await createRoom(c1, alice, { preset: "public_chat" });
    const join = await buildPdu(room, { type: "m.room.member", state_key: "@x:gone.test", sender: "@x:gone.test", content: { membership: "join" } }, gone);
    expect(await pushFromPs([join.pdu])).toEqual({ pdus: { [join.eventId]: {} } });
    expect(await hs1.server.services.membership.currentMembership(room, "@x:gone.test")).toBe("join");
    await setState(c1, alice, room, "m.room.policy", "", { via: "gone.test", public_keys: { ed25519: PS_KEY.publicKeyBase64 } });

    const res = await c1.put(`${V3}/rooms/${enc(room)}/send/m.room.message/${nextTxn()}`, text("nobody to ask"), { token: alice.accessToken });
    expect(expectError(res, 502, "M_UNKNOWN").error).toContain("gone.test");
    expect((await messages(c1, alice, room, { limit: 20 })).chunk.map((e) => e.content.body)).not.toContain("nobody to ask");

    const msg = await buildPdu(room, { type: "m.room.message", sender: "@x:gone.test", content: text("unsigned, unaskable") }, gone);
    expect(await pushFromPs([msg.pdu])).toEqual({ pdus: { [msg.eventId]: {} } });
    expect((await events().get(msg.eventId))!.softFailed).toBe(true);

    // While it keeps failing, received events are not sent to it again (each would wait for the request to fail).
    const lookups = () => network.log.filter((l) => l.includes("gone.test")).length;
    const before = lookups();
    const again = await buildPdu(room, { type: "m.room.message", sender: "@x:gone.test", content: text("still unaskable") }, gone);
    expect(await pushFromPs([again.pdu])).toEqual({ pdus: { [again.eventId]: {} } });
    expect((await events().get(again.eventId))!.softFailed).toBe(true);
    expect(lookups()).toBe(before);
  });

  it("GET /.well-known/matrix/policy_server: the configured keys, else 404 M_NOT_FOUND", async () => {
    const r = await c1.get("/.well-known/matrix/policy_server");
    expect(r.status, r.text).toBe(200);
    expect(r.body).toEqual({ public_keys: { ed25519: PS_KEY.publicKeyBase64 } });
    expectError(await cps.get("/.well-known/matrix/policy_server"), 404, "M_NOT_FOUND");
  });
});
