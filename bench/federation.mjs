// Federation benchmarks. Usage: npm run bench:federation -- [--scale 1] [--only inbound,join,fanout] [--db sqlite|postgres]
//   [--room-version 12] [--origins 4] [--fanout-concurrency 10] [--timeout <minutes>] [--sync-gap <ms>]
//   [--set inboundMembers=1000,inboundPdus=10000,joinMembers=10000,joinChain=50000,joinServers=10,fanoutDestinations=100,fanoutMessages=200]
//
// Myelin runs as its own process (bench/lib.mjs) with a TLS federation listener and the server name
// 127.0.0.1:<port>; the other servers are fakes in this process: small node:https servers named 127.0.0.1:<port>
// that publish signed keys, sign their requests with X-Matrix, answer /send, make_join and send_join, and build and
// sign their events with Myelin's own compiled core (dist/core). No name is ever resolved and nothing leaves
// 127.0.0.1. Each benchmark gets a fresh Myelin process, so its peak RSS is its own.
//
//   inbound  PDUs/s accepted into a room of 1,000 members, in /send transactions of 50 PDUs: one origin with one
//            transaction in flight (as a real sender), then several origins in parallel; each twice: timed until the
//            last PDU of every sender can be read with GET /rooms/{roomId}/event/{eventId} (no client syncing), and
//            until a local user's long-polling /sync has shown it (a client syncing).
//   join     a local user joins a remote room of 10,000 members whose send_join answer carries a 50,000-event auth
//            chain: time to the /join 200, time to the first /sync that shows the room, Myelin's peak RSS.
//   fanout   a local user sends 200 messages into a room with a user on each of 100 fake servers: time until every
//            server has received every message.
//   e2ee     1,000 remote users (100 on each of 10 fake servers, one device each) share a room with a local user:
//            /keys/query for all of them, first asked over federation, then answered from the device-list cache;
//            and to-device fan-out of one olm-sized message to each of the 1,000 remote devices (sharing a megolm
//            session), timed until every fake server has every message.
//   media    a local user downloads another server's media through the authenticated client API: the first fetch
//            (over federation, multipart/mixed), 20 clients asking at once for a file not yet cached (one fetch),
//            then the time to first byte and to the last byte of the cached copy.
//
// --scale multiplies member counts, chain length and message counts (--scale 0.05 is a quick check).
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import https from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { enc, freePort, must, percentile, register, request, selfSignedCertificate, startServer } from "./lib.mjs";

const DIST = fileURLToPath(new URL("../dist/core/", import.meta.url));
if (!existsSync(join(DIST, "events/signing.js"))) {
  console.error("dist/ is missing: run `npm run build` first (npm run bench:federation does).");
  process.exit(2);
}
// Myelin's own event code: canonical JSON, hashes, signatures, event ids, auth event selection.
const { generateSigningKey } = await import("../dist/core/crypto/ed25519.js");
const { signJson } = await import("../dist/core/crypto/signing.js");
const { signRequest } = await import("../dist/core/federation/xmatrix.js");
const { authEventTypesFor } = await import("../dist/core/events/auth_events.js");
const { stateMapKey } = await import("../dist/core/events/event.js");
const { eventIdOf, roomIdForCreateEvent } = await import("../dist/core/events/ids.js");
const { signNewEvent } = await import("../dist/core/events/signing.js");
const { getRoomVersion } = await import("../dist/core/rooms/versions.js");

// --- Options -------------------------------------------------------------------------------------------------------

const args = process.argv.slice(2);
const arg = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : def;
};
const scale = Number(arg("scale", "1"));
if (!(scale > 0 && scale <= 10)) fatal("--scale must be a number in (0, 10]");
const db = arg("db", "sqlite");
const only = new Set(arg("only", "inbound,join,fanout,e2ee,media").split(","));
const roomVersionId = arg("room-version", "12");
const ROOM_VERSION = getRoomVersion(roomVersionId);
if (!ROOM_VERSION || ROOM_VERSION.eventIdFormat === "v1") fatal(`--room-version ${roomVersionId}: use a room version of 3 or later (10 or 12)`);
const nOrigins = Math.max(1, Number(arg("origins", "4")));
const fanoutConcurrency = Math.max(1, Number(arg("fanout-concurrency", "10")));
/** A pause between a /sync answer and the next request (0: long-poll again at once, as clients do). */
const syncGapMs = Number(arg("sync-gap", "0"));
const S = (n, min) => Math.max(min, Math.round(n * scale));

const SIZES = {
  inboundMembers: S(1000, 20),
  inboundPdus: S(10_000, 200),
  joinMembers: S(10_000, 20),
  joinChain: S(50_000, 100),
  joinServers: Math.min(10, S(10_000, 20)),
  fanoutDestinations: S(100, 3),
  fanoutMessages: S(200, 10),
  e2eeServers: Math.min(10, S(10, 2)),
  e2eeUsersPerServer: S(100, 5),
};
// --set name=value,… overrides single sizes, e.g. --set inboundMembers=1000,inboundPdus=400.
for (const kv of (arg("set", "") || "").split(",").filter(Boolean)) {
  const [k, val] = kv.split("=");
  if (!(k in SIZES) || !(Number(val) > 0)) fatal(`--set ${kv}: the sizes are ${Object.keys(SIZES).join(", ")}`);
  SIZES[k] = Math.round(Number(val));
}
const TXN_PDUS = 50;
/** The whole run is killed after this long (default: 10 minutes plus 30 per unit of scale). */
const HARD_LIMIT_MS = Number(arg("timeout", String(10 + 30 * scale))) * 60_000;

// --- Bookkeeping ---------------------------------------------------------------------------------------------------

const results = [];
const report = (bench, name, value, unit, note = "") => {
  results.push({ bench, name, value, unit, note });
  console.log(`  ${name}: ${fmt(value)} ${unit} ${note}`);
};
const fmt = (v) => (typeof v === "number" ? (v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : Math.round(v).toLocaleString("en-US")) : v);
const log = (msg) => console.log(`[${((performance.now() - T_START) / 1000).toFixed(1)}s] ${msg}`);
const T_START = performance.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const running = { myelin: new Set(), fakes: new Set() };

function fatal(msg) {
  console.error(`federation bench: ${msg}`);
  process.exit(2);
}

/** Rejects with a clear message when `p` takes longer than `ms`. */
function withTimeout(p, ms, what) {
  let timer;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${(ms / 1000).toFixed(0)} s: ${what}`)), ms);
    }),
  ]);
}

async function stopAll() {
  for (const f of running.fakes) f.close();
  running.fakes.clear();
  await Promise.all([...running.myelin].map((s) => s.stop().catch(() => {})));
  running.myelin.clear();
}

const watchdog = setTimeout(async () => {
  console.error(`federation bench: hard time limit of ${HARD_LIMIT_MS / 60_000} minutes reached; stopping`);
  await Promise.race([stopAll(), sleep(5000)]);
  process.exit(3);
}, HARD_LIMIT_MS);

async function startMyelin() {
  const server = await startServer({ db, port: await freePort(), tlsPort: await freePort() });
  running.myelin.add(server);
  return server;
}

async function stopMyelin(server) {
  running.myelin.delete(server);
  if (!server.alive()) throw new Error("the Myelin process exited during the benchmark (see its stderr above)");
  await server.stop();
}

// --- Fake remote servers -------------------------------------------------------------------------------------------

let sharedTls;
function fakeTls() {
  if (!sharedTls) {
    const dir = mkdtempSync(join(tmpdir(), "myelin-fedbench-"));
    sharedTls = selfSignedCertificate(dir, "127.0.0.1");
    rmSync(dir, { recursive: true, force: true });
  }
  return sharedTls;
}

/**
 * A remote homeserver as far as Myelin can tell: `127.0.0.1:<port>` over HTTPS with a self-signed certificate, its
 * own ed25519 key published at /_matrix/key/v2/server, X-Matrix signed requests. Inbound requests are not
 * authenticated (only Myelin talks to it). `hooks.onTransaction(body)` sees each /send from Myelin; `hooks.route`
 * may answer other requests; anything unanswered is 404 M_UNRECOGNIZED and counted in `unhandled`.
 */
class FakeServer {
  static async start(hooks = {}) {
    const f = new FakeServer();
    f.hooks = hooks;
    f.key = generateSigningKey();
    f.unhandled = new Map();
    f.txnsReceived = 0;
    f.pdusReceived = 0;
    const tls = fakeTls();
    f.http = https.createServer({ cert: tls.cert, key: tls.key, keepAliveTimeout: 120_000 }, (req, res) => f.handle(req, res));
    await new Promise((resolve, reject) => {
      f.http.once("error", reject);
      f.http.listen(0, "127.0.0.1", resolve);
    });
    f.port = f.http.address().port;
    f.name = `127.0.0.1:${f.port}`;
    const keys = { server_name: f.name, valid_until_ts: Date.now() + 24 * 3600_000, verify_keys: { [f.key.keyId]: { key: f.key.publicKeyBase64 } }, old_verify_keys: {} };
    f.keysJson = JSON.stringify(signJson(keys, f.name, f.key));
    f.agent = new https.Agent({ keepAlive: true, maxSockets: 4, rejectUnauthorized: false });
    running.fakes.add(f);
    return f;
  }

  close() {
    this.agent.destroy();
    this.http.closeAllConnections();
    this.http.close();
    running.fakes.delete(this);
  }

  handle(req, res) {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", async () => {
      const send = (status, body) => {
        const data = typeof body === "string" ? body : JSON.stringify(body);
        res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(data) });
        res.end(data);
      };
      try {
        const url = new URL(req.url, "https://x");
        const path = url.pathname;
        const raw = Buffer.concat(chunks).toString("utf8");
        const body = raw ? JSON.parse(raw) : undefined;
        if (req.method === "GET" && path === "/_matrix/key/v2/server") return send(200, this.keysJson);
        if (req.method === "GET" && path === "/_matrix/federation/v1/version") return send(200, { server: { name: "myelin-bench-fake", version: "0" } });
        if (req.method === "PUT" && path.startsWith("/_matrix/federation/v1/send/")) {
          this.txnsReceived++;
          this.pdusReceived += body?.pdus?.length ?? 0;
          this.hooks.onTransaction?.(body);
          return send(200, { pdus: {} });
        }
        const answer = await this.hooks.route?.(req.method, path, url.searchParams, body, raw);
        if (answer?.raw) {
          res.writeHead(answer.status ?? 200, { ...answer.raw.headers, "content-length": answer.raw.body.length });
          return res.end(answer.raw.body);
        }
        if (answer) return send(answer.status ?? 200, answer.body);
        const k = `${req.method} ${path.replace(/\/(?:[!$@]|%21|%24|%40)[^/]*/g, "/…")}`;
        this.unhandled.set(k, (this.unhandled.get(k) ?? 0) + 1);
        return send(404, { errcode: "M_UNRECOGNIZED", error: "not served by the benchmark's fake server" });
      } catch (e) {
        console.error(`fake server ${this.name}: ${req.method} ${req.url}: ${e.stack}`);
        send(500, { errcode: "M_UNKNOWN", error: String(e) });
      }
    });
  }

  /** A signed federation request to `destination` (always 127.0.0.1:<port>); resolves to the parsed JSON answer. */
  request(destination, method, uri, body, timeoutMs = 120_000) {
    const m = /^127\.0\.0\.1:(\d+)$/.exec(destination);
    if (!m) throw new Error(`refusing to contact ${destination}: only 127.0.0.1 is used`);
    const authorization = signRequest({ method, uri, origin: this.name, destination, ...(body !== undefined ? { content: body } : {}) }, this.key);
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const headers = { authorization, host: destination, accept: "application/json" };
    if (data) Object.assign(headers, { "content-type": "application/json", "content-length": data.length });
    return new Promise((resolve, reject) => {
      const req = https.request({ host: "127.0.0.1", port: Number(m[1]), method, path: uri, headers, agent: this.agent, timeout: timeoutMs }, (res) => {
        const chunks = [];
        res.on("data", (c) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          if (res.statusCode !== 200) return reject(new Error(`${method} ${uri} from ${this.name}: HTTP ${res.statusCode}: ${text.slice(0, 500)}`));
          try {
            resolve(JSON.parse(text));
          } catch {
            reject(new Error(`${method} ${uri}: not JSON: ${text.slice(0, 200)}`));
          }
        });
      });
      req.on("timeout", () => req.destroy(new Error(`${method} ${uri} from ${this.name}: no answer within ${timeoutMs / 1000} s`)));
      req.on("error", reject);
      req.end(data);
    });
  }
}

// --- A room as the fake servers see it ----------------------------------------------------------------------------

/** The events of one room (shared by the fake servers, which is as if they had exchanged them) and its state. */
class RoomView {
  constructor(version, roomId) {
    this.version = version;
    this.roomId = roomId;
    this.events = new Map();
    this.state = new Map();
    this.head = undefined;
    this.headDepth = 0;
  }

  /** Records an event: `state` puts it in the current state, `timeline` may make it the head. */
  add(pdu, { id = eventIdOf(this.version, pdu), state = typeof pdu.state_key === "string", timeline = true } = {}) {
    this.events.set(id, pdu);
    if (state && typeof pdu.state_key === "string") this.state.set(stateMapKey(pdu.type, pdu.state_key), id);
    if (timeline && pdu.depth >= this.headDepth) {
      this.head = id;
      this.headDepth = pdu.depth;
    }
    return id;
  }

  authEventsFor(ev) {
    return authEventTypesFor(this.version, ev)
      .map(([t, k]) => this.state.get(stateMapKey(t, k)))
      .filter((x) => x !== undefined);
  }

  /** A new event by `server`, hashed and signed with Myelin's core; prev_events default to the head. */
  build(server, { type, stateKey, sender, content }, { prev = this.head ? [this.head] : [], depth = this.headDepth + 1, ts = Date.now() } = {}) {
    const ev = { type, sender, content, ...(stateKey !== undefined ? { state_key: stateKey } : {}) };
    const pdu = { ...ev, auth_events: this.authEventsFor(ev), prev_events: prev, depth, origin_server_ts: ts };
    if (!(this.version.roomIdIsCreateEventHash && type === "m.room.create")) pdu.room_id = this.roomId;
    const signed = signNewEvent(this.version, pdu, server.name, server.key);
    return { pdu: signed.pdu, id: signed.eventId };
  }

  /** The auth chain of some events (their auth events, recursively). */
  authChain(ids) {
    const seen = new Set();
    const todo = [...ids];
    while (todo.length) {
      for (const a of this.events.get(todo.pop())?.auth_events ?? []) {
        if (!seen.has(a)) {
          seen.add(a);
          todo.push(a);
        }
      }
    }
    return seen;
  }
}

/** A user of `fake` joins a Myelin room the federation way: make_join, sign the template, send_join (v2). */
async function federationJoin(fake, myelin, roomId, userId, view) {
  const made = await fake.request(myelin.serverName, "GET", `/_matrix/federation/v1/make_join/${enc(roomId)}/${enc(userId)}?ver=${enc(ROOM_VERSION.id)}`);
  const version = getRoomVersion(made.room_version);
  if (!version) throw new Error(`make_join answered room version ${made.room_version}`);
  const { signatures: _s, hashes: _h, unsigned: _u, ...template } = made.event;
  const pdu = { ...template, content: { ...template.content, membership: "join", displayname: userId.slice(1, userId.indexOf(":")) } };
  const signed = signNewEvent(version, pdu, fake.name, fake.key);
  const res = await fake.request(myelin.serverName, "PUT", `/_matrix/federation/v2/send_join/${enc(roomId)}/${enc(signed.eventId)}`, signed.pdu, 300_000);
  view ??= new RoomView(version, roomId);
  for (const p of res.auth_chain ?? []) view.add(p, { state: false, timeline: false });
  for (const p of res.state ?? []) view.add(p, { timeline: false });
  view.add(res.event ?? signed.pdu, { id: signed.eventId });
  return { view, eventId: signed.eventId, res };
}

/** Sends PDUs as transactions of 50, one in flight; returns per-transaction latencies. Throws on any PDU error. */
async function sendTransactions(fake, myelin, txns, label) {
  const latencies = [];
  for (let i = 0; i < txns.length; i++) {
    const t = performance.now();
    const r = await fake.request(myelin.serverName, "PUT", `/_matrix/federation/v1/send/${label}_${Date.now()}_${i}`, { origin: fake.name, origin_server_ts: Date.now(), pdus: txns[i], edus: [] });
    latencies.push(performance.now() - t);
    const errors = Object.entries(r.pdus ?? {}).filter(([, v]) => v.error !== undefined);
    if (errors.length) throw new Error(`Myelin refused ${errors.length} PDUs of transaction ${label}/${i}, e.g. ${errors[0][0]}: ${errors[0][1].error}`);
  }
  return latencies;
}

const chunk = (list, n) => Array.from({ length: Math.ceil(list.length / n) }, (_, i) => list.slice(i * n, (i + 1) * n));

/**
 * Follows a local user's /sync (as a client does: long-polls with a lazy-loading filter and a large timeline limit)
 * and calls onEvent for each timeline event of the room; resolves when done() is true.
 */
function followSync(myelin, user, since, roomId, onEvent, done, what, timeoutMs) {
  const filter = JSON.stringify({ room: { rooms: [roomId], timeline: { limit: 1000 }, state: { lazy_load_members: true } }, presence: { types: [] }, account_data: { types: [] } });
  const stats = { syncs: 0, limited: 0 };
  let stop = false;
  const loop = (async () => {
    while (!stop && !done()) {
      const s = await must(request(myelin.base, "GET", `/_matrix/client/v3/sync?timeout=10000&since=${enc(since)}&filter=${enc(filter)}`, { token: user.token }));
      stats.syncs++;
      since = s.next_batch;
      const room = s.rooms?.join?.[roomId];
      if (room?.timeline?.limited) stats.limited++;
      for (const ev of room?.timeline?.events ?? []) onEvent(ev, room);
      if (room) onEvent(undefined, room);
      if (syncGapMs > 0 && !done()) await sleep(syncGapMs);
    }
    return stats;
  })();
  return withTimeout(loop, timeoutMs, what).finally(() => (stop = true));
}

async function initialSince(myelin, user) {
  return (await must(request(myelin.base, "GET", `/_matrix/client/v3/sync?timeout=0&filter=${enc(JSON.stringify({ room: { timeline: { limit: 1 }, state: { lazy_load_members: true } } }))}`, { token: user.token }))).next_batch;
}

async function joinedMembers(myelin, user, roomId) {
  return Object.keys((await must(request(myelin.base, "GET", `/_matrix/client/v3/rooms/${enc(roomId)}/joined_members`, { token: user.token }))).joined).length;
}

function unhandledSummary(fakes) {
  const all = new Map();
  for (const f of fakes) for (const [k, v] of f.unhandled) all.set(k, (all.get(k) ?? 0) + v);
  return [...all].map(([k, v]) => `${k} ×${v}`).join(", ");
}

// --- 1. Inbound transactions ---------------------------------------------------------------------------------------

async function benchInbound() {
  const B = "inbound";
  const members = SIZES.inboundMembers;
  const nLocal = Math.max(1, Math.round(members / 100));
  const perOrigin = Math.floor((members - nLocal) / nOrigins);
  const totalPdus = Math.ceil(SIZES.inboundPdus / (TXN_PDUS * nOrigins)) * TXN_PDUS * nOrigins;
  console.log(`\n## inbound: room of ${nLocal + perOrigin * nOrigins} members (${nLocal} local, ${perOrigin} on each of ${nOrigins} fake servers), ${totalPdus} PDUs per run`);
  const myelin = await startMyelin();
  let view;
  const fakes = [];
  try {
    for (let i = 0; i < nOrigins; i++) fakes.push(await FakeServer.start({ onTransaction: (body) => view && body.pdus?.forEach((p) => view.add(p)) }));
    const creator = await register(myelin.base);
    const roomId = (await must(request(myelin.base, "POST", "/_matrix/client/v3/createRoom", { token: creator.token, body: { preset: "public_chat", room_version: ROOM_VERSION.id } }))).room_id;
    for (let i = 1; i < nLocal; i++) {
      const u = await register(myelin.base);
      await must(request(myelin.base, "POST", `/_matrix/client/v3/rooms/${enc(roomId)}/join`, { token: u.token, body: {} }));
    }
    // The first user of each server joins with make_join/send_join; the others as a server already in the room does,
    // with their join events in /send transactions.
    const users = fakes.map((f) => Array.from({ length: perOrigin }, (_, i) => `@in${i}:${f.name}`));
    let t = performance.now();
    for (const [k, f] of fakes.entries()) view = (await withTimeout(federationJoin(f, myelin, roomId, users[k][0], view), 120_000, `send_join of ${users[k][0]}`)).view;
    const sendJoinMs = (performance.now() - t) / fakes.length;
    await sleep(300); // Myelin relays each send_join to the servers already in the room
    t = performance.now();
    let joins = 0;
    for (const [k, f] of fakes.entries()) {
      const pdus = users[k].slice(1).map((u) => {
        const { pdu, id } = view.build(f, { type: "m.room.member", stateKey: u, sender: u, content: { membership: "join", displayname: u.slice(1, u.indexOf(":")) } });
        view.add(pdu, { id });
        return pdu;
      });
      joins += pdus.length;
      await withTimeout(sendTransactions(f, myelin, chunk(pdus, TXN_PDUS), `joins${k}`), 300_000, "joins in /send transactions");
    }
    const joinSecs = (performance.now() - t) / 1000;
    const count = await joinedMembers(myelin, creator, roomId);
    if (count !== nLocal + perOrigin * nOrigins) throw new Error(`the room has ${count} joined members, expected ${nLocal + perOrigin * nOrigins}`);
    log(`room ready: ${count} members (send_join ${sendJoinMs.toFixed(0)} ms each; ${joins} joins in /send at ${(joins / joinSecs).toFixed(0)} PDUs/s)`);

    // Runs: every PDU is built and signed before the clock starts (the load generator shares the 2 cores).
    const run = async (label, nSenders, watchSync) => {
      const perSender = totalPdus / nSenders;
      const start = { id: view.head, depth: view.headDepth };
      const chains = fakes.slice(0, nSenders).map((f, k) => {
        let prev = start.id;
        let depth = start.depth;
        const ts = Date.now();
        const pdus = [];
        for (let i = 0; i < perSender; i++) {
          const sender = users[k][i % Math.min(20, users[k].length)];
          const { pdu, id } = view.build(f, { type: "m.room.message", sender, content: { msgtype: "m.text", body: `${label} ${k} ${i}` } }, { prev: [prev], depth: ++depth, ts: ts + i });
          pdus.push(pdu);
          prev = id;
        }
        return { fake: f, txns: chunk(pdus, TXN_PDUS), lastBody: `${label} ${k} ${perSender - 1}`, last: { id: prev, depth } };
      });
      const lastSeen = new Map();
      let seen = 0;
      const wanted = new Set(chains.map((c) => c.lastBody));
      const since = watchSync ? await initialSince(myelin, creator) : undefined;
      const t0 = performance.now();
      const cpu0 = myelin.cpuMs();
      const sync = watchSync
        ? followSync(
            myelin,
            creator,
            since,
            roomId,
            (ev) => {
              const b = ev?.content?.body;
              if (typeof b !== "string" || !b.startsWith(`${label} `)) return;
              seen++;
              if (wanted.has(b) && !lastSeen.has(b)) lastSeen.set(b, performance.now());
            },
            () => lastSeen.size === wanted.size,
            `${label}: the last PDUs to show in /sync`,
            600_000 * Math.max(1, scale),
          )
        : undefined;
      const latencies = (await withTimeout(Promise.all(chains.map((c, k) => sendTransactions(c.fake, myelin, c.txns, `${label}${k}`))), 900_000 * Math.max(1, scale), `${label}: transactions`)).flat();
      const tAcked = performance.now();
      const stats = watchSync ? await sync : undefined;
      if (!watchSync) {
        // No client is syncing: the last PDU of each sender must be readable with GET /rooms/{roomId}/event/{eventId}.
        for (const c of chains) {
          const deadline = Date.now() + 60_000;
          for (;;) {
            const r = await request(myelin.base, "GET", `/_matrix/client/v3/rooms/${enc(roomId)}/event/${enc(c.last.id)}`, { token: creator.token });
            if (r.status === 200) break;
            if (Date.now() > deadline) throw new Error(`${label}: ${c.last.id} was acknowledged but is not visible after 60 s: HTTP ${r.status} ${r.text.slice(0, 200)}`);
            await sleep(5);
          }
        }
      }
      const tVisible = watchSync ? Math.max(...lastSeen.values()) : performance.now();
      const cpu = myelin.cpuMs() - cpu0;
      // Continue the room from the newest chain, so the next run builds on known events.
      const newest = chains[chains.length - 1].last;
      view.head = newest.id;
      view.headDepth = newest.depth;
      latencies.sort((a, b) => a - b);
      const name = `${nSenders === 1 ? "1 origin" : `${nSenders} origins in parallel`}, ${watchSync ? "a client syncing" : "no client syncing"}`;
      report(
        B,
        `${name}: PDUs/s until visible`,
        totalPdus / ((tVisible - t0) / 1000),
        "PDUs/s",
        `(200s at ${(totalPdus / ((tAcked - t0) / 1000)).toFixed(0)} PDUs/s; transaction of 50 p50 / p99 ${percentile(latencies, 50).toFixed(0)} / ${percentile(latencies, 99).toFixed(0)} ms; server CPU ${(cpu / totalPdus).toFixed(2)} ms/PDU${stats ? `; ${stats.syncs} /sync answers, ${seen} PDUs in them, ${stats.limited} limited` : ""})`,
      );
      return chains;
    };
    const runs = [["seq", 1, false], ["seqsync", 1, true], ...(nOrigins > 1 ? [["par", nOrigins, false], ["parsync", nOrigins, true]] : [])];
    for (const [label, n, watch] of runs) await run(label, n, watch);
    // Everything arrived: count the messages in the room's history.
    let found = 0;
    let from;
    const filter = enc(JSON.stringify({ types: ["m.room.message"] }));
    for (let page = 0; page < 1000; page++) {
      const r = await must(request(myelin.base, "GET", `/_matrix/client/v3/rooms/${enc(roomId)}/messages?dir=b&limit=1000&filter=${filter}${from ? `&from=${enc(from)}` : ""}`, { token: creator.token }));
      found += r.chunk.filter((e) => /^(seq|par)(sync)? /.test(e.content?.body ?? "")).length;
      if (!r.end || r.chunk.length === 0) break;
      from = r.end;
    }
    const expected = totalPdus * runs.length;
    if (found !== expected) throw new Error(`/messages shows ${found} of the ${expected} messages sent`);
    log(`/messages shows all ${found} messages; Myelin peak RSS ${myelin.rssPeakMb().toFixed(0)} MB`);
    report(B, "Myelin peak RSS (whole inbound benchmark)", myelin.rssPeakMb(), "MB");
    const unhandled = unhandledSummary(fakes);
    if (unhandled) log(`requests the fake servers did not serve: ${unhandled}`);
  } finally {
    for (const f of fakes) f.close();
    await stopMyelin(myelin);
  }
}

// --- 2. Joining a remote room --------------------------------------------------------------------------------------

async function benchJoin() {
  const B = "join";
  const members = SIZES.joinMembers;
  const rounds = 1 + Math.ceil(SIZES.joinChain / members); // membership events per user: a join, then profile changes
  const fakes = [];
  for (let i = 0; i < SIZES.joinServers; i++) fakes.push(await FakeServer.start());
  const host = fakes[0];
  const admin = `@admin:${host.name}`;
  const v = ROOM_VERSION;
  const view = new RoomView(v, undefined);
  // The room, built and signed by the fake servers (each event by its sender's server).
  let t = performance.now();
  const createContent = { room_version: v.id, ...(v.createHasCreatorField ? { creator: admin } : {}) };
  if (!v.roomIdIsCreateEventHash) view.roomId = `!bench${Date.now().toString(36)}:${host.name}`;
  const create = view.build(host, { type: "m.room.create", stateKey: "", sender: admin, content: createContent }, { prev: [], depth: 1 });
  if (v.roomIdIsCreateEventHash) view.roomId = roomIdForCreateEvent(create.id);
  view.add(create.pdu, { id: create.id });
  const addNew = (server, ev) => {
    const { pdu, id } = view.build(server, ev);
    view.add(pdu, { id });
  };
  addNew(host, { type: "m.room.member", stateKey: admin, sender: admin, content: { membership: "join" } });
  addNew(host, { type: "m.room.power_levels", stateKey: "", sender: admin, content: { users: v.privilegedCreators ? {} : { [admin]: 100 }, users_default: 0, events_default: 0, state_default: 50, ban: 50, kick: 50, redact: 50, invite: 0, events: {} } });
  addNew(host, { type: "m.room.join_rules", stateKey: "", sender: admin, content: { join_rule: "public" } });
  addNew(host, { type: "m.room.history_visibility", stateKey: "", sender: admin, content: { history_visibility: "shared" } });
  addNew(host, { type: "m.room.name", stateKey: "", sender: admin, content: { name: "Federation join benchmark" } });
  for (let r = 0; r < rounds; r++) {
    for (let u = 0; u < members; u++) {
      const server = fakes[u % fakes.length];
      const user = `@m${u}:${server.name}`;
      addNew(server, { type: "m.room.member", stateKey: user, sender: user, content: { membership: "join", displayname: r === 0 ? `member ${u}` : `member ${u} (${r})` } });
    }
  }
  const stateIds = new Set(view.state.values());
  const statePdus = [...stateIds].map((id) => view.events.get(id));
  const chainPdus = [...view.events].filter(([id]) => !stateIds.has(id)).map(([, p]) => p);
  const stateJson = JSON.stringify(statePdus);
  const chainJson = JSON.stringify(chainPdus);
  const genSecs = (performance.now() - t) / 1000;
  console.log(`\n## join: remote room of ${members + 1} members on ${fakes.length} servers: send_join answers ${statePdus.length} state events + ${chainPdus.length} auth chain events (${((stateJson.length + chainJson.length) / 1e6).toFixed(1)} MB of JSON; built in ${genSecs.toFixed(1)} s)`);

  const requests = [];
  host.hooks.route = (method, path, q, body) => {
    const m = /^\/_matrix\/federation\/(v1|v2)\/([a-z_]+)\/([^/]+)(?:\/([^/]+))?$/.exec(path);
    if (!m) return undefined;
    const [, ver, what, a, b] = m;
    const p1 = decodeURIComponent(a);
    const p2 = b === undefined ? undefined : decodeURIComponent(b);
    requests.push(`${method} ${ver}/${what}`);
    if (what === "make_join" && method === "GET") {
      const template = view.build(host, { type: "m.room.member", stateKey: p2, sender: p2, content: { membership: "join" } }).pdu;
      const { signatures: _s, hashes: _h, ...event } = template;
      return { body: { room_version: v.id, event } };
    }
    if (what === "send_join" && ver === "v2" && method === "PUT") {
      view.add(body, { id: p2 });
      return { body: `{"origin":${JSON.stringify(host.name)},"members_omitted":false,"servers_in_room":${JSON.stringify(fakes.map((f) => f.name))},"event":${JSON.stringify(body)},"state":${stateJson},"auth_chain":${chainJson}}` };
    }
    if (what === "event" && method === "GET") {
      const pdu = view.events.get(p1);
      return pdu ? { body: { origin: host.name, origin_server_ts: Date.now(), pdus: [pdu] } } : { status: 404, body: { errcode: "M_NOT_FOUND", error: "no such event" } };
    }
    if (what === "event_auth" && method === "GET") return { body: { auth_chain: [...view.authChain([p2])].map((id) => view.events.get(id)) } };
    if (what === "get_missing_events") return { body: { events: [] } };
    if (what === "backfill") return { body: { origin: host.name, origin_server_ts: Date.now(), pdus: [] } };
    return undefined;
  };

  const myelin = await startMyelin();
  try {
    const user = await register(myelin.base);
    const since = await initialSince(myelin, user);
    await sleep(500);
    const rssBefore = myelin.rssMb();
    let rssSampled = rssBefore;
    const sampler = setInterval(() => (rssSampled = Math.max(rssSampled, myelin.rssMb())), 100);
    const cpu0 = myelin.cpuMs();
    let tSynced;
    const t0 = performance.now();
    const sync = followSync(
      myelin,
      user,
      since,
      view.roomId,
      (_ev, room) => {
        if (room && tSynced === undefined) tSynced = performance.now();
      },
      () => tSynced !== undefined,
      "the joined room to show in /sync",
      1_800_000 * Math.max(1, scale),
    );
    const joinTimeout = 1_800_000 * Math.max(1, scale);
    const r = await withTimeout(request(myelin.base, "POST", `/_matrix/client/v3/join/${enc(view.roomId)}?server_name=${enc(host.name)}`, { token: user.token, body: {} }), joinTimeout, "POST /join of the remote room");
    const tJoined = performance.now();
    if (r.status !== 200) throw new Error(`POST /join answered ${r.status}: ${r.text.slice(0, 500)}`);
    await sync;
    clearInterval(sampler);
    const cpu = myelin.cpuMs() - cpu0;
    report(B, `join a remote room of ${members + 1} members, ${statePdus.length + chainPdus.length} events: /join until 200`, (tJoined - t0) / 1000, "s", `(server CPU ${(cpu / 1000).toFixed(1)} s)`);
    report(B, "join: until the first /sync showing the room", (tSynced - t0) / 1000, "s", "(lazy-loading members, as Element)");
    report(B, "join: Myelin peak RSS", myelin.rssPeakMb(), "MB", `(before the join ${rssBefore.toFixed(0)} MB; ${myelin.rssMb().toFixed(0)} MB after)`);
    t = performance.now();
    const count = await joinedMembers(myelin, user, view.roomId);
    log(`joined_members: ${count} in ${(performance.now() - t).toFixed(0)} ms; requests to the room's server: ${[...new Set(requests)].join(", ")}`);
    if (count !== members + 2) throw new Error(`the joined room has ${count} members, expected ${members + 2}`);
    const unhandled = unhandledSummary(fakes);
    if (unhandled) log(`requests the fake servers did not serve: ${unhandled}`);
  } finally {
    for (const f of fakes) f.close();
    await stopMyelin(myelin);
  }
}

// --- 3. Outbound fan-out -------------------------------------------------------------------------------------------

async function benchFanout() {
  const B = "fanout";
  const nDest = SIZES.fanoutDestinations;
  const nMsgs = SIZES.fanoutMessages;
  console.log(`\n## fanout: ${nMsgs} messages into a room with a user on each of ${nDest} fake servers (${fanoutConcurrency} sends in flight)`);
  const myelin = await startMyelin();
  const fakes = [];
  const label = `fanout${Date.now().toString(36)}`;
  let onDone = () => {};
  const arrivals = [];
  try {
    for (let i = 0; i < nDest; i++) {
      const f = await FakeServer.start({
        onTransaction: (body) => {
          for (const p of body.pdus ?? []) {
            const b = p.content?.body;
            if (typeof b !== "string" || !b.startsWith(label)) continue;
            const n = b === `${label} warmup` ? -1 : Number(b.slice(label.length + 1));
            if (f.got.has(n)) continue;
            f.got.add(n);
            const now = performance.now();
            if (n >= 0) arrivals[n] = Math.max(arrivals[n] ?? 0, now);
            if (n >= 0 && f.got.size - (f.got.has(-1) ? 1 : 0) === nMsgs) f.complete = now;
          }
          onDone();
        },
      });
      f.got = new Set();
      fakes.push(f);
    }
    const creator = await register(myelin.base);
    const roomId = (await must(request(myelin.base, "POST", "/_matrix/client/v3/createRoom", { token: creator.token, body: { preset: "public_chat", room_version: ROOM_VERSION.id } }))).room_id;
    let t = performance.now();
    for (const f of fakes) await withTimeout(federationJoin(f, myelin, roomId, `@fan:${f.name}`), 120_000, `send_join from ${f.name}`);
    log(`${nDest} servers joined with make_join/send_join (${((performance.now() - t) / nDest).toFixed(0)} ms each)`);
    const waitAll = (pred, ms, what) =>
      withTimeout(
        new Promise((resolve) => {
          onDone = () => pred() && resolve();
          onDone();
        }),
        ms,
        what,
      );
    // A first message settles the joins' own fan-out and warms every connection.
    await must(request(myelin.base, "PUT", `/_matrix/client/v3/rooms/${enc(roomId)}/send/m.room.message/w`, { token: creator.token, body: { msgtype: "m.text", body: `${label} warmup` } }));
    await waitAll(() => fakes.every((f) => f.got.has(-1)), 120_000, "the warm-up message to reach every server");
    const txns0 = fakes.reduce((s, f) => s + f.txnsReceived, 0);
    const pdus0 = fakes.reduce((s, f) => s + f.pdusReceived, 0);
    const sent = [];
    const t0 = performance.now();
    const cpu0 = myelin.cpuMs();
    let next = 0;
    await withTimeout(
      Promise.all(
        Array.from({ length: fanoutConcurrency }, async () => {
          while (next < nMsgs) {
            const i = next++;
            await must(request(myelin.base, "PUT", `/_matrix/client/v3/rooms/${enc(roomId)}/send/m.room.message/f${i}`, { token: creator.token, body: { msgtype: "m.text", body: `${label} ${i}` } }));
            sent[i] = performance.now();
          }
        }),
      ),
      300_000,
      "sending the messages",
    );
    const tSent = performance.now();
    try {
      await waitAll(() => fakes.every((f) => f.complete !== undefined), 600_000 * Math.max(1, scale), "every server to receive every message");
    } catch (e) {
      const behind = fakes.filter((f) => f.complete === undefined).map((f) => `${f.name} has ${f.got.size - 1}/${nMsgs}`);
      throw new Error(`${e.message}: ${behind.slice(0, 5).join(", ")}${behind.length > 5 ? ` and ${behind.length - 5} more` : ""}`);
    }
    const tDone = Math.max(...fakes.map((f) => f.complete));
    const cpu = myelin.cpuMs() - cpu0;
    const secs = (tDone - t0) / 1000;
    const txns = fakes.reduce((s, f) => s + f.txnsReceived, 0) - txns0;
    const pdus = fakes.reduce((s, f) => s + f.pdusReceived, 0) - pdus0;
    const lat = sent.map((s, i) => arrivals[i] - s).sort((a, b) => a - b);
    const done = fakes.map((f) => f.complete - t0).sort((a, b) => a - b);
    report(B, `${nMsgs} messages to ${nDest} servers: until every server has every message`, secs, "s", `(sends done after ${((tSent - t0) / 1000).toFixed(2)} s)`);
    report(B, "fan-out: messages/s delivered everywhere", nMsgs / secs, "msg/s", `(${((nMsgs * nDest) / secs).toFixed(0)} PDU deliveries/s; ${txns} transactions, ${(pdus / txns).toFixed(1)} PDUs each; server CPU ${(cpu / (nMsgs * nDest)).toFixed(3)} ms/delivery)`);
    report(B, "fan-out: message sent → last server has it, p50 / p99", `${percentile(lat, 50).toFixed(0)} / ${percentile(lat, 99).toFixed(0)}`, "ms", `(first server complete at ${done[0].toFixed(0)} ms, last at ${done[done.length - 1].toFixed(0)} ms)`);
    report(B, "fan-out: Myelin peak RSS", myelin.rssPeakMb(), "MB");
    const unhandled = unhandledSummary(fakes);
    if (unhandled) log(`requests the fake servers did not serve: ${unhandled}`);
  } finally {
    for (const f of fakes) f.close();
    await stopMyelin(myelin);
  }
}

// --- 4. End-to-end encryption across servers ----------------------------------------------------------------------

/** A device's keys as its client uploads them: ed25519 and curve25519, self-signed over canonical JSON. */
function remoteDevice(userId, deviceId) {
  const key = { ...generateSigningKey(), keyId: `ed25519:${deviceId}` };
  const keys = {
    user_id: userId,
    device_id: deviceId,
    algorithms: ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
    keys: { [`curve25519:${deviceId}`]: randomBytes(32).toString("base64").replace(/=+$/, ""), [`ed25519:${deviceId}`]: key.publicKeyBase64 },
  };
  return signJson(keys, userId, key);
}

async function benchE2ee() {
  const B = "e2ee";
  const nServers = SIZES.e2eeServers;
  const perServer = SIZES.e2eeUsersPerServer;
  const total = nServers * perServer;
  const ROUNDS = 5;
  console.log(`\n## e2ee: ${total} remote users, ${perServer} on each of ${nServers} fake servers, sharing a room with a local user`);
  const myelin = await startMyelin();
  const fakes = [];
  const devices = new Map(); // user id → device keys
  let onEdu = () => {};
  const stats = { keysQueries: 0, deviceResyncs: 0 };
  try {
    for (let i = 0; i < nServers; i++) {
      const f = await FakeServer.start({
        onTransaction: (body) => {
          for (const e of body.edus ?? []) if (e.edu_type === "m.direct_to_device") onEdu(f, e.content);
        },
        route: (method, path, _q, body) => {
          if (method === "POST" && path === "/_matrix/federation/v1/user/keys/query") {
            stats.keysQueries++;
            const out = {};
            for (const u of Object.keys(body?.device_keys ?? {})) {
              const d = devices.get(u);
              if (d) out[u] = { [d.device_id]: d };
            }
            return { body: { device_keys: out } };
          }
          const m = /^\/_matrix\/federation\/v1\/user\/devices\/(.+)$/.exec(path);
          if (method === "GET" && m) {
            stats.deviceResyncs++;
            const u = decodeURIComponent(m[1]);
            const d = devices.get(u);
            return { body: { user_id: u, stream_id: 1, devices: d ? [{ device_id: d.device_id, keys: d }] : [] } };
          }
          return undefined;
        },
      });
      fakes.push(f);
    }
    const alice = await register(myelin.base);
    const roomId = (await must(request(myelin.base, "POST", "/_matrix/client/v3/createRoom", { token: alice.token, body: { preset: "public_chat", room_version: ROOM_VERSION.id } }))).room_id;
    const users = fakes.map((f) => Array.from({ length: perServer }, (_, i) => `@e2e${i}:${f.name}`));
    for (const u of users.flat()) devices.set(u, remoteDevice(u, `DEV${u.slice(4, u.indexOf(":"))}`));
    let view;
    for (const [k, f] of fakes.entries()) view = (await withTimeout(federationJoin(f, myelin, roomId, users[k][0], view), 120_000, `send_join of ${users[k][0]}`)).view;
    await sleep(300);
    for (const [k, f] of fakes.entries()) {
      const pdus = users[k].slice(1).map((u) => {
        const { pdu, id } = view.build(f, { type: "m.room.member", stateKey: u, sender: u, content: { membership: "join" } });
        view.add(pdu, { id });
        return pdu;
      });
      await withTimeout(sendTransactions(f, myelin, chunk(pdus, TXN_PDUS), `e2eejoins${k}`), 300_000, "joins in /send transactions");
    }
    const count = await joinedMembers(myelin, alice, roomId);
    if (count !== total + 1) throw new Error(`the room has ${count} joined members, expected ${total + 1}`);
    log(`room ready: ${count} members`);

    const query = async () => {
      const t = performance.now();
      const cpu0 = myelin.cpuMs();
      const r = await must(request(myelin.base, "POST", "/_matrix/client/v3/keys/query", { token: alice.token, body: { timeout: 10_000, device_keys: Object.fromEntries(users.flat().map((u) => [u, []])) } }));
      const wall = performance.now() - t;
      const cpu = myelin.cpuMs() - cpu0;
      const got = users.flat().filter((u) => r.device_keys?.[u]?.[devices.get(u).device_id]?.keys !== undefined).length;
      if (got !== total) throw new Error(`/keys/query answered ${got} of ${total} remote users (failures: ${JSON.stringify(r.failures ?? {}).slice(0, 200)})`);
      return { wall, cpu };
    };
    const first = await query();
    const asked = { ...stats };
    report(B, `/keys/query for ${total} remote users, first (asked over federation)`, first.wall, "ms", `(server CPU ${first.cpu.toFixed(0)} ms; ${asked.keysQueries} user/keys/query and ${asked.deviceResyncs} user/devices requests)`);
    await sleep(500); // device-list resyncs the first query started settle
    const cached = [];
    for (let i = 0; i < ROUNDS; i++) cached.push(await query());
    const after = stats.keysQueries + stats.deviceResyncs - asked.keysQueries - asked.deviceResyncs;
    cached.sort((a, b) => a.wall - b.wall);
    const mid = cached[Math.floor(ROUNDS / 2)];
    report(B, `/keys/query for ${total} remote users, from the cache (median of ${ROUNDS})`, mid.wall, "ms", `(slowest ${cached[ROUNDS - 1].wall.toFixed(0)} ms; server CPU ${mid.cpu.toFixed(0)} ms; ${after} federation requests in these rounds)`);

    // To-device fan-out: a different ≈600-byte ciphertext for each remote device, as sharing a megolm session does.
    const results = [];
    for (let round = 0; round < ROUNDS + 1; round++) {
      const marker = `r${round}_${Date.now().toString(36)}`;
      const messages = {};
      for (const u of users.flat()) messages[u] = { [devices.get(u).device_id]: { algorithm: "m.olm.v1.curve25519-aes-sha2", sender_key: "x", ciphertext: { k: { type: 0, body: `${marker} ${randomBytes(440).toString("base64")}` } } } };
      let got = 0;
      const done = new Promise((resolve) => {
        onEdu = (_f, c) => {
          for (const perUser of Object.values(c.messages ?? {}))
            for (const m of Object.values(perUser)) if (String(m?.ciphertext?.k?.body ?? "").startsWith(marker)) got++;
          if (got >= total) resolve();
        };
      });
      const t = performance.now();
      const cpu0 = myelin.cpuMs();
      await must(request(myelin.base, "PUT", `/_matrix/client/v3/sendToDevice/m.room.encrypted/${marker}`, { token: alice.token, body: { messages } }));
      const acked = performance.now() - t;
      await withTimeout(done, 60_000, `round ${round}: every remote device's to-device message (${got} of ${total} arrived)`);
      // Round 0 warms the connections to every server.
      if (round > 0) results.push({ wall: performance.now() - t, acked, cpu: myelin.cpuMs() - cpu0 });
    }
    results.sort((a, b) => a.wall - b.wall);
    const m = results[Math.floor(results.length / 2)];
    report(B, `to-device fan-out to ${total} devices on ${nServers} servers, until every server has its messages (median of ${ROUNDS})`, m.wall, "ms", `(slowest ${results[results.length - 1].wall.toFixed(0)} ms; PUT answered after ${m.acked.toFixed(0)} ms; server CPU ${m.cpu.toFixed(0)} ms)`);
    report(B, "e2ee: Myelin peak RSS", myelin.rssPeakMb(), "MB");
    const unhandled = unhandledSummary(fakes);
    if (unhandled) log(`requests the fake servers did not serve: ${unhandled}`);
  } finally {
    for (const f of fakes) f.close();
    await stopMyelin(myelin);
  }
}

async function benchMedia() {
  const B = "media";
  const ROUNDS = 20;
  console.log("\n## media: another server's files, fetched over federation and served from the cache");
  const myelin = await startMyelin();
  const files = new Map([
    ["one_mb", randomBytes(1024 * 1024)],
    ["ten_mb", randomBytes(10 * 1024 * 1024)],
    ["shared", randomBytes(1024 * 1024)],
  ]);
  const fetches = new Map();
  const boundary = "benchboundary7d1f";
  const f = await FakeServer.start({
    route: (method, path) => {
      const m = /^\/_matrix\/federation\/v1\/media\/download\/(.+)$/.exec(path);
      const bytes = m ? files.get(m[1]) : undefined;
      if (method !== "GET" || !bytes) return undefined;
      fetches.set(m[1], (fetches.get(m[1]) ?? 0) + 1);
      const head = Buffer.from(`--${boundary}\r\nContent-Type: application/json\r\n\r\n{}\r\n--${boundary}\r\nContent-Type: application/octet-stream\r\n\r\n`);
      return { raw: { headers: { "content-type": `multipart/mixed; boundary=${boundary}` }, body: Buffer.concat([head, bytes, Buffer.from(`\r\n--${boundary}--\r\n`)]) } };
    },
  });
  try {
    const alice = await register(myelin.base);
    const url = (id) => `${myelin.base}/_matrix/client/v1/media/download/${f.name}/${id}`;
    /** One download: time to the response headers and first body byte, and to the last byte. */
    const download = async (id) => {
      const t = performance.now();
      const res = await fetch(url(id), { headers: { authorization: `Bearer ${alice.token}` } });
      if (res.status !== 200) throw new Error(`download ${id}: HTTP ${res.status} ${await res.text()}`);
      const reader = res.body.getReader();
      let first;
      let n = 0;
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        first ??= performance.now() - t;
        n += value.length;
      }
      if (n !== files.get(id).length) throw new Error(`download ${id}: ${n} bytes, expected ${files.get(id).length}`);
      return { ttfb: first ?? performance.now() - t, total: performance.now() - t };
    };
    for (const id of ["one_mb", "ten_mb"]) {
      const cold = await download(id);
      report(B, `${id === "one_mb" ? "1 MB" : "10 MB"} remote file, first download (fetched over federation)`, cold.total, "ms");
    }
    const t = performance.now();
    await Promise.all(Array.from({ length: 20 }, () => download("shared")));
    report(B, "20 clients at once for a 1 MB remote file not yet cached", performance.now() - t, "ms", `(${fetches.get("shared")} federation fetch)`);
    for (const id of ["one_mb", "ten_mb"]) {
      const runs = [];
      for (let i = 0; i < ROUNDS; i++) runs.push(await download(id));
      const ttfb = runs.map((r) => r.ttfb).sort((a, b) => a - b);
      const total = runs.map((r) => r.total).sort((a, b) => a - b);
      const label = id === "one_mb" ? "1 MB" : "10 MB";
      report(B, `${label} cached remote file: time to first byte, p50 (p99) of ${ROUNDS}`, percentile(ttfb, 50), "ms", `(${percentile(ttfb, 99).toFixed(1)} ms)`);
      report(B, `${label} cached remote file: whole download, p50 of ${ROUNDS}`, percentile(total, 50), "ms", `(${fetches.get(id)} federation fetch in all)`);
    }
    report(B, "media: Myelin peak RSS", myelin.rssPeakMb(), "MB");
  } finally {
    f.close();
    await stopMyelin(myelin);
  }
}

// --- Main ----------------------------------------------------------------------------------------------------------

console.log(`Myelin federation benchmarks: scale ${scale}, ${db}, room version ${ROOM_VERSION.id}, sizes ${JSON.stringify(SIZES)}`);
let failed = false;
try {
  if (only.has("inbound")) await benchInbound();
  if (only.has("join")) await benchJoin();
  if (only.has("fanout")) await benchFanout();
  if (only.has("e2ee")) await benchE2ee();
  if (only.has("media")) await benchMedia();
} catch (e) {
  failed = true;
  console.error(`\nfederation bench FAILED: ${e.stack ?? e}`);
} finally {
  await stopAll();
  clearTimeout(watchdog);
}
if (results.length) {
  console.log(`\n| Benchmark (scale ${scale}, ${db}, room v${ROOM_VERSION.id}) | Result |\n|---|---|`);
  for (const r of results) console.log(`| ${r.name} | ${fmt(r.value)} ${r.unit} ${r.note} |`);
}
process.exit(failed ? 1 : 0);
