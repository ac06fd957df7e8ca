/**
 * Presence (spec "Presence"): online / unavailable / offline with an optional status message, stored durably and
 * numbered on the presence stream. Syncing keeps a user online; a user idle for IDLE_MS becomes unavailable, and
 * one who stopped syncing for SYNC_TIMEOUT_MS goes offline (Synapse's timers).
 */
import { MatrixError } from "../../errors.js";
import type { Storage } from "../../storage/storage.js";
import { StreamIdGenerator } from "../../storage/stream_ids.js";
import type { Notifier } from "../notifier.js";

export const PRESENCE_STATES = new Set(["online", "offline", "unavailable"]);
const IDLE_MS = 5 * 60_000;
const SYNC_TIMEOUT_MS = 30_000;

interface PresenceRow {
  user_id: string;
  state: string;
  status_msg: string | null;
  last_active_ts: number;
  last_user_sync_ts: number;
  currently_active: number;
  stream_id: number;
}

export interface PresenceContent {
  presence: string;
  last_active_ago?: number;
  currently_active?: boolean;
  status_msg?: string;
}

export class PresenceService {
  private stream!: StreamIdGenerator;
  /** Users not offline, by id: the timers work from memory, not by scanning the table. */
  private readonly live = new Map<string, PresenceRow>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly storage: Storage,
    private readonly notifier: Notifier,
    private readonly enabled: boolean,
  ) {}

  async start(): Promise<void> {
    this.stream = new StreamIdGenerator(await this.storage.rooms.maxPresenceStream());
    for (const row of await this.storage.rooms.onlinePresence()) this.live.set(row.user_id, row);
    this.timer = setInterval(() => void this.tick(), 5000);
    this.timer.unref();
  }

  close(): void {
    clearInterval(this.timer);
  }

  position(): number {
    return this.stream.position();
  }

  /** PUT /presence/{userId}/status. */
  async setStatus(userId: string, state: string, statusMsg: string | undefined): Promise<void> {
    if (!PRESENCE_STATES.has(state)) throw new MatrixError(400, "M_INVALID_PARAM", `Invalid presence state: ${state}`);
    if (!this.enabled) return;
    const now = Date.now();
    const current = await this.row(userId);
    await this.write({
      user_id: userId,
      state,
      status_msg: statusMsg === undefined ? (current?.status_msg ?? null) : statusMsg,
      last_active_ts: state === "online" ? now : (current?.last_active_ts ?? now),
      last_user_sync_ts: current?.last_user_sync_ts ?? now,
      currently_active: state === "online" ? 1 : 0,
      stream_id: 0,
    });
  }

  /** A /sync with set_presence (default online) keeps the user at that presence. */
  async onSync(userId: string, setPresence: string): Promise<void> {
    if (!this.enabled) return;
    const now = Date.now();
    const current = this.live.get(userId) ?? (await this.row(userId));
    const wanted = setPresence === "offline" ? current?.state ?? "offline" : setPresence;
    if (setPresence === "offline") {
      // "offline" means: do not mark me online; syncing alone changes nothing.
      if (current) this.live.set(userId, { ...current, last_user_sync_ts: now });
      return;
    }
    if (current && current.state === wanted && now - current.last_user_sync_ts < SYNC_TIMEOUT_MS / 2) {
      current.last_user_sync_ts = now;
      return;
    }
    await this.write({
      user_id: userId,
      state: wanted,
      status_msg: current?.status_msg ?? null,
      last_active_ts: wanted === "online" ? now : (current?.last_active_ts ?? now),
      last_user_sync_ts: now,
      currently_active: wanted === "online" ? 1 : 0,
      stream_id: 0,
    });
  }

  /** Presence of another server's user, from an m.presence EDU. */
  async setRemote(userId: string, p: { presence: string; statusMsg?: string; lastActiveAgo: number; currentlyActive: boolean }): Promise<void> {
    if (!this.enabled || !PRESENCE_STATES.has(p.presence)) return;
    const now = Date.now();
    await this.write(
      {
        user_id: userId,
        state: p.presence,
        status_msg: p.statusMsg ?? null,
        last_active_ts: now - Math.max(0, p.lastActiveAgo),
        last_user_sync_ts: now,
        currently_active: p.currentlyActive ? 1 : 0,
        stream_id: 0,
      },
      { remote: true },
    );
  }

  /** Called after a local user's presence changed (federation shares it with servers in common rooms). */
  onLocalChange?: (userId: string, content: PresenceContent) => void;

  /** GET /presence/{userId}/status. */
  async getStatus(userId: string): Promise<PresenceContent> {
    const row = this.live.get(userId) ?? (await this.row(userId));
    if (!row) return { presence: "offline" };
    return contentOf(row);
  }

  /** m.presence events for users sharing a room with `userId` (and the user), changed in (since, to]. */
  async eventsFor(userId: string, since: number, to: number): Promise<{ type: "m.presence"; sender: string; content: PresenceContent }[]> {
    if (!this.enabled || to <= since) return [];
    const rows = await this.storage.rooms.presenceChangedSince(since, to, 500);
    if (rows.length === 0) return [];
    const shared = await this.storage.rooms.usersSharingRooms(userId, rows.map((r) => r.user_id));
    return rows.filter((r) => r.user_id === userId || shared.has(r.user_id)).map((r) => ({ type: "m.presence", sender: r.user_id, content: contentOf(this.live.get(r.user_id) ?? r) }));
  }

  /**
   * m.presence events with the current presence of these users, for those the server has any for — or, with
   * `orOffline`, for all of them, a user never seen being offline (as GET /presence/{userId}/status answers).
   */
  async currentOf(userIds: readonly string[], opts: { orOffline?: boolean } = {}): Promise<{ type: "m.presence"; sender: string; content: PresenceContent }[]> {
    if (!this.enabled) return [];
    const out: { type: "m.presence"; sender: string; content: PresenceContent }[] = [];
    for (const userId of userIds.slice(0, 500)) {
      const row = this.live.get(userId) ?? (await this.row(userId));
      if (row) out.push({ type: "m.presence", sender: userId, content: contentOf(row) });
      else if (opts.orOffline) out.push({ type: "m.presence", sender: userId, content: { presence: "offline" } });
    }
    return out;
  }

  private async row(userId: string): Promise<PresenceRow | undefined> {
    return this.storage.rooms.presence(userId);
  }

  private async write(row: PresenceRow, opts: { remote?: boolean } = {}): Promise<void> {
    const id = this.stream.next();
    row.stream_id = id;
    try {
      await this.storage.rooms.upsertPresence(row);
    } finally {
      this.stream.finish(id);
    }
    // Only local users are timed out here; a remote user's server says when they go idle or offline.
    if (row.state === "offline" || opts.remote) this.live.delete(row.user_id);
    else this.live.set(row.user_id, row);
    const rooms = (await this.storage.rooms.roomsForUser(row.user_id, ["join"])).map((r) => r.room_id);
    this.notifier.notify({ rooms, users: [row.user_id] });
    if (!opts.remote) this.onLocalChange?.(row.user_id, contentOf(row));
  }

  private async tick(): Promise<void> {
    const now = Date.now();
    for (const row of [...this.live.values()]) {
      try {
        if (now - row.last_user_sync_ts > SYNC_TIMEOUT_MS && row.state !== "offline") {
          await this.write({ ...row, state: "offline", currently_active: 0 });
        } else if (row.state === "online" && now - row.last_active_ts > IDLE_MS) {
          await this.write({ ...row, state: "unavailable", currently_active: 0 });
        }
      } catch {
        // Timers are best effort; the next tick retries.
      }
    }
  }
}

function contentOf(row: PresenceRow): PresenceContent {
  const c: PresenceContent = { presence: row.state, last_active_ago: Math.max(0, Date.now() - row.last_active_ts), currently_active: row.currently_active === 1 };
  if (row.status_msg !== null) c.status_msg = row.status_msg;
  return c;
}
