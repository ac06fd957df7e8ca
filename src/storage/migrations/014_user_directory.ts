import type { SqlMigration } from "./index.js";

/**
 * The user directory (POST /user_directory/search; docs/user_directory.md), in Synapse's shape:
 * - `user_directory`: one row per searchable user (local users, and remote users sharing a room with a local one),
 *   with the profile the directory shows (the global profile for local users; never a private room's nickname).
 * - `user_directory_tokens`: the search index, one row per lowercased word of the user's localpart, display name and
 *   domain; a search is a prefix range scan on `token`. PostgreSQL compares it byte-wise (COLLATE "C") as SQLite
 *   does, so the same range query serves both engines.
 * - `users_in_public_rooms`: who is joined to a public (join_rules public or world_readable) room.
 * - `users_who_share_private_rooms`: (local user, other user, room) for each private room they are both joined to.
 *   Only pairs with a local `user_id` are stored: only local users search.
 * - `user_directory_stream_pos`: the event stream position the tables reflect (absent: not built yet).
 */
export const m014_user_directory: SqlMigration = (engine) => [
  `CREATE TABLE user_directory (
    user_id TEXT NOT NULL PRIMARY KEY,
    display_name TEXT,
    avatar_url TEXT
  )`,
  `CREATE TABLE user_directory_tokens (
    token TEXT ${engine === "postgres" ? `COLLATE "C" ` : ""}NOT NULL,
    user_id TEXT NOT NULL,
    kind SMALLINT NOT NULL,
    PRIMARY KEY (token, user_id, kind)
  )`,
  `CREATE INDEX user_directory_tokens_user ON user_directory_tokens (user_id, token)`,
  `CREATE TABLE users_in_public_rooms (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    PRIMARY KEY (user_id, room_id)
  )`,
  `CREATE INDEX users_in_public_rooms_room ON users_in_public_rooms (room_id)`,
  `CREATE TABLE users_who_share_private_rooms (
    user_id TEXT NOT NULL,
    other_user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    PRIMARY KEY (user_id, other_user_id, room_id)
  )`,
  `CREATE INDEX users_who_share_private_rooms_other ON users_who_share_private_rooms (other_user_id)`,
  `CREATE INDEX users_who_share_private_rooms_room ON users_who_share_private_rooms (room_id)`,
  `CREATE TABLE user_directory_stream_pos (
    id SMALLINT NOT NULL PRIMARY KEY,
    stream_id BIGINT NOT NULL
  )`,
];
