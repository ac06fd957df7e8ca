/**
 * Filters (spec "Filtering"; schemas `Filter`, `RoomFilter`, `EventFilter`, `RoomEventFilter`): what the client asked
 * /sync, /messages, /context and /search to leave out. Pure: parsing/validation, event matching, `event_fields`
 * projection and the few derived settings (limits, lazy-loading). No I/O; the HTTP layer maps `FilterError` to
 * 400 M_BAD_JSON (POST /user/{userId}/filter body) or M_INVALID_PARAM (inline `filter` query parameter).
 */
import { JsonSyntaxError, parseJson } from "../json/parse.js";

/** Spec `EventFilter`: used for `presence` and global `account_data`, and the base of `RoomEventFilter`. */
export interface EventFilter {
  limit?: number;
  types?: string[];
  not_types?: string[];
  senders?: string[];
  not_senders?: string[];
}

/** Spec `RoomEventFilter`: used for the `room` sections of a sync filter, and on its own by /messages and /context. */
export interface RoomEventFilter extends EventFilter {
  rooms?: string[];
  not_rooms?: string[];
  contains_url?: boolean;
  lazy_load_members?: boolean;
  include_redundant_members?: boolean;
  unread_thread_notifications?: boolean;
}

/** Spec `RoomFilter`. `rooms`/`not_rooms` here apply "before the filters in ephemeral, state, timeline or account_data". */
export interface RoomFilter {
  rooms?: string[];
  not_rooms?: string[];
  ephemeral?: RoomEventFilter;
  include_leave?: boolean;
  state?: RoomEventFilter;
  timeline?: RoomEventFilter;
  account_data?: RoomEventFilter;
}

/** Spec `Filter` (the body of POST /user/{userId}/filter, or the inline JSON of /sync's `filter` parameter). */
export interface FilterDefinition {
  event_fields?: string[];
  event_format?: "client" | "federation";
  presence?: EventFilter;
  account_data?: EventFilter;
  room?: RoomFilter;
}

/** The event shape the matchers need. `sender` is optional because ephemeral events (m.typing, m.receipt) have none. */
export interface FilterableEvent {
  type: string;
  sender?: string;
  room_id?: string;
  content?: Record<string, unknown>;
}

/** What an absent filter means: every field, client format, all rooms/types/senders, no left rooms, no lazy-loading. */
export const DEFAULT_FILTER: Readonly<FilterDefinition> = Object.freeze({});

/** Synapse's default `limit` for a filter section (notably the /sync timeline) when the client gives none. */
export const DEFAULT_TIMELINE_LIMIT = 10;
/** Cap on any client-supplied `limit` ("Servers should ... impose a maximum value to avoid resource exhaustion"). */
export const MAX_FILTER_LIMIT = 1000;

/** A filter that fails the spec schema. `path` names the offending field, e.g. `room.timeline.limit`. */
export class FilterError extends Error {
  constructor(
    readonly path: string,
    problem: string,
  ) {
    super(`Invalid filter: ${path} ${problem}`);
    this.name = "FilterError";
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Parsing. Unknown keys are ignored (forward compatibility, as Synapse's `additionalProperties: true`); the result
// holds only the known keys, so callers that must echo the filter back (GET /filter) should store the original JSON.

type JsonObject = Record<string, unknown>;

function isObject(v: unknown): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Parses a spec `Filter`. Throws FilterError naming the first field that doesn't match the schema. */
export function parseFilter(json: unknown): FilterDefinition {
  const obj = expectObject(json, "filter");
  const out: FilterDefinition = {};
  const fields = stringArray(obj, "event_fields", "");
  if (fields) out.event_fields = fields;
  if (obj.event_format !== undefined) {
    if (obj.event_format !== "client" && obj.event_format !== "federation") {
      throw new FilterError("event_format", 'must be "client" or "federation"');
    }
    out.event_format = obj.event_format;
  }
  if (obj.presence !== undefined) out.presence = eventFilter(expectObject(obj.presence, "presence"), "presence");
  if (obj.account_data !== undefined) out.account_data = eventFilter(expectObject(obj.account_data, "account_data"), "account_data");
  if (obj.room !== undefined) out.room = roomFilter(expectObject(obj.room, "room"));
  return out;
}

/** Parses a spec `RoomEventFilter` on its own, as /messages, /context and /search take it. */
export function parseRoomEventFilter(json: unknown): RoomEventFilter {
  return roomEventFilter(expectObject(json, "filter"), "");
}

/**
 * /sync's `filter` query parameter: "The server will detect whether it is an ID or a JSON object by whether the first
 * character is a `{` open brace." Inline JSON is parsed and validated here; an id is returned for the caller to load.
 */
export function parseSyncFilterParam(raw: string): { kind: "inline"; filter: FilterDefinition } | { kind: "id"; id: string } {
  if (!raw.startsWith("{")) return { kind: "id", id: raw };
  return { kind: "inline", filter: parseFilter(jsonParam(raw)) };
}

/** The `filter` query parameter of /messages and /context: always a JSON `RoomEventFilter`. */
export function parseRoomEventFilterParam(raw: string): RoomEventFilter {
  return parseRoomEventFilter(jsonParam(raw));
}

function jsonParam(raw: string): unknown {
  try {
    return parseJson(raw).value;
  } catch (e) {
    if (e instanceof JsonSyntaxError) throw new FilterError("filter", "is not valid JSON");
    throw e;
  }
}

function join(prefix: string, key: string): string {
  return prefix === "" ? key : `${prefix}.${key}`;
}

function expectObject(v: unknown, path: string): JsonObject {
  if (!isObject(v)) throw new FilterError(path, "must be an object");
  return v;
}

/** An optional array of strings; `prefix` is "@" for user ids, "!" for room ids (loose checks of the spec's `pattern`). */
function stringArray(obj: JsonObject, key: string, parent: string, prefix?: "@" | "!"): string[] | undefined {
  const v = obj[key];
  if (v === undefined) return undefined;
  const path = join(parent, key);
  if (!Array.isArray(v)) throw new FilterError(path, "must be an array of strings");
  for (const item of v) {
    if (typeof item !== "string") throw new FilterError(path, "must be an array of strings");
    if (prefix && !item.startsWith(prefix)) throw new FilterError(path, `must contain only ${prefix === "@" ? "user" : "room"} ids (got ${JSON.stringify(item)})`);
  }
  return [...(v as string[])];
}

function optionalBoolean(obj: JsonObject, key: string, parent: string): boolean | undefined {
  const v = obj[key];
  if (v !== undefined && typeof v !== "boolean") throw new FilterError(join(parent, key), "must be a boolean");
  return v as boolean | undefined;
}

function eventFilter(obj: JsonObject, path: string): EventFilter {
  const out: EventFilter = {};
  if (obj.limit !== undefined) {
    // The spec says "an integer greater than 0"; 0 is accepted too, as Synapse and ruma-based servers do (clients use it
    // to get state without timeline). Strings, floats and negatives are rejected; huge values are capped by effectiveLimit.
    const limit = obj.limit;
    if (typeof limit !== "number" || !Number.isInteger(limit) || limit < 0) {
      throw new FilterError(join(path, "limit"), "must be a non-negative integer");
    }
    out.limit = limit;
  }
  // `types`/`not_types` are free-form (globs); `senders`/`not_senders` must look like user ids ("pattern: ^@").
  for (const key of ["types", "not_types"] as const) {
    const v = stringArray(obj, key, path);
    if (v) out[key] = v;
  }
  for (const key of ["senders", "not_senders"] as const) {
    const v = stringArray(obj, key, path, "@");
    if (v) out[key] = v;
  }
  return out;
}

function roomEventFilter(obj: JsonObject, path: string): RoomEventFilter {
  const out: RoomEventFilter = eventFilter(obj, path);
  const rooms = stringArray(obj, "rooms", path, "!");
  if (rooms) out.rooms = rooms;
  const notRooms = stringArray(obj, "not_rooms", path, "!");
  if (notRooms) out.not_rooms = notRooms;
  for (const key of ["contains_url", "lazy_load_members", "include_redundant_members", "unread_thread_notifications"] as const) {
    const v = optionalBoolean(obj, key, path);
    if (v !== undefined) out[key] = v;
  }
  return out;
}

function roomFilter(obj: JsonObject): RoomFilter {
  const out: RoomFilter = {};
  const rooms = stringArray(obj, "rooms", "room", "!");
  if (rooms) out.rooms = rooms;
  const notRooms = stringArray(obj, "not_rooms", "room", "!");
  if (notRooms) out.not_rooms = notRooms;
  const includeLeave = optionalBoolean(obj, "include_leave", "room");
  if (includeLeave !== undefined) out.include_leave = includeLeave;
  for (const key of ["ephemeral", "state", "timeline", "account_data"] as const) {
    const path = `room.${key}`;
    if (obj[key] !== undefined) out[key] = roomEventFilter(expectObject(obj[key], path), path);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Matching.

/**
 * Glob match where only `*` is special ("A `*` can be used as a wildcard to match any sequence of characters"); every
 * other character, including regex metacharacters, is literal. No RegExp, so no escaping bugs and no backtracking:
 * with a single wildcard kind, matching each literal segment at its leftmost position is correct.
 */
export function globMatches(pattern: string, value: string): boolean {
  const parts = pattern.split("*");
  if (parts.length === 1) return pattern === value;
  const first = parts[0] ?? "";
  const last = parts[parts.length - 1] ?? "";
  if (value.length < first.length + last.length || !value.startsWith(first) || !value.endsWith(last)) return false;
  let pos = first.length;
  const end = value.length - last.length;
  for (const part of parts.slice(1, -1)) {
    const at = value.indexOf(part, pos);
    if (at < 0 || at + part.length > end) return false;
    pos = at + part.length;
  }
  return true;
}

/**
 * One include/exclude pair: "A matching [value] will be excluded even if it is listed in the [positive] filter"; an
 * absent positive list includes everything, an empty one includes nothing.
 */
function allowed(value: string | undefined, include: string[] | undefined, exclude: string[] | undefined, eq: (pattern: string, v: string) => boolean): boolean {
  if (exclude && value !== undefined && exclude.some((p) => eq(p, value))) return false;
  if (include === undefined) return true;
  return value !== undefined && include.some((p) => eq(p, value));
}

const exact = (a: string, b: string): boolean => a === b;

/** Whether `ev` passes an `EventFilter` or `RoomEventFilter` (an absent filter passes everything). */
export function matchesEventFilter(filter: EventFilter | RoomEventFilter | undefined, ev: FilterableEvent): boolean {
  if (!filter) return true;
  if (!allowed(ev.type, filter.types, filter.not_types, globMatches)) return false;
  if (!allowed(ev.sender, filter.senders, filter.not_senders, exact)) return false;
  const { rooms, not_rooms, contains_url: containsUrl } = filter as RoomEventFilter;
  if (!allowed(ev.room_id, rooms, not_rooms, exact)) return false;
  if (containsUrl !== undefined) {
    // "If true, includes only events with a url key in their content. If false, excludes those events." Like Synapse,
    // only a string `url` counts, so `{"url": 5}` is not an event "with a url".
    const hasUrl = typeof ev.content?.url === "string";
    if (hasUrl !== containsUrl) return false;
  }
  return true;
}

/** The top-level `room.rooms`/`room.not_rooms` check, applied before the per-section filters. */
export function roomIncluded(filter: FilterDefinition | undefined, roomId: string): boolean {
  const room = filter?.room;
  return allowed(roomId, room?.rooms, room?.not_rooms, exact);
}

/** True when a section can match nothing (`types: []` or `senders: []`), so the caller may skip loading it at all. */
export function filtersAll(filter: EventFilter | RoomEventFilter | undefined): boolean {
  if (!filter) return false;
  const rooms = (filter as RoomEventFilter).rooms;
  return filter.types?.length === 0 || filter.senders?.length === 0 || rooms?.length === 0 || (filter.not_types?.includes("*") ?? false);
}

// ---------------------------------------------------------------------------------------------------------------
// Derived settings.

/** The section's `limit`, or `def` when absent, never above `max`. */
export function effectiveLimit(filter: EventFilter | undefined, def: number, max: number): number {
  return Math.min(filter?.limit ?? def, max);
}

export function timelineLimit(filter: FilterDefinition | undefined, def = DEFAULT_TIMELINE_LIMIT, max = MAX_FILTER_LIMIT): number {
  return effectiveLimit(filter?.room?.timeline, def, max);
}

export function includeLeave(filter: FilterDefinition | undefined): boolean {
  return filter?.room?.include_leave === true;
}

export function eventFormat(filter: FilterDefinition | undefined): "client" | "federation" {
  return filter?.event_format ?? "client";
}

/** Per-thread notification counts: read from the `timeline` section, where Synapse and matrix-js-sdk put it. */
export function unreadThreadNotifications(filter: FilterDefinition | undefined): boolean {
  return filter?.room?.timeline?.unread_thread_notifications === true;
}

export interface LazyLoadSettings {
  enabled: boolean;
  /** `include_redundant_members` "does not apply unless lazy_load_members is true", so this implies `enabled`. */
  includeRedundant: boolean;
}

/**
 * Lazy-loading for /sync: "Lazy-loading members is only supported on the `state` part of a RoomFilter for this
 * endpoint" (sync.yaml). Synapse reads it from `room.state` only too; a `lazy_load_members` on `room.timeline` is ignored.
 */
export function lazyLoadMembers(filter: FilterDefinition | undefined): LazyLoadSettings {
  return roomEventFilterLazyLoad(filter?.room?.state);
}

/** Lazy-loading for /messages and /context, whose `filter` is itself a RoomEventFilter. */
export function roomEventFilterLazyLoad(filter: RoomEventFilter | undefined): LazyLoadSettings {
  const enabled = filter?.lazy_load_members === true;
  return { enabled, includeRedundant: enabled && filter?.include_redundant_members === true };
}

// ---------------------------------------------------------------------------------------------------------------
// event_fields (appendices "Dot-separated property paths").

/**
 * Splits a dot-separated path. "Any literal dot or backslash found in a property name should be escaped with a
 * backslash"; "other escape sequences are left as-is, e.g. a `\x` would be treated as a literal backslash followed by 'x'".
 */
export function splitFieldPath(path: string): string[] {
  const out: string[] = [];
  let cur = "";
  for (let i = 0; i < path.length; i++) {
    const c = path[i];
    const next = path[i + 1];
    if (c === "\\" && (next === "\\" || next === ".")) {
      cur += next;
      i++;
    } else if (c === ".") {
      out.push(cur);
      cur = "";
    } else {
      cur += c;
    }
  }
  out.push(cur);
  return out;
}

/** Own-property write, so a key named `__proto__` becomes data rather than changing the prototype. */
function setOwn(obj: JsonObject, key: string, value: unknown): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

function copyPath(src: JsonObject, dst: JsonObject, path: string[]): void {
  // Find the value first: a path that doesn't resolve (a missing key, or a non-object on the way) copies nothing and
  // leaves no empty parents behind. Only objects are descended into, never arrays, as in Synapse.
  const parents: JsonObject[] = [];
  let cur: unknown = src;
  for (const key of path) {
    if (!isObject(cur) || !Object.hasOwn(cur, key)) return;
    parents.push(cur);
    cur = cur[key];
  }
  let out = dst;
  for (let i = 0; i < path.length - 1; i++) {
    const key = path[i] as string;
    const srcChild = (parents[i] as JsonObject)[key];
    const existing = Object.hasOwn(out, key) ? out[key] : undefined;
    if (existing === srcChild) return; // an ancestor was copied whole (e.g. "content" before "content.body")
    if (isObject(existing)) {
      out = existing;
    } else {
      const fresh: JsonObject = {};
      setOwn(out, key, fresh);
      out = fresh;
    }
  }
  setOwn(out, path[path.length - 1] as string, cur);
}

/**
 * Keeps only the listed `event_fields`. "If this list is absent then all fields are included"; an empty list is
 * treated the same (as Synapse does) since "a server may include more fields than were requested" and an event
 * with no fields at all is useless. Returns a new object for a non-empty list; leaf values are shared, not cloned.
 */
export function applyEventFields(event: Record<string, unknown>, fields: string[] | undefined): Record<string, unknown> {
  if (!fields || fields.length === 0) return event;
  const out: JsonObject = {};
  for (const field of fields) copyPath(event, out, splitFieldPath(field));
  return out;
}
