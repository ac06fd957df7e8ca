/**
 * Server-side search (spec "Server Side Search", POST /search, category `room_events`): full-text matches from the
 * index (storage/search.ts), in the rooms the user is or was in, kept only where the user may read the event (the
 * same history-visibility rules as /messages), then shaped: ranks, highlights, context, profiles, room state and
 * groups. Pagination is a keyset over the ordering (rank then stream ordering, or stream ordering alone), so pages
 * never repeat or skip a result while the index is unchanged.
 *
 * `rank` orders by relevance within windows of the newest RANK_WINDOW matches: the first pages rank the newest
 * 1,000, the next ones the 1,000 before them, and so on. A word found in a million messages thus costs a window's
 * worth of work per page rather than scoring a million rows, and for fewer matches than a window the order is
 * simply by relevance. `count` is exact up to COUNT_EXACT matches and estimated beyond (the spec's count is
 * "approximate").
 */
import { stateMapKey } from "../core/events/event.js";
import { matchesEventFilter, type RoomEventFilter } from "../core/filters/index.js";
import type { JsonObject } from "../core/json/types.js";
import { MatrixError } from "../errors.js";
import type { RoomScope, SearchQuery, SearchRow, SearchStore } from "../storage/search.js";
import type { Storage } from "../storage/storage.js";
import type { EventCache, StoredEvent } from "./rooms/event_cache.js";
import type { ClientEvent, EventFormatter } from "./rooms/format.js";
import type { MessageService, Requester } from "./rooms/messages.js";
import type { StateService } from "./rooms/state.js";
import { before, formatTopo } from "./rooms/tokens.js";
import type { VisibilityService } from "./rooms/visibility.js";
import { SEARCH_KEYS, type SearchKey } from "./search_index.js";

export type SearchOrder = "rank" | "recent";
export type GroupKey = "room_id" | "sender";

/** The validated `search_categories.room_events` of a request. */
export interface RoomEventsCriteria {
  searchTerm: string;
  keys: SearchKey[];
  filter: RoomEventFilter;
  orderBy: SearchOrder;
  eventContext?: { beforeLimit: number; afterLimit: number; includeProfile: boolean };
  includeState: boolean;
  groupBy: GroupKey[];
}

/** Results per page when the filter sets no `limit` (Synapse's default), and the most a client may ask for. */
export const DEFAULT_SEARCH_LIMIT = 10;
export const MAX_SEARCH_LIMIT = 100;
/** Index rows examined per request at most: a page emptied by visibility ends early with a `next_batch`. */
const MAX_SCANNED = 2000;
/** Matches ranked together by `rank`, newest first (see above). */
const RANK_WINDOW = 1000;
/**
 * Matches counted one by one before `count` is estimated: the same as a window, so a `rank` request reads its
 * newest matches once. Reading them costs a row lookup each where a word is spread over a large history.
 */
const COUNT_EXACT = RANK_WINDOW;
/** At most this many words of a search term count. */
const MAX_WORDS = 32;
const MAX_WORD_LENGTH = 64;

/**
 * The words of a search term, as both engines' tokenizers see words: runs of letters, digits and marks. Anything
 * else (quotes, `*`, `-`, `:`, parentheses) separates words, so no input is ever query syntax.
 */
export function searchWords(term: string): string[] {
  // Capped in length: a prefix of a very long word still finds it, and no engine sees an oversized term.
  const words = (term.toLowerCase().match(/[\p{L}\p{N}\p{M}]+/gu) ?? []).map((w) => Array.from(w).slice(0, MAX_WORD_LENGTH).join(""));
  return [...new Set(words)].slice(0, MAX_WORDS);
}

/** Where a page starts: after this result in the ordering. */
interface SearchCursor {
  stream: number;
  /** `rank` only: the result's rank, and its window's (exclusive) upper bound, a stream ordering. */
  rank?: number;
  window?: number;
}

interface SearchHit extends SearchRow {
  rank: number;
  /** `rank` only: the upper bound of the window the hit was ranked in. */
  window?: number;
}

/** The opaque `next_batch`: where the next page starts, and the group it is scoped to (a group's own token). */
interface BatchToken {
  order: SearchOrder;
  cursor: SearchCursor;
  group?: { key: GroupKey; value: string };
}

function encodeBatch(t: BatchToken): string {
  const j: JsonObject = { o: t.order, s: t.cursor.stream };
  if (t.cursor.rank !== undefined) j.r = t.cursor.rank;
  if (t.cursor.window !== undefined) j.w = t.cursor.window;
  if (t.group) j.g = [t.group.key, t.group.value];
  return Buffer.from(JSON.stringify(j)).toString("base64url");
}

const invalidBatch = () => new MatrixError(400, "M_UNKNOWN", "Invalid batch");

function decodeBatch(raw: string, order: SearchOrder): BatchToken {
  let j: unknown;
  try {
    j = JSON.parse(Buffer.from(raw, "base64url").toString("utf8"));
  } catch {
    throw invalidBatch();
  }
  if (typeof j !== "object" || j === null || Array.isArray(j)) throw invalidBatch();
  const { o, s, r, w, g } = j as Record<string, unknown>;
  // A token of the other ordering would start the page at a meaningless place.
  if (o !== order || !Number.isSafeInteger(s)) throw invalidBatch();
  if (order === "rank" && (typeof r !== "number" || !Number.isFinite(r) || !Number.isSafeInteger(w))) throw invalidBatch();
  const token: BatchToken = { order, cursor: { stream: s as number, ...(order === "rank" ? { rank: r as number, window: w as number } : {}) } };
  if (g !== undefined) {
    if (!Array.isArray(g) || g.length !== 2 || (g[0] !== "room_id" && g[0] !== "sender") || typeof g[1] !== "string") throw invalidBatch();
    token.group = { key: g[0], value: g[1] };
  }
  return token;
}

interface Found {
  hit: SearchHit;
  event: StoredEvent;
}

export interface SearchDeps {
  storage: Storage;
  events: EventCache;
  state: StateService;
  visibility: VisibilityService;
  formatter: EventFormatter;
  messages: MessageService;
  /** Synapse's `enable_search`. */
  enabled: boolean;
}

export class SearchService {
  constructor(private readonly d: SearchDeps) {}

  /** POST /search for `room_events`: the response's `search_categories.room_events`. */
  async roomEvents(r: Requester, c: RoomEventsCriteria, nextBatch: string | undefined): Promise<JsonObject> {
    if (!this.d.enabled) throw new MatrixError(400, "M_UNKNOWN", "Search is disabled on this homeserver");
    const batch = nextBatch !== undefined ? decodeBatch(nextBatch, c.orderBy) : undefined;
    const limit = Math.max(1, Math.min(c.filter.limit ?? DEFAULT_SEARCH_LIMIT, MAX_SEARCH_LIMIT));
    const words = searchWords(c.searchTerm);
    const query = await this.query(r.userId, c, words, batch?.group);
    const ranked = c.orderBy === "rank" ? new RankedMatches(this.d.storage.search, query) : undefined;
    const { found, more } = await this.page(r.userId, c, query, ranked, batch?.cursor, limit);
    const count = await this.count(query, ranked?.newestRead());

    const fmt = { userId: r.userId, deviceId: r.deviceId };
    const formatted = await this.d.formatter.format(found.map((f) => f.event), fmt);
    const results: JsonObject[] = [];
    for (let i = 0; i < found.length; i++) {
      const result: JsonObject = { rank: found[i]!.hit.rank, result: legacyFormat(formatted[i]!) };
      if (c.eventContext) result.context = await this.context(r, found[i]!.event, c.eventContext);
      results.push(result);
    }
    const last = found[found.length - 1];
    const cursorOf = (f: Found): SearchCursor => cursorAt(c.orderBy, f.hit);
    const out: JsonObject = { count, results, highlights: highlights(words, found.map((f) => f.hit.value)) };
    if (more && last) out.next_batch = encodeBatch({ order: c.orderBy, cursor: more === true ? cursorOf(last) : more, group: batch?.group });
    if (c.includeState) {
      const state: JsonObject = {};
      for (const roomId of new Set(found.map((f) => f.hit.room_id))) {
        // The state the user may read (as of their leave, if they left); none for a room they were banned from.
        try {
          state[roomId] = await this.d.messages.stateEvents(roomId, r);
        } catch (e) {
          if (!(e instanceof MatrixError)) throw e;
        }
      }
      out.state = state;
    }
    if (c.groupBy.length > 0) {
      const groups: JsonObject = {};
      for (const key of c.groupBy) {
        const byValue = new Map<string, Found[]>();
        for (const f of found) {
          const v = key === "room_id" ? f.hit.room_id : f.hit.sender;
          byValue.set(v, [...(byValue.get(v) ?? []), f]);
        }
        const entries: JsonObject = {};
        let order = 0;
        for (const [value, list] of byValue) {
          const g: JsonObject = { results: list.map((f) => f.hit.event_id), order: ++order };
          // More may follow in this group exactly when more may follow at all; its token continues within it.
          if (out.next_batch !== undefined) g.next_batch = encodeBatch({ order: c.orderBy, cursor: cursorOf(list[list.length - 1]!), group: { key, value } });
          entries[value] = g;
        }
        groups[key] = entries;
      }
      out.groups = groups;
    }
    return out;
  }

  /** The index query: the user's rooms (each up to their leave), narrowed by the filter and a group's token. */
  private async query(userId: string, c: RoomEventsCriteria, words: string[], group: BatchToken["group"]): Promise<SearchQuery> {
    const f = c.filter;
    const memberships = await this.d.storage.rooms.roomsForUser(userId, ["join", "leave", "ban"]);
    const forgotten = await this.d.storage.rooms.forgottenRooms(userId);
    const ended = await this.d.events.getMany(memberships.filter((m) => m.membership !== "join").map((m) => m.event_id));
    const rooms: RoomScope[] = [];
    for (const m of memberships) {
      if (forgotten.has(m.room_id)) continue;
      if (f.rooms && !f.rooms.includes(m.room_id)) continue;
      if (f.not_rooms?.includes(m.room_id)) continue;
      if (group?.key === "room_id" && group.value !== m.room_id) continue;
      if (m.membership === "join") rooms.push({ roomId: m.room_id });
      else {
        // Nothing after the user left (or was banned) is theirs to find.
        const end = ended.get(m.event_id);
        if (end) rooms.push({ roomId: m.room_id, upTo: end.streamOrdering });
      }
    }
    const q: SearchQuery = { words, rooms, keys: c.keys };
    // Only three types are indexed: the filter's types (with their globs) narrow them to a list.
    if (f.types !== undefined || f.not_types !== undefined) q.types = Object.values(SEARCH_KEYS).filter((type) => matchesEventFilter({ types: f.types, not_types: f.not_types }, { type }));
    if (f.senders !== undefined) q.senders = f.senders;
    if (f.not_senders !== undefined) q.notSenders = f.not_senders;
    if (group?.key === "sender") q.senders = (q.senders ?? [group.value]).filter((s) => s === group.value);
    return q;
  }

  /**
   * The response's `count`: every match in the user's rooms (before visibility) when there are at most COUNT_EXACT,
   * else an estimate from how densely the newest COUNT_EXACT fall over the stream, extended to the oldest match.
   */
  private async count(q: SearchQuery, read: SearchRow[] | undefined): Promise<number> {
    const newest = read ?? (await this.d.storage.search.newest(q, undefined, COUNT_EXACT + 1));
    if (newest.length <= COUNT_EXACT) return newest.length;
    return estimateCount(newest.slice(0, COUNT_EXACT).map((r) => r.stream_ordering), (await this.d.storage.search.oldest(q)) ?? 0);
  }

  /**
   * Fills a page: index rows in order, in batches, kept when the event is served to this user (not redacted, the
   * rest of the filter, history visibility). `more`: true when the page is full (continue after its last result),
   * or the cursor of the last row examined when the scan budget ran out first.
   */
  private async page(userId: string, c: RoomEventsCriteria, q: SearchQuery, source: RankedMatches | undefined, after: SearchCursor | undefined, limit: number): Promise<{ found: Found[]; more: true | SearchCursor | false }> {
    const found: Found[] = [];
    const size = Math.max(limit * 2, 20);
    let cursor = after;
    let scanned = 0;
    for (;;) {
      const { hits, end } = source ? await source.after(cursor, size) : await this.recent(q, cursor, size);
      scanned += hits.length;
      const loaded = await this.d.events.getMany(hits.map((h) => h.event_id));
      const candidates = hits.flatMap((hit) => {
        const event = loaded.get(hit.event_id);
        return event && event.redactedBy === null && matchesEventFilter(c.filter, event.event) ? [event] : [];
      });
      const visible = new Set((await this.d.visibility.filter(userId, candidates)).map((e) => e.event.event_id));
      for (const hit of hits) {
        if (!visible.has(hit.event_id)) continue;
        found.push({ hit, event: loaded.get(hit.event_id)! });
        if (found.length === limit) return { found, more: true };
      }
      if (end || hits.length === 0) return { found, more: false };
      cursor = cursorAt(c.orderBy, hits[hits.length - 1]!);
      if (scanned >= MAX_SCANNED) return { found, more: cursor };
    }
  }

  /** `recent`: the next matches, newest first. */
  private async recent(q: SearchQuery, after: SearchCursor | undefined, size: number): Promise<{ hits: SearchHit[]; end: boolean }> {
    const rows = await this.d.storage.search.newest(q, after?.stream, size);
    return { hits: rows.map((row) => ({ ...row, rank: relevance(q.words, row.value) })), end: rows.length < size };
  }

  /** A result's `context`: the events around it the user may see, and (include_profile) its senders' profiles. */
  private async context(r: Requester, target: StoredEvent, opts: NonNullable<RoomEventsCriteria["eventContext"]>): Promise<JsonObject> {
    const roomId = target.event.room_id;
    const pos = { depth: target.depth, stream: target.streamOrdering };
    const visible = async (rows: Awaited<ReturnType<Storage["events"]["paginate"]>>) => this.d.visibility.filter(r.userId, await this.d.events.fromRows(rows));
    const beforeRows = opts.beforeLimit > 0 ? await this.d.storage.events.paginate(roomId, before(pos), "b", opts.beforeLimit) : [];
    const afterRows = opts.afterLimit > 0 ? await this.d.storage.events.paginate(roomId, pos, "f", opts.afterLimit) : [];
    const eventsBefore = await visible(beforeRows);
    const eventsAfter = await visible(afterRows);
    const firstBefore = beforeRows[beforeRows.length - 1];
    const lastAfter = afterRows[afterRows.length - 1];
    const fmt = { userId: r.userId, deviceId: r.deviceId };
    const ctx: JsonObject = {
      events_before: (await this.d.formatter.format(eventsBefore, fmt)).map(legacyFormat),
      events_after: (await this.d.formatter.format(eventsAfter, fmt)).map(legacyFormat),
      start: formatTopo(firstBefore ? before({ depth: firstBefore.depth, stream: firstBefore.stream_ordering }) : before(pos)),
      end: formatTopo(lastAfter ? { depth: lastAfter.depth, stream: lastAfter.stream_ordering } : pos),
    };
    if (opts.includeProfile) {
      // As Synapse: the senders' member events in the state at the last event returned (their profile then).
      const last = eventsAfter[eventsAfter.length - 1] ?? target;
      const state = last.stateGroup !== null ? await this.d.state.stateOf(last.stateGroup) : new Map<string, string>();
      const senders = new Set([...eventsBefore, target, ...eventsAfter].map((e) => e.event.sender));
      const ids = [...senders].flatMap((s) => state.get(stateMapKey("m.room.member", s)) ?? []);
      const profiles: JsonObject = {};
      for (const m of (await this.d.events.getMany(ids)).values()) {
        const { displayname, avatar_url } = m.event.content;
        profiles[m.event.state_key!] = { displayname: typeof displayname === "string" ? displayname : null, avatar_url: typeof avatar_url === "string" ? avatar_url : null };
      }
      ctx.profile_info = profiles;
    }
    return ctx;
  }
}

function cursorAt(order: SearchOrder, hit: SearchHit): SearchCursor {
  return order === "rank" ? { stream: hit.stream_ordering, rank: hit.rank, window: hit.window } : { stream: hit.stream_ordering };
}

/**
 * `rank`: the matches of one request in relevance order, a window at a time. A window is the RANK_WINDOW newest
 * matches below its upper bound; the first one's bound is pinned just above its newest match, so events sent while
 * the user pages through do not shift it. Windows are read once per request.
 */
export class RankedMatches {
  private readonly windows = new Map<number | undefined, { rows: SearchRow[]; ranked: SearchHit[]; below?: number }>();

  constructor(
    private readonly index: Pick<SearchStore, "newest">,
    private readonly q: SearchQuery,
    private readonly size = RANK_WINDOW,
  ) {}

  /** The newest matches (window size + 1), when this request read them. */
  newestRead(): SearchRow[] | undefined {
    return this.windows.get(undefined)?.rows;
  }

  /** Up to `size` hits after the cursor; `end` when nothing follows them. */
  async after(cursor: SearchCursor | undefined, size: number): Promise<{ hits: SearchHit[]; end: boolean }> {
    let top = cursor?.window;
    let from = cursor;
    for (;;) {
      const w = await this.window(top);
      const start = from?.rank === undefined ? 0 : firstAfter(w.ranked, from.rank, from.stream);
      const rest = w.ranked.slice(start, start + size);
      if (rest.length > 0 || w.below === undefined) return { hits: rest, end: w.below === undefined && start + size >= w.ranked.length };
      top = w.below;
      from = undefined;
    }
  }

  private async window(top: number | undefined) {
    const known = this.windows.get(top);
    if (known) return known;
    const rows = await this.index.newest(this.q, top, this.size + 1);
    const inWindow = rows.slice(0, this.size);
    const bound = top ?? (inWindow[0]?.stream_ordering ?? 0) + 1;
    const ranked = inWindow.map((row) => ({ ...row, rank: relevance(this.q.words, row.value), window: bound }));
    ranked.sort((a, b) => b.rank - a.rank || b.stream_ordering - a.stream_ordering);
    const w = { rows, ranked, ...(rows.length > this.size ? { below: inWindow[inWindow.length - 1]!.stream_ordering } : {}) };
    this.windows.set(top, w);
    return w;
  }
}

/**
 * The number of matches, from the stream orderings of the newest ones (newest first) and of the oldest: as many as
 * fall that densely over the whole span.
 */
export function estimateCount(newest: readonly number[], oldest: number): number {
  const top = newest[0]!;
  const span = top - newest[newest.length - 1]! + 1;
  return Math.max(newest.length + 1, Math.round((newest.length * (top - Math.min(oldest, top) + 1)) / span));
}

/** The index of the first hit strictly after (rank, stream) in (rank desc, stream desc) order. */
function firstAfter(ranked: readonly SearchHit[], rank: number, stream: number): number {
  let lo = 0;
  let hi = ranked.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    const h = ranked[mid]!;
    if (h.rank > rank || (h.rank === rank && h.stream_ordering >= stream)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * A result's `rank`: BM25's term-frequency part (k1 = 1.2, b = 0.75) over the matched text, the same on both
 * engines. Every match holds every query word, so BM25's inverse document frequency would only scale the sum. A
 * word counts where a token starts with it (the prefix search); a match the stemmer found counts at least once.
 */
export function relevance(words: readonly string[], value: string): number {
  const tokens = (value.toLowerCase().match(/[\p{L}\p{N}\p{M}]+/gu) ?? []);
  const norm = 1.2 * (0.25 + (0.75 * tokens.length) / TYPICAL_TOKENS);
  let score = 0;
  for (const w of words) {
    let tf = 0;
    for (const t of tokens) if (t.startsWith(w)) tf++;
    tf = Math.max(tf, 1);
    score += (tf * 2.2) / (tf + norm);
  }
  return score;
}

/** BM25's average document length, fixed: a typical chat message. */
const TYPICAL_TOKENS = 12;

/** As Synapse's search results: client events with the legacy `user_id` (the sender) too. */
function legacyFormat(e: ClientEvent): ClientEvent {
  return typeof e.sender === "string" ? { ...e, user_id: e.sender } : e;
}

/**
 * The response's `highlights`, as Synapse gives them: the query's words and the words of the matched text they
 * match (a word counts when it starts with a query word, as the prefix search found it).
 */
export function highlights(words: readonly string[], values: readonly string[]): string[] {
  const out = new Set(words);
  for (const v of values) {
    for (const token of v.match(/[\p{L}\p{N}\p{M}]+/gu) ?? []) {
      const lower = token.toLowerCase();
      if (words.some((w) => lower.startsWith(w))) out.add(token);
    }
  }
  return [...out];
}
