/** GET /sync and filters (spec "Syncing", "Filtering"). */
import { Type } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { FilterError, parseFilter, parseSyncFilterParam, type FilterDefinition } from "../../core/filters/index.js";
import { MatrixError, forbidden, notFound } from "../../errors.js";
import { PRESENCE_STATES } from "../../services/ephemeral/presence.js";
import type { Services } from "../../services/services.js";
import { compileSyncFilter } from "../../services/sync/filter.js";
import { parseSyncToken } from "../../services/sync/token.js";
import { boolParam, intParam, stringParam } from "../http/params.js";
import { clientPaths, defineRoute, requester } from "../http/routes.js";

const MAX_TIMEOUT_MS = 10 * 60_000;

export function registerSyncRoutes(app: FastifyInstance, services: Services): void {
  const { storage } = services;

  defineRoute(app, services, {
    method: "GET",
    paths: clientPaths("/sync"),
    allowGuest: true,
    handler: async (ctx) => {
      const me = requester(ctx);
      const sinceRaw = stringParam(ctx.query, "since");
      const setPresence = stringParam(ctx.query, "set_presence") ?? "online";
      if (!PRESENCE_STATES.has(setPresence)) throw new MatrixError(400, "M_INVALID_PARAM", "set_presence must be online, offline or unavailable");
      let filter: FilterDefinition | undefined;
      const raw = stringParam(ctx.query, "filter");
      if (raw !== undefined) {
        try {
          const p = parseSyncFilterParam(raw);
          if (p.kind === "inline") filter = p.filter;
          else {
            const id = /^\d+$/.test(p.id) ? Number(p.id) : NaN;
            const stored = Number.isSafeInteger(id) ? await storage.filters.get(me.userId, id) : undefined;
            if (stored === undefined) throw new MatrixError(400, "M_INVALID_PARAM", "No such filter");
            filter = parseFilter(JSON.parse(stored));
          }
        } catch (e) {
          if (e instanceof FilterError) throw new MatrixError(400, "M_INVALID_PARAM", e.message);
          throw e;
        }
      }
      const abort = new AbortController();
      // Only a client that went away before its answer aborts the wait (an abort builds a DOMException: not free).
      ctx.req.raw.once("close", () => {
        if (!ctx.reply.raw.writableFinished) abort.abort();
      });
      return services.sync.sync({
        userId: me.userId,
        deviceId: me.deviceId,
        since: sinceRaw !== undefined ? parseSyncToken(sinceRaw) : undefined,
        fullState: boolParam(ctx.query, "full_state", false),
        timeoutMs: Math.min(intParam(ctx.query, "timeout", 0, 0), MAX_TIMEOUT_MS),
        setPresence,
        filter: compileSyncFilter(filter),
        signal: abort.signal,
      });
    },
  });

  defineRoute(app, services, {
    method: "POST",
    paths: clientPaths("/user/:userId/filter"),
    body: Type.Object({}, { additionalProperties: true }),
    allowGuest: true,
    handler: async (ctx) => {
      const me = requester(ctx);
      if (me.userId !== ctx.params.userId) throw forbidden("Cannot create filters for other users");
      try {
        parseFilter(ctx.body);
      } catch (e) {
        if (e instanceof FilterError) throw new MatrixError(400, "M_BAD_JSON", e.message);
        throw e;
      }
      const id = await storage.filters.insert(me.userId, JSON.stringify(ctx.body));
      return { filter_id: String(id) };
    },
  });

  defineRoute(app, services, {
    method: "GET",
    paths: clientPaths("/user/:userId/filter/:filterId"),
    allowGuest: true,
    handler: async (ctx) => {
      const me = requester(ctx);
      if (me.userId !== ctx.params.userId) throw forbidden("Cannot get filters for other users");
      const raw = ctx.params.filterId!;
      if (!/^\d+$/.test(raw)) throw new MatrixError(400, "M_INVALID_PARAM", "Invalid filter ID");
      const stored = await storage.filters.get(me.userId, Number(raw));
      if (stored === undefined) throw notFound("No such filter");
      return JSON.parse(stored) as Record<string, unknown>;
    },
  });
}
