/**
 * Fetching events by id, parsed once and cached. Events in the database were validated when they entered, so
 * reading them back only normalises (no signature or hash checks).
 */
import { CacheRegistry, type Cache } from "../../util/cache.js";
import type { Event, PDU } from "../../core/events/event.js";
import { isJsonObject, type JsonObject } from "../../core/json/types.js";
import { getRoomVersion, type RoomVersion } from "../../core/rooms/versions.js";
import type { EventRow } from "../../storage/events.js";
import type { Storage } from "../../storage/storage.js";

export interface StoredEvent {
  readonly event: Event;
  readonly version: RoomVersion;
  readonly streamOrdering: number;
  readonly depth: number;
  /** State after the event. */
  readonly stateGroup: number | null;
  readonly replacesState: string | null;
  /** Set when an accepted redaction applies; mutable because a redaction can arrive after the event is cached. */
  redactedBy: string | null;
  readonly outlier: boolean;
  readonly softFailed: boolean;
  readonly rejected: boolean;
  /** The sending device's transaction id, for unsigned.transaction_id. */
  readonly txn: { deviceId: string; txnId: string } | null;
  /** Length of the event's stored JSON, when known (sizes the event cache). */
  readonly jsonBytes?: number;
}

/**
 * What a cached event holds, roughly: its parsed JSON is about twice its text (object and string headers), which
 * the writer and the row reader know; other events are estimated from their content.
 */
/** What a cached event holds in memory: its parsed JSON at about twice its text, plus the wrapper. */
export function eventBytes(e: StoredEvent): number {
  return 600 + 2 * (e.jsonBytes ?? 1000);
}

/** prev_events/auth_events as ids: v1/v2 use [id, {hashes}] pairs. */
function idsOf(list: unknown): string[] {
  if (!Array.isArray(list)) return [];
  return list.map((x) => (Array.isArray(x) ? String(x[0]) : String(x)));
}

/** Builds the core view of an event already known to be valid. */
export function trustedEvent(eventId: string, roomId: string, pdu: PDU): Event {
  const content = isJsonObject(pdu.content) ? pdu.content : {};
  const redacts = typeof pdu.redacts === "string" ? pdu.redacts : typeof content.redacts === "string" ? content.redacts : undefined;
  const e: { -readonly [K in keyof Event]: Event[K] } = {
    event_id: eventId,
    room_id: roomId,
    type: String(pdu.type),
    sender: String(pdu.sender),
    content,
    origin_server_ts: Number(pdu.origin_server_ts),
    depth: Number(pdu.depth),
    prev_events: idsOf(pdu.prev_events),
    auth_events: idsOf(pdu.auth_events),
    pdu,
  };
  if (typeof pdu.state_key === "string") e.state_key = pdu.state_key;
  if (redacts !== undefined) e.redacts = redacts;
  return e;
}

export class EventCache {
  private readonly cache: Cache<string, StoredEvent>;
  private readonly roomVersions = new Map<string, RoomVersion>();

  constructor(
    private readonly storage: Storage,
    caches = new CacheRegistry(),
  ) {
    this.cache = caches.create("events", eventBytes);
  }

  async roomVersion(roomId: string): Promise<RoomVersion | undefined> {
    const v = this.roomVersions.get(roomId);
    if (v) return v;
    const row = await this.storage.rooms.get(roomId);
    if (!row) return undefined;
    const version = getRoomVersion(row.room_version);
    if (version) this.roomVersions.set(roomId, version);
    return version;
  }

  rememberRoomVersion(roomId: string, version: RoomVersion): void {
    this.roomVersions.set(roomId, version);
  }

  async get(eventId: string): Promise<StoredEvent | undefined> {
    return (await this.getMany([eventId])).get(eventId);
  }

  async getMany(eventIds: readonly string[]): Promise<Map<string, StoredEvent>> {
    const out = new Map<string, StoredEvent>();
    const missing: string[] = [];
    for (const id of eventIds) {
      const e = this.cache.get(id);
      if (e) out.set(id, e);
      else missing.push(id);
    }
    if (missing.length > 0) {
      for (const row of await this.storage.events.getRows(missing)) {
        const e = await this.fromRow(row);
        if (e) out.set(row.event_id, e);
      }
    }
    return out;
  }

  /** Parses rows fetched by other queries (timelines), through the cache. */
  async fromRows(rows: EventRow[]): Promise<StoredEvent[]> {
    const out: StoredEvent[] = [];
    for (const row of rows) {
      const e = this.cache.get(row.event_id) ?? (await this.fromRow(row));
      if (e) out.push(e);
    }
    return out;
  }

  private async fromRow(row: EventRow): Promise<StoredEvent | undefined> {
    const version = await this.roomVersion(row.room_id);
    if (!version) return undefined;
    const pdu = JSON.parse(row.json) as JsonObject;
    const stored: StoredEvent = {
      event: trustedEvent(row.event_id, row.room_id, pdu),
      version,
      streamOrdering: row.stream_ordering,
      depth: row.depth,
      stateGroup: row.state_group,
      replacesState: row.replaces_state,
      redactedBy: row.redacted_by,
      outlier: row.outlier === 1,
      softFailed: row.soft_failed === 1,
      rejected: row.rejected_reason !== null,
      txn: row.txn_device_id !== null && row.txn_id !== null ? { deviceId: row.txn_device_id, txnId: row.txn_id } : null,
      jsonBytes: row.json.length,
    };
    this.cache.set(row.event_id, stored);
    return stored;
  }

  /** Adds an event the writer just committed. */
  add(e: StoredEvent): void {
    this.cache.set(e.event.event_id, e);
  }

  /** Drops an event whose write failed. */
  forget(eventId: string): void {
    this.cache.delete(eventId);
  }

  markRedacted(eventId: string, redactionId: string): void {
    const e = this.cache.get(eventId);
    if (e && !e.redactedBy) e.redactedBy = redactionId;
  }
}
