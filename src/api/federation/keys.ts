/**
 * The key exchange endpoints (`/_matrix/key/v2`): our own keys, and the notary queries. Unauthenticated, as the
 * spec defines them; served on listeners with the `keys` or `federation` resource (as Synapse does).
 */
import { Type } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { invalidParam } from "../../errors.js";
import type { ServerKeyCriteria } from "../../services/key_server.js";
import type { Services } from "../../services/services.js";
import { defineRoute } from "../http/routes.js";

/** A `minimum_valid_until_ts` query parameter: an integer of milliseconds, or absent. */
function minimumOf(value: string | string[] | undefined): number | undefined {
  if (value === undefined) return undefined;
  const text = Array.isArray(value) ? value[value.length - 1]! : value;
  if (!/^-?\d{1,16}$/.test(text)) throw invalidParam("minimum_valid_until_ts must be an integer");
  return Number(text);
}

const Criteria = Type.Object({ minimum_valid_until_ts: Type.Optional(Type.Integer()) }, { additionalProperties: true });

export function registerKeyApi(app: FastifyInstance, services: Services): void {
  // `/server/{keyId}` is the deprecated per-key form ("Servers should not use this parameter and instead opt to
  // return all keys"); Synapse before 1.74 fetches keys with it, so it answers the same, with every key.
  defineRoute(app, services, {
    method: "GET",
    paths: ["/_matrix/key/v2/server", "/_matrix/key/v2/server/:keyId"],
    auth: "none",
    handler: () => services.keyServer.ownKeys(),
  });

  // `/query/{serverName}/{keyId}` is the deprecated per-key form, still sent by some servers (Synapse serves it).
  defineRoute(app, services, {
    method: "GET",
    paths: ["/_matrix/key/v2/query/:serverName", "/_matrix/key/v2/query/:serverName/:keyId"],
    auth: "none",
    handler: async ({ params, query }) => {
      const minimum = minimumOf(query.minimum_valid_until_ts);
      const c: ServerKeyCriteria = params.keyId ? { keyIds: { [params.keyId]: minimum } } : { keyIds: {}, minimumValidUntilTs: minimum };
      return { server_keys: await services.keyServer.query({ [params.serverName!]: c }) };
    },
  });

  defineRoute(app, services, {
    method: "POST",
    paths: ["/_matrix/key/v2/query"],
    auth: "none",
    body: Type.Object({ server_keys: Type.Record(Type.String(), Type.Record(Type.String(), Criteria), { maxProperties: 1000 }) }),
    handler: async ({ body }) => {
      const criteria: Record<string, ServerKeyCriteria> = {};
      for (const [server, keys] of Object.entries(body.server_keys)) {
        criteria[server] = { keyIds: Object.fromEntries(Object.entries(keys).map(([keyId, c]) => [keyId, c.minimum_valid_until_ts])) };
      }
      return { server_keys: await services.keyServer.query(criteria) };
    },
  });
}
