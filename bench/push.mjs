// Push benchmarks. Usage: npm run bench:push -- [--db sqlite|postgres] [--only rooms,sync,gateway] [--sizes 10,1000,10000]
// - rooms: send throughput and server CPU per message with push evaluation, in rooms of N local members
// - sync: initial and incremental /sync with notification counts for a user in 1,000 rooms
// - gateway: delivery throughput to a push gateway on 127.0.0.1 (100 users with pushers in one room)
import http from "node:http";
import { enc, must, percentile, register, request, startServer } from "./lib.mjs";

const args = process.argv.slice(2);
const arg = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : def;
};
const db = arg("db", "sqlite");
const only = new Set(arg("only", "rooms,sync,gateway").split(","));
const sizes = arg("sizes", "10,1000,10000").split(",").map(Number);
const results = [];
const report = (name, value, unit, note = "") => {
  results.push({ name, value, unit, note });
  console.log(`${name}: ${typeof value === "number" ? value.toFixed(value < 10 ? 2 : 0) : value} ${unit} ${note}`);
};

async function inParallel(n, concurrency, fn) {
  let next = 0;
  const out = new Array(n);
  await Promise.all(
    Array.from({ length: Math.min(n, concurrency) }, async () => {
      while (next < n) {
        const i = next++;
        out[i] = await fn(i);
      }
    }),
  );
  return out;
}

async function createRoom(base, token, extra = {}) {
  return (await must(request(base, "POST", "/_matrix/client/v3/createRoom", { token, body: { preset: "public_chat", ...extra } }))).room_id;
}

async function users(base, n) {
  return inParallel(n, 8, () => register(base));
}

/** One sender, 16 messages in flight, into a room of `size` local members: msg/s and server CPU per message. */
async function benchRoom(server, size) {
  const base = server.base;
  const sender = await register(base);
  const room = await createRoom(base, sender.token);
  const members = await users(base, size - 1);
  // Joins into one room are serialised by its lock; concurrency only overlaps the HTTP round trips.
  await inParallel(members.length, 8, (i) => must(request(base, "POST", `/_matrix/client/v3/rooms/${enc(room)}/join`, { token: members[i].token, body: {} })));
  await server.analyze();
  // Warm up: loads the room's members and rules into the caches.
  await inParallel(50, 16, (i) => must(request(base, "PUT", `/_matrix/client/v3/rooms/${enc(room)}/send/m.room.message/w${size}_${i}`, { token: sender.token, body: { msgtype: "m.text", body: `warm ${i}` } })));
  const total = 2000;
  const cpu0 = server.cpuMs();
  const t0 = performance.now();
  await inParallel(total, 16, (i) =>
    must(request(base, "PUT", `/_matrix/client/v3/rooms/${enc(room)}/send/m.room.message/s${size}_${i}`, { token: sender.token, body: { msgtype: "m.text", body: `hello ${i}`, "m.mentions": {} } })),
  );
  const secs = (performance.now() - t0) / 1000;
  const cpu = server.cpuMs() - cpu0;
  report(`send into a room of ${size} local members (one sender, 16 in flight)`, total / secs, "msg/s", `(server CPU ${(cpu / total).toFixed(2)} ms/msg)`);
  // A member's count is exact at the next /sync: all of it is unread.
  const s = await must(request(base, "GET", `/_matrix/client/v3/sync?filter=${enc(JSON.stringify({ room: { timeline: { limit: 1 } } }))}`, { token: members[0].token }));
  const count = s.rooms.join[room].unread_notifications.notification_count;
  if (count !== total + 50) throw new Error(`expected ${total + 50} notifications, got ${count}`);
}

/** A user in 1,000 rooms with 5 unread notifications each: initial /sync, then incremental after one new message. */
async function benchSync(server) {
  const base = server.base;
  const u = await register(base);
  const other = await register(base);
  const third = await register(base);
  const rooms = await inParallel(1000, 8, async (r) => {
    const room = await createRoom(base, other.token);
    await must(request(base, "POST", `/_matrix/client/v3/rooms/${enc(room)}/join`, { token: u.token, body: {} }));
    await must(request(base, "POST", `/_matrix/client/v3/rooms/${enc(room)}/join`, { token: third.token, body: {} }));
    for (let m = 0; m < 5; m++) await must(request(base, "PUT", `/_matrix/client/v3/rooms/${enc(room)}/send/m.room.message/c${r}_${m}`, { token: other.token, body: { msgtype: "m.text", body: `hi ${m}` } }));
    return room;
  });
  await server.analyze();
  const filter = enc(JSON.stringify({ room: { timeline: { limit: 1 } } }));
  const times = [];
  let s;
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    s = await must(request(base, "GET", `/_matrix/client/v3/sync?filter=${filter}`, { token: u.token }));
    times.push(performance.now() - t0);
  }
  const counted = Object.values(s.rooms.join).reduce((n, r) => n + r.unread_notifications.notification_count, 0);
  if (counted !== 5000) throw new Error(`expected 5000 notifications, got ${counted}`);
  times.sort((x, y) => x - y);
  report("initial /sync with counts, 1,000 rooms x 5 unread (median of 5)", percentile(times, 50), "ms");
  const inc = [];
  let since = s.next_batch;
  for (let i = 0; i < 50; i++) {
    await must(request(base, "PUT", `/_matrix/client/v3/rooms/${enc(rooms[i])}/send/m.room.message/n${i}`, { token: other.token, body: { msgtype: "m.text", body: "new" } }));
    const t0 = performance.now();
    const r = await must(request(base, "GET", `/_matrix/client/v3/sync?since=${enc(since)}&filter=${filter}`, { token: u.token }));
    inc.push(performance.now() - t0);
    since = r.next_batch;
  }
  inc.sort((x, y) => x - y);
  report("incremental /sync with counts, 1,000 rooms, one new message (p50 / p99)", `${percentile(inc, 50).toFixed(1)} / ${percentile(inc, 99).toFixed(1)}`, "ms");
}

/** 100 users with a pusher each in one room; the time until the gateway has every notification. */
async function benchGateway(server, gatewayPort) {
  const base = server.base;
  let received = 0;
  const gw = http.createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      received++;
      res.writeHead(200, { "content-type": "application/json" }).end('{"rejected":[]}');
    });
  });
  await new Promise((r) => gw.listen(gatewayPort, "127.0.0.1", r));
  try {
    const sender = await register(base);
    const room = await createRoom(base, sender.token);
    const members = await users(base, 100);
    await inParallel(members.length, 8, async (i) => {
      await must(request(base, "POST", `/_matrix/client/v3/rooms/${enc(room)}/join`, { token: members[i].token, body: {} }));
      await must(
        request(base, "POST", "/_matrix/client/v3/pushers/set", {
          token: members[i].token,
          body: { kind: "http", app_id: "bench", app_display_name: "b", device_display_name: "d", pushkey: `k${i}`, lang: "en", data: { url: `http://127.0.0.1:${gatewayPort}/_matrix/push/v1/notify` } },
        }),
      );
    });
    const messages = 50;
    const expected = messages * members.length;
    const t0 = performance.now();
    const cpu0 = server.cpuMs();
    for (let i = 0; i < messages; i++) await must(request(base, "PUT", `/_matrix/client/v3/rooms/${enc(room)}/send/m.room.message/g${i}`, { token: sender.token, body: { msgtype: "m.text", body: `push ${i}` } }));
    const deadline = Date.now() + 120_000;
    while (received < expected && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const secs = (performance.now() - t0) / 1000;
    const cpu = server.cpuMs() - cpu0;
    report("push gateway delivery (100 pushers, 50 messages)", received / secs, "pushes/s", `(${received}/${expected} delivered, server CPU ${(cpu / received).toFixed(2)} ms/push)`);
  } finally {
    gw.close();
  }
}

const server = await startServer({ db, config: { ip_range_whitelist: ["127.0.0.1"] } });
try {
  if (only.has("rooms")) for (const size of sizes) await benchRoom(server, size);
  if (only.has("sync")) await benchSync(server);
  if (only.has("gateway")) await benchGateway(server, 18090);
  report("memory after the runs (RSS)", server.rssMb(), "MB");
} finally {
  await server.stop();
}
console.log(`\n| benchmark (${db}) | result |\n|---|---|`);
for (const r of results) console.log(`| ${r.name} | ${typeof r.value === "number" ? r.value.toFixed(r.value < 10 ? 2 : 0) : r.value} ${r.unit} ${r.note} |`);
