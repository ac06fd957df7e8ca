/**
 * Synapse's federation admin API (`/_synapse/admin/v1/federation/destinations`): the outbound queue's backoff
 * state per destination server, the rooms shared with one, and resetting a backed-off connection.
 */
import type { FastifyInstance } from "fastify";
import { MatrixError, forbidden, notFound } from "../../errors.js";
import type { Services } from "../../services/services.js";
import { intParam, stringParam } from "../http/params.js";
import { defineRoute, requester, type RouteContext } from "../http/routes.js";

const BASE = "/_synapse/admin/v1/federation/destinations";

/** Synapse's `order_by` values, mapped to the fields of a destination's JSON. */
const ORDER_BY = ["destination", "retry_last_ts", "retry_interval", "failure_ts", "last_successful_stream_ordering"] as const;
type OrderBy = (typeof ORDER_BY)[number];

interface DestinationJson {
  destination: string;
  retry_last_ts: number;
  retry_interval: number;
  failure_ts: number | null;
  last_successful_stream_ordering: number | null;
}

function requireAdmin(ctx: RouteContext<unknown>): void {
  if (!requester(ctx).isAdmin) throw forbidden("You are not a server admin");
}

/** `from`, `limit` and `dir` as Synapse validates them (400 M_INVALID_PARAM). */
function paging(query: RouteContext<unknown>["query"]): { from: number; limit: number; backwards: boolean } {
  const from = intParam(query, "from", 0, 0);
  const limit = intParam(query, "limit", 100, 0);
  const dir = stringParam(query, "dir") ?? "f";
  if (dir !== "f" && dir !== "b") throw new MatrixError(400, "M_INVALID_PARAM", "Query parameter dir must be one of [f, b]");
  return { from, limit, backwards: dir === "b" };
}

/** A page of `items` with Synapse's `total` and `next_token` (only when more remain). */
function page<T>(items: T[], from: number, limit: number): { items: T[]; total: number; next_token?: string } {
  const slice = items.slice(from, from + limit);
  const next = from + slice.length;
  return { items: slice, total: items.length, ...(next < items.length ? { next_token: String(next) } : {}) };
}

export function registerFederationAdminRoutes(app: FastifyInstance, services: Services): void {
  const destinations = (): DestinationJson[] =>
    services.federationSender.status().map((d) => ({
      destination: d.destination,
      retry_last_ts: d.retryLastTs,
      retry_interval: d.retryIntervalMs,
      failure_ts: d.failureTs,
      last_successful_stream_ordering: d.lastSuccessfulStreamOrdering > 0 ? d.lastSuccessfulStreamOrdering : null,
    }));
  const known = (name: string): DestinationJson => {
    const d = destinations().find((x) => x.destination === name);
    if (!d) throw notFound("Unknown destination");
    return d;
  };

  defineRoute(app, services, {
    method: "GET",
    paths: [BASE],
    handler: (ctx) => {
      requireAdmin(ctx);
      const { from, limit, backwards } = paging(ctx.query);
      const orderBy = (stringParam(ctx.query, "order_by") ?? "destination") as OrderBy;
      if (!ORDER_BY.includes(orderBy)) throw new MatrixError(400, "M_INVALID_PARAM", `Query parameter order_by must be one of [${ORDER_BY.join(", ")}]`);
      const filter = stringParam(ctx.query, "destination");
      const list = destinations().filter((d) => filter === undefined || d.destination.includes(filter));
      // Nulls sort first, as in Synapse's SQL; ties by destination so pages are stable.
      const key = (d: DestinationJson) => d[orderBy] ?? -Infinity;
      list.sort((a, b) => {
        const x = key(a);
        const y = key(b);
        const c = x < y ? -1 : x > y ? 1 : a.destination < b.destination ? -1 : a.destination > b.destination ? 1 : 0;
        return backwards ? -c : c;
      });
      const { items, ...rest } = page(list, from, limit);
      return { destinations: items, ...rest };
    },
  });

  defineRoute(app, services, {
    method: "GET",
    paths: [`${BASE}/:destination`],
    handler: (ctx) => {
      requireAdmin(ctx);
      return known(ctx.params.destination!);
    },
  });

  defineRoute(app, services, {
    method: "GET",
    paths: [`${BASE}/:destination/rooms`],
    handler: async (ctx) => {
      requireAdmin(ctx);
      const d = known(ctx.params.destination!);
      const { from, limit, backwards } = paging(ctx.query);
      const rooms = (await services.storage.federation.roomsWithServer(d.destination)).sort();
      if (backwards) rooms.reverse();
      const { items, ...rest } = page(rooms, from, limit);
      // Delivery is tracked per destination, not per room: each room reports the destination's position.
      return { rooms: items.map((roomId) => ({ room_id: roomId, stream_ordering: d.last_successful_stream_ordering ?? 0 })), ...rest };
    },
  });

  // "Reset the connection timeout for a specific remote server": retry it now rather than after its backoff.
  defineRoute(app, services, {
    method: "POST",
    paths: [`${BASE}/:destination/reset_connection`],
    handler: (ctx) => {
      requireAdmin(ctx);
      const d = known(ctx.params.destination!);
      if (!d.retry_last_ts && !d.retry_interval) throw new MatrixError(400, "M_UNKNOWN", "The retry timing does not need to be reset for this destination.");
      services.federationSender.wake(d.destination);
      return {};
    },
  });
}
