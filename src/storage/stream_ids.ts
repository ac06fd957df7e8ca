/**
 * Stream ids: every stream (events, account data, receipts, to-device…) numbers its rows 1, 2, 3… and a /sync token
 * holds one position per stream. Ids are handed out before the writing transaction commits, and transactions can
 * commit out of order, so the readable position is the highest id below which every id has finished — a reader
 * never skips a row that commits later with a smaller id.
 */
export class StreamIdGenerator {
  private last: number;
  private readonly inFlight = new Set<number>();
  private waiters: { id: number; resolve: () => void }[] = [];

  constructor(current: number) {
    this.last = current;
  }

  /** Reserves the next id. Call `finish(id)` once its transaction has committed or failed. */
  next(): number {
    const id = ++this.last;
    this.inFlight.add(id);
    return id;
  }

  finish(id: number): void {
    this.inFlight.delete(id);
    if (this.waiters.length > 0) this.release();
  }

  /** Resolves once every id ≤ `id` has finished: a reader at the position then sees row `id` and all before it. */
  reached(id: number): Promise<void> {
    if (this.position() >= id) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ id, resolve }));
  }

  private release(): void {
    const pos = this.position();
    const still: { id: number; resolve: () => void }[] = [];
    for (const w of this.waiters) {
      if (w.id <= pos) w.resolve();
      else still.push(w);
    }
    this.waiters = still;
  }

  /** Every id ≤ this is committed (or abandoned). */
  position(): number {
    let min = this.last + 1;
    for (const id of this.inFlight) if (id < min) min = id;
    return min - 1;
  }
}
