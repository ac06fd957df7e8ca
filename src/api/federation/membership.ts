/**
 * Federation membership endpoints (server-server API, "Joining Rooms", "Leaving Rooms", "Knocking upon a room"):
 * make_* hands out a template, send_* accepts the signed event. v1 send_join/send_leave answer `[200, body]`, as
 * the spec keeps for compatibility.
 */
import type { FastifyInstance } from "fastify";
import type { JsonObject } from "../../core/json/types.js";
import type { Services } from "../../services/services.js";
import { defineFederationRoute } from "./auth.js";

function versions(q: Record<string, string | string[] | undefined>): string[] | undefined {
  const v = q.ver;
  return v === undefined ? undefined : Array.isArray(v) ? v : [v];
}

export function registerFederationMembership(app: FastifyInstance, services: Services): void {
  const fm = services.federationMembership;

  for (const membership of ["join", "leave", "knock"] as const) {
    defineFederationRoute(app, services, {
      method: "GET",
      paths: [`/_matrix/federation/v1/make_${membership}/:roomId/:userId`],
      handler: (ctx) => fm.make(ctx.origin, ctx.params.roomId!, ctx.params.userId!, membership, versions(ctx.query)),
    });
  }

  const sendJoin = async (origin: string, roomId: string, eventId: string, body: unknown): Promise<JsonObject> => {
    const r = await fm.send(origin, roomId, eventId, body, "join");
    const { state, authChain } = await fm.stateAndAuthChain(r.stored);
    const servers = await services.storage.federation.serversInRoom(roomId);
    const { unsigned: _u, ...event } = r.event.pdu;
    return { origin: services.config.serverName, state, auth_chain: authChain, event, members_omitted: false, servers_in_room: servers };
  };

  defineFederationRoute(app, services, {
    method: "PUT",
    paths: ["/_matrix/federation/v2/send_join/:roomId/:eventId"],
    handler: (ctx) => sendJoin(ctx.origin, ctx.params.roomId!, ctx.params.eventId!, ctx.req.body),
  });
  defineFederationRoute(app, services, {
    method: "PUT",
    paths: ["/_matrix/federation/v1/send_join/:roomId/:eventId"],
    handler: async (ctx) => [200, await sendJoin(ctx.origin, ctx.params.roomId!, ctx.params.eventId!, ctx.req.body)],
  });

  defineFederationRoute(app, services, {
    method: "PUT",
    paths: ["/_matrix/federation/v2/send_leave/:roomId/:eventId"],
    handler: async (ctx) => {
      await fm.send(ctx.origin, ctx.params.roomId!, ctx.params.eventId!, ctx.req.body, "leave");
      return {};
    },
  });
  defineFederationRoute(app, services, {
    method: "PUT",
    paths: ["/_matrix/federation/v1/send_leave/:roomId/:eventId"],
    handler: async (ctx) => {
      await fm.send(ctx.origin, ctx.params.roomId!, ctx.params.eventId!, ctx.req.body, "leave");
      return [200, {}];
    },
  });

  defineFederationRoute(app, services, {
    method: "PUT",
    paths: ["/_matrix/federation/v1/send_knock/:roomId/:eventId"],
    handler: async (ctx) => {
      await fm.send(ctx.origin, ctx.params.roomId!, ctx.params.eventId!, ctx.req.body, "knock");
      return { knock_room_state: await fm.strippedState(ctx.params.roomId!) };
    },
  });

  defineFederationRoute(app, services, {
    method: "PUT",
    paths: ["/_matrix/federation/v2/invite/:roomId/:eventId"],
    handler: (ctx) => {
      const b = (ctx.req.body ?? {}) as JsonObject;
      return fm.onInvite(ctx.origin, ctx.params.roomId!, ctx.params.eventId!, b.room_version, b.event, b.invite_room_state);
    },
  });
  // v1: the body is the event itself, with invite_room_state in its unsigned section; rooms v1/v2 only.
  defineFederationRoute(app, services, {
    method: "PUT",
    paths: ["/_matrix/federation/v1/invite/:roomId/:eventId"],
    handler: async (ctx) => {
      const event = (ctx.req.body ?? {}) as JsonObject;
      const unsigned = (event.unsigned ?? {}) as JsonObject;
      return [200, await fm.onInvite(ctx.origin, ctx.params.roomId!, ctx.params.eventId!, "1", event, unsigned.invite_room_state)];
    },
  });

  defineFederationRoute(app, services, {
    method: "PUT",
    paths: ["/_matrix/federation/v1/send/:txnId"],
    handler: (ctx) => services.federationTransactions.receive(ctx.origin, ctx.params.txnId!, (ctx.req.body ?? {}) as JsonObject),
  });
}
