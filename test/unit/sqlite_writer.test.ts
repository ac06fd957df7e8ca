// The SQLite writer thread starts on the first write and is retired when idle, never while a transaction is open;
// writes before and after a retirement all land.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { CompiledQuery } from "kysely";
import { afterEach, describe, expect, it } from "vitest";
import { SqliteWriter } from "../../src/storage/sqlite_writer.js";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function freshDb(): string {
  const dir = mkdtempSync(join(tmpdir(), "myelin-writer-"));
  dirs.push(dir);
  return join(dir, "test.db");
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const q = (sql: string, ...parameters: unknown[]) => CompiledQuery.raw(sql, parameters);
const count = (path: string) => {
  const db = new Database(path, { readonly: true });
  try {
    return (db.prepare("SELECT count(*) AS n FROM t").get() as { n: number }).n;
  } finally {
    db.close();
  }
};

describe("SqliteWriter", () => {
  it("starts on the first write, retires when idle, and starts again for the next write", async () => {
    const path = freshDb();
    const w = new SqliteWriter(path, 100);
    expect(w.running).toBe(false);
    await w.exec(q("CREATE TABLE t (a TEXT)"));
    await w.exec(q("INSERT INTO t VALUES (?)", "one"));
    expect(w.running).toBe(true);
    await sleep(400);
    expect(w.running).toBe(false);
    // Statements prepared by the retired thread are prepared again by the new one.
    await w.exec(q("INSERT INTO t VALUES (?)", "two"));
    await w.batch([q("INSERT INTO t VALUES (?)", "three"), q("INSERT INTO t VALUES (?)", "four")]);
    expect(w.running).toBe(true);
    expect(count(path)).toBe(4);
    await w.close();
    expect(w.running).toBe(false);
    await expect(w.exec(q("INSERT INTO t VALUES (?)", "late"))).rejects.toThrow(/closed/);
  });

  it("is not retired while a transaction is open", async () => {
    const path = freshDb();
    const w = new SqliteWriter(path, 100);
    await w.exec(q("CREATE TABLE t (a TEXT)"));
    const release = await w.lock();
    await w.exec(q("begin immediate"));
    await w.exec(q("INSERT INTO t VALUES (?)", "in a transaction"));
    await sleep(400);
    expect(w.running).toBe(true);
    await w.exec(q("commit"));
    release();
    expect(count(path)).toBe(1);
    await sleep(400);
    expect(w.running).toBe(false);
    await w.close();
  });

  it("closes cleanly when it was never started, or is retiring", async () => {
    const never = new SqliteWriter(freshDb(), 100);
    await never.close();
    const path = freshDb();
    const w = new SqliteWriter(path, 1);
    await w.exec(q("CREATE TABLE t (a TEXT)"));
    await sleep(5);
    await w.close();
    expect(w.running).toBe(false);
  });
});
