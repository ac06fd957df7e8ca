/** When self-destructing events expire (MSC2228), and their pruning. */
import type { CompiledQuery, Kysely } from "kysely";
import type { Schema } from "./schema.js";

export interface DueExpiry {
  eventId: string;
  expiryTs: number;
}

export class EventExpiryStore {
  constructor(private readonly db: Kysely<Schema>) {}

  /** The row an event's write stages (a retried write keeps the first). */
  insertQuery(eventId: string, expiryTs: number): CompiledQuery {
    return this.db.insertInto("event_expiry").values({ event_id: eventId, expiry_ts: expiryTs }).onConflict((oc) => oc.doNothing()).compile();
  }

  /** The earliest pending expiry. */
  async next(): Promise<number | undefined> {
    const r = await this.db.selectFrom("event_expiry").select((eb) => eb.fn.min("expiry_ts").as("t")).executeTakeFirst();
    return r?.t == null ? undefined : Number(r.t);
  }

  /** Expiries at or before `now`, earliest first. */
  async due(now: number, limit: number): Promise<DueExpiry[]> {
    const rows = await this.db.selectFrom("event_expiry").select(["event_id", "expiry_ts"]).where("expiry_ts", "<=", now).orderBy("expiry_ts").limit(limit).execute();
    return rows.map((r) => ({ eventId: r.event_id, expiryTs: Number(r.expiry_ts) }));
  }

  /**
   * Replaces the event's stored JSON with its pruned form and drops its search row, in one transaction with the
   * expiry row itself; `prunedJson` undefined (the event is gone) only drops the expiry.
   */
  async expire(eventId: string, prunedJson: string | undefined): Promise<void> {
    await this.db.transaction().execute(async (tx) => {
      if (prunedJson !== undefined) {
        await tx.updateTable("events").set({ json: prunedJson }).where("event_id", "=", eventId).execute();
        await tx.withTables<{ event_search: { event_id: string } }>().deleteFrom("event_search").where("event_id", "=", eventId).execute();
      }
      await tx.deleteFrom("event_expiry").where("event_id", "=", eventId).execute();
    });
  }
}
