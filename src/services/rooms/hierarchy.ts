/**
 * The client space hierarchy (spec "Spaces", GET /_matrix/client/v1/rooms/{roomId}/hierarchy): a depth-first walk of
 * m.space.child events from a room, paginated, showing each room the requesting user may preview. Rooms this
 * server is not in are described by other servers (federation /hierarchy through the child's `via` servers); their
 * answers are cached briefly. Rooms are described by the directory's one summary path (directory.ts).
 */
import { randomBytes } from "node:crypto";
import type { Logger } from "pino";
import { isValidRoomId } from "../../core/ids/ids.js";
import { isJsonObject, type JsonObject } from "../../core/json/types.js";
import { MatrixError, forbidden } from "../../errors.js";
import type { FederationClient } from "../../federation/client.js";
import type { Cache, CacheRegistry } from "../../util/cache.js";
import type { ServerRoomAccess } from "../federation/room_access.js";
import { allowedRoomIds, compareChildren, strippedChild, type RoomDirectory } from "./directory.js";
import type { RoomHead } from "./persister.js";
import type { RoomAccess } from "./rooms.js";

/** Rooms per page: the default and the cap (Synapse's MAX_ROOMS). */
export const MAX_ROOMS_PER_PAGE = 50;
/** Servers asked about one remote room, from its `via` list (Synapse's MAX_SERVERS_PER_SPACE). */
const MAX_SERVERS_PER_ROOM = 3;
/** How long a pagination token and a remote server's answer stay good (Synapse: 5 minutes for both). */
const SESSION_MS = 5 * 60_000;
const REMOTE_CACHE_MS = 5 * 60_000;
/** A remote server that does not answer in this time is skipped for the next `via` server. */
const REMOTE_TIMEOUT_MS = 15_000;

export interface HierarchyRequest {
  suggestedOnly: boolean;
  maxDepth?: number;
  limit?: number;
  from?: string;
}

export interface HierarchyResponse {
  rooms: JsonObject[];
  next_batch?: string;
}

/** A room still to visit: where to ask about it, how deep it is, and its summary if a parent's answer gave one. */
interface QueueEntry {
  roomId: string;
  via: string[];
  depth: number;
  remote?: JsonObject;
}

/** The rest of a walk, kept between pages; the request's parameters may not change while paginating. */
interface Session {
  userId: string;
  roomId: string;
  suggestedOnly: boolean;
  maxDepth: number | undefined;
  /** A stack: the next room to visit is last. */
  queue: QueueEntry[];
  processed: string[];
  expires: number;
}

/** Another server's federation /hierarchy answer, checked. */
export interface RemoteHierarchy {
  room: JsonObject;
  childrenState: JsonObject[];
  /** Summaries of the room's children, by room id. */
  children: Map<string, JsonObject>;
  inaccessible: Set<string>;
}

/**
 * Whether a user may preview a room (the hierarchy's "rooms" rules, and /room_summary's): joined or invited, the
 * room public, knockable or world readable, or restricted to a room the user is in. Without a user (an
 * unauthenticated /room_summary), only the rules that need none.
 */
export class PreviewAccess {
  constructor(private readonly rooms: RoomAccess) {}

  /** From the room's state here (Synapse's _is_local_room_accessible); an unknown room only with an invite. */
  async local(roomId: string, userId: string | undefined): Promise<boolean> {
    const head = await this.rooms.headIfKnown(roomId);
    if (!head) return userId !== undefined && (await this.invited(userId, roomId));
    const joinRules = await this.rooms.stateContent(head, "m.room.join_rules");
    const rule = joinRules?.join_rule;
    if (rule === "public" || (rule === "knock" && head.version.knocking) || (rule === "knock_restricted" && head.version.knockRestrictedJoinRule)) return true;
    if ((await this.rooms.stateContent(head, "m.room.history_visibility"))?.history_visibility === "world_readable") return true;
    if (userId === undefined) return false;
    const membership = await this.rooms.membership(head, userId);
    if (membership === "join" || membership === "invite") return true;
    const restricted = (rule === "restricted" && head.version.restrictedJoinRule) || (rule === "knock_restricted" && head.version.knockRestrictedJoinRule);
    return restricted && (await this.joinedAny(userId, allowedRoomIds(joinRules)));
  }

  /** From another server's summary of a room (Synapse's _is_remote_room_accessible), then what we know here. */
  async remote(roomId: string, userId: string | undefined, room: JsonObject): Promise<boolean> {
    // Synapse's federation answers have carried the rule as `join_rules` too.
    const rule = room.join_rule ?? room.join_rules;
    if (rule === "public" || rule === "knock" || rule === "knock_restricted" || room.world_readable === true) return true;
    if (userId === undefined) return false;
    const allowed = Array.isArray(room.allowed_room_ids) ? room.allowed_room_ids.filter((r): r is string => typeof r === "string") : [];
    if (await this.joinedAny(userId, allowed)) return true;
    return this.local(roomId, userId);
  }

  private async joinedAny(userId: string, roomIds: readonly string[]): Promise<boolean> {
    for (const roomId of roomIds) {
      const head = await this.rooms.headIfKnown(roomId);
      if (head && (await this.rooms.membership(head, userId)) === "join") return true;
    }
    return false;
  }

  private async invited(userId: string, roomId: string): Promise<boolean> {
    return (await this.rooms.core.storage.rooms.roomsForUser(userId, ["invite"])).some((r) => r.room_id === roomId);
  }
}

/** Federation /hierarchy of rooms this server is not in, through their `via` servers, with a short-lived cache. */
export class RemoteHierarchies {
  private readonly cache: Cache<string, { value: RemoteHierarchy; expires: number }>;

  constructor(
    private readonly deps: { client: FederationClient; serverName: string; log: Logger; caches: CacheRegistry; now?: () => number },
  ) {
    this.cache = deps.caches.create("remote_hierarchies", () => 1024);
  }

  /** The room as the first of its `via` servers that answers describes it; undefined when none does. */
  async fetch(roomId: string, via: readonly string[], suggestedOnly: boolean): Promise<RemoteHierarchy | undefined> {
    const now = this.deps.now ?? Date.now;
    const key = `${suggestedOnly ? 1 : 0}${roomId}`;
    const hit = this.cache.get(key);
    if (hit && hit.expires > now()) return hit.value;
    const servers = [...new Set(via)].filter((s) => s !== this.deps.serverName && this.deps.client.isDomainAllowed(s)).slice(0, MAX_SERVERS_PER_ROOM);
    for (const server of servers) {
      try {
        const res = await this.deps.client.get(server, `/_matrix/federation/v1/hierarchy/${encodeURIComponent(roomId)}`, { suggested_only: suggestedOnly }, { timeoutMs: REMOTE_TIMEOUT_MS });
        const value = parseRemoteHierarchy(roomId, res);
        if (!value) {
          this.deps.log.info({ roomId, server }, "hierarchy: invalid federation answer");
          continue;
        }
        this.cache.set(key, { value, expires: now() + REMOTE_CACHE_MS }, JSON.stringify(res).length);
        return value;
      } catch (err) {
        this.deps.log.info({ roomId, server, err: (err as Error).message }, "hierarchy: federation request failed");
      }
    }
    return undefined;
  }
}

export class SpaceHierarchy {
  private readonly sessions: Cache<string, Session>;

  constructor(
    private readonly deps: {
      rooms: RoomAccess;
      directory: RoomDirectory;
      serverAccess: ServerRoomAccess;
      access: PreviewAccess;
      remote: RemoteHierarchies;
      serverName: string;
      caches: CacheRegistry;
      now?: () => number;
    },
  ) {
    this.sessions = deps.caches.create("hierarchy_sessions", (s: Session) => 256 + s.processed.length * 64 + s.queue.length * 128);
  }

  /**
   * One page of the walk from `roomId`, depth first, each space's children in the spec's order (Synapse's
   * get_room_hierarchy). 403 when the user may not preview the root; 400 for a token that is unknown, expired,
   * another user's, or for other parameters.
   */
  async walk(userId: string, roomId: string, req: HierarchyRequest): Promise<HierarchyResponse> {
    const now = this.deps.now ?? Date.now;
    if (!(await this.deps.access.local(roomId, userId))) throw forbidden(`User ${userId} not in room ${roomId}, and room previews are disabled`);

    let queue: QueueEntry[];
    let processed: Set<string>;
    if (req.from !== undefined) {
      const s = this.sessions.get(req.from);
      if (!s || s.expires <= now() || s.userId !== userId || s.roomId !== roomId || s.suggestedOnly !== req.suggestedOnly || s.maxDepth !== req.maxDepth) {
        throw new MatrixError(400, "M_INVALID_PARAM", "Unknown pagination token");
      }
      // Copies: a token may be used again (a retried request) and must give the same page.
      queue = [...s.queue];
      processed = new Set(s.processed);
    } else {
      queue = [{ roomId, via: [], depth: 0 }];
      processed = new Set();
    }

    const limit = Math.min(req.limit ?? MAX_ROOMS_PER_PAGE, MAX_ROOMS_PER_PAGE);
    const rooms: JsonObject[] = [];
    while (queue.length > 0 && rooms.length < limit) {
      const entry = queue.pop()!;
      if (processed.has(entry.roomId)) continue;
      processed.add(entry.roomId);
      const found = await this.visit(userId, entry, req);
      if (!found) continue;
      rooms.push({ ...found.room, children_state: found.childrenState });
      if (req.maxDepth !== undefined && entry.depth >= req.maxDepth) continue;
      // Reversed onto the stack, so the first child in the spec's order is visited next.
      for (const child of [...found.childrenState].reverse()) {
        const childId = child.state_key as string;
        if (found.inaccessible.has(childId)) continue;
        const next: QueueEntry = { roomId: childId, via: (child.content as JsonObject).via as string[], depth: entry.depth + 1 };
        const remote = found.children.get(childId);
        if (remote) next.remote = remote;
        queue.push(next);
      }
    }

    const out: HierarchyResponse = { rooms };
    if (queue.length > 0) {
      const token = randomBytes(12).toString("base64url");
      this.sessions.set(token, { userId, roomId, suggestedOnly: req.suggestedOnly, maxDepth: req.maxDepth, queue, processed: [...processed], expires: now() + SESSION_MS });
      out.next_batch = token;
    }
    return out;
  }

  /** A room of the walk as the user may see it, with its children; undefined when hidden or unknown. */
  private async visit(userId: string, entry: QueueEntry, req: HierarchyRequest): Promise<RemoteHierarchy | undefined> {
    const head = await this.deps.rooms.headIfKnown(entry.roomId);
    if (head && (await this.deps.serverAccess.serverInRoom(head, this.deps.serverName))) {
      if (!(await this.deps.access.local(entry.roomId, userId))) return undefined;
      return this.localRoom(head, req.suggestedOnly);
    }
    let found: RemoteHierarchy | undefined;
    // A parent's answer already described this room: enough unless we need its children.
    if (entry.remote && (entry.remote.room_type !== "m.space" || (req.maxDepth !== undefined && entry.depth >= req.maxDepth))) {
      found = { room: entry.remote, childrenState: [], children: new Map(), inaccessible: new Set() };
    } else {
      found = await this.deps.remote.fetch(entry.roomId, entry.via, req.suggestedOnly);
      if (found && req.suggestedOnly) found = { ...found, childrenState: found.childrenState.filter((c) => (c.content as JsonObject).suggested === true) };
    }
    // The other server answers for what it lets this server see; the user may see less.
    if (found && !(await this.deps.access.remote(entry.roomId, userId, found.room))) return undefined;
    return found;
  }

  /** A room here: its summary, and for a space its child events ("If the room is not a space-room, this should be empty"). */
  private async localRoom(head: RoomHead, suggestedOnly: boolean): Promise<RemoteHierarchy> {
    const room = await this.deps.directory.describe(head);
    const childrenState = room.room_type === "m.space" ? (await this.deps.directory.childEvents(head, suggestedOnly)).map(strippedChild) : [];
    return { room, childrenState, children: new Map(), inaccessible: new Set() };
  }
}

// --- Checking what other servers answer ---

/** A federation /hierarchy answer for `roomId`, its parts checked and cleaned; undefined when it is not one. */
export function parseRemoteHierarchy(roomId: string, res: JsonObject): RemoteHierarchy | undefined {
  if (!isJsonObject(res.room)) return undefined;
  const room = cleanSummary(res.room);
  if (!room || room.room_id !== roomId) return undefined;
  const childrenState = (Array.isArray(res.room.children_state) ? res.room.children_state : [])
    .map(cleanChildEvent)
    .filter((c): c is JsonObject & { content: JsonObject; origin_server_ts: number; state_key: string } => c !== undefined)
    .sort(compareChildren);
  const children = new Map<string, JsonObject>();
  for (const c of Array.isArray(res.children) ? res.children : []) {
    const s = isJsonObject(c) ? cleanSummary(c) : undefined;
    if (s) children.set(s.room_id as string, s);
  }
  const inaccessible = new Set((Array.isArray(res.inaccessible_children) ? res.inaccessible_children : []).filter((r): r is string => typeof r === "string"));
  return { room, childrenState, children, inaccessible };
}

const SUMMARY_STRINGS = ["name", "topic", "canonical_alias", "avatar_url", "join_rule", "room_type", "encryption", "room_version"] as const;

/** The room_summary fields of another server's room, with their types checked (required ones defaulted). */
function cleanSummary(o: JsonObject): JsonObject | undefined {
  if (typeof o.room_id !== "string" || !isValidRoomId(o.room_id)) return undefined;
  const out: JsonObject = {
    room_id: o.room_id,
    num_joined_members: typeof o.num_joined_members === "number" && Number.isSafeInteger(o.num_joined_members) && o.num_joined_members >= 0 ? o.num_joined_members : 0,
    world_readable: o.world_readable === true,
    guest_can_join: o.guest_can_join === true,
  };
  for (const k of SUMMARY_STRINGS) if (typeof o[k] === "string") out[k] = o[k];
  if (out.join_rule === undefined && typeof o.join_rules === "string") out.join_rule = o.join_rules;
  if (Array.isArray(o.allowed_room_ids)) out.allowed_room_ids = o.allowed_room_ids.filter((r): r is string => typeof r === "string");
  return out;
}

/** A stripped m.space.child event with a room id state key and a non-empty `via` of strings. */
function cleanChildEvent(e: unknown): (JsonObject & { content: JsonObject; origin_server_ts: number; state_key: string }) | undefined {
  if (!isJsonObject(e) || e.type !== "m.space.child" || typeof e.state_key !== "string" || !isValidRoomId(e.state_key)) return undefined;
  if (!isJsonObject(e.content) || typeof e.sender !== "string" || typeof e.origin_server_ts !== "number") return undefined;
  const via = e.content.via;
  if (!Array.isArray(via) || via.length === 0 || !via.every((v) => typeof v === "string")) return undefined;
  return { type: e.type, state_key: e.state_key, content: e.content, sender: e.sender, origin_server_ts: e.origin_server_ts };
}
