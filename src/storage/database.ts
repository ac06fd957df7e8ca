/**
 * Opening the database: SQLite (embedded, WAL, foreign keys on, synchronous=FULL so a commit survives power loss)
 * or PostgreSQL (a connection pool), both behind one Kysely instance so every store has one code path.
 */
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import BetterSqlite3 from "better-sqlite3";
import { Kysely, PostgresDialect, SqliteDialect, sql } from "kysely";
import pg from "pg";
import type { DatabaseConfig } from "../config/config.js";
import type { Schema } from "./schema.js";
import { migrateToLatest } from "./migrations/index.js";

export type Engine = "sqlite" | "postgres";

export interface Database {
  readonly engine: Engine;
  readonly db: Kysely<Schema>;
  close(): Promise<void>;
}

// PostgreSQL returns BIGINT (int8) and COUNT(*) as strings; every value we store fits in 2^53.
const PG_INT8 = 20;
const pgTypes = {
  getTypeParser: ((oid: number, format?: string) =>
    oid === PG_INT8 ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format as "text")) as typeof pg.types.getTypeParser,
};

export async function openDatabase(cfg: DatabaseConfig): Promise<Database> {
  let db: Kysely<Schema>;
  if (cfg.engine === "sqlite") {
    if (cfg.path !== ":memory:") mkdirSync(dirname(cfg.path), { recursive: true });
    const conn = new BetterSqlite3(cfg.path);
    conn.pragma("journal_mode = WAL");
    conn.pragma("synchronous = FULL");
    conn.pragma("foreign_keys = ON");
    conn.pragma("busy_timeout = 10000");
    conn.pragma("cache_size = -32000");
    db = new Kysely<Schema>({ dialect: new SqliteDialect({ database: conn }) });
  } else {
    const pool = new pg.Pool({
      host: cfg.host,
      port: cfg.port,
      user: cfg.user,
      password: cfg.password,
      database: cfg.database,
      max: cfg.cpMax,
      min: Math.min(cfg.cpMin, cfg.cpMax),
      types: pgTypes,
      application_name: "myelin",
    });
    // An idle client losing its connection must not crash the process; the pool replaces it.
    pool.on("error", () => {});
    db = new Kysely<Schema>({ dialect: new PostgresDialect({ pool }) });
    await sql`SELECT 1`.execute(db);
  }
  const database: Database = {
    engine: cfg.engine,
    db,
    close: () => db.destroy(),
  };
  await migrateToLatest(database);
  return database;
}
