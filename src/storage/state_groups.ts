/** State groups in the database: the group tree and each group's delta (see state_deltas.ts). */
import { sql, type Kysely } from "kysely";
import { splitStateMapKey, stateMapKey } from "../core/events/event.js";
import type { Schema } from "./schema.js";
import type { StateDelta } from "./state_deltas.js";

export interface StateGroupNode {
  id: number;
  roomId: string;
  prevGroup: number | null;
  chainDepth: number;
  delta: StateDelta;
}

export class StateGroupStore {
  constructor(private readonly db: Kysely<Schema>) {}

  async insert(node: StateGroupNode, eventId: string | null): Promise<void> {
    await this.db
      .insertInto("state_groups")
      .values({ id: node.id, room_id: node.roomId, event_id: eventId, prev_group: node.prevGroup, chain_depth: node.chainDepth })
      .execute();
    const rows = [...node.delta].map(([k, v]) => {
      const [type, stateKey] = splitStateMapKey(k);
      return { state_group: node.id, type, state_key: stateKey, event_id: v };
    });
    // Chunked: SQLite limits the number of bound parameters per statement.
    for (let i = 0; i < rows.length; i += 200) await this.db.insertInto("state_group_entries").values(rows.slice(i, i + 200)).execute();
  }

  /** The group and its delta ancestors up to the root, nearest first — one query. */
  async loadChain(groupId: number): Promise<StateGroupNode[]> {
    const rows = await sql<{ id: number; room_id: string; prev_group: number | null; chain_depth: number; type: string | null; state_key: string | null; event_id: string | null }>`
      WITH RECURSIVE chain(id) AS (
        SELECT CAST(${groupId} AS BIGINT)
        UNION ALL
        SELECT g.prev_group FROM state_groups g JOIN chain c ON g.id = c.id WHERE g.prev_group IS NOT NULL
      )
      SELECT g.id, g.room_id, g.prev_group, g.chain_depth, e.type, e.state_key, e.event_id
      FROM chain c JOIN state_groups g ON g.id = c.id
      LEFT JOIN state_group_entries e ON e.state_group = g.id
    `.execute(this.db);
    const nodes = new Map<number, StateGroupNode>();
    for (const r of rows.rows) {
      const id = Number(r.id);
      let n = nodes.get(id);
      if (!n) {
        n = { id, roomId: r.room_id, prevGroup: r.prev_group === null ? null : Number(r.prev_group), chainDepth: Number(r.chain_depth), delta: new Map() };
        nodes.set(id, n);
      }
      if (r.type !== null && r.state_key !== null) n.delta.set(stateMapKey(r.type, r.state_key), r.event_id);
    }
    return [...nodes.values()].sort((a, b) => b.chainDepth - a.chainDepth);
  }

  async maxId(): Promise<number> {
    const r = await this.db.selectFrom("state_groups").select((eb) => eb.fn.max("id").as("m")).executeTakeFirst();
    return Number(r?.m ?? 0);
  }
}
