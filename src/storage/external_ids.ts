/** Identity providers' users mapped to local users (single sign-on). */
import type { Kysely } from "kysely";
import type { Schema } from "./schema.js";

export interface ExternalId {
  authProvider: string;
  externalId: string;
}

export class ExternalIdStore {
  constructor(private readonly db: Kysely<Schema>) {}

  async userFor(authProvider: string, externalId: string): Promise<string | undefined> {
    const r = await this.db.selectFrom("user_external_ids").select("user_id").where("auth_provider", "=", authProvider).where("external_id", "=", externalId).executeTakeFirst();
    return r?.user_id;
  }

  /** Maps the provider's user to `userId`; false when it is already mapped (to anyone). */
  async add(authProvider: string, externalId: string, userId: string): Promise<boolean> {
    const r = await this.db.insertInto("user_external_ids").values({ auth_provider: authProvider, external_id: externalId, user_id: userId }).onConflict((oc) => oc.doNothing()).executeTakeFirst();
    return Number(r.numInsertedOrUpdatedRows ?? 0) > 0;
  }

  async forUser(userId: string): Promise<ExternalId[]> {
    const rows = await this.db.selectFrom("user_external_ids").select(["auth_provider", "external_id"]).where("user_id", "=", userId).execute();
    return rows.map((r) => ({ authProvider: r.auth_provider, externalId: r.external_id }));
  }
}
