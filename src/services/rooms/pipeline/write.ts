/**
 * Stage 4, "write": an event and everything it changes become one PersistItem, and the group-commit writer makes
 * items durable. Rows a consumer adds (see consumers.ts) ride in the same transaction.
 */
import { compileStaged } from "../../../storage/staged_rows.js";
import type { CompiledQuery } from "kysely";
import type { Logger } from "pino";
import type { Event } from "../../../core/events/event.js";
import { isJsonObject } from "../../../core/json/types.js";
import { MatrixError } from "../../../errors.js";
import type { PersistItem } from "../../../storage/events.js";
import type { Storage } from "../../../storage/storage.js";

/** The rows of one event; `extra` sets what its path through the pipeline decided (state, extremities…). */
export function persistItem(event: Event, streamOrdering: number, stateGroup: number | null, extra: Partial<PersistItem>): PersistItem {
  const { unsigned: _u, ...pdu } = event.pdu;
  const content = event.content;
  const rel = isJsonObject(content["m.relates_to"]) ? content["m.relates_to"] : undefined;
  const item: PersistItem = {
    streamOrdering,
    eventId: event.event_id,
    roomId: event.room_id,
    type: event.type,
    stateKey: event.state_key ?? null,
    sender: event.sender,
    depth: event.depth,
    originServerTs: event.origin_server_ts,
    json: JSON.stringify(pdu),
    prevEvents: event.prev_events,
    authEvents: event.auth_events,
    stateGroup,
    replacesState: null,
    outlier: false,
    softFailed: false,
    rejectedReason: null,
    containsUrl: typeof content.url === "string",
    ...extra,
  };
  if (event.type === "m.room.member" && event.state_key !== undefined && typeof content.membership === "string") {
    item.membership = {
      userId: event.state_key,
      membership: content.membership,
      displayname: typeof content.displayname === "string" ? content.displayname : null,
      avatarUrl: typeof content.avatar_url === "string" ? content.avatar_url : null,
    };
  }
  if (event.redacts !== undefined) item.redacts = event.redacts;
  if (rel && typeof rel.rel_type === "string" && typeof rel.event_id === "string") {
    item.relation = { relatesTo: rel.event_id, relType: rel.rel_type, aggregationKey: typeof rel.key === "string" ? rel.key : null };
  }
  return item;
}

/** A batch's statements: the events' own rows, then what consumers added for them. */
function compile(storage: Storage, items: PersistItem[], now: number): CompiledQuery[] {
  const q = storage.events.compileBatch(items, now);
  const staged = items.flatMap((i) => i.consumerRows ?? []);
  if (staged.length > 0) q.push(...compileStaged(staged));
  return q;
}

type Pending = { items: PersistItem[]; resolve: () => void; reject: (e: unknown) => void };

/**
 * Group commit: writes queue up while a transaction is in flight and the next transaction takes them all, so many
 * concurrent sends share one commit (and one fsync) while each caller still hears back only after its own rows
 * are durable. Batches commit in FIFO order. A failing batch is retried item by item, so one bad item fails alone.
 */
export class GroupCommitWriter {
  private queue: Pending[] = [];
  private running = false;
  /** Events whose write failed: queued events built on them must fail too (their prev_events do not exist). */
  private readonly failed = new Set<string>();

  constructor(
    private readonly storage: Storage,
    private readonly log: Logger,
  ) {}

  /** Called with the number of events in each group commit (metrics). */
  onBatch?: (events: number) => void;

  write(items: PersistItem[]): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queue.push({ items, resolve, reject });
      if (!this.running) void this.drain();
    });
  }

  private markFailed(items: PersistItem[]): void {
    for (const i of items) this.failed.add(i.eventId);
    // Bounded: entries matter only while events built on them are still queued.
    if (this.failed.size > 10_000) this.failed.clear();
  }

  /** Rejects queued writes whose prev_events failed to write, and returns the rest. */
  private dropOrphans(batch: Pending[]) {
    if (this.failed.size === 0) return batch;
    return batch.filter((b) => {
      if (!b.items.some((i) => i.prevEvents.some((p) => this.failed.has(p)))) return true;
      this.markFailed(b.items);
      b.reject(new MatrixError(500, "M_UNKNOWN", "An earlier event in this room failed to be stored"));
      return false;
    });
  }

  private async drain(): Promise<void> {
    this.running = true;
    try {
      while (this.queue.length > 0) {
        const batch = this.dropOrphans(this.queue);
        this.onBatch?.(batch.reduce((n, b) => n + b.items.length, 0));
        this.queue = [];
        if (batch.length === 0) continue;
        const now = Date.now();
        try {
          await this.storage.runBatch(compile(this.storage, batch.flatMap((b) => b.items), now));
          for (const b of batch) b.resolve();
        } catch (e) {
          if (batch.length === 1) {
            this.markFailed(batch[0]!.items);
            batch[0]!.reject(e);
            continue;
          }
          this.log.warn({ err: e }, "event batch failed; retrying its writes one by one");
          for (const b of this.dropOrphans(batch)) {
            try {
              await this.storage.runBatch(compile(this.storage, b.items, now));
              b.resolve();
            } catch (err) {
              this.markFailed(b.items);
              b.reject(err);
            }
          }
        }
      }
    } finally {
      this.running = false;
    }
  }
}
