/** Push rules (Client-Server API "Push Notifications"): the server defaults, evaluation, and rule-set editing. */
export * from "./types.js";
export {
  serverDefaultRules,
  bystanderDefaultRules,
  isServerDefaultRule,
  isLegacyMentionRule,
  defaultRuleKey,
  localpartOf,
} from "./default_rules.js";
export { compileGlob, compileLiteral, hasGlobChars, type Glob } from "./glob.js";
export { parsePropertyPath, lookupProperty } from "./paths.js";
export {
  preparePushEvent,
  PreparedPushEvent,
  compileRuleset,
  evaluatePush,
  concernsUser,
  concernsMember,
  memberNames,
  type MemberNames,
  evaluateDefaultsForBystander,
  equivalentToDefaultsIn,
  stripHistoricalActions,
  type CompiledRule,
  type CompiledRuleset,
} from "./evaluate.js";
export {
  PushRuleError,
  isPushRuleKind,
  emptyUserRules,
  effectiveRuleset,
  getRule,
  putUserRule,
  deleteUserRule,
  setRuleEnabled,
  setRuleActions,
  copyRoomRules,
} from "./ruleset.js";
