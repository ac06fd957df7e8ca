/**
 * Step 1 of state resolution v2: the power events of the full conflicted set, enlarged by the events of their auth
 * chains that are also in the full conflicted set, sorted by *reverse topological power ordering*: Kahn's algorithm
 * over the auth DAG, oldest first, picking among the candidates the sender with the greatest power level, then the
 * smallest origin_server_ts, then the smallest event_id.
 */
import type { Event } from "../../events/event.js";
import { MalformedPowerLevelsError, userPowerLevel } from "../power_levels.js";
import { compareEventIds, MinHeap, type EventGraph } from "./graph.js";

/**
 * "A power event is a state event with type m.room.power_levels or m.room.join_rules, or a state event with type
 * m.room.member where the membership is leave or ban and the sender does not match the state_key." The create event
 * counts too, as in Synapse and Ruma.
 */
export function isPowerEvent(e: Event): boolean {
  if (e.state_key === undefined) return false;
  switch (e.type) {
    case "m.room.power_levels":
    case "m.room.join_rules":
    case "m.room.create":
      return e.state_key === "";
    case "m.room.member": {
      const m = e.content.membership;
      return (m === "leave" || m === "ban") && e.sender !== e.state_key;
    }
    default:
      return false;
  }
}

/**
 * The sender's power level "when looking at their respective auth_events": the power levels event among them (and
 * the create event, for the creator's level). A value that does not parse counts as 0 rather than failing the
 * whole resolution.
 */
export function senderPowerLevel(graph: EventGraph, e: Event): number {
  try {
    return userPowerLevel(graph.version, graph.createEventFor(e), graph.powerLevelsAuthEvent(e), e.sender);
  } catch (err) {
    if (err instanceof MalformedPowerLevelsError) return 0;
    throw err;
  }
}

/**
 * The power events and the parts of their auth chains inside the full conflicted set, as a DAG. Like Synapse and
 * Ruma, the walk only follows auth edges into the full conflicted set; this is the graph the ordering is defined on.
 */
function powerGraph(graph: EventGraph, powerEvents: readonly string[], full: ReadonlySet<string>): Map<string, string[]> {
  const dag = new Map<string, string[]>();
  const stack = [...powerEvents];
  while (stack.length > 0) {
    const id = stack.pop()!;
    if (dag.has(id)) continue;
    const e = graph.get(id);
    if (!e) continue;
    const auth = [...new Set(e.auth_events.filter((a) => full.has(a) && graph.get(a)))];
    dag.set(id, auth);
    for (const a of auth) if (!dag.has(a)) stack.push(a);
  }
  return dag;
}

interface Candidate {
  id: string;
  power: number;
  ts: number;
}

const lessCandidate = (x: Candidate, y: Candidate): boolean => {
  if (x.power !== y.power) return x.power > y.power;
  if (x.ts !== y.ts) return x.ts < y.ts;
  return compareEventIds(x.id, y.id) < 0;
};

export function reverseTopologicalPowerSort(graph: EventGraph, powerEvents: readonly string[], full: ReadonlySet<string>): string[] {
  const dag = powerGraph(graph, powerEvents, full);
  return kahnSort(dag, (id) => {
    const e = graph.get(id)!;
    return { id, power: senderPowerLevel(graph, e), ts: e.origin_server_ts };
  });
}

/**
 * Kahn's algorithm on `dag` (event → its auth events in the graph), emitting an event once all its auth events
 * have been emitted and choosing the smallest candidate each time.
 */
export function kahnSort(dag: ReadonlyMap<string, readonly string[]>, describe: (id: string) => Candidate): string[] {
  const pending = new Map<string, number>(); // auth events not yet emitted
  const citers = new Map<string, string[]>();
  const heap = new MinHeap<Candidate>(lessCandidate);
  for (const [id, auth] of dag) {
    pending.set(id, auth.length);
    for (const a of auth) {
      let c = citers.get(a);
      if (!c) citers.set(a, (c = []));
      c.push(id);
    }
    if (auth.length === 0) heap.push(describe(id));
  }
  const out: string[] = [];
  for (let next = heap.pop(); next; next = heap.pop()) {
    out.push(next.id);
    for (const c of citers.get(next.id) ?? []) {
      const left = pending.get(c)! - 1;
      pending.set(c, left);
      if (left === 0) heap.push(describe(c));
    }
  }
  return out;
}
