import type { SqlMigration } from "./index.js";

/**
 * Client transaction ids are kept in memory only up to a bounded size; older ones within the 24-hour window are
 * looked up here, so a retried send is never stored twice however busy the server is.
 */
export const m007_transaction_ids: SqlMigration = () => [
  `CREATE INDEX events_txn ON events (sender, txn_id) WHERE txn_id IS NOT NULL`,
];
