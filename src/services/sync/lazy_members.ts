/**
 * Which member events a client already has, per device, for lazy-loading (spec "Lazy-loading room members": "The
 * server MAY assume that clients will remember membership events they have already been sent to the client on prior
 * calls to /sync, and choose to skip sending redundant membership events"). A cache only: a miss (another process,
 * a restart, an evicted entry) just sends a member event again, which the spec allows.
 *
 * Each entry remembers the events stream position of the response that carried it, and counts only for a sync from a
 * token at or after that position: a client retrying an older token (its last response lost) gets the members again.
 */
import { LRUCache } from "lru-cache";

const DEVICES = 10_000;
const MEMBERS_PER_DEVICE = 1_000;

export class LazyMemberCache {
  private readonly devices = new LRUCache<string, LRUCache<string, { eventId: string; sentAt: number }>>({ max: DEVICES });

  /** An initial sync (no token): the client starts from nothing, so forget what it was sent. */
  reset(userId: string, deviceId: string | null): void {
    this.devices.delete(deviceKey(userId, deviceId));
  }

  /** Whether the client syncing from events position `since` has this member event of the room. */
  has(userId: string, deviceId: string | null, roomId: string, memberId: string, eventId: string, since: number): boolean {
    const hit = this.devices.get(deviceKey(userId, deviceId))?.get(memberKey(roomId, memberId));
    return hit !== undefined && hit.eventId === eventId && hit.sentAt <= since;
  }

  /** Member events sent in a response whose next_batch is at events position `sentAt`. */
  sent(userId: string, deviceId: string | null, roomId: string, members: Iterable<[memberId: string, eventId: string]>, sentAt: number): void {
    const key = deviceKey(userId, deviceId);
    let device = this.devices.get(key);
    for (const [memberId, eventId] of members) {
      if (!device) this.devices.set(key, (device = new LRUCache({ max: MEMBERS_PER_DEVICE })));
      const k = memberKey(roomId, memberId);
      const had = device.get(k);
      // Keep the earlier position when the same event is sent again (a repeat after a retried token).
      device.set(k, had && had.eventId === eventId ? { eventId, sentAt: Math.min(had.sentAt, sentAt) } : { eventId, sentAt });
    }
  }
}

function deviceKey(userId: string, deviceId: string | null): string {
  return `${userId}\u0000${deviceId ?? ""}`;
}

function memberKey(roomId: string, userId: string): string {
  return `${roomId}\u0000${userId}`;
}
