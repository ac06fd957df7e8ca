/** Room aliases (spec "Room aliases"): directory/room/{alias} and /rooms/{roomId}/aliases. */
import { Type } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { isValidRoomAlias, isValidRoomId } from "../../core/ids/ids.js";
import { canSendEvent } from "../../core/rooms/power_levels.js";
import { MatrixError, forbidden, notFound } from "../../errors.js";
import type { Services } from "../../services/services.js";
import { clientPaths, defineRoute, requester } from "../http/routes.js";
import { roomIdParam } from "./rooms.js";

export function registerDirectoryRoutes(app: FastifyInstance, services: Services): void {
  const { storage, config, rooms, messages } = services;

  const aliasParam = (alias: string): string => {
    if (!isValidRoomAlias(alias)) throw new MatrixError(400, "M_INVALID_PARAM", "Invalid room alias");
    return alias;
  };

  defineRoute(app, services, {
    method: "GET",
    paths: clientPaths("/directory/room/:roomAlias"),
    auth: "optional",
    allowGuest: true,
    handler: async (ctx) => {
      const alias = aliasParam(ctx.params.roomAlias!);
      // Another server's alias: ask that server (federation query/directory).
      if (alias.slice(alias.indexOf(":") + 1) !== config.serverName && services.membership.remote) {
        const found = await services.membership.remote.queryAlias(alias);
        return { room_id: found.roomId, servers: [...new Set(found.servers)] };
      }
      let r = await storage.rooms.aliasRoom(alias);
      // An alias in an application service's namespace: the service may create it now (spec "Query Room Alias").
      if (!r && (await services.appServices.queryAliasExists(alias))) r = await storage.rooms.aliasRoom(alias);
      if (!r) throw notFound(`Room alias ${alias} not found`);
      return { room_id: r.room_id, servers: [config.serverName] };
    },
  });

  defineRoute(app, services, {
    method: "PUT",
    paths: clientPaths("/directory/room/:roomAlias"),
    body: Type.Object({ room_id: Type.String() }),
    handler: async (ctx) => {
      const me = requester(ctx);
      const alias = aliasParam(ctx.params.roomAlias!);
      if (alias.slice(alias.indexOf(":") + 1) !== config.serverName) throw new MatrixError(400, "M_INVALID_PARAM", "Room alias must be on this server");
      if (!isValidRoomId(ctx.body.room_id)) throw new MatrixError(400, "M_INVALID_PARAM", "Invalid room ID");
      const head = await rooms.headIfKnown(ctx.body.room_id);
      if (!head) throw notFound("Unknown room");
      // Aliases in an application service's namespace: only that service (M_EXCLUSIVE), which need not be in the
      // room; as Synapse with require_membership_for_aliases (its default), everyone else must be.
      services.appServices.checkAliasChange(alias, me.appService);
      if (me.appService === undefined && (await rooms.membership(head, me.userId)) !== "join") throw forbidden("You must be in the room to create an alias for it");
      if (!(await storage.rooms.insertAlias(alias, ctx.body.room_id, me.userId))) throw new MatrixError(409, "M_UNKNOWN", `Room alias ${alias} already exists`);
      return {};
    },
  });

  defineRoute(app, services, {
    method: "DELETE",
    paths: clientPaths("/directory/room/:roomAlias"),
    handler: async (ctx) => {
      const me = requester(ctx);
      const alias = aliasParam(ctx.params.roomAlias!);
      const r = await storage.rooms.aliasRoom(alias);
      if (!r) throw notFound(`Room alias ${alias} not found`);
      // An application service deletes aliases in its namespace; nobody else those in an exclusive one. Otherwise
      // Synapse's rule: the alias's creator, a server admin, or someone who may change the canonical alias.
      services.appServices.checkAliasChange(alias, me.appService);
      let allowed = r.creator === me.userId || me.isAdmin || me.appService !== undefined;
      if (!allowed) {
        const head = await rooms.headIfKnown(r.room_id);
        if (head && (await rooms.membership(head, me.userId)) === "join") {
          allowed = canSendEvent(await rooms.powerContext(head), me.userId, "m.room.canonical_alias", true);
        }
      }
      if (!allowed) throw forbidden("You don't have permission to delete the alias.");
      await storage.rooms.deleteAlias(alias);
      await messages.dropDeletedAlias(r.room_id, me, alias);
      return {};
    },
  });

  defineRoute(app, services, {
    method: "GET",
    paths: clientPaths("/rooms/:roomId/aliases"),
    allowGuest: true,
    handler: async (ctx) => {
      const me = requester(ctx);
      const roomId = roomIdParam(ctx.params.roomId!);
      // Spec: the user must be joined, or the room's history world readable (visibleState checks that).
      await messages.visibleState(roomId, me.userId);
      const head = await rooms.head(roomId);
      if ((await rooms.membership(head, me.userId)) !== "join") {
        const hv = (await rooms.stateContent(head, "m.room.history_visibility"))?.history_visibility;
        if (hv !== "world_readable") throw forbidden("You are not in the room");
      }
      return { aliases: await storage.rooms.aliasesOf(roomId) };
    },
  });
}
