/**
 * Auth difference (state resolution v2 "Definitions"): with Cᵢ the full auth chain of state Sᵢ (the union of the
 * auth chains of its events), the events in ∪Cᵢ − ∩Cᵢ.
 *
 * Rather than materialising one chain per state set (or per event), one pass over the union of the auth chains
 * propagates a bitset of "which state sets reach this event" from the newest events to the oldest in topological
 * order: O((events + auth edges) × ⌈sets/32⌉).
 */
import type { StateMap } from "../../events/event.js";
import type { EventGraph } from "./graph.js";

export function authDifference(graph: EventGraph, stateSets: readonly StateMap[]): Set<string> {
  const k = stateSets.length;
  if (k === 0) return new Set();
  const words = Math.ceil(k / 32);

  // Index every event of the state sets and their auth chains.
  const index = new Map<string, number>();
  const ids: string[] = [];
  const edges: number[][] = [];
  const queue: string[] = [];
  const visit = (id: string): number | undefined => {
    const known = index.get(id);
    if (known !== undefined) return known;
    if (!graph.get(id)) return undefined; // the caller could not supply it: it takes no part
    const i = ids.length;
    index.set(id, i);
    ids.push(id);
    queue.push(id);
    return i;
  };
  for (const set of stateSets) for (const id of set.values()) visit(id);
  for (let q = 0; q < queue.length; q++) {
    const e = graph.get(queue[q]!)!;
    const out: number[] = [];
    for (const a of e.auth_events) {
      const j = visit(a);
      if (j !== undefined) out.push(j);
    }
    edges[index.get(queue[q]!)!] = out;
  }

  const n = ids.length;
  const seed = new Uint32Array(n * words);
  const reach = new Uint32Array(n * words);
  stateSets.forEach((set, s) => {
    for (const id of set.values()) {
      const i = index.get(id);
      if (i !== undefined) seed[i * words + (s >> 5)]! |= 1 << (s & 31);
    }
  });

  // Kahn's algorithm from the events nothing cites: an event's bits are final once every citer has passed them on.
  const citers = new Uint32Array(n);
  for (const out of edges) for (const j of out) citers[j]!++;
  const ready: number[] = [];
  for (let i = 0; i < n; i++) if (citers[i] === 0) ready.push(i);
  while (ready.length > 0) {
    const u = ready.pop()!;
    for (const a of edges[u]!) {
      for (let w = 0; w < words; w++) reach[a * words + w]! |= seed[u * words + w]! | reach[u * words + w]!;
      if (--citers[a]! === 0) ready.push(a);
    }
  }

  // In some chain but not in all of them.
  const full = new Uint32Array(words);
  for (let s = 0; s < k; s++) full[s >> 5]! |= 1 << (s & 31);
  const out = new Set<string>();
  for (let i = 0; i < n; i++) {
    let any = false;
    let all = true;
    for (let w = 0; w < words; w++) {
      const v = reach[i * words + w]!;
      if (v !== 0) any = true;
      if (v !== full[w]) all = false;
    }
    if (any && !all) out.add(ids[i]!);
  }
  return out;
}
