/**
 * The published room directory (spec "Published Room Directory"): a room's visibility in the directory, and the
 * directory listing, this server's or, with `server`, another server's (over federation's /publicRooms).
 */
import { Type, type Static, type TSchema } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { isValidServerName } from "../../core/ids/ids.js";
import type { JsonObject } from "../../core/json/types.js";
import { MatrixError, forbidden } from "../../errors.js";
import { FederationError } from "../../federation/errors.js";
import type { PublicRoomsRequest } from "../../services/rooms/directory.js";
import type { Services } from "../../services/services.js";
import { intParam, stringParam } from "../http/params.js";
import { clientPaths, defineRoute, requester } from "../http/routes.js";
import { roomIdParam } from "./rooms.js";

/** An optional field that may also be null ("not given"), as Synapse reads the body with `content.get(...)`. */
const Nullable = <T extends TSchema>(t: T) => Type.Optional(Type.Union([t, Type.Null()]));

/** The POST /publicRooms body, in both APIs. */
export const PublicRoomsBody = Type.Object({
  limit: Nullable(Type.Integer({ minimum: 0 })),
  since: Nullable(Type.String()),
  filter: Nullable(
    Type.Object({
      generic_search_term: Nullable(Type.String()),
      room_types: Nullable(Type.Array(Type.Union([Type.String(), Type.Null()]))),
    }),
  ),
  // Synapse reads it as truthy; SyTest and some clients send the string "true".
  include_all_networks: Nullable(Type.Union([Type.Boolean(), Type.Literal("true"), Type.Literal("false")])),
  third_party_instance_id: Nullable(Type.String()),
});

/** The request with every null left out (a first page is often asked for with `"since": null`). */
export function publicRoomsRequest(body: Static<typeof PublicRoomsBody>): PublicRoomsRequest {
  const out: PublicRoomsRequest = {};
  if (body.limit != null) out.limit = body.limit;
  if (body.since != null) out.since = body.since;
  if (body.include_all_networks != null) out.include_all_networks = body.include_all_networks === true || body.include_all_networks === "true";
  if (body.third_party_instance_id != null) out.third_party_instance_id = body.third_party_instance_id;
  if (body.filter != null) {
    out.filter = {};
    if (body.filter.generic_search_term != null) out.filter.generic_search_term = body.filter.generic_search_term;
    if (body.filter.room_types != null) out.filter.room_types = body.filter.room_types;
  }
  return out;
}

export function registerPublicRoomsRoutes(app: FastifyInstance, services: Services): void {
  const { directory, config, federationClient } = services;

  defineRoute(app, services, {
    method: "GET",
    paths: clientPaths("/directory/list/room/:roomId"),
    auth: "none",
    handler: async (ctx) => ({ visibility: await directory.visibility(roomIdParam(ctx.params.roomId!)) }),
  });

  defineRoute(app, services, {
    method: "PUT",
    paths: clientPaths("/directory/list/room/:roomId"),
    body: Type.Object({ visibility: Type.Optional(Type.Union([Type.Literal("public"), Type.Literal("private")])) }),
    handler: async (ctx) => {
      await directory.setVisibility(requester(ctx), roomIdParam(ctx.params.roomId!), ctx.body.visibility ?? "public");
      return {};
    },
  });

  // An application service's own room lists, one per network it bridges (spec "Application Service Room
  // Directories"): only the service may change them; /publicRooms shows them with `third_party_instance_id`
  // ("<appservice id>|<network id>") or `include_all_networks`.
  for (const method of ["PUT", "DELETE"] as const) {
    defineRoute(app, services, {
      method,
      paths: clientPaths("/directory/list/appservice/:networkId/:roomId"),
      body: Type.Object({ visibility: Type.Optional(Type.Union([Type.Literal("public"), Type.Literal("private")])) }),
      handler: async (ctx) => {
        const me = requester(ctx);
        if (!me.appService) throw forbidden("Only application services can edit their published room lists");
        const roomId = roomIdParam(ctx.params.roomId!);
        const networkId = ctx.params.networkId!;
        const visibility = method === "DELETE" ? "private" : (ctx.body.visibility ?? "public");
        if (visibility === "public") await services.storage.appServices.publishRoom(me.appService.id, networkId, roomId);
        else await services.storage.appServices.unpublishRoom(me.appService.id, networkId, roomId);
        return {};
      },
    });
  }

  /** The listing: ours, or another server's when `server` names it. */
  const list = async (server: string | undefined, req: PublicRoomsRequest, viaPost: boolean) => {
    if (server !== undefined && !isValidServerName(server)) throw new MatrixError(400, "M_INVALID_PARAM", "Invalid server name");
    if (server === undefined || server === config.serverName) return directory.publicRooms(req);
    try {
      if (viaPost) return await federationClient.post(server, "/_matrix/federation/v1/publicRooms", req as JsonObject);
      const query: Record<string, string> = {};
      if (req.limit !== undefined) query.limit = String(req.limit);
      if (req.since !== undefined) query.since = req.since;
      return await federationClient.get(server, "/_matrix/federation/v1/publicRooms", query);
    } catch (e) {
      if (e instanceof FederationError) throw new MatrixError(502, "M_UNKNOWN", `Failed to fetch the room directory of ${server}`);
      throw e;
    }
  };

  defineRoute(app, services, {
    method: "GET",
    paths: clientPaths("/publicRooms"),
    // Synapse's allow_public_rooms_without_auth.
    auth: config.allowPublicRoomsWithoutAuth ? "optional" : "required",
    allowGuest: true,
    handler: (ctx) => {
      const limit = intParam(ctx.query, "limit", undefined, 0);
      const since = stringParam(ctx.query, "since");
      return list(stringParam(ctx.query, "server"), { ...(limit !== undefined ? { limit } : {}), ...(since !== undefined ? { since } : {}) }, false);
    },
  });

  defineRoute(app, services, {
    method: "POST",
    paths: clientPaths("/publicRooms"),
    allowGuest: true,
    body: PublicRoomsBody,
    handler: (ctx) => list(stringParam(ctx.query, "server"), publicRoomsRequest(ctx.body), true),
  });
}
