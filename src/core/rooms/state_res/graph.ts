/**
 * Shared plumbing of one state resolution call: a memoising view of the events (the caller's `getEvent` is only
 * asked once per id), the comparison order of event ids, and a binary heap for Kahn's algorithm.
 */
import type { Event } from "../../events/event.js";
import { compareCodePoints } from "../../json/canonical.js";
import type { RoomVersion } from "../versions.js";

export class EventGraph {
  private readonly cache = new Map<string, Event | null>();

  constructor(
    readonly version: RoomVersion,
    private readonly fetch: (id: string) => Event | undefined,
    private readonly rejected?: (id: string) => boolean,
  ) {}

  get(id: string): Event | undefined {
    let e = this.cache.get(id);
    if (e === undefined) {
      e = this.fetch(id) ?? null;
      this.cache.set(id, e);
    }
    return e ?? undefined;
  }

  isRejected(id: string): boolean {
    return this.rejected?.(id) ?? false;
  }

  /** The `m.room.power_levels` event among an event's auth events (the first one, as Synapse and Ruma take). */
  powerLevelsAuthEvent(event: Event): Event | undefined {
    for (const id of event.auth_events) {
      const a = this.get(id);
      if (a && a.type === "m.room.power_levels" && a.state_key === "") return a;
    }
    return undefined;
  }

  /**
   * The room's create event as seen from an event: v12 derives it from the room id (it is never an auth event);
   * earlier versions cite it in `auth_events`.
   */
  createEventFor(event: Event): Event | undefined {
    if (this.version.roomIdIsCreateEventHash) return this.get(`$${event.room_id.slice(1)}`);
    if (event.type === "m.room.create") return event;
    for (const id of event.auth_events) {
      const a = this.get(id);
      if (a && a.type === "m.room.create" && a.state_key === "") return a;
    }
    return undefined;
  }
}

/** Event ids compare by Unicode code point, as in Synapse (Python str) and Ruma (UTF-8 bytes). */
export function compareEventIds(a: string, b: string): number {
  return compareCodePoints(a, b);
}

/** A binary min-heap under `less`. */
export class MinHeap<T> {
  private readonly items: T[] = [];

  constructor(private readonly less: (a: T, b: T) => boolean) {}

  get size(): number {
    return this.items.length;
  }

  push(x: T): void {
    const a = this.items;
    a.push(x);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(a[i]!, a[p]!)) break;
      [a[i], a[p]] = [a[p]!, a[i]!];
      i = p;
    }
  }

  pop(): T | undefined {
    const a = this.items;
    if (a.length === 0) return undefined;
    const top = a[0];
    const last = a.pop()!;
    if (a.length > 0) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && this.less(a[l]!, a[m]!)) m = l;
        if (r < a.length && this.less(a[r]!, a[m]!)) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m]!, a[i]!];
        i = m;
      }
    }
    return top;
  }
}
