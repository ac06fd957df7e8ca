/** Server discovery and negotiation: /versions, /.well-known/matrix/{client,server,support,policy_server}, /capabilities. */
import type { FastifyInstance } from "fastify";
import { ROOM_VERSIONS } from "../../core/rooms/versions.js";
import { notFound } from "../../errors.js";
import type { Services } from "../../services/services.js";
import { clientPaths, defineRoute, requester } from "../http/routes.js";

/**
 * Spec versions whose client-server API Myelin implements (the list grows as features land). Through v1.12:
 * asynchronous uploads and get_token (v1.7), authenticated media and first cross-signing upload without UIA (v1.11),
 * `via` on join/knock and account locking (v1.12). MSC4115's `unsigned.membership` (v1.11) is a SHOULD that servers
 * MAY omit, and is not populated yet.
 */
export const SUPPORTED_VERSIONS = [
  "r0.0.1", "r0.1.0", "r0.2.0", "r0.3.0", "r0.4.0", "r0.5.0", "r0.6.0", "r0.6.1",
  "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10", "v1.11", "v1.12",
];

/** Unstable features served, by their MSC's name. */
export const UNSTABLE_FEATURES: Record<string, boolean> = {
  // Dehydrated devices (dehydrated_devices.ts).
  "org.matrix.msc3814": true,
  // Room summaries and mutual rooms, on their unstable paths too (spaces.ts), as Synapse names them.
  "im.nheko.summary": true,
  "uk.half-shot.msc2666.query_mutual_rooms": true,
  // Simplified Sliding Sync (sliding_sync.ts).
  "org.matrix.simplified_msc3575": true,
};

export function registerVersionRoutes(app: FastifyInstance, services: Services): void {
  const { config } = services;

  defineRoute(app, services, {
    method: "GET",
    paths: ["/_matrix/client/versions"],
    auth: "optional",
    allowGuest: true,
    handler: () => ({ versions: SUPPORTED_VERSIONS, unstable_features: UNSTABLE_FEATURES }),
  });

  defineRoute(app, services, {
    method: "GET",
    paths: ["/.well-known/matrix/client"],
    auth: "none",
    handler: () => ({ "m.homeserver": { base_url: config.publicBaseurl } }),
  });

  defineRoute(app, services, {
    method: "GET",
    paths: ["/.well-known/matrix/server"],
    auth: "none",
    handler: () => {
      if (!config.serveServerWellknown) throw notFound("No .well-known/matrix/server configured");
      const u = new URL(config.publicBaseurl);
      return { "m.server": `${u.hostname}:${u.port || 443}` };
    },
  });

  // What is really enabled, from the config: built once, the config does not change while running.
  const capabilities = {
    capabilities: {
      // Password changes need password auth against our own database (Synapse: password_config.enabled and localdb_enabled).
      "m.change_password": { enabled: config.password.enabled && config.password.localdbEnabled },
      "m.room_versions": {
        default: config.defaultRoomVersion,
        available: Object.fromEntries([...ROOM_VERSIONS.values()].map((v) => [v.id, v.stable ? "stable" : "unstable"])),
      },
      "m.set_displayname": { enabled: config.enableSetDisplayname },
      "m.set_avatar_url": { enabled: config.enableSetAvatarUrl },
      // Synapse's enable_3pid_changes (default true): /account/3pid/add, /delete and the 3PID requestToken.
      "m.3pid_changes": { enabled: config.threepids.enable3pidChanges },
      // Synapse's login_via_existing_session.enabled: POST /login/get_token.
      "m.get_login_token": { enabled: config.loginViaExistingSession.enabled },
      // The spec: a server whose profile_fields cover displayname/avatar_url must agree with the two above (as Synapse, via `disallowed`).
      "m.profile_fields": profileFieldsCapability(config.enableSetDisplayname, config.enableSetAvatarUrl),
    },
  };
  defineRoute(app, services, {
    method: "GET",
    paths: clientPaths("/capabilities"),
    allowGuest: true,
    // Spec: m.account_moderation is omitted unless the user may suspend or lock, i.e. for server admins.
    handler: (ctx) => (requester(ctx).isAdmin ? { capabilities: { ...capabilities.capabilities, ...ADMIN_CAPABILITIES } } : capabilities),
  });

  defineRoute(app, services, {
    method: "GET",
    paths: ["/.well-known/matrix/support"],
    auth: "none",
    handler: () => {
      if (!config.support) throw notFound("No support information configured");
      return config.support;
    },
  });

  // Spec v1.18 "Policy Servers": the keys a client can copy into m.room.policy. Myelin only publishes them (for a
  // Policy Server run at this server name); it does not act as one.
  defineRoute(app, services, {
    method: "GET",
    paths: ["/.well-known/matrix/policy_server"],
    auth: "none",
    handler: () => {
      if (!config.policyServer) throw notFound("No policy server information configured");
      return config.policyServer;
    },
  });
}

const ADMIN_CAPABILITIES = { "m.account_moderation": { suspend: true, lock: true } };

function profileFieldsCapability(displayname: boolean, avatarUrl: boolean): { enabled: boolean; disallowed?: string[] } {
  const disallowed = [...(displayname ? [] : ["displayname"]), ...(avatarUrl ? [] : ["avatar_url"])];
  return disallowed.length > 0 ? { enabled: true, disallowed } : { enabled: true };
}
