/**
 * State resolution: the state of a room where its history forks, by the room version's algorithm (rooms v1: v1;
 * v2-v11: v2; v12: v2.1). Synchronous and pure: everything comes from `getEvent`.
 */
import type { Event, StateMap } from "../../events/event.js";
import type { RoomVersion } from "../versions.js";
import { EventGraph } from "./graph.js";
import { resolveV1 } from "./v1.js";
import { resolveV2 } from "./v2.js";

export interface ResolveStateInput {
  version: RoomVersion;
  /** The states to resolve, e.g. the states after each prev event. */
  stateSets: StateMap[];
  /** Every event of the state sets and of their auth chains. Missing events take no part. */
  getEvent(id: string): Event | undefined;
  /**
   * Events rejected on receipt (failing auth against their auth events). They are never used as auth events in the
   * iterative auth checks ("Rejected auth events are deliberately excluded"). Defaults to none.
   */
  isRejected?(id: string): boolean;
}

export function resolveState(input: ResolveStateInput): StateMap {
  const { version, stateSets } = input;
  if (stateSets.length === 0) return new Map();
  if (stateSets.length === 1) return new Map(stateSets[0]);
  const graph = new EventGraph(version, (id) => input.getEvent(id), input.isRejected ? (id) => input.isRejected!(id) : undefined);
  return version.stateRes === "v1" ? resolveV1(graph, stateSets) : resolveV2(graph, stateSets);
}

export { isPowerEvent } from "./power_sort.js";
