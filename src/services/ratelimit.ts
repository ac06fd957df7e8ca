/**
 * Rate limiting with Synapse's `rc_*` semantics: a token bucket per key (IP address, user id…) holding at most
 * `burst_count` actions and refilling at `per_second`. Exceeding it is 429 M_LIMIT_EXCEEDED with retry_after_ms.
 */
import type { RateLimit } from "../config/config.js";
import { limitExceeded } from "../errors.js";

interface Bucket {
  /** Actions currently "in" the bucket. */
  level: number;
  updatedMs: number;
}

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();

  constructor(
    private readonly limit: RateLimit,
    private readonly now: () => number = Date.now,
  ) {}

  /** Records an action for `key`, throwing M_LIMIT_EXCEEDED when the bucket is full. */
  take(key: string, cost = 1): void {
    const retry = this.tryTake(key, cost);
    if (retry > 0) throw limitExceeded(retry);
  }

  /** Returns 0 when allowed (and records it), or the milliseconds until it would be. */
  tryTake(key: string, cost = 1): number {
    if (this.disabled()) return 0;
    const now = this.now();
    const b = this.drain(key, now);
    if (b.level + cost > this.limit.burstCount) {
      if (this.limit.perSecond <= 0) return 60_000;
      return ((b.level + cost - this.limit.burstCount) / this.limit.perSecond) * 1000;
    }
    b.level += cost;
    this.buckets.set(key, b);
    this.prune(now);
    return 0;
  }

  /** Throws M_LIMIT_EXCEEDED when an action would not be allowed now, without recording one. */
  check(key: string, cost = 1): void {
    if (this.disabled()) return;
    const now = this.now();
    const b = this.drain(key, now);
    if (b.level + cost > this.limit.burstCount) {
      throw limitExceeded(this.limit.perSecond <= 0 ? 60_000 : ((b.level + cost - this.limit.burstCount) / this.limit.perSecond) * 1000);
    }
  }

  /** Whether an action would be allowed now, without recording it. */
  wouldAllow(key: string, cost = 1): boolean {
    if (this.disabled()) return true;
    return this.drain(key, this.now()).level + cost <= this.limit.burstCount;
  }

  /** per_second 0 with burst_count 0 means no limit at all (take, check and wouldAllow must agree on it). */
  private disabled(): boolean {
    return this.limit.perSecond <= 0 && this.limit.burstCount <= 0;
  }

  reset(key: string): void {
    this.buckets.delete(key);
  }

  private drain(key: string, now: number): Bucket {
    const b = this.buckets.get(key);
    if (!b) return { level: 0, updatedMs: now };
    const level = Math.max(0, b.level - ((now - b.updatedMs) / 1000) * this.limit.perSecond);
    return { level, updatedMs: now };
  }

  private lastPrune = 0;
  /** Drops empty buckets now and then so memory stays bounded by active keys. */
  private prune(now: number): void {
    if (this.buckets.size < 10_000 || now - this.lastPrune < 60_000) return;
    this.lastPrune = now;
    for (const [k, b] of this.buckets) {
      if (b.level - ((now - b.updatedMs) / 1000) * this.limit.perSecond <= 0) this.buckets.delete(k);
    }
  }
}
