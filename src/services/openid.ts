/**
 * OpenID tokens (spec "OpenID"): a client asks for a token (POST /user/{userId}/openid/request_token) and hands it to
 * a third party, which exchanges it for the user's id (federation GET /openid/userinfo). The tokens are stateless:
 * the user id and expiry, authenticated with an HMAC keyed from the server's signing key, so that every process
 * (and a restarted one) accepts them without shared storage; they lapse after an hour, as Synapse's.
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import type { SigningKey } from "../core/crypto/ed25519.js";

export const OPENID_TOKEN_LIFETIME_MS = 3_600_000;

export class OpenIdTokens {
  private readonly key: Buffer;

  constructor(signingKey: SigningKey, private readonly now: () => number = Date.now) {
    this.key = createHmac("sha256", signingKey.seed).update("myelin openid token v1").digest();
  }

  issue(userId: string): { token: string; expiresInMs: number } {
    const payload = Buffer.from(JSON.stringify([userId, this.now() + OPENID_TOKEN_LIFETIME_MS])).toString("base64url");
    return { token: `${payload}.${this.mac(payload).toString("base64url")}`, expiresInMs: OPENID_TOKEN_LIFETIME_MS };
  }

  /** The user a token was issued to, or undefined when it is malformed, forged or expired. */
  verify(token: string): string | undefined {
    const dot = token.indexOf(".");
    if (dot <= 0 || token.length > 2048) return undefined;
    const payload = token.slice(0, dot);
    const given = Buffer.from(token.slice(dot + 1), "base64url");
    const expected = this.mac(payload);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined;
    let parsed: unknown;
    try {
      parsed = JSON.parse(Buffer.from(payload, "base64url").toString("utf8"));
    } catch {
      return undefined;
    }
    if (!Array.isArray(parsed) || typeof parsed[0] !== "string" || typeof parsed[1] !== "number") return undefined;
    return this.now() < parsed[1] ? parsed[0] : undefined;
  }

  private mac(payload: string): Buffer {
    return createHmac("sha256", this.key).update(payload).digest();
  }
}
