// Myelin benchmarks. Usage: npm run bench -- [--db sqlite|postgres] [--only send,latency,latency500,syncinc,initial,initial1000,messages,memory,search]
// Prints a table; docs/benchmarks.md records the numbers and the machine they ran on.
import Database from "better-sqlite3";
import pg from "pg";
import { join } from "node:path";
import { enc, must, newAgent, percentile, register, request, startServer } from "./lib.mjs";

const args = process.argv.slice(2);
const arg = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : def;
};
const db = arg("db", "sqlite");
const only = new Set(arg("only", "send,latency,syncinc,initial,initial1000,messages,memory").split(","));
const results = [];
const report = (name, value, unit, note = "") => {
  results.push({ name, value, unit, note });
  console.log(`${name}: ${typeof value === "number" ? value.toFixed(value < 10 ? 2 : 0) : value} ${unit} ${note}`);
};

async function createRoom(base, token, extra = {}) {
  return (await must(request(base, "POST", "/_matrix/client/v3/createRoom", { token, body: { preset: "public_chat", ...extra } }))).room_id;
}

/**
 * The same load from wrk (a C load generator, Debian's `wrk` package) when it is installed: the Node load generator
 * itself needs most of a core, which on a 2-core machine is taken from the server being measured.
 */
async function benchSendWrk(base, server, clients) {
  const { spawnSync } = await import("node:child_process");
  const { writeFileSync, mkdtempSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const dir = mkdtempSync(`${tmpdir()}/myelin-wrk-`);
  const pairs = clients.map((c) => `{${JSON.stringify(c.token)}, ${JSON.stringify(enc(c.room))}}`).join(",\n  ");
  writeFileSync(
    `${dir}/send.lua`,
    `local clients = {\n  ${pairs}\n}
local n = 0
wrk.method = "PUT"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"msgtype":"m.text","body":"hello from wrk"}'
request = function()
  n = n + 1
  local c = clients[(n % #clients) + 1]
  return wrk.format(nil, "/_matrix/client/v3/rooms/" .. c[2] .. "/send/m.room.message/w" .. n, { ["Authorization"] = "Bearer " .. c[1] })
end
`,
  );
  const cpu0 = server.cpuMs();
  const r = spawnSync("wrk", ["-t1", "-c50", "-d10s", "--latency", "-s", `${dir}/send.lua`, base], { encoding: "utf8" });
  const cpu = server.cpuMs() - cpu0;
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(r.stdout)?.[1]);
  const total = Number(/(\d+) requests in/.exec(r.stdout)?.[1]);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(r.stdout)?.[1] ?? 0);
  const p99 = /99%\s+(\S+)/.exec(r.stdout)?.[1];
  report("send throughput, wrk load (50 connections, 10 rooms)", rps, "msg/s", `(${non2xx} errors, request p99 ${p99}, server CPU ${(cpu / total).toFixed(2)} ms/msg)`);
}

/** 50 clients over 10 rooms sending as fast as they can for a fixed time. */
async function benchSend(base, server) {
  const rooms = [];
  const owner = await register(base);
  for (let i = 0; i < 10; i++) rooms.push(await createRoom(base, owner.token));
  const clients = [];
  for (let i = 0; i < 50; i++) {
    const u = await register(base);
    const room = rooms[i % 10];
    await must(request(base, "POST", `/_matrix/client/v3/rooms/${enc(room)}/join`, { token: u.token, body: {} }));
    clients.push({ ...u, room });
  }
  const durationMs = 10_000;
  let sent = 0;
  let errors = 0;
  let rssPeak = 0;
  const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, server.rssMb())), 250);
  const end = Date.now() + durationMs;
  const start = performance.now();
  const cpu0 = server.cpuMs();
  const threads0 = server.threadCpu();
  await Promise.all(
    clients.map(async (c, ci) => {
      let n = 0;
      while (Date.now() < end) {
        const r = await request(base, "PUT", `/_matrix/client/v3/rooms/${enc(c.room)}/send/m.room.message/b${ci}_${n++}`, { token: c.token, body: { msgtype: "m.text", body: `message ${n} from ${ci}` } });
        if (r.status === 200) sent++;
        else errors++;
      }
    }),
  );
  const secs = (performance.now() - start) / 1000;
  clearInterval(sampler);
  const cpu = server.cpuMs() - cpu0;
  const threads1 = server.threadCpu();
  if (process.env.BENCH_THREADS) for (const [k, v] of Object.entries(threads1)) console.log(`  thread ${k}: ${((v - (threads0[k] ?? 0)) / sent * 1000).toFixed(0)} us/msg`);
  report("send throughput (50 clients, 10 rooms)", sent / secs, "msg/s", `${errors ? `(${errors} errors) ` : ""}(server CPU ${(cpu / sent).toFixed(2)} ms/msg)`);
  report("memory under send load (peak RSS)", rssPeak, "MB");
  const { spawnSync } = await import("node:child_process");
  if (spawnSync("wrk", ["--version"]).error === undefined) await benchSendWrk(base, server, clients);
}

/**
 * A long-polling /sync on one client; another client sends; time from send to the sync response. With `idle`,
 * that many other users (each in a room of their own) long-poll /sync throughout, on their own connections.
 */
async function benchLatency(base, idle = 0) {
  const pollers = [];
  let stop = false;
  if (idle > 0) {
    const agent = newAgent(idle);
    const users = [];
    for (let i = 0; i < idle; i++) users.push(await register(base));
    for (const u of users) {
      await createRoom(base, u.token);
      const since = (await must(request(base, "GET", "/_matrix/client/v3/sync?timeout=0", { token: u.token }))).next_batch;
      pollers.push(
        (async () => {
          while (!stop) await request(base, "GET", `/_matrix/client/v3/sync?timeout=5000&since=${enc(since)}`, { token: u.token, agent });
        })(),
      );
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
  const a = await register(base);
  const b = await register(base);
  const room = await createRoom(base, a.token);
  await must(request(base, "POST", `/_matrix/client/v3/rooms/${enc(room)}/join`, { token: b.token, body: {} }));
  let since = (await must(request(base, "GET", "/_matrix/client/v3/sync?timeout=0", { token: b.token }))).next_batch;
  const samples = [];
  for (let i = 0; i < 500; i++) {
    const syncP = request(base, "GET", `/_matrix/client/v3/sync?timeout=30000&since=${enc(since)}`, { token: b.token });
    await new Promise((r) => setTimeout(r, 2)); // let the sync request arrive and wait
    const t0 = performance.now();
    await must(request(base, "PUT", `/_matrix/client/v3/rooms/${enc(room)}/send/m.room.message/l${i}`, { token: a.token, body: { msgtype: "m.text", body: `ping ${i}` } }));
    const s = await must(syncP);
    samples.push(performance.now() - t0);
    since = s.next_batch;
  }
  samples.sort((x, y) => x - y);
  const with_ = idle > 0 ? `, ${idle} others idle long-polling` : "";
  report(`send-to-sync latency p50${with_}`, percentile(samples, 50), "ms", "(send request start to /sync response)");
  report(`send-to-sync latency p99${with_}`, percentile(samples, 99), "ms");
  stop = true;
  await Promise.all(pollers);
}

/**
 * Server CPU per incremental /sync answer: a user in 10 rooms, one new message since the token; 2,000 answers,
 * 10 in flight (the same token each time, so every answer does the same work).
 */
async function benchSyncIncremental(base, server) {
  const u = await register(base);
  const other = await register(base);
  const rooms = [];
  for (let r = 0; r < 10; r++) {
    const room = await createRoom(base, other.token);
    await must(request(base, "POST", `/_matrix/client/v3/rooms/${enc(room)}/join`, { token: u.token, body: {} }));
    await must(request(base, "PUT", `/_matrix/client/v3/rooms/${enc(room)}/send/m.room.message/p${r}`, { token: other.token, body: { msgtype: "m.text", body: "before" } }));
    rooms.push(room);
  }
  const since = (await must(request(base, "GET", "/_matrix/client/v3/sync?timeout=0", { token: u.token }))).next_batch;
  await must(request(base, "PUT", `/_matrix/client/v3/rooms/${enc(rooms[3])}/send/m.room.message/new`, { token: other.token, body: { msgtype: "m.text", body: "news" } }));
  const path = `/_matrix/client/v3/sync?timeout=0&since=${enc(since)}`;
  for (let i = 0; i < 200; i++) await must(request(base, "GET", path, { token: u.token }));
  const total = 2000;
  let next = 0;
  const cpu0 = server.cpuMs();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: 10 }, async () => {
      while (next++ < total) await must(request(base, "GET", path, { token: u.token }));
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  report("incremental /sync, 10 rooms, one new message", total / secs, "answers/s", `(server CPU ${((server.cpuMs() - cpu0) / total).toFixed(3)} ms/answer)`);
}

/** A user in N rooms with M messages each: time of an initial /sync (median of 5). */
async function benchInitial(base, nRooms, perRoom) {
  const u = await register(base);
  const other = await register(base);
  for (let r = 0; r < nRooms; r++) {
    const room = await createRoom(base, other.token, { name: `room ${r}` });
    await must(request(base, "POST", `/_matrix/client/v3/rooms/${enc(room)}/join`, { token: u.token, body: {} }));
    await Promise.all(
      Array.from({ length: perRoom }, (_, m) =>
        must(request(base, "PUT", `/_matrix/client/v3/rooms/${enc(room)}/send/m.room.message/i${r}_${m}`, { token: other.token, body: { msgtype: "m.text", body: `hello ${m}` } })),
      ),
    );
  }
  const times = [];
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    const s = await must(request(base, "GET", "/_matrix/client/v3/sync", { token: u.token }));
    times.push(performance.now() - t0);
    if (Object.keys(s.rooms.join).length !== nRooms) throw new Error(`expected ${nRooms} rooms, got ${Object.keys(s.rooms.join).length}`);
  }
  times.sort((x, y) => x - y);
  report(`initial sync, ${nRooms} rooms x ${perRoom} messages (median of 5)`, percentile(times, 50), "ms", `(first: ${times[times.length - 1].toFixed(0)} ms worst)`);
}

/** /messages over a 100,000-event room: page latency near the end, in the middle and near the start. */
async function benchMessages(base, server) {
  const u = await register(base);
  const room = await createRoom(base, u.token);
  const total = 100_000;
  const concurrency = 64;
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) {
        const i = next++;
        await must(request(base, "PUT", `/_matrix/client/v3/rooms/${enc(room)}/send/m.room.message/m${i}`, { token: u.token, body: { msgtype: "m.text", body: `history ${i}` } }));
      }
    }),
  );
  report("filling a 100k-event room (one sender, 64 in flight)", total / ((performance.now() - t0) / 1000), "msg/s");
  await server.analyze();
  const pageTimes = [];
  let from;
  let pages = 0;
  const start = performance.now();
  for (;;) {
    const t = performance.now();
    const r = await must(request(base, "GET", `/_matrix/client/v3/rooms/${enc(room)}/messages?dir=b&limit=100${from ? `&from=${enc(from)}` : ""}`, { token: u.token }));
    pageTimes.push(performance.now() - t);
    pages++;
    if (!r.end) break;
    from = r.end;
  }
  const all = (performance.now() - start) / 1000;
  const sorted = [...pageTimes].sort((x, y) => x - y);
  report("/messages page of 100 (p50 over the whole room)", percentile(sorted, 50), "ms", `(${pages} pages, whole room in ${all.toFixed(1)} s)`);
  report("/messages first page / last page", `${pageTimes[0].toFixed(1)} / ${pageTimes[pageTimes.length - 1].toFixed(1)}`, "ms", "(flat cost with depth)");
}

/**
 * POST /search over indexed messages (default 100,000 in one room; --search-messages N --search-rooms R spreads N over
 * R rooms; 200 distinct words, a rare word in 1 of 1,000): query latency for a rare and a common word, both
 * orderings, paging on, and the size of the index.
 */
async function benchSearch(base, server) {
  const u = await register(base);
  const total = Math.min(2_000_000, Number(arg("search-messages", "100000")));
  const nRooms = Math.max(1, Math.min(5000, Number(arg("search-rooms", "1"))));
  const rooms = [];
  for (let i = 0; i < nRooms; i++) rooms.push(await createRoom(base, u.token));
  const vocab = Array.from({ length: 200 }, (_, i) => `v${i}x`);
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: 64 }, async () => {
      while (next < total) {
        const i = next++;
        const body = `message ${i} ${vocab[i % 200]} ${vocab[(i * 7) % 200]} ${vocab[(i * 13) % 200]}${i % 1000 === 0 ? " zebracrossing" : ""} and some more ordinary text`;
        await must(request(base, "PUT", `/_matrix/client/v3/rooms/${enc(rooms[i % nRooms])}/send/m.room.message/s${i}`, { token: u.token, body: { msgtype: "m.text", body } }));
      }
    }),
  );
  const k = (n) => (n >= 1000 ? `${n / 1000}k` : String(n));
  report(`filling ${k(total)} searchable messages in ${nRooms} room(s) (64 in flight)`, total / ((performance.now() - t0) / 1000), "msg/s");
  await server.analyze();
  const query = async (term, order, nextBatch) => {
    const t = performance.now();
    const r = await must(request(base, "POST", `/_matrix/client/v3/search${nextBatch ? `?next_batch=${enc(nextBatch)}` : ""}`, { token: u.token, body: { search_categories: { room_events: { search_term: term, order_by: order } } } }));
    return { ms: performance.now() - t, r: r.search_categories.room_events };
  };
  for (const [label, term] of [[`rare word (${k(total / 1000)} matches)`, "zebracrossing"], [`common word (${k(total / 200)} matches)`, vocab[100]], [`very common word (${k(total)} matches)`, "ordinary"]]) {
    for (const order of ["rank", "recent"]) {
      const times = [];
      let count = 0;
      for (let i = 0; i < 10; i++) {
        const q = await query(term, order);
        times.push(q.ms);
        count = q.r.count;
      }
      times.sort((x, y) => x - y);
      report(`search ${label}, ${order}, first page (p50 of 10)`, percentile(times, 50), "ms", `(count ${count})`);
    }
  }
  // Paging on: 20 pages of 10 newest first.
  let token;
  const pageTimes = [];
  for (let i = 0; i < 20; i++) {
    const q = await query(vocab[100], "recent", token);
    pageTimes.push(q.ms);
    token = q.r.next_batch;
  }
  pageTimes.sort((x, y) => x - y);
  report("search common word, recent, pages 1-20 (p50)", percentile(pageTimes, 50), "ms");
  report("search index size", await searchIndexMb(server), "MB", "(rows + text index)");
}

async function searchIndexMb(server) {
  if (server.dbName) {
    const c = new pg.Client({ connectionString: (process.env.MYELIN_TEST_POSTGRES ?? "postgres://postgres@127.0.0.1:5432/postgres").replace(/\/[^/]*$/, `/${server.dbName}`) });
    await c.connect();
    const r = await c.query("SELECT pg_total_relation_size('event_search') AS n");
    await c.end();
    return Number(r.rows[0].n) / 1048576;
  }
  const d = new Database(join(server.dataDir, "homeserver.db"), { readonly: true });
  try {
    const r = d.prepare("SELECT SUM(pgsize) AS n FROM dbstat WHERE name LIKE 'event_search%' OR name LIKE 'sqlite_autoindex_event_search%'").get();
    return r.n / 1048576;
  } finally {
    d.close();
  }
}

const server = await startServer({ db });
try {
  if (only.has("memory")) {
    await new Promise((r) => setTimeout(r, 1000));
    report("memory 1 s after start (RSS)", server.rssMb(), "MB");
    // Idle: V8 returns the start-up garbage after a few quiet seconds, and the SQLite writer thread is retired
    // after 30 s without writes.
    await new Promise((r) => setTimeout(r, 34_000));
    report("memory at idle, 35 s after start (RSS)", server.rssMb(), "MB");
  }
  if (only.has("send")) await benchSend(server.base, server);
  if (only.has("latency")) await benchLatency(server.base);
  if (only.has("latency500")) await benchLatency(server.base, 500);
  if (only.has("syncinc")) await benchSyncIncremental(server.base, server);
  if (only.has("initial")) await benchInitial(server.base, 100, 20);
  if (only.has("initial1000")) await benchInitial(server.base, 1000, 20);
  if (only.has("messages")) await benchMessages(server.base, server);
  if (only.has("search")) await benchSearch(server.base, server);
  if (only.has("memory")) report("memory after the runs (RSS)", server.rssMb(), "MB");
} finally {
  await server.stop();
}
console.log(`\n| benchmark (${db}) | result |\n|---|---|`);
for (const r of results) console.log(`| ${r.name} | ${typeof r.value === "number" ? r.value.toFixed(r.value < 10 ? 2 : 0) : r.value} ${r.unit} ${r.note} |`);
