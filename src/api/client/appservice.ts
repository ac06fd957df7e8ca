/**
 * The client-server companions of the Application Service API: POST /_matrix/client/v1/appservice/{appserviceId}/ping
 * (spec "Pinging"), by the service itself with its as_token.
 */
import { Type } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import type { Services } from "../../services/services.js";
import { clientV1, defineRoute, requester } from "../http/routes.js";

export function registerAppServiceRoutes(app: FastifyInstance, services: Services): void {
  defineRoute(app, services, {
    method: "POST",
    paths: clientV1("/appservice/:appserviceId/ping"),
    body: Type.Object({ transaction_id: Type.Optional(Type.String()) }),
    handler: (ctx) => services.appServices.ping(requester(ctx), ctx.params.appserviceId!, ctx.body.transaction_id),
  });
}
