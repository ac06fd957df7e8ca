/**
 * Auth events selection (server-server API "Auth events selection"): the (type, state_key) pairs of the room state
 * that may appear in an event's `auth_events`, and that the auth rules may read.
 */
import { stateMapKey } from "../events/event.js";
import { isJsonObject, type JsonObject } from "../json/types.js";
import type { RoomVersion } from "./versions.js";

export interface AuthSelectionInput {
  readonly type: string;
  readonly sender: string;
  readonly state_key?: string;
  readonly content: JsonObject;
}

/** The selected (type, state_key) pairs, in the spec's order, without duplicates. */
export function authEventsSelection(version: RoomVersion, event: AuthSelectionInput): [type: string, stateKey: string][] {
  // "The auth_events for the m.room.create event in a room is empty."
  if (event.type === "m.room.create") return [];
  const out: [string, string][] = [];
  const seen = new Set<string>();
  const add = (type: string, stateKey: string): void => {
    const k = stateMapKey(type, stateKey);
    if (!seen.has(k)) {
      seen.add(k);
      out.push([type, stateKey]);
    }
  };
  // v12: the create event is implied by the room id and MUST NOT be selected.
  if (!version.roomIdIsCreateEventHash) add("m.room.create", "");
  add("m.room.power_levels", "");
  add("m.room.member", event.sender);
  if (event.type === "m.room.member" && typeof event.state_key === "string") {
    add("m.room.member", event.state_key);
    const membership = event.content.membership;
    if (membership === "join" || membership === "invite" || membership === "knock") add("m.room.join_rules", "");
    if (membership === "invite") {
      const tpi = event.content.third_party_invite;
      const signed = isJsonObject(tpi) ? tpi.signed : undefined;
      const token = isJsonObject(signed) ? signed.token : undefined;
      if (typeof token === "string") add("m.room.third_party_invite", token);
    }
    if (membership === "join" && version.restrictedJoinRule) {
      const via = event.content.join_authorised_via_users_server;
      if (typeof via === "string") add("m.room.member", via);
    }
  }
  return out;
}

/** The selection as a set of `stateMapKey`s. */
export function authEventsSelectionKeys(version: RoomVersion, event: AuthSelectionInput): Set<string> {
  return new Set(authEventsSelection(version, event).map(([t, k]) => stateMapKey(t, k)));
}
