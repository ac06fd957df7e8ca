/** Reports users made about events, rooms and users (spec "Reporting content"), kept for server admins. */
import type { Kysely, Selectable } from "kysely";
import type { EventReportsTable, RoomReportsTable, Schema, UserReportsTable } from "./schema.js";

export type EventReport = Selectable<EventReportsTable>;
export type RoomReport = Selectable<RoomReportsTable>;
export type UserReport = Selectable<UserReportsTable>;

export class ReportStore {
  constructor(private readonly db: Kysely<Schema>) {}

  async addEventReport(r: Omit<EventReport, "id">): Promise<void> {
    await this.db.insertInto("event_reports").values(r).execute();
  }

  async addRoomReport(r: Omit<RoomReport, "id">): Promise<void> {
    await this.db.insertInto("room_reports").values(r).execute();
  }

  async addUserReport(r: Omit<UserReport, "id">): Promise<void> {
    await this.db.insertInto("user_reports").values(r).execute();
  }

  /** Reports of events in a room, oldest first (for the admin API). */
  async eventReports(roomId: string): Promise<EventReport[]> {
    return this.db.selectFrom("event_reports").selectAll().where("room_id", "=", roomId).orderBy("id").execute();
  }

  async roomReports(roomId: string): Promise<RoomReport[]> {
    return this.db.selectFrom("room_reports").selectAll().where("room_id", "=", roomId).orderBy("id").execute();
  }

  async userReports(targetUserId: string): Promise<UserReport[]> {
    return this.db.selectFrom("user_reports").selectAll().where("target_user_id", "=", targetUserId).orderBy("id").execute();
  }
}
