import type { SqlMigration } from "./index.js";

/**
 * Third-party identifiers (spec "Adding Account Administrative Contact Information"): validation sessions started by
 * the requestToken endpoints and their emailed tokens (both secrets kept only as SHA-256 hashes), the addresses bound
 * to accounts, and which identity servers each was bound to through us (so deletion and deactivation can unbind).
 */
export const m019_threepids: SqlMigration = () => [
  `CREATE TABLE threepid_validation_sessions (
    session_id TEXT NOT NULL PRIMARY KEY,
    medium TEXT NOT NULL,
    address TEXT NOT NULL,
    client_secret_hash TEXT NOT NULL,
    last_send_attempt BIGINT NOT NULL,
    created_ts BIGINT NOT NULL,
    validated_at BIGINT
  )`,
  `CREATE UNIQUE INDEX threepid_validation_sessions_secret ON threepid_validation_sessions (medium, address, client_secret_hash)`,
  `CREATE TABLE threepid_validation_tokens (
    token_hash TEXT NOT NULL PRIMARY KEY,
    session_id TEXT NOT NULL,
    next_link TEXT,
    expires_ts BIGINT NOT NULL
  )`,
  `CREATE INDEX threepid_validation_tokens_session ON threepid_validation_tokens (session_id)`,
  `CREATE TABLE user_threepids (
    user_id TEXT NOT NULL,
    medium TEXT NOT NULL,
    address TEXT NOT NULL,
    validated_at BIGINT NOT NULL,
    added_at BIGINT NOT NULL,
    PRIMARY KEY (medium, address)
  )`,
  `CREATE INDEX user_threepids_user ON user_threepids (user_id)`,
  `CREATE TABLE user_threepid_id_server (
    user_id TEXT NOT NULL,
    medium TEXT NOT NULL,
    address TEXT NOT NULL,
    id_server TEXT NOT NULL,
    PRIMARY KEY (user_id, medium, address, id_server)
  )`,
];
