/**
 * Synapse's shared-secret registration (`/_synapse/admin/v1/register`, used by register_new_matrix_user and
 * `myelin register-user`): GET a single-use nonce, then POST the new user with an HMAC-SHA1 keyed by
 * `registration_shared_secret` over nonce, user, password and admin flag, NUL-separated.
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { Type } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { MatrixError, forbidden } from "../../errors.js";
import type { Services } from "../../services/services.js";
import { defineRoute } from "../http/routes.js";

const NONCE_LIFETIME_MS = 60_000;

export function sharedSecretMac(secret: string, nonce: string, user: string, password: string, admin: boolean, userType?: string): string {
  const h = createHmac("sha1", secret);
  h.update(nonce).update("\x00").update(user).update("\x00").update(password).update("\x00").update(admin ? "admin" : "notadmin");
  if (userType !== undefined) h.update("\x00").update(userType);
  return h.digest("hex");
}

export function registerSharedSecretRoutes(app: FastifyInstance, services: Services): void {
  const { config, accounts } = services;
  const nonces = new Map<string, number>();

  const requireSecret = (): string => {
    if (config.registrationSharedSecret === undefined) throw new MatrixError(400, "M_UNKNOWN", "Shared secret registration is not enabled");
    return config.registrationSharedSecret;
  };

  defineRoute(app, services, {
    method: "GET",
    paths: ["/_synapse/admin/v1/register"],
    auth: "none",
    handler: () => {
      requireSecret();
      const now = Date.now();
      for (const [n, ts] of nonces) if (now - ts > NONCE_LIFETIME_MS) nonces.delete(n);
      const nonce = randomBytes(16).toString("hex");
      nonces.set(nonce, now);
      return { nonce };
    },
  });

  defineRoute(app, services, {
    method: "POST",
    paths: ["/_synapse/admin/v1/register"],
    auth: "none",
    body: Type.Object({
      nonce: Type.String(),
      username: Type.String({ maxLength: 512 }),
      password: Type.String({ maxLength: 512 }),
      mac: Type.String(),
      admin: Type.Optional(Type.Boolean()),
      displayname: Type.Optional(Type.String({ maxLength: 256 })),
      user_type: Type.Optional(Type.Union([Type.String(), Type.Null()])),
    }),
    handler: async ({ req, body }) => {
      const secret = requireSecret();
      services.limits.registration.check(req.ip);
      const issued = nonces.get(body.nonce);
      if (issued === undefined || Date.now() - issued > NONCE_LIFETIME_MS) throw new MatrixError(400, "M_UNKNOWN", "unrecognised nonce");
      // Single use, whatever the outcome.
      nonces.delete(body.nonce);
      if (body.username.includes("\x00") || body.password.includes("\x00")) throw new MatrixError(400, "M_INVALID_PARAM", "Invalid username or password");
      // Like Synapse (`if user_type:`), an empty user_type is not part of the MAC.
      const userType = body.user_type ? body.user_type : undefined;
      const expected = Buffer.from(sharedSecretMac(secret, body.nonce, body.username, body.password, body.admin ?? false, userType), "utf8");
      const given = Buffer.from(body.mac, "utf8");
      if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw forbidden("HMAC incorrect");
      const r = await accounts.register({ username: body.username, password: body.password, admin: body.admin ?? false, skipPolicy: true });
      if (body.displayname !== undefined) await services.profile.setField(r.userId, r.userId, "displayname", body.displayname);
      return { user_id: r.userId, home_server: config.serverName, access_token: r.accessToken, device_id: r.deviceId };
    },
  });
}
