/**
 * The `myelin` command: start | generate-config | register-user. `main` returns an exit code instead of exiting so
 * tests can call it.
 */
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { Command, CommanderError, InvalidArgumentError } from "commander";
import { generateConfig } from "../config/generate.js";
import { loadConfigFile } from "../config/load.js";
import { ConfigError } from "../config/reader.js";
import { MYELIN_VERSION } from "../version.js";
import { registerUserCommand } from "./register_user.js";
import { startCommand } from "./start.js";

function port(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new InvalidArgumentError("expected a port number between 1 and 65535");
  return n;
}

export async function main(argv: string[]): Promise<number> {
  const program = new Command()
    .name("myelin")
    .description("Myelin, a Matrix homeserver. Configuration uses Synapse's homeserver.yaml keys.")
    .version(MYELIN_VERSION)
    .exitOverride()
    .showHelpAfterError();

  let result: Promise<number> = Promise.resolve(0);

  program
    .command("start")
    .description("Run the homeserver in the foreground until SIGTERM or SIGINT.")
    .option("-c, --config <file>", "path to homeserver.yaml")
    .option("--local", "local development default: use <data-dir>/homeserver.yaml, creating it on first run (server name localhost, 127.0.0.1:8008, SQLite, open registration)")
    .option("--data-dir <dir>", "data directory for --local", "./data")
    .action((opts: { config?: string; local?: boolean; dataDir: string }) => {
      result = (async () => {
        let path = opts.config;
        if (!path) {
          if (!opts.local) throw new ConfigError("missing --config FILE (or use --local for the local development default)");
          path = resolve(opts.dataDir, "homeserver.yaml");
          if (!existsSync(path)) {
            const files = generateConfig({ serverName: "localhost", dataDir: opts.dataDir, localDevelopment: true });
            console.log(`Created ${files.configPath} and a signing key for server "localhost" (local development default).`);
          }
        }
        return startCommand(loadConfigFile(path));
      })();
    });

  program
    .command("generate-config")
    .description("Write DIR/homeserver.yaml and a new ed25519 signing key (never overwrites existing files).")
    .requiredOption("--server-name <name>", "the server name (the part after ':' in user ids), e.g. example.org")
    .requiredOption("--data-dir <dir>", "directory for the config, signing key, database and media")
    .option("--port <n>", "port of the HTTP listener", port, 8008)
    .option("--bind <addr>", "address to listen on", "127.0.0.1")
    .option("--database-url <url>", "postgres://user:password@host:port/database (default: SQLite in the data directory)")
    .action((opts: { serverName: string; dataDir: string; port: number; bind: string; databaseUrl?: string }) => {
      result = (async () => {
        const files = generateConfig({ serverName: opts.serverName, dataDir: opts.dataDir, port: opts.port, bind: opts.bind, databaseUrl: opts.databaseUrl });
        console.log(`Wrote ${files.configPath}\nWrote ${files.signingKeyPath}\nStart the server with: myelin start --config ${files.configPath}`);
        return 0;
      })();
    });

  program
    .command("register-user")
    .description("Create a user directly in the database (like Synapse's register_new_matrix_user).")
    .requiredOption("-c, --config <file>", "path to homeserver.yaml")
    .requiredOption("-u, --user <name>", "localpart of the new user (or a full @user:server id on this server)")
    .option("-p, --password <password>", "password (prompted for when not given)")
    .option("-a, --admin", "make the user a server admin", false)
    .action((opts: { config: string; user: string; password?: string; admin: boolean }) => {
      result = registerUserCommand(loadConfigFile(opts.config).config, opts);
    });

  try {
    await program.parseAsync(argv, { from: "user" });
    return await result;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode;
    if (e instanceof ConfigError) {
      console.error(`Configuration error: ${e.message}`);
      return 2;
    }
    console.error(e instanceof Error ? e.message : String(e));
    return 1;
  }
}
