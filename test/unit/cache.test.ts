/**
 * Caches bounded by bytes (util/cache.ts): sizes from Synapse's `caches.global_factor` / `per_cache_factors` and
 * Myelin's `caches.memory_budget`, eviction by estimated size, hit/miss/eviction counts; the config keys' parsing.
 */
import { describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config/config.js";
import { ConfigError } from "../../src/config/reader.js";
import { CACHE_DEFAULTS, CacheRegistry, TOTAL_DEFAULT_BYTES } from "../../src/util/cache.js";

const config = (caches: unknown) => parseConfig({ server_name: "example.org", listeners: [{ port: 8008 }], caches }, "/etc/myelin");

describe("cache sizes", () => {
  it("defaults, global factor, per-cache factor and memory budget", () => {
    expect(new CacheRegistry().sizeFor("events")).toBe(CACHE_DEFAULTS.events);
    expect(new CacheRegistry({ globalFactor: 0.5, perCacheFactors: {} }).sizeFor("events")).toBe(CACHE_DEFAULTS.events / 2);
    expect(new CacheRegistry({ globalFactor: 0.5, perCacheFactors: { events: 2 } }).sizeFor("events")).toBe(CACHE_DEFAULTS.events * 2);
    const budget = new CacheRegistry({ globalFactor: 1, perCacheFactors: {}, memoryBudgetBytes: TOTAL_DEFAULT_BYTES / 4 });
    const total = Object.keys(CACHE_DEFAULTS).reduce((n, k) => n + budget.sizeFor(k as keyof typeof CACHE_DEFAULTS), 0);
    expect(total).toBeCloseTo(TOTAL_DEFAULT_BYTES / 4, 0);
  });

  it("evicts by estimated bytes, least recently used first, and counts hits, misses and evictions", () => {
    const reg = new CacheRegistry({ globalFactor: 1, perCacheFactors: {}, memoryBudgetBytes: TOTAL_DEFAULT_BYTES * (1000 / CACHE_DEFAULTS.events) });
    const c = reg.create<string, string>("events", (v) => v.length);
    expect(c.maxBytes).toBeCloseTo(1000, 0);
    c.set("a", "x".repeat(400));
    c.set("b", "x".repeat(400));
    expect(c.get("a")).toBeDefined(); // a is now the most recent
    c.set("c", "x".repeat(400)); // over 1000: b goes
    expect(c.get("b")).toBeUndefined();
    expect(c.get("a")).toBeDefined();
    expect(c.bytes).toBe(800);
    const s = reg.stats().find((x) => x.name === "events")!;
    expect(s).toMatchObject({ entries: 2, bytes: 800, hits: 2, misses: 1, evictions: 1 });
    // A caller's own estimate wins over the cache's.
    c.set("d", "tiny", 500);
    expect(c.bytes).toBeLessThanOrEqual(1000);
  });
});

describe("caches config", () => {
  it("reads Synapse's keys and Myelin's memory budget", () => {
    expect(config({ global_factor: 2, per_cache_factors: { events: 0.5 } }).config.caches).toEqual({ globalFactor: 2, perCacheFactors: { events: 0.5 } });
    expect(config({ memory_budget: "64M" }).config.caches.memoryBudgetBytes).toBe(64 * 1024 * 1024);
    expect(config({ cache_autotuning: { max_cache_memory_usage: "1G", target_cache_memory_usage: "758M", min_cache_ttl: "5m" } }).config.caches.memoryBudgetBytes).toBe(1024 ** 3);
    expect(config({ expire_caches: false, cache_entry_ttl: "30m", sync_response_cache_duration: "2m" }).warnings).toEqual([]);
  });

  it("warns about Synapse cache names Myelin does not have; refuses nonsense", () => {
    expect(config({ per_cache_factors: { get_users_who_share_room_with_user: 2 } }).warnings.join(" ")).toContain('no cache named "get_users_who_share_room_with_user"');
    expect(() => config({ global_factor: 0 })).toThrow(ConfigError);
    expect(() => config({ global_factor: "big" })).toThrow(ConfigError);
    expect(() => config({ memory_budget: "lots" })).toThrow(ConfigError);
  });
});
