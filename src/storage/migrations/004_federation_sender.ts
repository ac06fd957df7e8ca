import type { SqlMigration } from "./index.js";

/**
 * Federation, part two: what each destination server has received. `last_successful_stream_ordering` moves only
 * after a transaction is acknowledged, so after a restart or an outage the sender knows what to catch up on; the
 * retry columns are the destination's backoff, kept across restarts and visible to admins.
 */
export const m004_federation_sender: SqlMigration = () => [
  `CREATE TABLE federation_destinations (
    destination TEXT PRIMARY KEY,
    last_successful_stream_ordering BIGINT NOT NULL DEFAULT 0,
    failure_ts BIGINT,
    retry_last_ts BIGINT NOT NULL DEFAULT 0,
    retry_interval_ms BIGINT NOT NULL DEFAULT 0
  )`,
  // Transactions received, for idempotency of PUT /send/{txnId} (spec: "idempotent per origin and txnId").
  `CREATE TABLE federation_received_txns (
    origin TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    response TEXT NOT NULL,
    received_ts BIGINT NOT NULL,
    PRIMARY KEY (origin, txn_id)
  )`,
  `CREATE INDEX federation_received_txns_ts ON federation_received_txns (received_ts)`,
  // The stripped room state that came with an invite or knock for a room this server is not in (spec "stripped
  // state"), shown to the user in /sync's invite_state / knock_state.
  `CREATE TABLE room_stripped_state (
    event_id TEXT PRIMARY KEY,
    state TEXT NOT NULL
  )`,
];
