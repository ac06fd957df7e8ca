/** Test helpers: PDUs to `Event`s, and a small room builder that tracks state and fills auth/prev events. */
import type { Event, PDU, StateMap } from "../../../src/core/events/event.js";
import { stateMapKey } from "../../../src/core/events/event.js";
import type { JsonObject } from "../../../src/core/json/types.js";
import { authEventsSelection } from "../../../src/core/rooms/auth_selection.js";
import type { RoomVersion } from "../../../src/core/rooms/versions.js";

/** A fixture PDU as an Event. A v12 create has no room_id: it is derived from the event id. */
export function eventFromPdu(pdu: PDU): Event {
  const eventId = pdu.event_id as string;
  const content = (pdu.content ?? {}) as JsonObject;
  const redacts = typeof pdu.redacts === "string" ? pdu.redacts : typeof content.redacts === "string" ? content.redacts : undefined;
  return {
    event_id: eventId,
    room_id: typeof pdu.room_id === "string" ? pdu.room_id : `!${eventId.slice(1)}`,
    type: pdu.type as string,
    ...(typeof pdu.state_key === "string" ? { state_key: pdu.state_key } : {}),
    sender: pdu.sender as string,
    content,
    origin_server_ts: (pdu.origin_server_ts as number | undefined) ?? 0,
    depth: (pdu.depth as number | undefined) ?? 0,
    prev_events: (pdu.prev_events ?? []) as string[],
    auth_events: (pdu.auth_events ?? []) as string[],
    ...(redacts !== undefined ? { redacts } : {}),
    pdu,
  };
}

export interface EventSpec {
  type: string;
  sender: string;
  state_key?: string;
  content?: JsonObject;
  /** Defaults to the builder's last event. */
  prev_events?: string[];
  /** Defaults to the auth events selection from the current state. */
  auth_events?: string[];
  origin_server_ts?: number;
  redacts?: string;
  id?: string;
  /** Extra top-level PDU fields (e.g. signatures). */
  pdu?: JsonObject;
  /** Leave room_id out of the PDU (v12 create). */
  noRoomId?: boolean;
}

/**
 * Builds a linear room history: each added event extends the state (when `apply` is not false) and becomes the
 * next prev event. Ids are `$<n>-<type>` so they are readable in failures.
 */
export class RoomBuilder {
  events = new Map<string, Event>();
  state: StateMap = new Map();
  roomId: string;
  last: string | undefined;
  private counter = { n: 0, ts: 0 };

  constructor(
    readonly version: RoomVersion,
    readonly server = "example.org",
  ) {
    this.roomId = `!room:${server}`;
  }

  /** A fork: shares the events and id counter, copies the state and the last event. */
  branch(): RoomBuilder {
    const b = new RoomBuilder(this.version, this.server);
    b.events = this.events;
    b.state = new Map(this.state);
    b.roomId = this.roomId;
    b.last = this.last;
    b.counter = this.counter;
    return b;
  }

  /** Creates and stores an event without applying it to the state. */
  make(spec: EventSpec): Event {
    const id = spec.id ?? `$${String(++this.counter.n).padStart(3, "0")}-${spec.type}${spec.state_key ? `-${spec.state_key}` : ""}`;
    const isCreate = spec.type === "m.room.create";
    const roomId = isCreate && this.version.roomIdIsCreateEventHash ? `!${id.slice(1)}` : this.roomId;
    const draft = { type: spec.type, sender: spec.sender, state_key: spec.state_key, content: spec.content ?? {} };
    const auth =
      spec.auth_events ??
      authEventsSelection(this.version, draft)
        .map(([t, k]) => this.state.get(stateMapKey(t, k)))
        .filter((x): x is string => x !== undefined);
    const pdu: JsonObject = {
      event_id: id,
      type: spec.type,
      sender: spec.sender,
      content: spec.content ?? {},
      origin_server_ts: spec.origin_server_ts ?? ++this.counter.ts,
      depth: this.counter.n,
      prev_events: spec.prev_events ?? (this.last ? [this.last] : []),
      auth_events: auth,
      ...(spec.state_key !== undefined ? { state_key: spec.state_key } : {}),
      ...(spec.redacts !== undefined ? { redacts: spec.redacts } : {}),
      ...(spec.noRoomId || (isCreate && this.version.roomIdIsCreateEventHash) ? {} : { room_id: roomId }),
      ...(spec.pdu ?? {}),
    };
    const e = { ...eventFromPdu(pdu), room_id: typeof pdu.room_id === "string" ? pdu.room_id : roomId };
    if (isCreate && this.version.roomIdIsCreateEventHash) this.roomId = roomId;
    this.events.set(id, e);
    return e;
  }

  /** Creates an event, applies it to the state and makes it the next prev event. */
  add(spec: EventSpec): Event {
    const e = this.make(spec);
    if (e.state_key !== undefined) this.state.set(stateMapKey(e.type, e.state_key), e.event_id);
    this.last = e.event_id;
    return e;
  }

  lookup = (type: string, stateKey: string): Event | undefined => {
    const id = this.state.get(stateMapKey(type, stateKey));
    return id === undefined ? undefined : this.events.get(id);
  };

  getEvent = (id: string): Event | undefined => this.events.get(id);

  /** create + creator join + power levels + join rules, the usual start of a room. */
  bootstrap(creator: string, opts: { joinRule?: string; powerLevels?: JsonObject; createContent?: JsonObject } = {}): this {
    const createContent: JsonObject = { room_version: this.version.id, ...(opts.createContent ?? {}) };
    if (this.version.createHasCreatorField && createContent.creator === undefined) createContent.creator = creator;
    this.add({ type: "m.room.create", sender: creator, state_key: "", content: createContent });
    this.add({ type: "m.room.member", sender: creator, state_key: creator, content: { membership: "join" } });
    const users: JsonObject = this.version.privilegedCreators ? {} : { [creator]: 100 };
    this.add({ type: "m.room.power_levels", sender: creator, state_key: "", content: opts.powerLevels ?? { users } });
    this.add({ type: "m.room.join_rules", sender: creator, state_key: "", content: { join_rule: opts.joinRule ?? "public" } });
    return this;
  }

  join(user: string): Event {
    return this.add({ type: "m.room.member", sender: user, state_key: user, content: { membership: "join" } });
  }

  member(sender: string, target: string, membership: string, extra: JsonObject = {}): Event {
    return this.add({ type: "m.room.member", sender, state_key: target, content: { membership, ...extra } });
  }

  /** The state as a map of readable (type|state_key) → event id. */
  readable(state: StateMap = this.state): Record<string, string> {
    return readableState(state);
  }
}

export function readableState(state: StateMap): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of state) {
    const colon = k.indexOf(":");
    const len = Number(k.slice(0, colon));
    out[`${k.slice(colon + 1, colon + 1 + len)}|${k.slice(colon + 1 + len)}`] = v;
  }
  return out;
}
