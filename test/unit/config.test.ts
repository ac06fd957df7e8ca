/**
 * homeserver.yaml parsing (Synapse keys), environment overrides, generate-config output and the open-registration
 * safety check.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { parseConfig, parseDatabaseUrl, type Config } from "../../src/config/config.js";
import { generateConfig } from "../../src/config/generate.js";
import { loadConfigFile } from "../../src/config/load.js";
import { ConfigError } from "../../src/config/reader.js";
import { parseSigningKeyFile } from "../../src/core/crypto/ed25519.js";
import { DEFAULT_ROOM_VERSION } from "../../src/core/rooms/versions.js";
import { checkRegistrationSafety, startServer } from "../../src/server.js";

const DIR = "/etc/myelin";

function minimal(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { server_name: "example.org", listeners: [{ port: 8008 }], ...extra };
}

function parse(extra: Record<string, unknown> = {}): Config {
  return parseConfig(minimal(extra), DIR).config;
}

function warningsOf(doc: Record<string, unknown>): string[] {
  return parseConfig(doc, DIR).warnings;
}

/** Asserts that parsing throws a ConfigError whose message contains every fragment. */
function expectConfigError(doc: unknown, ...fragments: string[]): void {
  let error: unknown;
  try {
    parseConfig(doc, DIR);
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(ConfigError);
  for (const f of fragments) expect((error as Error).message).toContain(f);
}

describe("parseConfig: a minimal config", () => {
  it("needs only server_name and one listener, with Synapse's defaults for the rest", () => {
    const { config, warnings } = parseConfig(minimal(), DIR);
    expect(warnings).toEqual([]);
    expect(config.serverName).toBe("example.org");
    expect(config.publicBaseurl).toBe("https://example.org/");
    expect(config.listeners).toEqual([
      { port: 8008, bindAddresses: ["::", "0.0.0.0"], type: "http", tls: false, xForwarded: false, resources: new Set() },
    ]);
    expect(config.database).toEqual({ engine: "sqlite", path: `${DIR}/homeserver.db` });
    expect(config.signingKeyPath).toBe(`${DIR}/example.org.signing.key`);
    expect(config.mediaStorePath).toBe(`${DIR}/media_store`);
    expect(config.enableRegistration).toBe(false);
    expect(config.enableRegistrationWithoutVerification).toBe(false);
    expect(config.registrationRequiresToken).toBe(false);
    expect(config.registrationSharedSecret).toBeUndefined();
    expect(config.allowGuestAccess).toBe(false);
    expect(config.maxUploadSize).toBe(50 * 1024 * 1024);
    expect(config.defaultRoomVersion).toBe(DEFAULT_ROOM_VERSION);
    expect(config.serveServerWellknown).toBe(false);
    expect(config.logLevel).toBe("info");
    expect(config.password.enabled).toBe(true);
    expect(config.password.policy.enabled).toBe(false);
    expect(config.refreshableAccessTokenLifetimeMs).toBe(5 * 60_000);
    expect(config.configDir).toBe(DIR);
  });

  it("keeps an explicit public_baseurl, adding the trailing slash", () => {
    expect(parse({ public_baseurl: "https://matrix.example.org" }).publicBaseurl).toBe("https://matrix.example.org/");
    expect(parse({ public_baseurl: "https://matrix.example.org/" }).publicBaseurl).toBe("https://matrix.example.org/");
  });
});

describe("parseConfig: listeners", () => {
  it("reads port, bind_addresses, type, tls, x_forwarded and resources", () => {
    const config = parse({
      listeners: [
        {
          port: 8008,
          bind_addresses: ["127.0.0.1", "::1"],
          type: "http",
          tls: true,
          x_forwarded: true,
          resources: [{ names: ["client", "federation"], compress: false }, { names: ["media", "keys", "health"] }],
        },
        { port: 9000, bind_address: "10.0.0.1", type: "metrics" },
      ],
    });
    expect(config.listeners).toEqual([
      { port: 8008, bindAddresses: ["127.0.0.1", "::1"], type: "http", tls: true, xForwarded: true, resources: new Set(["client", "federation", "media", "keys", "health"]) },
      { port: 9000, bindAddresses: ["10.0.0.1"], type: "metrics", tls: false, xForwarded: false, resources: new Set(["metrics"]) },
    ]);
  });

  it("refuses a missing or empty listeners list, a missing port and a bad port", () => {
    expectConfigError({ server_name: "example.org" }, '"listeners"', "required");
    expectConfigError({ server_name: "example.org", listeners: [] }, '"listeners"', "at least one");
    expectConfigError({ server_name: "example.org", listeners: "8008" }, '"listeners"', "expected a list");
    expectConfigError({ server_name: "example.org", listeners: [{ type: "http" }] }, '"listeners[0].port"', "required", "integer");
    expectConfigError({ server_name: "example.org", listeners: [{ port: "abc" }] }, '"listeners[0].port"', "expected an integer", '"abc"');
    expectConfigError({ server_name: "example.org", listeners: [{ port: 70000 }] }, '"listeners[0].port"', "between 1 and 65535");
    expectConfigError({ server_name: "example.org", listeners: [5] }, '"listeners[0]"', "expected a mapping");
  });

  it("refuses wrong types and unknown values inside a listener", () => {
    expectConfigError(minimal({ listeners: [{ port: 8008, tls: "yes" }] }), '"listeners[0].tls"', "true or false");
    expectConfigError(minimal({ listeners: [{ port: 8008, bind_addresses: "127.0.0.1" }] }), '"listeners[0].bind_addresses"', "a list of strings");
    expectConfigError(minimal({ listeners: [{ port: 8008, type: "replication" }] }), '"listeners[0].type"', '"http" or "metrics"');
    expectConfigError(minimal({ listeners: [{ port: 8008, resources: [{ names: ["client", "bogus"] }] }] }), '"listeners[0].resources[0].names"', '"bogus"');
  });
});

describe("parseConfig: database", () => {
  it("reads sqlite3 with a relative or absolute path", () => {
    expect(parse({ database: { name: "sqlite3", args: { database: "data/hs.db" } } }).database).toEqual({ engine: "sqlite", path: `${DIR}/data/hs.db` });
    expect(parse({ database: { name: "sqlite3", args: { database: "/var/lib/hs.db", cp_min: 1, cp_max: 1 } } }).database).toEqual({ engine: "sqlite", path: "/var/lib/hs.db" });
  });

  it("reads psycopg2 with every arg, and accepts name: postgres", () => {
    const args = { user: "synapse", password: "secret", database: "synapse_db", host: "db.internal", port: 5433, cp_min: 2, cp_max: 20 };
    const expected = { engine: "postgres", user: "synapse", password: "secret", database: "synapse_db", host: "db.internal", port: 5433, cpMin: 2, cpMax: 20 };
    const { config, warnings } = parseConfig(minimal({ database: { name: "psycopg2", args, allow_unsafe_locale: false, txn_limit: 0 } }), DIR);
    expect(config.database).toEqual(expected);
    expect(warnings).toEqual([]);
    expect(parse({ database: { name: "postgres", args } }).database).toEqual(expected);
  });

  it("gives psycopg2 Synapse's defaults", () => {
    expect(parse({ database: { name: "psycopg2", args: {} } }).database).toEqual({ engine: "postgres", host: "localhost", port: 5432, database: "synapse", cpMin: 5, cpMax: 10 });
  });

  it("refuses an unknown engine and wrongly typed args", () => {
    expectConfigError(minimal({ database: { name: "mysql" } }), '"database.name"', "sqlite3", "psycopg2");
    expectConfigError(minimal({ database: { name: "psycopg2", args: { port: "db" } } }), '"database.args.port"', "integer");
    expectConfigError(minimal({ database: { name: "psycopg2", args: { cp_max: "ten" } } }), '"database.args.cp_max"', "integer");
    expectConfigError(minimal({ database: "sqlite" }), '"database"', "a mapping");
  });
});

describe("parseConfig: durations and sizes", () => {
  it("reads durations as milliseconds from ints and unit strings", () => {
    expect(parse({ refreshable_access_token_lifetime: 1500 }).refreshableAccessTokenLifetimeMs).toBe(1500);
    expect(parse({ refreshable_access_token_lifetime: "5m" }).refreshableAccessTokenLifetimeMs).toBe(5 * 60_000);
    expect(parse({ refresh_token_lifetime: "1h" }).refreshTokenLifetimeMs).toBe(3_600_000);
    expect(parse({ session_lifetime: "7d" }).sessionLifetimeMs).toBe(7 * 86_400_000);
    expect(parse({ nonrefreshable_access_token_lifetime: "30s" }).nonrefreshableAccessTokenLifetimeMs).toBe(30_000);
    expect(parse({ session_lifetime: "250ms" }).sessionLifetimeMs).toBe(250);
    expect(parse({ session_lifetime: "2w" }).sessionLifetimeMs).toBe(14 * 86_400_000);
    expect(parse({ session_lifetime: "1y" }).sessionLifetimeMs).toBe(365 * 86_400_000);
    expect(parse().sessionLifetimeMs).toBeUndefined();
  });

  it("refuses malformed durations naming the key", () => {
    expectConfigError(minimal({ session_lifetime: "soon" }), '"session_lifetime"', "a duration", '"soon"');
    expectConfigError(minimal({ session_lifetime: -5 }), '"session_lifetime"', "a duration");
    expectConfigError(minimal({ session_lifetime: true }), '"session_lifetime"', "a duration");
  });

  it("reads sizes in bytes from ints and unit strings", () => {
    expect(parse({ max_upload_size: "50M" }).maxUploadSize).toBe(50 * 1024 * 1024);
    expect(parse({ max_upload_size: "10K" }).maxUploadSize).toBe(10 * 1024);
    expect(parse({ max_upload_size: "1G" }).maxUploadSize).toBe(1024 ** 3);
    expect(parse({ max_upload_size: "100m" }).maxUploadSize).toBe(100 * 1024 * 1024);
    expect(parse({ max_upload_size: 12345 }).maxUploadSize).toBe(12345);
    expectConfigError(minimal({ max_upload_size: "huge" }), '"max_upload_size"', "a size");
  });
});

describe("parseConfig: rate limits", () => {
  it("uses Synapse's defaults", () => {
    const rl = parse().rateLimits;
    expect(rl.message).toEqual({ perSecond: 0.2, burstCount: 10 });
    expect(rl.registration).toEqual({ perSecond: 0.17, burstCount: 3 });
    expect(rl.loginAddress).toEqual({ perSecond: 0.003, burstCount: 5 });
    expect(rl.loginAccount).toEqual({ perSecond: 0.003, burstCount: 5 });
    expect(rl.loginFailedAttempts).toEqual({ perSecond: 0.17, burstCount: 3 });
  });

  it("reads every rc_* section, including rc_login's three limits", () => {
    const { config, warnings } = parseConfig(
      minimal({
        rc_message: { per_second: 1, burst_count: 2 },
        rc_registration: { per_second: 0.5, burst_count: 4 },
        rc_registration_token_validity: { per_second: 0.25, burst_count: 6 },
        rc_login: { address: { per_second: 2, burst_count: 7 }, account: { per_second: 3, burst_count: 8 }, failed_attempts: { per_second: 4, burst_count: 9 } },
        rc_joins: { local: { per_second: 5, burst_count: 10 }, remote: { per_second: 6, burst_count: 11 } },
        rc_invites: { per_room: { per_second: 7, burst_count: 12 }, per_user: { per_second: 8, burst_count: 13 } },
        rc_room_creation: { per_second: 9, burst_count: 14 },
        rc_reports: { per_second: 10, burst_count: 15 },
        rc_media_create: { per_second: 10, burst_count: 15 },
        rc_3pid_validation: { per_second: 11, burst_count: 16 },
      }),
      DIR,
    );
    expect(warnings).toEqual([]);
    expect(config.rateLimits).toEqual({
      message: { perSecond: 1, burstCount: 2 },
      registration: { perSecond: 0.5, burstCount: 4 },
      registrationTokenValidity: { perSecond: 0.25, burstCount: 6 },
      loginAddress: { perSecond: 2, burstCount: 7 },
      loginAccount: { perSecond: 3, burstCount: 8 },
      loginFailedAttempts: { perSecond: 4, burstCount: 9 },
      joinsLocal: { perSecond: 5, burstCount: 10 },
      joinsRemote: { perSecond: 6, burstCount: 11 },
      invitesPerRoom: { perSecond: 7, burstCount: 12 },
      invitesPerUser: { perSecond: 8, burstCount: 13 },
      roomCreation: { perSecond: 9, burstCount: 14 },
      reports: { perSecond: 10, burstCount: 15 },
      mediaCreate: { perSecond: 10, burstCount: 15 },
      threepidValidation: { perSecond: 11, burstCount: 16 },
    });
  });

  it("fills a partly given limit from the defaults", () => {
    expect(parse({ rc_login: { address: { burst_count: 1 } } }).rateLimits.loginAddress).toEqual({ perSecond: 0.003, burstCount: 1 });
  });

  it("refuses wrong types naming the nested key", () => {
    expectConfigError(minimal({ rc_login: { account: { per_second: "fast" } } }), '"rc_login.account.per_second"', "a number");
    expectConfigError(minimal({ rc_registration: 5 }), '"rc_registration"', "a mapping");
  });
});

describe("parseConfig: passwords, key servers, room version, misc", () => {
  it("reads password_config and its policy", () => {
    const config = parse({
      password_config: {
        enabled: true,
        localdb_enabled: true,
        pepper: "pep",
        policy: { enabled: true, minimum_length: 12, require_digit: true, require_symbol: true, require_lowercase: true, require_uppercase: true },
      },
    });
    expect(config.password).toEqual({
      enabled: true,
      localdbEnabled: true,
      pepper: "pep",
      policy: { enabled: true, minimumLength: 12, requireDigit: true, requireSymbol: true, requireLowercase: true, requireUppercase: true },
    });
    expect(parse({ password_config: { enabled: false } }).password.enabled).toBe(false);
    expectConfigError(minimal({ password_config: { policy: { minimum_length: "12" } } }), '"password_config.policy.minimum_length"', "integer");
  });

  it("trusts matrix.org by default, an explicit list otherwise, and none for an empty list", () => {
    expect(parse().trustedKeyServers).toEqual([{ serverName: "matrix.org" }]);
    const keys = { "ed25519:auto": "Noi6WqcDj0QmPxCNQqgezwTlBKrfqehY1u2FyWP9uYw" };
    expect(
      parse({ trusted_key_servers: [{ server_name: "matrix.org", verify_keys: keys }, { server_name: "notary.example", accept_keys_insecurely: true }] }).trustedKeyServers,
    ).toEqual([{ serverName: "matrix.org", verifyKeys: keys }, { serverName: "notary.example" }]);
    expect(parse({ trusted_key_servers: [] }).trustedKeyServers).toEqual([]);
    expectConfigError(minimal({ trusted_key_servers: [{ verify_keys: keys }] }), '"trusted_key_servers[0].server_name"', "required");
    expectConfigError(minimal({ trusted_key_servers: [{ server_name: "matrix.org", verify_keys: "abc" }] }), '"trusted_key_servers[0].verify_keys"', "a mapping");
    expectConfigError(minimal({ trusted_key_servers: [{ server_name: "matrix.org", verify_keys: { "ed25519:auto": 5 } }] }), '"trusted_key_servers[0].verify_keys', "string");
  });

  it("reads default_room_version and refuses an unknown one", () => {
    expect(parse({ default_room_version: "10" }).defaultRoomVersion).toBe("10");
    expectConfigError(minimal({ default_room_version: "999" }), '"default_room_version"', '"999"');
    expectConfigError(minimal({ default_room_version: 10 }), '"default_room_version"', "a string");
  });

  it("reads registration, guest, well-known and logging keys", () => {
    const config = parse({
      enable_registration: true,
      enable_registration_without_verification: true,
      registration_requires_token: true,
      registration_shared_secret: "s3cret",
      allow_guest_access: true,
      serve_server_wellknown: true,
      log_level: "DEBUG",
      log_config: "log.yaml",
      signing_key_path: "keys/signing.key",
      media_store_path: "/srv/media",
    });
    expect(config.enableRegistration).toBe(true);
    expect(config.enableRegistrationWithoutVerification).toBe(true);
    expect(config.registrationRequiresToken).toBe(true);
    expect(config.registrationSharedSecret).toBe("s3cret");
    expect(config.allowGuestAccess).toBe(true);
    expect(config.serveServerWellknown).toBe(true);
    expect(config.logLevel).toBe("debug");
    expect(config.logConfig).toBe(`${DIR}/log.yaml`);
    expect(config.signingKeyPath).toBe(`${DIR}/keys/signing.key`);
    expect(config.mediaStorePath).toBe("/srv/media");
    expectConfigError(minimal({ log_level: "loud" }), '"log_level"', '"loud"');
    expectConfigError(minimal({ enable_registration: "yes" }), '"enable_registration"', "true or false", '"yes"');
  });
});

describe("parseConfig: required keys and wrong types", () => {
  it("refuses a document that is not a mapping", () => {
    expectConfigError(null, "mapping");
    expectConfigError(["server_name"], "mapping");
    expectConfigError("server_name: x", "mapping");
  });

  it("requires a valid server_name", () => {
    expectConfigError({ listeners: [{ port: 8008 }] }, '"server_name"', "required", "string");
    expectConfigError(minimal({ server_name: 42 }), '"server_name"', "expected a string", "42");
    expectConfigError(minimal({ server_name: "bad name!" }), '"server_name"', "not a valid server name");
  });

  it("names nested keys with their path when a section has the wrong type", () => {
    expectConfigError(minimal({ password_config: [] }), '"password_config"', "a mapping", "a list");
    expectConfigError(minimal({ password_config: { policy: { enabled: "no" } } }), '"password_config.policy.enabled"', "true or false");
  });
});

describe("parseConfig: unknown and accepted keys", () => {
  it("warns once per unknown key, naming nested keys with their path", () => {
    const warnings = warningsOf(
      minimal({
        no_such_key: 1,
        another_unknown: "x",
        listeners: [{ port: 8008, mystery: true, resources: [{ names: ["client"], shiny: 1 }] }],
        database: { name: "sqlite3", args: { database: "x.db", turbo: true }, extra: 1 },
        password_config: { enabled: true, fancy: 1, policy: { enabled: false, strength: 3 } },
        rc_login: { address: { per_second: 1, burst_count: 1, jitter: 2 }, per_planet: {} },
      }),
    );
    const mentioned = (key: string) => warnings.filter((w) => w.includes(`"${key}"`));
    for (const key of [
      "no_such_key",
      "another_unknown",
      "listeners[0].mystery",
      "listeners[0].resources[0].shiny",
      "database.args.turbo",
      "database.extra",
      "password_config.fancy",
      "password_config.policy.strength",
      "rc_login.address.jitter",
      "rc_login.per_planet",
    ]) {
      expect(mentioned(key), key).toHaveLength(1);
    }
    expect(warnings).toHaveLength(10);
  });

  it("accepts Synapse keys without effect and without a warning", () => {
    expect(warningsOf(minimal({ report_stats: true, macaroon_secret_key: "m", form_secret: "f", pid_file: "/x.pid", suppress_key_server_warning: true }))).toEqual([]);
  });

  it("starts every parse with no warnings left over from the last one", () => {
    expect(warningsOf(minimal({ leftover: 1 }))).toHaveLength(1);
    expect(warningsOf(minimal())).toEqual([]);
  });
});

describe("parseConfig: environment overrides", () => {
  it("MYELIN_DATABASE_URL replaces the database section", () => {
    const doc = minimal({ database: { name: "sqlite3", args: { database: "x.db" } } });
    const { config, warnings } = parseConfig(doc, DIR, { MYELIN_DATABASE_URL: "postgres://bob:p%40ss@db.example:6543/myelin" });
    expect(config.database).toEqual({ engine: "postgres", host: "db.example", port: 6543, database: "myelin", user: "bob", password: "p@ss", cpMin: 5, cpMax: 10 });
    expect(warnings).toEqual([]);
    expect(parseConfig(minimal(), DIR, { MYELIN_DATABASE_URL: "sqlite:///var/db/h.db" }).config.database).toEqual({ engine: "sqlite", path: "/var/db/h.db" });
  });

  it("MYELIN_PORT replaces the port of the first plain HTTP listener", () => {
    const doc = minimal({ listeners: [{ port: 9000, type: "metrics" }, { port: 8448, tls: true }, { port: 8008 }] });
    const ports = parseConfig(doc, DIR, { MYELIN_PORT: "18008" }).config.listeners.map((l) => l.port);
    expect(ports).toEqual([9000, 8448, 18008]);
    expect(() => parseConfig(minimal(), DIR, { MYELIN_PORT: "port" })).toThrow(/MYELIN_PORT/);
    expect(() => parseConfig(minimal(), DIR, { MYELIN_PORT: "70000" })).toThrow(ConfigError);
  });

  it("empty overrides are ignored", () => {
    const config = parseConfig(minimal(), DIR, { MYELIN_PORT: "", MYELIN_DATABASE_URL: "" }).config;
    expect(config.listeners[0]!.port).toBe(8008);
    expect(config.database.engine).toBe("sqlite");
  });
});

describe("parseDatabaseUrl", () => {
  it("parses PostgreSQL URLs", () => {
    expect(parseDatabaseUrl("postgres://postgres@127.0.0.1:5432/postgres", DIR)).toEqual({ engine: "postgres", host: "127.0.0.1", port: 5432, database: "postgres", user: "postgres", cpMin: 5, cpMax: 10 });
    expect(parseDatabaseUrl("postgresql://u:pw@host/db", DIR)).toEqual({ engine: "postgres", host: "host", port: 5432, database: "db", user: "u", password: "pw", cpMin: 5, cpMax: 10 });
    expect(parseDatabaseUrl("postgres://host", DIR)).toMatchObject({ engine: "postgres", host: "host", database: "postgres" });
  });

  it("parses SQLite URLs, relative to the config directory", () => {
    expect(parseDatabaseUrl("sqlite:///abs/path.db", DIR)).toEqual({ engine: "sqlite", path: "/abs/path.db" });
    expect(parseDatabaseUrl("sqlite:rel.db", DIR)).toEqual({ engine: "sqlite", path: `${DIR}/rel.db` });
  });

  it("refuses other URLs with a ConfigError", () => {
    expect(() => parseDatabaseUrl("mysql://host/db", DIR)).toThrow(ConfigError);
    expect(() => parseDatabaseUrl("not a url", DIR)).toThrow(ConfigError);
  });
});

describe("generateConfig", () => {
  let dirs: string[] = [];
  const tempDir = () => {
    const d = mkdtempSync(join(tmpdir(), "myelin-gen-"));
    dirs.push(d);
    return d;
  };
  afterEach(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
    dirs = [];
  });

  it("writes a config that parseConfig accepts without warnings, and a Synapse-format signing key", () => {
    const dir = join(tempDir(), "data");
    const files = generateConfig({ serverName: "example.org", dataDir: dir, port: 8118, bind: "0.0.0.0" });
    expect(files.configPath).toBe(join(dir, "homeserver.yaml"));
    const { config, warnings } = loadConfigFile(files.configPath, {});
    expect(warnings).toEqual([]);
    expect(config.serverName).toBe("example.org");
    expect(config.listeners[0]).toMatchObject({ port: 8118, bindAddresses: ["0.0.0.0"], type: "http", tls: false });
    expect([...config.listeners[0]!.resources].sort()).toEqual(["client", "federation", "health", "keys", "media"]);
    expect(config.database).toEqual({ engine: "sqlite", path: join(dir, "homeserver.db") });
    expect(config.signingKeyPath).toBe(files.signingKeyPath);
    expect(config.enableRegistration).toBe(false);
    expect(config.registrationSharedSecret).toMatch(/.{16,}/);
    expect(() => checkRegistrationSafety(config)).not.toThrow();

    const keyText = readFileSync(files.signingKeyPath, "utf8");
    expect(keyText).toMatch(/^ed25519 a_[A-Za-z0-9_]{4} [A-Za-z0-9+/]{43}\n$/);
    const [key] = parseSigningKeyFile(keyText);
    expect(key!.keyId).toMatch(/^ed25519:a_[A-Za-z0-9_]{4}$/);
    expect(key!.seed).toHaveLength(32);
  });

  it("writes a psycopg2 database section for --database-url", () => {
    const dir = tempDir();
    const files = generateConfig({ serverName: "example.org", dataDir: dir, databaseUrl: "postgres://syn:pw@db.local:5433/myelin" });
    const doc = parseYaml(readFileSync(files.configPath, "utf8")) as { database: unknown };
    expect(doc.database).toEqual({ name: "psycopg2", args: { host: "db.local", port: 5433, database: "myelin", user: "syn", password: "pw", cp_min: 5, cp_max: 10 } });
    expect(loadConfigFile(files.configPath, {}).config.database).toMatchObject({ engine: "postgres", host: "db.local", port: 5433, database: "myelin" });
  });

  it("the local development default opens registration and passes the safety check", () => {
    const dir = tempDir();
    const files = generateConfig({ serverName: "localhost", dataDir: dir, localDevelopment: true });
    const text = readFileSync(files.configPath, "utf8");
    expect(text).toMatch(/never expose it to the internet/i);
    const { config } = loadConfigFile(files.configPath, {});
    expect(config.enableRegistration).toBe(true);
    expect(config.enableRegistrationWithoutVerification).toBe(true);
    expect(config.publicBaseurl).toBe("http://localhost:8008/");
    expect(config.listeners[0]!.bindAddresses).toEqual(["127.0.0.1"]);
    expect(() => checkRegistrationSafety(config)).not.toThrow();
  });

  it("refuses to overwrite an existing config or signing key, leaving them untouched", () => {
    const dir = tempDir();
    const files = generateConfig({ serverName: "example.org", dataDir: dir });
    const before = readFileSync(files.configPath, "utf8");
    const keyBefore = readFileSync(files.signingKeyPath, "utf8");
    expect(() => generateConfig({ serverName: "example.org", dataDir: dir })).toThrow(/already exists/);
    expect(readFileSync(files.configPath, "utf8")).toBe(before);
    expect(readFileSync(files.signingKeyPath, "utf8")).toBe(keyBefore);

    const other = tempDir();
    writeFileSync(join(other, "example.org.signing.key"), "ed25519 a_keep AAAA\n");
    expect(() => generateConfig({ serverName: "example.org", dataDir: other })).toThrow(/already exists/);
    expect(readFileSync(join(other, "example.org.signing.key"), "utf8")).toBe("ed25519 a_keep AAAA\n");
  });

  it("refuses an invalid server name", () => {
    expect(() => generateConfig({ serverName: "not a name", dataDir: tempDir() })).toThrow(ConfigError);
  });
});

describe("checkRegistrationSafety", () => {
  it("refuses open registration without verification", () => {
    expect(() => checkRegistrationSafety(parse({ enable_registration: true }))).toThrow(ConfigError);
    expect(() => checkRegistrationSafety(parse({ enable_registration: true }))).toThrow(/enable_registration_without_verification/);
  });

  it("startServer refuses such a config before touching the database", async () => {
    const config = parse({ enable_registration: true, database: { name: "sqlite3", args: { database: "/nonexistent/dir/never.db" } } });
    await expect(startServer(config, { logger: pino({ level: "silent" }) })).rejects.toThrow(ConfigError);
  });

  it("allows it when explicitly accepted, or when a registration token is required", () => {
    expect(() => checkRegistrationSafety(parse({ enable_registration: true, enable_registration_without_verification: true }))).not.toThrow();
    expect(() => checkRegistrationSafety(parse({ enable_registration: true, registration_requires_token: true }))).not.toThrow();
    expect(() => checkRegistrationSafety(parse({ enable_registration: false }))).not.toThrow();
  });
});

describe("parseConfig: email and 3PIDs", () => {
  it("reads Synapse's email keys with its defaults", () => {
    const { config, warnings } = parseConfig(minimal({ email: { smtp_host: "mail.example.org", notif_from: "%(app)s <noreply@example.org>", app_name: "Chat" } }), DIR);
    expect(warnings).toEqual([]);
    expect(config.email).toEqual({
      smtpHost: "mail.example.org",
      smtpPort: 25,
      requireTransportSecurity: false,
      enableTls: true,
      forceTls: false,
      notifFrom: "Chat <noreply@example.org>",
      appName: "Chat",
      validationTokenLifetimeMs: 3600_000,
      subjects: { emailValidation: "[example.org] Validate your email", passwordReset: "[example.org] Password reset" },
    });
    expect(config.threepids).toEqual({ registrationsRequire3pid: [], enable3pidChanges: true, requestTokenInhibit3pidErrors: false });
  });

  it("reads the SMTP credentials, TLS settings and token lifetime", () => {
    const email = parseConfig(
      minimal({ email: { smtp_user: "u", smtp_pass: "p", force_tls: true, tlsname: "smtp.example.org", notif_from: "a@b.c", validation_token_lifetime: "15m" } }),
      DIR,
    ).config.email!;
    expect(email).toMatchObject({ smtpUser: "u", smtpPass: "p", forceTls: true, smtpPort: 465, tlsName: "smtp.example.org", validationTokenLifetimeMs: 900_000 });
  });

  it("refuses an email section without notif_from, and contradictory TLS settings", () => {
    expect(() => parseConfig(minimal({ email: { smtp_host: "x" } }), DIR)).toThrow(/notif_from/);
    expect(() => parseConfig(minimal({ email: { notif_from: "a@b.c", force_tls: true, require_transport_security: true } }), DIR)).toThrow(/mutually exclusive/);
  });

  it("open registration that requires an email passes the registration safety check", () => {
    const open = parseConfig(minimal({ enable_registration: true }), DIR).config;
    expect(() => checkRegistrationSafety(open)).toThrow(/without any verification/);
    const withEmail = parseConfig(minimal({ enable_registration: true, email: { notif_from: "a@b.c" }, registrations_require_3pid: ["email"] }), DIR).config;
    expect(() => checkRegistrationSafety(withEmail)).not.toThrow();
  });

  it("reads the 3PID keys; requiring an email needs the email section", () => {
    const t = parseConfig(
      minimal({
        email: { notif_from: "a@b.c" },
        registrations_require_3pid: ["email"],
        enable_3pid_changes: false,
        request_token_inhibit_3pid_errors: true,
        allowed_local_3pids: [{ medium: "email", pattern: "^[^@]+@example\\.org$" }],
        next_link_domain_whitelist: ["app.example.org"],
      }),
      DIR,
    ).config.threepids;
    expect(t.registrationsRequire3pid).toEqual(["email"]);
    expect(t.enable3pidChanges).toBe(false);
    expect(t.requestTokenInhibit3pidErrors).toBe(true);
    expect(t.allowedLocal3pids![0]!.pattern.test("a@example.org")).toBe(true);
    expect(t.nextLinkDomainWhitelist).toEqual(["app.example.org"]);
    expect(() => parseConfig(minimal({ registrations_require_3pid: ["email"] }), DIR)).toThrow(/email/);
    expect(() => parseConfig(minimal({ email: { notif_from: "a@b.c" }, registrations_require_3pid: ["msisdn"] }), DIR)).toThrow(/only "email"/);
  });
});
