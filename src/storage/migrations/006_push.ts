import type { SqlMigration } from "./index.js";

/**
 * Push notifications (client-server "Push Notifications", the Push Gateway API): users' push rules, their pushers,
 * the outcome of push rules per event, and how far each user has read.
 *
 * Outcomes are stored without a row per member and event: most members of a room share the server-default rules
 * and are not named by an event, so they share one outcome (the "bystanders"), stored once per event in
 * `event_push` when it notifies them. Members whose outcome differs — named in the event, or with rules of their
 * own for that room — get a row of their own in `event_push_user`, which replaces the shared one for them.
 */
export const m006_push: SqlMigration = () => [
  // A user's own rules and their changes to server-default rules (core/push UserPushRules as JSON); stream_id is on
  // the account data stream, so /sync delivers m.push_rules when it moves.
  `CREATE TABLE push_rules (
    user_id TEXT PRIMARY KEY,
    rules TEXT NOT NULL,
    stream_id BIGINT NOT NULL
  )`,
  `CREATE INDEX push_rules_stream ON push_rules (stream_id)`,
  `CREATE TABLE pushers (
    id {{id}},
    user_id TEXT NOT NULL,
    device_id TEXT,
    access_token_id BIGINT,
    kind TEXT NOT NULL,
    app_id TEXT NOT NULL,
    app_display_name TEXT NOT NULL,
    device_display_name TEXT NOT NULL,
    pushkey TEXT NOT NULL,
    pushkey_ts BIGINT NOT NULL,
    lang TEXT NOT NULL,
    data TEXT NOT NULL,
    profile_tag TEXT NOT NULL,
    last_stream_ordering BIGINT NOT NULL,
    failing_since BIGINT
  )`,
  `CREATE UNIQUE INDEX pushers_key ON pushers (app_id, pushkey, user_id)`,
  `CREATE INDEX pushers_user ON pushers (user_id)`,
  // The bystanders' outcome of an event that notifies them (actions as JSON, `highlight` 0/1), with what counting
  // and GET /notifications need: the thread ('main' or the thread root's id) and the sender (never notified).
  `CREATE TABLE event_push (
    stream_ordering BIGINT PRIMARY KEY,
    event_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    actions TEXT NOT NULL,
    highlight SMALLINT NOT NULL,
    ts BIGINT NOT NULL
  )`,
  `CREATE INDEX event_push_room ON event_push (room_id, stream_ordering)`,
  `CREATE INDEX event_push_thread ON event_push (room_id, thread_id, stream_ordering)`,
  // A member's own outcome where it differs from the bystanders' (notif 0: not notified although bystanders are).
  `CREATE TABLE event_push_user (
    user_id TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    event_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    actions TEXT NOT NULL,
    notif SMALLINT NOT NULL,
    highlight SMALLINT NOT NULL,
    ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, stream_ordering)
  )`,
  `CREATE INDEX event_push_user_thread ON event_push_user (user_id, room_id, thread_id, stream_ordering)`,
  // How far a user has read in a room, per thread: '' for unthreaded receipts (and the join), 'main', or a thread
  // root. Notifications at or before the position are read. Only ever moves forward.
  `CREATE TABLE push_read_positions (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, thread_id)
  )`,
];
