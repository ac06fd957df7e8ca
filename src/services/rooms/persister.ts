/**
 * The event persistence pipeline. Every event passes the same named stages, in the spec's order, under its room's
 * write lock:
 *
 *   1. build       (local events)  pipeline/build.ts      PDU on the head, hashed and signed
 *   2. authorise                   pipeline/authorise.ts  auth events, state before, current state (soft fail)
 *      policy server               pipeline/policy.ts     the room's Policy Server signs local events; received
 *                                                         ones without its signature are soft-failed
 *   3. compute state               pipeline/state.ts      state before/after, the room's new current state
 *   4. write                       pipeline/write.ts      one PersistItem, made durable by the group-commit writer
 *   5. consumers                   pipeline/consumers.ts  rows staged into the same transaction; work after commit
 *
 * The caller's promise resolves only once the transaction has committed; then caches are updated and waiting /sync
 * requests are woken. The room's head advances as soon as an event is queued, so the next event can be built while
 * this one commits.
 */
import { CacheRegistry, ENTRY_BYTES, STRING_BYTES, type Cache } from "../../util/cache.js";
import type { Logger } from "pino";
import { stateMapKey, type Event, type StateMap } from "../../core/events/event.js";
import type { SigningKey } from "../../core/crypto/ed25519.js";
import type { JsonObject } from "../../core/json/types.js";
import type { RoomVersion } from "../../core/rooms/versions.js";
import { checkEventAuth } from "../../core/rooms/auth.js";
import { MatrixError, forbidden } from "../../errors.js";
import type { PersistItem } from "../../storage/events.js";
import type { StateGroupNode } from "../../storage/state_groups.js";
import type { Storage } from "../../storage/storage.js";
import { StreamIdGenerator } from "../../storage/stream_ids.js";
import { KeyedLock } from "../../util/keyed_lock.js";
import type { Notifier } from "../notifier.js";
import { trustedEvent, type EventCache, type StoredEvent } from "./event_cache.js";
import { RedactionRules } from "./redactions.js";
import type { StateService } from "./state.js";
import { EventBuilder, type EventDraft, type RoomHead } from "./pipeline/build.js";
import { EventAuthoriser } from "./pipeline/authorise.js";
import { PolicyServerStage } from "./pipeline/policy.js";
import { StateStage, type CurrentStateChange, type StateAfter } from "./pipeline/state.js";
import { GroupCommitWriter, persistItem } from "./pipeline/write.js";
import type { EventConsumer, NewEvent } from "./pipeline/consumers.js";

export type { EventDraft, RoomHead } from "./pipeline/build.js";
export type { EventConsumer, NewEvent } from "./pipeline/consumers.js";

export interface SendOptions {
  txn?: { userId: string; deviceId: string; scope: string; txnId: string };
  /** Extra checks run under the room lock with the room's current state, before the event is built. */
  precheck?: (head: RoomHead) => Promise<void> | void;
  /** For a redaction the sender may apply: the event it redacts. */
  applyRedaction?: boolean;
  /**
   * Runs once the event is built and authorised, before it is persisted, and may return it with more signatures:
   * an invite of another server's user goes to that server first (PUT /invite), which signs it too. (A room upgrade
   * creates the replacement room here, so its create event can name the tombstone about to be persisted.)
   */
  exchange?: (event: Event, head: RoomHead) => Promise<Event>;
}

export type ReceivedStatus = "accepted" | "soft_failed" | "rejected";
export interface ReceivedOutcome {
  stored: StoredEvent;
  status: ReceivedStatus;
}

const NO_CHANGES: ReadonlyMap<string, string | null> = new Map();
const TXN_WINDOW_MS = 24 * 3600_000;
/** At most this many transaction ids are read into memory at start-up. */
const TXN_WARM_MAX = 50_000;

function txnKey(userId: string, deviceId: string, scope: string, txnId: string): string {
  return `${userId}\u0000${deviceId}\u0000${scope}\u0000${txnId}`;
}

export class EventPersister {
  private readonly lock = new KeyedLock();
  private readonly heads = new Map<string, RoomHead>();
  private stream!: StreamIdGenerator;
  private readonly builder: EventBuilder;
  private readonly authoriser: EventAuthoriser;
  /** The Policy Server step; its `ask` is wired to the federation client at start-up. */
  readonly policyServers: PolicyServerStage;
  private readonly stateStage: StateStage;
  private readonly writer: GroupCommitWriter;
  private readonly consumers: EventConsumer[] = [];
  private readonly redactions: RedactionRules;
  /** Per room, the newest stream ordering: lets /sync skip rooms with nothing new without a query each. */
  private readonly latestStream = new Map<string, number>();
  /**
   * Spec "Transaction identifiers": a retried send returns the original event. Transaction ids are honoured for 24
   * hours (Synapse's window). The recent ones live in memory, warmed at start-up from the events' own txn columns,
   * so a send normally never waits on a lookup; once the cache has had to drop some (a busy server), a miss is
   * looked up in the database.
   */
  private readonly txns: Cache<string, string>;
  private txnsComplete = true;
  /** Sends with the same txn id in flight, so concurrent retries get the same event. */
  private readonly inflightTxns = new Map<string, Promise<StoredEvent>>();
  /** Backfilled history counts down from below the oldest stream ordering (Synapse's negative orderings). */
  private backfillOrdering = -1;

  constructor(
    private readonly storage: Storage,
    private readonly serverName: string,
    signingKey: SigningKey,
    private readonly events: EventCache,
    private readonly state: StateService,
    private readonly notifier: Notifier,
    private readonly log: Logger,
    caches = new CacheRegistry(),
  ) {
    this.txns = caches.create("transaction_ids", (v, k) => STRING_BYTES(k) + STRING_BYTES(v) + ENTRY_BYTES);
    this.builder = new EventBuilder(serverName, signingKey, events);
    this.authoriser = new EventAuthoriser(events);
    this.policyServers = new PolicyServerStage(serverName, events, log);
    this.stateStage = new StateStage(events, state);
    this.writer = new GroupCommitWriter(storage, log);
    this.redactions = new RedactionRules(events, state);
  }

  /** Reports events written (metrics): each group commit's size, and each live event by origin. */
  observe(onBatch: (events: number) => void, onEvent: (local: boolean) => void): void {
    this.writer.onBatch = onBatch;
    this.onEventWritten = onEvent;
  }
  private onEventWritten?: (local: boolean) => void;

  /** Adds a per-event consumer (stage 5); consumers run in the order they were added. */
  use(consumer: EventConsumer): void {
    this.consumers.push(consumer);
  }

  async start(): Promise<void> {
    this.stream = new StreamIdGenerator(await this.storage.events.maxStreamOrdering());
    this.backfillOrdering = Math.min(0, await this.storage.events.minStreamOrdering()) - 1;
    const recent = await this.storage.events.recentTxns(Date.now() - TXN_WINDOW_MS, TXN_WARM_MAX);
    for (const t of recent.reverse()) this.txns.set(txnKey(t.sender, t.txn_device_id, t.txn_scope, t.txn_id), t.event_id);
    this.txnsComplete = recent.length < TXN_WARM_MAX && this.txns.evictions === 0;
  }

  /** The events stream position for sync tokens: every event at or below it is committed. */
  position(): number {
    return this.stream.position();
  }

  /** Resolves once the stream position has reached `streamOrdering` (events commit out of order). */
  reached(streamOrdering: number): Promise<void> {
    return this.stream.reached(streamOrdering);
  }

  /** The room's head, loaded on first use; undefined for rooms this server does not know. */
  async head(roomId: string): Promise<RoomHead | undefined> {
    const cached = this.heads.get(roomId);
    if (cached) return cached;
    const room = await this.storage.rooms.get(roomId);
    if (!room || room.current_state_group === null) return undefined;
    const version = await this.events.roomVersion(roomId);
    if (!version) return undefined;
    const extremities = await this.storage.rooms.forwardExtremities(roomId);
    const ext = await this.events.getMany(extremities);
    const head: RoomHead = {
      roomId,
      version,
      stateGroup: room.current_state_group,
      state: await this.state.stateOf(room.current_state_group),
      extremities,
      maxDepth: Math.max(0, ...[...ext.values()].map((e) => e.depth)),
    };
    // Another caller may have loaded it meanwhile; keep one object per room.
    const again = this.heads.get(roomId);
    if (again) return again;
    this.heads.set(roomId, head);
    return head;
  }

  /** The newest stream ordering of each room (rooms without events are absent). */
  async latestStreams(roomIds: readonly string[]): Promise<Map<string, number>> {
    const missing = roomIds.filter((r) => !this.latestStream.has(r));
    if (missing.length > 0) {
      const loaded = await this.storage.events.latestStreamPerRoom(missing);
      for (const [r, s] of loaded) if (!this.latestStream.has(r)) this.latestStream.set(r, s);
    }
    const out = new Map<string, number>();
    for (const r of roomIds) {
      const s = this.latestStream.get(r);
      if (s !== undefined) out.set(r, s);
    }
    return out;
  }

  /** Runs `fn` holding the room's write lock. */
  withRoomLock<T>(roomId: string, fn: () => Promise<T>): Promise<T> {
    return this.lock.run(roomId, fn);
  }

  /** Forgets the cached head of a room (after an error left it in doubt). */
  dropHead(roomId: string): void {
    this.heads.delete(roomId);
  }

  /** The state of a state group (for federation's state-at-event reads). */
  stateOfGroup(group: number): Promise<StateMap> {
    return this.state.stateOf(group);
  }

  // ---- Local events -------------------------------------------------------------------------------------------

  /**
   * Creates a room: persists its m.room.create event and returns the new room id (v12: the create event's hash;
   * earlier versions: `presetRoomId` when the caller chose one, else a random id on this server).
   */
  async createRoom(version: RoomVersion, creator: string, content: JsonObject, presetRoomId?: string): Promise<{ roomId: string; event: StoredEvent }> {
    const { roomId, event } = this.builder.createEvent(version, creator, content, presetRoomId);
    const auth = checkEventAuth(version, event, () => undefined);
    if (!auth.allowed) throw forbidden(auth.reason);
    this.events.rememberRoomVersion(roomId, version);
    return this.lock.run(roomId, async () => {
      const { node, state } = await this.state.planGroup(roomId, null, new Map([[stateMapKey("m.room.create", ""), event.event_id]]));
      const item = persistItem(event, this.stream.next(), node.id, {
        newStateGroup: node,
        currentState: { group: node.id, delta: node.delta, memberships: new Map() },
        extremities: [event.event_id],
        newRoom: { roomId, version: version.id, creator },
      });
      await this.stageConsumers(item, { event, version, streamOrdering: item.streamOrdering, local: true, stateBefore: new Map(), stateChanges: node.delta, outOfBand: false });
      await this.commit([item]);
      this.state.remember(node, state);
      this.heads.set(roomId, { roomId, version, stateGroup: node.id, state, extremities: [event.event_id], maxDepth: 1 });
      const stored = storedEvent(event, version, item);
      this.afterCommit(stored, true);
      return { roomId, event: stored };
    });
  }

  /** Builds, authorises, signs and persists a local event in an existing room. */
  async send(roomId: string, draft: EventDraft, opts: SendOptions = {}): Promise<StoredEvent> {
    if (opts.txn) {
      const key = txnKey(opts.txn.userId, opts.txn.deviceId, opts.txn.scope, opts.txn.txnId);
      const pending = this.inflightTxns.get(key);
      if (pending) return pending;
      const p = this.sendOnce(roomId, draft, opts).finally(() => this.inflightTxns.delete(key));
      this.inflightTxns.set(key, p);
      return p;
    }
    return this.sendOnce(roomId, draft, opts);
  }

  private async sendOnce(roomId: string, draft: EventDraft, opts: SendOptions): Promise<StoredEvent> {
    if (opts.txn) {
      const t = opts.txn;
      let existing = this.txns.get(txnKey(t.userId, t.deviceId, t.scope, t.txnId));
      if (!existing && !(this.txnsComplete && this.txns.evictions === 0)) {
        this.txnsComplete = false;
        existing = await this.storage.events.eventForTxn(t.userId, t.deviceId, t.scope, t.txnId, Date.now() - TXN_WINDOW_MS);
      }
      if (existing) {
        const e = await this.events.get(existing);
        if (e) return e;
      }
    }
    const queued = this.lock.run(roomId, async () => {
      const head = await this.head(roomId);
      if (!head) throw new MatrixError(404, "M_NOT_FOUND", "Unknown room");
      await opts.precheck?.(head);
      // 1. build
      const event = await this.builder.build(head, draft);
      // 2. authorise (a local event is built on current state, so that is the state before it)
      const reason = await this.authoriser.againstState(head.version, event, head.state);
      if (reason !== undefined) throw forbidden(`Event not allowed: ${reason}`);
      // The Policy Server signs under the lock: the event is built on the head, which must not move meanwhile.
      const signed = await this.policyServers.signLocal(head, event);
      const final = opts.exchange ? await opts.exchange(signed, head) : signed;
      return this.persistOnHead(head, final, opts);
    });
    return (await queued).committed;
  }

  /**
   * A template for a membership event another server's user will sign (make_join, make_leave, make_knock), checked
   * against the current state first so a join that cannot succeed is refused up front (403 M_FORBIDDEN).
   */
  async membershipTemplate(roomId: string, draft: EventDraft): Promise<{ version: RoomVersion; pdu: JsonObject }> {
    const head = await this.head(roomId);
    if (!head) throw new MatrixError(404, "M_NOT_FOUND", "Unknown room");
    const pdu = await this.builder.unsignedPdu(head, draft);
    delete pdu.hashes;
    // This server signs the event at send_* (a restricted join it vouches for needs that signature): the probe
    // stands in for it.
    const probe = trustedEvent("$template", roomId, { ...pdu, hashes: {}, signatures: { [this.serverName]: { "ed25519:template": "" } } });
    const reason = await this.authoriser.againstState(head.version, probe, head.state);
    if (reason !== undefined) throw forbidden(reason);
    return { version: head.version, pdu };
  }

  /**
   * Stages 3-5 for an authorised local event (lock held): its state, its item, consumers' rows; then it is queued
   * and the head advances at once (pipelining). The returned promise settles when it is durable. If the write
   * fails, the room's head is dropped (reloaded from the database on next use), and the writer fails every queued
   * event built on top of it, so no event is ever stored without its prev_events.
   */
  private async persistOnHead(head: RoomHead, event: Event, opts: SendOptions): Promise<{ committed: Promise<StoredEvent> }> {
    // 3. compute state
    const stateBefore = head.state;
    const after = await this.stateStage.after(head.roomId, head.stateGroup, head.state, event);
    const current = this.stateStage.localCurrentState(event, after);
    const extremities = [...head.extremities.filter((e) => !event.prev_events.includes(e)), event.event_id];
    // 4. write
    const item = persistItem(event, this.stream.next(), after.group, {
      newStateGroup: after.node,
      replacesState: after.replacesState,
      currentState: current ? { group: current.group, delta: current.delta, memberships: current.memberships } : undefined,
      extremities,
      txn: opts.txn,
      applyRedactionTo: opts.applyRedaction ? event.redacts : undefined,
    });
    // 5. consumers' rows
    const staged: NewEvent = { event, version: head.version, streamOrdering: item.streamOrdering, local: true, stateBefore, stateChanges: current?.delta ?? NO_CHANGES, outOfBand: false };
    await this.stageConsumers(item, staged);
    const stored = storedEvent(event, head.version, item);
    // Optimistic: the next event in this room builds on this one before it commits.
    if (after.node) {
      this.state.remember(after.node, after.state);
      head.state = after.state;
      head.stateGroup = after.group;
    }
    head.extremities = extremities;
    head.maxDepth = Math.max(head.maxDepth, event.depth);
    this.events.add(stored);
    const committed = this.commit([item]).then(
      () => {
        if (opts.txn) this.txns.set(txnKey(opts.txn.userId, opts.txn.deviceId, opts.txn.scope, opts.txn.txnId), event.event_id);
        if (opts.applyRedaction && event.redacts) this.events.markRedacted(event.redacts, event.event_id);
        this.afterCommit(stored, true);
        return stored;
      },
      (e: unknown) => {
        this.events.forget(event.event_id);
        this.heads.delete(head.roomId);
        this.abortConsumers(staged);
        throw e;
      },
    );
    return { committed };
  }

  // ---- Received events ----------------------------------------------------------------------------------------

  /**
   * Persists an event received from another server (or fetched from one), whose format, signatures and content hash
   * were already checked ("Checks performed on receipt of a PDU", steps 1-3). Here, under the room lock:
   * 4. authorise it against its auth events; 5. against the state before it (from its prev events, resolved when
   * they fork, or `stateBefore` when the caller fetched the state at a gap); 6. against current state (soft fail);
   * 7. by the room's Policy Server, if it uses one (soft fail; a missing signature is asked for first, unlocked).
   * A rejected event is stored but never applied; a soft-failed one joins the DAG without reaching clients or
   * becoming a forward extremity. An accepted one may change current state: a linear extension replaces it, a fork
   * is resolved against it.
   *
   * `outlier`: stored without state (auth chain and state events fetched for a join): checked against its auth
   * events only. Every auth event (and, unless `stateBefore` is given, every prev event) must already be stored.
   *
   * `ownJoin`: our user's join made through send_join, with the resident's state as `stateBefore`. This server had
   * no member left, so whatever current state it kept is stale: the join is not checked against it (it would
   * soft-fail: the stale state has not seen the invite), and the state after the join becomes current state, with
   * the join as the only forward extremity.
   */
  async persistReceived(event: Event, opts: { outlier?: boolean; stateBefore?: StateMap; backfilled?: boolean; ownJoin?: boolean } = {}): Promise<ReceivedOutcome> {
    const existing = await this.events.get(event.event_id);
    if (existing && !(existing.outlier && !opts.outlier)) return { stored: existing, status: existing.rejected ? "rejected" : existing.softFailed ? "soft_failed" : "accepted" };
    const version = await this.events.roomVersion(event.room_id);
    if (!version) throw new MatrixError(404, "M_NOT_FOUND", `Unknown room ${event.room_id}`);
    const replaceOutlier = existing?.outlier === true;
    // Step 7 applies where step 6 does: to live events checked against current state.
    const live = !opts.outlier && !opts.backfilled && !opts.ownJoin;
    const checked = live ? await this.policyServers.refreshReceived(await this.head(event.room_id), version, event) : event;
    const queued = this.lock.run(event.room_id, () =>
      opts.outlier ? this.queueOutlier(version, checked) : this.queueReceived(version, checked, opts.stateBefore, replaceOutlier, opts.backfilled ?? false, opts.ownJoin ?? false),
    );
    const { committed, status } = await queued;
    return { stored: await committed, status };
  }

  private async queueOutlier(version: RoomVersion, event: Event): Promise<{ committed: Promise<StoredEvent>; status: ReceivedStatus }> {
    const reason = await this.authoriser.againstAuthEvents(version, event);
    const item = persistItem(event, this.stream.next(), null, { outlier: true, rejectedReason: reason ?? null });
    const stored: StoredEvent = { ...storedEvent(event, version, item), outlier: true, rejected: reason !== undefined, stateGroup: null };
    const committed = this.commit([item]).then(() => {
      this.events.add(stored);
      this.stream.finish(item.streamOrdering);
      return stored;
    });
    return { committed, status: reason === undefined ? "accepted" : "rejected" };
  }

  /**
   * `backfilled`: history older than what we have (from /backfill): it takes a negative stream ordering (so /sync
   * never sees it as new) and leaves current state and forward extremities alone.
   */
  private async queueReceived(
    version: RoomVersion,
    event: Event,
    given: StateMap | undefined,
    replaceOutlier: boolean,
    backfilled: boolean,
    ownJoin: boolean,
  ): Promise<{ committed: Promise<StoredEvent>; status: ReceivedStatus }> {
    const roomId = event.room_id;
    let head = await this.head(roomId);
    const stale = ownJoin ? head : undefined;

    // 3a. the state before the event (step 5's input); groups planned here besides the event's own.
    const before = await this.stateStage.beforeReceived(head, version, event, given);
    const planned: StateGroupNode[] = [...before.planned];

    // 2. authorise: steps 4 and 5 reject, steps 6 (current state) and 7 (the Policy Server) soft-fail.
    const rejected = (await this.authoriser.againstAuthEvents(version, event)) ?? (await this.authoriser.againstState(version, event, before.state));
    const softFailed =
      !rejected &&
      head !== undefined &&
      !stale &&
      !backfilled &&
      ((await this.authoriser.againstState(version, event, head.state)) !== undefined || !(await this.policyServers.recommended(head, version, event)));
    const redaction = rejected ? {} : await this.receivedRedaction(version, event, before.state);

    // 3b. the state after it, and current state (which moves only for an accepted, live event).
    const after: StateAfter = rejected ? { group: before.group, state: before.state, replacesState: null } : await this.stateStage.after(roomId, before.group, before.state, event);
    const live = !rejected && !softFailed && !backfilled;
    let current: CurrentStateChange | undefined;
    let extremities: string[] | undefined;
    if (live) {
      extremities = stale ? [event.event_id] : [...(head?.extremities ?? []).filter((e) => !event.prev_events.includes(e)), event.event_id];
      current = await this.stateStage.receivedCurrentState(head, version, event, after, planned, stale !== undefined);
    }

    // 4. write
    const item = persistItem(event, backfilled ? this.backfillOrdering-- : this.stream.next(), after.group, {
      newStateGroup: after.node,
      extraStateGroups: planned,
      replacesState: after.replacesState,
      rejectedReason: rejected ?? null,
      softFailed,
      currentState: current ? { group: current.group, delta: current.delta, memberships: current.memberships } : undefined,
      extremities,
      replaceOutlier,
      ...redaction,
    });
    // 5. consumers' rows, for events clients will see as new
    const staged: NewEvent | undefined = live ? { event, version, streamOrdering: item.streamOrdering, local: false, stateBefore: before.state, stateChanges: current?.delta ?? NO_CHANGES, outOfBand: false } : undefined;
    if (staged) await this.stageConsumers(item, staged);
    else if (backfilled && !rejected) {
      await this.stageConsumers(item, { event, version, streamOrdering: item.streamOrdering, local: false, stateBefore: before.state, stateChanges: NO_CHANGES, outOfBand: false }, "stageBackfilled");
    }
    if (after.node) this.state.remember(after.node, after.state);
    const stored: StoredEvent = { ...storedEvent(event, version, item), rejected: rejected !== undefined, softFailed, redactedBy: redaction.redactedBy ?? null };
    if (current && extremities) {
      if (!head) {
        head = { roomId, version, stateGroup: current.group, state: current.state, extremities, maxDepth: event.depth };
        this.heads.set(roomId, head);
      } else {
        head.state = current.state;
        head.stateGroup = current.group;
        head.extremities = extremities;
        head.maxDepth = Math.max(head.maxDepth, event.depth);
      }
    }
    this.events.add(stored);
    const committed = this.commit([item]).then(
      () => {
        if (redaction.applyRedactionTo) this.events.markRedacted(redaction.applyRedactionTo, event.event_id);
        if (live) this.afterCommit(stored, false);
        else {
          this.stream.finish(item.streamOrdering);
          this.events.add(stored);
        }
        return stored;
      },
      (e: unknown) => {
        this.events.forget(event.event_id);
        this.heads.delete(roomId);
        if (staged) this.abortConsumers(staged);
        throw e;
      },
    );
    return { committed, status: rejected ? "rejected" : softFailed ? "soft_failed" : "accepted" };
  }

  /**
   * Redactions of a received event ("Handling redactions": applied once both it and its target are known and
   * valid): a redaction marks its target, and an event redacted by a redaction that came first is stored redacted.
   */
  private async receivedRedaction(version: RoomVersion, event: Event, stateBefore: StateMap): Promise<{ applyRedactionTo?: string; redactedBy?: string }> {
    if (event.type === "m.room.redaction" && event.redacts !== undefined) {
      const target = await this.events.get(event.redacts);
      return (await this.redactions.applies(version, event, target, stateBefore)) ? { applyRedactionTo: event.redacts } : {};
    }
    const earlier = await this.storage.events.redactionsOf([event.event_id]);
    if (earlier.length === 0) return {};
    const target = { event, rejected: false };
    for (const r of (await this.events.getMany(earlier.map((x) => x.event_id))).values()) {
      if (r.rejected) continue;
      const stateAt = r.stateGroup === null ? new Map<string, string>() : await this.state.stateOf(r.stateGroup);
      if (await this.redactions.applies(version, r.event, target, stateAt)) return { redactedBy: r.event.event_id };
    }
    return {};
  }

  /**
   * Stores an out-of-band membership event of a local user (an invite received for a room we are not in, or our
   * rejection of it): an outlier that is nonetheless the user's membership in that room, with its stripped state.
   */
  async persistOutOfBand(event: Event, version: RoomVersion, creator: string, strippedState?: unknown[]): Promise<StoredEvent> {
    await this.ensureRoom(event.room_id, version, creator);
    const queued = this.lock.run(event.room_id, async () => {
      const item = persistItem(event, this.stream.next(), null, { outlier: true, outOfBand: strippedState ? { strippedState } : {} });
      await this.stageConsumers(item, { event, version, streamOrdering: item.streamOrdering, local: false, stateBefore: new Map(), stateChanges: NO_CHANGES, outOfBand: true });
      const stored: StoredEvent = { ...storedEvent(event, version, item), outlier: true, stateGroup: null };
      const committed = this.commit([item]).then(() => {
        this.events.add(stored);
        this.stream.finish(item.streamOrdering);
        // Sync wakes for the invited user.
        if (event.state_key) this.notifier.notify({ users: [event.state_key] });
        for (const c of this.consumers) this.runCommitted(c, stored, false);
        return stored;
      });
      return { committed };
    });
    return (await queued).committed;
  }

  /** Makes the room known before its first events arrive over federation (a remote join). */
  async ensureRoom(roomId: string, version: RoomVersion, creator: string): Promise<void> {
    this.events.rememberRoomVersion(roomId, version);
    if (await this.storage.rooms.get(roomId)) return;
    await this.storage.rooms.insert({ room_id: roomId, room_version: version.id, creator, is_public: 0, created_ts: Date.now(), current_state_group: null, forward_extremities: "[]" });
  }

  // ---- Stage 5 and the commit ---------------------------------------------------------------------------------

  /** Collects the consumers' rows into the item. A failing consumer is logged and skipped, never the event. */
  private async stageConsumers(item: PersistItem, event: NewEvent, which: "stage" | "stageBackfilled" = "stage"): Promise<void> {
    const e: NewEvent = item.applyRedactionTo || item.redactedBy ? { ...event, appliesRedactionTo: item.applyRedactionTo, redactedBy: item.redactedBy } : event;
    for (const c of this.consumers) {
      const stage = c[which]?.bind(c);
      if (!stage) continue;
      try {
        const rows = await stage(e);
        if (rows && rows.length > 0) (item.consumerRows ??= []).push(...rows);
      } catch (err) {
        this.log.error({ err, consumer: c.name, eventId: e.event.event_id }, "event consumer failed to stage; the event is stored without its rows");
      }
    }
  }

  private abortConsumers(e: NewEvent): void {
    for (const c of this.consumers) {
      try {
        c.aborted?.(e);
      } catch (err) {
        this.log.error({ err, consumer: c.name, eventId: e.event.event_id }, "event consumer failed to abort");
      }
    }
  }

  private runCommitted(c: EventConsumer, e: StoredEvent, local: boolean): void {
    if (!c.committed) return;
    try {
      c.committed(e, local);
    } catch (err) {
      this.log.error({ err, consumer: c.name, eventId: e.event.event_id }, "event consumer failed after commit");
    }
  }

  /** A live event is durable: caches, the stream position, waiting /sync requests, then the consumers. */
  private afterCommit(e: StoredEvent, local: boolean): void {
    this.events.add(e);
    this.stream.finish(e.streamOrdering);
    const roomId = e.event.room_id;
    const prev = this.latestStream.get(roomId);
    if (prev === undefined || prev < e.streamOrdering) this.latestStream.set(roomId, e.streamOrdering);
    // Membership changes concern the target user even before they are in the room (invites).
    const users = e.event.type === "m.room.member" && e.event.state_key ? [e.event.state_key] : [];
    this.notifier.notify({ rooms: [roomId], users });
    this.onEventWritten?.(local);
    for (const c of this.consumers) this.runCommitted(c, e, local);
  }

  /** Writes items durably; on failure their stream ids are released so the stream position is not held back. */
  private async commit(items: PersistItem[]): Promise<void> {
    try {
      await this.writer.write(items);
    } catch (e) {
      for (const i of items) this.stream.finish(i.streamOrdering);
      throw e;
    }
  }
}

function storedEvent(event: Event, version: RoomVersion, item: PersistItem): StoredEvent {
  return {
    txn: item.txn ? { deviceId: item.txn.deviceId, txnId: item.txn.txnId } : null,
    event,
    version,
    streamOrdering: item.streamOrdering,
    depth: event.depth,
    stateGroup: item.stateGroup,
    replacesState: item.replacesState,
    redactedBy: null,
    outlier: false,
    softFailed: false,
    rejected: false,
  };
}
