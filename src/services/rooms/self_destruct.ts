/**
 * Self-destructing events (MSC2228, behind Synapse's experimental `enable_ephemeral_messages`): a message event whose
 * content carries `org.matrix.self_destruct_after` (a timestamp in ms) is pruned at that time, as a redaction would
 * prune it, but with no redaction event: the stored JSON itself is replaced and its search row dropped, so the
 * content is gone from this server for good. Local and federated events alike; state events never expire (as in
 * Synapse). The expiry is staged in the event's own transaction and one timer waits for the earliest.
 */
import type { Logger } from "pino";
import { redactPdu } from "../../core/events/redaction.js";
import type { Storage } from "../../storage/storage.js";
import type { Staged } from "../../storage/staged_rows.js";
import type { EventCache, StoredEvent } from "./event_cache.js";
import type { EventConsumer, NewEvent } from "./pipeline/consumers.js";
import type { RecentEvents } from "./recent_events.js";

export const SELF_DESTRUCT_AFTER = "org.matrix.self_destruct_after";

/** setTimeout's longest delay (a 32-bit signed integer); a later expiry is waited for in steps. */
const MAX_DELAY_MS = 2 ** 31 - 1;
/** Expiries pruned per database round, so a backlog after downtime does not hold one long transaction. */
const BATCH = 100;

/** When an event asks to expire: an integer timestamp on a non-state event, else undefined. */
export function expiryOf(e: { type: string; state_key?: string; content: Record<string, unknown> }): number | undefined {
  if (e.state_key !== undefined) return undefined;
  const ts = e.content[SELF_DESTRUCT_AFTER];
  return typeof ts === "number" && Number.isSafeInteger(ts) ? ts : undefined;
}

export interface SelfDestructDeps {
  storage: Storage;
  events: EventCache;
  recent: RecentEvents;
  log: Logger;
}

export class SelfDestructingEvents implements EventConsumer {
  readonly name = "self-destruct";
  private timer: NodeJS.Timeout | undefined;
  /** When the timer fires (undefined: no timer). */
  private timerAt: number | undefined;
  private running: Promise<void> | undefined;
  private closed = false;

  constructor(private readonly deps: SelfDestructDeps) {}

  /** Waits for the earliest expiry already stored (events accepted before a restart). */
  async start(): Promise<void> {
    const next = await this.deps.storage.eventExpiry.next();
    if (next !== undefined) this.schedule(next);
  }

  stage(e: NewEvent): Staged[] | undefined {
    const ts = expiryOf(e.event);
    return ts === undefined ? undefined : [this.deps.storage.eventExpiry.insertQuery(e.event.event_id, ts)];
  }

  committed(e: StoredEvent): void {
    const ts = expiryOf(e.event);
    if (ts !== undefined) this.schedule(ts);
  }

  /** Stops the timer; a pass under way finishes. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
  }

  private schedule(at: number): void {
    if (this.closed || (this.timerAt !== undefined && this.timerAt <= at)) return;
    if (this.timer) clearTimeout(this.timer);
    const delay = Math.min(MAX_DELAY_MS, Math.max(0, at - Date.now()));
    this.timerAt = Date.now() + delay;
    this.timer = setTimeout(() => this.fire(), delay);
    this.timer.unref();
  }

  private fire(): void {
    this.timer = undefined;
    this.timerAt = undefined;
    if (this.running) return; // the pass under way schedules the next one
    this.running = this.expireDue()
      .catch((err: unknown) => {
        this.deps.log.error({ err }, "pruning expired events failed; retrying in a minute");
        this.schedule(Date.now() + 60_000);
      })
      .finally(() => (this.running = undefined));
  }

  /** Prunes every event due by now, then waits for the next. */
  private async expireDue(): Promise<void> {
    const { storage } = this.deps;
    for (;;) {
      const due = await storage.eventExpiry.due(Date.now(), BATCH);
      for (const d of due) await this.expire(d.eventId);
      if (due.length < BATCH || this.closed) break;
    }
    const next = await storage.eventExpiry.next();
    if (next !== undefined) this.schedule(next);
  }

  private async expire(eventId: string): Promise<void> {
    const { storage, events, recent } = this.deps;
    const stored = await events.get(eventId);
    const pruned = stored ? JSON.stringify(redactPdu(stored.version, stored.event.pdu)) : undefined;
    await storage.eventExpiry.expire(eventId, pruned);
    if (!stored) return;
    // Cached copies hold the content: the next read takes the pruned JSON from the database.
    events.forget(eventId);
    recent.drop(stored.event.room_id);
  }
}
