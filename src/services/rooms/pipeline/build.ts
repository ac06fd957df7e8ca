/**
 * Stage 1 of a local event, "build": the PDU on the room's forward extremities, with auth events from current state
 * and the next depth, then hashed and signed. Also builds the templates other servers' users sign (make_join…).
 */
import { authEventTypesFor } from "../../../core/events/auth_events.js";
import { stateMapKey, type Event, type StateMap } from "../../../core/events/event.js";
import { MAX_KEY_BYTES, MAX_PDU_BYTES } from "../../../core/events/format.js";
import { computeReferenceHash } from "../../../core/events/hashes.js";
import { generateLocalEventId, generateRoomId, roomIdForCreateEvent } from "../../../core/events/ids.js";
import { signNewEvent, type SignedNewEvent } from "../../../core/events/signing.js";
import type { SigningKey } from "../../../core/crypto/ed25519.js";
import { encodeBase64 } from "../../../core/json/base64.js";
import type { JsonObject, JsonValue } from "../../../core/json/types.js";
import type { RoomVersion } from "../../../core/rooms/versions.js";
import { MatrixError } from "../../../errors.js";
import { trustedEvent, type EventCache } from "../event_cache.js";

/** The room as its writer sees it: current state and the DAG's forward extremities. */
export interface RoomHead {
  readonly roomId: string;
  readonly version: RoomVersion;
  stateGroup: number;
  state: StateMap;
  extremities: string[];
  maxDepth: number;
}

/** What a client asks to send; the builder fills in everything else. */
export interface EventDraft {
  type: string;
  state_key?: string;
  content: JsonObject;
  sender: string;
  redacts?: string;
}

/** At most this many forward extremities become an event's prev_events. */
const MAX_PREV_EVENTS = 10;
const MAX_DEPTH = Number.MAX_SAFE_INTEGER;

export class EventBuilder {
  constructor(
    private readonly serverName: string,
    private readonly signingKey: SigningKey,
    private readonly events: EventCache,
  ) {}

  /**
   * A room's m.room.create event (v12: the room id is the event's hash; earlier versions: `roomId` when the caller
   * chose it beforehand, else a random id here).
   */
  private lastCreateTs = 0;

  createEvent(version: RoomVersion, creator: string, content: JsonObject, roomId?: string): { roomId: string; event: Event } {
    const pdu: JsonObject = {
      auth_events: [],
      prev_events: [],
      type: "m.room.create",
      state_key: "",
      sender: creator,
      content,
      depth: 1,
      // v12 room ids are the create event's hash: two rooms created by one user with the same content in the same
      // millisecond would get one id. Create events from this server get strictly increasing timestamps.
      origin_server_ts: version.roomIdIsCreateEventHash ? (this.lastCreateTs = Math.max(Date.now(), this.lastCreateTs + 1)) : Date.now(),
      hashes: {},
    };
    if (!version.roomIdIsCreateEventHash) pdu.room_id = roomId ?? generateRoomId(this.serverName);
    if (version.legacyOriginField) pdu.origin = this.serverName;
    if (version.eventIdFormat === "v1") pdu.event_id = generateLocalEventId(this.serverName);
    const event = this.signAndParse(version, pdu);
    return { roomId: event.room_id, event };
  }

  /** A new event on the room's head, hashed and signed. */
  async build(head: RoomHead, draft: EventDraft): Promise<Event> {
    const pdu = await this.unsignedPdu(head, draft);
    if (head.version.eventIdFormat === "v1") pdu.event_id = generateLocalEventId(this.serverName);
    return this.signAndParse(head.version, pdu);
  }

  /** The PDU of a new event on the room's head, before hashes and signatures (also a make_join template). */
  async unsignedPdu(head: RoomHead, draft: EventDraft): Promise<JsonObject> {
    const version = head.version;
    const authIds = authEventTypesFor(version, draft)
      .map(([t, k]) => head.state.get(stateMapKey(t, k)))
      .filter((x): x is string => x !== undefined);
    const prevIds = head.extremities.slice(-MAX_PREV_EVENTS);
    const pdu: JsonObject = {
      auth_events: authIds,
      prev_events: prevIds,
      type: draft.type,
      room_id: head.roomId,
      sender: draft.sender,
      content: draft.content,
      depth: Math.min(head.maxDepth + 1, MAX_DEPTH),
      origin_server_ts: Date.now(),
      hashes: {},
    };
    if (draft.state_key !== undefined) pdu.state_key = draft.state_key;
    // A make_join template names us here; the joining server replaces it with its own name.
    if (version.legacyOriginField) pdu.origin = this.serverName;
    if (draft.redacts !== undefined) {
      if (version.redactsInContent) pdu.content = { ...draft.content, redacts: draft.redacts };
      else pdu.redacts = draft.redacts;
    }
    if (version.eventIdFormat === "v1") {
      // Rooms v1/v2 reference events as [event_id, {sha256: reference hash}] and carry their own event id.
      const refs = await this.events.getMany([...authIds, ...prevIds]);
      const withHash = (id: string): JsonValue => {
        const e = refs.get(id);
        const hashes: JsonObject = e ? { sha256: encodeBase64(computeReferenceHash(version, e.event.pdu)) } : {};
        return [id, hashes];
      };
      pdu.auth_events = authIds.map(withHash);
      pdu.prev_events = prevIds.map(withHash);
    }
    return pdu;
  }

  /**
   * Hashes and signs a PDU this server built and returns its core view. Local PDUs are well-formed by construction;
   * what a client controls (type, state_key, content) is checked here against the spec's limits.
   */
  private signAndParse(version: RoomVersion, pdu: JsonObject): Event {
    for (const [field, value] of [["type", pdu.type], ["state_key", pdu.state_key], ["redacts", pdu.redacts]] as const) {
      if (typeof value === "string" && Buffer.byteLength(value) > MAX_KEY_BYTES) throw new MatrixError(400, "M_BAD_JSON", `'${field}' is longer than ${MAX_KEY_BYTES} bytes`);
    }
    let signed: SignedNewEvent;
    try {
      signed = signNewEvent(version, pdu, this.serverName, this.signingKey);
    } catch (e) {
      throw new MatrixError(400, "M_BAD_JSON", `Event cannot be encoded as canonical JSON: ${(e as Error).message}`);
    }
    if (signed.size > MAX_PDU_BYTES) throw new MatrixError(413, "M_TOO_LARGE", `Event is larger than ${MAX_PDU_BYTES} bytes`);
    const roomId = typeof pdu.room_id === "string" ? pdu.room_id : roomIdForCreateEvent(signed.eventId);
    return trustedEvent(signed.eventId, roomId, signed.pdu);
  }
}
