/**
 * Push rules as the spec defines them (Client-Server API "Push Notifications"): rules, rule sets, conditions and
 * actions, and what one evaluation of a rule set against an event yields. Pure data: no I/O.
 */
import type { JsonObject, JsonValue } from "../json/types.js";

/** The kinds of rule, in the order they are checked. */
export type PushRuleKind = "override" | "content" | "room" | "sender" | "underride";
export const PUSH_RULE_KINDS: readonly PushRuleKind[] = ["override", "content", "room", "sender", "underride"];

/** A condition as clients send and read it; unknown kinds are kept (and never match). */
export interface PushCondition {
  kind: string;
  [key: string]: JsonValue;
}

/** `"notify"`, or a tweak such as `{"set_tweak": "sound", "value": "default"}`; other actions pass through. */
export type PushAction = string | JsonObject;

/** A rule as served by GET /pushrules/ (spec `PushRule`). */
export interface PushRule {
  rule_id: string;
  default: boolean;
  enabled: boolean;
  actions: PushAction[];
  /** override / underride rules. */
  conditions?: PushCondition[];
  /** content rules: the glob matched against `content.body`. */
  pattern?: string;
}

/** A user's whole rule set, each kind highest priority first (spec `Ruleset`). */
export type Ruleset = Record<PushRuleKind, PushRule[]>;

/**
 * What one user changed, as stored: their own rules (highest priority first, `default: false`) and their changes to
 * server-default rules (keyed by kind and rule id), which can be disabled or given other actions but not deleted.
 */
export interface UserPushRules {
  rules: Record<PushRuleKind, PushRule[]>;
  defaults: Record<string, { enabled?: boolean; actions?: PushAction[] }>;
}

/** What the evaluation needs to know besides the event, for the user whose rules are evaluated. */
export interface PushContext {
  userId: string;
  /** The user's display name in the room (from their m.room.member event), for `contains_display_name`. */
  displayName: string | null;
  /** Joined members of the room, for `room_member_count`. */
  roomMemberCount: number;
  /** The sender's power level in the room, for `sender_notification_permission`. */
  senderPowerLevel: number;
  /** The power level needed to notify per key (`notifications` in m.room.power_levels; `room` defaults to 50). */
  notificationPowerLevel: (key: string) => number;
}

/** The outcome for one user: the matching rule and its actions (historical `dont_notify`/`coalesce` removed). */
export interface PushOutcome {
  kind: PushRuleKind;
  ruleId: string;
  actions: PushAction[];
  notify: boolean;
  highlight: boolean;
}
