/**
 * One registered application service and the spec's rules about what it owns: users, aliases and rooms in its
 * namespaces (regexes matched from the start, as Synapse's `re.match`), its sender user, and exclusivity.
 */
import { matchesAtStart, type AppServiceRegistration, type Namespace } from "../../config/appservice.js";

export class ApplicationService {
  /** `@sender_localpart:server_name`: the user its as_token acts as. */
  readonly sender: string;

  constructor(
    readonly registration: AppServiceRegistration,
    serverName: string,
  ) {
    this.sender = `@${registration.senderLocalpart}:${serverName}`;
  }

  get id(): string {
    return this.registration.id;
  }
  get url(): string | null {
    return this.registration.url;
  }
  get protocols(): readonly string[] {
    return this.registration.protocols;
  }

  /** Exempt from rate limits: `rate_limited: false`, or the sender itself (as Synapse). */
  exemptFromRateLimits(userId: string): boolean {
    return !this.registration.rateLimited || userId === this.sender;
  }

  private static first(list: readonly Namespace[], s: string): Namespace | undefined {
    return list.find((ns) => matchesAtStart(ns.matcher, s));
  }

  isUserInNamespace(userId: string): boolean {
    return ApplicationService.first(this.registration.namespaces.users, userId) !== undefined;
  }

  /** Its sender, or a user in its users namespace (exclusive or not): the users it may act as. */
  isInterestedInUser(userId: string): boolean {
    return userId === this.sender || this.isUserInNamespace(userId);
  }

  /** As Synapse, the first namespace that matches decides. */
  isExclusiveUser(userId: string): boolean {
    return userId === this.sender || ApplicationService.first(this.registration.namespaces.users, userId)?.exclusive === true;
  }

  isAliasInNamespace(alias: string): boolean {
    return ApplicationService.first(this.registration.namespaces.aliases, alias) !== undefined;
  }

  isExclusiveAlias(alias: string): boolean {
    return ApplicationService.first(this.registration.namespaces.aliases, alias)?.exclusive === true;
  }

  isRoomInNamespace(roomId: string): boolean {
    return ApplicationService.first(this.registration.namespaces.rooms, roomId) !== undefined;
  }
}
