/** POST /rooms/{roomId}/upgrade (spec "Room Upgrades"). */
import { Type } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { isValidUserId } from "../../core/ids/ids.js";
import { getRoomVersion } from "../../core/rooms/versions.js";
import { badJson, invalidParam, missingParam } from "../../errors.js";
import type { Services } from "../../services/services.js";
import { exemptFromRateLimits } from "../../services/tokens.js";
import { clientPaths, defineRoute, requester } from "../http/routes.js";
import { roomIdParam } from "./rooms.js";

const UpgradeBody = Type.Object({ new_version: Type.Optional(Type.Unknown()), additional_creators: Type.Optional(Type.Unknown()) }, { additionalProperties: true });

/** Spec v1.16 `additional_creators`: user IDs (checked as the m.room.create auth rules will check them). */
function additionalCreatorsOf(value: unknown): string[] | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value)) throw badJson("additional_creators must be an array of user IDs");
  for (const u of value) {
    if (typeof u !== "string" || !isValidUserId(u)) throw invalidParam(`Invalid user ID in additional_creators: ${String(u)}`);
  }
  return value as string[];
}

export function registerRoomUpgradeRoutes(app: FastifyInstance, services: Services): void {
  const { roomUpgrades, limits } = services;

  defineRoute(app, services, {
    method: "POST",
    paths: clientPaths("/rooms/:roomId/upgrade"),
    body: UpgradeBody,
    handler: async (ctx) => {
      const me = requester(ctx);
      const roomId = roomIdParam(ctx.params.roomId!);
      const newVersion = ctx.body.new_version;
      if (newVersion === undefined) throw missingParam("Missing params: ['new_version']");
      if (typeof newVersion !== "string") throw badJson("new_version must be a string");
      // "When upgrading to a room version which doesn't support additional creators, this field is ignored".
      const additionalCreators = getRoomVersion(newVersion)?.privilegedCreators ? additionalCreatorsOf(ctx.body.additional_creators) : undefined;
      await services.accountModeration.assertNotSuspended(me.userId);
      // An upgrade creates a room: it shares room creation's rate limit.
      if (!exemptFromRateLimits(me)) limits.roomCreation.take(me.userId);
      const replacement = await roomUpgrades.upgrade(roomId, me.userId, newVersion, additionalCreators);
      return { replacement_room: replacement };
    },
  });
}
