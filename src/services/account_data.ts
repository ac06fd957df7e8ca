/**
 * Client config / account data (spec "Client Config"): per-user global and per-room JSON objects, each change
 * numbered on the account data stream so /sync can deliver it.
 */
import { MatrixError, forbidden, notFound } from "../errors.js";
import type { Storage } from "../storage/storage.js";
import { StreamIdGenerator } from "../storage/stream_ids.js";
import { ChangeTracker } from "../util/change_tracker.js";

/** Types the server owns: set through their own APIs, not this one (spec: 405 M_BAD_JSON). */
const SERVER_MANAGED = new Set(["m.fully_read", "m.push_rules"]);
const IGNORED_USER_LIST = "m.ignored_user_list";
const IGNORED_CACHE_MAX = 10_000;

export interface AccountDataHooks {
  /** Called after a change is committed, to wake /sync. */
  onChange?: (userId: string, streamId: number) => void;
}

export class AccountDataService {
  readonly hooks: AccountDataHooks = {};
  private stream!: StreamIdGenerator;
  /** Which users' account data changed since a position, so /sync asks the database only when it did. */
  private changes = new ChangeTracker(Number.MAX_SAFE_INTEGER);
  /** m.ignored_user_list per user, with the stream position it was read at. */
  private readonly ignored = new Map<string, { users: ReadonlySet<string>; at: number }>();

  constructor(private readonly storage: Storage) {}

  async start(): Promise<void> {
    // Push rules changes are numbered on this stream too (clients see them as m.push_rules account data).
    this.stream = new StreamIdGenerator(Math.max(await this.storage.accountData.maxStreamId(), await this.storage.push.maxRulesStream()));
    this.changes = new ChangeTracker(this.stream.position());
  }

  /** The account data stream's position for sync tokens. */
  position(): number {
    return this.stream.position();
  }

  /** Account data (global: roomId "") changed in (since, to], for /sync. */
  async changedSince(userId: string, since: number, to: number) {
    if (!this.changes.changedSince(userId, since)) return [];
    return this.storage.accountData.changedSince(userId, since, to);
  }

  /**
   * The users `userId` ignores (spec "Ignoring Users": the keys of `ignored_users` in its m.ignored_user_list), from
   * memory while its account data has not changed since they were read.
   */
  async ignoredUsers(userId: string): Promise<ReadonlySet<string>> {
    const hit = this.ignored.get(userId);
    if (hit && !this.changes.changedSince(userId, hit.at)) return hit.users;
    const at = this.stream.position();
    const content = await this.storage.accountData.get(userId, "", IGNORED_USER_LIST);
    const list = content?.ignored_users;
    const users: ReadonlySet<string> = new Set(list !== null && typeof list === "object" && !Array.isArray(list) ? Object.keys(list) : []);
    if (this.ignored.size >= IGNORED_CACHE_MAX) this.ignored.clear();
    this.ignored.set(userId, { users, at });
    return users;
  }

  async get(requesterId: string, userId: string, roomId: string, type: string): Promise<Record<string, unknown>> {
    if (requesterId !== userId) throw forbidden("Cannot get account data for other users.");
    const content = await this.storage.accountData.get(userId, roomId, type);
    if (!content) throw notFound("Account data not found");
    return content;
  }

  async put(requesterId: string, userId: string, roomId: string, type: string, content: Record<string, unknown>): Promise<void> {
    if (requesterId !== userId) throw forbidden("Cannot add account data for other users.");
    if (SERVER_MANAGED.has(type)) throw new MatrixError(405, "M_BAD_JSON", `Cannot set ${type} through this API.`);
    await this.write(userId, roomId, type, content);
  }

  /** Writes account data on behalf of the server (e.g. m.fully_read from read markers). */
  write(userId: string, roomId: string, type: string, content: Record<string, unknown>): Promise<number> {
    return this.numbered(userId, (id) => this.storage.accountData.put(userId, roomId, type, content, id));
  }

  /** Runs a write that takes the next id on the account data stream, then wakes the user's /sync. */
  async numbered(userId: string, write: (streamId: number) => Promise<void>): Promise<number> {
    const id = this.stream.next();
    try {
      await write(id);
      this.changes.record(userId, id);
    } finally {
      this.stream.finish(id);
    }
    this.hooks.onChange?.(userId, id);
    return id;
  }
}
