import type { SqlMigration } from "./index.js";

/**
 * Dehydrated devices (MSC3814): at most one per user, a device (a row in `devices`, with keys and an inbox like any
 * other, but never an access token) whose `device_data` — the client's encrypted pickle, opaque to us — waits for
 * the user's next login to rehydrate it.
 */
export const m010_dehydrated_devices: SqlMigration = () => [
  `CREATE TABLE dehydrated_devices (
    user_id TEXT NOT NULL PRIMARY KEY,
    device_id TEXT NOT NULL,
    device_data TEXT NOT NULL,
    created_ts BIGINT NOT NULL
  )`,
];
