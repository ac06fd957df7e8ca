/**
 * Push rule evaluation for every new event (spec "Push Notifications", "Server behaviour"): for each local member
 * of the room except the sender, the first matching rule's actions. An EventConsumer: the outcomes are written in
 * the event's own transaction, so the notification counts move in the same /sync as the event.
 *
 * Cost stays flat as rooms grow. Members whose rules in this room are the server defaults and whom the event does not
 * name (not the invitee, not mentioned, no legacy display-name or user-name match) share one outcome — the
 * "bystanders'" — computed once and stored once per event. Everyone else is evaluated on their own compiled rules,
 * and gets a row of their own only where their outcome differs.
 */
import { stagedRow, type Staged } from "../../storage/staged_rows.js";
import type { Logger } from "pino";
import { stateMapKey, type Event, type StateMap } from "../../core/events/event.js";
import { isJsonObject, type JsonObject } from "../../core/json/types.js";
import { concernsMember, evaluateDefaultsForBystander, evaluatePush, preparePushEvent, type MemberNames, type PreparedPushEvent } from "../../core/push/index.js";
import type { PushContext, PushOutcome } from "../../core/push/types.js";
import { notificationLevel, userPowerLevel } from "../../core/rooms/power_levels.js";
import type { RoomVersion } from "../../core/rooms/versions.js";
import type { EventPushUserTable } from "../../storage/schema.js";
import type { Storage } from "../../storage/storage.js";
import type { EventCache, StoredEvent } from "../rooms/event_cache.js";
import type { EventConsumer, NewEvent } from "../rooms/pipeline/consumers.js";
import type { PushRoomMembers } from "./room_members.js";
import type { PushRuleService, UserRules } from "./rules.js";

/** Synapse's default for a `notifications` key the power levels do not name. */
const DEFAULT_NOTIFICATION_LEVEL = 50;
/** Spec: follow relations at most this far to find an event's thread. */
const MAX_THREAD_HOPS = 3;

export interface PushEvaluatorDeps {
  storage: Storage;
  events: EventCache;
  rules: PushRuleService;
  members: PushRoomMembers;
  isLocal: (userId: string) => boolean;
  /** Users with at least one pusher (their notifications go to push gateways). */
  hasPushers: (userId: string) => boolean;
  usersWithPushers: () => Iterable<string> & { readonly size: number };
  /** After commit: these users were notified of this event (pushers deliver it). */
  onNotified: (userIds: readonly string[], event: StoredEvent) => void;
  /** After commit: outcomes for this room were written at this stream position (counts move). */
  onWritten: (roomId: string, stream: number) => void;
  log: Logger;
}

export class PushEvaluator implements EventConsumer {
  readonly name = "push";
  /** Notified users with pushers, from stage to commit. */
  private readonly pending = new Map<string, string[]>();
  /** Events whose outcomes were staged, until they commit. */
  private readonly written = new Set<string>();

  constructor(private readonly deps: PushEvaluatorDeps) {}

  async stage(e: NewEvent): Promise<Staged[]> {
    const { storage, isLocal } = this.deps;
    const ev = e.event;
    const rows: Staged[] = [];
    const threadId = await this.threadOf(ev);
    // A local user has read everything up to their own event (spec "Marking notifications as read"), and starts
    // reading a room they join at their join.
    if (e.local && isLocal(ev.sender)) rows.push(stagedRow(storage.push.readPositionMoves, { user_id: ev.sender, room_id: ev.room_id, thread_id: threadId, stream_ordering: e.streamOrdering }));
    const membership = ev.type === "m.room.member" && typeof ev.content.membership === "string" ? ev.content.membership : undefined;
    if (membership === "join" && ev.state_key !== undefined && isLocal(ev.state_key) && !e.outOfBand) {
      rows.push(stagedRow(storage.push.readPositionMoves, { user_id: ev.state_key, room_id: ev.room_id, thread_id: "", stream_ordering: e.streamOrdering }));
    }

    const members = e.outOfBand ? undefined : await this.deps.members.of(ev.room_id, e.stateBefore);
    // The invitee is not a member yet but is told of the invite (.m.rule.invite_for_me).
    const invitee = membership === "invite" && ev.state_key !== undefined && isLocal(ev.state_key) && ev.state_key !== ev.sender && !members?.local.has(ev.state_key) ? ev.state_key : undefined;
    const local = members?.local ?? new Map<string, MemberNames>();
    const recipientCount = local.size - (local.has(ev.sender) ? 1 : 0) + (invitee ? 1 : 0);
    if (recipientCount > 0) rows.push(...(await this.evaluate(e, threadId, local, invitee, recipientCount, members?.joined.size ?? 0)));

    if (members) this.trackMembers(e);
    return rows;
  }

  committed(e: StoredEvent): void {
    if (this.written.delete(e.event.event_id)) this.deps.onWritten(e.event.room_id, e.streamOrdering);
    const users = this.pending.get(e.event.event_id);
    if (!users) return;
    this.pending.delete(e.event.event_id);
    this.deps.onNotified(users, e);
  }

  aborted(e: NewEvent): void {
    this.pending.delete(e.event.event_id);
    this.written.delete(e.event.event_id);
    this.deps.members.drop(e.event.room_id);
  }

  /**
   * Outcomes for the room's local members except the sender (and an invitee who is not one yet). Only the members
   * the event concerns and those who changed their rules are evaluated on their own; the work is proportional to
   * them and to the users with pushers, not to the room's size.
   */
  private async evaluate(e: NewEvent, threadId: string, members: ReadonlyMap<string, MemberNames>, invitee: string | undefined, recipientCount: number, joinedCount: number): Promise<Staged[]> {
    const ev = e.event;
    const prepared = preparePushEvent(clientView(ev));
    const shared = await this.sharedContext(e.version, e.stateBefore, ev.sender, joinedCount);
    const bystander = evaluateDefaultsForBystander(prepared, shared);
    const isRecipient = (u: string) => u !== ev.sender && (u === invitee || members.has(u));
    // Who the event concerns (named, invited, or — without m.mentions — in the body).
    const concerned = new Set<string>();
    if (invitee) concerned.add(invitee);
    if (prepared.concernsOnlyMentioned) {
      for (const u of prepared.mentionedUserIds) if (isRecipient(u)) concerned.add(u);
    } else {
      for (const [u, names] of members) if (u !== ev.sender && concernsMember(prepared, names)) concerned.add(u);
    }
    // Everyone else with the server defaults is a bystander without a rule lookup.
    const lookup = new Set(concerned);
    const customised = this.deps.rules.customisedUsers();
    for (const u of customised ? smallerSide(customised, members) : members.keys()) if (isRecipient(u)) lookup.add(u);
    const rules = lookup.size > 0 ? await this.deps.rules.forUsers([...lookup]) : new Map<string, UserRules>();
    const now = Date.now();
    const own: EventPushUserTable[] = [];
    const notified: string[] = [];
    /** Recipients with an outcome of their own (not the bystanders'). */
    const apart = new Set<string>();
    for (const userId of lookup) {
      const displayName = members.get(userId)?.displayName ?? null;
      const outcome = this.outcomeFor(userId, displayName, rules.get(userId)!, ev.room_id, prepared, shared, concerned.has(userId));
      if (outcome === "bystander" || (members.has(userId) && sameOutcome(outcome, bystander))) continue;
      apart.add(userId);
      own.push({
        user_id: userId,
        stream_ordering: e.streamOrdering,
        event_id: ev.event_id,
        room_id: ev.room_id,
        thread_id: threadId,
        actions: JSON.stringify(outcome?.actions ?? []),
        notif: outcome?.notify ? 1 : 0,
        highlight: outcome?.highlight ? 1 : 0,
        ts: now,
      });
      if (outcome?.notify && this.deps.hasPushers(userId)) notified.push(userId);
    }
    const bystanders = recipientCount - apart.size;
    if (bystander?.notify && bystanders > 0) {
      for (const u of smallerSide(this.deps.usersWithPushers(), members)) if (members.has(u) && isRecipient(u) && !apart.has(u) && this.deps.hasPushers(u)) notified.push(u);
    }
    // A member's own "not notified" row only matters against a shared outcome that notifies.
    const ownRows = bystander?.notify ? own : own.filter((r) => r.notif === 1);
    const rows: Staged[] = [];
    const storage = this.deps.storage;
    if (bystander?.notify && bystanders > 0) {
      rows.push(
        stagedRow(storage.push.bystanders, {
          stream_ordering: e.streamOrdering,
          event_id: ev.event_id,
          room_id: ev.room_id,
          sender: ev.sender,
          thread_id: threadId,
          actions: JSON.stringify(bystander.actions),
          highlight: bystander.highlight ? 1 : 0,
          ts: now,
        }),
      );
    }
    for (const r of ownRows) rows.push(stagedRow(storage.push.members, r));
    if (rows.length > 0) this.written.add(ev.event_id);
    if (notified.length > 0) this.pending.set(ev.event_id, notified);
    return rows;
  }

  /** "bystander" when the user shares the bystanders' outcome by construction (no evaluation needed). */
  private outcomeFor(
    userId: string,
    displayName: string | null,
    rules: UserRules,
    roomId: string,
    prepared: PreparedPushEvent,
    shared: Omit<PushContext, "userId" | "displayName">,
    concerned: boolean,
  ): PushOutcome | undefined | "bystander" {
    const defaults = rules.defaultsIn(roomId);
    if (defaults && !concerned) return "bystander";
    const ctx: PushContext = { ...shared, userId, displayName };
    return evaluatePush(defaults ? this.deps.rules.compiledDefaults(userId) : rules.compiled, prepared, ctx);
  }

  /** What every member's evaluation shares: member count and the sender's power. */
  private async sharedContext(version: RoomVersion, state: StateMap, sender: string, joinedCount: number): Promise<Omit<PushContext, "userId" | "displayName">> {
    const ids = [state.get(stateMapKey("m.room.create", "")), state.get(stateMapKey("m.room.power_levels", ""))];
    const loaded = await this.deps.events.getMany(ids.filter((x): x is string => x !== undefined));
    const create = ids[0] !== undefined ? loaded.get(ids[0])?.event : undefined;
    const pl = ids[1] !== undefined ? loaded.get(ids[1])?.event : undefined;
    let senderPowerLevel = 0;
    try {
      senderPowerLevel = userPowerLevel(version, create, pl, sender);
    } catch {
      // Malformed power levels: the sender has no power to notify the room.
    }
    return {
      roomMemberCount: joinedCount,
      senderPowerLevel,
      notificationPowerLevel: (key) => {
        try {
          return notificationLevel(version, pl, key) ?? DEFAULT_NOTIFICATION_LEVEL;
        } catch {
          return Infinity;
        }
      },
    };
  }

  /** Keeps the room's member list current with the event's membership changes (after it was evaluated). */
  private trackMembers(e: NewEvent): void {
    const members = this.deps.members;
    for (const [key, id] of e.stateChanges) {
      if (!key.startsWith(MEMBER_PREFIX)) continue;
      if (id !== e.event.event_id || e.event.state_key === undefined) {
        // Changed by state resolution rather than by this event: reload from the next event's state.
        members.drop(e.event.room_id);
        return;
      }
      const c = e.event.content;
      members.apply(e.event.room_id, e.event.state_key, typeof c.membership === "string" ? c.membership : "leave", typeof c.displayname === "string" ? c.displayname : null);
    }
  }

  /** The event's thread: the root of an m.thread relation, followed through other relations at most 3 hops. */
  private async threadOf(ev: Event): Promise<string> {
    let content: JsonObject = ev.content;
    for (let hop = 0; hop < MAX_THREAD_HOPS; hop++) {
      const rel = isJsonObject(content["m.relates_to"]) ? content["m.relates_to"] : undefined;
      if (!rel || typeof rel.event_id !== "string") return "main";
      if (rel.rel_type === "m.thread") return rel.event_id;
      const target = await this.deps.events.get(rel.event_id);
      if (!target) return "main";
      content = target.event.content;
    }
    return "main";
  }
}

const MEMBER_PREFIX = `${"m.room.member".length}:m.room.member`;

/** The keys of whichever is smaller, to intersect a set with a map by walking the short side. */
function smallerSide(set: Iterable<string> & { readonly size: number }, map: ReadonlyMap<string, unknown>): Iterable<string> {
  return set.size <= map.size ? set : map.keys();
}

/** The event as push rules see it (the client format's top-level keys). */
function clientView(ev: Event): JsonObject {
  const out: JsonObject = { event_id: ev.event_id, type: ev.type, content: ev.content, sender: ev.sender, room_id: ev.room_id, origin_server_ts: ev.origin_server_ts };
  if (ev.state_key !== undefined) out.state_key = ev.state_key;
  return out;
}

function sameOutcome(a: PushOutcome | undefined, b: PushOutcome | undefined): boolean {
  if (!a?.notify || !b?.notify) return !a?.notify && !b?.notify;
  return a.highlight === b.highlight && JSON.stringify(a.actions) === JSON.stringify(b.actions);
}
