/**
 * Receipts (spec "Receipts"): m.read and m.read.private, threaded or not, stored durably and numbered on the
 * receipts stream; m.fully_read is the read marker (room account data). Private receipts reach only their owner.
 */
import { isJsonObject } from "../../core/json/types.js";
import { MatrixError, notFound } from "../../errors.js";
import type { Storage } from "../../storage/storage.js";
import { StreamIdGenerator } from "../../storage/stream_ids.js";
import { ChangeTracker } from "../../util/change_tracker.js";
import type { AccountDataService } from "../account_data.js";
import type { Notifier } from "../notifier.js";
import type { EventCache } from "../rooms/event_cache.js";

export const RECEIPT_TYPES = new Set(["m.read", "m.read.private", "m.fully_read"]);

export class ReceiptService {
  private stream!: StreamIdGenerator;
  /** Which rooms got receipts since a position, so /sync reads receipts only for those. */
  private changes = new ChangeTracker(Number.MAX_SAFE_INTEGER);

  constructor(
    private readonly storage: Storage,
    private readonly events: EventCache,
    private readonly accountData: AccountDataService,
    private readonly notifier: Notifier,
  ) {}

  async start(): Promise<void> {
    this.stream = new StreamIdGenerator(await this.storage.rooms.maxReceiptStream());
    this.changes = new ChangeTracker(this.stream.position());
  }

  position(): number {
    return this.stream.position();
  }

  /**
   * POST /receipt/{receiptType}/{eventId}. `threadId` is "main", a thread root's event id, or undefined for an
   * unthreaded receipt. A receipt never moves backwards in the stream: an older event than the current one is ignored.
   */
  /** A local user's receipt: notifications up to `streamOrdering` in the thread ('' unthreaded) are read. */
  onRead?: (roomId: string, userId: string, threadId: string, streamOrdering: number) => Promise<void>;

  /** Called for each receipt a local user sets (federation sends public ones to the room's other servers). */
  onLocalReceipt?: (roomId: string, userId: string, receiptType: string, eventId: string, data: Record<string, unknown>) => void;

  async setReceipt(roomId: string, userId: string, receiptType: string, eventId: string, threadId: string | undefined, opts: { remote?: boolean } = {}): Promise<void> {
    if (!RECEIPT_TYPES.has(receiptType)) throw new MatrixError(400, "M_INVALID_PARAM", `Receipt type must be one of ${[...RECEIPT_TYPES].join(", ")}`);
    const target = await this.events.get(eventId);
    if (!target || target.event.room_id !== roomId) throw notFound("Event not found");
    if (receiptType === "m.fully_read") {
      if (threadId !== undefined) throw new MatrixError(400, "M_INVALID_PARAM", "m.fully_read receipts cannot be threaded");
      await this.setFullyRead(roomId, userId, eventId);
      return;
    }
    const thread = threadId ?? "";
    // Notifications up to the receipt are read, whichever of m.read and m.read.private is further.
    if (!opts.remote) await this.onRead?.(roomId, userId, thread, target.streamOrdering);
    const existing = await this.storage.rooms.receipt(roomId, receiptType, userId, thread);
    if (existing) {
      const prev = await this.events.get(existing.event_id);
      if (prev && prev.streamOrdering > target.streamOrdering) return;
    }
    const data: Record<string, unknown> = { ts: Date.now() };
    if (threadId !== undefined) data.thread_id = threadId;
    const id = this.stream.next();
    try {
      await this.storage.rooms.upsertReceipt({ room_id: roomId, receipt_type: receiptType, user_id: userId, thread_id: thread, event_id: eventId, data: JSON.stringify(data), stream_id: id });
      this.changes.record(roomId, id);
    } finally {
      this.stream.finish(id);
    }
    this.notifier.notify({ rooms: [roomId] });
    if (!opts.remote) this.onLocalReceipt?.(roomId, userId, receiptType, eventId, data);
  }

  async setFullyRead(roomId: string, userId: string, eventId: string): Promise<void> {
    const target = await this.events.get(eventId);
    if (!target || target.event.room_id !== roomId) throw notFound("Event not found");
    await this.accountData.write(userId, roomId, "m.fully_read", { event_id: eventId });
  }

  /** m.receipt events per room for receipts in (since, to]; private receipts only for their owner. */
  async eventsFor(roomIds: readonly string[], since: number, to: number, userId: string): Promise<Map<string, { type: "m.receipt"; content: Record<string, Record<string, Record<string, unknown>>> }>> {
    const changed = since >= to ? [] : roomIds.filter((r) => this.changes.changedSince(r, since));
    const rows = changed.length > 0 ? await this.storage.rooms.receiptsSince(changed, since, to) : [];
    const out = new Map<string, { type: "m.receipt"; content: Record<string, Record<string, Record<string, unknown>>> }>();
    for (const r of rows) {
      if (r.receipt_type === "m.read.private" && r.user_id !== userId) continue;
      let ev = out.get(r.room_id);
      if (!ev) out.set(r.room_id, (ev = { type: "m.receipt", content: {} }));
      const byType = (ev.content[r.event_id] ??= {});
      const byUser = (byType[r.receipt_type] ??= {}) as Record<string, unknown>;
      const data = JSON.parse(r.data) as unknown;
      byUser[r.user_id] = isJsonObject(data) ? data : {};
    }
    return out;
  }
}
