/**
 * The event persistence pipeline for local events (federated events will enter at the authorisation step):
 * under the room's write lock, build the event on the room's forward extremities with auth events from current
 * state, hash and sign it, check it against the authorization rules, compute the state after it, and hand the
 * rows to the group-commit writer. The caller's promise resolves only once the transaction has committed; then
 * caches are updated and waiting /sync requests are woken.
 */
import { LRUCache } from "lru-cache";
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
import { checkEventAuth } from "../../core/rooms/auth.js";
import type { RoomVersion } from "../../core/rooms/versions.js";
import { MatrixError, forbidden } from "../../errors.js";
import type { PersistItem } from "../../storage/events.js";
import type { StateDelta } from "../../storage/state_deltas.js";
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
}

const MAX_PREV_EVENTS = 10;
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
  private readonly txns = new LRUCache<string, string>({ max: TXN_CACHE_MAX });
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

  async start(): Promise<void> {
    this.stream = new StreamIdGenerator(await this.storage.events.maxStreamOrdering());
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
      this.afterCommit([stored]);
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
      return this.persistOnHead(head, event, opts);
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
      pdu.event_id = generateLocalEventId(this.serverName);
    }
    return this.signAndParse(version, pdu);
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
        this.afterCommit([stored]);
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

  private item(event: Event, stateGroup: number, extra: Partial<PersistItem>): PersistItem {
    const { unsigned: _u, ...pdu } = event.pdu;
    const content = event.content;
    const rel = isJsonObject(content["m.relates_to"]) ? content["m.relates_to"] : undefined;
    const item: PersistItem = {
      streamOrdering: this.stream.next(),
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

  private afterCommit(events: StoredEvent[]): void {
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
