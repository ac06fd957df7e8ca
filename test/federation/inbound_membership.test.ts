/**
 * The resident's side of send_join and invite, driven by hand as another server would (hs2.test signs requests and
 * events with its real key; hs1.test is the resident):
 *  - send_join answers the whole auth chain of the state, events that are also in `state` included;
 *  - an unsigned, unhashed or badly signed join or invite is 403 M_FORBIDDEN; a malformed one 400 M_BAD_JSON;
 *  - a request whose body holds a float is authenticated as its sender signed it (the number as sent), then refused
 *    as 400 M_BAD_JSON by room versions that forbid floats (not 401: the signature is fine).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateSigningKey, signingKeyFromSeed } from "../../src/core/crypto/ed25519.js";
import { signRequest } from "../../src/core/federation/xmatrix.js";
import { eventIdOf } from "../../src/core/events/ids.js";
import { signNewEvent } from "../../src/core/events/signing.js";
import { canonicalJson, JsonNumberLiteral } from "../../src/core/json/canonical.js";
import type { JsonObject, JsonValue } from "../../src/core/json/types.js";
import { getRoomVersion } from "../../src/core/rooms/versions.js";
import { FederationError } from "../../src/federation/errors.js";
import { startServerPair } from "../helpers/federation.js";
import { closeFederatedServers } from "../helpers/federation_close.js";
import { Client, registerUser, type Response, type TestUser } from "../helpers/http.js";
import { createRoom, enc } from "../helpers/rooms.js";
import type { TestServer } from "../helpers/server.js";

let hs1: TestServer;
let hs2: TestServer;
let c1: Client;
let c2: Client;
let alice: TestUser;
let bob: TestUser;

beforeAll(async () => {
  ({ hs1, hs2, c1, c2 } = await startServerPair());
  alice = await registerUser(c1);
  bob = await registerUser(c2);
});
afterAll(async () => {
  await closeFederatedServers([hs1, hs2]);
});

const fed = () => hs2.server.services.federationClient;

/** hs1's make_join template for a user of hs2. */
async function template(roomId: string, userId: string, version: string): Promise<JsonObject> {
  const made = await fed().get("hs1.test", `/_matrix/federation/v1/make_join/${enc(roomId)}/${enc(userId)}`, { ver: [version] });
  return made.event as JsonObject;
}

/** The failure of a federation request made by hs2. */
async function refusal(p: Promise<unknown>): Promise<FederationError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(FederationError);
  return err as FederationError;
}

/** A request to hs1 signed by hs2 with a body sent as `text` (which JSON.stringify could not produce). */
async function rawSigned(method: string, uri: string, content: JsonValue, text: string): Promise<Response> {
  const authorization = signRequest({ method, uri, origin: "hs2.test", destination: "hs1.test", content }, hs2.signingKey);
  const res = await fetch(hs1.baseUrl + uri, { method, headers: { authorization, "content-type": "application/json" }, body: text });
  const body = await res.text();
  return { status: res.status, headers: res.headers, body: body ? (JSON.parse(body) as Record<string, unknown>) : {}, text: body };
}

describe("send_join's auth_chain", () => {
  for (const prefix of ["v2", "v1"]) {
    it(`is the whole auth chain of the state, whether or not an event is also in the state (${prefix})`, async () => {
      const roomId = await createRoom(c1, alice, { preset: "public_chat", room_version: "10" });
      const signed = signNewEvent(getRoomVersion("10")!, { ...(await template(roomId, bob.userId, "10")), hashes: {} }, "hs2.test", hs2.signingKey);
      const path = `/_matrix/federation/${prefix}/send_join/${enc(roomId)}/${enc(signed.eventId)}`;
      const res = prefix === "v2" ? await fed().put("hs1.test", path, signed.pdu) : await fed().putV1("hs1.test", path, signed.pdu);
      const state = res.state as JsonObject[];
      const chain = res.auth_chain as JsonObject[];
      expect(chain.length).toBeGreaterThan(0);
      const byId = new Map<string, JsonObject>();
      for (const e of [...state, ...chain]) byId.set(hs1IdOf(e), e);
      // Every auth event of every state event, recursively, is in the auth chain.
      const want = new Set<string>();
      const walk = (e: JsonObject) => {
        for (const id of e.auth_events as string[]) {
          if (want.has(id)) continue;
          want.add(id);
          walk(byId.get(id)!);
        }
      };
      for (const e of state) walk(e);
      expect(new Set(chain.map(hs1IdOf))).toEqual(want);
      expect(chain.some((e) => e.type === "m.room.create")).toBe(true);
    });
  }
});

describe("make_join into a room we have left", () => {
  it("is 404 M_NOT_FOUND once every local user has left", async () => {
    const creator = await registerUser(c1);
    const roomId = await createRoom(c1, creator, { preset: "public_chat", room_version: "10" });
    expect((await template(roomId, bob.userId, "10")).type).toBe("m.room.member");
    expect((await c1.post(`/_matrix/client/v3/rooms/${enc(roomId)}/leave`, {}, { token: creator.accessToken })).status).toBe(200);
    const err = await refusal(template(roomId, bob.userId, "10"));
    expect([err.status, err.errcode]).toEqual([404, "M_NOT_FOUND"]);
  });
});

describe("the legacy top-level origin on the resident's events", () => {
  it("v1-v10: every event hs1 built names it as origin (the template too); v11+: none does", async () => {
    for (const [version, origin] of [["1", "hs1.test"], ["10", "hs1.test"], ["11", undefined]] as const) {
      const roomId = await createRoom(c1, alice, { preset: "public_chat", room_version: version });
      const t = await template(roomId, bob.userId, version);
      expect(t.origin, version).toBe(origin);
      const id: JsonObject = version === "1" ? { event_id: `$join${Date.now()}:hs2.test` } : {};
      const signed = signNewEvent(getRoomVersion(version)!, { ...t, ...id, origin: "hs2.test", hashes: {} }, "hs2.test", hs2.signingKey);
      const res = await fed().put("hs1.test", `/_matrix/federation/v2/send_join/${enc(roomId)}/${enc(signed.eventId)}`, signed.pdu);
      const theirs = [...(res.state as JsonObject[]), ...(res.auth_chain as JsonObject[])].filter((e) => e.sender === alice.userId);
      expect(theirs.length).toBeGreaterThan(0);
      for (const e of theirs) expect(e.origin, `${version} ${String(e.type)}`).toBe(origin);
    }
  });
});

/** The event id of a v10 PDU (its reference hash). */
function hs1IdOf(pdu: JsonObject): string {
  return eventIdOf(getRoomVersion("10")!, pdu);
}

describe("signature and format failures on send_join and invite", () => {
  it("an unsigned and unhashed join is 403 M_FORBIDDEN", async () => {
    const roomId = await createRoom(c1, alice, { preset: "public_chat", room_version: "10" });
    const t = await template(roomId, bob.userId, "10");
    const pdu: JsonObject = { ...t };
    delete pdu.hashes;
    delete pdu.signatures;
    const err = await refusal(fed().put("hs1.test", `/_matrix/federation/v2/send_join/${enc(roomId)}/${enc("$whatever")}`, pdu));
    expect([err.status, err.errcode]).toEqual([403, "M_FORBIDDEN"]);
  });

  it("a join signed with a key that is not hs2's is 403 M_FORBIDDEN", async () => {
    const roomId = await createRoom(c1, alice, { preset: "public_chat", room_version: "10" });
    const impostor = signingKeyFromSeed(hs2.signingKey.keyId.slice("ed25519:".length), generateSigningKey().seed);
    const signed = signNewEvent(getRoomVersion("10")!, { ...(await template(roomId, bob.userId, "10")), hashes: {} }, "hs2.test", impostor);
    const err = await refusal(fed().put("hs1.test", `/_matrix/federation/v2/send_join/${enc(roomId)}/${enc(signed.eventId)}`, signed.pdu));
    expect([err.status, err.errcode]).toEqual([403, "M_FORBIDDEN"]);
    expect(await hs1.server.services.membership.currentMembership(roomId, bob.userId)).toBeUndefined();
  });

  it("a malformed join (depth not an integer) is still 400 M_BAD_JSON", async () => {
    const roomId = await createRoom(c1, alice, { preset: "public_chat", room_version: "10" });
    const signed = signNewEvent(getRoomVersion("10")!, { ...(await template(roomId, bob.userId, "10")), depth: "deep", hashes: {} }, "hs2.test", hs2.signingKey);
    const err = await refusal(fed().put("hs1.test", `/_matrix/federation/v2/send_join/${enc(roomId)}/${enc(signed.eventId)}`, signed.pdu));
    expect([err.status, err.errcode]).toEqual([400, "M_BAD_JSON"]);
  });

  it("an invite not signed by the inviting server is 403 M_FORBIDDEN", async () => {
    const inviter = await registerUser(c2);
    const invite: JsonObject = {
      type: "m.room.member",
      state_key: alice.userId,
      sender: inviter.userId,
      room_id: "!unknown:hs2.test",
      content: { membership: "invite" },
      depth: 5,
      origin_server_ts: Date.now(),
      prev_events: [],
      auth_events: [],
    };
    const err = await refusal(fed().put("hs1.test", `/_matrix/federation/v2/invite/${enc("!unknown:hs2.test")}/${enc("$x")}`, { room_version: "10", event: invite, invite_room_state: [] }));
    expect([err.status, err.errcode]).toEqual([403, "M_FORBIDDEN"]);
  });
});

describe("whom an invite may be for", () => {
  /** An invite from bob (hs2) to `invitee`, for a room of hs2's, signed by hs2. */
  async function invite(invitee: string): Promise<{ path: string; body: JsonObject }> {
    const roomId = await createRoom(c2, bob, { room_version: "10" });
    const head = (await hs2.server.services.roomCore.persister.head(roomId))!;
    const pdu: JsonObject = {
      type: "m.room.member",
      state_key: invitee,
      sender: bob.userId,
      room_id: roomId,
      content: { membership: "invite" },
      depth: head.maxDepth + 1,
      origin_server_ts: Date.now(),
      prev_events: [...head.extremities],
      auth_events: [...head.state.values()].slice(0, 3),
      hashes: {},
    };
    const signed = signNewEvent(getRoomVersion("10")!, pdu, "hs2.test", hs2.signingKey);
    return { path: `/_matrix/federation/v2/invite/${enc(roomId)}/${enc(signed.eventId)}`, body: { room_version: "10", event: signed.pdu, invite_room_state: [] } };
  }

  it("a user of ours that does not exist (yet) is invited as Synapse does: countersigned, 200", async () => {
    const { path, body } = await invite("@nobody-here:hs1.test");
    const res = await fed().put("hs1.test", path, body);
    expect(Object.keys(((res.event as JsonObject).signatures as JsonObject) ?? {}).sort()).toEqual(["hs1.test", "hs2.test"]);
  });

  it("a user of another server is 400", async () => {
    const { path, body } = await invite("@someone:hs3.test");
    const err = await refusal(fed().put("hs1.test", path, body));
    expect([err.status, err.errcode]).toEqual([400, "M_INVALID_PARAM"]);
  });
});

describe("a float in a signed request body", () => {
  const float = new JsonNumberLiteral("1.1");

  it("send_join: the signature is checked against the number as sent, then the room version refuses it: 400 M_BAD_JSON", async () => {
    const roomId = await createRoom(c1, alice, { preset: "public_chat", room_version: "10" });
    const t = await template(roomId, bob.userId, "10");
    const pdu = { ...t, content: { ...(t.content as JsonObject), bad_val: float as unknown as JsonValue }, hashes: {} };
    const signed = signNewEvent(getRoomVersion("10")!, pdu, "hs2.test", hs2.signingKey);
    const uri = `/_matrix/federation/v2/send_join/${enc(roomId)}/${enc(signed.eventId)}`;
    const res = await rawSigned("PUT", uri, signed.pdu, canonicalJson(signed.pdu));
    expect(res.status, res.text).toBe(400);
    expect(res.body.errcode).toBe("M_BAD_JSON");
    // The same body with a signature that does not match it is still 401.
    const tampered = canonicalJson(signed.pdu).replace("1.1", "1.2");
    const forged = await rawSigned("PUT", uri, signed.pdu, tampered);
    expect([forged.status, forged.body.errcode]).toEqual([401, "M_UNAUTHORIZED"]);
  });

  it("invite: 400 M_BAD_JSON", async () => {
    const inviterRoom = await createRoom(c2, bob, { room_version: "10" });
    const head = (await hs2.server.services.roomCore.persister.head(inviterRoom))!;
    const invite = {
      type: "m.room.member",
      state_key: alice.userId,
      sender: bob.userId,
      room_id: inviterRoom,
      content: { membership: "invite", bad_val: float as unknown as JsonValue },
      depth: head.maxDepth + 1,
      origin_server_ts: Date.now(),
      prev_events: [...head.extremities],
      auth_events: [],
      hashes: {},
    };
    const signed = signNewEvent(getRoomVersion("10")!, invite, "hs2.test", hs2.signingKey);
    const body = { room_version: "10", event: signed.pdu, invite_room_state: [] };
    const res = await rawSigned("PUT", `/_matrix/federation/v2/invite/${enc(inviterRoom)}/${enc(signed.eventId)}`, body, canonicalJson(body));
    expect(res.status, res.text).toBe(400);
    expect(res.body.errcode).toBe("M_BAD_JSON");
  });

  it("/send: the transaction is accepted (200) and the PDU with the float is not", async () => {
    const roomId = await createRoom(c1, alice, { preset: "public_chat", room_version: "10" });
    const join = await c2.post(`/_matrix/client/v3/join/${enc(roomId)}?server_name=hs1.test`, {}, { token: bob.accessToken });
    expect(join.status, join.text).toBe(200);
    const head = (await hs1.server.services.roomCore.persister.head(roomId))!;
    const pdu = {
      type: "m.room.message",
      sender: bob.userId,
      room_id: roomId,
      content: { msgtype: "m.text", body: "float", bad_val: float as unknown as JsonValue },
      depth: head.maxDepth + 1,
      origin_server_ts: Date.now(),
      prev_events: [...head.extremities],
      auth_events: [],
      hashes: {},
    };
    const signed = signNewEvent(getRoomVersion("10")!, pdu, "hs2.test", hs2.signingKey);
    const txn = { origin: "hs2.test", origin_server_ts: Date.now(), pdus: [signed.pdu], edus: [] };
    const res = await rawSigned("PUT", `/_matrix/federation/v1/send/float-${Date.now()}`, txn, canonicalJson(txn));
    expect(res.status, res.text).toBe(200);
    expect(await hs1.server.services.roomCore.events.get(signed.eventId)).toBeUndefined();
  });
});
