/**
 * UIA flows of the endpoints that re-authenticate a logged-in user (password change, device deletion,
 * deactivation), and the m.login.password stage they use.
 */
import type { Services } from "../../services/services.js";
import { UiaRefusal } from "../../services/uia.js";
import { resolveLoginUser } from "./identifiers.js";

/**
 * The ways a logged-in user can re-authenticate, as Synapse offers them: their password if they have one, SSO if
 * an identity provider's user maps to them (each its own one-stage flow); the password flow when neither.
 */
export async function reauthFlows(services: Services, userId: string): Promise<string[][]> {
  const flows: string[][] = [];
  const user = await services.storage.users.get(userId);
  if (services.config.password.enabled && user?.password_hash) flows.push(["m.login.password"]);
  if (services.sso && (await services.sso.hasIdentity(userId))) flows.push(["m.login.sso"]);
  return flows.length > 0 ? flows : [["m.login.password"]];
}

/**
 * m.login.password within UIA: the password must match (else the 401 with M_FORBIDDEN, to try again), and the
 * identified user must be the requester (else, as Synapse, a plain 403: another attempt cannot fix that).
 */
export function registerPasswordStage(services: Services): void {
  services.uia.registerStage("m.login.password", async (auth, { request }) => {
    const userId = await resolveLoginUser(services, auth);
    services.limits.loginFailedAttempts.check(userId);
    try {
      await services.accounts.checkPassword(userId, auth.password);
    } catch (e) {
      services.limits.loginFailedAttempts.take(userId);
      throw e;
    }
    if (request.userId !== undefined && userId !== request.userId) throw new UiaRefusal(403, "M_FORBIDDEN", "Invalid auth");
    return userId;
  });
}
