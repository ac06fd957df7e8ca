/** Login, token refresh, logout and whoami (spec "Login", "Refreshing access tokens", "Logout", "whoami"). */
import { Type } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { MatrixError } from "../../errors.js";
import type { Services } from "../../services/services.js";
import { clientPaths, defineRoute, requester } from "../http/routes.js";

const LoginBody = Type.Object({
  type: Type.String(),
  identifier: Type.Optional(Type.Unknown()),
  user: Type.Optional(Type.String()),
  password: Type.Optional(Type.Unknown()),
  token: Type.Optional(Type.String()),
  device_id: Type.Optional(Type.String({ minLength: 1, maxLength: 255 })),
  initial_device_display_name: Type.Optional(Type.String({ maxLength: 512 })),
  refresh_token: Type.Optional(Type.Boolean()),
});

export function registerLoginRoutes(app: FastifyInstance, services: Services): void {
  const { config, accounts, tokens, devices, limits } = services;

  defineRoute(app, services, {
    method: "GET",
    paths: clientPaths("/login"),
    auth: "none",
    handler: () => ({ flows: config.password.enabled ? [{ type: "m.login.password" }] : [] }),
  });

  defineRoute(app, services, {
    method: "POST",
    paths: clientPaths("/login"),
    body: LoginBody,
    auth: "none",
    handler: async ({ req, body }) => {
      limits.loginAddress.take(req.ip);
      if (body.type !== "m.login.password") throw new MatrixError(400, "M_UNKNOWN", "Unknown login type");
      const userId = accounts.resolveIdentifier(body);
      // Failed attempts per account are limited separately, so guessing is slow even across many addresses.
      limits.loginFailedAttempts.check(userId);
      try {
        await accounts.checkPassword(userId, body.password);
      } catch (e) {
        if (e instanceof MatrixError && e.errcode === "M_FORBIDDEN") limits.loginFailedAttempts.take(userId);
        throw e;
      }
      // rc_login.account counts successful logins only (as in Synapse): counting failures too would let anyone
      // lock a user out for minutes with a few wrong passwords.
      limits.loginAccount.take(userId);
      const r = await accounts.login(userId, {
        deviceId: body.device_id,
        initialDeviceDisplayName: body.initial_device_display_name,
        refreshToken: body.refresh_token ?? false,
      });
      const res: Record<string, unknown> = {
        user_id: r.userId,
        access_token: r.accessToken,
        device_id: r.deviceId,
        home_server: config.serverName,
        well_known: { "m.homeserver": { base_url: config.publicBaseurl } },
      };
      if (r.refreshToken !== undefined) res.refresh_token = r.refreshToken;
      if (r.expiresInMs !== undefined) res.expires_in_ms = r.expiresInMs;
      return res;
    },
  });

  defineRoute(app, services, {
    method: "POST",
    paths: clientPaths("/refresh"),
    body: Type.Object({ refresh_token: Type.String() }),
    auth: "none",
    handler: async ({ body }) => {
      const r = await tokens.refresh(body.refresh_token);
      const res: Record<string, unknown> = { access_token: r.accessToken, refresh_token: r.refreshToken };
      if (r.expiresInMs !== undefined) res.expires_in_ms = r.expiresInMs;
      return res;
    },
  });

  defineRoute(app, services, {
    method: "POST",
    paths: clientPaths("/logout"),
    allowGuest: true,
    allowExpired: true,
    handler: async (ctx) => {
      const me = requester(ctx);
      if (me.deviceId) await devices.delete(me.userId, [me.deviceId]);
      else {
        await services.storage.tokens.deleteAccessToken(me.tokenId);
        tokens.invalidateUser(me.userId);
        await services.pushers.tokenDeleted(me.userId, me.tokenId);
      }
      return {};
    },
  });

  defineRoute(app, services, {
    method: "POST",
    paths: clientPaths("/logout/all"),
    allowGuest: true,
    allowExpired: true,
    handler: async (ctx) => {
      const me = requester(ctx);
      const all = (await services.storage.devices.list(me.userId)).map((d) => d.device_id);
      await devices.delete(me.userId, all);
      await services.storage.tokens.deleteAccessTokens(me.userId);
      tokens.invalidateUser(me.userId);
      return {};
    },
  });

  defineRoute(app, services, {
    method: "GET",
    paths: clientPaths("/account/whoami"),
    allowGuest: true,
    handler: (ctx) => {
      const me = requester(ctx);
      const res: Record<string, unknown> = { user_id: me.userId, is_guest: me.isGuest };
      if (me.deviceId) res.device_id = me.deviceId;
      return res;
    },
  });

}
