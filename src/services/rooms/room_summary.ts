/**
 * Room summaries (spec v1.15 GET /_matrix/client/v1/room_summary/{roomIdOrAlias}, MSC3266): a room's
 * room_summary for someone who may preview it, from its state when this server is in it, otherwise from another
 * server's federation /hierarchy answer. A room the requester may not preview is "not found", so nothing leaks.
 */
import { isValidRoomAlias } from "../../core/ids/ids.js";
import type { JsonObject } from "../../core/json/types.js";
import { notFound } from "../../errors.js";
import type { ServerRoomAccess } from "../federation/room_access.js";
import type { RoomDirectory } from "./directory.js";
import type { PreviewAccess, RemoteHierarchies } from "./hierarchy.js";
import type { RoomAccess } from "./rooms.js";

/** Resolves a room alias to its room and the servers that may know it (ours or over federation). */
export type AliasResolver = (alias: string) => Promise<{ roomId: string; servers: string[] }>;

const MEMBERSHIPS = ["join", "invite", "knock", "leave", "ban"];

export class RoomSummaries {
  constructor(
    private readonly deps: {
      rooms: RoomAccess;
      directory: RoomDirectory;
      serverAccess: ServerRoomAccess;
      access: PreviewAccess;
      remote: RemoteHierarchies;
      serverName: string;
      resolveAlias: AliasResolver;
    },
  ) {}

  /**
   * The summary of a room (by id or alias) for `userId` (undefined: unauthenticated), with their `membership`
   * ("leave" when they have none, as Synapse). `via`: servers to ask when we are not in the room; an alias adds its
   * servers, and a room id with a server name adds that server.
   */
  async summary(userId: string | undefined, roomIdOrAlias: string, via: readonly string[]): Promise<JsonObject> {
    let roomId = roomIdOrAlias;
    const servers = [...via];
    if (isValidRoomAlias(roomIdOrAlias)) {
      const resolved = await this.deps.resolveAlias(roomIdOrAlias);
      roomId = resolved.roomId;
      servers.push(...resolved.servers);
    }
    const summary = await this.describe(userId, roomId, servers);
    if (!summary) throw notFound("Room not found or is not accessible");
    if (userId !== undefined) summary.membership = await this.membership(userId, roomId);
    return summary;
  }

  private async describe(userId: string | undefined, roomId: string, servers: string[]): Promise<JsonObject | undefined> {
    const head = await this.deps.rooms.headIfKnown(roomId);
    if (head && (await this.deps.serverAccess.serverInRoom(head, this.deps.serverName))) {
      return (await this.deps.access.local(roomId, userId)) ? this.deps.directory.describe(head) : undefined;
    }
    const domain = roomId.includes(":") ? roomId.slice(roomId.indexOf(":") + 1) : undefined;
    if (domain) servers.push(domain);
    // Synapse asks with suggested_only: the children do not matter here, and the answer is smaller.
    const found = await this.deps.remote.fetch(roomId, servers, true);
    if (!found || !(await this.deps.access.remote(roomId, userId, found.room))) return undefined;
    return { ...found.room };
  }

  private async membership(userId: string, roomId: string): Promise<string> {
    const head = await this.deps.rooms.headIfKnown(roomId);
    if (head) return (await this.deps.rooms.membership(head, userId)) ?? "leave";
    // An invite or knock to a room we have no state of is still recorded for the user.
    const row = (await this.deps.rooms.core.storage.rooms.roomsForUser(userId, MEMBERSHIPS)).find((r) => r.room_id === roomId);
    return row?.membership ?? "leave";
  }
}

/** A local alias, from our directory. */
export async function resolveLocalAlias(rooms: RoomAccess, serverName: string, alias: string): Promise<{ roomId: string; servers: string[] }> {
  const r = await rooms.core.storage.rooms.aliasRoom(alias);
  if (!r) throw notFound(`Room alias ${alias} not found`);
  return { roomId: r.room_id, servers: [serverName] };
}
