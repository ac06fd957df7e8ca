/**
 * The redaction algorithm (room versions' "Redactions" sections; fragments v1, v6, v9, v11-redactions). It decides
 * what the reference hash and the signatures cover, so it must match every other server byte for byte.
 * Room version 12 uses the v11 algorithm unchanged.
 */
import { isJsonObject, type JsonObject, type JsonValue } from "../json/types.js";
import type { RedactionRules, RoomVersion } from "../rooms/versions.js";
import type { PDU } from "./event.js";

interface RedactionFlags {
  /** Top-level keys that survive redaction. */
  readonly topLevel: ReadonlySet<string>;
  /** v1–v5: m.room.aliases keeps `aliases` (tied to its own auth rule in those versions). */
  readonly keepAliases: boolean;
  /** v8+: m.room.join_rules keeps `allow`. */
  readonly keepJoinRulesAllow: boolean;
  /** v9+: m.room.member keeps `join_authorised_via_users_server`. */
  readonly keepAuthorisingUser: boolean;
  /** v11+: m.room.member keeps `third_party_invite.signed`, m.room.create keeps all content,
   * m.room.redaction keeps `redacts`, m.room.power_levels keeps `invite`. */
  readonly v11: boolean;
}

const TOP_LEVEL_V11 = [
  "event_id",
  "type",
  "room_id",
  "sender",
  "state_key",
  "content",
  "hashes",
  "signatures",
  "depth",
  "prev_events",
  "auth_events",
  "origin_server_ts",
];
// Before v11 the legacy top-level `origin`, `membership` and `prev_state` were protected too.
const TOP_LEVEL_V1 = [...TOP_LEVEL_V11, "prev_state", "origin", "membership"];

const FLAGS: Readonly<Record<RedactionRules, RedactionFlags>> = {
  v1: { topLevel: new Set(TOP_LEVEL_V1), keepAliases: true, keepJoinRulesAllow: false, keepAuthorisingUser: false, v11: false },
  v6: { topLevel: new Set(TOP_LEVEL_V1), keepAliases: false, keepJoinRulesAllow: false, keepAuthorisingUser: false, v11: false },
  v8: { topLevel: new Set(TOP_LEVEL_V1), keepAliases: false, keepJoinRulesAllow: true, keepAuthorisingUser: false, v11: false },
  v9: { topLevel: new Set(TOP_LEVEL_V1), keepAliases: false, keepJoinRulesAllow: true, keepAuthorisingUser: true, v11: false },
  v11: { topLevel: new Set(TOP_LEVEL_V11), keepAliases: false, keepJoinRulesAllow: true, keepAuthorisingUser: true, v11: true },
};

const POWER_LEVELS_KEYS = ["ban", "events", "events_default", "kick", "redact", "state_default", "users", "users_default"];

/**
 * Returns the redacted form of a PDU for its room version. `hashes` and `signatures` are kept (the signature covers
 * the redacted form, the content hash proves what was removed); `unsigned` is dropped, so callers that serve the
 * event add their own `unsigned.redacted_because`. `content` is always present in the result, as in Synapse's
 * `prune_event_dict`. Nested values are shared with the input, not copied: treat PDUs as immutable.
 */
export function redactPdu(version: RoomVersion, pdu: PDU): PDU {
  const flags = FLAGS[version.redaction];
  // Object.fromEntries defines own properties, so a hostile "__proto__" key stays data and never sets a prototype.
  const out: JsonObject = Object.fromEntries(
    Object.entries(pdu).filter(([key]) => key !== "content" && flags.topLevel.has(key)),
  );
  const content = isJsonObject(pdu.content) ? pdu.content : {};
  out.content = redactContent(flags, typeof pdu.type === "string" ? pdu.type : undefined, content);
  return out;
}

function redactContent(flags: RedactionFlags, type: string | undefined, content: JsonObject): JsonObject {
  const kept: [string, JsonValue][] = [];
  const keep = (...keys: string[]): void => {
    for (const key of keys) {
      if (Object.hasOwn(content, key)) kept.push([key, content[key]!]);
    }
  };
  switch (type) {
    case "m.room.member":
      keep("membership");
      if (flags.keepAuthorisingUser) keep("join_authorised_via_users_server");
      if (flags.v11) {
        // "allows the `signed` key of the `third_party_invite` key": like Synapse, an object value is kept as an
        // object holding only `signed` (possibly empty); any other value is dropped.
        const tpi = content.third_party_invite;
        if (Object.hasOwn(content, "third_party_invite") && isJsonObject(tpi)) {
          kept.push(["third_party_invite", Object.hasOwn(tpi, "signed") ? { signed: tpi.signed! } : {}]);
        }
      }
      break;
    case "m.room.create":
      // v11: "allows all keys" (MSC2176), since the create event's content defines the room.
      if (flags.v11) return { ...content };
      keep("creator");
      break;
    case "m.room.join_rules":
      keep("join_rule");
      if (flags.keepJoinRulesAllow) keep("allow");
      break;
    case "m.room.power_levels":
      keep(...POWER_LEVELS_KEYS);
      if (flags.v11) keep("invite");
      break;
    case "m.room.aliases":
      if (flags.keepAliases) keep("aliases");
      break;
    case "m.room.history_visibility":
      keep("history_visibility");
      break;
    case "m.room.redaction":
      if (flags.v11) keep("redacts");
      break;
  }
  return Object.fromEntries(kept);
}
