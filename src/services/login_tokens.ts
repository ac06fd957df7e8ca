/**
 * Login tokens (spec "Token-based login", `m.login.token`): short-lived and single-use. POST /login/get_token
 * issues them to logged-in users; SSO will issue them after a provider authenticated the user. A token is 256
 * random bits and only its SHA-256 is stored, like access tokens.
 */
import { randomBytes } from "node:crypto";
import { forbidden } from "../errors.js";
import type { Storage } from "../storage/storage.js";
import { hashToken } from "./tokens.js";

export interface IssuedLoginToken {
  token: string;
  expiresInMs: number;
}

export interface ConsumedLoginToken {
  userId: string;
  authProviderId?: string;
  authProviderSessionId?: string;
}

export class LoginTokens {
  constructor(
    private readonly storage: Storage,
    private readonly now: () => number = Date.now,
  ) {}

  async issue(userId: string, opts: { ttlMs: number; authProviderId?: string; authProviderSessionId?: string }): Promise<IssuedLoginToken> {
    const token = `myl_${randomBytes(32).toString("base64url")}`;
    await this.storage.loginTokens.insert({
      token_hash: hashToken(token),
      user_id: userId,
      expiry_ts: this.now() + opts.ttlMs,
      used_ts: null,
      auth_provider_id: opts.authProviderId ?? null,
      auth_provider_session_id: opts.authProviderSessionId ?? null,
    });
    return { token, expiresInMs: opts.ttlMs };
  }

  /** Uses up a token: 403 M_FORBIDDEN (as the spec says for an invalid token) when unknown, used or expired. */
  async consume(token: string): Promise<ConsumedLoginToken> {
    const now = this.now();
    const { row, alreadyUsed } = await this.storage.loginTokens.markUsed(hashToken(token), now);
    if (!row) throw forbidden("Invalid login token");
    if (alreadyUsed) throw forbidden("Login token has already been used");
    if (now >= row.expiry_ts) throw forbidden("Login token has expired");
    const out: ConsumedLoginToken = { userId: row.user_id };
    if (row.auth_provider_id !== null) out.authProviderId = row.auth_provider_id;
    if (row.auth_provider_session_id !== null) out.authProviderSessionId = row.auth_provider_session_id;
    return out;
  }

  /** Housekeeping: expired tokens are of no use to anyone. */
  async deleteExpired(): Promise<void> {
    await this.storage.loginTokens.deleteExpiredBefore(this.now());
  }
}
