/** Server administration (spec "Server administration"): GET /admin/whois/{userId}. */
import type { FastifyInstance } from "fastify";
import { isValidUserId, userIdDomain } from "../../core/ids/ids.js";
import { MatrixError, forbidden, notFound } from "../../errors.js";
import type { Services } from "../../services/services.js";
import { clientPaths, defineRoute, requester } from "../http/routes.js";

export function registerAdminRoutes(app: FastifyInstance, services: Services): void {
  const { config, devices, storage } = services;

  defineRoute(app, services, {
    method: "GET",
    paths: clientPaths("/admin/whois/:userId"),
    handler: async (ctx) => {
      const me = requester(ctx);
      const userId = ctx.params.userId!;
      // "This API may be restricted to only be called by the user being looked up, or by a server admin" (as Synapse).
      // Authorisation comes before any lookup, so the answer tells nothing about who exists.
      if (userId !== me.userId && !me.isAdmin) throw forbidden("You are not a server admin");
      if (!isValidUserId(userId)) throw new MatrixError(400, "M_INVALID_PARAM", "Invalid user ID");
      if (userIdDomain(userId) !== config.serverName || !(await storage.users.get(userId))) throw notFound("User not found");
      return { user_id: userId, devices: await devices.whois(userId) };
    },
  });
}
