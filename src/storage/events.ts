/** Events in the database: the batched write of newly persisted events, and the reads every room API needs. */
import { sql, type CompiledQuery, type ExpressionBuilder, type Kysely, type SelectQueryBuilder } from "kysely";
import { splitStateMapKey } from "../core/events/event.js";
import type { EventsTable, Schema } from "./schema.js";
import { MultiRowStatements } from "./multi_row.js";
import type { Staged } from "./staged_rows.js";
import type { StateGroupNode } from "./state_groups.js";
import type { StateDelta } from "./state_deltas.js";

export type EventRow = EventsTable;

/** Everything one event changes, computed before the write so the write itself is just rows. */
export interface PersistItem {
  streamOrdering: number;
  eventId: string;
  roomId: string;
  type: string;
  stateKey: string | null;
  sender: string;
  depth: number;
  originServerTs: number;
  json: string;
  prevEvents: readonly string[];
  authEvents: readonly string[];
  /** State after the event (null for outliers, which have no state). */
  stateGroup: number | null;
  /** A state group created for this event (state events, or state resolution). */
  newStateGroup?: StateGroupNode;
  /** Further groups created along with it (the state before a received event, a resolved current state). */
  extraStateGroups?: StateGroupNode[];
  replacesState: string | null;
  outlier: boolean;
  softFailed: boolean;
  rejectedReason: string | null;
  containsUrl: boolean;
  /** Changes to the room's current state, and the group it is now. */
  currentState?: { group: number; delta: StateDelta; memberships: Map<string, string> };
  /** The room's forward extremities after this event. */
  extremities?: readonly string[];
  membership?: { userId: string; membership: string; displayname: string | null; avatarUrl: string | null };
  txn?: { userId: string; deviceId: string; scope: string; txnId: string };
  /** The room row, when this event (m.room.create) creates the room. */
  newRoom?: { roomId: string; version: string; creator: string };
  /** A redaction that applies now: the target to mark as redacted. */
  applyRedactionTo?: string;
  /** A redaction received before this event that applies to it. */
  redactedBy?: string;
  /** The event was stored earlier as an outlier and now takes its place in the room's DAG with state. */
  replaceOutlier?: boolean;
  /**
   * An out-of-band membership: an invite (or knock, or the leave that ends them) of a local user to a room this
   * server is not in. The event is an outlier, but it is the user's membership there: it goes into current state
   * (that room's only row for the user) and the membership history, with the stripped state that came with it.
   */
  outOfBand?: { strippedState?: unknown[] };
  redacts?: string;
  relation?: { relatesTo: string; relType: string; aggregationKey: string | null };
  /** Rows the per-event consumers (push, …) add, committed in the same transaction after the event's own. */
  consumerRows?: Staged[];
}

const CHUNK = 100;

function chunks<T>(rows: T[], size = CHUNK): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < rows.length; i += size) out.push(rows.slice(i, i + size));
  return out;
}

/**
 * Events that are part of a room's timeline: never outliers (no place in the DAG with state), rejected or
 * soft-failed events.
 */
function inTimeline<QB extends WhereBuilder>(qb: QB): QB {
  return qb.where("outlier", "=", 0).where("soft_failed", "=", 0).where("rejected_reason", "is", null) as QB;
}

/** Stream orderings in (from, to]: what a sync token range covers. */
function inStreamRange<QB extends WhereBuilder>(qb: QB, fromExclusive: number, toInclusive: number): QB {
  return qb.where("stream_ordering", ">", fromExclusive).where("stream_ordering", "<=", toInclusive) as QB;
}

type WhereBuilder = SelectQueryBuilder<Schema, "events", object>;

/** The columns of a new event's row, in the order its INSERT binds them. */
const EVENT_COLUMNS = [
  "stream_ordering", "event_id", "room_id", "type", "state_key", "sender", "depth", "origin_server_ts", "received_ts", "json", "state_group",
  "replaces_state", "outlier", "soft_failed", "rejected_reason", "redacted_by", "contains_url", "txn_device_id", "txn_scope", "txn_id",
] as const satisfies readonly (keyof EventsTable)[];

export class EventStore {
  private readonly statements = new MultiRowStatements();

  constructor(private readonly db: Kysely<Schema>) {}

  /**
   * The statements that write a batch of events, as few as possible. They are compiled here and run by a
   * BatchExecutor in one transaction (on SQLite in a worker thread, so the commit's fsync never blocks requests).
   */
  compileBatch(items: PersistItem[], now: number): CompiledQuery[] {
    const db = this.db;
    const q: CompiledQuery[] = [];
    for (const i of items) {
      if (!i.newRoom) continue;
      q.push(db
        .insertInto("rooms")
        .values({ room_id: i.newRoom.roomId, room_version: i.newRoom.version, creator: i.newRoom.creator, is_public: 0, created_ts: now, current_state_group: null, forward_extremities: "[]" })
        .compile());
    }
    for (const i of items) if (i.replaceOutlier) q.push(db.deleteFrom("events").where("event_id", "=", i.eventId).where("outlier", "=", 1).compile());
    for (const part of chunks(items, 50)) {
      const rows = part.map((i) => ({
        stream_ordering: i.streamOrdering,
        event_id: i.eventId,
        room_id: i.roomId,
        type: i.type,
        state_key: i.stateKey,
        sender: i.sender,
        depth: i.depth,
        origin_server_ts: i.originServerTs,
        received_ts: now,
        json: i.json,
        state_group: i.stateGroup,
        replaces_state: i.replacesState,
        outlier: i.outlier ? 1 : 0,
        soft_failed: i.softFailed ? 1 : 0,
        rejected_reason: i.rejectedReason,
        redacted_by: i.redactedBy ?? null,
        contains_url: i.containsUrl ? 1 : 0,
        txn_device_id: i.txn?.deviceId ?? null,
        txn_scope: i.txn?.scope ?? null,
        txn_id: i.txn?.txnId ?? null,
      }));
      q.push(this.statements.bind("events", rows, EVENT_COLUMNS, (placeholders) => db.insertInto("events").values(placeholders)));
    }

    for (const i of items) {
      for (const n of [...(i.extraStateGroups ?? []), ...(i.newStateGroup ? [i.newStateGroup] : [])]) {
      q.push(db.insertInto("state_groups").values({ id: n.id, room_id: n.roomId, event_id: i.eventId, prev_group: n.prevGroup, chain_depth: n.chainDepth }).compile());
      const rows = [...n.delta].map(([k, v]) => {
        const [type, state_key] = splitStateMapKey(k);
        return { state_group: n.id, type, state_key, event_id: v };
      });
      for (const part of chunks(rows)) q.push(db.insertInto("state_group_entries").values(part).compile());
      }
    }

    // Per room, only the last item's view of current state and extremities matters.
    const lastByRoom = new Map<string, PersistItem>();
    for (const i of items) {
      if (i.currentState || i.extremities) lastByRoom.set(i.roomId, i);
    }
    const stateChanges: { room_id: string; type: string; state_key: string; event_id: string; membership: string | null }[] = [];
    const stateRemovals: { roomId: string; type: string; stateKey: string }[] = [];
    for (const i of items) {
      if (!i.currentState) continue;
      for (const [k, v] of i.currentState.delta) {
        const [type, state_key] = splitStateMapKey(k);
        if (v === null) stateRemovals.push({ roomId: i.roomId, type, stateKey: state_key });
        else stateChanges.push({ room_id: i.roomId, type, state_key, event_id: v, membership: i.currentState.memberships.get(k) ?? null });
      }
    }
    // Later changes to the same key in this batch win: dedupe keeping the last.
    const dedup = new Map<string, (typeof stateChanges)[number]>();
    for (const c of stateChanges) dedup.set(`${c.room_id}\u0000${c.type.length}:${c.type}${c.state_key}`, c);
    for (const part of chunks([...dedup.values()])) {
      q.push(db
        .insertInto("current_state_events")
        .values(part)
        .onConflict((oc) => oc.columns(["room_id", "type", "state_key"]).doUpdateSet((eb) => ({ event_id: eb.ref("excluded.event_id"), membership: eb.ref("excluded.membership") })))
        .compile());
    }
    for (const r of stateRemovals) {
      q.push(db.deleteFrom("current_state_events").where("room_id", "=", r.roomId).where("type", "=", r.type).where("state_key", "=", r.stateKey).compile());
    }
    // Every room's new state group and extremities in one statement: a batch spans many rooms, and on PostgreSQL
    // each statement is a round trip inside the transaction.
    for (const part of chunks([...lastByRoom])) {
      const rows = part.map(([roomId, i]) => sql`(${roomId}, ${i.currentState?.group ?? null}, ${i.extremities ? JSON.stringify(i.extremities) : null})`);
      q.push(
        sql`WITH v(room_id, state_group, extremities) AS (VALUES ${sql.join(rows)})
          UPDATE rooms SET
            current_state_group = COALESCE(CAST(v.state_group AS BIGINT), rooms.current_state_group),
            forward_extremities = COALESCE(CAST(v.extremities AS TEXT), rooms.forward_extremities)
          FROM v WHERE rooms.room_id = v.room_id`.compile(db),
      );
    }

    for (const i of items) {
      if (!i.outOfBand || !i.membership) continue;
      q.push(
        db
          .insertInto("current_state_events")
          .values({ room_id: i.roomId, type: "m.room.member", state_key: i.membership.userId, event_id: i.eventId, membership: i.membership.membership })
          .onConflict((oc) => oc.columns(["room_id", "type", "state_key"]).doUpdateSet({ event_id: i.eventId, membership: i.membership!.membership }))
          .compile(),
      );
      if (i.outOfBand.strippedState) {
        q.push(db.insertInto("room_stripped_state").values({ event_id: i.eventId, state: JSON.stringify(i.outOfBand.strippedState) }).onConflict((oc) => oc.doNothing()).compile());
      }
    }
    const memberships = items.filter((i) => i.membership && (!i.outlier || i.outOfBand) && !i.rejectedReason);
    for (const part of chunks(memberships)) {
      q.push(db
        .insertInto("room_memberships")
        .values(
          part.map((i) => ({
            event_id: i.eventId,
            room_id: i.roomId,
            user_id: i.membership!.userId,
            sender: i.sender,
            membership: i.membership!.membership,
            stream_ordering: i.streamOrdering,
            displayname: i.membership!.displayname,
            avatar_url: i.membership!.avatarUrl,
          })),
        )
        .onConflict((oc) => oc.doNothing())
        .compile());
    }
    // Forgetting applies to the memberships a user had: any new membership event un-forgets the room (as Synapse).
    for (const i of memberships) {
      q.push(db.deleteFrom("forgotten_rooms").where("user_id", "=", i.membership!.userId).where("room_id", "=", i.roomId).compile());
    }
    for (const i of items) {
      if (i.redacts === undefined || i.rejectedReason) continue;
      q.push(db.insertInto("redactions").values({ event_id: i.eventId, redacts: i.redacts, room_id: i.roomId }).onConflict((oc) => oc.doNothing()).compile());
      if (i.applyRedactionTo) {
        q.push(db.updateTable("events").set({ redacted_by: i.eventId }).where("event_id", "=", i.applyRedactionTo).where("redacted_by", "is", null).compile());
      }
    }
    const relations = items.filter((i) => i.relation && !i.rejectedReason && !i.softFailed);
    for (const part of chunks(relations)) {
      q.push(db
        .insertInto("event_relations")
        .values(part.map((i) => ({ event_id: i.eventId, relates_to_id: i.relation!.relatesTo, rel_type: i.relation!.relType, room_id: i.roomId, aggregation_key: i.relation!.aggregationKey })))
        .onConflict((oc) => oc.doNothing())
        .compile());
    }
    for (const i of relations) {
      if (i.relation!.relType !== "m.thread" || i.outlier) continue;
      q.push(db
        .insertInto("threads")
        .values({ room_id: i.roomId, thread_id: i.relation!.relatesTo, latest_event_id: i.eventId, latest_stream_ordering: i.streamOrdering })
        .onConflict((oc) =>
          oc.columns(["room_id", "thread_id"]).doUpdateSet({ latest_event_id: i.eventId, latest_stream_ordering: i.streamOrdering }).where("threads.latest_stream_ordering", "<", i.streamOrdering),
        )
        .compile());
    }
    return q;
  }

  async strippedState(eventId: string): Promise<unknown[] | undefined> {
    const r = await this.db.selectFrom("room_stripped_state").select("state").where("event_id", "=", eventId).executeTakeFirst();
    return r ? (JSON.parse(r.state) as unknown[]) : undefined;
  }

  /** Marks events as redacted by an accepted redaction (applied when serving them). */
  async setRedactedBy(eventIds: string[], redactionId: string): Promise<void> {
    if (eventIds.length === 0) return;
    await this.db.updateTable("events").set({ redacted_by: redactionId }).where("event_id", "in", eventIds).where("redacted_by", "is", null).execute();
  }

  async getRows(eventIds: readonly string[]): Promise<EventRow[]> {
    const out: EventRow[] = [];
    for (const part of chunks([...eventIds], 200)) {
      if (part.length === 0) continue;
      out.push(...(await this.db.selectFrom("events").selectAll().where("event_id", "in", part).execute()));
    }
    return out;
  }

  async maxStreamOrdering(): Promise<number> {
    const r = await this.db.selectFrom("events").select((eb) => eb.fn.max("stream_ordering").as("m")).executeTakeFirst();
    return Number(r?.m ?? 0);
  }

  async minStreamOrdering(): Promise<number> {
    const r = await this.db.selectFrom("events").select((eb) => eb.fn.min("stream_ordering").as("m")).executeTakeFirst();
    return Number(r?.m ?? 0);
  }

  /** The event a client transaction id made, if it was sent since `sinceTs` (partial index events_txn). */
  async eventForTxn(sender: string, deviceId: string, scope: string, txnId: string, sinceTs: number): Promise<string | undefined> {
    const r = await this.db
      .selectFrom("events")
      .select("event_id")
      .where("sender", "=", sender)
      .where("txn_id", "=", txnId)
      .where("txn_device_id", "=", deviceId)
      .where("txn_scope", "=", scope)
      .where("received_ts", ">=", sinceTs)
      .executeTakeFirst();
    return r?.event_id;
  }

  /**
   * Transaction ids of events received since `sinceTs` among the newest `limit` events, to warm the in-memory
   * transaction cache at start-up (a bounded scan of the primary key, no index needed).
   */
  async recentTxns(sinceTs: number, limit: number): Promise<{ sender: string; txn_device_id: string; txn_scope: string; txn_id: string; event_id: string }[]> {
    const rows = await this.db
      .selectFrom((eb) => eb.selectFrom("events").select(["stream_ordering", "event_id", "sender", "received_ts", "txn_device_id", "txn_scope", "txn_id"]).orderBy("stream_ordering", "desc").limit(limit).as("recent"))
      .selectAll()
      .where("received_ts", ">=", sinceTs)
      .where("txn_id", "is not", null)
      .execute();
    return rows.map((r) => ({ sender: r.sender, txn_device_id: r.txn_device_id!, txn_scope: r.txn_scope!, txn_id: r.txn_id!, event_id: r.event_id }));
  }

  /**
   * Timeline events of a room with stream ordering in (from, to], newest first. Outliers, rejected and soft-failed
   * events are never part of a timeline.
   */
  /** Timeline events of every room with stream ordering in (from, to], oldest first (application-service transactions). */
  async streamAll(fromExclusive: number, toInclusive: number, limit: number): Promise<EventRow[]> {
    return inTimeline(inStreamRange(this.db.selectFrom("events").selectAll(), fromExclusive, toInclusive))
      .orderBy("stream_ordering", "asc")
      .limit(limit)
      .execute();
  }

  async roomTimeline(roomId: string, fromExclusive: number, toInclusive: number, limit: number): Promise<EventRow[]> {
    return inTimeline(inStreamRange(this.db.selectFrom("events").selectAll().where("room_id", "=", roomId), fromExclusive, toInclusive))
      .orderBy("stream_ordering", "desc")
      .limit(limit)
      .execute();
  }

  /**
   * The newest timeline events of many rooms at once (/sync): for each room, up to `limit` events with stream
   * ordering in (from, to], newest first. One statement per 50 rooms, each room's part its own indexed LIMIT query.
   */
  async timelines(roomIds: readonly string[], fromExclusive: number, toInclusive: number, limit: number): Promise<Map<string, EventRow[]>> {
    const out = new Map<string, EventRow[]>();
    for (const part of chunks([...roomIds], 50)) {
      if (part.length === 0) continue;
      const perRoom = part.map((roomId) =>
        this.db
          .selectFrom((eb) =>
            inTimeline(inStreamRange(eb.selectFrom("events").selectAll().where("room_id", "=", roomId), fromExclusive, toInclusive))
              .orderBy("stream_ordering", "desc")
              .limit(limit)
              .as("t"),
          )
          .selectAll(),
      );
      let q = perRoom[0]!;
      for (const next of perRoom.slice(1)) q = q.unionAll(next);
      for (const row of await q.execute()) {
        let l = out.get(row.room_id);
        if (!l) out.set(row.room_id, (l = []));
        l.push(row);
      }
    }
    for (const l of out.values()) l.sort((a, b) => b.stream_ordering - a.stream_ordering);
    return out;
  }

  /**
   * The legacy event stream (GET /events): timeline events of any of these rooms with stream ordering in
   * (from, to], oldest first, at most `limit` of them.
   */
  async streamForward(roomIds: readonly string[], fromExclusive: number, toInclusive: number, limit: number): Promise<EventRow[]> {
    const out: EventRow[] = [];
    for (const part of chunks([...roomIds], 200)) {
      if (part.length === 0) continue;
      const rows = await inTimeline(inStreamRange(this.db.selectFrom("events").selectAll().where("room_id", "in", part), fromExclusive, toInclusive))
        .orderBy("stream_ordering", "asc")
        .limit(limit)
        .execute();
      out.push(...rows);
    }
    out.sort((a, b) => a.stream_ordering - b.stream_ordering);
    return out.slice(0, limit);
  }

  /**
   * Topological pagination (/messages): events ordered by (depth, stream_ordering), strictly after (dir f) or
   * before (dir b) the given position, optionally bounded by `to`.
   */
  async paginate(
    roomId: string,
    from: { depth: number; stream: number },
    dir: "b" | "f",
    limit: number,
    to?: { depth: number; stream: number },
  ): Promise<EventRow[]> {
    let q = inTimeline(this.db.selectFrom("events").selectAll().where("room_id", "=", roomId));
    // Row-value comparisons, so both engines scan the (room_id, depth, stream_ordering) index as a range.
    const pos = (p: { depth: number; stream: number }) => (eb: ExpressionBuilder<Schema, "events">) => eb.tuple(p.depth, p.stream);
    if (dir === "b") {
      q = q.where((eb) => eb(eb.refTuple("depth", "stream_ordering"), "<=", pos(from)(eb)));
      if (to) q = q.where((eb) => eb(eb.refTuple("depth", "stream_ordering"), ">", pos(to)(eb)));
      q = q.orderBy("depth", "desc").orderBy("stream_ordering", "desc");
    } else {
      q = q.where((eb) => eb(eb.refTuple("depth", "stream_ordering"), ">", pos(from)(eb)));
      if (to) q = q.where((eb) => eb(eb.refTuple("depth", "stream_ordering"), "<=", pos(to)(eb)));
      q = q.orderBy("depth", "asc").orderBy("stream_ordering", "asc");
    }
    return q.limit(limit).execute();
  }

  /** The (depth, stream) position of the newest timeline event at or before a stream position. */
  async topologicalPositionAt(roomId: string, stream: number): Promise<{ depth: number; stream: number } | undefined> {
    const r = await this.db
      .selectFrom("events")
      .select(["depth", "stream_ordering"])
      .where("room_id", "=", roomId)
      .where("stream_ordering", "<=", stream)
      .where("outlier", "=", 0)
      .orderBy("stream_ordering", "desc")
      .limit(1)
      .executeTakeFirst();
    return r ? { depth: r.depth, stream: r.stream_ordering } : undefined;
  }

  /** The room's oldest timeline events (by depth): where backfill continues from. */
  async earliestEvents(roomId: string, limit: number): Promise<EventRow[]> {
    return this.db.selectFrom("events").selectAll().where("room_id", "=", roomId).where("outlier", "=", 0).orderBy("depth", "asc").orderBy("stream_ordering", "asc").limit(limit).execute();
  }

  /** The event closest to a timestamp in a direction (timestamp_to_event). */
  async closestToTimestamp(roomId: string, ts: number, dir: "f" | "b"): Promise<EventRow | undefined> {
    let q = inTimeline(this.db.selectFrom("events").selectAll().where("room_id", "=", roomId));
    q = dir === "f" ? q.where("origin_server_ts", ">=", ts).orderBy("origin_server_ts", "asc") : q.where("origin_server_ts", "<=", ts).orderBy("origin_server_ts", "desc");
    return q.orderBy("stream_ordering", dir === "f" ? "asc" : "desc").limit(1).executeTakeFirst();
  }

  /** Redaction events pointing at these events (accepted or not yet checked). */
  async redactionsOf(eventIds: readonly string[]): Promise<{ event_id: string; redacts: string }[]> {
    if (eventIds.length === 0) return [];
    return this.db.selectFrom("redactions").select(["event_id", "redacts"]).where("redacts", "in", [...eventIds]).execute();
  }

  /** Per room, the newest stream ordering: for the sync change cache. */
  async latestStreamPerRoom(roomIds: readonly string[]): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    for (const part of chunks([...roomIds], 200)) {
      if (part.length === 0) continue;
      const rows = await this.db
        .selectFrom("events")
        .select(["room_id", (eb) => eb.fn.max("stream_ordering").as("m")])
        .where("room_id", "in", part)
        .groupBy("room_id")
        .execute();
      for (const r of rows) out.set(r.room_id, Number(r.m));
    }
    return out;
  }

  /**
   * Per room, the newest timeline event's stream ordering among `types` (Sliding Sync's bump stamps). `types` are
   * inlined as literals so both engines can use the partial index `events_bump` (migration 018), which lists them.
   */
  async latestOfTypesPerRoom(roomIds: readonly string[], types: readonly string[]): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    const list = sql.raw(types.map((t) => `'${t.replaceAll("'", "''")}'`).join(", "));
    for (const part of chunks([...roomIds], 200)) {
      if (part.length === 0) continue;
      const rows = await inTimeline(this.db.selectFrom("events").select(["room_id", (eb) => eb.fn.max("stream_ordering").as("m")]).where("room_id", "in", part))
        .where(sql<boolean>`type IN (${list})`)
        .groupBy("room_id")
        .execute();
      for (const r of rows) out.set(r.room_id, Number(r.m));
    }
    return out;
  }

  /** Children of an event via m.relates_to, newest first unless dir is "f". */
  async relations(
    roomId: string,
    eventId: string,
    opts: { relType?: string; eventType?: string; fromStream?: number; toStream?: number; dir: "b" | "f"; limit: number; recurse?: boolean },
  ): Promise<EventRow[]> {
    let q = this.db
      .selectFrom("event_relations as r")
      .innerJoin("events as e", "e.event_id", "r.event_id")
      .selectAll("e")
      .where("r.relates_to_id", "=", eventId)
      .where("e.room_id", "=", roomId)
      .where("e.rejected_reason", "is", null)
      .where("e.soft_failed", "=", 0);
    if (opts.relType) q = q.where("r.rel_type", "=", opts.relType);
    if (opts.eventType) q = q.where("e.type", "=", opts.eventType);
    if (opts.dir === "b") {
      if (opts.fromStream !== undefined) q = q.where("e.stream_ordering", "<", opts.fromStream);
      if (opts.toStream !== undefined) q = q.where("e.stream_ordering", ">=", opts.toStream);
      q = q.orderBy("e.stream_ordering", "desc");
    } else {
      if (opts.fromStream !== undefined) q = q.where("e.stream_ordering", ">", opts.fromStream);
      if (opts.toStream !== undefined) q = q.where("e.stream_ordering", "<=", opts.toStream);
      q = q.orderBy("e.stream_ordering", "asc");
    }
    return q.limit(opts.limit).execute();
  }

  /** For bundled aggregations: relation rows pointing at any of these events. */
  async relationsTo(eventIds: readonly string[], relTypes: string[]): Promise<{ event_id: string; relates_to_id: string; rel_type: string; sender: string; stream_ordering: number; type: string }[]> {
    if (eventIds.length === 0) return [];
    const out = [];
    for (const part of chunks([...eventIds], 200)) {
      out.push(
        ...(await this.db
          .selectFrom("event_relations as r")
          .innerJoin("events as e", "e.event_id", "r.event_id")
          .select(["r.event_id", "r.relates_to_id", "r.rel_type", "e.sender", "e.stream_ordering", "e.type"])
          .where("r.relates_to_id", "in", part)
          .where("r.rel_type", "in", relTypes)
          .where("e.rejected_reason", "is", null)
          .where("e.soft_failed", "=", 0)
          .where("e.redacted_by", "is", null)
          .execute()),
      );
    }
    return out;
  }

  async threads(roomId: string, opts: { fromStream?: number; limit: number; participatedBy?: string }): Promise<{ thread_id: string; latest_stream_ordering: number }[]> {
    let q = this.db.selectFrom("threads").select(["thread_id", "latest_stream_ordering"]).where("room_id", "=", roomId);
    if (opts.fromStream !== undefined) q = q.where("latest_stream_ordering", "<", opts.fromStream);
    if (opts.participatedBy !== undefined) {
      const user = opts.participatedBy;
      q = q.where((eb) =>
        eb.or([
          eb.exists(eb.selectFrom("events as root").select("root.event_id").whereRef("root.event_id", "=", "threads.thread_id").where("root.sender", "=", user)),
          eb.exists(
            eb
              .selectFrom("event_relations as r")
              .innerJoin("events as e", "e.event_id", "r.event_id")
              .select("r.event_id")
              .whereRef("r.relates_to_id", "=", "threads.thread_id")
              .where("r.rel_type", "=", "m.thread")
              .where("e.sender", "=", user),
          ),
        ]),
      );
    }
    return q.orderBy("latest_stream_ordering", "desc").limit(opts.limit).execute();
  }

  /**
   * Child events of `eventId` for GET /relations: direct children, and with `maxDepth` > 1 their children too,
   * following only relations that pass the filters at every level (spec "Relationships API": events reached only
   * through a non-matching intermediate event are not included). Redacted, rejected and soft-failed events break
   * the chain. Returns the events with stream ordering in (above, atMost], ordered by stream ordering
   * (descending for dir "b"), at most `limit` of them.
   */
  async relationTree(
    roomId: string,
    eventId: string,
    opts: {
      relType?: string;
      eventType?: string;
      maxDepth: number;
      /** Leave out direct m.replace children (the parent is redacted: its edits would leak content). */
      skipDirectReplacements?: boolean;
      above?: number;
      atMost?: number;
      dir: "b" | "f";
      limit: number;
    },
  ): Promise<EventRow[]> {
    const { relType, eventType } = opts;
    const q = this.db
      .withRecursive("rel_tree(event_id, level)", (db) => {
        let direct = db
          .selectFrom("event_relations as r")
          .innerJoin("events as e", "e.event_id", "r.event_id")
          .select(["r.event_id", sql<number>`1`.as("level")])
          .where("r.relates_to_id", "=", eventId)
          .where("e.room_id", "=", roomId)
          .where("e.rejected_reason", "is", null)
          .where("e.soft_failed", "=", 0)
          .where("e.redacted_by", "is", null);
        if (relType !== undefined) direct = direct.where("r.rel_type", "=", relType);
        if (eventType !== undefined) direct = direct.where("e.type", "=", eventType);
        if (opts.skipDirectReplacements) direct = direct.where("r.rel_type", "!=", "m.replace");
        let nested = db
          .selectFrom("event_relations as r")
          .innerJoin("rel_tree as t", "t.event_id", "r.relates_to_id")
          .innerJoin("events as e", "e.event_id", "r.event_id")
          .select(["r.event_id", sql<number>`t.level + 1`.as("level")])
          .where("t.level", "<", opts.maxDepth)
          .where("e.room_id", "=", roomId)
          .where("e.rejected_reason", "is", null)
          .where("e.soft_failed", "=", 0)
          .where("e.redacted_by", "is", null);
        if (relType !== undefined) nested = nested.where("r.rel_type", "=", relType);
        if (eventType !== undefined) nested = nested.where("e.type", "=", eventType);
        return direct.unionAll(nested);
      })
      .selectFrom("events as e")
      .selectAll("e")
      // IN (not a join) so an event reached twice (only possible in a malformed cycle) is returned once.
      .where("e.event_id", "in", (eb) => eb.selectFrom("rel_tree").select("rel_tree.event_id"))
      .where("e.event_id", "!=", eventId);
    let bounded = q;
    if (opts.above !== undefined) bounded = bounded.where("e.stream_ordering", ">", opts.above);
    if (opts.atMost !== undefined) bounded = bounded.where("e.stream_ordering", "<=", opts.atMost);
    return bounded.orderBy("e.stream_ordering", opts.dir === "b" ? "desc" : "asc").limit(opts.limit).execute();
  }
}
