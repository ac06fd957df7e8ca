/**
 * Bounded LRU caches. Entries are counted through `maxSize` rather than `max`: lru-cache preallocates arrays for
 * `max` entries up front (~3 MB per 200k), which an idle server would pay for every cache.
 */
import { LRUCache } from "lru-cache";

export function boundedCache<K extends NonNullable<unknown>, V extends NonNullable<unknown>>(maxEntries: number): LRUCache<K, V> {
  return new LRUCache<K, V>({ maxSize: maxEntries, sizeCalculation: () => 1 });
}
