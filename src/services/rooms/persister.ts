/**
 * The event persistence pipeline for local events (federated events will enter at the authorisation step):
 * under the room's write lock, build the event on the room's forward extremities with auth events from current
 * state, hash and sign it, check it against the authorization rules, compute the state after it, and hand the
 * rows to the group-commit writer. The caller's promise resolves only once the transaction has committed; then
 * caches are updated and waiting /sync requests are woken.
 */
import { boundedCache } from "../../util/cache.js";
import type { Logger } from "pino";
import { authEventTypesFor } from "../../core/events/auth_events.js";
import { isStateEvent, stateMapKey, type Event, type StateMap } from "../../core/events/event.js";
import { MAX_KEY_BYTES, MAX_PDU_BYTES } from "../../core/events/format.js";
import { computeReferenceHash } from "../../core/events/hashes.js";
import { generateLocalEventId, generateRoomId, roomIdForCreateEvent } from "../../core/events/ids.js";
import { signNewEvent, type SignedNewEvent } from "../../core/events/signing.js";
import type { SigningKey } from "../../core/crypto/ed25519.js";
import { encodeBase64 } from "../../core/json/base64.js";
import { isJsonObject, type JsonObject, type JsonValue } from "../../core/json/types.js";
import { checkAuthEventsList, checkEventAuth } from "../../core/rooms/auth.js";
import type { RoomVersion } from "../../core/rooms/versions.js";
import { MatrixError, forbidden } from "../../errors.js";
import type { PersistItem } from "../../storage/events.js";
import { diffStates, type StateDelta } from "../../storage/state_deltas.js";
import type { StateGroupNode } from "../../storage/state_groups.js";
import { resolveStoredStates, sameState } from "./resolve.js";
import type { Storage } from "../../storage/storage.js";
import { StreamIdGenerator } from "../../storage/stream_ids.js";
import { KeyedLock } from "../../util/keyed_lock.js";
import type { Notifier } from "../notifier.js";
import { trustedEvent, type EventCache, type StoredEvent } from "./event_cache.js";
import type { StateService } from "./state.js";

/** The room as its writer sees it: current state and the DAG's forward extremities. */
export interface RoomHead {
  readonly roomId: string;
  readonly version: RoomVersion;
  stateGroup: number;
  state: StateMap;
  extremities: string[];
  maxDepth: number;
}

/** What a client asks to send; the persister fills in everything else. */
export interface EventDraft {
  type: string;
  state_key?: string;
  content: JsonObject;
  sender: string;
  redacts?: string;
}

export interface SendOptions {
  txn?: { userId: string; deviceId: string; scope: string; txnId: string };
  /** Extra checks run under the room lock with the room's current state, before the event is built. */
  precheck?: (head: RoomHead) => Promise<void> | void;
  /** For a redaction the sender may apply: the event it redacts. */
  applyRedaction?: boolean;
  /**
   * Runs once the event is built and authorised, before it is persisted, and may return it with more signatures:
   * an invite of another server's user goes to that server first (PUT /invite), which signs it too.
   */
  exchange?: (event: Event, head: RoomHead) => Promise<Event>;
}

const MAX_PREV_EVENTS = 10;

export type ReceivedStatus = "accepted" | "soft_failed" | "rejected";
export interface ReceivedOutcome {
  stored: StoredEvent;
  status: ReceivedStatus;
}

const TXN_WINDOW_MS = 24 * 3600_000;
const TXN_CACHE_MAX = 200_000;

function txnKey(userId: string, deviceId: string, scope: string, txnId: string): string {
  return `${userId}\u0000${deviceId}\u0000${scope}\u0000${txnId}`;
}
const MAX_DEPTH = Number.MAX_SAFE_INTEGER;

export class EventPersister {
  private readonly lock = new KeyedLock();
  private readonly heads = new Map<string, RoomHead>();
  private stream!: StreamIdGenerator;
  private readonly writer: GroupCommitWriter;
  /** Per room, the newest stream ordering: lets /sync skip rooms with nothing new without a query each. */
  private readonly latestStream = new Map<string, number>();
  /**
   * Spec "Transaction identifiers": a retried send returns the original event. Transaction ids are honoured for 24
   * hours (Synapse's window), up to the newest TXN_CACHE_MAX of them: they live in memory, warmed at start-up from
   * the events' own txn columns, so a send never waits on a lookup.
   */
  private readonly txns = boundedCache<string, string>(TXN_CACHE_MAX);
  /** Sends with the same txn id in flight, so concurrent retries get the same event. */
  private readonly inflightTxns = new Map<string, Promise<StoredEvent>>();

  constructor(
    private readonly storage: Storage,
    private readonly serverName: string,
    private readonly signingKey: SigningKey,
    private readonly events: EventCache,
    private readonly state: StateService,
    private readonly notifier: Notifier,
    private readonly log: Logger,
  ) {
    this.writer = new GroupCommitWriter(storage, log);
  }

  /** Backfilled history counts down from below the oldest stream ordering (Synapse's negative orderings). */
  private backfillOrdering = -1;

  async start(): Promise<void> {
    this.stream = new StreamIdGenerator(await this.storage.events.maxStreamOrdering());
    this.backfillOrdering = Math.min(0, await this.storage.events.minStreamOrdering()) - 1;
    const recent = await this.storage.events.recentTxns(Date.now() - TXN_WINDOW_MS, TXN_CACHE_MAX);
    for (const t of recent.reverse()) this.txns.set(txnKey(t.sender, t.txn_device_id, t.txn_scope, t.txn_id), t.event_id);
  }

  /** The events stream position for sync tokens: every event at or below it is committed. */
  position(): number {
    return this.stream.position();
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

  /**
   * Creates a room: persists its m.room.create event and returns the new room id (v12: the create event's hash;
   * earlier versions: a random id on this server).
   */
  async createRoom(version: RoomVersion, creator: string, content: JsonObject): Promise<{ roomId: string; event: StoredEvent }> {
    const now = Date.now();
    const pdu: JsonObject = {
      auth_events: [],
      prev_events: [],
      type: "m.room.create",
      state_key: "",
      sender: creator,
      content,
      depth: 1,
      origin_server_ts: now,
      hashes: {},
    };
    let roomId: string;
    if (version.roomIdIsCreateEventHash) {
      roomId = "";
    } else {
      roomId = generateRoomId(this.serverName);
      pdu.room_id = roomId;
    }
    if (version.eventIdFormat === "v1") pdu.event_id = generateLocalEventId(this.serverName);
    const event = this.signAndParse(version, pdu);
    if (version.roomIdIsCreateEventHash) roomId = roomIdForCreateEvent(event.event_id);
    const auth = checkEventAuth(version, event, () => undefined);
    if (!auth.allowed) throw forbidden(auth.reason);
    this.events.rememberRoomVersion(roomId, version);
    return this.lock.run(roomId, async () => {
      const key = stateMapKey("m.room.create", "");
      const { node, state } = await this.state.planGroup(roomId, null, new Map([[key, event.event_id]]));
      const item = this.item(event, node.id, {
        newStateGroup: node,
        currentState: { group: node.id, delta: node.delta, memberships: new Map() },
        extremities: [event.event_id],
        newRoom: { roomId, version: version.id, creator },
      });
      await this.commit([item]);
      this.state.remember(node, state);
      this.heads.set(roomId, { roomId, version, stateGroup: node.id, state, extremities: [event.event_id], maxDepth: 1 });
      const stored = this.stored(event, version, item);
      this.afterCommit([stored], true);
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
      const existing = this.txns.get(txnKey(t.userId, t.deviceId, t.scope, t.txnId));
      if (existing) {
        const e = await this.events.get(existing);
        if (e) return e;
      }
    }
    const queued = this.lock.run(roomId, async () => {
      const head = await this.head(roomId);
      if (!head) throw new MatrixError(404, "M_NOT_FOUND", "Unknown room");
      await opts.precheck?.(head);
      const event = await this.build(head, draft);
      const authState = await this.authStateFor(head, event);
      const auth = checkEventAuth(head.version, event, (t, k) => authState.get(stateMapKey(t, k)));
      if (!auth.allowed) throw forbidden(`Event not allowed: ${auth.reason}`);
      const final = opts.exchange ? await opts.exchange(event, head) : event;
      return this.persistOnHead(head, final, opts);
    });
    return (await queued).committed;
  }

  /** Loads the events the auth rules may consult for this event from the head's current state. */
  private async authStateFor(head: RoomHead, event: Event): Promise<Map<string, Event>> {
    const keys = authEventTypesFor(head.version, event).map(([t, k]) => stateMapKey(t, k));
    keys.push(stateMapKey("m.room.create", ""));
    const ids = keys.map((k) => head.state.get(k)).filter((x): x is string => x !== undefined);
    const loaded = await this.events.getMany(ids);
    const out = new Map<string, Event>();
    for (const k of keys) {
      const id = head.state.get(k);
      const e = id !== undefined ? loaded.get(id) : undefined;
      if (e) out.set(k, e.event);
    }
    return out;
  }

  private async build(head: RoomHead, draft: EventDraft): Promise<Event> {
    const pdu = await this.unsignedPdu(head, draft);
    if (head.version.eventIdFormat === "v1") pdu.event_id = generateLocalEventId(this.serverName);
    return this.signAndParse(head.version, pdu);
  }

  /** The PDU of a new event on the room's head, before hashes and signatures (also a make_join template). */
  private async unsignedPdu(head: RoomHead, draft: EventDraft): Promise<JsonObject> {
    const version = head.version;
    const authIds = authEventTypesFor(version, draft)
      .map(([t, k]) => head.state.get(stateMapKey(t, k)))
      .filter((x): x is string => x !== undefined);
    const prevIds = head.extremities.slice(-MAX_PREV_EVENTS);
    const pdu: JsonObject = {
      auth_events: authIds,
      prev_events: prevIds,
      type: draft.type,
      room_id: head.roomId,
      sender: draft.sender,
      content: draft.content,
      depth: Math.min(head.maxDepth + 1, MAX_DEPTH),
      origin_server_ts: Date.now(),
      hashes: {},
    };
    if (draft.state_key !== undefined) pdu.state_key = draft.state_key;
    if (draft.redacts !== undefined) {
      if (version.redactsInContent) pdu.content = { ...draft.content, redacts: draft.redacts };
      else pdu.redacts = draft.redacts;
    }
    if (version.eventIdFormat === "v1") {
      // Rooms v1/v2 reference events as [event_id, {sha256: reference hash}] and carry their own event id.
      const refs = await this.events.getMany([...authIds, ...prevIds]);
      const withHash = (id: string): JsonValue => {
        const e = refs.get(id);
        const hashes: JsonObject = e ? { sha256: encodeBase64(computeReferenceHash(version, e.event.pdu)) } : {};
        return [id, hashes];
      };
      pdu.auth_events = authIds.map(withHash);
      pdu.prev_events = prevIds.map(withHash);
    }
    return pdu;
  }

  /**
   * A template for a membership event another server's user will sign (make_join, make_leave, make_knock), checked
   * against the current state first so a join that cannot succeed is refused up front (403 M_FORBIDDEN).
   */
  async membershipTemplate(roomId: string, draft: EventDraft): Promise<{ version: RoomVersion; pdu: JsonObject }> {
    const head = await this.head(roomId);
    if (!head) throw new MatrixError(404, "M_NOT_FOUND", "Unknown room");
    const pdu = await this.unsignedPdu(head, draft);
    delete pdu.hashes;
    // This server signs the event at send_* (a restricted join it vouches for needs that signature): the probe
    // stands in for it.
    const probe = trustedEvent("$template", roomId, { ...pdu, hashes: {}, signatures: { [this.serverName]: { "ed25519:template": "" } } });
    const reason = await this.checkAgainstState(head.version, probe, head.state);
    if (reason !== undefined) throw forbidden(reason);
    return { version: head.version, pdu };
  }

  /** The state of a state group (for federation's state-at-event reads). */
  stateOfGroup(group: number): Promise<StateMap> {
    return this.state.stateOf(group);
  }


  /**
   * Hashes and signs a PDU this server built and returns its core view. Local PDUs are well-formed by construction;
   * what a client controls (type, state_key, content) is checked here against the spec's limits.
   */
  private signAndParse(version: RoomVersion, pdu: JsonObject): Event {
    for (const [field, value] of [["type", pdu.type], ["state_key", pdu.state_key], ["redacts", pdu.redacts]] as const) {
      if (typeof value === "string" && Buffer.byteLength(value) > MAX_KEY_BYTES) throw new MatrixError(400, "M_BAD_JSON", `'${field}' is longer than ${MAX_KEY_BYTES} bytes`);
    }
    let signed: SignedNewEvent;
    try {
      signed = signNewEvent(version, pdu, this.serverName, this.signingKey);
    } catch (e) {
      throw new MatrixError(400, "M_BAD_JSON", `Event cannot be encoded as canonical JSON: ${(e as Error).message}`);
    }
    if (signed.size > MAX_PDU_BYTES) throw new MatrixError(413, "M_TOO_LARGE", `Event is larger than ${MAX_PDU_BYTES} bytes`);
    const roomId = typeof pdu.room_id === "string" ? pdu.room_id : roomIdForCreateEvent(signed.eventId);
    return trustedEvent(signed.eventId, roomId, signed.pdu);
  }

  /**
   * Queues an authorised event on the room head (lock held) and advances the head at once, so the room's next
   * event can be built while this one commits (pipelining). The returned promise settles when it is durable. If
   * the write fails, the room's head is dropped (reloaded from the database on next use), and the writer fails
   * every queued event built on top of it, so no event is ever stored without its prev_events.
   */
  private async persistOnHead(head: RoomHead, event: Event, opts: SendOptions): Promise<{ committed: Promise<StoredEvent> }> {
    let stateGroup = head.stateGroup;
    let newState: StateMap | undefined;
    let node;
    let replacesState: string | null = null;
    const delta: StateDelta = new Map();
    const memberships = new Map<string, string>();
    if (isStateEvent(event)) {
      const key = stateMapKey(event.type, event.state_key!);
      replacesState = head.state.get(key) ?? null;
      delta.set(key, event.event_id);
      if (event.type === "m.room.member" && typeof event.content.membership === "string") memberships.set(key, event.content.membership);
      const planned = await this.state.planGroup(head.roomId, head.stateGroup, delta);
      node = planned.node;
      newState = planned.state;
      stateGroup = node.id;
    }
    const extremities = [...head.extremities.filter((e) => !event.prev_events.includes(e)), event.event_id];
    const item = this.item(event, stateGroup, {
      newStateGroup: node,
      replacesState,
      currentState: node ? { group: stateGroup, delta, memberships } : undefined,
      extremities,
      txn: opts.txn,
      applyRedactionTo: opts.applyRedaction ? event.redacts : undefined,
    });
    const stored = this.stored(event, head.version, item);
    // Optimistic: the next event in this room builds on this one before it commits.
    if (node && newState) {
      this.state.remember(node, newState);
      head.state = newState;
      head.stateGroup = stateGroup;
    }
    head.extremities = extremities;
    head.maxDepth = Math.max(head.maxDepth, event.depth);
    this.events.add(stored);
    const committed = this.commit([item]).then(
      () => {
        if (opts.txn) this.txns.set(txnKey(opts.txn.userId, opts.txn.deviceId, opts.txn.scope, opts.txn.txnId), event.event_id);
        if (opts.applyRedaction && event.redacts) this.events.markRedacted(event.redacts, event.event_id);
        this.afterCommit([stored], true);
        return stored;
      },
      (e: unknown) => {
        this.events.forget(event.event_id);
        this.heads.delete(head.roomId);
        throw e;
      },
    );
    return { committed };
  }

  /**
   * Persists an event received from another server (or fetched from one), whose format, signatures and content hash
   * were already checked ("Checks performed on receipt of a PDU", steps 1-3). Here, under the room lock:
   * 4. authorise it against its auth events; 5. against the state before it (from its prev events, resolved when
   * they fork, or `stateBefore` when the caller fetched the state at a gap); 6. against current state (soft fail).
   * A rejected event is stored but never applied; a soft-failed one joins the DAG without reaching clients or
   * becoming a forward extremity. An accepted one may change current state: a linear extension replaces it, a fork
   * is resolved against it.
   *
   * `outlier`: stored without state (auth chain and state events fetched for a join): checked against its auth
   * events only. Every auth event (and, unless `stateBefore` is given, every prev event) must already be stored.
   */
  async persistReceived(event: Event, opts: { outlier?: boolean; stateBefore?: StateMap; backfilled?: boolean } = {}): Promise<ReceivedOutcome> {
    const existing = await this.events.get(event.event_id);
    if (existing && !(existing.outlier && !opts.outlier)) return { stored: existing, status: existing.rejected ? "rejected" : existing.softFailed ? "soft_failed" : "accepted" };
    const version = await this.events.roomVersion(event.room_id);
    if (!version) throw new MatrixError(404, "M_NOT_FOUND", `Unknown room ${event.room_id}`);
    const replaceOutlier = existing?.outlier === true;
    const queued = this.lock.run(event.room_id, () =>
      opts.outlier ? this.queueOutlier(version, event) : this.queueReceived(version, event, opts.stateBefore, replaceOutlier, opts.backfilled ?? false),
    );
    const { committed, status } = await queued;
    return { stored: await committed, status };
  }

  /** Step 4: the event's own auth events must allow it. Returns the rejection reason, if any. */
  private async checkAgainstAuthEvents(version: RoomVersion, event: Event): Promise<string | undefined> {
    const authEvents = await this.events.getMany(event.auth_events);
    const missing = event.auth_events.filter((id) => !authEvents.has(id));
    if (missing.length > 0) return `missing auth events: ${missing.join(", ")}`;
    const list = [...authEvents.values()];
    const listCheck = checkAuthEventsList(version, event, list.map((e) => e.event), { isRejected: (id) => authEvents.get(id)?.rejected ?? false });
    if (!listCheck.allowed) return listCheck.reason;
    const byKey = new Map<string, Event>();
    for (const e of list) if (e.event.state_key !== undefined) byKey.set(stateMapKey(e.event.type, e.event.state_key), e.event);
    const create = version.roomIdIsCreateEventHash ? await this.createEventOf(event) : undefined;
    const r = checkEventAuth(version, event, (t, k) => byKey.get(stateMapKey(t, k)) ?? (t === "m.room.create" && k === "" ? create : undefined));
    return r.allowed ? undefined : r.reason;
  }

  /** v12: the create event is implied by the room id rather than listed in auth_events. */
  private async createEventOf(event: Event): Promise<Event | undefined> {
    if (event.type === "m.room.create") return undefined;
    return (await this.events.get(`$${event.room_id.slice(1)}`))?.event;
  }

  /** Checks an event against a state map (state before it, or current state). */
  private async checkAgainstState(version: RoomVersion, event: Event, state: StateMap): Promise<string | undefined> {
    const keys = authEventTypesFor(version, event).map(([t, k]) => stateMapKey(t, k));
    keys.push(stateMapKey("m.room.create", ""));
    const ids = keys.map((k) => state.get(k)).filter((x): x is string => x !== undefined);
    const loaded = await this.events.getMany(ids);
    const byKey = new Map<string, Event>();
    for (const k of keys) {
      const id = state.get(k);
      const e = id !== undefined ? loaded.get(id) : undefined;
      if (e) byKey.set(k, e.event);
    }
    const r = checkEventAuth(version, event, (t, k) => byKey.get(stateMapKey(t, k)));
    return r.allowed ? undefined : r.reason;
  }

  private async queueOutlier(version: RoomVersion, event: Event): Promise<{ committed: Promise<StoredEvent>; status: ReceivedStatus }> {
    const reason = await this.checkAgainstAuthEvents(version, event);
    const item = this.item(event, null, { outlier: true, rejectedReason: reason ?? null });
    const stored: StoredEvent = { ...this.stored(event, version, item), outlier: true, rejected: reason !== undefined, stateGroup: null };
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
  ): Promise<{ committed: Promise<StoredEvent>; status: ReceivedStatus }> {
    const roomId = event.room_id;
    let head = await this.head(roomId);

    // Step 5's input: the state before the event.
    let before: StateMap;
    let beforeGroup: number | null = null;
    // Groups planned here besides the event's own: the state before it (when computed) and a resolved current state.
    const extraGroups: StateGroupNode[] = [];
    if (given) {
      before = given;
    } else {
      const prevs = await this.events.getMany(event.prev_events);
      const groups = [...new Set(event.prev_events.map((id) => prevs.get(id)?.stateGroup ?? null))];
      if (groups.some((g) => g === null)) throw new MatrixError(500, "M_UNKNOWN", `Prev events of ${event.event_id} are missing or have no state`);
      const states = await Promise.all(groups.map((g) => this.state.stateOf(g!)));
      if (groups.length === 1) {
        before = states[0]!;
        beforeGroup = groups[0]!;
      } else {
        before = await resolveStoredStates(this.events, version, states);
      }
    }
    if (beforeGroup === null) {
      // A state computed here (a resolved fork, or fetched at a gap) becomes a group of its own.
      const base = head?.stateGroup ?? null;
      const baseState = base !== null ? await this.state.stateOf(base) : new Map<string, string>();
      const planned = await this.state.planGroup(roomId, base, diffStates(baseState, before));
      this.state.remember(planned.node, planned.state);
      beforeGroup = planned.node.id;
      extraGroups.push(planned.node);
    }

    const rejected = (await this.checkAgainstAuthEvents(version, event)) ?? (await this.checkAgainstState(version, event, before));
    let softFailed = false;
    if (!rejected && head && !backfilled) softFailed = (await this.checkAgainstState(version, event, head.state)) !== undefined;

    let stateGroup = beforeGroup;
    let after = before;
    let node;
    let replacesState: string | null = null;
    if (!rejected && isStateEvent(event)) {
      const key = stateMapKey(event.type, event.state_key!);
      replacesState = before.get(key) ?? null;
      const planned = await this.state.planGroup(roomId, beforeGroup, new Map([[key, event.event_id]]));
      node = planned.node;
      after = planned.state;
      stateGroup = node.id;
    }

    // Current state and forward extremities move only for an accepted event that is not soft-failed.
    let currentState: PersistItem["currentState"];
    let extremities: string[] | undefined;
    let newHead: { state: StateMap; group: number } | undefined;
    if (!rejected && !softFailed && !backfilled) {
      const oldExt = head?.extremities ?? [];
      extremities = [...oldExt.filter((e) => !event.prev_events.includes(e)), event.event_id];
      const linear = !head || oldExt.every((e) => event.prev_events.includes(e));
      let newState = after;
      let newGroup = stateGroup;
      if (!linear && head && !sameState(head.state, after)) {
        // The event is not in the cache yet: it is handed over, or it would take no part in the resolution.
        newState = await resolveStoredStates(this.events, version, [head.state, after], [event]);
        const planned = await this.state.planGroup(roomId, head.stateGroup, diffStates(head.state, newState));
        this.state.remember(planned.node, planned.state);
        extraGroups.push(planned.node);
        newGroup = planned.node.id;
      } else if (!linear && head) {
        newState = head.state;
        newGroup = head.stateGroup;
      }
      const oldState = head?.state ?? new Map<string, string>();
      const delta = diffStates(oldState, newState);
      const memberships = new Map<string, string>();
      if (delta.size > 0) {
        // The event itself is not cached until it is queued below.
        const changed = await this.events.getMany([...delta.values()].filter((v): v is string => v !== null && v !== event.event_id));
        for (const [k, id] of delta) {
          const e = id === event.event_id ? event : id !== null ? changed.get(id)?.event : undefined;
          if (e?.type === "m.room.member" && typeof e.content.membership === "string") memberships.set(k, e.content.membership);
        }
      }
      currentState = { group: newGroup, delta, memberships };
      newHead = { state: newState, group: newGroup };
    }

    const item = this.item(event, stateGroup, {
      newStateGroup: node,
      extraStateGroups: extraGroups,
      replacesState,
      rejectedReason: rejected ?? null,
      softFailed,
      currentState,
      extremities,
      replaceOutlier,
      ...(backfilled ? { streamOrdering: this.backfillOrdering-- } : {}),
    });
    if (node) this.state.remember(node, after);
    const stored: StoredEvent = { ...this.stored(event, version, item), rejected: rejected !== undefined, softFailed };
    if (newHead && extremities) {
      if (!head) {
        head = { roomId, version, stateGroup: newHead.group, state: newHead.state, extremities, maxDepth: event.depth };
        this.heads.set(roomId, head);
      } else {
        head.state = newHead.state;
        head.stateGroup = newHead.group;
        head.extremities = extremities;
        head.maxDepth = Math.max(head.maxDepth, event.depth);
      }
    }
    this.events.add(stored);
    const committed = this.commit([item]).then(
      () => {
        if (rejected || softFailed || backfilled) {
          this.stream.finish(item.streamOrdering);
          this.events.add(stored);
        } else this.afterCommit([stored], false);
        return stored;
      },
      (e: unknown) => {
        this.events.forget(event.event_id);
        this.heads.delete(roomId);
        throw e;
      },
    );
    return { committed, status: rejected ? "rejected" : softFailed ? "soft_failed" : "accepted" };
  }

  /**
   * Stores an out-of-band membership event of a local user (an invite received for a room we are not in, or our
   * rejection of it): an outlier that is nonetheless the user's membership in that room, with its stripped state.
   */
  async persistOutOfBand(event: Event, version: RoomVersion, creator: string, strippedState?: unknown[]): Promise<StoredEvent> {
    await this.ensureRoom(event.room_id, version, creator);
    const queued = this.lock.run(event.room_id, async () => {
      const item = this.item(event, null, { outlier: true, outOfBand: strippedState ? { strippedState } : {} });
      const stored: StoredEvent = { ...this.stored(event, version, item), outlier: true, stateGroup: null };
      const committed = this.commit([item]).then(() => {
        this.events.add(stored);
        this.stream.finish(item.streamOrdering);
        // Sync wakes for the invited user.
        if (event.state_key) this.notifier.notify({ users: [event.state_key] });
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

  private item(event: Event, stateGroup: number | null, extra: Partial<PersistItem>): PersistItem {
    const { unsigned: _u, ...pdu } = event.pdu;
    const content = event.content;
    const rel = isJsonObject(content["m.relates_to"]) ? content["m.relates_to"] : undefined;
    const item: PersistItem = {
      streamOrdering: extra.streamOrdering ?? this.stream.next(),
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

  private stored(event: Event, version: RoomVersion, item: PersistItem): StoredEvent {
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

  /** Events created here, once durable: the federation sender hands them to the room's other servers. */
  onLocalEvent?: (e: StoredEvent) => void;

  private afterCommit(events: StoredEvent[], local: boolean): void {
    if (local && this.onLocalEvent) for (const e of events) this.onLocalEvent(e);
    for (const e of events) {
      this.events.add(e);
      this.stream.finish(e.streamOrdering);
      const prev = this.latestStream.get(e.event.room_id);
      if (prev === undefined || prev < e.streamOrdering) this.latestStream.set(e.event.room_id, e.streamOrdering);
    }
    const rooms = new Set(events.map((e) => e.event.room_id));
    // Membership changes concern the target user even before they are in the room (invites).
    const users = events.filter((e) => e.event.type === "m.room.member" && e.event.state_key).map((e) => e.event.state_key!);
    this.notifier.notify({ rooms, users });
  }

  /** Forgets the cached head of a room (after an error left it in doubt). */
  dropHead(roomId: string): void {
    this.heads.delete(roomId);
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

/**
 * Group commit: writes queue up while a transaction is in flight and the next transaction takes them all, so many
 * concurrent sends share one commit (and one fsync) while each caller still hears back only after its own rows
 * are durable. Batches commit in FIFO order. A failing batch is retried item by item, so one bad item fails alone.
 */
class GroupCommitWriter {
  private queue: { items: PersistItem[]; resolve: () => void; reject: (e: unknown) => void }[] = [];
  private running = false;
  /** Events whose write failed: queued events built on them must fail too (their prev_events do not exist). */
  private readonly failed = new Set<string>();

  constructor(
    private readonly storage: Storage,
    private readonly log: Logger,
  ) {}

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
  private dropOrphans(batch: { items: PersistItem[]; resolve: () => void; reject: (e: unknown) => void }[]) {
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
        this.queue = [];
        if (batch.length === 0) continue;
        const now = Date.now();
        try {
          await this.storage.runBatch(this.storage.events.compileBatch(batch.flatMap((b) => b.items), now));
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
              await this.storage.runBatch(this.storage.events.compileBatch(b.items, now));
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
