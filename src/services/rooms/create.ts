/**
 * Room creation (spec POST /createRoom): the create event, the creator's join, power levels, canonical alias,
 * preset state (join rules, history visibility, guest access), initial_state, name, topic, then invites — in the
 * order the spec lists them.
 */
import { isHistoricalUserId, isValidRoomAlias, userIdDomain } from "../../core/ids/ids.js";
import { isJsonObject, type JsonObject } from "../../core/json/types.js";
import { getRoomVersion } from "../../core/rooms/versions.js";
import { MatrixError, badJson, invalidParam } from "../../errors.js";
import type { MembershipService } from "./membership.js";
import type { RoomAccess } from "./rooms.js";

export interface CreateRoomRequest {
  visibility?: "public" | "private";
  room_alias_name?: string;
  name?: string;
  topic?: string;
  invite?: string[];
  room_version?: string;
  creation_content?: JsonObject;
  initial_state?: { type: string; state_key?: string; content: JsonObject }[];
  preset?: "private_chat" | "public_chat" | "trusted_private_chat";
  is_direct?: boolean;
  power_level_content_override?: JsonObject;
}

const PRESETS = {
  private_chat: { join_rule: "invite", history_visibility: "shared", guest_access: "can_join" },
  trusted_private_chat: { join_rule: "invite", history_visibility: "shared", guest_access: "can_join" },
  public_chat: { join_rule: "public", history_visibility: "shared", guest_access: "forbidden" },
} as const;

export class RoomCreationService {
  constructor(
    private readonly rooms: RoomAccess,
    private readonly membership: MembershipService,
  ) {}

  /** `opts.roomId`: an id chosen beforehand (room versions whose ids are not the create event's hash). */
  async createRoom(creator: string, req: CreateRoomRequest, opts: { extraCreateContent?: JsonObject; roomId?: string } = {}): Promise<{ roomId: string; alias?: string }> {
    const { config, storage, persister } = this.rooms.core;
    const versionId = req.room_version ?? config.defaultRoomVersion;
    const version = getRoomVersion(versionId);
    if (!version) throw new MatrixError(400, "M_UNSUPPORTED_ROOM_VERSION", `Your homeserver does not support room version ${versionId}`);

    const preset = req.preset ?? (req.visibility === "public" ? "public_chat" : "private_chat");
    const presetState = PRESETS[preset];
    if (!presetState) throw badJson(`Unknown preset: ${String(req.preset)}`);
    const invitees = [...new Set(req.invite ?? [])];
    // Other servers' users may have historical ids (spec "Historical User IDs"); ours must exist (checked below).
    for (const u of invitees) if (!isHistoricalUserId(u)) throw invalidParam(`Invalid user ID in invite: ${u}`);
    // Unknown local invitees fail the request before anything is created (as POST /invite would: 404).
    for (const u of invitees) {
      if (userIdDomain(u) === config.serverName && !(await storage.users.get(u))) throw new MatrixError(404, "M_NOT_FOUND", `Unknown user in invite: ${u}`);
    }

    let alias: string | undefined;
    if (req.room_alias_name !== undefined) {
      alias = `#${req.room_alias_name}:${config.serverName}`;
      if (req.room_alias_name.includes(":") || /\s/.test(req.room_alias_name) || !isValidRoomAlias(alias)) throw invalidParam("Invalid characters in room alias");
      if (await storage.rooms.aliasRoom(alias)) throw new MatrixError(400, "M_ROOM_IN_USE", "Room alias already taken");
    }
    for (const ev of req.initial_state ?? []) {
      if (ev.type === "m.room.create" || ev.type === "m.room.member") throw badJson(`initial_state may not contain ${ev.type}`);
    }

    // 1. m.room.create
    const createContent: JsonObject = { ...(req.creation_content ?? {}), ...(opts.extraCreateContent ?? {}), room_version: version.id };
    if (version.createHasCreatorField) createContent.creator = creator;
    else delete createContent.creator;
    if (version.privilegedCreators && preset === "trusted_private_chat" && invitees.length > 0) {
      // MSC4289: in v12, the trusted private chat preset makes the invitees creators alongside the sender.
      const extra = Array.isArray(createContent.additional_creators) ? createContent.additional_creators : [];
      createContent.additional_creators = [...new Set([...extra.filter((x): x is string => typeof x === "string"), ...invitees])];
    }
    const { roomId } = await persister.createRoom(version, creator, createContent, opts.roomId);

    // 2. The creator joins.
    await this.membership.joinAsCreator(roomId, creator);

    // 3. m.room.power_levels: defaults, preset changes, then the override (or an initial_state power levels event).
    const initialPl = req.initial_state?.find((e) => e.type === "m.room.power_levels" && (e.state_key ?? "") === "");
    let pl: JsonObject;
    if (initialPl) {
      pl = { ...initialPl.content };
    } else {
      const users: JsonObject = {};
      if (!version.privilegedCreators) users[creator] = 100;
      if (preset === "trusted_private_chat" && !version.privilegedCreators) for (const u of invitees) users[u] = 100;
      pl = {
        users,
        users_default: 0,
        events: {
          "m.room.name": 50,
          "m.room.power_levels": 100,
          "m.room.history_visibility": 100,
          "m.room.canonical_alias": 50,
          "m.room.avatar": 50,
          "m.room.tombstone": 100,
          "m.room.server_acl": 100,
          "m.room.encryption": 100,
        },
        events_default: 0,
        state_default: 50,
        ban: 50,
        kick: 50,
        redact: 50,
        invite: preset === "public_chat" ? 50 : 0,
        historical: 100,
      };
    }
    if (req.power_level_content_override) {
      const o = req.power_level_content_override;
      for (const [k, v] of Object.entries(o)) {
        // Nested maps merge one level deep, as Synapse does, so an override of one event's level keeps the rest.
        if ((k === "users" || k === "events" || k === "notifications") && isJsonObject(v) && isJsonObject(pl[k])) pl[k] = { ...(pl[k] as JsonObject), ...v };
        else pl[k] = v;
      }
    }
    await this.sendState(roomId, creator, "m.room.power_levels", "", pl);

    // 4. m.room.canonical_alias
    if (alias !== undefined) {
      if (!(await storage.rooms.insertAlias(alias, roomId, creator))) throw new MatrixError(400, "M_ROOM_IN_USE", "Room alias already taken");
      await this.sendState(roomId, creator, "m.room.canonical_alias", "", { alias });
    }

    // 5. Preset state, unless initial_state sets it.
    const inInitial = (type: string) => (req.initial_state ?? []).some((e) => e.type === type && (e.state_key ?? "") === "");
    if (!inInitial("m.room.join_rules")) await this.sendState(roomId, creator, "m.room.join_rules", "", { join_rule: presetState.join_rule });
    if (!inInitial("m.room.history_visibility")) await this.sendState(roomId, creator, "m.room.history_visibility", "", { history_visibility: presetState.history_visibility });
    // An absent m.room.guest_access means "forbidden" (spec), so as Synapse the event is only sent to let guests in.
    if (!inInitial("m.room.guest_access") && presetState.guest_access !== "forbidden") await this.sendState(roomId, creator, "m.room.guest_access", "", { guest_access: presetState.guest_access });

    // 6. initial_state
    for (const ev of req.initial_state ?? []) {
      if (ev === initialPl) continue;
      await this.sendState(roomId, creator, ev.type, ev.state_key ?? "", ev.content);
    }

    // 7. name and topic
    if (req.name !== undefined) await this.sendState(roomId, creator, "m.room.name", "", { name: req.name });
    if (req.topic !== undefined) {
      await this.sendState(roomId, creator, "m.room.topic", "", { topic: req.topic, "m.topic": [{ mimetype: "text/plain", body: req.topic }] });
    }

    // 8. Invites.
    for (const u of invitees) await this.membership.invite(roomId, creator, u, { isDirect: req.is_direct ?? false });

    if (req.visibility === "public") await storage.rooms.setPublic(roomId, true);
    return alias !== undefined ? { roomId, alias } : { roomId };
  }

  /** The room's initial state: an event the auth rules refuse means the request implied invalid state (spec: 400 M_INVALID_ROOM_STATE). */
  private async sendState(roomId: string, sender: string, type: string, stateKey: string, content: JsonObject): Promise<void> {
    try {
      await this.rooms.core.persister.send(roomId, { type, state_key: stateKey, sender, content });
    } catch (e) {
      if (e instanceof MatrixError && e.status === 403) throw new MatrixError(400, "M_INVALID_ROOM_STATE", `Invalid initial state: ${e.message}`);
      throw e;
    }
  }
}
