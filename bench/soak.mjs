// Memory under a steady load, bounded in time. Usage:
//   npm run bench:soak -- [--db sqlite|postgres] [--rate 200] [--senders 20] [--syncers 200] [--minutes 5] [--cooldown 60]
//                         [--snapshots 1,5]   (heap snapshots at those minutes, written to the server's cwd)
//                         [--port 18008]
// `senders` share the offered rate (msg/s) over 10 rooms while `syncers` other members long-poll /sync; RSS and
// the V8 heap are sampled every 10 s. Prints the RSS curve, the peak, the slope after the first 2 minutes, and
// RSS `cooldown` seconds after the load ends.
import { enc, must, percentile, register, request, startServer } from "./lib.mjs";

const args = process.argv.slice(2);
const arg = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : def;
};
const db = arg("db", "sqlite");
const rate = Number(arg("rate", "200"));
const senders = Number(arg("senders", "20"));
const syncers = Number(arg("syncers", "200"));
const minutes = Number(arg("minutes", "5"));
const cooldownS = Number(arg("cooldown", "60"));
const snapshots = arg("snapshots", "").split(",").filter(Boolean).map(Number);

const nodeArgs = snapshots.length > 0 ? `${process.env.BENCH_NODE_ARGS ?? ""} --heapsnapshot-signal=SIGUSR2` : process.env.BENCH_NODE_ARGS;
if (nodeArgs !== undefined) process.env.BENCH_NODE_ARGS = nodeArgs;
const port = Number(arg("port", "18008"));
const server = await startServer({ db, port, config: { enable_metrics: true, listeners: [{ port, bind_addresses: ["127.0.0.1"], type: "http", resources: [{ names: ["client", "metrics"] }] }] } });

/** Heap figures from the server's own metrics. */
async function heap() {
  const r = await request(server.base, "GET", "/_synapse/metrics");
  const get = (name) => Number(new RegExp(`^${name} ([0-9.e+]+)`, "m").exec(r.text)?.[1] ?? NaN) / 1024 / 1024;
  return { heapUsed: get("nodejs_heap_size_used_bytes"), heapTotal: get("nodejs_heap_size_total_bytes"), external: get("nodejs_external_memory_bytes") };
}

const samples = [];
function sample(phase, t0) {
  return heap().then((h) => {
    const s = { t: Math.round((Date.now() - t0) / 1000), phase, rss: server.rssMb(), ...h };
    samples.push(s);
    console.log(`${String(s.t).padStart(5)} s  ${phase.padEnd(8)} RSS ${s.rss.toFixed(0).padStart(4)} MB   heap used ${s.heapUsed.toFixed(0)} / total ${s.heapTotal.toFixed(0)} MB   external ${s.external.toFixed(0)} MB`);
  });
}

try {
  const rooms = [];
  const owner = await register(server.base);
  for (let i = 0; i < 10; i++) rooms.push((await must(request(server.base, "POST", "/_matrix/client/v3/createRoom", { token: owner.token, body: { preset: "public_chat" } }))).room_id);
  const join = async (u, room) => must(request(server.base, "POST", `/_matrix/client/v3/rooms/${enc(room)}/join`, { token: u.token, body: {} }));
  const sendUsers = [];
  for (let i = 0; i < senders; i++) {
    const u = await register(server.base);
    await join(u, rooms[i % 10]);
    sendUsers.push({ ...u, room: rooms[i % 10] });
  }
  const syncUsers = [];
  for (let i = 0; i < syncers; i++) {
    const u = await register(server.base);
    await join(u, rooms[i % 10]);
    syncUsers.push(u);
  }
  const t0 = Date.now();
  await sample("idle", t0);
  const end = t0 + minutes * 60_000;
  let stop = false;
  let sent = 0;
  let errors = 0;
  const latencies = [];
  // Syncers long-poll continuously.
  const syncLoops = syncUsers.map(async (u) => {
    let since = (await must(request(server.base, "GET", "/_matrix/client/v3/sync?timeout=0&filter=" + enc(JSON.stringify({ room: { timeline: { limit: 1 } } })), { token: u.token }))).next_batch;
    while (!stop) {
      const r = await request(server.base, "GET", `/_matrix/client/v3/sync?timeout=30000&since=${enc(since)}`, { token: u.token });
      if (r.status === 200) since = r.body.next_batch;
      else await new Promise((res) => setTimeout(res, 100));
    }
  });
  // Senders: each sends at rate/senders msg/s, on a fixed schedule.
  const interval = (1000 * senders) / rate;
  const sendLoops = sendUsers.map(async (u, i) => {
    let next = Date.now() + (interval * i) / senders;
    let n = 0;
    while (Date.now() < end) {
      const wait = next - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      next += interval;
      const t = performance.now();
      const r = await request(server.base, "PUT", `/_matrix/client/v3/rooms/${enc(u.room)}/send/m.room.message/s${i}_${n++}`, { token: u.token, body: { msgtype: "m.text", body: `steady ${n}` } });
      if (r.status === 200) sent++;
      else errors++;
      latencies.push(performance.now() - t);
    }
  });
  const timer = setInterval(() => void sample("load", t0), 10_000);
  for (const m of snapshots) setTimeout(() => process.kill(server.pid, "SIGUSR2"), m * 60_000).unref();
  await Promise.all(sendLoops);
  clearInterval(timer);
  stop = true;
  const loadEnd = Date.now();
  await sample("load", t0);
  // Wake the syncers so they finish: one last message per room.
  for (const room of rooms) await must(request(server.base, "PUT", `/_matrix/client/v3/rooms/${enc(room)}/send/m.room.message/end`, { token: owner.token, body: { msgtype: "m.text", body: "end" } }));
  await Promise.all(syncLoops);
  while (Date.now() - loadEnd < cooldownS * 1000) {
    await new Promise((r) => setTimeout(r, 10_000));
    await sample("after", t0);
  }

  const load = samples.filter((s) => s.phase === "load");
  const after2 = load.filter((s) => s.t >= 120);
  const slope = after2.length >= 2 ? ((after2[after2.length - 1].rss - after2[0].rss) / (after2[after2.length - 1].t - after2[0].t)) * 60 : NaN;
  latencies.sort((a, b) => a - b);
  console.log(`\n| soak (${db}, ${rate} msg/s offered, ${senders} senders, ${syncers} syncing, ${minutes} min) | result |\n|---|---|`);
  console.log(`| sent | ${(sent / ((loadEnd - t0) / 1000)).toFixed(0)} msg/s (${errors} errors), send p50 / p99 ${percentile(latencies, 50).toFixed(1)} / ${percentile(latencies, 99).toFixed(1)} ms |`);
  console.log(`| RSS idle (before load) | ${samples[0].rss.toFixed(0)} MB |`);
  console.log(`| RSS at 1 min / 2 min / end of load | ${(load.find((s) => s.t >= 60)?.rss ?? NaN).toFixed(0)} / ${(load.find((s) => s.t >= 120)?.rss ?? NaN).toFixed(0)} / ${load[load.length - 1].rss.toFixed(0)} MB |`);
  console.log(`| RSS peak (VmHWM) | ${server.rssPeakMb().toFixed(0)} MB |`);
  console.log(`| RSS slope after 2 min | ${slope.toFixed(1)} MB/min |`);
  console.log(`| RSS ${cooldownS} s after the load | ${samples[samples.length - 1].rss.toFixed(0)} MB |`);
  console.log(`| heap used at end of load / after | ${load[load.length - 1].heapUsed.toFixed(0)} / ${samples[samples.length - 1].heapUsed.toFixed(0)} MB |`);
} finally {
  await server.stop();
}
