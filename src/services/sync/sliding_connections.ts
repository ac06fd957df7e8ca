/**
 * Sliding Sync connections (MSC4186 "Connections"): per (user, device, conn_id), the `pos` tokens handed out and
 * per room what was sent, so an incremental response carries only what changed. Kept in the database, so a
 * connection survives a restart.
 *
 * A `pos` is `<sync token>~<position id>`: the sync token first, so /messages accepts a `pos` as it does a
 * next_batch. A position stays valid while it is the connection's base (the newest `pos` a request used) or a child
 * of it (a response not yet used): a retried request with the same `pos` works; an older one is M_UNKNOWN_POS.
 */
import { MatrixError } from "../../errors.js";
import { isJsonObject, type JsonObject } from "../../core/json/types.js";
import type { Storage } from "../../storage/storage.js";
import type { SlidingRoomRow } from "../../storage/sliding_sync.js";
import type { StateSpec } from "./sliding_request.js";
import { formatSyncToken, parseSyncToken, type SyncToken } from "./token.js";

/** A device keeps at most this many connections; a new one beyond it drops the least recently used. */
const MAX_CONNECTIONS_PER_DEVICE = 10;
/** Lazy members remembered per room as sent (as Synapse): beyond it the oldest may be sent again. */
const MAX_REMEMBERED_MEMBERS = 100;

/** What a connection sent of a room. */
export interface SentRoom {
  membership: string;
  /** The events stream position the room was sent up to. */
  sentStream: number;
  timelineLimit: number;
  requiredState: StateSpec;
  /** Member events sent because of `$LAZY` (user ids): their changes are sent as state deltas. */
  lazyMembers: string[];
  /** Sent as a DM (is_dm). */
  isDm?: boolean;
  /** The notification and highlight counts sent. */
  counts?: [number, number];
}

export interface OpenConnection {
  id: number;
  /** The position the request continues from (0 for a new connection). */
  positionId: number;
  /** The stream token of that position; undefined for a new connection (an initial sync). */
  since: SyncToken | undefined;
  /** The sticky request settings of that position. */
  sticky: JsonObject | undefined;
  rooms: Map<string, SentRoom>;
}

export class SlidingConnections {
  constructor(private readonly storage: Storage) {}

  /** Opens the connection a request names: continues from `pos`, or starts afresh without one. */
  async open(userId: string, deviceId: string, connId: string, pos: string | undefined): Promise<OpenConnection> {
    const store = this.storage.slidingSync;
    const now = Date.now();
    if (pos === undefined) {
      // A request without pos starts the connection over (MSC4186: the first request of a connection).
      const start = async () => {
        const all = await store.connectionsOf(userId, deviceId);
        return this.storage.transaction(async (tx) => {
          const existing = all.find((c) => c.conn_id === connId);
          if (existing) await tx.slidingSync.deleteConnection(existing.id);
          const others = all.filter((c) => c.id !== existing?.id);
          for (const old of others.slice(0, Math.max(0, others.length - (MAX_CONNECTIONS_PER_DEVICE - 1)))) await tx.slidingSync.deleteConnection(old.id);
          return tx.slidingSync.createConnection(userId, deviceId, connId, now);
        });
      };
      // Two fresh starts of one conn_id at once (a cancelled request still running): the later one wins.
      const id = await start().catch(() => start());
      return { id, positionId: 0, since: undefined, sticky: undefined, rooms: new Map() };
    }
    const m = /^(s[\d_-]+)~(\d{1,15})$/.exec(pos);
    if (!m) throw unknownPos();
    const positionId = Number(m[2]);
    const position = await store.position(positionId);
    if (!position || position.token !== m[1]) throw unknownPos();
    const conn = await store.connectionById(position.connection_id);
    // A pos names its user, device and conn_id: another's is unknown to this requester.
    if (!conn || conn.user_id !== userId || conn.device_id !== deviceId || conn.conn_id !== connId) throw unknownPos();
    if (position.id !== conn.base_position && position.parent_id !== conn.base_position) throw unknownPos();
    if (position.id !== conn.base_position) await this.storage.transaction((tx) => tx.slidingSync.accept(conn.id, conn.base_position, position.id, now));
    else if (now - conn.last_used_ts > 60_000) await store.touch(conn.id, now);
    const rows = await store.roomsAt(conn.id, position.id);
    const rooms = new Map<string, SentRoom>();
    for (const [roomId, r] of rows) rooms.set(roomId, fromRow(r));
    const sticky = JSON.parse(position.config) as unknown;
    return { id: conn.id, positionId: position.id, since: parseSyncToken(position.token), sticky: isJsonObject(sticky) ? sticky : undefined, rooms };
  }

  /** Records a response: a new position with the rooms it sent. Returns its `pos`. */
  async commit(conn: OpenConnection, token: SyncToken, sticky: JsonObject, sent: ReadonlyMap<string, SentRoom>): Promise<string> {
    const formatted = formatSyncToken(token);
    const rows: SlidingRoomRow[] = [...sent].map(([roomId, s]) => toRow(roomId, s));
    const id = await this.storage.transaction((tx) => tx.slidingSync.addPosition(conn.id, conn.positionId, formatted, JSON.stringify(sticky), rows, Date.now()));
    return `${formatted}~${id}`;
  }
}

function unknownPos(): MatrixError {
  return new MatrixError(400, "M_UNKNOWN_POS", "Unknown or expired pos: start the connection again without one");
}

interface StoredSpec {
  i: [string, string][];
  x?: [string, string][];
  l?: boolean;
  m?: string[];
  d?: 1;
  c?: [number, number];
}

function toRow(roomId: string, s: SentRoom): SlidingRoomRow {
  const spec: StoredSpec = { i: s.requiredState.include };
  if (s.requiredState.exclude.length > 0) spec.x = s.requiredState.exclude;
  if (s.requiredState.lazy) spec.l = true;
  if (s.lazyMembers.length > 0) spec.m = s.lazyMembers.slice(-MAX_REMEMBERED_MEMBERS);
  if (s.isDm) spec.d = 1;
  if (s.counts && (s.counts[0] > 0 || s.counts[1] > 0)) spec.c = s.counts;
  return { room_id: roomId, membership: s.membership, sent_stream: s.sentStream, timeline_limit: s.timelineLimit, required_state: JSON.stringify(spec) };
}

function fromRow(r: SlidingRoomRow): SentRoom {
  const spec = JSON.parse(r.required_state) as StoredSpec;
  return {
    membership: r.membership,
    sentStream: Number(r.sent_stream),
    timelineLimit: Number(r.timeline_limit),
    requiredState: { include: spec.i ?? [], exclude: spec.x ?? [], lazy: spec.l === true },
    lazyMembers: spec.m ?? [],
    isDm: spec.d === 1,
    counts: spec.c,
  };
}
