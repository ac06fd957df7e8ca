/**
 * UIA flows of the endpoints that re-authenticate a logged-in user (password change, device deletion,
 * deactivation), and the m.login.password stage they use.
 */
import type { Services } from "../../services/services.js";
import { UiaRefusal } from "../../services/uia.js";
import { resolveLoginUser } from "./identifiers.js";

export function passwordFlows(): string[][] {
  return [["m.login.password"]];
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
