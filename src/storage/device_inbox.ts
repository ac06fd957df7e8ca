/**
 * Send-to-device storage: each device's inbox (numbered on the to-device stream), sendToDevice transaction ids, and
 * the message ids of m.direct_to_device EDUs already received.
 */
import type { Kysely } from "kysely";
import type { Schema } from "./schema.js";

export interface InboxRow {
  stream_id: number;
  user_id: string;
  device_id: string;
  message: string;
}

export class DeviceInboxStore {
  constructor(private readonly db: Kysely<Schema>) {}

  async insert(rows: readonly InboxRow[]): Promise<void> {
    for (let i = 0; i < rows.length; i += 200) await this.db.insertInto("device_inbox").values(rows.slice(i, i + 200)).execute();
  }

  /** Messages for a device with stream ids in (from, to], oldest first ("in order of arrival"). */
  async since(userId: string, deviceId: string, from: number, to: number, limit: number): Promise<{ stream_id: number; message: string }[]> {
    return this.db
      .selectFrom("device_inbox")
      .select(["stream_id", "message"])
      .where("user_id", "=", userId)
      .where("device_id", "=", deviceId)
      .where("stream_id", ">", from)
      .where("stream_id", "<=", to)
      .orderBy("stream_id", "asc")
      .limit(limit)
      .execute();
  }

  /** Whether the device has messages with stream ids ≤ upTo (a read, so an acknowledging /sync writes only when needed). */
  async hasUpTo(userId: string, deviceId: string, upTo: number): Promise<boolean> {
    const r = await this.db.selectFrom("device_inbox").select("stream_id").where("user_id", "=", userId).where("device_id", "=", deviceId).where("stream_id", "<=", upTo).limit(1).executeTakeFirst();
    return r !== undefined;
  }

  async deleteUpTo(userId: string, deviceId: string, upTo: number): Promise<void> {
    await this.db.deleteFrom("device_inbox").where("user_id", "=", userId).where("device_id", "=", deviceId).where("stream_id", "<=", upTo).execute();
  }

  async deleteForDevices(userId: string, deviceIds: readonly string[]): Promise<void> {
    if (deviceIds.length === 0) return;
    await this.db.deleteFrom("device_inbox").where("user_id", "=", userId).where("device_id", "in", deviceIds).execute();
  }

  async maxStreamId(): Promise<number> {
    const r = await this.db.selectFrom("device_inbox").select((eb) => eb.fn.max("stream_id").as("m")).executeTakeFirst();
    return Number(r?.m ?? 0);
  }

  /** A stream's persisted high-water mark (0 when never written). */
  async position(stream: string): Promise<number> {
    const r = await this.db.selectFrom("stream_positions").select("position").where("stream", "=", stream).executeTakeFirst();
    return Number(r?.position ?? 0);
  }

  /** Raises a stream's high-water mark (never lowers it). */
  async raisePosition(stream: string, position: number): Promise<void> {
    await this.db
      .insertInto("stream_positions")
      .values({ stream, position })
      .onConflict((oc) =>
        oc.column("stream").doUpdateSet((eb) => ({
          position: eb.case().when("excluded.position", ">", eb.ref("stream_positions.position")).then(eb.ref("excluded.position")).else(eb.ref("stream_positions.position")).end(),
        })),
      )
      .execute();
  }

  /** Records a sendToDevice transaction; false when it was recorded before (a retry). */
  async recordTxn(userId: string, requester: string, txnId: string, now: number): Promise<boolean> {
    const r = await this.db
      .insertInto("device_message_txns")
      .values({ user_id: userId, requester, txn_id: txnId, created_ts: now })
      .onConflict((oc) => oc.columns(["user_id", "requester", "txn_id"]).doNothing())
      .executeTakeFirst();
    return Number(r.numInsertedOrUpdatedRows ?? 0) > 0;
  }

  /** Records an m.direct_to_device message id from an origin; false when it was received before. */
  async recordFederationMessage(origin: string, messageId: string, now: number): Promise<boolean> {
    const r = await this.db
      .insertInto("device_federation_inbox")
      .values({ origin, message_id: messageId, received_ts: now })
      .onConflict((oc) => oc.columns(["origin", "message_id"]).doNothing())
      .executeTakeFirst();
    return Number(r.numInsertedOrUpdatedRows ?? 0) > 0;
  }

  /** Housekeeping: transaction and message ids older than `ts` (retries come within minutes, not days). */
  async deleteIdsBefore(ts: number): Promise<void> {
    await this.db.deleteFrom("device_message_txns").where("created_ts", "<", ts).execute();
    await this.db.deleteFrom("device_federation_inbox").where("received_ts", "<", ts).execute();
  }
}
