/**
 * Forged PDUs in a transaction (server-server API, "Checks performed on receipt of a PDU"): hs2 pushes hs1 a
 * transaction mixing a valid PDU with forged ones. Each PDU is judged on its own: a bad signature is dropped, a bad
 * content hash is stored redacted, an event the auth rules refuse is rejected; the response's `pdus` map has an
 * `error` for the dropped ones only (a rejected event was processed: `{}`, as Synapse answers), and only the valid
 * event (and the redacted copy) reach hs1's clients. Transactions are idempotent.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateSigningKey, signingKeyFromSeed, type SigningKey } from "../../src/core/crypto/ed25519.js";
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
  state_key?: string;
}

/**
 * A PDU for hs1's room, built on hs1's current state and forward extremities as hs2 would build it, then hashed and
 * signed as `hs2.test` with `key` (hs2's real signing key unless a forgery needs another). `tamper` edits the signed
 * PDU (after hashing and signing); `at` builds it on an earlier view of the room instead.
 */
async function buildPdu(
  roomId: string,
  draft: Draft,
  opts: { key?: SigningKey; tamper?: (pdu: JsonObject) => void; at?: Snapshot } = {},
): Promise<{ eventId: string; pdu: JsonObject }> {
  const head = opts.at ?? (await snapshot(roomId));
  const version = (await hs1.server.services.roomCore.persister.head(roomId))!.version;
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
  if (draft.state_key !== undefined) pdu.state_key = draft.state_key;
  if (version.eventIdFormat === "v1") throw new Error("use a room version with hashed event ids");
  const signed = signNewEvent(version, pdu, "hs2.test", opts.key ?? hs2.signingKey);
  opts.tamper?.(signed.pdu);
  return { eventId: signed.eventId, pdu: signed.pdu };
}

/** hs1's view of a room at some moment: what a PDU built "then" cites. */
interface Snapshot {
  state: Map<string, string>;
  extremities: string[];
  maxDepth: number;
}

async function snapshot(roomId: string): Promise<Snapshot> {
  const head = (await hs1.server.services.roomCore.persister.head(roomId))!;
  return { state: new Map(head.state), extremities: [...head.extremities], maxDepth: head.maxDepth };
}

/** PUT /send/{txnId} on hs1, signed by hs2. */
async function sendTxn(txnId: string, pdus: JsonObject[]): Promise<JsonObject> {
  return hs2.server.services.federationClient.put("hs1.test", `/_matrix/federation/v1/send/${enc(txnId)}`, {
    origin: "hs2.test",
    origin_server_ts: Date.now(),
    pdus,
    edus: [],
  });
}

/** alice's room on hs1 with bob (hs2) joined, the join seen by hs1. */
async function sharedRoom(body: JsonObject = {}): Promise<string> {
  const roomId = await createRoom(c1, alice, { preset: "public_chat", ...body });
  const r = await c2.post(`${V3}/join/${enc(roomId)}?server_name=hs1.test`, {}, { token: bob.accessToken });
  expect(r.status, r.text).toBe(200);
  await poll(async () => ((await hs1.server.services.membership.currentMembership(roomId, bob.userId)) === "join" ? true : undefined));
  return roomId;
}

const text = (body: string): JsonObject => ({ msgtype: "m.text", body });

describe("forged PDUs in a transaction", () => {
  for (const version of ["12", "10"]) {
    it(`the valid PDU is accepted, the forged ones are dropped, redacted or rejected (room version ${version})`, async () => {
      const roomId = await sharedRoom({ room_version: version });
      const since = (await sync(c1, alice)).next_batch;
      // Another key with hs2's key id: a signature hs1 cannot verify with hs2's published key.
      const impostor = signingKeyFromSeed(hs2.signingKey.keyId.slice("ed25519:".length), generateSigningKey().seed);

      const valid = await buildPdu(roomId, { type: "m.room.message", sender: bob.userId, content: text("genuine") });
      const badSig = await buildPdu(roomId, { type: "m.room.message", sender: bob.userId, content: text("forged signature") }, { key: impostor });
      // hs2 cannot speak for hs1's users: signed by hs2, but the sender's server (hs1) never signed it.
      const otherServer = await buildPdu(roomId, { type: "m.room.message", sender: alice.userId, content: text("forged alice") });
      // The content changed after signing: the signature (over the redacted form) holds, the content hash does not.
      const badHash = await buildPdu(roomId, { type: "m.room.message", sender: bob.userId, content: text("original") }, {
        tamper: (p) => {
          p.content = text("tampered content");
        },
      });
      // Not in the room: refused by the auth rules against its auth events.
      const outsider = await buildPdu(roomId, { type: "m.room.message", sender: "@mallory:hs2.test", content: text("from outside") });
      // bob has power 0: he may not raise himself to 100.
      const pl = (await hs1.server.services.roomCore.events.get((await hs1.server.services.roomCore.persister.head(roomId))!.state.get(stateMapKey("m.room.power_levels", ""))!))!;
      const powerGrab = await buildPdu(roomId, {
        type: "m.room.power_levels",
        state_key: "",
        sender: bob.userId,
        content: { ...pl.event.content, users: { ...(pl.event.content.users as JsonObject), [bob.userId]: 100 } },
      });

      const txnId = `forged-${version}-${txnCounter++}`;
      const pdus = [valid, badSig, otherServer, badHash, outsider, powerGrab].map((p) => p.pdu);
      const res = await sendTxn(txnId, pdus);
      const results = res.pdus as Record<string, { error?: string }>;
      expect(Object.keys(results).sort()).toEqual([valid, badSig, otherServer, badHash, outsider, powerGrab].map((p) => p.eventId).sort());
      expect(results[valid.eventId]).toEqual({});
      // Redacted, not refused: the spec treats a hash mismatch as a redacted copy of the event.
      expect(results[badHash.eventId]).toEqual({});
      // Dropped before the auth rules (steps 1-2): the sender is told why.
      for (const dropped of [badSig, otherServer]) {
        expect(typeof results[dropped.eventId]?.error, JSON.stringify(results)).toBe("string");
      }
      // Rejected by the auth rules: processed, so no error ("If no error is present, the PDU can be considered
      // successfully handled"), though it never reaches the room.
      for (const rejected of [outsider, powerGrab]) expect(results[rejected.eventId], JSON.stringify(results)).toEqual({});

      // What hs1 stored.
      const events = hs1.server.services.roomCore.events;
      expect(await events.get(badSig.eventId)).toBeUndefined();
      expect(await events.get(otherServer.eventId)).toBeUndefined();
      const redacted = await events.get(badHash.eventId);
      expect(redacted, "the PDU with a bad hash is stored").toBeDefined();
      expect(redacted!.rejected).toBe(false);
      expect(redacted!.event.content).toEqual({});
      for (const r of [outsider, powerGrab]) {
        const stored = await events.get(r.eventId);
        expect(stored?.rejected, r.eventId).toBe(true);
      }
      // bob's power is unchanged.
      const plNow = await c1.get(`${V3}/rooms/${enc(roomId)}/state/m.room.power_levels/`, { token: alice.accessToken });
      expect((plNow.body.users as Record<string, number>)[bob.userId]).toBeUndefined();

      // alice sees the genuine message; nothing forged reaches her, by /sync, /messages or /event.
      const s = await syncUntil(c1, alice, since, (r) => r.rooms.join[roomId]?.timeline.events.some((e) => e.event_id === valid.eventId) ?? false);
      const forgedBodies = ["forged signature", "forged alice", "tampered content", "original", "from outside"];
      const seen: ClientEvent[] = [...(s.rooms.join[roomId]?.timeline.events ?? []), ...(await messages(c1, alice, roomId, { limit: 50 })).chunk];
      for (const e of seen) {
        expect(forgedBodies).not.toContain(e.content.body);
        expect([badSig.eventId, otherServer.eventId, outsider.eventId, powerGrab.eventId]).not.toContain(e.event_id);
        if (e.event_id === badHash.eventId) expect(e.content).toEqual({});
      }
      for (const r of [badSig, otherServer, outsider, powerGrab]) {
        const got = await c1.get(`${V3}/rooms/${enc(roomId)}/event/${enc(r.eventId)}`, { token: alice.accessToken });
        expect(got.status, `${r.eventId}: ${got.text}`).toBe(404);
      }

      // Replaying the transaction id gives the same answer, and changes nothing.
      const again = await sendTxn(txnId, pdus);
      expect(again).toEqual(res);

      // The room still works both ways afterwards (hs2 fetches the redacted event it never had when alice's next
      // message builds on it).
      await send(c1, alice, roomId, "after the forgeries");
      await poll(async () => {
        const r = await messages(c2, bob, roomId, { limit: 10 });
        return r.chunk.some((e) => e.content.body === "after the forgeries") ? true : undefined;
      });
    });
  }

  it("a PDU allowed by the state before it but not by current state is soft-failed: stored, never shown", async () => {
    const roomId = await sharedRoom();
    const before = await snapshot(roomId);
    const kick = await c1.post(`${V3}/rooms/${enc(roomId)}/kick`, { user_id: bob.userId }, { token: alice.accessToken });
    expect(kick.status, kick.text).toBe(200);
    const since = (await sync(c1, alice)).next_batch;
    // As if bob had sent it before hearing of the kick: it cites the room as it was then.
    const late = await buildPdu(roomId, { type: "m.room.message", sender: bob.userId, content: text("sent before the kick arrived") }, { at: before });
    const res = await sendTxn(`softfail-${txnCounter++}`, [late.pdu]);
    // Not an error (spec step 6): the event is valid, it just does not reach clients or current state.
    expect(res).toEqual({ pdus: { [late.eventId]: {} } });
    const stored = await hs1.server.services.roomCore.events.get(late.eventId);
    expect(stored?.softFailed).toBe(true);
    expect((await hs1.server.services.roomCore.persister.head(roomId))!.extremities).not.toContain(late.eventId);
    await send(c1, alice, roomId, "marker");
    const s = await syncUntil(c1, alice, since, (r) => r.rooms.join[roomId]?.timeline.events.some((e) => e.content.body === "marker") ?? false);
    expect(s.rooms.join[roomId]!.timeline.events.map((e) => e.event_id)).not.toContain(late.eventId);
    expect((await messages(c1, alice, roomId, { limit: 20 })).chunk.map((e) => e.event_id)).not.toContain(late.eventId);
  });

  it("a transaction id replayed with other PDUs returns the first response and processes nothing new", async () => {
    const roomId = await sharedRoom();
    const first = await buildPdu(roomId, { type: "m.room.message", sender: bob.userId, content: text("first") });
    const txnId = `replay-${txnCounter++}`;
    const res = await sendTxn(txnId, [first.pdu]);
    expect(res).toEqual({ pdus: { [first.eventId]: {} } });
    const second = await buildPdu(roomId, { type: "m.room.message", sender: bob.userId, content: text("second") });
    const again = await sendTxn(txnId, [second.pdu]);
    expect(again).toEqual(res);
    expect(await hs1.server.services.roomCore.events.get(second.eventId)).toBeUndefined();
    // Concurrent retries of one transaction share one answer.
    const third = await buildPdu(roomId, { type: "m.room.message", sender: bob.userId, content: text("third") });
    const txn3 = `replay-${txnCounter++}`;
    const both = await Promise.all([sendTxn(txn3, [third.pdu]), sendTxn(txn3, [third.pdu])]);
    expect(both[0]).toEqual({ pdus: { [third.eventId]: {} } });
    expect(both[1]).toEqual(both[0]);
  });
});
