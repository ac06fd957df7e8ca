/** Single-use login tokens (`m.login.token`), by the SHA-256 of the token. */
import type { Kysely, Selectable } from "kysely";
import type { LoginTokensTable, Schema } from "./schema.js";

export type LoginTokenRow = Selectable<LoginTokensTable>;

export class LoginTokenStore {
  constructor(private readonly db: Kysely<Schema>) {}

  async insert(row: LoginTokenRow): Promise<void> {
    await this.db.insertInto("login_tokens").values(row).execute();
  }

  /**
   * Marks the token used and returns it, or undefined when it is unknown or was already used. The conditional
   * update is the single-use guarantee: of two concurrent logins (even in two processes) only one changes the row.
   */
  async markUsed(tokenHash: string, now: number): Promise<{ row: LoginTokenRow | undefined; alreadyUsed: boolean }> {
    const res = await this.db.updateTable("login_tokens").set({ used_ts: now }).where("token_hash", "=", tokenHash).where("used_ts", "is", null).executeTakeFirst();
    const row = await this.db.selectFrom("login_tokens").selectAll().where("token_hash", "=", tokenHash).executeTakeFirst();
    return { row, alreadyUsed: row !== undefined && Number(res.numUpdatedRows) === 0 };
  }

  /** Drops tokens that expired before `ts` (used or not). */
  async deleteExpiredBefore(ts: number): Promise<void> {
    await this.db.deleteFrom("login_tokens").where("expiry_ts", "<", ts).execute();
  }
}
