/**
 * "Has this key changed since stream position X?" answered from memory: the position of each key's latest change,
 * for changes seen since `earliest` (the stream position when tracking began). A key absent from the map has not
 * changed since `earliest`; a question about a position before `earliest` can only be answered "maybe" (true).
 * Bounded: past `maxKeys`, the oldest changes are forgotten and `earliest` moves up to the newest of them, so the
 * answers stay correct (more "maybe"s) while the memory stays flat. (Synapse calls this a stream change cache.)
 */
export class ChangeTracker {
  private readonly latest = new Map<string, number>();
  private earliest: number;

  constructor(
    start: number,
    private readonly maxKeys = 100_000,
  ) {
    this.earliest = start;
  }

  /** A change of `key` at stream position `position` (positions only grow per key). */
  record(key: string, position: number): void {
    const prev = this.latest.get(key);
    if (prev !== undefined && prev >= position) return;
    // Delete first so the map's insertion order stays the order of latest change (the oldest come first).
    this.latest.delete(key);
    this.latest.set(key, position);
    if (this.latest.size > this.maxKeys) this.shrink();
  }

  /** False only when `key` certainly did not change after `since`. */
  changedSince(key: string, since: number): boolean {
    if (since < this.earliest) return true;
    const p = this.latest.get(key);
    return p !== undefined && p > since;
  }

  /** The key's latest known change, when one is known since tracking began. */
  latestOf(key: string): number | undefined {
    return this.latest.get(key);
  }

  get size(): number {
    return this.latest.size;
  }

  private shrink(): void {
    const drop = Math.floor(this.latest.size / 2);
    let i = 0;
    for (const [k, p] of this.latest) {
      if (i++ >= drop) break;
      this.latest.delete(k);
      if (p > this.earliest) this.earliest = p;
    }
  }
}
