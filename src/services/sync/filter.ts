/** Turns the spec's sync Filter into the predicates the sync service applies. */
import {
  applyEventFields,
  eventFormat,
  includeLeave,
  lazyLoadMembers,
  matchesEventFilter,
  roomIncluded,
  timelineLimit,
  unreadThreadNotifications,
  type FilterDefinition,
} from "../../core/filters/index.js";
import type { StoredEvent } from "../rooms/event_cache.js";
import type { ClientEvent } from "../rooms/format.js";
import type { CompiledSyncFilter } from "./sync.js";

export function compileSyncFilter(f: FilterDefinition | undefined): CompiledSyncFilter {
  const room = f?.room;
  const asFilterable = (e: StoredEvent) => ({ type: e.event.type, sender: e.event.sender, room_id: e.event.room_id, content: e.event.content });
  const fields = f?.event_fields;
  const lazy = lazyLoadMembers(f);
  return {
    timelineLimit: timelineLimit(f, 10, 1000),
    timeline: (e) => matchesEventFilter(room?.timeline, asFilterable(e)),
    state: (e) => matchesEventFilter(room?.state, asFilterable(e)),
    ephemeral: (type) => matchesEventFilter(room?.ephemeral, { type }),
    roomAccountData: (type) => matchesEventFilter(room?.account_data, { type }),
    accountData: (type) => matchesEventFilter(f?.account_data, { type }),
    presence: (type, sender) => matchesEventFilter(f?.presence, { type, sender }),
    roomIncluded: (roomId) => roomIncluded(f, roomId),
    includeLeave: includeLeave(f),
    lazyLoadMembers: lazy.enabled,
    includeRedundantMembers: lazy.includeRedundant,
    unreadThreadNotifications: unreadThreadNotifications(f),
    federationFormat: eventFormat(f) === "federation",
    shape: (e: ClientEvent) => (fields && fields.length > 0 ? (applyEventFields(e, fields) as ClientEvent) : e),
  };
}
