import type { Kysely } from "kysely";
import type { Schema } from "./schema.js";

export class FilterStore {
  constructor(private readonly db: Kysely<Schema>) {}

  /** Stores a filter and returns its id (per-user, counting from 0 as Synapse does). */
  async insert(userId: string, filterJson: string): Promise<number> {
    const r = await this.db.selectFrom("filters").select((eb) => eb.fn.max("filter_id").as("m")).where("user_id", "=", userId).executeTakeFirst();
    const next = r?.m == null ? 0 : Number(r.m) + 1;
    await this.db.insertInto("filters").values({ user_id: userId, filter_id: next, filter_json: filterJson }).execute();
    return next;
  }

  async get(userId: string, filterId: number): Promise<string | undefined> {
    const r = await this.db.selectFrom("filters").select("filter_json").where("user_id", "=", userId).where("filter_id", "=", filterId).executeTakeFirst();
    return r?.filter_json;
  }
}
