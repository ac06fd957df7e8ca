/**
 * "Auth events selection" (server-server API): which state entries an event's `auth_events` should reference.
 * Used to build new events and, in the auth rules, to reject auth events that are not among these.
 */
import { isJsonObject, type JsonObject } from "../json/types.js";
import type { RoomVersion } from "../rooms/versions.js";
import { stateMapKey } from "./event.js";

export interface AuthEventsSelectionInput {
  type: string;
  state_key?: string;
  sender: string;
  content: JsonObject;
}

/**
 * The (type, state_key) pairs of the state events to select as auth events, without duplicates, in the spec's
 * order. An m.room.create has none. The create event itself is selected except where the room id is its hash
 * (v12: "`m.room.create` MUST NOT be selected").
 */
export function authEventTypesFor(version: RoomVersion, event: AuthEventsSelectionInput): Array<[string, string]> {
  if (event.type === "m.room.create") return [];
  const out: Array<[string, string]> = [];
  const seen = new Set<string>();
  const add = (type: string, stateKey: string): void => {
    const key = stateMapKey(type, stateKey);
    if (seen.has(key)) return;
    seen.add(key);
    out.push([type, stateKey]);
  };

  if (!version.roomIdIsCreateEventHash) add("m.room.create", "");
  add("m.room.power_levels", "");
  add("m.room.member", event.sender);

  if (event.type === "m.room.member") {
    const content = event.content;
    const membership = content.membership;
    // "The target's current m.room.member event": the target is the state_key.
    if (typeof event.state_key === "string") add("m.room.member", event.state_key);
    // Knock is listed for every version; in versions without knocking the event fails the auth rules anyway.
    if (membership === "join" || membership === "invite" || membership === "knock") add("m.room.join_rules", "");
    if (membership === "invite" && Object.hasOwn(content, "third_party_invite")) {
      const tpi = content.third_party_invite;
      const signed = isJsonObject(tpi) ? tpi.signed : undefined;
      const token = isJsonObject(signed) ? signed.token : undefined;
      // A malformed invite has no token to select by; the auth rules reject it.
      if (typeof token === "string") add("m.room.third_party_invite", token);
    }
    if (version.restrictedJoinRule && membership === "join") {
      const via = content.join_authorised_via_users_server;
      if (typeof via === "string") add("m.room.member", via);
    }
  }
  return out;
}
