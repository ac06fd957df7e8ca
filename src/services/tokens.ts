/**
 * Access and refresh tokens. A token is 256 random bits; only its SHA-256 is stored, so a leaked database holds no
 * usable token, and lookups go by hash (nothing about the secret leaks through comparison timing). Validated tokens
 * are cached briefly; every revocation in this process evicts them at once.
 */
import { createHash, randomBytes } from "node:crypto";
import type { Config } from "../config/config.js";
import { MatrixError } from "../errors.js";
import type { Storage, Stores } from "../storage/storage.js";
import type { TokenOwner } from "../storage/tokens.js";
import type { ApplicationService } from "./appservices/application_service.js";

/** Who is making an authenticated request. */
export interface Requester {
  userId: string;
  deviceId: string | null;
  tokenId: number;
  isGuest: boolean;
  isAdmin: boolean;
  /** Set when the request used an application service's as_token (spec "Identity assertion"); tokenId is then -1. */
  appService?: ApplicationService;
}

/** Synapse's rule: an application service's users skip rate limits unless its registration says `rate_limited`; its sender always. */
export function exemptFromRateLimits(r: Requester): boolean {
  return r.appService !== undefined && r.appService.exemptFromRateLimits(r.userId);
}

export interface IssuedTokens {
  accessToken: string;
  refreshToken?: string;
  expiresInMs?: number;
}

export function hashToken(token: string): string {
  return createHash("sha256").update(token).digest("base64url");
}

function newToken(prefix: string): string {
  return `${prefix}_${randomBytes(32).toString("base64url")}`;
}

const CACHE_TTL_MS = 60_000;
const CACHE_MAX = 50_000;

export class TokenService {
  private readonly cache = new Map<string, { owner: TokenOwner; cachedAt: number }>();

  constructor(
    private readonly storage: Storage,
    private readonly config: Pick<Config, "refreshableAccessTokenLifetimeMs" | "refreshTokenLifetimeMs" | "nonrefreshableAccessTokenLifetimeMs" | "sessionLifetimeMs">,
    private readonly now: () => number = Date.now,
  ) {}

  /** Issues an access token (and a refresh token when the client supports them) for a device, inside `tx`. */
  async issue(tx: Stores, userId: string, deviceId: string | null, refreshable: boolean, puppetsUserId: string | null = null): Promise<IssuedTokens> {
    const now = this.now();
    const accessToken = newToken("mya");
    if (refreshable && deviceId !== null) {
      const refreshToken = newToken("myr");
      const lifetime = this.config.refreshableAccessTokenLifetimeMs;
      const refreshId = await tx.tokens.insertRefreshToken({
        token_hash: hashToken(refreshToken),
        user_id: userId,
        device_id: deviceId,
        created_ts: now,
        expiry_ts: this.config.refreshTokenLifetimeMs !== undefined ? now + this.config.refreshTokenLifetimeMs : null,
        ultimate_session_expiry_ts: this.config.sessionLifetimeMs !== undefined ? now + this.config.sessionLifetimeMs : null,
        next_token_id: null,
      });
      await tx.tokens.insertAccessToken({
        token_hash: hashToken(accessToken),
        user_id: userId,
        device_id: deviceId,
        created_ts: now,
        valid_until_ms: now + lifetime,
        refresh_token_id: refreshId,
        puppets_user_id: puppetsUserId,
      });
      return { accessToken, refreshToken, expiresInMs: lifetime };
    }
    const lifetime = this.config.nonrefreshableAccessTokenLifetimeMs ?? this.config.sessionLifetimeMs;
    await tx.tokens.insertAccessToken({
      token_hash: hashToken(accessToken),
      user_id: userId,
      device_id: deviceId,
      created_ts: now,
      valid_until_ms: lifetime !== undefined ? now + lifetime : null,
      refresh_token_id: null,
      puppets_user_id: puppetsUserId,
    });
    return lifetime !== undefined ? { accessToken, expiresInMs: lifetime } : { accessToken };
  }

  /** Resolves an access token to its requester, or throws 401 M_UNKNOWN_TOKEN (soft_logout when merely expired). */
  async authenticate(token: string, opts: { allowExpired?: boolean; allowLocked?: boolean } = {}): Promise<Requester> {
    const hash = hashToken(token);
    const now = this.now();
    let entry = this.cache.get(hash);
    if (!entry || now - entry.cachedAt > CACHE_TTL_MS) {
      const owner = await this.storage.tokens.lookupAccessToken(hash);
      if (!owner) {
        this.cache.delete(hash);
        throw new MatrixError(401, "M_UNKNOWN_TOKEN", "Unrecognised access token", { soft_logout: false });
      }
      entry = { owner, cachedAt: now };
      if (this.cache.size >= CACHE_MAX) this.cache.clear();
      this.cache.set(hash, entry);
    }
    const o = entry.owner;
    if (o.valid_until_ms !== null && now >= o.valid_until_ms && !opts.allowExpired) {
      // Spec "Soft logout": an expired token means the client can refresh or re-login to the same device.
      throw new MatrixError(401, "M_UNKNOWN_TOKEN", "Access token has expired", { soft_logout: true });
    }
    if (o.refresh_token_id !== null && o.used === 0) {
      await this.storage.tokens.markUsedAndRevokePredecessor(o.token_id, o.refresh_token_id);
      o.used = 1;
    }
    if (o.deactivated) throw new MatrixError(401, "M_UNKNOWN_TOKEN", "User account has been deactivated", { soft_logout: false });
    // Spec "Account locking": every endpoint but /logout and /logout/all answers this; the token stays valid.
    if (o.locked && !opts.allowLocked) throw new MatrixError(401, "M_USER_LOCKED", "User account has been locked", { soft_logout: true });
    return { userId: o.user_id, deviceId: o.device_id, tokenId: o.token_id, isGuest: o.is_guest === 1, isAdmin: o.is_admin === 1 };
  }

  /**
   * POST /refresh: exchanges a refresh token for a new access token and refresh token, bound to the same device.
   * Spec: "The old refresh token remains valid until the new access token or refresh token is used, at which point
   * the old refresh token is revoked" — so a client whose response was lost can retry with the old one.
   */
  async refresh(refreshToken: string): Promise<IssuedTokens> {
    const now = this.now();
    const revoked: string[] = [];
    const issued = await this.storage.transaction(async (tx) => {
      const row = await tx.tokens.lookupRefreshToken(hashToken(refreshToken));
      if (!row) throw new MatrixError(401, "M_UNKNOWN_TOKEN", "Unknown refresh token", { soft_logout: false });
      const expired = (row.expiry_ts !== null && now >= row.expiry_ts) || (row.ultimate_session_expiry_ts !== null && now >= row.ultimate_session_expiry_ts);
      if (expired) throw new MatrixError(401, "M_UNKNOWN_TOKEN", "Refresh token has expired", { soft_logout: false });
      const user = await tx.users.get(row.user_id);
      if (!user || user.deactivated) throw new MatrixError(401, "M_UNKNOWN_TOKEN", "User account has been deactivated", { soft_logout: false });
      // A locked account "cannot obtain a new access token until the account has been unlocked".
      if (user.locked) throw new MatrixError(401, "M_USER_LOCKED", "User account has been locked", { soft_logout: true });
      // The access token this refresh token issued is replaced now; so is an unused successor from a lost response.
      revoked.push(...(await tx.tokens.deleteAccessTokensOfRefreshToken(row.id)));
      if (row.next_token_id !== null) {
        revoked.push(...(await tx.tokens.deleteAccessTokensOfRefreshToken(row.next_token_id)));
        await tx.tokens.deleteRefreshToken(row.next_token_id);
      }
      const out = await this.issue(tx, row.user_id, row.device_id, true);
      const next = await tx.tokens.lookupRefreshToken(hashToken(out.refreshToken!));
      await tx.tokens.setNextRefreshToken(row.id, next!.id);
      // Using the new refresh token also proves the client got the response.
      await tx.tokens.deleteRefreshTokensPointingTo(row.id);
      return out;
    });
    this.invalidate(revoked);
    return issued;
  }

  /** Evicts revoked tokens (by hash) from the cache. */
  invalidate(hashes: string[]): void {
    for (const h of hashes) this.cache.delete(h);
  }

  /** Evicts every cached token of a user (after deactivation, admin changes…). */
  invalidateUser(userId: string): void {
    for (const [h, e] of this.cache) if (e.owner.user_id === userId) this.cache.delete(h);
  }
}
