/**
 * History visibility (spec "Room History Visibility", server behaviour): whether a user may see an event depends on
 * the room's state at that event. Applied wherever events leave the server for clients, and (filterForServer) for
 * other servers. Client reads also leave out redactions that do not apply (see redactions.ts).
 *
 * Events of erased users (deactivated with `erase: true`) are shown redacted, as Synapse does, to users who were not
 * joined to the room when they were sent, and to every other server.
 */
import { splitStateMapKey, stateMapKey, type StateMap } from "../../core/events/event.js";
import { redactPdu } from "../../core/events/redaction.js";
import { userIdDomain } from "../../core/ids/ids.js";
import type { Storage } from "../../storage/storage.js";
import { trustedEvent, type EventCache, type StoredEvent } from "./event_cache.js";
import { RedactionRules } from "./redactions.js";
import type { StateService } from "./state.js";

type Visibility = "world_readable" | "shared" | "invited" | "joined";

const KNOWN = new Set(["world_readable", "shared", "invited", "joined"]);
const HV_KEY = stateMapKey("m.room.history_visibility", "");
/** Every m.room.member key of a state map starts with this. */
const MEMBER_PREFIX = stateMapKey("m.room.member", "");

export class VisibilityService {
  private readonly redactions: RedactionRules;
  /** Erased users (few: kept in memory, loaded at start). */
  private readonly erased = new Set<string>();

  constructor(
    private readonly storage: Storage,
    private readonly events: EventCache,
    private readonly state: StateService,
  ) {
    this.redactions = new RedactionRules(events, state);
  }

  async start(): Promise<void> {
    for (const u of await this.storage.erasedUsers.all()) this.erased.add(u);
  }

  /** A user was erased (the storage row is written by deactivation). */
  markErased(userId: string): void {
    this.erased.add(userId);
  }

  /** The events (in the given order) that `userId` may see; erased senders' events redacted where they must be. */
  async filter(userId: string | null, list: StoredEvent[]): Promise<StoredEvent[]> {
    if (list.length === 0) return list;
    // The user's membership history per room, for rule 3 ("joined the room at any point after the event").
    const joinsByRoom = new Map<string, number[]>();
    const memo = new Map<string, { visibility: Visibility; membership: string | undefined }>();
    const out: StoredEvent[] = [];
    for (const e of list) {
      if (e.outlier || e.rejected || e.softFailed) continue;
      // As Synapse: a redaction that does not apply (unknown target, another room's event, the create event, a
      // foreign server's redaction without the power) is withheld from clients.
      if (e.event.type === "m.room.redaction" && !(await this.redactions.servable(e))) continue;
      if (!(await this.allowed(userId, e, joinsByRoom, memo))) continue;
      out.push(this.erased.has(e.event.sender) && !(await this.joinedAt(userId, e, memo)) ? prunedCopy(e) : e);
    }
    return out;
  }

  /** Whether the user was joined to the room in the state before the event (an erased sender's original audience). */
  private async joinedAt(userId: string | null, e: StoredEvent, memo: Map<string, { visibility: Visibility; membership: string | undefined }>): Promise<boolean> {
    if (userId === null || e.stateGroup === null) return false;
    const after = await this.state.stateOf(e.stateGroup);
    const before = e.event.state_key !== undefined ? stateBefore(after, stateMapKey(e.event.type, e.event.state_key), e.replacesState) : after;
    return (await this.facts(userId, before, memo)).membership === "join";
  }

  async canSee(userId: string | null, e: StoredEvent): Promise<boolean> {
    return (await this.filter(userId, [e])).length === 1;
  }

  /** The event as `userId` may see it (redacted when its sender was erased), or undefined when hidden. */
  async asSeenBy(userId: string | null, e: StoredEvent): Promise<StoredEvent | undefined> {
    return (await this.filter(userId, [e]))[0];
  }

  /**
   * The events as another server may have them (Synapse's filter_events_for_server): with `world_readable` or
   * `shared` history an event is visible to any server; with `invited` or `joined`, only to a server one of whose
   * users was joined (or, for `invited`, invited) in the state at the event. As for users, a history_visibility
   * event, or a member event of one of the server's users, is visible when the state before or after it allows.
   * Events without state (outliers) count as `shared`, as in Synapse. Events the server may not see are returned
   * redacted rather than left out, as Synapse does: the server still needs them to walk the DAG (prev_events), and
   * their redacted form keeps what auth needs while the content stays here.
   */
  async filterForServer(serverName: string, list: StoredEvent[]): Promise<StoredEvent[]> {
    const memo = new Map<number, boolean>();
    const out: StoredEvent[] = [];
    for (const e of list) out.push(!this.erased.has(e.event.sender) && (await this.serverMaySee(serverName, e, memo)) ? e : prunedCopy(e));
    return out;
  }

  private async serverMaySee(serverName: string, e: StoredEvent, memo: Map<number, boolean>): Promise<boolean> {
    if (e.stateGroup === null) return true;
    let allowed = memo.get(e.stateGroup);
    if (allowed === undefined) {
      allowed = await this.stateAllowsServer(serverName, await this.state.stateOf(e.stateGroup));
      memo.set(e.stateGroup, allowed);
    }
    if (allowed) return true;
    const ev = e.event;
    const special = ev.type === "m.room.history_visibility" || (ev.type === "m.room.member" && ev.state_key !== undefined && userIdDomain(ev.state_key) === serverName);
    if (!special || ev.state_key === undefined) return false;
    const after = await this.state.stateOf(e.stateGroup);
    return this.stateAllowsServer(serverName, stateBefore(after, stateMapKey(ev.type, ev.state_key), e.replacesState));
  }

  private async stateAllowsServer(serverName: string, state: StateMap): Promise<boolean> {
    const hvId = state.get(HV_KEY);
    const hv = hvId ? (await this.events.get(hvId))?.event.content.history_visibility : undefined;
    const visibility = typeof hv === "string" && KNOWN.has(hv) ? hv : "shared";
    if (visibility === "world_readable" || visibility === "shared") return true;
    const ids: string[] = [];
    for (const [key, id] of state) {
      if (!key.startsWith(MEMBER_PREFIX)) continue;
      const [, stateKey] = splitStateMapKey(key);
      if (userIdDomain(stateKey) === serverName) ids.push(id);
    }
    for (const m of (await this.events.getMany(ids)).values()) {
      const membership = m.event.content.membership;
      if (membership === "join" || (membership === "invite" && visibility === "invited")) return true;
    }
    return false;
  }

  private async allowed(
    userId: string | null,
    e: StoredEvent,
    joinsByRoom: Map<string, number[]>,
    memo: Map<string, { visibility: Visibility; membership: string | undefined }>,
  ): Promise<boolean> {
    if (e.stateGroup === null) return false;
    const after = await this.state.stateOf(e.stateGroup);
    const ev = e.event;
    const special = ev.type === "m.room.history_visibility" || (ev.type === "m.room.member" && ev.state_key === userId);
    const before = ev.state_key !== undefined ? stateBefore(after, stateMapKey(ev.type, ev.state_key), e.replacesState) : after;
    const views = special ? [before, after] : [before];
    if (special && userId !== null && ev.type === "m.room.member" && ev.content.membership === "leave") {
      // As Synapse: users always see their own leave from the room (or rejected invite, withdrawn knock), whatever the
      // history visibility, so their clients see the room go.
      const was = (await this.facts(userId, before, memo)).membership;
      if (was === "join" || was === "invite" || was === "knock") return true;
    }
    for (const state of views) {
      const { visibility, membership } = await this.facts(userId, state, memo);
      if (visibility === "world_readable") return true;
      if (userId === null) continue;
      if (membership === "join") return true;
      if (visibility === "shared" && (await this.joinedAfter(userId, ev.room_id, e.streamOrdering, joinsByRoom))) return true;
      if (visibility === "invited" && membership === "invite") return true;
    }
    return false;
  }

  private async facts(userId: string | null, state: StateMap, memo: Map<string, { visibility: Visibility; membership: string | undefined }>) {
    const hvId = state.get(HV_KEY);
    const memberId = userId !== null ? state.get(stateMapKey("m.room.member", userId)) : undefined;
    const key = `${hvId ?? ""}|${memberId ?? ""}`;
    const hit = memo.get(key);
    if (hit) return hit;
    const loaded = await this.events.getMany([hvId, memberId].filter((x): x is string => x !== undefined));
    const hv = hvId ? loaded.get(hvId)?.event.content.history_visibility : undefined;
    const m = memberId ? loaded.get(memberId)?.event.content.membership : undefined;
    const facts = {
      visibility: (typeof hv === "string" && KNOWN.has(hv) ? hv : "shared") as Visibility,
      membership: typeof m === "string" ? m : undefined,
    };
    memo.set(key, facts);
    return facts;
  }

  private async joinedAfter(userId: string, roomId: string, streamOrdering: number, joinsByRoom: Map<string, number[]>): Promise<boolean> {
    let joins = joinsByRoom.get(roomId);
    if (!joins) {
      const rows = await this.storage.rooms.membershipChanges(userId, Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
      joins = rows.filter((r) => r.room_id === roomId && r.membership === "join").map((r) => r.stream_ordering);
      joinsByRoom.set(roomId, joins);
    }
    return joins.some((s) => s > streamOrdering);
  }
}

/** The state before a state event, from the state after it and the event it replaced. */
function stateBefore(after: StateMap, key: string, replaced: string | null): StateMap {
  const before = new Map(after);
  if (replaced === null) before.delete(key);
  else before.set(key, replaced);
  return before;
}

/** The event with its content redacted (as if a redaction applied), for servers that may not see it. */
function prunedCopy(e: StoredEvent): StoredEvent {
  return { ...e, event: trustedEvent(e.event.event_id, e.event.room_id, redactPdu(e.version, e.event.pdu)) };
}
