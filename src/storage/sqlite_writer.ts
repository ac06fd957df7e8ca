/**
 * SQLite with its writes in a worker thread. better-sqlite3 is synchronous: on the main thread a commit's fsync
 * (synchronous=FULL, so an acknowledged write survives power loss) and any wait for the write lock would stall
 * every request. So the main thread keeps a connection for reads only — WAL lets them run beside a writer — and
 * every write, transaction and event batch goes to one writer connection in a worker thread.
 *
 * SqliteSplitDialect plugs this into Kysely: outside a transaction, a read-only statement runs on the main
 * connection and anything else on the writer; inside a transaction, everything runs on the writer, in order.
 */
import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";
import type BetterSqlite3 from "better-sqlite3";
import { CompiledQuery, SqliteDialect, type DatabaseConnection, type Driver, type QueryResult, type TransactionSettings } from "kysely";

interface ExecResult {
  rows?: unknown[];
  changes?: number;
  lastInsertRowid?: number;
}

// The worker: one connection and its statements by id. Plain JS evaluated in the worker, so it runs the same from
// compiled output and from the TypeScript sources under test.
const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const Database = require(workerData.driver);
const db = new Database(workerData.path);
// busy_timeout first: the main thread may hold a lock while it sets up its own connection.
db.pragma("busy_timeout = 10000");
db.pragma("journal_mode = WAL");
db.pragma("synchronous = FULL");
db.pragma("foreign_keys = ON");
// 2 MiB of page cache (not better-sqlite3's 16): writes touch few pages, the newest rows' and their index paths.
db.pragma("cache_size = -2048");
const statements = new Map();
const stmt = (q) => {
  let s = statements.get(q.id);
  if (!s) statements.set(q.id, (s = db.prepare(q.sql)));
  return s;
};
const exec = (q) => {
  const s = stmt(q);
  if (s.reader) return { rows: s.all(...q.parameters) };
  const r = s.run(...q.parameters);
  return { changes: r.changes, lastInsertRowid: Number(r.lastInsertRowid) };
};
const batch = db.transaction((queries) => {
  for (const q of queries) stmt(q).run(...q.parameters);
});
parentPort.on("message", (m) => {
  try {
    if (m.op === "close") {
      db.close();
      parentPort.postMessage({ id: m.id });
    } else if (m.op === "batch") {
      batch(m.queries);
      parentPort.postMessage({ id: m.id });
    } else {
      parentPort.postMessage({ id: m.id, result: exec(m.query) });
    }
  } catch (e) {
    parentPort.postMessage({ id: m.id, error: String((e && e.message) || e), code: e && e.code });
  }
});
`;

/** How long the writer thread may sit idle before it is retired. */
const WRITER_IDLE_MS = 30_000;

interface WireQuery {
  id: number;
  sql?: string;
  parameters: readonly unknown[];
}

/**
 * The main thread's handle on the writer connection. Callers hold `lock()` for a transaction or a batch.
 *
 * The worker is started on the first write and retired after `idleMs` without writes (and with no transaction
 * open): a thread with its own JavaScript engine costs ~8 MB of resident memory, which a quiet server need not hold.
 * The next write starts it again (~20 ms, once).
 */
export class SqliteWriter {
  private worker: Worker | undefined;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (r: ExecResult | undefined) => void; reject: (e: Error) => void }>();
  /** SQL text → statement id known to the current worker: long SQL text is sent once, then only its id. */
  private readonly sqlIds = new Map<string, number>();
  private nextSqlId = 1;
  private tail: Promise<void> = Promise.resolve();
  /** Holders of lock(), and those waiting for it: the worker is not retired while a transaction may be open. */
  private lockers = 0;
  private idleTimer: NodeJS.Timeout | undefined;
  private retiring: Promise<void> | undefined;
  private closed = false;
  /** Set when the worker died: every later request fails at once instead of waiting forever. */
  private failure: Error | undefined;
  private readonly driver = createRequire(import.meta.url).resolve("better-sqlite3");

  constructor(
    private readonly path: string,
    private readonly idleMs = WRITER_IDLE_MS,
  ) {}

  /** Whether the writer thread is running (for tests). */
  get running(): boolean {
    return this.worker !== undefined;
  }

  private start(): Worker {
    const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { path: this.path, driver: this.driver } });
    worker.on("message", (m: { id: number; result?: ExecResult; error?: string; code?: string }) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (this.pending.size === 0) {
        worker.unref();
        this.scheduleRetirement();
      }
      if (m.error !== undefined) p.reject(Object.assign(new Error(m.error), { code: m.code }));
      else p.resolve(m.result);
    });
    const fail = (e: Error) => {
      // A retired worker's exit is expected.
      if (worker !== this.worker) return;
      this.failure ??= e;
      for (const p of this.pending.values()) p.reject(e);
      this.pending.clear();
    };
    worker.on("error", fail);
    worker.on("exit", (code) => fail(new Error(`SQLite writer thread exited (code ${code})`)));
    this.worker = worker;
    this.sqlIds.clear();
    return worker;
  }

  private scheduleRetirement(): void {
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => void this.retire(), this.idleMs);
    this.idleTimer.unref();
  }

  /** Closes the idle writer connection and ends its thread; the next write starts a new one. */
  private async retire(): Promise<void> {
    const worker = this.worker;
    if (!worker || this.closed || this.pending.size > 0 || this.lockers > 0) return;
    this.worker = undefined;
    // Its close is not one of `pending`, which belong to the current worker.
    const id = this.nextId++;
    const done = new Promise<void>((resolve) => {
      const onMessage = (m: { id: number }) => {
        if (m.id !== id) return;
        worker.off("message", onMessage);
        resolve();
      };
      worker.on("message", onMessage);
      worker.once("exit", () => resolve());
    });
    worker.ref();
    worker.postMessage({ id, op: "close" });
    this.retiring = done.then(() => worker.terminate()).then(() => undefined);
    await this.retiring;
  }

  /** Exclusive use of the writer until the returned function is called (FIFO). */
  async lock(): Promise<() => void> {
    let release!: () => void;
    const next = new Promise<void>((r) => (release = r));
    const prev = this.tail;
    this.tail = prev.then(() => next);
    this.lockers++;
    await prev;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.lockers--;
      release();
      if (this.lockers === 0 && this.pending.size === 0 && this.worker) this.scheduleRetirement();
    };
  }

  /** Runs one statement on the writer (the caller holds the lock or accepts autocommit ordering). */
  exec(q: CompiledQuery): Promise<ExecResult> {
    return this.send((wire) => ({ op: "exec", query: wire(q) })) as Promise<ExecResult>;
  }

  /** Runs statements as one transaction on the writer. */
  async batch(queries: readonly CompiledQuery[]): Promise<void> {
    await this.send((wire) => ({ op: "batch", queries: queries.map(wire) }));
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.idleTimer);
    await this.retiring;
    const worker = this.worker;
    if (!worker) return;
    worker.ref();
    await this.send(() => ({ op: "close" }));
    this.worker = undefined;
    await worker.terminate();
  }

  private send(build: (wire: (q: CompiledQuery) => WireQuery) => Record<string, unknown>): Promise<ExecResult | undefined> {
    const id = this.nextId++;
    // Texts count as known to the worker only once a message carrying them succeeded (a failing batch may stop
    // before preparing them).
    const introduced: [string, number][] = [];
    const wire = (q: CompiledQuery): WireQuery => {
      const known = this.sqlIds.get(q.sql);
      if (known !== undefined) return { id: known, parameters: q.parameters };
      const fresh = this.nextSqlId++;
      introduced.push([q.sql, fresh]);
      return { id: fresh, sql: q.sql, parameters: q.parameters };
    };
    if (this.failure) return Promise.reject(this.failure);
    if (this.closed && !this.worker) return Promise.reject(new Error("The SQLite writer is closed"));
    clearTimeout(this.idleTimer);
    const worker = this.worker ?? this.start();
    const msg = { id, ...build(wire) };
    return new Promise((resolve, reject) => {
      this.pending.set(id, {
        resolve: (r) => {
          for (const [sql, sqlId] of introduced) this.sqlIds.set(sql, sqlId);
          resolve(r);
        },
        reject,
      });
      if (this.pending.size === 1) worker.ref();
      worker.postMessage(msg);
    });
  }
}

function toQueryResult<R>(r: ExecResult): QueryResult<R> {
  if (r.rows) return { rows: r.rows as R[] };
  return {
    rows: [],
    numAffectedRows: r.changes !== undefined ? BigInt(r.changes) : undefined,
    insertId: r.lastInsertRowid !== undefined ? BigInt(r.lastInsertRowid) : undefined,
  };
}

/**
 * Prepared statements of the read connection by SQL text: preparing (parsing and planning) costs more than running
 * most of our queries, and the same few hundred query shapes recur. Bounded; cleared when full.
 */
class StatementCache {
  private readonly stmts = new Map<string, BetterSqlite3.Statement>();

  constructor(private readonly db: BetterSqlite3.Database) {}

  get(sql: string): BetterSqlite3.Statement {
    let s = this.stmts.get(sql);
    if (!s) {
      if (this.stmts.size >= MAX_CACHED_STATEMENTS) this.stmts.clear();
      this.stmts.set(sql, (s = this.db.prepare(sql)));
    }
    return s;
  }
}
const MAX_CACHED_STATEMENTS = 2000;

class SplitConnection implements DatabaseConnection {
  /** Set while this connection runs a transaction: then every statement goes to the writer, in order. */
  release: (() => void) | undefined;

  constructor(
    private readonly reader: StatementCache,
    private readonly writer: SqliteWriter,
  ) {}

  async executeQuery<R>(q: CompiledQuery): Promise<QueryResult<R>> {
    if (this.release) return toQueryResult<R>(await this.writer.exec(q));
    const stmt = this.reader.get(q.sql);
    if (stmt.readonly) return { rows: stmt.all(q.parameters) as R[] };
    const release = await this.writer.lock();
    try {
      return toQueryResult<R>(await this.writer.exec(q));
    } finally {
      release();
    }
  }

  // eslint-disable-next-line require-yield
  async *streamQuery<R>(): AsyncIterableIterator<QueryResult<R>> {
    throw new Error("streaming queries are not supported");
  }
}

class SplitDriver implements Driver {
  private readonly statements: StatementCache;

  constructor(
    private readonly reader: BetterSqlite3.Database,
    private readonly writer: SqliteWriter,
  ) {
    this.statements = new StatementCache(reader);
  }

  async init(): Promise<void> {}

  async acquireConnection(): Promise<DatabaseConnection> {
    return new SplitConnection(this.statements, this.writer);
  }

  async beginTransaction(connection: DatabaseConnection, _settings: TransactionSettings): Promise<void> {
    const c = connection as SplitConnection;
    c.release = await this.writer.lock();
    try {
      await this.writer.exec(CompiledQuery.raw("begin immediate"));
    } catch (e) {
      this.end(c);
      throw e;
    }
  }

  async commitTransaction(connection: DatabaseConnection): Promise<void> {
    const c = connection as SplitConnection;
    try {
      await this.writer.exec(CompiledQuery.raw("commit"));
    } finally {
      this.end(c);
    }
  }

  async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    const c = connection as SplitConnection;
    try {
      await this.writer.exec(CompiledQuery.raw("rollback"));
    } finally {
      this.end(c);
    }
  }

  private end(c: SplitConnection): void {
    const r = c.release;
    c.release = undefined;
    r?.();
  }

  async releaseConnection(): Promise<void> {}

  async destroy(): Promise<void> {
    await this.writer.close();
    this.reader.close();
  }
}

/** Kysely's SQLite dialect (query compiler, adapter, introspector) with the split driver. */
export class SqliteSplitDialect extends SqliteDialect {
  constructor(
    private readonly reader: BetterSqlite3.Database,
    private readonly writer: SqliteWriter,
  ) {
    super({ database: reader });
  }

  override createDriver(): Driver {
    return new SplitDriver(this.reader, this.writer);
  }
}
