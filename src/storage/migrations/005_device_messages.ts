import type { SqlMigration } from "./index.js";

/**
 * Send-to-device messaging and device lists (client-server "Send-to-Device messaging", server-server "Device
 * Management"). Messages wait in a per-device inbox until the device acknowledges them; messages and device-list
 * updates for other servers wait in a durable outbox until the destination acknowledged the transaction carrying
 * them.
 */
export const m005_device_messages: SqlMigration = () => [
  // One row per message per device, numbered on the to-device stream. `message` is the event as /sync returns it
  // (`sender`, `type`, `content`).
  `CREATE TABLE device_inbox (
    stream_id {{int_pk}},
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    message TEXT NOT NULL
  )`,
  `CREATE INDEX device_inbox_device ON device_inbox (user_id, device_id, stream_id)`,
  // Stream positions that must survive their rows being deleted (the to-device stream: acknowledged messages go,
  // but tokens clients hold must stay below every new id).
  `CREATE TABLE stream_positions (
    stream TEXT PRIMARY KEY,
    position BIGINT NOT NULL
  )`,
  // PUT /sendToDevice transaction ids, per device (or access token for a device-less one): a retry sends nothing twice.
  `CREATE TABLE device_message_txns (
    user_id TEXT NOT NULL,
    requester TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, requester, txn_id)
  )`,
  `CREATE INDEX device_message_txns_ts ON device_message_txns (created_ts)`,
  // m.direct_to_device EDUs received, by the spec's "message_id, used for idempotence", per origin.
  `CREATE TABLE device_federation_inbox (
    origin TEXT NOT NULL,
    message_id TEXT NOT NULL,
    received_ts BIGINT NOT NULL,
    PRIMARY KEY (origin, message_id)
  )`,
  `CREATE INDEX device_federation_inbox_ts ON device_federation_inbox (received_ts)`,
  // EDUs that must reach a destination (m.direct_to_device, m.device_list_update), deleted once it acknowledged them.
  `CREATE TABLE federation_outbox (
    id {{id}},
    destination TEXT NOT NULL,
    edu TEXT NOT NULL,
    created_ts BIGINT NOT NULL
  )`,
  `CREATE INDEX federation_outbox_destination ON federation_outbox (destination, id)`,
  // The device-list stream: a user's devices changed (local users and remote ones, from m.device_list_update and
  // m.signing_key_update). `device_id` is "" for a change not about one device (cross-signing keys).
  `CREATE TABLE device_list_changes (
    stream_id {{int_pk}},
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL
  )`,
  `CREATE INDEX device_list_changes_user ON device_list_changes (user_id, stream_id)`,
];
