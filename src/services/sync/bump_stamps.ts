/**
 * Sliding Sync's `bump_stamp` per room: the stream ordering of the room's newest event of the "bump" types (as
 * Synapse: messages, encrypted events, stickers, calls, polls, live locations and the create event), which orders the
 * room list. Kept in memory, moved as events commit (an EventConsumer); a room not yet known is read with one indexed
 * query (EventStore.latestOfTypesPerRoom over the partial index of migration 018).
 */
import type { Storage } from "../../storage/storage.js";
import type { StoredEvent } from "../rooms/event_cache.js";
import type { EventConsumer } from "../rooms/pipeline/consumers.js";

export const BUMP_TYPES: readonly string[] = ["m.room.create", "m.room.message", "m.room.encrypted", "m.sticker", "m.call.invite", "m.poll.start", "m.beacon_info"];
const BUMP = new Set(BUMP_TYPES);
/** Rooms remembered; past this the map starts over (each entry is one number, so this is a few MB at most). */
const MAX_ROOMS = 200_000;

export class BumpStamps implements EventConsumer {
  readonly name = "bump-stamps";
  /** Room → newest bump event's stream ordering; -1: the room has none. */
  private readonly stamps = new Map<string, number>();

  constructor(private readonly storage: Storage) {}

  committed(e: StoredEvent): void {
    if (!BUMP.has(e.event.type) || e.outlier || e.rejected || e.softFailed) return;
    // A room's events commit in its stream order, so the newest committed bump event is its stamp, read or not.
    const had = this.stamps.get(e.event.room_id) ?? -1;
    if (e.streamOrdering > had) this.stamps.set(e.event.room_id, e.streamOrdering);
  }

  /** The bump stamps of these rooms (absent: no bump event). */
  async of(roomIds: readonly string[]): Promise<Map<string, number>> {
    const missing = roomIds.filter((r) => !this.stamps.has(r));
    if (missing.length > 0) {
      const loaded = await this.storage.events.latestOfTypesPerRoom(missing, BUMP_TYPES);
      if (this.stamps.size + missing.length > MAX_ROOMS) this.stamps.clear();
      for (const r of missing) {
        const v = loaded.get(r) ?? -1;
        // An event committed while reading may have set a newer stamp.
        this.stamps.set(r, Math.max(v, this.stamps.get(r) ?? -1));
      }
    }
    const out = new Map<string, number>();
    for (const r of roomIds) {
      const v = this.stamps.get(r);
      if (v !== undefined && v >= 0) out.set(r, v);
    }
    return out;
  }
}
