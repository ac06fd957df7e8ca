/**
 * Stage 5, "after the write": the per-event consumers. Every event that reaches clients feeds features beyond the
 * room itself (push rule evaluation and notification counts, the search index; later application-service queues,
 * Sliding Sync bump stamps). Each is an EventConsumer in its own module, registered with the persister at start-up:
 * `stage` adds rows that must commit atomically with the event, `committed` runs after the commit (wake-ups, queues).
 */
import type { Staged } from "../../../storage/staged_rows.js";
import type { Event, StateMap } from "../../../core/events/event.js";
import type { RoomVersion } from "../../../core/rooms/versions.js";
import type { StoredEvent } from "../event_cache.js";

/** An event about to be written that clients will see as new: accepted, not soft-failed, not backfilled history. */
export interface NewEvent {
  readonly event: Event;
  readonly version: RoomVersion;
  readonly streamOrdering: number;
  /** Built here for a local user (a send), rather than received from another server. */
  readonly local: boolean;
  /**
   * The room's state before the event. Empty for an out-of-band membership (an invite to a room this server is not
   * in), which stands alone.
   */
  readonly stateBefore: StateMap;
  /** How the event changes the room's current state (state key → event id, null: removed); empty if it does not. */
  readonly stateChanges: ReadonlyMap<string, string | null>;
  readonly outOfBand: boolean;
  /** A redaction that applies now: the event it redacts. */
  readonly appliesRedactionTo?: string;
  /** Set when a redaction that arrived first already applies to this event. */
  readonly redactedBy?: string;
}

export interface EventConsumer {
  /** For logs. */
  readonly name: string;
  /**
   * Called under the room's write lock, in the room's stream order, before the event is written: the rows returned
   * commit in the event's own transaction. A consumer that fails here is logged and skipped; the event is still
   * written.
   */
  stage?(e: NewEvent): Promise<Staged[] | undefined> | Staged[] | undefined;
  /**
   * As `stage`, for accepted history fetched from other servers (backfill), which clients do not see as new: only
   * consumers that index history (search) want these.
   */
  stageBackfilled?(e: NewEvent): Promise<Staged[] | undefined> | Staged[] | undefined;
  /** Called once the event is durable. Must not throw or block: queue work and return. */
  committed?(e: StoredEvent, local: boolean): void;
  /** The event failed to write (and the room's queued events after it): drop what `stage` assumed about the room. */
  aborted?(e: NewEvent): void;
}
