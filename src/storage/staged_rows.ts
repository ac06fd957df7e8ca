/**
 * Rows that per-event consumers (push, …) add to an event batch. A statement is a round trip on PostgreSQL, so a
 * row of a known kind is not compiled on its own: the batch gathers the rows of each kind from all its events and
 * writes them as multi-row statements (StagedRowKind.compile), after the events' own rows.
 */
import type { CompiledQuery } from "kysely";

export interface StagedRowKind<R> {
  /** The statements that write these rows (in the order the events staged them), as few as possible. */
  compile(rows: readonly R[]): CompiledQuery[];
}

export interface StagedRow<R = unknown> {
  readonly kind: StagedRowKind<R>;
  readonly row: R;
}

/** What a consumer stages: a row of a batched kind, or a statement of its own. */
export type Staged = StagedRow | CompiledQuery;

export function stagedRow<R>(kind: StagedRowKind<R>, row: R): StagedRow {
  return { kind, row } as StagedRow;
}

/** A batch's staged rows as statements: statements as they are, then each kind's rows together (kinds in order of first use). */
export function compileStaged(staged: readonly Staged[]): CompiledQuery[] {
  const out: CompiledQuery[] = [];
  const byKind = new Map<StagedRowKind<unknown>, unknown[]>();
  for (const s of staged) {
    if (!("kind" in s)) {
      out.push(s);
      continue;
    }
    let rows = byKind.get(s.kind);
    if (!rows) byKind.set(s.kind, (rows = []));
    rows.push(s.row);
  }
  for (const [kind, rows] of byKind) out.push(...kind.compile(rows));
  return out;
}
