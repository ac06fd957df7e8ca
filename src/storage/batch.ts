/**
 * Running a batch of compiled statements as one transaction. On SQLite the batch runs in a worker thread with its
 * own connection: better-sqlite3 is synchronous, and a commit's fsync (synchronous=FULL, so a 200 survives power
 * loss) would otherwise stall every request while the disk flushes. Reads stay on the main connection; WAL lets
 * them proceed while the worker writes. On PostgreSQL the driver is already asynchronous: a pooled transaction.
 */
import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";
import type { CompiledQuery, Kysely } from "kysely";
import type { Schema } from "./schema.js";

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

// The worker: one connection, a statement cache, each message one transaction. Plain JS evaluated in the worker,
// so it runs the same from compiled output and from the TypeScript sources under test.
const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const Database = require(workerData.driver);
const db = new Database(workerData.path);
db.pragma("journal_mode = WAL");
db.pragma("synchronous = FULL");
db.pragma("foreign_keys = ON");
db.pragma("busy_timeout = 10000");
// Statements by id: the main thread sends each SQL text once, then only its id.
const statements = new Map();
const runAll = db.transaction((queries) => {
  for (const q of queries) {
    let s = statements.get(q.id);
    if (!s) statements.set(q.id, (s = db.prepare(q.sql)));
    s.run(...q.parameters);
  }
});
parentPort.on("message", (m) => {
  if (m.close) {
    db.close();
    parentPort.postMessage({ id: m.id });
    return;
  }
  try {
    runAll(m.queries);
    parentPort.postMessage({ id: m.id });
  } catch (e) {
    parentPort.postMessage({ id: m.id, error: String(e && e.message || e), code: e && e.code });
  }
});
`;

export class SqliteWorkerBatchExecutor implements BatchExecutor {
  private readonly worker: Worker;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();
  /** SQL text → id known to the worker (structured-cloning long SQL text per message is costly). */
  private readonly sqlIds = new Map<string, number>();
  private nextSqlId = 1;

  constructor(path: string) {
    const driver = createRequire(import.meta.url).resolve("better-sqlite3");
    this.worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { path, driver } });
    this.worker.on("message", (m: { id: number; error?: string; code?: string }) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (m.error !== undefined) p.reject(Object.assign(new Error(m.error), { code: m.code }));
      else p.resolve();
    });
    this.worker.on("error", (e) => {
      for (const p of this.pending.values()) p.reject(e);
      this.pending.clear();
    });
    // The worker must not keep the process alive on its own.
    this.worker.unref();
  }

  run(queries: readonly CompiledQuery[]): Promise<void> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const introduced: [string, number][] = [];
      const msg = queries.map((q) => {
        const known = this.sqlIds.get(q.sql);
        if (known !== undefined) return { id: known, parameters: q.parameters };
        const fresh = this.nextSqlId++;
        introduced.push([q.sql, fresh]);
        return { id: fresh, sql: q.sql, parameters: q.parameters };
      });
      // Texts count as known to the worker only once a batch carrying them succeeded (a failing batch may stop
      // before preparing them).
      this.pending.set(id, {
        resolve: () => {
          for (const [sql, sqlId] of introduced) this.sqlIds.set(sql, sqlId);
          resolve();
        },
        reject,
      });
      this.worker.postMessage({ id, queries: msg });
    });
  }

  async close(): Promise<void> {
    // Keep the process alive until the worker has closed its connection (it is unref'd while idle).
    this.worker.ref();
    const id = this.nextId++;
    await new Promise<void>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, close: true });
    });
    await this.worker.terminate();
  }
}
