/**
 * End-to-end encryption keys (spec "End-to-End Encryption": Key management API, Cross-signing): upload, query,
 * claim, changes, device_signing/upload and signatures/upload. Bodies are checked by the services, which name the
 * offending key in their error.
 */
import type { FastifyInstance } from "fastify";
import { isJsonObject, type JsonObject } from "../../core/json/types.js";
import { badJson, missingParam } from "../../errors.js";
import { parseClaimRequest, parseQueryRequest, remoteTimeout } from "../../services/e2e_keys.js";
import type { Services } from "../../services/services.js";
import { parseSyncToken } from "../../services/sync/token.js";
import { stringParam } from "../http/params.js";
import { clientPaths, defineRoute, requester } from "../http/routes.js";
import { reauthFlows } from "./uia_flows.js";

export function registerKeyRoutes(app: FastifyInstance, services: Services): void {
  const { e2eKeys, crossSigning, uia } = services;

  defineRoute(app, services, {
    method: "POST",
    paths: clientPaths("/keys/upload"),
    handler: (ctx) => {
      const me = requester(ctx);
      if (!me.deviceId) throw badJson("Keys can only be uploaded by a device (this access token has none)");
      return e2eKeys.upload(me.userId, me.deviceId, ctx.body);
    },
  });
  // Deprecated r0 form with the device id in the path: only the requester's own device.
  defineRoute(app, services, {
    method: "POST",
    paths: clientPaths("/keys/upload/:deviceId"),
    handler: (ctx) => {
      const me = requester(ctx);
      if (!me.deviceId) throw badJson("Keys can only be uploaded by a device (this access token has none)");
      return e2eKeys.upload(me.userId, me.deviceId, ctx.body);
    },
  });

  defineRoute(app, services, {
    method: "POST",
    paths: clientPaths("/keys/query"),
    allowGuest: true,
    handler: (ctx) => {
      const me = requester(ctx);
      const body = ctx.body as Record<string, unknown>;
      return e2eKeys.query(me.userId, parseQueryRequest(body.device_keys), remoteTimeout(body.timeout));
    },
  });

  defineRoute(app, services, {
    method: "POST",
    paths: clientPaths("/keys/claim"),
    allowGuest: true,
    handler: (ctx) => {
      const body = ctx.body as Record<string, unknown>;
      requester(ctx);
      return e2eKeys.claim(parseClaimRequest(body.one_time_keys), remoteTimeout(body.timeout));
    },
  });

  defineRoute(app, services, {
    method: "GET",
    paths: clientPaths("/keys/changes"),
    allowGuest: true,
    handler: (ctx) => {
      const me = requester(ctx);
      const from = stringParam(ctx.query, "from");
      const to = stringParam(ctx.query, "to");
      if (from === undefined) throw missingParam("Missing from");
      if (to === undefined) throw missingParam("Missing to");
      return e2eKeys.changes(me.userId, parseSyncToken(from), parseSyncToken(to));
    },
  });

  defineRoute(app, services, {
    method: "POST",
    // Also under the unstable prefix it was first served at (MSC1756), which older clients still call.
    paths: [...clientPaths("/keys/device_signing/upload"), "/_matrix/client/unstable/keys/device_signing/upload"],
    handler: async (ctx) => {
      const me = requester(ctx);
      if (!isJsonObject(ctx.body)) throw badJson("Content must be a JSON object.");
      const { auth, ...rest } = ctx.body;
      // MSC3967: the first upload needs no UIA; replacing keys once a master key exists does. A request with only
      // `auth` continues a session whose first request carried the keys.
      const continuing = auth !== undefined && Object.keys(rest).length === 0;
      if (!continuing && !(await crossSigning.uploadNeedsAuth(me.userId, rest))) {
        await crossSigning.upload(me.userId, rest);
        return {};
      }
      const outcome = await uia.authenticate({ auth, body: rest, uri: "/keys/device_signing/upload", method: "POST", userId: me.userId, ip: ctx.req.ip }, await reauthFlows(services, me.userId));
      await crossSigning.upload(me.userId, outcome.body as JsonObject);
      await uia.finish(outcome.sessionId);
      return {};
    },
  });

  defineRoute(app, services, {
    method: "POST",
    paths: [...clientPaths("/keys/signatures/upload"), "/_matrix/client/unstable/keys/signatures/upload"],
    handler: (ctx) => crossSigning.uploadSignatures(requester(ctx).userId, ctx.body),
  });
}
