/**
 * Login, token refresh, logout and whoami (spec "Login", "Refreshing access tokens", "Logout", "whoami"), and
 * login tokens: POST /login/get_token issues them (Synapse's `login_via_existing_session`), `m.login.token` uses them.
 */
import { Type } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { MatrixError, forbidden } from "../../errors.js";
import type { Services } from "../../services/services.js";
import { accessTokenOf, clientPaths, clientV1, defineRoute, requester } from "../http/routes.js";
import { reauthFlows } from "./uia_flows.js";
import { CAS_IDP_ID } from "../../services/sso/cas.js";
import { resolveLoginUser } from "./identifiers.js";

const LoginBody = Type.Object({
  type: Type.String(),
  identifier: Type.Optional(Type.Unknown()),
  user: Type.Optional(Type.String()),
  medium: Type.Optional(Type.String()),
  address: Type.Optional(Type.String()),
  password: Type.Optional(Type.Unknown()),
  token: Type.Optional(Type.String()),
  device_id: Type.Optional(Type.String({ minLength: 1, maxLength: 255 })),
  initial_device_display_name: Type.Optional(Type.String({ maxLength: 512 })),
  refresh_token: Type.Optional(Type.Boolean()),
});

export function registerLoginRoutes(app: FastifyInstance, services: Services): void {
  const { config, accounts, tokens, devices, limits, loginTokens } = services;
  const getToken = config.loginViaExistingSession;
  // Login tokens come from get_token and from single sign-on.
  const tokenLoginEnabled = getToken.enabled || services.sso !== undefined;

  const flows: Record<string, unknown>[] = [];
  if (config.password.enabled) flows.push({ type: "m.login.password" });
  if (services.cas) {
    const cas = services.cas.config;
    const idp: Record<string, string> = { id: CAS_IDP_ID, name: cas.idpName };
    if (cas.idpIcon !== undefined) idp.icon = cas.idpIcon;
    if (cas.idpBrand !== undefined) idp.brand = cas.idpBrand;
    // The old CAS-specific type too, which older clients (and Synapse) still list.
    flows.push({ type: "m.login.cas" }, { type: "m.login.sso", identity_providers: [idp] });
  }
  // Spec: `get_login_token: true` tells unauthenticated clients that a logged-in one can issue them a token.
  if (tokenLoginEnabled) flows.push({ type: "m.login.token", ...(getToken.enabled ? { get_login_token: true } : {}) });
  // Spec "Server admin style permissions": an application service logs in as its users with its as_token.
  if (services.appServices.all.length > 0) flows.push({ type: "m.login.application_service" });
  defineRoute(app, services, {
    method: "GET",
    paths: clientPaths("/login"),
    auth: "none",
    handler: () => ({ flows }),
  });

  /** m.login.password: the user the identifier names, once the password matches. */
  const passwordLogin = async (body: Record<string, unknown>): Promise<string> => {
    const userId = await resolveLoginUser(services, body);
    // Failed attempts per account are limited separately, so guessing is slow even across many addresses.
    limits.loginFailedAttempts.check(userId);
    try {
      await accounts.checkPassword(userId, body.password);
    } catch (e) {
      if (e instanceof MatrixError && e.errcode === "M_FORBIDDEN") limits.loginFailedAttempts.take(userId);
      throw e;
    }
    return userId;
  };

  /** m.login.token: the token's user; as Synapse, a missing token is 403 like an invalid one. */
  const tokenLogin = async (body: { token?: string }): Promise<string> => {
    if (body.token === undefined) throw forbidden("Token field for m.login.token is missing");
    const { userId } = await loginTokens.consume(body.token);
    const user = await services.storage.users.get(userId);
    if (!user || user.deactivated) throw new MatrixError(403, "M_USER_DEACTIVATED", "This account has been deactivated");
    return userId;
  };

  /** m.login.application_service: a registered user in the namespace of the service whose as_token came along. */
  const appServiceLogin = async (req: Parameters<typeof accessTokenOf>[0], body: Record<string, unknown>): Promise<{ userId: string; exempt: boolean }> => {
    const token = accessTokenOf(req);
    if (token === undefined) throw new MatrixError(401, "M_MISSING_TOKEN", "Missing application service token");
    const as = services.appServices.byToken(token);
    if (!as) throw new MatrixError(401, "M_UNKNOWN_TOKEN", "Unrecognised application service token", { soft_logout: false });
    const userId = accounts.resolveIdentifier(body);
    if (!as.isInterestedInUser(userId)) throw new MatrixError(400, "M_EXCLUSIVE", "An application service may only log in as users that it is interested in");
    const user = await services.storage.users.get(userId);
    if (!user) throw forbidden("User not found");
    if (user.deactivated) throw new MatrixError(403, "M_USER_DEACTIVATED", "This account has been deactivated");
    return { userId, exempt: as.exemptFromRateLimits(userId) };
  };

  defineRoute(app, services, {
    method: "POST",
    paths: clientPaths("/login"),
    body: LoginBody,
    auth: "none",
    handler: async ({ req, body }) => {
      let userId: string;
      let exempt = false;
      if (body.type === "m.login.application_service") {
        ({ userId, exempt } = await appServiceLogin(req, body));
        if (!exempt) limits.loginAddress.take(req.ip);
      } else {
        limits.loginAddress.take(req.ip);
        if (body.type === "m.login.password") userId = await passwordLogin(body);
        else if (body.type === "m.login.token" && tokenLoginEnabled) userId = await tokenLogin(body);
        else throw new MatrixError(400, "M_UNKNOWN", "Unknown login type");
      }
      // Spec "Account locking": a locked account gets no new access token until it is unlocked.
      if ((await services.storage.users.get(userId))?.locked) throw new MatrixError(401, "M_USER_LOCKED", "User account has been locked", { soft_logout: true });
      // rc_login.account counts successful logins only (as in Synapse): counting failures too would let anyone
      // lock a user out for minutes with a few wrong passwords.
      if (!exempt) limits.loginAccount.take(userId);
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

  // As Synapse, the endpoint exists only when enabled (otherwise 404 M_UNRECOGNIZED, like any unknown endpoint).
  if (getToken.enabled) {
    defineRoute(app, services, {
      method: "POST",
      paths: clientV1("/login/get_token"),
      body: Type.Object({ auth: Type.Optional(Type.Unknown()) }, { additionalProperties: true }),
      handler: async (ctx) => {
        const me = requester(ctx);
        // Spec: "servers MUST always re-prompt": a session is finished (deleted) once it has issued its token.
        if (getToken.requireUiAuth) {
          const { auth, ...rest } = ctx.body;
          const outcome = await services.uia.authenticate({ auth, body: rest, uri: "/login/get_token", method: "POST", userId: me.userId, ip: ctx.req.ip }, await reauthFlows(services, me.userId));
          await services.uia.finish(outcome.sessionId);
        }
        // After UIA, as Synapse: one token a minute per user, so a stolen session cannot spawn many.
        limits.loginTokenRequest.take(me.userId);
        const issued = await loginTokens.issue(me.userId, { ttlMs: getToken.tokenTimeoutMs });
        return { login_token: issued.token, expires_in_ms: issued.expiresInMs };
      },
    });
  }

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
    allowLocked: true,
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
    allowLocked: true,
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
