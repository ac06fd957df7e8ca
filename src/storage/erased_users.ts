/** Users erased at deactivation (`erase: true`). */
import type { Kysely } from "kysely";
import type { Schema } from "./schema.js";

export class ErasedUserStore {
  constructor(private readonly db: Kysely<Schema>) {}

  async add(userId: string): Promise<void> {
    await this.db.insertInto("erased_users").values({ user_id: userId }).onConflict((oc) => oc.doNothing()).execute();
  }

  async all(): Promise<string[]> {
    return (await this.db.selectFrom("erased_users").select("user_id").execute()).map((r) => r.user_id);
  }
}
