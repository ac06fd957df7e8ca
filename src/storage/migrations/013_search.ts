import type { SqlMigration } from "./index.js";

/**
 * The full-text index for POST /search (spec "Server Side Search"): one row per searchable event (m.room.message
 * `content.body`, m.room.name `content.name`, m.room.topic `content.topic`), keyed by the event's stream ordering so
 * rows and events share one order. The rows are plain columns on both engines; only the text index differs:
 * PostgreSQL keeps a generated `tsvector` (English stemming, as Synapse) under a GIN index; SQLite an FTS5 table
 * over the same rows (external content, porter stemming, kept in step by triggers), so the write path is one
 * INSERT for both. Existing history is indexed here, once.
 */
export const m013_search: SqlMigration = (engine) => [
  `CREATE TABLE event_search (
    stream_ordering {{int_pk}},
    event_id TEXT NOT NULL UNIQUE,
    room_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    type TEXT NOT NULL,
    key TEXT NOT NULL,
    origin_server_ts BIGINT NOT NULL,
    value TEXT NOT NULL${engine === "postgres" ? ",\n    vector tsvector GENERATED ALWAYS AS (to_tsvector('english', value)) STORED" : ""}
  )`,
  `CREATE INDEX event_search_room_stream ON event_search (room_id, stream_ordering)`,
  ...(engine === "postgres"
    ? [`CREATE INDEX event_search_vector ON event_search USING GIN (vector)`]
    : [
        `CREATE VIRTUAL TABLE event_search_fts USING fts5(value, content='event_search', content_rowid='stream_ordering', tokenize='porter unicode61')`,
        `CREATE TRIGGER event_search_ai AFTER INSERT ON event_search BEGIN
          INSERT INTO event_search_fts (rowid, value) VALUES (new.stream_ordering, new.value);
        END`,
        `CREATE TRIGGER event_search_ad AFTER DELETE ON event_search BEGIN
          INSERT INTO event_search_fts (event_search_fts, rowid, value) VALUES ('delete', old.stream_ordering, old.value);
        END`,
      ]),
  ...backfill(engine),
];

/** The searchable events already stored: accepted, in the timeline, not redacted. */
function backfill(engine: "sqlite" | "postgres"): string[] {
  const field = (f: string) =>
    engine === "postgres" ? `CASE WHEN jsonb_typeof(json::jsonb -> 'content' -> '${f}') = 'string' THEN json::jsonb -> 'content' ->> '${f}' END` : `CASE WHEN json_type(json, '$.content.${f}') = 'text' THEN json_extract(json, '$.content.${f}') END`;
  const rows = (type: string, f: string) => `INSERT INTO event_search (stream_ordering, event_id, room_id, sender, type, key, origin_server_ts, value)
    SELECT stream_ordering, event_id, room_id, sender, type, 'content.${f}', origin_server_ts, v FROM (
      SELECT stream_ordering, event_id, room_id, sender, type, origin_server_ts, ${field(f)} AS v FROM events
      WHERE type = '${type}' AND outlier = 0 AND soft_failed = 0 AND rejected_reason IS NULL AND redacted_by IS NULL
    ) AS x WHERE v IS NOT NULL AND v <> ''`;
  return [rows("m.room.message", "body"), rows("m.room.name", "name"), rows("m.room.topic", "topic")];
}
