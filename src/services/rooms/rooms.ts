/**
 * What every room operation needs: the room's current state and membership, power checks, and the pieces of the
 * event core (persister, cache, state, formatting, visibility) gathered in one place.
 */
import { stateMapKey, type Event, type StateMap } from "../../core/events/event.js";
import type { PowerContext } from "../../core/rooms/power_levels.js";
import type { Config } from "../../config/config.js";
import { MatrixError, forbidden } from "../../errors.js";
import type { Storage } from "../../storage/storage.js";
import type { Notifier } from "../notifier.js";
import type { EventCache, StoredEvent } from "./event_cache.js";
import type { EventFormatter } from "./format.js";
import type { EventPersister, RoomHead } from "./persister.js";
import type { StateService } from "./state.js";
import type { VisibilityService } from "./visibility.js";

import type { UserRooms } from "./user_rooms.js";

export interface RoomCore {
  config: Config;
  storage: Storage;
  persister: EventPersister;
  events: EventCache;
  state: StateService;
  formatter: EventFormatter;
  visibility: VisibilityService;
  notifier: Notifier;
  /** Users' rooms and memberships, cached for /sync. */
  userRooms: UserRooms;
}

export class RoomAccess {
  constructor(readonly core: RoomCore) {}

  async head(roomId: string): Promise<RoomHead> {
    const head = await this.core.persister.head(roomId);
    if (!head) throw new MatrixError(404, "M_NOT_FOUND", "Unknown room");
    return head;
  }

  async headIfKnown(roomId: string): Promise<RoomHead | undefined> {
    return this.core.persister.head(roomId);
  }

  /** The current state event for (type, state_key), if any. */
  async stateEvent(head: RoomHead, type: string, stateKey: string): Promise<StoredEvent | undefined> {
    const id = head.state.get(stateMapKey(type, stateKey));
    return id ? this.core.events.get(id) : undefined;
  }

  /** State events of a state map, in no particular order. */
  async stateEvents(state: StateMap): Promise<StoredEvent[]> {
    const m = await this.core.events.getMany([...state.values()]);
    return [...m.values()];
  }

  async membership(head: RoomHead, userId: string): Promise<string | undefined> {
    const e = await this.stateEvent(head, "m.room.member", userId);
    const m = e?.event.content.membership;
    return typeof m === "string" ? m : undefined;
  }

  /** 403 unless the user is joined to the room (404 when the room is unknown). */
  async requireJoined(roomId: string, userId: string): Promise<RoomHead> {
    const head = await this.head(roomId).catch(() => {
      throw forbidden(`User ${userId} not in room ${roomId}`);
    });
    if ((await this.membership(head, userId)) !== "join") throw forbidden(`User ${userId} not in room ${roomId}`);
    return head;
  }

  async powerContext(head: RoomHead): Promise<PowerContext> {
    const [create, powerLevels] = await Promise.all([this.stateEvent(head, "m.room.create", ""), this.stateEvent(head, "m.room.power_levels", "")]);
    return { version: head.version, create: create?.event, powerLevels: powerLevels?.event };
  }

  /** The content of a current state event, or undefined. */
  async stateContent(head: RoomHead, type: string, stateKey = ""): Promise<Event["content"] | undefined> {
    return (await this.stateEvent(head, type, stateKey))?.event.content;
  }
}
