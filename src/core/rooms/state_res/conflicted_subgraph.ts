/**
 * Conflicted state subgraph (state resolution v2.1, room version 12): the union of all `auth_events` paths between
 * pairs of events of the conflicted state set, endpoints included.
 *
 * An event lies on such a path when it can be reached from a conflicted event (one or more auth edges) and can
 * itself reach a conflicted event (zero or more edges). One depth-first walk down the auth chains of the conflicted
 * events computes, for every event met, whether it reaches a conflicted event: linear in the size of those chains.
 */
import type { EventGraph } from "./graph.js";

export function conflictedStateSubgraph(graph: EventGraph, conflicted: ReadonlySet<string>): Set<string> {
  /** Reaches a conflicted event by one or more edges. Set once an event's walk is complete. */
  const reachesBelow = new Map<string, boolean>();
  /** Reached from a conflicted event by one or more edges. */
  const reachedFromAbove = new Set<string>();

  const leadsToConflict = (id: string): boolean => conflicted.has(id) || reachesBelow.get(id) === true;

  for (const start of conflicted) {
    if (reachesBelow.has(start) || !graph.get(start)) continue;
    // Iterative post-order walk: [id, next auth event index to look at].
    const stack: [string, number][] = [[start, 0]];
    const onStack = new Set<string>([start]);
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      const [id, i] = top;
      const auth = graph.get(id)!.auth_events;
      if (i < auth.length) {
        top[1] = i + 1;
        const a = auth[i]!;
        reachedFromAbove.add(a);
        if (!reachesBelow.has(a) && !onStack.has(a) && graph.get(a)) {
          stack.push([a, 0]);
          onStack.add(a);
        }
        continue;
      }
      // All auth events are done: this one reaches a conflicted event iff one of them leads to one.
      reachesBelow.set(id, auth.some(leadsToConflict));
      onStack.delete(id);
      stack.pop();
    }
  }

  const out = new Set<string>();
  for (const [id, below] of reachesBelow) {
    // A path needs at least one edge: a conflicted event is an endpoint only if something links it to another.
    if (reachedFromAbove.has(id) ? leadsToConflict(id) : conflicted.has(id) && below) out.add(id);
  }
  return out;
}
