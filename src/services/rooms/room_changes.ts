/**
 * What changed in each room since a stream position, answered from memory so /sync asks the database only about
 * rooms where something did: member events (who joined or left, for device lists and summaries) and relations
 * (bundled aggregations of timeline events: a relation always comes after the event it relates to).
 */
import { isJsonObject } from "../../core/json/types.js";
import { ChangeTracker } from "../../util/change_tracker.js";
import type { StoredEvent } from "./event_cache.js";
import type { EventConsumer } from "./pipeline/consumers.js";

export class RoomChanges implements EventConsumer {
  readonly name = "room-changes";
  private members = new ChangeTracker(0);
  private relations = new ChangeTracker(0);
  private started = false;

  /** Tracking starts at the events stream's position; earlier changes are "maybe". */
  start(position: number): void {
    this.members = new ChangeTracker(position);
    this.relations = new ChangeTracker(position);
    this.started = true;
  }

  committed(e: StoredEvent): void {
    const ev = e.event;
    if (ev.type === "m.room.member") this.members.record(ev.room_id, e.streamOrdering);
    const rel = ev.content["m.relates_to"];
    if (isJsonObject(rel) && typeof rel.event_id === "string") this.relations.record(ev.room_id, e.streamOrdering);
  }

  /** False only when no member event was written in the room after `since`. */
  membersChangedSince(roomId: string, since: number): boolean {
    return !this.started || this.members.changedSince(roomId, since);
  }

  /** False only when no event relating to another was written in the room after `since`. */
  relationsSince(roomId: string, since: number): boolean {
    return !this.started || this.relations.changedSince(roomId, since);
  }
}
