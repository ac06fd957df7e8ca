/**
 * Room events: send, state, redact, get event, members, /messages, /context, timestamp_to_event
 * (spec "Sending events to a room", "Getting events for a room", "Redactions").
 */
import { Type } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { FilterError, matchesEventFilter, parseRoomEventFilterParam, roomEventFilterLazyLoad, type RoomEventFilter } from "../../core/filters/index.js";
import type { JsonObject } from "../../core/json/types.js";
import { MatrixError } from "../../errors.js";
import type { StoredEvent } from "../../services/rooms/event_cache.js";
import type { EventSelection } from "../../services/rooms/messages.js";
import type { Services } from "../../services/services.js";
import { exemptFromRateLimits } from "../../services/tokens.js";
import { clientPaths, clientV1, defineRoute, requester, type RouteContext } from "../http/routes.js";
import { intParam, requireStringParam, stringParam } from "../http/params.js";
import { roomIdParam } from "./rooms.js";

const AnyObject = Type.Object({}, { additionalProperties: true });

/** A `filter` query parameter (a RoomEventFilter as JSON) turned into an event selection. */
export function selectionFromQuery(query: Record<string, string | string[] | undefined>): EventSelection | undefined {
  const raw = stringParam(query, "filter");
  if (raw === undefined) return undefined;
  let filter: RoomEventFilter;
  try {
    filter = parseRoomEventFilterParam(raw);
  } catch (e) {
    if (e instanceof FilterError) throw new MatrixError(400, "M_INVALID_PARAM", e.message);
    throw e;
  }
  return {
    matches: (e: StoredEvent) => matchesEventFilter(filter, { type: e.event.type, sender: e.event.sender, room_id: e.event.room_id, content: e.event.content }),
    lazyLoadMembers: roomEventFilterLazyLoad(filter).enabled,
  };
}

/** Rooms v6+ forbid floats and out-of-range integers; JSON.parse would silently accept `1.0` or `1e3`. */
async function checkNumbers(ctx: RouteContext<unknown>, roomId: string): Promise<void> {
  if (!ctx.req.nonCanonicalNumbers) return;
  const version = await ctx.services.roomCore.events.roomVersion(roomId);
  if (version?.strictCanonicalJson) throw new MatrixError(400, "M_BAD_JSON", "Event content must not contain floats or integers outside ±(2^53-1)");
}

export function registerRoomEventRoutes(app: FastifyInstance, services: Services): void {
  const { messages, limits, accountModeration } = services;

  const send = async (ctx: RouteContext<Record<string, unknown>>, txnId: string | undefined) => {
    const me = requester(ctx);
    const roomId = roomIdParam(ctx.params.roomId!);
    await checkNumbers(ctx, roomId);
    await accountModeration.assertMaySend(me.userId, ctx.params.eventType!, ctx.body);
    if (!me.isAdmin && !exemptFromRateLimits(me)) limits.message.take(me.userId);
    const eventId = await messages.send(roomId, me, ctx.params.eventType!, ctx.body as JsonObject, txnId);
    return { event_id: eventId };
  };

  defineRoute(app, services, {
    method: "PUT",
    paths: clientPaths("/rooms/:roomId/send/:eventType/:txnId"),
    body: AnyObject,
    allowGuest: true,
    handler: (ctx) => send(ctx, ctx.params.txnId!),
  });

  defineRoute(app, services, {
    method: "POST",
    paths: clientPaths("/rooms/:roomId/send/:eventType"),
    body: AnyObject,
    allowGuest: true,
    handler: (ctx) => send(ctx, undefined),
  });

  const putState = async (ctx: RouteContext<Record<string, unknown>>) => {
    const me = requester(ctx);
    const roomId = roomIdParam(ctx.params.roomId!);
    await checkNumbers(ctx, roomId);
    await accountModeration.assertNotSuspended(me.userId);
    const eventId = await messages.setState(roomId, me, ctx.params.eventType!, ctx.params.stateKey ?? "", ctx.body as JsonObject);
    // Revoking guest access: answer once this server's guests have left (joining the run the event's commit started;
    // a run that already ended finds nobody left to remove).
    if (ctx.params.eventType === "m.room.guest_access") await services.membership.kickGuests(roomId).catch(() => undefined);
    return { event_id: eventId };
  };
  const getState = async (ctx: RouteContext<Record<string, unknown>>) => {
    const me = requester(ctx);
    const e = await messages.stateEvent(roomIdParam(ctx.params.roomId!), me, ctx.params.eventType!, ctx.params.stateKey ?? "");
    // Spec v1.16: ?format=event returns the whole event instead of its content.
    if (stringParam(ctx.query, "format") === "event") return messages.formatState(e, me);
    return e.redactedBy ? (await messages.formatState(e, me)).content : e.event.content;
  };
  for (const path of ["/rooms/:roomId/state/:eventType/:stateKey", "/rooms/:roomId/state/:eventType"]) {
    defineRoute(app, services, { method: "PUT", paths: clientPaths(path), body: AnyObject, handler: putState });
    defineRoute(app, services, { method: "GET", paths: clientPaths(path), allowGuest: true, handler: getState });
  }

  defineRoute(app, services, {
    method: "GET",
    paths: clientPaths("/rooms/:roomId/state"),
    allowGuest: true,
    handler: async (ctx) => messages.stateEvents(roomIdParam(ctx.params.roomId!), requester(ctx)),
  });

  defineRoute(app, services, {
    method: "GET",
    paths: clientPaths("/rooms/:roomId/event/:eventId"),
    allowGuest: true,
    handler: async (ctx) => messages.event(roomIdParam(ctx.params.roomId!), requester(ctx), ctx.params.eventId!),
  });

  defineRoute(app, services, {
    method: "GET",
    paths: clientPaths("/rooms/:roomId/members"),
    allowGuest: true,
    handler: async (ctx) => {
      const opts: { at?: string; membership?: string; notMembership?: string } = {};
      const at = stringParam(ctx.query, "at");
      const m = stringParam(ctx.query, "membership");
      const nm = stringParam(ctx.query, "not_membership");
      const valid = new Set(["join", "invite", "knock", "leave", "ban"]);
      if (m !== undefined && !valid.has(m)) throw new MatrixError(400, "M_INVALID_PARAM", "Invalid membership");
      if (nm !== undefined && !valid.has(nm)) throw new MatrixError(400, "M_INVALID_PARAM", "Invalid not_membership");
      if (at !== undefined) opts.at = at;
      if (m !== undefined) opts.membership = m;
      if (nm !== undefined) opts.notMembership = nm;
      return { chunk: await messages.members(roomIdParam(ctx.params.roomId!), requester(ctx), opts) };
    },
  });

  defineRoute(app, services, {
    method: "GET",
    paths: clientPaths("/rooms/:roomId/joined_members"),
    allowGuest: true,
    handler: async (ctx) => ({ joined: await messages.joinedMembers(roomIdParam(ctx.params.roomId!), requester(ctx).userId) }),
  });

  const redact = async (ctx: RouteContext<{ reason?: string }>, txnId: string | undefined) => {
    const me = requester(ctx);
    await accountModeration.assertMayRedact(me.userId, ctx.params.eventId!);
    const eventId = await messages.redact(roomIdParam(ctx.params.roomId!), me, ctx.params.eventId!, txnId, ctx.body.reason);
    return { event_id: eventId };
  };
  const RedactBody = Type.Object({ reason: Type.Optional(Type.String({ maxLength: 4096 })) }, { additionalProperties: true });
  defineRoute(app, services, { method: "PUT", paths: clientPaths("/rooms/:roomId/redact/:eventId/:txnId"), body: RedactBody, handler: (ctx) => redact(ctx, ctx.params.txnId!) });
  defineRoute(app, services, { method: "POST", paths: clientPaths("/rooms/:roomId/redact/:eventId"), body: RedactBody, handler: (ctx) => redact(ctx, undefined) });

  defineRoute(app, services, {
    method: "GET",
    paths: clientPaths("/rooms/:roomId/messages"),
    allowGuest: true,
    handler: async (ctx) => {
      const dir = stringParam(ctx.query, "dir") ?? "b";
      if (dir !== "b" && dir !== "f") throw new MatrixError(400, "M_INVALID_PARAM", "dir must be 'b' or 'f'");
      const limit = intParam(ctx.query, "limit", 10, 0, 1_000_000);
      return messages.messages(roomIdParam(ctx.params.roomId!), requester(ctx), {
        // An empty token is no token (as Synapse reads it): from the end (or start) of the room.
        from: stringParam(ctx.query, "from") || undefined,
        to: stringParam(ctx.query, "to") || undefined,
        dir,
        limit: Math.min(limit, 1000),
        selection: selectionFromQuery(ctx.query),
      });
    },
  });

  defineRoute(app, services, {
    method: "GET",
    paths: clientPaths("/rooms/:roomId/context/:eventId"),
    allowGuest: true,
    handler: async (ctx) => {
      const limit = Math.min(intParam(ctx.query, "limit", 10, 0, 1_000_000), 1000);
      return messages.context(roomIdParam(ctx.params.roomId!), requester(ctx), ctx.params.eventId!, limit, selectionFromQuery(ctx.query));
    },
  });

  defineRoute(app, services, {
    method: "GET",
    paths: clientV1("/rooms/:roomId/timestamp_to_event"),
    handler: async (ctx) => {
      const ts = intParam(ctx.query, "ts", undefined, 0);
      if (ts === undefined) throw new MatrixError(400, "M_MISSING_PARAM", "Missing ts query parameter");
      const dir = requireStringParam(ctx.query, "dir");
      if (dir !== "b" && dir !== "f") throw new MatrixError(400, "M_INVALID_PARAM", "dir must be 'b' or 'f'");
      return messages.timestampToEvent(roomIdParam(ctx.params.roomId!), requester(ctx), ts, dir);
    },
  });
}
