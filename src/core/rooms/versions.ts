/**
 * Room version registry (spec "Room Versions"). Each version is a set of rules; the code elsewhere asks for the
 * rule ("does this version enforce integer power levels?") rather than comparing version numbers.
 */

export type EventIdFormat =
  | "v1" // `$opaque:domain`, chosen by the origin server (rooms v1, v2)
  | "v3" // `$` + unpadded standard base64 of the reference hash (v3)
  | "v4"; // `$` + unpadded URL-safe base64 of the reference hash (v4+)

export type StateResAlgorithm = "v1" | "v2" | "v2.1";

export type RedactionRules =
  | "v1" // rooms v1-v5: m.room.aliases keeps `aliases`
  | "v6" // v6, v7: no special case for m.room.aliases
  | "v8" // v8: join_rules keeps `allow`
  | "v9" // v9, v10: m.room.member keeps `join_authorised_via_users_server`
  | "v11"; // v11, v12: origin/membership/prev_state no longer kept, create keeps all content, etc.

export interface RoomVersion {
  readonly id: string;
  readonly stable: boolean;
  readonly eventIdFormat: EventIdFormat;
  readonly stateRes: StateResAlgorithm;
  readonly redaction: RedactionRules;
  /** v5+: signing keys must be valid (valid_until_ts) at the event's origin_server_ts. */
  readonly enforceKeyValidity: boolean;
  /** v1-v5: m.room.aliases has its own auth rule (state_key must be the sender's domain). */
  readonly specialCaseAliasesAuth: boolean;
  /** v6+: canonical JSON is enforced strictly (integers only, within range). */
  readonly strictCanonicalJson: boolean;
  /** v6+: `notifications` in power levels is checked when changed. */
  readonly limitNotificationsPowerLevels: boolean;
  /** v3+: auth rules no longer check the redaction's domain/redact level at auth time (see "Handling redactions"). */
  readonly redactionAuthDeferred: boolean;
  /** v7+: the `knock` membership and join rule. */
  readonly knocking: boolean;
  /** v8+: the `restricted` join rule and `join_authorised_via_users_server`. */
  readonly restrictedJoinRule: boolean;
  /** v10+: the `knock_restricted` join rule. */
  readonly knockRestrictedJoinRule: boolean;
  /** v10+: power level values must be integers (no strings). */
  readonly integerPowerLevels: boolean;
  /**
   * v1-v10: events carry the legacy top-level `origin` (the server that built them; kept by the redaction
   * algorithm). The spec no longer lists it in PDUs, but it never forbade it and Synapse still sets it on every event
   * it builds; v11 (MSC3989) stops protecting it, so new events there go without.
   */
  readonly legacyOriginField: boolean;
  /** v1-v10: m.room.create carries `content.creator`; v11+ uses the sender. */
  readonly createHasCreatorField: boolean;
  /** v11+: m.room.redaction carries `redacts` in content (also top level for compatibility). */
  readonly redactsInContent: boolean;
  /** v12: room id is the create event's reference hash; create event has no room_id and is not an auth event. */
  readonly roomIdIsCreateEventHash: boolean;
  /** v12: the create event's sender and `additional_creators` have infinite power. */
  readonly privilegedCreators: boolean;
}

const base = {
  stable: true,
  eventIdFormat: "v4",
  stateRes: "v2",
  redaction: "v1",
  enforceKeyValidity: false,
  specialCaseAliasesAuth: true,
  strictCanonicalJson: false,
  limitNotificationsPowerLevels: false,
  redactionAuthDeferred: true,
  knocking: false,
  restrictedJoinRule: false,
  knockRestrictedJoinRule: false,
  integerPowerLevels: false,
  legacyOriginField: true,
  createHasCreatorField: true,
  redactsInContent: false,
  roomIdIsCreateEventHash: false,
  privilegedCreators: false,
} as const satisfies Omit<RoomVersion, "id">;

const v1: RoomVersion = { ...base, id: "1", eventIdFormat: "v1", stateRes: "v1", redactionAuthDeferred: false };
const v2: RoomVersion = { ...v1, id: "2", stateRes: "v2" };
const v3: RoomVersion = { ...v2, id: "3", eventIdFormat: "v3", redactionAuthDeferred: true };
const v4: RoomVersion = { ...v3, id: "4", eventIdFormat: "v4" };
const v5: RoomVersion = { ...v4, id: "5", enforceKeyValidity: true };
const v6: RoomVersion = {
  ...v5,
  id: "6",
  redaction: "v6",
  specialCaseAliasesAuth: false,
  strictCanonicalJson: true,
  limitNotificationsPowerLevels: true,
};
const v7: RoomVersion = { ...v6, id: "7", knocking: true };
const v8: RoomVersion = { ...v7, id: "8", redaction: "v8", restrictedJoinRule: true };
const v9: RoomVersion = { ...v8, id: "9", redaction: "v9" };
const v10: RoomVersion = { ...v9, id: "10", knockRestrictedJoinRule: true, integerPowerLevels: true };
const v11: RoomVersion = { ...v10, id: "11", redaction: "v11", legacyOriginField: false, createHasCreatorField: false, redactsInContent: true };
const v12: RoomVersion = { ...v11, id: "12", stateRes: "v2.1", roomIdIsCreateEventHash: true, privilegedCreators: true };

export const ROOM_VERSIONS: ReadonlyMap<string, RoomVersion> = new Map(
  [v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12].map((v) => [v.id, v]),
);

/** The spec recommends room version 12 for new rooms. */
export const DEFAULT_ROOM_VERSION = "12";

export function getRoomVersion(id: string): RoomVersion | undefined {
  return ROOM_VERSIONS.get(id);
}

/** Room version grammar: 1-32 chars of a-z 0-9 . - */
export function isValidRoomVersionId(id: string): boolean {
  return /^[a-z0-9.-]{1,32}$/.test(id);
}
