/**
 * The legacy event stream, `GET /events` (removed from the spec in v1.0's successor versions, still served by Synapse
 * and used by older clients and SyTest's fixtures; r0.6.1 "Listening for events"). One flat `chunk` of everything new
 * for the user since `from`, oldest first: room events of the rooms they are joined to and their own membership
 * changes anywhere (invites), then presence, typing, receipts and account data as Synapse includes them. With
 * `room_id` the stream covers only that room, which a user who is not in it may watch when its history is
 * world_readable ("peeking": room events, typing, receipts, and the presence of the room's members). Tokens are /sync tokens, so either endpoint continues from the other's.
 */
import { MatrixError, forbidden } from "../../errors.js";
import type { JsonObject } from "../../core/json/types.js";
import type { AccountDataService } from "../account_data.js";
import type { PresenceContent, PresenceService } from "../ephemeral/presence.js";
import type { ReceiptService } from "../ephemeral/receipts.js";
import type { TypingService } from "../ephemeral/typing.js";
import type { StoredEvent } from "../rooms/event_cache.js";
import type { ClientEvent } from "../rooms/format.js";
import type { RoomAccess } from "../rooms/rooms.js";
import { formatSyncToken, tokenAdvanced, type SyncToken } from "./token.js";

export interface EventStreamDeps {
  rooms: RoomAccess;
  presence: PresenceService;
  typing: TypingService;
  receipts: ReceiptService;
  accountData: AccountDataService;
  presenceEnabled: boolean;
  /** The current position of every stream (SyncService.currentToken). */
  currentToken: () => SyncToken;
}

export interface EventStreamRequest {
  userId: string;
  deviceId: string | null;
  isGuest: boolean;
  /** Where to continue from; none: from now (only what happens during the wait). */
  from?: SyncToken;
  timeoutMs: number;
  /** At most this many room events per answer (the rest come with the next call). */
  limit: number;
  /** Stream only this room (the user may peek into it when its history is world_readable). */
  roomId?: string;
  signal?: AbortSignal;
}

export interface EventStreamPage {
  chunk: JsonObject[];
  start: string;
  end: string;
}

/** Synapse's floor for a non-zero long-poll timeout. */
const MIN_TIMEOUT_MS = 500;

/**
 * Synapse's legacy ("v1") event shape, which /events and /initialSync still serve: the client event plus `user_id`
 * (= sender) and copies of `age`, `prev_content`, `replaces_state`, `redacted_because` at the top level.
 */
export function legacyEvent(e: ClientEvent): ClientEvent {
  const out: ClientEvent = { ...e, user_id: e.sender as string };
  const unsigned = e.unsigned as JsonObject | undefined;
  if (unsigned) for (const k of ["age", "redacted_because", "replaces_state", "prev_content"]) if (unsigned[k] !== undefined) out[k] = unsigned[k]!;
  return out;
}

/** An m.presence event as the legacy API sends it: the user in `content.user_id` (and, as /sync has it, `sender`). */
export function legacyPresence(userId: string, content: PresenceContent): JsonObject {
  return { type: "m.presence", sender: userId, content: { ...content, user_id: userId } as unknown as JsonObject };
}

export class EventStreamService {
  constructor(private readonly deps: EventStreamDeps) {}

  private get core() {
    return this.deps.rooms.core;
  }

  async stream(req: EventStreamRequest): Promise<EventStreamPage> {
    const scope = await this.scope(req);
    if (!req.isGuest) await this.deps.presence.onSync(req.userId, "online");
    const now = this.deps.currentToken();
    // A token from the future (another process, a restart) counts as now: waiting for the stream to reach it could
    // take forever.
    const from = req.from ? clampToken(req.from, now) : now;
    let result = await this.collect(req, scope, from, now);
    const timeout = req.timeoutMs > 0 ? Math.max(req.timeoutMs, MIN_TIMEOUT_MS) : 0;
    const deadline = Date.now() + timeout;
    while (result.chunk.length === 0 && Date.now() < deadline) {
      const at = result.end;
      if (!tokenAdvanced(at, this.deps.currentToken())) {
        const rooms = scope.peeking ? [req.roomId!] : await this.roomIds(req, scope);
        const woken = await this.core.notifier.wait({ rooms, users: scope.peeking ? [] : [req.userId] }, deadline - Date.now(), req.signal);
        if (!woken) break;
      }
      // Continue from where the last (empty) look ended: anything up to there was not for this user.
      result = await this.collect(req, scope, at, this.deps.currentToken());
    }
    return { chunk: result.chunk, start: formatSyncToken(from), end: formatSyncToken(result.end) };
  }

  /**
   * Which rooms the request covers. Without room_id: the rooms the user is joined to (looked up at each pass, so a
   * room joined during the wait streams from then on). With room_id: that room, for a member, or for anyone when its
   * history is world_readable (peeking); otherwise 403, as Synapse.
   */
  private async scope(req: EventStreamRequest): Promise<{ peeking: boolean }> {
    if (req.isGuest && req.roomId === undefined) throw new MatrixError(400, "M_MISSING_PARAM", "Guest users must specify room_id param");
    if (req.roomId === undefined) return { peeking: false };
    const head = await this.deps.rooms.headIfKnown(req.roomId);
    if (head && (await this.deps.rooms.membership(head, req.userId)) === "join") return { peeking: false };
    const hv = head ? (await this.deps.rooms.stateContent(head, "m.room.history_visibility"))?.history_visibility : undefined;
    if (hv === "world_readable") return { peeking: true };
    throw forbidden("Non-joined access not allowed");
  }

  private async roomIds(req: EventStreamRequest, scope: { peeking: boolean }): Promise<string[]> {
    if (scope.peeking) return [req.roomId!];
    const joined = (await this.core.storage.rooms.roomsForUser(req.userId, ["join"])).map((r) => r.room_id);
    return req.roomId === undefined ? joined : joined.filter((r) => r === req.roomId);
  }

  /** Everything for the user in (from, to]; `end` is `to`, or the last room event sent when `limit` cut the rest. */
  private async collect(req: EventStreamRequest, scope: { peeking: boolean }, from: SyncToken, to: SyncToken): Promise<{ chunk: JsonObject[]; end: SyncToken }> {
    const storage = this.core.storage;
    const rooms = await this.roomIds(req, scope);
    const end: SyncToken = { ...to };
    const chunk: JsonObject[] = [];

    if (to.events > from.events) {
      // Room events of the rooms streamed, and the user's own membership changes anywhere (an invite to a room they
      // are not in yet, their leave), merged in stream order and cut at `limit`.
      const rows = rooms.length > 0 ? await storage.events.streamForward(rooms, from.events, to.events, req.limit) : [];
      // Room events are complete up to the last one returned when the limit was reached.
      let bound = rows.length >= req.limit ? rows[rows.length - 1]!.stream_ordering : to.events;
      const own = scope.peeking
        ? []
        : (await storage.rooms.membershipChanges(req.userId, from.events, bound)).filter((m) => req.roomId === undefined || m.room_id === req.roomId);
      const order = new Map<string, number>();
      for (const r of rows) order.set(r.event_id, r.stream_ordering);
      for (const m of own) order.set(m.event_id, m.stream_ordering);
      let ids = [...order].sort((a, b) => a[1] - b[1]);
      if (ids.length > req.limit) {
        ids = ids.slice(0, req.limit);
        bound = ids[ids.length - 1]![1];
      }
      end.events = bound;
      const loaded = await this.core.events.getMany(ids.map(([id]) => id));
      const ownIds = new Set(own.map((m) => m.event_id));
      const candidates = ids.map(([id]) => loaded.get(id)).filter((e): e is StoredEvent => e !== undefined);
      // History visibility applies to all but the user's own membership events, which they always see (the invite
      // to a room they have never been in included, as /sync's invite section shows it).
      const visible = new Set((await this.core.visibility.filter(req.userId, candidates.filter((e) => !ownIds.has(e.event.event_id)))).map((e) => e.event.event_id));
      const shown = candidates.filter((e) => visible.has(e.event.event_id) || ownIds.has(e.event.event_id));
      const formatted = await this.core.formatter.format(shown, { userId: req.userId, deviceId: req.deviceId });
      chunk.push(...formatted.map(legacyEvent));
      if (!scope.peeking) chunk.push(...(await this.presenceForJoins(req.userId, shown)));
    }

    if (to.presence > from.presence) {
      const changes = await this.deps.presence.eventsFor(req.userId, from.presence, to.presence);
      if (scope.peeking && this.deps.presenceEnabled) {
        // As Synapse: a peeker also hears of the presence of the room's members, with whom it shares no room.
        const shown = new Set(changes.map((p) => p.sender));
        const members = new Set((await storage.rooms.members(req.roomId!, ["join"])).map((m) => m.user_id));
        const changed = (await storage.rooms.presenceChangedSince(from.presence, to.presence, 500)).map((r) => r.user_id).filter((u) => members.has(u) && !shown.has(u));
        if (changed.length > 0) changes.push(...(await this.deps.presence.currentOf(changed)));
      }
      for (const p of changes) chunk.push(legacyPresence(p.sender, p.content));
    }
    for (const roomId of rooms) {
      const typing = this.deps.typing.eventFor(roomId, from.typing);
      if (typing) chunk.push({ type: typing.type, room_id: roomId, content: { user_ids: typing.content.user_ids } });
    }
    if (to.receipts > from.receipts && rooms.length > 0) {
      for (const [roomId, r] of await this.deps.receipts.eventsFor(rooms, from.receipts, to.receipts, req.userId)) {
        chunk.push({ type: r.type, room_id: roomId, content: r.content as unknown as JsonObject });
      }
    }
    if (!scope.peeking && to.accountData > from.accountData) {
      for (const a of await this.deps.accountData.changedSince(req.userId, from.accountData, to.accountData)) {
        if (req.roomId !== undefined && a.roomId !== req.roomId) continue;
        const e: JsonObject = { type: a.type, content: a.content as JsonObject };
        if (a.roomId !== "") e.room_id = a.roomId;
        chunk.push(e);
      }
    }
    return { chunk, end };
  }

  /**
   * As Synapse: a join in the chunk brings presence with it — of everyone in the room when it is the user's own join,
   * else of the user who joined — since the client has none for them yet.
   */
  private async presenceForJoins(userId: string, events: StoredEvent[]): Promise<JsonObject[]> {
    const users = new Set<string>();
    for (const e of events) {
      if (e.event.type !== "m.room.member" || e.event.content.membership !== "join" || e.event.state_key === undefined) continue;
      if (e.event.state_key === userId) for (const m of await this.core.storage.rooms.members(e.event.room_id, ["join"])) users.add(m.user_id);
      else users.add(e.event.state_key);
    }
    if (users.size === 0) return [];
    return (await this.deps.presence.currentOf([...users])).map((p) => legacyPresence(p.sender, p.content));
  }
}

/** Each stream position of `t`, at most `now`'s. */
function clampToken(t: SyncToken, now: SyncToken): SyncToken {
  const out = { ...t };
  for (const k of Object.keys(now) as (keyof SyncToken)[]) out[k] = Math.min(t[k], now[k]);
  return out;
}
