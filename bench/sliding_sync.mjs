// Sliding Sync benchmark (issue 16). Usage: npm run bench:sliding-sync -- [--db sqlite|postgres] [--rooms 5000] [--rounds 20]
// A user in N rooms (each with a name and one message) opens the app as Element X does: the first window of 20 rooms
// with timeline_limit 1 and the room-list state. Then a message into one room reaches a waiting connection
// (send → response, p50/p99), and the cost of an incremental response is compared with a user in 100 rooms, to show
// it does not grow with the number of rooms. Bounded: N ≤ 10,000; every request has the client's timeout.
import { enc, must, percentile, register, request, startServer } from "./lib.mjs";

const args = process.argv.slice(2);
const arg = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : def;
};
const db = arg("db", "sqlite");
const nRooms = Math.min(10_000, Number(arg("rooms", "5000")));
const rounds = Math.min(100, Number(arg("rounds", "20")));
const SS = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync";

async function inParallel(n, concurrency, fn) {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, concurrency) }, async () => {
      while (next < n) await fn(next++);
    }),
  );
}

/** Element X's room-list request, as it sends it. */
const roomList = (end) => ({
  conn_id: "room-list",
  lists: {
    all_rooms: {
      ranges: [[0, end]],
      timeline_limit: 1,
      required_state: [
        ["m.room.encryption", ""],
        ["m.room.member", "$LAZY"],
        ["m.room.member", "$ME"],
        ["m.room.name", ""],
        ["m.room.canonical_alias", ""],
        ["m.room.power_levels", ""],
        ["m.room.join_rules", ""],
        ["m.room.avatar", ""],
        ["m.room.topic", ""],
      ],
      filters: {},
    },
  },
  extensions: { account_data: { enabled: true }, receipts: { enabled: true, rooms: ["*"] }, typing: { enabled: true } },
});

const results = [];
const report = (name, value, unit, note = "") => {
  results.push({ name, value, unit, note });
  console.log(`  ${name}: ${typeof value === "number" ? value.toFixed(1) : value} ${unit} ${note}`);
};

const server = await startServer({ db });
try {
  const base = server.base;
  async function userInRooms(n, label) {
    const u = await register(base);
    const rooms = [];
    const t0 = performance.now();
    await inParallel(n, 8, async (i) => {
      const roomId = (await must(request(base, "POST", "/_matrix/client/v3/createRoom", { token: u.token, body: { preset: "private_chat", name: `${label} ${i}` } }))).room_id;
      await must(request(base, "PUT", `/_matrix/client/v3/rooms/${enc(roomId)}/send/m.room.message/t${i}`, { token: u.token, body: { msgtype: "m.text", body: `hello ${i}` } }));
      rooms.push(roomId);
    });
    console.log(`  (${n} rooms for ${label} made in ${((performance.now() - t0) / 1000).toFixed(0)} s)`);
    return { u, rooms };
  }
  const big = await userInRooms(nRooms, "big");
  const small = await userInRooms(100, "small");

  // Opening the app: a fresh connection each round (a new conn_id), first window of 20.
  const opens = [];
  let count;
  for (let i = 0; i < rounds; i++) {
    const t = performance.now();
    const r = await must(request(base, "POST", `${SS}?timeout=0`, { token: big.u.token, body: { ...roomList(19), conn_id: `open${i}` } }));
    opens.push(performance.now() - t);
    count = r.lists.all_rooms.count;
    if (Object.keys(r.rooms ?? {}).length !== 20) throw new Error(`expected 20 rooms in the window, got ${Object.keys(r.rooms ?? {}).length}`);
  }
  opens.sort((a, b) => a - b);
  report(`first window of 20 (timeline_limit 1, room-list state), user in ${nRooms} rooms, p50 (p99) of ${rounds}`, percentile(opens, 50), "ms", `(${percentile(opens, 99).toFixed(1)} ms; count ${count})`);

  /** A waiting connection, woken by a message: send → response, and the server CPU per incremental response. */
  async function live(who, label) {
    const first = await must(request(base, "POST", `${SS}?timeout=0`, { token: who.u.token, body: { ...roomList(19), conn_id: `live-${label}` } }));
    let pos = first.pos;
    const lat = [];
    let cpu = 0;
    for (let i = 0; i < rounds; i++) {
      const roomId = who.rooms[i % who.rooms.length];
      const waiting = request(base, "POST", `${SS}?timeout=10000&pos=${enc(pos)}`, { token: who.u.token, body: { ...roomList(19), conn_id: `live-${label}` } });
      await new Promise((r) => setTimeout(r, 30));
      const cpu0 = server.cpuMs();
      const t = performance.now();
      await must(request(base, "PUT", `/_matrix/client/v3/rooms/${enc(roomId)}/send/m.room.message/l${label}${i}`, { token: who.u.token, body: { msgtype: "m.text", body: `live ${i}` } }));
      const r = await must(waiting);
      lat.push(performance.now() - t);
      cpu += server.cpuMs() - cpu0;
      if (!r.rooms?.[roomId]) throw new Error(`the waiting connection was not told of the message in ${roomId}`);
      pos = r.pos;
    }
    lat.sort((a, b) => a - b);
    return { p50: percentile(lat, 50), p99: percentile(lat, 99), cpu: cpu / rounds };
  }
  const liveBig = await live(big, "big");
  const liveSmall = await live(small, "small");
  report(`message → waiting connection, user in ${nRooms} rooms, p50 / p99`, `${liveBig.p50.toFixed(1)} / ${liveBig.p99.toFixed(1)}`, "ms", `(server CPU per send + response ${liveBig.cpu.toFixed(2)} ms)`);
  report("message → waiting connection, user in 100 rooms, p50 / p99", `${liveSmall.p50.toFixed(1)} / ${liveSmall.p99.toFixed(1)}`, "ms", `(server CPU per send + response ${liveSmall.cpu.toFixed(2)} ms)`);
  report("peak RSS", server.rssPeakMb(), "MB");
} finally {
  await server.stop();
}
console.log(`\n| Sliding Sync (${db}, ${nRooms} rooms) | Result |\n|---|---|`);
for (const r of results) console.log(`| ${r.name} | ${typeof r.value === "number" ? r.value.toFixed(1) : r.value} ${r.unit} ${r.note} |`);
