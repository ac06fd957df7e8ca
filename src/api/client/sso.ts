/**
 * Single sign-on in the browser (spec "Client login via SSO", and the `m.login.sso` UIA stage's fallback page),
 * with CAS as the identity provider (Synapse's `cas_config` endpoints, paths included, so existing CAS server
 * configurations that allow our service URL keep working):
 * - `GET /login/sso/redirect[/{idpId}]` and the legacy `/login/cas/redirect` send the browser to the CAS login;
 * - CAS sends it back to `GET /login/cas/ticket?redirectUrl=…&ticket=…`; the ticket is validated, the user found or
 *   created, and the browser goes on to the client's `redirectUrl` with a `loginToken` (after a confirmation page
 *   unless the client is in `sso.client_whitelist`: a link that logs the clicker in must not be forgeable);
 * - UIA: `GET /auth/m.login.sso/fallback/web?session=…` leads to CAS, which returns to the ticket endpoint with
 *   `session`, completing the stage for the user CAS named.
 */
import { createHash } from "node:crypto";
import type { FastifyInstance, FastifyReply } from "fastify";
import { MatrixError } from "../../errors.js";
import type { Services } from "../../services/services.js";
import { CAS_IDP_ID, CasError, type CasProvider } from "../../services/sso/cas.js";
import type { SsoService } from "../../services/sso/sso.js";
import { escapeHtml } from "../../services/threepid/validation.js";
import { clientPaths, defineRoute } from "../http/routes.js";

/** Our pages have no scripts but the UIA one's, load nothing from elsewhere and cannot be framed (clickjacking). */
const PAGE_HEADERS = {
  "content-type": "text/html; charset=utf-8",
  "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
  "x-frame-options": "DENY",
  "cache-control": "no-store",
};

function page(reply: FastifyReply, status: number, title: string, bodyHtml: string, headers: Record<string, string> = {}): FastifyReply {
  return reply
    .code(status)
    .headers({ ...PAGE_HEADERS, ...headers })
    .send(`<!DOCTYPE html><html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>${escapeHtml(title)}</title></head><body>${bodyHtml}</body></html>`);
}

/** The client's redirect URL with `loginToken` added to its query (before any fragment, where clients read it). */
export function withLoginToken(redirectUrl: string, token: string): string {
  const hash = redirectUrl.indexOf("#");
  const base = hash < 0 ? redirectUrl : redirectUrl.slice(0, hash);
  const fragment = hash < 0 ? "" : redirectUrl.slice(hash);
  return `${base}${base.includes("?") ? "&" : "?"}loginToken=${encodeURIComponent(token)}${fragment}`;
}

function singleParam(query: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const v = query[name];
  return Array.isArray(v) ? v[0] : v;
}

export function registerSsoRoutes(app: FastifyInstance, services: Services): void {
  const { cas, sso, config } = services;
  if (!cas || !sso) return;
  const ticketBase = `${config.publicBaseurl}_matrix/client/r0/login/cas/ticket`;
  const loginService = (redirectUrl: string) => `${ticketBase}?redirectUrl=${encodeURIComponent(redirectUrl)}`;
  const uiaService = (session: string) => `${ticketBase}?session=${encodeURIComponent(session)}`;

  const redirectToCas = ({ query, reply }: { query: Record<string, string | string[] | undefined>; reply: FastifyReply }) => {
    const redirectUrl = singleParam(query, "redirectUrl");
    if (!redirectUrl) throw new MatrixError(400, "M_MISSING_PARAM", "Missing required parameter: redirectUrl");
    return reply.redirect(cas.loginUrl(loginService(redirectUrl)), 302);
  };
  defineRoute(app, services, { method: "GET", paths: [...clientPaths("/login/sso/redirect"), ...clientPaths("/login/cas/redirect")], auth: "none", handler: redirectToCas });
  defineRoute(app, services, {
    method: "GET",
    paths: clientPaths("/login/sso/redirect/:idpId"),
    auth: "none",
    handler: (ctx) => {
      if (ctx.params.idpId !== CAS_IDP_ID) throw new MatrixError(404, "M_NOT_FOUND", "Unknown identity provider ID");
      return redirectToCas(ctx);
    },
  });

  defineRoute(app, services, {
    method: "GET",
    paths: clientPaths("/login/cas/ticket"),
    auth: "none",
    handler: async ({ query, reply }) => {
      const ticket = singleParam(query, "ticket");
      const session = singleParam(query, "session");
      const redirectUrl = singleParam(query, "redirectUrl");
      if (!ticket) throw new MatrixError(400, "M_MISSING_PARAM", "Missing required parameter: ticket");
      if (session === undefined && redirectUrl === undefined) throw new MatrixError(400, "M_MISSING_PARAM", "Missing required parameter: redirectUrl or session");
      try {
        if (session !== undefined) return await completeUia(reply, cas, sso, services, ticket, session, uiaService(session));
        return await completeLogin(reply, cas, sso, config.ssoClientWhitelist, config.serverName, ticket, redirectUrl!, loginService(redirectUrl!));
      } catch (e) {
        if (e instanceof CasError) return page(reply, 401, "Login failed", `<p>${escapeHtml(e.message)}</p>`);
        throw e;
      }
    },
  });

  defineRoute(app, services, {
    method: "GET",
    paths: clientPaths("/auth/m.login.sso/fallback/web"),
    auth: "none",
    handler: ({ query, reply }) => {
      const session = singleParam(query, "session");
      if (!session) throw new MatrixError(400, "M_MISSING_PARAM", "Missing required parameter: session");
      const link = cas.loginUrl(uiaService(session));
      return page(reply, 200, "Confirm your identity", `<p>To continue, confirm your identity with ${escapeHtml(cas.config.idpName)}.</p><p><a href="${escapeHtml(link)}">Continue with ${escapeHtml(cas.config.idpName)}</a></p>`);
    },
  });
}

async function completeLogin(reply: FastifyReply, cas: CasProvider, sso: SsoService, whitelist: string[], serverName: string, ticket: string, redirectUrl: string, service: string): Promise<FastifyReply> {
  const casUser = await cas.validate(ticket, service);
  const displayname = cas.displayname(casUser);
  const userId = await sso.loginUser(CAS_IDP_ID, casUser.user, displayname !== undefined ? { displayname } : {});
  const target = withLoginToken(redirectUrl, await sso.loginToken(userId, CAS_IDP_ID));
  if (whitelist.some((prefix) => redirectUrl.startsWith(prefix))) return reply.redirect(target, 302);
  let client = redirectUrl;
  try {
    client = new URL(redirectUrl).host || redirectUrl;
  } catch {
    // not an absolute URL: name it as given
  }
  return page(
    reply,
    200,
    "Continue to your account",
    `<p>You are about to sign in to <b>${escapeHtml(serverName)}</b> as <b>${escapeHtml(userId)}</b> and continue to <b>${escapeHtml(client)}</b>.</p>` +
      `<p>If you did not start this, close this page.</p><p><a href="${escapeHtml(target)}">Continue</a></p>`,
  );
}

async function completeUia(reply: FastifyReply, cas: CasProvider, sso: SsoService, services: Services, ticket: string, session: string, service: string): Promise<FastifyReply> {
  const casUser = await cas.validate(ticket, service);
  // A CAS user who never logged in here is nobody: the stage completes for "", and the operation is refused (403).
  const userId = (await sso.mappedUser(CAS_IDP_ID, casUser.user)) ?? "";
  if (!(await services.uia.completeExternally(session, "m.login.sso", userId))) {
    return page(reply, 400, "Unknown session", "<p>This authentication session is unknown or has expired.</p>");
  }
  // Spec "Fallback": tell the client (the window that opened this page) that the stage is done.
  const script = `if (window.onAuthDone) { window.onAuthDone(); } else if (window.opener && window.opener.postMessage) { window.opener.postMessage("authDone", "*"); }`;
  return page(reply, 200, "Authentication successful", `<p>Done. You can close this page and return to the application.</p><script>${script}</script>`, {
    "content-security-policy": `default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-${sha256Base64(script)}'; frame-ancestors 'none'`,
  });
}

function sha256Base64(s: string): string {
  return createHash("sha256").update(s).digest("base64");
}
