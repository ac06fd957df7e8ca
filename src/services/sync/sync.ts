/**
 * GET /sync (spec "Syncing"): initial and incremental sync over all streams, long-polling until something changes
 * for the user or the timeout passes. A room's section comes from its events since the token, or — for a room the
 * user just joined, an initial sync, or full_state — from its recent timeline and the state before it.
 */
import { stateMapKey, type StateMap } from "../../core/events/event.js";
import type { JsonObject } from "../../core/json/types.js";
import type { AccountDataService } from "../account_data.js";
import type { DeviceListService } from "../device_lists.js";
import type { ToDeviceService } from "../to_device.js";
import type { ReceiptService } from "../ephemeral/receipts.js";
import type { PresenceService } from "../ephemeral/presence.js";
import type { TypingService } from "../ephemeral/typing.js";
import type { StoredEvent } from "../rooms/event_cache.js";
import type { UnreadCounts } from "../push/counts.js";
import type { PushRuleService } from "../push/rules.js";
import type { UserRooms } from "../rooms/user_rooms.js";
import type { RoomChanges } from "../rooms/room_changes.js";
import type { RecentEvents } from "../rooms/recent_events.js";
import { BUNDLED_RELATIONS, type ClientEvent, type FormatContext, type RelationRow } from "../rooms/format.js";
import type { RoomAccess } from "../rooms/rooms.js";
import type { PeekService } from "../rooms/peeks.js";
import { before, formatTopo } from "../rooms/tokens.js";
import { diffStates } from "../../storage/state_deltas.js";
import { LazyMemberCache } from "./lazy_members.js";
import { formatSyncToken, tokenAdvanced, type SyncToken } from "./token.js";

/** A sync filter compiled to predicates (from the spec's Filter, see core/filters). */
export interface CompiledSyncFilter {
  timelineLimit: number;
  timeline: (e: StoredEvent) => boolean;
  state: (e: StoredEvent) => boolean;
  ephemeral: (type: string) => boolean;
  roomAccountData: (type: string) => boolean;
  accountData: (type: string) => boolean;
  presence: (type: string, sender: string) => boolean;
  roomIncluded: (roomId: string) => boolean;
  includeLeave: boolean;
  lazyLoadMembers: boolean;
  /** With lazy-loading, send member events again that the client was already sent. */
  includeRedundantMembers: boolean;
  /** Per-thread unread counts (`unread_thread_notifications`) are wanted. */
  unreadThreadNotifications: boolean;
  /** event_format "federation": events as PDUs (with event_id and unsigned) rather than client events. */
  federationFormat: boolean;
  /** Applies event_fields to an event as sent. */
  shape: (e: ClientEvent) => ClientEvent;
}

export interface SyncRequest {
  userId: string;
  deviceId: string | null;
  since?: SyncToken;
  fullState: boolean;
  timeoutMs: number;
  setPresence: string;
  filter: CompiledSyncFilter;
  signal?: AbortSignal;
  /** The users the syncing user ignores (set by the service from m.ignored_user_list). */
  ignored?: ReadonlySet<string>;
}

/** The streams and caches both sync engines read (/sync here, Sliding Sync in sliding_sync.ts). */
export interface SyncStreamDeps {
  rooms: RoomAccess;
  accountData: AccountDataService;
  receipts: ReceiptService;
  typing: TypingService;
  presence: PresenceService;
  toDevice: ToDeviceService;
  deviceLists: DeviceListService;
  unread: UnreadCounts;
  pushRules: PushRuleService;
  userRooms: UserRooms;
  roomChanges: RoomChanges;
  recent: RecentEvents;
  /** One-time and fallback key state of the syncing device (e2e_keys.ts). */
  keyCounts?: (userId: string, deviceId: string) => Promise<{ device_one_time_keys_count: Record<string, number>; device_unused_fallback_key_types: string[] }>;
}

export interface SyncDeps extends SyncStreamDeps {
  /** Rooms the syncing device peeks into (MSC2753). */
  peeks?: PeekService;
}

const MEMBER_PREFIX = `${"m.room.member".length}:m.room.member`;
/** Spec "stripped state": what an invitee or knocker sees of a room. */
const STRIPPED_TYPES = ["m.room.create", "m.room.join_rules", "m.room.name", "m.room.avatar", "m.room.canonical_alias", "m.room.encryption", "m.room.topic"];

export class SyncService {
  private readonly lazyMembers = new LazyMemberCache();

  constructor(private readonly deps: SyncDeps) {}

  private get core() {
    return this.deps.rooms.core;
  }

  currentToken(): SyncToken {
    return {
      events: this.core.persister.position(),
      accountData: this.deps.accountData.position(),
      receipts: this.deps.receipts.position(),
      typing: this.deps.typing.position(),
      presence: this.deps.presence.position(),
      toDevice: this.deps.toDevice.position(),
      deviceLists: this.deps.deviceLists.position(),
      peeks: this.deps.peeks?.position() ?? 0,
    };
  }

  async sync(req: SyncRequest): Promise<JsonObject> {
    await this.deps.presence.onSync(req.userId, req.setPresence);
    let now = this.currentToken();
    let result = await this.compute(req, now);
    let since = req.since;
    if (since && req.timeoutMs > 0 && !req.fullState && isEmpty(result)) {
      const deadline = Date.now() + req.timeoutMs;
      // Wake on anything touching the user's rooms (any membership) or the user; recompute; repeat until the deadline.
      while (Date.now() < deadline) {
        const rooms = await this.deps.userRooms.roomIds(req.userId, ["join", "invite", "knock"]);
        if (req.deviceId && this.deps.peeks) for (const p of await this.deps.peeks.forDevice(req.userId, req.deviceId)) rooms.push(p.roomId);
        if (!tokenAdvanced(since, this.currentToken())) {
          const woken = await this.core.notifier.wait({ rooms, users: [req.userId] }, deadline - Date.now(), req.signal);
          if (!woken) break;
        }
        now = this.currentToken();
        result = await this.compute(req, now);
        if (!isEmpty(result)) break;
        // Something moved that this user does not see: keep waiting from here.
        since = now;
        req = { ...req, since };
      }
    }
    return result;
  }

  private async compute(req: SyncRequest, now: SyncToken): Promise<JsonObject> {
    const since = req.since;
    const fmt: FormatContext = { userId: req.userId, deviceId: req.deviceId, omitRoomId: true, federationFormat: req.filter.federationFormat };
    const storage = this.core.storage;
    if (!since && req.filter.lazyLoadMembers) this.lazyMembers.reset(req.userId, req.deviceId);
    // Spec "Ignoring Users": no events from ignored users but their state events, and no invites from them.
    const ignored = await this.deps.accountData.ignoredUsers(req.userId);
    req = { ...req, ignored };

    const { rooms: current, forgotten } = await this.deps.userRooms.of(req.userId);
    const changes = since && this.deps.userRooms.changedSince(req.userId, since.events) ? await storage.rooms.membershipChanges(req.userId, since.events, now.events) : [];
    const changedRooms = new Map<string, string>();
    for (const c of changes) changedRooms.set(c.room_id, c.membership);
    // Newly joined: a join since the token in a room the user was not joined to at the token (a displayname or
    // avatar change is a join after a join, and is not).
    const joinedSince = new Set<string>();
    for (const roomId of new Set(changes.filter((c) => c.membership === "join").map((c) => c.room_id))) {
      const before = await storage.rooms.membershipAt(req.userId, roomId, since!.events);
      if (before?.membership !== "join") joinedSince.add(roomId);
    }

    const join: JsonObject = {};
    const invite: JsonObject = {};
    const leave: JsonObject = {};
    const knock: JsonObject = {};

    const joined = current.filter((r) => r.membership === "join" && req.filter.roomIncluded(r.room_id));
    const joinedIds = joined.map((r) => r.room_id);
    const receipts = await this.deps.receipts.eventsFor(joinedIds, since?.receipts ?? 0, now.receipts, req.userId);
    const roomAccount = await this.deps.accountData.changedSince(req.userId, since?.accountData ?? 0, now.accountData);
    const latest = since ? await this.core.persister.latestStreams(joinedIds) : new Map<string, number>();

    // Rooms with something to say: full (new join, initial sync, full_state) or with news since the token. A room
    // with nothing new and no ephemeral or account data is skipped without touching the database.
    const fullRooms: string[] = [];
    const incrementalRooms: string[] = [];
    for (const r of joined) {
      const full = !since || req.fullState || joinedSince.has(r.room_id);
      if (full) fullRooms.push(r.room_id);
      else if ((latest.get(r.room_id) ?? 0) > since!.events || receipts.has(r.room_id) || this.deps.typing.eventFor(r.room_id, since!.typing) || roomAccount.some((a) => a.roomId === r.room_id)) {
        incrementalRooms.push(r.room_id);
      }
    }
    // Prefetch for all those rooms at once: timelines, bundled relations, member counts.
    const limit = req.filter.timelineLimit;
    const eventsByRoom = new Map<string, StoredEvent[]>();
    for (const [roomId, rows] of await storage.events.timelines(fullRooms, Number.MIN_SAFE_INTEGER, now.events, limit + 1)) eventsByRoom.set(roomId, await this.core.events.fromRows(rows));
    if (since) {
      // Incremental: the newest events are usually still in memory; the rest come from the database.
      const unknown: string[] = [];
      for (const roomId of incrementalRooms) {
        const recent = this.deps.recent.between(roomId, since.events, now.events, limit + 1);
        if (recent) eventsByRoom.set(roomId, recent);
        else unknown.push(roomId);
      }
      for (const [roomId, rows] of await storage.events.timelines(unknown, since.events, now.events, limit + 1)) eventsByRoom.set(roomId, await this.core.events.fromRows(rows));
    }
    // Bundled relations, asked for only in rooms where something related to an event after the oldest one shown.
    const timelineIds = [...eventsByRoom.entries()].flatMap(([roomId, list]) => {
      const shown = list.slice(0, limit);
      const oldest = shown[shown.length - 1]?.streamOrdering;
      return oldest !== undefined && this.deps.roomChanges.relationsSince(roomId, oldest) ? shown.map((e) => e.event.event_id) : [];
    });
    const relationRows = new Map<string, RelationRow[]>();
    for (const row of await storage.events.relationsTo(timelineIds, BUNDLED_RELATIONS)) {
      let l = relationRows.get(row.relates_to_id);
      if (!l) relationRows.set(row.relates_to_id, (l = []));
      l.push(row);
    }
    // Member counts for the summaries of full sections; an incremental one needs them only with member changes.
    const counts = await storage.rooms.memberCountsMany(fullRooms);
    const roomFmt: FormatContext = { ...fmt, relationRows };

    const fullSet = new Set(fullRooms);
    for (const roomId of [...fullRooms, ...incrementalRooms]) {
      const full = fullSet.has(roomId);
      const section = await this.roomSection(req, roomId, since, now, full, undefined, roomFmt, { events: eventsByRoom.get(roomId) ?? [], counts: counts.get(roomId) ?? (full ? { joined: 0, invited: 0 } : undefined) });
      const ephemeral: ClientEvent[] = [];
      const typing = this.deps.typing.eventFor(roomId, since?.typing);
      if (typing && req.filter.ephemeral("m.typing")) ephemeral.push(typing as unknown as ClientEvent);
      const receipt = receipts.get(roomId);
      if (receipt && req.filter.ephemeral("m.receipt")) ephemeral.push(receipt as unknown as ClientEvent);
      const accountData = roomAccount.filter((a) => a.roomId === roomId && req.filter.roomAccountData(a.type)).map((a) => ({ type: a.type, content: a.content }));
      const hasTimeline = (section.timeline.events as unknown[]).length > 0;
      const hasState = (section.state.events as unknown[]).length > 0;
      if (!full && !hasTimeline && !hasState && ephemeral.length === 0 && accountData.length === 0) continue;
      join[roomId] = {
        ...section,
        ephemeral: { events: ephemeral },
        account_data: { events: accountData as unknown as ClientEvent[] },
      };
    }
    // Notification counts of every room in the answer (spec: a new event's count comes in the same response).
    const unread = await this.deps.unread.forRooms(req.userId, Object.keys(join));
    for (const [roomId, c] of unread) {
      const section = join[roomId] as JsonObject;
      if (req.filter.unreadThreadNotifications) {
        section.unread_notifications = { ...c.main };
        section.unread_thread_notifications = Object.fromEntries([...c.threads].map(([t, n]) => [t, { ...n }]));
      } else {
        section.unread_notifications = { ...c.total };
      }
    }

    for (const r of current) {
      if (!req.filter.roomIncluded(r.room_id)) continue;
      const changedHere = changedRooms.has(r.room_id);
      if (r.membership === "invite" && (!since || changedHere)) {
        if (ignored.size > 0) {
          const inviteEvent = await this.core.events.get(r.event_id);
          if (inviteEvent && ignored.has(inviteEvent.event.sender)) continue;
        }
        invite[r.room_id] = { invite_state: { events: await this.strippedState(r.room_id, r.event_id) } };
      } else if (r.membership === "knock" && (!since || changedHere)) {
        knock[r.room_id] = { knock_state: { events: await this.strippedState(r.room_id, r.event_id) } };
      } else if ((r.membership === "leave" || r.membership === "ban") && !forgotten.has(r.room_id)) {
        // Incremental: rooms left since the token. Initial: left rooms only with include_leave.
        const wanted = since ? changedHere : req.filter.includeLeave;
        if (!wanted) continue;
        // A rejected invite or withdrawn knock the user never joined shows as a leave with no timeline.
        const leaveEvent = await this.core.events.get(r.event_id);
        if (!leaveEvent) continue;
        const upTo = leaveEvent.streamOrdering;
        const full = !since || req.fullState || joinedSince.has(r.room_id);
        // A leave this server made on its own (an invite rejected while no server in the room answered) stands
        // outside any room this server is in: it is the whole timeline, as Synapse shows it.
        const section = leaveEvent.outlier
          ? {
              timeline: { events: req.filter.timeline(leaveEvent) ? (await this.core.formatter.format([leaveEvent], fmt)).map(req.filter.shape) : [], limited: false, prev_batch: formatSyncToken({ ...now, events: upTo }) },
              state: { events: [] as ClientEvent[] },
              summary: {} as JsonObject,
            }
          : await this.roomSection(req, r.room_id, since, { ...now, events: upTo }, full, upTo, fmt);
        leave[r.room_id] = {
          ...section,
          account_data: { events: roomAccount.filter((a) => a.roomId === r.room_id).map((a) => ({ type: a.type, content: a.content })) as unknown as ClientEvent[] },
        };
      }
    }

    const peek = await this.peekSections(req, since, now, new Set(current.filter((r) => r.membership === "join").map((r) => r.room_id)), fmt);

    // Send-to-device messages for this device (none for a device-less token); the token moves only past those sent.
    const toDevice = req.deviceId ? await this.deps.toDevice.forSync(req.userId, req.deviceId, since?.toDevice ?? 0, now.toDevice) : { events: [], position: now.toDevice };
    const globalAccount: { type: string; content: unknown }[] = roomAccount.filter((a) => a.roomId === "" && req.filter.accountData(a.type)).map((a) => ({ type: a.type, content: a.content }));
    // Push rules are account data to clients (m.push_rules): all of it on an initial sync, then when they change.
    const pushRules = req.filter.accountData("m.push_rules") ? await this.deps.pushRules.syncEvent(req.userId, since?.accountData, now.accountData) : undefined;
    if (pushRules) globalAccount.push(pushRules);
    const presence = await this.deps.presence.eventsFor(req.userId, since?.presence ?? 0, now.presence);
    const deviceLists = { changed: [] as string[], left: [] as string[] };
    if (since) {
      const allJoined = current.filter((r) => r.membership === "join").map((r) => r.room_id);
      const news = await this.sharingChanges(req.userId, since, now, allJoined, joinedSince);
      const known = new Set(presence.map((p) => p.sender));
      const newPresence = [...news.newlyShared].filter((u) => !known.has(u));
      if (newPresence.length > 0) presence.push(...(await this.deps.presence.currentOf(newPresence, { orOffline: true })));
      // Spec "device_lists": `changed` — users "who have updated their device identity or cross-signing keys, or who
      // now share an encrypted room with the client since the previous sync response" (any room here, which the spec
      // allows "for the sake of simpler logic"); `left` — users "with whom we do not share any encrypted rooms anymore".
      const changed = new Set(await this.deps.deviceLists.changedFor(req.userId, since.deviceLists, now.deviceLists));
      for (const u of news.newlyShared) changed.add(u);
      const rooms = this.core.storage.rooms;
      const candidates = new Set(news.changedMembers);
      for (const c of changes) if ((c.membership === "leave" || c.membership === "ban") && changedRooms.get(c.room_id) === c.membership) for (const m of await rooms.members(c.room_id, ["join"])) candidates.add(m.user_id);
      candidates.delete(req.userId);
      const stillShared = candidates.size > 0 ? await rooms.usersSharingRooms(req.userId, [...candidates]) : new Set<string>();
      deviceLists.changed = [...changed];
      deviceLists.left = [...candidates].filter((u) => !stillShared.has(u) && !changed.has(u));
    }
    return {
      next_batch: formatSyncToken({ ...now, toDevice: toDevice.position }),
      account_data: { events: globalAccount as unknown as JsonObject[] },
      presence: { events: presence.filter((p) => req.filter.presence(p.type, p.sender)) as unknown as JsonObject[] },
      to_device: { events: toDevice.events },
      device_lists: deviceLists,
      // On every response for a device, `signed_curve25519: 0` included: clients top up their keys from these.
      ...(req.deviceId && this.deps.keyCounts ? await this.deps.keyCounts(req.userId, req.deviceId) : { device_one_time_keys_count: {} }),
      rooms: { join, invite, leave, knock, ...(Object.keys(peek).length > 0 ? { peek } : {}) },
    };
  }

  /**
   * `rooms.peek` (MSC2753): the rooms this device peeks into, in full when the peek is newer than the token, else
   * with what is new. A peek ends when the user joins (the room is then in `join`) or the room stops being
   * world-readable.
   */
  private async peekSections(req: SyncRequest, since: SyncToken | undefined, now: SyncToken, joined: Set<string>, fmt: FormatContext): Promise<JsonObject> {
    const out: JsonObject = {};
    const peeks = req.deviceId && this.deps.peeks ? await this.deps.peeks.forDevice(req.userId, req.deviceId) : [];
    if (peeks.length === 0) return out;
    const latest = since ? await this.core.persister.latestStreams(peeks.map((p) => p.roomId)) : new Map<string, number>();
    for (const p of peeks) {
      if (joined.has(p.roomId) || !(await this.deps.peeks!.worldReadable(p.roomId))) {
        await this.deps.peeks!.stop(req.userId, req.deviceId!, p.roomId);
        continue;
      }
      const full = !since || req.fullState || p.id > since.peeks;
      if (!full && (latest.get(p.roomId) ?? 0) <= since!.events) continue;
      const section = await this.roomSection(req, p.roomId, full ? undefined : since, now, full, undefined, fmt);
      if (!full && (section.timeline.events as unknown[]).length === 0 && (section.state.events as unknown[]).length === 0) continue;
      out[p.roomId] = { ...section, ephemeral: { events: [] }, account_data: { events: [] } };
    }
    return out;
  }

  /**
   * The users the syncing user newly shares a room with since the token (the members of rooms they joined, and users
   * who joined their rooms), and every user whose membership changed in their rooms. The newly shared get presence,
   * as Synapse sends it (their clients have none for them yet, and the presence stream would carry it only at its
   * next change), and count as device-list changes.
   */
  private async sharingChanges(userId: string, since: SyncToken, now: SyncToken, joinedRoomIds: string[], joinedSince: Set<string>): Promise<{ newlyShared: Set<string>; changedMembers: string[] }> {
    const users = new Set<string>();
    let changed: string[] = [];
    for (const roomId of joinedSince) for (const m of await this.core.storage.rooms.members(roomId, ["join"])) users.add(m.user_id);
    const latest = await this.core.persister.latestStreams(joinedRoomIds);
    const active = joinedRoomIds.filter((r) => (latest.get(r) ?? 0) > since.events && !joinedSince.has(r) && this.deps.roomChanges.membersChangedSince(r, since.events));
    if (active.length > 0) {
      changed = [...(await this.core.storage.rooms.membersChangedSince(active, since.events, now.events))].filter((u) => u !== userId);
      // Of those, the ones who share a room with the user now (joiners; not those who left).
      if (changed.length > 0) for (const u of await this.core.storage.rooms.usersSharingRooms(userId, changed)) users.add(u);
    }
    users.delete(userId);
    return { newlyShared: users, changedMembers: changed };
  }

  /**
   * One room's timeline and state. Full: the newest events up to `now` and the state before them (all of it, or only
   * the members the timeline needs when lazy-loading). Incremental: events in (since, now] and, when that timeline is
   * limited, the state changes between the token and the timeline's start.
   */
  private async roomSection(
    req: SyncRequest,
    roomId: string,
    since: SyncToken | undefined,
    now: SyncToken,
    full: boolean,
    upTo: number | undefined,
    fmt: FormatContext,
    /** Prefetched: the newest events in range (newest first, up to limit + 1), and member counts. */
    pre?: { events: StoredEvent[]; counts: { joined: number; invited: number } | undefined },
  ) {
    const limit = req.filter.timelineLimit;
    const to = upTo ?? now.events;
    const from = full || !since ? Number.MIN_SAFE_INTEGER : since.events;
    const newest = pre?.events ?? (await this.core.events.fromRows(await this.core.storage.events.roomTimeline(roomId, from, to, limit + 1)));
    // The limit counts the events the client is shown: those it may see (history visibility) and that pass the
    // timeline filter, as in Synapse's filtered recents.
    const shown = await this.shownNewest(req, roomId, from, newest, limit + 1, upTo === undefined);
    // A room newly joined in an incremental sync is always limited (as Synapse): the client has none of its history,
    // which lies behind prev_batch.
    const limited = shown.length > limit || (full && since !== undefined && !req.fullState);
    const timeline = shown.slice(0, limit).reverse();

    // The state at the start of the timeline: before its first event, or at `to` when it is empty.
    const first = timeline[0];
    let startState: StateMap;
    if (first) {
      const after = first.stateGroup !== null ? await this.core.state.stateOf(first.stateGroup) : new Map<string, string>();
      startState = first.event.state_key !== undefined ? revert(after, stateMapKey(first.event.type, first.event.state_key), first.replacesState) : after;
    } else {
      startState = await this.stateAtStream(roomId, to);
    }

    let stateIds: string[];
    if (full) {
      stateIds = [...startState.values()];
    } else if (limited && since) {
      const sinceState = await this.stateAtStream(roomId, since.events);
      stateIds = [...diffStates(sinceState, startState).values()].filter((v): v is string => v !== null);
    } else {
      stateIds = [];
    }
    if (req.filter.lazyLoadMembers) {
      // Spec "Lazy-loading room members": only the member events of the timeline's senders (and, in a full section,
      // the user's own, so the client knows it is in the room), leaving out those this device already has. An
      // incremental section keeps the membership changes of its gap, as clients keep the member list they loaded
      // with /members current from them.
      const needed = new Set(timeline.map((e) => e.event.sender));
      if (full) {
        needed.add(req.userId);
        const memberIds = new Set([...startState].filter(([k]) => k.startsWith(MEMBER_PREFIX)).map(([, v]) => v));
        stateIds = stateIds.filter((id) => !memberIds.has(id));
      }
      for (const u of needed) {
        const id = startState.get(stateMapKey("m.room.member", u));
        if (id && !timeline.some((e) => e.event.event_id === id)) stateIds.push(id);
      }
      if (!req.filter.includeRedundantMembers) stateIds = await this.withoutRedundantMembers(req, roomId, since, now, stateIds, timeline);
    }
    const stateEvents = [...(await this.core.events.getMany([...new Set(stateIds)])).values()].filter(req.filter.state);

    const shape = (list: ClientEvent[]) => list.map(req.filter.shape);
    // A timeline holding the room's whole history (from its create event) has nothing before it: its prev_batch is
    // then the position at its end, as Synapse gives for a timeline that is not limited, so that /messages and
    // /members?at= from it see the room as of this response (a token before the create event would show nothing).
    const atRoomStart = first !== undefined && first.event.type === "m.room.create" && first.event.state_key === "" && !limited;
    const prevBatch = first && !atRoomStart ? formatTopo(before({ depth: first.depth, stream: first.streamOrdering })) : formatSyncToken({ ...now, events: to });
    const section = {
      timeline: { events: shape(await this.core.formatter.format(timeline, fmt)), limited, prev_batch: prevBatch },
      state: { events: shape(await this.core.formatter.format(stateEvents, { ...fmt, noAggregations: true })) },
      summary: {} as JsonObject,
    };
    if (full || stateEvents.some((e) => e.event.type === "m.room.member") || timeline.some((e) => e.event.type === "m.room.member")) {
      section.summary = await this.summary(roomId, req.userId, pre?.counts);
    }
    return section;
  }

  /**
   * Lazy-loading: drops the member events this device was already sent (unless it syncs without a token), and
   * records those it is sent now, in state or timeline.
   */
  private async withoutRedundantMembers(req: SyncRequest, roomId: string, since: SyncToken | undefined, now: SyncToken, stateIds: string[], timeline: StoredEvent[]): Promise<string[]> {
    const cache = this.lazyMembers;
    const events = await this.core.events.getMany(stateIds);
    const memberOf = (id: string) => {
      const e = events.get(id)?.event;
      return e?.type === "m.room.member" && e.state_key !== undefined ? e.state_key : undefined;
    };
    const kept = since ? stateIds.filter((id) => { const m = memberOf(id); return m === undefined || !cache.has(req.userId, req.deviceId, roomId, m, id, since.events); }) : stateIds;
    const sent: [string, string][] = [];
    for (const id of kept) {
      const m = memberOf(id);
      if (m !== undefined) sent.push([m, id]);
    }
    for (const e of timeline) if (e.event.type === "m.room.member" && e.event.state_key !== undefined) sent.push([e.event.state_key, e.event.event_id]);
    cache.sent(req.userId, req.deviceId, roomId, sent, now.events);
    return kept;
  }

  /**
   * The events of the range the client is shown, newest first, up to `want` of them: those history visibility lets
   * it see and the timeline filter keeps. `newest` holds the newest events of the range (newest first); a list
   * shorter than `want` covers the whole range. When some were dropped, reads further back, a few chunks at most,
   * until `want` are shown or the range is exhausted. With `keepCurrentState`, current state stays in the timeline
   * even where history visibility hides it (as Synapse), or a client would never learn of state set while it could
   * not see the room (it would be in neither timeline nor state).
   */
  private async shownNewest(req: SyncRequest, roomId: string, from: number, newest: StoredEvent[], want: number, keepCurrentState: boolean): Promise<StoredEvent[]> {
    let current: Set<string> | undefined;
    const keep = async (list: StoredEvent[]): Promise<StoredEvent[]> => {
      const ignored = req.ignored;
      const candidates = list.filter((e) => (!ignored || e.event.state_key !== undefined || !ignored.has(e.event.sender)) && req.filter.timeline(e));
      const visible = await this.core.visibility.filter(req.userId, candidates);
      if (!keepCurrentState || visible.length === candidates.length || !candidates.some((e) => e.event.state_key !== undefined)) return visible;
      if (!current) current = new Set((await this.deps.rooms.headIfKnown(roomId))?.state.values() ?? []);
      // The visible events as visibility gave them (an erased sender's come redacted), with hidden current state.
      const ok = new Map(visible.map((e) => [e.event.event_id, e]));
      return candidates.flatMap((e) => ok.get(e.event.event_id) ?? (current!.has(e.event.event_id) && !e.outlier && !e.rejected && !e.softFailed ? [e] : []));
    };
    const out = await keep(newest);
    let exhausted = newest.length < want;
    let oldest = newest[newest.length - 1]?.streamOrdering;
    const chunk = Math.max(want * 3, 30);
    for (let round = 0; round < 5 && out.length < want && !exhausted && oldest !== undefined; round++) {
      const older = await this.core.events.fromRows(await this.core.storage.events.roomTimeline(roomId, from, oldest - 1, chunk));
      out.push(...(await keep(older)));
      exhausted = older.length < chunk;
      oldest = older[older.length - 1]?.streamOrdering;
    }
    return out.slice(0, want);
  }

  /** The room state after the last event at or before a stream position. */
  private async stateAtStream(roomId: string, stream: number): Promise<StateMap> {
    const [row] = await this.core.storage.events.roomTimeline(roomId, Number.MIN_SAFE_INTEGER, stream, 1);
    if (!row || row.state_group === null) return new Map();
    return this.core.state.stateOf(row.state_group);
  }

  /** Spec room summary: m.heroes (when the room has no name or canonical alias), joined and invited counts. */
  private async summary(roomId: string, userId: string, prefetched?: { joined: number; invited: number }): Promise<JsonObject> {
    const head = await this.deps.rooms.head(roomId);
    const counts = prefetched ?? (await this.core.storage.rooms.memberCounts(roomId));
    const out: JsonObject = { "m.joined_member_count": counts.joined, "m.invited_member_count": counts.invited };
    const name = await this.deps.rooms.stateContent(head, "m.room.name");
    const alias = await this.deps.rooms.stateContent(head, "m.room.canonical_alias");
    if (!(typeof name?.name === "string" && name.name) && !(typeof alias?.alias === "string" && alias.alias)) {
      const members = await this.core.storage.rooms.members(roomId, ["join", "invite"]);
      let heroes = members.map((m) => m.user_id).filter((u) => u !== userId);
      if (heroes.length === 0) {
        // Everyone left: former members make the name ("Empty room (was Alice)").
        heroes = (await this.core.storage.rooms.members(roomId, ["leave", "ban"])).map((m) => m.user_id).filter((u) => u !== userId);
      }
      out["m.heroes"] = heroes.sort().slice(0, 5);
    }
    return out;
  }

  /** Stripped state events for an invite or knock: the room's basic state plus the user's own member event (Sliding Sync's invite_state too). */
  async strippedState(roomId: string, memberEventId: string): Promise<JsonObject[]> {
    const head = await this.deps.rooms.headIfKnown(roomId);
    if (!head) {
      // A room this server is not in (an invite over federation): the stripped state that came with the invite.
      const given = ((await this.core.storage.events.strippedState(memberEventId)) ?? []).filter((x): x is JsonObject => typeof x === "object" && x !== null && !Array.isArray(x));
      const member = await this.core.events.get(memberEventId);
      if (!member) return given;
      const own: JsonObject = { type: member.event.type, state_key: member.event.state_key ?? "", sender: member.event.sender, content: member.event.content, event_id: member.event.event_id, origin_server_ts: member.event.origin_server_ts };
      return [...given.filter((e) => !(e.type === "m.room.member" && e.state_key === member.event.state_key)), own];
    }
    const ids = STRIPPED_TYPES.map((t) => head.state.get(stateMapKey(t, ""))).filter((x): x is string => x !== undefined);
    ids.push(memberEventId);
    const events = await this.core.events.getMany(ids);
    const member = events.get(memberEventId);
    // The inviter's member event tells clients who sent the invite (displayname, avatar).
    if (member) {
      const inviterId = head.state.get(stateMapKey("m.room.member", member.event.sender));
      if (inviterId && inviterId !== memberEventId) {
        const inviter = await this.core.events.get(inviterId);
        if (inviter) events.set(inviterId, inviter);
      }
    }
    return [...events.values()].map((e) => {
      const s: JsonObject = { type: e.event.type, state_key: e.event.state_key ?? "", sender: e.event.sender, content: e.event.content };
      if (e.event.event_id === memberEventId) {
        s.event_id = e.event.event_id;
        s.origin_server_ts = e.event.origin_server_ts;
      }
      return s;
    });
  }
}

function revert(after: StateMap, key: string, replaced: string | null): StateMap {
  const out = new Map(after);
  if (replaced === null) out.delete(key);
  else out.set(key, replaced);
  return out;
}

/** Nothing for the client: no room sections with content and no global events. */
function isEmpty(r: JsonObject): boolean {
  const rooms = r.rooms as Record<string, Record<string, unknown>>;
  const anyRoom = Object.values(rooms).some((section) => Object.keys(section).length > 0);
  const list = (k: string) => ((r[k] as { events: unknown[] }).events ?? []).length > 0;
  const devices = r.device_lists as { changed: unknown[]; left: unknown[] };
  return !anyRoom && !list("account_data") && !list("presence") && !list("to_device") && devices.changed.length === 0 && devices.left.length === 0;
}
