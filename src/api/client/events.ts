/**
 * The legacy (pre-/sync) client API that Synapse still serves and older clients and SyTest's fixtures still call:
 * GET /events (the event stream), GET /events/{eventId}, GET /initialSync and GET /rooms/{roomId}/initialSync
 * (spec r0.6.1; removed from later versions). Served under r0, v3 and the original api/v1 prefix, as Synapse.
 */
import type { FastifyInstance } from "fastify";
import { forbidden, notFound } from "../../errors.js";
import type { Services } from "../../services/services.js";
import { EventStreamService, legacyEvent } from "../../services/sync/events_stream.js";
import { InitialSyncService } from "../../services/sync/initial_sync.js";
import { parseSyncToken, type SyncToken } from "../../services/sync/token.js";
import { boolParam, intParam, stringParam } from "../http/params.js";
import { clientPaths, defineRoute, requester } from "../http/routes.js";
import { roomIdParam } from "./rooms.js";

/** Synapse's default long-poll when `timeout` is not given, and our ceiling (as /sync's). */
const DEFAULT_TIMEOUT_MS = 30_000;
const MAX_TIMEOUT_MS = 10 * 60_000;
/** Synapse's pagination limits: 10 by default, at most 1000. */
const DEFAULT_LIMIT = 10;
const MAX_LIMIT = 1000;

function legacyPaths(path: string): string[] {
  return [...clientPaths(path), `/_matrix/client/api/v1${path}`];
}

/** The `limit` query parameter: a non-negative integer (400 M_INVALID_PARAM otherwise), capped at 1000. */
function limitParam(query: Record<string, string | string[] | undefined>): number {
  return Math.min(intParam(query, "limit", DEFAULT_LIMIT, 0), MAX_LIMIT);
}

export function registerLegacyEventRoutes(app: FastifyInstance, services: Services): void {
  const currentToken = () => services.sync.currentToken();
  const stream = new EventStreamService({
    rooms: services.rooms,
    presence: services.presence,
    typing: services.typing,
    receipts: services.receipts,
    accountData: services.accountData,
    presenceEnabled: services.config.presenceEnabled,
    currentToken,
  });
  const initialSync = new InitialSyncService({
    rooms: services.rooms,
    presence: services.presence,
    receipts: services.receipts,
    accountData: services.accountData,
    currentToken,
    presenceEnabled: services.config.presenceEnabled,
  });

  defineRoute(app, services, {
    method: "GET",
    paths: legacyPaths("/events"),
    allowGuest: true,
    handler: async (ctx) => {
      const me = requester(ctx);
      const fromRaw = stringParam(ctx.query, "from");
      let from: SyncToken | undefined;
      // "END" (or nothing) means now, as Synapse.
      if (fromRaw !== undefined && fromRaw !== "END" && fromRaw !== "") from = parseSyncToken(fromRaw);
      const roomRaw = stringParam(ctx.query, "room_id");
      // Synapse treats 0 as its default of 10 room events.
      const limit = limitParam(ctx.query) || DEFAULT_LIMIT;
      const timeoutMs = Math.min(intParam(ctx.query, "timeout", DEFAULT_TIMEOUT_MS, 0), MAX_TIMEOUT_MS);
      const abort = new AbortController();
      ctx.req.raw.once("close", () => {
        if (!ctx.reply.raw.writableFinished) abort.abort();
      });
      return stream.stream({
        userId: me.userId,
        deviceId: me.deviceId,
        isGuest: me.isGuest,
        from,
        timeoutMs,
        limit,
        roomId: roomRaw !== undefined ? roomIdParam(roomRaw) : undefined,
        signal: abort.signal,
      });
    },
  });

  defineRoute(app, services, {
    method: "GET",
    paths: legacyPaths("/events/:eventId"),
    handler: async (ctx) => {
      const me = requester(ctx);
      const core = services.roomCore;
      const found = await core.events.get(ctx.params.eventId!);
      if (!found || found.outlier || found.rejected) throw notFound("Event not found.");
      // As Synapse: an event that exists but is hidden from the user by history visibility is 403.
      const e = await core.visibility.asSeenBy(me.userId, found);
      if (!e) throw forbidden("You don't have permission to access that event.");
      return legacyEvent(await core.formatter.formatOne(e, { userId: me.userId, deviceId: me.deviceId }));
    },
  });

  defineRoute(app, services, {
    method: "GET",
    paths: legacyPaths("/initialSync"),
    handler: async (ctx) => {
      const me = requester(ctx);
      return initialSync.all(me, { limit: limitParam(ctx.query), archived: boolParam(ctx.query, "archived", false) });
    },
  });

  defineRoute(app, services, {
    method: "GET",
    paths: legacyPaths("/rooms/:roomId/initialSync"),
    allowGuest: true,
    handler: async (ctx) => {
      const me = requester(ctx);
      return initialSync.room(me, roomIdParam(ctx.params.roomId!), limitParam(ctx.query));
    },
  });
}
