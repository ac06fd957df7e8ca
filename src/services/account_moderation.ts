/**
 * Account moderation (spec "Account moderation", v1.18 admin endpoints): server admins lock and suspend local
 * accounts. A lock makes every access token answer 401 M_USER_LOCKED (tokens.ts) without revoking it; a suspension
 * leaves reading alone and refuses the actions the spec recommends forbidding with 403 M_USER_SUSPENDED, through
 * `assertNotSuspended` at each of them.
 */
import { isValidUserId, userIdDomain } from "../core/ids/ids.js";
import { MatrixError, forbidden, invalidParam, notFound } from "../errors.js";
import type { Storage } from "../storage/storage.js";
import type { UserRow } from "../storage/users.js";
import type { EventCache } from "./rooms/event_cache.js";
import type { Requester, TokenService } from "./tokens.js";

export type ModerationAction = "suspend" | "lock";

export function userSuspended(): MatrixError {
  return new MatrixError(403, "M_USER_SUSPENDED", "You cannot perform this action while suspended.");
}

export class AccountModeration {
  constructor(
    private readonly serverName: string,
    private readonly storage: Storage,
    private readonly tokens: TokenService,
    private readonly events: EventCache,
  ) {}

  /** GET /admin/{suspend,lock}/{userId}. */
  async status(admin: Requester, action: ModerationAction, userId: string): Promise<boolean> {
    const user = await this.target(admin, userId, false);
    return action === "suspend" ? user.suspended === 1 : user.locked === 1;
  }

  /** PUT /admin/{suspend,lock}/{userId}: returns the new state. */
  async set(admin: Requester, action: ModerationAction, userId: string, on: boolean): Promise<boolean> {
    await this.target(admin, userId, true);
    if (action === "suspend") await this.storage.users.setSuspended(userId, on);
    else await this.storage.users.setLocked(userId, on);
    // Cached token lookups carry `locked`; the change applies to the next request.
    this.tokens.invalidateUser(userId);
    return on;
  }

  /**
   * The user an admin acts on. The spec's order: authorisation before any lookup (no user enumeration), then
   * 400 for a remote user, 404 for an unknown or deactivated one, 403 for another admin (or oneself, to change).
   */
  private async target(admin: Requester, userId: string, changing: boolean): Promise<UserRow> {
    if (!admin.isAdmin) throw forbidden("Requesting user is not a server administrator.");
    if (!isValidUserId(userId)) throw invalidParam("Invalid user ID");
    if (userIdDomain(userId) !== this.serverName) throw invalidParam("User does not belong to the local server.");
    const user = await this.storage.users.get(userId);
    if (!user || user.deactivated) throw notFound("User not found.");
    if (userId === admin.userId) {
      if (changing) throw forbidden("You cannot change this on your own account.");
    } else if (user.is_admin) throw forbidden("The target user is a server administrator.");
    return user;
  }

  async isSuspended(userId: string): Promise<boolean> {
    return (await this.storage.users.get(userId))?.suspended === 1;
  }

  /**
   * 403 M_USER_SUSPENDED when the user is suspended. Called by every action the spec's "Account suspension"
   * recommends forbidding: joining, knocking, inviting, sending messages and state, creating or upgrading rooms,
   * changing the profile, redacting others' events, uploading media.
   */
  async assertNotSuspended(userId: string): Promise<void> {
    if (await this.isSuspended(userId)) throw userSuspended();
  }

  /** Redacting one's own events stays allowed while suspended ("SHOULD permit"); others' events do not. */
  async assertMayRedact(userId: string, eventId: string): Promise<void> {
    if (!(await this.isSuspended(userId))) return;
    const target = await this.events.get(eventId);
    if (target && target.event.sender === userId) return;
    throw userSuspended();
  }

  /** `/send` while suspended: redactions (of one's own events, checked by assertMayRedact's rule) only. */
  async assertMaySend(userId: string, eventType: string, content: Record<string, unknown>): Promise<void> {
    if (!(await this.isSuspended(userId))) return;
    if (eventType === "m.room.redaction") {
      const redacts = content.redacts;
      if (typeof redacts === "string" && (await this.events.get(redacts))?.event.sender === userId) return;
    }
    throw userSuspended();
  }
}
