/** OpenID (spec "OpenID"): POST /user/{userId}/openid/request_token. The exchange is federation's /openid/userinfo. */
import type { FastifyInstance } from "fastify";
import { isJsonObject } from "../../core/json/types.js";
import { badJson, forbidden } from "../../errors.js";
import { OpenIdTokens } from "../../services/openid.js";
import type { Services } from "../../services/services.js";
import { clientPaths, defineRoute, requester } from "../http/routes.js";

export function registerOpenIdRoutes(app: FastifyInstance, services: Services): void {
  const openid = new OpenIdTokens(services.signingKey);

  defineRoute(app, services, {
    method: "POST",
    paths: clientPaths("/user/:userId/openid/request_token"),
    handler: (ctx) => {
      const me = requester(ctx);
      // The body is "an empty object. Reserved for future expansion."
      if (ctx.body !== undefined && !isJsonObject(ctx.body)) throw badJson("Content must be a JSON object.");
      if (ctx.params.userId !== me.userId) throw forbidden("Cannot request tokens for other users.");
      const t = openid.issue(me.userId);
      return { access_token: t.token, token_type: "Bearer", matrix_server_name: services.config.serverName, expires_in: Math.floor(t.expiresInMs / 1000) };
    },
  });
}
