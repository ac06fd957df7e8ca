/**
 * Push rule evaluation (Client-Server API "Push Rules"): which rule of a user's rule set first matches an event, and
 * what its actions say. Split for a homeserver that evaluates one event for every member of a room:
 * - preparePushEvent: once per event, what every member's evaluation reads (property lookups, the body, mentions);
 * - compileRuleset: once per rule set (callers cache it), rules as arrays of closures with patterns compiled;
 * - evaluatePush: per member; allocates nothing on the common path, and the outcome is precomputed per rule.
 * Compiled rules are shared between rule sets that contain the same rule, and what a shared rule's conditions say
 * about the event alone is worked out once per event.
 * The fast path for large rooms: members the event does not concern (concernsUser) and whose rules are the server
 * defaults in that room (equivalentToDefaultsIn) all get evaluateDefaultsForBystander's one outcome.
 */
import type { JsonObject, JsonValue } from "../json/types.js";
import { isJsonObject } from "../json/types.js";
import { bystanderDefaultRules, defaultRuleKey, defaultRuleTemplates, isLegacyMentionRule, localpartOf } from "./default_rules.js";
import { cachedLiteral, compileGlob, compileLiteral, foldForSearch, hasGlobChars } from "./glob.js";
import { lookupProperty, parsePropertyPath } from "./paths.js";
import type { PushAction, PushCondition, PushContext, PushOutcome, PushRule, PushRuleKind, Ruleset, UserPushRules } from "./types.js";
import { PUSH_RULE_KINDS } from "./types.js";

/** What conditions may read besides the event; the bystander rules have no condition on the user. */
type ConditionContext = Omit<PushContext, "userId" | "displayName"> & { displayName?: string | null };

const MISSING = Symbol("missing");
const MEMBER_TYPE = compileGlob("m.room.member");
const INVITE = compileGlob("invite");

/** An event prepared for the evaluation of many users' rules (see preparePushEvent). */
export class PreparedPushEvent {
  readonly roomId: string | undefined;
  readonly sender: string | undefined;
  /** `content.body` when it is a string. */
  readonly body: string | undefined;
  /** The content has an `m.mentions` property (any value), which turns the legacy mention rules off. */
  readonly hasMentions: boolean;
  /** The strings in `content["m.mentions"].user_ids`. */
  readonly mentionedUserIds: ReadonlySet<string>;
  /** For an invite (`.m.rule.invite_for_me` apart from its user condition), the invitee's state_key. */
  readonly inviteStateKey: string | undefined;
  private readonly values = new Map<string, JsonValue | typeof MISSING>();
  private readonly results = new Map<(event: PreparedPushEvent) => boolean, boolean>();
  private foldedBody: string | undefined;

  constructor(readonly event: JsonObject) {
    this.roomId = typeof event.room_id === "string" ? event.room_id : undefined;
    this.sender = typeof event.sender === "string" ? event.sender : undefined;
    const content = isJsonObject(event.content) ? event.content : undefined;
    this.body = typeof content?.body === "string" ? content.body : undefined;
    this.hasMentions = content !== undefined && Object.hasOwn(content, "m.mentions");
    const mentions = content?.["m.mentions"];
    const userIds = isJsonObject(mentions) && Array.isArray(mentions.user_ids) ? mentions.user_ids : [];
    this.mentionedUserIds = new Set(userIds.filter((id): id is string => typeof id === "string"));
    const membership = content?.membership;
    this.inviteStateKey =
      typeof event.type === "string" &&
      MEMBER_TYPE.matchesWhole(event.type) &&
      typeof membership === "string" &&
      INVITE.matchesWhole(membership) &&
      typeof event.state_key === "string"
        ? event.state_key
        : undefined;
  }

  /**
   * Only the users in `m.mentions.user_ids` can be concerned (concernsMember): not an invite, and m.mentions or no
   * body rules out the legacy display-name and user-name rules.
   */
  get concernsOnlyMentioned(): boolean {
    return this.inviteStateKey === undefined && (this.hasMentions || this.body === undefined);
  }

  /** The value at the dotted `key` (already parsed into `path`), looked up once per event. */
  valueAt(key: string, path: readonly string[]): JsonValue | undefined {
    let value = this.values.get(key);
    if (value === undefined) {
      const found = lookupProperty(this.event, path);
      value = found === undefined ? MISSING : found;
      this.values.set(key, value);
    }
    return value === MISSING ? undefined : value;
  }

  /** `test(this)`, computed once per event: for conditions many users' rules share. */
  remembered(test: (event: PreparedPushEvent) => boolean): boolean {
    let result = this.results.get(test);
    if (result === undefined) {
      result = test(this);
      this.results.set(test, result);
    }
    return result;
  }

  /** `text`, taken literally, occurs in the body between word boundaries (case-insensitively). */
  bodyContainsWords(text: string): boolean {
    const body = this.body;
    if (body === undefined) return false;
    const known = cachedLiteral(text);
    if (known) return known.matchesWords(body);
    // Most names do not occur in most messages: rule them out without compiling (and caching) a matcher.
    this.foldedBody ??= foldForSearch(body);
    if (!this.foldedBody.includes(foldForSearch(text))) return false;
    return compileLiteral(text).matchesWords(body);
  }

  /** bodyContainsWords for a text whose foldForSearch is known. */
  bodyContainsFoldedWords(text: string, folded: string): boolean {
    const body = this.body;
    if (body === undefined) return false;
    this.foldedBody ??= foldForSearch(body);
    return this.foldedBody.includes(folded) && compileLiteral(text).matchesWords(body);
  }

  /** The invitee's state_key matches `userId` as `.m.rule.invite_for_me`'s pattern (false when not an invite). */
  inviteIsFor(userId: string): boolean {
    const stateKey = this.inviteStateKey;
    if (stateKey === undefined) return false;
    if (stateKey === userId) return true;
    // Whole-value matching of literals is symmetric, so the event's state_key can be the compiled side: one
    // matcher per event instead of one per member.
    return hasGlobChars(userId) ? compileGlob(userId).matchesWhole(stateKey) : compileLiteral(stateKey).matchesWhole(userId);
  }
}

/** Prepares `event` (as clients see it: type, content, sender, state_key, room_id…) for evaluatePush. */
export function preparePushEvent(event: JsonObject): PreparedPushEvent {
  return new PreparedPushEvent(event);
}

// ---------------------------------------------------------------------------------------------------------------
// Compiling

/** A condition that reads only the event: its result is the same for every user. */
type EventTest = (event: PreparedPushEvent) => boolean;
/** A condition that also reads the user's context (display name, member count, power levels). */
type ContextTest = (event: PreparedPushEvent, ctx: ConditionContext) => boolean;

export interface CompiledRule {
  readonly kind: PushRuleKind;
  readonly ruleId: string;
  /** The rule's conditions that read only the event, as one test; undefined when there are none. */
  readonly eventTest: EventTest | undefined;
  /** The rest of its conditions. A rule matches when all hold (so a rule with none always matches). */
  readonly contextTests: readonly ContextTest[];
  /** A legacy body-mention server-default rule, off for events with `m.mentions`. */
  readonly legacyMention: boolean;
  readonly outcome: PushOutcome;
  /** In more than one rule set (most server-default rules are): worth remembering eventTest's result per event. */
  shared: boolean;
}

/** A rule set ready for evaluatePush: enabled rules that can match, in evaluation order. */
export interface CompiledRuleset {
  readonly rules: readonly CompiledRule[];
}

/**
 * Compiled rules by their JSON, so the many users whose rules are alike share closures, RegExps and outcomes (a
 * user's server defaults differ from another's in three rules only). Least recently used go first.
 */
const RULE_CACHE_LIMIT = 16_384;
const ruleCache = new Map<string, CompiledRule | null>();

/**
 * Compiles a rule set (as effectiveRuleset or serverDefaultRules give it). Disabled rules are dropped, and so are
 * rules that can never match: an unknown or malformed condition (the spec: unrecognised conditions never match).
 */
export function compileRuleset(ruleset: Ruleset): CompiledRuleset {
  const rules: CompiledRule[] = [];
  for (const kind of PUSH_RULE_KINDS) {
    for (const rule of ruleset[kind] ?? []) {
      if (!rule.enabled) continue;
      const compiled = cachedRule(kind, rule);
      if (compiled !== null) rules.push(compiled);
    }
  }
  return { rules };
}

function cachedRule(kind: PushRuleKind, rule: PushRule): CompiledRule | null {
  const key = `${kind}/${JSON.stringify(rule)}`;
  let compiled = ruleCache.get(key);
  if (compiled !== undefined) {
    ruleCache.delete(key);
    if (compiled) compiled.shared = true;
  } else {
    if (ruleCache.size >= RULE_CACHE_LIMIT) ruleCache.delete(ruleCache.keys().next().value as string);
    compiled = compileRule(kind, rule);
  }
  ruleCache.set(key, compiled);
  return compiled;
}

function compileRule(kind: PushRuleKind, rule: PushRule): CompiledRule | null {
  const conditions = ruleConditions(kind, rule);
  if (conditions === null) return null;
  const eventTests: EventTest[] = [];
  const contextTests: ContextTest[] = [];
  for (const condition of conditions) {
    const compiled = compileCondition(condition);
    if (compiled === null) return null;
    if ("event" in compiled) eventTests.push(compiled.event);
    else contextTests.push(compiled.context);
  }
  return {
    kind,
    ruleId: rule.rule_id,
    eventTest: allOf(eventTests),
    contextTests,
    legacyMention: rule.default && isLegacyMentionRule(kind, rule.rule_id),
    outcome: outcomeOf(kind, rule.rule_id, rule.actions),
    shared: false,
  };
}

function allOf(tests: EventTest[]): EventTest | undefined {
  const [first, second] = tests;
  if (first === undefined) return undefined;
  if (second === undefined) return first;
  return (event) => tests.every((test) => test(event));
}

/**
 * A rule's conditions as override/underride conditions: content, room and sender rules have predefined ones (the
 * pattern on content.body by words; room_id or sender exactly the rule id). Null when the rule can never match.
 */
function ruleConditions(kind: PushRuleKind, rule: PushRule): PushCondition[] | null {
  switch (kind) {
    case "override":
    case "underride":
      if (rule.conditions === undefined) return [];
      return Array.isArray(rule.conditions) ? rule.conditions : null;
    case "content":
      return typeof rule.pattern === "string" ? [{ kind: "event_match", key: "content.body", pattern: rule.pattern }] : null;
    case "room":
      return [{ kind: "event_property_is", key: "room_id", value: rule.rule_id }];
    case "sender":
      return [{ kind: "event_property_is", key: "sender", value: rule.rule_id }];
  }
}

const eventOnly = (test: EventTest) => ({ event: test });
const withContext = (test: ContextTest) => ({ context: test });

/** One condition as a closure, or null when it can never match (unknown kind, missing or mistyped parameters). */
function compileCondition(condition: PushCondition): { event: EventTest } | { context: ContextTest } | null {
  if (!isJsonObject(condition)) return null;
  switch (condition.kind) {
    case "event_match": {
      const { key, pattern } = condition;
      if (typeof key !== "string" || typeof pattern !== "string") return null;
      const path = parsePropertyPath(key);
      const glob = compileGlob(pattern);
      if (key === "content.body") {
        return eventOnly((event) => {
          const value = event.valueAt(key, path);
          return typeof value === "string" && glob.matchesWords(value);
        });
      }
      return eventOnly((event) => {
        const value = event.valueAt(key, path);
        return typeof value === "string" && glob.matchesWhole(value);
      });
    }
    case "event_property_is": {
      const { key, value } = condition;
      if (typeof key !== "string" || !isExactValue(value)) return null;
      const path = parsePropertyPath(key);
      return eventOnly((event) => event.valueAt(key, path) === value);
    }
    case "event_property_contains": {
      const { key, value } = condition;
      if (typeof key !== "string" || !isExactValue(value)) return null;
      const path = parsePropertyPath(key);
      return eventOnly((event) => {
        const array = event.valueAt(key, path);
        return Array.isArray(array) && array.includes(value);
      });
    }
    case "contains_display_name":
      return withContext((event, ctx) => {
        const name = ctx.displayName;
        return name !== undefined && name !== null && name !== "" && event.bodyContainsWords(name);
      });
    case "room_member_count": {
      const is = condition.is;
      const test = typeof is === "string" ? parseMemberCountTest(is) : null;
      return test && withContext((_event, ctx) => test(ctx.roomMemberCount));
    }
    case "sender_notification_permission": {
      const key = condition.key;
      if (typeof key !== "string") return null;
      return withContext((_event, ctx) => ctx.senderPowerLevel >= ctx.notificationPowerLevel(key));
    }
    default:
      return null;
  }
}

/** The values event_property_is/contains compare: strings, canonical-JSON integers, booleans, null. */
function isExactValue(value: JsonValue | undefined): value is string | number | boolean | null {
  return typeof value === "string" || typeof value === "boolean" || value === null || Number.isSafeInteger(value);
}

/** `is` of room_member_count: a decimal integer, optionally after `==`, `<`, `>`, `<=` or `>=` (default `==`). */
function parseMemberCountTest(is: string): ((count: number) => boolean) | null {
  const match = /^(==|<=|>=|<|>)?([0-9]+)$/.exec(is);
  if (!match) return null;
  const n = Number(match[2]);
  switch (match[1]) {
    case "<":
      return (count) => count < n;
    case ">":
      return (count) => count > n;
    case "<=":
      return (count) => count <= n;
    case ">=":
      return (count) => count >= n;
    default:
      return (count) => count === n;
  }
}

/** The outcome a rule yields, computed once: historical `dont_notify`/`coalesce` stripped, tweaks read. */
function outcomeOf(kind: PushRuleKind, ruleId: string, actions: readonly PushAction[]): PushOutcome {
  const kept = stripHistoricalActions(actions);
  let highlight = false;
  for (const action of kept) {
    if (isJsonObject(action) && action.set_tweak === "highlight") {
      // A highlight tweak without a value means true; with one, only `true` is true.
      highlight = !Object.hasOwn(action, "value") || action.value === true;
      break;
    }
  }
  return deepFreeze({ kind, ruleId, actions: structuredClone(kept), notify: kept.includes("notify"), highlight });
}

/** The spec's historical actions, which clients and servers must ignore. */
export function stripHistoricalActions(actions: readonly PushAction[]): PushAction[] {
  return Array.isArray(actions) ? actions.filter((a) => a !== "dont_notify" && a !== "coalesce") : [];
}

function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null) {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}

// ---------------------------------------------------------------------------------------------------------------
// Evaluating

/**
 * The first rule of `rules` that matches `event` for the user in `ctx` (kinds in spec order, `.m.rule.master`
 * first), or undefined when none does. The outcome is shared between evaluations: do not modify it.
 */
export function evaluatePush(rules: CompiledRuleset, event: PreparedPushEvent, ctx: PushContext): PushOutcome | undefined {
  return firstMatch(rules, event, ctx);
}

function firstMatch(rules: CompiledRuleset, event: PreparedPushEvent, ctx: ConditionContext): PushOutcome | undefined {
  next: for (const rule of rules.rules) {
    if (rule.legacyMention && event.hasMentions) continue;
    const eventTest = rule.eventTest;
    if (eventTest !== undefined && !(rule.shared ? event.remembered(eventTest) : eventTest(event))) continue;
    for (const test of rule.contextTests) {
      if (!test(event, ctx)) continue next;
    }
    return rule.outcome;
  }
  return undefined;
}

/**
 * Could a condition about this user in the server-default rules hold for this event? True when the event invites
 * them (`.m.rule.invite_for_me`), lists them in `m.mentions.user_ids` (`.m.rule.is_user_mention`) or, only
 * without `m.mentions`, has their display name or localpart in its body (the legacy rules). When false, their
 * outcome under the server defaults is evaluateDefaultsForBystander's.
 */
export function concernsUser(event: PreparedPushEvent, userId: string, displayName: string | null): boolean {
  return concernsMember(event, memberNames(userId, displayName));
}

/**
 * A member's names as concernsMember checks them, case-folded once: a room's member list keeps these, so an event
 * into a room of 10,000 members folds no names.
 */
export interface MemberNames {
  readonly userId: string;
  readonly displayName: string | null;
  /** foldForSearch of the display name (null without one). */
  readonly foldedName: string | null;
  readonly localpart: string;
  /** foldForSearch of the localpart; undefined when the localpart is a glob (`*` or `?`). */
  readonly foldedLocalpart: string | undefined;
}

export function memberNames(userId: string, displayName: string | null): MemberNames {
  const localpart = localpartOf(userId);
  const name = displayName === "" ? null : displayName;
  return { userId, displayName, foldedName: name === null ? null : foldForSearch(name), localpart, foldedLocalpart: hasGlobChars(localpart) ? undefined : foldForSearch(localpart) };
}

/** concernsUser with the member's names folded already. */
export function concernsMember(event: PreparedPushEvent, m: MemberNames): boolean {
  if (event.mentionedUserIds.has(m.userId)) return true;
  if (event.inviteIsFor(m.userId)) return true;
  const body = event.body;
  if (event.hasMentions || body === undefined) return false;
  if (m.foldedName !== null && event.bodyContainsFoldedWords(m.displayName!, m.foldedName)) return true;
  // `.m.rule.contains_user_name`: the localpart is the rule's pattern, so a glob when it has `*` or `?`.
  return m.foldedLocalpart === undefined ? compileGlob(m.localpart).matchesWords(body) : event.bodyContainsFoldedWords(m.localpart, m.foldedLocalpart);
}

let bystanderRules: CompiledRuleset | undefined;

/**
 * The server-default rules' outcome for every user whom concernsUser says the event does not concern: the same for
 * all of them, so a room's bystanders share one evaluation.
 */
export function evaluateDefaultsForBystander(
  event: PreparedPushEvent,
  ctx: Omit<PushContext, "userId" | "displayName">,
): PushOutcome | undefined {
  bystanderRules ??= compileRuleset(bystanderDefaultRules());
  return firstMatch(bystanderRules, event, ctx);
}

/**
 * Can the user's stored rules change no outcome in `roomId` compared with the plain server defaults? True when no
 * server-default rule is changed and every enabled rule of their own is scoped to another room: a room rule for
 * another room, or an override/underride rule with an `event_match` on `room_id` whose pattern has no wildcards and
 * does not match roomId. Such users in that room can take the bystander path (with concernsUser).
 */
export function equivalentToDefaultsIn(stored: UserPushRules, roomId: string): boolean {
  for (const kind of PUSH_RULE_KINDS) {
    for (const template of defaultRuleTemplates()[kind]) {
      const change = stored.defaults[defaultRuleKey(kind, template.rule_id)];
      if (change === undefined) continue;
      if (change.enabled !== undefined && change.enabled !== template.enabled) return false;
      if (change.actions !== undefined && !jsonEqual(stripHistoricalActions(change.actions), stripHistoricalActions(template.actions))) {
        return false;
      }
    }
    for (const rule of stored.rules[kind] ?? []) {
      if (!rule.enabled) continue;
      if (kind === "room" && rule.rule_id !== roomId) continue;
      if ((kind === "override" || kind === "underride") && scopedToAnotherRoom(rule.conditions, roomId)) continue;
      return false;
    }
  }
  return true;
}

function scopedToAnotherRoom(conditions: PushCondition[] | undefined, roomId: string): boolean {
  return (conditions ?? []).some(
    (c) =>
      c.kind === "event_match" &&
      c.key === "room_id" &&
      typeof c.pattern === "string" &&
      !hasGlobChars(c.pattern) &&
      !compileGlob(c.pattern).matchesWhole(roomId),
  );
}

function jsonEqual(a: JsonValue | undefined, b: JsonValue | undefined): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((v, i) => jsonEqual(v, b[i]));
  }
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((k) => Object.hasOwn(b, k) && jsonEqual(a[k], b[k]));
}
