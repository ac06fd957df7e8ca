/** The device-list stream: which users' device lists changed, numbered, for /sync's `device_lists` and federation. */
import type { Kysely } from "kysely";
import type { Schema } from "./schema.js";

/**
 * The device id of a change only its own user hears of: their user-signing key, or their signatures over other
 * users' keys (private to the signer). Not a device id clients can see or choose: it never leaves the stream.
 */
export const PRIVATE_CHANGE = "\u0001self";

/**
 * The device id of a change about another user that only `signer` hears of: `signer` signed that user's master key
 * with their user-signing key (as Synapse's user_signature_stream tells the signer alone).
 */
export const signedByChange = (signer: string): string => `\u0001by:${signer}`;

/** The reserved device ids above start with this (a client naming its own device so only hides its own changes). */
const RESERVED_PREFIX = "\u0001";

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

  /**
   * The user's newest change to a device below `before` (its `stream_id`, the next `m.device_list_update`'s
   * `prev_id`); 0 when none. Cross-signing and private changes are left out: no `m.device_list_update` carried
   * them, so a server following the chain never saw their ids.
   */
  async lastStreamId(userId: string, before = Number.MAX_SAFE_INTEGER): Promise<number> {
    const r = await this.db
      .selectFrom("device_list_changes")
      .select((eb) => eb.fn.max("stream_id").as("m"))
      .where("user_id", "=", userId)
      .where("stream_id", "<", before)
      .where("device_id", "!=", "")
      .where("device_id", "not like", `${RESERVED_PREFIX}%`)
      .executeTakeFirst();
    return Number(r?.m ?? 0);
  }

  /**
   * Users with a change in (from, to] that `viewer` may hear of: public changes in `users`; in `signedByViewer`,
   * users whose master key `viewer` signed (signedByChange). A change private to its user (PRIVATE_CHANGE) counts
   * for `viewer` only.
   */
  async changedUsers(fromExclusive: number, toInclusive: number, viewer: string): Promise<{ users: string[]; signedByViewer: string[] }> {
    if (toInclusive <= fromExclusive) return { users: [], signedByViewer: [] };
    const signed = signedByChange(viewer);
    const rows = await this.db
      .selectFrom("device_list_changes")
      .select(["user_id", "device_id"])
      .distinct()
      .where("stream_id", ">", fromExclusive)
      .where("stream_id", "<=", toInclusive)
      .where((eb) =>
        eb.or([
          eb("device_id", "not like", `${RESERVED_PREFIX}%`),
          eb.and([eb("device_id", "=", PRIVATE_CHANGE), eb("user_id", "=", viewer)]),
          eb("device_id", "=", signed),
        ]),
      )
      .execute();
    const users = new Set<string>();
    const signedByViewer = new Set<string>();
    for (const r of rows) (r.device_id === signed ? signedByViewer : users).add(r.user_id);
    return { users: [...users], signedByViewer: [...signedByViewer] };
  }
}
