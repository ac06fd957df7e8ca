/**
 * Wakes waiting /sync requests. Writers call `notify` after their data is committed, naming the rooms and users
 * the change concerns; a waiting request listens for its user and the rooms it is in. In-process now; scale-out
 * relays the same calls through Redis pub/sub.
 */

type Listener = () => void;

export class Notifier {
  private readonly byKey = new Map<string, Set<Listener>>();
  private closed = false;
  /** Requests waiting now, and wake-ups since start (metrics). */
  waiting = 0;
  wakeups = 0;

  notify(keys: { rooms?: Iterable<string>; users?: Iterable<string> }): void {
    const fire = new Set<Listener>();
    for (const r of keys.rooms ?? []) for (const l of this.byKey.get(`r:${r}`) ?? []) fire.add(l);
    for (const u of keys.users ?? []) for (const l of this.byKey.get(`u:${u}`) ?? []) fire.add(l);
    for (const l of fire) l();
  }

  /**
   * Resolves when any of the keys is notified, the timeout passes, or the notifier shuts down. Returns true when
   * woken by a notification.
   */
  wait(keys: { rooms: Iterable<string>; users: Iterable<string> }, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    if (this.closed || timeoutMs <= 0) return Promise.resolve(false);
    return new Promise((resolve) => {
      const names = [...[...keys.rooms].map((r) => `r:${r}`), ...[...keys.users].map((u) => `u:${u}`)];
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

  /** Releases every waiting request (shutdown). */
  close(): void {
    this.closed = true;
    for (const l of [...(this.byKey.get("*") ?? [])]) l();
  }
}
