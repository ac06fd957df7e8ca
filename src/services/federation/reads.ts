/**
 * What other servers read from us (server-server API, "Retrieving events", "Backfilling and retrieving missing
 * events", "Retrieving event authorisation information"): single events, the state at an event, auth chains,
 * backfill, missing events and timestamp lookups.
 *
 * Access (room_access.ts): /state, /state_ids and /event_auth hand out state and auth events unfiltered, so they
 * need the origin in the room ("The requesting host is not in the room" → 403); /event, /backfill,
 * /get_missing_events and /timestamp_to_event filter by history visibility, so they also answer a server outside a
 * world_readable room. All of them check the room's server ACL.
 */
import type { JsonObject } from "../../core/json/types.js";
import { redactPdu } from "../../core/events/redaction.js";
import { stateMapKey, type StateMap } from "../../core/events/event.js";
import { notFound } from "../../errors.js";
import type { EventCache, StoredEvent } from "../rooms/event_cache.js";
import { loadWithAuthChains } from "../rooms/resolve.js";
import type { RoomAccess } from "../rooms/rooms.js";
import type { ServerRoomAccess } from "./room_access.js";

/** Synapse asks for 100 events per backfill and serves no more; get_missing_events is capped at 20 as Synapse does. */
export const MAX_BACKFILL = 100;
export const MAX_MISSING_EVENTS = 20;

/** An event as other servers get it: the stored PDU (event_id only in v1/v2 rooms), redacted when a redaction applies. */
export function pduForServer(e: StoredEvent): JsonObject {
  const { unsigned: _u, ...pdu } = e.redactedBy ? redactPdu(e.version, e.event.pdu) : e.event.pdu;
  return pdu;
}

export interface MissingEventsRequest {
  earliest_events: string[];
  latest_events: string[];
  limit?: number;
  min_depth?: number;
}

export class FederationReads {
  constructor(
    private readonly deps: {
      serverName: string;
      rooms: RoomAccess;
      access: ServerRoomAccess;
    },
  ) {}

  private get events(): EventCache {
    return this.deps.rooms.core.events;
  }

  /** A transaction-shaped body ({origin, origin_server_ts, pdus}), as /event and /backfill answer. */
  private transaction(events: StoredEvent[]): JsonObject {
    return { origin: this.deps.serverName, origin_server_ts: Date.now(), pdus: events.map(pduForServer) };
  }

  /** GET /event/{eventId}: the event, redacted if the origin may not see it (rejected events too, as Synapse). */
  async event(origin: string, eventId: string): Promise<JsonObject> {
    const e = await this.events.get(eventId);
    if (!e) throw notFound(`Could not find event ${eventId}`);
    await this.deps.access.requireAccess(origin, e.event.room_id, { worldReadable: true });
    return this.transaction(await this.deps.rooms.core.visibility.filterForServer(origin, [e]));
  }

  /** GET /state_ids/{roomId}?event_id=: the state before the event and that state's auth chain, as ids. */
  async stateIds(origin: string, roomId: string, eventId: string): Promise<JsonObject> {
    await this.deps.access.requireAccess(origin, roomId, { worldReadable: false });
    const state = await this.stateBefore(roomId, eventId);
    const chain = await this.authChain(roomId, [...(await this.events.getMany([...state.values()])).values()]);
    return { pdu_ids: [...state.values()], auth_chain_ids: chain.map((e) => e.event.event_id) };
  }

  /** GET /state/{roomId}?event_id=: as /state_ids, with the events. */
  async state(origin: string, roomId: string, eventId: string): Promise<JsonObject> {
    await this.deps.access.requireAccess(origin, roomId, { worldReadable: false });
    const state = [...(await this.events.getMany([...(await this.stateBefore(roomId, eventId)).values()])).values()];
    const chain = await this.authChain(roomId, state);
    return { pdus: state.map(pduForServer), auth_chain: chain.map(pduForServer) };
  }

  /** GET /event_auth/{roomId}/{eventId}: the event's auth events, recursively. */
  async eventAuth(origin: string, roomId: string, eventId: string): Promise<JsonObject> {
    await this.deps.access.requireAccess(origin, roomId, { worldReadable: false });
    const e = await this.inRoom(roomId, eventId);
    return { auth_chain: (await this.authChain(roomId, [e])).map(pduForServer) };
  }

  /**
   * GET /backfill/{roomId}?v=&limit=: the given events and those before them, walking prev_events breadth-first,
   * newest (deepest) first, at most `limit` (capped at MAX_BACKFILL). Rejected events and outliers (no place in
   * the DAG) are skipped; soft-failed events stay, since other events may point at them.
   */
  async backfill(origin: string, roomId: string, from: string[], limit: number): Promise<JsonObject> {
    await this.deps.access.requireAccess(origin, roomId, { worldReadable: true });
    limit = Math.min(Math.max(limit, 0), MAX_BACKFILL);
    const seen = new Set(from);
    const queue = await this.dagEvents(roomId, from);
    const out: StoredEvent[] = [];
    while (out.length < limit && queue.length > 0) {
      queue.sort(newestFirst);
      const e = queue.shift()!;
      out.push(e);
      const prev = e.event.prev_events.filter((id) => !seen.has(id));
      for (const id of prev) seen.add(id);
      queue.push(...(await this.dagEvents(roomId, prev)));
    }
    return this.transaction(await this.deps.rooms.core.visibility.filterForServer(origin, out));
  }

  /**
   * POST /get_missing_events/{roomId}: "a breadth-first walk of the prev_events for the latest_events, ignoring
   * any events in earliest_events and stopping at the limit" (default 10, capped at MAX_MISSING_EVENTS). The
   * latest events themselves are not returned; neither is anything below `min_depth`. Oldest first.
   */
  async missingEvents(origin: string, roomId: string, req: MissingEventsRequest): Promise<JsonObject> {
    await this.deps.access.requireAccess(origin, roomId, { worldReadable: true });
    const limit = Math.min(Math.max(req.limit ?? 10, 0), MAX_MISSING_EVENTS);
    const minDepth = req.min_depth ?? 0;
    const seen = new Set([...req.earliest_events, ...req.latest_events]);
    let front = await this.dagEvents(roomId, req.latest_events.filter((id) => !req.earliest_events.includes(id)));
    const found: StoredEvent[] = [];
    while (front.length > 0 && found.length < limit) {
      const next: StoredEvent[] = [];
      for (const e of front) {
        const prev = e.event.prev_events.filter((id) => !seen.has(id));
        for (const id of prev) seen.add(id);
        for (const p of await this.dagEvents(roomId, prev)) {
          if (p.depth < minDepth || found.length >= limit) continue;
          found.push(p);
          next.push(p);
        }
      }
      front = next;
    }
    found.sort((a, b) => -newestFirst(a, b));
    return { events: (await this.deps.rooms.core.visibility.filterForServer(origin, found)).map(pduForServer) };
  }

  /** GET /timestamp_to_event/{roomId}?ts=&dir=: the closest event we have locally (as Synapse: no remote lookups). */
  async timestampToEvent(origin: string, roomId: string, ts: number, dir: "f" | "b"): Promise<JsonObject> {
    await this.deps.access.requireAccess(origin, roomId, { worldReadable: true });
    const row = await this.deps.rooms.core.storage.events.closestToTimestamp(roomId, ts, dir);
    if (!row) throw notFound(`Unable to find event from ${ts} in direction ${dir}`);
    return { event_id: row.event_id, origin_server_ts: row.origin_server_ts };
  }

  /** An event of this room, or 404. */
  private async inRoom(roomId: string, eventId: string): Promise<StoredEvent> {
    const e = await this.events.get(eventId);
    if (!e || e.event.room_id !== roomId) throw notFound(`Could not find event ${eventId}`);
    return e;
  }

  /**
   * "The fully resolved state for the room, prior to considering any state changes induced by the requested
   * event": we keep the state after each event, so the event's own key is put back to what it replaced.
   */
  private async stateBefore(roomId: string, eventId: string): Promise<StateMap> {
    const e = await this.inRoom(roomId, eventId);
    if (e.stateGroup === null || e.outlier || e.rejected) throw notFound(`State not known at event ${eventId}`);
    const before = new Map(await this.deps.rooms.core.state.stateOf(e.stateGroup));
    if (e.event.state_key !== undefined) {
      const key = stateMapKey(e.event.type, e.event.state_key);
      if (e.replacesState === null) before.delete(key);
      else before.set(key, e.replacesState);
    }
    return before;
  }

  /**
   * The auth chain of some events: their auth events and, recursively, those events' auth events (the events
   * themselves only when reached that way). In v12 rooms the create event is implied rather than listed, so it is
   * added (Synapse counts it in auth chains too).
   */
  private authChain(roomId: string, events: StoredEvent[]): Promise<StoredEvent[]> {
    return authChainOf(this.events, roomId, events);
  }

  /** The stored events among `ids` that have a place in this room's DAG. */
  private async dagEvents(roomId: string, ids: string[]): Promise<StoredEvent[]> {
    if (ids.length === 0) return [];
    const loaded = await this.events.getMany(ids);
    return [...loaded.values()].filter((e) => e.event.room_id === roomId && !e.rejected && !e.outlier);
  }
}

/**
 * The auth chain of some events of a room: their auth events and, recursively, those events' auth events (the
 * events themselves only when reached that way). In v12 rooms the create event is implied rather than listed, so
 * it is added (Synapse counts it in auth chains too). Used by /state, /state_ids, /event_auth and send_join.
 */
export async function authChainOf(events: EventCache, roomId: string, of: readonly StoredEvent[]): Promise<StoredEvent[]> {
  const start = new Set<string>();
  for (const e of of) {
    for (const id of e.event.auth_events) start.add(id);
    if (e.version.roomIdIsCreateEventHash && e.event.type !== "m.room.create") start.add(`$${roomId.slice(1)}`);
  }
  const chain = await loadWithAuthChains(events, start);
  return [...chain.values()].filter((e) => e.event.room_id === roomId);
}

function newestFirst(a: StoredEvent, b: StoredEvent): number {
  return b.depth - a.depth || b.streamOrdering - a.streamOrdering;
}
