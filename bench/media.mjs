// Media repository benchmark. Usage: npm run bench:media -- [--db sqlite|postgres] [--small 200] [--large 2] [--readers 50]
// Against one Myelin process over loopback: uploads and authenticated downloads of 1 MB files (8 in flight) and of
// 100 MB files (one at a time), then 50 clients downloading one 20 MB file at once. Reports MB/s, the server's CPU
// per MB, and its RSS (before, peak, after), so a buffered file would show as memory. Bodies are generated and
// streamed by the benchmark, never held whole on the client either. Bounded: at most 2,000 small and 5 large files.
import { randomBytes } from "node:crypto";
import http from "node:http";
import { Readable } from "node:stream";
import { register, startServer } from "./lib.mjs";

const args = process.argv.slice(2);
const arg = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : def;
};
const db = arg("db", "sqlite");
const nSmall = Math.min(2000, Number(arg("small", "200")));
const nLarge = Math.min(5, Number(arg("large", "2")));
const nReaders = Math.min(200, Number(arg("readers", "50")));
const MB = 1024 * 1024;
const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });

/** A body of `bytes` random-looking bytes, produced in 64 KiB chunks (one random block reused). */
function body(bytes) {
  const block = randomBytes(64 * 1024);
  let left = bytes;
  return Readable.from(
    (function* () {
      while (left > 0) {
        const n = Math.min(left, block.length);
        left -= n;
        yield n === block.length ? block : block.subarray(0, n);
      }
    })(),
  );
}

function upload(base, token, bytes) {
  return new Promise((resolve, reject) => {
    const req = http.request(`${base}/_matrix/media/v3/upload?filename=bench.bin`, { method: "POST", agent, headers: { authorization: `Bearer ${token}`, "content-type": "application/octet-stream", "content-length": bytes } }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        if (res.statusCode !== 200) return reject(new Error(`upload: HTTP ${res.statusCode}: ${text}`));
        resolve(JSON.parse(text).content_uri);
      });
    });
    req.on("error", reject);
    body(bytes).pipe(req);
  });
}

/** Downloads through the authenticated endpoint, counting bytes without keeping them. */
function download(base, token, mxc) {
  const [server, id] = mxc.slice("mxc://".length).split("/");
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    let ttfb;
    http
      .get(`${base}/_matrix/client/v1/media/download/${server}/${id}`, { agent, headers: { authorization: `Bearer ${token}` } }, (res) => {
        let n = 0;
        res.on("data", (c) => {
          ttfb ??= performance.now() - t0;
          n += c.length;
        });
        res.on("end", () => (res.statusCode === 200 ? resolve({ bytes: n, ttfb }) : reject(new Error(`download: HTTP ${res.statusCode}`))));
      })
      .on("error", reject);
  });
}

async function inParallel(n, concurrency, fn) {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, concurrency) }, async () => {
      while (next < n) await fn(next++);
    }),
  );
}

const rows = [];
const report = (name, value, note = "") => {
  rows.push([name, value, note]);
  console.log(`  ${name}: ${value} ${note}`);
};

const server = await startServer({ db, config: { max_upload_size: "200M", rc_media_create: { per_second: 1000, burst_count: 1000 } } });
try {
  const { base } = server;
  const u = await register(base);
  const measure = async (label, bytes, fn) => {
    const cpu0 = server.cpuMs();
    const t0 = performance.now();
    await fn();
    const secs = (performance.now() - t0) / 1000;
    const cpu = server.cpuMs() - cpu0;
    report(label, `${(bytes / MB / secs).toFixed(0)} MB/s`, `(${secs.toFixed(2)} s; server CPU ${(cpu / (bytes / MB)).toFixed(1)} ms/MB; RSS ${server.rssMb().toFixed(0)} MB, peak ${server.rssPeakMb().toFixed(0)} MB)`);
  };
  console.log(`Media benchmark, ${db}: RSS at start ${server.rssMb().toFixed(0)} MB`);

  const small = [];
  await measure(`upload ${nSmall} × 1 MB, 8 in flight`, nSmall * MB, () => inParallel(nSmall, 8, async (i) => (small[i] = await upload(base, u.token, MB))));
  await measure(`download ${nSmall} × 1 MB, 8 in flight`, nSmall * MB, () => inParallel(nSmall, 8, async (i) => download(base, u.token, small[i])));

  const large = [];
  await measure(`upload ${nLarge} × 100 MB, one at a time`, nLarge * 100 * MB, async () => {
    for (let i = 0; i < nLarge; i++) large.push(await upload(base, u.token, 100 * MB));
  });
  await measure(`download ${nLarge} × 100 MB, one at a time`, nLarge * 100 * MB, async () => {
    for (const m of large) await download(base, u.token, m);
  });

  const shared = await upload(base, u.token, 20 * MB);
  await new Promise((r) => setTimeout(r, 2000));
  const before = server.rssMb();
  let peak = before;
  const sampler = setInterval(() => (peak = Math.max(peak, server.rssMb())), 50);
  const ttfbs = [];
  await measure(`${nReaders} clients download one 20 MB file at once`, nReaders * 20 * MB, () =>
    Promise.all(Array.from({ length: nReaders }, async () => ttfbs.push((await download(base, u.token, shared)).ttfb))),
  );
  clearInterval(sampler);
  ttfbs.sort((a, b) => a - b);
  report(`RSS while ${nReaders} clients download`, `${before.toFixed(0)} → peak ${peak.toFixed(0)} MB`, `(+${(peak - before).toFixed(0)} MB; time to first byte p50 ${ttfbs[Math.floor(ttfbs.length / 2)].toFixed(1)} ms)`);

  console.log(`\n| Media (${db}) | Result |\n|---|---|`);
  for (const [n, v, note] of rows) console.log(`| ${n} | ${v} ${note} |`);
} finally {
  await server.stop();
}
