// Push rule editing (src/core/push/ruleset.ts) and the server-default rule set (default_rules.ts): the merged view
// GET /pushrules/ serves, the spec's curl examples in push.md, placement with before/after, changes to server-default
// rules, immutability of what is stored, and every refusal with its status and errcode.
import { describe, expect, it } from "vitest";
import {
  PushRuleError,
  compileRuleset,
  deleteUserRule,
  effectiveRuleset,
  emptyUserRules,
  evaluatePush,
  getRule,
  preparePushEvent,
  putUserRule,
  serverDefaultRules,
  setRuleActions,
  setRuleEnabled,
  type PushRuleKind,
  type UserPushRules,
} from "../../../src/core/push/index.js";
import { ALICE, context, message } from "./helpers.js";

const ids = (stored: UserPushRules, kind: PushRuleKind) => effectiveRuleset(ALICE, stored)[kind].map((r) => r.rule_id);

function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null) {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}

describe("serverDefaultRules", () => {
  const rules = serverDefaultRules(ALICE);

  it("has the spec's rules in the spec's order, with the legacy rules where v1.16 had them", () => {
    expect(rules.override.map((r) => r.rule_id)).toEqual([
      ".m.rule.master",
      ".m.rule.suppress_notices",
      ".m.rule.invite_for_me",
      ".m.rule.member_event",
      ".m.rule.is_user_mention",
      ".m.rule.contains_display_name",
      ".m.rule.is_room_mention",
      ".m.rule.roomnotif",
      ".m.rule.tombstone",
      ".m.rule.reaction",
      ".m.rule.room.server_acl",
      ".m.rule.suppress_edits",
    ]);
    expect(rules.content.map((r) => r.rule_id)).toEqual([".m.rule.contains_user_name"]);
    expect(rules.room).toEqual([]);
    expect(rules.sender).toEqual([]);
    expect(rules.underride.map((r) => r.rule_id)).toEqual([
      ".m.rule.call",
      ".m.rule.encrypted_room_one_to_one",
      ".m.rule.room_one_to_one",
      ".m.rule.message",
      ".m.rule.encrypted",
    ]);
  });

  it("marks every rule default; only master is disabled", () => {
    const all = [...rules.override, ...rules.content, ...rules.underride];
    expect(all.every((r) => r.default)).toBe(true);
    expect(all.filter((r) => !r.enabled).map((r) => r.rule_id)).toEqual([".m.rule.master"]);
  });

  it("substitutes the user's Matrix ID and localpart", () => {
    expect(rules.override.find((r) => r.rule_id === ".m.rule.invite_for_me")?.conditions?.[2]).toEqual({ kind: "event_match", key: "state_key", pattern: ALICE });
    expect(rules.override.find((r) => r.rule_id === ".m.rule.is_user_mention")?.conditions).toEqual([
      { kind: "event_property_contains", key: "content.m\\.mentions.user_ids", value: ALICE },
    ]);
    expect(rules.content[0]).toEqual({
      rule_id: ".m.rule.contains_user_name",
      default: true,
      enabled: true,
      pattern: "alice",
      actions: ["notify", { set_tweak: "sound", value: "default" }, { set_tweak: "highlight" }],
    });
  });

  it("matches the spec's definitions", () => {
    const byId = (id: string) => [...rules.override, ...rules.underride].find((r) => r.rule_id === id);
    expect(byId(".m.rule.master")).toEqual({ rule_id: ".m.rule.master", default: true, enabled: false, conditions: [], actions: [] });
    expect(byId(".m.rule.tombstone")).toEqual({
      rule_id: ".m.rule.tombstone",
      default: true,
      enabled: true,
      conditions: [
        { kind: "event_match", key: "type", pattern: "m.room.tombstone" },
        { kind: "event_match", key: "state_key", pattern: "" },
      ],
      actions: ["notify", { set_tweak: "highlight" }],
    });
    expect(byId(".m.rule.roomnotif")?.conditions).toEqual([
      { kind: "event_match", key: "content.body", pattern: "@room" },
      { kind: "sender_notification_permission", key: "room" },
    ]);
    expect(byId(".m.rule.encrypted_room_one_to_one")?.conditions).toEqual([
      { kind: "room_member_count", is: "2" },
      { kind: "event_match", key: "type", pattern: "m.room.encrypted" },
    ]);
    expect(byId(".m.rule.call")?.actions).toEqual(["notify", { set_tweak: "sound", value: "ring" }]);
  });

  it("gives fresh objects each time", () => {
    const a = serverDefaultRules(ALICE);
    (a.underride[0]?.actions as unknown[]).push("x");
    expect(serverDefaultRules(ALICE).underride[0]?.actions).toEqual(["notify", { set_tweak: "sound", value: "ring" }]);
  });
});

describe("effectiveRuleset", () => {
  it("is the server defaults for a user who changed nothing", () => {
    expect(effectiveRuleset(ALICE, undefined)).toEqual(serverDefaultRules(ALICE));
    expect(effectiveRuleset(ALICE, emptyUserRules())).toEqual(serverDefaultRules(ALICE));
  });

  it("puts master first, then the user's overrides, then the other default overrides; user rules before defaults", () => {
    let stored = emptyUserRules();
    stored = putUserRule(stored, "override", "o1", { conditions: [], actions: [] }, {});
    stored = putUserRule(stored, "content", "c1", { pattern: "x", actions: [] }, {});
    stored = putUserRule(stored, "underride", "u1", { conditions: [], actions: [] }, {});
    stored = putUserRule(stored, "room", "!r:example.org", { actions: [] }, {});
    stored = putUserRule(stored, "sender", "@s:example.org", { actions: [] }, {});
    expect(ids(stored, "override").slice(0, 3)).toEqual([".m.rule.master", "o1", ".m.rule.suppress_notices"]);
    expect(ids(stored, "content")).toEqual(["c1", ".m.rule.contains_user_name"]);
    expect(ids(stored, "underride")[0]).toBe("u1");
    expect(ids(stored, "underride").slice(1)).toEqual(serverDefaultRules(ALICE).underride.map((r) => r.rule_id));
    expect(ids(stored, "room")).toEqual(["!r:example.org"]);
    expect(ids(stored, "sender")).toEqual(["@s:example.org"]);
  });

  it("gives each kind its own fields", () => {
    let stored = emptyUserRules();
    // Extra fields in a body are not kept: conditions on a content rule, a pattern on an override.
    stored = putUserRule(stored, "override", "o", { conditions: [], pattern: "p", actions: [] }, {});
    stored = putUserRule(stored, "content", "c", { pattern: "x", conditions: [], actions: [] }, {});
    stored = putUserRule(stored, "room", "!r:example.org", { conditions: [{ kind: "x" }], pattern: "p", actions: [] }, {});
    const ruleset = effectiveRuleset(ALICE, stored);
    expect(getRule(ruleset, "override", "o")).toEqual({ rule_id: "o", default: false, enabled: true, conditions: [], actions: [] });
    expect(getRule(ruleset, "content", "c")).toEqual({ rule_id: "c", default: false, enabled: true, pattern: "x", actions: [] });
    expect(getRule(ruleset, "room", "!r:example.org")).toEqual({ rule_id: "!r:example.org", default: false, enabled: true, actions: [] });
  });

  it("server-default rules carry the user's changes and stay default", () => {
    let stored = setRuleEnabled(emptyUserRules(), ALICE, "override", ".m.rule.suppress_notices", false);
    stored = setRuleActions(stored, ALICE, "underride", ".m.rule.message", ["notify", { set_tweak: "sound", value: "bing" }]);
    const ruleset = effectiveRuleset(ALICE, stored);
    expect(getRule(ruleset, "override", ".m.rule.suppress_notices")).toMatchObject({ default: true, enabled: false, actions: [] });
    expect(getRule(ruleset, "underride", ".m.rule.message")).toMatchObject({
      default: true,
      enabled: true,
      actions: ["notify", { set_tweak: "sound", value: "bing" }],
      conditions: [{ kind: "event_match", key: "type", pattern: "m.room.message" }],
    });
  });

  it("does not hand out what is stored", () => {
    const stored = putUserRule(emptyUserRules(), "override", "o", { conditions: [{ kind: "x" }], actions: ["notify"] }, {});
    const rule = getRule(effectiveRuleset(ALICE, stored), "override", "o");
    (rule?.actions as unknown[]).push("changed");
    expect(stored.rules.override[0]?.actions).toEqual(["notify"]);
  });
});

describe("getRule", () => {
  it("finds by kind and id; unknown kinds and ids give undefined", () => {
    const ruleset = effectiveRuleset(ALICE, undefined);
    expect(getRule(ruleset, "override", ".m.rule.master")?.rule_id).toBe(".m.rule.master");
    expect(getRule(ruleset, "underride", ".m.rule.master")).toBeUndefined();
    expect(getRule(ruleset, "override", "nope")).toBeUndefined();
    expect(getRule(ruleset, "global", ".m.rule.master")).toBeUndefined();
  });
});

describe("the spec's examples (push.md)", () => {
  it("suppresses notifications for a room", () => {
    const stored = putUserRule(emptyUserRules(), "room", "!dj234r78wl45Gh4D:matrix.org", { actions: [] }, {});
    const ruleset = effectiveRuleset(ALICE, stored);
    expect(ruleset.room).toEqual([{ rule_id: "!dj234r78wl45Gh4D:matrix.org", default: false, enabled: true, actions: [] }]);
    const event = preparePushEvent(message({ body: "hi" }, { room_id: "!dj234r78wl45Gh4D:matrix.org" }));
    expect(evaluatePush(compileRuleset(ruleset), event, context())).toMatchObject({ kind: "room", notify: false });
  });

  it("suppresses notifications for a user", () => {
    const stored = putUserRule(emptyUserRules(), "sender", "@spambot:matrix.org", { actions: [] }, {});
    const ruleset = effectiveRuleset(ALICE, stored);
    expect(ruleset.sender).toEqual([{ rule_id: "@spambot:matrix.org", default: false, enabled: true, actions: [] }]);
    const event = preparePushEvent(message({ body: "buy" }, { sender: "@spambot:matrix.org" }));
    expect(evaluatePush(compileRuleset(ruleset), event, context())).toMatchObject({ kind: "sender", notify: false });
  });

  it("notifies for 'cake', then supersedes it for 'cake*lie' with before", () => {
    let stored = putUserRule(
      emptyUserRules(),
      "content",
      "SSByZWFsbHkgbGlrZSBjYWtl",
      { pattern: "cake", actions: ["notify", { set_tweak: "sound", value: "cakealarm.wav" }] },
      {},
    );
    const cake = preparePushEvent(message({ body: "There is cake" }));
    const lie = preparePushEvent(message({ body: "the cake is a lie" }));
    let rules = compileRuleset(effectiveRuleset(ALICE, stored));
    expect(evaluatePush(rules, cake, context())).toMatchObject({ ruleId: "SSByZWFsbHkgbGlrZSBjYWtl", actions: ["notify", { set_tweak: "sound", value: "cakealarm.wav" }] });

    stored = putUserRule(stored, "content", "U3BvbmdlIGNha2UgaXMgYmVzdA", { pattern: "cake*lie", actions: ["notify"] }, { before: "SSByZWFsbHkgbGlrZSBjYWtl" });
    expect(ids(stored, "content")).toEqual(["U3BvbmdlIGNha2UgaXMgYmVzdA", "SSByZWFsbHkgbGlrZSBjYWtl", ".m.rule.contains_user_name"]);
    rules = compileRuleset(effectiveRuleset(ALICE, stored));
    expect(evaluatePush(rules, lie, context())?.ruleId).toBe("U3BvbmdlIGNha2UgaXMgYmVzdA");
    expect(evaluatePush(rules, cake, context())?.ruleId).toBe("SSByZWFsbHkgbGlrZSBjYWtl");
  });

  it("adds a beer sound for rooms with 10 members or fewer, above the other kinds", () => {
    const stored = putUserRule(
      emptyUserRules(),
      "override",
      "U2VlIHlvdSBpbiBUaGUgRHVrZQ",
      {
        conditions: [
          { kind: "event_match", key: "content.body", pattern: "beer" },
          { kind: "room_member_count", is: "<=10" },
        ],
        actions: ["notify", { set_tweak: "sound", value: "beeroclock.wav" }],
      },
      {},
    );
    expect(ids(stored, "override").slice(0, 2)).toEqual([".m.rule.master", "U2VlIHlvdSBpbiBUaGUgRHVrZQ"]);
    const rules = compileRuleset(effectiveRuleset(ALICE, stored));
    const beer = preparePushEvent(message({ body: "beer?", msgtype: "m.notice" }));
    expect(evaluatePush(rules, beer, context({ roomMemberCount: 10 }))?.ruleId).toBe("U2VlIHlvdSBpbiBUaGUgRHVrZQ");
    expect(evaluatePush(rules, beer, context({ roomMemberCount: 11 }))?.ruleId).toBe(".m.rule.suppress_notices");
  });

  it("GET of a content rule has the spec's shape", () => {
    const stored = putUserRule(emptyUserRules(), "content", "nocake", { pattern: "cake*lie", actions: [] }, {});
    expect(getRule(effectiveRuleset(ALICE, stored), "content", "nocake")).toEqual({ actions: [], pattern: "cake*lie", rule_id: "nocake", enabled: true, default: false });
  });
});

describe("putUserRule", () => {
  const put = (stored: UserPushRules, id: string, position: { before?: string; after?: string } = {}) =>
    putUserRule(stored, "override", id, { conditions: [], actions: [] }, position);
  const own = (stored: UserPushRules) => stored.rules.override.map((r) => r.rule_id);

  it("puts a new rule first in its kind", () => {
    expect(own(put(put(put(emptyUserRules(), "a"), "b"), "c"))).toEqual(["c", "b", "a"]);
  });

  it("places with before and after; before wins when both are given", () => {
    const base = put(put(put(emptyUserRules(), "c"), "b"), "a"); // a b c
    expect(own(put(base, "x", { before: "b" }))).toEqual(["a", "x", "b", "c"]);
    expect(own(put(base, "x", { after: "b" }))).toEqual(["a", "b", "x", "c"]);
    expect(own(put(base, "x", { after: "c" }))).toEqual(["a", "b", "c", "x"]);
    expect(own(put(base, "x", { before: "a" }))).toEqual(["x", "a", "b", "c"]);
    expect(own(put(base, "x", { before: "c", after: "a" }))).toEqual(["a", "b", "x", "c"]);
    expect(own(put(base, "x", { before: "", after: "" }))).toEqual(["x", "a", "b", "c"]);
  });

  it("replacing a rule keeps its place and enabled unless before/after move it", () => {
    let base = put(put(put(emptyUserRules(), "c"), "b"), "a");
    base = setRuleEnabled(base, ALICE, "override", "b", false);
    const replaced = putUserRule(base, "override", "b", { conditions: [{ kind: "x" }], actions: ["notify"] }, {});
    expect(own(replaced)).toEqual(["a", "b", "c"]);
    expect(replaced.rules.override[1]).toEqual({ rule_id: "b", default: false, enabled: false, conditions: [{ kind: "x" }], actions: ["notify"] });
    expect(own(put(base, "b", { after: "c" }))).toEqual(["a", "c", "b"]);
    expect(own(put(base, "a", { before: "c" }))).toEqual(["b", "a", "c"]);
    expect(own(put(base, "b", { before: "b" }))).toEqual(["a", "b", "c"]);
  });

  it("a rule deleted and created again is enabled", () => {
    let stored = put(emptyUserRules(), "a");
    stored = setRuleEnabled(stored, ALICE, "override", "a", false);
    stored = put(deleteUserRule(stored, "override", "a"), "a");
    expect(stored.rules.override[0]?.enabled).toBe(true);
  });

  it("keeps the historical actions as given (evaluation ignores them)", () => {
    const stored = putUserRule(emptyUserRules(), "room", "!r:example.org", { actions: ["dont_notify", "coalesce"] }, {});
    expect(stored.rules.room[0]?.actions).toEqual(["dont_notify", "coalesce"]);
  });

  it("stores a copy of the body", () => {
    const body = { conditions: [{ kind: "event_match", key: "type", pattern: "x" }], actions: ["notify"] };
    const stored = putUserRule(emptyUserRules(), "override", "o", body, {});
    body.conditions[0]!.pattern = "changed";
    body.actions.push("changed");
    expect(stored.rules.override[0]).toMatchObject({ conditions: [{ pattern: "x" }], actions: ["notify"] });
  });

  it("does not check that a room rule's id is a room id (nor does Synapse)", () => {
    expect(putUserRule(emptyUserRules(), "room", "#alias:example.com", { actions: [] }, {}).rules.room[0]?.rule_id).toBe("#alias:example.com");
  });
});

describe("deleteUserRule, setRuleEnabled, setRuleActions", () => {
  it("deletes the user's rule", () => {
    const stored = putUserRule(putUserRule(emptyUserRules(), "sender", "@a:x", { actions: [] }, {}), "sender", "@b:x", { actions: [] }, {});
    expect(deleteUserRule(stored, "sender", "@a:x").rules.sender.map((r) => r.rule_id)).toEqual(["@b:x"]);
  });

  it("enables, disables and changes the actions of the user's rules", () => {
    let stored = putUserRule(emptyUserRules(), "content", "c", { pattern: "x", actions: [] }, {});
    stored = setRuleEnabled(stored, ALICE, "content", "c", false);
    expect(stored.rules.content[0]).toMatchObject({ enabled: false, pattern: "x" });
    stored = setRuleActions(stored, ALICE, "content", "c", ["notify", { set_tweak: "highlight" }]);
    expect(stored.rules.content[0]).toMatchObject({ enabled: false, pattern: "x", actions: ["notify", { set_tweak: "highlight" }] });
  });

  it("changes server-default rules without copying them into the user's rules", () => {
    let stored = setRuleEnabled(emptyUserRules(), ALICE, "content", ".m.rule.contains_user_name", false);
    stored = setRuleActions(stored, ALICE, "content", ".m.rule.contains_user_name", ["notify"]);
    expect(stored.rules.content).toEqual([]);
    expect(getRule(effectiveRuleset(ALICE, stored), "content", ".m.rule.contains_user_name")).toEqual({
      rule_id: ".m.rule.contains_user_name",
      default: true,
      enabled: false,
      pattern: "alice",
      actions: ["notify"],
    });
  });

  it("never modifies its input", () => {
    let stored = emptyUserRules();
    stored = putUserRule(stored, "override", "o", { conditions: [], actions: [] }, {});
    stored = putUserRule(stored, "content", "c", { pattern: "x", actions: [] }, {});
    stored = setRuleEnabled(stored, ALICE, "override", ".m.rule.master", true);
    const frozen = deepFreeze(stored);
    const before = JSON.stringify(frozen);
    putUserRule(frozen, "override", "n", { conditions: [], actions: [] }, { after: "o" });
    putUserRule(frozen, "override", "o", { conditions: [], actions: ["notify"] }, {});
    deleteUserRule(frozen, "content", "c");
    setRuleEnabled(frozen, ALICE, "override", "o", false);
    setRuleEnabled(frozen, ALICE, "override", ".m.rule.master", false);
    setRuleActions(frozen, ALICE, "override", ".m.rule.master", ["notify"]);
    setRuleActions(frozen, ALICE, "content", "c", ["notify"]);
    expect(JSON.stringify(frozen)).toBe(before);
  });
});

describe("refusals", () => {
  const withRules = (() => {
    let s = emptyUserRules();
    s = putUserRule(s, "override", "mine", { conditions: [], actions: [] }, {});
    s = putUserRule(s, "content", "word", { pattern: "w", actions: [] }, {});
    return s;
  })();

  const cases: [string, () => unknown, number, string][] = [
    // [name, call, status, errcode]
    ["PUT with an unknown kind", () => putUserRule(withRules, "postcontent", "x", { actions: [] }, {}), 400, "M_UNKNOWN"],
    ["PUT with an empty rule id", () => putUserRule(withRules, "room", "", { actions: [] }, {}), 400, "M_UNRECOGNIZED"],
    ["PUT with a slash in the rule id", () => putUserRule(withRules, "override", "a/b", { conditions: [], actions: [] }, {}), 400, "M_UNKNOWN"],
    ["PUT with a backslash in the rule id", () => putUserRule(withRules, "room", "#fo\\o:example.com", { actions: [] }, {}), 400, "M_UNKNOWN"],
    ["PUT over a server-default rule", () => putUserRule(withRules, "override", ".m.rule.master", { conditions: [], actions: [] }, {}), 400, "M_UNKNOWN"],
    ["PUT of a new rule id starting with '.'", () => putUserRule(withRules, "override", ".mine", { conditions: [], actions: [] }, {}), 400, "M_UNKNOWN"],
    ["PUT with a body that is not an object", () => putUserRule(withRules, "room", "!r:x", ["notify"], {}), 400, "M_UNKNOWN"],
    ["PUT with a null body", () => putUserRule(withRules, "room", "!r:x", null, {}), 400, "M_UNKNOWN"],
    ["PUT without actions", () => putUserRule(withRules, "room", "#my_room:example.com", {}, {}), 400, "M_UNKNOWN"],
    ["PUT with actions not an array", () => putUserRule(withRules, "room", "!r:x", { actions: "notify" }, {}), 400, "M_UNKNOWN"],
    ["PUT with an invalid action", () => putUserRule(withRules, "room", "#my_room:example.com", { actions: ["not_an_action"] }, {}), 400, "M_UNKNOWN"],
    ["PUT with an action object without set_tweak", () => putUserRule(withRules, "room", "!r:x", { actions: [{ value: 1 }] }, {}), 400, "M_UNKNOWN"],
    ["PUT with a non-string set_tweak", () => putUserRule(withRules, "room", "!r:x", { actions: [{ set_tweak: 1 }] }, {}), 400, "M_UNKNOWN"],
    ["PUT with a number action", () => putUserRule(withRules, "room", "!r:x", { actions: [5] }, {}), 400, "M_UNKNOWN"],
    ["PUT of an override without conditions", () => putUserRule(withRules, "override", "my_id", { actions: [] }, {}), 400, "M_UNKNOWN"],
    ["PUT of an underride without conditions", () => putUserRule(withRules, "underride", "my_id", { actions: [] }, {}), 400, "M_UNKNOWN"],
    ["PUT with conditions not an array", () => putUserRule(withRules, "override", "my_id", { conditions: {}, actions: [] }, {}), 400, "M_UNKNOWN"],
    ["PUT with a condition without kind", () => putUserRule(withRules, "underride", "my_id", { conditions: [{}], actions: [] }, {}), 400, "M_UNKNOWN"],
    ["PUT with a condition that is not an object", () => putUserRule(withRules, "underride", "my_id", { conditions: ["kind"], actions: [] }, {}), 400, "M_UNKNOWN"],
    ["PUT with a non-string condition kind", () => putUserRule(withRules, "underride", "my_id", { conditions: [{ kind: 1 }], actions: [] }, {}), 400, "M_UNKNOWN"],
    ["PUT of a content rule without pattern", () => putUserRule(withRules, "content", "my_id", { actions: [] }, {}), 400, "M_UNKNOWN"],
    ["PUT of a content rule with a non-string pattern", () => putUserRule(withRules, "content", "my_id", { pattern: 5, actions: [] }, {}), 400, "M_UNKNOWN"],
    ["PUT before a server-default rule", () => putUserRule(withRules, "content", "new", { pattern: "p", actions: [] }, { before: ".m.rule.contains_user_name" }), 400, "M_UNKNOWN"],
    ["PUT after a server-default rule", () => putUserRule(withRules, "override", "new", { conditions: [], actions: [] }, { after: ".m.rule.master" }), 400, "M_UNKNOWN"],
    ["PUT before an unknown rule", () => putUserRule(withRules, "override", "new", { conditions: [], actions: [] }, { before: "someRuleId" }), 400, "M_UNKNOWN"],
    ["PUT after an unknown rule", () => putUserRule(withRules, "override", "new", { conditions: [], actions: [] }, { after: "anotherRuleId" }), 400, "M_UNKNOWN"],
    ["PUT relative to a rule of another kind", () => putUserRule(withRules, "override", "new", { conditions: [], actions: [] }, { before: "word" }), 400, "M_UNKNOWN"],
    ["PUT of a new rule relative to itself", () => putUserRule(withRules, "override", "new", { conditions: [], actions: [] }, { before: "new" }), 400, "M_UNKNOWN"],
    ["DELETE of an unknown rule", () => deleteUserRule(withRules, "override", "not_a_rule_id"), 404, "M_NOT_FOUND"],
    ["DELETE of a server-default rule", () => deleteUserRule(withRules, "override", ".m.rule.master"), 404, "M_NOT_FOUND"],
    ["DELETE of a rule under another kind", () => deleteUserRule(withRules, "underride", "mine"), 404, "M_NOT_FOUND"],
    ["DELETE with an unknown kind", () => deleteUserRule(withRules, "global", "mine"), 404, "M_NOT_FOUND"],
    ["enabled of an unknown rule", () => setRuleEnabled(withRules, ALICE, "override", "nope", true), 404, "M_NOT_FOUND"],
    ["enabled of an unknown server-default rule", () => setRuleEnabled(withRules, ALICE, "override", ".m.rule.nope", true), 404, "M_NOT_FOUND"],
    ["enabled of a server-default rule under another kind", () => setRuleEnabled(withRules, ALICE, "underride", ".m.rule.master", true), 404, "M_NOT_FOUND"],
    ["enabled that is not a boolean", () => setRuleEnabled(withRules, ALICE, "override", ".m.rule.master", "not a boolean"), 400, "M_UNKNOWN"],
    ["enabled with an unknown kind", () => setRuleEnabled(withRules, ALICE, "other", "mine", true), 400, "M_UNKNOWN"],
    ["enabled with a slash in the rule id", () => setRuleEnabled(withRules, ALICE, "override", "a/b", true), 400, "M_UNKNOWN"],
    ["actions of an unknown rule", () => setRuleActions(withRules, ALICE, "override", "nope", []), 404, "M_NOT_FOUND"],
    ["actions of an unknown server-default rule", () => setRuleActions(withRules, ALICE, "underride", ".m.rule.nope", []), 404, "M_NOT_FOUND"],
    ["actions that are not an array", () => setRuleActions(withRules, ALICE, "override", "mine", { actions: [] }), 400, "M_UNKNOWN"],
    ["actions with an invalid action", () => setRuleActions(withRules, ALICE, "override", ".m.rule.master", ["bing"]), 400, "M_UNKNOWN"],
    ["actions with an unknown kind", () => setRuleActions(withRules, ALICE, "other", "mine", []), 400, "M_UNKNOWN"],
  ];

  it.each(cases)("%s", (_name, call, status, errcode) => {
    let error: unknown;
    try {
      call();
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(PushRuleError);
    expect(error).toMatchObject({ status, errcode });
    expect((error as Error).message).not.toBe("");
  });

  it("accepts every spec action form and the historical ones", () => {
    const actions = ["notify", "dont_notify", "coalesce", { set_tweak: "sound", value: "default" }, { set_tweak: "highlight" }, { set_tweak: "x-custom", value: { a: 1 } }];
    expect(putUserRule(emptyUserRules(), "room", "!r:x", { actions }, {}).rules.room[0]?.actions).toEqual(actions);
  });

  it("accepts unknown condition kinds (they never match)", () => {
    const stored = putUserRule(emptyUserRules(), "override", "future", { conditions: [{ kind: "org.example.future", x: 1 }], actions: ["notify"] }, {});
    expect(evaluatePush(compileRuleset(effectiveRuleset(ALICE, stored)), preparePushEvent(message({ body: "x" })), context())?.ruleId).toBe(".m.rule.message");
  });
});
