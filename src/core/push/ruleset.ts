/**
 * Editing a user's push rules (Client-Server API "Push Rules: API"), pure: each function takes what is stored and
 * returns the new value, never modifying its input, or throws a PushRuleError with the status and errcode the
 * endpoint answers. Where the spec names no errcode, Synapse's are used: 400 M_UNKNOWN for a request it refuses,
 * 404 M_NOT_FOUND for a rule that does not exist.
 *
 * What is stored (UserPushRules) is only what the user changed; effectiveRuleset merges it with the server defaults
 * into the rule set that GET /pushrules/ and the `m.push_rules` account data show.
 */
import { isJsonObject } from "../json/types.js";
import { defaultRuleKey, isServerDefaultRule, serverDefaultRules } from "./default_rules.js";
import type { PushAction, PushCondition, PushRule, PushRuleKind, Ruleset, UserPushRules } from "./types.js";
import { PUSH_RULE_KINDS } from "./types.js";

export class PushRuleError extends Error {
  constructor(
    readonly status: 400 | 404,
    readonly errcode: string,
    message: string,
  ) {
    super(message);
    this.name = "PushRuleError";
  }
}

const refused = (message: string) => new PushRuleError(400, "M_UNKNOWN", message);
const notFound = (message = "The push rule was not found.") => new PushRuleError(404, "M_NOT_FOUND", message);

export function isPushRuleKind(kind: string): kind is PushRuleKind {
  return (PUSH_RULE_KINDS as readonly string[]).includes(kind);
}

export function emptyUserRules(): UserPushRules {
  return { rules: { override: [], content: [], room: [], sender: [], underride: [] }, defaults: {} };
}

/**
 * The user's whole rule set: `.m.rule.master` first of all, then the user's override rules, then the other default
 * overrides; for content and underride the user's rules before the defaults; room and sender rules are the user's
 * only. Server-default rules carry the user's `enabled`/`actions` changes. Each rule has the fields of its kind:
 * `conditions` for override/underride, `pattern` for content.
 */
export function effectiveRuleset(userId: string, stored: UserPushRules | undefined): Ruleset {
  const defaults = serverDefaultRules(userId);
  const own = (kind: PushRuleKind) => (stored?.rules[kind] ?? []).map((rule) => shapeFor(kind, rule));
  const changed = (kind: PushRuleKind) => (rule: PushRule) => {
    const change = stored?.defaults[defaultRuleKey(kind, rule.rule_id)];
    if (change === undefined) return rule;
    return { ...rule, enabled: change.enabled ?? rule.enabled, actions: change.actions ? structuredClone(change.actions) : rule.actions };
  };
  const [master, ...otherOverrides] = defaults.override.map(changed("override"));
  return {
    override: [...(master ? [master] : []), ...own("override"), ...otherOverrides],
    content: [...own("content"), ...defaults.content.map(changed("content"))],
    room: own("room"),
    sender: own("sender"),
    underride: [...own("underride"), ...defaults.underride.map(changed("underride"))],
  };
}

/** A rule of the merged rule set, or undefined (also for an unknown kind). */
export function getRule(ruleset: Ruleset, kind: string, ruleId: string): PushRule | undefined {
  return isPushRuleKind(kind) ? ruleset[kind].find((rule) => rule.rule_id === ruleId) : undefined;
}

/**
 * PUT /pushrules/global/{kind}/{ruleId}: creates the user's rule or replaces it. A new rule goes first in its kind
 * unless `before`/`after` place it (`before` wins when both are given, as the spec says); a replaced rule keeps its
 * place and its `enabled` unless they place it. Neither may name a server-default rule.
 */
export function putUserRule(
  stored: UserPushRules,
  kind: string,
  ruleId: string,
  body: unknown,
  position: { before?: string; after?: string },
): UserPushRules {
  const k = checkKind(kind);
  checkRuleId(ruleId);
  // The spec reserves ids starting with "." for server-default rules, so this also refuses replacing one.
  if (ruleId.startsWith(".")) throw refused("cannot add new rule_ids that start with '.'");
  if (!isJsonObject(body)) throw refused("The push rule must be a JSON object");

  const list = [...(stored.rules[k] ?? [])];
  const index = list.findIndex((rule) => rule.rule_id === ruleId);
  const rule: PushRule = { rule_id: ruleId, default: false, enabled: list[index]?.enabled ?? true, actions: [] };
  if (k === "override" || k === "underride") {
    if (body.conditions === undefined) throw refused("Missing 'conditions'");
    rule.conditions = checkConditions(body.conditions);
  } else if (k === "content") {
    if (typeof body.pattern !== "string") throw refused("Content rule missing 'pattern'");
    rule.pattern = body.pattern;
  }
  rule.actions = checkActions(body.actions);

  const anchor = position.before || position.after;
  if (!anchor) {
    if (index >= 0) list[index] = rule;
    else list.unshift(rule);
  } else {
    // Every server-default rule id starts with ".", and no user rule's does.
    if (anchor.startsWith(".")) throw refused(`cannot add a rule relative to a server-default rule: ${anchor}`);
    if (index >= 0) list.splice(index, 1);
    if (anchor === ruleId && index >= 0) {
      list.splice(index, 0, rule);
    } else {
      const at = list.findIndex((r) => r.rule_id === anchor);
      if (at < 0) throw refused(`before/after rule not found: ${anchor}`);
      list.splice(position.before ? at : at + 1, 0, rule);
    }
  }
  return { ...stored, rules: { ...stored.rules, [k]: list } };
}

/**
 * A room upgrade (Synapse's copy_push_rules_from_room_to_room_for_user): the user's enabled rules about the old room
 * are copied for the new one — a room rule for it, and override/underride rules with a `room_id` condition naming
 * it, whose copy (as in Synapse) takes the new room's id as rule id and names the new room in that condition.
 * Existing rules for the new room are kept as they are. Returns `stored` itself when nothing is copied.
 */
export function copyRoomRules(stored: UserPushRules, oldRoomId: string, newRoomId: string): UserPushRules {
  let out = stored;
  for (const kind of PUSH_RULE_KINDS) {
    for (const rule of stored.rules[kind] ?? []) {
      if (!rule.enabled) continue;
      const aboutOld = kind === "room" ? rule.rule_id === oldRoomId : (rule.conditions ?? []).some((c) => c.key === "room_id" && c.pattern === oldRoomId);
      if (!aboutOld || (out.rules[kind] ?? []).some((r) => r.rule_id === newRoomId)) continue;
      const copy: PushRule = { ...structuredClone(rule), rule_id: newRoomId };
      if (copy.conditions) copy.conditions = copy.conditions.map((c) => (c.key === "room_id" && c.pattern === oldRoomId ? { ...c, pattern: newRoomId } : c));
      out = { ...out, rules: { ...out.rules, [kind]: [copy, ...(out.rules[kind] ?? [])] } };
    }
  }
  return out;
}

/** DELETE /pushrules/global/{kind}/{ruleId}: only the user's own rules can be deleted. */
export function deleteUserRule(stored: UserPushRules, kind: string, ruleId: string): UserPushRules {
  // As Synapse: an unknown kind or a server-default rule is simply not one of the user's rules.
  if (!isPushRuleKind(kind)) throw notFound();
  const list = stored.rules[kind] ?? [];
  const index = list.findIndex((rule) => rule.rule_id === ruleId);
  if (index < 0) throw notFound(isServerDefaultRule(kind, ruleId) ? "Server-default push rules cannot be deleted." : undefined);
  return { ...stored, rules: { ...stored.rules, [kind]: list.filter((_, i) => i !== index) } };
}

/** PUT /pushrules/global/{kind}/{ruleId}/enabled, with the body's `enabled`; works on server-default rules too. */
export function setRuleEnabled(stored: UserPushRules, userId: string, kind: string, ruleId: string, enabled: unknown): UserPushRules {
  const target = findTarget(stored, userId, kind, ruleId);
  if (typeof enabled !== "boolean") throw refused("Value for 'enabled' must be boolean");
  return changeRule(stored, target, { enabled });
}

/** PUT /pushrules/global/{kind}/{ruleId}/actions, with the body's `actions` (checked as PUT checks them). */
export function setRuleActions(stored: UserPushRules, userId: string, kind: string, ruleId: string, actions: unknown): UserPushRules {
  const target = findTarget(stored, userId, kind, ruleId);
  return changeRule(stored, target, { actions: checkActions(actions) });
}

// ---------------------------------------------------------------------------------------------------------------

function checkKind(kind: string): PushRuleKind {
  if (!isPushRuleKind(kind)) throw refused(`Unknown push rule kind: ${kind}`);
  return kind;
}

function checkRuleId(ruleId: string): void {
  // An empty id is a path with no rule in it (Synapse: unrecognised request).
  if (ruleId === "") throw new PushRuleError(400, "M_UNRECOGNIZED", "Missing rule id");
  if (ruleId.includes("/") || ruleId.includes("\\")) throw refused("rule_id may not contain slashes");
}

/** The actions the spec defines: `notify`, the historical `dont_notify`/`coalesce` (kept, then ignored), tweaks. */
function checkActions(actions: unknown): PushAction[] {
  if (!Array.isArray(actions)) throw refused("No actions found");
  for (const action of actions) {
    const known =
      action === "notify" || action === "dont_notify" || action === "coalesce" || (isJsonObject(action) && typeof action.set_tweak === "string");
    if (!known) throw refused(`Unrecognised action ${JSON.stringify(action)}`);
  }
  return structuredClone(actions as PushAction[]);
}

/** A list of objects with a string `kind`; unknown kinds are kept (they never match) as Synapse keeps them. */
function checkConditions(conditions: unknown): PushCondition[] {
  if (!Array.isArray(conditions)) throw refused("'conditions' must be an array");
  for (const condition of conditions) {
    if (!isJsonObject(condition) || typeof condition.kind !== "string") throw refused("Condition without 'kind'");
  }
  return structuredClone(conditions as PushCondition[]);
}

interface Target {
  kind: PushRuleKind;
  ruleId: string;
  isDefault: boolean;
}

function findTarget(stored: UserPushRules, userId: string, kind: string, ruleId: string): Target {
  const k = checkKind(kind);
  checkRuleId(ruleId);
  const rule = getRule(effectiveRuleset(userId, stored), k, ruleId);
  if (rule === undefined) throw notFound();
  return { kind: k, ruleId, isDefault: rule.default };
}

function changeRule(stored: UserPushRules, target: Target, change: { enabled?: boolean; actions?: PushAction[] }): UserPushRules {
  const { kind, ruleId } = target;
  if (target.isDefault) {
    const key = defaultRuleKey(kind, ruleId);
    return { ...stored, defaults: { ...stored.defaults, [key]: { ...stored.defaults[key], ...change } } };
  }
  const list = (stored.rules[kind] ?? []).map((rule) => (rule.rule_id === ruleId ? { ...rule, ...change } : rule));
  return { ...stored, rules: { ...stored.rules, [kind]: list } };
}

/** A stored rule with exactly the fields its kind has (copies, so callers can't reach into what is stored). */
function shapeFor(kind: PushRuleKind, rule: PushRule): PushRule {
  const shaped: PushRule = { rule_id: rule.rule_id, default: false, enabled: rule.enabled, actions: structuredClone(rule.actions) };
  if (kind === "override" || kind === "underride") shaped.conditions = structuredClone(rule.conditions ?? []);
  if (kind === "content") shaped.pattern = rule.pattern ?? "";
  return shaped;
}
