/**
 * `myelin generate-config`: a commented homeserver.yaml with Synapse's keys and a fresh ed25519 signing key.
 */
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { stringify } from "yaml";
import { formatSigningKeyFile, generateSigningKey } from "../core/crypto/ed25519.js";
import { isValidServerName } from "../core/ids/ids.js";
import { ConfigError } from "./reader.js";
import { parseDatabaseUrl } from "./config.js";

export interface GenerateOptions {
  serverName: string;
  dataDir: string;
  port?: number;
  bind?: string;
  databaseUrl?: string;
  /** The local default `npm start` uses: open registration without verification, for trying Myelin out. */
  localDevelopment?: boolean;
}

export interface GeneratedFiles {
  configPath: string;
  signingKeyPath: string;
}

const q = (s: string) => JSON.stringify(s);

export function generateConfig(opts: GenerateOptions): GeneratedFiles {
  if (!isValidServerName(opts.serverName)) throw new ConfigError(`"${opts.serverName}" is not a valid server name`);
  const dataDir = resolve(opts.dataDir);
  const configPath = `${dataDir}/homeserver.yaml`;
  const signingKeyPath = `${dataDir}/${opts.serverName.replace(/[^A-Za-z0-9.-]/g, "_")}.signing.key`;
  for (const p of [configPath, signingKeyPath]) {
    if (existsSync(p)) throw new ConfigError(`${p} already exists; not overwriting it`);
  }
  mkdirSync(dataDir, { recursive: true });
  const port = opts.port ?? 8008;
  const bind = opts.bind ?? "127.0.0.1";
  const host = bind === "127.0.0.1" || bind === "::1" || bind === "localhost" ? "localhost" : opts.serverName;
  const publicBaseurl = opts.localDevelopment ? `http://${host}:${port}/` : `https://${opts.serverName}/`;
  const secret = () => randomBytes(24).toString("base64url");

  let database: string;
  if (opts.databaseUrl && !opts.databaseUrl.startsWith("sqlite:")) {
    const db = parseDatabaseUrl(opts.databaseUrl, dataDir);
    if (db.engine !== "postgres") throw new ConfigError("unreachable");
    const args: Record<string, unknown> = { host: db.host, port: db.port, database: db.database, cp_min: 5, cp_max: 10 };
    if (db.user) args.user = db.user;
    if (db.password) args.password = db.password;
    database = stringify({ database: { name: "psycopg2", args } });
  } else {
    database = stringify({ database: { name: "sqlite3", args: { database: `${dataDir}/homeserver.db` } } });
  }

  const registration = opts.localDevelopment
    ? `# LOCAL DEVELOPMENT DEFAULT: anyone who can reach this server can register without any verification.
# This server only listens on ${bind}; never expose it to the internet with these two settings.
enable_registration: true
enable_registration_without_verification: true`
    : `# Registration is closed; create users with \`myelin register-user\` or the shared secret below.
enable_registration: false
enable_registration_without_verification: false`;

  const yaml = `# Myelin homeserver configuration. Keys are Synapse's: see docs/configuration.md for every supported key.
server_name: ${q(opts.serverName)}
# The URL clients use to reach this server (also served in /.well-known/matrix/client).
public_baseurl: ${q(publicBaseurl)}

listeners:
  - port: ${port}
    bind_addresses: [${q(bind)}]
    type: http
    tls: false
    x_forwarded: ${opts.localDevelopment ? "false" : "true"}
    resources:
      - names: [client, federation, media, keys, health]

${database.trim()}

signing_key_path: ${q(signingKeyPath)}
media_store_path: ${q(`${dataDir}/media_store`)}

${registration}
# Used by \`myelin register-user\` and Synapse's /_synapse/admin/v1/register.
registration_shared_secret: ${q(secret())}

macaroon_secret_key: ${q(secret())}
form_secret: ${q(secret())}
report_stats: false

trusted_key_servers:
  - server_name: "matrix.org"

log_level: info
`;
  writeFileSync(signingKeyPath, formatSigningKeyFile([generateSigningKey()]), { mode: 0o600, flag: "wx" });
  writeFileSync(configPath, yaml, { mode: 0o600, flag: "wx" });
  return { configPath, signingKeyPath };
}
