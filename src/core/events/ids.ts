/**
 * Event ids and room ids (rooms' "Event IDs" sections, appendix "Room IDs"). Rooms v1/v2 carry an `event_id` chosen
 * by the origin server; v3 derives it from the reference hash in standard base64, v4+ in URL-safe base64.
 * Room version 12 derives the room id from the create event's id.
 */
import { randomBytes } from "node:crypto";
import { encodeBase64, encodeBase64Url } from "../json/base64.js";
import { isValidServerName } from "../ids/ids.js";
import type { RoomVersion } from "../rooms/versions.js";
import type { PDU } from "./event.js";
import { computeReferenceHash } from "./hashes.js";

/** The id of an event in a room version whose ids are reference hashes (v3+). The PDU must not carry an `event_id`
 * key (redaction keeps it, so it would be hashed; parsePdu rejects such PDUs). Throws for v1/v2, whose ids are not
 * derived, and CanonicalJsonError when the event cannot be encoded. */
export function computeEventId(version: RoomVersion, pdu: PDU): string {
  switch (version.eventIdFormat) {
    case "v3":
      return "$" + encodeBase64(computeReferenceHash(version, pdu));
    case "v4":
      return "$" + encodeBase64Url(computeReferenceHash(version, pdu));
    case "v1":
      throw new Error(`room version ${version.id} event ids are chosen by the origin server, not derived`);
  }
}

/** The event's id: the `event_id` field in v1/v2, the derived id otherwise. Throws when a v1/v2 PDU has none. */
export function eventIdOf(version: RoomVersion, pdu: PDU): string {
  if (version.eventIdFormat !== "v1") return computeEventId(version, pdu);
  if (typeof pdu.event_id !== "string") throw new Error(`room version ${version.id} PDU has no event_id`);
  return pdu.event_id;
}

/** Room version 12: the room id is the create event's id "with the sigil `!` instead of `$`". */
export function roomIdForCreateEvent(createEventId: string): string {
  if (!createEventId.startsWith("$")) throw new Error(`not an event id: ${createEventId}`);
  return "!" + createEventId.slice(1);
}

const LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const ALPHANUMERIC = LETTERS + "0123456789";

/** `length` characters drawn uniformly from `alphabet` (rejection sampling, so no modulo bias). */
function randomString(alphabet: string, length: number): string {
  const limit = 256 - (256 % alphabet.length);
  let out = "";
  while (out.length < length) {
    for (const b of randomBytes(length * 2)) {
      if (b < limit) out += alphabet[b % alphabet.length];
      if (out.length === length) break;
    }
  }
  return out;
}

function checkServerName(serverName: string): void {
  if (!isValidServerName(serverName)) throw new Error(`invalid server name: ${serverName}`);
}

/** A new event id for room versions 1 and 2, `$opaque_id:domain` (24 random alphanumerics, ~143 bits). */
export function generateLocalEventId(serverName: string): string {
  checkServerName(serverName);
  return `$${randomString(ALPHANUMERIC, 24)}:${serverName}`;
}

/** A new room id for room versions 1–11, `!opaque_id:domain`; the localpart "SHOULD only consist of alphanumeric
 * characters", and 18 letters is Synapse's form. Room version 12 uses roomIdForCreateEvent instead. */
export function generateRoomId(serverName: string): string {
  checkServerName(serverName);
  return `!${randomString(LETTERS, 18)}:${serverName}`;
}
