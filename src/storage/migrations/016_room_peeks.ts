import type { SqlMigration } from "./index.js";

/**
 * Peeking (MSC2753, POST /peek): the world-readable rooms a device follows in /sync without joining. `id` orders
 * peeks as a sync stream (a room peeked after a token comes in full in the next sync).
 */
export const m016_room_peeks: SqlMigration = () => [
  `CREATE TABLE room_peeks (
    id {{id}},
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    room_id TEXT NOT NULL
  )`,
  `CREATE UNIQUE INDEX room_peeks_device_room ON room_peeks (user_id, device_id, room_id)`,
];
