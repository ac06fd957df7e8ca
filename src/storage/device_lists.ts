/** The device-list stream: which users' device lists changed, numbered, for /sync's `device_lists` and federation. */
import type { Kysely } from "kysely";
import type { Schema } from "./schema.js";

export class DeviceListStore {
  constructor(private readonly db: Kysely<Schema>) {}

  async insert(rows: readonly { stream_id: number; user_id: string; device_id: string }[]): Promise<void> {
    if (rows.length === 0) return;
    await this.db.insertInto("device_list_changes").values([...rows]).execute();
  }

  async maxStreamId(): Promise<number> {
    const r = await this.db.selectFrom("device_list_changes").select((eb) => eb.fn.max("stream_id").as("m")).executeTakeFirst();
    return Number(r?.m ?? 0);
  }

  /** The user's newest change below `before` (its `stream_id`, the next update's `prev_id`); 0 when none. */
  async lastStreamId(userId: string, before = Number.MAX_SAFE_INTEGER): Promise<number> {
    const r = await this.db
      .selectFrom("device_list_changes")
      .select((eb) => eb.fn.max("stream_id").as("m"))
      .where("user_id", "=", userId)
      .where("stream_id", "<", before)
      .executeTakeFirst();
    return Number(r?.m ?? 0);
  }

  /** Users with a change in (from, to]. */
  async changedUsers(fromExclusive: number, toInclusive: number): Promise<string[]> {
    if (toInclusive <= fromExclusive) return [];
    const rows = await this.db
      .selectFrom("device_list_changes")
      .select("user_id")
      .distinct()
      .where("stream_id", ">", fromExclusive)
      .where("stream_id", "<=", toInclusive)
      .execute();
    return rows.map((r) => r.user_id);
  }
}
