import type { SqlMigration } from "./index.js";

/**
 * End-to-end encryption keys (client-server "End-to-End Encryption", server-server "End-to-End Encryption" and
 * "Device Management"). The server never sees plaintext; it stores, checks and routes public keys. Key objects are
 * kept as the JSON the client signed, so what others fetch verifies byte for byte.
 */
export const m008_e2e_keys: SqlMigration = () => [
  // A local device's identity keys (`device_keys` of POST /keys/upload), without signatures added by others.
  `CREATE TABLE e2e_device_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    key_json TEXT NOT NULL,
    ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id)
  )`,
  // The pool of one-time keys per device; a claim deletes the key it hands out.
  `CREATE TABLE e2e_one_time_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id TEXT NOT NULL,
    key_json TEXT NOT NULL,
    ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, algorithm, key_id)
  )`,
  // One fallback key per device and algorithm: handed out (and left in place) when the pool is empty.
  `CREATE TABLE e2e_fallback_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id TEXT NOT NULL,
    key_json TEXT NOT NULL,
    used SMALLINT NOT NULL,
    PRIMARY KEY (user_id, device_id, algorithm)
  )`,
  // Current cross-signing keys per user and type (master, self_signing, user_signing); local users, and remote users
  // as their server reported them (never user_signing: that one is private to its owner).
  `CREATE TABLE e2e_cross_signing_keys (
    user_id TEXT NOT NULL,
    key_type TEXT NOT NULL,
    key_json TEXT NOT NULL,
    ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, key_type)
  )`,
  // Signatures uploaded through POST /keys/signatures/upload, attached to the signed key when it is fetched.
  // target_key_id is a device id or a cross-signing public key; signer_key_id as in "signatures" (ed25519:…).
  `CREATE TABLE e2e_cross_signing_signatures (
    target_user_id TEXT NOT NULL,
    target_key_id TEXT NOT NULL,
    signer_user_id TEXT NOT NULL,
    signer_key_id TEXT NOT NULL,
    signature TEXT NOT NULL,
    PRIMARY KEY (target_user_id, target_key_id, signer_user_id, signer_key_id)
  )`,
  // Remote users' device lists, as their server told us (m.device_list_update, GET /user/devices). A user has a row
  // here once resynced; stream_id is the newest update applied; stale = 1 when an update could not be applied and
  // the next query must resync.
  `CREATE TABLE device_lists_remote_users (
    user_id TEXT PRIMARY KEY,
    stream_id BIGINT NOT NULL,
    stale SMALLINT NOT NULL
  )`,
  `CREATE TABLE device_lists_remote_devices (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    display_name TEXT,
    key_json TEXT,
    PRIMARY KEY (user_id, device_id)
  )`,
];
