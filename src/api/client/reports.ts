/** Reporting content (spec "Reporting content"): events, rooms (v1.13) and users (v1.14). */
import { Type } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import type { Services } from "../../services/services.js";
import { clientPaths, defineRoute, requester } from "../http/routes.js";
import { roomIdParam } from "./rooms.js";

/** `reason` is required for room and user reports ("May be blank"). */
const ReasonBody = Type.Object({ reason: Type.String() });

export function registerReportRoutes(app: FastifyInstance, services: Services): void {
  const { reports } = services;

  defineRoute(app, services, {
    method: "POST",
    paths: clientPaths("/rooms/:roomId/report/:eventId"),
    // Checked by the service with Synapse's messages (reason a string, the deprecated score an integer).
    body: Type.Object({}, { additionalProperties: true }),
    handler: async (ctx) => {
      await reports.reportEvent(requester(ctx).userId, roomIdParam(ctx.params.roomId!), ctx.params.eventId!, ctx.body as Record<string, unknown>);
      return {};
    },
  });

  defineRoute(app, services, {
    method: "POST",
    paths: clientPaths("/rooms/:roomId/report"),
    body: ReasonBody,
    handler: async (ctx) => {
      await reports.reportRoom(requester(ctx).userId, roomIdParam(ctx.params.roomId!), ctx.body.reason);
      return {};
    },
  });

  defineRoute(app, services, {
    method: "POST",
    paths: clientPaths("/users/:userId/report"),
    body: ReasonBody,
    handler: async (ctx) => {
      await reports.reportUser(requester(ctx).userId, ctx.params.userId!, ctx.body.reason);
      return {};
    },
  });
}
