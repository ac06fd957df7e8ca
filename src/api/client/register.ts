/**
 * Account registration (spec "Account registration and management"): POST /register with User-Interactive Auth,
 * GET /register/available, and registration token validity (m.login.registration_token).
 */
import { Type } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import type { Config } from "../../config/config.js";
import { MatrixError, forbidden } from "../../errors.js";
import type { Services } from "../../services/services.js";
import type { StageHandler } from "../../services/uia.js";
import type { OutboundHttp } from "../../outbound/http_client.js";
import { accessTokenOf, clientPaths, clientV1, defineRoute } from "../http/routes.js";
import { requireStringParam, stringParam } from "../http/params.js";
import type { ValidatedThreepid } from "../../services/threepid/validation.js";

const RegisterBody = Type.Object({
  auth: Type.Optional(Type.Unknown()),
  username: Type.Optional(Type.String({ maxLength: 512 })),
  password: Type.Optional(Type.String({ maxLength: 512 })),
  device_id: Type.Optional(Type.String({ minLength: 1, maxLength: 255 })),
  initial_device_display_name: Type.Optional(Type.String({ maxLength: 512 })),
  inhibit_login: Type.Optional(Type.Boolean()),
  refresh_token: Type.Optional(Type.Boolean()),
  guest_access_token: Type.Optional(Type.String({ maxLength: 1024 })),
  /** `m.login.application_service`: an application service registers a user of its namespace (no UIA). */
  type: Type.Optional(Type.String()),
});

/** The session key under which /register remembers the user a UIA session registered. */
const REGISTERED_USER_ID = "registered_user_id";

function loginFields(r: { accessToken?: string; deviceId?: string; refreshToken?: string; expiresInMs?: number }): Record<string, unknown> {
  const out: Record<string, unknown> = { access_token: r.accessToken, device_id: r.deviceId };
  if (r.refreshToken !== undefined) out.refresh_token = r.refreshToken;
  if (r.expiresInMs !== undefined) out.expires_in_ms = r.expiresInMs;
  return out;
}

/**
 * Synapse's flows: a dummy stage for open registration (unless `registrations_require_3pid` asks for an email), an
 * email stage when emails can be sent, each with a registration token stage before it when required, and the
 * CAPTCHA first when enabled.
 */
export function registrationFlows(config: Config): string[][] {
  const flows: string[][] = [];
  if (!config.threepids.registrationsRequire3pid.includes("email")) flows.push(["m.login.dummy"]);
  if (config.email !== undefined) flows.push(["m.login.email.identity"]);
  for (const flow of flows) {
    if (config.registrationRequiresToken) flow.unshift("m.login.registration_token");
    if (config.enableRegistrationCaptcha) flow.unshift("m.login.recaptcha");
  }
  return flows;
}

/** The UIA `params` of registration: the CAPTCHA's site key for the client's widget. */
function registrationParams(config: Config): Record<string, unknown> {
  return config.enableRegistrationCaptcha && config.recaptcha?.publicKey !== undefined ? { "m.login.recaptcha": { public_key: config.recaptcha.publicKey } } : {};
}

export function registerRegistrationRoutes(app: FastifyInstance, services: Services): void {
  const { config, accounts, uia, limits, storage } = services;

  uia.registerStage("m.login.registration_token", async (auth, { sessionResults }) => {
    const token = auth.token;
    if (typeof token !== "string") throw new MatrixError(401, "M_UNAUTHORIZED", "Missing registration token");
    // The session already holds a reservation for this token: repeating the stage must not reserve a second use.
    const previous = sessionResults["m.login.registration_token"];
    if (previous === token) return token;
    if (!(await isTokenValid(services, token))) throw new MatrixError(401, "M_UNAUTHORIZED", "Invalid registration token");
    await storage.registrationTokens.addPending(token, 1);
    // Switching to another token releases the one reserved before.
    if (typeof previous === "string") await storage.registrationTokens.addPending(previous, -1);
    return token;
  });

  if (config.recaptcha) uia.registerStage("m.login.recaptcha", recaptchaStage(config.recaptcha, services.configuredHttp), { outsideFlows: true });

  defineRoute(app, services, {
    method: "POST",
    paths: clientPaths("/register"),
    body: RegisterBody,
    auth: "none",
    handler: async ({ req, body, query }) => {
      const kind = stringParam(query, "kind") ?? "user";
      if (kind !== "user" && kind !== "guest") throw new MatrixError(400, "M_INVALID_PARAM", "kind must be 'user' or 'guest'");
      limits.registration.check(req.ip);

      if (kind === "guest") {
        if (!config.allowGuestAccess) throw new MatrixError(403, "M_GUEST_ACCESS_FORBIDDEN", "Guest access is disabled");
        limits.registration.take(req.ip);
        const r = await accounts.register({ guest: true, initialDeviceDisplayName: body.initial_device_display_name });
        return { user_id: r.userId, home_server: config.serverName, access_token: r.accessToken, device_id: r.deviceId };
      }

      // Spec "Server admin style permissions": the as_token, no UIA, the username in the service's namespace; open
      // even when registration is not. Synapse checks the registration rate limit without counting the request.
      if (body.type === "m.login.application_service") {
        const token = accessTokenOf(req);
        if (token === undefined) throw new MatrixError(401, "M_MISSING_TOKEN", "Appservice token must be provided when using a type of m.login.application_service");
        const appService = services.appServices.byToken(token);
        if (!appService) throw new MatrixError(401, "M_UNKNOWN_TOKEN", "Unrecognised application service token", { soft_logout: false });
        if (typeof body.username !== "string") throw new MatrixError(400, "M_MISSING_PARAM", "Desired username is missing or not a string");
        const r = await accounts.register({
          username: body.username,
          appService,
          deviceId: body.device_id,
          initialDeviceDisplayName: body.initial_device_display_name,
          inhibitLogin: body.inhibit_login ?? false,
          refreshToken: body.refresh_token ?? false,
        });
        const res: Record<string, unknown> = { user_id: r.userId, home_server: config.serverName };
        return r.accessToken !== undefined ? { ...res, ...loginFields(r) } : res;
      }

      if (!config.enableRegistration) throw forbidden("Registration has been disabled");
      // As Synapse: a session that already registered a user answers a replay with that user (logged in afresh),
      // so a client that lost the response can retry. Its username is then no longer "in use" for this session.
      const registeredBefore = await uia.sessionValue(body.auth, REGISTERED_USER_ID);
      // Spec: M_USER_IN_USE / M_INVALID_USERNAME come before User-Interactive Authentication.
      if (body.guest_access_token !== undefined) {
        // Upgrading a guest: the username must be the guest's own localpart (spec "Guest Access").
        if (body.username === undefined) throw new MatrixError(400, "M_MISSING_PARAM", "Upgrading a guest needs its username");
        await accounts.checkGuestUpgrade(body.username, body.guest_access_token);
      } else if (body.username !== undefined && !(typeof registeredBefore === "string" && registeredBefore === accounts.userIdForUsername(body.username))) {
        await accounts.checkUsernameAvailable(body.username);
      }

      // As Synapse does, the password policy is checked before UIA (not after the user completed every stage), and
      // the UIA session keeps only the password's hash: session bodies are stored, plaintext passwords must not be.
      // A client-sent `password_hash` is dropped so that only the server's own hash can ever be used.
      const { auth, password, password_hash: _ignored, ...rest } = body as typeof body & { password_hash?: unknown };
      const uiaBody: Record<string, unknown> = password !== undefined ? { ...rest, password_hash: await accounts.hashPassword(password) } : rest;
      const outcome = await uia.authenticate({ auth, body: uiaBody, uri: "/register", method: "POST", ip: req.ip }, registrationFlows(config), registrationParams(config));
      const params = outcome.body as typeof rest & { password_hash?: unknown };
      const registered = outcome.results[REGISTERED_USER_ID];
      if (typeof registered === "string") {
        const res: Record<string, unknown> = { user_id: registered, home_server: config.serverName };
        if (params.inhibit_login) return res;
        const login = await accounts.login(registered, { deviceId: params.device_id, initialDeviceDisplayName: params.initial_device_display_name, refreshToken: params.refresh_token ?? false });
        return { ...res, ...loginFields(login) };
      }
      if (typeof params.password_hash !== "string") throw new MatrixError(400, "M_MISSING_PARAM", "Missing password.");
      const email = outcome.results["m.login.email.identity"] as ValidatedThreepid | undefined;
      if (email !== undefined && (await services.threepids.userFor(email.medium, email.address)) !== undefined) {
        throw new MatrixError(400, "M_THREEPID_IN_USE", `${email.address} is already in use`);
      }
      limits.registration.take(req.ip);
      const common = {
        passwordHash: params.password_hash,
        deviceId: params.device_id,
        initialDeviceDisplayName: params.initial_device_display_name,
        inhibitLogin: params.inhibit_login ?? false,
        refreshToken: params.refresh_token ?? false,
      };
      const r =
        typeof params.guest_access_token === "string" && typeof params.username === "string"
          ? await accounts.upgradeGuest(params.username, params.guest_access_token, common)
          : await accounts.register({ username: params.username, ...common });
      // The validated email becomes the account's (login, password reset), as in Synapse.
      if (email !== undefined) await services.threepids.add(r.userId, email);
      const usedToken = outcome.results["m.login.registration_token"];
      if (typeof usedToken === "string") await storage.registrationTokens.complete(usedToken);
      // The session is kept (it expires as any other) and remembers the user, for replays (above).
      await uia.setSessionValue(outcome.sessionId, REGISTERED_USER_ID, r.userId);

      const res: Record<string, unknown> = { user_id: r.userId, home_server: config.serverName };
      return r.accessToken !== undefined ? { ...res, ...loginFields(r) } : res;
    },
  });

  defineRoute(app, services, {
    method: "GET",
    paths: clientPaths("/register/available"),
    auth: "none",
    handler: async ({ req, query }) => {
      limits.registration.take(req.ip);
      if (!config.enableRegistration) throw forbidden("Registration has been disabled");
      await accounts.checkUsernameAvailable(requireStringParam(query, "username"));
      return { available: true };
    },
  });

  defineRoute(app, services, {
    method: "GET",
    paths: clientV1("/register/m.login.registration_token/validity"),
    auth: "none",
    handler: async ({ req, query }) => {
      limits.registrationTokenValidity.take(req.ip);
      if (!config.enableRegistration) throw forbidden("Registration has been disabled");
      const token = requireStringParam(query, "token");
      return { valid: await isTokenValid(services, token) };
    },
  });
}

async function isTokenValid(services: Services, token: string): Promise<boolean> {
  const row = await services.storage.registrationTokens.get(token);
  if (!row) return false;
  if (row.expiry_time !== null && row.expiry_time <= Date.now()) return false;
  if (row.uses_allowed !== null && row.pending + row.completed >= row.uses_allowed) return false;
  return true;
}

/**
 * m.login.recaptcha (spec "Google ReCaptcha"): the widget's `response` is checked with the configured siteverify
 * API. That URL is the admin's own setting, so the outbound IP blocklist does not apply to it (as in Synapse).
 */
function recaptchaStage(recaptcha: NonNullable<Config["recaptcha"]>, http: OutboundHttp): StageHandler {
  return async (auth, { request }) => {
    const response = auth.response;
    if (typeof response !== "string" || response === "") throw new MatrixError(400, "M_CAPTCHA_NEEDED", "Captcha response is required");
    const form = new URLSearchParams({ secret: recaptcha.privateKey, response, remoteip: request.ip });
    let verdict: unknown;
    try {
      const res = await http.request(recaptcha.siteverifyApi, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: Buffer.from(form.toString()),
        timeoutMs: 10_000,
        maxResponseBytes: 64 * 1024,
      });
      verdict = res.status === 200 ? JSON.parse(res.body.toString("utf8")) : undefined;
    } catch {
      verdict = undefined;
    }
    if (typeof verdict !== "object" || verdict === null || (verdict as { success?: unknown }).success !== true) {
      throw new MatrixError(401, "M_UNAUTHORIZED", "Captcha authentication failed");
    }
    return true;
  };
}
