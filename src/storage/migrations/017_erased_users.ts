import type { SqlMigration } from "./index.js";

/**
 * Account erasure (deactivation with `erase: true`, spec "Account deactivation"): as Synapse's `erased_users`, the
 * users whose events are shown redacted to those who were not in the room when they were sent, and to other servers.
 */
export const m017_erased_users: SqlMigration = () => [`CREATE TABLE erased_users (user_id TEXT NOT NULL PRIMARY KEY)`];
