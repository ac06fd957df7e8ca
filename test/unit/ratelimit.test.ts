/** The rc_* token bucket, driven by an injected clock. */
import { describe, expect, it } from "vitest";
import { MatrixError } from "../../src/errors.js";
import { RateLimiter } from "../../src/services/ratelimit.js";

function clock(start = 1_000_000): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => (t += ms) };
}

function limitError(fn: () => void): MatrixError {
  try {
    fn();
  } catch (e) {
    if (e instanceof MatrixError) return e;
    throw e;
  }
  throw new Error("expected M_LIMIT_EXCEEDED");
}

describe("RateLimiter", () => {
  it("allows a burst of burst_count actions, then refuses with retry_after_ms", () => {
    const c = clock();
    const rl = new RateLimiter({ perSecond: 1, burstCount: 3 }, c.now);
    for (let i = 0; i < 3; i++) rl.take("ip");
    const e = limitError(() => rl.take("ip"));
    expect(e.status).toBe(429);
    expect(e.errcode).toBe("M_LIMIT_EXCEEDED");
    expect(e.toJSON()).toEqual({ errcode: "M_LIMIT_EXCEEDED", error: expect.any(String), retry_after_ms: 1000 });
    expect(e.headers).toEqual({ "Retry-After": "1" });
  });

  it("refills at per_second", () => {
    const c = clock();
    const rl = new RateLimiter({ perSecond: 2, burstCount: 2 }, c.now);
    rl.take("k");
    rl.take("k");
    expect(rl.tryTake("k")).toBe(500);
    c.advance(250);
    expect(rl.tryTake("k")).toBe(250);
    c.advance(250);
    expect(rl.tryTake("k")).toBe(0);
    expect(rl.tryTake("k")).toBe(500);
    // A long pause refills the bucket completely, but never beyond burst_count.
    c.advance(60_000);
    expect(rl.tryTake("k")).toBe(0);
    expect(rl.tryTake("k")).toBe(0);
    expect(rl.tryTake("k")).toBeGreaterThan(0);
  });

  it("rounds retry_after_ms up to whole milliseconds and Retry-After up to whole seconds", () => {
    const c = clock();
    const rl = new RateLimiter({ perSecond: 0.17, burstCount: 1 }, c.now);
    rl.take("k");
    const e = limitError(() => rl.take("k"));
    const ms = (e.toJSON() as { retry_after_ms: number }).retry_after_ms;
    expect(ms).toBe(Math.ceil(1000 / 0.17));
    expect(e.headers["Retry-After"]).toBe(String(Math.ceil(ms / 1000)));
  });

  it("keeps a bucket per key", () => {
    const c = clock();
    const rl = new RateLimiter({ perSecond: 0.001, burstCount: 1 }, c.now);
    rl.take("a");
    expect(() => rl.take("a")).toThrow(MatrixError);
    expect(() => rl.take("b")).not.toThrow();
  });

  it("check and wouldAllow do not record an action; reset empties the bucket", () => {
    const c = clock();
    const rl = new RateLimiter({ perSecond: 1, burstCount: 1 }, c.now);
    for (let i = 0; i < 5; i++) rl.check("k");
    expect(rl.wouldAllow("k")).toBe(true);
    rl.take("k");
    expect(rl.wouldAllow("k")).toBe(false);
    expect(limitError(() => rl.check("k")).toJSON()).toMatchObject({ retry_after_ms: 1000 });
    rl.reset("k");
    expect(rl.wouldAllow("k")).toBe(true);
  });

  it("a failed take does not count", () => {
    const c = clock();
    const rl = new RateLimiter({ perSecond: 1, burstCount: 1 }, c.now);
    rl.take("k");
    for (let i = 0; i < 10; i++) expect(rl.tryTake("k")).toBe(1000);
    c.advance(1000);
    expect(rl.tryTake("k")).toBe(0);
  });

  it("costs more than one action when asked", () => {
    const c = clock();
    const rl = new RateLimiter({ perSecond: 1, burstCount: 5 }, c.now);
    rl.take("k", 4);
    expect(rl.tryTake("k", 2)).toBe(1000);
    expect(rl.tryTake("k", 1)).toBe(0);
  });

  it("with a zero refill rate, a full bucket stays full", () => {
    const c = clock();
    const rl = new RateLimiter({ perSecond: 0, burstCount: 1 }, c.now);
    rl.take("k");
    c.advance(3_600_000);
    expect(rl.tryTake("k")).toBeGreaterThan(0);
  });

  it("per_second 0 and burst_count 0 disables the limit", () => {
    const rl = new RateLimiter({ perSecond: 0, burstCount: 0 }, clock().now);
    for (let i = 0; i < 100; i++) rl.take("k");
    expect(() => rl.check("k")).not.toThrow();
    expect(rl.wouldAllow("k")).toBe(true);
  });
});
