/**
 * The metrics listener (Synapse's `enable_metrics` and `type: metrics`): a scrape is valid Prometheus text, and the
 * counters move with requests and sends; without enable_metrics the resource answers 404.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client, registerUser } from "../helpers/http.js";
import { startTestServer, type TestServer } from "../helpers/server.js";
import { createRoom, send } from "../helpers/rooms.js";

let ts: TestServer;
let c: Client;

const listeners = [{ port: 8008, bind_addresses: ["127.0.0.1"], type: "http", resources: [{ names: ["client", "federation", "keys", "health", "metrics"] }] }];

beforeAll(async () => {
  ts = await startTestServer({ config: { enable_metrics: true, listeners } });
  c = new Client(ts.baseUrl);
});
afterAll(async () => {
  await ts?.close();
});

type Sample = { name: string; labels: Record<string, string>; value: number };

/** Parses the Prometheus text format (0.0.4) strictly enough that a malformed line fails the test. */
function parse(text: string): { samples: Sample[]; types: Map<string, string> } {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  for (const line of text.split("\n")) {
    if (line === "") continue;
    if (line.startsWith("# HELP ")) continue;
    const t = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (t) {
      types.set(t[1]!, t[2]!);
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (-?[0-9.e+-]+|[Nn]a[Nn]|[+-]Inf)(?: -?\d+)?$/.exec(line);
    if (!m) throw new Error(`not a Prometheus line: ${line}`);
    const labels: Record<string, string> = {};
    if (m[2]) for (const l of m[2].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/g)) labels[l[1]!] = l[2]!;
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return { samples, types };
}

async function scrape(): Promise<{ samples: Sample[]; types: Map<string, string> }> {
  const res = await fetch(`${ts.baseUrl}/_synapse/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
  return parse(await res.text());
}

const value = (samples: Sample[], name: string, labels: Record<string, string> = {}) =>
  samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((n, s) => n + s.value, 0);

describe("metrics", () => {
  it("a scrape parses as Prometheus text and carries memory, caches, requests and event counters that move", async () => {
    const before = await scrape();
    expect(before.types.get("myelin_events_persisted_total")).toBe("counter");
    expect(before.types.get("myelin_http_request_duration_seconds")).toBe("histogram");
    expect(value(before.samples, "nodejs_heap_size_used_bytes")).toBeGreaterThan(0);
    expect(value(before.samples, "process_resident_memory_bytes")).toBeGreaterThan(0);
    expect(before.samples.some((s) => s.name === "nodejs_eventloop_lag_seconds")).toBe(true);
    expect(value(before.samples, "myelin_cache_max_bytes", { cache: "events" })).toBeGreaterThan(0);

    const u = await registerUser(c);
    const roomId = await createRoom(c, u);
    for (let i = 0; i < 3; i++) await send(c, u, roomId, `m${i}`);
    const after = await scrape();
    expect(value(after.samples, "myelin_events_persisted_total", { origin: "local" }) - value(before.samples, "myelin_events_persisted_total", { origin: "local" })).toBeGreaterThanOrEqual(3 + 5);
    expect(value(after.samples, "myelin_http_requests_total", { route: "/_matrix/client/v3/rooms/:roomId/send/:eventType/:txnId", code: "200" })).toBe(3);
    expect(value(after.samples, "myelin_event_persist_batch_size_count")).toBeGreaterThan(value(before.samples, "myelin_event_persist_batch_size_count"));
    expect(value(after.samples, "myelin_cache_entries", { cache: "events" })).toBeGreaterThan(0);
    expect(value(after.samples, "myelin_cache_bytes", { cache: "events" })).toBeGreaterThan(0);
    expect(value(after.samples, "myelin_sqlite_page_cache_limit_bytes") + value(after.samples, "myelin_database_connections", { state: "total" })).toBeGreaterThan(0);
  });

  it("without enable_metrics the resource answers 404 with a Matrix error", async () => {
    const off = await startTestServer({ config: { listeners } });
    try {
      const res = await fetch(`${off.baseUrl}/_synapse/metrics`);
      expect(res.status).toBe(404);
      expect(((await res.json()) as { errcode: string }).errcode).toBe("M_NOT_FOUND");
    } finally {
      await off.close();
    }
  });
});
