import type { SqlMigration } from "./index.js";

/**
 * Self-destructing messages (MSC2228, Synapse's `enable_ephemeral_messages`): when each event that asked for it
 * expires. The row is written in the event's own transaction, so an accepted event is always pruned in time, even
 * across a restart.
 */
export const m020_event_expiry: SqlMigration = () => [
  `CREATE TABLE event_expiry (
    event_id TEXT NOT NULL PRIMARY KEY,
    expiry_ts BIGINT NOT NULL
  )`,
  `CREATE INDEX event_expiry_ts ON event_expiry (expiry_ts)`,
];
