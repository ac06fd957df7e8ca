import type { SqlMigration } from "./index.js";

/**
 * Federation, part one: the signing keys of other servers. One row per (server, key id): the public key, until when
 * it may be used, and the whole key response that vouched for it (signed by its server, and by the notary when it
 * came through one), which we serve again when acting as a notary.
 */
export const m003_federation: SqlMigration = () => [
  `CREATE TABLE server_signing_keys (
    server_name TEXT NOT NULL,
    key_id TEXT NOT NULL,
    verify_key TEXT NOT NULL,
    valid_until_ts BIGINT NOT NULL,
    from_server TEXT NOT NULL,
    ts_added_ms BIGINT NOT NULL,
    key_json TEXT NOT NULL,
    PRIMARY KEY (server_name, key_id)
  )`,
];
