/**
 * Events as clients see them (spec "Room Event Format" / ClientEvent): the PDU's client-visible fields plus
 * `unsigned` (age, transaction_id for the sending device, prev_content for state, redacted_because and Synapse's
 * redacted_by), the redacted
 * form when a redaction applies, and bundled aggregations (`unsigned["m.relations"]`: m.thread, m.replace,
 * m.reference) per "Aggregations of child events".
 */
import { redactPdu } from "../../core/events/redaction.js";
import { isJsonObject, type JsonObject } from "../../core/json/types.js";
import type { Storage } from "../../storage/storage.js";
import type { EventCache, StoredEvent } from "./event_cache.js";

export interface FormatContext {
  /** The user the events are for (transaction_id, current_user_participated). */
  userId?: string;
  deviceId?: string | null;
  /** /sync omits room_id from timeline and state events. */
  omitRoomId?: boolean;
  /**
   * Filter `event_format: "federation"`: "the raw event as received over federation" — the PDU (redacted when a
   * redaction applies, room_id kept), with event_id and unsigned added.
   */
  federationFormat?: boolean;
  /** Skip bundled aggregations (e.g. for state lists). */
  noAggregations?: boolean;
  /** Relation rows already fetched for these events (by parent id), so a batch of formats shares one query. */
  relationRows?: Map<string, RelationRow[]>;
}

export type RelationRow = Awaited<ReturnType<Storage["events"]["relationsTo"]>>[number];

export type ClientEvent = JsonObject;

/** The relation types bundled into `unsigned["m.relations"]`. */
export const BUNDLED_RELATIONS = ["m.thread", "m.replace", "m.reference"];

export class EventFormatter {
  /** History visibility for related events (set once the visibility service exists; see server.ts). */
  visibleTo?: (userId: string | null, events: StoredEvent[]) => Promise<StoredEvent[]>;

  constructor(
    private readonly storage: Storage,
    private readonly events: EventCache,
  ) {}

  async formatOne(e: StoredEvent, ctx: FormatContext): Promise<ClientEvent> {
    return (await this.format([e], ctx))[0]!;
  }

  async format(list: StoredEvent[], ctx: FormatContext): Promise<ClientEvent[]> {
    if (list.length === 0) return [];
    const now = Date.now();
    const related = new Set<string>();
    for (const e of list) {
      if (e.replacesState) related.add(e.replacesState);
      if (e.redactedBy) related.add(e.redactedBy);
    }
    const relatedEvents = related.size > 0 ? await this.events.getMany([...related]) : new Map<string, StoredEvent>();
    const aggregations = ctx.noAggregations ? new Map<string, JsonObject>() : await this.aggregations(list, ctx);

    const out: ClientEvent[] = [];
    for (const e of list) {
      const unsigned: JsonObject = { age: Math.max(0, now - e.event.origin_server_ts) };
      // Spec: transaction_id only for the device that sent the event.
      if (e.txn && e.event.sender === ctx.userId && e.txn.deviceId === ctx.deviceId) unsigned.transaction_id = e.txn.txnId;
      if (e.replacesState) {
        const prev = relatedEvents.get(e.replacesState);
        unsigned.replaces_state = e.replacesState;
        if (prev) {
          unsigned.prev_content = this.visibleContent(prev);
          unsigned.prev_sender = prev.event.sender;
        }
      }
      let content = e.event.content;
      let redacts = e.event.redacts;
      if (e.redactedBy) {
        const redaction = relatedEvents.get(e.redactedBy);
        content = redactedContent(e);
        if (redaction) unsigned.redacted_because = this.plain(redaction, now, ctx);
        // Synapse also names the redaction by id (not in the spec; clients such as SyTest read it).
        unsigned.redacted_by = e.redactedBy;
        redacts = e.event.type === "m.room.redaction" && e.version.redactsInContent ? redacts : undefined;
      }
      const agg = aggregations.get(e.event.event_id);
      if (agg && !e.redactedBy) unsigned["m.relations"] = agg;
      out.push(this.shape(e, content, unsigned, ctx, redacts));
    }
    return out;
  }

  /** A related event (redaction, aggregation) without further lookups. */
  private plain(e: StoredEvent, now: number, ctx: FormatContext): ClientEvent {
    return this.shape(e, e.redactedBy ? redactedContent(e) : e.event.content, { age: Math.max(0, now - e.event.origin_server_ts) }, ctx, e.event.redacts);
  }

  private shape(e: StoredEvent, content: JsonObject, unsigned: JsonObject, ctx: FormatContext, redacts: string | undefined): ClientEvent {
    if (ctx.federationFormat) return { ...(e.redactedBy ? redactPdu(e.version, e.event.pdu) : e.event.pdu), event_id: e.event.event_id, unsigned };
    const out: ClientEvent = {
      content,
      event_id: e.event.event_id,
      origin_server_ts: e.event.origin_server_ts,
      sender: e.event.sender,
      type: e.event.type,
      unsigned,
    };
    if (!ctx.omitRoomId) out.room_id = e.event.room_id;
    if (e.event.state_key !== undefined) out.state_key = e.event.state_key;
    // v11 moved `redacts` into content; clients still read the top-level key, as Synapse serves it.
    if (redacts !== undefined && e.event.type === "m.room.redaction") out.redacts = redacts;
    return out;
  }

  private visibleContent(e: StoredEvent): JsonObject {
    return e.redactedBy ? redactedContent(e) : e.event.content;
  }

  /** Bundled aggregations for the events that have children of the bundled relation types. */
  private async aggregations(list: StoredEvent[], ctx: FormatContext): Promise<Map<string, JsonObject>> {
    const ids = list.map((e) => e.event.event_id);
    const rows = ctx.relationRows ? ids.flatMap((id) => ctx.relationRows!.get(id) ?? []) : await this.storage.events.relationsTo(ids, BUNDLED_RELATIONS);
    if (rows.length === 0) return new Map();
    const loaded = await this.events.getMany(rows.map((r) => r.event_id));
    let children = [...loaded.values()];
    // A child the user may not see (history visibility) must not leak through its parent's summary.
    if (this.visibleTo) children = await this.visibleTo(ctx.userId ?? null, children);
    const relOf = new Map(rows.map((r) => [r.event_id, r.rel_type]));
    const targetOf = new Map(rows.map((r) => [r.event_id, r.relates_to_id]));
    const byTarget = new Map<string, StoredEvent[]>();
    for (const c of children) {
      const target = targetOf.get(c.event.event_id);
      if (target === undefined) continue;
      let l = byTarget.get(target);
      if (!l) byTarget.set(target, (l = []));
      l.push(c);
    }
    const originals = new Map(list.map((e) => [e.event.event_id, e]));
    const plan = new Map<string, { thread?: { latest: StoredEvent; count: number; participated: boolean }; replace?: StoredEvent; references?: string[] }>();
    for (const [target, all] of byTarget) {
      const original = originals.get(target)!;
      const rels = all.filter((c) => c.event.room_id === original.event.room_id);
      const p: { thread?: { latest: StoredEvent; count: number; participated: boolean }; replace?: StoredEvent; references?: string[] } = {};
      const thread = rels.filter((c) => relOf.get(c.event.event_id) === "m.thread").sort((a, b) => a.streamOrdering - b.streamOrdering);
      if (thread.length > 0) {
        const participated = ctx.userId !== undefined && (original.event.sender === ctx.userId || thread.some((c) => c.event.sender === ctx.userId));
        p.thread = { latest: thread[thread.length - 1]!, count: thread.length, participated };
      }
      const edits = rels.filter((c) => relOf.get(c.event.event_id) === "m.replace" && isValidReplacement(original, c));
      if (edits.length > 0) {
        // Spec: the most recent replacement by origin_server_ts, ties broken by the larger event_id.
        edits.sort((a, b) => a.event.origin_server_ts - b.event.origin_server_ts || (a.event.event_id < b.event.event_id ? -1 : a.event.event_id > b.event.event_id ? 1 : 0));
        p.replace = edits[edits.length - 1]!;
      }
      const refs = rels.filter((c) => relOf.get(c.event.event_id) === "m.reference").sort((a, b) => a.streamOrdering - b.streamOrdering);
      if (refs.length > 0) p.references = refs.map((c) => c.event.event_id);
      plan.set(target, p);
    }
    const toFormat = [...plan.values()].flatMap((p) => [p.thread?.latest, p.replace].filter((x): x is StoredEvent => x !== undefined));
    const formatted = await this.format(toFormat, { ...ctx, noAggregations: true });
    const byId = new Map(toFormat.map((e, i) => [e.event.event_id, formatted[i]!]));

    const out = new Map<string, JsonObject>();
    for (const [target, p] of plan) {
      const agg: JsonObject = {};
      if (p.thread) agg["m.thread"] = { latest_event: byId.get(p.thread.latest.event.event_id)!, count: p.thread.count, current_user_participated: p.thread.participated };
      if (p.replace) agg["m.replace"] = byId.get(p.replace.event.event_id)!;
      if (p.references) agg["m.reference"] = { chunk: p.references.map((event_id) => ({ event_id })) };
      if (Object.keys(agg).length > 0) out.set(target, agg);
    }
    return out;
  }
}

/**
 * Spec "Validity of replacement events": same room, sender and type as the original, no state key on either, the
 * original not itself a replacement, and (for unencrypted events) an `m.new_content` object.
 */
function isValidReplacement(original: StoredEvent, edit: StoredEvent): boolean {
  const o = original.event;
  const e = edit.event;
  if (e.room_id !== o.room_id || e.sender !== o.sender || e.type !== o.type) return false;
  if (o.state_key !== undefined || e.state_key !== undefined) return false;
  const origRel = o.content["m.relates_to"];
  if (isJsonObject(origRel) && origRel.rel_type === "m.replace") return false;
  if (e.type !== "m.room.encrypted" && !isJsonObject(e.content["m.new_content"])) return false;
  return true;
}

/** The content a redacted event keeps under its room version's redaction algorithm. */
export function redactedContent(e: StoredEvent): JsonObject {
  const redacted = redactPdu(e.version, e.event.pdu);
  return isJsonObject(redacted.content) ? redacted.content : {};
}
