/**
 * Third-party invites (spec client-server "Third-party invites", server-server "Third-party invites"): inviting an
 * email address. An address the identity server knows is invited as its user; otherwise the identity server stores
 * the invite and we send an m.room.third_party_invite. When the address is bound later, the identity server calls
 * the invitee's server (onbind) with a signed proof, which becomes the invite's m.room.member event — sent by us if
 * the inviter is ours, or asked of the inviter's server (exchange_third_party_invite) otherwise.
 */
import type { Config } from "../../config/config.js";
import { userIdDomain } from "../../core/ids/ids.js";
import { isJsonObject, type JsonObject } from "../../core/json/types.js";
import { invitePublicKeys, verifyingKey, type InvitePublicKey } from "../../core/rooms/third_party_invite.js";
import { MatrixError, badJson, forbidden } from "../../errors.js";
import { encodePath, type FederationClient } from "../../federation/client.js";
import type { OutboundHttp } from "../../outbound/http_client.js";
import type { MembershipService } from "../rooms/membership.js";
import type { RoomAccess } from "../rooms/rooms.js";
import type { IdentityServerClient } from "./identity_server.js";

export interface ThirdPartyInviteRequest {
  idServer: string;
  idAccessToken: string;
  medium: string;
  address: string;
}

/** One entry of an onbind's `invites`. */
interface BoundInvite {
  roomId: string;
  sender: string;
  mxid: string;
  signed: JsonObject;
}

export interface ThirdPartyInviteDeps {
  config: Config;
  rooms: RoomAccess;
  membership: MembershipService;
  identityServers: IdentityServerClient;
  /** For key_validity_url, which the identity server names: the IP-range-filtered client. */
  http: OutboundHttp;
  federation: FederationClient;
}

export class ThirdPartyInvites {
  constructor(private readonly deps: ThirdPartyInviteDeps) {}

  /** POST /rooms/{roomId}/invite with a 3PID (and createRoom's invite_3pid). */
  async invite(roomId: string, inviter: string, req: ThirdPartyInviteRequest): Promise<void> {
    const { rooms, membership, identityServers } = this.deps;
    if (req.medium !== "email") throw new MatrixError(400, "M_UNRECOGNIZED", "Only email addresses can be invited");
    const head = await rooms.head(roomId);
    if ((await rooms.membership(head, inviter)) !== "join") throw forbidden(`User ${inviter} not in room ${roomId}`);
    const mxid = await identityServers.lookup(req.idServer, req.idAccessToken, req.medium, req.address);
    if (mxid !== undefined) {
      await membership.invite(roomId, inviter, mxid);
      return;
    }
    const content = async (type: string, key: string) => (await rooms.stateEvent(head, type, key))?.event.content;
    const str = (v: unknown) => (typeof v === "string" ? v : "");
    const profile = await this.deps.rooms.core.storage.profiles.getAll(inviter);
    // What the identity server may put into its invitation email (spec identity-service "Invitation storage").
    const stored = await identityServers.storeInvite(req.idServer, req.idAccessToken, {
      medium: req.medium,
      address: req.address,
      room_id: roomId,
      sender: inviter,
      room_alias: str((await content("m.room.canonical_alias", ""))?.alias),
      room_avatar_url: str((await content("m.room.avatar", ""))?.url),
      room_join_rules: str((await content("m.room.join_rules", ""))?.join_rule),
      room_name: str((await content("m.room.name", ""))?.name),
      room_type: str((await content("m.room.create", ""))?.type),
      sender_display_name: str(profile.displayname),
      sender_avatar_url: str(profile.avatar_url),
    });
    const first = stored.publicKeys[0]!;
    const eventContent: JsonObject = {
      display_name: stored.displayName,
      public_key: first.public_key,
      public_keys: stored.publicKeys.map((k) => ({ ...k })),
    };
    if (first.key_validity_url !== undefined) eventContent.key_validity_url = first.key_validity_url;
    await rooms.core.persister.send(roomId, { type: "m.room.third_party_invite", state_key: stored.token, sender: inviter, content: eventContent }, {
      precheck: async (h) => {
        if ((await rooms.membership(h, inviter)) !== "join") throw forbidden(`User ${inviter} not in room ${roomId}`);
      },
    });
  }

  /** PUT/POST /_matrix/federation/v1/3pid/onbind: every invite of the bound address becomes a member invite. */
  async onBind(body: JsonObject): Promise<void> {
    const invites = Array.isArray(body.invites) ? body.invites : [];
    let last: unknown;
    for (const raw of invites) {
      try {
        await this.redeem(parseBoundInvite(raw));
      } catch (e) {
        last = e;
      }
    }
    if (last !== undefined) throw last;
  }

  /**
   * The inviter's server makes the invite: its user sends the member event, so only it can sign it as the sender's
   * server. That is us when the inviter is ours; otherwise we ask it (even when we are in the room too).
   */
  private async redeem(invite: BoundInvite): Promise<void> {
    const { config, federation } = this.deps;
    const destination = userIdDomain(invite.sender);
    if (destination === config.serverName) {
      if (!(await this.inRoom(invite.roomId))) throw forbidden("This server is no longer in the room of the invite");
      await this.exchange(invite.roomId, invite.sender, invite.mxid, invite.signed);
      return;
    }
    if (destination === null) throw badJson("The invite's sender is not a user ID");
    await federation.put(destination, encodePath`/_matrix/federation/v1/exchange_third_party_invite/${invite.roomId}`, {
      type: "m.room.member",
      room_id: invite.roomId,
      sender: invite.sender,
      state_key: invite.mxid,
      content: { membership: "invite", third_party_invite: { signed: invite.signed } },
    });
  }

  /** PUT /_matrix/federation/v1/exchange_third_party_invite/{roomId}: the invitee's server asks for the invite. */
  async onExchange(roomId: string, body: JsonObject): Promise<void> {
    const content = body.content;
    if (body.room_id !== roomId || body.type !== "m.room.member" || !isJsonObject(content) || content.membership !== "invite") throw badJson("Not a third-party invite event");
    const tpi = content.third_party_invite;
    const signed = isJsonObject(tpi) ? tpi.signed : undefined;
    if (typeof body.sender !== "string" || typeof body.state_key !== "string" || !isJsonObject(signed)) throw badJson("The event lacks sender, state_key or third_party_invite.signed");
    if (userIdDomain(body.sender) !== this.deps.config.serverName) throw forbidden("The inviter is not on this server");
    await this.exchange(roomId, body.sender, body.state_key, signed);
  }

  /** POST /join with `third_party_signed`: the proof becomes the invite first (as in Synapse). */
  async joinWithProof(roomId: string, userId: string, proof: unknown): Promise<void> {
    if (!isJsonObject(proof) || typeof proof.sender !== "string" || typeof proof.mxid !== "string" || typeof proof.token !== "string") {
      throw badJson("third_party_signed needs sender, mxid, token and signatures");
    }
    if (proof.mxid !== userId) throw forbidden("third_party_signed is for another user");
    // The identity server signed the whole object, sender included: it goes into the invite as it is.
    await this.redeem({ roomId, sender: proof.sender, mxid: userId, signed: proof });
  }

  /**
   * Sends the invite a signed proof allows: it must name the token of an m.room.third_party_invite of the room,
   * carry a signature by one of its keys, and that key must not be revoked (key_validity_url). The auth rules check
   * the rest (the sender is the third-party invite's, the mxid is the target).
   */
  private async exchange(roomId: string, sender: string, mxid: string, signed: JsonObject): Promise<void> {
    const { rooms, membership } = this.deps;
    const token = signed.token;
    if (typeof token !== "string" || signed.mxid !== mxid) throw forbidden("The signed third-party invite does not match its target");
    const head = await rooms.head(roomId);
    const invite = await rooms.stateEvent(head, "m.room.third_party_invite", token);
    if (!invite) throw forbidden("No third-party invite with that token in the room");
    const key = verifyingKey(signed, invitePublicKeys(invite.event.content));
    if (!key) throw forbidden("The third-party invite is not signed by any of its keys");
    await this.checkNotRevoked(key);
    const displayName = typeof invite.event.content.display_name === "string" ? invite.event.content.display_name : "";
    await membership.inviteByThirdParty(roomId, sender, mxid, { display_name: displayName, signed });
  }

  /** As Synapse: a key with a key_validity_url must be confirmed valid there; unreachable counts as invalid. */
  private async checkNotRevoked(key: InvitePublicKey): Promise<void> {
    if (key.key_validity_url === undefined) return;
    let valid = false;
    try {
      const url = new URL(key.key_validity_url);
      url.searchParams.set("public_key", key.public_key);
      const res = await this.deps.http.request(url.toString(), { method: "GET", headers: { accept: "application/json" }, timeoutMs: 10_000, maxResponseBytes: 64 * 1024 });
      const body: unknown = res.status === 200 ? JSON.parse(res.body.toString("utf8")) : undefined;
      valid = isJsonObject(body) && body.valid === true;
    } catch {
      throw forbidden("Third party certificate could not be checked");
    }
    if (!valid) throw forbidden("Third party certificate was invalid");
  }

  private async inRoom(roomId: string): Promise<boolean> {
    return (await this.deps.rooms.core.storage.federation.serversInRoom(roomId)).includes(this.deps.config.serverName);
  }
}

function parseBoundInvite(raw: unknown): BoundInvite {
  if (!isJsonObject(raw)) throw badJson("An onbind invite must be an object");
  const { room_id: roomId, sender, mxid, signed } = raw;
  if (typeof roomId !== "string" || typeof sender !== "string" || typeof mxid !== "string" || !isJsonObject(signed) || typeof signed.token !== "string") {
    throw badJson("An onbind invite needs room_id, sender, mxid and signed (with a token)");
  }
  return { roomId, sender, mxid, signed };
}
