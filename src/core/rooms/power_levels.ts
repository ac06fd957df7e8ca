/**
 * `m.room.power_levels` as the auth rules read it, per room version: value parsing (v1-v5 truncate floats, v1-v9
 * accept integer strings, v10+ integers only), defaults, the room creators' levels (v1-v11: 100 without a power
 * levels event; v12: infinite), and the "can user X do Y" questions the client API asks too.
 *
 * Malformed values are remembered per field rather than failing the whole event: the auth rules only reject when a
 * rule actually needs the malformed field (as Synapse and Ruma do), so junk in, say, `notifications` of an old v1
 * room does not block every message.
 */
import type { Event } from "../events/event.js";
import { isHistoricalUserId } from "../ids/ids.js";
import { isJsonObject, type JsonObject, type JsonValue } from "../json/types.js";
import type { RoomVersion } from "./versions.js";

export const POWER_LEVELS_TYPE = "m.room.power_levels";

/** The integer-valued top-level properties of the content (auth rule "For the properties users_default, …"). */
export const POWER_LEVEL_INT_FIELDS = [
  "users_default",
  "events_default",
  "state_default",
  "ban",
  "redact",
  "kick",
  "invite",
] as const;
export type PowerLevelIntField = (typeof POWER_LEVEL_INT_FIELDS)[number];

/**
 * Defaults from the m.room.power_levels schema. `state_default` is 50 whether or not the room has a power levels
 * event (the current schema says so; older spec text said 0 without one, but Synapse and Ruma use 50 throughout).
 */
export const POWER_LEVEL_DEFAULTS: Readonly<Record<PowerLevelIntField, number>> = {
  users_default: 0,
  events_default: 0,
  state_default: 50,
  ban: 50,
  redact: 50,
  kick: 50,
  invite: 0,
};

/** `notifications.room` defaults to 50; other notification keys have no default. */
export const DEFAULT_ROOM_NOTIFICATION_LEVEL = 50;

/** v1-v11: without a power levels event the creator has 100 (m.room.power_levels schema, `users_default` note). */
export const CREATOR_DEFAULT_LEVEL = 100;

/** Thrown when a rule needs a power levels value that does not parse for the room version. */
export class MalformedPowerLevelsError extends Error {}

const INTEGER_STRING = /^\s*[+-]?[0-9]+\s*$/;

/**
 * One power level value, or null when malformed for the room version:
 * - v10+ ("integer power levels"): a JSON integer only.
 * - v1-v9 ("values as strings"): also a base-10 integer string with optional sign and surrounding whitespace.
 * - v1-v5 ("values as floats", no strict canonical JSON): also a float, truncated toward zero.
 * Values must stay within the canonical JSON range ±(2**53-1), as Ruma enforces; larger ones are malformed.
 */
export function parsePowerLevelValue(version: RoomVersion, value: JsonValue | undefined): number | null {
  let n: number;
  if (typeof value === "number") {
    if (Number.isInteger(value)) n = value;
    else if (!version.integerPowerLevels && !version.strictCanonicalJson && Number.isFinite(value)) n = Math.trunc(value);
    else return null;
  } else if (typeof value === "string" && !version.integerPowerLevels) {
    if (!INTEGER_STRING.test(value)) return null;
    n = Number(value.trim());
  } else {
    return null;
  }
  if (!Number.isSafeInteger(n)) return null;
  return n === 0 ? 0 : n; // normalise -0
}

type ParsedMap = ReadonlyMap<string, number> | null | undefined; // undefined: absent; null: malformed

function parseLevelMap(version: RoomVersion, value: JsonValue | undefined, userKeys: boolean): ParsedMap {
  if (value === undefined) return undefined;
  if (!isJsonObject(value)) return null;
  const out = new Map<string, number>();
  for (const [k, v] of Object.entries(value)) {
    if (userKeys && !isHistoricalUserId(k)) return null;
    const n = parsePowerLevelValue(version, v);
    if (n === null) return null;
    out.set(k, n);
  }
  return out;
}

/** The parsed content of one m.room.power_levels event for one room version. */
export class PowerLevels {
  private readonly ints = new Map<PowerLevelIntField, number | null>();
  readonly #users: ParsedMap;
  readonly #events: ParsedMap;
  readonly #notifications: ParsedMap;

  constructor(
    readonly version: RoomVersion,
    readonly content: JsonObject,
  ) {
    for (const f of POWER_LEVEL_INT_FIELDS) {
      if (content[f] !== undefined) this.ints.set(f, parsePowerLevelValue(version, content[f]));
    }
    this.#users = parseLevelMap(version, content.users, true);
    this.#events = parseLevelMap(version, content.events, false);
    this.#notifications = parseLevelMap(version, content.notifications, false);
  }

  /** The value as written (undefined when absent). Throws MalformedPowerLevelsError when malformed. */
  explicit(field: PowerLevelIntField): number | undefined {
    const v = this.ints.get(field);
    if (v === null) throw new MalformedPowerLevelsError(`power levels "${field}" is malformed`);
    return v;
  }

  /** The value in force: as written, else the default. */
  get(field: PowerLevelIntField): number {
    return this.explicit(field) ?? POWER_LEVEL_DEFAULTS[field];
  }

  /** `users` as written (undefined when absent). Throws when malformed. */
  users(): ReadonlyMap<string, number> | undefined {
    return checked(this.#users, "users");
  }

  events(): ReadonlyMap<string, number> | undefined {
    return checked(this.#events, "events");
  }

  notifications(): ReadonlyMap<string, number> | undefined {
    return checked(this.#notifications, "notifications");
  }

  /** A user's level from this event alone (creators are handled by `userPowerLevel`). */
  userLevel(userId: string): number {
    return this.users()?.get(userId) ?? this.get("users_default");
  }

  /** The event type's *required power level* (auth rule "If the event type's required power level…"). */
  eventLevel(type: string, isState: boolean): number {
    return this.events()?.get(type) ?? this.get(isState ? "state_default" : "events_default");
  }

  notificationLevel(key: string): number | undefined {
    return this.notifications()?.get(key) ?? (key === "room" ? DEFAULT_ROOM_NOTIFICATION_LEVEL : undefined);
  }

  /**
   * Validation of a new power levels event's own content (auth rules 10.1-10.3 in v10+, 10.1 in v1-v9). Returns a
   * reason when invalid. In v1-v9 only `users` is named by the rules; the other properties are checked too because
   * the change rules that follow compare them, and a malformed value cannot be compared (Ruma does the same).
   * `notifications` is only compared from v6, so before that it is not validated.
   */
  validate(): string | null {
    for (const f of POWER_LEVEL_INT_FIELDS) {
      if (this.ints.get(f) === null) {
        return `"${f}" is not ${this.version.integerPowerLevels ? "an integer" : "a valid power level"}`;
      }
    }
    if (this.#events === null) return `"events" is not an object of power levels`;
    if (this.#notifications === null && (this.version.limitNotificationsPowerLevels || this.version.integerPowerLevels)) {
      return `"notifications" is not an object of power levels`;
    }
    if (this.#users === null) return `"users" is not an object mapping user ids to power levels`;
    return null;
  }
}

function checked(m: ParsedMap, name: string): ReadonlyMap<string, number> | undefined {
  if (m === null) throw new MalformedPowerLevelsError(`power levels "${name}" is malformed`);
  return m;
}

// Parsing depends only on these two flags, so events are cached per parse mode. WeakMap: no lifetime of its own.
const cache = new WeakMap<Event, Map<string, PowerLevels>>();

/** The parsed power levels of an m.room.power_levels event (cached per event object). */
export function powerLevelsOf(version: RoomVersion, event: Event): PowerLevels {
  const mode = `${version.integerPowerLevels ? 1 : 0}${version.strictCanonicalJson ? 1 : 0}`;
  let byMode = cache.get(event);
  if (!byMode) cache.set(event, (byMode = new Map()));
  let pl = byMode.get(mode);
  if (!pl) byMode.set(mode, (pl = new PowerLevels(version, event.content)));
  return pl;
}

/**
 * The user who created the room, per version: v1-v10 `content.creator` (undefined when missing or not a string),
 * v11+ the create event's sender.
 */
export function roomCreator(version: RoomVersion, createEvent: Event): string | undefined {
  if (!version.createHasCreatorField) return createEvent.sender;
  const c = createEvent.content.creator;
  return typeof c === "string" ? c : undefined;
}

/**
 * The room creators with privileged power (v12): the create event's sender plus `content.additional_creators`.
 * Entries of a malformed `additional_creators` are ignored here: the create event's own auth rule 1.4 rejects such
 * an event, so an accepted one never has them.
 */
export function roomCreators(version: RoomVersion, createEvent: Event): ReadonlySet<string> {
  const out = new Set<string>();
  const creator = roomCreator(version, createEvent);
  if (creator !== undefined) out.add(creator);
  if (version.privilegedCreators) {
    const extra = createEvent.content.additional_creators;
    if (Array.isArray(extra)) for (const u of extra) if (typeof u === "string") out.add(u);
  }
  return out;
}

/**
 * A user's power level. v12: room creators have infinite power (`Infinity`), with or without a power levels event.
 * v1-v11 without a power levels event: the creator has 100, everyone else 0. Throws MalformedPowerLevelsError when
 * the needed values are malformed.
 */
export function userPowerLevel(
  version: RoomVersion,
  createEvent: Event | undefined,
  powerLevelsEvent: Event | undefined,
  userId: string,
): number {
  if (version.privilegedCreators && createEvent && roomCreators(version, createEvent).has(userId)) return Infinity;
  if (powerLevelsEvent) return powerLevelsOf(version, powerLevelsEvent).userLevel(userId);
  if (createEvent && roomCreator(version, createEvent) === userId) return CREATOR_DEFAULT_LEVEL;
  return POWER_LEVEL_DEFAULTS.users_default;
}

/** The level required to send an event of this type (state or not). Throws when malformed. */
export function eventSendLevel(
  version: RoomVersion,
  powerLevelsEvent: Event | undefined,
  type: string,
  isState: boolean,
): number {
  if (!powerLevelsEvent) return isState ? POWER_LEVEL_DEFAULTS.state_default : POWER_LEVEL_DEFAULTS.events_default;
  return powerLevelsOf(version, powerLevelsEvent).eventLevel(type, isState);
}

/** A named level (`ban`, `kick`, `invite`, `redact`, …) in force. Throws when malformed. */
export function namedLevel(version: RoomVersion, powerLevelsEvent: Event | undefined, field: PowerLevelIntField): number {
  return powerLevelsEvent ? powerLevelsOf(version, powerLevelsEvent).get(field) : POWER_LEVEL_DEFAULTS[field];
}

/** The level required to trigger a notification key such as `room` (undefined: the key has no level). */
export function notificationLevel(version: RoomVersion, powerLevelsEvent: Event | undefined, key: string): number | undefined {
  if (!powerLevelsEvent) return key === "room" ? DEFAULT_ROOM_NOTIFICATION_LEVEL : undefined;
  return powerLevelsOf(version, powerLevelsEvent).notificationLevel(key);
}

/** The room's create and power levels events: what every "can user X do Y" question needs. */
export interface PowerContext {
  readonly version: RoomVersion;
  readonly create: Event | undefined;
  readonly powerLevels: Event | undefined;
}

/** Runs a check that reads power levels; malformed values answer "no" (the auth rules would reject too). */
function safely(f: () => boolean): boolean {
  try {
    return f();
  } catch (e) {
    if (e instanceof MalformedPowerLevelsError) return false;
    throw e;
  }
}

function level(ctx: PowerContext, userId: string): number {
  return userPowerLevel(ctx.version, ctx.create, ctx.powerLevels, userId);
}

/** Power-wise only: membership and other rules are the auth rules' business. */
export function canSendEvent(ctx: PowerContext, userId: string, type: string, isState: boolean): boolean {
  return safely(() => level(ctx, userId) >= eventSendLevel(ctx.version, ctx.powerLevels, type, isState));
}

export function canInvite(ctx: PowerContext, userId: string): boolean {
  return safely(() => level(ctx, userId) >= namedLevel(ctx.version, ctx.powerLevels, "invite"));
}

/** Kick: at least the kick level and strictly above the target. */
export function canKick(ctx: PowerContext, userId: string, targetId: string): boolean {
  return safely(() => {
    const mine = level(ctx, userId);
    return mine >= namedLevel(ctx.version, ctx.powerLevels, "kick") && level(ctx, targetId) < mine;
  });
}

/** Ban: at least the ban level and strictly above the target. */
export function canBan(ctx: PowerContext, userId: string, targetId: string): boolean {
  return safely(() => {
    const mine = level(ctx, userId);
    return mine >= namedLevel(ctx.version, ctx.powerLevels, "ban") && level(ctx, targetId) < mine;
  });
}

/** Unban: the auth rules require the ban level and the kick rule (kick level, above the target). */
export function canUnban(ctx: PowerContext, userId: string, targetId: string): boolean {
  return safely(() => level(ctx, userId) >= namedLevel(ctx.version, ctx.powerLevels, "ban")) && canKick(ctx, userId, targetId);
}

/** Redacting someone else's event needs the redact level (on top of being allowed to send m.room.redaction). */
export function canRedactOthers(ctx: PowerContext, userId: string): boolean {
  return safely(() => level(ctx, userId) >= namedLevel(ctx.version, ctx.powerLevels, "redact"));
}

/** e.g. key "room" for @room mentions. */
export function canNotify(ctx: PowerContext, userId: string, key: string): boolean {
  return safely(() => {
    const required = notificationLevel(ctx.version, ctx.powerLevels, key);
    return required !== undefined && level(ctx, userId) >= required;
  });
}
