/**
 * The user directory (spec "User directory", POST /user_directory/search), with Synapse's rules:
 * - a searcher finds users joined to a public room (join_rules `public` or history_visibility `world_readable`) and
 *   users sharing a joined room with them; with `search_all_users`, everyone in the directory;
 * - local users show their global profile; remote users the profile of their member event in a public room, or
 *   (when they share only private rooms with us) the profile their server reports;
 * - deactivated users and guests are never found; neither are locked users unless `show_locked_users`.
 *
 * Kept up to date incrementally. As a persister consumer it notes which (room, user) memberships and which rooms'
 * publicity an event changed; after commit a single worker recomputes those from current state, so the outcome
 * does not depend on the order events commit in. The stream position it has caught up to is saved, so a restart
 * replays only what it missed; a database without a directory is built from current state in the background.
 */
import type { Logger } from "pino";
import type { UserDirectoryConfig } from "../config/config.js";
import { splitStateMapKey } from "../core/events/event.js";
import { userIdDomain } from "../core/ids/ids.js";
import type { Storage } from "../storage/storage.js";
import { searchWords, type DirectoryEntry } from "../storage/user_directory.js";
import type { EventConsumer, NewEvent } from "./rooms/pipeline/consumers.js";
import type { StoredEvent } from "./rooms/event_cache.js";

/** Synapse caps a search at 50 results. */
export const MAX_LIMIT = 50;
export const DEFAULT_LIMIT = 10;
/** An event changing more memberships than this (a join to a remote room brings its whole state) redoes the room. */
const MEMBERS_PER_EVENT = 20;
const PUBLICITY_TYPES = ["m.room.join_rules", "m.room.history_visibility"];
const FOLLOWED_TYPES = ["m.room.member", ...PUBLICITY_TYPES];
const BUILD_PAGE = 1000;

type Work = { kind: "member"; roomId: string; userId: string } | { kind: "room"; roomId: string } | { kind: "remote_profile"; userId: string };

export interface SearchResult {
  limited: boolean;
  results: { user_id: string; display_name?: string; avatar_url?: string }[];
}

export interface UserDirectoryDeps {
  storage: Storage;
  config: UserDirectoryConfig;
  serverName: string;
  /** The persister's stream position: every event at or below it has been through `committed`. */
  position: () => number;
  log: Logger;
}

export class UserDirectoryService implements EventConsumer {
  readonly name = "user_directory";
  /** What each staged event changes, until it commits (or fails). */
  private readonly staged = new Map<string, Work[]>();
  private readonly queue = new Map<string, Work>();
  private worker: Promise<void> | undefined;
  private first: (() => Promise<void>) | undefined;
  /** Within one batch of work: each room's members, read once (see `drain`). */
  private readonly memberCache = new Map<string, Promise<{ members: string[]; locals: string[] }>>();
  private started = false;

  /** A remote user's global profile, asked of their server (federation query/profile); set once federation is wired. */
  remoteProfile?: (userId: string) => Promise<Record<string, unknown>>;

  constructor(private readonly deps: UserDirectoryDeps) {}

  private isLocal(userId: string): boolean {
    return userIdDomain(userId) === this.deps.serverName;
  }

  // ---- search ----

  async search(searcher: string, term: string, limit: number): Promise<SearchResult> {
    const { config, storage } = this.deps;
    if (!config.enabled) return { limited: false, results: [] };
    const found = await storage.userDirectory.search({
      searcher,
      words: searchWords(term),
      limit: Math.max(0, Math.min(limit, MAX_LIMIT)),
      allUsers: config.searchAllUsers,
      preferLocal: config.preferLocalUsers,
      excludeRemote: config.excludeRemoteUsers,
      showLocked: config.showLockedUsers,
    });
    return {
      limited: found.limited,
      results: found.results.map((r) => ({
        user_id: r.user_id,
        ...(r.display_name !== null ? { display_name: r.display_name } : {}),
        ...(r.avatar_url !== null ? { avatar_url: r.avatar_url } : {}),
      })),
    };
  }

  // ---- local users: the rest of the server tells us ----

  /** A local user registered or changed their global display name or avatar. */
  async localProfileChanged(userId: string): Promise<void> {
    const { storage } = this.deps;
    if (!(await storage.userDirectory.includedLocalUsers([userId])).has(userId)) return;
    const profile = await storage.profiles.getAll(userId);
    await storage.userDirectory.upsert({
      user_id: userId,
      display_name: typeof profile.displayname === "string" ? profile.displayname : null,
      avatar_url: typeof profile.avatar_url === "string" ? profile.avatar_url : null,
    });
  }

  /** A local user was deactivated (and perhaps erased): gone from the directory at once, before their leaves. */
  async deactivated(userId: string): Promise<void> {
    await this.deps.storage.userDirectory.remove(userId);
  }

  // ---- events: the persister consumer ----

  stage(e: NewEvent): undefined {
    if (e.outOfBand || e.stateChanges.size === 0) return undefined;
    const roomId = e.event.room_id;
    const work: Work[] = [];
    let publicity = false;
    for (const key of e.stateChanges.keys()) {
      const [type, stateKey] = splitStateMapKey(key);
      if (type === "m.room.member") work.push({ kind: "member", roomId, userId: stateKey });
      else if (PUBLICITY_TYPES.includes(type) && stateKey === "") publicity = true;
    }
    if (publicity || work.length > MEMBERS_PER_EVENT) this.staged.set(e.event.event_id, [{ kind: "room", roomId }]);
    else if (work.length > 0) this.staged.set(e.event.event_id, work);
    return undefined;
  }

  aborted(e: NewEvent): void {
    this.staged.delete(e.event.event_id);
  }

  committed(e: StoredEvent): void {
    const work = this.staged.get(e.event.event_id);
    if (!work) return;
    this.staged.delete(e.event.event_id);
    for (const w of work) this.enqueue(w);
  }

  /** Builds the directory if this database has none, else catches up on what happened while stopped; then follows. */
  start(): void {
    this.started = true;
    this.kick(async () => {
      const pos = await this.deps.storage.userDirectory.streamPos();
      if (pos === undefined) await this.build();
      else await this.catchUp(pos);
    });
  }

  /** Resolves once the queued work is done (tests, the benchmark). */
  async idle(): Promise<void> {
    while (this.worker) await this.worker;
  }

  private enqueue(w: Work): void {
    const key = w.kind === "member" ? `m\0${w.roomId}\0${w.userId}` : w.kind === "room" ? `r\0${w.roomId}` : `p\0${w.userId}`;
    this.queue.set(key, w);
    if (this.started) this.kick();
  }

  /** Runs `first` (if given) and then the queue, one item at a time, on the single worker. */
  private kick(first?: () => Promise<void>): void {
    if (first) this.first = first;
    if (this.worker) return;
    this.worker = (async () => {
      // Start on a later tick, so `worker` is set before this can clear it.
      await Promise.resolve();
      try {
        for (;;) {
          const f = this.first;
          this.first = undefined;
          if (f) await f().catch((err: unknown) => this.deps.log.error({ err }, "user directory: initial build or catch-up failed"));
          if (this.queue.size === 0) break;
          await this.drain();
        }
      } finally {
        // No await between the empty-queue check and here: work queued later starts a new worker.
        this.worker = undefined;
      }
    })();
  }

  private async drain(): Promise<void> {
    // Every event at or below this position has already been queued (see `position`).
    const pos = this.deps.position();
    const batch = [...this.queue.values()];
    this.queue.clear();
    const wholeRooms = new Set(batch.filter((w) => w.kind === "room").map((w) => w.roomId));
    // The batch's items read current state, which only a later event (queued for the next batch) changes: a room's
    // members are read once per batch, however many of its joins are queued.
    this.memberCache.clear();
    for (const w of batch) {
      if (w.kind === "member" && wholeRooms.has(w.roomId)) continue;
      try {
        if (w.kind === "room") await this.updateRoom(w.roomId);
        else if (w.kind === "member") await this.updateMember(w.roomId, w.userId);
        else await this.refreshRemoteProfile(w.userId);
      } catch (err) {
        this.deps.log.warn({ err, work: w }, "user directory: an update failed");
      }
    }
    this.memberCache.clear();
    await this.deps.storage.userDirectory.setStreamPos(pos).catch((err: unknown) => this.deps.log.warn({ err }, "user directory: saving its position failed"));
  }

  // ---- recomputing from current state ----

  private async isPublic(roomId: string): Promise<boolean> {
    const state = await this.deps.storage.userDirectory.stateContents(roomId, PUBLICITY_TYPES);
    const field = (type: string, key: string) => {
      const c = state.get(type);
      return typeof c === "object" && c !== null ? (c as Record<string, unknown>)[key] : undefined;
    };
    return field("m.room.join_rules", "join_rule") === "public" || field("m.room.history_visibility", "history_visibility") === "world_readable";
  }

  /** The room's joined members that belong in the directory, and the local ones among them. */
  private members(roomId: string): Promise<{ members: string[]; locals: string[] }> {
    let p = this.memberCache.get(roomId);
    if (!p) this.memberCache.set(roomId, (p = this.readMembers(roomId)));
    return p;
  }

  private async readMembers(roomId: string): Promise<{ members: string[]; locals: string[] }> {
    const joined = await this.deps.storage.userDirectory.joinedMembers(roomId);
    const included = await this.deps.storage.userDirectory.includedLocalUsers(joined.filter((u) => this.isLocal(u)));
    const members = joined.filter((u) => !this.isLocal(u) || included.has(u));
    return { members, locals: members.filter((u) => this.isLocal(u)) };
  }

  /** Redoes a room: its publicity changed, it was joined with its whole state, or our last user left it. */
  private async updateRoom(roomId: string): Promise<void> {
    const dir = this.deps.storage.userDirectory;
    const before = await dir.usersOfRoom(roomId);
    const { members, locals } = await this.members(roomId);
    // A room none of our users is in no longer counts: we no longer hear about it.
    const isPublic = locals.length > 0 && (await this.isPublic(roomId));
    if (locals.length === 0) await dir.setRoom(roomId, [], []);
    else if (isPublic) await dir.setRoom(roomId, members, []);
    else await dir.setRoom(roomId, [], locals.flatMap((l) => members.filter((m) => m !== l).map((m): [string, string] => [l, m])));
    if (locals.length > 0) for (const m of members) if (!this.isLocal(m)) await this.rememberRemote(roomId, m, isPublic);
    const now = new Set(locals.length > 0 ? members : []);
    for (const u of before) if (!now.has(u)) await this.forgetRemoteIfUnseen(u);
  }

  /**
   * One membership changed. A public room costs one row whatever its size; a private room's pairs need its members
   * (as Synapse: a join into a private room of N members writes up to 2N pairs).
   */
  private async updateMember(roomId: string, userId: string): Promise<void> {
    const dir = this.deps.storage.userDirectory;
    const local = this.isLocal(userId);
    const locals = await dir.localMemberCount(roomId, this.deps.serverName, 2);
    const joined = (await dir.isJoined(roomId, userId)) && (!local || (await dir.includedLocalUsers([userId])).has(userId));
    // No user of ours left in the room (or the first one just came in): the room as a whole changes.
    if (locals === 0 || (local && joined && locals === 1)) return this.updateRoom(roomId);
    if (!joined) {
      await dir.setUserInRoom(roomId, userId, false, []);
      await this.forgetRemoteIfUnseen(userId);
      return;
    }
    const isPublic = await this.isPublic(roomId);
    if (isPublic) {
      await dir.setUserInRoom(roomId, userId, true, []);
    } else {
      const { members, locals: localMembers } = await this.members(roomId);
      const pairs: [string, string][] = [];
      if (local) for (const m of members) if (m !== userId) pairs.push([userId, m]);
      for (const l of localMembers) if (l !== userId) pairs.push([l, userId]);
      await dir.setUserInRoom(roomId, userId, false, pairs);
    }
    if (!local) await this.rememberRemote(roomId, userId, isPublic);
  }

  /**
   * A remote user we see in a room gets a directory entry. Their member event in a public room is their public
   * profile; one in a private room may carry a nickname for that room only, so their server is asked instead.
   */
  private async rememberRemote(roomId: string, userId: string, isPublic: boolean): Promise<void> {
    const dir = this.deps.storage.userDirectory;
    const existing = await dir.get(userId);
    if (isPublic) {
      const p = await dir.memberProfile(roomId, userId);
      const entry: DirectoryEntry = { user_id: userId, display_name: p?.displayname ?? null, avatar_url: p?.avatar_url ?? null };
      if (!existing || existing.display_name !== entry.display_name || existing.avatar_url !== entry.avatar_url) await dir.upsert(entry);
    } else if (!existing) {
      await dir.upsert({ user_id: userId, display_name: null, avatar_url: null });
      if (this.remoteProfile) this.enqueue({ kind: "remote_profile", userId });
    }
  }

  private async forgetRemoteIfUnseen(userId: string): Promise<void> {
    if (this.isLocal(userId)) return;
    if (!(await this.deps.storage.userDirectory.isInAnyRoom(userId))) await this.deps.storage.userDirectory.remove(userId);
  }

  private async refreshRemoteProfile(userId: string): Promise<void> {
    const dir = this.deps.storage.userDirectory;
    const profile = await this.remoteProfile!(userId).catch((err: unknown) => {
      this.deps.log.debug({ err, userId }, "user directory: a remote profile lookup failed");
      return undefined;
    });
    if (!profile || !(await dir.get(userId))) return;
    await dir.upsert({
      user_id: userId,
      display_name: typeof profile.displayname === "string" ? profile.displayname : null,
      avatar_url: typeof profile.avatar_url === "string" ? profile.avatar_url : null,
    });
  }

  // ---- building and catching up ----

  /** From current state: every local user, then every room one of them is in. */
  private async build(): Promise<void> {
    const pos = this.deps.position();
    const dir = this.deps.storage.userDirectory;
    this.deps.log.info("user directory: building from current state");
    let after = "";
    for (;;) {
      const page = await dir.localUsersWithProfiles(after, BUILD_PAGE);
      if (page.length === 0) break;
      await dir.upsertMany(page);
      after = page[page.length - 1]!.user_id;
    }
    const rooms = await dir.roomsWithLocalMembers(this.deps.serverName);
    for (const roomId of rooms) await this.updateRoom(roomId);
    await dir.setStreamPos(pos);
    this.deps.log.info({ rooms: rooms.length }, "user directory: built");
  }

  private async catchUp(pos: number): Promise<void> {
    const changes = await this.deps.storage.userDirectory.stateChangesSince(pos, FOLLOWED_TYPES);
    for (const c of changes) {
      if (c.type === "m.room.member") this.queue.set(`m\0${c.room_id}\0${c.state_key}`, { kind: "member", roomId: c.room_id, userId: c.state_key });
      else this.queue.set(`r\0${c.room_id}`, { kind: "room", roomId: c.room_id });
    }
  }
}
