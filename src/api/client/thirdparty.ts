/**
 * Third-party lookups (spec "Third-party Networks"): GET /thirdparty/protocols, /thirdparty/protocol/{protocol},
 * /thirdparty/location[/{protocol}] and /thirdparty/user[/{protocol}]. Guests may use them, as in Synapse.
 */
import type { FastifyInstance } from "fastify";
import type { Services } from "../../services/services.js";
import type { ThirdPartyFields, ThirdPartyKind } from "../../services/thirdparty.js";
import { clientPaths, defineRoute, type RouteContext } from "../http/routes.js";

/** The query string as lookup fields, without the access token (as Synapse passes it on to application services). */
function fieldsOf(query: RouteContext<unknown>["query"]): ThirdPartyFields {
  const fields: ThirdPartyFields = {};
  for (const [k, v] of Object.entries(query)) {
    // Nor the identity an application service asserts.
    if (k === "access_token" || k === "user_id" || k === "device_id" || v === undefined) continue;
    fields[k] = Array.isArray(v) ? v : [v];
  }
  return fields;
}

/** v3 and r0, and `unstable`, which Synapse still serves for these (bridges written before r0 call it). */
const thirdPartyPaths = (path: string) => [...clientPaths(path), `/_matrix/client/unstable${path}`];

export function registerThirdPartyRoutes(app: FastifyInstance, services: Services): void {
  const { thirdParty } = services;

  defineRoute(app, services, {
    method: "GET",
    paths: thirdPartyPaths("/thirdparty/protocols"),
    allowGuest: true,
    handler: () => thirdParty.protocols(),
  });

  defineRoute(app, services, {
    method: "GET",
    paths: thirdPartyPaths("/thirdparty/protocol/:protocol"),
    allowGuest: true,
    handler: (ctx) => thirdParty.protocol(ctx.params.protocol!),
  });

  for (const kind of ["location", "user"] as ThirdPartyKind[]) {
    defineRoute(app, services, {
      method: "GET",
      paths: thirdPartyPaths(`/thirdparty/${kind}/:protocol`),
      allowGuest: true,
      handler: (ctx) => thirdParty.query(kind, ctx.params.protocol!, fieldsOf(ctx.query)),
    });
    defineRoute(app, services, {
      method: "GET",
      paths: thirdPartyPaths(`/thirdparty/${kind}`),
      allowGuest: true,
      handler: (ctx) => thirdParty.query(kind, undefined, fieldsOf(ctx.query)),
    });
  }
}
