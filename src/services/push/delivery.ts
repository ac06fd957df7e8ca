/**
 * Delivery to push gateways (Push Gateway API, POST /_matrix/push/v1/notify). Each pusher keeps its place in the
 * user's notifications (`last_stream_ordering`, durable) and works through what follows it, one notification at a
 * time, oldest first — so a restart loses nothing and a pusher that was down catches up. A failing gateway is retried
 * with exponential backoff (Synapse's: 1 s doubling to an hour; a notification still failing after a day is skipped).
 * A pushkey the gateway lists as `rejected` deletes that pusher. All of it runs off the send and /sync paths.
 */
import type { Logger } from "pino";
import { stateMapKey } from "../../core/events/event.js";
import { isJsonObject, type JsonObject, type JsonValue } from "../../core/json/types.js";
import type { PushConfig } from "../../config/config.js";
import type { OutboundHttp } from "../../outbound/http_client.js";
import type { NotificationRow, PusherRow } from "../../storage/push.js";
import type { Storage } from "../../storage/storage.js";
import { CacheRegistry, ENTRY_BYTES, type Cache } from "../../util/cache.js";
import type { EventCache, StoredEvent } from "../rooms/event_cache.js";
import type { StateService } from "../rooms/state.js";
import type { UnreadCounts } from "./counts.js";
import type { PusherChanges } from "./pushers.js";

const INITIAL_BACKOFF_MS = 1000;
const MAX_BACKOFF_MS = 3600_000;
const GIVE_UP_AFTER_MS = 24 * 3600_000;
const REQUEST_TIMEOUT_MS = 10_000;
const MAX_RESPONSE_BYTES = 64 * 1024;
/** Notifications read from the database per round. */
const BATCH = 20;
/** Pushers delivering at once. */
const MAX_CONCURRENT = 16;

export interface PusherPoolDeps {
  storage: Storage;
  events: EventCache;
  state: StateService;
  unread: UnreadCounts;
  http: OutboundHttp;
  config: PushConfig;
  log: Logger;
  caches?: CacheRegistry;
}

/** One pusher's delivery loop state. */
interface Worker {
  pusher: PusherRow;
  running: boolean;
  /** More may have arrived while running. */
  again: boolean;
  backoffMs: number;
  retry?: NodeJS.Timeout;
  stopped: boolean;
  /** The badge last sent to the gateway, so a read that changes nothing sends nothing. */
  lastBadge?: number;
}

export class PusherPool implements PusherChanges {
  private usersWithPushers = new Set<string>();
  private readonly workers = new Map<number, Worker>();
  private readonly byUser = new Map<string, number[]>();
  private active = 0;
  private readonly waiting: (() => void)[] = [];
  /** Display name and room name per event, so a burst to many pushers reads state once. */
  private readonly described: Cache<string, Description>;
  private closed = false;

  constructor(private readonly deps: PusherPoolDeps) {
    this.described = (deps.caches ?? new CacheRegistry()).create("push_descriptions", () => 6 * ENTRY_BYTES);
  }

  /** Loads every pusher and lets each catch up on what it missed while the server was down. */
  async start(): Promise<void> {
    const all = await this.deps.storage.push.allPushers();
    this.usersWithPushers = new Set(all.map((p) => p.user_id));
    for (const p of all) this.add(p);
    for (const w of this.workers.values()) this.kick(w);
  }

  usersWithPushersSet(): ReadonlySet<string> {
    return this.usersWithPushers;
  }

  hasPushers(userId: string): boolean {
    return this.usersWithPushers.has(userId);
  }

  /** Users were notified of an event: their pushers deliver it (and anything before it they have not). */
  notified(userIds: readonly string[]): void {
    if (!this.deps.config.enabled) return;
    for (const u of userIds) for (const id of this.byUser.get(u) ?? []) this.kick(this.workers.get(id)!);
  }

  /**
   * The user read up to somewhere in a room: each of their pushers whose gateway is reachable gets the new badge as a
   * counts-only notification (Push Gateway API: every field but `devices` is optional), as Synapse sends it, so
   * the number on the app icon drops without waiting for the next message. Best effort: not retried.
   */
  readChanged(userId: string): void {
    if (!this.deps.config.enabled || this.closed) return;
    const workers = (this.byUser.get(userId) ?? []).map((id) => this.workers.get(id)!).filter((w) => !w.retry && !w.stopped);
    if (workers.length === 0) return;
    void (async () => {
      const badge = await this.badge(userId);
      for (const w of workers) {
        if (w.lastBadge === badge || w.stopped) continue;
        w.lastBadge = badge;
        const data = JSON.parse(w.pusher.data) as JsonObject;
        const { url: _url, ...deviceData } = data;
        const devices = [{ app_id: w.pusher.app_id, pushkey: w.pusher.pushkey, pushkey_ts: Math.floor(w.pusher.pushkey_ts / 1000), data: deviceData, tweaks: {} }];
        await this.send(w.pusher, String(data.url), { notification: { prio: "low", counts: { unread: badge }, devices } });
      }
    })().catch((e: unknown) => this.deps.log.warn({ err: e, userId }, "sending a badge update failed"));
  }

  /** The user's pushers changed (set, deleted, device logged out): reload them. */
  changed(userId: string): Promise<void> {
    return this.reload(userId).catch((e: unknown) => this.deps.log.warn({ err: e, userId }, "reloading pushers failed"));
  }

  close(): void {
    this.closed = true;
    for (const w of this.workers.values()) {
      w.stopped = true;
      clearTimeout(w.retry);
    }
    for (const wake of this.waiting.splice(0)) wake();
  }

  private async reload(userId: string): Promise<void> {
    for (const id of this.byUser.get(userId) ?? []) this.remove(id);
    const rows = await this.deps.storage.push.pushersOf(userId);
    if (rows.length === 0) this.usersWithPushers.delete(userId);
    else this.usersWithPushers.add(userId);
    for (const p of rows) this.add(p);
  }

  private add(p: PusherRow): void {
    this.workers.set(p.id, { pusher: p, running: false, again: false, backoffMs: INITIAL_BACKOFF_MS, stopped: false });
    const list = this.byUser.get(p.user_id) ?? [];
    list.push(p.id);
    this.byUser.set(p.user_id, list);
  }

  private remove(id: number): void {
    const w = this.workers.get(id);
    if (!w) return;
    w.stopped = true;
    clearTimeout(w.retry);
    this.workers.delete(id);
    const list = (this.byUser.get(w.pusher.user_id) ?? []).filter((x) => x !== id);
    if (list.length > 0) this.byUser.set(w.pusher.user_id, list);
    else this.byUser.delete(w.pusher.user_id);
  }

  private kick(w: Worker): void {
    if (w.stopped || this.closed) return;
    if (w.running) {
      w.again = true;
      return;
    }
    // A pusher in backoff waits for its timer.
    if (w.retry) return;
    w.running = true;
    void this.run(w).finally(() => {
      w.running = false;
      if (w.again && !w.retry) {
        w.again = false;
        this.kick(w);
      }
    });
  }

  private async run(w: Worker): Promise<void> {
    await this.slot();
    try {
      while (!w.stopped && !this.closed) {
        w.again = false;
        const rows = await this.deps.storage.push.notifications(w.pusher.user_id, { after: w.pusher.last_stream_ordering, limit: BATCH });
        if (rows.length === 0) return;
        for (const row of rows) {
          if (w.stopped || this.closed) return;
          const outcome = await this.deliver(w.pusher, row);
          if (outcome === "rejected") {
            this.deps.log.info({ userId: w.pusher.user_id, appId: w.pusher.app_id }, "push gateway rejected the pushkey: pusher removed");
            await this.deps.storage.push.deletePusherById(w.pusher.id);
            await this.reload(w.pusher.user_id);
            return;
          }
          if (outcome === "failed") {
            const since = w.pusher.failing_since ?? Date.now();
            if (Date.now() - since < GIVE_UP_AFTER_MS) {
              if (w.pusher.failing_since === null) {
                w.pusher.failing_since = since;
                await this.deps.storage.push.setPusherProgress(w.pusher.id, w.pusher.last_stream_ordering, since);
              }
              this.scheduleRetry(w);
              return;
            }
            this.deps.log.warn({ userId: w.pusher.user_id, appId: w.pusher.app_id, eventId: row.event_id }, "giving up on a push notification after a day of failures");
          }
          w.backoffMs = INITIAL_BACKOFF_MS;
          w.pusher.last_stream_ordering = row.stream_ordering;
          w.pusher.failing_since = null;
          await this.deps.storage.push.setPusherProgress(w.pusher.id, row.stream_ordering, null);
        }
      }
    } catch (e) {
      this.deps.log.warn({ err: e, userId: w.pusher.user_id }, "push delivery failed");
      this.scheduleRetry(w);
    } finally {
      this.release();
    }
  }

  private scheduleRetry(w: Worker): void {
    if (w.stopped || this.closed) return;
    const delay = w.backoffMs;
    w.backoffMs = Math.min(w.backoffMs * 2, MAX_BACKOFF_MS);
    w.retry = setTimeout(() => {
      w.retry = undefined;
      this.kick(w);
    }, delay);
    w.retry.unref();
  }

  private async slot(): Promise<void> {
    while (this.active >= MAX_CONCURRENT && !this.closed) await new Promise<void>((r) => this.waiting.push(r));
    this.active++;
  }

  private release(): void {
    this.active--;
    this.waiting.shift()?.();
  }

  /** Each delivery's outcome (metrics). */
  onDelivered?: (outcome: "ok" | "failed" | "rejected") => void;

  /** One POST to the gateway. */
  private async deliver(p: PusherRow, row: NotificationRow): Promise<"ok" | "failed" | "rejected"> {
    const outcome = await this.post(p, row);
    this.onDelivered?.(outcome);
    return outcome;
  }

  private async post(p: PusherRow, row: NotificationRow): Promise<"ok" | "failed" | "rejected"> {
    const stored = await this.deps.events.get(row.event_id);
    // The event is gone (purged): nothing to push.
    if (!stored) return "ok";
    const data = JSON.parse(p.data) as JsonObject;
    const body = await this.notifyBody(p, data, stored, JSON.parse(row.actions) as JsonValue[]);
    const w = this.workers.get(p.id);
    if (w) w.lastBadge = ((body.notification as JsonObject).counts as JsonObject).unread as number;
    if (this.deps.config.jitterDelayMs > 0) await new Promise((r) => setTimeout(r, Math.random() * this.deps.config.jitterDelayMs));
    return this.send(p, String(data.url), body);
  }

  /** POSTs a notify body; "rejected" when the gateway lists the pushkey as rejected. */
  private async send(p: PusherRow, url: string, body: JsonObject): Promise<"ok" | "failed" | "rejected"> {
    try {
      const res = await this.deps.http.request(url, {
        method: "POST",
        headers: { "content-type": "application/json", "user-agent": "Myelin" },
        body: Buffer.from(JSON.stringify(body)),
        timeoutMs: REQUEST_TIMEOUT_MS,
        maxResponseBytes: MAX_RESPONSE_BYTES,
      });
      if (res.status < 200 || res.status >= 300) {
        this.deps.log.info({ status: res.status, userId: p.user_id, appId: p.app_id }, "push gateway answered with an error");
        return "failed";
      }
      let rejected: unknown;
      try {
        rejected = (JSON.parse(res.body.toString("utf8")) as { rejected?: unknown }).rejected;
      } catch {
        rejected = undefined;
      }
      return Array.isArray(rejected) && rejected.includes(p.pushkey) ? "rejected" : "ok";
    } catch (e) {
      this.deps.log.info({ err: (e as Error).message, userId: p.user_id, appId: p.app_id }, "push gateway unreachable");
      return "failed";
    }
  }

  /** The notify request body (Push Gateway API), full or `event_id_only`. */
  private async notifyBody(p: PusherRow, data: JsonObject, stored: StoredEvent, actions: JsonValue[]): Promise<JsonObject> {
    const ev = stored.event;
    const tweaks: JsonObject = {};
    for (const a of actions) if (isJsonObject(a) && typeof a.set_tweak === "string") tweaks[a.set_tweak] = a.value === undefined ? true : a.value;
    const { url: _url, ...deviceData } = data;
    const prio = ev.type === "m.room.encrypted" || tweaks.highlight === true || tweaks.sound !== undefined ? "high" : "low";
    const counts: JsonObject = { unread: await this.badge(p.user_id) };
    const devices = [{ app_id: p.app_id, pushkey: p.pushkey, pushkey_ts: Math.floor(p.pushkey_ts / 1000), data: deviceData, tweaks }];
    if (data.format === "event_id_only") return { notification: { event_id: ev.event_id, room_id: ev.room_id, prio, counts, devices } };
    // `id`: the event id under its pre-spec name, which Synapse still sends (and gateways written for it read).
    const n: JsonObject = { id: ev.event_id, event_id: ev.event_id, room_id: ev.room_id, type: ev.type, sender: ev.sender, prio, counts, devices };
    const d = await this.describe(stored);
    if (d.senderDisplayName) n.sender_display_name = d.senderDisplayName;
    // The room's display name as clients compute it first: its name, else its canonical alias (as Synapse sends it).
    const roomName = d.roomName ?? d.roomAlias;
    if (roomName) n.room_name = roomName;
    if (d.roomAlias) n.room_alias = d.roomAlias;
    if (ev.type === "m.room.member" && ev.state_key !== undefined) {
      n.user_is_target = ev.state_key === p.user_id;
      // Not in the Push Gateway API, but Synapse sends it and gateways written for it read it.
      if (typeof ev.content.membership === "string") n.membership = ev.content.membership;
    }
    if (this.deps.config.includeContent) n.content = ev.content;
    return { notification: n };
  }

  /** The badge: rooms with unread notifications (push.group_unread_count_by_room), or all unread notifications. */
  private async badge(userId: string): Promise<number> {
    const rooms = (await this.deps.storage.rooms.roomsForUser(userId, ["join"])).map((r) => r.room_id);
    const b = await this.deps.unread.badge(userId, rooms);
    return this.deps.config.groupUnreadCountByRoom ? b.rooms : b.notifications;
  }

  /** Names from the room's state at the event: the sender's display name, the room's name and canonical alias. */
  private async describe(stored: StoredEvent): Promise<Description> {
    const cached = this.described.get(stored.event.event_id);
    if (cached) return cached;
    const out: Description = {};
    if (stored.stateGroup !== null) {
      const state = await this.deps.state.stateOf(stored.stateGroup);
      const ids = [stateMapKey("m.room.member", stored.event.sender), stateMapKey("m.room.name", ""), stateMapKey("m.room.canonical_alias", "")].map((k) => state.get(k));
      const loaded = await this.deps.events.getMany(ids.filter((x): x is string => x !== undefined));
      const content = (i: number) => (ids[i] !== undefined ? loaded.get(ids[i]!)?.event.content : undefined);
      const name = content(0)?.displayname;
      if (typeof name === "string" && name !== "") out.senderDisplayName = name;
      const roomName = content(1)?.name;
      if (typeof roomName === "string" && roomName !== "") out.roomName = roomName;
      const alias = content(2)?.alias;
      if (typeof alias === "string" && alias !== "") out.roomAlias = alias;
    }
    this.described.set(stored.event.event_id, out);
    return out;
  }
}

interface Description {
  senderDisplayName?: string;
  roomName?: string;
  roomAlias?: string;
}
