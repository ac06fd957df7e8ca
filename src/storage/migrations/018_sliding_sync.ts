import type { SqlMigration } from "./index.js";

/**
 * Simplified Sliding Sync (MSC4186) connections (services/sync/sliding_connections.ts):
 * - `sliding_sync_connections`: one per (user, device, conn_id); `base_position` is the newest `pos` a request used,
 *   into which older positions are folded;
 * - `sliding_sync_positions`: the `pos` tokens handed out, each with the stream token it stands for and the sticky
 *   request config; valid while it is the base or a child of it (a retried request with the same `pos`);
 * - `sliding_sync_rooms`: per room, what a position's response (or an earlier one) sent: up to which stream position,
 *   with which timeline limit and required_state; a position holds rows only for the rooms its response changed.
 * - `events_bump`: the newest event of the bump types per room (the room list's order).
 */
export const m018_sliding_sync: SqlMigration = () => [
  `CREATE TABLE sliding_sync_connections (
    id {{id}},
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    conn_id TEXT NOT NULL,
    base_position BIGINT NOT NULL DEFAULT 0,
    created_ts BIGINT NOT NULL,
    last_used_ts BIGINT NOT NULL
  )`,
  `CREATE UNIQUE INDEX sliding_sync_connections_key ON sliding_sync_connections (user_id, device_id, conn_id)`,
  `CREATE TABLE sliding_sync_positions (
    id {{id}},
    connection_id BIGINT NOT NULL,
    parent_id BIGINT NOT NULL,
    token TEXT NOT NULL,
    config TEXT NOT NULL,
    created_ts BIGINT NOT NULL
  )`,
  `CREATE INDEX sliding_sync_positions_connection ON sliding_sync_positions (connection_id, id)`,
  `CREATE TABLE sliding_sync_rooms (
    connection_id BIGINT NOT NULL,
    room_id TEXT NOT NULL,
    position_id BIGINT NOT NULL,
    membership TEXT NOT NULL,
    sent_stream BIGINT NOT NULL,
    timeline_limit INTEGER NOT NULL,
    required_state TEXT NOT NULL,
    PRIMARY KEY (connection_id, room_id, position_id)
  )`,
  `CREATE INDEX events_bump ON events (room_id, stream_ordering) WHERE type IN ('m.room.create', 'm.room.message', 'm.room.encrypted', 'm.sticker', 'm.call.invite', 'm.poll.start', 'm.beacon_info')`,
];
