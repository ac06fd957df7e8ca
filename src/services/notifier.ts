/**
 * Wakes waiting /sync requests. Writers call `notify` after their data is committed, naming the rooms and users
 * the change concerns; a waiting request listens for its user and the rooms it is in. In-process now; scale-out
 * relays the same calls through Redis pub/sub.
 */

type Listener = () => void;

/**
 * A long-lived set of rooms that successive waits share (a user's rooms, kept with their Sliding Sync room list):
 * registered with the notifier once rather than per wait, so a wait costs the same for a user in 5,000 rooms as in 5.
 * The rooms must not change; a new set of rooms is a new group.
 */
export class RoomGroup {
  readonly listeners = new Set<Listener>();
  registered = false;
  /** When the last waiter left (ms); an idle group is unregistered after GROUP_IDLE_MS. */
  idleSince = 0;

  constructor(readonly rooms: readonly string[]) {}
}

const GROUP_IDLE_MS = 60_000;

export class Notifier {
  private readonly byKey = new Map<string, Set<Listener>>();
  private readonly groupsByRoom = new Map<string, Set<RoomGroup>>();
  private readonly groups = new Set<RoomGroup>();
  private lastSweep = Date.now();
  private closed = false;
  /** Requests waiting now, and wake-ups since start (metrics). */
  waiting = 0;
  wakeups = 0;

  notify(keys: { rooms?: Iterable<string>; users?: Iterable<string> }): void {
    const fire = new Set<Listener>();
    for (const r of keys.rooms ?? []) {
      for (const l of this.byKey.get(`r:${r}`) ?? []) fire.add(l);
      for (const g of this.groupsByRoom.get(r) ?? []) for (const l of g.listeners) fire.add(l);
    }
    for (const u of keys.users ?? []) for (const l of this.byKey.get(`u:${u}`) ?? []) fire.add(l);
    for (const l of fire) l();
  }

  /**
   * Resolves when any of the keys is notified, the timeout passes, or the notifier shuts down. Returns true when
   * woken by a notification.
   */
  wait(keys: { rooms: Iterable<string> | RoomGroup; users: Iterable<string> }, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    if (this.closed || timeoutMs <= 0) return Promise.resolve(false);
    if (keys.rooms instanceof RoomGroup) return this.waitGroup(keys.rooms, keys.users, timeoutMs, signal);
    const rooms = keys.rooms;
    return new Promise((resolve) => {
      const names = [...[...rooms].map((r) => `r:${r}`), ...[...keys.users].map((u) => `u:${u}`)];
      let done = false;
      const finish = (woken: boolean) => {
        if (done) return;
        done = true;
        this.waiting--;
        if (woken) this.wakeups++;
        clearTimeout(timer);
        for (const n of names) {
          const set = this.byKey.get(n);
          set?.delete(onNotify);
          if (set && set.size === 0) this.byKey.delete(n);
        }
        this.byKey.get("*")?.delete(onClose);
        signal?.removeEventListener("abort", onClose);
        resolve(woken);
      };
      this.waiting++;
      const onNotify = () => finish(true);
      const onClose = () => finish(false);
      const timer = setTimeout(onClose, timeoutMs);
      for (const n of names) {
        let set = this.byKey.get(n);
        if (!set) this.byKey.set(n, (set = new Set()));
        set.add(onNotify);
      }
      let all = this.byKey.get("*");
      if (!all) this.byKey.set("*", (all = new Set()));
      all.add(onClose);
      signal?.addEventListener("abort", onClose);
    });
  }

  /** wait() on a room group: its rooms stay registered between waits; the users are registered per wait. */
  private async waitGroup(group: RoomGroup, users: Iterable<string>, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    if (!group.registered) {
      group.registered = true;
      this.groups.add(group);
      for (const r of group.rooms) {
        let set = this.groupsByRoom.get(r);
        if (!set) this.groupsByRoom.set(r, (set = new Set()));
        set.add(group);
      }
    }
    // The users' own keys (and the timeout, shutdown, abort) through the ordinary path; a room of the group ends
    // that wait as woken.
    const inner = new AbortController();
    let byRoom = false;
    const wake: Listener = () => {
      byRoom = true;
      inner.abort();
    };
    const onAbort = () => inner.abort();
    signal?.addEventListener("abort", onAbort);
    group.listeners.add(wake);
    try {
      const woken = await this.wait({ rooms: [], users }, timeoutMs, inner.signal);
      return woken || byRoom;
    } finally {
      signal?.removeEventListener("abort", onAbort);
      group.listeners.delete(wake);
      if (group.listeners.size === 0) group.idleSince = Date.now();
      this.sweep();
    }
  }

  /** Unregisters room groups nobody waited on for a while (at most once a minute: it walks their rooms). */
  private sweep(): void {
    const now = Date.now();
    if (now - this.lastSweep < GROUP_IDLE_MS) return;
    this.lastSweep = now;
    for (const g of this.groups) {
      if (g.listeners.size > 0 || now - g.idleSince < GROUP_IDLE_MS) continue;
      for (const r of g.rooms) {
        const set = this.groupsByRoom.get(r);
        set?.delete(g);
        if (set?.size === 0) this.groupsByRoom.delete(r);
      }
      g.registered = false;
      this.groups.delete(g);
    }
  }

  /** Releases every waiting request (shutdown). */
  close(): void {
    this.closed = true;
    for (const l of [...(this.byKey.get("*") ?? [])]) l();
  }
}
