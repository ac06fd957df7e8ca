/**
 * The `myelin` command, called in-process through `main(argv)` (no build needed): help, generate-config,
 * register-user against a generated config, and start/stop of a server made from that config.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { connect, createServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { parse as parseYaml } from "yaml";
import { main } from "../../src/cli/main.js";
import { generateConfig } from "../../src/config/generate.js";
import { loadConfigFile } from "../../src/config/load.js";
import { parseSigningKeyFile } from "../../src/core/crypto/ed25519.js";
import { startServer, type RunningServer } from "../../src/server.js";
import { Client, login, registerUser, uniqueName } from "../helpers/http.js";
import { createTestDatabase, TEST_ENGINE, type TestDatabase } from "../helpers/server.js";

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the CLI in-process, capturing what it prints (commander writes help to process.stdout directly). */
async function run(...argv: string[]): Promise<Run> {
  let stdout = "";
  let stderr = "";
  const log = vi.spyOn(console, "log").mockImplementation((...a: unknown[]) => void (stdout += `${a.join(" ")}\n`));
  const err = vi.spyOn(console, "error").mockImplementation((...a: unknown[]) => void (stderr += `${a.join(" ")}\n`));
  const out = vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
    stdout += chunk.toString();
    return true;
  });
  const errw = vi.spyOn(process.stderr, "write").mockImplementation((chunk: string | Uint8Array) => {
    stderr += chunk.toString();
    return true;
  });
  try {
    const code = await main(argv);
    return { code, stdout, stderr };
  } finally {
    log.mockRestore();
    err.mockRestore();
    out.mockRestore();
    errw.mockRestore();
  }
}

let dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "myelin-cli-"));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  dirs = [];
});

describe("myelin --help", () => {
  it("lists every command", async () => {
    const r = await run("--help");
    expect(r.code).toBe(0);
    for (const cmd of ["start", "generate-config", "register-user"]) expect(r.stdout).toContain(cmd);
  });

  it("each command's --help describes its options", async () => {
    const expected: Record<string, string[]> = {
      start: ["--config", "--local", "--data-dir"],
      "generate-config": ["--server-name", "--data-dir", "--port", "--bind", "--database-url"],
      "register-user": ["--config", "--user", "--password", "--admin"],
    };
    for (const [cmd, options] of Object.entries(expected)) {
      const r = await run(cmd, "--help");
      expect(r.code, cmd).toBe(0);
      for (const o of options) expect(r.stdout, `${cmd} ${o}`).toContain(o);
    }
  });

  it("an unknown command or a missing required option is a usage error", async () => {
    expect((await run("frobnicate")).code).not.toBe(0);
    const r = await run("generate-config", "--data-dir", tempDir());
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/--server-name/);
  });
});

describe("myelin generate-config", () => {
  it("writes homeserver.yaml and a signing key", async () => {
    const dir = join(tempDir(), "data");
    const r = await run("generate-config", "--server-name", "example.org", "--data-dir", dir, "--port", "8118", "--bind", "0.0.0.0");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(join(dir, "homeserver.yaml"));
    const { config, warnings } = loadConfigFile(join(dir, "homeserver.yaml"), {});
    expect(warnings).toEqual([]);
    expect(config.serverName).toBe("example.org");
    expect(config.listeners[0]).toMatchObject({ port: 8118, bindAddresses: ["0.0.0.0"] });
    expect(config.database).toEqual({ engine: "sqlite", path: join(dir, "homeserver.db") });
    expect(existsSync(config.signingKeyPath)).toBe(true);
    expect(parseSigningKeyFile(readFileSync(config.signingKeyPath, "utf8"))).toHaveLength(1);
  });

  it("refuses to overwrite existing files", async () => {
    const dir = tempDir();
    expect((await run("generate-config", "--server-name", "example.org", "--data-dir", dir)).code).toBe(0);
    const before = readFileSync(join(dir, "homeserver.yaml"), "utf8");
    const r = await run("generate-config", "--server-name", "example.org", "--data-dir", dir);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/already exists/);
    expect(readFileSync(join(dir, "homeserver.yaml"), "utf8")).toBe(before);
  });

  it("--database-url writes a psycopg2 database section", async () => {
    const dir = tempDir();
    const r = await run("generate-config", "--server-name", "example.org", "--data-dir", dir, "--database-url", "postgres://myelin:secret@db.example:5433/myelin_db");
    expect(r.code).toBe(0);
    const doc = parseYaml(readFileSync(join(dir, "homeserver.yaml"), "utf8")) as { database: { name: string; args: Record<string, unknown> } };
    expect(doc.database.name).toBe("psycopg2");
    expect(doc.database.args).toMatchObject({ user: "myelin", password: "secret", host: "db.example", port: 5433, database: "myelin_db" });
  });

  it("refuses a bad port or server name", async () => {
    expect((await run("generate-config", "--server-name", "example.org", "--data-dir", tempDir(), "--port", "99999")).code).not.toBe(0);
    const r = await run("generate-config", "--server-name", "bad name", "--data-dir", tempDir());
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/server name/);
  });
});

/** A port nothing listens on right now. */
async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, "127.0.0.1", () => resolve()));
  const port = (srv.address() as AddressInfo).port;
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

/** Polls GET /health until it answers OK, or throws at the deadline. */
async function waitForHealth(baseUrl: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const res = await fetch(`${baseUrl}/health`);
      if (res.status === 200 && (await res.text()) === "OK") return;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) throw new Error(`${baseUrl} did not become healthy`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("myelin start", () => {
  it("--local creates the local default under --data-dir, serves with open registration, and stops on SIGTERM", async () => {
    const dir = join(tempDir(), "data");
    const port = await freePort();
    // MYELIN_PORT (the container override) moves the local default off 8008, which may be taken on this machine.
    const saved = process.env.MYELIN_PORT;
    process.env.MYELIN_PORT = String(port);
    try {
      const running = run("start", "--local", "--data-dir", dir);
      const baseUrl = `http://127.0.0.1:${port}`;
      await waitForHealth(baseUrl);
      const { config } = loadConfigFile(join(dir, "homeserver.yaml"), {});
      expect(config.serverName).toBe("localhost");
      expect(config.database).toEqual({ engine: "sqlite", path: join(dir, "homeserver.db") });
      const u = await registerUser(new Client(baseUrl));
      expect(u.userId).toMatch(/:localhost$/);

      process.emit("SIGTERM", "SIGTERM");
      const r = await running;
      expect(r.code).toBe(0);
      expect(r.stdout).toContain("local development default");
      await expect(fetch(`${baseUrl}/health`)).rejects.toThrow();

      // A second start reuses the config and the data.
      const again = run("start", "--local", "--data-dir", dir);
      await waitForHealth(baseUrl);
      expect((await login(new Client(baseUrl), u.userId, u.password)).status).toBe(200);
      process.emit("SIGINT", "SIGINT");
      const r2 = await again;
      expect(r2.code).toBe(0);
      expect(r2.stdout).not.toContain("Created");
    } finally {
      if (saved === undefined) delete process.env.MYELIN_PORT;
      else process.env.MYELIN_PORT = saved;
    }
  });

  it("the local default logs a warning that it must not face the internet", async () => {
    // generate-config makes a closed server; the local default is what `start --local` writes.
    const local = join(tempDir(), "local");
    generateConfig({ serverName: "localhost", dataDir: local, localDevelopment: true });
    const { config } = loadConfigFile(join(local, "homeserver.yaml"), {});
    for (const l of config.listeners) l.port = 0;
    const lines: string[] = [];
    const logger = pino({ level: "info" }, { write: (line: string) => void lines.push(line) });
    const server = await startServer(config, { logger });
    await server.close();
    const warnings = lines.map((l) => JSON.parse(l) as { level: number; msg: string }).filter((l) => l.level === 40);
    expect(warnings.some((w) => /open registration without verification/.test(w.msg) && /internet/.test(w.msg))).toBe(true);
  });

  it("without --config (or --local) is a configuration error naming the option", async () => {
    const r = await run("start");
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--config/);
  });

  it("a missing config file is a configuration error", async () => {
    const r = await run("start", "--config", join(tempDir(), "nope.yaml"));
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/cannot read config file/);
  });
});

describe("myelin register-user, and a server started from the generated config", () => {
  let dir: string;
  let configPath: string;
  let db: TestDatabase;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "myelin-cli-db-"));
    db = await createTestDatabase(dir);
    const args = ["generate-config", "--server-name", "cli.test", "--data-dir", dir];
    if (TEST_ENGINE === "postgres") {
      // The fresh PostgreSQL database this run created, as a URL for --database-url.
      const a = (db.yaml as { args: { user: string; password?: string; host: string; port: number; database: string } }).args;
      const auth = a.password ? `${encodeURIComponent(a.user)}:${encodeURIComponent(a.password)}` : encodeURIComponent(a.user);
      args.push("--database-url", `postgres://${auth}@${a.host}:${a.port}/${a.database}`);
    }
    const r = await run(...args);
    expect(r.code).toBe(0);
    configPath = join(dir, "homeserver.yaml");
  });
  afterAll(async () => {
    await db?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Starts the configured server on a free port, quietly. */
  async function start(): Promise<{ server: RunningServer; client: Client }> {
    const { config } = loadConfigFile(configPath, {});
    expect(config.database.engine).toBe(TEST_ENGINE);
    for (const l of config.listeners) l.port = 0;
    const server = await startServer(config, { logger: pino({ level: "silent" }) });
    return { server, client: new Client(`http://127.0.0.1:${server.addresses[0]!.port}`) };
  }

  it("creates users that can log in; --admin makes an admin", async () => {
    const alice = uniqueName("alice");
    const boss = uniqueName("boss");
    const r1 = await run("register-user", "--config", configPath, "--user", alice, "--password", "alice pw");
    expect(r1.code).toBe(0);
    expect(r1.stdout).toContain(`@${alice}:cli.test`);
    const r2 = await run("register-user", "--config", configPath, "--user", `@${boss}:cli.test`, "--password", "boss pw", "--admin");
    expect(r2.code).toBe(0);
    expect(r2.stdout).toMatch(/admin/);

    const { server, client } = await start();
    try {
      const res = await login(client, alice, "alice pw");
      expect(res.status).toBe(200);
      expect(res.body.user_id).toBe(`@${alice}:cli.test`);
      expect((await login(client, boss, "boss pw")).status).toBe(200);
      expect((await server.services.storage.users.get(`@${alice}:cli.test`))?.is_admin).toBe(0);
      expect((await server.services.storage.users.get(`@${boss}:cli.test`))?.is_admin).toBe(1);
    } finally {
      await server.close();
    }
  });

  it("refuses a taken username, another server's user id and an invalid name", async () => {
    const name = uniqueName("dup");
    expect((await run("register-user", "--config", configPath, "--user", name, "--password", "pw")).code).toBe(0);
    const again = await run("register-user", "--config", configPath, "--user", name, "--password", "pw");
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/M_USER_IN_USE/);
    const remote = await run("register-user", "--config", configPath, "--user", "@someone:elsewhere.example", "--password", "pw");
    expect(remote.code).toBe(1);
    expect(remote.stderr).toMatch(/not a user of this server/);
    expect((await run("register-user", "--config", configPath, "--user", "bad name", "--password", "pw")).code).toBe(1);
    expect((await run("register-user", "--config", configPath, "--user", uniqueName(), "--password", "")).code).toBe(1);
  });

  it("start and close: serves, then stops listening; a restart on the same data keeps the users", async () => {
    const name = uniqueName("persist");
    expect((await run("register-user", "--config", configPath, "--user", name, "--password", "pw")).code).toBe(0);
    const first = await start();
    expect((await first.client.get("/health")).text).toBe("OK");
    const token = (await login(first.client, name, "pw")).body.access_token as string;
    await first.server.close();
    await expect(first.client.get("/health")).rejects.toThrow();
    // close() is idempotent.
    await first.server.close();

    const second = await start();
    try {
      expect((await second.client.get("/_matrix/client/v3/account/whoami", { token })).body.user_id).toBe(`@${name}:cli.test`);
    } finally {
      await second.server.close();
    }
  });

  it("close() lets an in-flight request finish before stopping", async () => {
    const name = uniqueName("inflight");
    expect((await run("register-user", "--config", configPath, "--user", name, "--password", "pw")).code).toBe(0);
    const { server } = await start();
    const body = JSON.stringify({ type: "m.login.password", identifier: { type: "m.id.user", user: name }, password: "pw" });
    // Send the headers with `Expect: 100-continue`: the server's "100 Continue" proves the request is being handled.
    const sock = connect(server.addresses[0]!.port, "127.0.0.1");
    let received = "";
    const closed = new Promise<void>((resolve) => sock.on("close", () => resolve()));
    const gotContinue = new Promise<void>((resolve, reject) => {
      sock.on("data", (d: Buffer) => {
        received += d.toString("utf8");
        if (received.includes("100 Continue")) resolve();
      });
      sock.on("error", reject);
    });
    sock.write(
      "POST /_matrix/client/v3/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nConnection: close\r\n" +
        `Expect: 100-continue\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n`,
    );
    await gotContinue;
    // Shut down while the request is in flight, then let the client finish sending it.
    const closing = server.close();
    sock.write(body);
    await closed;
    await closing;
    const status = /^HTTP\/1\.1 (\d{3})/.exec(received.replace(/^HTTP\/1\.1 100 Continue\r\n\r\n/, ""));
    expect(status?.[1]).toBe("200");
    expect(received).toContain(`"user_id":"@${name}:cli.test"`);
  });
});
