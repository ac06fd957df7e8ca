/**
 * GET /notifications (spec "Listing Notifications"): the events a user was notified about, newest first, with the
 * actions of the rule that matched, whether they are read, and when the notification was made.
 */
import type { JsonObject } from "../../core/json/types.js";
import { invalidParam } from "../../errors.js";
import type { Storage } from "../../storage/storage.js";
import type { EventCache } from "../rooms/event_cache.js";
import type { EventFormatter } from "../rooms/format.js";
import { readFloor } from "./counts.js";

/** Synapse's default page size for this endpoint. */
const DEFAULT_LIMIT = 50;
const MAX_LIMIT = 1000;

export class NotificationList {
  constructor(
    private readonly storage: Storage,
    private readonly events: EventCache,
    private readonly formatter: EventFormatter,
  ) {}

  async list(userId: string, opts: { from?: string; limit?: string; only?: string }): Promise<JsonObject> {
    let before: number | undefined;
    if (opts.from !== undefined && opts.from !== "") {
      if (!/^-?\d{1,16}$/.test(opts.from)) throw invalidParam("Invalid 'from' token");
      before = Number(opts.from);
    }
    let limit = DEFAULT_LIMIT;
    if (opts.limit !== undefined) {
      if (!/^\d{1,9}$/.test(opts.limit)) throw invalidParam("'limit' must be a non-negative integer");
      limit = Math.min(Number(opts.limit), MAX_LIMIT);
    }
    if (limit === 0) return { notifications: [] };
    const rows = await this.storage.push.notifications(userId, { before, limit, onlyHighlight: opts.only === "highlight" });
    const events = await this.events.getMany(rows.map((r) => r.event_id));
    const positions = await this.storage.push.readPositions(userId, [...new Set(rows.map((r) => r.room_id))]);
    const kept = rows.filter((r) => events.has(r.event_id));
    const formatted = await this.formatter.format(
      kept.map((r) => events.get(r.event_id)!),
      { userId },
    );
    const notifications = kept.map((r, i) => ({
      actions: JSON.parse(r.actions) as JsonObject[],
      event: formatted[i] as unknown as JsonObject,
      read: r.stream_ordering <= readFloor(positions.get(r.room_id), r.thread_id),
      // No rule here carries a profile tag (Synapse's is always null): an empty string, as Dendrite sends.
      profile_tag: "",
      room_id: r.room_id,
      ts: r.ts,
    }));
    const out: JsonObject = { notifications };
    // A full page may have more behind it.
    if (rows.length === limit) out.next_token = String(rows[rows.length - 1]!.stream_ordering);
    return out;
  }
}
