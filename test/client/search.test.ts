/**
 * Server-side search (spec "Server Side Search", POST /search, SyTest tests/43search.pl): the full-text index over
 * message bodies, room names and topics; keys and filters; rank and recent orderings and their pagination; event
 * context with profiles; room state; groupings; highlights; what a user may not find (redacted events, events after
 * they left, rooms they were never in, encrypted events); events from other servers, live and backfilled; search
 * terms that look like query syntax; and the bad requests, with their status and errcode.
 */
import * as sdk from "matrix-js-sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startServerPair, type ServerPair } from "../helpers/federation.js";
import { closeFederatedServers } from "../helpers/federation_close.js";
import { Client, expectError, registerUser, type TestUser } from "../helpers/http.js";
import { V3, createRoom, enc, joinRoom, leaveRoom, messages, poll, roomWith, send, setState, type Json } from "../helpers/rooms.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

interface SearchResult {
  rank: number;
  result: { event_id: string; room_id: string; sender: string; user_id: string; type: string; content: Json };
  context?: { events_before: { content: Json }[]; events_after: { content: Json }[]; start: string; end: string; profile_info?: Record<string, { displayname: string | null; avatar_url: string | null }> };
}
interface RoomEvents {
  count: number;
  results: SearchResult[];
  highlights: string[];
  next_batch?: string;
  state?: Record<string, { type: string; state_key: string }[]>;
  groups?: Record<string, Record<string, { results: string[]; order: number; next_batch?: string }>>;
}

let ts: TestServer;
let c: Client;

beforeAll(async () => {
  ts = await startTestServer();
  c = new Client(ts.baseUrl);
});
afterAll(async () => {
  await ts?.close();
});

/** A word no other test sends, so each test's matches are its own. */
let n = 0;
const word = (prefix = "w") => `${prefix}${Date.now().toString(36)}x${(n++).toString(36)}`;

async function search(u: TestUser, criteria: Json, nextBatch?: string, client = c): Promise<RoomEvents> {
  const q = nextBatch !== undefined ? `?next_batch=${enc(nextBatch)}` : "";
  const res = await client.post<{ search_categories: { room_events: RoomEvents } }>(`${V3}/search${q}`, { search_categories: { room_events: criteria } }, { token: u.accessToken });
  expect(res.status, res.text).toBe(200);
  return res.body.search_categories.room_events;
}
const ids = (r: RoomEvents) => r.results.map((x) => x.result.event_id);

describe("finding events", () => {
  it("finds a message by a word of its body, with rank and the event in client format (SyTest: by body)", async () => {
    const u = await registerUser(c);
    const room = await createRoom(c, u);
    const w = word();
    const id = await send(c, u, room, `hello, ${w} world`);
    await send(c, u, room, "something else entirely");
    const r = await search(u, { keys: ["content.body"], search_term: w });
    expect(r.count).toBe(1);
    expect(ids(r)).toEqual([id]);
    const hit = r.results[0]!;
    expect(typeof hit.rank).toBe("number");
    expect(hit.result).toMatchObject({ event_id: id, room_id: room, sender: u.userId, user_id: u.userId, type: "m.room.message", content: { body: `hello, ${w} world` } });
    expect(r.next_batch).toBeUndefined();
  });

  it("matches every word, each as a prefix, case-insensitively (SyTest: 'Message 4' finds only 'Message number 4')", async () => {
    const u = await registerUser(c);
    const room = await createRoom(c, u);
    const w = word();
    const sent: string[] = [];
    for (let i = 1; i <= 5; i++) sent.push(await send(c, u, room, `${w} number ${i}`));
    expect(ids(await search(u, { search_term: `${w.toUpperCase()} 4` }))).toEqual([sent[3]]);
    expect(ids(await search(u, { search_term: `${w.slice(0, -2)} numb 2` }))).toEqual([sent[1]]);
    expect((await search(u, { search_term: `${w} missingword` })).results).toEqual([]);
  });

  it("a word is found as a prefix whether or not a longer indexed word extends it, stemmed as the index is", async () => {
    // Plain words: this new user's room is the only one searched.
    const u = await registerUser(c);
    const room = await createRoom(c, u);
    // "walk" is extended by "walker" (a prefix search); "walker" by nothing (asked for exactly on SQLite).
    const walk = await send(c, u, room, "walk home");
    const walker = await send(c, u, room, "the walker");
    const running = await send(c, u, room, "running late");
    expect(ids(await search(u, { search_term: "walk", order_by: "recent" }))).toEqual([walker, walk]);
    expect(ids(await search(u, { search_term: "walker" }))).toEqual([walker]);
    // "runs" and "running" share their stem.
    expect(ids(await search(u, { search_term: "runs" }))).toEqual([running]);
  });

  it("keys: body, name and topic (default all three); m.topic's text/plain when topic is absent", async () => {
    const u = await registerUser(c);
    const room = await createRoom(c, u);
    const w = word();
    const msg = await send(c, u, room, `${w} in a body`);
    const name = await setState(c, u, room, "m.room.name", "", { name: `${w} room name` });
    const topic = await setState(c, u, room, "m.room.topic", "", { topic: `${w} topic text` });
    const all = await search(u, { search_term: w, order_by: "recent" });
    expect(ids(all)).toEqual([topic, name, msg]);
    expect(ids(await search(u, { search_term: w, keys: ["content.name"] }))).toEqual([name]);
    expect(ids(await search(u, { search_term: w, keys: ["content.topic", "content.body"], order_by: "recent" }))).toEqual([topic, msg]);
    const w2 = word();
    const mTopic = await setState(c, u, room, "m.room.topic", "", { "m.topic": { "m.text": [{ mimetype: "text/html", body: "<b>x</b>" }, { body: `${w2} plain topic` }] } });
    expect(ids(await search(u, { search_term: w2, keys: ["content.topic"] }))).toEqual([mTopic]);
  });

  it("filter: rooms, not_rooms, senders, not_senders, types (with globs)", async () => {
    const a = await registerUser(c);
    const b = await registerUser(c);
    const r1 = await roomWith(c, a, [b]);
    const r2 = await roomWith(c, a, [b]);
    const w = word();
    const a1 = await send(c, a, r1, `${w} a in r1`);
    const b1 = await send(c, b, r1, `${w} b in r1`);
    const a2 = await send(c, a, r2, `${w} a in r2`);
    const n2 = await setState(c, a, r2, "m.room.name", "", { name: `${w} name` });
    const q = (filter: Json) => search(a, { search_term: w, order_by: "recent", filter }).then(ids);
    expect(await q({})).toEqual([n2, a2, b1, a1]);
    expect(await q({ rooms: [r1] })).toEqual([b1, a1]);
    expect(await q({ not_rooms: [r1] })).toEqual([n2, a2]);
    expect(await q({ senders: [b.userId] })).toEqual([b1]);
    expect(await q({ not_senders: [b.userId] })).toEqual([n2, a2, a1]);
    expect(await q({ types: ["m.room.name"] })).toEqual([n2]);
    expect(await q({ types: ["m.room.*"], not_types: ["m.room.message"] })).toEqual([n2]);
    expect(await q({ rooms: [] })).toEqual([]);
    expect(await q({ limit: 2 })).toEqual([n2, a2]);
  });

  it("order_by rank puts the closer match first; recent the newest first", async () => {
    const u = await registerUser(c);
    const room = await createRoom(c, u);
    const w = word();
    const strong = await send(c, u, room, `${w} ${w} ${w}`);
    const weak = await send(c, u, room, `${w} and a great many other words about nothing in particular at all`);
    const byRank = await search(u, { search_term: w });
    expect(ids(byRank)).toEqual([strong, weak]);
    expect(byRank.results[0]!.rank).toBeGreaterThan(byRank.results[1]!.rank);
    expect(ids(await search(u, { search_term: w, order_by: "rank" }))).toEqual([strong, weak]);
    expect(ids(await search(u, { search_term: w, order_by: "recent" }))).toEqual([weak, strong]);
  });

  it("highlights: the query's words and the words they matched", async () => {
    const u = await registerUser(c);
    const room = await createRoom(c, u);
    const w = word("mart");
    await send(c, u, room, `The ${w}ians and MEN`);
    const r = await search(u, { search_term: `${w} men` });
    expect(r.results).toHaveLength(1);
    expect(r.highlights).toEqual(expect.arrayContaining([w, "men", `${w}ians`, "MEN"]));
    expect(r.highlights).not.toContain("The");
  });

  it("unicode words are found; diacritics and case do not matter within one spelling", async () => {
    const u = await registerUser(c);
    const room = await createRoom(c, u);
    const w = word();
    const cafe = await send(c, u, room, `Café ${w} crème brûlée`);
    const jp = await send(c, u, room, `日本語 ${w}`);
    expect(ids(await search(u, { search_term: `café ${w}` }))).toEqual([cafe]);
    expect(ids(await search(u, { search_term: `CRÈME ${w}` }))).toEqual([cafe]);
    expect(ids(await search(u, { search_term: `日本語 ${w}` }))).toEqual([jp]);
  });

  it("search terms that look like query syntax are words, never syntax (no 500)", async () => {
    const u = await registerUser(c);
    const room = await createRoom(c, u);
    const w = word();
    const id = await send(c, u, room, `${w} AND NEAR OR NOT "quoted" stars* -minus`);
    for (const term of [`"${w}`, `${w}"`, `${w}*`, `*`, `"`, `""`, `AND`, `${w} AND`, `${w} OR nothing`, `NOT ${w}`, `-${w}`, `${w} -minus`, `NEAR(${w} x)`, `${w}:*`, `${w} & | ! ( )`, `'${w}'`, `\\`, `%_`, "", "   ", "🙂", `${w}\u0000`, "^".repeat(500), "½", "a½b x²y", "①", "\u0301", `٣ ${w}`]) {
      const r = await search(u, { search_term: term });
      expect(Array.isArray(r.results), term).toBe(true);
    }
    // The words of a term still count, whatever surrounds them.
    expect(ids(await search(u, { search_term: `"${w}" AND "quoted"` }))).toEqual([id]);
    expect(ids(await search(u, { search_term: `${w}* -minus` }))).toEqual([id]);
    expect(await search(u, { search_term: `"!@#$%^&*()"` })).toMatchObject({ count: 0, results: [] });
    // A very long word, sent and searched for (engines may leave such a word out of the index; never an error).
    const long = `${w}${"y".repeat(3000)}`;
    const w2 = word();
    const longId = await send(c, u, room, `${long} ${w2}`);
    expect(Array.isArray((await search(u, { search_term: long })).results)).toBe(true);
    expect(ids(await search(u, { search_term: w2 }))).toEqual([longId]);
    expect((await search(u, { search_term: "𝐀".repeat(2000) })).results).toEqual([]);
  });

  it("search works across an upgraded room and its predecessor (SyTest)", async () => {
    const u = await registerUser(c);
    const room = await createRoom(c, u, { room_version: "10" });
    const w = word();
    const one = await send(c, u, room, `${w} message 1`);
    const up = await c.post(`${V3}/rooms/${enc(room)}/upgrade`, { new_version: "11" }, { token: u.accessToken });
    expect(up.status, up.text).toBe(200);
    const two = await send(c, u, up.body.replacement_room as string, `${w} message 2`);
    const r = await search(u, { search_term: w, keys: ["content.body"] });
    expect(r.count).toBe(2);
    expect(new Set(ids(r))).toEqual(new Set([one, two]));
  });
});

describe("through matrix-js-sdk (what Element calls)", () => {
  it("searchMessageText and search with a next_batch", async () => {
    const u = await registerUser(c);
    const room = await createRoom(c, u);
    const w = word();
    const sent: string[] = [];
    for (let i = 0; i < 3; i++) sent.push(await send(c, u, room, `${w} sdk ${i}`));
    const quiet: NonNullable<sdk.ICreateClientOpts["logger"]> = { trace: () => {}, debug: () => {}, info: () => {}, warn: () => {}, error: () => {}, getChild: () => quiet };
    const client = sdk.createClient({ baseUrl: ts.baseUrl, accessToken: u.accessToken, userId: u.userId, logger: quiet });
    const res = await client.searchMessageText({ query: w });
    expect((res.search_categories.room_events.results ?? []).map((r) => r.result.event_id).sort()).toEqual([...sent].sort());
    const body = { search_categories: { room_events: { search_term: w, order_by: sdk.SearchOrderBy.Recent, filter: { limit: 2 } } } };
    const first = await client.search({ body });
    const next = await client.search({ body, next_batch: first.search_categories.room_events.next_batch });
    expect([...(first.search_categories.room_events.results ?? []), ...(next.search_categories.room_events.results ?? [])].map((r) => r.result.event_id)).toEqual([...sent].reverse());
  });
});

describe("after a restart", () => {
  it("what was indexed is found again, and new messages are indexed", async () => {
    const u = await registerUser(c);
    const room = await createRoom(c, u);
    const w = word("r");
    const before = await send(c, u, room, `kept ${w} across restarts`);
    expect(ids(await search(u, { search_term: w }))).toEqual([before]);
    ts = await ts.restart();
    c = new Client(ts.baseUrl);
    expect(ids(await search(u, { search_term: w }))).toEqual([before]);
    const after = await send(c, u, room, `and ${w} once more`);
    expect(ids(await search(u, { search_term: w, order_by: "recent" }))).toEqual([after, before]);
  });
});

describe("pagination", () => {
  it("recent: pages of `limit` newest first, with next_batch until the results run out (SyTest: back-paginate)", async () => {
    const u = await registerUser(c);
    const room = await createRoom(c, u);
    const w = word();
    const sent: string[] = [];
    for (let i = 0; i < 20; i++) sent.push(await send(c, u, room, `${w} number ${i}`));
    const criteria = { search_term: w, keys: ["content.body"], order_by: "recent", filter: { limit: 10 } };
    const p1 = await search(u, criteria);
    expect(p1.count).toBe(20);
    expect(ids(p1)).toEqual(sent.slice(10).reverse());
    expect(p1.next_batch).toBeDefined();
    const p2 = await search(u, criteria, p1.next_batch);
    expect(p2.count).toBe(20);
    expect(ids(p2)).toEqual(sent.slice(0, 10).reverse());
    expect(p2.next_batch).toBeDefined();
    const p3 = await search(u, criteria, p2.next_batch);
    expect(p3.results).toEqual([]);
    expect(p3.next_batch).toBeUndefined();
  });

  for (const order of ["rank", "recent"]) {
    it(`${order}: every result exactly once across pages, in a stable order`, async () => {
      const u = await registerUser(c);
      const room = await createRoom(c, u);
      const w = word();
      const sent = new Set<string>();
      // Different ranks and many ties: the cursor must hold both.
      for (let i = 0; i < 23; i++) sent.add(await send(c, u, room, `${`${w} `.repeat(1 + (i % 4))}filler ${i % 3 === 0 ? "long tail of words here" : ""}`));
      const criteria = { search_term: w, order_by: order, filter: { limit: 4 } };
      const seen: string[] = [];
      const ranks: number[] = [];
      let token: string | undefined;
      let pages = 0;
      do {
        const page = await search(u, criteria, token);
        seen.push(...ids(page));
        ranks.push(...page.results.map((x) => x.rank));
        token = page.next_batch;
        pages++;
      } while (token !== undefined && pages < 20);
      expect(seen).toHaveLength(23);
      expect(new Set(seen)).toEqual(sent);
      expect(pages).toBe(6);
      if (order === "rank") for (let i = 1; i < ranks.length; i++) expect(ranks[i]!).toBeLessThanOrEqual(ranks[i - 1]!);
      // The same walk gives the same order.
      const again = await search(u, { ...criteria, filter: { limit: 23 } });
      expect(ids(again)).toEqual(seen);
    });
  }
});

describe("context, state and groups", () => {
  it("event_context: events before (newest first) and after, tokens, and the senders' profiles (SyTest: context)", async () => {
    const u = await registerUser(c);
    const b = await registerUser(c);
    const setName = async (who: TestUser, name: string) =>
      expect((await c.put(`${V3}/profile/${enc(who.userId)}/displayname`, { displayname: name }, { token: who.accessToken })).status).toBe(200);
    await setName(u, "Alice Searcher");
    const room = await roomWith(c, u, [b]);
    await setName(b, "Bob Then");
    const w = word();
    for (let i = 1; i <= 7; i++) await send(c, i === 5 ? b : u, room, `${w} number ${i}`);
    const r = await search(u, { search_term: `${w} 4`, order_by: "recent", filter: { limit: 1 }, event_context: { before_limit: 2, after_limit: 2, include_profile: true } });
    expect(r.count).toBe(1);
    const ctx = r.results[0]!.context!;
    expect(ctx.events_before.map((e) => e.content.body)).toEqual([`${w} number 3`, `${w} number 2`]);
    expect(ctx.events_after.map((e) => e.content.body)).toEqual([`${w} number 5`, `${w} number 6`]);
    expect(typeof ctx.start).toBe("string");
    expect(typeof ctx.end).toBe("string");
    expect(ctx.profile_info).toEqual({ [u.userId]: { displayname: "Alice Searcher", avatar_url: null }, [b.userId]: { displayname: "Bob Then", avatar_url: null } });
    // The context tokens page on through /messages.
    const older = await messages(c, u, room, { from: ctx.start, limit: 1 });
    expect(older.chunk.map((e) => e.content.body)).toEqual([`${w} number 1`]);
    // Default limits are 5 each way; no profile unless asked.
    const d = await search(u, { search_term: `${w} 4`, event_context: {} });
    expect(d.results[0]!.context!.events_after).toHaveLength(3);
    expect(d.results[0]!.context!.profile_info).toBeUndefined();
    expect((await search(u, { search_term: `${w} 4` })).results[0]!.context).toBeUndefined();
  });

  it("include_state: the state of each room with results", async () => {
    const u = await registerUser(c);
    const r1 = await createRoom(c, u, { name: "first" });
    const r2 = await createRoom(c, u);
    await createRoom(c, u);
    const w = word();
    await send(c, u, r1, w);
    await send(c, u, r2, w);
    const r = await search(u, { search_term: w, include_state: true });
    expect(Object.keys(r.state!).sort()).toEqual([r1, r2].sort());
    expect(r.state![r1]!.map((e) => e.type)).toEqual(expect.arrayContaining(["m.room.create", "m.room.member", "m.room.name", "m.room.power_levels"]));
    expect((await search(u, { search_term: w })).state).toBeUndefined();
  });

  it("groupings by room_id and sender, with group tokens that page within the group", async () => {
    const a = await registerUser(c);
    const b = await registerUser(c);
    const r1 = await roomWith(c, a, [b]);
    const r2 = await roomWith(c, a, [b]);
    const w = word();
    const e1 = await send(c, a, r1, `${w} 1`);
    const e2 = await send(c, b, r2, `${w} 2`);
    const e3 = await send(c, b, r1, `${w} 3`);
    const e4 = await send(c, a, r1, `${w} 4`);
    const criteria = { search_term: w, order_by: "recent", groupings: { group_by: [{ key: "room_id" }, { key: "sender" }] } };
    const r = await search(a, criteria);
    expect(ids(r)).toEqual([e4, e3, e2, e1]);
    expect(r.groups!.room_id).toEqual({ [r1]: { results: [e4, e3, e1], order: 1 }, [r2]: { results: [e2], order: 2 } });
    expect(r.groups!.sender).toEqual({ [a.userId]: { results: [e4, e1], order: 1 }, [b.userId]: { results: [e3, e2], order: 2 } });
    const paged = await search(a, { ...criteria, filter: { limit: 2 } });
    expect(ids(paged)).toEqual([e4, e3]);
    const roomToken = paged.groups!.room_id![r1]!.next_batch!;
    expect(ids(await search(a, { ...criteria, filter: { limit: 2 } }, roomToken))).toEqual([e1]);
    const senderToken = paged.groups!.sender![b.userId]!.next_batch!;
    expect(ids(await search(a, { ...criteria, filter: { limit: 2 } }, senderToken))).toEqual([e2]);
  });
});

describe("what a user may not find", () => {
  for (const order of ["rank", "recent"]) {
    it(`redacted events are not found (${order}) (SyTest)`, async () => {
      const u = await registerUser(c);
      const room = await createRoom(c, u);
      const w = word();
      const one = await send(c, u, room, `${w} message 1`);
      const two = await send(c, u, room, `${w} message 2`);
      const red = await c.put(`${V3}/rooms/${enc(room)}/redact/${enc(one)}/${word("t")}`, {}, { token: u.accessToken });
      expect(red.status).toBe(200);
      const r = await search(u, { search_term: w, order_by: order });
      expect(ids(r)).toEqual([two]);
      expect(r.count).toBe(1);
    });
  }

  it("a user who left finds what they could see, and nothing after their leave", async () => {
    const a = await registerUser(c);
    const b = await registerUser(c);
    const room = await roomWith(c, a, [b]);
    const w = word();
    const seen = await send(c, a, room, `${w} while b was here`);
    await leaveRoom(c, b, room);
    await send(c, a, room, `${w} after b left`);
    await setState(c, a, room, "m.room.topic", "", { topic: `${w} later topic` });
    const r = await search(b, { search_term: w, include_state: true });
    expect(ids(r)).toEqual([seen]);
    expect(r.count).toBe(1);
    // Their view of the room's state stops at their leave too.
    expect(r.state![room]!.find((e) => e.type === "m.room.topic")).toBeUndefined();
  });

  it("a banned user finds what they saw before the ban; include_state leaves that room out", async () => {
    const a = await registerUser(c);
    const b = await registerUser(c);
    const room = await roomWith(c, a, [b]);
    const w = word();
    const seen = await send(c, a, room, `${w} before the ban`);
    expect((await c.post(`${V3}/rooms/${enc(room)}/ban`, { user_id: b.userId }, { token: a.accessToken })).status).toBe(200);
    await send(c, a, room, `${w} after the ban`);
    const r = await search(b, { search_term: w, include_state: true });
    expect(ids(r)).toEqual([seen]);
    expect(r.state).toEqual({});
  });

  it("a user never in a room finds nothing from it, even a public world-readable one", async () => {
    const a = await registerUser(c);
    const stranger = await registerUser(c);
    const room = await createRoom(c, a, { preset: "public_chat", initial_state: [{ type: "m.room.history_visibility", state_key: "", content: { history_visibility: "world_readable" } }] });
    const w = word();
    await send(c, a, room, `${w} public words`);
    expect(await search(stranger, { search_term: w })).toMatchObject({ count: 0, results: [] });
  });

  it("history visibility: a later joiner does not find what was sent before they joined under `joined`", async () => {
    const a = await registerUser(c);
    const b = await registerUser(c);
    const room = await createRoom(c, a, { preset: "public_chat", initial_state: [{ type: "m.room.history_visibility", state_key: "", content: { history_visibility: "joined" } }] });
    const w = word();
    await send(c, a, room, `${w} before b joined`);
    await joinRoom(c, b, room);
    const after = await send(c, a, room, `${w} after b joined`);
    expect(ids(await search(b, { search_term: w }))).toEqual([after]);
  });

  it("encrypted rooms: nothing of the ciphertext is found", async () => {
    const u = await registerUser(c);
    const room = await createRoom(c, u, { initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }] });
    const w = word();
    await send(c, u, room, { algorithm: "m.megolm.v1.aes-sha2", ciphertext: `${w} AwgAEnAC`, sender_key: "k", session_id: "s", device_id: "D" }, "m.room.encrypted");
    expect(await search(u, { search_term: w })).toMatchObject({ count: 0, results: [] });
  });
});

describe("bad requests", () => {
  let u: TestUser;
  beforeAll(async () => {
    u = await registerUser(c);
  });
  const post = (body: unknown, q = "") => c.post(`${V3}/search${q}`, body, { token: u.accessToken });

  it("needs an access token", async () => {
    expectError(await c.post(`${V3}/search`, { search_categories: { room_events: { search_term: "x" } } }), 401, "M_MISSING_TOKEN");
  });

  it("a body that is not a JSON object: 400 M_BAD_JSON / M_NOT_JSON", async () => {
    expectError(await post([1, 2]), 400, "M_BAD_JSON");
    expectError(await post("5"), 400, "M_BAD_JSON");
    expectError(await post("{not json"), 400, "M_NOT_JSON");
  });

  it("missing search_categories, room_events or search_term: 400 M_MISSING_PARAM; wrong types: M_BAD_JSON", async () => {
    expectError(await post({}), 400, "M_MISSING_PARAM");
    expectError(await post({ search_categories: {} }), 400, "M_MISSING_PARAM");
    expectError(await post({ search_categories: { room_events: {} } }), 400, "M_MISSING_PARAM");
    expectError(await post({ search_categories: [] }), 400, "M_BAD_JSON");
    expectError(await post({ search_categories: { room_events: "x" } }), 400, "M_BAD_JSON");
    expectError(await post({ search_categories: { room_events: { search_term: 5 } } }), 400, "M_BAD_JSON");
    expectError(await post({ search_categories: { room_events: { search_term: null } } }), 400, "M_BAD_JSON");
  });

  it("bad fields of room_events: 400", async () => {
    const re = (extra: Json) => post({ search_categories: { room_events: { search_term: "x", ...extra } } });
    expectError(await re({ order_by: "oldest" }), 400, "M_INVALID_PARAM");
    expectError(await re({ order_by: 1 }), 400, "M_INVALID_PARAM");
    expectError(await re({ keys: ["content.url"] }), 400, "M_INVALID_PARAM");
    expectError(await re({ keys: "content.body" }), 400, "M_BAD_JSON");
    expectError(await re({ filter: { limit: -1 } }), 400, "M_BAD_JSON");
    expectError(await re({ filter: { rooms: "!a:b" } }), 400, "M_BAD_JSON");
    expectError(await re({ filter: [] }), 400, "M_BAD_JSON");
    expectError(await re({ groupings: { group_by: [{ key: "type" }] } }), 400, "M_INVALID_PARAM");
    expectError(await re({ groupings: { group_by: [{}] } }), 400, "M_BAD_JSON");
    expectError(await re({ groupings: { group_by: { key: "room_id" } } }), 400, "M_BAD_JSON");
    expectError(await re({ groupings: "room_id" }), 400, "M_BAD_JSON");
    expectError(await re({ event_context: { before_limit: -1 } }), 400, "M_BAD_JSON");
    expectError(await re({ event_context: { after_limit: "5" } }), 400, "M_BAD_JSON");
    expectError(await re({ event_context: { after_limit: 1e6 } }), 400, "M_BAD_JSON");
    expectError(await re({ event_context: 5 }), 400, "M_BAD_JSON");
    expectError(await re({ event_context: { include_profile: "yes" } }), 400, "M_BAD_JSON");
    expectError(await re({ include_state: "true" }), 400, "M_BAD_JSON");
  });

  it("a next_batch this server did not issue, or of the other ordering: 400 M_UNKNOWN", async () => {
    const body = (order_by: string) => ({ search_categories: { room_events: { search_term: "x", order_by } } });
    for (const bad of ["nonsense", "", "e30", Buffer.from('{"o":"recent","s":"x"}').toString("base64url"), Buffer.from("[]").toString("base64url"), Buffer.from('{"o":"recent","s":1,"g":["type","x"]}').toString("base64url")]) {
      expectError(await post(body("recent"), `?next_batch=${enc(bad)}`), 400, "M_UNKNOWN");
    }
    const recentToken = Buffer.from('{"o":"recent","s":5}').toString("base64url");
    expect((await post(body("recent"), `?next_batch=${recentToken}`)).status).toBe(200);
    expectError(await post(body("rank"), `?next_batch=${recentToken}`), 400, "M_UNKNOWN");
  });
});

describe("enable_search: false", () => {
  it("indexes nothing and refuses POST /search with 400", async () => {
    const off = await startTestServer({ config: { enable_search: false } });
    try {
      const oc = new Client(off.baseUrl);
      const u = await registerUser(oc);
      const room = await createRoom(oc, u);
      await send(oc, u, room, "hello there");
      const res = await oc.post(`${V3}/search`, { search_categories: { room_events: { search_term: "hello" } } }, { token: u.accessToken });
      expectError(res, 400, "M_UNKNOWN");
      expect(await off.server.services.storage.search.newest({ words: ["hello"], rooms: [{ roomId: room }], keys: ["content.body"] }, undefined, 10)).toEqual([]);
    } finally {
      await off.close();
    }
  });
});

describe("events from another server", () => {
  let pair: ServerPair;
  beforeAll(async () => {
    pair = await startServerPair();
  });
  afterAll(async () => {
    await closeFederatedServers([pair.hs1, pair.hs2]);
  });

  it("received events are indexed, and backfilled history too", async () => {
    const { c1, c2 } = pair;
    const alice = await registerUser(c1);
    const bob = await registerUser(c2);
    const room = await createRoom(c1, alice, { preset: "public_chat" });
    const w = word();
    // Sent before bob's server was in the room: it reaches hs2 only by backfill.
    const old = await send(c1, alice, room, `${w} old history`);
    const join = await c2.post(`${V3}/join/${enc(room)}?via=hs1.test`, {}, { token: bob.accessToken });
    expect(join.status, join.text).toBe(200);
    const live = await send(c2, bob, room, `${w} from hs2`);
    // hs1 received bob's event over federation and indexed it.
    const onHs1 = await poll(async () => {
      const r = await search(alice, { search_term: w, order_by: "recent" }, undefined, c1);
      return r.results.length === 2 ? r : undefined;
    });
    expect(ids(onHs1)).toEqual([live, old]);
    // On hs2, the old message appears once /messages has backfilled it.
    await poll(async () => ((await messages(c2, bob, room, { limit: 50 })).chunk.some((e) => e.event_id === old) ? true : undefined));
    const onHs2 = await search(bob, { search_term: w, order_by: "recent" }, undefined, c2);
    expect(ids(onHs2)).toEqual([live, old]);
  });
});
