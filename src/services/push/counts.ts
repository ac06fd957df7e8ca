/**
 * Unread notification counts for /sync (spec "Receiving notifications", "Marking notifications as read"): per room,
 * and per thread when the client asks for `unread_thread_notifications`. A notification is read once the user's
 * receipt (m.read or m.read.private, whichever is further; unthreaded, or for its thread) or their own event is at
 * or after it. Each thread is counted from its own read position, so the work is the unread notifications only.
 *
 * Counts are kept per user and room, counted up to a stream position. While the user's read positions in the room
 * stay the same, the next /sync counts only what came after that position — or nothing, when no notification was
 * written in the room since (tracked per room) — so a room full of unread messages costs no more than a quiet one.
 */
import type { Storage } from "../../storage/storage.js";
import type { CountRange } from "../../storage/push.js";
import { CacheRegistry, ENTRY_BYTES, STRING_BYTES, type Cache } from "../../util/cache.js";
import { ChangeTracker } from "../../util/change_tracker.js";

export interface NotificationCounts {
  notification_count: number;
  highlight_count: number;
}

export interface RoomCounts {
  /** All threads together (clients without threaded counts), or the main timeline alone (with them). */
  total: NotificationCounts;
  main: NotificationCounts;
  /** Thread root → counts, for threads with unread notifications. */
  threads: Map<string, NotificationCounts>;
}

/** '' is the unthreaded read position (an unthreaded receipt, or the join). */
const UNTHREADED = "";

/** The position at or before which a notification in this thread is read. */
export function readFloor(positions: ReadonlyMap<string, number> | undefined, threadId: string): number {
  return Math.max(positions?.get(UNTHREADED) ?? 0, positions?.get(threadId) ?? 0);
}

interface Counted {
  /** The read positions the counts were made with. */
  positions: string;
  /** Counted up to this stream position. */
  upTo: number;
  counts: RoomCounts;
}

export class UnreadCounts {
  private readonly counted: Cache<string, Counted>;
  /** Rooms where notifications were written, by stream position. */
  private written = new ChangeTracker(Number.MAX_SAFE_INTEGER);

  constructor(
    private readonly storage: Storage,
    /** The events stream position: everything at or below it is committed. */
    private readonly position: () => number,
    caches = new CacheRegistry(),
  ) {
    this.counted = caches.create("unread_counts", (c, k) => STRING_BYTES(k) + 4 * ENTRY_BYTES + c.positions.length + c.counts.threads.size * 2 * ENTRY_BYTES);
  }

  /** Tracking starts at the events stream's position. */
  start(): void {
    this.written = new ChangeTracker(this.position());
  }

  /** Notifications for someone in the room were committed at this position. */
  wrote(roomId: string, stream: number): void {
    this.written.record(roomId, stream);
  }

  async forRooms(userId: string, roomIds: readonly string[]): Promise<Map<string, RoomCounts>> {
    const out = new Map<string, RoomCounts>();
    if (roomIds.length === 0) return out;
    const upTo = this.position();
    const positions = await this.storage.push.readPositions(userId, roomIds);
    // Per room: the counts so far and the position from which to count the rest (or nothing to count).
    const todo: { roomId: string; from: number; base: RoomCounts; sig: string }[] = [];
    for (const roomId of roomIds) {
      const sig = signature(positions.get(roomId));
      const prev = this.counted.get(key(userId, roomId));
      if (prev && prev.positions === sig && prev.upTo <= upTo) {
        if (!this.written.changedSince(roomId, prev.upTo)) {
          out.set(roomId, prev.counts);
          continue;
        }
        todo.push({ roomId, from: prev.upTo, base: prev.counts, sig });
      } else {
        todo.push({ roomId, from: 0, base: emptyCounts(), sig });
      }
    }
    if (todo.length > 0) {
      const ranges: CountRange[] = todo.map((t) => ({ roomId: t.roomId, threadId: "main", floor: Math.max(t.from, readFloor(positions.get(t.roomId), "main")) }));
      const active = await this.storage.push.threadsActiveSince(todo.map((t) => ({ roomId: t.roomId, floor: Math.max(t.from, positions.get(t.roomId)?.get(UNTHREADED) ?? 0) })));
      const from = new Map(todo.map((t) => [t.roomId, t.from]));
      for (const t of active) ranges.push({ roomId: t.roomId, threadId: t.threadId, floor: Math.max(from.get(t.roomId) ?? 0, readFloor(positions.get(t.roomId), t.threadId)) });
      const found = await this.storage.push.unreadCounts(userId, ranges, upTo);
      const next = new Map(todo.map((t) => [t.roomId, copyCounts(t.base)]));
      for (const c of found) {
        const room = next.get(c.roomId)!;
        if (c.threadId === "main") add(room.main, c.notifications, c.highlights);
        else {
          let t = room.threads.get(c.threadId);
          if (!t) room.threads.set(c.threadId, (t = { notification_count: 0, highlight_count: 0 }));
          add(t, c.notifications, c.highlights);
        }
        add(room.total, c.notifications, c.highlights);
      }
      for (const t of todo) {
        const counts = next.get(t.roomId)!;
        this.counted.set(key(userId, t.roomId), { positions: t.sig, upTo, counts });
        out.set(t.roomId, counts);
      }
    }
    return out;
  }

  /** Rooms with unread notifications and the notifications in all of them (a push's badge count). */
  async badge(userId: string, roomIds: readonly string[]): Promise<{ rooms: number; notifications: number }> {
    let rooms = 0;
    let notifications = 0;
    for (const c of (await this.forRooms(userId, roomIds)).values()) {
      if (c.total.notification_count > 0) rooms++;
      notifications += c.total.notification_count;
    }
    return { rooms, notifications };
  }
}

const key = (userId: string, roomId: string) => `${userId}\u0000${roomId}`;

function signature(positions: ReadonlyMap<string, number> | undefined): string {
  if (!positions || positions.size === 0) return "";
  return [...positions].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([t, s]) => `${t}=${s}`).join("\u0000");
}

function emptyCounts(): RoomCounts {
  return { total: zero(), main: zero(), threads: new Map() };
}

/** Counts are shared with the cache and callers: extended only on a copy. */
function copyCounts(c: RoomCounts): RoomCounts {
  return { total: { ...c.total }, main: { ...c.main }, threads: new Map([...c.threads].map(([t, n]) => [t, { ...n }])) };
}

function add(c: NotificationCounts, n: number, h: number): void {
  c.notification_count += n;
  c.highlight_count += h;
}

function zero(): NotificationCounts {
  return { notification_count: 0, highlight_count: 0 };
}
