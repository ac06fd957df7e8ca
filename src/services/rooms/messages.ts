/**
 * Sending and reading room events (spec "Room events", "Getting events for a room", "Redactions", "Syncing":
 * /messages, /context, timestamp_to_event): what the room API does between its routes and the event core.
 */
import { stateMapKey, type StateMap } from "../../core/events/event.js";
import { isValidRoomAlias } from "../../core/ids/ids.js";
import { isJsonObject, type JsonObject } from "../../core/json/types.js";
import { canRedactOthers, canSendEvent } from "../../core/rooms/power_levels.js";
import { MatrixError, badJson, forbidden, notFound } from "../../errors.js";
import type { Event } from "../../core/events/event.js";
import type { StoredEvent } from "./event_cache.js";
import type { ClientEvent, FormatContext } from "./format.js";
import type { RoomHead } from "./persister.js";
import type { RoomAccess } from "./rooms.js";
import { END, START, before, formatTopo, parsePaginationToken, type TopoPosition } from "./tokens.js";

export interface Requester {
  userId: string;
  deviceId: string | null;
}

/** A predicate over events (from a RoomEventFilter) plus whether to lazy-load member state. */
export interface EventSelection {
  matches?: (e: StoredEvent) => boolean;
  lazyLoadMembers?: boolean;
}

export interface MessagesPage {
  chunk: ClientEvent[];
  start: string;
  end?: string;
  state?: ClientEvent[];
}

export class MessageService {
  /** Fetches older history from other servers (set once federation is wired); returns how many events it added. */
  backfill?: (roomId: string, limit: number) => Promise<number>;
  /** Fills gaps in the history we hold that a page of events runs into (set once federation is wired). */
  fillGaps?: (roomId: string, events: readonly Event[], limit: number) => Promise<number>;

  constructor(private readonly rooms: RoomAccess) {}

  private get core() {
    return this.rooms.core;
  }

  private fmt(r: Requester): FormatContext {
    return { userId: r.userId, deviceId: r.deviceId };
  }

  async send(roomId: string, r: Requester, type: string, content: JsonObject, txnId?: string): Promise<string> {
    checkTombstone(roomId, type, content);
    const txn = txnId !== undefined && r.deviceId ? { userId: r.userId, deviceId: r.deviceId, scope: `send:${roomId}:${type}`, txnId } : undefined;
    const e = await this.core.persister.send(roomId, { type, sender: r.userId, content }, { txn, precheck: (h) => this.requireJoinedHead(h, r.userId) });
    return e.event.event_id;
  }

  private async requireJoinedHead(head: RoomHead, userId: string): Promise<void> {
    if ((await this.rooms.membership(head, userId)) !== "join") throw forbidden(`User ${userId} not in room ${head.roomId}`);
  }

  async setState(roomId: string, r: Requester, type: string, stateKey: string, content: JsonObject): Promise<string> {
    checkTombstone(roomId, type, content);
    const head = await this.rooms.head(roomId);
    // Sending the same state again is a no-op returning the existing event, as in Synapse.
    const existing = await this.rooms.stateEvent(head, type, stateKey);
    if (existing && existing.event.sender === r.userId && canonicalEqual(existing.event.content, content)) return existing.event.event_id;
    if (type === "m.room.canonical_alias") await this.checkCanonicalAlias(roomId, content);
    const e = await this.core.persister.send(roomId, { type, state_key: stateKey, sender: r.userId, content }, {
      precheck: async (h) => {
        if (type !== "m.room.member") await this.requireJoinedHead(h, r.userId);
      },
    });
    return e.event.event_id;
  }

  /**
   * After an alias is deleted: takes it out of the room's m.room.canonical_alias (`alias` and `alt_aliases`), as the
   * spec allows ("Servers may choose to update the alt_aliases …") and Synapse does, sent by the deleting user. A user
   * without the power to change the event leaves it as it is.
   */
  async dropDeletedAlias(roomId: string, r: Requester, alias: string): Promise<void> {
    const head = await this.rooms.headIfKnown(roomId);
    if (!head) return;
    const current = await this.rooms.stateContent(head, "m.room.canonical_alias");
    if (!current) return;
    const content: JsonObject = { ...current };
    let changed = false;
    if (content.alias === alias) {
      delete content.alias;
      changed = true;
    }
    if (Array.isArray(content.alt_aliases) && content.alt_aliases.includes(alias)) {
      const rest = content.alt_aliases.filter((a) => a !== alias);
      if (rest.length > 0) content.alt_aliases = rest;
      else delete content.alt_aliases;
      changed = true;
    }
    if (!changed) return;
    try {
      await this.setState(roomId, r, "m.room.canonical_alias", "", content);
    } catch (e) {
      if (!(e instanceof MatrixError)) throw e;
    }
  }

  /** Spec m.room.canonical_alias: every alias must be valid and point to this room (400 M_BAD_ALIAS otherwise). */
  private async checkCanonicalAlias(roomId: string, content: JsonObject): Promise<void> {
    const aliases: unknown[] = [];
    if (content.alias !== undefined && content.alias !== null) aliases.push(content.alias);
    if (content.alt_aliases !== undefined) {
      if (!Array.isArray(content.alt_aliases)) throw badJson("alt_aliases must be a list of aliases");
      aliases.push(...content.alt_aliases);
    }
    for (const a of aliases) {
      if (typeof a !== "string" || !isValidRoomAlias(a)) throw new MatrixError(400, "M_INVALID_PARAM", `Invalid alias: ${String(a)}`);
      const domain = a.slice(a.indexOf(":") + 1);
      if (domain !== this.core.config.serverName) continue;
      const target = await this.core.storage.rooms.aliasRoom(a);
      if (!target || target.room_id !== roomId) throw new MatrixError(400, "M_BAD_ALIAS", `Room alias ${a} does not point to the room`);
    }
  }

  async redact(roomId: string, r: Requester, eventId: string, txnId: string | undefined, reason: string | undefined): Promise<string> {
    const content: JsonObject = {};
    if (reason !== undefined) content.reason = reason;
    const txn = txnId !== undefined && r.deviceId ? { userId: r.userId, deviceId: r.deviceId, scope: `redact:${roomId}`, txnId } : undefined;
    const e = await this.core.persister.send(
      roomId,
      { type: "m.room.redaction", sender: r.userId, content, redacts: eventId },
      {
        txn,
        applyRedaction: true,
        precheck: async (h) => {
          await this.requireJoinedHead(h, r.userId);
          const target = await this.core.events.get(eventId);
          // As Synapse: 400 for an event of another room.
          if (target && target.event.room_id !== roomId) throw new MatrixError(400, "M_INVALID_PARAM", "Cannot redact an event from a different room");
          // Spec "Redactions": redacting another user's event needs the redact power level.
          if (target && target.event.sender !== r.userId && !canRedactOthers(await this.rooms.powerContext(h), r.userId)) {
            throw forbidden("You don't have permission to redact events");
          }
        },
      },
    );
    return e.event.event_id;
  }

  /**
   * The room state a user may read: current state while joined (or when history is world readable), else the state
   * when they left. 403 for users who were never in the room, and (as Synapse) for banned users.
   */
  async visibleState(roomId: string, userId: string): Promise<StateMap> {
    return (await this.readableState(roomId, userId)).state;
  }

  /**
   * visibleState, and for a user who left: their leave event, beyond which they see nothing. Banned users (unless
   * the room is world readable) and those never in the room get 403.
   */
  private async readableState(roomId: string, userId: string): Promise<{ state: StateMap; leftAt?: StoredEvent }> {
    const head = await this.rooms.headIfKnown(roomId);
    if (!head) throw forbidden(`User ${userId} not in room ${roomId}`);
    const member = await this.rooms.stateEvent(head, "m.room.member", userId);
    const membership = member?.event.content.membership;
    if (membership === "join") return { state: head.state };
    const hv = (await this.rooms.stateContent(head, "m.room.history_visibility"))?.history_visibility;
    if (hv === "world_readable") return { state: head.state };
    // As Synapse: a user who left reads the room as of their leave; a banned one not at all (403).
    if (member && membership === "leave" && member.stateGroup !== null) {
      return { state: await this.core.state.stateOf(member.stateGroup), leftAt: member };
    }
    if (membership === "ban") throw forbidden(`User ${userId} is banned from room ${roomId}`);
    throw forbidden(`User ${userId} not in room ${roomId}`);
  }

  async stateEvents(roomId: string, r: Requester): Promise<ClientEvent[]> {
    const state = await this.visibleState(roomId, r.userId);
    const events = await this.rooms.stateEvents(state);
    return this.core.formatter.format(events, { ...this.fmt(r), noAggregations: true });
  }

  async stateEvent(roomId: string, r: Requester, type: string, stateKey: string): Promise<StoredEvent> {
    const state = await this.visibleState(roomId, r.userId);
    const id = state.get(stateMapKey(type, stateKey));
    const e = id ? await this.core.events.get(id) : undefined;
    if (!e) throw notFound("Event not found.");
    return e;
  }

  async formatState(e: StoredEvent, r: Requester): Promise<ClientEvent> {
    return this.core.formatter.formatOne(e, { ...this.fmt(r), noAggregations: true });
  }

  async event(roomId: string, r: Requester, eventId: string): Promise<ClientEvent> {
    const found = await this.core.events.get(eventId);
    const e = found && found.event.room_id === roomId ? await this.core.visibility.asSeenBy(r.userId, found) : undefined;
    if (!e) throw notFound("Event not found.");
    return this.core.formatter.formatOne(e, this.fmt(r));
  }

  /** GET /members: member events of current state, or at a sync token; filtered by membership. */
  async members(roomId: string, r: Requester, opts: { at?: string; membership?: string; notMembership?: string }): Promise<ClientEvent[]> {
    const readable = await this.readableState(roomId, r.userId);
    let state = readable.state;
    if (opts.at !== undefined) {
      // The state after the last event at or before the token (none: before the room existed).
      const [row] = await this.core.storage.events.paginate(roomId, await this.position(roomId, opts.at, "b"), "b", 1);
      const at = row ? (await this.core.events.fromRows([row]))[0] : undefined;
      // A user who left sees no further than their leave.
      if (!readable.leftAt || (at && at.streamOrdering <= readable.leftAt.streamOrdering)) {
        state = at?.stateGroup != null ? await this.core.state.stateOf(at.stateGroup) : new Map<string, string>();
      }
    }
    const ids = [...state].filter(([k]) => k.startsWith(`${"m.room.member".length}:m.room.member`)).map(([, v]) => v);
    const events = [...(await this.core.events.getMany(ids)).values()].filter((e) => {
      const m = e.event.content.membership;
      if (opts.membership !== undefined && m !== opts.membership) return false;
      if (opts.notMembership !== undefined && m === opts.notMembership) return false;
      return true;
    });
    return this.core.formatter.format(events, { ...this.fmt(r), noAggregations: true });
  }

  /** GET /joined_members: as Synapse, both keys on every entry, null when the member event has none. */
  async joinedMembers(roomId: string, userId: string): Promise<Record<string, { display_name: string | null; avatar_url: string | null }>> {
    const head = await this.rooms.requireJoined(roomId, userId);
    const ids = [...head.state].filter(([k]) => k.startsWith(`${"m.room.member".length}:m.room.member`)).map(([, v]) => v);
    const out: Record<string, { display_name: string | null; avatar_url: string | null }> = {};
    for (const e of (await this.core.events.getMany(ids)).values()) {
      if (e.event.content.membership !== "join") continue;
      const { displayname, avatar_url } = e.event.content;
      out[e.event.state_key!] = { display_name: typeof displayname === "string" ? displayname : null, avatar_url: typeof avatar_url === "string" ? avatar_url : null };
    }
    return out;
  }

  /** Resolves a pagination or sync token to a topological position in this room. */
  async position(roomId: string, token: string | undefined, dir: "b" | "f"): Promise<TopoPosition> {
    if (token === undefined) return dir === "b" ? END : START;
    const t = parsePaginationToken(token);
    if (t.kind === "topo") return t.pos;
    return (await this.core.storage.events.topologicalPositionAt(roomId, t.stream)) ?? START;
  }

  /** GET /messages. */
  async messages(roomId: string, r: Requester, opts: { from?: string; to?: string; dir: "b" | "f"; limit: number; selection?: EventSelection }): Promise<MessagesPage> {
    const readable = await this.readableState(roomId, r.userId);
    let from = await this.position(roomId, opts.from, opts.dir);
    let to = opts.to !== undefined ? await this.position(roomId, opts.to, opts.dir) : undefined;
    if (readable.leftAt) {
      // A user who left sees nothing after their leave: backwards pagination starts there and forwards stops there
      // (as Synapse clamps), rather than returning pages emptied by the visibility filter.
      const leave = { depth: readable.leftAt.depth, stream: readable.leftAt.streamOrdering };
      const later = (a: TopoPosition, b: TopoPosition) => a.depth > b.depth || (a.depth === b.depth && a.stream > b.stream);
      if (opts.dir === "b" && later(from, leave)) from = leave;
      if (opts.dir === "f" && (to === undefined || later(to, leave))) to = leave;
    }
    let rows = await this.core.storage.events.paginate(roomId, from, opts.dir, opts.limit, to);
    // At the edge of the history we hold (a room joined over federation), ask another server for what came before.
    let backfilled = false;
    if (opts.dir === "b" && rows.length < opts.limit && this.backfill && to === undefined) {
      const added = await this.backfill(roomId, Math.max(opts.limit, 20)).catch(() => 0);
      if (added > 0) {
        backfilled = true;
        rows = await this.core.storage.events.paginate(roomId, from, opts.dir, opts.limit, to);
      }
    }
    let events = await this.core.events.fromRows(rows);
    if (opts.dir === "b" && this.fillGaps && (events.length > 0 || opts.from !== undefined)) {
      // A gap can also open just above the page: the event the token points before (the oldest of the previous
      // page, e.g. a /sync timeline's) may be the one whose prev events never reached us.
      const above = opts.from !== undefined ? await this.core.events.fromRows(await this.core.storage.events.paginate(roomId, from, "f", 1)) : [];
      const added = await this.fillGaps(roomId, [...above, ...events].map((e) => e.event), Math.max(opts.limit, 20)).catch(() => 0);
      if (added > 0) {
        backfilled = true;
        rows = await this.core.storage.events.paginate(roomId, from, opts.dir, opts.limit, to);
        events = await this.core.events.fromRows(rows);
      }
    }
    const visible = await this.core.visibility.filter(r.userId, events);
    const selected = opts.selection?.matches ? visible.filter(opts.selection.matches) : visible;
    const page: MessagesPage = { chunk: await this.core.formatter.format(selected, this.fmt(r)), start: opts.from ?? formatTopo(from) };
    const last = rows[rows.length - 1];
    // Spec: `end` is omitted when "no further events are available". Backwards, fewer rows than asked for means the
    // start of the room was reached (after a backfill there may be more on other servers: keep the client
    // paginating). Forwards without a `to`, newer events may still arrive, so any non-empty page has an `end` to
    // continue from (as Synapse); an empty one has nothing further now.
    const more = rows.length === opts.limit || backfilled || (opts.dir === "f" && to === undefined);
    if (last && more) {
      const p = { depth: last.depth, stream: last.stream_ordering };
      page.end = formatTopo(opts.dir === "b" ? before(p) : p);
    }
    if (opts.selection?.lazyLoadMembers) page.state = await this.memberStateFor(selected, r);
    return page;
  }

  /** Lazy-loading members: the member events of the senders of `events`, as of each event. */
  async memberStateFor(events: StoredEvent[], r: Requester): Promise<ClientEvent[]> {
    const wanted = new Map<string, string>();
    for (const e of events) {
      if (e.stateGroup === null) continue;
      const state = await this.core.state.stateOf(e.stateGroup);
      const id = state.get(stateMapKey("m.room.member", e.event.sender));
      if (id && !wanted.has(e.event.sender)) wanted.set(e.event.sender, id);
    }
    const loaded = await this.core.events.getMany([...wanted.values()]);
    return this.core.formatter.format([...loaded.values()], { ...this.fmt(r), noAggregations: true });
  }

  /** GET /context/{eventId}. */
  async context(roomId: string, r: Requester, eventId: string, limit: number, selection?: EventSelection): Promise<JsonObject> {
    const found = await this.core.events.get(eventId);
    const target = found && found.event.room_id === roomId ? await this.core.visibility.asSeenBy(r.userId, found) : undefined;
    if (!target) throw notFound("Event not found.");
    const pos = { depth: target.depth, stream: target.streamOrdering };
    const beforeLimit = Math.floor(limit / 2);
    const afterLimit = limit - beforeLimit;
    const pick = async (rows: Awaited<ReturnType<typeof this.core.storage.events.paginate>>) => {
      const vis = await this.core.visibility.filter(r.userId, await this.core.events.fromRows(rows));
      return selection?.matches ? vis.filter(selection.matches) : vis;
    };
    const beforeRows = beforeLimit > 0 ? await this.core.storage.events.paginate(roomId, before(pos), "b", beforeLimit) : [];
    const afterRows = afterLimit > 0 ? await this.core.storage.events.paginate(roomId, pos, "f", afterLimit) : [];
    const eventsBefore = await pick(beforeRows);
    const eventsAfter = await pick(afterRows);
    const firstBefore = beforeRows[beforeRows.length - 1];
    const lastAfter = afterRows[afterRows.length - 1];
    const start = firstBefore ? before({ depth: firstBefore.depth, stream: firstBefore.stream_ordering }) : before(pos);
    const end = lastAfter ? { depth: lastAfter.depth, stream: lastAfter.stream_ordering } : pos;
    // Spec: "The state of the room at the last event returned".
    const lastEvent = eventsAfter[eventsAfter.length - 1] ?? target;
    const stateMap = lastEvent.stateGroup !== null ? await this.core.state.stateOf(lastEvent.stateGroup) : new Map<string, string>();
    let stateEvents: StoredEvent[];
    if (selection?.lazyLoadMembers) {
      const senders = new Set([...eventsBefore, target, ...eventsAfter].map((e) => e.event.sender));
      const ids = [...stateMap].filter(([k]) => !k.startsWith(`${"m.room.member".length}:m.room.member`)).map(([, v]) => v);
      for (const s of senders) {
        const id = stateMap.get(stateMapKey("m.room.member", s));
        if (id) ids.push(id);
      }
      stateEvents = [...(await this.core.events.getMany(ids)).values()];
    } else {
      stateEvents = await this.rooms.stateEvents(stateMap);
    }
    const f = this.fmt(r);
    return {
      start: formatTopo(start),
      end: formatTopo(end),
      events_before: await this.core.formatter.format(eventsBefore, f),
      event: await this.core.formatter.formatOne(target, f),
      events_after: await this.core.formatter.format(eventsAfter, f),
      state: await this.core.formatter.format(stateEvents, { ...f, noAggregations: true }),
    };
  }

  /** GET /v1/rooms/{roomId}/timestamp_to_event. */
  async timestampToEvent(roomId: string, r: Requester, ts: number, dir: "f" | "b"): Promise<{ event_id: string; origin_server_ts: number }> {
    await this.visibleState(roomId, r.userId);
    const row = await this.core.storage.events.closestToTimestamp(roomId, ts, dir);
    if (!row) throw notFound(`Unable to find event from ${ts} in direction ${dir}`);
    return { event_id: row.event_id, origin_server_ts: row.origin_server_ts };
  }

  /** Power check the API uses before accepting a state event, for a precise 403. */
  async canSendState(head: RoomHead, userId: string, type: string): Promise<boolean> {
    return canSendEvent(await this.rooms.powerContext(head), userId, type, true);
  }
}

/** As Synapse's event validator: a tombstone cannot name the room it is sent in as its replacement (400). */
function checkTombstone(roomId: string, type: string, content: JsonObject): void {
  if (type === "m.room.tombstone" && content.replacement_room === roomId) throw new MatrixError(400, "M_BAD_JSON", "A tombstone cannot name the room it is sent in as its replacement");
}

/** Content equality for the "same state again" check (key order does not matter). */
export function canonicalEqual(a: JsonObject, b: JsonObject): boolean {
  const norm = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(norm);
    if (isJsonObject(v)) return Object.fromEntries(Object.keys(v).sort().map((k) => [k, norm(v[k])]));
    return v;
  };
  return JSON.stringify(norm(a)) === JSON.stringify(norm(b));
}
