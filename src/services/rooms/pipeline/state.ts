/**
 * Stage 3, "compute state": the state before an event, the state after it, and — for an event that extends the
 * room's DAG — the room's new current state. A local event extends the head linearly; a received one may need its
 * prev events' states resolved (a fork), and resolving its state against current state (a fork of the head).
 * New state groups are only planned here; the writer stores them with the event.
 */
import { isStateEvent, stateMapKey, type Event, type StateMap } from "../../../core/events/event.js";
import type { RoomVersion } from "../../../core/rooms/versions.js";
import { MatrixError } from "../../../errors.js";
import { diffStates, type StateDelta } from "../../../storage/state_deltas.js";
import type { StateGroupNode } from "../../../storage/state_groups.js";
import type { EventCache } from "../event_cache.js";
import { resolveStoredStates, sameState } from "../resolve.js";
import type { StateService } from "../state.js";
import type { RoomHead } from "./build.js";

/** The state an event leads to, and whether it creates a group for it. */
export interface StateAfter {
  /** The state group after the event. */
  group: number;
  state: StateMap;
  /** The group planned for the event itself (state events only). */
  node?: StateGroupNode;
  /** The state event this one replaces (same type and state key), for unwinding state at a timeline's start. */
  replacesState: string | null;
}

/** A change of the room's current state: the new group, what changed, and the memberships among the changes. */
export interface CurrentStateChange {
  group: number;
  state: StateMap;
  delta: StateDelta;
  memberships: Map<string, string>;
}

export class StateStage {
  constructor(
    private readonly events: EventCache,
    private readonly state: StateService,
  ) {}

  /** After a state event, a new group with its one change; otherwise the state before. */
  async after(roomId: string, beforeGroup: number, before: StateMap, event: Event): Promise<StateAfter> {
    if (!isStateEvent(event)) return { group: beforeGroup, state: before, replacesState: null };
    const key = stateMapKey(event.type, event.state_key!);
    const planned = await this.state.planGroup(roomId, beforeGroup, new Map([[key, event.event_id]]));
    return { group: planned.node.id, state: planned.state, node: planned.node, replacesState: before.get(key) ?? null };
  }

  /** A local event extends the head: current state becomes the state after it. */
  localCurrentState(event: Event, after: StateAfter): CurrentStateChange | undefined {
    if (!after.node) return undefined;
    const key = stateMapKey(event.type, event.state_key!);
    const memberships = new Map<string, string>();
    if (event.type === "m.room.member" && typeof event.content.membership === "string") memberships.set(key, event.content.membership);
    return { group: after.group, state: after.state, delta: new Map([[key, event.event_id]]), memberships };
  }

  /**
   * The state before a received event: `given` when the caller fetched it (a gap), else its prev events' state,
   * resolved when they differ. A state computed here is planned as a group of its own (returned in `planned`).
   */
  async beforeReceived(head: RoomHead | undefined, version: RoomVersion, event: Event, given: StateMap | undefined): Promise<{ group: number; state: StateMap; planned: StateGroupNode[] }> {
    let before: StateMap;
    if (given) {
      before = given;
    } else {
      const prevs = await this.events.getMany(event.prev_events);
      const groups = [...new Set(event.prev_events.map((id) => prevs.get(id)?.stateGroup ?? null))];
      if (groups.some((g) => g === null)) throw new MatrixError(500, "M_UNKNOWN", `Prev events of ${event.event_id} are missing or have no state`);
      const states = await Promise.all(groups.map((g) => this.state.stateOf(g!)));
      if (groups.length === 1) return { group: groups[0]!, state: states[0]!, planned: [] };
      before = await resolveStoredStates(this.events, version, states);
    }
    const base = head?.stateGroup ?? null;
    const baseState = base !== null ? await this.state.stateOf(base) : new Map<string, string>();
    const planned = await this.state.planGroup(event.room_id, base, diffStates(baseState, before));
    this.state.remember(planned.node, planned.state);
    return { group: planned.node.id, state: before, planned: [planned.node] };
  }

  /**
   * The room's current state once a received event becomes a forward extremity: the state after it when it extends
   * every extremity, else that state resolved against current state (the event itself taking part). `planned`
   * collects a group planned for the resolved state.
   */
  /** `replace`: the state after the event replaces current state outright (our own join after a stale view). */
  async receivedCurrentState(head: RoomHead | undefined, version: RoomVersion, event: Event, after: StateAfter, planned: StateGroupNode[], replace = false): Promise<CurrentStateChange> {
    const oldExt = head?.extremities ?? [];
    const linear = replace || !head || oldExt.every((e) => event.prev_events.includes(e));
    let newState = after.state;
    let newGroup = after.group;
    if (!linear && head && !sameState(head.state, after.state)) {
      // The event is not in the cache yet: it is handed over, or it would take no part in the resolution.
      newState = await resolveStoredStates(this.events, version, [head.state, after.state], [event]);
      const resolved = await this.state.planGroup(event.room_id, head.stateGroup, diffStates(head.state, newState));
      this.state.remember(resolved.node, resolved.state);
      planned.push(resolved.node);
      newGroup = resolved.node.id;
    } else if (!linear && head) {
      newState = head.state;
      newGroup = head.stateGroup;
    }
    const delta = diffStates(head?.state ?? new Map<string, string>(), newState);
    const memberships = new Map<string, string>();
    if (delta.size > 0) {
      const changed = await this.events.getMany([...delta.values()].filter((v): v is string => v !== null && v !== event.event_id));
      for (const [k, id] of delta) {
        const e = id === event.event_id ? event : id !== null ? changed.get(id)?.event : undefined;
        if (e?.type === "m.room.member" && typeof e.content.membership === "string") memberships.set(k, e.content.membership);
      }
    }
    return { group: newGroup, state: newState, delta, memberships };
  }
}
