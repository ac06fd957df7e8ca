/** Room creation and membership endpoints (spec "Creation", "Room membership"). */
import { Type } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { isValidRoomId, isValidServerName } from "../../core/ids/ids.js";
import type { JsonObject } from "../../core/json/types.js";
import { MatrixError } from "../../errors.js";
import type { Services } from "../../services/services.js";
import type { CreateRoomRequest } from "../../services/rooms/create.js";
import { exemptFromRateLimits } from "../../services/tokens.js";
import { clientPaths, defineRoute, requester } from "../http/routes.js";
import { IdentityServerClient } from "../../services/threepid/identity_server.js";
import type { ThirdPartyInviteRequest } from "../../services/threepid/invites.js";

const Reason = Type.Object({ reason: Type.Optional(Type.String({ maxLength: 4096 })) });
const TargetUser = Type.Object({ user_id: Type.String({ maxLength: 255 }), reason: Type.Optional(Type.String({ maxLength: 4096 })) });
const StateEventSchema = Type.Object({ type: Type.String({ maxLength: 255 }), state_key: Type.Optional(Type.String({ maxLength: 255 })), content: Type.Object({}, { additionalProperties: true }) });

const CreateRoomBody = Type.Object({
  visibility: Type.Optional(Type.Union([Type.Literal("public"), Type.Literal("private")])),
  room_alias_name: Type.Optional(Type.String({ maxLength: 255 })),
  name: Type.Optional(Type.String({ maxLength: 255 })),
  topic: Type.Optional(Type.String({ maxLength: 65536 })),
  invite: Type.Optional(Type.Array(Type.String(), { maxItems: 1000 })),
  invite_3pid: Type.Optional(Type.Array(Type.Unknown())),
  room_version: Type.Optional(Type.String({ maxLength: 32 })),
  creation_content: Type.Optional(Type.Object({}, { additionalProperties: true })),
  initial_state: Type.Optional(Type.Array(StateEventSchema, { maxItems: 1000 })),
  preset: Type.Optional(Type.Union([Type.Literal("private_chat"), Type.Literal("public_chat"), Type.Literal("trusted_private_chat")])),
  is_direct: Type.Optional(Type.Boolean()),
  power_level_content_override: Type.Optional(Type.Object({}, { additionalProperties: true })),
});

/** A join's body: `reason`, `third_party_signed`, and any other keys, which go into the member event (as Synapse). */
const JoinBody = Type.Object(
  {
    reason: Type.Optional(Type.String({ maxLength: 4096 })),
    third_party_signed: Type.Optional(Type.Unknown()),
    // Synapse's limits on a per-room profile.
    displayname: Type.Optional(Type.Union([Type.String({ maxLength: 256 }), Type.Null()])),
    avatar_url: Type.Optional(Type.Union([Type.String({ maxLength: 1000 }), Type.Null()])),
  },
  { additionalProperties: true },
);

function joinOptions(body: Record<string, unknown>, isGuest: boolean): { reason?: string; content: JsonObject; isGuest: boolean } {
  const { reason, third_party_signed: _tps, ...content } = body as JsonObject;
  return { reason: typeof reason === "string" ? reason : undefined, content, isGuest };
}

function viaServers(query: Record<string, string | string[] | undefined>): string[] {
  const list = (v: string | string[] | undefined) => (v === undefined ? [] : Array.isArray(v) ? v : [v]);
  return [...list(query.via), ...list(query.server_name)].filter((s) => isValidServerName(s));
}

/** A 3PID invite's fields (POST /invite's alternative body, an invite_3pid entry). */
function thirdPartyInviteRequest(v: unknown): ThirdPartyInviteRequest {
  const o = (typeof v === "object" && v !== null && !Array.isArray(v) ? v : {}) as Record<string, unknown>;
  for (const k of ["id_server", "medium", "address"]) {
    if (typeof o[k] !== "string") throw new MatrixError(400, "M_MISSING_PARAM", `A third-party invite needs '${k}'`);
  }
  // Spec v1.x: identity servers need an access token; without one there is nothing we can ask them (as Synapse).
  if (typeof o.id_access_token !== "string") throw new MatrixError(400, "M_MISSING_PARAM", "A third-party invite needs 'id_access_token'");
  return { idServer: IdentityServerClient.checkIdServer(o.id_server), idAccessToken: o.id_access_token, medium: o.medium as string, address: o.address as string };
}

export function roomIdParam(roomId: string): string {
  if (!isValidRoomId(roomId)) throw new MatrixError(400, "M_INVALID_PARAM", `Invalid room ID: ${roomId}`);
  return roomId;
}

export function registerRoomRoutes(app: FastifyInstance, services: Services): void {
  const { roomCreation, membership, limits, accountModeration } = services;

  defineRoute(app, services, {
    method: "POST",
    paths: clientPaths("/createRoom"),
    body: CreateRoomBody,
    handler: async (ctx) => {
      const me = requester(ctx);
      // Checked before the room exists, so that a malformed entry creates nothing.
      const invites3pid = (ctx.body.invite_3pid ?? []).map(thirdPartyInviteRequest);
      await accountModeration.assertNotSuspended(me.userId);
      if (!exemptFromRateLimits(me)) limits.roomCreation.take(me.userId);
      const aliasName = (ctx.body as CreateRoomRequest).room_alias_name;
      if (typeof aliasName === "string") services.appServices.checkAliasChange(`#${aliasName}:${services.config.serverName}`, me.appService);
      const r = await roomCreation.createRoom(me.userId, ctx.body as CreateRoomRequest);
      // As Synapse: after the room's other invites, one by one.
      for (const req of invites3pid) await services.thirdPartyInvites.invite(r.roomId, me.userId, req);
      return r.alias !== undefined ? { room_id: r.roomId, room_alias: r.alias } : { room_id: r.roomId };
    },
  });

  defineRoute(app, services, {
    method: "POST",
    paths: clientPaths("/join/:roomIdOrAlias"),
    body: JoinBody,
    allowGuest: true,
    handler: async (ctx) => {
      const me = requester(ctx);
      await accountModeration.assertNotSuspended(me.userId);
      if (!exemptFromRateLimits(me)) limits.joinsLocal.take(me.userId);
      // `via` (v1.12) and the older `server_name`: servers to join through when the room is not on this server.
      if (ctx.body.third_party_signed !== undefined) {
        await services.thirdPartyInvites.joinWithProof(await membership.resolveRoom(ctx.params.roomIdOrAlias!), me.userId, ctx.body.third_party_signed);
      }
      return { room_id: await membership.join(ctx.params.roomIdOrAlias!, me.userId, { ...joinOptions(ctx.body, me.isGuest), servers: viaServers(ctx.query) }) };
    },
  });

  // Peeking (MSC2753): follow a world-readable room in /sync without joining it.
  defineRoute(app, services, {
    method: "POST",
    paths: clientPaths("/peek/:roomIdOrAlias"),
    body: Type.Object({}, { additionalProperties: true }),
    allowGuest: true,
    handler: async (ctx) => {
      const me = requester(ctx);
      return { room_id: await services.peeks.peek(me.userId, me.deviceId, ctx.params.roomIdOrAlias!) };
    },
  });

  defineRoute(app, services, {
    method: "POST",
    paths: clientPaths("/rooms/:roomId/unpeek"),
    body: Type.Object({}, { additionalProperties: true }),
    allowGuest: true,
    handler: async (ctx) => {
      const me = requester(ctx);
      await services.peeks.unpeek(me.userId, me.deviceId, roomIdParam(ctx.params.roomId!));
      return {};
    },
  });

  defineRoute(app, services, {
    method: "POST",
    paths: clientPaths("/rooms/:roomId/join"),
    body: JoinBody,
    allowGuest: true,
    handler: async (ctx) => {
      const me = requester(ctx);
      await accountModeration.assertNotSuspended(me.userId);
      if (!exemptFromRateLimits(me)) limits.joinsLocal.take(me.userId);
      const roomId = roomIdParam(ctx.params.roomId!);
      if (ctx.body.third_party_signed !== undefined) await services.thirdPartyInvites.joinWithProof(roomId, me.userId, ctx.body.third_party_signed);
      return { room_id: await membership.join(roomId, me.userId, joinOptions(ctx.body, me.isGuest)) };
    },
  });

  defineRoute(app, services, {
    method: "POST",
    paths: clientPaths("/knock/:roomIdOrAlias"),
    body: Reason,
    handler: async (ctx) => {
      const me = requester(ctx);
      await accountModeration.assertNotSuspended(me.userId);
      return { room_id: await membership.knock(ctx.params.roomIdOrAlias!, me.userId, { reason: ctx.body.reason, servers: viaServers(ctx.query) }) };
    },
  });

  defineRoute(app, services, {
    method: "POST",
    paths: clientPaths("/rooms/:roomId/invite"),
    body: Type.Union([TargetUser, Type.Object({ id_server: Type.String(), id_access_token: Type.Optional(Type.String()), medium: Type.String(), address: Type.String() })]),
    handler: async (ctx) => {
      const me = requester(ctx);
      const roomId = roomIdParam(ctx.params.roomId!);
      const body = ctx.body as { user_id?: string; reason?: string };
      if (typeof body.user_id !== "string") {
        const req = thirdPartyInviteRequest(ctx.body);
        await accountModeration.assertNotSuspended(me.userId);
        limits.invitesPerRoom.take(roomId);
        await services.thirdPartyInvites.invite(roomId, me.userId, req);
        return {};
      }
      await accountModeration.assertNotSuspended(me.userId);
      if (!exemptFromRateLimits(me)) {
        limits.invitesPerRoom.take(roomId);
        limits.invitesPerUser.take(body.user_id);
      }
      await membership.invite(roomId, me.userId, body.user_id, { reason: body.reason });
      return {};
    },
  });

  defineRoute(app, services, {
    method: "POST",
    paths: clientPaths("/rooms/:roomId/leave"),
    body: Reason,
    allowGuest: true,
    handler: async (ctx) => {
      await membership.leave(roomIdParam(ctx.params.roomId!), requester(ctx).userId, { reason: ctx.body.reason });
      return {};
    },
  });

  defineRoute(app, services, {
    method: "POST",
    paths: clientPaths("/rooms/:roomId/forget"),
    allowGuest: true,
    handler: async (ctx) => {
      await membership.forget(roomIdParam(ctx.params.roomId!), requester(ctx).userId);
      return {};
    },
  });

  for (const [action, fn] of [
    ["kick", membership.kick.bind(membership)],
    ["ban", membership.ban.bind(membership)],
    ["unban", membership.unban.bind(membership)],
  ] as const) {
    defineRoute(app, services, {
      method: "POST",
      paths: clientPaths(`/rooms/:roomId/${action}`),
      body: TargetUser,
      handler: async (ctx) => {
        await fn(roomIdParam(ctx.params.roomId!), requester(ctx).userId, ctx.body.user_id, { reason: ctx.body.reason });
        return {};
      },
    });
  }

  defineRoute(app, services, {
    method: "GET",
    paths: clientPaths("/joined_rooms"),
    allowGuest: true,
    handler: async (ctx) => ({ joined_rooms: await membership.joinedRooms(requester(ctx).userId) }),
  });
}
