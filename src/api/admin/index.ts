/** Synapse's admin API under /_synapse/admin (so synadm and synapse-admin work): registration, version, federation destinations so far. */
import type { FastifyInstance } from "fastify";
import type { Services } from "../../services/services.js";
import { registerFederationAdminRoutes } from "./federation.js";
import { registerSharedSecretRoutes } from "./register.js";
import { defineRoute } from "../http/routes.js";
import { MYELIN_VERSION } from "../../version.js";

export function registerAdminApi(app: FastifyInstance, services: Services): void {
  registerSharedSecretRoutes(app, services);
  registerFederationAdminRoutes(app, services);
  defineRoute(app, services, {
    method: "GET",
    paths: ["/_synapse/admin/v1/server_version"],
    auth: "none",
    handler: () => ({ server_version: `${MYELIN_VERSION} (Myelin)` }),
  });
}
