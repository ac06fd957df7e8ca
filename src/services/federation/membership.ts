/**
 * Membership across servers (server-server API, "Joining Rooms", "Leaving Rooms", "Knocking upon a room"): the
 * resident server's side (make_* hands out a template, send_* accepts the signed event, persists it and relays it to
 * the room's other servers) and the joining server's side (join a room this server is not in yet).
 */
import type { Logger } from "pino";
import { stateMapKey, type Event, type StateMap } from "../../core/events/event.js";
import { computeReferenceHash } from "../../core/events/hashes.js";
import { eventIdOf, generateLocalEventId } from "../../core/events/ids.js";
import { redactPdu } from "../../core/events/redaction.js";
import { signNewEvent } from "../../core/events/signing.js";
import type { SigningKey } from "../../core/crypto/ed25519.js";
import { signJson } from "../../core/crypto/signing.js";
import { userIdDomain } from "../../core/ids/ids.js";
import { encodeBase64 } from "../../core/json/base64.js";
import { isJsonObject, type JsonObject, type JsonValue } from "../../core/json/types.js";
import { getRoomVersion, ROOM_VERSIONS, type RoomVersion } from "../../core/rooms/versions.js";
import { MatrixError, forbidden, notFound } from "../../errors.js";
import { encodePath, type FederationClient } from "../../federation/client.js";
import { FederationError, isRemoteRefusal, isUnknownEndpoint } from "../../federation/errors.js";
import type { EventCache, StoredEvent } from "../rooms/event_cache.js";
import { trustedEvent } from "../rooms/event_cache.js";
import type { EventPersister } from "../rooms/persister.js";
import { PduError, type FederationPdus } from "./pdus.js";
import { authChainOf } from "./reads.js";
import type { FederationSender } from "./sender.js";

type Membership = "join" | "leave" | "knock";

/**
 * Refusals of make_* after which the next server is tried rather than the refusal passed to the client (Synapse's
 * failover_errcodes): the server does not know the room, or (restricted rooms) cannot vouch for the join.
 */
const MAKE_FAILOVER = new Set(["M_NOT_FOUND", "M_UNABLE_TO_AUTHORISE_JOIN", "M_UNABLE_TO_GRANT_JOIN"]);
const SEND_JOIN_FAILOVER = new Set(["M_UNABLE_TO_AUTHORISE_JOIN", "M_UNABLE_TO_GRANT_JOIN"]);

/**
 * A remote server's refusal as our answer to the client, as Synapse passes it through: its status, errcode, message
 * and any other fields (`room_version` of M_INCOMPATIBLE_ROOM_VERSION…).
 */
function passThrough(e: FederationError): MatrixError {
  const body = isJsonObject(e.details.body) ? e.details.body : {};
  const { errcode: _c, error, ...extra } = body;
  // Except a 401: between servers it means our request's signature, to a client "your access token" (403 instead).
  const status = e.status === 401 ? 403 : (e.status ?? 502);
  return new MatrixError(status, e.errcode ?? "M_UNKNOWN", typeof error === "string" ? error : e.message, extra);
}

/** A PduError from a received membership event as the request's answer: 403 for signatures, 400 for format. */
function pduRefusal(e: unknown): unknown {
  if (!(e instanceof PduError)) return e;
  return e.kind === "signature" ? forbidden(e.message) : new MatrixError(400, "M_BAD_JSON", e.message);
}

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
    // A room all our users have left is one we can no longer vouch for, nor relay a join into: as Synapse, 404.
    if (membership === "join" && !(await this.deps.serversInRoom(roomId)).includes(this.deps.serverName)) throw notFound("Not an active room on this server");
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
    // As Synapse: the format first (400 M_BAD_JSON, e.g. a float in a v6+ room), then what the event is for, then
    // its signatures and hashes (403 M_FORBIDDEN: an unsigned or badly signed join is refused, not malformed).
    let event: Event;
    try {
      event = this.deps.pdus.parse(version, pdu);
    } catch (e) {
      throw pduRefusal(e);
    }
    if (event.event_id !== eventId) throw new MatrixError(400, "M_BAD_JSON", "Event ID does not match the request path");
    if (event.room_id !== roomId) throw new MatrixError(400, "M_BAD_JSON", "Event is for another room");
    if (event.type !== "m.room.member" || event.content.membership !== membership) throw new MatrixError(400, "M_BAD_JSON", `Not a ${membership} event`);
    if (event.state_key !== event.sender) throw new MatrixError(400, "M_BAD_JSON", "state_key must be the sender");
    if (userIdDomain(event.sender) !== origin) throw forbidden(`The ${membership} event's sender is not from ${origin}`);
    try {
      event = await this.deps.pdus.verify(version, event, vouched ? this.deps.serverName : undefined);
    } catch (e) {
      throw pduRefusal(e);
    }
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

  /**
   * The state before an event and the auth chain of that state, as PDUs (the send_join response). "auth_chain: The
   * auth chain for the entire current room state prior to the join event": every auth event of the state,
   * recursively, whether or not it is also in `state` (in a small room nearly all of it is).
   */
  async stateAndAuthChain(stored: StoredEvent): Promise<{ state: JsonObject[]; authChain: JsonObject[] }> {
    const after = stored.stateGroup !== null ? await this.deps.persister.stateOfGroup(stored.stateGroup) : new Map<string, string>();
    const before = new Map(after);
    if (stored.event.state_key !== undefined) {
      const key = stateMapKey(stored.event.type, stored.event.state_key);
      if (stored.replacesState === null) before.delete(key);
      else before.set(key, stored.replacesState);
    }
    const stateEvents = [...(await this.deps.events.getMany([...before.values()])).values()];
    const chain = await authChainOf(this.deps.events, stored.event.room_id, stateEvents);
    return { state: stateEvents.map(federationPdu), authChain: chain.map(federationPdu) };
  }

  /** Stripped state for a knock (and invites): the room's basic state events, as {type, state_key, sender, content}. */
  async strippedState(roomId: string, sender?: string): Promise<JsonObject[]> {
    const head = await this.deps.persister.head(roomId);
    if (!head) return [];
    const types = ["m.room.create", "m.room.join_rules", "m.room.name", "m.room.avatar", "m.room.canonical_alias", "m.room.encryption", "m.room.topic"];
    const keys = types.map((t) => stateMapKey(t, ""));
    // As Synapse: the inviter's own membership too, so the invitee's client can show who invited them.
    if (sender !== undefined) keys.push(stateMapKey("m.room.member", sender));
    const ids = keys.map((k) => head.state.get(k)).filter((x): x is string => x !== undefined);
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
    // Synapse's order: the format (400), the room's server ACL (403, before anything else about the invite), the
    // signatures (403), then the invitee.
    let event: Event;
    try {
      event = this.deps.pdus.parse(version, pdu);
    } catch (e) {
      throw pduRefusal(e);
    }
    if (await this.deps.persister.head(roomId)) await this.deps.checkAcl(origin, roomId);
    if (event.event_id !== eventId || event.room_id !== roomId) throw new MatrixError(400, "M_BAD_JSON", "Event does not match the request path");
    if (event.type !== "m.room.member" || event.content.membership !== "invite" || event.state_key === undefined) throw new MatrixError(400, "M_BAD_JSON", "Not an invite event");
    if (userIdDomain(event.sender) !== origin) throw forbidden("The inviter is not from the sending server");
    try {
      event = await this.deps.pdus.verify(version, event);
    } catch (e) {
      throw pduRefusal(e);
    }
    // As Synapse, the invitee only has to be of this server: whether such a user exists is not for the inviting
    // server to learn (the spec lists no "unknown user" answer), and an invite nobody reads harms no one.
    if (userIdDomain(event.state_key!) !== this.deps.serverName) throw new MatrixError(400, "M_INVALID_PARAM", "The invite event must be for this server");
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
    const refused = (e: unknown): MatrixError => {
      if (e instanceof MatrixError) return e;
      if (isRemoteRefusal(e)) return new MatrixError(e.status === 404 ? 404 : 403, e.status === 404 ? "M_NOT_FOUND" : "M_FORBIDDEN", `${server} refused the invite: ${e.message}`);
      return new MatrixError(502, "M_UNKNOWN", `Could not reach ${server} to invite: ${(e as Error).message}`);
    };
    let res: JsonObject;
    try {
      res = await this.deps.client.put(server, encodePath`/_matrix/federation/v2/invite/${event.room_id}/${event.event_id}`, {
        room_version: version.id,
        event: pdu,
        invite_room_state: strippedState,
      });
    } catch (e) {
      if (!isUnknownEndpoint(e)) throw refused(e);
      // As Synapse: a server without /v2/invite gets the v1 form, which only carries rooms with v1-format events.
      if (version.eventIdFormat !== "v1") throw new MatrixError(400, "M_UNSUPPORTED_ROOM_VERSION", "The invitee's homeserver does not support this room version");
      try {
        res = await this.deps.client.putV1(server, encodePath`/_matrix/federation/v1/invite/${event.room_id}/${event.event_id}`, {
          ...pdu,
          unsigned: { invite_room_state: strippedState },
        });
      } catch (e1) {
        throw refused(e1);
      }
    }
    // As Synapse: an invite that comes back malformed (a float in a v6+ room…) is 400 M_BAD_JSON, one not signed as
    // it must be 403 M_FORBIDDEN.
    const returned = await this.deps.pdus.check(version, res.event).catch((e: unknown) => {
      if (e instanceof PduError) throw e.kind === "signature" ? forbidden(`${server} returned an invite not signed as it must be: ${e.message}`) : new MatrixError(400, "M_BAD_JSON", `${server} returned an invalid invite: ${e.message}`);
      throw e;
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
   *
   * As Synapse: a server that is down, answers 5xx or something invalid, or does not know the room (M_NOT_FOUND;
   * for restricted rooms, cannot vouch for the join) makes us try the next one; any other refusal is final and
   * reaches the client as the remote server gave it (status, errcode, `room_version`…).
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
        // Our own verdicts (the auth rules, a passed-through refusal, an unsupported room version) are final.
        if (e instanceof MatrixError) throw e;
        lastError = e;
        this.deps.log.info({ err: e, server, roomId }, "remote join failed; trying the next server");
      }
    }
    // Restricted rooms: "The error should be passed through to clients so that they may give better feedback".
    if (isRemoteRefusal(lastError) && SEND_JOIN_FAILOVER.has(lastError.errcode ?? "")) throw new MatrixError(400, lastError.errcode!, lastError.message);
    throw new MatrixError(404, "M_NOT_FOUND", `Could not join the room through any server: ${(lastError as Error | undefined)?.message ?? "no servers"}`);
  }

  /**
   * Rejects an invite (or withdraws a knock) to a room this server is not in: make_leave/send_leave through the
   * server that sent it, then the leave replaces the user's out-of-band membership.
   */
  async leaveRemote(roomId: string, userId: string, servers: string[], reason?: string, inviteEventId?: string): Promise<void> {
    let lastError: unknown;
    for (const server of [...new Set(servers)].filter((s) => s !== this.deps.serverName)) {
      try {
        const { version, template } = await this.makeMembership(server, "leave", roomId, userId, { passRefusals: false });
        const content: JsonObject = { membership: "leave" };
        if (reason !== undefined) content.reason = reason;
        const signed = this.eventFromTemplate(server, "leave", version, template, content);
        await this.sendMembership(server, "leave", roomId, signed.eventId, signed.pdu);
        const event = trustedEvent(signed.eventId, roomId, signed.pdu);
        await this.deps.persister.persistOutOfBand(event, version, userId);
        return;
      } catch (e) {
        lastError = e;
      }
    }
    // As Synapse: an invite whose servers will not (or cannot) take the rejection is rejected here alone, with a
    // leave of our own on top of the invite, so the user is not stuck with it. A knock has no such fallback.
    if (inviteEventId !== undefined && (await this.localRejection(roomId, userId, inviteEventId, reason))) {
      this.deps.log.info({ err: lastError, roomId, userId }, "could not reject the invite through any server; rejected it locally");
      return;
    }
    throw new MatrixError(502, "M_UNKNOWN", `Could not leave the room through any server: ${(lastError as Error | undefined)?.message ?? "no servers"}`);
  }

  /**
   * An out-of-band leave built on the invite alone (its only prev and auth event), signed by us and kept as the
   * user's membership; no other server sees it. False when the invite is not there to build on.
   */
  private async localRejection(roomId: string, userId: string, inviteEventId: string, reason: string | undefined): Promise<boolean> {
    const invite = await this.deps.events.get(inviteEventId);
    if (!invite || invite.event.room_id !== roomId || invite.event.state_key !== userId) return false;
    const version = invite.version;
    const content: JsonObject = { membership: "leave" };
    if (reason !== undefined) content.reason = reason;
    const ref: JsonValue = version.eventIdFormat === "v1" ? [inviteEventId, { sha256: encodeBase64(computeReferenceHash(version, invite.event.pdu)) }] : inviteEventId;
    const pdu: JsonObject = {
      type: "m.room.member",
      room_id: roomId,
      sender: userId,
      state_key: userId,
      content,
      prev_events: [ref],
      auth_events: [ref],
      depth: invite.event.depth + 1,
      origin_server_ts: Date.now(),
      hashes: {},
    };
    if (version.legacyOriginField) pdu.origin = this.deps.serverName;
    if (version.eventIdFormat === "v1") pdu.event_id = generateLocalEventId(this.deps.serverName);
    const signed = signNewEvent(version, pdu, this.deps.serverName, this.deps.signingKey);
    await this.deps.persister.persistOutOfBand(trustedEvent(signed.eventId, roomId, signed.pdu), version, userId);
    return true;
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
      try {
        const { version, template } = await this.makeMembership(server, "knock", roomId, userId);
        if (!version.knocking) throw new FederationError("invalid_response", server, `make_knock answered room version ${version.id}, which has no knocking`);
        const signed = this.eventFromTemplate(server, "knock", version, template, { ...content, membership: "knock" });
        const res = await this.sendMembership(server, "knock", roomId, signed.eventId, signed.pdu);
        const stripped = (Array.isArray(res.knock_room_state) ? res.knock_room_state : []).filter(isJsonObject);
        const create = stripped.find((e) => e.type === "m.room.create");
        const creator = typeof create?.sender === "string" ? create.sender : userId;
        await this.deps.persister.persistOutOfBand(trustedEvent(signed.eventId, roomId, signed.pdu), version, creator, stripped);
        return;
      } catch (e) {
        if (e instanceof MatrixError) throw e;
        lastError = e;
      }
    }
    throw new MatrixError(404, "M_NOT_FOUND", `Could not knock on the room through any server: ${(lastError as Error | undefined)?.message ?? "no servers"}`);
  }

  /**
   * GET make_{membership} on `server`: the room version and the template. A refusal other than M_NOT_FOUND (and,
   * for joins, the restricted-room codes) becomes the client's answer unless `passRefusals` is false; an unknown
   * room version is M_INCOMPATIBLE_ROOM_VERSION with it.
   */
  private async makeMembership(
    server: string,
    membership: Membership,
    roomId: string,
    userId: string,
    opts: { passRefusals?: boolean } = {},
  ): Promise<{ version: RoomVersion; template: JsonObject }> {
    let made: JsonObject;
    try {
      made = await this.deps.client.get(
        server,
        encodePath`/_matrix/federation/v1/make_${membership}/${roomId}/${userId}`,
        membership === "leave" ? undefined : { ver: [...ROOM_VERSIONS.keys()] },
      );
    } catch (e) {
      if ((opts.passRefusals ?? true) && isRemoteRefusal(e) && !MAKE_FAILOVER.has(e.errcode ?? "")) throw passThrough(e);
      throw e;
    }
    // "room_version: The version of the room where the server is trying to join. If not provided, the room version is assumed to be either "1" or "2"."
    const versionId = typeof made.room_version === "string" ? made.room_version : "1";
    const version = getRoomVersion(versionId);
    if (!version) throw new MatrixError(400, "M_INCOMPATIBLE_ROOM_VERSION", `This server does not support room version ${versionId}`, { room_version: versionId });
    const template = made.event;
    if (!isJsonObject(template) || template.room_id !== roomId || template.state_key !== userId || template.type !== "m.room.member" || (membership !== "leave" && template.sender !== userId)) {
      throw new FederationError("invalid_response", server, `make_${membership} answered an invalid template`);
    }
    return { version, template };
  }

  /**
   * Our membership event from a resident's template (spec: the joining server fills in what makes the event its
   * own), as Synapse's create_local_event_from_event_dict: the content we choose; `origin_server_ts` when the
   * template has none; a v1/v2 event id of ours; our hashes and signature. The template's `signatures` and
   * `unsigned` go; its `origin` names the resident, so we "add or replace" it with ours (spec, "Joining Rooms") in
   * the room versions whose events still carry one, and drop it from v11 on. A template that does not make a valid
   * event is the resident's fault.
   *
   * `check: "later"` (joins) signs the template without checking the event's format first: the spec has the joining
   * server check only `type`, `room_id`, `sender`, `state_key` and `content.membership` before it signs and sends
   * the event, and the resident judges the rest in send_join (as Synapse, which signs what the template gives). The
   * caller then checks the event before it keeps anything, after the send_join answer (which may show the room to be
   * of another version than make_join said). A leave or knock is kept as it is signed here, so it is checked now.
   */
  private eventFromTemplate(server: string, membership: Membership, version: RoomVersion, template: JsonObject, content: JsonObject, check: "now" | "later" = "now"): { eventId: string; pdu: JsonObject } {
    const pdu: JsonObject = { ...template, content, hashes: {} };
    delete pdu.signatures;
    delete pdu.unsigned;
    delete pdu.origin;
    if (version.legacyOriginField) pdu.origin = this.deps.serverName;
    if (typeof pdu.origin_server_ts !== "number" || !Number.isSafeInteger(pdu.origin_server_ts)) pdu.origin_server_ts = Date.now();
    if (version.eventIdFormat === "v1") pdu.event_id = generateLocalEventId(this.deps.serverName);
    let signed: { eventId: string; pdu: JsonObject };
    try {
      signed = signNewEvent(version, pdu, this.deps.serverName, this.deps.signingKey);
      if (check === "now") this.deps.pdus.parse(version, signed.pdu);
    } catch (e) {
      throw this.invalidTemplate(server, membership, e);
    }
    return signed;
  }

  private invalidTemplate(server: string, membership: Membership, e: unknown): FederationError {
    return new FederationError("invalid_response", server, `make_${membership} answered a template that makes no valid event: ${(e as Error).message}`);
  }

  /**
   * PUT send_{membership}: v2, falling back to v1 (which answers `[200, {…}]`) when the server does not know v2,
   * as Synapse does (404/405 without a Matrix error, or M_UNRECOGNIZED). Knocks only have v1. A refusal of a join
   * (other than the restricted-room codes) or of a knock is passed through to the client.
   */
  private async sendMembership(server: string, membership: Membership, roomId: string, eventId: string, pdu: JsonObject): Promise<JsonObject> {
    const opts = membership === "join" ? { timeoutMs: 120_000 } : {};
    const refusal = (e: unknown): unknown =>
      isRemoteRefusal(e) && (membership === "knock" || (membership === "join" && !SEND_JOIN_FAILOVER.has(e.errcode ?? ""))) ? passThrough(e) : e;
    if (membership !== "knock") {
      try {
        return await this.deps.client.put(server, encodePath`/_matrix/federation/v2/send_${membership}/${roomId}/${eventId}`, pdu, opts);
      } catch (e) {
        if (!isUnknownEndpoint(e)) throw refusal(e);
        this.deps.log.debug({ server, roomId }, `no /v2/send_${membership} there; falling back to v1`);
      }
    }
    try {
      return membership === "knock"
        ? await this.deps.client.put(server, encodePath`/_matrix/federation/v1/send_knock/${roomId}/${eventId}`, pdu, opts)
        : await this.deps.client.putV1(server, encodePath`/_matrix/federation/v1/send_${membership}/${roomId}/${eventId}`, pdu, opts);
    } catch (e) {
      throw refusal(e);
    }
  }

  private async joinVia(server: string, roomId: string, userId: string, content: JsonObject): Promise<void> {
    const { version, template } = await this.makeMembership(server, "join", roomId, userId);
    const tContent = isJsonObject(template.content) ? template.content : {};
    const signed = this.eventFromTemplate(server, "join", version, template, { ...tContent, ...(await this.deps.profileOf(userId)), ...content, membership: "join" }, "later");
    const res = await this.sendMembership(server, "join", roomId, signed.eventId, signed.pdu);
    // A restricted join comes back signed by the resident server: use that copy.
    const joinPdu = isJsonObject(res.event) ? res.event : signed.pdu;
    const statePdus = Array.isArray(res.state) ? res.state : [];
    const authPdus = Array.isArray(res.auth_chain) ? res.auth_chain : [];
    // As Synapse: the create event must be in the state (MSC3706 lets it be left out of the auth chain, never out of
    // the state), and be for the room version make_join named; otherwise one of the two servers is lying.
    const create = statePdus.find((p) => isJsonObject(p) && p.type === "m.room.create" && p.state_key === "");
    if (!isJsonObject(create) || typeof create.sender !== "string") throw new FederationError("invalid_response", server, "send_join answered without the room's create event in the state");
    const createContent = isJsonObject(create.content) ? create.content : {};
    const createVersion = typeof createContent.room_version === "string" ? createContent.room_version : "1";
    if (createVersion !== version.id) throw new FederationError("invalid_response", server, `send_join answered a create event of room version ${createVersion}, make_join said ${version.id}`);
    try {
      this.deps.pdus.parse(version, signed.pdu);
    } catch (e) {
      throw this.invalidTemplate(server, "join", e);
    }
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
    const r = await this.deps.persister.persistReceived(join, { stateBefore, ownJoin: true });
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
