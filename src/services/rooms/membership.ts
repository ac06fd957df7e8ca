/**
 * Room membership (spec "Room membership"): join, invite, leave, kick, ban, unban, knock, forget — each a
 * m.room.member event checked by the authorization rules, plus the checks the API adds on top (e.g. kicking
 * someone who is not in the room), restricted-room join authorisation, and profile propagation into rooms.
 */
import { stateMapKey, type Event } from "../../core/events/event.js";
import type { RoomVersion } from "../../core/rooms/versions.js";
import { isHistoricalUserId, isValidRoomAlias, isValidRoomId, isValidUserId, userIdDomain } from "../../core/ids/ids.js";
import { isJsonObject, type JsonObject } from "../../core/json/types.js";
import { canInvite } from "../../core/rooms/power_levels.js";
import { MatrixError, forbidden, notFound } from "../../errors.js";
import { canonicalEqual } from "./messages.js";
import type { RoomHead, SendOptions } from "./persister.js";
import type { RoomAccess } from "./rooms.js";

export interface MembershipOptions {
  reason?: string;
  isDirect?: boolean;
}

/** What membership needs from federation: joining rooms this server is not in, and resolving remote aliases. */
export interface RemoteMembership {
  joinRemote(roomId: string, userId: string, servers: string[], content: JsonObject): Promise<void>;
  /** `inviteEventId`: the invite being rejected, which is rejected locally when no server takes the leave. */
  leaveRemote(roomId: string, userId: string, servers: string[], reason?: string, inviteEventId?: string): Promise<void>;
  queryAlias(alias: string): Promise<{ roomId: string; servers: string[] }>;
  knockRemote(roomId: string, userId: string, servers: string[], content: JsonObject): Promise<void>;
  inviteRemote(event: Event, version: RoomVersion, strippedState: JsonObject[]): Promise<Event>;
  /** The stripped state sent with an invite; with `sender`, the inviter's m.room.member event too. */
  strippedState(roomId: string, sender?: string): Promise<JsonObject[]>;
}

export class MembershipService {
  /** Guest kicks in progress, by room (see kickGuests). */
  private readonly guestKicks = new Map<string, Promise<void>>();
  /** Set once federation is wired (server.ts). */
  remote?: RemoteMembership;
  /** After a local user joined a room through another server (room upgrades carry state over then); must not throw. */
  onRemoteJoin?: (roomId: string, userId: string) => Promise<void>;

  /**
   * Application services asked about local users and aliases this server does not know (spec "Query User", "Query
   * Room Alias"): true when one created it, so it is looked up again.
   */
  askAppServices?: { user(userId: string): Promise<boolean>; alias(alias: string): Promise<boolean> };

  constructor(private readonly rooms: RoomAccess) {}

  private get core() {
    return this.rooms.core;
  }

  /** Resolves `!room:server` or `#alias:server` to a room id known here. */
  async resolveRoom(roomIdOrAlias: string): Promise<string> {
    if (roomIdOrAlias.startsWith("#")) {
      if (!isValidRoomAlias(roomIdOrAlias)) throw new MatrixError(400, "M_INVALID_PARAM", "Invalid room alias");
      let r = await this.core.storage.rooms.aliasRoom(roomIdOrAlias);
      if (!r && (await this.askAppServices?.alias(roomIdOrAlias))) r = await this.core.storage.rooms.aliasRoom(roomIdOrAlias);
      if (!r) throw notFound("Room alias not found");
      return r.room_id;
    }
    if (!isValidRoomId(roomIdOrAlias)) throw new MatrixError(400, "M_INVALID_PARAM", `${roomIdOrAlias} was not legal room ID or room alias`);
    return roomIdOrAlias;
  }

  /** The profile fields a member event carries (spec: displayname and avatar_url in m.room.member content). */
  async profileContent(userId: string): Promise<JsonObject> {
    const out: JsonObject = {};
    if (userIdDomain(userId) !== this.core.config.serverName) return out;
    const profile = await this.core.storage.profiles.getAll(userId);
    if (typeof profile.displayname === "string") out.displayname = profile.displayname;
    if (typeof profile.avatar_url === "string") out.avatar_url = profile.avatar_url;
    return out;
  }

  /**
   * Sends a member event. `precheck` runs under the room lock with current state; it may return fields to add to
   * the content (e.g. join_authorised_via_users_server, which depends on that state).
   */
  private async sendMember(
    roomId: string,
    sender: string,
    target: string,
    membership: string,
    extra: JsonObject,
    precheck?: (head: RoomHead) => Promise<JsonObject | void>,
    exchange?: SendOptions["exchange"],
  ): Promise<string> {
    const content: JsonObject = { membership, ...extra };
    // As Synapse: the same membership with the same content from the same sender again is a no-op.
    const head = await this.rooms.headIfKnown(roomId);
    const existing = head ? await this.rooms.stateEvent(head, "m.room.member", target) : undefined;
    if (existing && existing.event.sender === sender && canonicalEqual(existing.event.content, content)) {
      // The API's own checks still apply to a repeat: kicking a user who already left is refused (403), as is
      // unbanning one who is not banned.
      if (precheck && head) await precheck(head);
      return existing.event.event_id;
    }
    const check = precheck
      ? async (head: RoomHead) => {
          const added = await precheck(head);
          if (added) Object.assign(content, added);
        }
      : undefined;
    const e = await this.core.persister.send(roomId, { type: "m.room.member", state_key: target, sender, content }, { precheck: check, exchange });
    return e.event.event_id;
  }

  async joinAsCreator(roomId: string, userId: string): Promise<void> {
    await this.sendMember(roomId, userId, userId, "join", await this.profileContent(userId));
  }

  /** A room id or alias, and the servers to try should the room be on another server (an alias's own first). */
  private async resolveWithServers(roomIdOrAlias: string, via: readonly string[]): Promise<{ roomId: string; servers: string[] }> {
    const servers = [...via];
    const aliasDomain = roomIdOrAlias.startsWith("#") ? roomIdOrAlias.slice(roomIdOrAlias.indexOf(":") + 1) : undefined;
    if (aliasDomain !== undefined && aliasDomain !== this.core.config.serverName && this.remote) {
      if (!isValidRoomAlias(roomIdOrAlias)) throw new MatrixError(400, "M_INVALID_PARAM", "Invalid room alias");
      const found = await this.remote.queryAlias(roomIdOrAlias);
      return { roomId: found.roomId, servers: [...servers, ...found.servers] };
    }
    return { roomId: await this.resolveRoom(roomIdOrAlias), servers };
  }

  /**
   * When this server is not (or no longer) in the room: the servers to ask, `via` first, then the room id's server
   * and any server we knew in the room. Undefined when this server is in the room.
   */
  private async remoteCandidates(roomId: string, via: readonly string[]): Promise<{ via: RemoteMembership; servers: string[] } | undefined> {
    const known = (await this.rooms.headIfKnown(roomId)) ? await this.core.storage.federation.serversInRoom(roomId) : [];
    if (known.includes(this.core.config.serverName)) return undefined;
    if (!this.remote) throw notFound("No known servers for this room");
    const servers = [...via];
    const colon = roomId.indexOf(":");
    if (colon > 0) servers.push(roomId.slice(colon + 1));
    servers.push(...known);
    return { via: this.remote, servers };
  }

  /**
   * POST /join/{roomIdOrAlias} and /rooms/{roomId}/join. Returns the room id. `content`: the request body's other
   * keys, which Synapse puts into the member event (a per-room displayname or avatar_url overrides the profile's).
   * `isGuest`: spec "Guest access": a guest joins only rooms whose m.room.guest_access is `can_join`; its member
   * event says `kind: "guest"` (as Synapse), so that revoking guest access can remove it (see kickGuests).
   */
  async join(roomIdOrAlias: string, userId: string, opts: MembershipOptions & { servers?: string[]; content?: JsonObject; isGuest?: boolean } = {}): Promise<string> {
    const { roomId, servers } = await this.resolveWithServers(roomIdOrAlias, opts.servers ?? []);
    const content: JsonObject = { ...(await this.profileContent(userId)), ...(opts.content ?? {}) };
    delete content.membership;
    // Only the resident server may name the user vouching for a restricted join (as Synapse strips it).
    delete content.join_authorised_via_users_server;
    if (opts.reason !== undefined) content.reason = opts.reason;
    if (opts.isGuest) content.kind = "guest";
    const remote = await this.remoteCandidates(roomId, servers);
    if (remote) {
      // Joining a room this server is not (or no longer) in: make_join/send_join through a server that is.
      // Accepting an invite: the inviter's server is in the room.
      const invited = await this.outOfBandMembership(roomId, userId);
      if (invited) remote.servers.push(invited.sender.slice(invited.sender.indexOf(":") + 1));
      await remote.via.joinRemote(roomId, userId, remote.servers, content);
      // A room's guest access is known only once this server is in it (Synapse refuses guests here for that
      // reason): a guest whose join the room's m.room.guest_access does not allow leaves again at once.
      if (opts.isGuest && (await this.rooms.stateContent(await this.rooms.head(roomId), "m.room.guest_access"))?.guest_access !== "can_join") {
        await this.leave(roomId, userId).catch(() => undefined);
        throw forbidden("Guest access not allowed");
      }
      await this.onRemoteJoin?.(roomId, userId);
      return roomId;
    }
    await this.sendMember(roomId, userId, userId, "join", content, async (h) => {
      const current = await this.rooms.membership(h, userId);
      if (current === "join") return;
      if (current === "ban") throw forbidden("You are banned from this room");
      if (opts.isGuest && (await this.rooms.stateContent(h, "m.room.guest_access"))?.guest_access !== "can_join") throw forbidden("Guest access not allowed");
      const authoriser = await this.restrictedJoinAuthoriser(h, userId, current);
      return authoriser ? { join_authorised_via_users_server: authoriser } : undefined;
    });
    return roomId;
  }


  /**
   * Restricted rooms (v8+, spec "Restricted rooms"): a user who is not invited may join if they are in one of the
   * rooms the join rule allows; a local member with invite power then vouches for the join.
   */
  private async restrictedJoinAuthoriser(head: RoomHead, userId: string, current: string | undefined, forServer = false): Promise<string | undefined> {
    if (!head.version.restrictedJoinRule || current === "invite" || current === "join") return undefined;
    const jr = await this.rooms.stateContent(head, "m.room.join_rules");
    const rule = jr?.join_rule;
    if (rule !== "restricted" && !(rule === "knock_restricted" && head.version.knockRestrictedJoinRule)) return undefined;
    const allow = Array.isArray(jr?.allow) ? jr.allow : [];
    let permitted = false;
    let known = false;
    for (const entry of allow) {
      if (!isJsonObject(entry) || entry.type !== "m.room_membership" || typeof entry.room_id !== "string") continue;
      const other = await this.rooms.headIfKnown(entry.room_id);
      if (!other) continue;
      known = true;
      if ((await this.rooms.membership(other, userId)) === "join") {
        permitted = true;
        break;
      }
    }
    // Server-server API "Restricted rooms": 400 M_UNABLE_TO_AUTHORISE_JOIN when none of the conditions can be
    // checked here (we know none of the rooms), 403 when the user meets none of them.
    if (!permitted && forServer && !known) throw new MatrixError(400, "M_UNABLE_TO_AUTHORISE_JOIN", "This server cannot check the conditions to join this room");
    if (!permitted) throw forbidden("You do not belong to any of the required rooms/spaces to join this room.");
    const power = await this.rooms.powerContext(head);
    const members = await this.core.storage.rooms.members(head.roomId, ["join"]);
    for (const m of members) {
      if (userIdDomain(m.user_id) === this.core.config.serverName && canInvite(power, m.user_id)) return m.user_id;
    }
    // ... and 400 M_UNABLE_TO_GRANT_JOIN when the user qualifies but none of our users may vouch for the join.
    if (forServer) throw new MatrixError(400, "M_UNABLE_TO_GRANT_JOIN", "No user on this server can authorise the join: try another server");
    throw forbidden("No local user in the room can authorise this join");
  }

  /**
   * Another server's user joining through this server (make_join, send_join): for a restricted room, checks the
   * join rule's conditions and names the local member who vouches for the join (`join_authorised_via_users_server`).
   */
  async restrictedJoinForServer(roomId: string, userId: string): Promise<JsonObject | undefined> {
    const head = await this.rooms.headIfKnown(roomId);
    if (!head) return undefined;
    const authoriser = await this.restrictedJoinAuthoriser(head, userId, await this.rooms.membership(head, userId), true);
    return authoriser ? { join_authorised_via_users_server: authoriser } : undefined;
  }

  /** A local user exists, or an application service whose namespace covers it has just created it. */
  async localUserExists(userId: string): Promise<boolean> {
    if (await this.core.storage.users.get(userId)) return true;
    return (await this.askAppServices?.user(userId)) === true && (await this.core.storage.users.get(userId)) !== undefined;
  }

  async invite(roomId: string, inviter: string, target: string, opts: MembershipOptions = {}): Promise<void> {
    // Spec "Historical User IDs": other servers' users may have localparts outside today's grammar (upper case,
    // other printing characters), and events accept them; ours must exist, which only valid ones do.
    if (!isHistoricalUserId(target)) throw new MatrixError(400, "M_INVALID_PARAM", "Invalid user ID");
    if (userIdDomain(target) === this.core.config.serverName && !(await this.localUserExists(target))) throw notFound("Unknown user");
    const content: JsonObject = await this.profileContent(target);
    if (opts.reason !== undefined) content.reason = opts.reason;
    if (opts.isDirect) content.is_direct = true;
    const remote = userIdDomain(target) !== this.core.config.serverName ? this.remote : undefined;
    await this.sendMember(
      roomId,
      inviter,
      target,
      "invite",
      content,
      async (h) => {
        await this.requireMember(h, inviter);
        const current = await this.rooms.membership(h, target);
        if (current === "join") throw forbidden(`${target} is already in the room.`);
        if (current === "ban") throw forbidden(`${target} is banned from the room`);
      },
      // Spec "Inviting to a room": an invitee on another server gets the invite first and signs it.
      remote ? async (event, head) => remote.inviteRemote(event, head.version, await remote.strippedState(head.roomId, event.sender)) : undefined,
    );
  }

  /**
   * An invite redeeming an m.room.third_party_invite (spec auth rule 5.4.1): sent as the third-party invite's sender,
   * who need not be in the room any more; the auth rules check the signed proof.
   */
  async inviteByThirdParty(roomId: string, sender: string, target: string, thirdPartyInvite: JsonObject): Promise<void> {
    if (!isHistoricalUserId(target)) throw new MatrixError(400, "M_INVALID_PARAM", "Invalid user ID");
    const content: JsonObject = { ...(await this.profileContent(target)), third_party_invite: thirdPartyInvite };
    const remote = userIdDomain(target) !== this.core.config.serverName ? this.remote : undefined;
    await this.sendMember(
      roomId,
      sender,
      target,
      "invite",
      content,
      async (h) => {
        const current = await this.rooms.membership(h, target);
        if (current === "join") throw forbidden(`${target} is already in the room.`);
        if (current === "ban") throw forbidden(`${target} is banned from the room`);
      },
      remote ? async (event, head) => remote.inviteRemote(event, head.version, await remote.strippedState(head.roomId, event.sender)) : undefined,
    );
  }

  async leave(roomId: string, userId: string, opts: MembershipOptions = {}): Promise<void> {
    const content: JsonObject = {};
    if (opts.reason !== undefined) content.reason = opts.reason;
    const head = await this.rooms.headIfKnown(roomId);
    const inRoom = head ? (await this.core.storage.federation.serversInRoom(roomId)).includes(this.core.config.serverName) : false;
    // As Synapse: an invite from a local user to a room whose local members have all left since is rejected here,
    // on the room's DAG this server still has (and sent on to any other server still in the room).
    const current = inRoom ? undefined : await this.outOfBandMembership(roomId, userId);
    const localInvite = head !== undefined && current?.membership === "invite" && userIdDomain(current.sender) === this.core.config.serverName;
    if (!inRoom && !localInvite) {
      // An invite or knock for a room this server is not in is rejected through the server it came from.
      // As Synapse: without a pending invite or knock, a room this server is not in is "Not a known room".
      if (!current || (current.membership !== "invite" && current.membership !== "knock") || !this.remote) throw notFound("Not a known room");
      const servers = [current.sender.slice(current.sender.indexOf(":") + 1)];
      const colon = roomId.indexOf(":");
      if (colon > 0) servers.push(roomId.slice(colon + 1));
      // A knock was sent by the user: the servers of the room's stripped state know the room (v12 ids name none).
      const stripped = await this.core.storage.events.strippedState(current.eventId);
      for (const e of stripped ?? []) {
        const sender = isJsonObject(e) && typeof e.sender === "string" ? e.sender : undefined;
        if (sender?.includes(":")) servers.push(sender.slice(sender.indexOf(":") + 1));
      }
      await this.remote.leaveRemote(roomId, userId, servers, opts.reason, current.membership === "invite" ? current.eventId : undefined);
      return;
    }
    await this.sendMember(roomId, userId, userId, "leave", content, async (h) => {
      const current = await this.rooms.membership(h, userId);
      if (current !== "join" && current !== "invite" && current !== "knock") throw forbidden(`User ${userId} is not in room ${roomId}`);
    });
    // Leaving un-forgets nothing; but a room left and forgotten earlier stays forgotten until rejoined.
  }

  async kick(roomId: string, sender: string, target: string, opts: MembershipOptions = {}): Promise<void> {
    const content: JsonObject = {};
    if (opts.reason !== undefined) content.reason = opts.reason;
    await this.sendMember(roomId, sender, target, "leave", content, async (h) => {
      await this.requireMember(h, sender);
      const current = await this.rooms.membership(h, target);
      if (current !== "join" && current !== "invite" && current !== "knock") throw forbidden(`${target} is not in the room`);
    });
  }

  async ban(roomId: string, sender: string, target: string, opts: MembershipOptions = {}): Promise<void> {
    if (!isValidUserId(target) && !target.startsWith("@")) throw new MatrixError(400, "M_INVALID_PARAM", "Invalid user ID");
    const content: JsonObject = {};
    if (opts.reason !== undefined) content.reason = opts.reason;
    await this.sendMember(roomId, sender, target, "ban", content, async (h) => {
      await this.requireMember(h, sender);
    });
  }

  async unban(roomId: string, sender: string, target: string, opts: MembershipOptions = {}): Promise<void> {
    const content: JsonObject = {};
    if (opts.reason !== undefined) content.reason = opts.reason;
    await this.sendMember(roomId, sender, target, "leave", content, async (h) => {
      await this.requireMember(h, sender);
      if ((await this.rooms.membership(h, target)) !== "ban") throw forbidden(`${target} is not banned`);
    });
  }

  async knock(roomIdOrAlias: string, userId: string, opts: MembershipOptions & { servers?: string[] } = {}): Promise<string> {
    const { roomId, servers } = await this.resolveWithServers(roomIdOrAlias, opts.servers ?? []);
    const content = await this.profileContent(userId);
    if (opts.reason !== undefined) content.reason = opts.reason;
    const remote = await this.remoteCandidates(roomId, servers);
    if (remote) {
      // Spec "Knocking upon a room": make_knock/send_knock through a server that is in the room.
      await remote.via.knockRemote(roomId, userId, remote.servers, content);
      return roomId;
    }
    const head = (await this.rooms.headIfKnown(roomId))!;
    if (!head.version.knocking) throw forbidden(`Room version ${head.version.id} does not support knocking`);
    await this.sendMember(roomId, userId, userId, "knock", content, async (h) => {
      const current = await this.rooms.membership(h, userId);
      if (current === "join") throw forbidden("You are already in the room");
      if (current === "invite") throw forbidden("You are already invited to the room");
      if (current === "ban") throw forbidden("You are banned from this room");
    });
    return roomId;
  }

  /** POST /rooms/{roomId}/forget: only once the user has left (spec: 400 M_UNKNOWN while still joined). */
  async forget(roomId: string, userId: string): Promise<void> {
    const head = await this.rooms.headIfKnown(roomId);
    if (!head) throw notFound("Unknown room");
    const current = await this.rooms.membership(head, userId);
    if (current === "join" || current === "invite" || current === "knock") throw new MatrixError(400, "M_UNKNOWN", "User must leave the room before forgetting it");
    if (current === undefined) throw notFound("You have never been in this room");
    await this.core.storage.rooms.forget(userId, roomId);
    this.core.userRooms.forgotten(userId);
  }

  async joinedRooms(userId: string): Promise<string[]> {
    return (await this.core.storage.rooms.roomsForUser(userId, ["join"])).map((r) => r.room_id);
  }

  /** A new displayname/avatar_url becomes a new m.room.member event in every room the user is joined to. */
  async propagateProfile(userId: string): Promise<void> {
    const profile = await this.profileContent(userId);
    for (const roomId of await this.joinedRooms(userId)) {
      try {
        const head = await this.rooms.head(roomId);
        const current = await this.rooms.stateEvent(head, "m.room.member", userId);
        const content: JsonObject = { ...(current?.event.content ?? {}), membership: "join" };
        delete content.displayname;
        delete content.avatar_url;
        Object.assign(content, profile);
        delete content.join_authorised_via_users_server;
        await this.core.persister.send(roomId, { type: "m.room.member", state_key: userId, sender: userId, content });
      } catch {
        // A room where the update is not allowed (e.g. the user was kicked meanwhile) is skipped.
      }
    }
  }

  /**
   * As Synapse, once a room's m.room.guest_access is no longer `can_join`: this server's guests (member events
   * with `kind: "guest"`) joined or invited there leave, as themselves (no power levels involved).
   */
  /**
   * This server's guests leave a room whose guest access is no longer `can_join`. One run per room at a time: the
   * event consumer starts it at commit, and the client that revoked access waits for the same run (so its next read
   * sees the guests gone, as in Synapse).
   */
  kickGuests(roomId: string): Promise<void> {
    let run = this.guestKicks.get(roomId);
    if (!run) {
      run = this.kickGuestsOnce(roomId).finally(() => this.guestKicks.delete(roomId));
      this.guestKicks.set(roomId, run);
    }
    return run;
  }

  private async kickGuestsOnce(roomId: string): Promise<void> {
    const head = await this.rooms.headIfKnown(roomId);
    if (!head || (await this.rooms.stateContent(head, "m.room.guest_access"))?.guest_access === "can_join") return;
    const members = await this.core.storage.rooms.members(roomId, ["join", "invite"]);
    const local = members.filter((m) => userIdDomain(m.user_id) === this.core.config.serverName);
    for (const m of (await this.core.events.getMany(local.map((x) => x.event_id))).values()) {
      if (m.event.content.kind !== "guest" || m.event.state_key === undefined) continue;
      const userId = m.event.state_key;
      await this.sendMember(roomId, userId, userId, "leave", { kind: "guest" }, async (h) => {
        const current = await this.rooms.membership(h, userId);
        if (current !== "join" && current !== "invite") throw forbidden(`User ${userId} is not in room ${roomId}`);
      });
    }
  }

  /** Deactivation: leave every room the user is joined to, invited to or knocking on. */
  async leaveAll(userId: string): Promise<void> {
    for (const r of await this.core.storage.rooms.roomsForUser(userId, ["join", "invite", "knock"])) {
      try {
        await this.leave(r.room_id, userId);
      } catch {
        // Best effort: a room that refuses the leave is left as it is.
      }
    }
  }

  private async requireMember(head: RoomHead, userId: string): Promise<void> {
    if ((await this.rooms.membership(head, userId)) !== "join") throw forbidden(`User ${userId} not in room ${head.roomId}`);
  }

  /** The user's membership in a room this server is not in (an invite or knock over federation). */
  private async outOfBandMembership(roomId: string, userId: string): Promise<{ membership: string; sender: string; eventId: string } | undefined> {
    const id = await this.core.storage.rooms.currentStateEventId(roomId, "m.room.member", userId);
    const e = id ? await this.core.events.get(id) : undefined;
    const m = e?.event.content.membership;
    return e && typeof m === "string" ? { membership: m, sender: e.event.sender, eventId: e.event.event_id } : undefined;
  }

  /** Whether `userId` currently has `membership` in the room (used by the API for precise errors). */
  async currentMembership(roomId: string, userId: string): Promise<string | undefined> {
    const head = await this.rooms.headIfKnown(roomId);
    if (!head) return undefined;
    const id = head.state.get(stateMapKey("m.room.member", userId));
    if (!id) return undefined;
    const e = await this.core.events.get(id);
    const m = e?.event.content.membership;
    return typeof m === "string" ? m : undefined;
  }
}
