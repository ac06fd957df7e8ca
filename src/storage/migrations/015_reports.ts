import type { SqlMigration } from "./index.js";

/**
 * Reporting content and account moderation (issue 15):
 * - `event_reports`, `room_reports`, `user_reports`: what users reported, in Synapse's shape, for the admin API to come;
 * - `users.suspended` (spec "Account suspension"; `users.locked` exists since 001);
 * - `login_tokens`: single-use `m.login.token` tokens (POST /login/get_token now, SSO later), stored hashed.
 */
export const m015_reports: SqlMigration = () => [
  `CREATE TABLE event_reports (
    id {{id}},
    received_ts BIGINT NOT NULL,
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    reason TEXT,
    content TEXT NOT NULL
  )`,
  `CREATE INDEX event_reports_room_id ON event_reports (room_id)`,
  `CREATE TABLE room_reports (
    id {{id}},
    received_ts BIGINT NOT NULL,
    room_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    reason TEXT NOT NULL
  )`,
  `CREATE INDEX room_reports_room_id ON room_reports (room_id)`,
  `CREATE TABLE user_reports (
    id {{id}},
    received_ts BIGINT NOT NULL,
    target_user_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    reason TEXT NOT NULL
  )`,
  `CREATE INDEX user_reports_target_user_id ON user_reports (target_user_id)`,
  `ALTER TABLE users ADD COLUMN suspended INTEGER NOT NULL DEFAULT 0`,
  `CREATE TABLE login_tokens (
    token_hash TEXT NOT NULL PRIMARY KEY,
    user_id TEXT NOT NULL,
    expiry_ts BIGINT NOT NULL,
    used_ts BIGINT,
    auth_provider_id TEXT,
    auth_provider_session_id TEXT
  )`,
  `CREATE INDEX login_tokens_expiry_ts ON login_tokens (expiry_ts)`,
];
