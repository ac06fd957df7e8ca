/**
 * Whether a redaction applies to the event it names (spec "Redactions", and from room version 3 "Handling
 * redactions"): servers apply a redaction, and show it to clients, only once both events are known and valid, the
 * target is in the redaction's own room, and either the sender has the redact level (in the state at the
 * redaction) or the two senders share a domain. Room versions 1-2 check this in the auth rules instead (the redact
 * level, or the same domain in the event ids), so an accepted redaction there needs no further check. As Synapse, a
 * redaction of the m.room.create event is never applied nor served.
 */
import { stateMapKey, type Event, type StateMap } from "../../core/events/event.js";
import { userIdDomain } from "../../core/ids/ids.js";
import { canRedactOthers } from "../../core/rooms/power_levels.js";
import type { RoomVersion } from "../../core/rooms/versions.js";
import type { EventCache, StoredEvent } from "./event_cache.js";
import type { StateService } from "./state.js";

export class RedactionRules {
  constructor(
    private readonly events: EventCache,
    private readonly state: StateService,
  ) {}

  /** `stateAt`: the room state at the redaction (a redaction is no state event: before and after are the same). */
  async applies(version: RoomVersion, redaction: Event, target: Pick<StoredEvent, "event" | "rejected"> | undefined, stateAt: StateMap): Promise<boolean> {
    if (!target || target.rejected) return false;
    if (target.event.room_id !== redaction.room_id || target.event.type === "m.room.create") return false;
    if (!version.redactionAuthDeferred) return true;
    if (userIdDomain(redaction.sender) === userIdDomain(target.event.sender)) return true;
    const ids = [stateAt.get(stateMapKey("m.room.create", "")), stateAt.get(stateMapKey("m.room.power_levels", ""))];
    const loaded = await this.events.getMany(ids.filter((x): x is string => x !== undefined));
    const create = ids[0] ? loaded.get(ids[0])?.event : undefined;
    const powerLevels = ids[1] ? loaded.get(ids[1])?.event : undefined;
    return canRedactOthers({ version, create, powerLevels }, redaction.sender);
  }

  /**
   * Whether clients may see this redaction event (Synapse withholds the others): it must apply to a known target.
   * Events other than redactions always pass.
   */
  async servable(e: StoredEvent): Promise<boolean> {
    if (e.event.type !== "m.room.redaction") return true;
    if (e.event.redacts === undefined || e.stateGroup === null) return false;
    const target = await this.events.get(e.event.redacts);
    return this.applies(e.version, e.event, target, await this.state.stateOf(e.stateGroup));
  }
}
