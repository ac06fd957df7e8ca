/** Rooms, their current state and membership, aliases and forgotten rooms in the database. */
import type { Kysely } from "kysely";
import type { CurrentStateEventsTable, RoomsTable, Schema } from "./schema.js";

export type RoomRow = RoomsTable;
export type CurrentStateRow = CurrentStateEventsTable;

export class RoomStore {
  constructor(private readonly db: Kysely<Schema>) {}

  async insert(row: RoomRow): Promise<void> {
    await this.db.insertInto("rooms").values(row).execute();
  }

  async get(roomId: string): Promise<RoomRow | undefined> {
    return this.db.selectFrom("rooms").selectAll().where("room_id", "=", roomId).executeTakeFirst();
  }

  async setPublic(roomId: string, isPublic: boolean): Promise<void> {
    await this.db.updateTable("rooms").set({ is_public: isPublic ? 1 : 0 }).where("room_id", "=", roomId).execute();
  }

  async publicRoomIds(): Promise<string[]> {
    return (await this.db.selectFrom("rooms").select("room_id").where("is_public", "=", 1).execute()).map((r) => r.room_id);
  }

  async forwardExtremities(roomId: string): Promise<string[]> {
    const r = await this.db.selectFrom("rooms").select("forward_extremities").where("room_id", "=", roomId).executeTakeFirst();
    return r ? (JSON.parse(r.forward_extremities) as string[]) : [];
  }

  async currentState(roomId: string): Promise<CurrentStateRow[]> {
    return this.db.selectFrom("current_state_events").selectAll().where("room_id", "=", roomId).execute();
  }

  async currentStateEventId(roomId: string, type: string, stateKey: string): Promise<string | undefined> {
    const r = await this.db
      .selectFrom("current_state_events")
      .select("event_id")
      .where("room_id", "=", roomId)
      .where("type", "=", type)
      .where("state_key", "=", stateKey)
      .executeTakeFirst();
    return r?.event_id;
  }

  /** Rooms where the user's current membership is one of `memberships`, with that membership. */
  async roomsForUser(userId: string, memberships: string[]): Promise<{ room_id: string; membership: string; event_id: string }[]> {
    const rows = await this.db
      .selectFrom("current_state_events")
      .select(["room_id", "membership", "event_id"])
      .where("type", "=", "m.room.member")
      .where("state_key", "=", userId)
      .where("membership", "in", memberships)
      .execute();
    return rows.map((r) => ({ room_id: r.room_id, membership: r.membership!, event_id: r.event_id }));
  }

  /** Current members of a room with one of the given memberships. */
  async members(roomId: string, memberships: string[]): Promise<{ user_id: string; membership: string; event_id: string }[]> {
    const rows = await this.db
      .selectFrom("current_state_events")
      .select(["state_key", "membership", "event_id"])
      .where("room_id", "=", roomId)
      .where("type", "=", "m.room.member")
      .where("membership", "in", memberships)
      .execute();
    return rows.map((r) => ({ user_id: r.state_key, membership: r.membership!, event_id: r.event_id }));
  }

  /** Counts of joined and invited members (room summary). */
  async memberCounts(roomId: string): Promise<{ joined: number; invited: number }> {
    const rows = await this.db
      .selectFrom("current_state_events")
      .select(["membership", (eb) => eb.fn.countAll<number>().as("n")])
      .where("room_id", "=", roomId)
      .where("type", "=", "m.room.member")
      .where("membership", "in", ["join", "invite"])
      .groupBy("membership")
      .execute();
    const get = (m: string) => Number(rows.find((r) => r.membership === m)?.n ?? 0);
    return { joined: get("join"), invited: get("invite") };
  }

  /** Joined and invited counts of many rooms in one query (sync summaries). */
  async memberCountsMany(roomIds: readonly string[]): Promise<Map<string, { joined: number; invited: number }>> {
    const out = new Map<string, { joined: number; invited: number }>();
    for (let i = 0; i < roomIds.length; i += 200) {
      const part = roomIds.slice(i, i + 200);
      const rows = await this.db
        .selectFrom("current_state_events")
        .select(["room_id", "membership", (eb) => eb.fn.countAll<number>().as("n")])
        .where("room_id", "in", part)
        .where("type", "=", "m.room.member")
        .where("membership", "in", ["join", "invite"])
        .groupBy(["room_id", "membership"])
        .execute();
      for (const r of rows) {
        let c = out.get(r.room_id);
        if (!c) out.set(r.room_id, (c = { joined: 0, invited: 0 }));
        if (r.membership === "join") c.joined = Number(r.n);
        else c.invited = Number(r.n);
      }
    }
    return out;
  }

  /** The user's membership events with stream ordering in (from, to], oldest first: joins/leaves for sync. */
  async membershipChanges(userId: string, fromExclusive: number, toInclusive: number): Promise<{ room_id: string; membership: string; event_id: string; stream_ordering: number }[]> {
    return this.db
      .selectFrom("room_memberships")
      .select(["room_id", "membership", "event_id", "stream_ordering"])
      .where("user_id", "=", userId)
      .where("stream_ordering", ">", fromExclusive)
      .where("stream_ordering", "<=", toInclusive)
      .orderBy("stream_ordering", "asc")
      .execute();
  }

  /** Users with a member event in any of these rooms with stream ordering in (from, to] (via the room/stream index). */
  async membersChangedSince(roomIds: readonly string[], fromExclusive: number, toInclusive: number): Promise<Set<string>> {
    const out = new Set<string>();
    for (let i = 0; i < roomIds.length; i += 200) {
      const rows = await this.db
        .selectFrom("events")
        .select("state_key")
        .distinct()
        .where("room_id", "in", roomIds.slice(i, i + 200))
        .where("stream_ordering", ">", fromExclusive)
        .where("stream_ordering", "<=", toInclusive)
        .where("type", "=", "m.room.member")
        .execute();
      for (const r of rows) if (r.state_key !== null) out.add(r.state_key);
    }
    return out;
  }

  /** The user's membership in a room as of a stream position (the last membership event at or before it). */
  async membershipAt(userId: string, roomId: string, stream: number): Promise<{ membership: string; event_id: string; stream_ordering: number } | undefined> {
    return this.db
      .selectFrom("room_memberships")
      .select(["membership", "event_id", "stream_ordering"])
      .where("user_id", "=", userId)
      .where("room_id", "=", roomId)
      .where("stream_ordering", "<=", stream)
      .orderBy("stream_ordering", "desc")
      .limit(1)
      .executeTakeFirst();
  }

  /** Rooms the user has ever had a membership in (for include_leave and forget). */
  async roomsEverJoined(userId: string): Promise<string[]> {
    return (await this.db.selectFrom("room_memberships").select("room_id").distinct().where("user_id", "=", userId).execute()).map((r) => r.room_id);
  }

  /** Of these rooms, those the user was ever joined to. */
  async everJoinedOf(userId: string, roomIds: readonly string[]): Promise<Set<string>> {
    const out = new Set<string>();
    for (let i = 0; i < roomIds.length; i += 200) {
      const part = roomIds.slice(i, i + 200);
      const rows = await this.db.selectFrom("room_memberships").select("room_id").distinct().where("user_id", "=", userId).where("room_id", "in", part).where("membership", "=", "join").execute();
      for (const r of rows) out.add(r.room_id);
    }
    return out;
  }

  // Aliases

  async aliasRoom(alias: string): Promise<{ room_id: string; creator: string } | undefined> {
    return this.db.selectFrom("room_aliases").select(["room_id", "creator"]).where("room_alias", "=", alias).executeTakeFirst();
  }

  async insertAlias(alias: string, roomId: string, creator: string): Promise<boolean> {
    const r = await this.db
      .insertInto("room_aliases")
      .values({ room_alias: alias, room_id: roomId, creator, created_ts: Date.now() })
      .onConflict((oc) => oc.column("room_alias").doNothing())
      .executeTakeFirst();
    return Number(r.numInsertedOrUpdatedRows ?? 0) > 0;
  }

  async deleteAlias(alias: string): Promise<void> {
    await this.db.deleteFrom("room_aliases").where("room_alias", "=", alias).execute();
  }

  /** Points every alias of one room at another (room upgrades). */
  async moveAliases(fromRoomId: string, toRoomId: string): Promise<void> {
    await this.db.updateTable("room_aliases").set({ room_id: toRoomId }).where("room_id", "=", fromRoomId).execute();
  }

  async aliasesOf(roomId: string): Promise<string[]> {
    return (await this.db.selectFrom("room_aliases").select("room_alias").where("room_id", "=", roomId).orderBy("room_alias").execute()).map((r) => r.room_alias);
  }

  // Forgetting

  async forget(userId: string, roomId: string): Promise<void> {
    await this.db.insertInto("forgotten_rooms").values({ user_id: userId, room_id: roomId }).onConflict((oc) => oc.doNothing()).execute();
  }

  async unforget(userId: string, roomId: string): Promise<void> {
    await this.db.deleteFrom("forgotten_rooms").where("user_id", "=", userId).where("room_id", "=", roomId).execute();
  }

  async forgottenRooms(userId: string): Promise<Set<string>> {
    return new Set((await this.db.selectFrom("forgotten_rooms").select("room_id").where("user_id", "=", userId).execute()).map((r) => r.room_id));
  }

  // Receipts

  async upsertReceipt(row: { room_id: string; receipt_type: string; user_id: string; thread_id: string; event_id: string; data: string; stream_id: number }): Promise<void> {
    await this.db
      .insertInto("receipts")
      .values(row)
      .onConflict((oc) => oc.columns(["room_id", "receipt_type", "user_id", "thread_id"]).doUpdateSet({ event_id: row.event_id, data: row.data, stream_id: row.stream_id }))
      .execute();
  }

  async receipt(roomId: string, receiptType: string, userId: string, threadId: string): Promise<{ event_id: string } | undefined> {
    return this.db
      .selectFrom("receipts")
      .select("event_id")
      .where("room_id", "=", roomId)
      .where("receipt_type", "=", receiptType)
      .where("user_id", "=", userId)
      .where("thread_id", "=", threadId)
      .executeTakeFirst();
  }

  /** Receipts in these rooms with stream id in (from, to]. */
  async receiptsSince(roomIds: readonly string[], fromExclusive: number, toInclusive: number): Promise<{ room_id: string; receipt_type: string; user_id: string; thread_id: string; event_id: string; data: string }[]> {
    const out = [];
    for (let i = 0; i < roomIds.length; i += 200) {
      const part = roomIds.slice(i, i + 200);
      out.push(
        ...(await this.db
          .selectFrom("receipts")
          .select(["room_id", "receipt_type", "user_id", "thread_id", "event_id", "data"])
          .where("room_id", "in", part)
          .where("stream_id", ">", fromExclusive)
          .where("stream_id", "<=", toInclusive)
          .execute()),
      );
    }
    return out;
  }

  async maxReceiptStream(): Promise<number> {
    const r = await this.db.selectFrom("receipts").select((eb) => eb.fn.max("stream_id").as("m")).executeTakeFirst();
    return Number(r?.m ?? 0);
  }

  // Presence

  async presence(userId: string): Promise<{ user_id: string; state: string; status_msg: string | null; last_active_ts: number; last_user_sync_ts: number; currently_active: number; stream_id: number } | undefined> {
    return this.db.selectFrom("presence").selectAll().where("user_id", "=", userId).executeTakeFirst();
  }

  async upsertPresence(row: { user_id: string; state: string; status_msg: string | null; last_active_ts: number; last_user_sync_ts: number; currently_active: number; stream_id: number }): Promise<void> {
    await this.db
      .insertInto("presence")
      .values(row)
      .onConflict((oc) =>
        oc.column("user_id").doUpdateSet({
          state: row.state,
          status_msg: row.status_msg,
          last_active_ts: row.last_active_ts,
          last_user_sync_ts: row.last_user_sync_ts,
          currently_active: row.currently_active,
          stream_id: row.stream_id,
        }),
      )
      .execute();
  }

  async presenceChangedSince(fromExclusive: number, toInclusive: number, limit: number) {
    return this.db.selectFrom("presence").selectAll().where("stream_id", ">", fromExclusive).where("stream_id", "<=", toInclusive).orderBy("stream_id", "desc").limit(limit).execute();
  }

  async onlinePresence() {
    return this.db.selectFrom("presence").selectAll().where("state", "!=", "offline").execute();
  }

  async maxPresenceStream(): Promise<number> {
    const r = await this.db.selectFrom("presence").select((eb) => eb.fn.max("stream_id").as("m")).executeTakeFirst();
    return Number(r?.m ?? 0);
  }

  /** Which of `userIds` share at least one room (joined) with `userId`. */
  async usersSharingRooms(userId: string, userIds: readonly string[]): Promise<Set<string>> {
    const out = new Set<string>();
    for (let i = 0; i < userIds.length; i += 200) {
      const part = userIds.slice(i, i + 200);
      const rows = await this.db
        .selectFrom("current_state_events as a")
        .innerJoin("current_state_events as b", (j) => j.onRef("a.room_id", "=", "b.room_id"))
        .select("b.state_key")
        .distinct()
        .where("a.type", "=", "m.room.member")
        .where("a.state_key", "=", userId)
        .where("a.membership", "=", "join")
        .where("b.type", "=", "m.room.member")
        .where("b.membership", "=", "join")
        .where("b.state_key", "in", part)
        .execute();
      for (const r of rows) out.add(r.state_key);
    }
    return out;
  }
}
