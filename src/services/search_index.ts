/**
 * The search index consumer (spec "Server Side Search"): every event clients can read, live or backfilled, that
 * carries searchable text gets its index row in the event's own transaction; a redaction that applies drops its
 * target's row in the redaction's transaction. Soft-failed, rejected and outlier events never reach the
 * consumers, and encrypted events have no plaintext to index.
 */
import type { Event } from "../core/events/event.js";
import { isJsonObject } from "../core/json/types.js";
import type { Staged } from "../storage/staged_rows.js";
import { stagedRow } from "../storage/staged_rows.js";
import type { Storage } from "../storage/storage.js";
import type { EventConsumer, NewEvent } from "./rooms/pipeline/consumers.js";

/** The searchable keys (the request's `keys`), and the event type each belongs to. */
export const SEARCH_KEYS = { "content.body": "m.room.message", "content.name": "m.room.name", "content.topic": "m.room.topic" } as const;
export type SearchKey = keyof typeof SEARCH_KEYS;

/**
 * The text of an event that search covers, and under which key: m.room.message `body`, m.room.name `name`,
 * m.room.topic `topic` (or, failing that, the text/plain representation in `m.topic`, as the spec lists).
 */
export function searchableText(event: Event): { key: SearchKey; value: string } | undefined {
  const c = event.content;
  let found: { key: SearchKey; value: unknown } | undefined;
  if (event.type === "m.room.message") found = { key: "content.body", value: c.body };
  else if (event.type === "m.room.name" && event.state_key === "") found = { key: "content.name", value: c.name };
  else if (event.type === "m.room.topic" && event.state_key === "") found = { key: "content.topic", value: typeof c.topic === "string" ? c.topic : plainTopic(c["m.topic"]) };
  if (!found || typeof found.value !== "string" || found.value.trim() === "") return undefined;
  return { key: found.key, value: found.value };
}

function plainTopic(mTopic: unknown): string | undefined {
  if (!isJsonObject(mTopic) || !Array.isArray(mTopic["m.text"])) return undefined;
  for (const r of mTopic["m.text"]) {
    if (isJsonObject(r) && typeof r.body === "string" && (r.mimetype === undefined || r.mimetype === "text/plain")) return r.body;
  }
  return undefined;
}

export class SearchIndexer implements EventConsumer {
  readonly name = "search";

  constructor(private readonly storage: Storage) {}

  stage(e: NewEvent): Staged[] | undefined {
    if (e.outOfBand) return undefined;
    const out: Staged[] = [];
    if (e.appliesRedactionTo !== undefined) out.push(stagedRow(this.storage.search.changes, { remove: e.appliesRedactionTo }));
    const text = e.redactedBy === undefined ? searchableText(e.event) : undefined;
    if (text) {
      out.push(stagedRow(this.storage.search.changes, { insert: {
        stream_ordering: e.streamOrdering,
        event_id: e.event.event_id,
        room_id: e.event.room_id,
        sender: e.event.sender,
        type: e.event.type,
        key: text.key,
        origin_server_ts: e.event.origin_server_ts,
        value: text.value,
      } }));
    }
    return out;
  }

  stageBackfilled(e: NewEvent): Staged[] | undefined {
    return this.stage(e);
  }
}
