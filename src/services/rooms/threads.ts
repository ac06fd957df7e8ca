/**
 * The threads of a room (spec "Threading", "Querying threads in a room": GET /v1/rooms/{roomId}/threads): the thread
 * roots, most recently active thread first, each with its bundled aggregations (the m.thread summary), optionally
 * only the threads the user "participated" in. The `threads` table, kept up to date as thread events are written,
 * holds each thread's latest event.
 */
import { MatrixError } from "../../errors.js";
import type { StoredEvent } from "./event_cache.js";
import type { ClientEvent } from "./format.js";
import type { MessageService, Requester } from "./messages.js";
import type { RoomAccess } from "./rooms.js";

export type ThreadsInclude = "all" | "participated";

export interface ThreadsPage {
  chunk: ClientEvent[];
  next_batch?: string;
}

/** `th<n>`: continue with the threads whose latest event is older than stream ordering n. */
export function formatThreadsToken(stream: number): string {
  return `th${stream}`;
}

export function parseThreadsToken(token: string): number {
  const m = /^th(-?\d+)$/.exec(token);
  const n = m ? Number(m[1]) : NaN;
  // Spec 400: "The from token is unknown to the server."
  if (!Number.isSafeInteger(n)) throw new MatrixError(400, "M_INVALID_PARAM", "Unknown pagination token");
  return n;
}

export class ThreadListService {
  constructor(
    private readonly rooms: RoomAccess,
    private readonly messages: MessageService,
  ) {}

  async list(roomId: string, r: Requester, opts: { include: ThreadsInclude; from?: string; limit: number }): Promise<ThreadsPage> {
    const core = this.rooms.core;
    // Spec 403 "The user cannot view or peek on the room" (also for unknown rooms): members, former members, and
    // anyone when history is world readable — the same rule as reading the room's state.
    await this.messages.visibleState(roomId, r.userId);
    const fromStream = opts.from !== undefined ? parseThreadsToken(opts.from) : undefined;
    const rows = await core.storage.events.threads(roomId, {
      fromStream,
      limit: opts.limit + 1,
      participatedBy: opts.include === "participated" ? r.userId : undefined,
    });
    const pageRows = rows.slice(0, opts.limit);
    const loaded = await core.events.getMany(pageRows.map((t) => t.thread_id));
    // A thread whose root this server does not have, or whose root is in another room (an invalid relation), is
    // not listed.
    const roots = pageRows.map((t) => loaded.get(t.thread_id)).filter((e): e is StoredEvent => e !== undefined && e.event.room_id === roomId);
    const visible = await core.visibility.filter(r.userId, roots);
    const page: ThreadsPage = { chunk: await core.formatter.format(visible, { userId: r.userId, deviceId: r.deviceId }) };
    const last = pageRows[pageRows.length - 1];
    if (rows.length > opts.limit && last) page.next_batch = formatThreadsToken(last.latest_stream_ordering);
    return page;
  }
}
