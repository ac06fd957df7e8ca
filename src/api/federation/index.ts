/** The Server-Server API (`/_matrix/federation`), served on listeners with the `federation` resource. */
import type { FastifyInstance } from "fastify";
import type { Services } from "../../services/services.js";
import { MYELIN_VERSION } from "../../version.js";
import { defineFederationRoute } from "./auth.js";

import { registerFederationMembership } from "./membership.js";
import { registerFederationEventReads } from "./events.js";
import { registerFederationQueries } from "./queries.js";
import { registerFederationMedia } from "./media.js";

export { registerKeyApi } from "./keys.js";

export function registerFederationApi(app: FastifyInstance, services: Services): void {
  // Open to anyone, as in the spec and Synapse; a signature that is sent must still be valid.
  defineFederationRoute(app, services, {
    method: "GET",
    paths: ["/_matrix/federation/v1/version"],
    auth: "optional",
    handler: () => ({ server: { name: "Myelin", version: MYELIN_VERSION } }),
  });
  registerFederationMembership(app, services);
  registerFederationEventReads(app, services);
  registerFederationQueries(app, services);
  registerFederationMedia(app, services);
}
