/**
 * Users' push rules (spec "Push Rules: API"): what each user changed, stored as one document per user, merged with
 * the server-default rules on read. Compiled rule sets are cached per user and replaced on change, so evaluating a
 * message for a room's members never recompiles. Changes are numbered on the account data stream and reach clients
 * as the `m.push_rules` account data event.
 */
import {
  compileRuleset,
  effectiveRuleset,
  emptyUserRules,
  equivalentToDefaultsIn,
  serverDefaultRules,
  type CompiledRuleset,
  type Ruleset,
  type UserPushRules,
} from "../../core/push/index.js";
import type { Storage } from "../../storage/storage.js";
import { CacheRegistry, ENTRY_BYTES, type Cache } from "../../util/cache.js";
import { KeyedLock } from "../../util/keyed_lock.js";
import type { AccountDataService } from "../account_data.js";

/** The compiled defaults of one user: the rules naming the user are theirs, the other rules shared. */
const COMPILED_DEFAULTS_BYTES = 2048;

/** One user's rules as evaluation needs them. */
export class UserRules {
  private compiledRules?: CompiledRuleset;
  private readonly equivalence = new Map<string, boolean>();

  constructor(
    readonly userId: string,
    /** Undefined: the user never changed anything (server defaults only). */
    readonly stored: UserPushRules | undefined,
    /** Where the user's last change sits on the account data stream (0: never). */
    readonly streamId: number,
    /** Length of the stored JSON (sizes the cache). */
    readonly storedBytes?: number,
  ) {}

  get compiled(): CompiledRuleset {
    return (this.compiledRules ??= compileRuleset(effectiveRuleset(this.userId, this.stored)));
  }

  /** Whether, in this room, the user's rules give the same outcome as the plain server defaults (the fast path). */
  defaultsIn(roomId: string): boolean {
    if (!this.stored) return true;
    let v = this.equivalence.get(roomId);
    if (v === undefined) {
      v = equivalentToDefaultsIn(this.stored, roomId);
      if (this.equivalence.size >= 1000) this.equivalence.clear();
      this.equivalence.set(roomId, v);
    }
    return v;
  }
}

export class PushRuleService {
  private readonly users: Cache<string, UserRules>;
  private readonly lock = new KeyedLock();
  /** Compiled server defaults per user (they differ only by user id and localpart; shared rules are shared). */
  private readonly defaults: Cache<string, CompiledRuleset>;
  /**
   * The users who changed anything (a few dozen bytes each): everyone else has the server defaults, so a message
   * into a room of 10,000 such members looks up no rules at all.
   */
  private customised = new Set<string>();
  private started = false;

  constructor(
    private readonly storage: Storage,
    private readonly accountData: AccountDataService,
    caches = new CacheRegistry(),
  ) {
    // A user's stored rules as JSON were about a third of what they take parsed and compiled.
    this.users = caches.create("push_rules", (r) => 4 * ENTRY_BYTES + (r.storedBytes ?? 0) * 3);
    this.defaults = caches.create("push_default_rules", () => COMPILED_DEFAULTS_BYTES);
  }

  async start(): Promise<void> {
    this.customised = new Set(await this.storage.push.usersWithRules());
    this.started = true;
  }

  /** The users who changed their rules; undefined before start (anyone may have). */
  customisedUsers(): ReadonlySet<string> | undefined {
    return this.started ? this.customised : undefined;
  }

  /** The rules of many users at once (one query for those not cached). */
  async forUsers(userIds: readonly string[]): Promise<Map<string, UserRules>> {
    const out = new Map<string, UserRules>();
    const missing: string[] = [];
    for (const u of userIds) {
      const r = this.users.get(u);
      if (r) out.set(u, r);
      else missing.push(u);
    }
    if (missing.length > 0) {
      const rows = await this.storage.push.rulesOf(missing);
      for (const u of missing) {
        const row = rows.get(u);
        const r = this.users.get(u) ?? new UserRules(u, row ? (JSON.parse(row.rules) as UserPushRules) : undefined, row?.stream_id ?? 0, row?.rules.length);
        this.users.set(u, r);
        out.set(u, r);
      }
    }
    return out;
  }

  async forUser(userId: string): Promise<UserRules> {
    return (await this.forUsers([userId])).get(userId)!;
  }

  /** The server-default rules of a user, compiled (the fast path's exact check for users an event concerns). */
  compiledDefaults(userId: string): CompiledRuleset {
    let c = this.defaults.get(userId);
    if (!c) this.defaults.set(userId, (c = compileRuleset(serverDefaultRules(userId))));
    return c;
  }

  /** The merged rule set served by GET /pushrules/ and m.push_rules. */
  async ruleset(userId: string): Promise<Ruleset> {
    const r = await this.forUser(userId);
    return effectiveRuleset(userId, r.stored);
  }

  /**
   * Applies a change under the user's lock (read, change, write: concurrent edits never lose each other). `change`
   * may throw (a PushRuleError) to refuse it.
   */
  async update(userId: string, change: (stored: UserPushRules) => UserPushRules): Promise<void> {
    await this.lock.run(userId, async () => {
      const current = await this.forUser(userId);
      const next = change(current.stored ?? emptyUserRules());
      const json = JSON.stringify(next);
      const streamId = await this.accountData.numbered(userId, (id) => this.storage.push.putRules(userId, json, id));
      this.customised.add(userId);
      this.users.set(userId, new UserRules(userId, next, streamId, json.length));
    });
  }

  /** For /sync: the m.push_rules event when the rules changed in (since, to], or always on an initial sync. */
  async syncEvent(userId: string, since: number | undefined, to: number): Promise<{ type: "m.push_rules"; content: { global: Ruleset } } | undefined> {
    const r = await this.forUser(userId);
    if (since !== undefined && !(r.streamId > since && r.streamId <= to)) return undefined;
    return { type: "m.push_rules", content: { global: effectiveRuleset(userId, r.stored) } };
  }

  /** A deactivated account's rules go (Synapse deletes them with the account). */
  async forget(userId: string): Promise<void> {
    await this.storage.push.deleteRules(userId);
    this.customised.delete(userId);
    this.users.delete(userId);
  }
}
