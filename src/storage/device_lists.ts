/** The device-list stream: which users' device lists changed, numbered, for /sync's `device_lists` and federation. */
import type { Kysely } from "kysely";
import type { Schema } from "./schema.js";

/**
 * The device id of a change only its own user hears of: their user-signing key, or their signatures over other
 * users' keys (private to the signer). Not a device id clients can see or choose: it never leaves the stream.
 */
export const PRIVATE_CHANGE = "\u0001self";

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

  /** Users with a change in (from, to]; a change private to its user (PRIVATE_CHANGE) counts for `viewer` only. */
  async changedUsers(fromExclusive: number, toInclusive: number, viewer?: string): Promise<string[]> {
    if (toInclusive <= fromExclusive) return [];
    const rows = await this.db
      .selectFrom("device_list_changes")
      .select("user_id")
      .distinct()
      .where("stream_id", ">", fromExclusive)
      .where("stream_id", "<=", toInclusive)
      .where((eb) => eb.or([eb("device_id", "!=", PRIVATE_CHANGE), eb("user_id", "=", viewer ?? "")]))
      .execute();
    return rows.map((r) => r.user_id);
  }
}
