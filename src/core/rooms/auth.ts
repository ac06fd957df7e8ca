/**
 * The authorisation rules of room versions 1-12 (spec "Authorization rules" of each room version), in the spec's
 * order. Rule numbers in comments are v12's unless noted ("v1 4" is rule 4 of room versions 1-5, which v6 dropped,
 * so later rules shift by one; v12 inserted rule 2, shifting them back).
 *
 * `checkEventAuth` runs the rules against a state lookup the caller chooses (the event's auth events, the state
 * before it, or the current state); `checkAuthEventsList` runs the "Considering the event's auth_events" rules,
 * which look at the auth events list itself and only need running once, on receipt.
 */
import type { Event } from "../events/event.js";
import { stateMapKey } from "../events/event.js";
import { invitePublicKeys, verifyingKey } from "./third_party_invite.js";
import { idDomain, isHistoricalUserId, userIdDomain } from "../ids/ids.js";
import { isJsonObject } from "../json/types.js";
import { authEventsSelectionKeys } from "./auth_selection.js";
import {
  MalformedPowerLevelsError,
  POWER_LEVEL_INT_FIELDS,
  eventSendLevel,
  namedLevel,
  powerLevelsOf,
  roomCreator,
  roomCreators,
  userPowerLevel,
} from "./power_levels.js";
import { getRoomVersion, type RoomVersion } from "./versions.js";

export type AuthResult = { allowed: true } | { allowed: false; reason: string };

/** The state the event is checked against: (type, state_key) → event. */
export type AuthStateLookup = (type: string, stateKey: string) => Event | undefined;

export interface CheckEventAuthOptions {
  /**
   * v8+ rule 5.2.1: is the event validly signed by this server (the one of `join_authorised_via_users_server`)?
   * Without it, the rule only requires a signature from that server to be present, assuming the signatures on the
   * event were verified on receipt (as Synapse does).
   */
  verifyJoinAuthorisedSignature?: (serverName: string) => boolean;
}

const ALLOW: AuthResult = { allowed: true };
const reject = (reason: string): AuthResult => ({ allowed: false, reason });

export function checkEventAuth(
  version: RoomVersion,
  event: Event,
  authState: AuthStateLookup,
  opts?: CheckEventAuthOptions,
): AuthResult {
  try {
    return checkRules(version, event, authState, opts);
  } catch (e) {
    // A power levels value the rules need does not parse for this room version: the rule cannot pass.
    if (e instanceof MalformedPowerLevelsError) return reject(e.message);
    throw e;
  }
}

/** Rule 1: m.room.create. */
function checkCreate(version: RoomVersion, event: Event): AuthResult {
  // 1.1
  if (event.prev_events.length > 0) return reject("create event has prev_events");
  if (version.roomIdIsCreateEventHash) {
    // v12 1.2: the room id is derived from the create event's id, so the event itself must not carry one.
    if (event.pdu.room_id !== undefined) return reject("create event has a room_id");
  } else {
    // v1-v11 1.2
    const roomDomain = idDomain(event.room_id);
    if (roomDomain === null || roomDomain !== userIdDomain(event.sender)) {
      return reject("create event's room_id domain does not match the sender's");
    }
  }
  // 1.3
  const rv = event.content.room_version;
  if (rv !== undefined && (typeof rv !== "string" || !getRoomVersion(rv))) {
    return reject("create event has an unknown room_version");
  }
  // v1-v10 1.4
  if (version.createHasCreatorField && event.content.creator === undefined) return reject("create event has no creator");
  // v12 1.4
  if (version.privilegedCreators) {
    const extra = event.content.additional_creators;
    if (extra !== undefined && (!Array.isArray(extra) || !extra.every((u) => typeof u === "string" && isHistoricalUserId(u)))) {
      return reject("additional_creators is not an array of user ids");
    }
  }
  return ALLOW;
}

function membershipOf(e: Event | undefined): string | undefined {
  const m = e?.content.membership;
  return typeof m === "string" ? m : undefined;
}

function checkRules(version: RoomVersion, event: Event, authState: AuthStateLookup, opts?: CheckEventAuthOptions): AuthResult {
  if (event.type === "m.room.create") return checkCreate(version, event);

  const create = authState("m.room.create", "");
  // v1-v11 2.4: there must be a create event among the auth events; v12 2: the room id names an accepted create
  // event. Either way the rules cannot run without it.
  if (!create) return reject("no m.room.create event in the auth state");
  if (version.roomIdIsCreateEventHash) {
    // v12 2
    if (event.room_id !== `!${create.event_id.slice(1)}`) return reject("room_id is not the create event's id");
  } else if (create.room_id !== event.room_id) {
    // v1-v11 2.5, for the one auth event the state lookup always yields
    return reject("create event is in another room");
  }

  // v12 4 (v1 3): m.federate
  if (create.content["m.federate"] === false && userIdDomain(event.sender) !== userIdDomain(create.sender)) {
    return reject("room is not federated and the sender is on another server");
  }

  // v1-v5 4: m.room.aliases is authorised by the sender's domain alone
  if (version.specialCaseAliasesAuth && event.type === "m.room.aliases") {
    if (event.state_key === undefined) return reject("m.room.aliases has no state_key");
    if (event.state_key !== userIdDomain(event.sender)) return reject("m.room.aliases state_key is not the sender's domain");
    return ALLOW;
  }

  const powerLevels = authState("m.room.power_levels", "");
  const levelOf = (userId: string): number => userPowerLevel(version, create, powerLevels, userId);

  // 5: m.room.member
  if (event.type === "m.room.member") return checkMember(version, event, authState, create, powerLevels, levelOf, opts);

  // 6
  if (membershipOf(authState("m.room.member", event.sender)) !== "join") return reject("sender is not joined");
  const senderLevel = levelOf(event.sender);

  // 7
  if (event.type === "m.room.third_party_invite") {
    return senderLevel >= namedLevel(version, powerLevels, "invite") ? ALLOW : reject("sender cannot invite");
  }

  // 8
  const required = eventSendLevel(version, powerLevels, event.type, event.state_key !== undefined);
  if (senderLevel < required) return reject(`sender's power level ${senderLevel} is below the required ${required}`);

  // 9
  if (event.state_key !== undefined && event.state_key.startsWith("@") && event.state_key !== event.sender) {
    return reject("state_key is another user's id");
  }

  // 10
  if (event.type === "m.room.power_levels") return checkPowerLevels(version, event, create, powerLevels, senderLevel);

  // v1-v2 11: redactions need the redact level or the same origin (from v3 this moved to "Handling redactions")
  if (!version.redactionAuthDeferred && event.type === "m.room.redaction") {
    if (senderLevel >= namedLevel(version, powerLevels, "redact")) return ALLOW;
    const redactsDomain = event.redacts === undefined ? null : idDomain(event.redacts);
    if (redactsDomain !== null && redactsDomain === idDomain(event.event_id)) return ALLOW;
    return reject("sender cannot redact that event");
  }

  // 11
  return ALLOW;
}

/**
 * The join rule in force. With no m.room.join_rules event (or no `join_rule` in it) rooms behave as `invite`, as in
 * Synapse; the spec names no default.
 */
function joinRuleOf(authState: AuthStateLookup): string | undefined {
  const e = authState("m.room.join_rules", "");
  if (!e) return "invite";
  const r = e.content.join_rule;
  if (r === undefined) return "invite";
  return typeof r === "string" ? r : undefined;
}

function hasSignatureFrom(event: Event, serverName: string): boolean {
  const sigs = event.pdu.signatures;
  if (!isJsonObject(sigs)) return false;
  const mine = sigs[serverName];
  return isJsonObject(mine) && Object.keys(mine).length > 0;
}

function checkMember(
  version: RoomVersion,
  event: Event,
  authState: AuthStateLookup,
  create: Event,
  powerLevels: Event | undefined,
  levelOf: (userId: string) => number,
  opts?: CheckEventAuthOptions,
): AuthResult {
  // 5.1
  const target = event.state_key;
  if (target === undefined) return reject("member event has no state_key");
  const membership = membershipOf(event);
  if (membership === undefined) return reject("member event has no membership");

  // v8+ 5.2: the server of the authorising user must have signed the event
  const via = event.content.join_authorised_via_users_server;
  if (version.restrictedJoinRule && via !== undefined) {
    const server = typeof via === "string" ? userIdDomain(via) : null;
    if (server === null) return reject("join_authorised_via_users_server is not a user id");
    const signed = opts?.verifyJoinAuthorisedSignature ? opts.verifyJoinAuthorisedSignature(server) : hasSignatureFrom(event, server);
    if (!signed) return reject("event is not signed by the server of join_authorised_via_users_server");
  }

  const senderMembership = membershipOf(authState("m.room.member", event.sender));
  const targetMembership = membershipOf(authState("m.room.member", target));

  switch (membership) {
    case "join": {
      // 5.3.1: the creator's own first join, right after the create event
      if (event.prev_events.length === 1 && event.prev_events[0] === create.event_id && target === roomCreator(version, create)) {
        return ALLOW;
      }
      // 5.3.2
      if (event.sender !== target) return reject("cannot join on behalf of another user");
      // 5.3.3 (sender and target are the same user here)
      if (targetMembership === "ban") return reject("sender is banned");
      const joinRule = joinRuleOf(authState);
      const invitedOrJoined = targetMembership === "invite" || targetMembership === "join";
      // 5.3.4
      if (joinRule === "invite" || (version.knocking && joinRule === "knock")) {
        return invitedOrJoined ? ALLOW : reject("room is invite-only and the sender is not invited");
      }
      // 5.3.5
      if ((version.restrictedJoinRule && joinRule === "restricted") || (version.knockRestrictedJoinRule && joinRule === "knock_restricted")) {
        if (invitedOrJoined) return ALLOW;
        if (typeof via !== "string") return reject("restricted join without join_authorised_via_users_server");
        if (membershipOf(authState("m.room.member", via)) !== "join") return reject("authorising user is not joined");
        if (levelOf(via) < namedLevel(version, powerLevels, "invite")) return reject("authorising user cannot invite");
        return ALLOW;
      }
      // 5.3.6, 5.3.7
      return joinRule === "public" ? ALLOW : reject(`cannot join a room with join rule ${String(joinRule)}`);
    }

    case "invite": {
      // 5.4.1
      if (event.content.third_party_invite !== undefined) {
        return checkThirdPartyInvite(event, target, targetMembership, authState);
      }
      // 5.4.2
      if (senderMembership !== "join") return reject("sender is not joined");
      // 5.4.3
      if (targetMembership === "join" || targetMembership === "ban") return reject(`target is ${targetMembership}`);
      // 5.4.4, 5.4.5
      return levelOf(event.sender) >= namedLevel(version, powerLevels, "invite") ? ALLOW : reject("sender cannot invite");
    }

    case "leave": {
      // 5.5.1: leaving, or rejecting an invite / rescinding a knock (v7+)
      if (event.sender === target) {
        const ok = senderMembership === "invite" || senderMembership === "join" || (version.knocking && senderMembership === "knock");
        return ok ? ALLOW : reject(`cannot leave with membership ${String(senderMembership)}`);
      }
      // 5.5.2
      if (senderMembership !== "join") return reject("sender is not joined");
      const senderLevel = levelOf(event.sender);
      // 5.5.3: unban needs the ban level
      if (targetMembership === "ban" && senderLevel < namedLevel(version, powerLevels, "ban")) return reject("sender cannot unban");
      // 5.5.4, 5.5.5
      if (senderLevel >= namedLevel(version, powerLevels, "kick") && levelOf(target) < senderLevel) return ALLOW;
      return reject("sender cannot kick the target");
    }

    case "ban": {
      // 5.6.1
      if (senderMembership !== "join") return reject("sender is not joined");
      const senderLevel = levelOf(event.sender);
      // 5.6.2, 5.6.3
      if (senderLevel >= namedLevel(version, powerLevels, "ban") && levelOf(target) < senderLevel) return ALLOW;
      return reject("sender cannot ban the target");
    }

    case "knock": {
      // v7+ 5.7; before v7 knock is an unknown membership
      if (!version.knocking) break;
      const joinRule = joinRuleOf(authState);
      // 5.7.1
      if (!(joinRule === "knock" || (version.knockRestrictedJoinRule && joinRule === "knock_restricted"))) {
        return reject("the join rule does not allow knocking");
      }
      // 5.7.2
      if (event.sender !== target) return reject("cannot knock on behalf of another user");
      // 5.7.3, 5.7.4
      if (senderMembership === "ban" || senderMembership === "invite" || senderMembership === "join") {
        return reject(`cannot knock with membership ${senderMembership}`);
      }
      return ALLOW;
    }
  }
  // 5.8
  return reject(`unknown membership ${membership}`);
}

/** Rule 5.4.1: an invite that redeems an m.room.third_party_invite. */
function checkThirdPartyInvite(
  event: Event,
  target: string,
  targetMembership: string | undefined,
  authState: AuthStateLookup,
): AuthResult {
  // 5.4.1.1
  if (targetMembership === "ban") return reject("target is banned");
  // 5.4.1.2
  const tpi = event.content.third_party_invite;
  const signed = isJsonObject(tpi) ? tpi.signed : undefined;
  if (!isJsonObject(signed)) return reject("third_party_invite has no signed object");
  // 5.4.1.3
  const { mxid, token } = signed;
  if (typeof mxid !== "string" || typeof token !== "string") return reject("third_party_invite.signed lacks mxid or token");
  // 5.4.1.4
  if (mxid !== target) return reject("third_party_invite mxid does not match the state_key");
  // 5.4.1.5
  const invite = authState("m.room.third_party_invite", token);
  if (!invite) return reject("no m.room.third_party_invite for the token");
  // 5.4.1.6
  if (invite.sender !== event.sender) return reject("sender did not send the m.room.third_party_invite");
  // 5.4.1.7, 5.4.1.8
  return verifyingKey(signed, invitePublicKeys(invite.content)) ? ALLOW : reject("no valid signature on third_party_invite.signed");
}

/** Rule 10: m.room.power_levels. */
function checkPowerLevels(
  version: RoomVersion,
  event: Event,
  create: Event,
  current: Event | undefined,
  senderLevel: number,
): AuthResult {
  const next = powerLevelsOf(version, event);
  // 10.1-10.3 (v1-v9: 10.1)
  const invalid = next.validate();
  if (invalid) return reject(invalid);
  const newUsers = next.users();
  // v12 10.4: creators' power is fixed and cannot be listed
  if (version.privilegedCreators && newUsers) {
    for (const c of roomCreators(version, create)) if (newUsers.has(c)) return reject(`room creator ${c} is listed in users`);
  }
  // 10.5
  if (!current) return ALLOW;
  const old = powerLevelsOf(version, current);

  // 10.6: the missing side of an added or removed property is not compared (as Synapse; Ruma compares defaults)
  for (const f of POWER_LEVEL_INT_FIELDS) {
    const was = old.explicit(f);
    const now = next.explicit(f);
    if (was === now) continue;
    if (was !== undefined && was > senderLevel) return reject(`cannot change "${f}" from a level above the sender's`);
    if (now !== undefined && now > senderLevel) return reject(`cannot set "${f}" above the sender's level`);
  }

  // 10.7, 10.8 (v6+ also for notifications)
  const maps: [string, ReadonlyMap<string, number> | undefined, ReadonlyMap<string, number> | undefined][] = [
    ["events", old.events(), next.events()],
  ];
  if (version.limitNotificationsPowerLevels) maps.push(["notifications", old.notifications(), next.notifications()]);
  for (const [name, was, now] of maps) {
    const bad = firstBadChange(was, now, (_k, w) => w > senderLevel, senderLevel);
    if (bad !== undefined) return reject(`cannot change ${name} level of ${bad}`);
  }

  // 10.9, 10.10: other users at or above the sender's level cannot be changed; nobody can be raised above it
  const bad = firstBadChange(old.users(), newUsers, (k, w) => k !== event.sender && w >= senderLevel, senderLevel);
  if (bad !== undefined) return reject(`cannot change the power level of ${bad}`);

  return ALLOW;
}

/**
 * The first key whose change breaks the rules: `oldTooHigh` judges an entry being changed or removed by its current
 * value; an entry being added or changed may not exceed the sender's level.
 */
function firstBadChange(
  was: ReadonlyMap<string, number> | undefined,
  now: ReadonlyMap<string, number> | undefined,
  oldTooHigh: (key: string, current: number) => boolean,
  senderLevel: number,
): string | undefined {
  const keys = new Set<string>([...(was?.keys() ?? []), ...(now?.keys() ?? [])]);
  for (const k of keys) {
    const w = was?.get(k);
    const n = now?.get(k);
    if (w === n) continue;
    if (w !== undefined && oldTooHigh(k, w)) return k;
    if (n !== undefined && n > senderLevel) return k;
  }
  return undefined;
}

export interface CheckAuthEventsListOptions {
  /** Rule 3.3 (v1 2.3): was this auth event rejected on receipt? Unchecked without it. */
  isRejected?: (eventId: string) => boolean;
}

/**
 * "Considering the event's auth_events" (v12 rule 3, v1-v11 rule 2): `authEvents` are the events named by
 * `event.auth_events`. The create event has none to consider (rule 1 decides it alone).
 */
export function checkAuthEventsList(
  version: RoomVersion,
  event: Event,
  authEvents: readonly Event[],
  opts?: CheckAuthEventsListOptions,
): AuthResult {
  if (event.type === "m.room.create") return ALLOW;
  const byId = new Map(authEvents.map((e) => [e.event_id, e]));
  const expected = authEventsSelectionKeys(version, event);
  const seenKeys = new Set<string>();
  const seenIds = new Set<string>();
  let hasCreate = false;
  for (const id of event.auth_events) {
    if (seenIds.has(id)) return reject(`auth event ${id} is listed twice`);
    seenIds.add(id);
    const a = byId.get(id);
    if (!a) return reject(`auth event ${id} was not supplied`);
    if (a.state_key === undefined) return reject(`auth event ${id} is not a state event`);
    const key = stateMapKey(a.type, a.state_key);
    // 3.1
    if (seenKeys.has(key)) return reject(`duplicate auth events for (${a.type}, ${a.state_key})`);
    seenKeys.add(key);
    // 3.2 (v12: the create event is never selected)
    if (!expected.has(key)) return reject(`auth event ${id} (${a.type}, ${a.state_key}) is not in the auth events selection`);
    // 3.3
    if (opts?.isRejected?.(id)) return reject(`auth event ${id} was rejected`);
    // 3.5 (v1 2.5)
    if (a.room_id !== event.room_id) return reject(`auth event ${id} is in another room`);
    if (a.type === "m.room.create") hasCreate = true;
  }
  // v1-v11 2.4
  if (!version.roomIdIsCreateEventHash && !hasCreate) return reject("no m.room.create among the auth events");
  return ALLOW;
}
