// End-to-end encryption benchmarks (issue 13). Usage: npm run bench:e2ee -- [--db sqlite|postgres] [--users 1000]
//   [--only otk,claim,query,todevice]
// Every device has a real ed25519 identity key made here with node:crypto, and device keys and one-time keys are
// signed over their canonical JSON (Myelin's own encoder, from dist/ after `npm run build`), so the server checks
// real signatures. Each figure is the wall time of the whole operation as a client sees it and the CPU time the
// server process used for it; the median of several rounds, and the slowest.
import { generateKeyPairSync, randomBytes, sign } from "node:crypto";
import { fileURLToPath } from "node:url";
import { must, percentile, register, request, startServer } from "./lib.mjs";

const { canonicalJson } = await import(fileURLToPath(new URL("../dist/core/json/canonical.js", import.meta.url)));

const args = process.argv.slice(2);
const arg = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : def;
};
const db = arg("db", "sqlite");
const USERS = Number(arg("users", "1000"));
const only = new Set(arg("only", "otk,claim,query,todevice").split(","));
const OTK_DEVICES = 100;
const OTKS_PER_DEVICE = 50;
const CLAIM_DEVICES = 100;
const ROUNDS = 5;
const V3 = "/_matrix/client/v3";

const b64 = (buf) => Buffer.from(buf).toString("base64").replace(/=+$/, "");

/** A device's ed25519 identity: the key id, its public key (unpadded base64) and a signer over canonical JSON. */
function ed25519Identity(deviceId) {
  const { publicKey, privateKey } = generateKeyPairSync("ed25519");
  const pub = b64(Buffer.from(publicKey.export({ format: "jwk" }).x, "base64url"));
  return { keyId: `ed25519:${deviceId}`, pub, sign: (obj) => b64(sign(null, Buffer.from(canonicalJson(obj)), privateKey)) };
}

/** `obj` with `signatures.<userId>.<keyId>` added (unsigned and signatures excluded, as the spec signs). */
function signed(obj, userId, identity) {
  const { signatures: _s, unsigned: _u, ...rest } = obj;
  return { ...obj, signatures: { [userId]: { [identity.keyId]: identity.sign(rest) } } };
}

/** Registers a user and uploads its device keys; returns what the benchmarks need. */
async function deviceWithKeys(base) {
  const u = await register(base);
  const who = await must(request(base, "GET", `${V3}/account/whoami`, { token: u.token }));
  const deviceId = who.device_id;
  const identity = ed25519Identity(deviceId);
  const deviceKeys = signed(
    {
      user_id: u.userId,
      device_id: deviceId,
      algorithms: ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
      keys: { [`curve25519:${deviceId}`]: b64(randomBytes(32)), [identity.keyId]: identity.pub },
    },
    u.userId,
    identity,
  );
  await must(request(base, "POST", `${V3}/keys/upload`, { token: u.token, body: { device_keys: deviceKeys } }));
  return { ...u, deviceId, identity };
}

/** `n` signed_curve25519 one-time keys for a device, with ids `AAAA<round>_<i>`. */
function oneTimeKeys(d, round, n) {
  const keys = {};
  for (let i = 0; i < n; i++) keys[`signed_curve25519:AAAA${round}_${i}`] = signed({ key: b64(randomBytes(32)) }, d.userId, d.identity);
  return keys;
}

const results = [];
/** Runs `fn` ROUNDS times (after `prepare` for each round, untimed); reports median and slowest wall and CPU. */
async function measure(name, server, prepare, fn) {
  const walls = [];
  const cpus = [];
  for (let round = 0; round < ROUNDS; round++) {
    const input = await prepare(round);
    const cpu0 = server.cpuMs();
    const t0 = performance.now();
    await fn(input, round);
    walls.push(performance.now() - t0);
    // The server may finish work (a response's tail, GC) just after the client has the answer.
    await new Promise((r) => setTimeout(r, 50));
    cpus.push(server.cpuMs() - cpu0);
  }
  const sw = [...walls].sort((a, b) => a - b);
  const sc = [...cpus].sort((a, b) => a - b);
  const row = { name, wallMs: percentile(sw, 50), wallMaxMs: sw.at(-1), cpuMs: percentile(sc, 50), cpuMaxMs: sc.at(-1) };
  results.push(row);
  console.log(`${name}: wall ${row.wallMs.toFixed(0)} ms (slowest ${row.wallMaxMs.toFixed(0)}), server CPU ${row.cpuMs} ms (most ${row.cpuMaxMs})`);
}

const server = await startServer({ db });
try {
  const base = server.base;
  // Setup (untimed): USERS users with one device each and its device keys, 25 registrations at a time.
  const t0 = performance.now();
  const devices = [];
  for (let i = 0; i < USERS; i += 25) {
    devices.push(...(await Promise.all(Array.from({ length: Math.min(25, USERS - i) }, () => deviceWithKeys(base)))));
  }
  console.log(`setup: ${USERS} users with device keys in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  await server.analyze();

  if (only.has("otk")) {
    const uploaders = devices.slice(0, OTK_DEVICES);
    await measure(
      `one-time key upload, ${OTKS_PER_DEVICE} keys × ${OTK_DEVICES} devices in parallel`,
      server,
      (round) => uploaders.map((d) => ({ d, keys: oneTimeKeys(d, round, OTKS_PER_DEVICE) })),
      async (bodies) => {
        const res = await Promise.all(bodies.map(({ d, keys }) => must(request(base, "POST", `${V3}/keys/upload`, { token: d.token, body: { one_time_keys: keys } }))));
        if (res.some((r) => !(r.one_time_key_counts?.signed_curve25519 >= OTKS_PER_DEVICE))) throw new Error("upload: wrong one_time_key_counts");
      },
    );
  }

  if (only.has("claim")) {
    const targets = devices.slice(0, CLAIM_DEVICES);
    // Enough keys for every round, uploaded untimed when the upload benchmark did not run.
    if (!only.has("otk")) {
      await Promise.all(targets.map((d) => must(request(base, "POST", `${V3}/keys/upload`, { token: d.token, body: { one_time_keys: oneTimeKeys(d, "c", ROUNDS) } }))));
    }
    const claimer = devices.at(-1);
    const wanted = {};
    for (const d of targets) wanted[d.userId] = { [d.deviceId]: "signed_curve25519" };
    await measure(
      `/keys/claim for ${CLAIM_DEVICES} devices`,
      server,
      () => undefined,
      async () => {
        const r = await must(request(base, "POST", `${V3}/keys/claim`, { token: claimer.token, body: { one_time_keys: wanted } }));
        const got = targets.filter((d) => Object.keys(r.one_time_keys?.[d.userId]?.[d.deviceId] ?? {}).length === 1).length;
        if (got !== CLAIM_DEVICES) throw new Error(`claim: ${got} of ${CLAIM_DEVICES} keys`);
      },
    );
  }

  if (only.has("query")) {
    const asker = devices[0];
    const wanted = Object.fromEntries(devices.map((d) => [d.userId, []]));
    await measure(
      `/keys/query for ${USERS} local users`,
      server,
      () => undefined,
      async () => {
        const r = await must(request(base, "POST", `${V3}/keys/query`, { token: asker.token, body: { device_keys: wanted } }));
        const got = devices.filter((d) => r.device_keys?.[d.userId]?.[d.deviceId]?.keys?.[d.identity.keyId] === d.identity.pub).length;
        if (got !== USERS) throw new Error(`query: ${got} of ${USERS} devices`);
      },
    );
  }

  if (only.has("todevice")) {
    const sender = devices[0];
    const recipients = devices.slice(0, USERS);
    // An olm-sized ciphertext per device (a megolm session key shared with each), different for every device.
    const messages = () => {
      const m = {};
      for (const d of recipients) {
        m[d.userId] = {
          [d.deviceId]: { algorithm: "m.olm.v1.curve25519-aes-sha2", sender_key: sender.identity.pub, ciphertext: { [b64(randomBytes(32))]: { type: 0, body: b64(randomBytes(420)) } } },
        };
      }
      return m;
    };
    let txn = 0;
    await measure(
      `to-device fan-out, one message to ${recipients.length} devices (per-device content)`,
      server,
      () => messages(),
      async (m) => {
        await must(request(base, "PUT", `${V3}/sendToDevice/m.room.encrypted/bench${Date.now()}_${txn++}`, { token: sender.token, body: { messages: m } }));
      },
    );
    // Every recipient got it: the last one's /sync holds all the rounds' messages.
    const last = recipients.at(-1);
    const s = await must(request(base, "GET", `${V3}/sync?timeout=0`, { token: last.token }));
    const got = (s.to_device?.events ?? []).filter((e) => e.type === "m.room.encrypted" && e.sender === sender.userId).length;
    if (got !== ROUNDS) throw new Error(`to-device: the last recipient has ${got} of ${ROUNDS} messages`);
  }

  if (!server.alive()) throw new Error("the server exited");
  console.log(`\n| Benchmark (${db}, median of ${ROUNDS}) | Wall time | Server CPU |\n|---|---|---|`);
  for (const r of results) console.log(`| ${r.name} | ${r.wallMs.toFixed(0)} ms (slowest ${r.wallMaxMs.toFixed(0)}) | ${r.cpuMs} ms (most ${r.cpuMaxMs}) |`);
} finally {
  await server.stop();
}
