/** Typing, receipts, read markers and presence (spec "Typing Notifications", "Receipts", "Read Markers", "Presence"). */
import { Type } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { isValidEventId, isValidUserId } from "../../core/ids/ids.js";
import { MatrixError, forbidden } from "../../errors.js";
import type { Services } from "../../services/services.js";
import { clientPaths, defineRoute, requester } from "../http/routes.js";
import { roomIdParam } from "./rooms.js";

export function registerEphemeralRoutes(app: FastifyInstance, services: Services): void {
  const { typing, receipts, presence, rooms } = services;

  defineRoute(app, services, {
    method: "PUT",
    paths: clientPaths("/rooms/:roomId/typing/:userId"),
    body: Type.Object({ typing: Type.Boolean(), timeout: Type.Optional(Type.Integer({ minimum: 0 })) }),
    allowGuest: true,
    handler: async (ctx) => {
      const me = requester(ctx);
      const roomId = roomIdParam(ctx.params.roomId!);
      if (ctx.params.userId !== me.userId) throw forbidden("Cannot set another user's typing state");
      await rooms.requireJoined(roomId, me.userId);
      typing.setTyping(roomId, me.userId, ctx.body.typing, ctx.body.timeout ?? 30_000);
      return {};
    },
  });

  defineRoute(app, services, {
    method: "POST",
    paths: clientPaths("/rooms/:roomId/receipt/:receiptType/:eventId"),
    body: Type.Object({}, { additionalProperties: true }),
    allowGuest: true,
    handler: async (ctx) => {
      const me = requester(ctx);
      const roomId = roomIdParam(ctx.params.roomId!);
      // Spec: an invalid thread_id (not a string, empty, neither "main" nor an event id) is 400 M_INVALID_PARAM.
      const threadId: unknown = (ctx.body as Record<string, unknown>).thread_id;
      if (threadId !== undefined && (typeof threadId !== "string" || threadId.length > 255 || (threadId !== "main" && !isValidEventId(threadId)))) {
        throw new MatrixError(400, "M_INVALID_PARAM", "thread_id must be 'main' or an event ID");
      }
      await rooms.requireJoined(roomId, me.userId);
      await receipts.setReceipt(roomId, me.userId, ctx.params.receiptType!, ctx.params.eventId!, threadId);
      return {};
    },
  });

  defineRoute(app, services, {
    method: "POST",
    paths: clientPaths("/rooms/:roomId/read_markers"),
    body: Type.Object({
      "m.fully_read": Type.Optional(Type.String()),
      "m.read": Type.Optional(Type.String()),
      "m.read.private": Type.Optional(Type.String()),
    }),
    allowGuest: true,
    handler: async (ctx) => {
      const me = requester(ctx);
      const roomId = roomIdParam(ctx.params.roomId!);
      await rooms.requireJoined(roomId, me.userId);
      const b = ctx.body;
      if (b["m.fully_read"] !== undefined) await receipts.setFullyRead(roomId, me.userId, b["m.fully_read"]);
      if (b["m.read"] !== undefined) await receipts.setReceipt(roomId, me.userId, "m.read", b["m.read"], undefined);
      if (b["m.read.private"] !== undefined) await receipts.setReceipt(roomId, me.userId, "m.read.private", b["m.read.private"], undefined);
      return {};
    },
  });

  defineRoute(app, services, {
    method: "PUT",
    paths: clientPaths("/presence/:userId/status"),
    body: Type.Object({ presence: Type.String(), status_msg: Type.Optional(Type.Union([Type.String({ maxLength: 4096 }), Type.Null()])) }),
    allowGuest: true,
    handler: async (ctx) => {
      const me = requester(ctx);
      if (ctx.params.userId !== me.userId) throw forbidden("Cannot set another user's presence");
      await presence.setStatus(me.userId, ctx.body.presence, ctx.body.status_msg ?? undefined);
      return {};
    },
  });

  defineRoute(app, services, {
    method: "GET",
    paths: clientPaths("/presence/:userId/status"),
    allowGuest: true,
    handler: async (ctx) => {
      const me = requester(ctx);
      const userId = ctx.params.userId!;
      if (!isValidUserId(userId) && !userId.startsWith("@")) throw new MatrixError(400, "M_INVALID_PARAM", "Invalid user ID");
      if (userId !== me.userId) {
        const shared = await services.storage.rooms.usersSharingRooms(me.userId, [userId]);
        if (!shared.has(userId)) throw forbidden("You are not allowed to see their presence.");
      }
      return presence.getStatus(userId);
    },
  });
}
