/**
 * Application services: each one's position in the events stream and last transaction id, its transactions not
 * yet acknowledged (their bodies, so retries resend them unchanged), and its rooms in its networks' directories.
 */
import type { Kysely } from "kysely";
import type { Schema } from "./schema.js";

export interface AppServicePosition {
  streamPosition: number;
  lastTxnId: number;
}

export interface PendingTxn {
  txnId: number;
  body: string;
}

export class AppServiceStore {
  constructor(private readonly db: Kysely<Schema>) {}

  async position(asId: string): Promise<AppServicePosition | undefined> {
    const row = await this.db.selectFrom("appservice_state").selectAll().where("as_id", "=", asId).executeTakeFirst();
    return row ? { streamPosition: Number(row.stream_position), lastTxnId: Number(row.last_txn_id) } : undefined;
  }

  /** A service seen for the first time starts at `streamPosition` (now): it is not sent the server's history. */
  async initPosition(asId: string, streamPosition: number): Promise<void> {
    await this.db
      .insertInto("appservice_state")
      .values({ as_id: asId, stream_position: streamPosition, last_txn_id: 0 })
      .onConflict((oc) => oc.column("as_id").doNothing())
      .execute();
  }

  /** Moves the position on without a transaction (nothing in the range was for this service). */
  async setPosition(asId: string, streamPosition: number): Promise<void> {
    await this.db.updateTable("appservice_state").set({ stream_position: streamPosition }).where("as_id", "=", asId).execute();
  }

  /**
   * Records a new transaction covering the stream up to `streamPosition`, in one database transaction with the
   * position: a crash leaves either both or neither.
   */
  async addTxn(asId: string, txnId: number, body: string, streamPosition: number, now: number): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      await trx.insertInto("appservice_txns").values({ as_id: asId, txn_id: txnId, body, created_ts: now }).execute();
      await trx.updateTable("appservice_state").set({ stream_position: streamPosition, last_txn_id: txnId }).where("as_id", "=", asId).execute();
    });
  }

  /** The oldest transaction not yet acknowledged. */
  async oldestTxn(asId: string): Promise<PendingTxn | undefined> {
    const row = await this.db.selectFrom("appservice_txns").select(["txn_id", "body"]).where("as_id", "=", asId).orderBy("txn_id", "asc").limit(1).executeTakeFirst();
    return row ? { txnId: Number(row.txn_id), body: row.body } : undefined;
  }

  async deleteTxn(asId: string, txnId: number): Promise<void> {
    await this.db.deleteFrom("appservice_txns").where("as_id", "=", asId).where("txn_id", "=", txnId).execute();
  }

  async publishRoom(appserviceId: string, networkId: string, roomId: string): Promise<void> {
    await this.db
      .insertInto("appservice_room_list")
      .values({ appservice_id: appserviceId, network_id: networkId, room_id: roomId })
      .onConflict((oc) => oc.columns(["appservice_id", "network_id", "room_id"]).doNothing())
      .execute();
  }

  async unpublishRoom(appserviceId: string, networkId: string, roomId: string): Promise<void> {
    await this.db.deleteFrom("appservice_room_list").where("appservice_id", "=", appserviceId).where("network_id", "=", networkId).where("room_id", "=", roomId).execute();
  }

  /** Rooms in one network's list, or (no arguments) in every application service's lists. */
  async publishedRooms(network?: { appserviceId: string; networkId: string }): Promise<string[]> {
    let q = this.db.selectFrom("appservice_room_list").select("room_id").distinct();
    if (network) q = q.where("appservice_id", "=", network.appserviceId).where("network_id", "=", network.networkId);
    return (await q.execute()).map((r) => r.room_id);
  }
}
