/**
 * The Sliding Sync request (MSC4186 as clients speak it today, Synapse's shape): lists with `ranges`, room configs
 * (`timeline_limit`, `required_state` as [type, state_key] pairs with `*`, `$LAZY`, `$ME`), filters, room
 * subscriptions and extensions, validated into typed configs. The newer MSC shapes (`range`, `required_state`
 * as {include, exclude, lazy_members}, `is_invited`) are read too.
 *
 * List and extension settings are sticky per connection (as the MSC3575 proxy, which matrix-js-sdk relies on): a
 * list sent with only its ranges keeps its other settings, and an extension field left out keeps its value.
 */
import { MatrixError } from "../../errors.js";
import { isJsonObject, type JsonObject, type JsonValue } from "../../core/json/types.js";

export const MAX_LISTS = 100;
export const MAX_SUBSCRIPTIONS = 100;
const MAX_RANGES = 100;
/** The server caps timeline_limit (the MSC allows it). */
export const MAX_TIMELINE_LIMIT = 100;
const MAX_REQUIRED_STATE = 1000;
const MAX_TO_DEVICE_LIMIT = 1000;

/** Which state a room config asks for. Pairs are [type, state_key]; "*" matches anything. */
export interface StateSpec {
  include: [string, string][];
  exclude: [string, string][];
  /** `$LAZY`: the members of timeline senders. */
  lazy: boolean;
}

export interface RoomConfig {
  timelineLimit: number;
  requiredState: StateSpec;
}

export interface ListFilters {
  isDm?: boolean;
  isEncrypted?: boolean;
  isInvite?: boolean;
  roomTypes?: (string | null)[];
  notRoomTypes?: (string | null)[];
  spaces?: string[];
  tags?: string[];
  notTags?: string[];
  /** Lower-cased; the room's m.room.name (or the invite's stripped one) must contain it. */
  roomNameLike?: string;
}

export interface ListConfig extends RoomConfig {
  /** Inclusive index ranges; undefined: the whole list. */
  ranges: [number, number][] | undefined;
  filters: ListFilters;
}

/** Which rooms an extension covers: undefined is "*" (all lists, all subscriptions). */
export interface ExtensionScope {
  lists?: string[];
  rooms?: string[];
}

export interface Extensions {
  toDevice?: { since?: number; limit: number };
  e2ee?: true;
  accountData?: ExtensionScope;
  receipts?: ExtensionScope;
  typing?: ExtensionScope;
}

export interface SlidingRequest {
  connId: string;
  lists: Map<string, ListConfig>;
  subscriptions: Map<string, RoomConfig>;
  extensions: Extensions;
  /** What the next request inherits (lists and extensions as merged). */
  sticky: JsonObject;
}

const bad = (msg: string) => new MatrixError(400, "M_BAD_JSON", msg);
const invalid = (msg: string) => new MatrixError(400, "M_INVALID_PARAM", msg);

/** Validates a request body, merged over the previous request's sticky settings. */
export function parseSlidingRequest(body: unknown, userId: string, previous: JsonObject | undefined): SlidingRequest {
  if (!isJsonObject(body)) throw bad("The body must be a JSON object");
  const connId = body.conn_id ?? "";
  if (typeof connId !== "string") throw bad("conn_id must be a string");
  if (connId.length > 255) throw invalid("conn_id is too long");

  const listsIn = optObject(body.lists, "lists") ?? {};
  const prevLists = isJsonObject(previous?.lists) ? previous.lists : {};
  if (Object.keys(listsIn).length > MAX_LISTS) throw invalid(`At most ${MAX_LISTS} lists`);
  const stickyLists: JsonObject = {};
  const lists = new Map<string, ListConfig>();
  for (const [name, raw] of Object.entries(listsIn)) {
    if (!isJsonObject(raw)) throw bad(`lists.${name} must be an object`);
    if (name.length === 0 || name.length > 255) throw invalid("List names must be 1 to 255 characters");
    // A list of only ranges (matrix-js-sdk's form once a list was sent) keeps its other settings; a list with any of
    // them is complete as sent (Element X sends everything each time, and a filter left out is gone).
    const prev = prevLists[name];
    const rangesOnly = Object.keys(raw).every((k) => k === "ranges" || k === "range");
    const merged: JsonObject = rangesOnly && isJsonObject(prev) ? { ...prev, ...raw } : raw;
    if (raw.ranges === undefined && raw.range === undefined) {
      delete merged.ranges;
      delete merged.range;
    }
    stickyLists[name] = merged;
    lists.set(name, parseList(merged, `lists.${name}`, userId));
  }

  const subsIn = optObject(body.room_subscriptions, "room_subscriptions") ?? {};
  if (Object.keys(subsIn).length > MAX_SUBSCRIPTIONS) throw invalid(`At most ${MAX_SUBSCRIPTIONS} room subscriptions`);
  const unsubscribe = new Set(optStrings(body.unsubscribe_rooms, "unsubscribe_rooms") ?? []);
  const subscriptions = new Map<string, RoomConfig>();
  for (const [roomId, raw] of Object.entries(subsIn)) {
    if (!isJsonObject(raw)) throw bad(`room_subscriptions.${roomId} must be an object`);
    if (!roomId.startsWith("!")) throw invalid(`Not a room id: ${roomId}`);
    if (!unsubscribe.has(roomId)) subscriptions.set(roomId, parseRoomConfig(raw, `room_subscriptions.${roomId}`, userId));
  }

  const extIn = optObject(body.extensions, "extensions") ?? {};
  const prevExt = isJsonObject(previous?.extensions) ? previous.extensions : {};
  const stickyExt: JsonObject = {};
  for (const name of new Set([...Object.keys(prevExt), ...Object.keys(extIn)])) {
    const raw = extIn[name];
    if (raw !== undefined && !isJsonObject(raw)) throw bad(`extensions.${name} must be an object`);
    const prev = prevExt[name];
    const merged: JsonObject = { ...(isJsonObject(prev) ? prev : {}), ...(raw ?? {}) };
    // to_device's `since` belongs to one request.
    if (name === "to_device" && raw?.since === undefined) delete merged.since;
    stickyExt[name] = merged;
  }
  return { connId, lists, subscriptions, extensions: parseExtensions(stickyExt), sticky: { lists: stickyLists, extensions: stickyExt } };
}

function parseList(raw: JsonObject, at: string, userId: string): ListConfig {
  const room = parseRoomConfig(raw, at, userId);
  let ranges: [number, number][] | undefined;
  if (raw.ranges !== undefined) {
    if (!Array.isArray(raw.ranges)) throw bad(`${at}.ranges must be an array`);
    if (raw.ranges.length > MAX_RANGES) throw invalid(`${at}.ranges: at most ${MAX_RANGES} ranges`);
    ranges = raw.ranges.map((r, i) => parseRange(r, `${at}.ranges[${i}]`));
  } else if (raw.range !== undefined) {
    ranges = [parseRange(raw.range, `${at}.range`)];
  }
  return { ...room, ranges, filters: parseFilters(raw.filters, `${at}.filters`) };
}

function parseRange(r: JsonValue | undefined, at: string): [number, number] {
  if (!Array.isArray(r) || r.length !== 2 || typeof r[0] !== "number" || typeof r[1] !== "number") throw bad(`${at} must be a pair of integers`);
  const [a, b] = r as [number, number];
  if (!Number.isSafeInteger(a) || !Number.isSafeInteger(b)) throw invalid(`${at} must hold integers below 2^53`);
  if (a < 0 || b < 0) throw invalid(`${at} must not be negative`);
  if (a > b) throw invalid(`${at}: the start is after the end`);
  return [a, b];
}

function parseRoomConfig(raw: JsonObject, at: string, userId: string): RoomConfig {
  const limit = raw.timeline_limit ?? 0;
  if (typeof limit !== "number" || !Number.isInteger(limit)) throw bad(`${at}.timeline_limit must be an integer`);
  if (limit < 0) throw invalid(`${at}.timeline_limit must not be negative`);
  return { timelineLimit: Math.min(limit, MAX_TIMELINE_LIMIT), requiredState: parseRequiredState(raw.required_state, `${at}.required_state`, userId) };
}

function parseRequiredState(raw: JsonValue | undefined, at: string, userId: string): StateSpec {
  const spec: StateSpec = { include: [], exclude: [], lazy: false };
  if (raw === undefined || raw === null) return spec;
  const me = (k: string) => (k === "$ME" ? userId : k);
  if (Array.isArray(raw)) {
    if (raw.length > MAX_REQUIRED_STATE) throw invalid(`${at}: too many entries`);
    for (const [i, pair] of raw.entries()) {
      if (!Array.isArray(pair) || pair.length !== 2 || typeof pair[0] !== "string" || typeof pair[1] !== "string") throw bad(`${at}[${i}] must be a [type, state_key] pair of strings`);
      const [type, key] = pair as [string, string];
      if (key === "$LAZY") {
        if (type === "m.room.member") spec.lazy = true;
      } else spec.include.push([type, me(key)]);
    }
    return spec;
  }
  // The MSC's newer shape.
  if (!isJsonObject(raw)) throw bad(`${at} must be an array of [type, state_key] pairs`);
  const elements = (v: JsonValue | undefined, where: string): [string, string][] => {
    if (v === undefined) return [];
    if (!Array.isArray(v)) throw bad(`${where} must be an array`);
    if (v.length > MAX_REQUIRED_STATE) throw invalid(`${where}: too many entries`);
    return v.map((el, i) => {
      if (!isJsonObject(el)) throw bad(`${where}[${i}] must be an object`);
      const type = el.type ?? "*";
      const key = el.state_key ?? "*";
      if (typeof type !== "string" || typeof key !== "string") throw bad(`${where}[${i}]: type and state_key must be strings`);
      return [type, me(key)];
    });
  };
  spec.include = elements(raw.include, `${at}.include`);
  spec.exclude = elements(raw.exclude, `${at}.exclude`);
  if (raw.lazy_members !== undefined && typeof raw.lazy_members !== "boolean") throw bad(`${at}.lazy_members must be a boolean`);
  spec.lazy = raw.lazy_members === true;
  return spec;
}

function parseFilters(raw: JsonValue | undefined, at: string): ListFilters {
  if (raw === undefined || raw === null) return {};
  if (!isJsonObject(raw)) throw bad(`${at} must be an object`);
  const bool = (k: string): boolean | undefined => {
    const v = raw[k];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== "boolean") throw bad(`${at}.${k} must be a boolean`);
    return v;
  };
  const types = (k: string): (string | null)[] | undefined => {
    const v = raw[k];
    if (v === undefined || v === null) return undefined;
    if (!Array.isArray(v) || v.some((t) => t !== null && typeof t !== "string")) throw bad(`${at}.${k} must be an array of strings or nulls`);
    return v as (string | null)[];
  };
  return {
    isDm: bool("is_dm"),
    isEncrypted: bool("is_encrypted"),
    isInvite: bool("is_invite") ?? bool("is_invited"),
    roomTypes: types("room_types"),
    notRoomTypes: types("not_room_types"),
    spaces: optStrings(raw.spaces, `${at}.spaces`),
    tags: optStrings(raw.tags, `${at}.tags`),
    notTags: optStrings(raw.not_tags, `${at}.not_tags`),
    roomNameLike: roomNameLike(raw.room_name_like, `${at}.room_name_like`),
  };
}

/** MSC3575's `room_name_like`: a case-insensitive substring of the room's name, kept lower-cased. */
function roomNameLike(v: unknown, at: string): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string" || v.length > 255) throw bad(`${at} must be a string of at most 255 characters`);
  return v.toLowerCase();
}

function parseExtensions(ext: JsonObject): Extensions {
  const out: Extensions = {};
  const enabled = (name: string): JsonObject | undefined => {
    const e = ext[name];
    if (!isJsonObject(e)) return undefined;
    if (e.enabled !== undefined && typeof e.enabled !== "boolean") throw bad(`extensions.${name}.enabled must be a boolean`);
    return e.enabled === true ? e : undefined;
  };
  const scope = (e: JsonObject, name: string): ExtensionScope => ({ lists: starOr(optStrings(e.lists, `extensions.${name}.lists`)), rooms: starOr(optStrings(e.rooms, `extensions.${name}.rooms`)) });
  const td = enabled("to_device");
  if (td) {
    let since: number | undefined;
    if (td.since !== undefined && td.since !== null) {
      if (typeof td.since !== "string" || !/^\d{1,15}$/.test(td.since)) throw invalid("extensions.to_device.since must be a token this server gave");
      since = Number(td.since);
    }
    const limit = td.limit ?? 100;
    if (typeof limit !== "number" || !Number.isInteger(limit) || limit < 1) throw invalid("extensions.to_device.limit must be a positive integer");
    out.toDevice = { since, limit: Math.min(limit, MAX_TO_DEVICE_LIMIT) };
  }
  if (enabled("e2ee")) out.e2ee = true;
  const ad = enabled("account_data");
  if (ad) out.accountData = scope(ad, "account_data");
  const rc = enabled("receipts");
  if (rc) out.receipts = scope(rc, "receipts");
  const ty = enabled("typing");
  if (ty) out.typing = scope(ty, "typing");
  return out;
}

/** ["*"] (or nothing) means everything. */
function starOr(v: string[] | undefined): string[] | undefined {
  return v === undefined || v.includes("*") ? undefined : v;
}

function optObject(v: JsonValue | undefined, at: string): JsonObject | undefined {
  if (v === undefined || v === null) return undefined;
  if (!isJsonObject(v)) throw bad(`${at} must be an object`);
  return v;
}

function optStrings(v: JsonValue | undefined, at: string): string[] | undefined {
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v) || v.some((s) => typeof s !== "string")) throw bad(`${at} must be an array of strings`);
  return v as string[];
}

// ---- Combining and matching room configs ----------------------------------------------------------------------

/** The superset of two room configs (MSC4186 "Combining room configs"). */
export function combineConfigs(a: RoomConfig, b: RoomConfig): RoomConfig {
  return {
    timelineLimit: Math.max(a.timelineLimit, b.timelineLimit),
    requiredState: {
      include: [...a.requiredState.include, ...b.requiredState.include],
      // An exclusion holds only where both exclude (each config's own include is already filtered by it).
      exclude: a.requiredState.exclude.filter(([t, k]) => b.requiredState.exclude.some(([t2, k2]) => t === t2 && k === k2)),
      lazy: a.requiredState.lazy || b.requiredState.lazy,
    },
  };
}

const pairMatches = ([t, k]: [string, string], type: string, key: string) => (t === "*" || t === type) && (k === "*" || k === key);

/** Whether a state entry is asked for (explicitly; lazy members are decided from the timeline). */
export function stateWanted(spec: StateSpec, type: string, key: string): boolean {
  return spec.include.some((p) => pairMatches(p, type, key)) && !spec.exclude.some((p) => pairMatches(p, type, key));
}
