import { describe, expect, it } from "vitest";
import { StreamIdGenerator } from "../../src/storage/stream_ids.js";

describe("stream ids", () => {
  it("the position stops below an id still in flight, whatever finished after it", () => {
    const s = new StreamIdGenerator(10);
    const a = s.next();
    const b = s.next();
    s.finish(b);
    expect(s.position()).toBe(10);
    s.finish(a);
    expect(s.position()).toBe(12);
  });

  it("reached() resolves only once every id up to it has finished", async () => {
    const s = new StreamIdGenerator(0);
    const a = s.next();
    const b = s.next();
    let done = false;
    const p = s.reached(b).then(() => (done = true));
    s.finish(b);
    await Promise.resolve();
    expect(done).toBe(false);
    s.finish(a);
    await p;
    expect(done).toBe(true);
    // Already reached: at once.
    await s.reached(1);
  });
});
