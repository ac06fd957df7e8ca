/**
 * Multi-row statements on the write path, built once and then only re-bound. Building a query with Kysely walks
 * and freezes a node per value, which on the event write path cost more than the write itself: the SQL of an
 * INSERT of n rows depends only on the table, its columns and n, so it is built once per (key, n) and cached.
 */
import { CompiledQuery } from "kysely";

export class MultiRowStatements {
  private readonly sql = new Map<string, string>();

  /**
   * `rows` (their `columns`, in that order) bound to the statement that `build` makes for `rows.length` rows of
   * placeholders; `key` names the statement's shape apart from the row count.
   */
  bind<C extends string>(key: string, rows: readonly Record<C, unknown>[], columns: readonly C[], build: (placeholders: Record<C, never>[]) => { compile(): CompiledQuery }): CompiledQuery {
    const cacheKey = `${key} ${rows.length}`;
    let text = this.sql.get(cacheKey);
    if (text === undefined) {
      const row = Object.fromEntries(columns.map((c) => [c, null])) as Record<C, never>;
      text = build(rows.map(() => row)).compile().sql;
      this.sql.set(cacheKey, text);
    }
    const params: unknown[] = [];
    for (const r of rows) for (const c of columns) params.push(r[c]);
    return CompiledQuery.raw(text, params);
  }
}
