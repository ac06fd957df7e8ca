import { sql, type Kysely } from "kysely";
import type { RegistrationTokensTable, Schema } from "./schema.js";

export type RegistrationTokenRow = RegistrationTokensTable;

export class RegistrationTokenStore {
  constructor(private readonly db: Kysely<Schema>) {}

  async get(token: string): Promise<RegistrationTokenRow | undefined> {
    return this.db.selectFrom("registration_tokens").selectAll().where("token", "=", token).executeTakeFirst();
  }

  async insert(row: RegistrationTokenRow): Promise<boolean> {
    const r = await this.db.insertInto("registration_tokens").values(row).onConflict((oc) => oc.column("token").doNothing()).executeTakeFirst();
    return Number(r.numInsertedOrUpdatedRows ?? 0) > 0;
  }

  async list(): Promise<RegistrationTokenRow[]> {
    return this.db.selectFrom("registration_tokens").selectAll().orderBy("token").execute();
  }

  async delete(token: string): Promise<boolean> {
    const r = await this.db.deleteFrom("registration_tokens").where("token", "=", token).executeTakeFirst();
    return Number(r.numDeletedRows) > 0;
  }

  /** Reserves a use of the token for a registration in progress (Synapse's `pending`). */
  async addPending(token: string, delta: 1 | -1): Promise<void> {
    await this.db.updateTable("registration_tokens").set({ pending: sql`pending + ${delta}` }).where("token", "=", token).execute();
  }

  /** A registration using the token finished: move one use from pending to completed. */
  async complete(token: string): Promise<void> {
    await this.db
      .updateTable("registration_tokens")
      .set({ pending: sql`CASE WHEN pending > 0 THEN pending - 1 ELSE 0 END`, completed: sql`completed + 1` })
      .where("token", "=", token)
      .execute();
  }
}
