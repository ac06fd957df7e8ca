/**
 * Sliding Sync connection state (migration 018): connections, the positions (`pos` tokens) handed out on each, and
 * per room what was sent. A position's rows hold only the rooms its response changed; the state at a position is
 * the newest row per room at or before it, so each response writes little.
 */
import type { Kysely, Selectable } from "kysely";
import type { Schema, SlidingSyncConnectionsTable, SlidingSyncPositionsTable, SlidingSyncRoomsTable } from "./schema.js";

export type SlidingConnectionRow = Selectable<SlidingSyncConnectionsTable>;
export type SlidingPositionRow = Selectable<SlidingSyncPositionsTable>;
export type SlidingRoomRow = Omit<Selectable<SlidingSyncRoomsTable>, "connection_id" | "position_id">;

export class SlidingSyncStore {
  constructor(private readonly db: Kysely<Schema>) {}

  async connectionById(id: number): Promise<SlidingConnectionRow | undefined> {
    return this.db.selectFrom("sliding_sync_connections").selectAll().where("id", "=", id).executeTakeFirst();
  }

  /** The device's connections, oldest use first. */
  async connectionsOf(userId: string, deviceId: string): Promise<SlidingConnectionRow[]> {
    return this.db.selectFrom("sliding_sync_connections").selectAll().where("user_id", "=", userId).where("device_id", "=", deviceId).orderBy("last_used_ts").orderBy("id").execute();
  }

  async createConnection(userId: string, deviceId: string, connId: string, now: number): Promise<number> {
    const r = await this.db.insertInto("sliding_sync_connections").values({ user_id: userId, device_id: deviceId, conn_id: connId, base_position: 0, created_ts: now, last_used_ts: now }).returning("id").executeTakeFirstOrThrow();
    return Number(r.id);
  }

  /** Drops a connection with all its positions and rooms. */
  async deleteConnection(id: number): Promise<void> {
    await this.db.deleteFrom("sliding_sync_rooms").where("connection_id", "=", id).execute();
    await this.db.deleteFrom("sliding_sync_positions").where("connection_id", "=", id).execute();
    await this.db.deleteFrom("sliding_sync_connections").where("id", "=", id).execute();
  }

  /** Drops connections unused since `ts` (housekeeping); returns how many. */
  async deleteIdleBefore(ts: number): Promise<number> {
    const idle = await this.db.selectFrom("sliding_sync_connections").select("id").where("last_used_ts", "<", ts).limit(1000).execute();
    for (const c of idle) await this.deleteConnection(c.id);
    return idle.length;
  }

  async deleteConnectionsOfDevice(userId: string, deviceId: string): Promise<void> {
    for (const c of await this.connectionsOf(userId, deviceId)) await this.deleteConnection(c.id);
  }

  async position(id: number): Promise<SlidingPositionRow | undefined> {
    return this.db.selectFrom("sliding_sync_positions").selectAll().where("id", "=", id).executeTakeFirst();
  }

  /**
   * A request used position `positionId`, a child of the base `oldBase`: it becomes the base. Its siblings (responses
   * the client did not use) and the positions before it go; room rows before it fold into one per room. A no-op when
   * another request moved the base meanwhile.
   */
  async accept(connectionId: number, oldBase: number, positionId: number, now: number): Promise<void> {
    const moved = await this.db
      .updateTable("sliding_sync_connections")
      .set({ base_position: positionId, last_used_ts: now })
      .where("id", "=", connectionId)
      .where("base_position", "=", oldBase)
      .executeTakeFirst();
    if (Number(moved.numUpdatedRows) === 0) return;
    // The siblings' rooms: every row after the old base but the new base's own.
    await this.db.deleteFrom("sliding_sync_rooms").where("connection_id", "=", connectionId).where("position_id", ">", oldBase).where("position_id", "!=", positionId).execute();
    await this.db
      .deleteFrom("sliding_sync_positions")
      .where("connection_id", "=", connectionId)
      .where((eb) => eb.or([eb("id", "<", positionId), eb.and([eb("id", ">", positionId), eb("parent_id", "!=", positionId)])]))
      .execute();
    // Rows superseded by a newer one of the same room at or before the new base.
    await this.db
      .deleteFrom("sliding_sync_rooms")
      .where("connection_id", "=", connectionId)
      .where("position_id", "<", positionId)
      .where((eb) =>
        eb.exists(
          eb
            .selectFrom("sliding_sync_rooms as r2")
            .select("r2.position_id")
            .whereRef("r2.connection_id", "=", "sliding_sync_rooms.connection_id")
            .whereRef("r2.room_id", "=", "sliding_sync_rooms.room_id")
            .whereRef("r2.position_id", ">", "sliding_sync_rooms.position_id")
            .where("r2.position_id", "<=", positionId),
        ),
      )
      .execute();
  }

  /** Touches a connection (a request continued from its base). */
  async touch(connectionId: number, now: number): Promise<void> {
    await this.db.updateTable("sliding_sync_connections").set({ last_used_ts: now }).where("id", "=", connectionId).execute();
  }

  /** Per room, what was sent as of the base position: the newest row at or before it. */
  async roomsAt(connectionId: number, baseId: number): Promise<Map<string, SlidingRoomRow>> {
    const rows = await this.db
      .selectFrom("sliding_sync_rooms")
      .select(["room_id", "position_id", "membership", "sent_stream", "timeline_limit", "required_state"])
      .where("connection_id", "=", connectionId)
      .where("position_id", "<=", baseId)
      .orderBy("position_id")
      .execute();
    const out = new Map<string, SlidingRoomRow>();
    for (const { position_id: _, ...r } of rows) out.set(r.room_id, r);
    return out;
  }

  /** Records a new position (a child of `parentId`) and the rooms its response sent. */
  async addPosition(connectionId: number, parentId: number, token: string, config: string, rooms: readonly SlidingRoomRow[], now: number): Promise<number> {
    const r = await this.db.insertInto("sliding_sync_positions").values({ connection_id: connectionId, parent_id: parentId, token, config, created_ts: now }).returning("id").executeTakeFirstOrThrow();
    const id = Number(r.id);
    for (let i = 0; i < rooms.length; i += 200) {
      await this.db
        .insertInto("sliding_sync_rooms")
        .values(rooms.slice(i, i + 200).map((room) => ({ ...room, connection_id: connectionId, position_id: id })))
        .execute();
    }
    return id;
  }
}
