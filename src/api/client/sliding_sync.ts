/**
 * Simplified Sliding Sync (MSC4186) on Synapse's unstable path: query `pos`, `timeout`, `set_presence` (also read
 * from the body, as the MSC's newer text has them), the JSON body validated by the service (sliding_request.ts).
 */
import { Type } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { isJsonObject } from "../../core/json/types.js";
import { MatrixError } from "../../errors.js";
import { PRESENCE_STATES } from "../../services/ephemeral/presence.js";
import type { Services } from "../../services/services.js";
import { stringParam } from "../http/params.js";
import { defineRoute, requester } from "../http/routes.js";

const MAX_TIMEOUT_MS = 10 * 60_000;

export function registerSlidingSyncRoutes(app: FastifyInstance, services: Services): void {
  defineRoute(app, services, {
    method: "POST",
    // MSC4186's path (as Synapse), and MSC3575's, where matrix-js-sdk's SlidingSync (Element Web) posts the same
    // requests: served by the same engine, so that client needs no proxy.
    paths: ["/_matrix/client/unstable/org.matrix.simplified_msc3575/sync", "/_matrix/client/unstable/org.matrix.msc3575/sync"],
    body: Type.Object({}, { additionalProperties: true }),
    handler: async (ctx) => {
      const me = requester(ctx);
      const body = ctx.body as Record<string, unknown>;
      const fromBody = (k: string) => (isJsonObject(body) ? body[k] : undefined);
      const pos = stringParam(ctx.query, "pos") ?? fromBody("pos");
      if (pos !== undefined && (typeof pos !== "string" || pos.length === 0)) throw new MatrixError(400, "M_INVALID_PARAM", "pos must be a non-empty string");
      const timeoutRaw = stringParam(ctx.query, "timeout") ?? fromBody("timeout") ?? 0;
      const timeout = typeof timeoutRaw === "string" && /^\d{1,12}$/.test(timeoutRaw) ? Number(timeoutRaw) : timeoutRaw;
      if (typeof timeout !== "number" || !Number.isSafeInteger(timeout) || timeout < 0) throw new MatrixError(400, "M_INVALID_PARAM", "timeout must be a non-negative integer");
      const setPresence = stringParam(ctx.query, "set_presence") ?? fromBody("set_presence") ?? "online";
      if (typeof setPresence !== "string" || !PRESENCE_STATES.has(setPresence)) throw new MatrixError(400, "M_INVALID_PARAM", "set_presence must be online, offline or unavailable");
      const abort = new AbortController();
      // Only a client that went away before its answer aborts the wait.
      ctx.req.raw.once("close", () => {
        if (!ctx.reply.raw.writableFinished) abort.abort();
      });
      return services.slidingSync.sync({
        userId: me.userId,
        deviceId: me.deviceId,
        pos: pos as string | undefined,
        timeoutMs: Math.min(timeout, MAX_TIMEOUT_MS),
        setPresence,
        body,
        signal: abort.signal,
      });
    },
  });
}
