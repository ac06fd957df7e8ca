/**
 * The full-text index (migration 013): rows written with their events, and the matches POST /search reads, newest
 * first. The rows, filters and ordering are one code path; only the text match is engine-specific (SQLite FTS5,
 * PostgreSQL tsvector). Ranking is done above, over a window of the newest matches (services/search.ts), so neither
 * engine scores every match of a common word. Search terms never reach either engine as query syntax: each word is
 * quoted (FTS5) or reduced to letters and digits (tsquery) before it becomes a term.
 */
import type BetterSqlite3 from "better-sqlite3";
import { PostgresAdapter, sql, type CompiledQuery, type Kysely, type RawBuilder } from "kysely";
import { createRequire } from "node:module";
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

/** A matching index row. */
export interface SearchRow {
  event_id: string;
  room_id: string;
  sender: string;
  stream_ordering: number;
  value: string;
}

/** Bound parameters per statement stay far below both engines' limits. */
const ROOMS_PER_QUERY = 2000;

export class SearchStore {
  private readonly engine: "sqlite" | "postgres";
  private fts: FtsStemmer | undefined;

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
   * Matches newest first: up to `limit` rows with a stream ordering below `below` (from the newest when undefined).
   * Both engines walk their index in stream order here, so a page costs the rows it returns, not all matches.
   */
  async newest(q: SearchQuery, below: number | undefined, limit: number): Promise<SearchRow[]> {
    if (q.rooms.length === 0 || q.words.length === 0 || q.keys.length === 0) return [];
    const out: SearchRow[] = [];
    // Very many rooms: one query per slice, merged (each slice already ordered and limited).
    for (let i = 0; i < q.rooms.length; i += ROOMS_PER_QUERY) {
      const m = await this.matches({ ...q, rooms: q.rooms.slice(i, i + ROOMS_PER_QUERY) });
      const page = await sql<SearchRow>`SELECT s.event_id, s.room_id, s.sender, ${m.stream} AS stream_ordering, s.value ${m.from}
        ${below !== undefined ? sql`AND ${m.stream} < ${below}` : sql``} ORDER BY ${m.stream} DESC LIMIT ${limit}`.execute(this.db);
      out.push(...page.rows.map((r) => ({ ...r, stream_ordering: Number(r.stream_ordering) })));
    }
    if (q.rooms.length <= ROOMS_PER_QUERY) return out;
    return out.sort((a, b) => b.stream_ordering - a.stream_ordering).slice(0, limit);
  }

  /** The stream ordering of the oldest match. */
  async oldest(q: SearchQuery): Promise<number | undefined> {
    if (q.rooms.length === 0 || q.words.length === 0 || q.keys.length === 0) return undefined;
    let min: number | undefined;
    for (let i = 0; i < q.rooms.length; i += ROOMS_PER_QUERY) {
      const m = await this.matches({ ...q, rooms: q.rooms.slice(i, i + ROOMS_PER_QUERY) });
      const r = await sql<{ s: number | string }>`SELECT ${m.stream} AS s ${m.from} ORDER BY ${m.stream} ASC LIMIT 1`.execute(this.db);
      if (r.rows[0]) min = Math.min(min ?? Infinity, Number(r.rows[0].s));
    }
    return min;
  }

  /**
   * The FROM and WHERE of the matching rows, and their stream ordering column: the only engine-specific SQL. On
   * SQLite the stream ordering is read as the FTS table's rowid, so ordering by it walks the full-text index.
   */
  private async matches(q: SearchQuery): Promise<{ from: RawBuilder<unknown>; stream: RawBuilder<unknown> }> {
    const where = sql.join(this.conditions(q), sql` AND `);
    if (this.engine === "postgres") {
      const query = sql`to_tsquery('english', ${q.words.map((w) => `${w}:*`).join(" & ")})`;
      return { from: sql`FROM event_search s WHERE s.vector @@ ${query} AND ${where}`, stream: sql`s.stream_ordering` };
    }
    return {
      from: sql`FROM event_search_fts JOIN event_search s ON s.stream_ordering = event_search_fts.rowid WHERE event_search_fts MATCH ${await this.ftsMatch(q.words)} AND ${where}`,
      stream: sql`event_search_fts.rowid`,
    };
  }

  /**
   * The FTS5 query: every word as a prefix term (as Synapse searches), except a word whose stem no other indexed
   * term extends, which is asked for exactly. That is the same set of rows, but FTS5 streams an exact term, while a
   * prefix term first merges the posting lists of all its terms in memory (~70 ms for a term in a million messages).
   */
  private async ftsMatch(words: readonly string[]): Promise<string> {
    const parts: string[] = [];
    for (const w of words) {
      const quoted = `"${w.replaceAll('"', '""')}"`;
      const stems = this.stemmer().stems(w);
      let exact = false;
      if (stems.length === 1) {
        const stem = stems[0]!;
        // The first term sorting after the stem that still starts with it; the upper bound keeps FTS5 from reading
        // the posting list of the next term beyond.
        const next = await sql<{ term: string }>`SELECT term FROM event_search_vocab WHERE term >= ${`${stem}\u0000`} AND term < ${`${stem}\u{10FFFF}`} LIMIT 1`.execute(this.db);
        exact = next.rows.length === 0;
      }
      parts.push(exact ? quoted : `${quoted}*`);
    }
    return parts.join(" ");
  }

  private stemmer(): FtsStemmer {
    this.fts ??= new FtsStemmer();
    return this.fts;
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

}

/**
 * The terms SQLite's FTS5 tokenizer (`porter unicode61`, as the index) makes of a word, from a small in-memory
 * database of its own: the read connection is query-only, and the stems must be exactly FTS5's.
 */
class FtsStemmer {
  private readonly insert: BetterSqlite3.Statement<[string]>;
  private readonly terms: BetterSqlite3.Statement<[], { term: string }>;
  private readonly clear: BetterSqlite3.Statement<[]>;

  constructor() {
    const db = new (createRequire(import.meta.url)("better-sqlite3") as typeof BetterSqlite3)(":memory:");
    db.exec(`CREATE VIRTUAL TABLE stem USING fts5(t, tokenize = 'porter unicode61', content = '', detail = none);
      CREATE VIRTUAL TABLE stem_terms USING fts5vocab(stem, row);`);
    this.insert = db.prepare("INSERT INTO stem (rowid, t) VALUES (1, ?)");
    this.terms = db.prepare("SELECT term FROM stem_terms");
    this.clear = db.prepare("INSERT INTO stem (stem) VALUES ('delete-all')");
  }

  stems(word: string): string[] {
    this.insert.run(word);
    const out = this.terms.all().map((r) => r.term);
    this.clear.run();
    return out;
  }
}
