/**
 * Stage 2, "authorise": the authorization rules applied to an event — against its own auth events (spec "Checks
 * performed on receipt of a PDU", step 4), against the state before it (step 5) and against current state (step 6,
 * soft failure). A local event is checked against current state only, which is the state it is built on.
 */
import { authEventTypesFor } from "../../../core/events/auth_events.js";
import { stateMapKey, type Event, type StateMap } from "../../../core/events/event.js";
import { checkAuthEventsList, checkEventAuth } from "../../../core/rooms/auth.js";
import type { RoomVersion } from "../../../core/rooms/versions.js";
import type { EventCache } from "../event_cache.js";

export class EventAuthoriser {
  constructor(private readonly events: EventCache) {}

  /** Checks an event against a state map (the state before it, or current state). Returns the reason it fails. */
  async againstState(version: RoomVersion, event: Event, state: StateMap): Promise<string | undefined> {
    const byKey = await this.authStateFor(version, event, state);
    const r = checkEventAuth(version, event, (t, k) => byKey.get(stateMapKey(t, k)));
    return r.allowed ? undefined : r.reason;
  }

  /** Step 4: the event's own auth events must allow it. Returns the rejection reason, if any. */
  async againstAuthEvents(version: RoomVersion, event: Event): Promise<string | undefined> {
    const authEvents = await this.events.getMany(event.auth_events);
    const missing = event.auth_events.filter((id) => !authEvents.has(id));
    if (missing.length > 0) return `missing auth events: ${missing.join(", ")}`;
    const list = [...authEvents.values()];
    const listCheck = checkAuthEventsList(version, event, list.map((e) => e.event), { isRejected: (id) => authEvents.get(id)?.rejected ?? false });
    if (!listCheck.allowed) return listCheck.reason;
    const byKey = new Map<string, Event>();
    for (const e of list) if (e.event.state_key !== undefined) byKey.set(stateMapKey(e.event.type, e.event.state_key), e.event);
    const create = version.roomIdIsCreateEventHash ? await this.createEventOf(event) : undefined;
    const r = checkEventAuth(version, event, (t, k) => byKey.get(stateMapKey(t, k)) ?? (t === "m.room.create" && k === "" ? create : undefined));
    return r.allowed ? undefined : r.reason;
  }

  /** The events of a state map that the auth rules may consult for this event, by state key. */
  private async authStateFor(version: RoomVersion, event: Event, state: StateMap): Promise<Map<string, Event>> {
    const keys = authEventTypesFor(version, event).map(([t, k]) => stateMapKey(t, k));
    keys.push(stateMapKey("m.room.create", ""));
    const ids = keys.map((k) => state.get(k)).filter((x): x is string => x !== undefined);
    const loaded = await this.events.getMany(ids);
    const out = new Map<string, Event>();
    for (const k of keys) {
      const id = state.get(k);
      const e = id !== undefined ? loaded.get(id) : undefined;
      if (e) out.set(k, e.event);
    }
    return out;
  }

  /** v12: the create event is implied by the room id rather than listed in auth_events. */
  private async createEventOf(event: Event): Promise<Event | undefined> {
    if (event.type === "m.room.create") return undefined;
    return (await this.events.get(`$${event.room_id.slice(1)}`))?.event;
  }
}
