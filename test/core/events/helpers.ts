/** Builders for signed test PDUs. */
import { signingKeyFromSeed } from "../../../src/core/crypto/ed25519.js";
import { hashAndSignEvent } from "../../../src/core/events/index.js";
import type { JsonObject, JsonValue } from "../../../src/core/json/types.js";
import { getRoomVersion, type RoomVersion } from "../../../src/core/rooms/versions.js";

export const SERVER = "example.org";
export const KEY = signingKeyFromSeed("test", Buffer.alloc(32, 7));
export const OTHER_KEY = signingKeyFromSeed("other", Buffer.alloc(32, 9));
export const V12_ROOM_ID = "!Nhcu5BS-UMnFX7hBVfVSoXiD7OgH6iRT-xyIuqDnpYQ";

export function rv(id: string): RoomVersion {
  const v = getRoomVersion(id);
  if (!v) throw new Error(`unknown room version ${id}`);
  return v;
}

/** An event reference in the version's prev_events/auth_events shape. */
export function ref(v: RoomVersion, id: string): JsonValue {
  return v.eventIdFormat === "v1" ? [`${id}:${SERVER}`, { sha256: "aGFzaA" }] : id;
}

/** An unsigned PDU of the version's format; `fields` override its keys (an `undefined` value removes the key). */
export function skeleton(v: RoomVersion, fields: Record<string, JsonValue | undefined> = {}): JsonObject {
  const pdu: JsonObject = {
    type: "m.room.message",
    room_id: v.roomIdIsCreateEventHash ? V12_ROOM_ID : `!room:${SERVER}`,
    sender: `@alice:${SERVER}`,
    content: { body: "hello", msgtype: "m.text" },
    depth: 3,
    origin_server_ts: 1700000000000,
    prev_events: [ref(v, "$prev")],
    auth_events: [ref(v, "$create"), ref(v, "$power"), ref(v, "$member")],
    ...(v.eventIdFormat === "v1" ? { event_id: `$local:${SERVER}` } : {}),
  };
  for (const [k, val] of Object.entries(fields)) {
    if (val === undefined) delete pdu[k];
    else pdu[k] = val;
  }
  return pdu;
}

/** The skeleton, hashed and signed by KEY. */
export function signed(v: RoomVersion, fields: Record<string, JsonValue | undefined> = {}): JsonObject {
  return hashAndSignEvent(v, skeleton(v, fields), SERVER, KEY);
}
