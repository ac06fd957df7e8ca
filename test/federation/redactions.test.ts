/**
 * Redactions received over federation (spec "Redactions", and for room versions 3+ "Handling redactions"): a
 * remote user's redaction of their own event is applied on receipt, and clients see the event redacted, with
 * `unsigned.redacted_because` and Synapse's `unsigned.redacted_by`, in /messages, /event, /context and /sync. A
 * redaction that must not apply (a foreign server's redaction without the redact level, a target in another room)
 * leaves its target alone and is withheld from clients, as Synapse does. A redaction that arrives before its target
 * applies once the target arrives.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { authEventTypesFor } from "../../src/core/events/auth_events.js";
import { stateMapKey } from "../../src/core/events/event.js";
import { signNewEvent } from "../../src/core/events/signing.js";
import type { JsonObject } from "../../src/core/json/types.js";
import { startServerPair } from "../helpers/federation.js";
import { closeFederatedServers } from "../helpers/federation_close.js";
import { Client, registerUser, type TestUser } from "../helpers/http.js";
import { createRoom, enc, messages, poll, send, sync, syncUntil, V3, type ClientEvent } from "../helpers/rooms.js";
import type { TestServer } from "../helpers/server.js";

let hs1: TestServer;
let hs2: TestServer;
let c1: Client;
let c2: Client;
let alice: TestUser;
let bob: TestUser;
let txnCounter = 0;

beforeAll(async () => {
  ({ hs1, hs2, c1, c2 } = await startServerPair());
  alice = await registerUser(c1);
  bob = await registerUser(c2);
});
afterAll(async () => {
  await closeFederatedServers([hs1, hs2]);
});

interface Draft {
  type: string;
  sender: string;
  content: JsonObject;
  redacts?: string;
}

/** A PDU for hs1's room as hs2 would build it on hs1's current head, signed by hs2. */
async function buildPdu(roomId: string, draft: Draft): Promise<{ eventId: string; pdu: JsonObject }> {
  const head = (await hs1.server.services.roomCore.persister.head(roomId))!;
  const version = head.version;
  const authIds = authEventTypesFor(version, draft)
    .map(([t, k]) => head.state.get(stateMapKey(t, k)))
    .filter((x): x is string => x !== undefined);
  const pdu: JsonObject = {
    auth_events: authIds,
    prev_events: [...head.extremities],
    type: draft.type,
    room_id: roomId,
    sender: draft.sender,
    content: draft.content,
    depth: head.maxDepth + 1,
    origin_server_ts: Date.now(),
    hashes: {},
  };
  if (draft.redacts !== undefined) {
    if (version.redactsInContent) pdu.content = { ...draft.content, redacts: draft.redacts };
    else pdu.redacts = draft.redacts;
  }
  const signed = signNewEvent(version, pdu, "hs2.test", hs2.signingKey);
  return { eventId: signed.eventId, pdu: signed.pdu };
}

async function sendTxn(pdus: JsonObject[]): Promise<Record<string, { error?: string }>> {
  const res = await hs2.server.services.federationClient.put("hs1.test", `/_matrix/federation/v1/send/redactions-${txnCounter++}`, {
    origin: "hs2.test",
    origin_server_ts: Date.now(),
    pdus,
    edus: [],
  });
  return res.pdus as Record<string, { error?: string }>;
}

/** alice's room on hs1 with bob (hs2) joined, the join seen by hs1. */
async function sharedRoom(body: JsonObject = {}): Promise<string> {
  const roomId = await createRoom(c1, alice, { preset: "public_chat", ...body });
  const r = await c2.post(`${V3}/join/${enc(roomId)}?server_name=hs1.test`, {}, { token: bob.accessToken });
  expect(r.status, r.text).toBe(200);
  await poll(async () => ((await hs1.server.services.membership.currentMembership(roomId, bob.userId)) === "join" ? true : undefined));
  return roomId;
}

async function getEvent(user: TestUser, roomId: string, eventId: string) {
  return c1.get<ClientEvent>(`${V3}/rooms/${enc(roomId)}/event/${enc(eventId)}`, { token: user.accessToken });
}

/** A sentinel message from bob, sent after `pdus`, and seen by alice: hs1 has processed what came before. */
async function sendThenSentinel(roomId: string, pdus: JsonObject[]): Promise<void> {
  const results = await sendTxn(pdus);
  for (const r of Object.values(results)) expect(r).toEqual({});
  const sentinel = await buildPdu(roomId, { type: "m.room.message", sender: bob.userId, content: { msgtype: "m.text", body: "sentinel" } });
  expect((await sendTxn([sentinel.pdu]))[sentinel.eventId]).toEqual({});
}

describe("redactions over federation", () => {
  for (const version of ["1", "10"]) {
    it(`a remote user's redaction of their own message is applied (room version ${version})`, async () => {
      const roomId = await sharedRoom({ room_version: version });
      const since = (await sync(c1, alice)).next_batch;
      const r = await c2.put(`${V3}/rooms/${enc(roomId)}/send/m.room.message/m1`, { msgtype: "m.text", body: "oops" }, { token: bob.accessToken });
      expect(r.status, r.text).toBe(200);
      const messageId = r.body.event_id as string;
      await poll(async () => ((await getEvent(alice, roomId, messageId)).status === 200 ? true : undefined));
      const red = await c2.put(`${V3}/rooms/${enc(roomId)}/redact/${enc(messageId)}/r1`, { reason: "typo" }, { token: bob.accessToken });
      expect(red.status, red.text).toBe(200);
      const redactionId = red.body.event_id as string;

      const s = await syncUntil(c1, alice, since, (x) => x.rooms.join[roomId]?.timeline.events.some((e) => e.event_id === redactionId) ?? false);
      const inSync = s.rooms.join[roomId]!.timeline.events.find((e) => e.event_id === messageId);
      if (inSync) {
        expect(inSync.content).toEqual({});
        expect(inSync.unsigned?.redacted_by).toBe(redactionId);
      }
      const page = await messages(c1, alice, roomId, { limit: 10 });
      expect(page.chunk[0]!.event_id).toBe(redactionId);
      expect(page.chunk[0]!.redacts).toBe(messageId);
      const original = page.chunk[1]!;
      expect(original.event_id).toBe(messageId);
      expect(original.content).toEqual({});
      expect(original.unsigned?.redacted_by).toBe(redactionId);
      expect(original.unsigned?.redacted_because?.event_id).toBe(redactionId);
      const ev = await getEvent(alice, roomId, messageId);
      expect(ev.body.unsigned?.redacted_by).toBe(redactionId);
      expect(ev.body.unsigned?.redacted_because?.content.reason).toBe("typo");
      const ctx = await c1.get<{ event: ClientEvent }>(`${V3}/rooms/${enc(roomId)}/context/${enc(messageId)}`, { token: alice.accessToken });
      expect(ctx.status, ctx.text).toBe(200);
      expect(ctx.body.event.unsigned?.redacted_by).toBe(redactionId);
      // A full /sync shows the redacted form too.
      const full = await sync(c1, alice);
      const fromFull = full.rooms.join[roomId]!.timeline.events.find((e) => e.event_id === messageId);
      if (fromFull) expect(fromFull.unsigned?.redacted_by).toBe(redactionId);
    });
  }

  it("a foreign server's redaction without the redact level is ignored and withheld (room version 10)", async () => {
    const roomId = await sharedRoom({ room_version: "10" });
    const messageId = await send(c1, alice, roomId, "Hello");
    await poll(async () => ((await c2.get(`${V3}/rooms/${enc(roomId)}/event/${enc(messageId)}`, { token: bob.accessToken })).status === 200 ? true : undefined));
    // bob (level 0) at hs2 claims to redact alice's (hs1) message: allowed by the v3+ auth rules, never applied.
    const fake = await buildPdu(roomId, { type: "m.room.redaction", sender: bob.userId, content: {}, redacts: messageId });
    await sendThenSentinel(roomId, [fake.pdu]);
    const ev = await getEvent(alice, roomId, messageId);
    expect(ev.body.content.body).toBe("Hello");
    expect(ev.body.unsigned?.redacted_by).toBeUndefined();
    const page = await messages(c1, alice, roomId, { limit: 10 });
    expect(page.chunk.map((e) => e.event_id)).not.toContain(fake.eventId);
    expect((await getEvent(alice, roomId, fake.eventId)).status).toBe(404);

    // alice's own redaction applies; a later fake does not replace it.
    const red = await c1.put(`${V3}/rooms/${enc(roomId)}/redact/${enc(messageId)}/r1`, {}, { token: alice.accessToken });
    expect(red.status, red.text).toBe(200);
    expect((await getEvent(alice, roomId, messageId)).body.unsigned?.redacted_by).toBe(red.body.event_id);
    const fake2 = await buildPdu(roomId, { type: "m.room.redaction", sender: bob.userId, content: {}, redacts: messageId });
    await sendThenSentinel(roomId, [fake2.pdu]);
    expect((await getEvent(alice, roomId, messageId)).body.unsigned?.redacted_by).toBe(red.body.event_id);
  });

  it("a redaction naming an event of another room is ignored and withheld", async () => {
    const room1 = await sharedRoom({ room_version: "10" });
    const room2 = await sharedRoom({ room_version: "10" });
    const inRoom1 = await buildPdu(room1, { type: "m.room.message", sender: bob.userId, content: { msgtype: "m.text", body: "hi" } });
    await sendThenSentinel(room1, [inRoom1.pdu]);
    const crossRoom = await buildPdu(room2, { type: "m.room.redaction", sender: bob.userId, content: {}, redacts: inRoom1.eventId });
    await sendThenSentinel(room2, [crossRoom.pdu]);
    expect((await getEvent(alice, room1, inRoom1.eventId)).body.content.body).toBe("hi");
    const page = await messages(c1, alice, room2, { limit: 10 });
    expect(page.chunk.map((e) => e.event_id)).not.toContain(crossRoom.eventId);
    const s = await sync(c1, alice);
    expect(s.rooms.join[room2]!.timeline.events.map((e) => e.event_id)).not.toContain(crossRoom.eventId);
  });

  it("a redaction received before its target applies when the target arrives", async () => {
    const roomId = await sharedRoom({ room_version: "10" });
    const target = await buildPdu(roomId, { type: "m.room.message", sender: bob.userId, content: { msgtype: "m.text", body: "soon gone" } });
    // The redaction does not cite the target: it arrives first, with nothing to apply to yet.
    const redaction = await buildPdu(roomId, { type: "m.room.redaction", sender: bob.userId, content: {}, redacts: target.eventId });
    expect((await sendTxn([redaction.pdu]))[redaction.eventId]).toEqual({});
    expect((await sendTxn([target.pdu]))[target.eventId]).toEqual({});
    const ev = await getEvent(alice, roomId, target.eventId);
    expect(ev.status, ev.text).toBe(200);
    expect(ev.body.content).toEqual({});
    expect(ev.body.unsigned?.redacted_by).toBe(redaction.eventId);
  });
});
