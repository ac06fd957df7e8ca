/**
 * Event format checks on receipt ("Checks performed on receipt of a PDU", step 1: "Is a valid event, otherwise it
 * is dropped"), per room version (the `pdu_v1`, `pdu_v3`, `pdu_v4`, `pdu_v6`, `pdu_v11`, `pdu_v12` schemas and
 * client-server "Size limits"). Only shape is checked here; signatures, hashes and auth rules come later.
 * Unknown top-level keys are allowed: they are covered by the content hash and removed by redaction.
 */
import { canonicalJson, MAX_SAFE_INT } from "../json/canonical.js";
import { isJsonObject, type JsonObject, type JsonValue } from "../json/types.js";
import { idDomain, isHistoricalUserId, isValidServerName } from "../ids/ids.js";
import type { RoomVersion } from "../rooms/versions.js";
import type { Event, PDU } from "./event.js";
import { computeEventId, roomIdForCreateEvent } from "./ids.js";

/** "The complete event MUST NOT be larger than 65536 bytes ... encoded as Canonical JSON." */
export const MAX_PDU_BYTES = 65536;
/** sender, room_id, event_id (their identifier grammars), state_key and type: 255 bytes each. */
export const MAX_KEY_BYTES = 255;
/** pdu schemas: prev_events "Must contain less than or equal to 20 events". */
export const MAX_PREV_EVENTS = 20;
/** pdu schemas: auth_events "Must contain less than or equal to 10 events". */
export const MAX_AUTH_EVENTS = 10;

export interface ParsePduOptions {
  /**
   * The JSON text this PDU was parsed from held numbers JSON.parse cannot represent faithfully (fractions,
   * exponents, integers beyond ±(2^53-1)): see parseJson's `hasNonCanonicalNumbers`. Such a PDU is rejected in
   * every room version: v6+ forbid them, and in v1–v5 the parsed value would no longer hash as the origin hashed it.
   */
  hasNonCanonicalNumbers?: boolean;
}

export type ParsePduResult = { ok: true; event: Event } | { ok: false; error: string };

class PduFormatError extends Error {}

function fail(message: string): never {
  throw new PduFormatError(message);
}

const bytes = (s: string): number => Buffer.byteLength(s, "utf8");

/**
 * Validates a received PDU for its room version and returns the normalised Event: the event id known (given in
 * v1/v2, the reference hash in v3+), prev/auth events as plain ids, `pdu` = the input without `unsigned`, and for
 * a v12 m.room.create the room id derived from its event id.
 */
export function parsePdu(version: RoomVersion, input: unknown, opts: ParsePduOptions = {}): ParsePduResult {
  try {
    return { ok: true, event: parse(version, input, opts) };
  } catch (e) {
    if (e instanceof PduFormatError) return { ok: false, error: e.message };
    throw e;
  }
}

function parse(version: RoomVersion, input: unknown, opts: ParsePduOptions): Event {
  if (!isJsonObject(input)) fail("PDU must be a JSON object");
  // `unsigned` is not covered by hashes or signatures and may be rewritten in transit: it is not part of the event.
  const { unsigned: _unsigned, ...pdu } = input;

  if (opts.hasNonCanonicalNumbers) {
    fail(
      version.strictCanonicalJson
        ? `room version ${version.id} requires canonical JSON: numbers must be integers in [-(2^53)+1, 2^53-1] without fraction or exponent`
        : `numbers with a fraction, exponent or beyond ±(2^53-1) cannot be hashed as the origin server did`,
    );
  }
  let text: string;
  try {
    text = canonicalJson(pdu);
  } catch (e) {
    fail(`PDU cannot be encoded as canonical JSON: ${(e as Error).message}`);
  }
  if (bytes(text) > MAX_PDU_BYTES) fail(`PDU is larger than ${MAX_PDU_BYTES} bytes of canonical JSON`);

  const type = pdu.type;
  if (typeof type !== "string") fail("type must be a string");
  if (bytes(type) > MAX_KEY_BYTES) fail(`type is longer than ${MAX_KEY_BYTES} bytes`);

  let stateKey: string | undefined;
  if (Object.hasOwn(pdu, "state_key")) {
    if (typeof pdu.state_key !== "string") fail("state_key must be a string when present");
    stateKey = pdu.state_key;
    if (bytes(stateKey) > MAX_KEY_BYTES) fail(`state_key is longer than ${MAX_KEY_BYTES} bytes`);
  }

  // Events "must accept user IDs with localparts consisting of any legal non-surrogate Unicode code points except
  // for `:` and NUL" (Historical User IDs); the 255-byte limit is part of that check.
  const sender = pdu.sender;
  if (typeof sender !== "string" || !isHistoricalUserId(sender)) fail("sender must be a user ID of at most 255 bytes");

  const content = pdu.content;
  if (!isJsonObject(content)) fail("content must be an object");

  const depth = pdu.depth;
  if (typeof depth !== "number" || !Number.isSafeInteger(depth) || depth < 0) {
    fail(`depth must be an integer in [0, ${MAX_SAFE_INT}]`);
  }
  const originServerTs = pdu.origin_server_ts;
  if (typeof originServerTs !== "number" || !Number.isSafeInteger(originServerTs)) {
    fail("origin_server_ts must be an integer");
  }

  const hashes = pdu.hashes;
  if (!isJsonObject(hashes) || typeof hashes.sha256 !== "string") fail("hashes.sha256 must be a string");
  checkSignatures(pdu.signatures);

  const isV12Create = version.roomIdIsCreateEventHash && type === "m.room.create";
  let roomId: string | undefined;
  if (isV12Create) {
    // pdu_v12: room_id is "Omitted from `m.room.create` events" (the room id is derived from this event's id).
    if (Object.hasOwn(pdu, "room_id")) fail(`an m.room.create event in room version ${version.id} must not have a room_id`);
  } else {
    const r = pdu.room_id;
    if (typeof r !== "string" || !r.startsWith("!")) fail("room_id must be a room ID");
    if (bytes(r) > MAX_KEY_BYTES) fail(`room_id is longer than ${MAX_KEY_BYTES} bytes`);
    roomId = r;
  }

  const prevEvents = eventRefs(version, pdu, "prev_events", MAX_PREV_EVENTS);
  const authEvents = eventRefs(version, pdu, "auth_events", MAX_AUTH_EVENTS);

  const redacts = redactsOf(version, pdu, type, content);

  // v8+ restricted joins name an authorising user whose server must have signed the event
  // (requiredSignatureServers): it has to be a user ID for that to mean anything.
  if (
    version.restrictedJoinRule &&
    type === "m.room.member" &&
    content.membership === "join" &&
    Object.hasOwn(content, "join_authorised_via_users_server")
  ) {
    const via = content.join_authorised_via_users_server;
    if (typeof via !== "string" || !isHistoricalUserId(via)) fail("content.join_authorised_via_users_server must be a user ID");
  }

  let eventId: string;
  if (version.eventIdFormat === "v1") {
    const id = pdu.event_id;
    if (typeof id !== "string" || !id.startsWith("$")) fail("event_id must be an event ID");
    if (bytes(id) > MAX_KEY_BYTES) fail(`event_id is longer than ${MAX_KEY_BYTES} bytes`);
    // "$opaque_id:domain": the domain's server must have signed the event, so it must be a server name.
    const domain = idDomain(id);
    if (domain === null || !isValidServerName(domain)) fail("event_id must end in :server_name");
    eventId = id;
  } else {
    // From v3 the id is the reference hash; a claimed id could only disagree with it (Synapse refuses these too).
    if (Object.hasOwn(pdu, "event_id")) fail(`event_id must not be present in room version ${version.id}`);
    eventId = computeEventId(version, pdu);
  }

  const event: Event = {
    event_id: eventId,
    room_id: roomId ?? roomIdForCreateEvent(eventId),
    type,
    ...(stateKey !== undefined ? { state_key: stateKey } : {}),
    sender,
    content,
    origin_server_ts: originServerTs,
    depth,
    prev_events: prevEvents,
    auth_events: authEvents,
    ...(redacts !== undefined ? { redacts } : {}),
    pdu,
  };
  return event;
}

function checkSignatures(sigs: JsonValue | undefined): void {
  if (!isJsonObject(sigs)) fail("signatures must be an object");
  for (const keys of Object.values(sigs)) {
    if (!isJsonObject(keys) || !Object.values(keys).every((s) => typeof s === "string")) {
      fail("signatures must map server names to objects of key id → signature string");
    }
  }
}

/** prev_events / auth_events: `[event_id, {"sha256": hash}]` pairs in v1/v2, event id strings from v3. */
function eventRefs(version: RoomVersion, pdu: PDU, field: "prev_events" | "auth_events", max: number): string[] {
  const refs = pdu[field];
  if (!Array.isArray(refs)) fail(`${field} must be an array`);
  if (refs.length > max) fail(`${field} must hold at most ${max} events`);
  return refs.map((ref, i): string => {
    let id: JsonValue | undefined = ref;
    if (version.eventIdFormat === "v1") {
      // The hash object is required, but its `sha256` is only type-checked: nothing verifies it, and old servers
      // could emit an empty one.
      const hash = Array.isArray(ref) && ref.length === 2 ? ref[1] : undefined;
      if (!Array.isArray(ref) || !isJsonObject(hash) || (Object.hasOwn(hash, "sha256") && typeof hash.sha256 !== "string")) {
        fail(`${field}[${i}] must be an [event_id, {"sha256": hash}] pair in room version ${version.id}`);
      }
      id = ref[0];
    }
    if (typeof id !== "string" || !id.startsWith("$") || bytes(id) > MAX_KEY_BYTES) {
      fail(`${field}[${i}] must be an event ID${version.eventIdFormat === "v1" ? "" : ` string in room version ${version.id}`}`);
    }
    return id;
  });
}

/**
 * The event an m.room.redaction redacts. v1–v10: the top-level `redacts` (typed as a string on any event that has
 * it). v11+: `content.redacts`; the pdu_v11 schema no longer has a top-level `redacts`, so one that is present (a
 * server may mirror it there for older clients) is an unknown key: allowed, hashed, redacted away, never used.
 */
function redactsOf(version: RoomVersion, pdu: PDU, type: string, content: JsonObject): string | undefined {
  if (!version.redactsInContent) {
    if (!Object.hasOwn(pdu, "redacts")) return undefined;
    if (typeof pdu.redacts !== "string") fail("redacts must be a string");
    return type === "m.room.redaction" ? pdu.redacts : undefined;
  }
  if (type !== "m.room.redaction" || !Object.hasOwn(content, "redacts")) return undefined;
  if (typeof content.redacts !== "string") fail("content.redacts must be a string");
  return content.redacts;
}
