/**
 * The published room directory (spec "Published Room Directory", client and server-server APIs) and the
 * federation space hierarchy (server-server "Spaces"): both describe rooms with the same summary
 * (public_rooms_chunk / room_summary) built from the room's current state.
 */
import { splitStateMapKey, stateMapKey } from "../../core/events/event.js";
import { isValidRoomId, userIdDomain } from "../../core/ids/ids.js";
import { isJsonObject, type JsonObject } from "../../core/json/types.js";
import { canSendEvent } from "../../core/rooms/power_levels.js";
import { MatrixError, forbidden, notFound } from "../../errors.js";
import type { ServerRoomAccess } from "../federation/room_access.js";
import type { Requester } from "../tokens.js";
import type { StoredEvent } from "./event_cache.js";
import type { RoomHead } from "./persister.js";
import type { RoomAccess } from "./rooms.js";

export interface PublicRoomsRequest {
  limit?: number;
  since?: string;
  filter?: { generic_search_term?: string; room_types?: (string | null)[] };
  include_all_networks?: boolean;
  third_party_instance_id?: string;
}

export interface PublicRoomsResponse {
  chunk: JsonObject[];
  next_batch?: string;
  prev_batch?: string;
  total_room_count_estimate: number;
}

/** A room as the directory and the hierarchy describe it, with what filtering and ordering need. */
interface Summary {
  chunk: JsonObject;
  roomId: string;
  members: number;
  roomType: string | null;
}

const CHILD_PREFIX = stateMapKey("m.space.child", "");

export class RoomDirectory {
  constructor(
    private readonly rooms: RoomAccess,
    private readonly access: ServerRoomAccess,
  ) {}

  // --- Published room directory ---

  async visibility(roomId: string): Promise<"public" | "private"> {
    const row = await this.rooms.core.storage.rooms.get(roomId);
    if (!row) throw notFound("Room not found");
    return row.is_public === 1 ? "public" : "private";
  }

  /**
   * PUT /directory/list/room/{roomId}. "Servers MAY implement additional access control checks": as Synapse's
   * check_can_change_room_list, a server admin, or a joined member allowed to send m.room.canonical_alias (the
   * room's admins).
   */
  async setVisibility(r: Requester, roomId: string, visibility: "public" | "private"): Promise<void> {
    const head = await this.rooms.headIfKnown(roomId);
    if (!head) throw notFound("Room not found");
    if (!r.isAdmin) {
      const allowed = (await this.rooms.membership(head, r.userId)) === "join" && canSendEvent(await this.rooms.powerContext(head), r.userId, "m.room.canonical_alias", true);
      if (!allowed) throw forbidden("You need to be allowed to change the room's canonical alias to change its directory visibility");
    }
    await this.rooms.core.storage.rooms.setPublic(roomId, visibility === "public");
  }

  /**
   * This server's published rooms, largest first (then by room id, a stable order the spec recommends), filtered
   * by `generic_search_term` (name, topic, canonical alias; case-insensitive) and `room_types`. `limit` absent or 0
   * means all. Tokens are positions in that order: `f…` pages forwards from a room, `b…` backwards. We have no
   * application services' network lists are chosen by `listedRoomIds`.
   */
  async publicRooms(req: PublicRoomsRequest): Promise<PublicRoomsResponse> {
    const term = req.filter?.generic_search_term?.trim().toLowerCase();
    const types = req.filter?.room_types;
    const all: Summary[] = [];
    for (const roomId of await this.listedRoomIds(req)) {
      const s = await this.summary(roomId);
      if (!s) continue;
      if (term && !["name", "topic", "canonical_alias"].some((k) => typeof s.chunk[k] === "string" && (s.chunk[k] as string).toLowerCase().includes(term))) continue;
      if (types && types.length > 0 && !types.includes(s.roomType)) continue;
      all.push(s);
    }
    all.sort(directoryOrder);

    const since = req.since !== undefined ? parseToken(req.since) : undefined;
    const limit = req.limit !== undefined && req.limit > 0 ? req.limit : all.length;
    let page: Summary[];
    let start: number;
    if (!since) {
      start = 0;
      page = all.slice(0, limit);
    } else if (since.dir === "f") {
      start = all.findIndex((s) => directoryOrder(s, since) > 0);
      if (start < 0) start = all.length;
      page = all.slice(start, start + limit);
    } else {
      let end = all.findIndex((s) => directoryOrder(s, since) >= 0);
      if (end < 0) end = all.length;
      start = Math.max(0, end - limit);
      page = all.slice(start, end);
    }
    const out: PublicRoomsResponse = { chunk: page.map((s) => publicChunk(s.chunk)), total_room_count_estimate: all.length };
    if (page.length > 0 && start + page.length < all.length) out.next_batch = token("f", page[page.length - 1]!);
    if (page.length > 0 && start > 0) out.prev_batch = token("b", page[0]!);
    return out;
  }

  /**
   * Which list: the server's own (default); with `include_all_networks`, it and every application service's network
   * lists; with `third_party_instance_id` ("<appservice id>|<network id>", Synapse's form), that network's only.
   */
  private async listedRoomIds(req: PublicRoomsRequest): Promise<string[]> {
    const storage = this.rooms.core.storage;
    if (req.include_all_networks === true) return [...new Set([...(await storage.rooms.publicRoomIds()), ...(await storage.appServices.publishedRooms())])];
    if (req.third_party_instance_id !== undefined) {
      const bar = req.third_party_instance_id.indexOf("|");
      if (bar < 0) return [];
      return storage.appServices.publishedRooms({ appserviceId: req.third_party_instance_id.slice(0, bar), networkId: req.third_party_instance_id.slice(bar + 1) });
    }
    return storage.rooms.publicRoomIds();
  }

  /**
   * GET /_matrix/federation/v1/query/directory: a local alias's room and the servers likely to hold it (those with
   * joined users, us first, as Synapse lists them).
   */
  async resolveAlias(alias: string): Promise<{ room_id: string; servers: string[] }> {
    const storage = this.rooms.core.storage;
    const r = await storage.rooms.aliasRoom(alias);
    if (!r) throw notFound("Room alias not found.");
    const ours = this.rooms.core.config.serverName;
    const servers = new Set([ours]);
    for (const m of await storage.rooms.members(r.room_id, ["join"])) {
      const domain = userIdDomain(m.user_id);
      if (domain) servers.add(domain);
    }
    return { room_id: r.room_id, servers: [...servers] };
  }

  // --- Federation space hierarchy ---

  /**
   * GET /_matrix/federation/v1/hierarchy/{roomId}: the room and its children known here, as the requesting server
   * may see them. "Only m.space.child state events of the room are considered"; with `suggestedOnly`, only
   * children marked `suggested`. Children the origin cannot peek or join go to `inaccessible_children`; children
   * unknown here are left out ("Rooms which the responding server cannot provide details on will be outright
   * excluded"). 404 when the room is unknown or the origin cannot peek or join it.
   */
  async hierarchyForServer(origin: string, roomId: string, suggestedOnly: boolean): Promise<JsonObject> {
    const head = await this.rooms.headIfKnown(roomId);
    if (!head || !(await this.accessibleToServer(head, origin))) throw notFound("Unknown room");
    const childEvents = await this.childEvents(head, suggestedOnly);
    const room = { ...(await this.summaryOf(head)).chunk, children_state: childEvents.map(strippedChild) };
    const children: JsonObject[] = [];
    const inaccessible: string[] = [];
    for (const child of childEvents) {
      const childId = child.event.state_key!;
      const childHead = await this.rooms.headIfKnown(childId);
      if (!childHead) continue;
      if (!(await this.accessibleToServer(childHead, origin))) {
        inaccessible.push(childId);
        continue;
      }
      const grandchildren = await this.childEvents(childHead, false);
      children.push({ ...(await this.summaryOf(childHead)).chunk, children_state: grandchildren.map(strippedChild) });
    }
    return { room, children, inaccessible_children: inaccessible };
  }

  /**
   * Synapse's _is_remote_room_accessible: the room is public or knockable, world readable, has a user of the
   * origin joined or invited, or is restricted to a room the origin is in.
   */
  private async accessibleToServer(head: RoomHead, origin: string): Promise<boolean> {
    const joinRules = await this.rooms.stateContent(head, "m.room.join_rules");
    const rule = joinRules?.join_rule;
    if (rule === "public") return true;
    if ((rule === "knock" && head.version.knocking) || (rule === "knock_restricted" && head.version.knockRestrictedJoinRule)) return true;
    if ((await this.rooms.stateContent(head, "m.room.history_visibility"))?.history_visibility === "world_readable") return true;
    const memberships = await this.access.serverMemberships(head, origin);
    if (memberships.has("join") || memberships.has("invite")) return true;
    if (rule === "restricted" || rule === "knock_restricted") {
      for (const allowed of allowedRoomIds(joinRules)) {
        const other = await this.rooms.headIfKnown(allowed);
        if (other && (await this.access.serverInRoom(other, origin))) return true;
      }
    }
    return false;
  }

  /**
   * The room's valid m.space.child events (state key a room id, `via` a non-empty list of strings), in the spec's
   * order: by `order` (those with a valid one first), then the event's origin_server_ts, then the room id.
   */
  async childEvents(head: RoomHead, suggestedOnly: boolean): Promise<StoredEvent[]> {
    const ids = [...head.state].filter(([k]) => k.startsWith(CHILD_PREFIX) && isValidRoomId(splitStateMapKey(k)[1])).map(([, id]) => id);
    const children = [...(await this.rooms.core.events.getMany(ids)).values()].filter((e) => {
      const via = e.event.content.via;
      if (!Array.isArray(via) || via.length === 0 || !via.every((v) => typeof v === "string")) return false;
      return !suggestedOnly || e.event.content.suggested === true;
    });
    return children.sort((a, b) => compareChildren(a.event, b.event));
  }

  // --- Summaries ---

  private async summary(roomId: string): Promise<Summary | undefined> {
    const head = await this.rooms.headIfKnown(roomId);
    return head ? this.summaryOf(head) : undefined;
  }

  /** A room's room_summary (spec definitions/room_summary.yaml), as the hierarchy and /room_summary show it. */
  async describe(head: RoomHead): Promise<JsonObject> {
    return (await this.summaryOf(head)).chunk;
  }

  /** public_rooms_chunk plus the room_summary extras (room_version, encryption, allowed_room_ids). */
  private async summaryOf(head: RoomHead): Promise<Summary> {
    const content = (type: string) => this.rooms.stateContent(head, type);
    const [name, topic, alias, avatar, joinRules, hv, guest, create, encryption, counts] = await Promise.all([
      content("m.room.name"),
      content("m.room.topic"),
      content("m.room.canonical_alias"),
      content("m.room.avatar"),
      content("m.room.join_rules"),
      content("m.room.history_visibility"),
      content("m.room.guest_access"),
      content("m.room.create"),
      content("m.room.encryption"),
      this.rooms.core.storage.rooms.memberCounts(head.roomId),
    ]);
    const chunk: JsonObject = {
      room_id: head.roomId,
      num_joined_members: counts.joined,
      world_readable: hv?.history_visibility === "world_readable",
      guest_can_join: guest?.guest_access === "can_join",
      room_version: head.version.id,
    };
    const str = (v: unknown): v is string => typeof v === "string" && v.length > 0;
    if (str(name?.name)) chunk.name = name.name;
    if (str(topic?.topic)) chunk.topic = topic.topic;
    if (str(alias?.alias)) chunk.canonical_alias = alias.alias;
    if (str(avatar?.url)) chunk.avatar_url = avatar.url;
    if (str(joinRules?.join_rule)) chunk.join_rule = joinRules.join_rule;
    if (joinRules?.join_rule === "restricted" || joinRules?.join_rule === "knock_restricted") chunk.allowed_room_ids = allowedRoomIds(joinRules);
    const roomType = str(create?.type) ? create.type : null;
    if (roomType !== null) chunk.room_type = roomType;
    if (str(encryption?.algorithm)) chunk.encryption = encryption.algorithm;
    return { chunk, roomId: head.roomId, members: counts.joined, roomType };
  }
}

/** The public rooms list keeps the public_rooms_chunk fields; the room_summary extras are for the hierarchy. */
function publicChunk(chunk: JsonObject): JsonObject {
  const { room_version: _v, encryption: _e, allowed_room_ids: _a, ...rest } = chunk;
  return rest;
}

/** Room ids a restricted join rule allows (its `allow` entries of type m.room_membership). */
export function allowedRoomIds(joinRules: JsonObject | undefined): string[] {
  const allow = joinRules?.allow;
  if (!Array.isArray(allow)) return [];
  return allow.filter((a): a is JsonObject => isJsonObject(a) && a.type === "m.room_membership" && typeof a.room_id === "string").map((a) => a.room_id as string);
}

/** Spec "Stripped state" plus origin_server_ts, as children_state wants. */
export function strippedChild(e: StoredEvent): JsonObject {
  return { type: e.event.type, state_key: e.event.state_key!, content: e.event.content, sender: e.event.sender, origin_server_ts: e.event.origin_server_ts };
}

/** An m.space.child event's fields that its place among its siblings depends on. */
export interface ChildOrderFields {
  content: JsonObject;
  origin_server_ts: number;
  state_key?: string;
}

/**
 * The spec's ordering of a space's children: by `order` (those with a valid one — printable ASCII, at most 50
 * characters — first), then the event's origin_server_ts, then the room id.
 */
export function compareChildren(a: ChildOrderFields, b: ChildOrderFields): number {
  const oa = childOrder(a.content.order);
  const ob = childOrder(b.content.order);
  if (oa !== ob) return oa === undefined ? 1 : ob === undefined ? -1 : oa < ob ? -1 : 1;
  return a.origin_server_ts - b.origin_server_ts || compareStrings(a.state_key ?? "", b.state_key ?? "");
}

function childOrder(o: unknown): string | undefined {
  return typeof o === "string" && o.length <= 50 && /^[\x20-\x7E]*$/.test(o) ? o : undefined;
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Largest first, then by room id. */
function directoryOrder(a: { members: number; roomId: string }, b: { members: number; roomId: string }): number {
  return b.members - a.members || compareStrings(a.roomId, b.roomId);
}

function token(dir: "f" | "b", s: Summary): string {
  return `${dir}${s.members}_${s.roomId}`;
}

function parseToken(t: string): { dir: "f" | "b"; members: number; roomId: string } {
  const m = /^([fb])(\d{1,15})_(!.+)$/.exec(t);
  if (!m) throw new MatrixError(400, "M_INVALID_PARAM", "Invalid pagination token");
  return { dir: m[1] as "f" | "b", members: Number(m[2]), roomId: m[3]! };
}
