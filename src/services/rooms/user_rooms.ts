/**
 * Each user's rooms and memberships, as /sync asks for them on every request: kept in memory and dropped when one
 * of the user's memberships changes (an EventConsumer, after the change commits) or they forget a room. A tracker
 * of membership changes per user lets an incremental /sync skip looking for joins and leaves it does not have.
 */
import { stateMapKey } from "../../core/events/event.js";
import type { Storage } from "../../storage/storage.js";
import { ChangeTracker } from "../../util/change_tracker.js";
import { CacheRegistry, ENTRY_BYTES, STRING_BYTES, type Cache } from "../../util/cache.js";
import type { StoredEvent } from "./event_cache.js";
import type { EventConsumer, NewEvent } from "./pipeline/consumers.js";

export interface UserRoom {
  room_id: string;
  membership: string;
  event_id: string;
}

interface Entry {
  rooms: UserRoom[];
  forgotten: Set<string>;
}

const MEMBER_PREFIX = stateMapKey("m.room.member", "");

export class UserRooms implements EventConsumer {
  readonly name = "user-rooms";
  private readonly cache: Cache<string, Entry>;
  /** Membership changes per user on the events stream (see start()). */
  private tracker = new ChangeTracker(0);
  private started = false;
  /** Users whose membership an event changes, from stage to commit. */
  private readonly pending = new Map<string, string[]>();

  constructor(
    private readonly storage: Storage,
    caches = new CacheRegistry(),
  ) {
    this.cache = caches.create("user_rooms", (e, k) => STRING_BYTES(k) + 2 * ENTRY_BYTES + e.rooms.length * (3 * ENTRY_BYTES) + e.forgotten.size * ENTRY_BYTES);
  }

  /** Tracking starts at the events stream's position; earlier changes are "maybe". */
  start(position: number): void {
    this.tracker = new ChangeTracker(position);
    this.started = true;
  }

  /** The user's current memberships of every kind, and the rooms they forgot. */
  async of(userId: string): Promise<Entry> {
    const cached = this.cache.get(userId);
    if (cached) return cached;
    const epoch = this.epoch;
    const [rooms, forgotten] = await Promise.all([
      this.storage.rooms.roomsForUser(userId, ["join", "invite", "knock", "leave", "ban"]),
      this.storage.rooms.forgottenRooms(userId),
    ]);
    const entry = { rooms, forgotten };
    // Cache only what is known to be current: no membership change in flight for the user, none committed meanwhile.
    if (!this.changing.has(userId) && epoch === this.epoch) this.cache.set(userId, entry);
    return entry;
  }
  /** Users with a membership change written but not yet committed (count of such events). */
  private readonly changing = new Map<string, number>();
  /** Moves at every committed membership change or forget. */
  private epoch = 0;

  /** Room ids where the user's membership is one of these. */
  async roomIds(userId: string, memberships: readonly string[]): Promise<string[]> {
    return (await this.of(userId)).rooms.filter((r) => memberships.includes(r.membership)).map((r) => r.room_id);
  }

  /** False only when the user's memberships certainly did not change after `since`. */
  changedSince(userId: string, since: number): boolean {
    return !this.started || this.tracker.changedSince(userId, since);
  }

  /** The user forgot (or un-forgot) a room. */
  forgotten(userId: string): void {
    this.epoch++;
    this.cache.delete(userId);
  }

  stage(e: NewEvent): undefined {
    const users = new Set<string>();
    if (e.event.type === "m.room.member" && e.event.state_key !== undefined) users.add(e.event.state_key);
    // State resolution can change memberships other than the event's own.
    for (const key of e.stateChanges.keys()) if (key.startsWith(MEMBER_PREFIX)) users.add(key.slice(MEMBER_PREFIX.length));
    if (users.size > 0) {
      this.pending.set(e.event.event_id, [...users]);
      // Until the event commits, what the database says may be about to change: do not cache it.
      for (const u of users) this.changing.set(u, (this.changing.get(u) ?? 0) + 1);
    }
    return undefined;
  }

  committed(e: StoredEvent): void {
    const users = this.pending.get(e.event.event_id) ?? (e.event.type === "m.room.member" && e.event.state_key !== undefined ? [e.event.state_key] : []);
    const staged = this.pending.delete(e.event.event_id);
    this.epoch++;
    for (const u of users) {
      this.cache.delete(u);
      if (staged) this.done(u);
      this.tracker.record(u, e.streamOrdering);
    }
  }

  aborted(e: NewEvent): void {
    this.epoch++;
    for (const u of this.pending.get(e.event.event_id) ?? []) {
      this.done(u);
      this.cache.delete(u);
    }
    this.pending.delete(e.event.event_id);
  }

  private done(userId: string): void {
    const n = (this.changing.get(userId) ?? 1) - 1;
    if (n <= 0) this.changing.delete(userId);
    else this.changing.set(userId, n);
  }
}
