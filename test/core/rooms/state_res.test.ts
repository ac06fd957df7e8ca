/**
 * State resolution on hand-built conflicted DAGs, and each step of the v2 algorithm on its own.
 */
import { describe, expect, it } from "vitest";
import type { Event, StateMap } from "../../../src/core/events/event.js";
import { stateMapKey } from "../../../src/core/events/event.js";
import type { JsonObject } from "../../../src/core/json/types.js";
import { authDifference } from "../../../src/core/rooms/state_res/auth_difference.js";
import { conflictedStateSubgraph } from "../../../src/core/rooms/state_res/conflicted_subgraph.js";
import { EventGraph } from "../../../src/core/rooms/state_res/graph.js";
import { resolveState } from "../../../src/core/rooms/state_res/index.js";
import { mainlineSort } from "../../../src/core/rooms/state_res/mainline_sort.js";
import { isPowerEvent, reverseTopologicalPowerSort } from "../../../src/core/rooms/state_res/power_sort.js";
import { splitConflicted } from "../../../src/core/rooms/state_res/v2.js";
import { getRoomVersion, ROOM_VERSIONS, type RoomVersion } from "../../../src/core/rooms/versions.js";
import { eventFromPdu, RoomBuilder } from "./helpers.js";

const v = (id: string): RoomVersion => getRoomVersion(id)!;
const V2_VERSIONS = [...ROOM_VERSIONS.values()].filter((r) => r.stateRes !== "v1").map((r) => [r.id, r] as const);

const ALICE = "@alice:example.org";
const BOB = "@bob:example.org";
const CAROL = "@carol:example.org";
const ELLA = "@ella:example.org";

const key = (type: string, stateKey = ""): string => stateMapKey(type, stateKey);

function resolve(b: RoomBuilder, stateSets: StateMap[], isRejected?: (id: string) => boolean): StateMap {
  return resolveState({ version: b.version, stateSets, getEvent: b.getEvent, ...(isRejected ? { isRejected } : {}) });
}

/** alice the creator (100 before v12), bob a moderator at 50, carol joined at 0; public. */
function base(r: RoomVersion, pl: JsonObject = {}): RoomBuilder {
  const users: JsonObject = r.privilegedCreators ? { [BOB]: 50 } : { [ALICE]: 100, [BOB]: 50 };
  const b = new RoomBuilder(r).bootstrap(ALICE, { powerLevels: { users, ...pl } });
  b.join(BOB);
  b.join(CAROL);
  return b;
}

describe("conflicted DAGs", () => {
  it.each(V2_VERSIONS)("v%s: a ban beats the banned moderator's concurrent power levels change", (_id, r) => {
    const b = base(r);
    const pl0 = b.state.get(key("m.room.power_levels"));
    const a = b.branch();
    const ban = a.member(ALICE, BOB, "ban");
    const c = b.branch();
    const users = { ...(c.lookup("m.room.power_levels", "")!.content.users as JsonObject), [CAROL]: 50 };
    const pl = c.add({ type: "m.room.power_levels", sender: BOB, state_key: "", content: { users } });
    for (const sets of [[a.state, c.state], [c.state, a.state]]) {
      const out = resolve(b, sets);
      expect(out.get(key("m.room.member", BOB))).toBe(ban.event_id);
      expect(out.get(key("m.room.power_levels"))).toBe(pl0);
      expect(out.get(key("m.room.power_levels"))).not.toBe(pl.event_id);
    }
  });

  it.each(V2_VERSIONS)("v%s: a join rules change beats a concurrent join", (_id, r) => {
    const b = base(r);
    const a = b.branch();
    const jr = a.add({ type: "m.room.join_rules", sender: ALICE, state_key: "", content: { join_rule: "invite" } });
    const e = b.branch();
    e.join(ELLA);
    const out = resolve(b, [a.state, e.state]);
    expect(out.get(key("m.room.join_rules"))).toBe(jr.event_id);
    expect(out.has(key("m.room.member", ELLA))).toBe(false);
    // without the conflicting join rules change the join stands
    expect(resolve(b, [b.state, e.state]).get(key("m.room.member", ELLA))).toBe(e.state.get(key("m.room.member", ELLA)));
  });

  it.each(V2_VERSIONS)("v%s: concurrent topics: the later origin_server_ts wins, then the larger event id", (_id, r) => {
    const b = base(r, { events: { "m.room.topic": 0 } });
    const a = b.branch();
    const c = b.branch();
    const t1 = a.add({ type: "m.room.topic", sender: BOB, state_key: "", content: { topic: "one" }, origin_server_ts: 1000 });
    const t2 = c.add({ type: "m.room.topic", sender: CAROL, state_key: "", content: { topic: "two" }, origin_server_ts: 999 });
    expect(resolve(b, [a.state, c.state]).get(key("m.room.topic"))).toBe(t1.event_id);
    expect(resolve(b, [c.state, a.state]).get(key("m.room.topic"))).toBe(t1.event_id);
    const a2 = b.branch();
    const c2 = b.branch();
    const x = a2.add({ id: "$x-topic", type: "m.room.topic", sender: BOB, state_key: "", content: { topic: "x" }, origin_server_ts: 5000 });
    const y = c2.add({ id: "$y-topic", type: "m.room.topic", sender: CAROL, state_key: "", content: { topic: "y" }, origin_server_ts: 5000 });
    expect(x.event_id < y.event_id).toBe(true);
    expect(resolve(b, [a2.state, c2.state]).get(key("m.room.topic"))).toBe(y.event_id);
    void t2;
  });

  it.each(V2_VERSIONS)("v%s: a topic loses to its sender's concurrent demotion", (_id, r) => {
    const b = base(r);
    const a = b.branch();
    const users = { ...(a.lookup("m.room.power_levels", "")!.content.users as JsonObject), [BOB]: 0 };
    const demote = a.add({ type: "m.room.power_levels", sender: ALICE, state_key: "", content: { users } });
    const c = b.branch();
    c.add({ type: "m.room.topic", sender: BOB, state_key: "", content: { topic: "mine" } });
    const out = resolve(b, [a.state, c.state]);
    expect(out.get(key("m.room.power_levels"))).toBe(demote.event_id);
    expect(out.has(key("m.room.topic"))).toBe(false);
  });

  it.each(V2_VERSIONS)("v%s: unconflicted state is kept as is", (_id, r) => {
    const b = base(r);
    const a = b.branch();
    const c = b.branch();
    a.add({ type: "m.room.name", sender: BOB, state_key: "", content: { name: "a" } });
    c.add({ type: "m.room.name", sender: BOB, state_key: "", content: { name: "c" } });
    const out = resolve(b, [a.state, c.state]);
    for (const [k, id] of b.state) expect(out.get(k)).toBe(id);
    expect(resolve(b, [b.state, b.state])).toEqual(b.state);
  });

  it.each([["8"], ["10"], ["12"]])("v%s: restricted joins are not re-checked for signatures (verified on receipt)", (id) => {
    const b = base(v(id));
    b.add({ type: "m.room.join_rules", sender: ALICE, state_key: "", content: { join_rule: "restricted", allow: [] } });
    const a = b.branch();
    const join = a.member(ELLA, ELLA, "join", { join_authorised_via_users_server: BOB });
    const c = b.branch();
    c.add({ type: "m.room.topic", sender: BOB, state_key: "", content: { topic: "t" } });
    expect(resolve(b, [a.state, c.state]).get(key("m.room.member", ELLA))).toBe(join.event_id);
  });

  it("v12: rejected auth events are not used by the iterative auth checks", () => {
    const r = v("12");
    const b = base(r);
    const bobJoin = b.state.get(key("m.room.member", BOB))!;
    const pl0 = b.state.get(key("m.room.power_levels"))!;
    // carol's own power levels event giving herself 50 (rejected on receipt), then a topic citing it
    const bad = b.make({ type: "m.room.power_levels", sender: CAROL, state_key: "", content: { users: { [CAROL]: 50 } }, auth_events: [pl0, b.state.get(key("m.room.member", CAROL))!] });
    const topic = b.make({ type: "m.room.topic", sender: CAROL, state_key: "", content: { topic: "t" }, auth_events: [bad.event_id, b.state.get(key("m.room.member", CAROL))!] });
    const withTopic = new Map(b.state).set(key("m.room.topic"), topic.event_id);
    expect(resolve(b, [withTopic, b.state], (id) => id === bad.event_id).has(key("m.room.topic"))).toBe(false);
    expect(resolve(b, [withTopic, b.state]).get(key("m.room.topic"))).toBe(topic.event_id);
    void bobJoin;
  });

  it.each([["10"], ["12"]])("v%s: a 5000-event deep auth chain resolves without recursion and quickly", (id) => {
    const r = v(id);
    const b = base(r, { events: { "m.room.topic": 0 } });
    for (let i = 0; i < 5000; i++) b.member(CAROL, CAROL, "join", { displayname: `carol ${i}` });
    const a = b.branch();
    const c = b.branch();
    const t1 = a.add({ type: "m.room.topic", sender: CAROL, state_key: "", content: { topic: "a" } });
    c.add({ type: "m.room.topic", sender: CAROL, state_key: "", content: { topic: "c" }, origin_server_ts: 0 });
    const d = c.member(CAROL, CAROL, "join", { displayname: "carol again" });
    const started = performance.now();
    const out = resolve(b, [a.state, c.state]);
    expect(performance.now() - started).toBeLessThan(2000);
    expect(out.get(key("m.room.topic"))).toBe(t1.event_id);
    expect(out.get(key("m.room.member", CAROL))).toBe(d.event_id);
  });
});

/** Events built directly, for the steps of the algorithm. */
function dag(r: RoomVersion, specs: { id: string; type: string; sender: string; state_key?: string; content?: JsonObject; auth?: string[]; ts?: number }[]): EventGraph {
  const byId = new Map<string, Event>();
  for (const s of specs) {
    byId.set(
      s.id,
      eventFromPdu({
        event_id: s.id,
        room_id: "!r:example.org",
        type: s.type,
        sender: s.sender,
        state_key: s.state_key ?? "",
        content: s.content ?? {},
        origin_server_ts: s.ts ?? 0,
        prev_events: [],
        auth_events: s.auth ?? [],
      }),
    );
  }
  return new EventGraph(r, (id) => byId.get(id));
}

describe("algorithm steps", () => {
  const r = v("10");
  const create = { id: "$create", type: "m.room.create", sender: ALICE, content: { creator: ALICE, room_version: "10" } };
  const pl0 = { id: "$pl0", type: "m.room.power_levels", sender: ALICE, content: { users: { [ALICE]: 100, [BOB]: 50 } }, auth: ["$create"] };

  it("splits unconflicted and conflicted state; keys missing from a set are conflicted", () => {
    const { unconflicted, conflicted } = splitConflicted([
      new Map([["a", "$1"], ["b", "$2"], ["c", "$3"]]),
      new Map([["a", "$1"], ["b", "$4"]]),
    ]);
    expect(unconflicted).toEqual(new Map([["a", "$1"]]));
    expect([...conflicted].sort()).toEqual(["$2", "$3", "$4"]);
  });

  it("power events", () => {
    const g = dag(r, [
      create,
      pl0,
      { id: "$kick", type: "m.room.member", sender: ALICE, state_key: BOB, content: { membership: "leave" } },
      { id: "$leave", type: "m.room.member", sender: BOB, state_key: BOB, content: { membership: "leave" } },
      { id: "$ban", type: "m.room.member", sender: ALICE, state_key: BOB, content: { membership: "ban" } },
      { id: "$jr", type: "m.room.join_rules", sender: ALICE, content: { join_rule: "public" } },
      { id: "$topic", type: "m.room.topic", sender: ALICE },
    ]);
    const power = (id: string): boolean => isPowerEvent(g.get(id)!);
    expect(["$create", "$pl0", "$kick", "$ban", "$jr"].every(power)).toBe(true);
    expect(["$leave", "$topic"].some(power)).toBe(false);
  });

  it("reverse topological power ordering: auth order first, then power, origin_server_ts, event id", () => {
    const g = dag(r, [
      create,
      pl0,
      { id: "$x", type: "m.room.join_rules", sender: ALICE, auth: ["$create", "$pl0"], ts: 50 },
      { id: "$y", type: "m.room.join_rules", sender: BOB, auth: ["$create", "$pl0"], ts: 10 },
      { id: "$z", type: "m.room.join_rules", sender: BOB, auth: ["$create", "$pl0"], ts: 10 },
      { id: "$w", type: "m.room.join_rules", sender: ALICE, auth: ["$create", "$pl0", "$y"], ts: 0 },
      { id: "$u", type: "m.room.join_rules", sender: BOB, auth: ["$create", "$pl0"], ts: 5 },
    ]);
    const full = new Set(["$x", "$y", "$z", "$w", "$u"]);
    // $x (alice) first; then bob's by ts and id; $w (alice) as soon as $y, which it cites, is out
    expect(reverseTopologicalPowerSort(g, ["$x", "$y", "$z", "$w", "$u"], full)).toEqual(["$x", "$u", "$y", "$w", "$z"]);
    // the auth chain inside the full conflicted set is pulled in
    expect(reverseTopologicalPowerSort(g, ["$w"], full)).toEqual(["$y", "$w"]);
    expect(reverseTopologicalPowerSort(g, ["$w"], new Set(["$w"]))).toEqual(["$w"]);
  });

  it("mainline ordering: older mainline positions first (no power levels = ∞), then origin_server_ts, then event id", () => {
    const g = dag(r, [
      create,
      pl0,
      { id: "$pl1", type: "m.room.power_levels", sender: ALICE, content: pl0.content, auth: ["$create", "$pl0"] },
      { id: "$pl2", type: "m.room.power_levels", sender: ALICE, content: pl0.content, auth: ["$create", "$pl1"] },
      { id: "$side", type: "m.room.power_levels", sender: ALICE, content: pl0.content, auth: ["$create", "$pl0"] },
      { id: "$a", type: "m.room.topic", sender: ALICE, auth: ["$create", "$pl2"], ts: 1 },
      { id: "$b", type: "m.room.topic", sender: ALICE, auth: ["$create", "$pl0"], ts: 9 },
      { id: "$c", type: "m.room.topic", sender: ALICE, auth: ["$create", "$side"], ts: 5 },
      { id: "$d", type: "m.room.topic", sender: ALICE, auth: ["$create"], ts: 100 },
      { id: "$e", type: "m.room.topic", sender: ALICE, auth: ["$create", "$pl1"], ts: 7 },
      { id: "$f", type: "m.room.topic", sender: ALICE, auth: ["$create", "$pl1"], ts: 7 },
    ]);
    // positions from $pl2: $a 0, $e/$f 1, $b 2, $c 2 (via $side → $pl0), $d ∞
    expect(mainlineSort(g, ["$a", "$b", "$c", "$d", "$e", "$f"], "$pl2")).toEqual(["$d", "$c", "$b", "$e", "$f", "$a"]);
    // without a power levels event everything is ∞: origin_server_ts decides
    expect(mainlineSort(g, ["$a", "$b", "$c", "$d"], undefined)).toEqual(["$a", "$c", "$b", "$d"]);
  });

  it("auth difference: events in some but not all full auth chains", () => {
    const g = dag(r, [
      create,
      { id: "$x", type: "t", sender: ALICE, auth: ["$create"] },
      { id: "$y", type: "t", sender: ALICE, auth: ["$create"] },
      { id: "$a", type: "s", sender: ALICE, auth: ["$create", "$x"] },
      { id: "$b", type: "s", sender: ALICE, auth: ["$create", "$y"] },
    ]);
    expect([...authDifference(g, [new Map([["k", "$a"]]), new Map([["k", "$b"]])])].sort()).toEqual(["$x", "$y"]);
    // a state event is not in its own auth chain
    expect([...authDifference(g, [new Map([["k", "$a"]]), new Map([["k", "$x"]])])].sort()).toEqual(["$x"]);
    expect(authDifference(g, [new Map([["k", "$a"]]), new Map([["k", "$a"]])]).size).toBe(0);
  });

  it("auth difference over more than 32 state sets", () => {
    const specs = [create, ...Array.from({ length: 40 }, (_, i) => ({ id: `$x${i}`, type: "t", sender: ALICE, auth: ["$create"] }))];
    specs.push(...Array.from({ length: 40 }, (_, i) => ({ id: `$s${i}`, type: "s", sender: ALICE, auth: ["$create", `$x${i}`, "$x0"] })));
    const g = dag(r, specs);
    const sets = Array.from({ length: 40 }, (_, i) => new Map([["k", `$s${i}`]]));
    const diff = authDifference(g, sets);
    expect(diff.has("$create")).toBe(false);
    expect(diff.has("$x0")).toBe(false); // every chain has it
    expect(diff.size).toBe(39);
    expect(diff.has("$x39")).toBe(true);
  });

  it("conflicted state subgraph: the auth paths between conflicted events", () => {
    const g = dag(v("12"), [
      { ...create, content: { room_version: "12" } },
      { id: "$a1", type: "m.room.power_levels", sender: ALICE, auth: ["$create"] },
      { id: "$m", type: "m.room.member", sender: BOB, state_key: BOB, content: { membership: "join" }, auth: ["$a1"] },
      { id: "$n", type: "m.room.member", sender: CAROL, state_key: CAROL, content: { membership: "join" }, auth: ["$create"] },
      { id: "$a2", type: "m.room.power_levels", sender: BOB, auth: ["$m", "$n"] },
      { id: "$lonely", type: "m.room.topic", sender: BOB, auth: ["$m"] },
    ]);
    expect([...conflictedStateSubgraph(g, new Set(["$a1", "$a2"]))].sort()).toEqual(["$a1", "$a2", "$m"]);
    expect([...conflictedStateSubgraph(g, new Set(["$a2", "$lonely"]))]).toEqual([]);
    expect([...conflictedStateSubgraph(g, new Set(["$a1", "$lonely", "$a2"]))].sort()).toEqual(["$a1", "$a2", "$lonely", "$m"]);
  });
});

describe("room version 1 state resolution", () => {
  const r = v("1");
  const depth = (d: number): { pdu: JsonObject } => ({ pdu: { depth: d } });

  it("power levels: the deepest event still allowed on top of the shallower one", () => {
    const b = base(r);
    const users = b.lookup("m.room.power_levels", "")!.content.users as JsonObject;
    const a = b.branch();
    const c = b.branch();
    const p1 = a.add({ type: "m.room.power_levels", sender: ALICE, state_key: "", content: { users: { ...users, [CAROL]: 10 } }, ...depth(10) });
    const p2 = c.add({ type: "m.room.power_levels", sender: BOB, state_key: "", content: { users: { ...users, [CAROL]: 20 } }, ...depth(11) });
    expect(resolve(b, [a.state, c.state]).get(key("m.room.power_levels"))).toBe(p2.event_id);
    // a deeper change bob may not make on top of p1 stops the list at p1
    const c2 = b.branch();
    c2.add({ type: "m.room.power_levels", sender: BOB, state_key: "", content: { users: { ...users, [BOB]: 100 } }, ...depth(12) });
    expect(resolve(b, [a.state, c2.state]).get(key("m.room.power_levels"))).toBe(p1.event_id);
  });

  it("other events: the deepest that passes auth; keys only some states hold are not conflicts", () => {
    const b = base(r);
    const a = b.branch();
    const c = b.branch();
    const t1 = a.add({ type: "m.room.topic", sender: BOB, state_key: "", content: { topic: "a" }, ...depth(10) });
    const t2 = c.add({ type: "m.room.topic", sender: BOB, state_key: "", content: { topic: "c" }, ...depth(11) });
    expect(resolve(b, [a.state, c.state]).get(key("m.room.topic"))).toBe(t2.event_id);
    const c2 = b.branch();
    c2.add({ type: "m.room.topic", sender: CAROL, state_key: "", content: { topic: "low" }, ...depth(12) }); // carol is below 50
    expect(resolve(b, [a.state, c2.state]).get(key("m.room.topic"))).toBe(t1.event_id);
    const n = a.add({ type: "m.room.name", sender: CAROL, state_key: "", content: { name: "unchecked" } });
    expect(resolve(b, [a.state, c.state]).get(key("m.room.name"))).toBe(n.event_id);
  });

  it("members resolve after power levels and join rules", () => {
    const b = base(r);
    const a = b.branch();
    const c = b.branch();
    const ban = a.add({ type: "m.room.member", sender: ALICE, state_key: ELLA, content: { membership: "ban" }, ...depth(10) });
    c.add({ type: "m.room.member", sender: ELLA, state_key: ELLA, content: { membership: "join" }, ...depth(11) });
    expect(resolve(b, [a.state, c.state]).get(key("m.room.member", ELLA))).toBe(ban.event_id);
  });
});
