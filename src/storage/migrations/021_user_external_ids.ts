import type { SqlMigration } from "./index.js";

/**
 * Single sign-on (CAS now, OpenID Connect later): which local user an identity provider's user is, as Synapse's
 * `user_external_ids`. One provider's user maps to one local user; a local user may have several.
 */
export const m021_user_external_ids: SqlMigration = () => [
  `CREATE TABLE user_external_ids (
    auth_provider TEXT NOT NULL,
    external_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY (auth_provider, external_id)
  )`,
  `CREATE INDEX user_external_ids_user ON user_external_ids (user_id)`,
];
