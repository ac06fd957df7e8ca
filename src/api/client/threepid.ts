/**
 * 3PID endpoints (spec "Adding Account Administrative Contact Information", the requestToken endpoints of
 * registration, 3PID addition and password reset): validation by email, the submit_token pages the emailed links
 * open, the account's 3PIDs, and binding them at identity servers.
 */
import { Type } from "@sinclair/typebox";
import type { FastifyInstance, FastifyReply } from "fastify";
import { MatrixError, forbidden, missingParam } from "../../errors.js";
import type { Services } from "../../services/services.js";
import { IdentityServerClient } from "../../services/threepid/identity_server.js";
import {
  SUBMIT_TOKEN_PATHS,
  ThreepidValidationError,
  assertValidClientSecret,
  canonicaliseEmail,
  escapeHtml,
  type ValidationPurpose,
} from "../../services/threepid/validation.js";
import { requireStringParam } from "../http/params.js";
import { clientPaths, defineRoute, requester } from "../http/routes.js";
import { reauthFlows } from "./uia_flows.js";

const str = (max = 1024) => Type.Optional(Type.String({ maxLength: max }));

const RequestTokenBody = Type.Object({
  client_secret: str(),
  email: str(),
  send_attempt: Type.Optional(Type.Integer()),
  next_link: str(2048),
  id_server: str(),
  id_access_token: str(),
});

const withUnstable = (path: string) => [...clientPaths(path), `/_matrix/client/unstable${path}`];

function need<T>(value: T | undefined, name: string): T {
  if (value === undefined) throw missingParam(`Missing param: ${name}`);
  return value;
}

export function registerThreepidRoutes(app: FastifyInstance, services: Services): void {
  const { config, threepids, uia } = services;
  const { validation } = threepids;

  // m.login.email.identity (spec "Email-based (identity / homeserver)"): `threepid_creds` name a validated session;
  // the stage's result is the 3PID it proves.
  uia.registerStage("m.login.email.identity", async (auth) => {
    const creds = auth.threepid_creds ?? auth.threepidCreds;
    if (typeof creds !== "object" || creds === null || Array.isArray(creds)) throw new MatrixError(401, "M_MISSING_PARAM", "Missing threepid_creds");
    const c = creds as Record<string, unknown>;
    const v = await validation.validatedSession(c.sid, c.client_secret);
    if (!v) throw new MatrixError(401, "M_UNAUTHORIZED", "No validated 3pid session found");
    if (!validation.isAllowed(v.medium, v.address)) throw new MatrixError(403, "M_THREEPID_DENIED", "Third-party identifier is not allowed on this server");
    return v;
  });

  /**
   * The requestToken endpoints differ only in which addresses they accept: registration and 3PID addition want
   * one nobody has, password reset one that is someone's. `request_token_inhibit_3pid_errors` hides the difference.
   */
  const requestToken = (purpose: ValidationPurpose, paths: string[], precheck?: () => void) =>
    defineRoute(app, services, {
      method: "POST",
      paths,
      body: RequestTokenBody,
      auth: "none",
      handler: async ({ body, req }) => {
        precheck?.();
        const clientSecret = need(body.client_secret, "client_secret");
        assertValidClientSecret(clientSecret);
        const email = canonicaliseEmail(need(body.email, "email"));
        const sendAttempt = need(body.send_attempt, "send_attempt");
        if (body.next_link !== undefined) validation.checkNextLink(body.next_link);
        if (!validation.emailEnabled) throw new MatrixError(400, "M_THREEPID_MEDIUM_NOT_SUPPORTED", "Email validation is not configured on this server");
        if (!validation.isAllowed("email", email)) throw new MatrixError(403, "M_THREEPID_DENIED", "Your email domain is not authorized on this server");
        const owner = await threepids.userFor("email", email);
        const refused =
          purpose === "password_reset"
            ? owner === undefined && new MatrixError(400, "M_THREEPID_NOT_FOUND", "Email not found")
            : owner !== undefined && new MatrixError(400, "M_THREEPID_IN_USE", "Email is already in use");
        if (refused) {
          if (config.threepids.requestTokenInhibit3pidErrors) return { sid: validation.fakeSessionId() };
          throw refused;
        }
        const sid = await validation.requestEmailToken({ purpose, clientSecret, email, sendAttempt, ip: req.ip, ...(body.next_link !== undefined ? { nextLink: body.next_link } : {}) });
        return { sid };
      },
    });

  const require3pidChanges = () => {
    if (!config.threepids.enable3pidChanges) throw new MatrixError(400, "M_FORBIDDEN", "3PID changes are disabled on this server");
  };
  requestToken("registration", clientPaths("/register/email/requestToken"), () => {
    if (!config.enableRegistration) throw forbidden("Registration has been disabled");
  });
  requestToken("add_threepid", clientPaths("/account/3pid/email/requestToken"), require3pidChanges);
  requestToken("password_reset", clientPaths("/account/password/email/requestToken"), () => {
    if (!config.password.enabled || !config.password.localdbEnabled) throw forbidden("Password resets are disabled on this server");
  });

  // The pages the emailed links open (plain HTML, as Synapse's): the session is validated, then next_link if given.
  const submit = async (query: Record<string, string | string[] | undefined>, reply: FastifyReply) => {
    try {
      const { sid, clientSecret, token } = submitParams(query);
      const { nextLink } = await validation.submitToken(sid, clientSecret, token);
      if (nextLink !== undefined) return reply.redirect(nextLink, 302);
      return page(reply, 200, "Your email has now been validated, please return to your client.");
    } catch (e) {
      if (e instanceof ThreepidValidationError || e instanceof MatrixError) return page(reply, 400, `The link could not be used: ${e.message}.`);
      throw e;
    }
  };
  for (const [purpose, path] of Object.entries(SUBMIT_TOKEN_PATHS)) {
    if (purpose !== "password_reset") {
      defineRoute(app, services, { method: "GET", paths: [path], auth: "none", handler: ({ query, reply }) => submit(query, reply) });
      continue;
    }
    // A password reset is confirmed with a button (a POST), as Synapse's: mail scanners that open every link must
    // not validate a session that someone else may have requested for this address.
    defineRoute(app, services, {
      method: "GET",
      paths: [path],
      auth: "none",
      handler: ({ query, reply }) => {
        try {
          submitParams(query);
        } catch (e) {
          if (e instanceof MatrixError) return page(reply, 400, `The link could not be used: ${e.message}.`);
          throw e;
        }
        const action = `?${new URLSearchParams(query as Record<string, string>).toString()}`;
        return page(reply, 200, "Confirm that you want to reset your password.", `<form method="post" action="${escapeHtml(action)}"><button type="submit">Reset password</button></form>`);
      },
    });
    defineRoute(app, services, { method: "POST", paths: [path], auth: "none", handler: ({ query, reply }) => submit(query, reply) });
  }

  defineRoute(app, services, {
    method: "GET",
    paths: clientPaths("/account/3pid"),
    handler: async (ctx) => ({ threepids: await threepids.list(requester(ctx).userId) }),
  });

  /** A validated session's 3PID, or the spec's M_THREEPID_AUTH_FAILED. */
  const validatedOrFail = async (sid: unknown, clientSecret: unknown) => {
    if (sid === undefined) throw missingParam("Missing param: sid");
    if (clientSecret === undefined) throw missingParam("Missing param: client_secret");
    assertValidClientSecret(clientSecret);
    const v = await validation.validatedSession(sid, clientSecret);
    if (!v) throw new MatrixError(400, "M_THREEPID_AUTH_FAILED", "No validated 3pid session found");
    return v;
  };

  // Deprecated by the spec (r0's POST /account/3pid), still what some clients and SyTest use: no UIA, as Synapse.
  defineRoute(app, services, {
    method: "POST",
    paths: clientPaths("/account/3pid"),
    body: Type.Object({ three_pid_creds: Type.Optional(Type.Unknown()), threePidCreds: Type.Optional(Type.Unknown()), bind: Type.Optional(Type.Boolean()) }),
    handler: async (ctx) => {
      const me = requester(ctx);
      require3pidChanges();
      const creds = ctx.body.three_pid_creds ?? ctx.body.threePidCreds;
      if (typeof creds !== "object" || creds === null || Array.isArray(creds)) throw missingParam("Missing param: three_pid_creds");
      const c = creds as Record<string, unknown>;
      await threepids.add(me.userId, await validatedOrFail(c.sid, c.client_secret));
      return {};
    },
  });

  defineRoute(app, services, {
    method: "POST",
    paths: clientPaths("/account/3pid/add"),
    body: Type.Object({ auth: Type.Optional(Type.Unknown()), client_secret: str(), sid: str(255) }),
    handler: async (ctx) => {
      const me = requester(ctx);
      require3pidChanges();
      const { auth, ...rest } = ctx.body;
      // Before UIA, so that a client learns of a bad session without typing its password first.
      if (rest.client_secret !== undefined) assertValidClientSecret(rest.client_secret);
      const outcome = await uia.authenticate({ auth, body: rest, uri: "/account/3pid/add", method: "POST", userId: me.userId, ip: ctx.req.ip }, await reauthFlows(services, me.userId));
      const params = outcome.body as typeof rest;
      await threepids.add(me.userId, await validatedOrFail(params.sid, params.client_secret));
      await uia.finish(outcome.sessionId);
      return {};
    },
  });

  defineRoute(app, services, {
    method: "POST",
    paths: withUnstable("/account/3pid/bind"),
    body: Type.Object({ client_secret: str(), id_server: str(), id_access_token: str(), sid: str(255) }),
    handler: async (ctx) => {
      const me = requester(ctx);
      const b = ctx.body;
      const clientSecret = need(b.client_secret, "client_secret");
      assertValidClientSecret(clientSecret);
      await threepids.bind(me.userId, {
        idServer: IdentityServerClient.checkIdServer(need(b.id_server, "id_server")),
        idAccessToken: need(b.id_access_token, "id_access_token"),
        sid: need(b.sid, "sid"),
        clientSecret,
      });
      return {};
    },
  });

  const UnbindBody = Type.Object({ medium: str(), address: str(), id_server: str() });
  const unbindResult = (ok: boolean) => ({ id_server_unbind_result: ok ? "success" : "no-support" });

  defineRoute(app, services, {
    method: "POST",
    paths: withUnstable("/account/3pid/unbind"),
    body: UnbindBody,
    handler: async (ctx) => {
      const me = requester(ctx);
      const medium = need(ctx.body.medium, "medium");
      let address = need(ctx.body.address, "address");
      if (medium === "email") address = canonicaliseEmail(address);
      const idServer = ctx.body.id_server !== undefined ? IdentityServerClient.checkIdServer(ctx.body.id_server) : undefined;
      return unbindResult(await threepids.unbind(me.userId, medium, address, idServer));
    },
  });

  defineRoute(app, services, {
    method: "POST",
    paths: clientPaths("/account/3pid/delete"),
    body: UnbindBody,
    handler: async (ctx) => {
      const me = requester(ctx);
      require3pidChanges();
      const medium = need(ctx.body.medium, "medium");
      const address = need(ctx.body.address, "address");
      const idServer = ctx.body.id_server !== undefined ? IdentityServerClient.checkIdServer(ctx.body.id_server) : undefined;
      return unbindResult(await threepids.delete(me.userId, medium, address, idServer));
    },
  });
}

/** A submit_token link's query: sid, client_secret and token. */
function submitParams(query: Record<string, string | string[] | undefined>): { sid: string; clientSecret: string; token: string } {
  const sid = requireStringParam(query, "sid");
  const clientSecret = requireStringParam(query, "client_secret");
  const token = requireStringParam(query, "token");
  assertValidClientSecret(clientSecret);
  return { sid, clientSecret, token };
}

/** `extraHtml` is trusted markup of ours; the message is escaped. */
function page(reply: FastifyReply, status: number, message: string, extraHtml = ""): FastifyReply {
  return reply
    .code(status)
    .header("content-type", "text/html; charset=utf-8")
    .send(`<!DOCTYPE html><html><head><meta charset="utf-8"><title>Email validation</title></head><body><p>${escapeHtml(message)}</p>${extraHtml}</body></html>`);
}
