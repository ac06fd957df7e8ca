/**
 * The event shapes the core works with. A PDU is the signed JSON object exactly as it travels between servers
 * (spec "Persistent Data Units"); `Event` is the parsed, normalised view the auth rules, state resolution and
 * storage use: event id known, prev/auth event lists as plain ids in every room version.
 */
import type { JsonObject } from "../json/types.js";

/** The wire form of a PDU. Fields are typed loosely on purpose: this is untrusted until validated. */
export type PDU = JsonObject;

export interface Event {
  /** Room versions 1-2: the `event_id` field; v3+: derived from the reference hash. */
  readonly event_id: string;
  /** For a v12 m.room.create (which has no room_id), the room id derived from its event id. */
  readonly room_id: string;
  readonly type: string;
  readonly state_key?: string;
  readonly sender: string;
  readonly content: JsonObject;
  readonly origin_server_ts: number;
  readonly depth: number;
  readonly prev_events: readonly string[];
  readonly auth_events: readonly string[];
  /** Top-level `redacts` (v1-v10) or `content.redacts` (v11+), for m.room.redaction. */
  readonly redacts?: string;
  /** The PDU exactly as signed (without `unsigned`). */
  readonly pdu: PDU;
}

export function isStateEvent(e: { state_key?: string }): boolean {
  return typeof e.state_key === "string";
}

/**
 * The key of a (type, state_key) pair in state maps. Length-prefixed so that no choice of type and state_key
 * can collide with another pair (both may contain any character, including separators).
 */
export function stateMapKey(type: string, stateKey: string): string {
  return `${type.length}:${type}${stateKey}`;
}

export function splitStateMapKey(key: string): [type: string, stateKey: string] {
  const colon = key.indexOf(":");
  const len = Number(key.slice(0, colon));
  return [key.slice(colon + 1, colon + 1 + len), key.slice(colon + 1 + len)];
}

/** State: (type, state_key) → event id. */
export type StateMap = Map<string, string>;
