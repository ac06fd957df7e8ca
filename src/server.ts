/**
 * Wires config → storage → services → HTTP listeners. The only module that knows every part; everything else gets
 * what it needs passed in.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { dirname } from "node:path";
import type { FastifyInstance } from "fastify";
import type { Logger } from "pino";
import { buildApp } from "./api/http/app.js";
import type { Config } from "./config/config.js";
import { ConfigError } from "./config/reader.js";
import { formatSigningKeyFile, generateSigningKey, parseSigningKeyFile, type SigningKey } from "./core/crypto/ed25519.js";
import { createLogger, logLevelOf } from "./logging.js";
import { AccountDataService } from "./services/account_data.js";
import { AccountService } from "./services/accounts.js";
import { DeviceService } from "./services/devices.js";
import { PasswordHasher } from "./services/passwords.js";
import { ProfileService } from "./services/profile.js";
import { RateLimiter } from "./services/ratelimit.js";
import type { Services } from "./services/services.js";
import { TokenService } from "./services/tokens.js";
import { UiaService } from "./services/uia.js";
import { openDatabase } from "./storage/database.js";
import { Storage } from "./storage/storage.js";

export interface RunningServer {
  services: Services;
  /** Where each listener ended up (port 0 in the config means "any free port"). */
  addresses: { host: string; port: number; resources: Set<string> }[];
  close(): Promise<void>;
}

export interface StartOptions {
  logger?: Logger;
  /** Config warnings to log once the logger exists. */
  warnings?: string[];
}

/** Synapse refuses open registration without verification unless explicitly allowed; so do we. */
export function checkRegistrationSafety(config: Config): void {
  if (config.enableRegistration && !config.enableRegistrationWithoutVerification && !config.registrationRequiresToken) {
    throw new ConfigError(
      "You have enabled open registration without any verification. This is a known vector for spam and abuse. " +
        "Set registration_requires_token: true, or set enable_registration_without_verification: true if you really want open registration.",
    );
  }
}

export function loadOrCreateSigningKey(path: string, log: Logger): SigningKey {
  if (!existsSync(path)) {
    mkdirSync(dirname(path), { recursive: true });
    const key = generateSigningKey();
    writeFileSync(path, formatSigningKeyFile([key]), { mode: 0o600, flag: "wx" });
    log.info({ path, keyId: key.keyId }, "generated a new signing key");
    return key;
  }
  return parseSigningKeyFile(readFileSync(path, "utf8"))[0]!;
}

export async function startServer(config: Config, opts: StartOptions = {}): Promise<RunningServer> {
  const { level, note } = logLevelOf(config);
  const log = opts.logger ?? createLogger(level);
  for (const w of opts.warnings ?? []) log.warn(w);
  if (note) log.info(note);
  checkRegistrationSafety(config);
  if (config.enableRegistration && config.enableRegistrationWithoutVerification) {
    log.warn("open registration without verification is enabled: anyone who can reach this server can create accounts. Never expose such a server to the internet.");
  }

  const signingKey = loadOrCreateSigningKey(config.signingKeyPath, log);
  const storage = new Storage(await openDatabase(config.database));
  const services = buildServices(config, log, storage, signingKey);
  await services.accountData.start();

  const apps: FastifyInstance[] = [];
  const extraServers: Server[] = [];
  const addresses: RunningServer["addresses"] = [];
  try {
    for (const listener of config.listeners) {
      const app = await buildApp(services, listener);
      apps.push(app);
      const [first, ...rest] = listener.bindAddresses;
      await app.listen({ port: listener.port, host: first ?? "0.0.0.0" });
      const addr = app.server.address();
      const port = typeof addr === "object" && addr ? addr.port : listener.port;
      addresses.push({ host: first ?? "0.0.0.0", port, resources: listener.resources });
      // Fastify listens once; further bind addresses forward their requests to the same app.
      for (const host of rest) {
        const extra = createServer((req, res) => app.server.emit("request", req, res));
        try {
          await new Promise<void>((resolve, reject) => {
            extra.once("error", reject);
            extra.listen(port, host, () => resolve());
          });
          extraServers.push(extra);
          addresses.push({ host, port, resources: listener.resources });
        } catch (e) {
          // `::` usually covers IPv4 too, so a second bind on 0.0.0.0 may find the port taken: that is fine.
          if ((e as NodeJS.ErrnoException).code !== "EADDRINUSE") throw e;
        }
      }
      log.info({ port, bind: listener.bindAddresses, resources: [...listener.resources] }, "listening");
    }
  } catch (e) {
    await Promise.allSettled(apps.map((a) => a.close()));
    await storage.close();
    throw e;
  }
  log.info({ serverName: config.serverName }, "Myelin started");

  let closing: Promise<void> | undefined;
  return {
    services,
    addresses,
    close: () =>
      (closing ??= (async () => {
        await Promise.allSettled(extraServers.map((s) => new Promise((r) => s.close(r))));
        await Promise.allSettled(apps.map((a) => a.close()));
        await services.devices.flushSeen();
        await storage.close();
        log.info("Myelin stopped");
      })()),
  };
}

export function buildServices(config: Config, log: Logger, storage: Storage, signingKey: SigningKey): Services {
  const tokens = new TokenService(storage, config);
  const devices = new DeviceService(storage, tokens);
  const passwords = new PasswordHasher(config);
  const accounts = new AccountService(storage, config, passwords, tokens, devices);
  const rl = config.rateLimits;
  return {
    config,
    log,
    storage,
    signingKey,
    tokens,
    devices,
    accounts,
    uia: new UiaService(storage),
    profile: new ProfileService(storage, config),
    accountData: new AccountDataService(storage),
    limits: {
      registration: new RateLimiter(rl.registration),
      registrationTokenValidity: new RateLimiter(rl.registrationTokenValidity),
      loginAddress: new RateLimiter(rl.loginAddress),
      loginAccount: new RateLimiter(rl.loginAccount),
      loginFailedAttempts: new RateLimiter(rl.loginFailedAttempts),
      message: new RateLimiter(rl.message),
    },
  };
}
