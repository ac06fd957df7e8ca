/**
 * Third-party identifiers: validation sessions and their tokens (secrets only as SHA-256 hashes), the 3PIDs bound to
 * accounts, and the identity servers each was bound to through us.
 */
import type { Kysely, Selectable } from "kysely";
import type { Schema, ThreepidValidationSessionsTable, ThreepidValidationTokensTable, UserThreepidsTable } from "./schema.js";

export type ValidationSessionRow = Selectable<ThreepidValidationSessionsTable>;
export type ValidationTokenRow = Selectable<ThreepidValidationTokensTable>;
export type UserThreepidRow = Selectable<UserThreepidsTable>;

export class ThreepidStore {
  constructor(private readonly db: Kysely<Schema>) {}

  async sessionBySecret(medium: string, address: string, clientSecretHash: string): Promise<ValidationSessionRow | undefined> {
    return this.db
      .selectFrom("threepid_validation_sessions")
      .selectAll()
      .where("medium", "=", medium)
      .where("address", "=", address)
      .where("client_secret_hash", "=", clientSecretHash)
      .executeTakeFirst();
  }

  async deleteSessionBySecret(medium: string, address: string, clientSecretHash: string): Promise<void> {
    await this.db
      .deleteFrom("threepid_validation_sessions")
      .where("medium", "=", medium)
      .where("address", "=", address)
      .where("client_secret_hash", "=", clientSecretHash)
      .execute();
  }

  async session(sessionId: string): Promise<ValidationSessionRow | undefined> {
    return this.db.selectFrom("threepid_validation_sessions").selectAll().where("session_id", "=", sessionId).executeTakeFirst();
  }

  async insertSession(row: ValidationSessionRow): Promise<void> {
    await this.db.insertInto("threepid_validation_sessions").values(row).execute();
  }

  async setSendAttempt(sessionId: string, attempt: number): Promise<void> {
    await this.db.updateTable("threepid_validation_sessions").set({ last_send_attempt: attempt }).where("session_id", "=", sessionId).execute();
  }

  async insertToken(row: ValidationTokenRow): Promise<void> {
    await this.db.insertInto("threepid_validation_tokens").values(row).execute();
  }

  async token(tokenHash: string): Promise<ValidationTokenRow | undefined> {
    return this.db.selectFrom("threepid_validation_tokens").selectAll().where("token_hash", "=", tokenHash).executeTakeFirst();
  }

  /**
   * Marks the session validated and drops its tokens (each is single-use, and a validated session needs none).
   * False when the token was already used: the delete is the single-use guarantee.
   */
  async validate(sessionId: string, tokenHash: string, now: number): Promise<boolean> {
    const res = await this.db.deleteFrom("threepid_validation_tokens").where("token_hash", "=", tokenHash).executeTakeFirst();
    if (Number(res.numDeletedRows) === 0) return false;
    await this.db.updateTable("threepid_validation_sessions").set({ validated_at: now }).where("session_id", "=", sessionId).where("validated_at", "is", null).execute();
    await this.db.deleteFrom("threepid_validation_tokens").where("session_id", "=", sessionId).execute();
    return true;
  }

  /** Drops sessions created before `ts` and tokens that expired before it. */
  async deleteOlderThan(ts: number): Promise<void> {
    await this.db.deleteFrom("threepid_validation_tokens").where("expires_ts", "<", ts).execute();
    await this.db.deleteFrom("threepid_validation_sessions").where("created_ts", "<", ts).execute();
  }

  async userThreepids(userId: string): Promise<UserThreepidRow[]> {
    return this.db.selectFrom("user_threepids").selectAll().where("user_id", "=", userId).orderBy("added_at").execute();
  }

  async userFor(medium: string, address: string): Promise<string | undefined> {
    return (await this.db.selectFrom("user_threepids").select("user_id").where("medium", "=", medium).where("address", "=", address).executeTakeFirst())?.user_id;
  }

  /** Adds (or re-validates) a 3PID; false when it belongs to another user. */
  async addUserThreepid(row: UserThreepidRow): Promise<boolean> {
    await this.db
      .insertInto("user_threepids")
      .values(row)
      .onConflict((oc) => oc.columns(["medium", "address"]).doUpdateSet({ validated_at: row.validated_at }).where("user_threepids.user_id", "=", row.user_id))
      .execute();
    return (await this.userFor(row.medium, row.address)) === row.user_id;
  }

  async deleteUserThreepid(userId: string, medium: string, address: string): Promise<void> {
    await this.db.deleteFrom("user_threepids").where("user_id", "=", userId).where("medium", "=", medium).where("address", "=", address).execute();
  }

  async addIdServer(userId: string, medium: string, address: string, idServer: string): Promise<void> {
    await this.db
      .insertInto("user_threepid_id_server")
      .values({ user_id: userId, medium, address, id_server: idServer })
      .onConflict((oc) => oc.doNothing())
      .execute();
  }

  async idServers(userId: string, medium: string, address: string): Promise<string[]> {
    const rows = await this.db.selectFrom("user_threepid_id_server").select("id_server").where("user_id", "=", userId).where("medium", "=", medium).where("address", "=", address).execute();
    return rows.map((r) => r.id_server);
  }

  /** Every (medium, address) bound to an identity server through us, for deactivation. */
  async boundThreepids(userId: string): Promise<{ medium: string; address: string }[]> {
    return this.db.selectFrom("user_threepid_id_server").select(["medium", "address"]).distinct().where("user_id", "=", userId).execute();
  }

  async removeIdServer(userId: string, medium: string, address: string, idServer: string): Promise<void> {
    await this.db
      .deleteFrom("user_threepid_id_server")
      .where("user_id", "=", userId)
      .where("medium", "=", medium)
      .where("address", "=", address)
      .where("id_server", "=", idServer)
      .execute();
  }
}
