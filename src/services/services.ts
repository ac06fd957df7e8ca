/** Everything the HTTP layer can call, built once by server.ts. */
import type { Logger } from "pino";
import type { Config } from "../config/config.js";
import type { SigningKey } from "../core/crypto/ed25519.js";
import type { Storage } from "../storage/storage.js";
import type { AccountDataService } from "./account_data.js";
import type { AccountService } from "./accounts.js";
import type { DeviceService } from "./devices.js";
import type { ProfileService } from "./profile.js";
import type { RateLimiter } from "./ratelimit.js";
import type { TokenService } from "./tokens.js";
import type { UiaService } from "./uia.js";

export interface RateLimiters {
  registration: RateLimiter;
  registrationTokenValidity: RateLimiter;
  loginAddress: RateLimiter;
  loginAccount: RateLimiter;
  loginFailedAttempts: RateLimiter;
  message: RateLimiter;
}

export interface Services {
  config: Config;
  log: Logger;
  storage: Storage;
  signingKey: SigningKey;
  tokens: TokenService;
  devices: DeviceService;
  accounts: AccountService;
  uia: UiaService;
  profile: ProfileService;
  accountData: AccountDataService;
  limits: RateLimiters;
}
