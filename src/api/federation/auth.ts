/**
 * Inbound request authentication (server-server API, "Request Authentication"): every `/_matrix/federation`
 * request carries an `X-Matrix` Authorization header whose signature covers the method, the request target (path
 * and query, as received), the origin, the destination (us) and the JSON body. `defineFederationRoute` is the
 * federation counterpart of `defineRoute`: handlers receive the authenticated origin server.
 */
import type { Static, TSchema } from "@sinclair/typebox";
import type { FastifyInstance, FastifyReply, FastifyRequest, HTTPMethods } from "fastify";
import { parseXMatrix, requestSigningJson, XMatrixParseError, type XMatrixAuth } from "../../core/federation/xmatrix.js";
import { parseJsonKeepingNumbers } from "../../core/json/parse.js";
import type { JsonValue } from "../../core/json/types.js";
import { MatrixError } from "../../errors.js";
import type { Services } from "../../services/services.js";

const unauthorized = (msg: string) => new MatrixError(401, "M_UNAUTHORIZED", msg);

/**
 * Authenticates a federation request; returns the origin server name, or undefined when there is no X-Matrix
 * header. Throws 400 M_UNAUTHORIZED for a malformed header; 401 M_UNAUTHORIZED for a destination that is not us, or a signature that does
 * not verify with a currently valid key of the origin; 403 M_FORBIDDEN when `federation_domain_whitelist` excludes
 * the origin.
 */
export async function authenticateFederationRequest(req: FastifyRequest, services: Services): Promise<string | undefined> {
  const header = req.headers.authorization;
  if (header === undefined || !/^x-matrix[ \t]/i.test(header)) return undefined;
  let auth: XMatrixAuth;
  try {
    auth = parseXMatrix(header);
  } catch (e) {
    // A header that does not parse (or names an origin that is not a server name, e.g. a non-numeric port) is a bad
    // request rather than a failed authentication: 400, still M_UNAUTHORIZED, as Synapse answers.
    if (e instanceof XMatrixParseError) throw new MatrixError(400, "M_UNAUTHORIZED", `Malformed Authorization header: ${e.message}`);
    throw e;
  }
  const ourName = services.config.serverName;
  // "If this property is included, but the value does not match the receiving server's name, the receiving server
  // must deny the request with an HTTP status code 401 Unauthorized."
  if (auth.destination !== undefined && auth.destination !== ourName) {
    throw unauthorized(`Destination mismatch in auth header, received: ${auth.destination}`);
  }
  if (!services.federationClient.isDomainAllowed(auth.origin)) throw new MatrixError(403, "M_FORBIDDEN", `Federation denied with ${auth.origin}.`);
  // The signed object names us as destination whether or not the header did (older senders omit it).
  // A body with numbers canonical JSON cannot express (a float in an event, which the room version may then refuse
  // with 400 M_BAD_JSON) was signed as its sender encodes them: the text it sent. As Synapse, whose canonical JSON
  // encodes floats, the signature is checked first and the content judged after.
  const content =
    req.method === "PUT" || req.method === "POST" ? (req.rawJsonText !== undefined ? (parseJsonKeepingNumbers(req.rawJsonText) as JsonValue) : (req.body as JsonValue | undefined)) : undefined;
  const json = requestSigningJson({ method: req.method, uri: req.raw.url ?? req.url, origin: auth.origin, destination: ourName, content });
  json.signatures = { [auth.origin]: { [auth.key]: auth.sig } };
  await services.keys.verifySignedJson(json, auth.origin, { atTs: Date.now() });
  return auth.origin;
}

export type FederationAuth = "required" | "optional";

export interface FederationRouteContext<Body, Origin> {
  req: FastifyRequest;
  reply: FastifyReply;
  body: Body;
  params: Record<string, string>;
  query: Record<string, string | string[] | undefined>;
  /** The authenticated origin server. */
  origin: Origin;
  services: Services;
}

export interface FederationRouteDef<S extends TSchema | undefined, A extends FederationAuth> {
  method: HTTPMethods | HTTPMethods[];
  paths: string[];
  /** JSON schema of the body; a mismatch is 400 M_BAD_JSON. */
  body?: S;
  /**
   * "required" (default): a valid X-Matrix header is needed. "optional": the endpoint answers anyone, but a header
   * that is present must still be valid (as Synapse's servlets with REQUIRE_AUTH = False), e.g. `/version`.
   */
  auth?: A;
  handler: (ctx: FederationRouteContext<S extends TSchema ? Static<S> : Record<string, unknown>, A extends "optional" ? string | undefined : string>) => Promise<unknown> | unknown;
}

/** A federation route: authenticated before its body is validated or its handler runs. */
export function defineFederationRoute<S extends TSchema | undefined = undefined, A extends FederationAuth = "required">(
  app: FastifyInstance,
  services: Services,
  def: FederationRouteDef<S, A>,
): void {
  const required = (def.auth ?? "required") === "required";
  for (const url of def.paths) {
    const origins = new WeakMap<FastifyRequest, string>();
    app.route({
      method: def.method,
      url,
      schema: def.body ? { body: def.body } : {},
      preValidation: async (req) => {
        let origin: string | undefined;
        try {
          origin = await authenticateFederationRequest(req, services);
        } catch (e) {
          // Worth an info line: a peer whose requests we refuse is a federation problem an admin will look for.
          if (e instanceof MatrixError) req.log.info({ method: req.method, url: req.url, err: e.message }, "refused a federation request");
          throw e;
        }
        if (origin === undefined && required) throw unauthorized("Missing Authorization headers");
        if (origin !== undefined) origins.set(req, origin);
        if (req.body === undefined) req.body = {};
      },
      handler: async (req, reply) => {
        const result = await def.handler({
          req,
          reply,
          body: req.body as never,
          params: req.params as Record<string, string>,
          query: req.query as Record<string, string | string[] | undefined>,
          origin: origins.get(req) as never,
          services,
        });
        if (reply.sent) return reply;
        return result;
      },
    });
  }
}
