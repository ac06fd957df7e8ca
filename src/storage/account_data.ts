import type { Kysely } from "kysely";
import type { Schema } from "./schema.js";

export interface AccountDataItem {
  roomId: string;
  type: string;
  content: Record<string, unknown>;
  streamId: number;
}

export class AccountDataStore {
  constructor(private readonly db: Kysely<Schema>) {}

  async get(userId: string, roomId: string, type: string): Promise<Record<string, unknown> | undefined> {
    const row = await this.db
      .selectFrom("account_data")
      .select("content")
      .where("user_id", "=", userId)
      .where("room_id", "=", roomId)
      .where("type", "=", type)
      .executeTakeFirst();
    return row ? (JSON.parse(row.content) as Record<string, unknown>) : undefined;
  }

  async put(userId: string, roomId: string, type: string, content: Record<string, unknown>, streamId: number): Promise<void> {
    const c = JSON.stringify(content);
    await this.db
      .insertInto("account_data")
      .values({ user_id: userId, room_id: roomId, type, content: c, stream_id: streamId })
      .onConflict((oc) => oc.columns(["user_id", "room_id", "type"]).doUpdateSet({ content: c, stream_id: streamId }))
      .execute();
  }

  /** Account data changed after `sinceStreamId` (exclusive) up to `toStreamId` (inclusive); all of it when since is 0. */
  async changedSince(userId: string, sinceStreamId: number, toStreamId: number): Promise<AccountDataItem[]> {
    const rows = await this.db
      .selectFrom("account_data")
      .select(["room_id", "type", "content", "stream_id"])
      .where("user_id", "=", userId)
      .where("stream_id", ">", sinceStreamId)
      .where("stream_id", "<=", toStreamId)
      .execute();
    return rows.map((r) => ({ roomId: r.room_id, type: r.type, content: JSON.parse(r.content) as Record<string, unknown>, streamId: r.stream_id }));
  }

  /** Per room, the user's room account data of one type (e.g. m.tag for Sliding Sync's tag filters). */
  async roomsOfType(userId: string, type: string): Promise<Map<string, Record<string, unknown>>> {
    const rows = await this.db.selectFrom("account_data").select(["room_id", "content"]).where("user_id", "=", userId).where("type", "=", type).where("room_id", "!=", "").execute();
    return new Map(rows.map((r) => [r.room_id, JSON.parse(r.content) as Record<string, unknown>]));
  }

  async deleteAll(userId: string): Promise<void> {
    await this.db.deleteFrom("account_data").where("user_id", "=", userId).execute();
  }

  async maxStreamId(): Promise<number> {
    const r = await this.db.selectFrom("account_data").select((eb) => eb.fn.max("stream_id").as("m")).executeTakeFirst();
    return Number(r?.m ?? 0);
  }
}
