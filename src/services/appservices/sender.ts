/**
 * Pushing events to application services (spec "Pushing events"): per service, one worker walks the events stream
 * from the service's stored position, picks the events the service is interested in, and sends them in order as
 * transactions, one in flight at a time.
 *
 * Durability: a transaction is written to the database (its body, its id, and the stream position it covers, in one
 * database transaction) before it is first sent, and deleted once the service acknowledged it. A retry — after a
 * failure or a restart — resends the stored body under the same id, so the service can deduplicate, and nothing the
 * stream held is skipped. A service seen for the first time starts at the current position (no history).
 *
 * A failed transaction is retried with exponential backoff (1 s doubling to 5 min by default); newer events wait
 * behind it. Ephemeral data (MSC2409: typing, receipts, presence) for services with `receive_ephemeral` is kept in
 * memory only and rides along with the next transaction.
 */
import type { Logger } from "pino";
import type { Storage } from "../../storage/storage.js";
import type { EventCache, StoredEvent } from "../rooms/event_cache.js";
import type { EventFormatter } from "../rooms/format.js";
import type { EventConsumer } from "../rooms/pipeline/consumers.js";
import type { JsonObject } from "../../core/json/types.js";
import type { AppServiceApi } from "./api.js";
import type { ApplicationService } from "./application_service.js";

const BATCH = 100;
const MAX_EPHEMERAL = 100;

export interface AppServiceSenderDeps {
  services: readonly ApplicationService[];
  storage: Storage;
  events: EventCache;
  formatter: EventFormatter;
  api: AppServiceApi;
  /** The events stream position below which every event is committed. */
  position: () => number;
  log: Logger;
  /** First retry delay after a failure (doubling each time up to `maxBackoffMs`). */
  minBackoffMs?: number;
  maxBackoffMs?: number;
}

class Worker {
  closed = false;
  private wakeUp?: () => void;
  private woken = false;
  readonly ephemeral: JsonObject[] = [];
  private timer?: NodeJS.Timeout;
  /** The current run, for tests and shutdown. */
  running?: Promise<void>;
  /** Consecutive failures of the transaction in flight. */
  failures = 0;

  constructor(readonly as: ApplicationService) {}

  wake(): void {
    this.woken = true;
    const w = this.wakeUp;
    this.wakeUp = undefined;
    w?.();
  }

  /** Waits for a wake-up (or `ms`, when given): a wake-up during a backoff does not cut it short. */
  async sleep(ms?: number): Promise<void> {
    if (ms === undefined) {
      if (this.woken) {
        this.woken = false;
        return;
      }
      await new Promise<void>((resolve) => (this.wakeUp = resolve));
      this.woken = false;
      return;
    }
    await new Promise<void>((resolve) => {
      this.timer = setTimeout(resolve, ms);
      this.stopBackoff = () => {
        clearTimeout(this.timer);
        resolve();
      };
    });
    this.stopBackoff = undefined;
  }
  stopBackoff?: () => void;

  close(): void {
    this.closed = true;
    this.stopBackoff?.();
    this.wake();
  }
}

export class AppServiceSender implements EventConsumer {
  readonly name = "appservices";
  private readonly workers: Worker[];
  private readonly minBackoffMs: number;
  private readonly maxBackoffMs: number;

  constructor(private readonly deps: AppServiceSenderDeps) {
    this.workers = deps.services.filter((as) => as.url !== null).map((as) => new Worker(as));
    this.minBackoffMs = deps.minBackoffMs ?? 1000;
    this.maxBackoffMs = deps.maxBackoffMs ?? 300_000;
  }

  async start(): Promise<void> {
    const now = this.deps.position();
    for (const w of this.workers) {
      await this.deps.storage.appServices.initPosition(w.as.id, now);
      w.running = this.run(w);
    }
  }

  close(): void {
    for (const w of this.workers) w.close();
  }

  /** Retries every service's transaction in flight now, without waiting for its backoff. */
  retryNow(): void {
    for (const w of this.workers) {
      w.failures = 0;
      w.stopBackoff?.();
    }
  }

  committed(): void {
    for (const w of this.workers) w.wake();
  }

  /** Typing, receipts, presence (MSC2409) for the services that asked for them and are interested. */
  async ephemeral(edu: JsonObject, interested: (as: ApplicationService) => Promise<boolean>): Promise<void> {
    for (const w of this.workers) {
      if (!w.as.registration.receiveEphemeral) continue;
      if (!(await interested(w.as).catch(() => false))) continue;
      if (w.ephemeral.length >= MAX_EPHEMERAL) w.ephemeral.shift();
      w.ephemeral.push(edu);
      w.wake();
    }
  }

  /** Whether `as` wants an event: its sender or member target is its user, or the room is of interest. */
  async interestedInEvent(as: ApplicationService, e: StoredEvent, roomCache?: Map<string, boolean>): Promise<boolean> {
    const ev = e.event;
    if (as.isInterestedInUser(ev.sender)) return true;
    if (ev.type === "m.room.member" && typeof ev.state_key === "string" && as.isInterestedInUser(ev.state_key)) return true;
    return this.interestedInRoom(as, ev.room_id, roomCache);
  }

  /** Spec: the room id in its rooms namespace, an alias of the room in its aliases namespace, or a joined member its user. */
  async interestedInRoom(as: ApplicationService, roomId: string, cache?: Map<string, boolean>): Promise<boolean> {
    const known = cache?.get(roomId);
    if (known !== undefined) return known;
    let yes = as.isRoomInNamespace(roomId);
    if (!yes) yes = (await this.deps.storage.rooms.aliasesOf(roomId)).some((a) => as.isAliasInNamespace(a));
    if (!yes) yes = (await this.deps.storage.rooms.members(roomId, ["join"])).some((m) => as.isInterestedInUser(m.user_id));
    cache?.set(roomId, yes);
    return yes;
  }

  private async run(w: Worker): Promise<void> {
    const { storage, log } = this.deps;
    while (!w.closed) {
      try {
        const pending = await storage.appServices.oldestTxn(w.as.id);
        if (pending) {
          try {
            await this.deps.api.pushTransaction(w.as, pending.txnId, pending.body);
          } catch (err) {
            w.failures++;
            const delay = Math.min(this.maxBackoffMs, this.minBackoffMs * 2 ** Math.min(w.failures - 1, 20));
            log.warn({ err, appservice: w.as.id, txnId: pending.txnId, retryInMs: delay }, "application service transaction failed; will retry");
            await w.sleep(delay);
            continue;
          }
          w.failures = 0;
          await storage.appServices.deleteTxn(w.as.id, pending.txnId);
          continue;
        }
        if (!(await this.buildTxn(w))) await w.sleep();
      } catch (err) {
        log.error({ err, appservice: w.as.id }, "application service sender failed; retrying");
        await w.sleep(this.minBackoffMs * 5);
      }
    }
  }

  /** Stores the next transaction (or moves the position past events of no interest); false when there is nothing new. */
  private async buildTxn(w: Worker): Promise<boolean> {
    const { storage } = this.deps;
    const pos = await storage.appServices.position(w.as.id);
    if (!pos) return false;
    const head = this.deps.position();
    if (pos.streamPosition >= head && w.ephemeral.length === 0) return false;
    const rows = pos.streamPosition < head ? await storage.events.streamAll(pos.streamPosition, head, BATCH) : [];
    const upTo = rows.length === BATCH ? rows[rows.length - 1]!.stream_ordering : Math.max(head, pos.streamPosition);
    const events = await this.deps.events.fromRows(rows);
    const cache = new Map<string, boolean>();
    const chosen: StoredEvent[] = [];
    for (const e of events) if (await this.interestedInEvent(w.as, e, cache)) chosen.push(e);
    const ephemeral = w.ephemeral.splice(0, w.ephemeral.length);
    if (chosen.length === 0 && ephemeral.length === 0) {
      if (upTo !== pos.streamPosition) await storage.appServices.setPosition(w.as.id, upTo);
      return upTo !== pos.streamPosition;
    }
    const formatted = await this.deps.formatter.format(chosen, { noAggregations: true });
    const body: JsonObject = { events: formatted };
    if (ephemeral.length > 0) {
      body.ephemeral = ephemeral;
      // MSC2409's unstable name, which bridges built before v1.x still read.
      body["de.sorunome.msc2409.ephemeral"] = ephemeral;
    }
    await storage.appServices.addTxn(w.as.id, pos.lastTxnId + 1, JSON.stringify(body), upTo, Date.now());
    return true;
  }
}
