/**
 * Federation reads of room events (server-server API, "Retrieving events", "Backfilling and retrieving missing
 * events", "Retrieving event authorisation information"); the logic is in services/federation/reads.ts.
 */
import { Type } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { MatrixError } from "../../errors.js";
import type { Services } from "../../services/services.js";
import { intParam, requireStringParam } from "../http/params.js";
import { defineFederationRoute } from "./auth.js";

const V1 = "/_matrix/federation/v1";

// The spec lists both lists as required; Synapse reads a missing one as empty (and answers a server the room's ACL
// denies 403 whatever its body), so a body without them is not refused before the room's access rules are checked.
const MissingEventsBody = Type.Object({
  earliest_events: Type.Optional(Type.Array(Type.String(), { maxItems: 1000 })),
  latest_events: Type.Optional(Type.Array(Type.String(), { maxItems: 1000 })),
  limit: Type.Optional(Type.Integer()),
  min_depth: Type.Optional(Type.Integer()),
});

export function registerFederationEventReads(app: FastifyInstance, services: Services): void {
  const reads = services.federationReads;

  defineFederationRoute(app, services, {
    method: "GET",
    paths: [`${V1}/event/:eventId`],
    handler: ({ origin, params }) => reads.event(origin, params.eventId!),
  });

  defineFederationRoute(app, services, {
    method: "GET",
    paths: [`${V1}/state/:roomId`],
    handler: ({ origin, params, query }) => reads.state(origin, params.roomId!, requireStringParam(query, "event_id")),
  });

  defineFederationRoute(app, services, {
    method: "GET",
    paths: [`${V1}/state_ids/:roomId`],
    handler: ({ origin, params, query }) => reads.stateIds(origin, params.roomId!, requireStringParam(query, "event_id")),
  });

  defineFederationRoute(app, services, {
    method: "GET",
    paths: [`${V1}/event_auth/:roomId/:eventId`],
    handler: ({ origin, params }) => reads.eventAuth(origin, params.roomId!, params.eventId!),
  });

  defineFederationRoute(app, services, {
    method: "GET",
    paths: [`${V1}/backfill/:roomId`],
    handler: ({ origin, params, query }) => {
      // `v` may be repeated: ?v=$a&v=$b.
      const v = query.v === undefined ? [] : Array.isArray(query.v) ? query.v : [query.v];
      if (v.length === 0) throw new MatrixError(400, "M_MISSING_PARAM", "Missing v query parameter");
      const limit = intParam(query, "limit", undefined, 0);
      if (limit === undefined) throw new MatrixError(400, "M_MISSING_PARAM", "Missing limit query parameter");
      return reads.backfill(origin, params.roomId!, v, limit);
    },
  });

  defineFederationRoute(app, services, {
    method: "POST",
    paths: [`${V1}/get_missing_events/:roomId`],
    body: MissingEventsBody,
    handler: ({ origin, params, body }) => reads.missingEvents(origin, params.roomId!, { ...body, earliest_events: body.earliest_events ?? [], latest_events: body.latest_events ?? [] }),
  });

  defineFederationRoute(app, services, {
    method: "GET",
    paths: [`${V1}/timestamp_to_event/:roomId`],
    handler: ({ origin, params, query }) => {
      const ts = intParam(query, "ts", undefined, 0);
      if (ts === undefined) throw new MatrixError(400, "M_MISSING_PARAM", "Missing ts query parameter");
      const dir = requireStringParam(query, "dir");
      if (dir !== "b" && dir !== "f") throw new MatrixError(400, "M_INVALID_PARAM", "dir must be 'b' or 'f'");
      return reads.timestampToEvent(origin, params.roomId!, ts, dir);
    },
  });
}
