import type { SqlMigration } from "./index.js";

/**
 * SQLite only: a read-only view of the full-text index's terms (FTS5's `fts5vocab`). A prefix query over a term held
 * by a large share of the messages makes FTS5 merge that term's whole posting list before the first row; when the
 * vocabulary shows that no other term starts with the word's stem, the search asks for the term exactly, which
 * streams (storage/search.ts).
 */
export const m023_search_vocab: SqlMigration = (engine) => (engine === "postgres" ? [] : [`CREATE VIRTUAL TABLE event_search_vocab USING fts5vocab(event_search_fts, row)`]);
