/** Event relationships and threads (spec "Relationships API", "Querying threads in a room"). */
import type { FastifyInstance } from "fastify";
import { MatrixError } from "../../errors.js";
import type { ThreadsInclude } from "../../services/rooms/threads.js";
import type { Services } from "../../services/services.js";
import { boolParam, intParam, stringParam } from "../http/params.js";
import { clientV1, defineRoute, requester, type RouteContext } from "../http/routes.js";
import { roomIdParam } from "./rooms.js";

/** Spec: "The server can and should apply a maximum value"; 1000 as for /messages. */
const MAX_LIMIT = 1000;
/** Neither endpoint's default is in the spec; Synapse uses 5 for both. */
const DEFAULT_LIMIT = 5;
/** Each thread root comes with its thread summary, so pages are kept smaller. */
const MAX_THREADS_LIMIT = 100;

type Query = Record<string, string | string[] | undefined>;

function dirParam(query: Query): "b" | "f" {
  const dir = stringParam(query, "dir") ?? "b";
  if (dir !== "b" && dir !== "f") throw new MatrixError(400, "M_INVALID_PARAM", "dir must be 'b' or 'f'");
  return dir;
}

/** `recurse` (spec v1.10), or its MSC3981 unstable name; undefined when the client sent neither. */
function recurseParam(query: Query): boolean | undefined {
  for (const name of ["recurse", "org.matrix.msc3981.recurse"]) {
    if (stringParam(query, name) !== undefined) return boolParam(query, name, false);
  }
  return undefined;
}

export function registerRelationRoutes(app: FastifyInstance, services: Services): void {
  const { relations, threads } = services;

  const getRelations = (ctx: RouteContext<Record<string, unknown>>) =>
    relations.children(roomIdParam(ctx.params.roomId!), requester(ctx), ctx.params.eventId!, {
      relType: ctx.params.relType,
      eventType: ctx.params.eventType,
      from: stringParam(ctx.query, "from"),
      to: stringParam(ctx.query, "to"),
      dir: dirParam(ctx.query),
      limit: Math.min(intParam(ctx.query, "limit", DEFAULT_LIMIT, 0), MAX_LIMIT),
      recurse: recurseParam(ctx.query),
    });
  for (const path of ["/rooms/:roomId/relations/:eventId", "/rooms/:roomId/relations/:eventId/:relType", "/rooms/:roomId/relations/:eventId/:relType/:eventType"]) {
    defineRoute(app, services, { method: "GET", paths: clientV1(path), allowGuest: true, handler: getRelations });
  }

  defineRoute(app, services, {
    method: "GET",
    paths: clientV1("/rooms/:roomId/threads"),
    handler: async (ctx) => {
      const include = stringParam(ctx.query, "include") ?? "all";
      if (include !== "all" && include !== "participated") throw new MatrixError(400, "M_INVALID_PARAM", "include must be 'all' or 'participated'");
      // Spec: limit "Must be an integer greater than zero."
      const limit = Math.min(intParam(ctx.query, "limit", DEFAULT_LIMIT, 1), MAX_THREADS_LIMIT);
      return threads.list(roomIdParam(ctx.params.roomId!), requester(ctx), { include: include as ThreadsInclude, from: stringParam(ctx.query, "from"), limit });
    },
  });
}
