import type { Kysely } from "kysely";
import type { DevicesTable, Schema } from "./schema.js";

export type DeviceRow = DevicesTable;

export class DeviceStore {
  constructor(private readonly db: Kysely<Schema>) {}

  async list(userId: string): Promise<DeviceRow[]> {
    return this.db.selectFrom("devices").selectAll().where("user_id", "=", userId).orderBy("device_id").execute();
  }

  /** The devices of many users with their display names, in one query per 1000 users (bound parameters are limited). */
  async namesOf(userIds: readonly string[]): Promise<{ user_id: string; device_id: string; display_name: string | null }[]> {
    const out: { user_id: string; device_id: string; display_name: string | null }[] = [];
    for (let i = 0; i < userIds.length; i += 1000) {
      out.push(...(await this.db.selectFrom("devices").select(["user_id", "device_id", "display_name"]).where("user_id", "in", userIds.slice(i, i + 1000)).execute()));
    }
    return out;
  }

  async get(userId: string, deviceId: string): Promise<DeviceRow | undefined> {
    return this.db.selectFrom("devices").selectAll().where("user_id", "=", userId).where("device_id", "=", deviceId).executeTakeFirst();
  }

  /** Creates the device, or keeps the existing one (a login may reuse a device id); display name set only when given. */
  async upsert(userId: string, deviceId: string, displayName: string | null, now: number): Promise<void> {
    await this.db
      .insertInto("devices")
      .values({ user_id: userId, device_id: deviceId, display_name: displayName, created_ts: now, last_seen_ts: now, last_seen_ip: null, last_seen_user_agent: null })
      .onConflict((oc) => (displayName === null ? oc.columns(["user_id", "device_id"]).doNothing() : oc.columns(["user_id", "device_id"]).doUpdateSet({ display_name: displayName })))
      .execute();
  }

  async setDisplayName(userId: string, deviceId: string, displayName: string | null): Promise<boolean> {
    const r = await this.db.updateTable("devices").set({ display_name: displayName }).where("user_id", "=", userId).where("device_id", "=", deviceId).executeTakeFirst();
    return Number(r.numUpdatedRows) > 0;
  }

  async touch(userId: string, deviceId: string, ts: number, ip: string | null, userAgent: string | null): Promise<void> {
    await this.db
      .updateTable("devices")
      .set({ last_seen_ts: ts, last_seen_ip: ip, last_seen_user_agent: userAgent })
      .where("user_id", "=", userId)
      .where("device_id", "=", deviceId)
      .execute();
  }

  async delete(userId: string, deviceIds: string[]): Promise<void> {
    if (deviceIds.length === 0) return;
    await this.db.deleteFrom("devices").where("user_id", "=", userId).where("device_id", "in", deviceIds).execute();
  }

  async deleteAll(userId: string): Promise<void> {
    await this.db.deleteFrom("devices").where("user_id", "=", userId).execute();
  }
}
