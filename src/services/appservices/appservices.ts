/**
 * The registered application services: finding one by its as_token (by hash, so comparison timing reveals nothing),
 * the identity it asserts on a request (`user_id`, `device_id` query parameters), who owns which user ids and
 * aliases exclusively, and asking services about users and aliases this server does not know.
 */
import { MatrixError, forbidden } from "../../errors.js";
import type { Storage } from "../../storage/storage.js";
import type { ThirdPartyFields, ThirdPartyKind, ThirdPartyResult, ThirdPartySource, ProtocolInfo } from "../thirdparty.js";
import { hashToken, type Requester } from "../tokens.js";
import type { AppServiceApi, PingOutcome } from "./api.js";
import { ApplicationService } from "./application_service.js";
import type { AppServiceRegistration } from "../../config/appservice.js";

export class AppServices {
  readonly all: readonly ApplicationService[];
  private readonly byHash = new Map<string, ApplicationService>();

  constructor(
    registrations: readonly AppServiceRegistration[],
    private readonly serverName: string,
    private readonly storage: Storage,
    readonly api: AppServiceApi,
  ) {
    this.all = registrations.map((r) => new ApplicationService(r, serverName));
    for (const as of this.all) this.byHash.set(hashToken(as.registration.asToken), as);
  }

  /** Creates each service's sender user if it does not exist yet (it may act before registering anyone). */
  async start(): Promise<void> {
    for (const as of this.all) {
      if (await this.storage.users.get(as.sender)) continue;
      await this.storage.transaction(async (tx) => {
        if (!(await tx.users.insert({ user_id: as.sender, password_hash: null, created_ts: Date.now(), is_admin: 0, is_guest: 0, deactivated: 0 }))) return;
        await tx.profiles.set(as.sender, "displayname", as.registration.senderLocalpart);
      });
    }
  }

  byToken(token: string): ApplicationService | undefined {
    return this.all.length === 0 ? undefined : this.byHash.get(hashToken(token));
  }

  byId(id: string): ApplicationService | undefined {
    return this.all.find((as) => as.id === id);
  }

  /**
   * The requester an as_token asserts (spec "Identity assertion"): `user_id` (its sender when absent) must be its
   * sender or in its users namespace and registered, `device_id` one of that user's devices. Errors as Synapse's.
   */
  async requester(as: ApplicationService, userIdParam: unknown, deviceIdParam: unknown): Promise<Requester> {
    let userId = as.sender;
    if (userIdParam !== undefined) {
      if (typeof userIdParam !== "string") throw new MatrixError(400, "M_INVALID_PARAM", "user_id must be given once");
      userId = userIdParam;
    }
    if (userId !== as.sender && !as.isInterestedInUser(userId)) throw forbidden(`Application service cannot masquerade as this user (${userId}).`);
    const user = await this.storage.users.get(userId);
    if (!user) throw forbidden(`Application service has not registered this user (${userId})`);
    if (user.deactivated) throw new MatrixError(401, "M_UNKNOWN_TOKEN", "User account has been deactivated", { soft_logout: false });
    let deviceId: string | null = null;
    if (deviceIdParam !== undefined) {
      if (typeof deviceIdParam !== "string") throw new MatrixError(400, "M_INVALID_PARAM", "device_id must be given once");
      if (!(await this.storage.devices.get(userId, deviceIdParam))) {
        throw new MatrixError(400, "M_UNKNOWN_DEVICE", `Application service trying to use a device that doesn't exist ('${deviceIdParam}' for ${userId})`);
      }
      deviceId = deviceIdParam;
    }
    return { userId, deviceId, tokenId: -1, isGuest: false, isAdmin: user.is_admin === 1, appService: as };
  }

  /** The service whose exclusive users namespace (or sender) covers `userId`, if any. */
  exclusiveOwnerOfUser(userId: string): ApplicationService | undefined {
    return this.all.find((as) => as.isExclusiveUser(userId));
  }

  exclusiveOwnerOfAlias(alias: string): ApplicationService | undefined {
    return this.all.find((as) => as.isExclusiveAlias(alias));
  }

  /**
   * Registration of `userId` by `as` (or by an ordinary client when undefined): M_EXCLUSIVE when the user id is
   * outside the service's namespace, or in another service's exclusive one.
   */
  checkUserRegistration(userId: string, as: ApplicationService | undefined): void {
    if (as !== undefined && !as.isInterestedInUser(userId)) throw new MatrixError(400, "M_EXCLUSIVE", "Invalid user localpart for this application service.");
    const owner = this.exclusiveOwnerOfUser(userId);
    if (owner !== undefined && owner !== as) throw new MatrixError(400, "M_EXCLUSIVE", "This user ID is reserved by an application service.");
  }

  /** Creating or deleting `alias` (Synapse's rules): a service only in its namespace; others not in an exclusive one. */
  checkAliasChange(alias: string, as: ApplicationService | undefined): void {
    if (as !== undefined) {
      if (!as.isAliasInNamespace(alias)) throw new MatrixError(400, "M_EXCLUSIVE", "This application service has not reserved this kind of alias.");
      return;
    }
    if (this.exclusiveOwnerOfAlias(alias) !== undefined) throw new MatrixError(400, "M_EXCLUSIVE", "This alias is reserved by an application service.");
  }

  /**
   * A local user this server does not know, in some service's users namespace: asks those services (spec "Query
   * User"), true once one says it created the user. The caller looks the user up again.
   */
  async queryUserExists(userId: string): Promise<boolean> {
    if (!userId.endsWith(`:${this.serverName}`)) return false;
    for (const as of this.all) {
      if (as.url === null || !as.isUserInNamespace(userId)) continue;
      if (await this.api.queryUser(as, userId)) return true;
    }
    return false;
  }

  /** As queryUserExists, for a local alias in some service's aliases namespace (spec "Query Room Alias"). */
  async queryAliasExists(alias: string): Promise<boolean> {
    if (!alias.endsWith(`:${this.serverName}`)) return false;
    for (const as of this.all) {
      if (as.url === null || !as.isAliasInNamespace(alias)) continue;
      if (await this.api.queryAlias(as, alias)) return true;
    }
    return false;
  }

  /** POST /_matrix/client/v1/appservice/{appserviceId}/ping, by the service itself. */
  async ping(requester: Requester, appserviceId: string, transactionId: string | undefined): Promise<{ duration_ms: number }> {
    const as = requester.appService;
    if (as === undefined || as.id !== appserviceId) throw forbidden("The access token does not belong to this application service");
    const outcome: PingOutcome = await this.api.ping(as, transactionId);
    if (outcome.ok) return { duration_ms: outcome.durationMs };
    switch (outcome.reason) {
      case "url_not_set":
        throw new MatrixError(400, "M_URL_NOT_SET", "Application service URL is not configured");
      case "connection_timeout":
        throw new MatrixError(504, "M_CONNECTION_TIMEOUT", "Connection to application service timed out");
      case "connection_failed":
        throw new MatrixError(502, "M_CONNECTION_FAILED", "Connection to application service failed");
      case "bad_status":
        throw new MatrixError(502, "M_BAD_STATUS", "Application service returned a non-2xx status", { status: outcome.status, body: outcome.body });
    }
  }

  /** One third-party source per service that declares protocols (services/thirdparty.ts). */
  thirdPartySources(): ThirdPartySource[] {
    return this.all.filter((as) => as.url !== null && as.protocols.length > 0).map((as) => new AppServiceThirdParty(as, this.api));
  }
}

const PROTOCOL_CACHE_MS = 3600_000;

/** A service's `/thirdparty/*` endpoints as a ThirdPartySource, checking what it answers as Synapse does. */
class AppServiceThirdParty implements ThirdPartySource {
  /** Protocol metadata a service gave, kept an hour as Synapse does (it changes with the bridge's deployment). */
  private readonly metadata = new Map<string, { info: ProtocolInfo; at: number }>();

  constructor(
    private readonly as: ApplicationService,
    private readonly api: AppServiceApi,
    private readonly now: () => number = Date.now,
  ) {}

  get protocols(): readonly string[] {
    return this.as.protocols;
  }

  async protocol(protocol: string): Promise<ProtocolInfo | undefined> {
    const cached = this.metadata.get(protocol);
    if (cached && this.now() - cached.at < PROTOCOL_CACHE_MS) return cached.info;
    const info = await this.fetchProtocol(protocol);
    if (info) this.metadata.set(protocol, { info, at: this.now() });
    return info;
  }

  private async fetchProtocol(protocol: string): Promise<ProtocolInfo | undefined> {
    const info = await this.api.protocol(this.as, protocol);
    if (!info || !Array.isArray(info.instances)) return info;
    // Synapse names each instance for /publicRooms' `third_party_instance_id`: "<appservice id>|<network id>".
    const instances = (info.instances as unknown[]).map((i) => {
      if (typeof i !== "object" || i === null || Array.isArray(i)) return i;
      const inst = { ...(i as Record<string, unknown>) };
      if (typeof inst.network_id === "string") inst.instance_id = `${this.as.id}|${inst.network_id}`;
      return inst;
    });
    return { ...info, instances };
  }

  async query(kind: ThirdPartyKind, protocol: string | undefined, fields: ThirdPartyFields): Promise<ThirdPartyResult[]> {
    const list = await this.api.thirdPartyQuery(this.as, kind, protocol, fields);
    const key = kind === "location" ? "alias" : "userid";
    return list.filter((r): r is ThirdPartyResult => {
      if (typeof r !== "object" || r === null || Array.isArray(r)) return false;
      const o = r as Record<string, unknown>;
      return typeof o[key] === "string" && typeof o.protocol === "string" && typeof o.fields === "object" && o.fields !== null;
    });
  }
}
