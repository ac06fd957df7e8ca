/**
 * Unread notification counts for /sync (spec "Receiving notifications", "Marking notifications as read"): per room,
 * and per thread when the client asks for `unread_thread_notifications`. A notification is read once the user's
 * receipt (m.read or m.read.private, whichever is further; unthreaded, or for its thread) or their own event is at
 * or after it. Each thread is counted from its own read position, so the work is the unread notifications only.
 */
import type { Storage } from "../../storage/storage.js";
import type { CountRange } from "../../storage/push.js";

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

export class UnreadCounts {
  constructor(private readonly storage: Storage) {}

  async forRooms(userId: string, roomIds: readonly string[]): Promise<Map<string, RoomCounts>> {
    const out = new Map<string, RoomCounts>();
    for (const r of roomIds) out.set(r, { total: zero(), main: zero(), threads: new Map() });
    if (roomIds.length === 0) return out;
    const positions = await this.storage.push.readPositions(userId, roomIds);
    const ranges: CountRange[] = roomIds.map((roomId) => ({ roomId, threadId: "main", floor: readFloor(positions.get(roomId), "main") }));
    const active = await this.storage.push.threadsActiveSince(roomIds.map((roomId) => ({ roomId, floor: positions.get(roomId)?.get(UNTHREADED) ?? 0 })));
    for (const t of active) ranges.push({ roomId: t.roomId, threadId: t.threadId, floor: readFloor(positions.get(t.roomId), t.threadId) });
    for (const c of await this.storage.push.unreadCounts(userId, ranges)) {
      const room = out.get(c.roomId)!;
      const counts = { notification_count: c.notifications, highlight_count: c.highlights };
      if (c.threadId === "main") room.main = counts;
      else room.threads.set(c.threadId, counts);
      room.total.notification_count += c.notifications;
      room.total.highlight_count += c.highlights;
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

function zero(): NotificationCounts {
  return { notification_count: 0, highlight_count: 0 };
}
