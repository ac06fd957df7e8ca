// Space hierarchy benchmark. Usage: npm run bench:hierarchy -- [--db sqlite|postgres] [--children 1000] [--walks 5]
// A space with N public child rooms (plus one sub-space of 10 rooms): the time to walk it whole with GET
// /_matrix/client/v1/rooms/{id}/hierarchy (pages of 50, following next_batch), per page p50/p99, and server CPU per
// room shown. Bounded: N ≤ 5,000, and every request has the client's timeout.
import { enc, must, percentile, register, request, startServer } from "./lib.mjs";

const args = process.argv.slice(2);
const arg = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : def;
};
const db = arg("db", "sqlite");
const children = Math.min(5000, Number(arg("children", "1000")));
const walks = Math.min(20, Number(arg("walks", "5")));

async function inParallel(n, concurrency, fn) {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, concurrency) }, async () => {
      while (next < n) await fn(next++);
    }),
  );
}

const createRoom = async (base, token, body) => (await must(request(base, "POST", "/_matrix/client/v3/createRoom", { token, body: { preset: "public_chat", ...body } }))).room_id;
const addChild = (base, token, space, child, content) => must(request(base, "PUT", `/_matrix/client/v3/rooms/${enc(space)}/state/m.space.child/${enc(child)}`, { token, body: content }));

const server = await startServer({ db });
try {
  const base = server.base;
  const owner = await register(base);
  const viewer = await register(base);
  const via = [server.serverName];
  const space = await createRoom(base, owner.token, { name: "Bench space", creation_content: { type: "m.space" } });
  const sub = await createRoom(base, owner.token, { name: "Sub-space", creation_content: { type: "m.space" } });
  const t0 = performance.now();
  const rooms = [];
  await inParallel(children, 8, async (i) => rooms.push(await createRoom(base, owner.token, { name: `Room ${i}` })));
  // One writer per room: the child events go into the space one after another, from 8 requests in flight.
  await inParallel(rooms.length, 8, (i) => addChild(base, owner.token, space, rooms[i], { via, order: String(i).padStart(5, "0") }));
  await addChild(base, owner.token, space, sub, { via });
  for (let i = 0; i < 10; i++) await addChild(base, owner.token, sub, rooms[i], { via });
  await must(request(base, "POST", `/_matrix/client/v3/join/${enc(space)}`, { token: viewer.token, body: {} }));
  console.log(`setup: ${children} children in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  await server.analyze();

  const walk = async () => {
    const pageMs = [];
    let from;
    let shown = 0;
    do {
      const q = from ? `?from=${enc(from)}` : "";
      const s = performance.now();
      const res = await must(request(base, "GET", `/_matrix/client/v1/rooms/${enc(space)}/hierarchy${q}`, { token: viewer.token }));
      pageMs.push(performance.now() - s);
      shown += res.rooms.length;
      from = res.next_batch;
    } while (from);
    return { pageMs, shown };
  };
  await walk(); // warm-up: JIT and caches
  const totals = [];
  const pages = [];
  let shown = 0;
  const cpu0 = server.cpuMs();
  for (let w = 0; w < walks; w++) {
    const s = performance.now();
    const r = await walk();
    totals.push(performance.now() - s);
    pages.push(...r.pageMs);
    shown = r.shown;
  }
  const cpuPerRoom = (server.cpuMs() - cpu0) / (walks * shown);
  totals.sort((a, b) => a - b);
  pages.sort((a, b) => a - b);
  console.log(`rooms shown per walk: ${shown} (${Math.ceil(shown / 50)} pages of up to 50)`);
  console.log(`whole walk, median of ${walks}: ${percentile(totals, 50).toFixed(0)} ms`);
  console.log(`per page p50 / p99: ${percentile(pages, 50).toFixed(1)} / ${percentile(pages, 99).toFixed(1)} ms`);
  console.log(`server CPU per room shown: ${cpuPerRoom.toFixed(2)} ms; RSS ${server.rssMb().toFixed(0)} MB`);
} finally {
  await server.stop();
}
