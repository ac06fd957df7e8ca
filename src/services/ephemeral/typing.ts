/**
 * Typing notifications (spec "Typing Notifications"): in memory only, with a timeout per user. The stream position
 * starts from the clock at start-up so tokens from before a restart stay older than new changes.
 */
import type { Notifier } from "../notifier.js";

const MAX_TIMEOUT_MS = 120_000;

export class TypingService {
  private readonly typing = new Map<string, Map<string, number>>();
  private readonly changedAt = new Map<string, number>();
  private stream = Date.now();
  private sweeper: NodeJS.Timeout;

  constructor(private readonly notifier: Notifier) {
    this.sweeper = setInterval(() => this.expire(), 1000);
    this.sweeper.unref();
  }

  position(): number {
    return this.stream;
  }

  /** Called when a user starts or stops typing (federation tells the room's other servers about local users). */
  onChange?: (roomId: string, userId: string, typing: boolean) => void;

  setTyping(roomId: string, userId: string, typing: boolean, timeoutMs = 30_000): void {
    let users = this.typing.get(roomId);
    if (typing) {
      if (!users) this.typing.set(roomId, (users = new Map()));
      const wasTyping = users.has(userId);
      users.set(userId, Date.now() + Math.min(Math.max(timeoutMs, 0), MAX_TIMEOUT_MS));
      if (!wasTyping) this.changed(roomId);
      this.onChange?.(roomId, userId, true);
    } else if (users?.delete(userId)) {
      if (users.size === 0) this.typing.delete(roomId);
      this.changed(roomId);
      this.onChange?.(roomId, userId, false);
    }
  }

  /**
   * The m.typing event for a room if its typing set changed after `since`; with since undefined (an initial sync),
   * for every room that has had typing, an empty list included: as Synapse, so a client whose first sync comes after
   * someone stopped typing learns that nobody is.
   */
  eventFor(roomId: string, since: number | undefined): { type: "m.typing"; content: { user_ids: string[] } } | undefined {
    const changed = this.changedAt.get(roomId);
    if (changed === undefined || (since !== undefined && changed <= since)) return undefined;
    const users = this.typing.get(roomId);
    return { type: "m.typing", content: { user_ids: [...(users?.keys() ?? [])] } };
  }

  private changed(roomId: string): void {
    this.changedAt.set(roomId, ++this.stream);
    this.notifier.notify({ rooms: [roomId] });
  }

  private expire(): void {
    const now = Date.now();
    for (const [roomId, users] of this.typing) {
      let any = false;
      for (const [u, until] of users) {
        if (until <= now) {
          users.delete(u);
          any = true;
          this.onChange?.(roomId, u, false);
        }
      }
      if (users.size === 0) this.typing.delete(roomId);
      if (any) this.changed(roomId);
    }
  }

  close(): void {
    clearInterval(this.sweeper);
  }
}
