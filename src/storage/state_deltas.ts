/**
 * The shape of state-group storage (docs/state-storage.md). Groups form a tree; a group at chain depth d stores
 * only its differences from its ancestor at depth `deltaBaseDepth(d)`: d with its lowest non-zero base-4 digit set
 * to zero. So loading any group's state takes at most one step per base-4 digit (≈ log4 of the number of state
 * changes), and each group stores on average ~1.5 entries per level — never a full copy of the room's state.
 */
import type { StateMap } from "../core/events/event.js";

export const DELTA_BASE = 4;

/** The chain depth of the ancestor a group at depth `d` (> 0) stores its delta against. */
export function deltaBaseDepth(d: number): number {
  let unit = 1;
  while ((Math.floor(d / unit) % DELTA_BASE) === 0) unit *= DELTA_BASE;
  return d - (Math.floor(d / unit) % DELTA_BASE) * unit;
}

/** Changes to state: key → event id, or null for "removed". */
export type StateDelta = Map<string, string | null>;

/** Applies deltas in order (oldest first) onto a copy of `base`. */
export function applyDeltas(base: StateMap, deltas: Iterable<StateDelta>): StateMap {
  const out = new Map(base);
  for (const d of deltas) {
    for (const [k, v] of d) {
      if (v === null) out.delete(k);
      else out.set(k, v);
    }
  }
  return out;
}

/** Merges deltas (oldest first) into one. */
export function mergeDeltas(deltas: Iterable<StateDelta>): StateDelta {
  const out: StateDelta = new Map();
  for (const d of deltas) for (const [k, v] of d) out.set(k, v);
  return out;
}

/** The delta that turns `from` into `to`. */
export function diffStates(from: StateMap, to: StateMap): StateDelta {
  const out: StateDelta = new Map();
  for (const [k, v] of to) if (from.get(k) !== v) out.set(k, v);
  for (const k of from.keys()) if (!to.has(k)) out.set(k, null);
  return out;
}
