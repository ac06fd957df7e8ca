/**
 * Push rules, pushers, and the stored outcome of push rules per event (see migration 006 for the shape: shared
 * "bystander" outcomes in event_push, members' own outcomes in event_push_user), with the reads that /sync counts,
 * GET /notifications and pushers need. Every read of outcomes is a range over what is unread or asked for, never
 * over a room's whole history.
 */
import { sql, type Kysely, type RawBuilder } from "kysely";
import type { EventPushTable, EventPushUserTable, PushersTable, PushReadPositionsTable, Schema } from "./schema.js";
import { MultiRowStatements } from "./multi_row.js";
import type { StagedRowKind } from "./staged_rows.js";

export type PusherRow = Omit<PushersTable, "id"> & { id: number };
export type NewPusher = Omit<PushersTable, "id">;

/** Unread notifications of one thread of one room ('main' for the main timeline). */
export interface ThreadCount {
  roomId: string;
  threadId: string;
  notifications: number;
  highlights: number;
}

/** A notification for a user: an event whose outcome notified them. */
export interface NotificationRow {
  stream_ordering: number;
  event_id: string;
  room_id: string;
  thread_id: string;
  actions: string;
  highlight: number;
  ts: number;
}

/** A range of one thread to count: events after `floor` (exclusive). */
export interface CountRange {
  roomId: string;
  threadId: string;
  floor: number;
}

const CHUNK = 100;
function chunks<T>(rows: readonly T[], size = CHUNK): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < rows.length; i += size) out.push(rows.slice(i, i + size));
  return out;
}

export class PushStore {
  constructor(private readonly db: Kysely<Schema>) {}

  // ---- Push rules -------------------------------------------------------------------------------------------

  async rulesOf(userIds: readonly string[]): Promise<Map<string, { rules: string; stream_id: number }>> {
    const out = new Map<string, { rules: string; stream_id: number }>();
    for (const part of chunks(userIds, 500)) {
      for (const r of await this.db.selectFrom("push_rules").select(["user_id", "rules", "stream_id"]).where("user_id", "in", part).execute()) out.set(r.user_id, r);
    }
    return out;
  }

  /** Every user who changed their push rules (the others have the server defaults). */
  async usersWithRules(): Promise<string[]> {
    return (await this.db.selectFrom("push_rules").select("user_id").execute()).map((r) => r.user_id);
  }

  async putRules(userId: string, rules: string, streamId: number): Promise<void> {
    await this.db
      .insertInto("push_rules")
      .values({ user_id: userId, rules, stream_id: streamId })
      .onConflict((oc) => oc.column("user_id").doUpdateSet({ rules, stream_id: streamId }))
      .execute();
  }

  async maxRulesStream(): Promise<number> {
    const r = await this.db.selectFrom("push_rules").select((eb) => eb.fn.max("stream_id").as("m")).executeTakeFirst();
    return Number(r?.m ?? 0);
  }

  async deleteRules(userId: string): Promise<void> {
    await this.db.deleteFrom("push_rules").where("user_id", "=", userId).execute();
  }

  // ---- Pushers ----------------------------------------------------------------------------------------------

  async allPushers(): Promise<PusherRow[]> {
    return (await this.db.selectFrom("pushers").selectAll().orderBy("id").execute()) as PusherRow[];
  }

  async pushersOf(userId: string): Promise<PusherRow[]> {
    return (await this.db.selectFrom("pushers").selectAll().where("user_id", "=", userId).orderBy("id").execute()) as PusherRow[];
  }

  /** Adds or replaces the pusher with this app id and pushkey for the user; returns its id. */
  async upsertPusher(p: NewPusher): Promise<number> {
    const { user_id: _u, app_id: _a, pushkey: _k, ...rest } = p;
    const row = await this.db
      .insertInto("pushers")
      .values(p)
      .onConflict((oc) => oc.columns(["app_id", "pushkey", "user_id"]).doUpdateSet(rest))
      .returning("id")
      .executeTakeFirstOrThrow();
    return Number(row.id);
  }

  /** Deletes pushers by app id and pushkey: the user's own, or (`otherUsersThan`) every other user's. */
  async deletePushers(appId: string, pushkey: string, match: { userId: string } | { otherUsersThan: string }): Promise<string[]> {
    let q = this.db.deleteFrom("pushers").where("app_id", "=", appId).where("pushkey", "=", pushkey);
    q = "userId" in match ? q.where("user_id", "=", match.userId) : q.where("user_id", "<>", match.otherUsersThan);
    return (await q.returning("user_id").execute()).map((r) => r.user_id);
  }

  async deletePushersOfDevices(userId: string, deviceIds: readonly string[]): Promise<number> {
    if (deviceIds.length === 0) return 0;
    const r = await this.db.deleteFrom("pushers").where("user_id", "=", userId).where("device_id", "in", [...deviceIds]).executeTakeFirst();
    return Number(r.numDeletedRows);
  }

  async deletePushersOfToken(userId: string, tokenId: number): Promise<number> {
    const r = await this.db.deleteFrom("pushers").where("user_id", "=", userId).where("access_token_id", "=", tokenId).executeTakeFirst();
    return Number(r.numDeletedRows);
  }

  async deletePushersOfUser(userId: string): Promise<void> {
    await this.db.deleteFrom("pushers").where("user_id", "=", userId).execute();
  }

  async deletePusherById(id: number): Promise<void> {
    await this.db.deleteFrom("pushers").where("id", "=", id).execute();
  }

  async setPusherProgress(id: number, lastStreamOrdering: number, failingSince: number | null): Promise<void> {
    await this.db.updateTable("pushers").set({ last_stream_ordering: lastStreamOrdering, failing_since: failingSince }).where("id", "=", id).execute();
  }

  // ---- Outcomes, written with the event ---------------------------------------------------------------------

  // The rows written with every event are batched kinds (staged_rows.ts): a batch writes each kind as multi-row
  // statements, whose SQL is built once per row count (building a query with Kysely costs more than the write).

  /** event_push: the outcome shared by an event's bystanders, one row per event. */
  readonly bystanders: StagedRowKind<EventPushTable> = {
    compile: (rows) =>
      chunks(rows).map((part) =>
        this.statements.bind("event_push", part, BYSTANDER_COLUMNS, (rows) => this.db.insertInto("event_push").values(rows).onConflict((oc) => oc.doNothing())),
      ),
  };

  /** event_push_user: a member's own outcome of an event. */
  readonly members: StagedRowKind<EventPushUserTable> = {
    compile: (rows) =>
      chunks(rows).map((part) =>
        this.statements.bind("event_push_user", part, MEMBER_COLUMNS, (rows) => this.db.insertInto("event_push_user").values(rows).onConflict((oc) => oc.doNothing())),
      ),
  };

  /**
   * push_read_positions, moved forward (never back). One statement may not update a row twice (PostgreSQL), so a
   * batch keeps each position's furthest move.
   */
  readonly readPositionMoves: StagedRowKind<PushReadPositionsTable> = {
    compile: (rows) => {
      const furthest = new Map<string, PushReadPositionsTable>();
      for (const r of rows) {
        const key = `${r.user_id}\n${r.room_id}\n${r.thread_id}`;
        const seen = furthest.get(key);
        if (!seen || seen.stream_ordering < r.stream_ordering) furthest.set(key, r);
      }
      return chunks([...furthest.values()]).map((part) =>
        this.statements.bind("push_read_positions", part, READ_POSITION_COLUMNS, (rows) =>
          this.db
            .insertInto("push_read_positions")
            .values(rows)
            .onConflict((oc) =>
              oc
                .columns(["user_id", "room_id", "thread_id"])
                .doUpdateSet((eb) => ({ stream_ordering: eb.ref("excluded.stream_ordering") }))
                .where("push_read_positions.stream_ordering", "<", (eb) => eb.ref("excluded.stream_ordering")),
            ),
        ),
      );
    },
  };

  private readonly statements = new MultiRowStatements();

  /** Moves a read position forward (never back), now. */
  async moveReadPosition(userId: string, roomId: string, threadId: string, streamOrdering: number): Promise<void> {
    for (const q of this.readPositionMoves.compile([{ user_id: userId, room_id: roomId, thread_id: threadId, stream_ordering: streamOrdering }])) await this.db.executeQuery(q);
  }

  // ---- Reads ------------------------------------------------------------------------------------------------

  /** Membership and display name of membership events, by event id (those committed). */
  async memberships(eventIds: readonly string[]): Promise<Map<string, { userId: string; membership: string; displayname: string | null }>> {
    const out = new Map<string, { userId: string; membership: string; displayname: string | null }>();
    for (const part of chunks(eventIds, 500)) {
      const rows = await this.db.selectFrom("room_memberships").select(["event_id", "user_id", "membership", "displayname"]).where("event_id", "in", part).execute();
      for (const r of rows) out.set(r.event_id, { userId: r.user_id, membership: r.membership, displayname: r.displayname });
    }
    return out;
  }

  /** The user's read positions in these rooms: room → thread ('' unthreaded, 'main', root) → stream ordering. */
  async readPositions(userId: string, roomIds: readonly string[]): Promise<Map<string, Map<string, number>>> {
    const out = new Map<string, Map<string, number>>();
    for (const part of chunks(roomIds, 500)) {
      const rows = await this.db.selectFrom("push_read_positions").select(["room_id", "thread_id", "stream_ordering"]).where("user_id", "=", userId).where("room_id", "in", part).execute();
      for (const r of rows) {
        let m = out.get(r.room_id);
        if (!m) out.set(r.room_id, (m = new Map()));
        m.set(r.thread_id, r.stream_ordering);
      }
    }
    return out;
  }

  /** Threads of each room with a reply after the floor (the threads that may hold unread notifications). */
  async threadsActiveSince(floors: readonly { roomId: string; floor: number }[]): Promise<{ roomId: string; threadId: string }[]> {
    const out: { roomId: string; threadId: string }[] = [];
    for (const part of chunks(floors)) {
      const rows = await sql<{ room_id: string; thread_id: string }>`
        WITH f(room_id, floor) AS (VALUES ${values(part.map((f) => [f.roomId, f.floor]))})
        SELECT t.room_id, t.thread_id FROM f JOIN threads t ON t.room_id = f.room_id AND t.latest_stream_ordering > f.floor`.execute(this.db);
      for (const r of rows.rows) out.push({ roomId: r.room_id, threadId: r.thread_id });
    }
    return out;
  }

  /**
   * Unread notifications per room and thread for a user: over each range (up to `upTo`), the bystanders' outcomes (unless the user
   * has their own for that event, or sent it) plus the user's own outcomes.
   */
  async unreadCounts(userId: string, ranges: readonly CountRange[], upTo: number): Promise<ThreadCount[]> {
    const totals = new Map<string, ThreadCount>();
    const add = (roomId: string, threadId: string, n: number, h: number) => {
      const k = `${roomId}\u0000${threadId}`;
      const t = totals.get(k);
      if (t) {
        t.notifications += n;
        t.highlights += h;
      } else totals.set(k, { roomId, threadId, notifications: n, highlights: h });
    };
    for (const part of chunks(ranges)) {
      const v = values(part.map((r) => [r.roomId, r.threadId, r.floor]));
      const shared = await sql<{ room_id: string; thread_id: string; n: number; h: number }>`
        WITH r(room_id, thread_id, floor) AS (VALUES ${v})
        SELECT r.room_id, r.thread_id, COUNT(*) AS n, SUM(e.highlight) AS h
        FROM r JOIN event_push e ON e.room_id = r.room_id AND e.thread_id = r.thread_id AND e.stream_ordering > r.floor
        WHERE e.stream_ordering <= ${upTo} AND e.sender <> ${userId}
          AND NOT EXISTS (SELECT 1 FROM event_push_user x WHERE x.user_id = ${userId} AND x.stream_ordering = e.stream_ordering)
        GROUP BY r.room_id, r.thread_id`.execute(this.db);
      for (const row of shared.rows) add(row.room_id, row.thread_id, Number(row.n), Number(row.h ?? 0));
      const own = await sql<{ room_id: string; thread_id: string; n: number; h: number }>`
        WITH r(room_id, thread_id, floor) AS (VALUES ${v})
        SELECT r.room_id, r.thread_id, SUM(x.notif) AS n, SUM(x.highlight * x.notif) AS h
        FROM r JOIN event_push_user x ON x.user_id = ${userId} AND x.room_id = r.room_id AND x.thread_id = r.thread_id AND x.stream_ordering > r.floor
        WHERE x.stream_ordering <= ${upTo}
        GROUP BY r.room_id, r.thread_id`.execute(this.db);
      for (const row of own.rows) add(row.room_id, row.thread_id, Number(row.n ?? 0), Number(row.h ?? 0));
    }
    return [...totals.values()].filter((t) => t.notifications > 0 || t.highlights > 0);
  }

  /**
   * A user's notifications, newest first before `before` (GET /notifications) or oldest first after `after` (a
   * pusher catching up): the bystanders' outcomes of events in rooms the user was joined to when they were sent,
   * and the user's own outcomes that notified.
   */
  async notifications(userId: string, opts: { before?: number; after?: number; limit: number; onlyHighlight?: boolean }): Promise<NotificationRow[]> {
    const desc = opts.after === undefined;
    const bound = (col: RawBuilder<unknown>) =>
      desc ? (opts.before !== undefined ? sql`${col} < ${opts.before}` : sql`1 = 1`) : sql`${col} > ${opts.after}`;
    const order = desc ? sql`DESC` : sql`ASC`;
    const highlightOnly = opts.onlyHighlight ? sql`AND highlight = 1` : sql``;
    const shared = await sql<NotificationRow>`
      SELECT e.stream_ordering, e.event_id, e.room_id, e.thread_id, e.actions, e.highlight, e.ts FROM event_push e
      WHERE e.room_id IN (SELECT DISTINCT m.room_id FROM room_memberships m WHERE m.user_id = ${userId} AND m.membership = 'join')
        AND ${bound(sql.ref("e.stream_ordering"))} AND e.sender <> ${userId} ${highlightOnly}
        AND (SELECT m.membership FROM room_memberships m WHERE m.user_id = ${userId} AND m.room_id = e.room_id AND m.stream_ordering < e.stream_ordering
             ORDER BY m.stream_ordering DESC LIMIT 1) = 'join'
        AND NOT EXISTS (SELECT 1 FROM event_push_user x WHERE x.user_id = ${userId} AND x.stream_ordering = e.stream_ordering)
      ORDER BY e.stream_ordering ${order} LIMIT ${opts.limit}`.execute(this.db);
    const own = await sql<NotificationRow>`
      SELECT stream_ordering, event_id, room_id, thread_id, actions, highlight, ts FROM event_push_user
      WHERE user_id = ${userId} AND notif = 1 AND ${bound(sql.ref("stream_ordering"))} ${highlightOnly}
      ORDER BY stream_ordering ${order} LIMIT ${opts.limit}`.execute(this.db);
    const all = [...shared.rows, ...own.rows].map((r) => ({ ...r, stream_ordering: Number(r.stream_ordering), highlight: Number(r.highlight), ts: Number(r.ts) }));
    all.sort((a, b) => (desc ? b.stream_ordering - a.stream_ordering : a.stream_ordering - b.stream_ordering));
    return all.slice(0, opts.limit);
  }

  /** Housekeeping: outcomes older than `beforeTs` (Synapse keeps a month of notifications). */
  async deleteOutcomesBefore(beforeTs: number): Promise<void> {
    await this.db.deleteFrom("event_push").where("ts", "<", beforeTs).execute();
    await this.db.deleteFrom("event_push_user").where("ts", "<", beforeTs).execute();
  }
}

const BYSTANDER_COLUMNS = ["stream_ordering", "event_id", "room_id", "sender", "thread_id", "actions", "highlight", "ts"] as const satisfies readonly (keyof EventPushTable)[];
const MEMBER_COLUMNS = ["user_id", "stream_ordering", "event_id", "room_id", "thread_id", "actions", "notif", "highlight", "ts"] as const satisfies readonly (keyof EventPushUserTable)[];
const READ_POSITION_COLUMNS = ["user_id", "room_id", "thread_id", "stream_ordering"] as const satisfies readonly (keyof PushReadPositionsTable)[];

/** `(?, ?), (?, ?)` rows for a VALUES list; numbers are cast so PostgreSQL types the column as BIGINT. */
function values(rows: readonly (string | number)[][]): RawBuilder<unknown> {
  return sql.join(rows.map((r) => sql`(${sql.join(r.map((v) => (typeof v === "number" ? sql`CAST(${v} AS BIGINT)` : sql`${v}`)))})`));
}
