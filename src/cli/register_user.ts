import { createInterface } from "node:readline";
import type { Config } from "../config/config.js";
import { MatrixError } from "../errors.js";
import { createLogger } from "../logging.js";
import { buildServices, loadOrCreateSigningKey } from "../server.js";
import { openDatabase } from "../storage/database.js";
import { Storage } from "../storage/storage.js";

/** Reads a line from stdin; on a terminal the typed characters are hidden. */
async function prompt(question: string): Promise<string> {
  const rl = createInterface({ input: process.stdin, output: process.stdout, terminal: process.stdin.isTTY });
  if (process.stdin.isTTY) {
    const rlx = rl as unknown as { _writeToOutput: (s: string) => void; output: NodeJS.WritableStream };
    rlx._writeToOutput = (s: string) => {
      if (s.startsWith(question)) rlx.output.write(question);
    };
  }
  try {
    return await new Promise<string>((resolve, reject) => {
      rl.question(question, resolve);
      rl.once("close", () => reject(new Error("no password given")));
    });
  } finally {
    if (process.stdin.isTTY) process.stdout.write("\n");
    rl.close();
  }
}

export async function registerUserCommand(config: Config, opts: { user: string; password?: string; admin: boolean }): Promise<number> {
  let password = opts.password;
  if (password === undefined) {
    password = await prompt("Password: ");
    const confirm = await prompt("Confirm password: ");
    if (password !== confirm) {
      console.error("Passwords do not match");
      return 1;
    }
  }
  if (!password) {
    console.error("The password must not be empty");
    return 1;
  }
  const log = createLogger("warn");
  const storage = new Storage(await openDatabase(config.database));
  try {
    const services = buildServices(config, log, storage, loadOrCreateSigningKey(config.signingKeyPath, log));
    let localpart = opts.user;
    if (localpart.startsWith("@")) {
      const [lp, domain] = [localpart.slice(1, localpart.indexOf(":")), localpart.slice(localpart.indexOf(":") + 1)];
      if (domain !== config.serverName) {
        console.error(`${opts.user} is not a user of this server (${config.serverName})`);
        return 1;
      }
      localpart = lp;
    }
    const r = await services.accounts.register({ username: localpart, password, admin: opts.admin, inhibitLogin: true, skipPolicy: true });
    console.log(`Created ${opts.admin ? "admin " : ""}user ${r.userId}`);
    return 0;
  } catch (e) {
    if (e instanceof MatrixError) {
      console.error(`Could not create the user: ${e.message} (${e.errcode})`);
      return 1;
    }
    throw e;
  } finally {
    await storage.close();
  }
}
