/** Dehydrated devices (migration 010, MSC3814): one per user at most. One code path for SQLite and PostgreSQL. */
import type { Kysely } from "kysely";
import type { Schema } from "./schema.js";

export interface DehydratedDeviceRow {
  device_id: string;
  device_data: string;
}

export class DehydratedDeviceStore {
  constructor(private readonly db: Kysely<Schema>) {}

  /** The user's dehydrated device, while its device still exists (DELETE /devices/{id} may have removed it). */
  async get(userId: string): Promise<DehydratedDeviceRow | undefined> {
    return this.db
      .selectFrom("dehydrated_devices as dd")
      .innerJoin("devices as d", (j) => j.onRef("d.user_id", "=", "dd.user_id").onRef("d.device_id", "=", "dd.device_id"))
      .select(["dd.device_id", "dd.device_data"])
      .where("dd.user_id", "=", userId)
      .executeTakeFirst();
  }

  /** The user's dehydrated device id as recorded, whether or not its device still exists. */
  async recordedId(userId: string): Promise<string | undefined> {
    const r = await this.db.selectFrom("dehydrated_devices").select("device_id").where("user_id", "=", userId).executeTakeFirst();
    return r?.device_id;
  }

  async set(userId: string, deviceId: string, deviceData: string, now: number): Promise<void> {
    await this.db
      .insertInto("dehydrated_devices")
      .values({ user_id: userId, device_id: deviceId, device_data: deviceData, created_ts: now })
      .onConflict((oc) => oc.column("user_id").doUpdateSet({ device_id: deviceId, device_data: deviceData, created_ts: now }))
      .execute();
  }

  async delete(userId: string): Promise<void> {
    await this.db.deleteFrom("dehydrated_devices").where("user_id", "=", userId).execute();
  }
}
