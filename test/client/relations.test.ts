/**
 * Event relationships over raw HTTP: GET /v1/rooms/{roomId}/relations (filters, pagination both ways, tokens from
 * /messages and /sync, recursion), GET /v1/rooms/{roomId}/threads, and bundled aggregations (m.thread, m.replace,
 * m.reference) in /event, /messages, /context and /sync.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client, expectError, registerUser, type Response, type TestUser } from "../helpers/http.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

type Json = Record<string, unknown>;
interface Ev {
  event_id: string;
  type: string;
  sender: string;
  content: Json;
  unsigned?: Json;
}
// A type alias (not an interface) so it also fits expectError's Record<string, unknown>.
type RelationsBody = {
  chunk: Ev[];
  next_batch?: string;
  prev_batch?: string;
  recursion_depth?: number;
};

const enc = encodeURIComponent;
const V1 = "/_matrix/client/v1";
const V3 = "/_matrix/client/v3";

let ts: TestServer;
let c: Client;
let alice: TestUser;
let bob: TestUser;
let carol: TestUser;
let txn = 0;

beforeAll(async () => {
  ts = await startTestServer();
  c = new Client(ts.baseUrl);
  alice = await registerUser(c);
  bob = await registerUser(c);
  carol = await registerUser(c);
});
afterAll(async () => {
  await ts?.close();
});

/** A room alice created and bob joined. */
async function room(extra: Json = {}): Promise<string> {
  const r = await c.post(`${V3}/createRoom`, { preset: "public_chat", ...extra }, { token: alice.accessToken });
  expect(r.status, r.text).toBe(200);
  const roomId = r.body.room_id as string;
  const j = await c.post(`${V3}/rooms/${enc(roomId)}/join`, {}, { token: bob.accessToken });
  expect(j.status, j.text).toBe(200);
  return roomId;
}

async function send(user: TestUser, roomId: string, type: string, content: Json): Promise<string> {
  const r = await c.put(`${V3}/rooms/${enc(roomId)}/send/${enc(type)}/t${++txn}`, content, { token: user.accessToken });
  expect(r.status, r.text).toBe(200);
  return r.body.event_id as string;
}

const message = (body: string): Json => ({ msgtype: "m.text", body });
const inThread = (root: string, body: string): Json => ({ ...message(body), "m.relates_to": { rel_type: "m.thread", event_id: root } });
const edit = (original: string, body: string): Json => ({
  ...message(`* ${body}`),
  "m.new_content": message(body),
  "m.relates_to": { rel_type: "m.replace", event_id: original },
});
const reference = (target: string): Json => ({ ...message("ref"), "m.relates_to": { rel_type: "m.reference", event_id: target } });
const reaction = (target: string, key: string): Json => ({ "m.relates_to": { rel_type: "m.annotation", event_id: target, key } });

function relations(user: TestUser, roomId: string, eventId: string, path = "", query = ""): Promise<Response<RelationsBody>> {
  return c.get<RelationsBody>(`${V1}/rooms/${enc(roomId)}/relations/${enc(eventId)}${path}${query ? `?${query}` : ""}`, { token: user.accessToken });
}

async function ids(user: TestUser, roomId: string, eventId: string, path = "", query = ""): Promise<string[]> {
  const r = await relations(user, roomId, eventId, path, query);
  expect(r.status, r.text).toBe(200);
  return r.body.chunk.map((e) => e.event_id);
}

function bundled(e: Ev | undefined): Json {
  return ((e?.unsigned ?? {})["m.relations"] ?? {}) as Json;
}

async function getEvent(user: TestUser, roomId: string, eventId: string): Promise<Ev> {
  const r = await c.get<Ev>(`${V3}/rooms/${enc(roomId)}/event/${enc(eventId)}`, { token: user.accessToken });
  expect(r.status, r.text).toBe(200);
  return r.body;
}

describe("threads", () => {
  let roomId: string;
  let root1: string;
  let root2: string;
  let root3: string;
  const replies1: string[] = [];
  let reply2: string;

  beforeAll(async () => {
    roomId = await room();
    root1 = await send(alice, roomId, "m.room.message", message("root 1"));
    root2 = await send(bob, roomId, "m.room.message", message("root 2"));
    root3 = await send(alice, roomId, "m.room.message", message("root 3"));
    // Latest activity: root3, then root2 (alice's reply), then root1 (bob's replies).
    for (let i = 0; i < 3; i++) replies1.push(await send(bob, roomId, "m.room.message", inThread(root1, `r1.${i}`)));
    reply2 = await send(alice, roomId, "m.room.message", inThread(root2, "r2"));
    await send(alice, roomId, "m.room.message", inThread(root3, "r3"));
  });

  it("lists thread roots by latest activity with the m.thread summary", async () => {
    const r = await c.get<RelationsBody>(`${V1}/rooms/${enc(roomId)}/threads`, { token: alice.accessToken });
    expect(r.status, r.text).toBe(200);
    expect(r.body.chunk.map((e) => e.event_id)).toEqual([root3, root2, root1]);
    expect(r.body.next_batch).toBeUndefined();
    const t1 = bundled(r.body.chunk[2])["m.thread"] as { latest_event: Ev; count: number; current_user_participated: boolean };
    expect(t1.count).toBe(3);
    expect(t1.latest_event.event_id).toBe(replies1[2]);
    expect(t1.latest_event.content.body).toBe("r1.2");
    // Alice sent root 1 herself: that is participating.
    expect(t1.current_user_participated).toBe(true);
    const t2 = bundled(r.body.chunk[1])["m.thread"] as { latest_event: Ev; count: number; current_user_participated: boolean };
    expect(t2).toMatchObject({ count: 1, current_user_participated: true });
    expect(t2.latest_event.event_id).toBe(reply2);
  });

  it("filters to the threads the user participated in", async () => {
    const forBob = await c.get<RelationsBody>(`${V1}/rooms/${enc(roomId)}/threads?include=participated`, { token: bob.accessToken });
    expect(forBob.status, forBob.text).toBe(200);
    // Bob sent root 2 and replied in thread 1; thread 3 is alice's alone.
    expect(forBob.body.chunk.map((e) => e.event_id)).toEqual([root2, root1]);
    const all = await c.get<RelationsBody>(`${V1}/rooms/${enc(roomId)}/threads?include=all`, { token: bob.accessToken });
    expect(all.body.chunk.map((e) => e.event_id)).toEqual([root3, root2, root1]);
    const t3 = bundled(all.body.chunk[0])["m.thread"] as { current_user_participated: boolean };
    expect(t3.current_user_participated).toBe(false);
  });

  it("paginates with next_batch", async () => {
    const seen: string[] = [];
    let from: string | undefined;
    for (let i = 0; i < 5; i++) {
      const r = await c.get<RelationsBody>(`${V1}/rooms/${enc(roomId)}/threads?limit=1${from ? `&from=${enc(from)}` : ""}`, { token: alice.accessToken });
      expect(r.status, r.text).toBe(200);
      seen.push(...r.body.chunk.map((e) => e.event_id));
      from = r.body.next_batch;
      if (!from) break;
    }
    expect(seen).toEqual([root3, root2, root1]);
  });

  it("lists a thread's events through /relations/{root}/m.thread, newest first", async () => {
    expect(await ids(alice, roomId, root1, "/m.thread")).toEqual([...replies1].reverse());
    expect(await ids(alice, roomId, root1, "/m.thread", "dir=f")).toEqual(replies1);
  });

  it("bundles the thread summary in /event, /messages and /context", async () => {
    const ev = await getEvent(bob, roomId, root1);
    expect(bundled(ev)["m.thread"]).toMatchObject({ count: 3, current_user_participated: true });
    const msgs = await c.get<{ chunk: Ev[] }>(`${V3}/rooms/${enc(roomId)}/messages?dir=b&limit=50`, { token: bob.accessToken });
    expect(msgs.status, msgs.text).toBe(200);
    expect(bundled(msgs.body.chunk.find((e) => e.event_id === root2))["m.thread"]).toMatchObject({ count: 1 });
    const ctx = await c.get<{ event: Ev }>(`${V3}/rooms/${enc(roomId)}/context/${enc(root3)}?limit=2`, { token: bob.accessToken });
    expect(ctx.status, ctx.text).toBe(200);
    expect(bundled(ctx.body.event)["m.thread"]).toMatchObject({ count: 1, current_user_participated: false });
  });

  it("rejects bad parameters and users who cannot see the room", async () => {
    const base = `${V1}/rooms/${enc(roomId)}/threads`;
    expectError(await c.get(`${base}?include=mine`, { token: alice.accessToken }), 400, "M_INVALID_PARAM");
    expectError(await c.get(`${base}?limit=0`, { token: alice.accessToken }), 400, "M_INVALID_PARAM");
    expectError(await c.get(`${base}?limit=many`, { token: alice.accessToken }), 400, "M_INVALID_PARAM");
    expectError(await c.get(`${base}?from=nonsense`, { token: alice.accessToken }), 400, "M_INVALID_PARAM");
    expectError(await c.get(base, { token: carol.accessToken }), 403, "M_FORBIDDEN");
    expectError(await c.get(`${V1}/rooms/${enc("!nowhere:test.local")}/threads`, { token: alice.accessToken }), 403, "M_FORBIDDEN");
  });
});

describe("edits and references", () => {
  let roomId: string;
  let original: string;
  let edit1: string;
  let edit2: string;
  let bobsEdit: string;
  let target: string;
  let ref1: string;
  let ref2: string;

  beforeAll(async () => {
    roomId = await room();
    original = await send(alice, roomId, "m.room.message", message("hello"));
    edit1 = await send(alice, roomId, "m.room.message", edit(original, "hello 1"));
    edit2 = await send(alice, roomId, "m.room.message", edit(original, "hello 2"));
    // Spec "Validity of replacement events": the same sender only; bob's edit, though newest, is ignored.
    bobsEdit = await send(bob, roomId, "m.room.message", edit(original, "hijacked"));
    target = await send(alice, roomId, "m.room.message", message("referenced"));
    ref1 = await send(bob, roomId, "m.room.message", reference(target));
    ref2 = await send(alice, roomId, "m.room.message", reference(target));
  });

  it("bundles the most recent valid edit in /event", async () => {
    const ev = await getEvent(bob, roomId, original);
    const replace = bundled(ev)["m.replace"] as Ev;
    expect(replace.event_id).toBe(edit2);
    expect((replace.content["m.new_content"] as Json).body).toBe("hello 2");
    // Spec: the server does not replace the original's content.
    expect(ev.content.body).toBe("hello");
  });

  it("lists every edit, valid or not, under /relations/{id}/m.replace", async () => {
    expect(await ids(alice, roomId, original, "/m.replace")).toEqual([bobsEdit, edit2, edit1]);
  });

  it("bundles references as a chunk of event ids", async () => {
    const ev = await getEvent(alice, roomId, target);
    expect(bundled(ev)["m.reference"]).toEqual({ chunk: [{ event_id: ref1 }, { event_id: ref2 }] });
    expect(await ids(alice, roomId, target, "/m.reference")).toEqual([ref2, ref1]);
  });

  it("bundles aggregations in /messages and /sync timelines", async () => {
    const msgs = await c.get<{ chunk: Ev[] }>(`${V3}/rooms/${enc(roomId)}/messages?dir=b&limit=50`, { token: bob.accessToken });
    expect(msgs.status, msgs.text).toBe(200);
    expect((bundled(msgs.body.chunk.find((e) => e.event_id === original))["m.replace"] as Ev).event_id).toBe(edit2);
    expect(bundled(msgs.body.chunk.find((e) => e.event_id === target))["m.reference"]).toEqual({ chunk: [{ event_id: ref1 }, { event_id: ref2 }] });

    const filter = enc(JSON.stringify({ room: { rooms: [roomId], timeline: { limit: 50 } } }));
    const sync = await c.get<{ rooms: { join: Record<string, { timeline: { events: Ev[] } }> } }>(`${V3}/sync?filter=${filter}`, { token: bob.accessToken });
    expect(sync.status, sync.text).toBe(200);
    const timeline = sync.body.rooms.join[roomId]!.timeline.events;
    expect((bundled(timeline.find((e) => e.event_id === original))["m.replace"] as Ev).event_id).toBe(edit2);
    expect(bundled(timeline.find((e) => e.event_id === target))["m.reference"]).toEqual({ chunk: [{ event_id: ref1 }, { event_id: ref2 }] });
  });

  it("drops the edit from the aggregation and the listing once the original is redacted", async () => {
    const redacted = await send(alice, roomId, "m.room.message", message("to be redacted"));
    const e = await send(alice, roomId, "m.room.message", edit(redacted, "secret"));
    expect(await ids(alice, roomId, redacted, "/m.replace")).toEqual([e]);
    const r = await c.put(`${V3}/rooms/${enc(roomId)}/redact/${enc(redacted)}/t${++txn}`, {}, { token: alice.accessToken });
    expect(r.status, r.text).toBe(200);
    expect(bundled(await getEvent(alice, roomId, redacted))["m.replace"]).toBeUndefined();
    expect(await ids(alice, roomId, redacted)).toEqual([]);
  });
});

describe("annotations and filters", () => {
  let roomId: string;
  let target: string;
  let thumbs: string;
  let frown: string;
  let vote: string;
  let threadReply: string;

  beforeAll(async () => {
    roomId = await room();
    target = await send(alice, roomId, "m.room.message", message("react to me"));
    thumbs = await send(bob, roomId, "m.reaction", reaction(target, "👍"));
    frown = await send(alice, roomId, "m.reaction", reaction(target, "👎"));
    vote = await send(bob, roomId, "org.example.vote", reaction(target, "yes"));
    threadReply = await send(bob, roomId, "m.room.message", inThread(target, "in thread"));
  });

  it("lists every child without filters", async () => {
    expect(await ids(alice, roomId, target)).toEqual([threadReply, vote, frown, thumbs]);
  });

  it("filters by relation type", async () => {
    expect(await ids(alice, roomId, target, "/m.annotation")).toEqual([vote, frown, thumbs]);
    expect(await ids(alice, roomId, target, "/m.thread")).toEqual([threadReply]);
    expect(await ids(alice, roomId, target, "/m.reference")).toEqual([]);
  });

  it("filters by relation type and event type", async () => {
    expect(await ids(alice, roomId, target, "/m.annotation/m.reaction")).toEqual([frown, thumbs]);
    expect(await ids(alice, roomId, target, "/m.annotation/org.example.vote")).toEqual([vote]);
    expect(await ids(alice, roomId, target, "/m.thread/m.reaction")).toEqual([]);
  });

  it("serves the children in client format with their own aggregations", async () => {
    const r = await relations(alice, roomId, target, "/m.annotation/m.reaction");
    expect(r.body.chunk[0]).toMatchObject({ event_id: frown, type: "m.reaction", sender: alice.userId, room_id: roomId });
    expect(r.body.chunk[0]!.content).toEqual(reaction(target, "👎"));
    expect(r.body.next_batch).toBeUndefined();
    expect(r.body.prev_batch).toBeUndefined();
    expect(r.body.recursion_depth).toBeUndefined();
  });
});

describe("pagination", () => {
  let roomId: string;
  let parent: string;
  const children: string[] = [];

  beforeAll(async () => {
    roomId = await room();
    parent = await send(alice, roomId, "m.room.message", message("parent"));
    for (let i = 0; i < 10; i++) children.push(await send(i % 2 ? alice : bob, roomId, "m.reaction", reaction(parent, `k${i}`)));
  });

  async function walk(dir: "b" | "f", limit: number): Promise<{ ids: string[]; pages: RelationsBody[] }> {
    const pages: RelationsBody[] = [];
    let from: string | undefined;
    for (let i = 0; i < 20; i++) {
      const r = await relations(alice, roomId, parent, "", `dir=${dir}&limit=${limit}${from ? `&from=${enc(from)}` : ""}`);
      expect(r.status, r.text).toBe(200);
      pages.push(r.body);
      expect(r.body.next_batch).not.toBe(from);
      from = r.body.next_batch;
      if (!from) break;
    }
    return { ids: pages.flatMap((p) => p.chunk.map((e) => e.event_id)), pages };
  }

  it("defaults to the 5 newest, backwards", async () => {
    const r = await relations(alice, roomId, parent);
    expect(r.body.chunk.map((e) => e.event_id)).toEqual(children.slice(5).reverse());
    expect(typeof r.body.next_batch).toBe("string");
  });

  it("pages backwards and forwards with next_batch, prev_batch on later pages only", async () => {
    const back = await walk("b", 3);
    expect(back.ids).toEqual([...children].reverse());
    expect(back.pages.map((p) => p.chunk.length)).toEqual([3, 3, 3, 1]);
    expect(back.pages[0]!.prev_batch).toBeUndefined();
    expect(back.pages.slice(1).every((p) => typeof p.prev_batch === "string")).toBe(true);
    const fwd = await walk("f", 4);
    expect(fwd.ids).toEqual(children);
    expect(fwd.pages.map((p) => p.chunk.length)).toEqual([4, 4, 2]);
  });

  it("stops at a `to` token, and a page's prev_batch starts it again", async () => {
    const p1 = await relations(alice, roomId, parent, "", "limit=3");
    const p2 = await relations(alice, roomId, parent, "", `limit=3&from=${enc(p1.body.next_batch!)}`);
    // Spec: "a from token from page 1 and a to token from page 2" cover page 2.
    const range = await relations(alice, roomId, parent, "", `limit=50&from=${enc(p1.body.next_batch!)}&to=${enc(p2.body.next_batch!)}`);
    expect(range.body.chunk.map((e) => e.event_id)).toEqual(p2.body.chunk.map((e) => e.event_id));
    expect(range.body.next_batch).toBeUndefined();
    // Reversed, the range is empty.
    expect(await ids(alice, roomId, parent, "", `from=${enc(p2.body.next_batch!)}&to=${enc(p1.body.next_batch!)}`)).toEqual([]);
    // Forwards from page 2's end up to its start (its prev_batch): page 2 again, oldest first.
    const fwd = await ids(alice, roomId, parent, "", `dir=f&limit=50&from=${enc(p2.body.next_batch!)}&to=${enc(p2.body.prev_batch!)}`);
    expect(fwd).toEqual([...p2.body.chunk.map((e) => e.event_id)].reverse());
  });

  it("accepts /messages and /sync tokens as `from`", async () => {
    const later = await send(alice, roomId, "m.room.message", message("after the reactions"));
    const msgs = await c.get<{ chunk: Ev[]; end: string }>(`${V3}/rooms/${enc(roomId)}/messages?dir=b&limit=1`, { token: alice.accessToken });
    expect(msgs.body.chunk.map((e) => e.event_id)).toEqual([later]);
    const filter = enc(JSON.stringify({ room: { rooms: [roomId], timeline: { limit: 1 } } }));
    const sync = await c.get<{ next_batch: string; rooms: { join: Record<string, { timeline: { prev_batch: string } }> } }>(`${V3}/sync?filter=${filter}`, { token: alice.accessToken });
    expect(sync.status, sync.text).toBe(200);
    for (const from of [msgs.body.end, sync.body.rooms.join[roomId]!.timeline.prev_batch, sync.body.next_batch]) {
      expect(await ids(alice, roomId, parent, "", `limit=2&from=${enc(from)}`)).toEqual([children[9], children[8]]);
    }
    // Forwards from the /sync position there is nothing newer.
    expect(await ids(alice, roomId, parent, "", `dir=f&from=${enc(sync.body.next_batch)}`)).toEqual([]);
  });

  it("caps the limit and treats limit=0 as an empty page", async () => {
    expect(await ids(alice, roomId, parent, "", "limit=100000")).toHaveLength(10);
    const zero = await relations(alice, roomId, parent, "", "limit=0");
    expect(zero.status, zero.text).toBe(200);
    expect(zero.body.chunk).toEqual([]);
    expect(typeof zero.body.next_batch).toBe("string");
  });
});

describe("recurse", () => {
  let roomId: string;
  let parent: string;
  const order: string[] = [];
  let thread1: string;
  let thread2: string;
  let annotation1: string;
  let annotation2: string;
  let reference1: string;
  let annotation3: string;
  let referenceEdit: string;
  let annotation4: string;
  const chain: string[] = [];

  beforeAll(async () => {
    roomId = await room();
    parent = await send(alice, roomId, "m.room.message", message("root"));
    const rec = async (id: Promise<string>) => {
      const v = await id;
      order.push(v);
      return v;
    };
    thread1 = await rec(send(alice, roomId, "m.room.message", inThread(parent, "t1")));
    thread2 = await rec(send(alice, roomId, "m.room.message", inThread(parent, "t2")));
    annotation1 = await rec(send(alice, roomId, "m.reaction", reaction(thread2, "a")));
    annotation2 = await rec(send(alice, roomId, "m.reaction", reaction(thread1, "b")));
    reference1 = await rec(send(alice, roomId, "m.room.message", reference(thread2)));
    annotation3 = await rec(send(alice, roomId, "m.reaction", reaction(reference1, "c")));
    referenceEdit = await rec(send(alice, roomId, "m.room.message", edit(reference1, "edited ref")));
    annotation4 = await rec(send(alice, roomId, "m.reaction", reaction(parent, "d")));
    // A chain of references five deep below the parent: only the first four levels are within reach.
    let prev = parent;
    for (let i = 0; i < 5; i++) chain.push((prev = await send(bob, roomId, "m.room.message", reference(prev))));
  });

  it("without recurse lists only direct children and no recursion_depth", async () => {
    const r = await relations(alice, roomId, parent, "", "dir=f&limit=50");
    expect(r.body.chunk.map((e) => e.event_id)).toEqual([thread1, thread2, annotation4, chain[0]]);
    expect(r.body.recursion_depth).toBeUndefined();
    const off = await relations(alice, roomId, parent, "", "dir=f&limit=50&recurse=false");
    expect(off.body.chunk.map((e) => e.event_id)).toEqual([thread1, thread2, annotation4, chain[0]]);
    expect(off.body.recursion_depth).toBe(0);
  });

  it("with recurse follows relations of relations, in stream order", async () => {
    const r = await relations(alice, roomId, parent, "", "dir=f&limit=50&recurse=true");
    expect(r.status, r.text).toBe(200);
    expect(r.body.recursion_depth).toBe(3);
    expect(r.body.chunk.map((e) => e.event_id)).toEqual([...order, ...chain.slice(0, 4)]);
    // The unstable MSC3981 name works too.
    expect(await ids(alice, roomId, parent, "", "dir=f&limit=50&org.matrix.msc3981.recurse=true")).toEqual([...order, ...chain.slice(0, 4)]);
  });

  it("paginates recursive results", async () => {
    const p1 = await relations(alice, roomId, parent, "", "recurse=true&limit=4");
    expect(p1.body.chunk.map((e) => e.event_id)).toEqual([chain[3], chain[2], chain[1], chain[0]]);
    const p2 = await relations(alice, roomId, parent, "", `recurse=true&limit=4&from=${enc(p1.body.next_batch!)}`);
    expect(p2.body.chunk.map((e) => e.event_id)).toEqual([annotation4, referenceEdit, annotation3, reference1]);
  });

  it("applies the filters to intermediate events too (spec: not through a non-matching intermediate event)", async () => {
    // Annotations of the thread events and of the reference are reached only through non-annotations.
    expect(await ids(alice, roomId, parent, "/m.annotation", "dir=f&recurse=true")).toEqual([annotation4]);
    // The references chain matches at every level.
    expect(await ids(alice, roomId, parent, "/m.reference", "dir=f&limit=50&recurse=true")).toEqual(chain.slice(0, 4));
    expect(await ids(alice, roomId, thread2, "/m.reference/m.room.message", "dir=f&recurse=true")).toEqual([reference1]);
    // From the thread event: its annotation, its reference, and the reference's own children.
    expect(await ids(alice, roomId, thread2, "", "dir=f&recurse=true")).toEqual([annotation1, reference1, annotation3, referenceEdit]);
    expect(await ids(alice, roomId, thread2, "/m.annotation", "dir=f&recurse=true")).toEqual([annotation1]);
    expect(await ids(alice, roomId, thread1, "/m.annotation", "dir=f&recurse=true")).toEqual([annotation2]);
  });
});

describe("access and errors", () => {
  let roomId: string;
  let parent: string;

  beforeAll(async () => {
    roomId = await room();
    parent = await send(alice, roomId, "m.room.message", message("parent"));
    await send(bob, roomId, "m.reaction", reaction(parent, "👍"));
  });

  it("is 404 for unknown rooms and events, and events of another room", async () => {
    expectError(await relations(alice, "!nowhere:test.local", parent), 404, "M_NOT_FOUND");
    expectError(await relations(alice, roomId, "$nothing"), 404, "M_NOT_FOUND");
    const other = await room();
    expectError(await relations(alice, other, parent), 404, "M_NOT_FOUND");
  });

  it("is 404 when the user cannot see the parent", async () => {
    expectError(await relations(carol, roomId, parent), 404, "M_NOT_FOUND");
    // history_visibility joined: bob joins after the parent was sent.
    const r = await c.post(`${V3}/createRoom`, { preset: "public_chat", initial_state: [{ type: "m.room.history_visibility", content: { history_visibility: "joined" } }] }, { token: alice.accessToken });
    const hidden = r.body.room_id as string;
    const early = await send(alice, hidden, "m.room.message", message("before bob"));
    expect((await c.post(`${V3}/rooms/${enc(hidden)}/join`, {}, { token: bob.accessToken })).status).toBe(200);
    await send(alice, hidden, "m.reaction", reaction(early, "x"));
    expectError(await relations(bob, hidden, early), 404, "M_NOT_FOUND");
    expect(await ids(alice, hidden, early)).toHaveLength(1);
  });

  it("leaves out children the user cannot see", async () => {
    const r = await c.post(`${V3}/createRoom`, { preset: "public_chat", initial_state: [{ type: "m.room.history_visibility", content: { history_visibility: "joined" } }] }, { token: alice.accessToken });
    const hidden = r.body.room_id as string;
    expect((await c.post(`${V3}/rooms/${enc(hidden)}/join`, {}, { token: bob.accessToken })).status).toBe(200);
    const p = await send(alice, hidden, "m.room.message", message("bob sees this"));
    const seen = await send(alice, hidden, "m.reaction", reaction(p, "1"));
    expect((await c.post(`${V3}/rooms/${enc(hidden)}/leave`, {}, { token: bob.accessToken })).status).toBe(200);
    const unseen = await send(alice, hidden, "m.reaction", reaction(p, "2"));
    expect(await ids(bob, hidden, p)).toEqual([seen]);
    expect(await ids(alice, hidden, p)).toEqual([unseen, seen]);
  });

  it("rejects invalid parameters with 400 M_INVALID_PARAM", async () => {
    for (const q of ["dir=x", "limit=-1", "limit=ten", "recurse=maybe", "from=garbage", "to=t1"]) {
      expectError(await relations(alice, roomId, parent, "", q), 400, "M_INVALID_PARAM");
    }
    expectError(await relations(alice, "not-a-room", parent), 400, "M_INVALID_PARAM");
  });

  it("requires authentication", async () => {
    const r = await c.get(`${V1}/rooms/${enc(roomId)}/relations/${enc(parent)}`);
    expectError(r, 401, "M_MISSING_TOKEN");
  });
});
