/**
 * The child events of an event (spec "Relationships API": GET /v1/rooms/{roomId}/relations/{eventId}, optionally
 * narrowed by `relType` and `eventType`): paginated in stream order, newest first unless `dir=f`, optionally
 * following relations of relations (`recurse`, spec v1.10), each child served with its own bundled aggregations.
 */
import { MatrixError, notFound } from "../../errors.js";
import type { ClientEvent } from "./format.js";
import type { Requester } from "./messages.js";
import type { RoomAccess } from "./rooms.js";
import { parsePaginationToken } from "./tokens.js";

/**
 * How many levels below the direct children `recurse=true` follows. Spec: "Homeservers SHOULD traverse at least 3
 * levels of relationships"; counting the direct children as level 0 (as Synapse does) we go 3 further, and report
 * that as `recursion_depth`.
 */
export const RECURSION_DEPTH = 3;

export interface RelationsQuery {
  relType?: string;
  eventType?: string;
  from?: string;
  to?: string;
  dir: "b" | "f";
  limit: number;
  /** Undefined when the client did not send `recurse`: `recursion_depth` is then absent from the response. */
  recurse?: boolean;
}

export interface RelationsPage {
  chunk: ClientEvent[];
  next_batch?: string;
  prev_batch?: string;
  recursion_depth?: number;
}

/**
 * Relation pagination tokens name a point in the event stream: `r<n>` lies just after the event with stream
 * ordering n, so going backwards returns events at or before n and going forwards events after n. The spec also
 * allows `from`/`to` to be a /messages or /sync token; those name stream points in the same sense
 * (services/rooms/tokens.ts), so their stream position is used as is.
 */
export function formatRelationToken(stream: number): string {
  return `r${stream}`;
}

export function parseRelationToken(token: string): number {
  const m = /^r(-?\d+)$/.exec(token);
  if (m) {
    const n = Number(m[1]);
    if (!Number.isSafeInteger(n)) throw new MatrixError(400, "M_INVALID_PARAM", `Invalid pagination token: ${token}`);
    return n;
  }
  const t = parsePaginationToken(token);
  return t.kind === "topo" ? t.pos.stream : t.stream;
}

export class RelationsService {
  constructor(private readonly rooms: RoomAccess) {}

  async children(roomId: string, r: Requester, eventId: string, q: RelationsQuery): Promise<RelationsPage> {
    const core = this.rooms.core;
    const parent = await core.events.get(eventId);
    // Spec 404: "The parent event was not found or the user does not have permission to read this event".
    if (!parent || parent.event.room_id !== roomId || !(await core.visibility.canSee(r.userId, parent))) throw notFound("Event not found.");

    const from = q.from !== undefined ? parseRelationToken(q.from) : undefined;
    const to = q.to !== undefined ? parseRelationToken(q.to) : undefined;
    // Backwards from `from` down to `to`, or forwards from `from` up to `to`: the interval (above, atMost].
    const [above, atMost] = q.dir === "b" ? [to, from] : [from, to];
    // One row more than asked for tells whether another page follows.
    const rows = await core.storage.events.relationTree(roomId, eventId, {
      relType: q.relType,
      eventType: q.eventType,
      maxDepth: q.recurse ? 1 + RECURSION_DEPTH : 1,
      // Spec "Server-side aggregation of m.replace relationships": edits of a redacted event are not served with
      // it; listing them here would leak the content the redaction removed (Synapse drops them too).
      skipDirectReplacements: parent.redactedBy !== null,
      above,
      atMost,
      dir: q.dir,
      limit: q.limit + 1,
    });
    const pageRows = rows.slice(0, q.limit);
    const visible = await core.visibility.filter(r.userId, await core.events.fromRows(pageRows));
    const page: RelationsPage = { chunk: await core.formatter.format(visible, { userId: r.userId, deviceId: r.deviceId }) };

    if (rows.length > q.limit) {
      const last = pageRows[pageRows.length - 1];
      // Continue after the last event returned (before it, going backwards); with limit 0, from where we started.
      let next: number;
      if (last) next = q.dir === "b" ? last.stream_ordering - 1 : last.stream_ordering;
      else next = from ?? (q.dir === "b" ? Number.MAX_SAFE_INTEGER : Number.MIN_SAFE_INTEGER);
      page.next_batch = formatRelationToken(next);
    }
    // Spec: prev_batch is absent on the first page only.
    if (from !== undefined) page.prev_batch = formatRelationToken(from);
    // Spec: "If the recurse parameter was supplied by the client, this response field is mandatory".
    if (q.recurse !== undefined) page.recursion_depth = q.recurse ? RECURSION_DEPTH : 0;
    return page;
  }
}
