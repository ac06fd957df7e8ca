/**
 * UIA flows of the endpoints that re-authenticate a logged-in user (password change, device deletion,
 * deactivation), and the m.login.password stage they use.
 */
import { forbidden } from "../../errors.js";
import type { Services } from "../../services/services.js";

export function passwordFlows(): string[][] {
  return [["m.login.password"]];
}

/** m.login.password within UIA: the identified user must be the requester, and the password must match. */
export function registerPasswordStage(services: Services): void {
  services.uia.registerStage("m.login.password", async (auth, { request }) => {
    const userId = services.accounts.resolveIdentifier(auth);
    if (request.userId !== undefined && userId !== request.userId) throw forbidden("Invalid auth");
    services.limits.loginFailedAttempts.check(userId);
    try {
      await services.accounts.checkPassword(userId, auth.password);
    } catch (e) {
      services.limits.loginFailedAttempts.take(userId);
      throw e;
    }
    return userId;
  });
}
