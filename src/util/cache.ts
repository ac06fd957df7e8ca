/**
 * In-memory caches, each bounded by an estimate of the bytes it holds rather than by a count of entries (an entry
 * can be a 200-byte id or a 10,000-member state map). Every cache is created through a CacheRegistry, which sizes it
 * from the config — Synapse's `caches.global_factor` and `caches.per_cache_factors`, and Myelin's
 * `caches.memory_budget` — and reports entries, bytes, hits and misses per cache for the metrics.
 */
import { LRUCache } from "lru-cache";

export interface CacheConfig {
  /** Synapse's `caches.global_factor`: multiplies every cache's default size (1 = Myelin's defaults). */
  globalFactor: number;
  /** Synapse's `caches.per_cache_factors`: a factor for one cache by name, instead of the global one. */
  perCacheFactors: Record<string, number>;
  /** `caches.memory_budget`: when set, the default sizes are scaled so that together they take this many bytes. */
  memoryBudgetBytes?: number;
}

export const DEFAULT_CACHE_CONFIG: CacheConfig = { globalFactor: 1, perCacheFactors: {} };

export interface CacheStats {
  name: string;
  entries: number;
  bytes: number;
  maxBytes: number;
  hits: number;
  misses: number;
  evictions: number;
}

/** A bounded LRU cache with hit and miss counts. */
export class Cache<K extends NonNullable<unknown>, V extends NonNullable<unknown>> {
  private readonly lru: LRUCache<K, V>;
  hits = 0;
  misses = 0;
  /** Entries pushed out to make room (not deleted or replaced). */
  evictions = 0;

  constructor(
    readonly name: string,
    readonly maxBytes: number,
    sizeOf: (value: V, key: K) => number,
  ) {
    this.lru = new LRUCache<K, V>({
      maxSize: Math.max(1, Math.floor(maxBytes)),
      sizeCalculation: (v, k) => Math.max(1, Math.ceil(sizeOf(v, k))),
      dispose: (_v, _k, reason) => {
        if (reason === "evict") this.evictions++;
      },
    });
  }

  get(key: K): V | undefined {
    const v = this.lru.get(key);
    if (v === undefined) this.misses++;
    else this.hits++;
    return v;
  }

  /** Reads without counting or refreshing the entry's place. */
  peek(key: K): V | undefined {
    return this.lru.peek(key);
  }

  has(key: K): boolean {
    return this.lru.has(key);
  }

  /** `bytes` overrides the cache's own estimate (when the caller knows better, e.g. a row's JSON length). */
  set(key: K, value: V, bytes?: number): void {
    this.lru.set(key, value, bytes !== undefined ? { size: Math.max(1, Math.ceil(bytes)) } : undefined);
  }

  delete(key: K): boolean {
    return this.lru.delete(key);
  }

  clear(): void {
    this.lru.clear();
  }

  get size(): number {
    return this.lru.size;
  }

  get bytes(): number {
    return this.lru.calculatedSize;
  }

  values(): IterableIterator<V> {
    return this.lru.values();
  }

  stats(): CacheStats {
    return { name: this.name, entries: this.lru.size, bytes: this.lru.calculatedSize, maxBytes: this.maxBytes, hits: this.hits, misses: this.misses, evictions: this.evictions };
  }
}

/** Rough per-entry overheads for size estimates: a Map slot, a small object, a one-byte string's header. */
export const ENTRY_BYTES = 64;
export const STRING_BYTES = (s: string) => 16 + s.length;

export class CacheRegistry {
  private readonly caches: Cache<NonNullable<unknown>, NonNullable<unknown>>[] = [];

  constructor(
    private readonly config: CacheConfig = DEFAULT_CACHE_CONFIG,
    /** The sum of every cache's default size, for `memory_budget` (DEFAULT_CACHE_BYTES when not given). */
    private readonly defaultsTotal = TOTAL_DEFAULT_BYTES,
  ) {}

  /** A cache named as in CACHE_DEFAULTS (its default size, scaled by the config). */
  create<K extends NonNullable<unknown>, V extends NonNullable<unknown>>(name: CacheName, sizeOf: (value: V, key: K) => number): Cache<K, V> {
    const cache = new Cache<K, V>(name, this.sizeFor(name), sizeOf);
    this.caches.push(cache as unknown as Cache<NonNullable<unknown>, NonNullable<unknown>>);
    return cache;
  }

  /** The configured size of a cache, in bytes. */
  sizeFor(name: CacheName): number {
    const base = CACHE_DEFAULTS[name];
    const budgetScale = this.config.memoryBudgetBytes !== undefined ? this.config.memoryBudgetBytes / this.defaultsTotal : 1;
    const factor = this.config.perCacheFactors[name] ?? this.config.globalFactor;
    return base * budgetScale * factor;
  }

  stats(): CacheStats[] {
    return this.caches.map((c) => c.stats());
  }
}

const MB = 1024 * 1024;

/**
 * Every cache and its default size in bytes (factor 1). docs/memory.md says what each holds and how many entries
 * that is.
 */
export const CACHE_DEFAULTS = {
  /** Parsed events by id (event_cache.ts). */
  events: 12 * MB,
  /** Full state maps by state group (rooms/state.ts). */
  state_maps: 16 * MB,
  /** State group deltas and their parents (rooms/state.ts). */
  state_groups: 4 * MB,
  /** Client transaction ids of recent sends (persister.ts); older ones are looked up in the database. */
  transaction_ids: 4 * MB,
  /** Users' stored push rules and their compiled form (push/rules.ts). */
  push_rules: 8 * MB,
  /** Compiled server-default push rules per user (push/rules.ts). */
  push_default_rules: 2 * MB,
  /** Joined members and local display names per room, for push evaluation (push/room_members.ts). */
  push_room_members: 8 * MB,
  /** Names shown in push notifications, per event (push/delivery.ts). */
  push_descriptions: 256 * 1024,
  /** Other servers' signing keys (keys.ts). */
  server_keys: 1 * MB,
  /** When other servers' keys were last fetched (keys.ts). */
  server_key_fetches: 512 * 1024,
  /** Server discovery: .well-known answers (federation/discovery.ts). */
  server_discovery: 1 * MB,
  /** Server discovery: SRV answers (federation/discovery.ts). */
  server_srv: 256 * 1024,
  /** Each user's rooms and memberships, and forgotten rooms, for /sync (rooms/user_rooms.ts). */
  user_rooms: 4 * MB,
  /** Each Sliding Sync user's room list, sorted, with its filter sets (sync/sliding_room_lists.ts). */
  sliding_room_lists: 8 * MB,
  /** The newest events of recently active rooms, for incremental /sync (rooms/recent_events.ts). */
  recent_events: 4 * MB,
  /** Unread notification counts per user and room, counted up to a stream position (push/counts.ts). */
  unread_counts: 4 * MB,
  /** Servers with joined members per room, at a state group, for sending events (federation/sender.ts). */
  room_servers: 1 * MB,
  /** Attempts to fill history gaps (federation/pdus.ts). */
  history_gaps: 512 * 1024,
  /** Recent URL previews and their failures, by URL (media/url_preview.ts). */
  url_previews: 1 * MB,
  /** Other servers' answers to federation /hierarchy, kept 5 minutes (rooms/hierarchy.ts). */
  remote_hierarchies: 2 * MB,
  /** Pagination sessions of client /hierarchy walks, kept 5 minutes (rooms/hierarchy.ts). */
  hierarchy_sessions: 2 * MB,
} as const;

export type CacheName = keyof typeof CACHE_DEFAULTS;

export const TOTAL_DEFAULT_BYTES = Object.values(CACHE_DEFAULTS).reduce((a, b) => a + b, 0);
