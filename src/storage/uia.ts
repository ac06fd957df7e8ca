import type { Kysely } from "kysely";
import type { Schema, UiaSessionsTable } from "./schema.js";

export type UiaSessionRow = UiaSessionsTable;

export class UiaStore {
  constructor(private readonly db: Kysely<Schema>) {}

  async create(row: UiaSessionRow): Promise<void> {
    await this.db.insertInto("uia_sessions").values(row).execute();
  }

  async get(sessionId: string): Promise<UiaSessionRow | undefined> {
    return this.db.selectFrom("uia_sessions").selectAll().where("session_id", "=", sessionId).executeTakeFirst();
  }

  async update(sessionId: string, fields: Partial<Pick<UiaSessionRow, "completed" | "serverdict" | "user_id">>): Promise<void> {
    await this.db.updateTable("uia_sessions").set(fields).where("session_id", "=", sessionId).execute();
  }

  async delete(sessionId: string): Promise<void> {
    await this.db.deleteFrom("uia_sessions").where("session_id", "=", sessionId).execute();
  }

  async deleteOlderThan(ts: number): Promise<void> {
    await this.db.deleteFrom("uia_sessions").where("created_ts", "<", ts).execute();
  }
}
