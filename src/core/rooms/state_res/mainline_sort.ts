/**
 * Step 3 of state resolution v2: *mainline ordering* of the remaining events based on the power levels event P of
 * the partially resolved state. The mainline of P is P and its chain of power levels auth events; an event's
 * mainline position is the index of the first mainline event met walking its own chain of power levels auth
 * events (∞ when none). Larger positions (older power levels) sort first, then origin_server_ts, then event_id.
 */
import type { EventGraph } from "./graph.js";
import { compareEventIds } from "./graph.js";

export function mainlineSort(graph: EventGraph, events: readonly string[], powerLevelsId: string | undefined): string[] {
  // Position of each mainline event: P0 = 0, P1 = 1, …
  const position = new Map<string, number>();
  for (let p = powerLevelsId === undefined ? undefined : graph.get(powerLevelsId), i = 0; p && !position.has(p.event_id); i++) {
    position.set(p.event_id, i);
    p = graph.powerLevelsAuthEvent(p);
  }

  // Walks from e1 (the power levels auth event of e0) down the chain; every off-mainline power levels event passed
  // gets the same answer, so events sharing ancestors walk each link once.
  const memo = new Map<string, number>();
  const mainlinePosition = (id: string): number => {
    const walked = new Set<string>();
    let result = Infinity;
    for (let p = graph.powerLevelsAuthEvent(graph.get(id)!); p; p = graph.powerLevelsAuthEvent(p)) {
      const known = position.get(p.event_id) ?? memo.get(p.event_id);
      if (known !== undefined) {
        result = known;
        break;
      }
      if (walked.has(p.event_id)) break; // a cycle: only a malformed DAG has one
      walked.add(p.event_id);
    }
    for (const w of walked) memo.set(w, result);
    return result;
  };

  const keyed = events
    .filter((id) => graph.get(id))
    .map((id) => ({ id, pos: mainlinePosition(id), ts: graph.get(id)!.origin_server_ts }));
  keyed.sort((x, y) => {
    if (x.pos !== y.pos) return x.pos > y.pos ? -1 : 1;
    if (x.ts !== y.ts) return x.ts - y.ts;
    return compareEventIds(x.id, y.id);
  });
  return keyed.map((k) => k.id);
}
