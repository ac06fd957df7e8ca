/** Login identifiers (spec "Identifier types"), shared by POST /login and the UIA password stage. */
import { forbidden } from "../../errors.js";
import type { Services } from "../../services/services.js";

/**
 * The user a login identifier names: a user ID or localpart, or a 3PID bound to an account here (spec
 * "Identifier types"). An unknown 3PID is refused like a wrong password, without saying which was wrong.
 */
export async function resolveLoginUser(services: Services, body: Record<string, unknown>): Promise<string> {
  const tp = services.accounts.thirdPartyIdentifier(body);
  if (tp === undefined) return services.accounts.resolveIdentifier(body);
  if (tp.medium !== "email") throw forbidden("Login with this kind of third-party identifier is not supported on this server");
  const userId = await services.threepids.userFor(tp.medium, tp.address);
  if (userId === undefined) throw forbidden("Invalid username or password");
  return userId;
}
