/** Device management (spec "Device Management"): list, get, rename, delete (with UIA), bulk delete. */
import { Type } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { isJsonObject } from "../../core/json/types.js";
import { badJson } from "../../errors.js";
import type { Services } from "../../services/services.js";
import { clientPaths, defineRoute, requester } from "../http/routes.js";
import { reauthFlows } from "./uia_flows.js";

export function registerDeviceRoutes(app: FastifyInstance, services: Services): void {
  const { devices, uia } = services;

  defineRoute(app, services, {
    method: "GET",
    paths: clientPaths("/devices"),
    handler: async (ctx) => ({ devices: await devices.listForClient(requester(ctx).userId) }),
  });

  defineRoute(app, services, {
    method: "GET",
    paths: clientPaths("/devices/:deviceId"),
    handler: async (ctx) => devices.get(requester(ctx).userId, ctx.params.deviceId!),
  });

  defineRoute(app, services, {
    method: "PUT",
    paths: clientPaths("/devices/:deviceId"),
    body: Type.Object({ display_name: Type.Optional(Type.Union([Type.String({ maxLength: 512 }), Type.Null()])) }),
    handler: async (ctx) => {
      const me = requester(ctx);
      if (ctx.body.display_name !== undefined) await devices.setDisplayName(me.userId, ctx.params.deviceId!, ctx.body.display_name);
      else await devices.get(me.userId, ctx.params.deviceId!);
      return {};
    },
  });

  defineRoute(app, services, {
    method: "DELETE",
    paths: clientPaths("/devices/:deviceId"),
    // No body schema: clients often send DELETE without a body (Synapse treats that as `{}`), which a schema would
    // refuse with 400 before the client ever saw the UIA flows.
    handler: async (ctx) => {
      const me = requester(ctx);
      if (!isJsonObject(ctx.body)) throw badJson("Content must be a JSON object.");
      const deviceId = ctx.params.deviceId!;
      // Spec: 200 when the device "was successfully removed, or had been removed previously" (so a retry after a
      // lost response succeeds); like Synapse, the user authenticates either way.
      const outcome = await uia.authenticate(
        { auth: ctx.body.auth, body: {}, uri: `/devices/${deviceId}`, method: "DELETE", userId: me.userId, ip: ctx.req.ip },
        await reauthFlows(services, me.userId),
      );
      await devices.delete(me.userId, [deviceId]);
      await uia.finish(outcome.sessionId);
      return {};
    },
  });

  defineRoute(app, services, {
    method: "POST",
    paths: clientPaths("/delete_devices"),
    body: Type.Object({ devices: Type.Array(Type.String(), { maxItems: 1000 }), auth: Type.Optional(Type.Unknown()) }),
    handler: async (ctx) => {
      const me = requester(ctx);
      const { auth, ...rest } = ctx.body;
      const outcome = await uia.authenticate({ auth, body: rest, uri: "/delete_devices", method: "POST", userId: me.userId, ip: ctx.req.ip }, await reauthFlows(services, me.userId));
      const ids = (outcome.body as typeof rest).devices ?? rest.devices;
      await devices.delete(me.userId, ids);
      await uia.finish(outcome.sessionId);
      return {};
    },
  });
}
