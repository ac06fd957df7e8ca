/**
 * Who a room's push evaluation concerns: its joined members (their number, for `room_member_count`) and, of those,
 * the local users with their display names (for `contains_display_name`). Loaded once per room from the state the
 * first evaluated event is built on, then kept current by the membership changes of each event the consumer
 * stages, in the room's stream order — so it never lags behind events still being written.
 */
import type { StateMap } from "../../core/events/event.js";
import { memberNames, type MemberNames } from "../../core/push/index.js";
import type { Storage } from "../../storage/storage.js";
import { CacheRegistry, ENTRY_BYTES, type Cache } from "../../util/cache.js";
import type { EventCache } from "../rooms/event_cache.js";

export interface RoomMembers {
  /** Every joined member, local or not (its size is `room_member_count`). */
  joined: Set<string>;
  /** Local joined members → their names in the room (display name, localpart, both case-folded). */
  local: Map<string, MemberNames>;
}

const MEMBER_PREFIX = `${"m.room.member".length}:m.room.member`;

export class PushRoomMembers {
  private readonly rooms: Cache<string, RoomMembers>;

  constructor(
    private readonly storage: Storage,
    private readonly events: EventCache,
    private readonly isLocal: (userId: string) => boolean,
    caches = new CacheRegistry(),
  ) {
    // Sized by the members held (user ids are shared with the state maps), so a few huge rooms cannot take it all.
    this.rooms = caches.create("push_room_members", (r) => 4 * ENTRY_BYTES + r.joined.size * 40 + r.local.size * 160);
  }

  /** The members as of `state` (the state before the event being evaluated), loading them on first use. */
  async of(roomId: string, state: StateMap): Promise<RoomMembers> {
    const cached = this.rooms.get(roomId);
    if (cached) return cached;
    const ids: string[] = [];
    for (const [k, id] of state) if (k.startsWith(MEMBER_PREFIX)) ids.push(id);
    const known = await this.storage.push.memberships(ids);
    // Membership events not committed yet (still in the writer's queue) are in the event cache.
    const pending = await this.events.getMany(ids.filter((id) => !known.has(id)));
    const room: RoomMembers = { joined: new Set(), local: new Map() };
    for (const id of ids) {
      const k = known.get(id);
      const e = pending.get(id)?.event;
      const membership = k?.membership ?? (typeof e?.content.membership === "string" ? e.content.membership : undefined);
      const userId = k?.userId ?? e?.state_key;
      if (membership !== "join" || userId === undefined) continue;
      room.joined.add(userId);
      if (!this.isLocal(userId)) continue;
      const name = k ? k.displayname : typeof e?.content.displayname === "string" ? e.content.displayname : null;
      room.local.set(userId, memberNames(userId, name));
    }
    this.rooms.set(roomId, room);
    return room;
  }

  /** Applies a membership change an event makes (after the event was evaluated). */
  apply(roomId: string, userId: string, membership: string, displayName: string | null): void {
    const room = this.rooms.get(roomId);
    if (!room) return;
    const joined = membership === "join";
    if (joined) room.joined.add(userId);
    else room.joined.delete(userId);
    if (!this.isLocal(userId)) {
      this.rooms.set(roomId, room);
      return;
    }
    if (joined) room.local.set(userId, memberNames(userId, displayName));
    else room.local.delete(userId);
    // Set again: the cache sizes an entry when it is set, and a room's member list grows.
    this.rooms.set(roomId, room);
  }

  /** Forgets a room: a change came by state resolution, or its queued events failed to write. */
  drop(roomId: string): void {
    this.rooms.delete(roomId);
  }
}
