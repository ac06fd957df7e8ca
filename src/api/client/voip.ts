/** Voice over IP (spec "Voice over IP" → "TURN server"): GET /voip/turnServer. */
import type { FastifyInstance } from "fastify";
import type { Services } from "../../services/services.js";
import { clientPaths, defineRoute, requester } from "../http/routes.js";

export function registerVoipRoutes(app: FastifyInstance, services: Services): void {
  defineRoute(app, services, {
    method: "GET",
    paths: clientPaths("/voip/turnServer"),
    // Synapse's `turn_allow_guests` (default true): when false a guest gets 403 M_GUEST_ACCESS_FORBIDDEN.
    allowGuest: services.config.turn.allowGuests,
    handler: (ctx) => services.turn.credentials(requester(ctx).userId),
  });
}
