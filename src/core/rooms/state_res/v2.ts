/**
 * State resolution v2 (room versions 2-11) and v2.1 (room version 12, MSC4297), "Algorithm":
 * 1. power events of the full conflicted set (plus their auth chains within it), reverse topological power order;
 * 2. iterative auth checks from the unconflicted state (v2.1: from the empty state);
 * 3. the remaining events in mainline order of the resulting power levels;
 * 4. iterative auth checks of those on top;
 * 5. the unconflicted state map re-applied over the result.
 * v2.1 also adds the conflicted state subgraph to the full conflicted set.
 */
import type { StateMap } from "../../events/event.js";
import { stateMapKey } from "../../events/event.js";
import { authDifference } from "./auth_difference.js";
import { conflictedStateSubgraph } from "./conflicted_subgraph.js";
import type { EventGraph } from "./graph.js";
import { iterativeAuthChecks } from "./iterative_auth_check.js";
import { mainlineSort } from "./mainline_sort.js";
import { isPowerEvent, reverseTopologicalPowerSort } from "./power_sort.js";

/**
 * "If a given key K is present in every Sᵢ with the same value V in each state map, then the pair (K, V) belongs to
 * the unconflicted state map. Otherwise, V belongs to the conflicted state set."
 */
export function splitConflicted(stateSets: readonly StateMap[]): { unconflicted: StateMap; conflicted: Set<string> } {
  // One pass over the entries: per key, its single value and how many sets hold it, or all its values once a
  // second one turns up.
  const single = new Map<string, { value: string; count: number }>();
  const multi = new Map<string, Set<string>>();
  for (const s of stateSets) {
    for (const [k, v] of s) {
      const m = multi.get(k);
      if (m) {
        m.add(v);
        continue;
      }
      const one = single.get(k);
      if (!one) single.set(k, { value: v, count: 1 });
      else if (one.value === v) one.count++;
      else {
        multi.set(k, new Set([one.value, v]));
        single.delete(k);
      }
    }
  }
  const unconflicted: StateMap = new Map();
  const conflicted = new Set<string>();
  for (const [k, { value, count }] of single) {
    if (count === stateSets.length) unconflicted.set(k, value);
    else conflicted.add(value); // missing from some state sets
  }
  for (const values of multi.values()) for (const v of values) conflicted.add(v);
  return { unconflicted, conflicted };
}

export function resolveV2(graph: EventGraph, stateSets: readonly StateMap[]): StateMap {
  const v21 = graph.version.stateRes === "v2.1";
  const { unconflicted, conflicted } = splitConflicted(stateSets);
  if (conflicted.size === 0) return unconflicted;

  // Full conflicted set; events the caller cannot supply take no part.
  const full = new Set<string>();
  const addAll = (ids: Iterable<string>): void => {
    for (const id of ids) if (graph.get(id)) full.add(id);
  };
  addAll(conflicted);
  addAll(authDifference(graph, stateSets));
  if (v21) addAll(conflictedStateSubgraph(graph, conflicted));

  // 1
  const powerEvents = [...full].filter((id) => isPowerEvent(graph.get(id)!));
  const sortedPower = reverseTopologicalPowerSort(graph, powerEvents, full);
  // 2
  const partial = iterativeAuthChecks(graph, sortedPower, v21 ? new Map() : new Map(unconflicted));
  // 3
  const picked = new Set(sortedPower);
  const remaining = [...full].filter((id) => !picked.has(id));
  const sortedRemaining = mainlineSort(graph, remaining, partial.get(stateMapKey("m.room.power_levels", "")));
  // 4
  const resolved = iterativeAuthChecks(graph, sortedRemaining, partial);
  // 5
  for (const [k, v] of unconflicted) resolved.set(k, v);
  return resolved;
}
