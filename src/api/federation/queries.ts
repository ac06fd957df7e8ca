/**
 * Federation queries and directories (server-server API, "Querying for information", "Published Room Directory",
 * "Spaces", "Device Management", "End-to-End Encryption", "OpenID", "Third-party invites").
 */
import type { FastifyInstance } from "fastify";
import { isValidRoomAlias, userIdDomain } from "../../core/ids/ids.js";
import { MatrixError, forbidden, invalidParam, notFound } from "../../errors.js";
import type { JsonObject } from "../../core/json/types.js";
import { OpenIdTokens } from "../../services/openid.js";
import { MAX_CLAIM_DEVICES, MAX_QUERY_USERS, parseClaimRequest, parseQueryRequest } from "../../services/e2e_keys.js";
import type { PublicRoomsRequest } from "../../services/rooms/directory.js";
import type { Services } from "../../services/services.js";
import { boolParam, intParam, requireStringParam, stringParam } from "../http/params.js";
import { PublicRoomsBody, publicRoomsRequest } from "../client/public_rooms.js";
import { defineFederationRoute } from "./auth.js";

const V1 = "/_matrix/federation/v1";

export function registerFederationQueries(app: FastifyInstance, services: Services): void {
  const { config, directory, profile, storage } = services;
  const isLocal = (userId: string) => userIdDomain(userId) === config.serverName;

  defineFederationRoute(app, services, {
    method: "GET",
    paths: [`${V1}/query/directory`],
    handler: ({ query }) => {
      const alias = requireStringParam(query, "room_alias");
      if (!isValidRoomAlias(alias)) throw invalidParam("Invalid room alias");
      return directory.resolveAlias(alias);
    },
  });

  // "If a field is specified the response MUST only include the specified field"; otherwise the whole public
  // profile. Unknown users and users of other servers are 404 M_NOT_FOUND. An unset field of a known user is not:
  // "If the user does not have a particular field set on their profile, the server should exclude it from the
  // response body or give it the value null" — Synapse (1.67) asks field by field for a client's GET /profile and
  // turns a 404 for avatar_url into a 404 for the whole profile.
  defineFederationRoute(app, services, {
    method: "GET",
    paths: [`${V1}/query/profile`],
    handler: async ({ query }) => {
      const userId = requireStringParam(query, "user_id");
      if (!userId.startsWith("@") || userIdDomain(userId) === null) throw invalidParam("Invalid user ID");
      // Only our own users: never relay a query on to a third server.
      if (userIdDomain(userId) !== config.serverName) throw notFound("Profile not found");
      const field = stringParam(query, "field");
      if (field === undefined) return profile.getProfile(userId);
      try {
        return { [field]: await profile.getField(userId, field) };
      } catch (e) {
        if (e instanceof MatrixError && e.status === 404 && (await storage.users.get(userId))) return {};
        throw e;
      }
    },
  });

  // Synapse's allow_public_rooms_over_federation (off by default): the directory is ours to share or not.
  const publicRooms = (req: PublicRoomsRequest) => {
    if (!config.allowPublicRoomsOverFederation) throw forbidden("This server does not share its room directory over federation");
    return directory.publicRooms(req);
  };
  defineFederationRoute(app, services, {
    method: "GET",
    paths: [`${V1}/publicRooms`],
    handler: ({ query }) => {
      const limit = intParam(query, "limit", undefined, 0);
      const since = stringParam(query, "since");
      const instance = stringParam(query, "third_party_instance_id");
      return publicRooms({
        ...(limit !== undefined ? { limit } : {}),
        ...(since !== undefined ? { since } : {}),
        ...(instance !== undefined ? { third_party_instance_id: instance } : {}),
        include_all_networks: boolParam(query, "include_all_networks", false),
      });
    },
  });
  defineFederationRoute(app, services, {
    method: "POST",
    paths: [`${V1}/publicRooms`],
    body: PublicRoomsBody,
    handler: ({ body }) => publicRooms(publicRoomsRequest(body)),
  });

  defineFederationRoute(app, services, {
    method: "GET",
    paths: [`${V1}/hierarchy/:roomId`],
    handler: ({ origin, params, query }) => directory.hierarchyForServer(origin, params.roomId!, boolParam(query, "suggested_only", false)),
  });

  // The user's devices with their keys, and the `stream_id` of their newest m.device_list_update ("matched with the
  // stream_id field in m.device_list_update EDUs"), and their master and self-signing keys.
  defineFederationRoute(app, services, {
    method: "GET",
    paths: [`${V1}/user/devices/:userId`],
    handler: async ({ params }) => {
      const userId = params.userId!;
      if (!isLocal(userId) || !(await storage.users.get(userId))) throw notFound("User not found");
      const streamId = await services.deviceLists.streamIdOf(userId);
      const keys = await services.e2eKeys.localDeviceKeys(userId);
      const devices = (await storage.devices.list(userId)).map((d) => ({
        device_id: d.device_id,
        ...(keys.has(d.device_id) ? { keys: keys.get(d.device_id)! } : {}),
        ...(d.display_name !== null ? { device_display_name: d.display_name } : {}),
      }));
      const cs = await services.crossSigning.view([userId], undefined);
      return {
        user_id: userId,
        stream_id: streamId,
        devices,
        ...(cs.master_keys[userId] ? { master_key: cs.master_keys[userId] } : {}),
        ...(cs.self_signing_keys[userId] ? { self_signing_key: cs.self_signing_keys[userId] } : {}),
      };
    },
  });

  // Only our own users are answered for: never relay a query on to a third server.
  defineFederationRoute(app, services, {
    method: "POST",
    paths: [`${V1}/user/keys/query`],
    handler: ({ body }) => {
      const req = parseQueryRequest((body as { device_keys?: unknown }).device_keys);
      if (req.size > MAX_QUERY_USERS) throw invalidParam(`At most ${MAX_QUERY_USERS} users may be queried at once`);
      for (const u of req.keys()) if (!isLocal(u)) req.delete(u);
      return services.e2eKeys.queryLocal(req, undefined);
    },
  });

  defineFederationRoute(app, services, {
    method: "POST",
    paths: [`${V1}/user/keys/claim`],
    handler: async ({ body }) => {
      const req = parseClaimRequest((body as { one_time_keys?: unknown }).one_time_keys);
      let n = 0;
      for (const d of req.values()) n += d.size;
      if (n > MAX_CLAIM_DEVICES) throw invalidParam(`At most ${MAX_CLAIM_DEVICES} devices may be claimed for at once`);
      return { one_time_keys: await services.e2eKeys.claimLocal(req) };
    },
  });

  // Called by third-party services, not servers: no X-Matrix signature needed (as in the spec and Synapse). The
  // tokens are those POST /user/{userId}/openid/request_token issues (services/openid.ts).
  const openid = new OpenIdTokens(services.signingKey);
  defineFederationRoute(app, services, {
    method: "GET",
    paths: [`${V1}/openid/userinfo`],
    auth: "optional",
    // Spec: 401 when "the token was not recognized or has expired"; a missing token is no better (as Synapse).
    handler: async ({ query }) => {
      const token = stringParam(query, "access_token");
      const userId = token !== undefined ? openid.verify(token) : undefined;
      const user = userId !== undefined ? await storage.users.get(userId) : undefined;
      if (userId === undefined || !user || user.deactivated) throw new MatrixError(401, "M_UNKNOWN_TOKEN", "Access token unknown or expired");
      return { sub: userId };
    },
  });

  // Third-party invites (spec "Third-party invites"): the invitee's server asks the inviter's for the invite.
  defineFederationRoute(app, services, {
    method: "PUT",
    paths: [`${V1}/exchange_third_party_invite/:roomId`],
    handler: async ({ params, body }) => {
      await services.thirdPartyInvites.onExchange(params.roomId!, body as JsonObject);
      return {};
    },
  });

  // Called by identity servers, which have no server signature to give (as Synapse: no X-Matrix needed); the invites
  // it carries are proven by the identity server's signatures instead. The spec says PUT; identity servers (Sydent,
  // SyTest's) send POST.
  for (const method of ["PUT", "POST"] as const) {
    defineFederationRoute(app, services, {
      method,
      paths: [`${V1}/3pid/onbind`],
      auth: "optional",
      handler: async ({ body }) => {
        await services.thirdPartyInvites.onBind(body as JsonObject);
        return {};
      },
    });
  }
}
