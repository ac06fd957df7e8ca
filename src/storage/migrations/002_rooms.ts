import type { SqlMigration } from "./index.js";

/**
 * Rooms and events. State is stored as state groups: each group holds only its differences from an ancestor group
 * (see docs/state-storage.md), so storage per state change does not grow with the room's size.
 */
export const m002_rooms: SqlMigration = () => [
  `CREATE TABLE rooms (
    room_id TEXT PRIMARY KEY,
    room_version TEXT NOT NULL,
    creator TEXT,
    is_public INTEGER NOT NULL DEFAULT 0,
    created_ts BIGINT NOT NULL,
    current_state_group BIGINT,
    forward_extremities TEXT NOT NULL DEFAULT '[]'
  )`,
  // Every event we hold. stream_ordering is the global order events became visible here (negative for backfilled
  // history); depth is the DAG's topological order. json is the PDU exactly as signed (no "unsigned"); its
  // prev_events and auth_events are read from it, so no edge tables add index writes to every event. txn_* record
  // the sending device's transaction id (spec "Transaction identifiers", unsigned.transaction_id).
  `CREATE TABLE events (
    stream_ordering {{int_pk}},
    event_id TEXT NOT NULL UNIQUE,
    room_id TEXT NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT,
    sender TEXT NOT NULL,
    depth BIGINT NOT NULL,
    origin_server_ts BIGINT NOT NULL,
    received_ts BIGINT NOT NULL,
    json TEXT NOT NULL,
    state_group BIGINT,
    replaces_state TEXT,
    outlier INTEGER NOT NULL DEFAULT 0,
    soft_failed INTEGER NOT NULL DEFAULT 0,
    rejected_reason TEXT,
    redacted_by TEXT,
    contains_url INTEGER NOT NULL DEFAULT 0,
    txn_device_id TEXT,
    txn_scope TEXT,
    txn_id TEXT
  )`,
  `CREATE INDEX events_room_stream ON events (room_id, stream_ordering)`,
  `CREATE INDEX events_room_topo ON events (room_id, depth, stream_ordering)`,
  `CREATE INDEX events_room_ts ON events (room_id, origin_server_ts)`,
  // State groups: a group's state is its ancestors' deltas applied from the root down, then its own.
  `CREATE TABLE state_groups (
    id {{int_pk}},
    room_id TEXT NOT NULL,
    event_id TEXT,
    prev_group BIGINT,
    chain_depth BIGINT NOT NULL
  )`,
  `CREATE TABLE state_group_entries (
    state_group BIGINT NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id TEXT,
    PRIMARY KEY (state_group, type, state_key)
  )`,
  // The room's current state, for fast membership and state queries.
  `CREATE TABLE current_state_events (
    room_id TEXT NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id TEXT NOT NULL,
    membership TEXT,
    PRIMARY KEY (room_id, type, state_key)
  )`,
  `CREATE INDEX current_state_member ON current_state_events (state_key, type, membership)`,
  // Every membership event, for membership at a point in the stream (sync, visibility).
  `CREATE TABLE room_memberships (
    event_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    membership TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    displayname TEXT,
    avatar_url TEXT
  )`,
  `CREATE INDEX room_memberships_user ON room_memberships (user_id, room_id, stream_ordering)`,
  `CREATE TABLE redactions (
    event_id TEXT PRIMARY KEY,
    redacts TEXT NOT NULL,
    room_id TEXT NOT NULL
  )`,
  `CREATE INDEX redactions_redacts ON redactions (redacts)`,
  `CREATE TABLE event_relations (
    event_id TEXT PRIMARY KEY,
    relates_to_id TEXT NOT NULL,
    rel_type TEXT NOT NULL,
    room_id TEXT NOT NULL,
    aggregation_key TEXT
  )`,
  `CREATE INDEX event_relations_target ON event_relations (relates_to_id, rel_type)`,
  `CREATE TABLE threads (
    room_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    latest_event_id TEXT NOT NULL,
    latest_stream_ordering BIGINT NOT NULL,
    PRIMARY KEY (room_id, thread_id)
  )`,
  `CREATE INDEX threads_room_latest ON threads (room_id, latest_stream_ordering)`,
  `CREATE TABLE room_aliases (
    room_alias TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    creator TEXT NOT NULL,
    created_ts BIGINT NOT NULL
  )`,
  `CREATE INDEX room_aliases_room ON room_aliases (room_id)`,
  `CREATE TABLE forgotten_rooms (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    PRIMARY KEY (user_id, room_id)
  )`,
  `CREATE TABLE receipts (
    room_id TEXT NOT NULL,
    receipt_type TEXT NOT NULL,
    user_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    data TEXT NOT NULL,
    stream_id BIGINT NOT NULL,
    PRIMARY KEY (room_id, receipt_type, user_id, thread_id)
  )`,
  `CREATE INDEX receipts_stream ON receipts (stream_id)`,
  `CREATE INDEX receipts_room_stream ON receipts (room_id, stream_id)`,
  `CREATE TABLE presence (
    user_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    status_msg TEXT,
    last_active_ts BIGINT NOT NULL,
    last_user_sync_ts BIGINT NOT NULL,
    currently_active INTEGER NOT NULL DEFAULT 0,
    stream_id BIGINT NOT NULL
  )`,
  `CREATE INDEX presence_stream ON presence (stream_id)`,
];
