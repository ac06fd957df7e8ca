/** Account management: password change, deactivation, (3PIDs are in threepid.ts) (spec "Account registration and management"). */
import { Type } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { MatrixError, forbidden } from "../../errors.js";
import type { Services } from "../../services/services.js";
import { clientPaths, defineRoute, requester } from "../http/routes.js";
import { reauthFlows } from "./uia_flows.js";
import { IdentityServerClient } from "../../services/threepid/identity_server.js";
import type { ValidatedThreepid } from "../../services/threepid/validation.js";

export function registerAccountRoutes(app: FastifyInstance, services: Services): void {
  const { accounts, uia, config } = services;

  defineRoute(app, services, {
    method: "POST",
    paths: clientPaths("/account/password"),
    body: Type.Object({
      auth: Type.Optional(Type.Unknown()),
      new_password: Type.Optional(Type.String({ maxLength: 512 })),
      logout_devices: Type.Optional(Type.Boolean()),
    }),
    // Without an access token: a password reset, authenticated by a validated email (m.login.email.identity).
    auth: "optional",
    handler: async (ctx) => {
      const me = ctx.requester;
      if (me === undefined && !services.threepids.validation.emailEnabled) throw new MatrixError(401, "M_MISSING_TOKEN", "Missing access token");
      if (!config.password.enabled || !config.password.localdbEnabled) throw forbidden("Password changes are disabled");
      // As for /register: the policy is checked before UIA, and the UIA session stores only the new password's hash.
      const { auth, new_password, new_password_hash: _ignored, ...rest } = ctx.body as typeof ctx.body & { new_password_hash?: unknown };
      const uiaBody: Record<string, unknown> = new_password !== undefined ? { ...rest, new_password_hash: await accounts.hashPassword(new_password) } : rest;
      const flows = me !== undefined ? await reauthFlows(services, me.userId) : [["m.login.email.identity"]];
      const outcome = await uia.authenticate({ auth, body: uiaBody, uri: "/account/password", method: "POST", userId: me?.userId, ip: ctx.req.ip }, flows);
      const params = outcome.body as typeof rest & { new_password_hash?: unknown };
      if (typeof params.new_password_hash !== "string") throw new MatrixError(400, "M_MISSING_PARAM", "Missing new_password");
      let userId = me?.userId;
      if (userId === undefined) {
        const email = outcome.results["m.login.email.identity"] as ValidatedThreepid;
        userId = await services.threepids.userFor(email.medium, email.address);
        // As Synapse: the address may have been removed from its account since the email was sent.
        if (userId === undefined) throw new MatrixError(404, "M_NOT_FOUND", "Email address not found");
      }
      await accounts.changePassword(userId, { hash: params.new_password_hash }, {
        logoutDevices: params.logout_devices ?? true,
        keepDeviceId: me?.deviceId ?? null,
        ...(me ? { keepTokenId: me.tokenId } : {}),
      });
      await uia.finish(outcome.sessionId);
      return {};
    },
  });

  defineRoute(app, services, {
    method: "POST",
    paths: clientPaths("/account/deactivate"),
    body: Type.Object({
      auth: Type.Optional(Type.Unknown()),
      id_server: Type.Optional(Type.String()),
      erase: Type.Optional(Type.Boolean()),
    }),
    handler: async (ctx) => {
      const me = requester(ctx);
      const { auth, ...rest } = ctx.body;
      // As Synapse: an application service deactivates the users it acts as without User-Interactive Auth.
      const outcome = me.appService
        ? { body: rest, sessionId: undefined }
        : await uia.authenticate({ auth, body: rest, uri: "/account/deactivate", method: "POST", userId: me.userId, ip: ctx.req.ip }, await reauthFlows(services, me.userId));
      const params = outcome.body as typeof rest;
      // As Synapse: 3PIDs are unbound from identity servers first, so a failure there leaves the account as it was.
      const idServer = params.id_server !== undefined ? IdentityServerClient.checkIdServer(params.id_server) : undefined;
      const unbound = await services.threepids.removeAll(me.userId, idServer);
      await accounts.deactivate(me.userId, { erase: params.erase ?? false });
      if (outcome.sessionId !== undefined) await uia.finish(outcome.sessionId);
      return { id_server_unbind_result: unbound ? "success" : "no-support" };
    },
  });
}
