/**
 * Server-side key backups (spec "Server-side key backups", key_backup.yaml): /room_keys/version and
 * /room_keys/keys at its three levels. Guests may not use them (not in the spec's guest list; Synapse refuses them).
 */
import type { FastifyInstance } from "fastify";
import { invalidParam, missingParam } from "../../errors.js";
import type { KeysTarget } from "../../services/key_backup.js";
import type { Services } from "../../services/services.js";
import { clientPaths, defineRoute, requester, type RouteContext } from "../http/routes.js";

/** A version's `auth_data` is a public key and a few signatures; nothing legitimate comes near this. */
const VERSION_BODY_LIMIT = 64 * 1024;

/** The three levels of /room_keys/keys, each with the target its path names. */
const KEYS_LEVELS: { path: string; target: (p: Record<string, string>) => KeysTarget }[] = [
  { path: "/room_keys/keys", target: () => ({}) },
  { path: "/room_keys/keys/:roomId", target: (p) => ({ roomId: p.roomId! }) },
  { path: "/room_keys/keys/:roomId/:sessionId", target: (p) => ({ roomId: p.roomId!, sessionId: p.sessionId! }) },
];

/** The required `version` query parameter of every /room_keys/keys request. */
function versionQuery(ctx: RouteContext<unknown>): string {
  const v = ctx.query.version;
  if (v === undefined) throw missingParam("Missing string query parameter 'version'");
  if (Array.isArray(v)) throw invalidParam("Query parameter 'version' must be given once");
  return v;
}

export function registerRoomKeyRoutes(app: FastifyInstance, services: Services): void {
  const { keyBackup } = services;

  defineRoute(app, services, {
    method: "POST",
    paths: clientPaths("/room_keys/version"),
    bodyLimit: VERSION_BODY_LIMIT,
    handler: async (ctx) => ({ version: await keyBackup.createVersion(requester(ctx).userId, ctx.req.body) }),
  });

  defineRoute(app, services, {
    method: "GET",
    paths: clientPaths("/room_keys/version"),
    handler: async (ctx) => keyBackup.versionInfo(requester(ctx).userId),
  });

  defineRoute(app, services, {
    method: "GET",
    paths: clientPaths("/room_keys/version/:version"),
    handler: async (ctx) => keyBackup.versionInfo(requester(ctx).userId, ctx.params.version!),
  });

  defineRoute(app, services, {
    method: "PUT",
    paths: clientPaths("/room_keys/version/:version"),
    bodyLimit: VERSION_BODY_LIMIT,
    handler: async (ctx) => {
      await keyBackup.updateVersion(requester(ctx).userId, ctx.params.version!, ctx.req.body);
      return {};
    },
  });

  defineRoute(app, services, {
    method: "DELETE",
    paths: clientPaths("/room_keys/version/:version"),
    handler: async (ctx) => {
      await keyBackup.deleteVersion(requester(ctx).userId, ctx.params.version!);
      return {};
    },
  });

  // Key bodies are checked by the service (the shape depends on the level); the server-wide body cap applies.
  for (const level of KEYS_LEVELS) {
    defineRoute(app, services, {
      method: "PUT",
      paths: clientPaths(level.path),
      handler: async (ctx) => keyBackup.uploadKeys(requester(ctx).userId, versionQuery(ctx), level.target(ctx.params), ctx.req.body),
    });
    defineRoute(app, services, {
      method: "GET",
      paths: clientPaths(level.path),
      handler: async (ctx) => keyBackup.getKeys(requester(ctx).userId, versionQuery(ctx), level.target(ctx.params)),
    });
    defineRoute(app, services, {
      method: "DELETE",
      paths: clientPaths(level.path),
      handler: async (ctx) => keyBackup.deleteKeys(requester(ctx).userId, versionQuery(ctx), level.target(ctx.params)),
    });
  }
}
