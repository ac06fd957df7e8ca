/**
 * The legacy snapshots `GET /initialSync` and `GET /rooms/{roomId}/initialSync` (r0.6.1 "Syncing", deprecated, as
 * Synapse still serves them): every room the user is joined or invited to (and, with `archived`, has left) with its
 * state and latest messages, or one room — for a member, a former member (as it was when they left), or anyone when
 * its history is world_readable. The `end` tokens are /sync tokens, so /events (or /sync) continues from them.
 */
import { forbidden } from "../../errors.js";
import type { JsonObject } from "../../core/json/types.js";
import type { StateMap } from "../../core/events/event.js";
import type { AccountDataService } from "../account_data.js";
import type { PresenceService } from "../ephemeral/presence.js";
import type { ReceiptService } from "../ephemeral/receipts.js";
import type { StoredEvent } from "../rooms/event_cache.js";
import type { RoomAccess } from "../rooms/rooms.js";
import { before, formatTopo } from "../rooms/tokens.js";
import { legacyEvent, legacyPresence } from "./events_stream.js";
import { formatSyncToken, type SyncToken } from "./token.js";

export interface InitialSyncDeps {
  rooms: RoomAccess;
  presence: PresenceService;
  receipts: ReceiptService;
  accountData: AccountDataService;
  currentToken: () => SyncToken;
  presenceEnabled: boolean;
}

export interface Viewer {
  userId: string;
  deviceId: string | null;
}

export class InitialSyncService {
  constructor(private readonly deps: InitialSyncDeps) {}

  private get core() {
    return this.deps.rooms.core;
  }

  /** GET /initialSync: `limit` messages per room; `archived` adds the rooms the user left or was banned from. */
  async all(viewer: Viewer, opts: { limit: number; archived: boolean }): Promise<JsonObject> {
    const storage = this.core.storage;
    const now = this.deps.currentToken();
    const memberships = opts.archived ? ["join", "invite", "leave", "ban"] : ["join", "invite"];
    const forgotten = await storage.rooms.forgottenRooms(viewer.userId);
    const list = (await storage.rooms.roomsForUser(viewer.userId, memberships)).filter((r) => !forgotten.has(r.room_id));
    const publicRooms = new Set(await storage.rooms.publicRoomIds());
    const accountData = await this.deps.accountData.changedSince(viewer.userId, 0, now.accountData);

    const rooms: JsonObject[] = [];
    for (const r of list) {
      const d: JsonObject = { room_id: r.room_id, membership: r.membership, visibility: publicRooms.has(r.room_id) ? "public" : "private" };
      const member = await this.core.events.get(r.event_id);
      if (r.membership === "invite") {
        if (member) {
          d.inviter = member.event.sender;
          d.invite = legacyEvent(await this.core.formatter.formatOne(member, { ...viewer, noAggregations: true }));
        }
        rooms.push(d);
        continue;
      }
      if (r.membership === "join") {
        const head = await this.deps.rooms.headIfKnown(r.room_id);
        if (!head) continue;
        Object.assign(d, await this.snapshot(viewer, r.room_id, head.state, now, now.events, opts.limit));
      } else {
        // Left or banned: the room as it was at the user's leave.
        if (!member) continue;
        const state = member.stateGroup !== null ? await this.core.state.stateOf(member.stateGroup) : new Map<string, string>();
        Object.assign(d, await this.snapshot(viewer, r.room_id, state, now, member.streamOrdering, opts.limit));
      }
      d.account_data = accountData.filter((a) => a.roomId === r.room_id).map((a) => ({ type: a.type, content: a.content as JsonObject }));
      rooms.push(d);
    }

    // Presence of the users sharing a room with the user (and the user), those not offline, as Synapse.
    const joinedIds = list.filter((r) => r.membership === "join").map((r) => r.room_id);
    const users = new Set<string>([viewer.userId]);
    for (const roomId of joinedIds) for (const m of await storage.rooms.members(roomId, ["join"])) users.add(m.user_id);
    const presence = (await this.deps.presence.currentOf([...users])).filter((p) => p.content.presence !== "offline").map((p) => legacyPresence(p.sender, p.content));
    const receipts = await this.deps.receipts.eventsFor(joinedIds, 0, now.receipts, viewer.userId);

    return {
      rooms,
      presence,
      account_data: accountData.filter((a) => a.roomId === "").map((a) => ({ type: a.type, content: a.content as JsonObject })),
      receipts: [...receipts].map(([roomId, r]) => ({ type: r.type, room_id: roomId, content: r.content as unknown as JsonObject })),
      end: formatSyncToken(now),
    };
  }

  /**
   * GET /rooms/{roomId}/initialSync. A member sees the room now; a former member (leave or ban) sees it as it was at
   * their leave, without presence or receipts; anyone else only a world_readable room (no `membership` then), else 403.
   */
  async room(viewer: Viewer, roomId: string, limit: number): Promise<JsonObject> {
    const now = this.deps.currentToken();
    const head = await this.deps.rooms.headIfKnown(roomId);
    const notAllowed = () => forbidden(`User ${viewer.userId} not in room ${roomId}, and room previews are disabled`);
    if (!head) throw notAllowed();
    const member = await this.deps.rooms.stateEvent(head, "m.room.member", viewer.userId);
    const membership = member?.event.content.membership;
    let out: JsonObject;
    if (membership === "join" || membership === "leave" || membership === "ban") {
      out = membership === "join" ? await this.joinedRoom(viewer, roomId, head.state, now, limit) : await this.partedRoom(viewer, roomId, member!, now, limit);
      out.membership = membership;
    } else {
      const hv = (await this.deps.rooms.stateContent(head, "m.room.history_visibility"))?.history_visibility;
      if (hv !== "world_readable") throw notAllowed();
      out = await this.joinedRoom(viewer, roomId, head.state, now, limit);
    }
    const accountData = await this.deps.accountData.changedSince(viewer.userId, 0, now.accountData);
    out.account_data = accountData.filter((a) => a.roomId === roomId).map((a) => ({ type: a.type, content: a.content as JsonObject }));
    return out;
  }

  private async joinedRoom(viewer: Viewer, roomId: string, state: StateMap, now: SyncToken, limit: number): Promise<JsonObject> {
    const out = await this.snapshot(viewer, roomId, state, now, now.events, limit);
    out.presence = await this.roomPresence(state);
    const receipts = await this.deps.receipts.eventsFor([roomId], 0, now.receipts, viewer.userId);
    out.receipts = [...receipts].map(([id, r]) => ({ type: r.type, room_id: id, content: r.content as unknown as JsonObject }));
    return out;
  }

  private async partedRoom(viewer: Viewer, roomId: string, leave: StoredEvent, now: SyncToken, limit: number): Promise<JsonObject> {
    const state = leave.stateGroup !== null ? await this.core.state.stateOf(leave.stateGroup) : new Map<string, string>();
    return { ...(await this.snapshot(viewer, roomId, state, now, leave.streamOrdering, limit)), presence: [], receipts: [] };
  }

  /** room_id, messages (the latest `limit` visible events up to `upTo`) and state. */
  private async snapshot(viewer: Viewer, roomId: string, state: StateMap, now: SyncToken, upTo: number, limit: number): Promise<JsonObject> {
    const rows = limit > 0 ? await this.core.storage.events.roomTimeline(roomId, Number.MIN_SAFE_INTEGER, upTo, limit) : [];
    const events = (await this.core.events.fromRows(rows)).reverse();
    const visible = await this.core.visibility.filter(viewer.userId, events);
    const first = events[0];
    const fmt = { userId: viewer.userId, deviceId: viewer.deviceId };
    const stateEvents = await this.deps.rooms.stateEvents(state);
    const out: JsonObject = {
      room_id: roomId,
      messages: {
        chunk: (await this.core.formatter.format(visible, fmt)).map(legacyEvent),
        // Backwards pagination (/messages) continues before the oldest event; /events and /sync from `end`.
        start: first ? formatTopo(before({ depth: first.depth, stream: first.streamOrdering })) : formatSyncToken({ ...now, events: upTo }),
        end: formatSyncToken({ ...now, events: upTo }),
      },
      state: (await this.core.formatter.format(stateEvents, { ...fmt, noAggregations: true })).map(legacyEvent),
    };
    return out;
  }

  /** Presence of the room's joined members; a member the server has none for is offline (as Synapse). */
  private async roomPresence(state: StateMap): Promise<JsonObject[]> {
    if (!this.deps.presenceEnabled) return [];
    const members = (await this.deps.rooms.stateEvents(new Map([...state].filter(([k]) => k.startsWith(MEMBER_PREFIX)))))
      .filter((e) => e.event.content.membership === "join" && e.event.state_key !== undefined)
      .map((e) => e.event.state_key!);
    const known = new Map((await this.deps.presence.currentOf(members)).map((p) => [p.sender, p.content]));
    return members.map((u) => legacyPresence(u, known.get(u) ?? { presence: "offline" }));
  }
}

const MEMBER_PREFIX = `${"m.room.member".length}:m.room.member`;
