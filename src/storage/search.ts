/**
 * The full-text search index (migration 013): rows written with their events, and the ranked or recent-first
 * queries POST /search pages through. The rows, filters and keyset pagination are one code path; only the text
 * match and its rank are engine-specific (SQLite FTS5 with bm25, PostgreSQL tsvector with ts_rank_cd). Search
 * terms never reach either engine as query syntax: each word is quoted (FTS5) or reduced to letters and digits
 * (tsquery) before it becomes a prefix term.
 */
import { PostgresAdapter, sql, type CompiledQuery, type Kysely, type RawBuilder } from "kysely";
import type { Schema } from "./schema.js";
import type { StagedRowKind } from "./staged_rows.js";

export interface EventSearchTable {
  stream_ordering: number;
  event_id: string;
  room_id: string;
  sender: string;
  type: string;
  /** `content.body`, `content.name` or `content.topic`. */
  key: string;
  origin_server_ts: number;
  value: string;
}

export type SearchIndexChange = { insert: EventSearchTable } | { remove: string };

type SearchSchema = Schema & { event_search: EventSearchTable };

/** Where the user may search in one room: all of it, or up to (and including) a stream ordering (their leave). */
export interface RoomScope {
  roomId: string;
  upTo?: number;
}

export interface SearchQuery {
  /** The words to find, all of them, each as a prefix. Must be non-empty, letters and digits only. */
  words: readonly string[];
  rooms: readonly RoomScope[];
  keys: readonly string[];
  types?: readonly string[];
  senders?: readonly string[];
  notSenders?: readonly string[];
}

/** Where a page starts: after this result in the ordering (rank is absent for `recent`). */
export interface SearchCursor {
  rank?: number;
  stream: number;
}

export interface SearchHit {
  event_id: string;
  room_id: string;
  sender: string;
  stream_ordering: number;
  value: string;
  rank: number;
}

/** Bound parameters per statement stay far below both engines' limits. */
const ROOMS_PER_QUERY = 2000;

export class SearchStore {
  private readonly engine: "sqlite" | "postgres";

  constructor(private readonly db: Kysely<Schema>) {
    this.engine = db.getExecutor().adapter instanceof PostgresAdapter ? "postgres" : "sqlite";
  }

  private get sdb(): Kysely<SearchSchema> {
    return this.db.withTables<{ event_search: EventSearchTable }>();
  }

  /**
   * Index changes staged with their events: new rows, and removals (a redaction's target). One kind, so a batch
   * that holds both an event and its redaction never indexes the event after its removal. An event already indexed
   * (a retried write) is left as it is.
   */
  readonly changes: StagedRowKind<SearchIndexChange> = {
    compile: (changes) => {
      const removed = new Set(changes.flatMap((c) => ("remove" in c ? [c.remove] : [])));
      const rows = changes.flatMap((c) => ("insert" in c && !removed.has(c.insert.event_id) ? [c.insert] : []));
      const out: CompiledQuery[] = [];
      for (let i = 0; i < rows.length; i += 100) out.push(this.sdb.insertInto("event_search").values(rows.slice(i, i + 100)).onConflict((oc) => oc.doNothing()).compile());
      const ids = [...removed];
      for (let i = 0; i < ids.length; i += 500) out.push(this.sdb.deleteFrom("event_search").where("event_id", "in", ids.slice(i, i + 500)).compile());
      return out;
    },
  };

  /**
   * One page of matches, best (`rank`) or newest (`recent`) first, strictly after `after`. Ties in rank are broken
   * by stream ordering, so the order is total and a cursor never repeats or skips a row.
   */
  async search(q: SearchQuery, order: "rank" | "recent", after: SearchCursor | undefined, limit: number): Promise<SearchHit[]> {
    if (q.rooms.length === 0 || q.words.length === 0 || q.keys.length === 0) return [];
    const out: SearchHit[] = [];
    // Very many rooms: one query per slice, merged (each slice already ordered and limited).
    for (let i = 0; i < q.rooms.length; i += ROOMS_PER_QUERY) {
      const rooms = q.rooms.slice(i, i + ROOMS_PER_QUERY);
      const page = await sql<Omit<SearchHit, "rank"> & { score: number }>`SELECT * FROM (${this.matches({ ...q, rooms })}) AS m
        ${after ? sql`WHERE ${this.afterCursor(order, after)}` : sql``}
        ORDER BY ${order === "rank" ? sql`score DESC, ` : sql``}stream_ordering DESC LIMIT ${limit}`.execute(this.db);
      out.push(...page.rows.map(({ score, ...r }) => ({ ...r, stream_ordering: Number(r.stream_ordering), rank: Number(score) })));
    }
    if (q.rooms.length <= ROOMS_PER_QUERY) return out;
    out.sort((a, b) => (order === "rank" && b.rank !== a.rank ? b.rank - a.rank : b.stream_ordering - a.stream_ordering));
    return out.slice(0, limit);
  }

  /** How many events match in all (the response's approximate `count`, before visibility). */
  async count(q: SearchQuery): Promise<number> {
    if (q.rooms.length === 0 || q.words.length === 0 || q.keys.length === 0) return 0;
    let total = 0;
    for (let i = 0; i < q.rooms.length; i += ROOMS_PER_QUERY) {
      const rooms = q.rooms.slice(i, i + ROOMS_PER_QUERY);
      const r = await sql<{ n: number | string }>`SELECT COUNT(*) AS n FROM (${this.matches({ ...q, rooms })}) AS m`.execute(this.db);
      total += Number(r.rows[0]?.n ?? 0);
    }
    return total;
  }

  /** The matching rows with their rank: the only engine-specific SQL. */
  private matches(q: SearchQuery): RawBuilder<unknown> {
    const where = sql.join(this.conditions(q), sql` AND `);
    if (this.engine === "postgres") {
      const cols = sql`s.event_id, s.room_id, s.sender, s.stream_ordering, s.value`;
      const query = sql`to_tsquery('english', ${q.words.map((w) => `${w}:*`).join(" & ")})`;
      return sql`SELECT ${cols}, ts_rank_cd(s.vector, ${query})::float8 AS score FROM event_search s WHERE s.vector @@ ${query} AND ${where}`;
    }
    // bm25 is lower for better matches; negated, higher is closer, as the spec's `rank`. The stream ordering is read
    // as the FTS table's rowid, so newest-first pages walk the full-text index in rowid order instead of sorting.
    const match = q.words.map((w) => `"${w.replaceAll('"', '""')}"*`).join(" ");
    return sql`SELECT s.event_id, s.room_id, s.sender, event_search_fts.rowid AS stream_ordering, s.value, -bm25(event_search_fts) AS score
      FROM event_search_fts JOIN event_search s ON s.stream_ordering = event_search_fts.rowid
      WHERE event_search_fts MATCH ${match} AND ${where}`;
  }

  private conditions(q: SearchQuery): RawBuilder<unknown>[] {
    const c: RawBuilder<unknown>[] = [];
    const whole = q.rooms.filter((r) => r.upTo === undefined).map((r) => r.roomId);
    const scopes: RawBuilder<unknown>[] = [];
    if (whole.length > 0) scopes.push(sql`s.room_id IN (${sql.join(whole)})`);
    for (const r of q.rooms) if (r.upTo !== undefined) scopes.push(sql`(s.room_id = ${r.roomId} AND s.stream_ordering <= ${r.upTo})`);
    c.push(sql`(${sql.join(scopes, sql` OR `)})`);
    c.push(sql`s.key IN (${sql.join([...q.keys])})`);
    if (q.types) c.push(q.types.length > 0 ? sql`s.type IN (${sql.join([...q.types])})` : sql`1 = 0`);
    if (q.senders) c.push(q.senders.length > 0 ? sql`s.sender IN (${sql.join([...q.senders])})` : sql`1 = 0`);
    if (q.notSenders && q.notSenders.length > 0) c.push(sql`s.sender NOT IN (${sql.join([...q.notSenders])})`);
    return c;
  }

  private afterCursor(order: "rank" | "recent", after: SearchCursor): RawBuilder<unknown> {
    if (order === "recent" || after.rank === undefined) return sql`stream_ordering < ${after.stream}`;
    return sql`(score < ${after.rank} OR (score = ${after.rank} AND stream_ordering < ${after.stream}))`;
  }
}
