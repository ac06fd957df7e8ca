/**
 * TURN server credentials for VoIP (spec "Voice over IP", GET /voip/turnServer), from Synapse's `turn_*` keys.
 *
 * With `turn_shared_secret`, each user gets time-limited credentials in the "TURN REST API" convention coturn's
 * `use-auth-secret` / `static-auth-secret` implements: username `<expiry, unix seconds>:<user id>`, password the
 * standard (padded) base64 of HMAC-SHA1(secret, username). The TURN server recomputes the HMAC and checks the expiry,
 * so nothing is stored. Otherwise `turn_username`/`turn_password` are handed out as they are.
 */
import { createHmac } from "node:crypto";
import type { TurnConfig } from "../config/config.js";

export interface TurnCredentials {
  username: string;
  password: string;
  uris: string[];
  ttl: number;
}

/** The TURN REST API password for a username: base64(HMAC-SHA1(secret, username)), padded. */
export function turnPassword(secret: string, username: string): string {
  return createHmac("sha1", secret).update(username, "utf8").digest("base64");
}

export class TurnService {
  constructor(
    private readonly config: TurnConfig,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Credentials for `userId`, or `{}` when no TURN server is configured — as Synapse: it needs `turn_uris`, a
   * non-zero `turn_user_lifetime`, and either `turn_shared_secret` (preferred) or both `turn_username` and
   * `turn_password`.
   */
  credentials(userId: string): TurnCredentials | Record<string, never> {
    const { uris, sharedSecret, username, password, userLifetimeMs } = this.config;
    if (uris.length === 0 || userLifetimeMs <= 0) return {};
    const ttl = Math.floor(userLifetimeMs / 1000);
    if (sharedSecret) {
      const expiry = Math.floor((this.now() + userLifetimeMs) / 1000);
      const name = `${expiry}:${userId}`;
      return { username: name, password: turnPassword(sharedSecret, name), uris: [...uris], ttl };
    }
    if (username && password) return { username, password, uris: [...uris], ttl };
    return {};
  }
}
