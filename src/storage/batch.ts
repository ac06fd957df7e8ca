/**
 * Running a batch of compiled statements (the event write path) as one transaction: on SQLite on the writer
 * connection in its worker thread (see sqlite_writer.ts), on PostgreSQL as a pooled transaction.
 */
import type { CompiledQuery, Kysely } from "kysely";
import type { Schema } from "./schema.js";
import type { SqliteWriter } from "./sqlite_writer.js";

export interface BatchExecutor {
  run(queries: readonly CompiledQuery[]): Promise<void>;
  close(): Promise<void>;
}

export class KyselyBatchExecutor implements BatchExecutor {
  constructor(private readonly db: Kysely<Schema>) {}

  async run(queries: readonly CompiledQuery[]): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      for (const q of queries) await trx.executeQuery(q);
    });
  }

  async close(): Promise<void> {}
}

/** On SQLite, a batch runs as one transaction on the writer connection in the worker thread. */
export class SqliteWriterBatchExecutor implements BatchExecutor {
  constructor(private readonly writer: SqliteWriter) {}

  async run(queries: readonly CompiledQuery[]): Promise<void> {
    const release = await this.writer.lock();
    try {
      await this.writer.batch(queries);
    } finally {
      release();
    }
  }

  /** The writer is closed with the database (Kysely's driver owns it). */
  async close(): Promise<void> {}
}
