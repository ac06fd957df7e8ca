import type { SqlMigration } from "./index.js";

export const m001_accounts: SqlMigration = () => [
  `CREATE TABLE users (
    user_id TEXT PRIMARY KEY,
    password_hash TEXT,
    created_ts BIGINT NOT NULL,
    is_admin INTEGER NOT NULL DEFAULT 0,
    is_guest INTEGER NOT NULL DEFAULT 0,
    deactivated INTEGER NOT NULL DEFAULT 0,
    locked INTEGER NOT NULL DEFAULT 0,
    shadow_banned INTEGER NOT NULL DEFAULT 0,
    user_type TEXT,
    appservice_id TEXT
  )`,
  `CREATE TABLE profiles (
    user_id TEXT NOT NULL,
    field TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (user_id, field)
  )`,
  `CREATE TABLE devices (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    display_name TEXT,
    created_ts BIGINT NOT NULL,
    last_seen_ts BIGINT,
    last_seen_ip TEXT,
    last_seen_user_agent TEXT,
    PRIMARY KEY (user_id, device_id)
  )`,
  `CREATE TABLE access_tokens (
    id {{id}},
    token_hash TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    device_id TEXT,
    created_ts BIGINT NOT NULL,
    valid_until_ms BIGINT,
    refresh_token_id BIGINT,
    puppets_user_id TEXT,
    used INTEGER NOT NULL DEFAULT 0
  )`,
  `CREATE INDEX access_tokens_user_device ON access_tokens (user_id, device_id)`,
  `CREATE TABLE refresh_tokens (
    id {{id}},
    token_hash TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    expiry_ts BIGINT,
    ultimate_session_expiry_ts BIGINT,
    next_token_id BIGINT
  )`,
  `CREATE INDEX refresh_tokens_user_device ON refresh_tokens (user_id, device_id)`,
  `CREATE INDEX refresh_tokens_next ON refresh_tokens (next_token_id)`,
  `CREATE INDEX access_tokens_refresh ON access_tokens (refresh_token_id)`,
  `CREATE TABLE uia_sessions (
    session_id TEXT PRIMARY KEY,
    created_ts BIGINT NOT NULL,
    uri TEXT NOT NULL,
    method TEXT NOT NULL,
    user_id TEXT,
    clientdict TEXT NOT NULL,
    serverdict TEXT NOT NULL,
    completed TEXT NOT NULL
  )`,
  `CREATE TABLE registration_tokens (
    token TEXT PRIMARY KEY,
    uses_allowed INTEGER,
    pending INTEGER NOT NULL DEFAULT 0,
    completed INTEGER NOT NULL DEFAULT 0,
    expiry_time BIGINT
  )`,
  `CREATE TABLE account_data (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    type TEXT NOT NULL,
    content TEXT NOT NULL,
    stream_id BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, type)
  )`,
  `CREATE INDEX account_data_user_stream ON account_data (user_id, stream_id)`,
  `CREATE TABLE filters (
    user_id TEXT NOT NULL,
    filter_id BIGINT NOT NULL,
    filter_json TEXT NOT NULL,
    PRIMARY KEY (user_id, filter_id)
  )`,
];
