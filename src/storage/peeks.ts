/** Rooms a device peeks into (MSC2753). */
import type { Kysely } from "kysely";
import type { Schema } from "./schema.js";

export interface PeekRow {
  id: number;
  roomId: string;
}

export class PeekStore {
  constructor(private readonly db: Kysely<Schema>) {}

  /** Starts a peek (again: a repeated peek is a new one, sent in full); returns its stream position. */
  async add(userId: string, deviceId: string, roomId: string): Promise<number> {
    return this.db.transaction().execute(async (tx) => {
      await tx.deleteFrom("room_peeks").where("user_id", "=", userId).where("device_id", "=", deviceId).where("room_id", "=", roomId).execute();
      const row = await tx.insertInto("room_peeks").values({ user_id: userId, device_id: deviceId, room_id: roomId }).returning("id").executeTakeFirstOrThrow();
      return Number(row.id);
    });
  }

  /** Whether a peek was removed. */
  async remove(userId: string, deviceId: string, roomId: string): Promise<boolean> {
    const r = await this.db.deleteFrom("room_peeks").where("user_id", "=", userId).where("device_id", "=", deviceId).where("room_id", "=", roomId).executeTakeFirst();
    return Number(r.numDeletedRows) > 0;
  }

  /** The peeks of deleted devices. */
  async removeDevices(userId: string, deviceIds: readonly string[]): Promise<void> {
    if (deviceIds.length === 0) return;
    await this.db.deleteFrom("room_peeks").where("user_id", "=", userId).where("device_id", "in", deviceIds).execute();
  }

  async forDevice(userId: string, deviceId: string): Promise<PeekRow[]> {
    const rows = await this.db.selectFrom("room_peeks").select(["id", "room_id"]).where("user_id", "=", userId).where("device_id", "=", deviceId).execute();
    return rows.map((r) => ({ id: Number(r.id), roomId: r.room_id }));
  }

  async maxId(): Promise<number> {
    const r = await this.db.selectFrom("room_peeks").select((eb) => eb.fn.max("id").as("m")).executeTakeFirst();
    return Number(r?.m ?? 0);
  }
}
