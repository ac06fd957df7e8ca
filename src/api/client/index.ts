/** The Client-Server API, one file per spec module. */
import type { FastifyInstance } from "fastify";
import type { Services } from "../../services/services.js";
import { registerAccountRoutes } from "./account.js";
import { registerAccountDataRoutes } from "./account_data.js";
import { registerDeviceRoutes } from "./devices.js";
import { registerLoginRoutes } from "./login.js";
import { registerProfileRoutes } from "./profile.js";
import { registerRegistrationRoutes } from "./register.js";
import { registerPasswordStage } from "./uia_flows.js";
import { registerVersionRoutes } from "./versions.js";
import { registerRoomRoutes } from "./rooms.js";
import { registerRoomEventRoutes } from "./room_events.js";
import { registerSyncRoutes } from "./sync.js";
import { registerEphemeralRoutes } from "./ephemeral.js";
import { registerDirectoryRoutes } from "./directory.js";
import { registerPublicRoomsRoutes } from "./public_rooms.js";
import { registerRelationRoutes } from "./relations.js";
import { registerRoomUpgradeRoutes } from "./room_upgrades.js";
import { registerToDeviceRoutes } from "./to_device.js";
import { registerPushRoutes } from "./push.js";
import { registerTagRoutes } from "./tags.js";
import { registerVoipRoutes } from "./voip.js";
import { registerThirdPartyRoutes } from "./thirdparty.js";

export function registerClientApi(app: FastifyInstance, services: Services): void {
  registerPasswordStage(services);
  registerVersionRoutes(app, services);
  registerRegistrationRoutes(app, services);
  registerLoginRoutes(app, services);
  registerAccountRoutes(app, services);
  registerDeviceRoutes(app, services);
  registerProfileRoutes(app, services);
  registerAccountDataRoutes(app, services);
  registerRoomRoutes(app, services);
  registerRoomEventRoutes(app, services);
  registerSyncRoutes(app, services);
  registerEphemeralRoutes(app, services);
  registerDirectoryRoutes(app, services);
  registerPublicRoomsRoutes(app, services);
  registerRelationRoutes(app, services);
  registerRoomUpgradeRoutes(app, services);
  registerToDeviceRoutes(app, services);
  registerPushRoutes(app, services);
  registerTagRoutes(app, services);
  registerVoipRoutes(app, services);
  registerThirdPartyRoutes(app, services);
}
