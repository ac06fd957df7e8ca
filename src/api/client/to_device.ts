/** Send-to-device messaging (spec "Send-to-Device messaging"): PUT /sendToDevice/{eventType}/{txnId}. */
import type { FastifyInstance } from "fastify";
import type { Services } from "../../services/services.js";
import { clientPaths, defineRoute, requester } from "../http/routes.js";

export function registerToDeviceRoutes(app: FastifyInstance, services: Services): void {
  defineRoute(app, services, {
    method: "PUT",
    paths: clientPaths("/sendToDevice/:eventType/:txnId"),
    // The body ({"messages": {userId: {deviceId | "*": content}}}) is validated by the service, which names the
    // offending user or device in its M_BAD_JSON / M_INVALID_PARAM.
    handler: async (ctx) => {
      await services.toDevice.send(requester(ctx), ctx.params.eventType!, ctx.params.txnId!, ctx.body);
      return {};
    },
  });
}
