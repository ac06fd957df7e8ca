/**
 * Who may ask about a room over federation. Every room-scoped federation endpoint starts here:
 *  - the room must be known (404 M_NOT_FOUND);
 *  - the origin must be allowed by the room's current `m.room.server_acl` (spec "Server Access Control Lists":
 *    "If the server is denied access to a room, the receiving server MUST reply with a 403 HTTP status code and an
 *    errcode of M_FORBIDDEN");
 *  - unless the endpoint only serves what history visibility lets through anyway, the origin must have a joined
 *    user in the room's current state (Synapse's assert_host_in_room); endpoints that filter by visibility also
 *    answer servers outside the room while the room is `world_readable`.
 */
import { splitStateMapKey, stateMapKey } from "../../core/events/event.js";
import { userIdDomain } from "../../core/ids/ids.js";
import { serverAllowedByAcl } from "../../core/rooms/server_acl.js";
import { forbidden } from "../../errors.js";
import type { RoomHead } from "../rooms/persister.js";
import type { RoomAccess } from "../rooms/rooms.js";

const MEMBER_PREFIX = stateMapKey("m.room.member", "");

export class ServerRoomAccess {
  constructor(private readonly rooms: RoomAccess) {}

  /** 404 for an unknown room, 403 when the room's server ACL denies `origin`. */
  async checkAcl(origin: string, roomId: string): Promise<RoomHead> {
    const head = await this.rooms.head(roomId);
    await this.requireAclAllows(head, origin);
    return head;
  }

  async requireAclAllows(head: RoomHead, origin: string): Promise<void> {
    const acl = await this.rooms.stateEvent(head, "m.room.server_acl", "");
    if (!serverAllowedByAcl(acl?.event.content, origin)) throw forbidden(`Server ${origin} is banned from room ${head.roomId} by its server ACL`);
  }

  /**
   * The checks above plus "the origin is in the room": 403 M_FORBIDDEN when no user of `origin` is joined, unless
   * `worldReadable` is set and the room's current history visibility is `world_readable`.
   */
  async requireAccess(origin: string, roomId: string, opts: { worldReadable: boolean }): Promise<RoomHead> {
    const head = await this.rooms.head(roomId);
    // Membership first, as Synapse: a server outside the room learns nothing about its ACL.
    if (!(await this.serverInRoom(head, origin))) {
      const hv = opts.worldReadable ? (await this.rooms.stateContent(head, "m.room.history_visibility"))?.history_visibility : undefined;
      if (hv !== "world_readable") throw forbidden(`Server ${origin} is not in room ${roomId}`);
    }
    await this.requireAclAllows(head, origin);
    return head;
  }

  /** Whether a user of `serverName` is joined in the room's current state. */
  async serverInRoom(head: RoomHead, serverName: string): Promise<boolean> {
    return (await this.serverMemberships(head, serverName)).has("join");
  }

  /** The current memberships (join, invite, ...) of the users of `serverName` in the room. */
  async serverMemberships(head: RoomHead, serverName: string): Promise<Set<string>> {
    const ids: string[] = [];
    for (const [key, id] of head.state) {
      if (key.startsWith(MEMBER_PREFIX) && userIdDomain(splitStateMapKey(key)[1]) === serverName) ids.push(id);
    }
    const out = new Set<string>();
    if (ids.length === 0) return out;
    for (const m of (await this.rooms.core.events.getMany(ids)).values()) {
      const membership = m.event.content.membership;
      if (typeof membership === "string") out.add(membership);
    }
    return out;
  }
}
