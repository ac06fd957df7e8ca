/** Turns the spec's sync Filter into the predicates the sync service applies. */
import {
  applyEventFields,
  includeLeave,
  lazyLoadMembers,
  matchesEventFilter,
  roomIncluded,
  timelineLimit,
  unreadThreadNotifications,
  type FilterDefinition,
  type RoomEventFilter,
} from "../../core/filters/index.js";
import type { StoredEvent } from "../rooms/event_cache.js";
import type { ClientEvent } from "../rooms/format.js";
import type { CompiledSyncFilter } from "./sync.js";

export function compileSyncFilter(f: FilterDefinition | undefined): CompiledSyncFilter {
  const room = f?.room;
  const asFilterable = (e: StoredEvent) => ({ type: e.event.type, sender: e.event.sender, room_id: e.event.room_id, content: e.event.content });
  const fields = f?.event_fields;
  return {
    timelineLimit: timelineLimit(f, 10, 1000),
    timeline: (e) => matchesEventFilter(room?.timeline, asFilterable(e)),
    timelineFiltered: narrows(room?.timeline),
    state: (e) => matchesEventFilter(room?.state, asFilterable(e)),
    ephemeral: (type) => matchesEventFilter(room?.ephemeral, { type }),
    roomAccountData: (type) => matchesEventFilter(room?.account_data, { type }),
    accountData: (type) => matchesEventFilter(f?.account_data, { type }),
    presence: (type, sender) => matchesEventFilter(f?.presence, { type, sender }),
    roomIncluded: (roomId) => roomIncluded(f, roomId),
    includeLeave: includeLeave(f),
    lazyLoadMembers: lazyLoadMembers(f).enabled,
    unreadThreadNotifications: unreadThreadNotifications(f),
    // event_format "federation" is served as the client format for now (no client in use asks for it).
    shape: (e: ClientEvent) => (fields && fields.length > 0 ? (applyEventFields(e, fields) as ClientEvent) : e),
  };
}

/** Whether a timeline filter can drop events (then the limit counts matching events, not all of them). */
function narrows(f: RoomEventFilter | undefined): boolean {
  if (!f) return false;
  return f.types !== undefined || (f.not_types?.length ?? 0) > 0 || f.senders !== undefined || (f.not_senders?.length ?? 0) > 0 || f.rooms !== undefined || (f.not_rooms?.length ?? 0) > 0 || f.contains_url !== undefined;
}
