/**
 * Accounts: registration, password login, password change, deactivation (spec "Account registration and
 * management", "Login"). User ids are `@localpart:server_name`; new localparts follow the current grammar.
 */
import { randomBytes } from "node:crypto";
import type { Config } from "../config/config.js";
import { isHistoricalUserId, isValidUserLocalpart, userIdDomain } from "../core/ids/ids.js";
import { MatrixError, badJson, forbidden } from "../errors.js";
import type { Storage } from "../storage/storage.js";
import { generateDeviceId, type DeviceService } from "./devices.js";
import { checkPasswordPolicy, type PasswordHasher } from "./passwords.js";
import type { IssuedTokens, TokenService } from "./tokens.js";
import type { ApplicationService } from "./appservices/application_service.js";

export interface RegisterOptions {
  username?: string;
  password?: string;
  /** A hash from `hashPassword`, used instead of `password` (so UIA sessions never hold the plaintext). */
  passwordHash?: string;
  deviceId?: string;
  initialDeviceDisplayName?: string;
  inhibitLogin?: boolean;
  refreshToken?: boolean;
  guest?: boolean;
  admin?: boolean;
  /** Skip the password policy (admin-created users). */
  skipPolicy?: boolean;
  /** Registered by this application service (`m.login.application_service`): no password, its namespace rules. */
  appService?: ApplicationService;
}

/** A new password: in plain text (checked against the policy and hashed here), or already hashed by `hashPassword`. */
export type NewPassword = { plain: string } | { hash: string };

export interface LoginResult extends IssuedTokens {
  userId: string;
  deviceId: string;
}

export interface RegisterResult extends Partial<IssuedTokens> {
  userId: string;
  deviceId?: string;
}

/** Hooks other services attach to account lifecycle events (e.g. leaving rooms on deactivation). */
export interface AccountHooks {
  /**
   * Throws M_EXCLUSIVE when an application service reserved the user id (ordinary registration, `as` undefined)
   * or when `as` may not register it (application services, services/appservices).
   */
  checkReserved?: (userId: string, as?: ApplicationService) => void;
  onDeactivate?: (userId: string) => Promise<void>;
  /** Deactivated with `erase: true` (recorded before the hook runs). */
  onErased?: (userId: string) => void;
  /** A full (non-guest) account now exists: registered, or upgraded from a guest. */
  onRegistered?: (userId: string) => Promise<void>;
}

const MAX_USER_ID_LENGTH = 255;

export class AccountService {
  readonly hooks: AccountHooks = {};

  constructor(
    private readonly storage: Storage,
    private readonly config: Config,
    private readonly passwords: PasswordHasher,
    private readonly tokens: TokenService,
    private readonly devices: DeviceService,
  ) {}

  /**
   * Maps a requested username onto a user id, or throws 400 M_INVALID_USERNAME. Usernames are lower-cased (user ids
   * may not differ only by case); localparts starting with `_` are reserved for application services, as in Synapse.
   */
  userIdForUsername(username: string): string {
    const localpart = username.toLowerCase();
    const invalid = (why: string) => new MatrixError(400, "M_INVALID_USERNAME", why);
    if (localpart.length === 0) throw invalid("User ID cannot be empty");
    if (!isValidUserLocalpart(localpart)) throw invalid("User ID can only contain characters a-z, 0-9, or '=_-./+'");
    if (localpart.startsWith("_")) throw invalid("User ID may not begin with _");
    const userId = `@${localpart}:${this.config.serverName}`;
    if (Buffer.byteLength(userId) > MAX_USER_ID_LENGTH) throw invalid(`User ID may not be longer than ${MAX_USER_ID_LENGTH} characters`);
    return userId;
  }

  /**
   * An application service's username (spec "Server admin style permissions"): as Synapse, any localpart of the
   * historical grammar (upper case and `_` included, IRC bridges rely on it); the namespace decides the rest.
   */
  userIdForAppService(username: string): string {
    const invalid = (why: string) => new MatrixError(400, "M_INVALID_USERNAME", why);
    if (username.length === 0) throw invalid("User ID cannot be empty");
    const userId = `@${username}:${this.config.serverName}`;
    if (!/^[\x21-\x39\x3b-\x7e]+$/.test(username) || !isHistoricalUserId(userId)) throw invalid("User ID contains characters a user ID may not have");
    if (Buffer.byteLength(userId) > MAX_USER_ID_LENGTH) throw invalid(`User ID may not be longer than ${MAX_USER_ID_LENGTH} characters`);
    return userId;
  }

  /** GET /register/available semantics: throws M_INVALID_USERNAME or M_USER_IN_USE. */
  async checkUsernameAvailable(username: string): Promise<string> {
    const userId = this.userIdForUsername(username);
    this.hooks.checkReserved?.(userId);
    if (await this.storage.users.get(userId)) throw new MatrixError(400, "M_USER_IN_USE", "User ID already taken.");
    return userId;
  }

  /**
   * Spec "Guest Access": "Guest users can also upgrade their account by going through the ordinary register flow, but
   * specifying the additional POST parameter guest_access_token containing the guest's access token. They are also
   * required to specify the username parameter to the value of the local part of their username." Throws 403 unless
   * the token is a guest's and names that user (as Synapse).
   */
  async checkGuestUpgrade(username: string, guestAccessToken: string): Promise<string> {
    const userId = this.userIdForUsername(username);
    const denied = () => forbidden("Cannot register taken user ID without valid guest credentials for that user.");
    let guest;
    try {
      guest = await this.tokens.authenticate(guestAccessToken);
    } catch (e) {
      if (e instanceof MatrixError) throw denied();
      throw e;
    }
    if (!guest.isGuest || guest.userId !== userId) throw denied();
    return userId;
  }

  /** Upgrades a guest (see checkGuestUpgrade) to a full user with a password, and logs it in on a new device. */
  async upgradeGuest(username: string, guestAccessToken: string, opts: Pick<RegisterOptions, "passwordHash" | "deviceId" | "initialDeviceDisplayName" | "inhibitLogin" | "refreshToken">): Promise<RegisterResult> {
    const userId = await this.checkGuestUpgrade(username, guestAccessToken);
    if (!(await this.storage.users.upgradeGuest(userId, opts.passwordHash ?? null))) throw forbidden("Cannot register taken user ID without valid guest credentials for that user.");
    // Its tokens (the guest's among them) now belong to a full user.
    this.tokens.invalidateUser(userId);
    await this.hooks.onRegistered?.(userId);
    if (opts.inhibitLogin) return { userId };
    return this.login(userId, { deviceId: opts.deviceId, initialDeviceDisplayName: opts.initialDeviceDisplayName, refreshToken: opts.refreshToken });
  }

  async register(opts: RegisterOptions): Promise<RegisterResult> {
    let userId: string;
    if (opts.guest || opts.username === undefined) {
      userId = await this.freeGeneratedUserId();
    } else {
      userId = opts.appService !== undefined ? this.userIdForAppService(opts.username) : this.userIdForUsername(opts.username);
      if (!opts.guest) this.hooks.checkReserved?.(userId, opts.appService);
      if (!this.config.inhibitUserInUseError && (await this.storage.users.get(userId))) {
        throw new MatrixError(400, "M_USER_IN_USE", "User ID already taken.");
      }
    }
    let hash: string | null = opts.passwordHash ?? null;
    if (hash === null && opts.password !== undefined) hash = await this.hashPassword(opts.password, { skipPolicy: opts.skipPolicy });
    const now = Date.now();
    const localpart = userId.slice(1, userId.indexOf(":"));
    const result: RegisterResult = await this.storage.transaction(async (tx) => {
      const inserted = await tx.users.insert({
        user_id: userId,
        password_hash: hash,
        created_ts: now,
        is_admin: opts.admin ? 1 : 0,
        is_guest: opts.guest ? 1 : 0,
        deactivated: 0,
      });
      if (!inserted) throw new MatrixError(400, "M_USER_IN_USE", "User ID already taken.");
      // Synapse's default display name is the localpart.
      await tx.profiles.set(userId, "displayname", localpart);
      if (opts.inhibitLogin) return { userId };
      const deviceId = opts.guest ? generateDeviceId() : (opts.deviceId ?? generateDeviceId());
      await tx.devices.upsert(userId, deviceId, opts.initialDeviceDisplayName ?? null, now);
      const issued = await this.tokens.issue(tx, userId, deviceId, opts.refreshToken ?? false);
      return { userId, deviceId, ...issued };
    });
    if (result.deviceId) await this.devices.changed(userId, [result.deviceId], false);
    if (!opts.guest) await this.hooks.onRegistered?.(userId);
    return result;
  }

  private async freeGeneratedUserId(): Promise<string> {
    for (let i = 0; i < 10; i++) {
      // Numeric localparts, as Synapse generates for guests and username-less registrations.
      const localpart = String(100000 + (randomBytes(4).readUInt32BE(0) % 900_000_000));
      const userId = `@${localpart}:${this.config.serverName}`;
      if (!(await this.storage.users.get(userId))) return userId;
    }
    throw new MatrixError(500, "M_UNKNOWN", "Could not allocate a user ID");
  }

  /**
   * Resolves a login identifier (spec "Identifier types") to a local user id. `m.id.user` takes a localpart or a
   * full user id; the legacy top-level `user` field is accepted too.
   */
  /**
   * The 3PID a login (or UIA password stage) names: `identifier: {type: "m.id.thirdparty", medium, address}`, or the
   * deprecated top-level `medium` and `address`. Undefined when it names a user instead.
   */
  thirdPartyIdentifier(body: Record<string, unknown>): { medium: string; address: string } | undefined {
    const id = body.identifier;
    const src = id !== undefined ? (typeof id === "object" && id !== null && !Array.isArray(id) && (id as Record<string, unknown>).type === "m.id.thirdparty" ? (id as Record<string, unknown>) : undefined) : body.medium !== undefined || body.address !== undefined ? body : undefined;
    if (src === undefined) return undefined;
    if (typeof src.medium !== "string" || typeof src.address !== "string") throw badJson("a third-party identifier needs 'medium' and 'address' strings");
    return { medium: src.medium, address: src.address };
  }

  resolveIdentifier(body: Record<string, unknown>): string {
    let user: unknown;
    const identifier = body.identifier;
    if (identifier !== undefined) {
      if (typeof identifier !== "object" || identifier === null || Array.isArray(identifier)) throw badJson("'identifier' must be an object");
      const id = identifier as Record<string, unknown>;
      if (id.type === "m.id.user") user = id.user;
      else if (id.type === "m.id.thirdparty" || id.type === "m.id.phone") throw forbidden("Login with a third-party identifier is not supported on this server");
      else throw new MatrixError(400, "M_UNKNOWN", "Unknown login identifier type");
    } else if (body.user !== undefined) {
      user = body.user;
    } else if (body.medium !== undefined || body.address !== undefined) {
      throw forbidden("Login with a third-party identifier is not supported on this server");
    } else {
      throw new MatrixError(400, "M_MISSING_PARAM", "Missing 'identifier'");
    }
    if (typeof user !== "string" || user.length === 0) throw badJson("'identifier.user' must be a non-empty string");
    if (user.startsWith("@")) {
      const domain = userIdDomain(user);
      if (domain !== this.config.serverName) throw forbidden("Invalid username or password");
      return user.toLowerCase() === user ? user : `@${user.slice(1, user.indexOf(":")).toLowerCase()}:${domain}`;
    }
    return `@${user.toLowerCase()}:${this.config.serverName}`;
  }

  /** Checks a password for a user; throws 403 M_FORBIDDEN for any mismatch (without telling which part). */
  async checkPassword(userId: string, password: unknown): Promise<void> {
    if (typeof password !== "string") throw badJson("'password' must be a string");
    if (!this.config.password.enabled || !this.config.password.localdbEnabled) throw forbidden("Password login is disabled");
    const user = await this.storage.users.get(userId);
    const ok = await this.passwords.verify(password, user?.password_hash ?? null);
    // Deactivation wipes the password hash, so no password can match any more. As Synapse does (and as the spec
    // names first), such an account answers M_USER_DEACTIVATED rather than a plain wrong-password M_FORBIDDEN.
    if (user?.deactivated && (ok || user.password_hash === null)) throw new MatrixError(403, "M_USER_DEACTIVATED", "This account has been deactivated");
    if (!user || !ok) throw forbidden("Invalid username or password");
  }

  /** Creates (or reuses) a device and issues tokens for an authenticated user. */
  async login(userId: string, opts: { deviceId?: string; initialDeviceDisplayName?: string; refreshToken?: boolean }): Promise<LoginResult> {
    const deviceId = opts.deviceId ?? generateDeviceId();
    const now = Date.now();
    const revoked: string[] = [];
    const result = await this.storage.transaction(async (tx) => {
      // Logging in to an existing device replaces that device's previous session.
      revoked.push(...(await tx.tokens.deleteAccessTokens(userId, { deviceIds: [deviceId] })));
      await tx.tokens.deleteRefreshTokens(userId, { deviceIds: [deviceId] });
      await tx.devices.upsert(userId, deviceId, opts.initialDeviceDisplayName ?? null, now);
      return this.tokens.issue(tx, userId, deviceId, opts.refreshToken ?? false);
    });
    this.tokens.invalidate(revoked);
    await this.devices.changed(userId, [deviceId], false);
    return { userId, deviceId, ...result };
  }

  /** Checks a new password against password_config.policy (400 M_WEAK_PASSWORD) and hashes it. */
  async hashPassword(password: string, opts: { skipPolicy?: boolean } = {}): Promise<string> {
    if (!opts.skipPolicy) checkPasswordPolicy(this.config.password.policy, password);
    return this.passwords.hash(password);
  }

  /** POST /account/password. With logout_devices, every other device is deleted and its tokens revoked. */
  async changePassword(userId: string, newPassword: NewPassword, opts: { logoutDevices: boolean; keepDeviceId: string | null; keepTokenId?: number }): Promise<void> {
    const hash = "hash" in newPassword ? newPassword.hash : await this.hashPassword(newPassword.plain);
    const others: string[] = [];
    const revoked = await this.storage.transaction(async (tx) => {
      await tx.users.setPasswordHash(userId, hash);
      if (!opts.logoutDevices) return [];
      others.push(...(await tx.devices.list(userId)).map((d) => d.device_id).filter((d) => d !== opts.keepDeviceId));
      const hashes = await this.devices.deleteInTx(tx, userId, others);
      // Tokens without a device (or of the current device other than this one) go too.
      hashes.push(...(await tx.tokens.deleteAccessTokens(userId, opts.keepTokenId !== undefined ? { exceptTokenId: opts.keepTokenId } : {})));
      return hashes;
    });
    this.tokens.invalidate(revoked);
    await this.devices.changed(userId, others, true);
  }

  /** Deactivation: the user can never log in again; devices (the dehydrated one too), tokens, account data and key backups go; with erase, the profile too. */
  async deactivate(userId: string, opts: { erase: boolean }): Promise<void> {
    const devices: string[] = [];
    await this.storage.transaction(async (tx) => {
      await tx.users.setDeactivated(userId, true);
      await tx.users.setPasswordHash(userId, null);
      devices.push(...(await tx.devices.list(userId)).map((d) => d.device_id));
      await this.devices.deleteInTx(tx, userId, devices);
      await tx.tokens.deleteAccessTokens(userId);
      await tx.tokens.deleteRefreshTokens(userId);
      await tx.accountData.deleteAll(userId);
      // As Synapse: a deactivated account keeps no key backup.
      await tx.keyBackup.deleteAll(userId);
      await tx.dehydratedDevices.delete(userId);
      if (opts.erase) {
        await tx.profiles.deleteAll(userId);
        await tx.erasedUsers.add(userId);
      }
    });
    if (opts.erase) this.hooks.onErased?.(userId);
    this.tokens.invalidateUser(userId);
    await this.devices.changed(userId, devices, true);
    await this.hooks.onDeactivate?.(userId);
  }
}
