/**
 * Membership across servers (server-server API, "Joining Rooms", "Leaving Rooms", "Knocking upon a room"): the
 * resident server's side (make_* hands out a template, send_* accepts the signed event, persists it and relays it to
 * the room's other servers) and the joining server's side (join a room this server is not in yet).
 */
import type { Logger } from "pino";
import { stateMapKey, type Event, type StateMap } from "../../core/events/event.js";
import { eventIdOf, generateLocalEventId } from "../../core/events/ids.js";
import { redactPdu } from "../../core/events/redaction.js";
import { signNewEvent } from "../../core/events/signing.js";
import type { SigningKey } from "../../core/crypto/ed25519.js";
import { signJson } from "../../core/crypto/signing.js";
import { userIdDomain } from "../../core/ids/ids.js";
import { isJsonObject, type JsonObject } from "../../core/json/types.js";
import { getRoomVersion, ROOM_VERSIONS, type RoomVersion } from "../../core/rooms/versions.js";
import { MatrixError, forbidden, notFound } from "../../errors.js";
import { encodePath, type FederationClient } from "../../federation/client.js";
import { FederationError } from "../../federation/errors.js";
import type { EventCache, StoredEvent } from "../rooms/event_cache.js";
import { trustedEvent } from "../rooms/event_cache.js";
import type { EventPersister } from "../rooms/persister.js";
import { loadWithAuthChains } from "../rooms/resolve.js";
import type { FederationPdus } from "./pdus.js";
import type { FederationSender } from "./sender.js";

type Membership = "join" | "leave" | "knock";

export class FederationMembership {
  constructor(
    private readonly deps: {
      serverName: string;
      signingKey: SigningKey;
      events: EventCache;
      persister: EventPersister;
      pdus: FederationPdus;
      sender: FederationSender;
      client: FederationClient;
      log: Logger;
      /** displayname/avatar_url for a local user's member events. */
      profileOf: (userId: string) => Promise<JsonObject>;
      userExists: (userId: string) => Promise<boolean>;
      serversInRoom: (roomId: string) => Promise<string[]>;
      /** 403 when the room's m.room.server_acl denies the server (spec "Server Access Control Lists"). */
      checkAcl: (origin: string, roomId: string) => Promise<void>;
      /** Restricted rooms: checks a remote user's join conditions; the content naming the local authoriser, if needed. */
      restrictedJoin: (roomId: string, userId: string) => Promise<JsonObject | undefined>;
    },
  ) {}

  // --- The resident server's side ---

  /** GET make_join / make_leave / make_knock: a template for the remote user to sign. */
  async make(origin: string, roomId: string, userId: string, membership: Membership, supportedVersions: string[] | undefined): Promise<JsonObject> {
    if (userIdDomain(userId) !== origin) throw forbidden(`User ${userId} does not belong to ${origin}`);
    const version = await this.deps.events.roomVersion(roomId);
    if (!version || !(await this.deps.persister.head(roomId))) throw notFound("Unknown room");
    if (membership !== "leave") {
      // Spec: "ver: The room versions the sending server has support for. Defaults to [1]."
      const supported = supportedVersions && supportedVersions.length > 0 ? supportedVersions : ["1"];
      if (!supported.includes(version.id)) {
        throw new MatrixError(400, "M_INCOMPATIBLE_ROOM_VERSION", `Your homeserver does not support the features required to ${membership} this room`, { room_version: version.id });
      }
    }
    if (membership === "knock" && !version.knocking) throw forbidden(`Room version ${version.id} does not support knocking`);
    await this.deps.checkAcl(origin, roomId);
    const extra = membership === "join" ? await this.deps.restrictedJoin(roomId, userId) : undefined;
    const { pdu } = await this.deps.persister.membershipTemplate(roomId, { type: "m.room.member", state_key: userId, sender: userId, content: { membership, ...extra } });
    return { room_version: version.id, event: pdu };
  }

  /** PUT send_join / send_leave / send_knock: checks, persists and relays the signed event. */
  async send(origin: string, roomId: string, eventId: string, pdu: unknown, membership: Membership): Promise<{ stored: StoredEvent; event: Event; version: RoomVersion }> {
    const version = await this.deps.events.roomVersion(roomId);
    if (!version || !(await this.deps.persister.head(roomId))) throw notFound("Unknown room");
    await this.deps.checkAcl(origin, roomId);
    // A restricted join names one of our users as its authoriser: our signature is added below, not expected yet.
    const content = isJsonObject(pdu) && isJsonObject(pdu.content) ? pdu.content : undefined;
    const vouched = membership === "join" && typeof content?.join_authorised_via_users_server === "string" && userIdDomain(content.join_authorised_via_users_server) === this.deps.serverName;
    let event: Event;
    try {
      event = await this.deps.pdus.check(version, pdu, vouched ? this.deps.serverName : undefined);
    } catch (e) {
      throw new MatrixError(400, "M_BAD_JSON", (e as Error).message);
    }
    if (event.event_id !== eventId) throw new MatrixError(400, "M_BAD_JSON", "Event ID does not match the request path");
    if (event.room_id !== roomId) throw new MatrixError(400, "M_BAD_JSON", "Event is for another room");
    if (event.type !== "m.room.member" || event.content.membership !== membership) throw new MatrixError(400, "M_BAD_JSON", `Not a ${membership} event`);
    if (event.state_key !== event.sender) throw new MatrixError(400, "M_BAD_JSON", "state_key must be the sender");
    if (userIdDomain(event.sender) !== origin) throw forbidden(`The ${membership} event's sender is not from ${origin}`);
    // A restricted-room join vouched for by one of our users is signed by us too (spec "Restricted rooms").
    const authoriser = event.content.join_authorised_via_users_server;
    if (membership === "join" && typeof authoriser === "string" && userIdDomain(authoriser) === this.deps.serverName) {
      // Never vouch blindly: the joining user must meet the join rule's conditions as we see them now.
      await this.deps.restrictedJoin(roomId, event.sender);
      const signed = signJson(redactPdu(version, event.pdu), this.deps.serverName, this.deps.signingKey);
      const sigs = { ...(event.pdu.signatures as JsonObject), [this.deps.serverName]: (signed.signatures as JsonObject)[this.deps.serverName]! };
      event = trustedEvent(event.event_id, event.room_id, { ...event.pdu, signatures: sigs });
    }
    const r = await this.deps.persister.persistReceived(event);
    if (r.status === "rejected") throw forbidden(`The ${membership} event was not allowed by the room's authorization rules`);
    await this.deps.sender.sendEvent(r.stored, { exclude: [origin] });
    return { stored: r.stored, event, version };
  }

  /** The state before an event and the auth chain of that state, as PDUs (the send_join response). */
  async stateAndAuthChain(stored: StoredEvent): Promise<{ state: JsonObject[]; authChain: JsonObject[] }> {
    const after = stored.stateGroup !== null ? await this.deps.persister.stateOfGroup(stored.stateGroup) : new Map<string, string>();
    const before = new Map(after);
    if (stored.event.state_key !== undefined) {
      const key = stateMapKey(stored.event.type, stored.event.state_key);
      if (stored.replacesState === null) before.delete(key);
      else before.set(key, stored.replacesState);
    }
    const stateIds = [...before.values()];
    const withChains = await loadWithAuthChains(this.deps.events, stateIds);
    const stateSet = new Set(stateIds);
    const state: JsonObject[] = [];
    const authChain: JsonObject[] = [];
    for (const [id, e] of withChains) {
      const pdu = federationPdu(e);
      if (stateSet.has(id)) state.push(pdu);
      else authChain.push(pdu);
    }
    return { state, authChain };
  }

  /** Stripped state for a knock (and invites): the room's basic state events, as {type, state_key, sender, content}. */
  async strippedState(roomId: string): Promise<JsonObject[]> {
    const head = await this.deps.persister.head(roomId);
    if (!head) return [];
    const types = ["m.room.create", "m.room.join_rules", "m.room.name", "m.room.avatar", "m.room.canonical_alias", "m.room.encryption", "m.room.topic"];
    const ids = types.map((t) => head.state.get(stateMapKey(t, ""))).filter((x): x is string => x !== undefined);
    const events = await this.deps.events.getMany(ids);
    return [...events.values()].map((e) => ({ type: e.event.type, state_key: e.event.state_key ?? "", sender: e.event.sender, content: e.event.content }));
  }

  /**
   * PUT /invite (v2; v1 sends the bare event): the invitee's server signs the invite. When this server is not in
   * the room, the invite is kept as the user's out-of-band membership, with the stripped state it came with.
   */
  async onInvite(origin: string, roomId: string, eventId: string, roomVersion: unknown, pdu: unknown, strippedState: unknown): Promise<JsonObject> {
    const version = getRoomVersion(typeof roomVersion === "string" ? roomVersion : "1");
    if (!version) throw new MatrixError(400, "M_INCOMPATIBLE_ROOM_VERSION", `Room version ${String(roomVersion)} is not supported`, { room_version: roomVersion });
    let event: Event;
    try {
      event = await this.deps.pdus.check(version, pdu);
    } catch (e) {
      throw new MatrixError(400, "M_BAD_JSON", (e as Error).message);
    }
    if (event.event_id !== eventId || event.room_id !== roomId) throw new MatrixError(400, "M_BAD_JSON", "Event does not match the request path");
    if (event.type !== "m.room.member" || event.content.membership !== "invite" || event.state_key === undefined) throw new MatrixError(400, "M_BAD_JSON", "Not an invite event");
    if (userIdDomain(event.sender) !== origin) throw forbidden("The inviter is not from the sending server");
    if (await this.deps.persister.head(roomId)) await this.deps.checkAcl(origin, roomId);
    if (userIdDomain(event.state_key) !== this.deps.serverName || !(await this.deps.userExists(event.state_key))) throw notFound("The invitee is not a user of this server");
    const signed = signJson(redactPdu(version, event.pdu), this.deps.serverName, this.deps.signingKey);
    const sigs = { ...(event.pdu.signatures as JsonObject), [this.deps.serverName]: (signed.signatures as JsonObject)[this.deps.serverName]! };
    const signedEvent = trustedEvent(event.event_id, event.room_id, { ...event.pdu, signatures: sigs });
    const inRoom = (await this.deps.persister.head(roomId)) !== undefined && (await this.deps.serversInRoom(roomId)).includes(this.deps.serverName);
    if (!inRoom) {
      const stripped = Array.isArray(strippedState) ? strippedState.filter(isJsonObject) : [];
      const create = stripped.find((e) => e.type === "m.room.create");
      const creator = typeof create?.sender === "string" ? create.sender : event.sender;
      await this.deps.persister.persistOutOfBand(signedEvent, version, creator, stripped);
    }
    // When this server is in the room, the invite arrives again as a PDU through /send and is persisted there.
    const { unsigned: _u, ...out } = signedEvent.pdu;
    return { event: out };
  }

  /** Sends an invite of ours to the invitee's server, which signs it too (the invite is persisted afterwards). */
  async inviteRemote(event: Event, version: RoomVersion, strippedState: JsonObject[]): Promise<Event> {
    const server = userIdDomain(event.state_key ?? "");
    if (!server) throw new MatrixError(400, "M_INVALID_PARAM", "Invalid invitee");
    const { unsigned: _u, ...pdu } = event.pdu;
    let res: JsonObject;
    try {
      res = await this.deps.client.put(server, encodePath`/_matrix/federation/v2/invite/${event.room_id}/${event.event_id}`, {
        room_version: version.id,
        event: pdu,
        invite_room_state: strippedState,
      });
    } catch (e) {
      if (e instanceof FederationError && e.status !== undefined && e.status < 500) throw new MatrixError(e.status === 404 ? 404 : 403, e.status === 404 ? "M_NOT_FOUND" : "M_FORBIDDEN", `${server} refused the invite: ${e.message}`);
      throw new MatrixError(502, "M_UNKNOWN", `Could not reach ${server} to invite: ${(e as Error).message}`);
    }
    const returned = await this.deps.pdus.check(version, res.event).catch((e: unknown) => {
      throw new MatrixError(502, "M_UNKNOWN", `${server} returned an invalid invite: ${(e as Error).message}`);
    });
    if (returned.event_id !== event.event_id) throw new MatrixError(502, "M_UNKNOWN", `${server} returned a different invite event`);
    return returned;
  }

  // --- The joining server's side ---

  /** Another server's user's profile (GET /query/profile); 404 M_NOT_FOUND when it has none. */
  async queryProfile(userId: string, field?: string): Promise<Record<string, unknown>> {
    const server = userIdDomain(userId);
    if (!server) throw notFound("Profile not found");
    try {
      const res = await this.deps.client.get(server, "/_matrix/federation/v1/query/profile", field ? { user_id: userId, field } : { user_id: userId });
      return res;
    } catch (e) {
      if (e instanceof FederationError && e.status === 404) throw notFound("Profile not found");
      if (e instanceof FederationError && e.status === 403) throw forbidden("Profile lookup is disabled on that server");
      throw new MatrixError(502, "M_UNKNOWN", `Could not get the profile from ${server}: ${(e as Error).message}`);
    }
  }

  /** Resolves another server's room alias (GET /query/directory on the alias's server). */
  async queryAlias(alias: string): Promise<{ roomId: string; servers: string[] }> {
    const server = alias.slice(alias.indexOf(":") + 1);
    let res: JsonObject;
    try {
      res = await this.deps.client.get(server, "/_matrix/federation/v1/query/directory", { room_alias: alias });
    } catch (e) {
      if (e instanceof FederationError && e.status === 404) throw notFound(`Room alias ${alias} not found`);
      throw new MatrixError(502, "M_UNKNOWN", `Could not resolve ${alias}: ${(e as Error).message}`);
    }
    if (typeof res.room_id !== "string") throw notFound(`Room alias ${alias} not found`);
    const servers = Array.isArray(res.servers) ? res.servers.filter((x): x is string => typeof x === "string") : [];
    return { roomId: res.room_id, servers: [server, ...servers] };
  }

  /**
   * Joins a local user to a room this server is not in: make_join on one of `servers`, sign, send_join, verify
   * the returned state and auth chain, persist them, then the join. Afterwards the room works like a local one.
   */
  async joinRemote(roomId: string, userId: string, servers: string[], content: JsonObject = {}): Promise<void> {
    const candidates = [...new Set(servers)].filter((s) => s !== this.deps.serverName);
    if (candidates.length === 0) throw notFound("No known servers for this room");
    let lastError: unknown;
    for (const server of candidates) {
      try {
        await this.joinVia(server, roomId, userId, content);
        return;
      } catch (e) {
        lastError = e;
        if (e instanceof MatrixError && e.status === 403) throw e;
        this.deps.log.info({ err: e, server, roomId }, "remote join failed; trying the next server");
      }
    }
    if (lastError instanceof FederationError && lastError.status === 403) throw forbidden(lastError.message);
    if (lastError instanceof FederationError && lastError.errcode === "M_INCOMPATIBLE_ROOM_VERSION") {
      throw new MatrixError(400, "M_INCOMPATIBLE_ROOM_VERSION", "This server does not support the room's version");
    }
    // Restricted rooms: "The error should be passed through to clients so that they may give better feedback".
    if (lastError instanceof FederationError && (lastError.errcode === "M_UNABLE_TO_AUTHORISE_JOIN" || lastError.errcode === "M_UNABLE_TO_GRANT_JOIN")) {
      throw new MatrixError(400, lastError.errcode, lastError.message);
    }
    throw new MatrixError(404, "M_NOT_FOUND", `Could not join the room through any server: ${(lastError as Error | undefined)?.message ?? "no servers"}`);
  }

  /**
   * Rejects an invite (or withdraws a knock) to a room this server is not in: make_leave/send_leave through the
   * server that sent it, then the leave replaces the user's out-of-band membership.
   */
  async leaveRemote(roomId: string, userId: string, servers: string[], reason?: string): Promise<void> {
    let lastError: unknown;
    for (const server of [...new Set(servers)].filter((s) => s !== this.deps.serverName)) {
      try {
        const made = await this.deps.client.get(server, encodePath`/_matrix/federation/v1/make_leave/${roomId}/${userId}`);
        const version = getRoomVersion(typeof made.room_version === "string" ? made.room_version : "1");
        const template = made.event;
        if (!version || !isJsonObject(template) || template.room_id !== roomId || template.state_key !== userId) throw new Error(`${server} answered make_leave with an invalid template`);
        const content: JsonObject = { membership: "leave" };
        if (reason !== undefined) content.reason = reason;
        const pdu: JsonObject = { ...template, content, hashes: {} };
        delete pdu.signatures;
        delete pdu.unsigned;
        if (version.eventIdFormat === "v1") pdu.event_id = generateLocalEventId(this.deps.serverName);
        const signed = signNewEvent(version, pdu, this.deps.serverName, this.deps.signingKey);
        await this.deps.client.put(server, encodePath`/_matrix/federation/v2/send_leave/${roomId}/${signed.eventId}`, signed.pdu);
        const event = trustedEvent(signed.eventId, roomId, signed.pdu);
        await this.deps.persister.persistOutOfBand(event, version, userId);
        return;
      } catch (e) {
        lastError = e;
      }
    }
    throw new MatrixError(502, "M_UNKNOWN", `Could not leave the room through any server: ${(lastError as Error | undefined)?.message ?? "no servers"}`);
  }

  /**
   * Knocks on a room this server is not in (spec "Knocking upon a room"): make_knock/send_knock through a resident
   * server; the knock is kept as the user's out-of-band membership with the room's stripped state (`knock_state`).
   */
  async knockRemote(roomId: string, userId: string, servers: string[], content: JsonObject): Promise<void> {
    const candidates = [...new Set(servers)].filter((s) => s !== this.deps.serverName);
    if (candidates.length === 0) throw notFound("No known servers for this room");
    let lastError: unknown;
    for (const server of candidates) {
      let made: JsonObject;
      try {
        made = await this.deps.client.get(server, encodePath`/_matrix/federation/v1/make_knock/${roomId}/${userId}`, { ver: [...ROOM_VERSIONS.keys()] });
      } catch (e) {
        // "The room that the knocking server is attempting to knock upon does not permit the user to knock": final.
        if (e instanceof FederationError && e.status === 403) throw forbidden(e.message);
        if (e instanceof FederationError && e.errcode === "M_INCOMPATIBLE_ROOM_VERSION") throw new MatrixError(400, "M_INCOMPATIBLE_ROOM_VERSION", "This server does not support the room's version");
        lastError = e;
        continue;
      }
      const version = getRoomVersion(typeof made.room_version === "string" ? made.room_version : "1");
      const template = made.event;
      if (!version || !version.knocking || !isJsonObject(template) || template.room_id !== roomId || template.sender !== userId || template.state_key !== userId || template.type !== "m.room.member") {
        lastError = new Error(`${server} answered make_knock with an invalid template`);
        continue;
      }
      const pdu: JsonObject = { ...template, content: { ...content, membership: "knock" }, hashes: {} };
      delete pdu.signatures;
      delete pdu.unsigned;
      const signed = signNewEvent(version, pdu, this.deps.serverName, this.deps.signingKey);
      let res: JsonObject;
      try {
        res = await this.deps.client.put(server, encodePath`/_matrix/federation/v1/send_knock/${roomId}/${signed.eventId}`, signed.pdu);
      } catch (e) {
        if (e instanceof FederationError && e.status === 403) throw forbidden(e.message);
        lastError = e;
        continue;
      }
      const stripped = (Array.isArray(res.knock_room_state) ? res.knock_room_state : []).filter(isJsonObject);
      const create = stripped.find((e) => e.type === "m.room.create");
      const creator = typeof create?.sender === "string" ? create.sender : userId;
      await this.deps.persister.persistOutOfBand(trustedEvent(signed.eventId, roomId, signed.pdu), version, creator, stripped);
      return;
    }
    throw new MatrixError(404, "M_NOT_FOUND", `Could not knock on the room through any server: ${(lastError as Error | undefined)?.message ?? "no servers"}`);
  }

  private async joinVia(server: string, roomId: string, userId: string, content: JsonObject): Promise<void> {
    let made: JsonObject;
    try {
      made = await this.deps.client.get(server, encodePath`/_matrix/federation/v1/make_join/${roomId}/${userId}`, { ver: [...ROOM_VERSIONS.keys()] });
    } catch (e) {
      if (e instanceof FederationError && e.status === 403) throw forbidden(e.message);
      throw e;
    }
    const version = getRoomVersion(typeof made.room_version === "string" ? made.room_version : "1");
    if (!version) throw new MatrixError(400, "M_INCOMPATIBLE_ROOM_VERSION", `Unsupported room version ${String(made.room_version)}`);
    const template = made.event;
    if (!isJsonObject(template) || template.room_id !== roomId || template.sender !== userId || template.state_key !== userId || template.type !== "m.room.member") {
      throw new MatrixError(502, "M_UNKNOWN", `${server} answered make_join with an invalid template`);
    }
    const tContent = isJsonObject(template.content) ? template.content : {};
    const pdu: JsonObject = { ...template, content: { ...tContent, ...(await this.deps.profileOf(userId)), ...content, membership: "join" }, hashes: {} };
    delete pdu.signatures;
    delete pdu.unsigned;
    if (version.eventIdFormat === "v1") pdu.event_id = generateLocalEventId(this.deps.serverName);
    const signed = signNewEvent(version, pdu, this.deps.serverName, this.deps.signingKey);

    const res = await this.deps.client.put(server, encodePath`/_matrix/federation/v2/send_join/${roomId}/${signed.eventId}`, signed.pdu, { timeoutMs: 120_000 });
    // A restricted join comes back signed by the resident server: use that copy.
    const joinPdu = isJsonObject(res.event) ? res.event : signed.pdu;
    const statePdus = Array.isArray(res.state) ? res.state : [];
    const authPdus = Array.isArray(res.auth_chain) ? res.auth_chain : [];
    const create = [...statePdus, ...authPdus].find((p) => isJsonObject(p) && p.type === "m.room.create" && p.state_key === "");
    if (!isJsonObject(create) || typeof create.sender !== "string") throw new MatrixError(502, "M_UNKNOWN", `${server} answered send_join without the room's create event`);
    await this.deps.persister.ensureRoom(roomId, version, create.sender);
    await this.deps.pdus.storeOutliers(version, [...authPdus, ...statePdus]);
    // The state before our join: the state PDUs that passed the checks and were stored.
    const stateIds = statePdus.filter(isJsonObject).map((p) => eventIdOfPdu(version, p)).filter((id): id is string => id !== undefined);
    const stored = await this.deps.events.getMany(stateIds);
    const stateBefore: StateMap = new Map();
    for (const e of stored.values()) {
      if (e.event.state_key !== undefined && !e.rejected) stateBefore.set(stateMapKey(e.event.type, e.event.state_key), e.event.event_id);
    }
    const join = await this.deps.pdus.check(version, joinPdu);
    if (join.event_id !== signed.eventId) throw new MatrixError(502, "M_UNKNOWN", `${server} returned a different join event`);
    const r = await this.deps.persister.persistReceived(join, { stateBefore });
    if (r.status === "rejected") throw forbidden("The join was not allowed by the room's authorization rules");
  }
}

/** A PDU's event id (given in v1/v2, the reference hash otherwise), or undefined when it cannot be computed. */
function eventIdOfPdu(version: RoomVersion, pdu: JsonObject): string | undefined {
  try {
    return eventIdOf(version, pdu);
  } catch {
    return undefined;
  }
}

/** An event as other servers get it: the stored PDU, redacted when a redaction applies. */
export function federationPdu(e: StoredEvent): JsonObject {
  const { unsigned: _u, ...pdu } = e.redactedBy ? redactPdu(e.version, e.event.pdu) : e.event.pdu;
  return pdu;
}
