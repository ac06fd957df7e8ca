import type { Kysely } from "kysely";
import type { Schema, UsersTable } from "./schema.js";

export type UserRow = UsersTable;

export class UserStore {
  constructor(private readonly db: Kysely<Schema>) {}

  async get(userId: string): Promise<UserRow | undefined> {
    return this.db.selectFrom("users").selectAll().where("user_id", "=", userId).executeTakeFirst();
  }

  /** Inserts a user; returns false when the id is taken. */
  async insert(row: Omit<UserRow, "locked" | "suspended" | "shadow_banned" | "user_type" | "appservice_id"> & Partial<UserRow>): Promise<boolean> {
    const res = await this.db
      .insertInto("users")
      .values({ locked: 0, suspended: 0, shadow_banned: 0, user_type: null, appservice_id: null, ...row })
      .onConflict((oc) => oc.column("user_id").doNothing())
      .executeTakeFirst();
    return Number(res.numInsertedOrUpdatedRows ?? 0) > 0;
  }

  async setPasswordHash(userId: string, hash: string | null): Promise<void> {
    await this.db.updateTable("users").set({ password_hash: hash }).where("user_id", "=", userId).execute();
  }

  /** A guest becomes a full user with this password (guest upgrade); false when the user is not a guest. */
  async upgradeGuest(userId: string, hash: string | null): Promise<boolean> {
    const res = await this.db.updateTable("users").set({ is_guest: 0, password_hash: hash }).where("user_id", "=", userId).where("is_guest", "=", 1).executeTakeFirst();
    return Number(res.numUpdatedRows ?? 0) > 0;
  }

  async setDeactivated(userId: string, deactivated: boolean): Promise<void> {
    await this.db.updateTable("users").set({ deactivated: deactivated ? 1 : 0 }).where("user_id", "=", userId).execute();
  }

  async setAdmin(userId: string, admin: boolean): Promise<void> {
    await this.db.updateTable("users").set({ is_admin: admin ? 1 : 0 }).where("user_id", "=", userId).execute();
  }

  async setLocked(userId: string, locked: boolean): Promise<void> {
    await this.db.updateTable("users").set({ locked: locked ? 1 : 0 }).where("user_id", "=", userId).execute();
  }

  async setSuspended(userId: string, suspended: boolean): Promise<void> {
    await this.db.updateTable("users").set({ suspended: suspended ? 1 : 0 }).where("user_id", "=", userId).execute();
  }

  async count(): Promise<number> {
    const r = await this.db.selectFrom("users").select((eb) => eb.fn.countAll<number>().as("n")).executeTakeFirstOrThrow();
    return Number(r.n);
  }
}

export class ProfileStore {
  constructor(private readonly db: Kysely<Schema>) {}

  async getAll(userId: string): Promise<Record<string, unknown>> {
    const rows = await this.db.selectFrom("profiles").select(["field", "value"]).where("user_id", "=", userId).execute();
    return Object.fromEntries(rows.map((r) => [r.field, JSON.parse(r.value) as unknown]));
  }

  async get(userId: string, field: string): Promise<unknown> {
    const row = await this.db.selectFrom("profiles").select("value").where("user_id", "=", userId).where("field", "=", field).executeTakeFirst();
    return row ? (JSON.parse(row.value) as unknown) : undefined;
  }

  async set(userId: string, field: string, value: unknown): Promise<void> {
    const v = JSON.stringify(value);
    await this.db
      .insertInto("profiles")
      .values({ user_id: userId, field, value: v })
      .onConflict((oc) => oc.columns(["user_id", "field"]).doUpdateSet({ value: v }))
      .execute();
  }

  async delete(userId: string, field: string): Promise<void> {
    await this.db.deleteFrom("profiles").where("user_id", "=", userId).where("field", "=", field).execute();
  }

  async deleteAll(userId: string): Promise<void> {
    await this.db.deleteFrom("profiles").where("user_id", "=", userId).execute();
  }

  /** Total size of the profile as JSON, for the spec's 64 KiB limit. */
  async totalSize(userId: string): Promise<number> {
    const all = await this.getAll(userId);
    return Buffer.byteLength(JSON.stringify(all), "utf8");
  }
}
