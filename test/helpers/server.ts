/**
 * Test servers: a real Myelin on 127.0.0.1 (any free port) with a fresh database — a SQLite file in a temp dir, or,
 * when the suite runs on PostgreSQL (MYELIN_TEST_DB=postgres), a new database it creates and drops.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { pino } from "pino";
import { parseConfig, type Config } from "../../src/config/config.js";
import { generateSigningKey, formatSigningKeyFile, type SigningKey } from "../../src/core/crypto/ed25519.js";
import type { Resolver, WellKnownFetcher } from "../../src/federation/discovery.js";
import { startServer, type FederationDeps, type RunningServer, type StartOptions as ServerStartOptions } from "../../src/server.js";
import { writeFileSync } from "node:fs";
import { selfSignedCertificate, type CertificateFiles } from "./tls.js";

export const TEST_ENGINE = (process.env.MYELIN_TEST_DB ?? "sqlite") as "sqlite" | "postgres";
export const POSTGRES_URL = process.env.MYELIN_TEST_POSTGRES ?? "postgres://postgres@127.0.0.1:5432/postgres";

export interface TestServer {
  server: RunningServer;
  baseUrl: string;
  /** The port of the TLS listener, when the server was started with `tls: true`. */
  tlsPort?: number;
  /** The server's signing key. */
  signingKey: SigningKey;
  config: Config;
  dataDir: string;
  /** Stops the server; with `keepData`, the database and files stay for a restart. */
  stop(): Promise<void>;
  /** Starts a new server process-equivalent on the same data (and port 0 again). */
  restart(): Promise<TestServer>;
  /** Stops and deletes everything. */
  close(): Promise<void>;
}

export interface TestDatabase {
  yaml: Record<string, unknown>;
  drop(): Promise<void>;
}

/** A fresh database for this test run on the engine under test. */
export async function createTestDatabase(dataDir: string): Promise<TestDatabase> {
  if (TEST_ENGINE === "sqlite") {
    return { yaml: { name: "sqlite3", args: { database: join(dataDir, "homeserver.db") } }, drop: async () => {} };
  }
  const name = `myelin_t_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
  const admin = new pg.Client({ connectionString: POSTGRES_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const u = new URL(POSTGRES_URL);
  return {
    yaml: {
      name: "psycopg2",
      args: { user: decodeURIComponent(u.username) || "postgres", password: u.password || undefined, host: u.hostname, port: Number(u.port || 5432), database: name, cp_min: 1, cp_max: 5 },
    },
    drop: async () => {
      const c = new pg.Client({ connectionString: POSTGRES_URL });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

/** Settings every test server gets: cheap password hashing and rate limits out of the way unless a test sets them. */
const OPEN = { per_second: 10_000, burst_count: 100_000 };
export function baseYaml(serverName: string, dataDir: string, database: Record<string, unknown>): Record<string, unknown> {
  return {
    server_name: serverName,
    public_baseurl: "http://127.0.0.1:8008/",
    listeners: [{ port: 8008, bind_addresses: ["127.0.0.1"], type: "http", resources: [{ names: ["client", "federation", "keys", "media", "health"] }] }],
    database,
    signing_key_path: join(dataDir, "signing.key"),
    media_store_path: join(dataDir, "media"),
    enable_registration: true,
    enable_registration_without_verification: true,
    registration_shared_secret: "test-shared-secret",
    password_hashing: { memory_kib: 1024, iterations: 1 },
    rc_message: OPEN,
    rc_registration: OPEN,
    rc_registration_token_validity: OPEN,
    rc_login: { address: OPEN, account: OPEN, failed_attempts: OPEN },
    rc_joins: { local: OPEN, remote: OPEN },
    rc_invites: { per_room: OPEN, per_user: OPEN },
    rc_room_creation: OPEN,
    log_level: process.env.MYELIN_TEST_LOG ?? "silent",
    report_stats: false,
  };
}

export interface StartOptions {
  serverName?: string;
  /** Keys merged over the base config (top level). */
  config?: Record<string, unknown>;
  /**
   * Adds a second listener with `tls: true` serving `federation` and `keys` (as an admin's 8448 listener), with a
   * fresh self-signed certificate for the server name's host and 127.0.0.1.
   */
  tls?: boolean;
  /** The TLS listener's resources (default: federation and keys). */
  tlsResources?: string[];
  /** The TLS listener's certificate (default: a fresh self-signed one). */
  tlsCertificate?: CertificateFiles;
  /** Passed to startServer: how federation resolves names, extra routes, the media thumbnailer. */
  server?: Pick<ServerStartOptions, "federation" | "routes" | "thumbnailer">;
  /** The signing key to use (a new one by default). */
  signingKey?: SigningKey;
}

export async function startTestServer(opts: StartOptions = {}): Promise<TestServer> {
  const dataDir = mkdtempSync(join(tmpdir(), "myelin-test-"));
  const db = await createTestDatabase(dataDir);
  const serverName = opts.serverName ?? "test.local";
  const signingKey = opts.signingKey ?? generateSigningKey();
  writeFileSync(join(dataDir, "signing.key"), formatSigningKeyFile([signingKey]));
  const yaml: Record<string, unknown> = { ...baseYaml(serverName, dataDir, db.yaml) };
  if (opts.tls) {
    const host = serverName.replace(/:\d+$/, "").replace(/^\[(.*)\]$/, "$1");
    const { certPath, keyPath } = opts.tlsCertificate ?? selfSignedCertificate(dataDir, [...new Set([host, "127.0.0.1"])]);
    const listeners = yaml.listeners as Record<string, unknown>[];
    yaml.listeners = [...listeners, { port: 8448, bind_addresses: ["127.0.0.1"], type: "http", tls: true, resources: [{ names: opts.tlsResources ?? ["federation", "keys"] }] }];
    yaml.tls_certificate_path = certPath;
    yaml.tls_private_key_path = keyPath;
  }
  Object.assign(yaml, opts.config ?? {});
  return launch(yaml, dataDir, db, signingKey, opts.server ?? {});
}

/**
 * Tests never look up real DNS names: unless a test maps names to 127.0.0.1 itself (test/helpers/federation.ts),
 * every server name is unresolvable.
 */
const offlineResolver: Resolver = {
  lookupSrv: async () => [],
  lookupHost: async (name) => {
    throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${name} (tests are offline)`), { code: "ENOTFOUND" });
  },
};
const offlineWellKnown: WellKnownFetcher = async (url) => {
  throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${new URL(url).hostname} (tests are offline)`), { code: "ENOTFOUND" });
};
const OFFLINE: Required<FederationDeps> = { resolver: offlineResolver, wellKnownFetcher: offlineWellKnown };

async function launch(
  yaml: Record<string, unknown>,
  dataDir: string,
  db: TestDatabase,
  signingKey: SigningKey,
  serverOpts: Pick<ServerStartOptions, "federation" | "routes" | "thumbnailer">,
): Promise<TestServer> {
  const { config, warnings } = parseConfig(yaml, dataDir);
  // Port 0: any free port.
  for (const l of config.listeners) l.port = 0;
  const server = await startServer(config, {
    logger: pino({ level: config.logLevel }),
    warnings,
    ...serverOpts,
    federation: { ...OFFLINE, ...serverOpts.federation },
  });
  const addr = server.addresses.find((a) => !a.tls) ?? server.addresses[0]!;
  const baseUrl = `http://127.0.0.1:${addr.port}`;
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await server.close();
  };
  return {
    server,
    baseUrl,
    tlsPort: server.addresses.find((a) => a.tls)?.port,
    signingKey,
    config,
    dataDir,
    stop,
    restart: async () => {
      await stop();
      return launch(yaml, dataDir, db, signingKey, serverOpts);
    },
    close: async () => {
      await stop();
      await db.drop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
