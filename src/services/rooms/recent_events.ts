/**
 * The newest events of recently active rooms, kept in memory in stream order as they commit, so an incremental
 * /sync — the request every client repeats for every new message — reads its timeline without a query. A room's
 * buffer holds every live event after its `floor`; a /sync from before the floor reads the database as before.
 */
import { CacheRegistry, ENTRY_BYTES, type Cache } from "../../util/cache.js";
import { eventBytes, type StoredEvent } from "./event_cache.js";
import type { EventConsumer } from "./pipeline/consumers.js";

/** Events kept per room: more than a typical timeline limit, so most incremental syncs are covered. */
const PER_ROOM = 16;

interface Buffer {
  /** Every live event of the room with a stream ordering above this is in `events`. */
  floor: number;
  /** Oldest first. */
  events: StoredEvent[];
}

export class RecentEvents implements EventConsumer {
  readonly name = "recent-events";
  private readonly rooms: Cache<string, Buffer>;

  constructor(caches = new CacheRegistry()) {
    // Counted in full: the event cache may have let go of the same events, and a buffer keeps them alive.
    this.rooms = caches.create("recent_events", (b) => 4 * ENTRY_BYTES + b.events.reduce((n, e) => n + ENTRY_BYTES + eventBytes(e), 0));
  }

  committed(e: StoredEvent): void {
    // Out-of-band memberships are outliers, never part of a timeline.
    if (e.outlier) return;
    const roomId = e.event.room_id;
    const b = this.rooms.get(roomId);
    if (!b) {
      // Events of this room committed before now are at or below this one's predecessor in the stream (a room's
      // events commit in stream order, under its lock).
      this.rooms.set(roomId, { floor: e.streamOrdering - 1, events: [e] });
      return;
    }
    b.events.push(e);
    if (b.events.length > PER_ROOM) b.floor = b.events.shift()!.streamOrdering;
    // Set again: the cache sizes an entry when it is set.
    this.rooms.set(roomId, b);
  }

  /** The room's live events in (since, upTo], newest first, at most `limit`; undefined when not all are known. */
  between(roomId: string, since: number, upTo: number, limit: number): StoredEvent[] | undefined {
    const b = this.rooms.get(roomId);
    if (!b || since < b.floor) return undefined;
    const out: StoredEvent[] = [];
    for (let i = b.events.length - 1; i >= 0 && out.length < limit; i--) {
      const e = b.events[i]!;
      if (e.streamOrdering <= since) break;
      if (e.streamOrdering <= upTo) out.push(e);
    }
    return out;
  }

  /** Forgets a room's buffer (its queued events failed to write). */
  drop(roomId: string): void {
    this.rooms.delete(roomId);
  }
}
