/**
 * State resolution of room version 1. R starts as the union of the states without the conflicting keys (a key is
 * conflicting when the states hold different event ids for it; a key only some states hold is not). Then, in
 * turn, conflicts of m.room.power_levels, m.room.join_rules and m.room.member are resolved by taking the events in
 * ascending depth / descending sha1(event_id) order and keeping each while it passes the auth rules in R; every
 * other conflict takes the highest-depth, lowest-sha1 event that passes in R (the last one if none does, as
 * Synapse does).
 */
import { createHash } from "node:crypto";
import type { Event, StateMap } from "../../events/event.js";
import { splitStateMapKey, stateMapKey } from "../../events/event.js";
import { checkEventAuth } from "../auth.js";
import type { EventGraph } from "./graph.js";
import { STATE_RES_AUTH_OPTIONS } from "./iterative_auth_check.js";

function separate(stateSets: readonly StateMap[]): { unconflicted: StateMap; conflicted: Map<string, Set<string>> } {
  const unconflicted: StateMap = new Map();
  const conflicted = new Map<string, Set<string>>();
  for (const set of stateSets) {
    for (const [k, v] of set) {
      const c = conflicted.get(k);
      if (c) {
        c.add(v);
        continue;
      }
      const u = unconflicted.get(k);
      if (u === undefined) unconflicted.set(k, v);
      else if (u !== v) {
        conflicted.set(k, new Set([u, v]));
        unconflicted.delete(k);
      }
    }
  }
  return { unconflicted, conflicted };
}

const sha1Hex = (id: string): string => createHash("sha1").update(id, "utf8").digest("hex");

/** Highest depth first, then lowest sha1(event_id). */
function orderedNewestFirst(events: Event[]): Event[] {
  const keyed = events.map((e) => ({ e, h: sha1Hex(e.event_id) }));
  keyed.sort((a, b) => b.e.depth - a.e.depth || (a.h < b.h ? -1 : a.h > b.h ? 1 : 0));
  return keyed.map((k) => k.e);
}

export function resolveV1(graph: EventGraph, stateSets: readonly StateMap[]): StateMap {
  const { unconflicted, conflicted } = separate(stateSets);
  if (conflicted.size === 0) return unconflicted;

  const r: StateMap = new Map(unconflicted);
  /** Allowed in R, with `override` standing in for R's entry at its key (no copy of R per conflict). */
  const allowedIn = (e: Event, override?: Event): boolean =>
    checkEventAuth(
      graph.version,
      e,
      (t, k) => {
        if (override && override.type === t && override.state_key === k) return override;
        const id = r.get(stateMapKey(t, k));
        return id === undefined ? undefined : graph.get(id);
      },
      STATE_RES_AUTH_OPTIONS,
    ).allowed;

  /** Power levels, join rules and members: the oldest first, each kept while the next one is allowed on top of it. */
  const resolveAuthEvents = (_key: string, events: Event[]): string => {
    const ordered = orderedNewestFirst(events).reverse();
    let kept = ordered[0]!;
    for (const e of ordered.slice(1)) {
      if (!allowedIn(e, kept)) break;
      kept = e;
    }
    return kept.event_id;
  };

  const groups = new Map<string, Event[]>();
  for (const [k, ids] of conflicted) {
    const events = [...ids].map((id) => graph.get(id)).filter((e): e is Event => e !== undefined);
    if (events.length > 0) groups.set(k, events);
  }
  const resolved: StateMap = new Map();
  // Each pass resolves against R as the previous passes left it; results of one pass apply together afterwards.
  const pass = (select: (type: string, stateKey: string) => boolean, resolve: (key: string, events: Event[]) => string): void => {
    const out: [string, string][] = [];
    for (const [k, events] of groups) {
      if (resolved.has(k)) continue;
      const [type, stateKey] = splitStateMapKey(k);
      if (select(type, stateKey)) out.push([k, resolve(k, events)]);
    }
    for (const [k, v] of out) {
      resolved.set(k, v);
      r.set(k, v);
    }
  };
  pass((t, k) => t === "m.room.power_levels" && k === "", resolveAuthEvents);
  pass((t) => t === "m.room.join_rules", resolveAuthEvents);
  pass((t) => t === "m.room.member", resolveAuthEvents);
  pass(
    () => true,
    (_k, events) => {
      const ordered = orderedNewestFirst(events);
      return (ordered.find((e) => allowedIn(e)) ?? ordered[ordered.length - 1]!).event_id;
    },
  );

  const out: StateMap = new Map(unconflicted);
  for (const [k, v] of resolved) out.set(k, v);
  return out;
}
