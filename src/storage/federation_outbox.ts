/**
 * EDUs that must reach another server (m.direct_to_device, m.device_list_update): written before the request that
 * caused them is answered, deleted once the destination acknowledged the transaction that carried them.
 */
import type { Kysely } from "kysely";
import type { Schema } from "./schema.js";

export interface OutboxEdu {
  id: number;
  edu: string;
}

export class FederationOutboxStore {
  constructor(private readonly db: Kysely<Schema>) {}

  async add(rows: readonly { destination: string; edu: string }[], now: number): Promise<void> {
    for (let i = 0; i < rows.length; i += 200) {
      await this.db
        .insertInto("federation_outbox")
        .values(rows.slice(i, i + 200).map((r) => ({ ...r, created_ts: now })))
        .execute();
    }
  }

  /** The oldest EDUs waiting for a destination. */
  async forDestination(destination: string, limit: number): Promise<OutboxEdu[]> {
    return this.db.selectFrom("federation_outbox").select(["id", "edu"]).where("destination", "=", destination).orderBy("id", "asc").limit(limit).execute();
  }

  async delete(ids: readonly number[]): Promise<void> {
    if (ids.length === 0) return;
    await this.db.deleteFrom("federation_outbox").where("id", "in", ids).execute();
  }

  /** Destinations with something waiting (after a restart). */
  async destinations(): Promise<string[]> {
    const rows = await this.db.selectFrom("federation_outbox").select("destination").distinct().execute();
    return rows.map((r) => r.destination);
  }
}
