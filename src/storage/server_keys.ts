/**
 * Other servers' signing keys, as fetched directly or through a notary (see migration 003). A key that is fetched
 * again keeps the answer that lets it be used the longest (as Synapse does), so an older or slower notary answer
 * cannot shorten what a fresher one established.
 */
import type { Kysely } from "kysely";
import type { Schema, ServerSigningKeysTable } from "./schema.js";

export type ServerKeyRow = ServerSigningKeysTable;

export class ServerKeyStore {
  constructor(private readonly db: Kysely<Schema>) {}

  /** Every key we hold for a server. */
  async getKeys(serverName: string): Promise<ServerKeyRow[]> {
    return this.db.selectFrom("server_signing_keys").selectAll().where("server_name", "=", serverName).execute();
  }

  /** Inserts keys, replacing a stored one only when the new row is valid at least as long. */
  async upsertKeys(rows: readonly ServerKeyRow[]): Promise<void> {
    for (const row of rows) {
      await this.db
        .insertInto("server_signing_keys")
        .values(row)
        .onConflict((oc) =>
          oc
            .columns(["server_name", "key_id"])
            .doUpdateSet((eb) => ({
              verify_key: eb.ref("excluded.verify_key"),
              valid_until_ts: eb.ref("excluded.valid_until_ts"),
              from_server: eb.ref("excluded.from_server"),
              ts_added_ms: eb.ref("excluded.ts_added_ms"),
              key_json: eb.ref("excluded.key_json"),
            }))
            .where((eb) => eb(eb.ref("excluded.valid_until_ts"), ">=", eb.ref("server_signing_keys.valid_until_ts"))),
        )
        .execute();
    }
  }
}
