/**
 * The server-default push rules (Client-Server API "Predefined Rules"), in the spec's order, with the user's Matrix
 * ID and localpart substituted for the spec's placeholders.
 *
 * Spec v1.17 removed the legacy rules that looked for mentions in the plain-text `body`; the spec allows extra
 * server-default rules, and older clients and Element's settings still show them, so they stay where v1.16 had
 * them: `.m.rule.contains_display_name`, `.m.rule.roomnotif` and `.m.rule.contains_user_name`. As the mentions
 * module says, they never match an event whose content has `m.mentions` (evaluate.ts applies that, by rule id).
 */
import type { JsonObject } from "../json/types.js";
import type { PushAction, PushCondition, PushRule, PushRuleKind, Ruleset } from "./types.js";

/** The legacy body-mention rules, which an event with `m.mentions` turns off. */
export const LEGACY_MENTION_RULES: Readonly<Partial<Record<PushRuleKind, readonly string[]>>> = {
  override: [".m.rule.contains_display_name", ".m.rule.roomnotif"],
  content: [".m.rule.contains_user_name"],
};

export function isLegacyMentionRule(kind: PushRuleKind, ruleId: string): boolean {
  return LEGACY_MENTION_RULES[kind]?.includes(ruleId) ?? false;
}

/**
 * A condition kind no server knows, standing in for a condition about one particular user in the bystander rules:
 * the spec says unrecognised conditions never match.
 */
export const NOT_THIS_USER_KIND = "org.myelin.not_this_user";

/** The localpart of a user ID: between the sigil and the first `:` (the server name may contain more). */
export function localpartOf(userId: string): string {
  const colon = userId.indexOf(":");
  return userId.slice(1, colon < 0 ? undefined : colon);
}

/** The complete server-default rule set for `userId`, every rule `default: true`. */
export function serverDefaultRules(userId: string): Ruleset {
  return buildDefaultRules(userId);
}

/**
 * The server-default rules as they are for a user the event does not concern (evaluate.ts `concernsUser`): every
 * condition about the user replaced by one that never matches, and the user-name content rule disabled. The same
 * for every such user, so one evaluation serves all of a room's bystanders.
 */
export function bystanderDefaultRules(): Ruleset {
  return buildDefaultRules(null);
}

/** Where UserPushRules.defaults keeps a user's change to the server-default rule (kind, ruleId). */
export function defaultRuleKey(kind: PushRuleKind, ruleId: string): string {
  return `${kind}/${ruleId}`;
}

/** Is (kind, ruleId) one of the server-default rules? */
export function isServerDefaultRule(kind: PushRuleKind, ruleId: string): boolean {
  return defaultRuleTemplate(kind, ruleId) !== undefined;
}

/**
 * The server-default rule (kind, ruleId) before any user changes it (frozen; its conditions name a placeholder
 * user, so use it for `enabled` and `actions`).
 */
export function defaultRuleTemplate(kind: PushRuleKind, ruleId: string): PushRule | undefined {
  return TEMPLATE[kind].find((rule) => rule.rule_id === ruleId);
}

/** All server-default rules as defaultRuleTemplate gives them. */
export function defaultRuleTemplates(): Readonly<Ruleset> {
  return TEMPLATE;
}

// ---------------------------------------------------------------------------------------------------------------

const NOTIFY = "notify";
const SOUND_DEFAULT: JsonObject = { set_tweak: "sound", value: "default" };
const SOUND_RING: JsonObject = { set_tweak: "sound", value: "ring" };
const HIGHLIGHT: JsonObject = { set_tweak: "highlight" };

function eventMatch(key: string, pattern: string): PushCondition {
  return { kind: "event_match", key, pattern };
}

function rule(rule_id: string, conditions: PushCondition[], actions: PushAction[], enabled = true): PushRule {
  // Fresh copies of the shared action objects, so a caller that edits a returned rule edits only its own.
  return { rule_id, default: true, enabled, conditions, actions: actions.map((a) => (typeof a === "string" ? a : { ...a })) };
}

/** With `userId` null, builds the bystander variant (see bystanderDefaultRules). */
function buildDefaultRules(userId: string | null): Ruleset {
  const aboutUser = (condition: PushCondition): PushCondition => (userId === null ? { kind: NOT_THIS_USER_KIND } : condition);
  const override: PushRule[] = [
    rule(".m.rule.master", [], [], false),
    rule(".m.rule.suppress_notices", [eventMatch("content.msgtype", "m.notice")], []),
    rule(
      ".m.rule.invite_for_me",
      [eventMatch("type", "m.room.member"), eventMatch("content.membership", "invite"), aboutUser(eventMatch("state_key", userId ?? ""))],
      [NOTIFY, SOUND_DEFAULT],
    ),
    rule(".m.rule.member_event", [eventMatch("type", "m.room.member")], []),
    rule(
      ".m.rule.is_user_mention",
      [aboutUser({ kind: "event_property_contains", key: "content.m\\.mentions.user_ids", value: userId ?? "" })],
      [NOTIFY, SOUND_DEFAULT, HIGHLIGHT],
    ),
    // Legacy (spec v1.16).
    rule(".m.rule.contains_display_name", [aboutUser({ kind: "contains_display_name" })], [NOTIFY, SOUND_DEFAULT, HIGHLIGHT]),
    rule(
      ".m.rule.is_room_mention",
      [
        { kind: "event_property_is", key: "content.m\\.mentions.room", value: true },
        { kind: "sender_notification_permission", key: "room" },
      ],
      [NOTIFY, HIGHLIGHT],
    ),
    // Legacy (spec v1.16).
    rule(".m.rule.roomnotif", [eventMatch("content.body", "@room"), { kind: "sender_notification_permission", key: "room" }], [NOTIFY, HIGHLIGHT]),
    rule(".m.rule.tombstone", [eventMatch("type", "m.room.tombstone"), eventMatch("state_key", "")], [NOTIFY, HIGHLIGHT]),
    rule(".m.rule.reaction", [eventMatch("type", "m.reaction")], []),
    rule(".m.rule.room.server_acl", [eventMatch("type", "m.room.server_acl"), eventMatch("state_key", "")], []),
    rule(".m.rule.suppress_edits", [{ kind: "event_property_is", key: "content.m\\.relates_to.rel_type", value: "m.replace" }], []),
  ];
  // Legacy (spec v1.16).
  const content: PushRule[] = [
    {
      rule_id: ".m.rule.contains_user_name",
      default: true,
      enabled: userId !== null,
      pattern: userId === null ? "" : localpartOf(userId),
      actions: [NOTIFY, { ...SOUND_DEFAULT }, { ...HIGHLIGHT }],
    },
  ];
  const underride: PushRule[] = [
    rule(".m.rule.call", [eventMatch("type", "m.call.invite")], [NOTIFY, SOUND_RING]),
    rule(
      ".m.rule.encrypted_room_one_to_one",
      [{ kind: "room_member_count", is: "2" }, eventMatch("type", "m.room.encrypted")],
      [NOTIFY, SOUND_DEFAULT],
    ),
    rule(".m.rule.room_one_to_one", [{ kind: "room_member_count", is: "2" }, eventMatch("type", "m.room.message")], [NOTIFY, SOUND_DEFAULT]),
    rule(".m.rule.message", [eventMatch("type", "m.room.message")], [NOTIFY]),
    rule(".m.rule.encrypted", [eventMatch("type", "m.room.encrypted")], [NOTIFY]),
  ];
  return { override, content, room: [], sender: [], underride };
}

/** Frozen: defaultRuleTemplate hands out these objects, and nobody may change the defaults by accident. */
const TEMPLATE: Ruleset = deepFreeze(buildDefaultRules("@user:localhost"));

function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null) {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}
