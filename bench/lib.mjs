// Benchmark helpers: start a real Myelin process with its own data dir, a keep-alive HTTP client, statistics.
// Load comes from this process; the server runs in its own (so each gets a core on a 2-core machine).
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";

// BENCH_ROOT runs another checkout's server (built) under the same load, for before/after figures.
const ROOT = process.env.BENCH_ROOT ?? fileURLToPath(new URL("..", import.meta.url));
const OPEN = { per_second: 1_000_000, burst_count: 1_000_000 };

/**
 * Starts Myelin. With `tlsPort`, it also gets a `tls: true` listener (federation and keys, a self-signed certificate
 * made with openssl in the data dir) and is named by that address (`127.0.0.1:<tlsPort>`), so other servers reach it
 * without any name resolution; outbound federation then accepts self-signed certificates and loopback addresses.
 * `config` is merged over the generated configuration.
 */
export async function startServer({ db = "sqlite", port = 18008, tlsPort, config: extraConfig = {} } = {}) {
  const dir = mkdtempSync(join(tmpdir(), "myelin-bench-"));
  let database = { name: "sqlite3", args: { database: join(dir, "homeserver.db") } };
  let dbName;
  const pgUrl = process.env.MYELIN_TEST_POSTGRES ?? "postgres://postgres@127.0.0.1:5432/postgres";
  if (db === "postgres") {
    dbName = `myelin_bench_${Date.now()}`;
    const c = new pg.Client({ connectionString: pgUrl });
    await c.connect();
    await c.query(`CREATE DATABASE ${dbName}`);
    await c.end();
    const u = new URL(pgUrl);
    database = { name: "psycopg2", args: { user: u.username || "postgres", host: u.hostname, port: Number(u.port || 5432), database: dbName, cp_min: 5, cp_max: 10 } };
  }
  const config = {
    server_name: "bench.local",
    public_baseurl: `http://127.0.0.1:${port}/`,
    listeners: [{ port, bind_addresses: ["127.0.0.1"], type: "http", resources: [{ names: ["client"] }] }],
    database,
    signing_key_path: join(dir, "signing.key"),
    media_store_path: join(dir, "media"),
    enable_registration: true,
    enable_registration_without_verification: true,
    password_hashing: { memory_kib: 1024, iterations: 1 },
    rc_message: OPEN,
    rc_registration: OPEN,
    rc_login: { address: OPEN, account: OPEN, failed_attempts: OPEN },
    rc_joins: { local: OPEN, remote: OPEN },
    rc_invites: { per_room: OPEN, per_user: OPEN },
    rc_room_creation: OPEN,
    log_level: "warn",
  };
  if (tlsPort !== undefined) {
    const { certPath, keyPath } = selfSignedCertificate(dir, "127.0.0.1");
    Object.assign(config, {
      server_name: `127.0.0.1:${tlsPort}`,
      tls_certificate_path: certPath,
      tls_private_key_path: keyPath,
      federation_verify_certificates: false,
      ip_range_whitelist: ["127.0.0.1/8"],
      trusted_key_servers: [],
    });
    config.listeners.push({ port: tlsPort, bind_addresses: ["127.0.0.1"], type: "http", tls: true, resources: [{ names: ["federation", "keys"] }] });
  }
  // BENCH_CONFIG: JSON merged over the config (e.g. '{"caches":{"global_factor":0.5}}'), to compare settings.
  Object.assign(config, extraConfig, process.env.BENCH_CONFIG ? JSON.parse(process.env.BENCH_CONFIG) : {});
  writeFileSync(join(dir, "homeserver.yaml"), JSON.stringify(config, null, 2)); // JSON is YAML
  // The same V8 flags as `npm start` and the `myelin` command (see bin/myelin.js), plus any given for profiling.
  const nodeArgs = ["--max-semi-space-size=4", "--v8-pool-size=1", ...(process.env.BENCH_NODE_ARGS ?? "").split(" ").filter(Boolean)];
  const proc = spawn(process.execPath, [...nodeArgs, join(ROOT, "bin/myelin.js"), "start", "--config", join(dir, "homeserver.yaml")], { stdio: ["ignore", process.env.BENCH_SERVER_LOG ? "inherit" : "ignore", "inherit"] });
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      const r = await request(base, "GET", "/health");
      if (r.status === 200) break;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) throw new Error("server did not start");
    await new Promise((r) => setTimeout(r, 100));
  }
  let exited = false;
  proc.once("exit", () => (exited = true));
  return {
    base,
    pid: proc.pid,
    /** Where the server keeps its data (the SQLite file is homeserver.db), and its PostgreSQL database, if any. */
    dataDir: dir,
    dbName,
    serverName: config.server_name,
    tlsPort,
    /** The server's database, as dist/storage/database.js openDatabase takes it (to bulk-load data directly). */
    storageConfig:
      db === "postgres"
        ? { engine: "postgres", host: database.args.host, port: database.args.port, user: database.args.user, password: new URL(pgUrl).password || undefined, database: dbName, cpMin: 1, cpMax: 2 }
        : { engine: "sqlite", path: database.args.database },
    /** Whether the process is still running (a crash shows here). */
    alive: () => !exited,
    /** PostgreSQL only: refresh planner statistics, as autovacuum would within a minute of a bulk load. */
    async analyze() {
      if (!dbName) return;
      const c = new pg.Client({ connectionString: pgUrl.replace(/\/[^/]*$/, `/${dbName}`) });
      await c.connect();
      await c.query("ANALYZE");
      await c.end();
    },
    rssMb: () => rssOf(proc.pid),
    /** The process's peak RSS since it started (VmHWM), in MB. */
    rssPeakMb: () => rssOf(proc.pid, "VmHWM"),
    cpuMs: () => cpuOf(proc.pid),
    threadCpu: () => threadCpuOf(proc.pid),
    async stop() {
      if (!exited) {
        proc.kill("SIGTERM");
        await new Promise((r) => proc.once("exit", r));
      }
      if (dbName) {
        const c = new pg.Client({ connectionString: pgUrl });
        await c.connect();
        await c.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
        await c.end();
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

import { readFileSync, readdirSync } from "node:fs";
/** User + system CPU time of a process so far, in ms (from /proc, clock ticks of 10 ms). */
function cpuOf(pid) {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return (Number(f[11]) + Number(f[12])) * 10;
}

/** CPU ms per thread name (main thread, worker threads, libuv pool). */
function threadCpuOf(pid) {
  const out = {};
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const st = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
      const name = st.slice(st.indexOf("(") + 1, st.lastIndexOf(")"));
      const f = st.split(") ")[1].split(" ");
      out[`${name}#${tid}`] = (Number(f[11]) + Number(f[12])) * 10;
    } catch {
      // thread ended
    }
  }
  return out;
}

function rssOf(pid, field = "VmRSS") {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(status);
  return m ? Number(m[1]) / 1024 : NaN;
}

/**
 * A self-signed certificate for `host` (an IP address) in `dir`, made with openssl (node:crypto cannot create X.509
 * certificates); a P-256 key, quick to generate. Returns the file paths and their contents.
 */
export function selfSignedCertificate(dir, host) {
  const certPath = join(dir, "tls.crt");
  const keyPath = join(dir, "tls.key");
  execFileSync(
    "openssl",
    ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", `/CN=${host}`, "-addext", `subjectAltName=IP:${host}`, "-keyout", keyPath, "-out", certPath],
    { stdio: "ignore" },
  );
  return { certPath, keyPath, cert: readFileSync(certPath), key: readFileSync(keyPath) };
}

/** A TCP port on 127.0.0.1 that was free a moment ago (for servers whose port must be known before they start). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

const defaultAgent = new http.Agent({ keepAlive: true, maxSockets: 256 });

/** A keep-alive agent of its own, e.g. for hundreds of idle long-polls that must not hold the default's sockets. */
export function newAgent(maxSockets) {
  return new http.Agent({ keepAlive: true, maxSockets });
}

export function request(base, method, path, { token, body, agent = defaultAgent } = {}) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const headers = {};
    if (token) headers.authorization = `Bearer ${token}`;
    if (data) {
      headers["content-type"] = "application/json";
      headers["content-length"] = data.length;
    }
    const req = http.request(base + path, { method, headers, agent }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        let json;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode, body: json, text });
      });
    });
    req.on("error", reject);
    if (data) req.write(data);
    req.end();
  });
}

export async function must(p) {
  const r = await p;
  if (r.status !== 200) throw new Error(`HTTP ${r.status}: ${r.text}`);
  return r.body;
}

let userCounter = 0;
export async function register(base, name = `u${++userCounter}_${Date.now().toString(36)}`) {
  const first = await request(base, "POST", "/_matrix/client/v3/register", { body: { username: name, password: "pw" } });
  const b = await must(request(base, "POST", "/_matrix/client/v3/register", { body: { username: name, password: "pw", auth: { type: "m.login.dummy", session: first.body.session } } }));
  return { userId: b.user_id, token: b.access_token };
}

export function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

export const enc = encodeURIComponent;
