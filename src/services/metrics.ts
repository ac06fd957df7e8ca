/**
 * Prometheus metrics (Synapse's `enable_metrics` and `type: metrics` listeners), with prom-client. Hot paths only
 * increment plain counters and observe histograms; everything else (cache sizes, memory, pools, queues) is read when
 * the metrics are scraped. docs/memory.md explains how to read the memory figures.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { CacheRegistry } from "../util/cache.js";

/** What the metrics read from the rest of the server when scraped. */
export interface MetricSources {
  caches: CacheRegistry;
  /** Pending PDUs and EDUs per federation destination with anything queued. */
  federationQueues: () => Map<string, number>;
  /** Database connections: in use, idle and waiting requests (PostgreSQL pool), when there is a pool. */
  databasePool: () => { total: number; idle: number; waiting: number } | undefined;
  /** SQLite's page cache limit per connection, in bytes, when on SQLite. */
  sqlitePageCacheBytes: () => number | undefined;
  /** Password hashes waiting for their turn. */
  passwordHashQueue: () => number;
  /** Long-polling /sync requests now waiting, and woken by a notification since start. */
  waitingSyncs: () => number;
  syncWakeups: () => number;
}

export class Metrics {
  readonly registry = new Registry();
  readonly httpRequests: Counter<"method" | "route" | "code">;
  readonly httpDuration: Histogram<"method" | "route">;
  readonly eventsPersisted: Counter<"origin">;
  readonly persistBatchSize: Histogram;
  readonly pushDeliveries: Counter<"outcome">;

  constructor() {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: 20 });
    this.httpRequests = new Counter({ name: "myelin_http_requests_total", help: "HTTP requests answered, by route and status", labelNames: ["method", "route", "code"], registers });
    this.httpDuration = new Histogram({
      name: "myelin_http_request_duration_seconds",
      help: "Time to answer HTTP requests, by route (long-polling /sync included)",
      labelNames: ["method", "route"],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.eventsPersisted = new Counter({ name: "myelin_events_persisted_total", help: "Events written, by origin (local sends or received over federation)", labelNames: ["origin"], registers });
    this.persistBatchSize = new Histogram({ name: "myelin_event_persist_batch_size", help: "Events per group commit", buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256], registers });
    this.pushDeliveries = new Counter({ name: "myelin_push_deliveries_total", help: "Notifications sent to push gateways, by outcome", labelNames: ["outcome"], registers });
  }

  /** Adds the gauges read at scrape time. */
  observe(sources: MetricSources): void {
    const registers = [this.registry];
    const caches = (name: string, help: string, pick: (s: ReturnType<CacheRegistry["stats"]>[number]) => number) =>
      new Gauge({
        name,
        help,
        labelNames: ["cache"],
        registers,
        collect() {
          for (const s of sources.caches.stats()) this.set({ cache: s.name }, pick(s));
        },
      });
    caches("myelin_cache_entries", "Entries held per cache", (s) => s.entries);
    caches("myelin_cache_bytes", "Estimated bytes held per cache", (s) => s.bytes);
    caches("myelin_cache_max_bytes", "Configured size per cache (caches.*)", (s) => s.maxBytes);
    caches("myelin_cache_hits", "Cache hits since start", (s) => s.hits);
    caches("myelin_cache_misses", "Cache misses since start", (s) => s.misses);
    caches("myelin_cache_evictions", "Entries evicted to stay within size since start", (s) => s.evictions);
    new Gauge({
      name: "myelin_federation_queue_depth",
      help: "PDUs and EDUs waiting per destination",
      labelNames: ["destination"],
      registers,
      collect() {
        this.reset();
        for (const [d, n] of sources.federationQueues()) this.set({ destination: d }, n);
      },
    });
    new Gauge({
      name: "myelin_database_connections",
      help: "PostgreSQL pool connections by state (total, idle) and requests waiting for one",
      labelNames: ["state"],
      registers,
      collect() {
        const p = sources.databasePool();
        if (!p) return;
        this.set({ state: "total" }, p.total);
        this.set({ state: "idle" }, p.idle);
        this.set({ state: "waiting" }, p.waiting);
      },
    });
    new Gauge({
      name: "myelin_sqlite_page_cache_limit_bytes",
      help: "SQLite page cache limit per connection",
      registers,
      collect() {
        const b = sources.sqlitePageCacheBytes();
        if (b !== undefined) this.set(b);
      },
    });
    new Gauge({ name: "myelin_password_hash_queue", help: "Password hashes waiting to run", registers, collect() { this.set(sources.passwordHashQueue()); } });
    new Gauge({ name: "myelin_waiting_syncs", help: "Long-polling /sync requests waiting", registers, collect() { this.set(sources.waitingSyncs()); } });
    new Counter({
      name: "myelin_sync_wakeups_total",
      help: "Waiting /sync requests woken by a notification",
      registers,
      collect() {
        this.reset();
        this.inc(sources.syncWakeups());
      },
    });
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
