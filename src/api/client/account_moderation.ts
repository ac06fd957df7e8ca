/** Account moderation for server admins (spec v1.18 "Server administration"): /admin/suspend and /admin/lock. */
import { Type } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import type { ModerationAction } from "../../services/account_moderation.js";
import type { Services } from "../../services/services.js";
import { clientV1, defineRoute, requester } from "../http/routes.js";

export function registerAccountModerationRoutes(app: FastifyInstance, services: Services): void {
  const { accountModeration } = services;
  const endpoints: [ModerationAction, "suspended" | "locked"][] = [
    ["suspend", "suspended"],
    ["lock", "locked"],
  ];
  for (const [action, field] of endpoints) {
    defineRoute(app, services, {
      method: "GET",
      paths: clientV1(`/admin/${action}/:userId`),
      handler: async (ctx) => ({ [field]: await accountModeration.status(requester(ctx), action, ctx.params.userId!) }),
    });
    defineRoute(app, services, {
      method: "PUT",
      paths: clientV1(`/admin/${action}/:userId`),
      body: Type.Object({ [field]: Type.Boolean() }),
      handler: async (ctx) => {
        const on = (ctx.body as Record<string, boolean>)[field]!;
        return { [field]: await accountModeration.set(requester(ctx), action, ctx.params.userId!, on) };
      },
    });
  }
}
