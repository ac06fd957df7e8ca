import type { SqlMigration } from "./index.js";

/**
 * Server-side key backups (client-server "Server-side key backups"): a user's backup versions and the encrypted
 * megolm session keys stored in each. Independent of the other E2EE tables: nothing here refers to them.
 *
 * A deleted version stays as a row with `deleted = 1` (and its auth_data emptied), so version numbers are never
 * reused and a second DELETE of it still succeeds, as the spec asks. `etag` counts changes to the version's keys.
 */
export const m009_key_backup: SqlMigration = () => [
  `CREATE TABLE key_backup_versions (
    user_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    algorithm TEXT NOT NULL,
    auth_data TEXT NOT NULL,
    etag BIGINT NOT NULL,
    deleted SMALLINT NOT NULL,
    PRIMARY KEY (user_id, version)
  )`,
  // One row per backed-up session (KeyBackupData); session_data is the client's opaque JSON object as text.
  `CREATE TABLE key_backup_sessions (
    user_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    room_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    first_message_index BIGINT NOT NULL,
    forwarded_count BIGINT NOT NULL,
    is_verified SMALLINT NOT NULL,
    session_data TEXT NOT NULL,
    PRIMARY KEY (user_id, version, room_id, session_id)
  )`,
];
