/** Federation bookkeeping in the database: destinations (delivery position, backoff) and received transactions. */
import type { Kysely } from "kysely";
import type { FederationDestinationsTable, Schema } from "./schema.js";

export type DestinationRow = FederationDestinationsTable;

export class FederationStore {
  constructor(private readonly db: Kysely<Schema>) {}

  async destination(destination: string): Promise<DestinationRow | undefined> {
    return this.db.selectFrom("federation_destinations").selectAll().where("destination", "=", destination).executeTakeFirst();
  }

  async destinations(): Promise<DestinationRow[]> {
    return this.db.selectFrom("federation_destinations").selectAll().execute();
  }

  async upsertDestination(row: DestinationRow): Promise<void> {
    await this.db
      .insertInto("federation_destinations")
      .values(row)
      .onConflict((oc) =>
        oc.column("destination").doUpdateSet({
          last_successful_stream_ordering: row.last_successful_stream_ordering,
          failure_ts: row.failure_ts,
          retry_last_ts: row.retry_last_ts,
          retry_interval_ms: row.retry_interval_ms,
        }),
      )
      .execute();
  }

  /** Rooms where a user of `server` is joined. */
  async roomsWithServer(server: string): Promise<string[]> {
    const rows = await this.db
      .selectFrom("current_state_events")
      .select(["room_id", "state_key"])
      .where("type", "=", "m.room.member")
      .where("membership", "=", "join")
      .where("state_key", "like", `%:${server}`)
      .execute();
    // LIKE ignores ASCII case on SQLite; server names are case-sensitive (spec "Server Name").
    return [...new Set(rows.filter((r) => r.state_key.endsWith(`:${server}`)).map((r) => r.room_id))];
  }

  /** Servers with a joined user in the room (the room's current state). */
  async serversInRoom(roomId: string): Promise<string[]> {
    const rows = await this.db.selectFrom("current_state_events").select("state_key").where("room_id", "=", roomId).where("type", "=", "m.room.member").where("membership", "=", "join").execute();
    return [...new Set(rows.map((r) => r.state_key.slice(r.state_key.indexOf(":") + 1)))];
  }

  /** Per room, the newest event sent by our users after a stream position (for catch-up). */
  async latestLocalEvents(roomIds: readonly string[], after: number, ourServer: string): Promise<string[]> {
    const out: string[] = [];
    for (let i = 0; i < roomIds.length; i += 200) {
      const part = roomIds.slice(i, i + 200);
      if (part.length === 0) continue;
      const rows = await this.db
        .selectFrom("events")
        .select(["room_id", (eb) => eb.fn.max("stream_ordering").as("m")])
        .where("room_id", "in", part)
        .where("stream_ordering", ">", after)
        .where("outlier", "=", 0)
        .where("rejected_reason", "is", null)
        .where("sender", "like", `%:${ourServer}`)
        .groupBy("room_id")
        .execute();
      // (Our own users' ids end in our exact server name; LIKE's case-folding on SQLite cannot match others here.)
      const orderings = rows.map((r) => Number(r.m));
      if (orderings.length === 0) continue;
      const ids = await this.db.selectFrom("events").select("event_id").where("stream_ordering", "in", orderings).execute();
      out.push(...ids.map((r) => r.event_id));
    }
    return out;
  }

  async receivedTxn(origin: string, txnId: string): Promise<string | undefined> {
    const r = await this.db.selectFrom("federation_received_txns").select("response").where("origin", "=", origin).where("txn_id", "=", txnId).executeTakeFirst();
    return r?.response;
  }

  async recordReceivedTxn(origin: string, txnId: string, response: string): Promise<void> {
    await this.db
      .insertInto("federation_received_txns")
      .values({ origin, txn_id: txnId, response, received_ts: Date.now() })
      .onConflict((oc) => oc.columns(["origin", "txn_id"]).doNothing())
      .execute();
  }

  async deleteReceivedTxnsBefore(ts: number): Promise<void> {
    await this.db.deleteFrom("federation_received_txns").where("received_ts", "<", ts).execute();
  }
}
