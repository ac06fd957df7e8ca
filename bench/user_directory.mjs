// User directory benchmark. Usage: npm run bench:user-directory -- [--db sqlite|postgres] [--users 100000] [--requests 200]
// 100,000 users are bulk-loaded straight into the server's database through Myelin's own storage layer (registering
// them over HTTP would take most of an hour): accounts, directory entries (indexed by the real tokenizer), all of
// them in one large public room, and 1,000 of them sharing a private room with the searcher. Then POST
// /user_directory/search over HTTP, sequentially, per kind of term: p50/p99 latency. Last, the incremental cost: in a
// private room of --members registered users, how long from a join's 200 until a member finds the joiner.
import { must, percentile, register, request, startServer } from "./lib.mjs";

const args = process.argv.slice(2);
const arg = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : def;
};
const dbKind = arg("db", "sqlite");
const nUsers = Number(arg("users", "100000"));
const nRequests = Number(arg("requests", "200"));
const nMembers = Number(arg("members", "500"));

const FIRST = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory", "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "yuki", "zoë", "åsa", "jürgen", "renée", "søren", "amir", "bao", "chen", "dmitri", "emeka", "fatima", "goran", "hana", "igor", "jin", "kofi", "lena", "mateo", "noor", "oskar", "priya", "quentin", "rosa", "sanjay", "tomás", "uma", "vera", "wei", "ximena", "yusuf"];
const LAST = ["smith", "jones", "garcía", "müller", "nguyen", "kim", "patel", "rossi", "silva", "novak", "kowalski", "haddad", "ivanova", "tanaka", "okafor", "larsen", "dubois", "schmidt", "cohen", "murphy", "andersson", "yilmaz", "costa", "popescu", "wang", "singh", "mendoza", "fischer", "weber", "keller"];
const cap = (s) => s.charAt(0).toUpperCase() + s.slice(1);

const { openDatabase } = await import("../dist/storage/database.js");
const { Storage } = await import("../dist/storage/storage.js");

const server = await startServer({ db: dbKind });
try {
  const searcher = await register(server.base, "searcher");
  const storage = new Storage(await openDatabase(server.storageConfig));
  const dir = storage.userDirectory;
  const t0 = performance.now();
  const PAGE = 5000;
  const PUBLIC_ROOM = "!big:bench.local";
  const PRIVATE_ROOM = "!private:bench.local";
  for (let start = 0; start < nUsers; start += PAGE) {
    const entries = [];
    for (let i = start; i < Math.min(nUsers, start + PAGE); i++) {
      const first = FIRST[i % FIRST.length];
      const last = LAST[Math.floor(i / FIRST.length) % LAST.length];
      entries.push({ user_id: `@${first.normalize("NFD").replace(/[^a-z]/g, "")}.${last.normalize("NFD").replace(/[^a-z]/g, "")}${i}:bench.local`, display_name: `${cap(first)} ${cap(last)}`, avatar_url: i % 3 === 0 ? `mxc://bench.local/a${i}` : null });
    }
    await storage.transaction(async (tx) => {
      for (let j = 0; j < entries.length; j += 500) {
        await tx.db.insertInto("users").values(entries.slice(j, j + 500).map((e) => ({ user_id: e.user_id, password_hash: null, created_ts: 0, is_admin: 0, is_guest: 0, deactivated: 0 }))).execute();
        await tx.db.insertInto("users_in_public_rooms").values(entries.slice(j, j + 500).map((e) => ({ user_id: e.user_id, room_id: PUBLIC_ROOM }))).execute();
      }
    });
    await dir.upsertMany(entries);
    if (start < 1000) {
      const pairs = entries.slice(0, Math.min(1000 - start, entries.length)).map((e) => [searcher.userId, e.user_id]);
      await dir.setRoom(PRIVATE_ROOM, [], pairs);
    }
  }
  const loadS = (performance.now() - t0) / 1000;
  const tokens = await storage.db.selectFrom("user_directory_tokens").select((eb) => eb.fn.countAll().as("n")).executeTakeFirst();
  console.log(`loaded ${nUsers} users (${tokens.n} index rows) in ${loadS.toFixed(1)} s (${dbKind})`);
  await storage.close();
  await server.analyze();

  const terms = [
    ["one letter, most users match", "a"],
    ["two letters", "al"],
    ["a first name (2,000 users)", "alice"],
    ["first and last name (~70 users)", "alice smith"],
    ["unicode, case-folded", "ZOË MÜL"],
    ["an exact localpart", "bob.jones51"],
    ["a full user id", "@carol.jones52:bench.local"],
    ["no match", "zzzqqq"],
  ];
  console.log(`| Term | Results | p50 | p99 |`);
  console.log(`|---|---|---|---|`);
  for (const [label, term] of terms) {
    const body = { search_term: term, limit: 10 };
    for (let i = 0; i < 20; i++) await must(request(server.base, "POST", "/_matrix/client/v3/user_directory/search", { token: searcher.token, body }));
    const times = [];
    let found = 0;
    for (let i = 0; i < nRequests; i++) {
      const s = performance.now();
      const r = await must(request(server.base, "POST", "/_matrix/client/v3/user_directory/search", { token: searcher.token, body }));
      times.push(performance.now() - s);
      found = r.results.length;
    }
    times.sort((a, b) => a - b);
    console.log(`| ${label}: \`${term}\` | ${found} | ${percentile(times, 50).toFixed(1)} ms | ${percentile(times, 99).toFixed(1)} ms |`);
  }

  // Incremental: joins into a private room of nMembers (each join writes ~2 × members pair rows).
  const owner = await register(server.base);
  const room = (await must(request(server.base, "POST", "/_matrix/client/v3/createRoom", { token: owner.token, body: { preset: "private_chat" } }))).room_id;
  const members = [];
  for (let i = 0; i < nMembers; i++) members.push(await register(server.base));
  for (const m of members) {
    await must(request(server.base, "POST", `/_matrix/client/v3/rooms/${encodeURIComponent(room)}/invite`, { token: owner.token, body: { user_id: m.userId } }));
    await must(request(server.base, "POST", `/_matrix/client/v3/rooms/${encodeURIComponent(room)}/join`, { token: m.token, body: {} }));
  }
  // The directory works behind the joins: wait until it has caught up with the last one before measuring.
  const caughtUp = performance.now();
  const last = members[members.length - 1];
  for (const deadline = Date.now() + 120_000; ; ) {
    const r = await must(request(server.base, "POST", "/_matrix/client/v3/user_directory/search", { token: owner.token, body: { search_term: last.userId } }));
    if (r.results.some((x) => x.user_id === last.userId)) break;
    if (Date.now() > deadline) throw new Error("the directory never caught up with the joins");
  }
  console.log(`directory caught up with ${nMembers} joins ${(performance.now() - caughtUp).toFixed(0)} ms after the last one returned`);
  const lags = [];
  for (let i = 0; i < 20; i++) {
    const joiner = await register(server.base, `joiner${i}_${Date.now().toString(36)}`);
    await must(request(server.base, "POST", `/_matrix/client/v3/rooms/${encodeURIComponent(room)}/invite`, { token: owner.token, body: { user_id: joiner.userId } }));
    const s0 = performance.now();
    await must(request(server.base, "POST", `/_matrix/client/v3/rooms/${encodeURIComponent(room)}/join`, { token: joiner.token, body: {} }));
    const deadline = Date.now() + 10_000;
    for (;;) {
      const r = await must(request(server.base, "POST", "/_matrix/client/v3/user_directory/search", { token: owner.token, body: { search_term: joiner.userId } }));
      if (r.results.some((x) => x.user_id === joiner.userId)) break;
      if (Date.now() > deadline) throw new Error("the joiner never appeared in the directory");
    }
    lags.push(performance.now() - s0);
  }
  if (process.env.BENCH_VERBOSE) console.log(lags.map((l) => l.toFixed(0)).join(" "));
  lags.sort((a, b) => a - b);
  console.log(`join into a private room of ${nMembers + 1} → found by a member: p50 ${percentile(lags, 50).toFixed(1)} ms, max ${lags[lags.length - 1].toFixed(1)} ms (join included)`);
} finally {
  await server.stop();
}
