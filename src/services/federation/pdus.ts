/**
 * Receiving PDUs from other servers (server-server API, "Checks performed on receipt of a PDU"): each PDU is checked
 * in the spec's order before anything else looks at it —
 *   1. valid format for its room version, else dropped;
 *   2. signed by every server that must sign it, else dropped;
 *   3. matching content hash, else redacted;
 *   4-6. authorised by its auth events, by the state before it, and by current state (the persister's part).
 * Missing prev events are fetched with /get_missing_events, and when a gap remains, the state at the gap comes from
 * /state_ids (+ /event for what we lack); then missing auth events are fetched from the sender (/event_auth, or one
 * by one with /event when it does not serve that), as Synapse does. A sender that cannot fill a gap does not fail
 * the PDU by itself: what could not be fetched is bridged with the state, or leaves the event to the auth rules.
 */
import type { Logger } from "pino";
import { isStateEvent, stateMapKey, type Event, type StateMap } from "../../core/events/event.js";
import { parsePdu } from "../../core/events/format.js";
import { contentHashMatches } from "../../core/events/hashes.js";
import { eventIdOf } from "../../core/events/ids.js";
import { redactPdu } from "../../core/events/redaction.js";
import { requiredSignatureServers } from "../../core/events/signing.js";
import { userIdDomain } from "../../core/ids/ids.js";
import { isJsonObject, type JsonObject } from "../../core/json/types.js";
import type { RoomVersion } from "../../core/rooms/versions.js";
import { CacheRegistry, ENTRY_BYTES, STRING_BYTES, type Cache } from "../../util/cache.js";
import { encodePath, type FederationClient } from "../../federation/client.js";
import { FederationError } from "../../federation/errors.js";
import type { KeyFetcher } from "../keys.js";
import type { EventCache, StoredEvent } from "../rooms/event_cache.js";
import type { EventPersister, ReceivedStatus } from "../rooms/persister.js";
import { resolveStoredStates } from "../rooms/resolve.js";

/**
 * A PDU that fails steps 1-2: it is dropped, and the sender is told why. `kind` says which step: "format" (not a
 * valid event for its room version: 400 M_BAD_JSON where it ends a request) or "signature" (not signed, or not
 * hashed, as it must be: 403 M_FORBIDDEN, as Synapse answers send_join and invite).
 */
export class PduError extends Error {
  constructor(
    message: string,
    readonly kind: "format" | "signature" = "format",
  ) {
    super(message);
  }
}

export interface PduResult {
  eventId?: string;
  status?: ReceivedStatus;
  error?: string;
}

/** How many missing prev events we ask for at once, and how deep a gap we follow before taking the state instead. */
const MISSING_EVENTS_LIMIT = 10;
const MISSING_EVENTS_ROUNDS = 10;
const FETCH_CONCURRENCY = 10;
/** How many levels of auth events are fetched one by one when /event_auth is not available. */
const AUTH_FETCH_DEPTH = 3;
/** How many outliers are persisted at once (their commits are grouped). */
const OUTLIER_WAVE = 200;
/** How long before a gap in history that could not be filled is tried again. */
const GAP_RETRY_MS = 60_000;

export class FederationPdus {
  /** Gaps in history last tried (event id → when), see fillGaps. */
  private readonly gapAttempts: Cache<string, number>;

  constructor(
    private readonly deps: {
      serverName: string;
      events: EventCache;
      persister: EventPersister;
      keys: KeyFetcher;
      client: FederationClient;
      log: Logger;
      serversInRoom: (roomId: string) => Promise<string[]>;
      earliestEventIds: (roomId: string, limit: number) => Promise<string[]>;
      caches?: CacheRegistry;
    },
  ) {
    this.gapAttempts = (deps.caches ?? new CacheRegistry()).create("history_gaps", (_v, key) => STRING_BYTES(key) + ENTRY_BYTES);}

  /**
   * Backfill (spec "Backfilling and retrieving missing events"): when a client pages back past the oldest events we
   * have, ask a server in the room for the events before them. They are stored as history (negative stream
   * orderings), each with its state; the oldest of them gets its state from /state_ids. Returns how many were added.
   */
  async backfill(roomId: string, limit: number): Promise<number> {
    const version = await this.deps.events.roomVersion(roomId);
    if (!version) return 0;
    const earliest = await this.deps.events.getMany(await this.deps.earliestEventIds(roomId, 5));
    const frontier: string[] = [];
    for (const e of earliest.values()) {
      if (e.event.type === "m.room.create") return 0;
      if ((await this.missingPrevEvents(e.event)).length > 0) frontier.push(e.event.event_id);
    }
    return this.backfillFrom(roomId, version, frontier, limit);
  }

  /**
   * A page of history met events whose prev events never reached us: a gap left when catching up took the state
   * at it (/state_ids) rather than every event (more than /get_missing_events follows). It is filled now, from
   * other servers, as a client scrolls back through it. Each gap is tried at most once a minute, so a server
   * that cannot fill it does not slow every page down.
   */
  async fillGaps(roomId: string, events: readonly Event[], limit: number): Promise<number> {
    // Only received events can have missing prev events: ours were built on what we hold.
    const received = events.filter((e) => userIdDomain(e.sender) !== this.deps.serverName);
    if (received.length === 0) return 0;
    const have = await this.deps.events.getMany([...new Set(received.flatMap((e) => e.prev_events))]);
    const now = Date.now();
    const frontier = received
      .filter((e) => e.prev_events.some((id) => !inTimeline(have.get(id), roomId)))
      .filter((e) => now - (this.gapAttempts.get(e.event_id) ?? 0) > GAP_RETRY_MS)
      .map((e) => e.event_id);
    if (frontier.length === 0) return 0;
    for (const id of frontier) this.gapAttempts.set(id, now);
    const version = await this.deps.events.roomVersion(roomId);
    return version ? this.backfillFrom(roomId, version, frontier, limit) : 0;
  }

  /** /backfill from the room's other servers, back from `frontier`; each new event persisted as history. */
  private async backfillFrom(roomId: string, version: RoomVersion, frontier: string[], limit: number): Promise<number> {
    if (frontier.length === 0) return 0;
    const servers = (await this.deps.serversInRoom(roomId)).filter((s) => s !== this.deps.serverName);
    for (const server of servers) {
      let res: JsonObject;
      try {
        res = await this.deps.client.get(server, encodePath`/_matrix/federation/v1/backfill/${roomId}`, { v: frontier, limit: Math.min(limit, 100) });
      } catch (e) {
        this.deps.log.info({ err: e, server, roomId }, "backfill failed; trying the next server");
        continue;
      }
      const checked: Event[] = [];
      for (const p of Array.isArray(res.pdus) ? res.pdus : []) {
        try {
          const e = await this.check(version, p);
          if (e.room_id === roomId) checked.push(e);
        } catch (e) {
          if (!(e instanceof PduError)) throw e;
        }
      }
      checked.sort((a, b) => a.depth - b.depth);
      let added = 0;
      for (const e of checked) {
        const have = await this.deps.events.get(e.event_id);
        if (have && !have.outlier) continue;
        const missing = await this.missingPrevEvents(e);
        let stateBefore: StateMap | undefined;
        try {
          stateBefore = missing.length > 0 && e.prev_events.length > 0 ? await this.stateAcrossGap(server, version, e, missing) : undefined;
        } catch (err) {
          // Without the state at its gap the event has nothing to stand on; the rest of the page still counts.
          if (!(err instanceof FederationError)) throw err;
          this.deps.log.info({ err: err.message, eventId: e.event_id, server }, "backfilled event skipped: no state across its gap");
          continue;
        }
        await this.fetchMissingAuthEvents(server, version, e);
        await this.deps.persister.persistReceived(e, { backfilled: true, ...(stateBefore ? { stateBefore } : {}) });
        added++;
      }
      return added;
    }
    return 0;
  }

  /**
   * Steps 1-3 for one PDU of a room whose version we know. Returns the event (its redacted form when the content
   * hash does not match); throws PduError when it must be dropped.
   */
  /** `signer`: a server whose signature is not required yet because it is about to sign (send_join's resident). */
  async check(version: RoomVersion, pdu: unknown, signer?: string): Promise<Event> {
    return this.verify(version, this.parse(version, pdu), signer);
  }

  /**
   * Step 1 alone: the PDU as an event of its room version, or PduError. A PDU whose only defect is missing or
   * malformed `hashes` or `signatures` is a well-formed event that is not signed as it must be: a "signature"
   * failure (Synapse checks those with the signatures, after the format: a float is 400, an unsigned join 403).
   */
  parse(version: RoomVersion, pdu: unknown): Event {
    const parsed = parsePdu(version, pdu);
    if (parsed.ok) return parsed.event;
    if (isJsonObject(pdu) && parsePdu(version, { ...pdu, hashes: { sha256: "" }, signatures: {} }).ok) {
      throw new PduError(`Signature check failed: the event is not hashed and signed (${parsed.error})`, "signature");
    }
    throw new PduError(`Invalid PDU: ${parsed.error}`);
  }

  /** Steps 2-3 for a parsed event: signatures (PduError "signature"), then the content hash (else redacted). */
  async verify(version: RoomVersion, parsedEvent: Event, signer?: string): Promise<Event> {
    let event = parsedEvent;
    const redacted = redactPdu(version, event.pdu);
    let servers: string[];
    try {
      servers = requiredSignatureServers(version, event.pdu);
    } catch (e) {
      throw new PduError(`Invalid PDU: ${(e as Error).message}`, "signature");
    }
    // v5+ "enforce key validity": the key must have been valid when the event was sent.
    const atTs = version.enforceKeyValidity ? event.origin_server_ts : undefined;
    for (const server of servers) {
      if (server === signer) continue;
      try {
        await this.deps.keys.verifySignedJson(redacted, server, atTs !== undefined ? { atTs } : {});
      } catch (e) {
        throw new PduError(`Signature check failed for ${server}: ${(e as Error).message}`, "signature");
      }
    }
    if (!contentHashMatches(event.pdu)) {
      // Spec: "If the hash check fails, then it is assumed that this is because we have only been given a redacted
      // version of the event. To enforce this, the receiving server should use the redacted copy it calculated".
      const again = parsePdu(version, redacted);
      if (!again.ok) throw new PduError(`Invalid redacted PDU: ${again.error}`);
      event = again.event;
    }
    return event;
  }

  /** The event id of a received PDU of a room we know, when it can be computed (to answer for a refused PDU). */
  async eventIdOf(pdu: unknown): Promise<string | undefined> {
    const roomId = isJsonObject(pdu) && typeof pdu.room_id === "string" ? pdu.room_id : undefined;
    const version = roomId ? await this.deps.events.roomVersion(roomId) : undefined;
    return version ? pduEventId(version, pdu) : undefined;
  }

  /** A PDU pushed to us in a transaction: checked, its gaps filled from `origin`, then persisted. */
  async receive(origin: string, pdu: unknown): Promise<PduResult> {
    const roomId = isJsonObject(pdu) && typeof pdu.room_id === "string" ? pdu.room_id : undefined;
    if (!roomId) return { error: "PDU has no room_id" };
    const version = await this.deps.events.roomVersion(roomId);
    if (!version || !(await this.deps.persister.head(roomId))) return { error: `Unknown room ${roomId}` };
    let event: Event;
    try {
      event = await this.check(version, pdu);
    } catch (e) {
      // The response names the dropped PDU by its id when one can be computed, so the sender learns why.
      if (e instanceof PduError) return { eventId: pduEventId(version, pdu), error: e.message };
      throw e;
    }
    try {
      const r = await this.ingest(origin, version, event, 0);
      // A rejected or soft-failed event was processed: stored (other events may cite it) but never applied. As
      // Synapse, its result carries no `error` ("If no error is present, the PDU can be considered successfully
      // handled"); `error` is for PDUs we could not process at all.
      return { eventId: event.event_id, status: r };
    } catch (e) {
      // A PduError is our verdict on the PDU (e.g. prev events withheld); anything else is a failure of ours.
      if (e instanceof PduError) this.deps.log.info({ err: e.message, eventId: event.event_id, origin }, "dropped a received PDU");
      else this.deps.log.warn({ err: e, eventId: event.event_id, origin }, "failed to handle a received PDU");
      return { eventId: event.event_id, error: (e as Error).message };
    }
  }

  /**
   * Fills the event's gaps and persists it: prev events (or the state at them) first, since the state across a gap
   * also brings events the auth events may be among; then the auth events still missing.
   */
  async ingest(origin: string, version: RoomVersion, event: Event, depth: number): Promise<ReceivedStatus> {
    const existing = await this.deps.events.get(event.event_id);
    if (existing && !existing.outlier) return existing.rejected ? "rejected" : existing.softFailed ? "soft_failed" : "accepted";
    let stateBefore: StateMap | undefined;
    let missing = await this.missingPrevEvents(event);
    if (missing.length > 0 && depth === 0) {
      await this.fetchMissingPrevEvents(origin, version, event);
      missing = await this.missingPrevEvents(event);
      // As Synapse: an event pushed to us could become the room's only forward extremity, and the state at a gap
      // is the sender's word; its sender has no excuse not to give us its prev events (get_missing_events, which
      // bridges deeper gaps with the state at the events it returns). One it withholds is dropped, not built on.
      if (missing.length > 0) throw new PduError(`Your server isn't divulging details about prev_events referenced in this event: ${missing.join(", ")}`);
    }
    if (missing.length > 0) stateBefore = await this.stateAcrossGap(origin, version, event, missing);
    await this.fetchMissingAuthEvents(origin, version, event);
    const r = await this.deps.persister.persistReceived(event, stateBefore ? { stateBefore } : {});
    return r.status;
  }

  /** Prev events we do not have as room events (outliers have no state to build on). */
  private async missingPrevEvents(event: Event): Promise<string[]> {
    const have = await this.deps.events.getMany(event.prev_events);
    return event.prev_events.filter((id) => !inTimeline(have.get(id), event.room_id));
  }

  /**
   * Auth events we lack: the sender's /event_auth gives the auth chain, stored as outliers, oldest first. When it
   * fails (a server that does not serve it, or does not know the event), the missing ones are fetched one by one
   * with /event. Whatever still lacks is left to the auth rules, which reject an event whose auth events are unknown.
   */
  private async fetchMissingAuthEvents(origin: string, version: RoomVersion, event: Event): Promise<void> {
    const lacking = async () => {
      const have = await this.deps.events.getMany(event.auth_events);
      return event.auth_events.filter((id) => !have.has(id));
    };
    if ((await lacking()).length === 0) return;
    try {
      const res = await this.deps.client.get(origin, encodePath`/_matrix/federation/v1/event_auth/${event.room_id}/${event.event_id}`);
      const chain = (Array.isArray(res.auth_chain) ? res.auth_chain : []).filter((p) => !isJsonObject(p) || p.event_id !== event.event_id);
      await this.storeOutliers(version, chain);
    } catch (e) {
      if (!(e instanceof FederationError)) throw e;
      this.deps.log.info({ err: e.message, eventId: event.event_id, origin }, "could not get the auth chain with /event_auth; fetching the auth events one by one");
    }
    const still = await lacking();
    if (still.length > 0) await this.fetchEvents(origin, version, still, AUTH_FETCH_DEPTH);
  }

  /** Checks PDUs (steps 1-3) and stores those we lack as outliers, in depth order so auth events come first. */
  async storeOutliers(version: RoomVersion, pdus: unknown[]): Promise<Event[]> {
    const checked: Event[] = [];
    for (const p of pdus) {
      try {
        checked.push(await this.check(version, p));
      } catch (e) {
        if (!(e instanceof PduError)) throw e;
        this.deps.log.debug({ err: e }, "dropped an invalid PDU from an auth chain or state");
      }
    }
    // Stored in waves: each wave is every event whose auth events are all stored already, persisted together so
    // their commits share transactions (a join's auth chain is tens of thousands of events, but only as deep as
    // the longest chain of auth events). Events whose auth events never arrive are left out.
    const known = await this.deps.events.getMany(checked.map((e) => e.event_id));
    // Once each: a server may list an event both in the state and in the auth chain.
    let pending = [...new Map(checked.filter((e) => !known.has(e.event_id)).map((e) => [e.event_id, e])).values()];
    const stored = new Set<string>();
    // v12: the create event is every other event's auth event without being listed (the room id is its hash).
    const implied = (e: Event) => (version.roomIdIsCreateEventHash && e.type !== "m.room.create" ? [`$${e.room_id.slice(1)}`] : []);
    const authOf = (e: Event) => [...e.auth_events, ...implied(e)];
    while (pending.length > 0) {
      const unseen = [...new Set(pending.flatMap(authOf))].filter((id) => !stored.has(id));
      for (const id of (await this.deps.events.getMany(unseen)).keys()) stored.add(id);
      const ready = pending.filter((e) => authOf(e).every((id) => stored.has(id)));
      if (ready.length === 0) break;
      for (let i = 0; i < ready.length; i += OUTLIER_WAVE) {
        await Promise.all(ready.slice(i, i + OUTLIER_WAVE).map((e) => this.deps.persister.persistReceived(e, { outlier: true })));
      }
      for (const e of ready) stored.add(e.event_id);
      pending = pending.filter((e) => !stored.has(e.event_id));
    }
    return checked;
  }

  /**
   * /get_missing_events from the sender between our forward extremities and the event, each ingested oldest first.
   * A server answers at most a few events per request (10 by default), so while the oldest events fetched still
   * lack prev events we ask again from them, up to MISSING_EVENTS_ROUNDS requests: a destination catching up after
   * an outage sends only its newest event per room, and everything sent meanwhile is fetched here. A gap that
   * remains is bridged with /state_ids rather than followed further.
   */
  private async fetchMissingPrevEvents(origin: string, version: RoomVersion, event: Event): Promise<void> {
    const head = await this.deps.persister.head(event.room_id);
    const fetched = new Map<string, Event>();
    let latest = [event.event_id];
    for (let round = 0; round < MISSING_EVENTS_ROUNDS && latest.length > 0; round++) {
      let res: JsonObject;
      try {
        res = await this.deps.client.post(origin, encodePath`/_matrix/federation/v1/get_missing_events/${event.room_id}`, {
          earliest_events: head?.extremities ?? [],
          latest_events: latest,
          limit: MISSING_EVENTS_LIMIT,
          min_depth: 0,
        });
      } catch (e) {
        // As Synapse: no further rounds; what the events fetched so far still lack is bridged with /state_ids, and
        // a pushed event whose own prev events never came is dropped.
        if (!(e instanceof FederationError)) throw e;
        this.deps.log.info({ err: e.message, eventId: event.event_id, origin, round }, "get_missing_events failed");
        break;
      }
      let added = 0;
      for (const p of Array.isArray(res.events) ? res.events : []) {
        try {
          const e = await this.check(version, p);
          if (e.event_id === event.event_id || e.room_id !== event.room_id || fetched.has(e.event_id)) continue;
          fetched.set(e.event_id, e);
          added++;
        } catch (e) {
          if (!(e instanceof PduError)) throw e;
        }
      }
      if (added === 0) break;
      // The next round starts from fetched events whose prev events are neither stored nor fetched.
      const next: string[] = [];
      for (const e of fetched.values()) {
        if ((await this.missingPrevEvents(e)).some((id) => !fetched.has(id))) next.push(e.event_id);
      }
      latest = next;
    }
    const ordered = [...fetched.values()].sort((a, b) => a.depth - b.depth);
    for (const e of ordered) {
      // One level only: a gap before these is bridged with /state_ids rather than another round of fetching.
      await this.ingest(origin, version, e, 1);
    }
  }

  /**
   * The state before `event` when some prev events are unknown: for each, the sender's /state_ids gives the state
   * before it; the prev event itself is fetched, and when it is a state event it is applied on top. The states
   * after all prev events are then resolved.
   */
  private async stateAcrossGap(origin: string, version: RoomVersion, event: Event, missing: string[]): Promise<StateMap> {
    const states: StateMap[] = [];
    const known = event.prev_events.filter((id) => !missing.includes(id));
    const knownEvents = await this.deps.events.getMany(known);
    for (const id of known) {
      const g = knownEvents.get(id)?.stateGroup;
      if (g !== null && g !== undefined) states.push(await this.deps.persister.stateOfGroup(g));
    }
    for (const prevId of missing) {
      const ids = await this.deps.client.get(origin, encodePath`/_matrix/federation/v1/state_ids/${event.room_id}`, { event_id: prevId });
      const pduIds = stringList(ids.pdu_ids);
      const authIds = stringList(ids.auth_chain_ids);
      await this.fetchEvents(origin, version, [...authIds, ...pduIds, prevId]);
      const loaded = await this.deps.events.getMany([...pduIds, prevId]);
      // The sender's word for the state, less what cannot be state here: events it named from another room (as
      // Synapse drops them), and events the auth rules rejected (a power-levels event it made up, say) — state
      // resolution must not get to pick one of those over the room's real state.
      const usable = (e: StoredEvent | undefined): e is StoredEvent => e !== undefined && e.event.room_id === event.room_id && !e.rejected;
      const state: StateMap = new Map();
      for (const id of pduIds) {
        const e = loaded.get(id);
        if (usable(e) && e.event.state_key !== undefined) state.set(stateMapKey(e.event.type, e.event.state_key), id);
      }
      const prev = loaded.get(prevId);
      if (usable(prev) && isStateEvent(prev.event)) state.set(stateMapKey(prev.event.type, prev.event.state_key!), prevId);
      states.push(state);
    }
    return resolveStoredStates(this.deps.events, version, states);
  }

  /**
   * Fetches events we lack with /event/{eventId} and stores them as outliers. With `authDepth`, the auth events
   * they cite that we lack are fetched first, that many levels down (an outlier is stored only once its auth
   * events are).
   */
  private async fetchEvents(origin: string, version: RoomVersion, ids: string[], authDepth = 0): Promise<void> {
    const have = await this.deps.events.getMany(ids);
    const want = [...new Set(ids.filter((id) => !have.has(id)))];
    const pdus: JsonObject[] = [];
    for (let i = 0; i < want.length; i += FETCH_CONCURRENCY) {
      const part = want.slice(i, i + FETCH_CONCURRENCY);
      const got = await Promise.all(
        part.map((id) =>
          this.deps.client.get(origin, encodePath`/_matrix/federation/v1/event/${id}`).then(
            (r) => (Array.isArray(r.pdus) && isJsonObject(r.pdus[0]) ? r.pdus[0] : undefined),
            () => undefined,
          ),
        ),
      );
      for (const p of got) if (p) pdus.push(p);
    }
    if (authDepth > 0 && pdus.length > 0) {
      const cited = new Set<string>();
      for (const p of pdus) {
        const parsed = parsePdu(version, p);
        if (parsed.ok) for (const id of parsed.event.auth_events) if (!want.includes(id)) cited.add(id);
      }
      if (cited.size > 0) await this.fetchEvents(origin, version, [...cited], authDepth - 1);
    }
    await this.storeOutliers(version, pdus);
  }
}

/** The id of a PDU that failed the checks (the reference hash needs a well-formed enough PDU), if computable. */
function pduEventId(version: RoomVersion, pdu: unknown): string | undefined {
  if (!isJsonObject(pdu)) return undefined;
  try {
    const id = eventIdOf(version, pdu);
    return typeof id === "string" && id.startsWith("$") ? id : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Whether we hold an event as part of the room's history (not missing, not an outlier without state). A prev event
 * of another room is no part of this room's history: its state must never become this room's.
 */
function inTimeline(e: StoredEvent | undefined, roomId: string): boolean {
  return e !== undefined && e.event.room_id === roomId && !e.outlier && e.stateGroup !== null;
}

function stringList(v: unknown): string[] {
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : [];
}
