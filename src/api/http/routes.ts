/**
 * Route helpers: Matrix paths under their spec versions, typed handlers, and access-token authentication as a
 * route option, so each API file reads as a list of endpoints.
 */
import type { Static, TSchema } from "@sinclair/typebox";
import type { FastifyInstance, FastifyReply, FastifyRequest, HTTPMethods } from "fastify";
import { MatrixError } from "../../errors.js";
import type { Requester } from "../../services/tokens.js";
import type { Services } from "../../services/services.js";

/** `/account/whoami` → the r0 (legacy, still used by bots) and v3 client paths. */
export function clientPaths(path: string): string[] {
  return [`/_matrix/client/v3${path}`, `/_matrix/client/r0${path}`];
}

export function clientV1(path: string): string[] {
  return [`/_matrix/client/v1${path}`];
}

export type AuthMode = "required" | "optional" | "none";

export interface RouteContext<Body> {
  req: FastifyRequest;
  reply: FastifyReply;
  body: Body;
  params: Record<string, string>;
  query: Record<string, string | string[] | undefined>;
  /** Set when the route authenticates (auth "required", or "optional" and a token was sent). */
  requester: Requester | undefined;
  services: Services;
}

export interface RouteDef<S extends TSchema | undefined> {
  method: HTTPMethods | HTTPMethods[];
  paths: string[];
  /** JSON schema of the body; a mismatch is 400 M_BAD_JSON. */
  body?: S;
  /** A tighter cap on the body's bytes than the server-wide one; over it is 413 M_TOO_LARGE. */
  bodyLimit?: number;
  auth?: AuthMode;
  /** Guests may call it (spec "Guest access"); otherwise they get 403 M_GUEST_ACCESS_FORBIDDEN. */
  allowGuest?: boolean;
  /** An expired (soft-logged-out) access token is still accepted, as for /logout. */
  allowExpired?: boolean;
  /** A locked account's token is still accepted (spec "Account locking": /logout and /logout/all only). */
  allowLocked?: boolean;
  handler: (ctx: RouteContext<S extends TSchema ? Static<S> : Record<string, unknown>>) => Promise<unknown> | unknown;
}

/** A route's reply: a plain object is sent as JSON with 200; use `reply` directly for anything else. */
export function defineRoute<S extends TSchema | undefined = undefined>(app: FastifyInstance, services: Services, def: RouteDef<S>): void {
  const auth = def.auth ?? "required";
  for (const url of def.paths) {
    app.route({
      method: def.method,
      url,
      schema: def.body ? { body: def.body } : {},
      ...(def.bodyLimit !== undefined ? { bodyLimit: def.bodyLimit } : {}),
      // A request without a body validates as `{}` (Synapse does the same): e.g. a bare POST that starts UIA.
      preValidation: (req, _reply, done) => {
        if (req.body === undefined) req.body = {};
        done();
      },
      handler: async (req, reply) => {
        let requester: Requester | undefined;
        if (auth !== "none") {
          const token = accessTokenOf(req);
          if (token === undefined) {
            if (auth === "required") throw new MatrixError(401, "M_MISSING_TOKEN", "Missing access token");
          } else {
            const appService = services.appServices.byToken(token);
            const query = req.query as Record<string, unknown> | undefined;
            requester = appService
              ? await services.appServices.requester(appService, query?.user_id, query?.device_id ?? query?.["org.matrix.msc3202.device_id"])
              : await services.tokens.authenticate(token, { allowExpired: def.allowExpired ?? false, allowLocked: def.allowLocked ?? false });
            if (requester.isGuest && !def.allowGuest) throw new MatrixError(403, "M_GUEST_ACCESS_FORBIDDEN", "Guest access not allowed");
            if (requester.deviceId) services.devices.noteSeen(requester.userId, requester.deviceId, req.ip, req.headers["user-agent"] ?? null);
          }
        }
        const result = await def.handler({
          req,
          reply,
          body: (req.body ?? {}) as never,
          params: req.params as Record<string, string>,
          query: req.query as Record<string, string | string[] | undefined>,
          requester,
          services,
        });
        if (reply.sent) return reply;
        return result;
      },
    });
  }
}

/** The access token: `Authorization: Bearer …`, or the deprecated `access_token` query parameter. */
export function accessTokenOf(req: FastifyRequest): string | undefined {
  const header = req.headers.authorization;
  if (header !== undefined) {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!m) throw new MatrixError(401, "M_MISSING_TOKEN", "Invalid Authorization header");
    return m[1];
  }
  const q = (req.query as Record<string, unknown> | undefined)?.access_token;
  if (typeof q === "string" && q.length > 0) return q;
  return undefined;
}

/** The authenticated requester of a route with auth "required". */
export function requester(ctx: { requester: Requester | undefined }): Requester {
  if (!ctx.requester) throw new MatrixError(401, "M_MISSING_TOKEN", "Missing access token");
  return ctx.requester;
}
