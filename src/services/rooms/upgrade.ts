/**
 * Room upgrades (spec "Room Upgrades", server behaviour of POST /rooms/{roomId}/upgrade): check the user may send
 * m.room.tombstone, create the replacement room with a `predecessor` and the transferable state, send the tombstone,
 * move the local aliases, and restrict the old room's power levels. The steps and their order follow Synapse's
 * RoomCreationHandler.upgrade_room, including what it copies beyond the spec's list (bans, space children, the
 * room directory listing).
 */
import type { Logger } from "pino";
import { splitStateMapKey } from "../../core/events/event.js";
import { isJsonObject, type JsonObject, type JsonValue } from "../../core/json/types.js";
import { canSendEvent, parsePowerLevelValue, roomCreators } from "../../core/rooms/power_levels.js";
import { generateRoomId } from "../../core/events/ids.js";
import { userIdDomain } from "../../core/ids/ids.js";
import { copyRoomRules } from "../../core/push/index.js";
import { getRoomVersion, type RoomVersion } from "../../core/rooms/versions.js";
import { MatrixError, forbidden, notFound } from "../../errors.js";
import type { AccountDataService } from "../account_data.js";
import type { PushRuleService } from "../push/rules.js";
import type { RoomCreationService } from "./create.js";
import type { StoredEvent } from "./event_cache.js";
import type { RoomHead } from "./persister.js";
import type { RoomAccess } from "./rooms.js";

/**
 * Spec: "the recommended state events to transfer". Membership is not transferred (a server cannot join other
 * users), nor are events whose meaning depends on their sender.
 */
const TRANSFERABLE_STATE = [
  "m.room.server_acl",
  "m.room.encryption",
  "m.room.name",
  "m.room.avatar",
  "m.room.topic",
  "m.room.guest_access",
  "m.room.history_visibility",
  "m.room.join_rules",
  "m.room.power_levels",
];

/** Synapse answers a repeated upgrade of the same room by the same user with the first result for this long. */
const REPEAT_WINDOW_MS = 5 * 60_000;

interface InitialStateEvent {
  type: string;
  state_key: string;
  content: JsonObject;
}

/** What the upgrade takes from the old room, read once from its current state. */
interface OldRoom {
  head: RoomHead;
  create: StoredEvent;
  /** Transferable state other than power levels. */
  state: InitialStateEvent[];
  /** The old power levels with every level an integer; undefined when the room has no power levels event. */
  powerLevels: JsonObject | undefined;
  canonicalAlias: JsonObject | undefined;
  bans: StoredEvent[];
}

/** What an upgrade carries over for each local user of the old room (absent: only the room itself moves). */
export interface UserStateAccess {
  accountData: AccountDataService;
  pushRules: PushRuleService;
}

export class RoomUpgradeService {
  /** Upgrades in progress or just finished, by old room: the user who asked and the replacement room. */
  private readonly recent = new Map<string, { userId: string; result: Promise<string>; expires: number }>();

  constructor(
    private readonly rooms: RoomAccess,
    private readonly creation: RoomCreationService,
    private readonly log: Logger,
    private readonly userState?: UserStateAccess,
  ) {}

  private get core() {
    return this.rooms.core;
  }

  /** Upgrades the room and returns the replacement room's id. */
  upgrade(oldRoomId: string, userId: string, newVersionId: string, additionalCreators?: readonly string[]): Promise<string> {
    const version = getRoomVersion(newVersionId);
    if (!version) throw new MatrixError(400, "M_UNSUPPORTED_ROOM_VERSION", "Your homeserver does not support this room version");
    const now = Date.now();
    for (const [k, v] of this.recent) if (v.expires <= now) this.recent.delete(k);
    // As Synapse: a retry by the same user gets the same replacement room; anyone else is refused meanwhile.
    const current = this.recent.get(oldRoomId);
    if (current) {
      if (current.userId !== userId) throw new MatrixError(400, "M_UNKNOWN", "An upgrade for this room is currently in progress");
      return current.result;
    }
    const entry = { userId, result: this.perform(oldRoomId, userId, version, additionalCreators), expires: Number.POSITIVE_INFINITY };
    this.recent.set(oldRoomId, entry);
    entry.result.then(
      () => {
        entry.expires = Date.now() + REPEAT_WINDOW_MS;
      },
      () => {
        // A refused or failed attempt does not block the next one.
        if (this.recent.get(oldRoomId) === entry) this.recent.delete(oldRoomId);
      },
    );
    return entry.result;
  }

  private async perform(oldRoomId: string, userId: string, version: RoomVersion, additionalCreators: readonly string[] | undefined): Promise<string> {
    const head = await this.rooms.headIfKnown(oldRoomId);
    if (!head) throw notFound(`Unknown room id ${oldRoomId}`);
    // 1. "Checks that the user has permission to send m.room.tombstone events in the room."
    if ((await this.rooms.membership(head, userId)) !== "join") throw forbidden(`User ${userId} not in room ${oldRoomId}`);
    if (!canSendEvent(await this.rooms.powerContext(head), userId, "m.room.tombstone", true)) throw forbidden("You cannot upgrade this room");

    const old = await this.readOldRoom(head);
    const newCreators = new Set(version.privilegedCreators ? [userId, ...(additionalCreators ?? [])] : []);
    const levels = old.powerLevels ? planPowerLevels(old, version, userId, newCreators) : undefined;

    // 2. The replacement room, with `predecessor`, and 3. the transferable state.
    const initialState = [...old.state];
    if (levels) initialState.push({ type: "m.room.power_levels", state_key: "", content: levels.initial });
    const createNewRoom = async (tombstoneId: string | undefined, presetRoomId: string | undefined): Promise<string> => {
      const { roomId } = await this.creation.createRoom(
        userId,
        // The preset only fills in what the old room lacked (the copied state overrides it), as in Synapse.
        { room_version: version.id, preset: "private_chat", initial_state: initialState },
        { extraCreateContent: creationContent(old, version, tombstoneId, additionalCreators), roomId: presetRoomId },
      );
      return roomId;
    };
    // 5. The tombstone. Its id is the new room's `predecessor.event_id` (spec: "the last known event in the old
    // room"; Synapse: the tombstone), so, as Synapse does, it is built and authorised first (which also checks the
    // user's power), the replacement room is created meanwhile, and then the tombstone is persisted. A v12 room id
    // is the hash of its create event, which cannot name the tombstone: that room is created first, without event_id.
    const newRoomId = version.roomIdIsCreateEventHash ? await createNewRoom(undefined, undefined) : generateRoomId(this.core.config.serverName);
    await this.core.persister.send(
      oldRoomId,
      { type: "m.room.tombstone", state_key: "", sender: userId, content: { body: "This room has been replaced", replacement_room: newRoomId } },
      {
        precheck: async (h) => {
          if ((await this.rooms.membership(h, userId)) !== "join") throw forbidden(`User ${userId} not in room ${oldRoomId}`);
        },
        exchange: version.roomIdIsCreateEventHash
          ? undefined
          : async (tombstone) => {
              await createNewRoom(tombstone.event_id, newRoomId);
              return tombstone;
            },
      },
    );
    await this.copyBans(old, newRoomId, userId);

    // 4. "Moves any local aliases to the new room", and the room's directory listing and its local users' room
    // tags, m.direct entries and push rules with them (as Synapse).
    await this.moveAliases(old, newRoomId, userId);
    await this.transfer(oldRoomId, newRoomId);

    // 6. Stop the old room, and give the upgrading user back their own level in the new one.
    if (old.powerLevels) await this.restrictOldRoom(oldRoomId, old.powerLevels, userId);
    if (levels && !jsonEqual(levels.initial, levels.final)) await this.trySend(newRoomId, userId, "m.room.power_levels", levels.final);
    return newRoomId;
  }

  private async readOldRoom(head: RoomHead): Promise<OldRoom> {
    const create = await this.rooms.stateEvent(head, "m.room.create", "");
    if (!create) throw notFound(`Unknown room id ${head.roomId}`);
    const state: InitialStateEvent[] = [];
    for (const type of TRANSFERABLE_STATE) {
      if (type === "m.room.power_levels") continue;
      const content = await this.rooms.stateContent(head, type);
      if (content) state.push({ type, state_key: "", content });
    }
    // Synapse (MSC1772 spaces): a space keeps its children; a child event with empty content was removed.
    if (create.event.content.type === "m.space") {
      const ids = [...head.state].filter(([k]) => splitStateMapKey(k)[0] === "m.space.child").map(([, id]) => id);
      for (const e of (await this.core.events.getMany(ids)).values()) {
        if (Object.keys(e.event.content).length > 0) state.push({ type: "m.space.child", state_key: e.event.state_key ?? "", content: e.event.content });
      }
    }
    const pl = await this.rooms.stateContent(head, "m.room.power_levels");
    const banIds = (await this.core.storage.rooms.members(head.roomId, ["ban"])).map((m) => m.event_id);
    return {
      head,
      create,
      state,
      powerLevels: pl ? integerPowerLevels(head.version, pl) : undefined,
      canonicalAlias: await this.rooms.stateContent(head, "m.room.canonical_alias"),
      bans: [...(await this.core.events.getMany(banIds)).values()],
    };
  }

  /**
   * Synapse's transfer_room_state_on_room_upgrade: once this server learns of an upgrade, by performing it or by
   * joining the replacement room through another server, the old room's joined local users keep their room tags,
   * m.direct entries and push rules in the new room, and the old room's directory listing and local aliases move to
   * it. Each user's part is best effort.
   */
  async transfer(oldRoomId: string, newRoomId: string): Promise<void> {
    const storage = this.core.storage;
    const serverName = this.core.config.serverName;
    if (this.userState) {
      const local = (await storage.rooms.members(oldRoomId, ["join"])).map((m) => m.user_id).filter((u) => userIdDomain(u) === serverName);
      for (const userId of local) {
        try {
          await this.copyUserState(this.userState, userId, oldRoomId, newRoomId);
        } catch (err) {
          this.log.warn({ err, userId, oldRoomId, newRoomId }, "room upgrade: could not copy a user's tags, m.direct or push rules");
        }
      }
    }
    if ((await storage.rooms.get(oldRoomId))?.is_public === 1) {
      await storage.rooms.setPublic(oldRoomId, false);
      await storage.rooms.setPublic(newRoomId, true);
    }
    await storage.rooms.moveAliases(oldRoomId, newRoomId);
  }

  /**
   * A local user joined a room through another server: when it replaces a room this server knows (its create
   * event's `predecessor`), the transfer above happens now, as Synapse does on a remote join.
   */
  async afterRemoteJoin(roomId: string): Promise<void> {
    const head = await this.rooms.headIfKnown(roomId);
    const predecessor = head ? (await this.rooms.stateContent(head, "m.room.create"))?.predecessor : undefined;
    const oldRoomId = isJsonObject(predecessor) && typeof predecessor.room_id === "string" ? predecessor.room_id : undefined;
    if (oldRoomId === undefined || oldRoomId === roomId || !(await this.rooms.headIfKnown(oldRoomId))) return;
    await this.transfer(oldRoomId, roomId);
  }

  private async copyUserState(deps: UserStateAccess, userId: string, oldRoomId: string, newRoomId: string): Promise<void> {
    const accountData = this.core.storage.accountData;
    // Room tags (m.tag room account data): the old room's tags join any the new room has.
    const oldTags = (await accountData.get(userId, oldRoomId, "m.tag"))?.tags;
    if (isJsonObject(oldTags) && Object.keys(oldTags).length > 0) {
      const existing = (await accountData.get(userId, newRoomId, "m.tag")) ?? {};
      const newTags = isJsonObject(existing.tags) ? existing.tags : {};
      await deps.accountData.write(userId, newRoomId, "m.tag", { ...existing, tags: { ...oldTags, ...newTags } });
    }
    // m.direct: the new room joins the old one under the first user it is listed for.
    const direct = await accountData.get(userId, "", "m.direct");
    if (direct) {
      for (const [key, list] of Object.entries(direct)) {
        if (!Array.isArray(list) || !list.includes(oldRoomId)) continue;
        if (!list.includes(newRoomId)) await deps.accountData.write(userId, "", "m.direct", { ...direct, [key]: [...list, newRoomId] });
        break;
      }
    }
    // Push rules about the old room.
    const stored = (await deps.pushRules.forUser(userId)).stored;
    if (stored && copyRoomRules(stored, oldRoomId, newRoomId) !== stored) await deps.pushRules.update(userId, (s) => copyRoomRules(s, oldRoomId, newRoomId));
  }

  /** Synapse carries bans over, so an upgrade is no way back in for banned users. */
  private async copyBans(old: OldRoom, newRoomId: string, userId: string): Promise<void> {
    for (const ban of old.bans) {
      if (ban.event.state_key === undefined) continue;
      await this.trySend(newRoomId, userId, "m.room.member", ban.event.content, ban.event.state_key);
    }
  }

  /**
   * Points the local aliases at the new room, and splits m.room.canonical_alias: the local aliases now belong to
   * the new room, remote ones stay with the old room (their servers decide where they point).
   */
  private async moveAliases(old: OldRoom, newRoomId: string, userId: string): Promise<void> {
    await this.core.storage.rooms.moveAliases(old.head.roomId, newRoomId);
    const content = old.canonicalAlias;
    if (!content) return;
    const serverName = this.core.config.serverName;
    const isLocal = (a: JsonValue | undefined): a is string => typeof a === "string" && a.slice(a.indexOf(":") + 1) === serverName;
    const oldContent: JsonObject = { ...content };
    const newContent: JsonObject = {};
    if (isLocal(content.alias)) {
      newContent.alias = content.alias;
      delete oldContent.alias;
    }
    if (Array.isArray(content.alt_aliases)) {
      const moved = content.alt_aliases.filter(isLocal);
      const kept = content.alt_aliases.filter((a) => !isLocal(a));
      if (moved.length > 0) newContent.alt_aliases = moved;
      if (kept.length > 0) oldContent.alt_aliases = kept;
      else delete oldContent.alt_aliases;
    }
    if (!jsonEqual(oldContent, content)) await this.trySend(old.head.roomId, userId, "m.room.canonical_alias", oldContent);
    if (Object.keys(newContent).length > 0) await this.trySend(newRoomId, userId, "m.room.canonical_alias", newContent);
  }

  /**
   * Spec: "the power levels in the old room should also be modified to prevent sending of events and inviting new
   * users. For example, setting events_default and invite to the greater of 50 and users_default + 1."
   */
  private async restrictOldRoom(oldRoomId: string, powerLevels: JsonObject, userId: string): Promise<void> {
    const restricted = Math.max(50, levelOf(powerLevels, "users_default", 0) + 1);
    const content: JsonObject = { ...powerLevels };
    let changed = false;
    for (const key of ["events_default", "invite"]) {
      if (levelOf(content, key, 0) < restricted) {
        content[key] = restricted;
        changed = true;
      }
    }
    if (changed) await this.trySend(oldRoomId, userId, "m.room.power_levels", content);
  }

  /** Sends a state event the upgrade would like but can do without; a refusal is logged, not fatal (as Synapse). */
  private async trySend(roomId: string, sender: string, type: string, content: JsonObject, stateKey = ""): Promise<void> {
    try {
      await this.core.persister.send(roomId, { type, state_key: stateKey, sender, content });
    } catch (err) {
      this.log.warn({ err, roomId, type, stateKey }, "room upgrade: could not send state event");
    }
  }
}

/** The new room's m.room.create content beyond room_version (and creator, which room creation adds). */
function creationContent(old: OldRoom, version: RoomVersion, tombstoneId: string | undefined, additionalCreators: readonly string[] | undefined): JsonObject {
  const predecessor: JsonObject = { room_id: old.head.roomId };
  // The m.room.create schema: event_id is "the event ID of the last known event in the old room": the tombstone.
  // Upgrading to v12 (MSC4291) it is left out, as Synapse does: spec v1.16 says it "MAY be omitted" there and
  // clients then look for the old room's tombstone instead.
  if (tombstoneId !== undefined) predecessor.event_id = tombstoneId;
  const content: JsonObject = { predecessor };
  // Spec (v1.4): the room `type` is copied; Synapse also keeps a room unfederated.
  const oldContent = old.create.event.content;
  if (oldContent.type !== undefined) content.type = oldContent.type;
  if (oldContent["m.federate"] === false) content["m.federate"] = false;
  // Spec v1.16: additional creators are not carried over; only those named in the request are set.
  if (version.privilegedCreators && additionalCreators !== undefined) content.additional_creators = [...additionalCreators];
  return content;
}

/**
 * The new room's power levels. `final` is the old room's (levels as integers), without the creators when the new
 * version gives them unlimited power (v12: power levels may not list them). `initial`, sent first, raises the
 * upgrading user high enough to copy every state event and ban — as Synapse does — until `final` replaces it.
 */
function planPowerLevels(old: OldRoom, version: RoomVersion, userId: string, newCreators: ReadonlySet<string>): { initial: JsonObject; final: JsonObject } {
  const final = structuredClone(old.powerLevels!);
  const users: JsonObject = isJsonObject(final.users) ? final.users : {};
  final.users = users;
  if (old.head.version.privilegedCreators && !version.privilegedCreators) {
    // Downgrading from v12: the old creators' unlimited power can only be written as a level; 100 is the usual top.
    for (const c of roomCreators(old.head.version, old.create.event)) users[c] = Math.max(levelOf(users, c, 0), 100);
  }
  for (const c of newCreators) delete users[c];
  const initial = structuredClone(final);
  if (!newCreators.has(userId)) {
    const events = isJsonObject(initial.events) ? Object.values(initial.events).filter((v): v is number => typeof v === "number") : [];
    const needed = Math.max(levelOf(initial, "state_default", 50), levelOf(initial, "ban", 50), ...events, 0);
    const initialUsers = initial.users as JsonObject;
    if (levelOf(initialUsers, userId, levelOf(initial, "users_default", 0)) < needed) initialUsers[userId] = needed;
  }
  return { initial, final };
}

/**
 * A copy of power levels content with every level an integer, as Synapse's copy_and_fixup_power_levels_contents:
 * rooms before v10 accept "50"-style strings (and before v6 floats) which v10+ reject. Values that are no level at
 * all are dropped rather than failing the upgrade.
 */
export function integerPowerLevels(version: RoomVersion, content: JsonObject): JsonObject {
  const out: JsonObject = {};
  for (const [k, v] of Object.entries(content)) {
    if (isJsonObject(v)) {
      const inner: JsonObject = {};
      for (const [k1, v1] of Object.entries(v)) {
        const n = parsePowerLevelValue(version, v1);
        if (n !== null) inner[k1] = n;
      }
      out[k] = inner;
    } else {
      const n = parsePowerLevelValue(version, v);
      if (n !== null) out[k] = n;
    }
  }
  return out;
}

function levelOf(content: JsonObject, key: string, fallback: number): number {
  const v = content[key];
  return typeof v === "number" ? v : fallback;
}

function jsonEqual(a: JsonValue, b: JsonValue): boolean {
  const norm = (v: JsonValue): JsonValue => {
    if (Array.isArray(v)) return v.map(norm);
    if (isJsonObject(v)) return Object.fromEntries(Object.keys(v).sort().map((k) => [k, norm(v[k]!)]));
    return v;
  };
  return JSON.stringify(norm(a)) === JSON.stringify(norm(b));
}
