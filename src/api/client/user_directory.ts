/**
 * The user directory (spec "User directory"): POST /user_directory/search. Guests may not search (as Synapse).
 * `limit` defaults to 10 and is capped at 50; a missing or non-string `search_term`, or a non-integer `limit`, is
 * 400 M_BAD_JSON (Synapse answers a missing term with a 400 too).
 */
import { Type } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import type { Services } from "../../services/services.js";
import { DEFAULT_LIMIT } from "../../services/user_directory.js";
import { clientPaths, defineRoute, requester } from "../http/routes.js";

const SearchBody = Type.Object({
  search_term: Type.String(),
  // null is "not given", as Synapse reads the body with `.get`.
  limit: Type.Optional(Type.Union([Type.Integer(), Type.Null()])),
});

export function registerUserDirectoryRoutes(app: FastifyInstance, services: Services): void {
  defineRoute(app, services, {
    method: "POST",
    paths: clientPaths("/user_directory/search"),
    body: SearchBody,
    handler: (ctx) => services.userDirectory.search(requester(ctx).userId, ctx.body.search_term, ctx.body.limit ?? DEFAULT_LIMIT),
  });
}
