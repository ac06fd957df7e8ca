/** Profiles (spec "Profiles"): the whole profile and single fields, including custom fields (v1.16). */
import { Type } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { MatrixError, forbidden } from "../../errors.js";
import type { Services } from "../../services/services.js";
import type { Requester } from "../../services/tokens.js";
import { clientPaths, defineRoute, requester } from "../http/routes.js";

export function registerProfileRoutes(app: FastifyInstance, services: Services): void {
  const { profile, config } = services;
  const readAuth = config.requireAuthForProfileRequests ? "required" : "optional";
  // enable_set_displayname / enable_set_avatar_url: 403 M_FORBIDDEN as the spec says for disabled profile changes
  // (Synapse sends its M_FORBIDDEN with 400, and only once a value is set); server admins may still change them.
  const checkChangeAllowed = (me: Requester, key: string) => {
    if (me.isAdmin) return;
    if (key === "displayname" && !config.enableSetDisplayname) throw forbidden("Changing display name is disabled on this server");
    if (key === "avatar_url" && !config.enableSetAvatarUrl) throw forbidden("Changing avatar is disabled on this server");
  };

  defineRoute(app, services, {
    method: "GET",
    paths: clientPaths("/profile/:userId"),
    auth: readAuth,
    allowGuest: true,
    handler: async (ctx) => profile.getProfile(ctx.params.userId!),
  });

  defineRoute(app, services, {
    method: "GET",
    paths: clientPaths("/profile/:userId/:keyName"),
    auth: readAuth,
    allowGuest: true,
    handler: async (ctx) => {
      const key = ctx.params.keyName!;
      return { [key]: await profile.getField(ctx.params.userId!, key) };
    },
  });

  defineRoute(app, services, {
    method: "PUT",
    paths: clientPaths("/profile/:userId/:keyName"),
    body: Type.Object({}, { additionalProperties: true }),
    allowGuest: true,
    handler: async (ctx) => {
      const me = requester(ctx);
      const key = ctx.params.keyName!;
      profile.checkKeyName(key);
      if (me.userId !== ctx.params.userId) throw forbidden("Cannot set another user's profile");
      checkChangeAllowed(me, key);
      await services.accountModeration.assertNotSuspended(me.userId);
      const body = ctx.body as Record<string, unknown>;
      if (!(key in body)) throw new MatrixError(400, "M_MISSING_PARAM", `Missing key '${key}'`);
      await profile.setField(me.userId, ctx.params.userId!, key, body[key]);
      return {};
    },
  });

  defineRoute(app, services, {
    method: "DELETE",
    paths: clientPaths("/profile/:userId/:keyName"),
    allowGuest: true,
    handler: async (ctx) => {
      const me = requester(ctx);
      checkChangeAllowed(me, ctx.params.keyName!);
      await services.accountModeration.assertNotSuspended(me.userId);
      await profile.deleteField(me.userId, ctx.params.userId!, ctx.params.keyName!);
      return {};
    },
  });
}
