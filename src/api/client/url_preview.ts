/**
 * URL previews: GET /_matrix/client/v1/media/preview_url (authenticated media, spec v1.11) and the deprecated
 * GET /_matrix/media/{v3,r0}/preview_url, both with `url` and an optional `ts`. With `url_preview_enabled` off they
 * answer 404 M_UNRECOGNIZED, as Synapse (which does not register them then).
 */
import type { FastifyInstance } from "fastify";
import { unrecognized } from "../../errors.js";
import type { Services } from "../../services/services.js";
import { intParam, requireStringParam } from "../http/params.js";
import { clientV1, defineRoute, requester, type RouteContext } from "../http/routes.js";

async function answerPreview(services: Services, ctx: RouteContext<Record<string, unknown>>): Promise<unknown> {
  // Disabled, the endpoint does not exist (Synapse registers no route): 404 before anything else, even without a
  // token — hence auth "optional" on the routes; enabled, requester() still demands one (401 M_MISSING_TOKEN).
  if (!services.urlPreviews.enabled) throw unrecognized();
  const user = requester(ctx);
  const url = requireStringParam(ctx.query, "url");
  const ts = intParam(ctx.query, "ts", undefined, 0);
  const json = await services.urlPreviews.preview(url, user.userId, ts);
  // Already JSON text (as stored): sent as is.
  return ctx.reply.type("application/json; charset=utf-8").send(json);
}

/** The authenticated-media endpoint, on the client resource. */
export function registerUrlPreviewRoutes(app: FastifyInstance, services: Services): void {
  defineRoute(app, services, { method: "GET", paths: clientV1("/media/preview_url"), auth: "optional", handler: (ctx) => answerPreview(services, ctx) });
}

/** The legacy endpoints, on the media resource (with the rest of /_matrix/media). */
export function registerLegacyUrlPreviewRoutes(app: FastifyInstance, services: Services): void {
  defineRoute(app, services, {
    method: "GET",
    paths: ["/_matrix/media/v3/preview_url", "/_matrix/media/r0/preview_url"],
    auth: "optional",
    handler: (ctx) => answerPreview(services, ctx),
  });
}
