/**
 * The outbound side of federation (server-server API, "Transactions"): one queue per destination server; PDUs and
 * EDUs are batched into transactions of at most 50 PDUs and 100 EDUs, with one transaction in flight per destination.
 * A failing destination backs off exponentially (1 s doubling, capped at an hour, kept in the database). What a
 * destination has received is recorded only after it acknowledged a transaction; a destination coming back — or
 * every destination after a restart — catches up with the newest event we sent in each room it shares with us, and
 * fetches anything before it with /get_missing_events, as the spec intends.
 *
 * Most EDUs are ephemeral (typing, receipts, presence: a lost one is superseded by the next). Those that must
 * arrive — m.direct_to_device and m.device_list_update — wait in the database outbox (storage/federation_outbox.ts)
 * and are deleted only once a transaction carrying them was acknowledged, so neither an outage nor a restart loses
 * them.
 */
import type { Logger } from "pino";
import type { JsonObject } from "../../core/json/types.js";
import { FederationError } from "../../federation/errors.js";
import { encodePath, type FederationClient } from "../../federation/client.js";
import type { Storage } from "../../storage/storage.js";
import type { DestinationRow } from "../../storage/federation.js";
import type { OutboxEdu } from "../../storage/federation_outbox.js";
import type { EventCache, StoredEvent } from "../rooms/event_cache.js";
import { CacheRegistry, ENTRY_BYTES, STRING_BYTES, type Cache } from "../../util/cache.js";

export const MAX_PDUS_PER_TXN = 50;
export const MAX_EDUS_PER_TXN = 100;
const MIN_RETRY_MS = 1000;
const MAX_RETRY_MS = 3600_000;
/** Outbox EDUs per transaction, leaving room for ephemeral ones. */
const MAX_DURABLE_EDUS_PER_TXN = 50;
/** Beyond this many queued PDUs a destination is treated as down: the queue is dropped and catch-up takes over. */
const MAX_QUEUED_PDUS = 1000;

interface QueuedPdu {
  streamOrdering: number;
  pdu: JsonObject;
}

interface Destination {
  name: string;
  pdus: QueuedPdu[];
  edus: JsonObject[];
  sending: boolean;
  /** The outbox may hold EDUs for this destination. */
  outbox: boolean;
  /** Catch-up is owed (events since `lastSuccessful` may not have arrived). */
  catchUp: boolean;
  row: DestinationRow;
  timer?: NodeJS.Timeout;
}

export class FederationSender {
  private readonly destinations = new Map<string, Destination>();
  private txnCounter = 0;
  private closed = false;

  constructor(
    private readonly deps: {
      serverName: string;
      storage: Storage;
      client: FederationClient;
      events: EventCache;
      log: Logger;
      caches?: CacheRegistry;
    },
  ) {
    this.roomServers = (deps.caches ?? new CacheRegistry()).create("room_servers", (v) => 2 * ENTRY_BYTES + v.servers.reduce((n, x) => n + STRING_BYTES(x) + 8, 0));
  }

  /**
   * The servers with joined members per room, with the state group they were read at: any change of the room's state
   * gives later events another group, so a message into a room of 10,000 members reads no member list.
   */
  private readonly roomServers: Cache<string, { group: number; servers: string[] }>;

  private async serversInRoom(e: StoredEvent): Promise<string[]> {
    const group = e.stateGroup;
    const cached = group !== null ? this.roomServers.get(e.event.room_id) : undefined;
    if (cached && cached.group === group) return cached.servers;
    const servers = await this.deps.storage.federation.serversInRoom(e.event.room_id);
    if (group !== null) this.roomServers.set(e.event.room_id, { group, servers });
    return servers;
  }

  /** After a restart every known destination catches up: events committed but never sent are not lost. */
  async start(): Promise<void> {
    const outbox = new Set(await this.deps.storage.outbox.destinations());
    for (const row of await this.deps.storage.federation.destinations()) {
      const d = this.destination(row.destination, row);
      d.catchUp = true;
      d.outbox = outbox.delete(row.destination);
      this.schedule(d);
    }
    for (const name of outbox) this.sendOutbox([name]);
  }

  /** PDUs and EDUs waiting per destination that has any (metrics). */
  queueDepths(): Map<string, number> {
    const out = new Map<string, number>();
    for (const d of this.destinations.values()) if (d.pdus.length + d.edus.length > 0) out.set(d.name, d.pdus.length + d.edus.length);
    return out;
  }

  close(): void {
    this.closed = true;
    for (const d of this.destinations.values()) clearTimeout(d.timer);
  }

  /**
   * Queues a PDU for the servers in its room (all but us and `exclude`): as Synapse, the servers with a joined member
   * before the event. That is the servers joined now, plus the target's server when the event ends its membership:
   * a leave, kick or ban of a joined user is the last event that server gets. An invite is not among them: it went
   * to the invitee's server with /invite, which is not in the room (and may not know it) until it joins.
   */
  async sendEvent(e: StoredEvent, opts: { exclude?: string[] } = {}): Promise<void> {
    const servers = new Set(await this.serversInRoom(e));
    if (await this.endsAJoin(e)) servers.add(e.event.state_key!.slice(e.event.state_key!.indexOf(":") + 1));
    servers.delete(this.deps.serverName);
    for (const x of opts.exclude ?? []) servers.delete(x);
    const { unsigned: _u, ...pdu } = e.event.pdu;
    for (const s of servers) this.queuePdu(s, { streamOrdering: e.streamOrdering, pdu });
  }

  /** A leave or ban whose target was joined before it. */
  private async endsAJoin(e: StoredEvent): Promise<boolean> {
    const m = e.event.content.membership;
    if (e.event.type !== "m.room.member" || !e.event.state_key || (m !== "leave" && m !== "ban") || e.replacesState === null) return false;
    const before = await this.deps.events.get(e.replacesState);
    return before?.event.content.membership === "join";
  }

  /** Queues an EDU (typing, receipts, presence…) for some servers. */
  sendEdu(servers: Iterable<string>, edu: JsonObject): void {
    for (const s of servers) {
      if (s === this.deps.serverName) continue;
      const d = this.destination(s);
      d.edus.push(edu);
      if (d.edus.length > MAX_EDUS_PER_TXN * 10) d.edus.splice(0, d.edus.length - MAX_EDUS_PER_TXN * 10);
      this.schedule(d);
    }
  }

  /** EDUs were committed to the outbox for these servers: send them (after any backoff). */
  sendOutbox(servers: Iterable<string>): void {
    for (const s of servers) {
      if (s === this.deps.serverName) continue;
      const d = this.destination(s);
      d.outbox = true;
      this.schedule(d);
    }
  }

  /** Another server talked to us: it is up, so a backed-off queue to it is retried now (as Synapse does). */
  wake(server: string): void {
    const d = this.destinations.get(server);
    if (!d || d.row.retry_interval_ms === 0) return;
    d.row.retry_last_ts = 0;
    d.row.retry_interval_ms = 0;
    // The backoff timer would otherwise hold the queue until the old deadline (schedule() waits for a pending timer).
    clearTimeout(d.timer);
    d.timer = undefined;
    this.schedule(d);
  }

  /** Backoff state of every destination we know, for admins. */
  status(): { destination: string; failureTs: number | null; retryLastTs: number; retryIntervalMs: number; lastSuccessfulStreamOrdering: number; queued: number }[] {
    return [...this.destinations.values()].map((d) => ({
      destination: d.name,
      failureTs: d.row.failure_ts,
      retryLastTs: d.row.retry_last_ts,
      retryIntervalMs: d.row.retry_interval_ms,
      lastSuccessfulStreamOrdering: d.row.last_successful_stream_ordering,
      queued: d.pdus.length,
    }));
  }

  private destination(name: string, row?: DestinationRow): Destination {
    let d = this.destinations.get(name);
    if (!d) {
      d = {
        name,
        pdus: [],
        edus: [],
        sending: false,
        outbox: false,
        catchUp: false,
        row: row ?? { destination: name, last_successful_stream_ordering: 0, failure_ts: null, retry_last_ts: 0, retry_interval_ms: 0 },
      };
      this.destinations.set(name, d);
    }
    return d;
  }

  private queuePdu(server: string, q: QueuedPdu): void {
    const d = this.destination(server);
    if (d.catchUp || d.pdus.length >= MAX_QUEUED_PDUS) {
      // Behind already: catch-up will send the newest event per room instead of the whole backlog.
      d.pdus = [];
      d.catchUp = true;
    } else {
      d.pdus.push(q);
    }
    this.schedule(d);
  }

  /** Sends now, or when the destination's backoff ends. */
  private schedule(d: Destination): void {
    if (this.closed || d.sending || d.timer) return;
    const wait = d.row.retry_interval_ms > 0 ? d.row.retry_last_ts + d.row.retry_interval_ms - Date.now() : 0;
    if (wait > 0) {
      d.timer = setTimeout(() => {
        d.timer = undefined;
        this.schedule(d);
      }, wait);
      d.timer.unref();
      return;
    }
    void this.run(d);
  }

  private async run(d: Destination): Promise<void> {
    d.sending = true;
    try {
      while (!this.closed) {
        if (d.catchUp) await this.loadCatchUp(d);
        // Cleared before reading: an EDU committed during the read sets it again (sendOutbox), so none is missed.
        let durable: OutboxEdu[] = [];
        if (d.outbox) {
          d.outbox = false;
          durable = await this.deps.storage.outbox.forDestination(d.name, MAX_DURABLE_EDUS_PER_TXN);
          if (durable.length > 0) d.outbox = true;
        }
        if (d.pdus.length === 0 && d.edus.length === 0 && durable.length === 0) break;
        const pdus = d.pdus.slice(0, MAX_PDUS_PER_TXN);
        const edus = d.edus.slice(0, MAX_EDUS_PER_TXN - durable.length);
        const ok = await this.transmit(d, pdus, [...durable.map((r) => JSON.parse(r.edu) as JsonObject), ...edus]);
        if (!ok) {
          // Backing off: the queued PDUs are dropped and caught up later from the database; the outbox stays.
          d.pdus = [];
          d.catchUp = true;
          d.edus.splice(0, edus.length);
          break;
        }
        await this.deps.storage.outbox.delete(durable.map((r) => r.id));
        d.pdus.splice(0, pdus.length);
        d.edus.splice(0, edus.length);
      }
    } catch (e) {
      this.deps.log.warn({ err: e, destination: d.name }, "federation sender failed");
    } finally {
      d.sending = false;
    }
    if (!this.closed && (d.pdus.length > 0 || d.edus.length > 0 || d.outbox || (d.catchUp && d.row.retry_interval_ms > 0))) this.schedule(d);
  }

  /** Replaces the queue with the newest local event of each room the destination shares with us. */
  private async loadCatchUp(d: Destination): Promise<void> {
    const rooms = await this.deps.storage.federation.roomsWithServer(d.name);
    const ids = await this.deps.storage.federation.latestLocalEvents(rooms, d.row.last_successful_stream_ordering, this.deps.serverName);
    const events = [...(await this.deps.events.getMany(ids)).values()].sort((a, b) => a.streamOrdering - b.streamOrdering);
    d.pdus = events.map((e) => {
      const { unsigned: _u, ...pdu } = e.event.pdu;
      return { streamOrdering: e.streamOrdering, pdu };
    });
    d.catchUp = false;
  }

  /** One transaction. Returns false (after recording the backoff) when the destination could not take it. */
  private async transmit(d: Destination, pdus: QueuedPdu[], edus: JsonObject[]): Promise<boolean> {
    const txnId = `${Date.now()}_${++this.txnCounter}`;
    try {
      await this.deps.client.put(d.name, encodePath`/_matrix/federation/v1/send/${txnId}`, {
        origin: this.deps.serverName,
        origin_server_ts: Date.now(),
        pdus: pdus.map((p) => p.pdu),
        edus,
      });
    } catch (e) {
      // A 4xx other than 429 is the destination refusing this transaction, not being down: do not retry it forever.
      const status = e instanceof FederationError ? e.status : undefined;
      if (status !== undefined && status >= 400 && status < 500 && status !== 429) {
        this.deps.log.warn({ destination: d.name, err: e }, "destination refused a transaction; dropping it");
        await this.recordSuccess(d, pdus);
        return true;
      }
      const now = Date.now();
      d.row.failure_ts ??= now;
      d.row.retry_last_ts = now;
      d.row.retry_interval_ms = Math.min(MAX_RETRY_MS, Math.max(MIN_RETRY_MS, d.row.retry_interval_ms * 2));
      this.deps.log.info({ destination: d.name, retryInMs: d.row.retry_interval_ms, err: (e as Error).message }, "destination unreachable; backing off");
      await this.deps.storage.federation.upsertDestination(d.row).catch(() => {});
      return false;
    }
    await this.recordSuccess(d, pdus);
    return true;
  }

  private async recordSuccess(d: Destination, pdus: QueuedPdu[]): Promise<void> {
    const max = pdus.reduce((m, p) => Math.max(m, p.streamOrdering), d.row.last_successful_stream_ordering);
    const changed = max !== d.row.last_successful_stream_ordering || d.row.retry_interval_ms !== 0 || d.row.failure_ts !== null;
    d.row.last_successful_stream_ordering = max;
    d.row.failure_ts = null;
    d.row.retry_last_ts = 0;
    d.row.retry_interval_ms = 0;
    if (changed) await this.deps.storage.federation.upsertDestination(d.row);
  }
}
