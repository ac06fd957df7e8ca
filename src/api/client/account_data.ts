/** Client config (spec "Client Config"): global and per-room account data. */
import { Type } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { isValidRoomId } from "../../core/ids/ids.js";
import { MatrixError } from "../../errors.js";
import type { Services } from "../../services/services.js";
import { clientPaths, defineRoute, requester } from "../http/routes.js";

const Content = Type.Object({}, { additionalProperties: true });

function checkRoomId(roomId: string): void {
  if (!isValidRoomId(roomId)) throw new MatrixError(400, "M_INVALID_PARAM", `Invalid room ID: ${roomId}`);
}

export function registerAccountDataRoutes(app: FastifyInstance, services: Services): void {
  const { accountData } = services;

  defineRoute(app, services, {
    method: "GET",
    paths: clientPaths("/user/:userId/account_data/:type"),
    allowGuest: true,
    handler: async (ctx) => accountData.get(requester(ctx).userId, ctx.params.userId!, "", ctx.params.type!),
  });

  defineRoute(app, services, {
    method: "PUT",
    paths: clientPaths("/user/:userId/account_data/:type"),
    body: Content,
    allowGuest: true,
    handler: async (ctx) => {
      await accountData.put(requester(ctx).userId, ctx.params.userId!, "", ctx.params.type!, ctx.body as Record<string, unknown>);
      return {};
    },
  });

  defineRoute(app, services, {
    method: "GET",
    paths: clientPaths("/user/:userId/rooms/:roomId/account_data/:type"),
    allowGuest: true,
    handler: async (ctx) => {
      checkRoomId(ctx.params.roomId!);
      return accountData.get(requester(ctx).userId, ctx.params.userId!, ctx.params.roomId!, ctx.params.type!);
    },
  });

  defineRoute(app, services, {
    method: "PUT",
    paths: clientPaths("/user/:userId/rooms/:roomId/account_data/:type"),
    body: Content,
    allowGuest: true,
    handler: async (ctx) => {
      checkRoomId(ctx.params.roomId!);
      await accountData.put(requester(ctx).userId, ctx.params.userId!, ctx.params.roomId!, ctx.params.type!, ctx.body as Record<string, unknown>);
      return {};
    },
  });
}
