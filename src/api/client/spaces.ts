/**
 * Spaces and room previews: the space hierarchy (spec "Spaces"), room summaries (v1.15, MSC3266) and mutual rooms
 * (v1.19, MSC2666), with the unstable paths Synapse still serves for them.
 */
import type { FastifyInstance } from "fastify";
import { isValidRoomAlias, isValidRoomId, isValidServerName, isValidUserId } from "../../core/ids/ids.js";
import { MatrixError } from "../../errors.js";
import type { Services } from "../../services/services.js";
import { boolParam, intParam, requireStringParam, stringParam } from "../http/params.js";
import { clientV1, defineRoute, requester } from "../http/routes.js";
import { roomIdParam } from "./rooms.js";

const UNSTABLE_SUMMARY = "/_matrix/client/unstable/im.nheko.summary";
const UNSTABLE_MUTUAL = "/_matrix/client/unstable/uk.half-shot.msc2666";

/** Every value of a repeated query parameter (`via=a&via=b`). */
function stringsParam(q: Record<string, string | string[] | undefined>, name: string): string[] {
  const v = q[name];
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

export function registerSpaceRoutes(app: FastifyInstance, services: Services): void {
  const { hierarchy, roomSummaries, mutualRooms } = services;

  defineRoute(app, services, {
    method: "GET",
    paths: [...clientV1("/rooms/:roomId/hierarchy"), "/_matrix/client/unstable/org.matrix.msc2946/rooms/:roomId/hierarchy"],
    allowGuest: true,
    handler: (ctx) => {
      const roomId = roomIdParam(ctx.params.roomId!);
      const limit = intParam(ctx.query, "limit", undefined, 1);
      const maxDepth = intParam(ctx.query, "max_depth", undefined, 0);
      const from = stringParam(ctx.query, "from");
      return hierarchy.walk(requester(ctx).userId, roomId, {
        suggestedOnly: boolParam(ctx.query, "suggested_only", false),
        ...(limit !== undefined ? { limit } : {}),
        ...(maxDepth !== undefined ? { maxDepth } : {}),
        ...(from !== undefined ? { from } : {}),
      });
    },
  });

  defineRoute(app, services, {
    method: "GET",
    paths: [...clientV1("/room_summary/:roomIdOrAlias"), `${UNSTABLE_SUMMARY}/rooms/:roomIdOrAlias/summary`, `${UNSTABLE_SUMMARY}/summary/:roomIdOrAlias`],
    // "Servers MAY allow unauthenticated access to this API" for rooms anyone may preview; the service checks.
    auth: "optional",
    allowGuest: true,
    handler: (ctx) => {
      const target = ctx.params.roomIdOrAlias!;
      if (!isValidRoomId(target) && !isValidRoomAlias(target)) throw new MatrixError(400, "M_INVALID_PARAM", `${target} is not a room ID or alias`);
      const via = stringsParam(ctx.query, "via");
      for (const v of via) if (!isValidServerName(v)) throw new MatrixError(400, "M_INVALID_PARAM", `Invalid server name in via: ${v}`);
      return roomSummaries.summary(ctx.requester?.userId, target, via);
    },
  });

  /** The other user of a mutual rooms request: one, valid, not oneself (`selfStatus`: 400 in the spec, 422 in Synapse's MSC2666). */
  const otherUser = (q: Record<string, string | string[] | undefined>, me: string, selfStatus: number): string => {
    if (stringsParam(q, "user_id").length > 1) throw new MatrixError(400, "M_INVALID_PARAM", "Duplicate user_id query parameter");
    const userId = requireStringParam(q, "user_id");
    if (!isValidUserId(userId)) throw new MatrixError(400, "M_INVALID_PARAM", "The user ID provided was invalid");
    if (userId === me) throw new MatrixError(selfStatus, "M_INVALID_PARAM", "You cannot request a list of shared rooms with yourself");
    return userId;
  };

  defineRoute(app, services, {
    method: "GET",
    paths: clientV1("/mutual_rooms"),
    handler: (ctx) => {
      const me = requester(ctx).userId;
      return mutualRooms.between(me, otherUser(ctx.query, me, 400), stringParam(ctx.query, "from"));
    },
  });

  defineRoute(app, services, {
    method: "GET",
    paths: [`${UNSTABLE_MUTUAL}/user/mutual_rooms`],
    handler: async (ctx) => {
      const me = requester(ctx).userId;
      const page = await mutualRooms.between(me, otherUser(ctx.query, me, 422), stringParam(ctx.query, "batch_token"));
      // MSC2666's names for the same page.
      return { joined: page.joined, count: page.count, ...(page.next_batch !== undefined ? { next_batch_token: page.next_batch } : {}) };
    },
  });
}
