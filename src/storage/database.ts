/**
 * Opening the database: SQLite (embedded, WAL, foreign keys on, synchronous=FULL so a commit survives power loss)
 * or PostgreSQL (a connection pool), both behind one Kysely instance so every store has one code path.
 */
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import type BetterSqlite3 from "better-sqlite3";
import { Kysely, PostgresDialect, SqliteDialect, sql } from "kysely";
import type pg from "pg";
import type { DatabaseConfig } from "../config/config.js";
import type { Schema } from "./schema.js";
import { KyselyBatchExecutor, SqliteWriterBatchExecutor, type BatchExecutor } from "./batch.js";
import { SqliteSplitDialect, SqliteWriter } from "./sqlite_writer.js";
import { migrateToLatest } from "./migrations/index.js";

export type Engine = "sqlite" | "postgres";

export interface Database {
  readonly engine: Engine;
  readonly db: Kysely<Schema>;
  /** Runs the hot path's write batches (see batch.ts). */
  readonly batch: BatchExecutor;
  /** For the metrics: the PostgreSQL pool's connections, SQLite's page cache limit per connection. */
  stats(): DatabaseStats;
  close(): Promise<void>;
}

export interface DatabaseStats {
  pool?: { total: number; idle: number; waiting: number };
  pageCacheBytes?: number;
}

// PostgreSQL returns BIGINT (int8) and COUNT(*) as strings; every value we store fits in 2^53.
const PG_INT8 = 20;
function pgTypes(types: typeof pg.types): { getTypeParser: typeof pg.types.getTypeParser } {
  return {
    getTypeParser: ((oid: number, format?: string) =>
      oid === PG_INT8 ? (v: string) => Number(v) : types.getTypeParser(oid, format as "text")) as typeof pg.types.getTypeParser,
  };
}

/**
 * Kysely prepares every query anew; SQLite statements are reusable, so cache them by SQL text. Kysely runs
 * statements one at a time on this single connection (and never iterates two at once), so sharing is safe.
 */
function withStatementCache(conn: BetterSqlite3.Database): BetterSqlite3.Database {
  const cache = new Map<string, BetterSqlite3.Statement>();
  const prepare = conn.prepare.bind(conn);
  return new Proxy(conn, {
    get(target, prop, receiver) {
      if (prop === "prepare") {
        return (source: string) => {
          let stmt = cache.get(source);
          if (!stmt) {
            stmt = prepare(source);
            if (cache.size >= 1000) cache.clear();
            cache.set(source, stmt);
          }
          return stmt;
        };
      }
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

/** SQLite page cache of the read connection, KiB (the writer's is in sqlite_writer.ts). */
const READ_CACHE_KIB = 8192;

export async function openDatabase(cfg: DatabaseConfig): Promise<Database> {
  let db: Kysely<Schema>;
  let batch: BatchExecutor;
  let stats: () => DatabaseStats;
  if (cfg.engine === "sqlite") {
    if (cfg.path !== ":memory:") mkdirSync(dirname(cfg.path), { recursive: true });
    // Each driver is loaded only for its engine: the other one costs memory for nothing.
    const { default: Sqlite } = await import("better-sqlite3");
    const conn = new Sqlite(cfg.path);
    conn.pragma("journal_mode = WAL");
    conn.pragma("foreign_keys = ON");
    conn.pragma("busy_timeout = 10000");
    // better-sqlite3 builds SQLite with a 16 MiB page cache per connection, which fills and stays: the OS already
    // caches the file, so a smaller one costs a pread per miss, not a disk read (docs/memory.md).
    conn.pragma(`cache_size = -${READ_CACHE_KIB}`);
    // cache_size is in pages, or (negative) in KiB.
    const cacheSize = Number(conn.pragma("cache_size", { simple: true }));
    const pageSize = Number(conn.pragma("page_size", { simple: true }));
    const pageCacheBytes = cacheSize < 0 ? -cacheSize * 1024 : cacheSize * pageSize;
    stats = () => ({ pageCacheBytes });
    if (cfg.path === ":memory:") {
      db = new Kysely<Schema>({ dialect: new SqliteDialect({ database: withStatementCache(conn) }) });
      batch = new KyselyBatchExecutor(db);
    } else {
      // Reads on this connection, writes on a writer connection in a worker thread (sqlite_writer.ts).
      conn.pragma("query_only = 1");
      const writer = new SqliteWriter(cfg.path);
      db = new Kysely<Schema>({ dialect: new SqliteSplitDialect(withStatementCache(conn), writer) });
      batch = new SqliteWriterBatchExecutor(writer);
    }
  } else {
    const { default: pgDriver } = await import("pg");
    const pool = new pgDriver.Pool({
      host: cfg.host,
      port: cfg.port,
      user: cfg.user,
      password: cfg.password,
      database: cfg.database,
      max: cfg.cpMax,
      min: Math.min(cfg.cpMin, cfg.cpMax),
      types: pgTypes(pgDriver.types),
      application_name: "myelin",
    });
    // An idle client losing its connection must not crash the process; the pool replaces it.
    pool.on("error", () => {});
    stats = () => ({ pool: { total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount } });
    db = new Kysely<Schema>({ dialect: new PostgresDialect({ pool }) });
    await sql`SELECT 1`.execute(db);
    batch = new KyselyBatchExecutor(db);
  }
  const database: Database = {
    engine: cfg.engine,
    db,
    batch,
    stats: () => stats(),
    close: async () => {
      await batch.close();
      await db.destroy();
    },
  };
  try {
    await migrateToLatest(database);
  } catch (e) {
    await database.close();
    throw e;
  }
  return database;
}
