/**
 * Dehydrated devices (MSC3814) under its unstable prefix: PUT/GET/DELETE dehydrated_device and POST
 * dehydrated_device/{deviceId}/events. Bodies are checked by the service.
 */
import type { FastifyInstance } from "fastify";
import type { Services } from "../../services/services.js";
import { defineRoute, requester } from "../http/routes.js";

const PREFIX = "/_matrix/client/unstable/org.matrix.msc3814.v1";

export function registerDehydratedDeviceRoutes(app: FastifyInstance, services: Services): void {
  const { dehydratedDevices } = services;

  defineRoute(app, services, {
    method: "PUT",
    paths: [`${PREFIX}/dehydrated_device`],
    handler: (ctx) => dehydratedDevices.put(requester(ctx).userId, ctx.body),
  });

  defineRoute(app, services, {
    method: "GET",
    paths: [`${PREFIX}/dehydrated_device`],
    handler: (ctx) => dehydratedDevices.get(requester(ctx).userId),
  });

  defineRoute(app, services, {
    method: "DELETE",
    paths: [`${PREFIX}/dehydrated_device`],
    handler: (ctx) => dehydratedDevices.delete(requester(ctx).userId),
  });

  defineRoute(app, services, {
    method: "POST",
    paths: [`${PREFIX}/dehydrated_device/:deviceId/events`],
    handler: (ctx) => dehydratedDevices.events(requester(ctx).userId, ctx.params.deviceId!, ctx.body ?? {}),
  });
}
