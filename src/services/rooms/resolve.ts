/**
 * State resolution over stored events: the pure algorithm (core/rooms/state_res) needs every event of the state sets
 * and of their auth chains at hand, so they are loaded first, level by level along auth_events.
 */
import type { Event, StateMap } from "../../core/events/event.js";
import { resolveState } from "../../core/rooms/state_res/index.js";
import type { RoomVersion } from "../../core/rooms/versions.js";
import type { EventCache, StoredEvent } from "./event_cache.js";

/** Loads events and, transitively, their auth events (what is not stored is simply absent). */
export async function loadWithAuthChains(events: EventCache, ids: Iterable<string>): Promise<Map<string, StoredEvent>> {
  const out = new Map<string, StoredEvent>();
  let frontier = [...new Set(ids)];
  while (frontier.length > 0) {
    const loaded = await events.getMany(frontier);
    const next = new Set<string>();
    for (const [id, e] of loaded) {
      out.set(id, e);
      for (const a of e.event.auth_events) if (!out.has(a) && !loaded.has(a)) next.add(a);
    }
    frontier = [...next].filter((id) => !out.has(id));
  }
  return out;
}

/**
 * Resolves state sets of a room (identical sets short-cut to themselves). `pending`: events the sets may cite that
 * are not stored yet — the received event whose state after it is being resolved against current state. Without
 * it that event would "take no part" (as an unknown event) and current state would always win the fork.
 */
export async function resolveStoredStates(events: EventCache, version: RoomVersion, stateSets: StateMap[], pending: readonly Event[] = []): Promise<StateMap> {
  const distinct = dedupe(stateSets);
  if (distinct.length === 1) return distinct[0]!;
  const extra = new Map(pending.map((e) => [e.event_id, e]));
  const ids = new Set<string>();
  for (const s of distinct) for (const id of s.values()) if (!extra.has(id)) ids.add(id);
  for (const e of pending) for (const a of e.auth_events) if (!extra.has(a)) ids.add(a);
  const loaded = await loadWithAuthChains(events, ids);
  return resolveState({
    version,
    stateSets: distinct,
    getEvent: (id): Event | undefined => extra.get(id) ?? loaded.get(id)?.event,
    isRejected: (id) => !extra.has(id) && (loaded.get(id)?.rejected ?? false),
  });
}

function dedupe(sets: StateMap[]): StateMap[] {
  const out: StateMap[] = [];
  for (const s of sets) {
    if (!out.some((o) => sameState(o, s))) out.push(s);
  }
  return out;
}

export function sameState(a: StateMap, b: StateMap): boolean {
  if (a === b) return true;
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (b.get(k) !== v) return false;
  return true;
}
