/**
 * Room events over HTTP (spec "Sending events to a room", "Getting events for a room", "Redactions", /messages,
 * /context, timestamp_to_event): send with transaction idempotency, state, members, redaction, pagination.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client, expectError, login, registerUser, type TestUser } from "../helpers/http.js";
import {
  V3,
  allState,
  bodies,
  createRoom,
  enc,
  findState,
  getState,
  inviteUser,
  joinRoom,
  leaveRoom,
  messages,
  poll,
  roomWith,
  send,
  setState,
  sync,
  type ClientEvent,
  type MessagesResponse,
} from "../helpers/rooms.js";
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

const user = () => registerUser(c);
const room = (roomId: string) => `${V3}/rooms/${enc(roomId)}`;

async function getEvent(u: TestUser, roomId: string, eventId: string): Promise<ClientEvent> {
  const res = await c.get<ClientEvent>(`${room(roomId)}/event/${enc(eventId)}`, { token: u.accessToken });
  if (res.status !== 200) throw new Error(`event: ${res.status} ${res.text}`);
  return res.body;
}

/** Sends `n` messages "<prefix>0".."<prefix>n-1" in order; returns their ids. */
async function sendMany(u: TestUser, roomId: string, n: number, prefix = "m"): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) ids.push(await send(c, u, roomId, `${prefix}${i}`));
  return ids;
}

describe("send", () => {
  it("returns the event id; the event reads back with the sender's transaction id", async () => {
    const alice = await user();
    const roomId = await createRoom(c, alice);
    const res = await c.put(`${room(roomId)}/send/m.room.message/tx1`, { msgtype: "m.text", body: "hello" }, { token: alice.accessToken });
    expect(res.status, res.text).toBe(200);
    expect(Object.keys(res.body)).toEqual(["event_id"]);
    const ev = await getEvent(alice, roomId, res.body.event_id as string);
    expect(ev).toMatchObject({ type: "m.room.message", sender: alice.userId, room_id: roomId, content: { msgtype: "m.text", body: "hello" } });
    expect(ev.unsigned!.transaction_id).toBe("tx1");
    expect(typeof ev.origin_server_ts).toBe("number");
    // POST without a transaction id also works.
    const post = await c.post(`${room(roomId)}/send/m.room.message`, { msgtype: "m.text", body: "no txn" }, { token: alice.accessToken });
    expect(post.status, post.text).toBe(200);
  });

  it("is idempotent per device and transaction id", async () => {
    const alice = await user();
    const roomId = await createRoom(c, alice);
    const path = `${room(roomId)}/send/m.room.message/same-txn`;
    const first = await c.put(path, { msgtype: "m.text", body: "once" }, { token: alice.accessToken });
    const again = await c.put(path, { msgtype: "m.text", body: "once" }, { token: alice.accessToken });
    expect(again.status).toBe(200);
    expect(again.body.event_id).toBe(first.body.event_id);
    // Concurrent retries agree too.
    const concurrent = await Promise.all([1, 2, 3].map(() => c.put(`${room(roomId)}/send/m.room.message/conc`, { msgtype: "m.text", body: "c" }, { token: alice.accessToken })));
    expect(new Set(concurrent.map((r) => r.body.event_id)).size).toBe(1);
    // Another device of the same user with the same txn id sends a new event.
    const other = await login(c, alice.userId, alice.password);
    const fromOther = await c.put(path, { msgtype: "m.text", body: "once" }, { token: other.body.access_token as string });
    expect(fromOther.status).toBe(200);
    expect(fromOther.body.event_id).not.toBe(first.body.event_id);
    const page = await messages(c, alice, roomId, { limit: 20 });
    expect(bodies(page.chunk).filter((b) => b === "once")).toHaveLength(2);
    expect(bodies(page.chunk).filter((b) => b === "c")).toHaveLength(1);
  });

  it("403 when not joined; 404-or-403 for unknown rooms; 400 for an invalid room id", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await createRoom(c, alice, { preset: "public_chat" });
    expectError(await c.put(`${room(roomId)}/send/m.room.message/t`, { body: "x" }, { token: bob.accessToken }), 403, "M_FORBIDDEN");
    // Invited is not joined.
    await inviteUser(c, alice, roomId, bob.userId);
    expectError(await c.put(`${room(roomId)}/send/m.room.message/t2`, { body: "x" }, { token: bob.accessToken }), 403, "M_FORBIDDEN");
    const unknown = await c.put(`${room("!nosuchroom:test.local")}/send/m.room.message/t`, { body: "x" }, { token: bob.accessToken });
    expect([403, 404]).toContain(unknown.status);
    expectError(await c.put(`${room("notaroom")}/send/m.room.message/t`, { body: "x" }, { token: alice.accessToken }), 400, "M_INVALID_PARAM");
  });

  it("403 when the power levels forbid the event type", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await roomWith(c, alice, [bob], { room_version: "11", power_level_content_override: { events: { "org.example.vip": 50 } } });
    expectError(await c.put(`${room(roomId)}/send/org.example.vip/t`, {}, { token: bob.accessToken }), 403, "M_FORBIDDEN");
    expect((await c.put(`${room(roomId)}/send/org.example.vip/t`, {}, { token: alice.accessToken })).status).toBe(200);
  });

  for (const version of ["6", "10", "12"]) {
    it(`v${version}: floats, exponents and out-of-range integers in content are 400 M_BAD_JSON`, async () => {
      const alice = await user();
      const roomId = await createRoom(c, alice, { room_version: version });
      for (const raw of ['{"n": 1.5}', '{"n": 1e3}', '{"n": 1.0}', '{"n": 9007199254740992}', '{"a": {"b": [-0.5]}}']) {
        const res = await c.put(`${room(roomId)}/send/m.room.message/${Math.random()}`, raw, { token: alice.accessToken });
        expect(res.status, `${raw}: ${res.text}`).toBe(400);
        expect(res.body.errcode).toBe("M_BAD_JSON");
      }
      expectError(await c.put(`${room(roomId)}/state/org.example.s/`, '{"n": 2.5}', { token: alice.accessToken }), 400, "M_BAD_JSON");
      // Plain integers at the limit are fine.
      const ok = await c.put(`${room(roomId)}/send/m.room.message/${Math.random()}`, '{"n": 9007199254740991, "m": -9007199254740991}', { token: alice.accessToken });
      expect(ok.status, ok.text).toBe(200);
    });
  }

  it("concurrent sends from several users all land, once each, in one order for everyone", async () => {
    const alice = await user();
    const bob = await user();
    const carol = await user();
    const roomId = await roomWith(c, alice, [bob, carol]);
    const senders = [alice, bob, carol];
    const sent = await Promise.all(Array.from({ length: 30 }, (_, i) => send(c, senders[i % 3]!, roomId, `p${i}`)));
    expect(new Set(sent).size).toBe(30);
    const page = await messages(c, alice, roomId, { limit: 100 });
    const ids = page.chunk.filter((e) => e.type === "m.room.message").map((e) => e.event_id);
    expect([...ids].sort()).toEqual([...sent].sort());
    const fromBob = await messages(c, bob, roomId, { limit: 100 });
    expect(fromBob.chunk.filter((e) => e.type === "m.room.message").map((e) => e.event_id)).toEqual(ids);
    const s = await sync(c, carol, { filter: { room: { timeline: { limit: 100 } } } });
    expect(s.rooms.join[roomId]!.timeline.events.filter((e) => e.type === "m.room.message").map((e) => e.event_id)).toEqual([...ids].reverse());
  });

  it("413 M_TOO_LARGE for an event over 64 KiB", async () => {
    const alice = await user();
    const roomId = await createRoom(c, alice);
    const big = { msgtype: "m.text", body: "x".repeat(70_000) };
    expectError(await c.put(`${room(roomId)}/send/m.room.message/big`, big, { token: alice.accessToken }), 413, "M_TOO_LARGE");
    expectError(await c.put(`${room(roomId)}/state/org.example.big/`, big, { token: alice.accessToken }), 413, "M_TOO_LARGE");
    // The room is unharmed.
    await send(c, alice, roomId, "still fine");
  });

  it("400 M_NOT_JSON / M_BAD_JSON for a body that is not a JSON object", async () => {
    const alice = await user();
    const roomId = await createRoom(c, alice);
    expectError(await c.put(`${room(roomId)}/send/m.room.message/nj`, "{nope", { token: alice.accessToken }), 400, "M_NOT_JSON");
    expectError(await c.put(`${room(roomId)}/send/m.room.message/arr`, "[1,2]", { token: alice.accessToken }), 400, "M_BAD_JSON");
  });
});

describe("state", () => {
  it("PUT then GET by type and state key; ?format=event returns the event", async () => {
    const alice = await user();
    const roomId = await createRoom(c, alice);
    const id = await setState(c, alice, roomId, "org.example.thing", "key1", { value: 1 });
    expect(await getState(c, alice, roomId, "org.example.thing", "key1")).toEqual({ value: 1 });
    const full = await c.get<ClientEvent>(`${room(roomId)}/state/org.example.thing/key1?format=event`, { token: alice.accessToken });
    expect(full.status).toBe(200);
    expect(full.body).toMatchObject({ event_id: id, type: "org.example.thing", state_key: "key1", sender: alice.userId, content: { value: 1 }, room_id: roomId });
    // The empty state key may be omitted from the path.
    const topic = await c.put(`${room(roomId)}/state/m.room.topic`, { topic: "t" }, { token: alice.accessToken });
    expect(topic.status, topic.text).toBe(200);
    expect((await c.get(`${room(roomId)}/state/m.room.topic`, { token: alice.accessToken })).body).toEqual({ topic: "t" });
    expect(await getState(c, alice, roomId, "m.room.topic", "")).toEqual({ topic: "t" });
  });

  it("GET of unset state is 404 M_NOT_FOUND", async () => {
    const alice = await user();
    const roomId = await createRoom(c, alice);
    expectError(await c.get(`${room(roomId)}/state/m.room.topic/`, { token: alice.accessToken }), 404, "M_NOT_FOUND");
    expectError(await c.get(`${room(roomId)}/state/org.example.x/k`, { token: alice.accessToken }), 404, "M_NOT_FOUND");
  });

  it("setting the same state twice returns the same event id", async () => {
    const alice = await user();
    const roomId = await createRoom(c, alice);
    const a = await setState(c, alice, roomId, "m.room.topic", "", { topic: "same" });
    const b = await setState(c, alice, roomId, "m.room.topic", "", { topic: "same" });
    expect(b).toBe(a);
    const d = await setState(c, alice, roomId, "m.room.topic", "", { topic: "different" });
    expect(d).not.toBe(a);
  });

  it("403 without the power level, and for non-members", async () => {
    const alice = await user();
    const bob = await user();
    const carol = await user();
    const roomId = await roomWith(c, alice, [bob]);
    expectError(await c.put(`${room(roomId)}/state/m.room.name/`, { name: "x" }, { token: bob.accessToken }), 403, "M_FORBIDDEN");
    expectError(await c.put(`${room(roomId)}/state/m.room.power_levels/`, { users: { [bob.userId]: 100 } }, { token: bob.accessToken }), 403, "M_FORBIDDEN");
    expectError(await c.put(`${room(roomId)}/state/m.room.name/`, { name: "x" }, { token: carol.accessToken }), 403, "M_FORBIDDEN");
    // A state key naming another user is reserved to them.
    expectError(await c.put(`${room(roomId)}/state/org.example.s/${enc(alice.userId)}`, {}, { token: bob.accessToken }), 403, "M_FORBIDDEN");
    // Non-members of a shared-history room cannot read its state.
    expectError(await c.get(`${room(roomId)}/state`, { token: carol.accessToken }), 403, "M_FORBIDDEN");
    expectError(await c.get(`${room(roomId)}/state/m.room.name/`, { token: carol.accessToken }), 403, "M_FORBIDDEN");
  });

  it("GET /state returns the full current state", async () => {
    const alice = await user();
    const roomId = await createRoom(c, alice, { name: "N", topic: "T" });
    const state = await allState(c, alice, roomId);
    for (const t of ["m.room.create", "m.room.power_levels", "m.room.join_rules", "m.room.history_visibility", "m.room.name", "m.room.topic"]) {
      expect(findState(state, t), t).toBeDefined();
    }
    expect(findState(state, "m.room.member", alice.userId)).toBeDefined();
    for (const e of state) {
      expect(e.room_id).toBe(roomId);
      expect(typeof e.event_id).toBe("string");
      expect(typeof e.state_key).toBe("string");
    }
  });

  it("a user who left reads the state as it was when they left", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await roomWith(c, alice, [bob], { name: "Before" });
    await leaveRoom(c, bob, roomId);
    await setState(c, alice, roomId, "m.room.name", "", { name: "After" });
    expect(await getState(c, bob, roomId, "m.room.name")).toEqual({ name: "Before" });
    const state = await allState(c, bob, roomId);
    expect(findState(state, "m.room.name")!.content).toEqual({ name: "Before" });
  });
});

describe("GET /event", () => {
  it("404 for unknown events, events of other rooms, and events the user may not see", async () => {
    const alice = await user();
    const bob = await user();
    const roomA = await createRoom(c, alice);
    const roomB = await createRoom(c, alice);
    const inB = await send(c, alice, roomB, "in B");
    expectError(await c.get(`${room(roomA)}/event/${enc("$doesnotexist")}`, { token: alice.accessToken }), 404, "M_NOT_FOUND");
    expectError(await c.get(`${room(roomA)}/event/${enc(inB)}`, { token: alice.accessToken }), 404, "M_NOT_FOUND");
    // Bob never joined room B (shared history, not world readable).
    expectError(await c.get(`${room(roomB)}/event/${enc(inB)}`, { token: bob.accessToken }), 404, "M_NOT_FOUND");
  });
});

describe("members", () => {
  it("/members lists member events, filtered by membership and not_membership, and at a point in time", async () => {
    const alice = await user();
    const bob = await user();
    const carol = await user();
    const dave = await user();
    const roomId = await roomWith(c, alice, [bob]);
    const before = await sync(c, alice);
    await inviteUser(c, alice, roomId, carol.userId);
    await joinRoom(c, dave, roomId);
    await leaveRoom(c, bob, roomId);
    const get = async (q: string) => {
      const res = await c.get<{ chunk: ClientEvent[] }>(`${room(roomId)}/members${q}`, { token: alice.accessToken });
      expect(res.status, res.text).toBe(200);
      return Object.fromEntries(res.body.chunk.map((e) => [e.state_key!, e.content.membership as string]));
    };
    expect(await get("")).toEqual({ [alice.userId]: "join", [bob.userId]: "leave", [carol.userId]: "invite", [dave.userId]: "join" });
    expect(await get("?membership=join")).toEqual({ [alice.userId]: "join", [dave.userId]: "join" });
    expect(await get("?not_membership=leave")).toEqual({ [alice.userId]: "join", [carol.userId]: "invite", [dave.userId]: "join" });
    expect(await get("?membership=invite")).toEqual({ [carol.userId]: "invite" });
    // `at` a sync token from before the changes.
    expect(await get(`?at=${enc(before.next_batch)}`)).toEqual({ [alice.userId]: "join", [bob.userId]: "join" });
    const prevBatch = before.rooms.join[roomId]!.timeline.prev_batch!;
    const atPrev = await get(`?at=${enc(prevBatch)}`);
    expect(atPrev[carol.userId]).toBeUndefined();
    expectError(await c.get(`${room(roomId)}/members?membership=bogus`, { token: alice.accessToken }), 400, "M_INVALID_PARAM");
  });

  it("/members is 403 for users never in the room", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await createRoom(c, alice, { preset: "public_chat" });
    expectError(await c.get(`${room(roomId)}/members`, { token: bob.accessToken }), 403, "M_FORBIDDEN");
  });

  it("/joined_members maps joined users to their profile; 403 when not joined", async () => {
    const alice = await user();
    const bob = await user();
    const carol = await user();
    await c.put(`${V3}/profile/${enc(bob.userId)}/displayname`, { displayname: "Bob B" }, { token: bob.accessToken });
    await c.put(`${V3}/profile/${enc(bob.userId)}/avatar_url`, { avatar_url: "mxc://test.local/bob" }, { token: bob.accessToken });
    const roomId = await roomWith(c, alice, [bob]);
    await inviteUser(c, alice, roomId, carol.userId);
    const res = await c.get(`${room(roomId)}/joined_members`, { token: alice.accessToken });
    expect(res.status, res.text).toBe(200);
    // As Synapse, both keys are on every entry, null when unset.
    expect(res.body).toEqual({ joined: { [alice.userId]: { display_name: alice.userId.slice(1).split(":")[0], avatar_url: null }, [bob.userId]: { display_name: "Bob B", avatar_url: "mxc://test.local/bob" } } });
    expectError(await c.get(`${room(roomId)}/joined_members`, { token: carol.accessToken }), 403, "M_FORBIDDEN");
    await leaveRoom(c, bob, roomId);
    expectError(await c.get(`${room(roomId)}/joined_members`, { token: bob.accessToken }), 403, "M_FORBIDDEN");
  });
});

describe("redact", () => {
  it("redacts one's own event: content stripped, unsigned.redacted_because set", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await roomWith(c, alice, [bob]);
    const target = await send(c, bob, roomId, { msgtype: "m.text", body: "oops", extra: 1 });
    const res = await c.put(`${room(roomId)}/redact/${enc(target)}/r1`, { reason: "typo" }, { token: bob.accessToken });
    expect(res.status, res.text).toBe(200);
    const redactionId = res.body.event_id as string;
    // Idempotent per transaction id.
    const again = await c.put(`${room(roomId)}/redact/${enc(target)}/r1`, { reason: "typo" }, { token: bob.accessToken });
    expect(again.body.event_id).toBe(redactionId);
    const ev = await getEvent(alice, roomId, target);
    expect(ev.content).toEqual({});
    expect(ev.unsigned!.redacted_because!.event_id).toBe(redactionId);
    expect(ev.unsigned!.redacted_because!.content.reason).toBe("typo");
    const redaction = await getEvent(alice, roomId, redactionId);
    expect(redaction.type).toBe("m.room.redaction");
    expect(redaction.redacts).toBe(target);
    // /messages shows the redacted form too.
    const page = await messages(c, alice, roomId, { limit: 5 });
    expect(page.chunk.find((e) => e.event_id === target)!.content).toEqual({});
  });

  it("403 redacting another user's event without the redact power; allowed with it", async () => {
    const alice = await user();
    const bob = await user();
    const carol = await user();
    const roomId = await roomWith(c, alice, [bob, carol]);
    const target = await send(c, carol, roomId, "carol's");
    expectError(await c.put(`${room(roomId)}/redact/${enc(target)}/x`, {}, { token: bob.accessToken }), 403, "M_FORBIDDEN");
    const outsider = await user();
    expectError(await c.put(`${room(roomId)}/redact/${enc(target)}/x`, {}, { token: outsider.accessToken }), 403, "M_FORBIDDEN");
    const ok = await c.post(`${room(roomId)}/redact/${enc(target)}`, {}, { token: alice.accessToken });
    expect(ok.status, ok.text).toBe(200);
    expect((await getEvent(bob, roomId, target)).content).toEqual({});
  });

  it("400 redacting an event of another room; redacting a redaction strips its reason", async () => {
    const alice = await user();
    const roomA = await createRoom(c, alice);
    const roomB = await createRoom(c, alice);
    const inB = await send(c, alice, roomB, "in B");
    expectError(await c.put(`${room(roomA)}/redact/${enc(inB)}/x`, {}, { token: alice.accessToken }), 400, "M_INVALID_PARAM");
    expect((await getEvent(alice, roomB, inB)).content.body).toBe("in B");
    const target = await send(c, alice, roomA, "pun");
    const r1 = await c.put(`${room(roomA)}/redact/${enc(target)}/r1`, { reason: "Offensively bad pun" }, { token: alice.accessToken });
    const redactionId = r1.body.event_id as string;
    expect((await getEvent(alice, roomA, redactionId)).content.reason).toBe("Offensively bad pun");
    expect((await c.put(`${room(roomA)}/redact/${enc(redactionId)}/r2`, {}, { token: alice.accessToken })).status).toBe(200);
    const meta = await getEvent(alice, roomA, redactionId);
    expect(meta.content.reason).toBeUndefined();
    expect(meta.unsigned!.redacted_because).toBeDefined();
  });

  it("v11: the redaction carries redacts in content as well", async () => {
    const alice = await user();
    const roomId = await createRoom(c, alice, { room_version: "11" });
    const target = await send(c, alice, roomId, "x");
    const res = await c.put(`${room(roomId)}/redact/${enc(target)}/r`, {}, { token: alice.accessToken });
    const redaction = await getEvent(alice, roomId, res.body.event_id as string);
    expect(redaction.content.redacts).toBe(target);
    expect(redaction.redacts).toBe(target);
  });

  it("keeps the keys the room version's redaction algorithm keeps", async () => {
    const alice = await user();
    const bob = await user();
    const check = async (version: string) => {
      const roomId = await roomWith(c, alice, [bob], { room_version: version });
      await c.put(`${V3}/profile/${enc(bob.userId)}/displayname`, { displayname: "Bob" }, { token: bob.accessToken });
      const member = await c.get<ClientEvent>(`${room(roomId)}/state/m.room.member/${enc(bob.userId)}?format=event`, { token: alice.accessToken });
      const jr = await setState(c, alice, roomId, "m.room.join_rules", "", { join_rule: "public", allow: [{ type: "m.room_membership", room_id: roomId }], other: 1 });
      for (const id of [member.body.event_id, jr]) expect((await c.put(`${room(roomId)}/redact/${enc(id)}/${Math.random()}`, {}, { token: alice.accessToken })).status).toBe(200);
      return { member: (await getEvent(alice, roomId, member.body.event_id)).content, joinRules: (await getEvent(alice, roomId, jr)).content };
    };
    const v7 = await check("7");
    expect(v7.member).toEqual({ membership: "join" });
    expect(v7.joinRules).toEqual({ join_rule: "public" });
    const v8 = await check("8");
    expect(v8.joinRules).toEqual({ join_rule: "public", allow: expect.any(Array) });
  });
});

describe("/messages", () => {
  it("paginates backwards and forwards with from/to tokens, omitting end at the edge", async () => {
    const alice = await user();
    const roomId = await createRoom(c, alice);
    await sendMany(alice, roomId, 10);
    // Backwards from the end, 4 at a time: newest first, then older, without gaps or duplicates.
    const seen: string[] = [];
    let from: string | undefined;
    let pages = 0;
    while (true) {
      const page: MessagesResponse = await messages(c, alice, roomId, from ? { limit: 4, from } : { limit: 4 });
      pages++;
      expect(typeof page.start).toBe("string");
      seen.push(...page.chunk.map((e) => e.event_id));
      if (page.end === undefined) break;
      expect(page.chunk.length).toBe(4);
      from = page.end;
      expect(pages).toBeLessThan(20);
    }
    expect(new Set(seen).size).toBe(seen.length);
    const all = await messages(c, alice, roomId, { limit: 100 });
    expect(all.end).toBeUndefined();
    expect(seen).toEqual(all.chunk.map((e) => e.event_id));
    expect(all.chunk[all.chunk.length - 1]!.type).toBe("m.room.create");
    expect(bodies(all.chunk).slice(0, 3)).toEqual(["m9", "m8", "m7"]);

    // Forwards from the start.
    const fwd = await messages(c, alice, roomId, { dir: "f", limit: 100 });
    expect(fwd.chunk.map((e) => e.event_id)).toEqual([...seen].reverse());
    // Forwards, newer events may still come: a non-empty page always says where to continue (as Synapse); from
    // there, with nothing newer yet, the page is empty and has no `end`.
    expect(typeof fwd.end).toBe("string");
    const later = await messages(c, alice, roomId, { dir: "f", from: fwd.end!, limit: 100 });
    expect(later.chunk).toEqual([]);
    expect(later.end).toBeUndefined();
    // Forwards from a token reached going backwards: exactly what follows it.
    const back = await messages(c, alice, roomId, { limit: 3 });
    const forward = await messages(c, alice, roomId, { dir: "f", from: back.end!, limit: 10 });
    expect(forward.chunk.map((e) => e.event_id)).toEqual(back.chunk.map((e) => e.event_id).reverse());
    // `to` bounds the page.
    const head = await messages(c, alice, roomId, { limit: 2 });
    const bounded = await messages(c, alice, roomId, { from: head.end!, to: back.end!, limit: 50 });
    expect(bodies(bounded.chunk)).toEqual(["m7"]);
    // Reaching `to` is the end of what was asked for: no `end`, forwards too.
    const fwdBounded = await messages(c, alice, roomId, { dir: "f", from: back.end!, to: head.end!, limit: 50 });
    expect(bodies(fwdBounded.chunk)).toEqual(["m7"]);
    expect(fwdBounded.end).toBeUndefined();
    // The forward token of the last page picks up what is sent later.
    const [newer] = await sendMany(alice, roomId, 1, "newer");
    const next = await messages(c, alice, roomId, { dir: "f", from: fwd.end!, limit: 100 });
    expect(next.chunk.map((e) => e.event_id)).toEqual([newer]);
    expect(typeof next.end).toBe("string");
  });

  it("accepts a sync token as `from`, and a dir other than b/f is 400", async () => {
    const alice = await user();
    const roomId = await createRoom(c, alice);
    await sendMany(alice, roomId, 3, "before");
    const s = await sync(c, alice);
    await sendMany(alice, roomId, 2, "after");
    const back = await messages(c, alice, roomId, { from: s.next_batch, limit: 3 });
    expect(bodies(back.chunk)).toEqual(["before2", "before1", "before0"]);
    const fwd = await messages(c, alice, roomId, { dir: "f", from: s.next_batch, limit: 10 });
    expect(bodies(fwd.chunk)).toEqual(["after0", "after1"]);
    expectError(await c.get(`${room(roomId)}/messages?dir=x`, { token: alice.accessToken }), 400, "M_INVALID_PARAM");
    expectError(await c.get(`${room(roomId)}/messages?dir=b&from=garbage`, { token: alice.accessToken }), 400, "M_INVALID_PARAM");
    expectError(await c.get(`${room(roomId)}/messages?dir=b&limit=x`, { token: alice.accessToken }), 400, "M_INVALID_PARAM");
  });

  it("filters by types, not_types and senders; lazy_load_members returns the senders' member state", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await roomWith(c, alice, [bob]);
    await send(c, alice, roomId, "from alice");
    await send(c, bob, roomId, "from bob");
    await send(c, bob, roomId, { x: 1 }, "org.example.custom");
    const q = (filter: object, extra: Record<string, string | number> = {}) => messages(c, alice, roomId, { limit: 50, filter: JSON.stringify(filter), ...extra });
    const types = await q({ types: ["m.room.message"] });
    expect(types.chunk.map((e) => e.type)).toEqual(["m.room.message", "m.room.message"]);
    const wildcard = await q({ types: ["org.example.*"] });
    expect(wildcard.chunk.map((e) => e.type)).toEqual(["org.example.custom"]);
    const notTypes = await q({ not_types: ["m.room.member", "m.room.message"] });
    expect(notTypes.chunk.map((e) => e.type)).not.toContain("m.room.message");
    expect(notTypes.chunk.map((e) => e.type)).toContain("org.example.custom");
    const senders = await q({ senders: [bob.userId], types: ["m.room.message", "org.example.custom"] });
    expect(senders.chunk.every((e) => e.sender === bob.userId)).toBe(true);
    expect(senders.chunk).toHaveLength(2);
    const lazy = await q({ types: ["m.room.message"], senders: [bob.userId], lazy_load_members: true });
    expect(lazy.state).toBeDefined();
    expect(lazy.state!.map((e) => `${e.type}|${e.state_key}`)).toEqual([`m.room.member|${bob.userId}`]);
    expectError(await c.get(`${room(roomId)}/messages?filter=${enc("{bad json")}`, { token: alice.accessToken }), 400, "M_INVALID_PARAM");
  });

  it("403 for users who were never in the room", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await createRoom(c, alice, { preset: "public_chat" });
    expectError(await c.get(`${room(roomId)}/messages?dir=b`, { token: bob.accessToken }), 403, "M_FORBIDDEN");
  });
});

describe("/context", () => {
  it("returns the event with events before and after, state, and tokens that continue pagination", async () => {
    const alice = await user();
    const roomId = await createRoom(c, alice, { name: "Ctx" });
    const ids = await sendMany(alice, roomId, 9, "c");
    const res = await c.get(`${room(roomId)}/context/${enc(ids[4]!)}?limit=4`, { token: alice.accessToken });
    expect(res.status, res.text).toBe(200);
    const body = res.body as { event: ClientEvent; events_before: ClientEvent[]; events_after: ClientEvent[]; state: ClientEvent[]; start: string; end: string };
    expect(body.event.event_id).toBe(ids[4]);
    expect(body.events_before.map((e) => e.content.body)).toEqual(["c3", "c2"]);
    expect(body.events_after.map((e) => e.content.body)).toEqual(["c5", "c6"]);
    expect(findState(body.state, "m.room.name")!.content).toEqual({ name: "Ctx" });
    expect(findState(body.state, "m.room.member", alice.userId)).toBeDefined();
    const older = await messages(c, alice, roomId, { from: body.start, limit: 2 });
    expect(bodies(older.chunk)).toEqual(["c1", "c0"]);
    const newer = await messages(c, alice, roomId, { dir: "f", from: body.end, limit: 10 });
    expect(bodies(newer.chunk)).toEqual(["c7", "c8"]);
  });

  it("limit=0 gives just the event; filters apply to the surrounding events", async () => {
    const alice = await user();
    const roomId = await createRoom(c, alice);
    const ids = await sendMany(alice, roomId, 3, "z");
    await send(c, alice, roomId, { a: 1 }, "org.example.other");
    const zero = await c.get(`${room(roomId)}/context/${enc(ids[1]!)}?limit=0`, { token: alice.accessToken });
    expect(zero.status, zero.text).toBe(200);
    expect(zero.body.events_before).toEqual([]);
    expect(zero.body.events_after).toEqual([]);
    const filtered = await c.get(`${room(roomId)}/context/${enc(ids[1]!)}?limit=10&filter=${enc(JSON.stringify({ types: ["m.room.message"] }))}`, { token: alice.accessToken });
    expect((filtered.body.events_after as ClientEvent[]).map((e) => e.type)).toEqual(["m.room.message"]);
  });

  it("lazy_load_members limits the state's members to the senders of the returned events", async () => {
    const alice = await user();
    const bob = await user();
    const carol = await user();
    const roomId = await roomWith(c, alice, [bob, carol]);
    await send(c, alice, roomId, "a1");
    const target = await send(c, bob, roomId, "b1");
    await send(c, bob, roomId, "b2");
    const filter = enc(JSON.stringify({ lazy_load_members: true, types: ["m.room.message"] }));
    const res = await c.get(`${room(roomId)}/context/${enc(target)}?limit=2&filter=${filter}`, { token: carol.accessToken });
    expect(res.status, res.text).toBe(200);
    const state = res.body.state as ClientEvent[];
    const members = state.filter((e) => e.type === "m.room.member").map((e) => e.state_key).sort();
    expect(members).toEqual([alice.userId, bob.userId].sort());
    expect(findState(state, "m.room.create")).toBeDefined();
  });

  it("404 for unknown or invisible events", async () => {
    const alice = await user();
    const bob = await user();
    const roomId = await createRoom(c, alice);
    const id = await send(c, alice, roomId, "secret");
    expectError(await c.get(`${room(roomId)}/context/${enc("$nope")}`, { token: alice.accessToken }), 404, "M_NOT_FOUND");
    expectError(await c.get(`${room(roomId)}/context/${enc(id)}`, { token: bob.accessToken }), 404, "M_NOT_FOUND");
  });
});

describe("timestamp_to_event", () => {
  it("finds the closest event in each direction, 404 when there is none", async () => {
    const alice = await user();
    const roomId = await createRoom(c, alice);
    const firstId = await send(c, alice, roomId, "first");
    const first = await getEvent(alice, roomId, firstId);
    // Make sure the second event gets a later timestamp.
    await poll(async () => (Date.now() > first.origin_server_ts + 2 ? true : undefined), 5000, 2);
    const secondId = await send(c, alice, roomId, "second");
    const second = await getEvent(alice, roomId, secondId);
    expect(second.origin_server_ts).toBeGreaterThan(first.origin_server_ts);
    const t2e = (tsMs: number, dir: string) => c.get(`/_matrix/client/v1/rooms/${enc(roomId)}/timestamp_to_event?ts=${tsMs}&dir=${dir}`, { token: alice.accessToken });
    const fwd = await t2e(first.origin_server_ts + 1, "f");
    expect(fwd.status, fwd.text).toBe(200);
    expect(fwd.body).toEqual({ event_id: secondId, origin_server_ts: second.origin_server_ts });
    const back = await t2e(second.origin_server_ts - 1, "b");
    expect(back.body).toEqual({ event_id: firstId, origin_server_ts: first.origin_server_ts });
    const exact = await t2e(second.origin_server_ts, "b");
    expect(exact.body.event_id).toBe(secondId);
    expectError(await t2e(second.origin_server_ts + 60_000, "f"), 404, "M_NOT_FOUND");
    expectError(await t2e(1, "b"), 404, "M_NOT_FOUND");
    expectError(await t2e(1, "x"), 400, "M_INVALID_PARAM");
    expectError(await c.get(`/_matrix/client/v1/rooms/${enc(roomId)}/timestamp_to_event?dir=f`, { token: alice.accessToken }), 400, "M_MISSING_PARAM");
    const outsider = await user();
    expect((await c.get(`/_matrix/client/v1/rooms/${enc(roomId)}/timestamp_to_event?ts=1&dir=f`, { token: outsider.accessToken })).status).toBe(403);
  });
});
