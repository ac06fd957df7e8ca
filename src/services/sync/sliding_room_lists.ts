/**
 * Sliding Sync's room list per user, newest activity first, kept between passes (shared by the user's connections)
 * so that an incremental pass costs what changed, not the number of rooms the user is in. Only a cache: built from
 * UserRooms and the persister's streams on a miss (or after a restart) and rebuilt whenever the user's memberships
 * change; between rebuilds, rooms with new events are moved in place, read from a log of recently active rooms.
 *
 * Memory: ENTRY_BYTES * 3 per room (the candidate, its map slot and array slot; ids are shared with UserRooms),
 * ENTRY_BYTES per room for the notifier's registration of the rooms a long-poll waits on, and ENTRY_BYTES per room
 * for each filter set the user's lists use (at most MAX_FILTERS): about 1.3 MB for a user in 5,000 rooms with one
 * filtered list. The cache is `sliding_room_lists` (util/cache.ts), LRU by those bytes.
 */
import type { RoomAccess } from "../rooms/rooms.js";
import type { StoredEvent } from "../rooms/event_cache.js";
import type { EventConsumer } from "../rooms/pipeline/consumers.js";
import type { UserRooms } from "../rooms/user_rooms.js";
import { CacheRegistry, ENTRY_BYTES, STRING_BYTES, type Cache } from "../../util/cache.js";
import { RoomGroup } from "../notifier.js";
import type { BumpStamps } from "./bump_stamps.js";
import type { ListFilters } from "./sliding_request.js";

/** A room the user may see in the room list, with its membership. */
export interface Candidate {
  roomId: string;
  membership: string;
  eventId: string;
  /** Stream ordering of the membership event (0 when unknown). */
  memberStream: number;
  /**
   * The list's order: the room's newest event (any type: MSC4186 "Activity ordering", as Synapse sorts), or for a
   * room the user is not joined to, the membership's position.
   */
  activity: number;
  /** `bump_stamp`: the newest event of the bump types (joined), the membership's position otherwise. */
  bump: number;
  /** Left without ever having joined (a rejected or withdrawn invite or knock). */
  neverJoined?: boolean;
}

/** What a list's filters depend on besides the rooms' own state: a change of either re-evaluates every room. */
export interface FilterInputs {
  /** The user's m.direct rooms (the same object while unchanged). */
  dmRooms: ReadonlySet<string>;
  /** Moves when the user's m.tag account data changes. */
  tagsVersion: number;
}

export type FilterMatcher = (c: Candidate, f: ListFilters) => Promise<boolean>;

/** Which listed rooms match one set of filters. */
interface FilterSet {
  filters: ListFilters;
  matches: Map<string, boolean>;
  count: number;
  inputs: FilterInputs;
}

interface UserList {
  /** The UserRooms entry it was built from: another object means the user's memberships (or forgets) changed. */
  memberships: object;
  ignored: ReadonlySet<string>;
  /** Listed rooms, newest activity first (rooms the user left themselves are in `selfLeft`). */
  order: Candidate[];
  byId: Map<string, Candidate>;
  /** Rooms the user left themselves, newest leave first: listed only when left after the connection's token. */
  selfLeft: Candidate[];
  /** Rooms joined, invited or knocked: what a long-poll waits on (registered with the notifier while in use). */
  waitRooms: RoomGroup;
  /** The activity log position applied. */
  seq: number;
  filters: Map<string, FilterSet>;
  /** Updates run one at a time per user (passes of several connections may overlap). */
  busy: Promise<void>;
}

/** Filter sets kept per user; a list with another one drops the least recently built. */
const MAX_FILTERS = 8;
/** Recently active rooms remembered; a user list older than that is rebuilt. */
const LOG_MAX = 50_000;

/** The rooms of committed events, in commit order, numbered. */
class ActivityLog {
  private rooms: string[] = [];
  /** The number of the first entry held. */
  private base = 0;

  get seq(): number {
    return this.base + this.rooms.length;
  }

  push(roomId: string): void {
    this.rooms.push(roomId);
    if (this.rooms.length > LOG_MAX * 2) {
      this.rooms = this.rooms.slice(LOG_MAX);
      this.base += LOG_MAX;
    }
  }

  /** Rooms active after entry `seq`; undefined when the log no longer reaches back that far. */
  since(seq: number): Set<string> | undefined {
    if (seq < this.base) return undefined;
    return new Set(this.rooms.slice(seq - this.base));
  }
}

/** Newest activity first, then room id: the list's total order. */
function before(a: Candidate, b: Candidate): boolean {
  return a.activity > b.activity || (a.activity === b.activity && a.roomId < b.roomId);
}

/** The index where `c` belongs in `order` (binary search by the list's order). */
function slot(order: Candidate[], c: Candidate): number {
  let lo = 0;
  let hi = order.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (before(order[mid]!, c)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function hasFilters(f: ListFilters): boolean {
  return Object.values(f).some((v) => v !== undefined);
}

function listBytes(e: UserList, userId: string): number {
  let filterEntries = 0;
  for (const f of e.filters.values()) filterEntries += f.matches.size;
  return STRING_BYTES(userId) + 4 * ENTRY_BYTES + (e.order.length + e.selfLeft.length) * 3 * ENTRY_BYTES + e.waitRooms.rooms.length * ENTRY_BYTES + filterEntries * ENTRY_BYTES;
}

export interface RoomListPass {
  userId: string;
  ignored: ReadonlySet<string>;
  /** The connection's events position; undefined for an initial pass. */
  since: number | undefined;
  inputs: FilterInputs;
  match: FilterMatcher;
}

/** One pass's view of the user's room list. */
export class RoomListView {
  constructor(
    private readonly list: UserList,
    /** Self-left rooms shown to this connection (left after its token), newest leave first. */
    private readonly recentLeft: Candidate[],
    private readonly recentLeftById: Map<string, Candidate>,
  ) {}

  get(roomId: string): Candidate | undefined {
    return this.list.byId.get(roomId) ?? this.recentLeftById.get(roomId);
  }

  get waitRooms(): RoomGroup {
    return this.list.waitRooms;
  }

  /** Joined rooms with events after `stream`: the head of the list (a joined room's activity is its newest event). */
  activeSince(stream: number): Candidate[] {
    const out: Candidate[] = [];
    for (const c of this.list.order) {
      if (c.activity <= stream) break;
      if (c.membership === "join") out.push(c);
    }
    return out;
  }

  /**
   * A list's count and the rooms in its ranges (undefined: all). Walks the list from the top only as far as the
   * last range asks; the recently self-left rooms merge in by activity.
   */
  async window(filters: ListFilters, ranges: [number, number][] | undefined, match: FilterMatcher): Promise<{ count: number; rooms: string[] }> {
    const set = hasFilters(filters) ? this.list.filters.get(JSON.stringify(filters)) : undefined;
    const ok = (c: Candidate) => !set || set.matches.get(c.roomId) === true;
    const left: Candidate[] = [];
    for (const c of this.recentLeft) if (!set || (await match(c, filters))) left.push(c);
    const count = (set ? set.count : this.list.order.length) + left.length;
    const want = ranges ?? [[0, Number.MAX_SAFE_INTEGER]];
    const end = Math.min(count - 1, Math.max(-1, ...want.map(([, b]) => b)));
    const inRange = (i: number) => want.some(([a, b]) => i >= a && i <= b);
    const rooms: string[] = [];
    let i = 0;
    let li = 0;
    const order = this.list.order;
    for (let oi = 0; i <= end && (oi < order.length || li < left.length); ) {
      let c: Candidate;
      if (li < left.length && (oi >= order.length || before(left[li]!, order[oi]!))) c = left[li++]!;
      else {
        c = order[oi++]!;
        if (!ok(c)) continue;
      }
      if (inRange(i)) rooms.push(c.roomId);
      i++;
    }
    return { count, rooms };
  }
}

export class SlidingRoomLists implements EventConsumer {
  readonly name = "sliding-room-lists";
  private readonly cache: Cache<string, UserList>;
  private readonly log = new ActivityLog();

  constructor(
    private readonly rooms: RoomAccess,
    private readonly userRooms: UserRooms,
    private readonly bumpStamps: BumpStamps,
    caches = new CacheRegistry(),
  ) {
    this.cache = caches.create("sliding_room_lists", listBytes);
  }

  private get core() {
    return this.rooms.core;
  }

  committed(e: StoredEvent): void {
    if (!e.outlier) this.log.push(e.event.room_id);
  }

  /**
   * The user's room list for a pass, brought up to date, with the filter sets of `lists` ready. Rooms joined,
   * invited, knocked or banned from, left when someone else removed them (a kick), and rooms the user left
   * themselves after the connection's token (shown once).
   */
  async view(p: RoomListPass, lists: readonly ListFilters[]): Promise<RoomListView> {
    const memberships = await this.userRooms.of(p.userId);
    let list = this.cache.get(p.userId);
    if (!list || list.memberships !== memberships || list.ignored !== p.ignored) {
      list = await this.build(p, memberships);
      this.cache.set(p.userId, list);
    }
    const l = list;
    const run = l.busy.then(() => this.update(l, p, lists));
    l.busy = run.catch(() => undefined);
    await run;
    const recentLeft = p.since === undefined ? [] : l.selfLeft.filter((c) => c.memberStream > p.since!);
    return new RoomListView(l, recentLeft, new Map(recentLeft.map((c) => [c.roomId, c])));
  }

  /** Moves the rooms active since the list's last update and brings the filter sets the pass needs up to date. */
  private async update(l: UserList, p: RoomListPass, lists: readonly ListFilters[]): Promise<void> {
    const seq = this.log.seq;
    const active = this.log.since(l.seq);
    if (active === undefined) {
      // Too long ago for the log: every joined room may have moved.
      await this.reposition(l, l.order.filter((c) => c.membership === "join"));
      for (const f of l.filters.values()) await this.evaluate(f, l.order, p.match);
    } else if (active.size > 0) {
      const touched: Candidate[] = [];
      for (const roomId of active) {
        const c = l.byId.get(roomId);
        if (c) touched.push(c);
      }
      await this.reposition(l, touched.filter((c) => c.membership === "join"));
      for (const f of l.filters.values()) {
        // A space's children are its state: a new event in a space re-reads the filter.
        if (f.filters.spaces?.some((s) => active.has(s))) await this.evaluate(f, l.order, p.match);
        else await this.evaluate(f, touched, p.match);
      }
    }
    l.seq = seq;
    let grown = false;
    for (const filters of lists) {
      if (!hasFilters(filters)) continue;
      const key = JSON.stringify(filters);
      let f = l.filters.get(key);
      if (f && (f.inputs.dmRooms !== p.inputs.dmRooms || f.inputs.tagsVersion !== p.inputs.tagsVersion)) {
        f.inputs = p.inputs;
        f.matches.clear();
        f.count = 0;
        await this.evaluate(f, l.order, p.match);
      }
      if (!f) {
        if (l.filters.size >= MAX_FILTERS) l.filters.delete(l.filters.keys().next().value!);
        f = { filters, matches: new Map(), count: 0, inputs: p.inputs };
        await this.evaluate(f, l.order, p.match);
        l.filters.set(key, f);
        grown = true;
      }
    }
    // The cache weighs an entry when it is set: again after it grew.
    if (grown && this.cache.peek(p.userId) === l) this.cache.set(p.userId, l);
  }

  /** Re-reads which of these rooms match. */
  private async evaluate(f: FilterSet, rooms: readonly Candidate[], match: FilterMatcher): Promise<void> {
    for (const c of rooms) {
      const now = await match(c, f.filters);
      const was = f.matches.get(c.roomId) === true;
      f.matches.set(c.roomId, now);
      f.count += Number(now) - Number(was);
    }
  }

  /** Reads the newest event and bump stamp of these joined rooms, and moves each to its new place. */
  private async reposition(l: UserList, moved: Candidate[]): Promise<void> {
    if (moved.length === 0) return;
    const ids = moved.map((c) => c.roomId);
    const [stamps, latest] = await Promise.all([this.bumpStamps.of(ids), this.core.persister.latestStreams(ids)]);
    for (const c of moved) {
      const activity = latest.get(c.roomId) ?? 0;
      const i = slot(l.order, c);
      if (l.order[i] === c) l.order.splice(i, 1);
      c.activity = activity;
      c.bump = stamps.get(c.roomId) ?? activity;
      l.order.splice(slot(l.order, c), 0, c);
    }
  }

  /** The whole list, from the user's memberships and the rooms' newest events. */
  private async build(p: RoomListPass, memberships: Awaited<ReturnType<UserRooms["of"]>>): Promise<UserList> {
    const seq = this.log.seq;
    const { rooms, forgotten } = memberships;
    const notJoined = rooms.filter((r) => r.membership !== "join" && !forgotten.has(r.room_id));
    const memberEvents = await this.core.events.getMany(notJoined.map((r) => r.event_id));
    const all: Candidate[] = [];
    const selfLeft: Candidate[] = [];
    const waitRooms: string[] = [];
    for (const r of rooms) {
      if (r.membership === "join" || r.membership === "invite" || r.membership === "knock") waitRooms.push(r.room_id);
      if (forgotten.has(r.room_id)) continue;
      if (r.membership === "join") {
        all.push({ roomId: r.room_id, membership: "join", eventId: r.event_id, memberStream: 0, activity: 0, bump: 0 });
        continue;
      }
      const ev = memberEvents.get(r.event_id);
      if (!ev) continue;
      if (r.membership === "invite" && p.ignored.has(ev.event.sender)) continue;
      const c: Candidate = { roomId: r.room_id, membership: r.membership, eventId: r.event_id, memberStream: ev.streamOrdering, activity: ev.streamOrdering, bump: ev.streamOrdering };
      if (r.membership === "leave" && ev.event.sender === p.userId) selfLeft.push(c);
      else all.push(c);
    }
    // A user who was never joined sees nothing of a room but their membership (MSC4186: nor a ban from it).
    const gone = [...all, ...selfLeft].filter((c) => c.membership === "leave" || c.membership === "ban");
    if (gone.length > 0) {
      const everJoined = await this.core.storage.rooms.everJoinedOf(p.userId, gone.map((c) => c.roomId));
      for (const c of gone) if (!everJoined.has(c.roomId)) c.neverJoined = true;
    }
    const joined = all.filter((c) => c.membership === "join").map((c) => c.roomId);
    const [stamps, latest] = await Promise.all([this.bumpStamps.of(joined), this.core.persister.latestStreams(joined)]);
    for (const c of all) {
      if (c.membership !== "join") continue;
      c.activity = latest.get(c.roomId) ?? 0;
      // A joined room without a bump event (its create event not held as timeline): its newest event instead.
      c.bump = stamps.get(c.roomId) ?? c.activity;
    }
    const order = all.filter((c) => !(c.neverJoined && c.membership === "ban"));
    order.sort((a, b) => (before(a, b) ? -1 : before(b, a) ? 1 : 0));
    selfLeft.sort((a, b) => b.memberStream - a.memberStream);
    // Events committed while reading are in the log after `seq`: the first update moves their rooms.
    return { memberships, ignored: p.ignored, order, byId: new Map(order.map((c) => [c.roomId, c])), selfLeft, waitRooms: new RoomGroup(waitRooms), seq, filters: new Map(), busy: Promise.resolve() };
  }
}
