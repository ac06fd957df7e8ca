/**
 * Simplified Sliding Sync (MSC4186): the room list the client slides windows over, the rooms in those windows and
 * its room subscriptions, each with only what changed since the connection last sent it, and the extensions
 * (to-device, E2EE, account data, receipts, typing). Built on the same streams and caches as /sync v2 (sync.ts):
 * a sync token per response, UserRooms for memberships, the persister's latest stream per room to skip rooms with
 * nothing new, the notifier for long-polling.
 */
import { splitStateMapKey, stateMapKey, type StateMap } from "../../core/events/event.js";
import { isJsonObject, type JsonObject } from "../../core/json/types.js";
import { diffStates } from "../../storage/state_deltas.js";
import type { StoredEvent } from "../rooms/event_cache.js";
import { BUNDLED_RELATIONS, type FormatContext, type RelationRow } from "../rooms/format.js";
import type { RoomAccess } from "../rooms/rooms.js";
import { before, formatTopo } from "../rooms/tokens.js";
import type { BumpStamps } from "./bump_stamps.js";
import type { Candidate, RoomListView, SlidingRoomLists } from "./sliding_room_lists.js";
import type { OpenConnection, SentRoom, SlidingConnections } from "./sliding_connections.js";
import { combineConfigs, parseSlidingRequest, stateWanted, type ExtensionScope, type ListFilters, type RoomConfig, type SlidingRequest, type StateSpec } from "./sliding_request.js";
import type { SyncStreamDeps } from "./sync.js";
import { formatSyncToken, tokenAdvanced, type SyncToken } from "./token.js";

export interface SlidingSyncDeps extends SyncStreamDeps {
  bumpStamps: BumpStamps;
  roomLists: SlidingRoomLists;
  connections: SlidingConnections;
  /** The current sync token (SyncService.currentToken). */
  currentToken: () => SyncToken;
  /** Stripped state of an invite or knock (SyncService.strippedState). */
  strippedState: (roomId: string, memberEventId: string) => Promise<JsonObject[]>;
}

export interface SlidingSyncCall {
  userId: string;
  deviceId: string | null;
  pos?: string;
  timeoutMs: number;
  setPresence: string;
  body: unknown;
  signal?: AbortSignal;
}

/** A room to send, decided before its timeline is read (see SlidingSyncService.plan). */
interface RoomPlan {
  c: Candidate;
  config: RoomConfig;
  prev: SentRoom | undefined;
  initial: boolean;
  hasNews: boolean;
  expandTimeline: boolean;
  /** The room's state at `to` (current state when joined). */
  state: StateMap;
  /** State keys matched by a grown config and not by what was sent. */
  expandedKeys: string[];
  /** The timeline's range (from, to]. */
  from: number;
  to: number;
  /** Whether the timeline is read at all. */
  timeline: boolean;
  /** Counts and heroes are sent. */
  membersChanged: boolean;
}

/** One response being computed. */
interface Pass {
  userId: string;
  deviceId: string | null;
  req: SlidingRequest;
  conn: OpenConnection;
  since: SyncToken | undefined;
  now: SyncToken;
  ignored: ReadonlySet<string>;
  dmRooms: Set<string>;
  tagsVersion: number;
}

interface Computed {
  view: RoomListView;
  lists: JsonObject;
  rooms: JsonObject;
  extensions: JsonObject;
  sent: Map<string, SentRoom>;
  empty: boolean;
}

const MEMBER = "m.room.member";
/** Heroes shown for a room without a name (as the spec's m.heroes). */
const MAX_HEROES = 5;
const DIRECT_CACHE_MAX = 10_000;

export class SlidingSyncService {
  /** m.direct rooms per user, with the account data position they were read at. */
  private readonly direct = new Map<string, { at: number; rooms: Set<string> }>();
  /** The account data position of each user's last m.tag change seen (see tagsVersion). */
  private readonly tags = new Map<string, { at: number; version: number }>();

  constructor(private readonly deps: SlidingSyncDeps) {}

  private get core() {
    return this.deps.rooms.core;
  }

  async sync(call: SlidingSyncCall): Promise<JsonObject> {
    // Validate before touching the connection: a bad request must not reset it.
    parseSlidingRequest(call.body, call.userId, undefined);
    const connId = (call.body as JsonObject).conn_id;
    const conn = await this.deps.connections.open(call.userId, call.deviceId ?? "", typeof connId === "string" ? connId : "", call.pos);
    const req = parseSlidingRequest(call.body, call.userId, conn.sticky);
    await this.deps.presence.onSync(call.userId, call.setPresence);

    let now = this.deps.currentToken();
    const base = { userId: call.userId, deviceId: call.deviceId, req, conn, since: conn.since };
    let result = await this.compute({ ...base, now, ...(await this.userContext(call.userId)) });
    if (conn.since && call.timeoutMs > 0 && result.empty) {
      // Long-poll (as /sync v2): wake on anything touching the user's rooms or the user, recompute, until the deadline.
      const deadline = Date.now() + call.timeoutMs;
      let seen = now;
      while (Date.now() < deadline) {
        if (!tokenAdvanced(seen, this.deps.currentToken())) {
          const woken = await this.core.notifier.wait({ rooms: result.view.waitRooms, users: [call.userId] }, deadline - Date.now(), call.signal);
          if (!woken) break;
        }
        seen = this.deps.currentToken();
        now = seen;
        result = await this.compute({ ...base, now, ...(await this.userContext(call.userId)) });
        if (!result.empty) break;
      }
    }
    // Nothing sent and the settings unchanged: the same pos serves again (no write per idle poll).
    const pos =
      result.empty && conn.since && call.pos !== undefined && JSON.stringify(req.sticky) === JSON.stringify(conn.sticky)
        ? call.pos
        : await this.deps.connections.commit(conn, result.empty && conn.since ? conn.since : now, req.sticky, result.sent);
    const out: JsonObject = { pos, lists: result.lists, rooms: result.rooms, extensions: result.extensions };
    // MSC3575's txn_id, echoed: matrix-js-sdk resolves its list updates by it.
    const txnId = (call.body as JsonObject).txn_id;
    if (typeof txnId === "string") out.txn_id = txnId;
    return out;
  }

  private async userContext(userId: string): Promise<{ ignored: ReadonlySet<string>; dmRooms: Set<string>; tagsVersion: number }> {
    const ignored = await this.deps.accountData.ignoredUsers(userId);
    return { ignored, dmRooms: await this.dmRooms(userId), tagsVersion: await this.tagsVersion(userId) };
  }

  /** A number that moves when the user's m.tag account data changes (the tags filters' input). */
  private async tagsVersion(userId: string): Promise<number> {
    const at = this.deps.accountData.position();
    const hit = this.tags.get(userId);
    if (hit && (hit.at === at || !(await this.deps.accountData.changedSince(userId, hit.at, at)).some((a) => a.type === "m.tag"))) {
      hit.at = at;
      return hit.version;
    }
    if (this.tags.size >= DIRECT_CACHE_MAX) this.tags.clear();
    this.tags.set(userId, { at, version: at });
    return at;
  }

  /** The rooms of the user's m.direct account data, read again only after it changed. */
  private async dmRooms(userId: string): Promise<Set<string>> {
    const at = this.deps.accountData.position();
    const hit = this.direct.get(userId);
    if (hit && (hit.at === at || !(await this.deps.accountData.changedSince(userId, hit.at, at)).some((a) => a.roomId === "" && a.type === "m.direct"))) {
      hit.at = at;
      return hit.rooms;
    }
    const direct = await this.core.storage.accountData.get(userId, "", "m.direct");
    const rooms = new Set<string>();
    for (const v of Object.values(direct ?? {})) if (Array.isArray(v)) for (const r of v) if (typeof r === "string") rooms.add(r);
    if (this.direct.size >= DIRECT_CACHE_MAX) this.direct.clear();
    this.direct.set(userId, { at, rooms });
    return rooms;
  }

  private async compute(p: Pass): Promise<Computed> {
    const facts = new RoomFacts(this.deps.rooms, p);
    const match = (c: Candidate, f: ListFilters) => facts.matches(c, f);
    const view = await this.deps.roomLists.view(
      { userId: p.userId, ignored: p.ignored, since: p.since?.events, inputs: { dmRooms: p.dmRooms, tagsVersion: p.tagsVersion }, match },
      [...p.req.lists.values()].map((l) => l.filters),
    );
    const byId = { get: (roomId: string) => view.get(roomId), has: (roomId: string) => view.get(roomId) !== undefined };

    // Lists: filter, count, and take the rooms in the ranges with the list's config.
    const lists: JsonObject = {};
    const wanted = new Map<string, { config: RoomConfig; lists: string[] }>();
    const want = (roomId: string, config: RoomConfig, list?: string) => {
      const had = wanted.get(roomId);
      if (had) {
        had.config = combineConfigs(had.config, config);
        if (list) had.lists.push(list);
      } else wanted.set(roomId, { config, lists: list ? [list] : [] });
    };
    const inList = new Map<string, Set<string>>();
    for (const [name, list] of p.req.lists) {
      // The kept list and filter sets give the count and the window without looking at the other rooms.
      const { count, rooms: windowRooms } = await view.window(list.filters, list.ranges, match);
      lists[name] = { count };
      const members = new Set(windowRooms);
      inList.set(name, members);
      for (const roomId of members) want(roomId, list, name);
    }
    for (const [roomId, config] of p.req.subscriptions) if (byId.has(roomId)) want(roomId, config);

    const sent = new Map<string, SentRoom>();
    const rooms: JsonObject = {};
    const latest = await this.core.persister.latestStreams([...wanted.keys()].filter((r) => byId.get(r)!.membership === "join"));
    const initialRooms = new Set<string>();
    const add = (roomId: string, built: { result?: JsonObject; sent: SentRoom }) => {
      sent.set(roomId, built.result ? { ...built.sent, isDm: p.dmRooms.has(roomId) } : built.sent);
      if (!built.result) return;
      const names = wanted.get(roomId)!.lists;
      if (names.length > 0) built.result.lists = names;
      rooms[roomId] = built.result;
      if (built.result.initial === true) initialRooms.add(roomId);
    };
    const plans: RoomPlan[] = [];
    for (const [roomId, { config }] of wanted) {
      const planned = await this.plan(p, byId.get(roomId)!, config, latest.get(roomId) ?? 0);
      if (!planned) continue;
      if ("c" in planned) plans.push(planned);
      else add(roomId, planned);
    }
    // Prefetch for all planned rooms at once (as /sync v2): timelines, bundled relations, member counts.
    const shown = await this.shownTimelines(p, plans);
    const timelineIds = plans.flatMap((plan) => {
      const list = (shown.get(plan.c.roomId) ?? []).slice(0, plan.config.timelineLimit);
      const oldest = list[list.length - 1]?.streamOrdering;
      return oldest !== undefined && this.deps.roomChanges.relationsSince(plan.c.roomId, oldest) ? list.map((e) => e.event.event_id) : [];
    });
    const relationRows = new Map<string, RelationRow[]>();
    for (const row of await this.core.storage.events.relationsTo(timelineIds, BUNDLED_RELATIONS)) {
      let l = relationRows.get(row.relates_to_id);
      if (!l) relationRows.set(row.relates_to_id, (l = []));
      l.push(row);
    }
    const counts = await this.core.storage.rooms.memberCountsMany(plans.filter((plan) => plan.membersChanged).map((plan) => plan.c.roomId));
    const fmt: FormatContext = { userId: p.userId, deviceId: p.deviceId, relationRows };
    for (const plan of plans) add(plan.c.roomId, await this.build(p, plan, shown.get(plan.c.roomId) ?? [], counts.get(plan.c.roomId), fmt, facts));
    // Notification counts of the joined rooms in the answer, and of those in the lists whose counts changed since
    // they were sent (a read receipt elsewhere cleared them): those come with just the counts.
    const joinedWanted = [...wanted.keys()].filter((r) => byId.get(r)!.membership === "join");
    for (const [roomId, counts] of await this.deps.unread.forRooms(p.userId, joinedWanted)) {
      const n = counts.total.notification_count;
      const h = counts.total.highlight_count;
      let r = rooms[roomId] as JsonObject | undefined;
      const was = sent.get(roomId) ?? p.conn.rooms.get(roomId);
      if (!r) {
        if (!was || ((was.counts?.[0] ?? 0) === n && (was.counts?.[1] ?? 0) === h)) continue;
        r = rooms[roomId] = { membership: "join", bump_stamp: byId.get(roomId)!.bump };
        const names = wanted.get(roomId)!.lists;
        if (names.length > 0) r.lists = names;
      }
      r.notification_count = n;
      r.highlight_count = h;
      if (was) sent.set(roomId, { ...was, counts: [n, h] });
    }

    const relevant = (scope: ExtensionScope) => {
      const out = new Set<string>();
      for (const [name, members] of inList) if (!scope.lists || scope.lists.includes(name)) for (const r of members) out.add(r);
      for (const roomId of p.req.subscriptions.keys()) if (byId.has(roomId) && (!scope.rooms || scope.rooms.includes(roomId))) out.add(roomId);
      if (scope.rooms) for (const roomId of scope.rooms) if (byId.has(roomId)) out.add(roomId);
      return [...out].filter((r) => byId.get(r)!.membership === "join");
    };
    const { extensions, empty: noExtensionData } = await this.extensions(p, view, relevant, initialRooms);
    return { view, lists, rooms, extensions, sent, empty: Object.keys(rooms).length === 0 && noExtensionData };
  }

  /**
   * What to send of one room: undefined when the connection already has everything about it; a finished result for
   * an invite or knock; only a new `sent` record when just the config changed; otherwise a plan for build().
   */
  private async plan(p: Pass, c: Candidate, config: RoomConfig, latestStream: number): Promise<RoomPlan | { result?: JsonObject; sent: SentRoom } | undefined> {
    const prev = p.conn.rooms.get(c.roomId);
    // is_dm must come again when the DM state changes (MSC4186).
    const dmChanged = prev !== undefined && (prev.isDm ?? false) !== p.dmRooms.has(c.roomId);
    if (c.membership === "invite" || c.membership === "knock") {
      if (prev && prev.membership === c.membership && prev.sentStream === c.memberStream && !dmChanged) return undefined;
      const stripped = await this.deps.strippedState(c.roomId, c.eventId);
      const result: JsonObject = { initial: true, membership: c.membership, bump_stamp: c.bump, invite_state: stripped, is_dm: p.dmRooms.has(c.roomId) };
      if (c.membership === "knock") result.knock_state = stripped;
      const name = stripped.find((e) => e.type === "m.room.name" && e.state_key === "");
      if (isJsonObject(name?.content) && typeof name.content.name === "string" && name.content.name) result.name = name.content.name;
      return { result, sent: { membership: c.membership, sentStream: c.memberStream, timelineLimit: 0, requiredState: { include: [], exclude: [], lazy: false }, lazyMembers: [] } };
    }

    if (c.neverJoined) {
      // Only the membership: the user never saw the room's state or timeline.
      if (prev && prev.membership === c.membership && prev.sentStream === c.memberStream && !dmChanged) return undefined;
      const result: JsonObject = { initial: true, membership: c.membership, bump_stamp: c.bump, is_dm: p.dmRooms.has(c.roomId), required_state: [], timeline: [] };
      return { result, sent: { membership: c.membership, sentStream: c.memberStream, timelineLimit: 0, requiredState: { include: [], exclude: [], lazy: false }, lazyMembers: [] } };
    }
    const joined = c.membership === "join";
    // A room left (or banned from) is shown as of the membership event.
    const to = joined ? p.now.events : c.memberStream;
    // Initial: never sent on this connection, or last sent while not a member (an invite, a knock, a leave).
    const initial = !prev || (prev.membership !== "join" && prev.membership !== c.membership);
    // Events committed after this response's token wait for the next one.
    const newest = joined ? Math.min(latestStream, to) : c.memberStream;
    const hasNews = initial || newest > prev!.sentStream || prev!.membership !== c.membership;
    const expandTimeline = !initial && config.timelineLimit > prev!.timelineLimit;
    const specChanged = !initial && !sameSpec(config.requiredState, prev!.requiredState);
    if (!hasNews && !expandTimeline && !specChanged && !dmChanged) return undefined;

    const state = joined ? ((await this.deps.rooms.headIfKnown(c.roomId))?.state ?? new Map<string, string>()) : await this.stateAtStream(c.roomId, to);
    // State the client lacks because the config grew: matched now, not by what was sent.
    const expandedKeys: string[] = [];
    if (specChanged) for (const key of state.keys()) if (keyWanted(config.requiredState, key) && !keyWanted(prev!.requiredState, key)) expandedKeys.push(key);
    if (!hasNews && !expandTimeline && expandedKeys.length === 0) {
      // Nothing else to send, but remember the new config: what the client has is judged against it from now on.
      const sent = { ...prev!, requiredState: config.requiredState, lazyMembers: config.requiredState.lazy && prev!.requiredState.lazy ? prev!.lazyMembers : [] };
      return dmChanged ? { result: { membership: c.membership, bump_stamp: c.bump, is_dm: p.dmRooms.has(c.roomId) }, sent } : { sent };
    }
    // Timeline: the newest events, or those after what was sent (all of the newest with an expanded limit).
    const from = initial || expandTimeline ? Number.MIN_SAFE_INTEGER : prev!.sentStream;
    const membersChanged = initial || this.deps.roomChanges.membersChangedSince(c.roomId, prev!.sentStream);
    return { c, config, prev, initial, hasNews, expandTimeline, state, expandedKeys, from, to, timeline: hasNews || expandTimeline, membersChanged };
  }

  /** A planned room's result, from its shown timeline (newest first, up to limit + 1) and prefetched counts. */
  private async build(p: Pass, plan: RoomPlan, shown: StoredEvent[], counts: { joined: number; invited: number } | undefined, fmt: FormatContext, facts: RoomFacts): Promise<{ result: JsonObject; sent: SentRoom }> {
    const { c, config, prev, initial, hasNews, expandTimeline, state, expandedKeys, to } = plan;
    const limit = config.timelineLimit;
    const timeline = shown.slice(0, limit).reverse();
    const limited = shown.length > limit;

    // required_state: everything asked for (initial), else what changed since it was sent, plus what the config added.
    const spec = config.requiredState;
    const wasLazy = !initial && prev!.requiredState.lazy;
    const knownMembers = new Set(wasLazy ? prev!.lazyMembers : []);
    const keys = new Set<string>();
    const lazySent: string[] = [];
    if (initial) {
      for (const key of keysWanted(spec, state)) keys.add(key);
    } else {
      if (hasNews) {
        const changed = diffStates(await this.stateAtStream(c.roomId, prev!.sentStream), state);
        for (const [key, id] of changed) {
          if (id === null) continue;
          if (keyWanted(spec, key)) keys.add(key);
          else if (spec.lazy && key.startsWith(MEMBER_PREFIX)) {
            // Lazy members: changes of those sent, and without a gap every membership change (MSC4186), so the
            // client's cached member list stays current.
            const u = key.slice(MEMBER_PREFIX.length);
            if (knownMembers.has(u)) keys.add(key);
            else if (!limited) {
              keys.add(key);
              knownMembers.add(u);
              lazySent.push(u);
            }
          }
        }
      }
      for (const key of expandedKeys) keys.add(key);
    }
    // $LAZY: the members of the timeline's senders the client was not sent yet (MSC4186 "Lazy loaded memberships").
    if (spec.lazy) {
      for (const e of timeline) {
        const u = e.event.sender;
        const key = stateMapKey(MEMBER, u);
        if (!state.has(key) || knownMembers.has(u)) continue;
        if (!initial && keyWanted(prev!.requiredState, key)) continue;
        knownMembers.add(u);
        lazySent.push(u);
        keys.add(key);
      }
    }
    const ids = [...keys].map((k) => state.get(k)).filter((id): id is string => id !== undefined);
    const stateEvents = [...(await this.core.events.getMany(ids)).values()];

    const result: JsonObject = {};
    if (initial) result.initial = true;
    result.membership = c.membership;
    result.bump_stamp = c.bump;
    result.is_dm = p.dmRooms.has(c.roomId);
    if (expandTimeline && shown.some((e) => e.streamOrdering <= prev!.sentStream)) {
      result.expanded_timeline = true;
      result.unstable_expanded_timeline = true;
    }
    result.required_state = await this.core.formatter.format(stateEvents, { ...fmt, noAggregations: true });
    result.timeline = await this.core.formatter.format(timeline, fmt);
    result.limited = limited;
    result.num_live = p.since ? timeline.filter((e) => e.streamOrdering > p.since!.events).length : 0;
    const first = timeline[0];
    const atRoomStart = first !== undefined && first.event.type === "m.room.create" && first.event.state_key === "" && !limited;
    result.prev_batch = first && !atRoomStart ? formatTopo(before({ depth: first.depth, stream: first.streamOrdering })) : formatSyncToken({ ...p.now, events: to });

    // Name, avatar, heroes and counts: on the first send, else when the state behind them changed.
    const nameChanged = initial || keys.has(stateMapKey("m.room.name", "")) || timeline.some((e) => e.event.type === "m.room.name");
    const name = await facts.stateContent(state, "m.room.name");
    const hasName = typeof name?.name === "string" && name.name.length > 0;
    if (nameChanged && hasName) result.name = name!.name as string;
    if (initial || keys.has(stateMapKey("m.room.avatar", "")) || timeline.some((e) => e.event.type === "m.room.avatar")) {
      const avatar = await facts.stateContent(state, "m.room.avatar");
      if (typeof avatar?.url === "string" && avatar.url) result.avatar = avatar.url;
    }
    if (plan.membersChanged) {
      const n = counts ?? (await this.core.storage.rooms.memberCounts(c.roomId));
      result.joined_count = n.joined;
      result.invited_count = n.invited;
      if (!hasName) result.heroes = await this.heroes(c.roomId, p.userId);
    }

    const lazyMembers = spec.lazy ? [...(wasLazy ? prev!.lazyMembers.filter((u) => !lazySent.includes(u)) : []), ...lazySent] : [];
    return { result, sent: { membership: c.membership, sentStream: to, timelineLimit: limit, requiredState: spec, lazyMembers } };
  }

  /**
   * The events of (from, to] the user is shown, newest first, at most `want`: history visibility applies and
   * ignored users' messages are left out; reads further back, a few chunks at most, when some were dropped.
   */
  private async shownNewest(p: Pass, roomId: string, from: number, to: number, want: number, prefetched?: StoredEvent[]): Promise<StoredEvent[]> {
    if (want <= 0) return [];
    const keep = async (list: StoredEvent[]) => this.core.visibility.filter(p.userId, list.filter((e) => e.event.state_key !== undefined || !p.ignored.has(e.event.sender)));
    const first = prefetched ?? (await this.core.events.fromRows(await this.core.storage.events.roomTimeline(roomId, from, to, want)));
    const out = await keep(first);
    let exhausted = first.length < want;
    let oldest = first[first.length - 1]?.streamOrdering;
    const chunk = Math.max(want * 3, 30);
    for (let round = 0; round < 5 && out.length < want && !exhausted && oldest !== undefined; round++) {
      const older = await this.core.events.fromRows(await this.core.storage.events.roomTimeline(roomId, from, oldest - 1, chunk));
      out.push(...(await keep(older)));
      exhausted = older.length < chunk;
      oldest = older[older.length - 1]?.streamOrdering;
    }
    return out.slice(0, want);
  }

  /**
   * The shown timelines of the planned rooms (newest first, up to each limit + 1): the newest events of an
   * incremental one from memory when it has them, the others read together per (from, to, limit).
   */
  private async shownTimelines(p: Pass, plans: RoomPlan[]): Promise<Map<string, StoredEvent[]>> {
    const firstChunks = new Map<string, StoredEvent[]>();
    const groups = new Map<string, { from: number; to: number; want: number; rooms: string[] }>();
    for (const plan of plans) {
      const want = plan.config.timelineLimit + 1;
      if (!plan.timeline || plan.config.timelineLimit === 0) continue;
      const cached = plan.to === p.now.events && plan.from > Number.MIN_SAFE_INTEGER ? this.deps.recent.between(plan.c.roomId, plan.from, plan.to, want) : undefined;
      if (cached) {
        firstChunks.set(plan.c.roomId, cached);
        continue;
      }
      const key = `${plan.from}|${plan.to}|${want}`;
      let g = groups.get(key);
      if (!g) groups.set(key, (g = { from: plan.from, to: plan.to, want, rooms: [] }));
      g.rooms.push(plan.c.roomId);
    }
    for (const g of groups.values()) {
      const rows = await this.core.storage.events.timelines(g.rooms, g.from, g.to, g.want);
      for (const roomId of g.rooms) firstChunks.set(roomId, await this.core.events.fromRows(rows.get(roomId) ?? []));
    }
    const out = new Map<string, StoredEvent[]>();
    for (const plan of plans) {
      const first = firstChunks.get(plan.c.roomId);
      if (first) out.set(plan.c.roomId, await this.shownNewest(p, plan.c.roomId, plan.from, plan.to, plan.config.timelineLimit + 1, first));
      else if (plan.timeline && plan.config.timelineLimit === 0) {
        // Limit 0: nothing shown, but `limited` tells whether there is anything.
        const any = await this.shownNewest(p, plan.c.roomId, plan.from, plan.to, 1);
        out.set(plan.c.roomId, any);
      }
    }
    return out;
  }

  /** The room state after the last event at or before a stream position. */
  private async stateAtStream(roomId: string, stream: number): Promise<StateMap> {
    const [row] = await this.core.storage.events.roomTimeline(roomId, Number.MIN_SAFE_INTEGER, stream, 1);
    if (!row || row.state_group === null) return new Map();
    return this.core.state.stateOf(row.state_group);
  }

  /** Members who name a room without a name: joined and invited first, else former members (as m.heroes). */
  private async heroes(roomId: string, userId: string): Promise<JsonObject[]> {
    const storage = this.core.storage;
    let members = (await storage.rooms.members(roomId, ["join", "invite"])).filter((m) => m.user_id !== userId);
    if (members.length === 0) members = (await storage.rooms.members(roomId, ["leave", "ban"])).filter((m) => m.user_id !== userId);
    members.sort((a, b) => (a.user_id < b.user_id ? -1 : a.user_id > b.user_id ? 1 : 0));
    const picked = members.slice(0, MAX_HEROES);
    const events = await this.core.events.getMany(picked.map((m) => m.event_id));
    return picked.map((m) => {
      const content = events.get(m.event_id)?.event.content ?? {};
      const hero: JsonObject = { user_id: m.user_id };
      if (typeof content.displayname === "string") hero.displayname = content.displayname;
      if (typeof content.avatar_url === "string") hero.avatar_url = content.avatar_url;
      return hero;
    });
  }

  // ---- Extensions -----------------------------------------------------------------------------------------------

  private async extensions(p: Pass, view: RoomListView, relevant: (scope: ExtensionScope) => string[], initialRooms: Set<string>): Promise<{ extensions: JsonObject; empty: boolean }> {
    const ext = p.req.extensions;
    const out: JsonObject = {};
    let empty = true;
    const since = p.since;

    if (ext.toDevice && p.deviceId) {
      const { events, position } = await this.deps.toDevice.forSync(p.userId, p.deviceId, ext.toDevice.since ?? 0, p.now.toDevice, ext.toDevice.limit);
      out.to_device = { next_batch: String(position), events };
      if (events.length > 0) empty = false;
    }

    if (ext.e2ee) {
      const deviceLists = since ? await this.deviceListChanges(p, since, view) : { changed: [], left: [] };
      if (deviceLists.changed.length > 0 || deviceLists.left.length > 0) empty = false;
      const counts = p.deviceId && this.deps.keyCounts ? await this.deps.keyCounts(p.userId, p.deviceId) : { device_one_time_keys_count: {}, device_unused_fallback_key_types: [] };
      out.e2ee = { device_lists: deviceLists, ...counts };
    }

    if (ext.accountData) {
      const changes = await this.deps.accountData.changedSince(p.userId, since?.accountData ?? 0, p.now.accountData);
      const global: JsonObject[] = changes.filter((a) => a.roomId === "").map((a) => ({ type: a.type, content: a.content as JsonObject }));
      const pushRules = await this.deps.pushRules.syncEvent(p.userId, since?.accountData, p.now.accountData);
      if (pushRules) global.push(pushRules as unknown as JsonObject);
      const rooms: Record<string, JsonObject[]> = {};
      const inScope = new Set(relevant(ext.accountData));
      // A room sent for the first time gets all its account data; others what changed.
      const fresh = [...initialRooms].filter((r) => inScope.has(r));
      const all = since && fresh.length > 0 ? await this.deps.accountData.changedSince(p.userId, 0, p.now.accountData) : [];
      for (const a of [...changes, ...all.filter((x) => fresh.includes(x.roomId))]) {
        if (a.roomId === "" || !inScope.has(a.roomId)) continue;
        const list = (rooms[a.roomId] ??= []);
        if (!list.some((x) => x.type === a.type)) list.push({ type: a.type, content: a.content as JsonObject });
      }
      out.account_data = { global, rooms: rooms as unknown as JsonObject };
      if (global.length > 0 || Object.keys(rooms).length > 0) empty = false;
    }

    if (ext.receipts) {
      const ids = relevant(ext.receipts);
      const fresh = ids.filter((r) => !since || initialRooms.has(r));
      const live = ids.filter((r) => since && !initialRooms.has(r));
      const rooms: JsonObject = {};
      for (const [roomId, ev] of await this.deps.receipts.eventsFor(live, since?.receipts ?? 0, p.now.receipts, p.userId)) rooms[roomId] = ev as unknown as JsonObject;
      for (const [roomId, ev] of await this.deps.receipts.eventsFor(fresh, 0, p.now.receipts, p.userId)) rooms[roomId] = ev as unknown as JsonObject;
      out.receipts = { rooms };
      if (Object.keys(rooms).length > 0) empty = false;
    }

    if (ext.typing) {
      const rooms: JsonObject = {};
      for (const roomId of relevant(ext.typing)) {
        const ev = this.deps.typing.eventFor(roomId, since && !initialRooms.has(roomId) ? since.typing : undefined);
        // An initial room needs typing only when someone is.
        if (ev && (ev.content.user_ids.length > 0 || (since && !initialRooms.has(roomId)))) rooms[roomId] = ev as unknown as JsonObject;
      }
      out.typing = { rooms };
      if (Object.keys(rooms).length > 0) empty = false;
    }
    return { extensions: out, empty };
  }

  /**
   * E2EE device_lists since the token: `changed` — users whose devices or cross-signing keys changed, and users the
   * user newly shares a room with; `left` — users with whom the user no longer shares any room.
   */
  private async deviceListChanges(p: Pass, since: SyncToken, view: RoomListView): Promise<{ changed: string[]; left: string[] }> {
    const rooms = this.core.storage.rooms;
    const changed = new Set(await this.deps.deviceLists.changedFor(p.userId, since.deviceLists, p.now.deviceLists));
    const candidatesLeft = new Set<string>();
    // Rooms the user joined since the token: all their members are new to the user.
    if (this.deps.userRooms.changedSince(p.userId, since.events)) {
      for (const m of await rooms.membershipChanges(p.userId, since.events, p.now.events)) {
        if (m.membership === "join") {
          const before = await rooms.membershipAt(p.userId, m.room_id, since.events);
          if (before?.membership !== "join") for (const u of await rooms.members(m.room_id, ["join"])) changed.add(u.user_id);
        } else if (m.membership === "leave" || m.membership === "ban") {
          for (const u of await rooms.members(m.room_id, ["join"])) candidatesLeft.add(u.user_id);
        }
      }
    }
    // Others who joined or left the user's rooms: only rooms with events since the token can have any.
    const active = view
      .activeSince(since.events)
      .map((c) => c.roomId)
      .filter((r) => this.deps.roomChanges.membersChangedSince(r, since.events));
    if (active.length > 0) {
      const movers = [...(await rooms.membersChangedSince(active, since.events, p.now.events))].filter((u) => u !== p.userId);
      const sharing = movers.length > 0 ? await rooms.usersSharingRooms(p.userId, movers) : new Set<string>();
      for (const u of movers) {
        if (sharing.has(u)) changed.add(u);
        else candidatesLeft.add(u);
      }
    }
    changed.delete(p.userId);
    candidatesLeft.delete(p.userId);
    const still = candidatesLeft.size > 0 ? await rooms.usersSharingRooms(p.userId, [...candidatesLeft]) : new Set<string>();
    return { changed: [...changed], left: [...candidatesLeft].filter((u) => !still.has(u) && !changed.has(u)) };
  }
}

const MEMBER_PREFIX = stateMapKey(MEMBER, "");

function keyWanted(spec: StateSpec, key: string): boolean {
  const [type, stateKey] = splitStateMapKey(key);
  return stateWanted(spec, type, stateKey);
}

/** The state keys a spec asks for: direct lookups without wildcards, a scan with them. */
function keysWanted(spec: StateSpec, state: StateMap): string[] {
  if (spec.include.some(([t, k]) => t === "*" || k === "*")) return [...state.keys()].filter((key) => keyWanted(spec, key));
  return spec.include.map(([t, k]) => stateMapKey(t, k)).filter((key) => state.has(key) && keyWanted(spec, key));
}

function sameSpec(a: StateSpec, b: StateSpec): boolean {
  return a.lazy === b.lazy && JSON.stringify(a.include) === JSON.stringify(b.include) && JSON.stringify(a.exclude) === JSON.stringify(b.exclude);
}

/** Per-request facts about rooms for the list filters: encryption, room type, space children. */
class RoomFacts {
  private readonly createType = new Map<string, string | null>();
  private readonly encrypted = new Map<string, boolean>();
  private spaceChildren?: Map<string, Set<string>>;
  /** The children of each `spaces` filter asked about (evaluating one reads the user's rooms once). */
  private readonly unions = new Map<string, Set<string>>();
  private tags?: Map<string, Record<string, unknown>>;

  constructor(
    private readonly rooms: RoomAccess,
    private readonly p: Pass,
  ) {}

  async matches(c: Candidate, f: ListFilters): Promise<boolean> {
    if (f.isInvite !== undefined && (c.membership === "invite") !== f.isInvite) return false;
    if (f.isDm !== undefined && this.p.dmRooms.has(c.roomId) !== f.isDm) return false;
    if (f.isEncrypted !== undefined && (await this.isEncrypted(c)) !== f.isEncrypted) return false;
    if (f.roomTypes || f.notRoomTypes) {
      const type = await this.roomType(c);
      if (f.roomTypes && !f.roomTypes.includes(type)) return false;
      if (f.notRoomTypes && f.notRoomTypes.includes(type)) return false;
    }
    if (f.spaces) {
      const children = await this.childrenOf(f.spaces);
      if (!children.has(c.roomId)) return false;
    }
    if (f.roomNameLike !== undefined) {
      const name = (await this.lookup(c, "m.room.name"))?.name;
      if (typeof name !== "string" || !name.toLowerCase().includes(f.roomNameLike)) return false;
    }
    if (f.tags || f.notTags) {
      const tags = Object.keys((await this.tagsOf()).get(c.roomId) ?? {});
      // not_tags wins over tags (MSC4186).
      if (f.notTags && tags.some((t) => f.notTags!.includes(t))) return false;
      if (f.tags && !tags.some((t) => f.tags!.includes(t))) return false;
    }
    return true;
  }

  /** The user's tags per room (m.tag room account data), read once per response. */
  private async tagsOf(): Promise<Map<string, Record<string, unknown>>> {
    if (!this.tags) {
      const out = new Map<string, Record<string, unknown>>();
      for (const [roomId, content] of await this.rooms.core.storage.accountData.roomsOfType(this.p.userId, "m.tag")) if (isJsonObject(content.tags)) out.set(roomId, content.tags);
      this.tags = out;
    }
    return this.tags;
  }

  async stateContent(state: StateMap, type: string): Promise<JsonObject | undefined> {
    const id = state.get(stateMapKey(type, ""));
    return id ? (await this.rooms.core.events.get(id))?.event.content : undefined;
  }

  /** The state a room's filters read: current state when joined or known, the stripped state of an invite otherwise. */
  private async lookup(c: Candidate, type: string): Promise<JsonObject | undefined | null> {
    const head = await this.rooms.headIfKnown(c.roomId);
    if (head && (c.membership === "join" || c.membership === "leave" || c.membership === "ban")) return (await this.stateContent(head.state, type)) ?? null;
    const stripped = (await this.rooms.core.storage.events.strippedState(c.eventId)) ?? [];
    for (const e of stripped) if (isJsonObject(e) && e.type === type && (e.state_key ?? "") === "" && isJsonObject(e.content)) return e.content;
    if (head) return (await this.stateContent(head.state, type)) ?? null;
    return null;
  }

  private async isEncrypted(c: Candidate): Promise<boolean> {
    let v = this.encrypted.get(c.roomId);
    if (v === undefined) this.encrypted.set(c.roomId, (v = (await this.lookup(c, "m.room.encryption")) != null));
    return v;
  }

  private async roomType(c: Candidate): Promise<string | null> {
    let v = this.createType.get(c.roomId);
    if (v === undefined) {
      const content = await this.lookup(c, "m.room.create");
      v = typeof content?.type === "string" ? content.type : null;
      this.createType.set(c.roomId, v);
    }
    return v;
  }

  /** The rooms named by m.space.child events (with a `via`) of the spaces the user is joined to. */
  private async childrenOf(spaces: string[]): Promise<Set<string>> {
    const key = JSON.stringify(spaces);
    const hit = this.unions.get(key);
    if (hit) return hit;
    if (!this.spaceChildren) this.spaceChildren = new Map();
    const all = new Set<string>();
    const joined = new Set(await this.rooms.core.userRooms.roomIds(this.p.userId, ["join"]));
    for (const space of spaces) {
      let children = this.spaceChildren.get(space);
      if (!children) {
        children = new Set();
        const head = joined.has(space) ? await this.rooms.headIfKnown(space) : undefined;
        const prefix = stateMapKey("m.space.child", "");
        const ids = [...(head?.state ?? new Map<string, string>())].filter(([k]) => k.startsWith(prefix)).map(([, id]) => id);
        for (const e of (await this.rooms.core.events.getMany(ids)).values()) {
          const via = e.event.content.via;
          if (Array.isArray(via) && via.length > 0 && e.event.state_key) children.add(e.event.state_key);
        }
        this.spaceChildren.set(space, children);
      }
      for (const r of children) all.add(r);
    }
    this.unions.set(key, all);
    return all;
  }
}

