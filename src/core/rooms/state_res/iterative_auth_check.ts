/**
 * *Iterative auth checks* (state resolution v2): apply each event of a sorted list to a room state when the
 * authorisation rules allow it against that state. "If a (event_type, state_key) key that is required for checking
 * the authorisation rules is not present in the state, then the appropriate state event from the event's
 * auth_events is used if the auth event is not rejected."
 *
 * The state the rules see is the event's (non-rejected) auth events overlaid with the entries of the current state
 * for the keys of the auth events selection, as Synapse and Ruma build it. In room version 12 the create event is
 * never an auth event; it is found from the room id. v2.1 starts this from an empty state, so that matters.
 *
 * Signatures (including the one rule 5.2 asks of the `join_authorised_via_users_server` server) were checked when
 * the events were received; an event that failed them was rejected and is in no state set.
 */
import type { Event, StateMap } from "../../events/event.js";
import { stateMapKey } from "../../events/event.js";
import { checkEventAuth, type CheckEventAuthOptions } from "../auth.js";
import { authEventsSelection } from "../auth_selection.js";
import type { EventGraph } from "./graph.js";

/** The auth rule options state resolution uses: signatures were verified on receipt. */
export const STATE_RES_AUTH_OPTIONS: CheckEventAuthOptions = { verifyJoinAuthorisedSignature: () => true };

/** Applies `events` in order to `state` (mutated and returned). */
export function iterativeAuthChecks(graph: EventGraph, events: readonly string[], state: StateMap): StateMap {
  const version = graph.version;
  for (const id of events) {
    const event = graph.get(id);
    if (!event || event.state_key === undefined) continue;

    const authMap = new Map<string, Event>();
    for (const a of event.auth_events) {
      const ae = graph.get(a);
      if (ae && ae.state_key !== undefined && !graph.isRejected(a)) authMap.set(stateMapKey(ae.type, ae.state_key), ae);
    }
    if (version.roomIdIsCreateEventHash && event.type !== "m.room.create") {
      const create = graph.createEventFor(event);
      if (create && !graph.isRejected(create.event_id)) authMap.set(stateMapKey("m.room.create", ""), create);
    }
    for (const [type, stateKey] of authEventsSelection(version, event)) {
      const key = stateMapKey(type, stateKey);
      const current = state.get(key);
      const ce = current === undefined ? undefined : graph.get(current);
      if (ce && !graph.isRejected(ce.event_id)) authMap.set(key, ce);
    }

    const lookup = (type: string, stateKey: string): Event | undefined => authMap.get(stateMapKey(type, stateKey));
    const result = checkEventAuth(version, event, lookup, STATE_RES_AUTH_OPTIONS);
    if (result.allowed) state.set(stateMapKey(event.type, event.state_key), id);
  }
  return state;
}
