import type { SqlMigration } from "./index.js";

/**
 * Application services: per service, the events stream position its transactions cover and the last transaction id
 * it was given; the transactions built and not yet acknowledged (kept so a retry, even after a restart, resends the
 * same body under the same id); and the rooms it published in its own networks' room directories.
 */
export const m022_appservices: SqlMigration = () => [
  `CREATE TABLE appservice_state (
    as_id TEXT NOT NULL PRIMARY KEY,
    stream_position BIGINT NOT NULL,
    last_txn_id BIGINT NOT NULL
  )`,
  `CREATE TABLE appservice_txns (
    as_id TEXT NOT NULL,
    txn_id BIGINT NOT NULL,
    body TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (as_id, txn_id)
  )`,
  `CREATE TABLE appservice_room_list (
    appservice_id TEXT NOT NULL,
    network_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    PRIMARY KEY (appservice_id, network_id, room_id)
  )`,
];
