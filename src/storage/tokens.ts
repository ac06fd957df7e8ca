import type { Insertable, Kysely } from "kysely";
import type { AccessTokensTable, RefreshTokensTable, Schema } from "./schema.js";

export type AccessTokenRow = Omit<AccessTokensTable, "id" | "used"> & { id: number; used: number };
export type RefreshTokenRow = Omit<RefreshTokensTable, "id"> & { id: number };

/** An access token joined with what every authenticated request needs to know about its user. */
export interface TokenOwner {
  token_id: number;
  user_id: string;
  device_id: string | null;
  valid_until_ms: number | null;
  refresh_token_id: number | null;
  used: number;
  is_admin: number;
  is_guest: number;
  deactivated: number;
  locked: number;
}

export class TokenStore {
  constructor(private readonly db: Kysely<Schema>) {}

  async insertAccessToken(row: Insertable<AccessTokensTable>): Promise<number> {
    const r = await this.db.insertInto("access_tokens").values(row).returning("id").executeTakeFirstOrThrow();
    return Number(r.id);
  }

  async lookupAccessToken(tokenHash: string): Promise<TokenOwner | undefined> {
    return this.db
      .selectFrom("access_tokens as t")
      .innerJoin("users as u", "u.user_id", "t.user_id")
      .select(["t.id as token_id", "t.user_id", "t.device_id", "t.valid_until_ms", "t.refresh_token_id", "t.used", "u.is_admin", "u.is_guest", "u.deactivated", "u.locked"])
      .where("t.token_hash", "=", tokenHash)
      .executeTakeFirst();
  }

  async deleteAccessToken(id: number): Promise<void> {
    await this.db.deleteFrom("access_tokens").where("id", "=", id).execute();
  }

  /** Deletes the user's access tokens (all, or those of some devices, or all but one token); returns their hashes. */
  async deleteAccessTokens(userId: string, opts: { deviceIds?: string[]; exceptTokenId?: number } = {}): Promise<string[]> {
    let q = this.db.deleteFrom("access_tokens").where("user_id", "=", userId);
    if (opts.deviceIds) {
      if (opts.deviceIds.length === 0) return [];
      q = q.where("device_id", "in", opts.deviceIds);
    }
    if (opts.exceptTokenId !== undefined) q = q.where("id", "!=", opts.exceptTokenId);
    const rows = await q.returning("token_hash").execute();
    return rows.map((r) => r.token_hash);
  }

  async insertRefreshToken(row: Insertable<RefreshTokensTable>): Promise<number> {
    const r = await this.db.insertInto("refresh_tokens").values(row).returning("id").executeTakeFirstOrThrow();
    return Number(r.id);
  }

  async lookupRefreshToken(tokenHash: string): Promise<RefreshTokenRow | undefined> {
    return this.db.selectFrom("refresh_tokens").selectAll().where("token_hash", "=", tokenHash).executeTakeFirst() as Promise<RefreshTokenRow | undefined>;
  }

  /** First use of an access token from /refresh: revoke the refresh token that was exchanged for it. */
  async markUsedAndRevokePredecessor(tokenId: number, refreshTokenId: number): Promise<void> {
    await this.db.updateTable("access_tokens").set({ used: 1 }).where("id", "=", tokenId).execute();
    await this.deleteRefreshTokensPointingTo(refreshTokenId);
  }

  /** Revokes the refresh token that was exchanged for `refreshTokenId` (it has now been used). */
  async deleteRefreshTokensPointingTo(refreshTokenId: number): Promise<void> {
    await this.db.deleteFrom("refresh_tokens").where("next_token_id", "=", refreshTokenId).execute();
  }

  async setNextRefreshToken(id: number, nextId: number): Promise<void> {
    await this.db.updateTable("refresh_tokens").set({ next_token_id: nextId }).where("id", "=", id).execute();
  }

  async deleteRefreshToken(id: number): Promise<void> {
    await this.db.deleteFrom("refresh_tokens").where("id", "=", id).execute();
  }

  async deleteRefreshTokens(userId: string, opts: { deviceIds?: string[]; exceptDeviceId?: string } = {}): Promise<void> {
    let q = this.db.deleteFrom("refresh_tokens").where("user_id", "=", userId);
    if (opts.deviceIds) {
      if (opts.deviceIds.length === 0) return;
      q = q.where("device_id", "in", opts.deviceIds);
    }
    if (opts.exceptDeviceId !== undefined) q = q.where("device_id", "!=", opts.exceptDeviceId);
    await q.execute();
  }

  /** Access tokens that were issued from a refresh token (to revoke the old access token on refresh). */
  async deleteAccessTokensOfRefreshToken(refreshTokenId: number): Promise<string[]> {
    const rows = await this.db.deleteFrom("access_tokens").where("refresh_token_id", "=", refreshTokenId).returning("token_hash").execute();
    return rows.map((r) => r.token_hash);
  }
}
