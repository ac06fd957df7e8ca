/**
 * Room tagging (spec "Room Tagging"): GET /user/{userId}/rooms/{roomId}/tags, PUT and DELETE
 * /user/{userId}/rooms/{roomId}/tags/{tag}. The tags reach clients as `m.tag` room account data in /sync.
 * Guests may not use it (it is not in the spec's guest list; Synapse refuses them too).
 */
import type { FastifyInstance } from "fastify";
import type { Services } from "../../services/services.js";
import { clientPaths, defineRoute, requester } from "../http/routes.js";

export function registerTagRoutes(app: FastifyInstance, services: Services): void {
  const { tags } = services;

  defineRoute(app, services, {
    method: "GET",
    paths: clientPaths("/user/:userId/rooms/:roomId/tags"),
    handler: async (ctx) => ({ tags: await tags.list(requester(ctx).userId, ctx.params.userId!, ctx.params.roomId!) }),
  });

  defineRoute(app, services, {
    method: "PUT",
    paths: clientPaths("/user/:userId/rooms/:roomId/tags/:tag"),
    // The body (an object with an optional numeric `order`) is checked by the service, after the checks Synapse
    // makes first (whose tags, tag length, membership).
    handler: async (ctx) => {
      await tags.add(requester(ctx).userId, ctx.params.userId!, ctx.params.roomId!, ctx.params.tag!, ctx.req.body);
      return {};
    },
  });

  defineRoute(app, services, {
    method: "DELETE",
    paths: clientPaths("/user/:userId/rooms/:roomId/tags/:tag"),
    handler: async (ctx) => {
      await tags.remove(requester(ctx).userId, ctx.params.userId!, ctx.params.roomId!, ctx.params.tag!);
      return {};
    },
  });
}
