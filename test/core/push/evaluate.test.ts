// Push rule evaluation (src/core/push/evaluate.ts): every server-default rule matching and not matching, the legacy
// body-mention rules on and off with `m.mentions`, each condition kind (the spec's lunc?*, ex*ple, m.federate and
// alt_aliases examples, types without casting, malformed and unknown conditions), kind precedence, disabled rules,
// the master rule, and how actions become notify/highlight.
import { describe, expect, it } from "vitest";
import type { JsonObject } from "../../../src/core/json/types.js";
import {
  compileRuleset,
  effectiveRuleset,
  emptyUserRules,
  evaluatePush,
  preparePushEvent,
  putUserRule,
  serverDefaultRules,
  setRuleEnabled,
  type PushAction,
  type PushCondition,
  type PushContext,
} from "../../../src/core/push/index.js";
import { ALICE, BOB, ROOM, conditionsMatch, context, defaultsOutcome, message, onlyOverride, stateEvent } from "./helpers.js";

describe("the server-default rules", () => {
  const text = (body: string, more: JsonObject = {}) => message({ msgtype: "m.text", body, ...more });
  const mentions = (m: JsonObject) => ({ "m.mentions": m });

  const cases: [string, JsonObject, Partial<PushContext>, string | undefined, boolean, boolean][] = [
    // [name, event, context, rule id, notify, highlight]
    ["a notice is suppressed", message({ msgtype: "m.notice", body: "Alice" }), {}, ".m.rule.suppress_notices", false, false],
    ["an invite for me", stateEvent("m.room.member", ALICE, { membership: "invite" }), {}, ".m.rule.invite_for_me", true, false],
    ["an invite for me, state_key in other case", stateEvent("m.room.member", "@ALICE:EXAMPLE.ORG", { membership: "invite" }), {}, ".m.rule.invite_for_me", true, false],
    ["an invite for someone else", stateEvent("m.room.member", BOB, { membership: "invite" }), {}, ".m.rule.member_event", false, false],
    ["my join", stateEvent("m.room.member", ALICE, { membership: "join" }), {}, ".m.rule.member_event", false, false],
    ["a user mention of me", text("hi", mentions({ user_ids: [ALICE] })), {}, ".m.rule.is_user_mention", true, true],
    ["a user mention of someone else", text("hi", mentions({ user_ids: [BOB] })), {}, ".m.rule.message", true, false],
    ["a user mention with my id in other case", text("hi", mentions({ user_ids: ["@ALICE:example.org"] })), {}, ".m.rule.message", true, false],
    ["my display name, no m.mentions", text("hey Alice!"), {}, ".m.rule.contains_display_name", true, true],
    ["my display name, with m.mentions", text("hey Alice!", mentions({})), {}, ".m.rule.message", true, false],
    ["my display name, m.mentions null", text("hey Alice!", { "m.mentions": null }), {}, ".m.rule.message", true, false],
    ["my display name inside a word", text("Aliceson"), { displayName: "Alice" }, ".m.rule.message", true, false],
    ["an empty display name", text("hey there"), { displayName: "" }, ".m.rule.message", true, false],
    ["my localpart, no m.mentions", text("ping ALICE please"), { displayName: null }, ".m.rule.contains_user_name", true, true],
    ["my localpart, with m.mentions", text("ping alice", mentions({ user_ids: [] })), { displayName: null }, ".m.rule.message", true, false],
    ["a room mention with power", text("all", mentions({ room: true })), { senderPowerLevel: 50 }, ".m.rule.is_room_mention", true, true],
    ["a room mention without power", text("all", mentions({ room: true })), { senderPowerLevel: 49 }, ".m.rule.message", true, false],
    ["a room mention that is not true", text("all", mentions({ room: "true" })), { senderPowerLevel: 100 }, ".m.rule.message", true, false],
    ["@room with power, no m.mentions", text("@room lunch"), { senderPowerLevel: 100 }, ".m.rule.roomnotif", true, true],
    ["@room without power", text("@room lunch"), { senderPowerLevel: 0 }, ".m.rule.message", true, false],
    ["@room with power, with m.mentions", text("@room lunch", mentions({})), { senderPowerLevel: 100 }, ".m.rule.message", true, false],
    ["a tombstone", stateEvent("m.room.tombstone", "", { body: "moved" }), {}, ".m.rule.tombstone", true, true],
    ["a tombstone without state_key", stateEvent("m.room.tombstone", undefined), {}, undefined, false, false],
    ["a tombstone with another state_key", stateEvent("m.room.tombstone", "x"), {}, undefined, false, false],
    ["a reaction", { type: "m.reaction", room_id: ROOM, sender: BOB, content: {} }, {}, ".m.rule.reaction", false, false],
    ["a server ACL change", stateEvent("m.room.server_acl", ""), {}, ".m.rule.room.server_acl", false, false],
    ["a server_acl without state_key", stateEvent("m.room.server_acl", undefined), {}, undefined, false, false],
    ["an edit", text("* fixed", { "m.relates_to": { rel_type: "m.replace", event_id: "$x" } }), {}, ".m.rule.suppress_edits", false, false],
    ["a thread reply is not an edit", text("more", { "m.relates_to": { rel_type: "m.thread", event_id: "$x" } }), {}, ".m.rule.message", true, false],
    ["a call", { type: "m.call.invite", room_id: ROOM, sender: BOB, content: {} }, {}, ".m.rule.call", true, false],
    ["encrypted, 2 members", { type: "m.room.encrypted", room_id: ROOM, sender: BOB, content: {} }, { roomMemberCount: 2 }, ".m.rule.encrypted_room_one_to_one", true, false],
    ["encrypted, 3 members", { type: "m.room.encrypted", room_id: ROOM, sender: BOB, content: {} }, { roomMemberCount: 3 }, ".m.rule.encrypted", true, false],
    ["a message, 2 members", text("hi"), { roomMemberCount: 2 }, ".m.rule.room_one_to_one", true, false],
    ["a message, 3 members", text("hi"), { roomMemberCount: 3 }, ".m.rule.message", true, false],
    ["a message type in other case", { type: "M.ROOM.MESSAGE", room_id: ROOM, sender: BOB, content: {} }, {}, ".m.rule.message", true, false],
    ["an unknown event type", { type: "org.example.thing", room_id: ROOM, sender: BOB, content: {} }, {}, undefined, false, false],
    ["a topic change", stateEvent("m.room.topic", "", { topic: "Alice" }), {}, undefined, false, false],
  ];

  it.each(cases)("%s", (_name, event, ctx, ruleId, notify, highlight) => {
    const outcome = defaultsOutcome(event, ctx);
    expect(outcome?.ruleId).toBe(ruleId);
    expect(outcome?.notify ?? false).toBe(notify);
    expect(outcome?.highlight ?? false).toBe(highlight);
  });

  it("reports the kind and the actions of the matching rule", () => {
    expect(defaultsOutcome(message({ body: "hi", "m.mentions": { user_ids: [ALICE] } }))).toEqual({
      kind: "override",
      ruleId: ".m.rule.is_user_mention",
      actions: ["notify", { set_tweak: "sound", value: "default" }, { set_tweak: "highlight" }],
      notify: true,
      highlight: true,
    });
    expect(defaultsOutcome(message({ body: "ping alice" }), { displayName: null })?.kind).toBe("content");
    expect(defaultsOutcome({ type: "m.call.invite", content: {} })).toMatchObject({ kind: "underride", actions: ["notify", { set_tweak: "sound", value: "ring" }] });
  });

  it("the master rule, when enabled, silences everything", () => {
    const stored = setRuleEnabled(emptyUserRules(), ALICE, "override", ".m.rule.master", true);
    const rules = compileRuleset(effectiveRuleset(ALICE, stored));
    for (const event of [message({ body: "hi", "m.mentions": { user_ids: [ALICE] } }), stateEvent("m.room.member", ALICE, { membership: "invite" })]) {
      expect(evaluatePush(rules, preparePushEvent(event), context())).toEqual({ kind: "override", ruleId: ".m.rule.master", actions: [], notify: false, highlight: false });
    }
  });

  it("the master rule beats the user's own override rules", () => {
    let stored = putUserRule(emptyUserRules(), "override", "mine", { conditions: [], actions: ["notify"] }, {});
    expect(evaluatePush(compileRuleset(effectiveRuleset(ALICE, stored)), preparePushEvent(message({ body: "x" })), context())?.ruleId).toBe("mine");
    stored = setRuleEnabled(stored, ALICE, "override", ".m.rule.master", true);
    expect(evaluatePush(compileRuleset(effectiveRuleset(ALICE, stored)), preparePushEvent(message({ body: "x" })), context())?.ruleId).toBe(".m.rule.master");
  });

  it("a disabled default rule is skipped", () => {
    const stored = setRuleEnabled(emptyUserRules(), ALICE, "underride", ".m.rule.message", false);
    const rules = compileRuleset(effectiveRuleset(ALICE, stored));
    expect(evaluatePush(rules, preparePushEvent(message({ body: "hi" })), context())).toBeUndefined();
  });

  it("the legacy rules are keyed on being server-default: a user's own copy of the condition still applies", () => {
    const stored = putUserRule(emptyUserRules(), "override", "my_name", { conditions: [{ kind: "contains_display_name" }], actions: ["notify"] }, {});
    const rules = compileRuleset(effectiveRuleset(ALICE, stored));
    const event = preparePushEvent(message({ body: "Alice!", "m.mentions": {} }));
    expect(evaluatePush(rules, event, context())?.ruleId).toBe("my_name");
  });
});

describe("event_match", () => {
  const topic = (value: unknown) => stateEvent("m.room.topic", "", { topic: value as JsonObject[string] });
  const lunch = [{ kind: "event_match", key: "content.topic", pattern: "lunc?*" }];

  it.each([
    ["Lunch plans", true],
    ["LUNCH", true],
    [" lunch", false],
    ["lunc", false],
    [null, false],
  ])("the spec's lunc?* example: topic %j", (value, expected) => {
    expect(conditionsMatch(lunch, topic(value))).toBe(expected);
  });

  it("the spec's lunc?* example event itself", () => {
    const event = {
      content: { topic: "Lunch plans" },
      event_id: "$143273582443PhrSn:example.org",
      room_id: "!636q39766251:example.com",
      sender: "@example:example.org",
      state_key: "",
      type: "m.room.topic",
    };
    expect(conditionsMatch(lunch, event)).toBe(true);
  });

  it.each([
    ["An example event.", true],
    ["exple", true],
    ["An exciting triple-whammy", true],
    ["Anexample", false],
  ])("the spec's ex*ple example on content.body: %j", (body, expected) => {
    const event = {
      content: { body },
      event_id: "$143273976499sgjks:example.org",
      room_id: "!636q39766251:example.com",
      sender: "@example:example.org",
      type: "m.room.message",
    };
    expect(conditionsMatch([{ kind: "event_match", key: "content.body", pattern: "ex*ple" }], event)).toBe(expected);
  });

  it("only content.body matches by words; other keys match the whole value", () => {
    expect(conditionsMatch([{ kind: "event_match", key: "content.topic", pattern: "example" }], topic("An example event."))).toBe(false);
    expect(conditionsMatch([{ kind: "event_match", key: "content.body", pattern: "example" }], message({ body: "An example event." }))).toBe(true);
  });

  it.each([
    ["missing", undefined],
    ["null", null],
    ["a number", 5],
    ["a boolean", true],
    ["an object", { a: "b" }],
    ["an array", ["x"]],
  ])("never matches a property that is %s, even with *", (_name, value) => {
    const content: JsonObject = {};
    if (value !== undefined) content.topic = value as JsonObject[string];
    expect(conditionsMatch([{ kind: "event_match", key: "content.topic", pattern: "*" }], stateEvent("m.room.topic", "", content))).toBe(false);
  });

  it("follows escaped dots and backslashes in the key", () => {
    const event = message({ body: "x", "m.relates_to": { rel_type: "m.thread" }, "a\\b": "yes" });
    expect(conditionsMatch([{ kind: "event_match", key: "content.m\\.relates_to.rel_type", pattern: "m.thread" }], event)).toBe(true);
    expect(conditionsMatch([{ kind: "event_match", key: "content.m.relates_to.rel_type", pattern: "m.thread" }], event)).toBe(false);
    expect(conditionsMatch([{ kind: "event_match", key: "content.a\\\\b", pattern: "yes" }], event)).toBe(true);
  });

  it("an empty pattern matches only an empty value", () => {
    expect(conditionsMatch([{ kind: "event_match", key: "state_key", pattern: "" }], stateEvent("m.room.name", ""))).toBe(true);
    expect(conditionsMatch([{ kind: "event_match", key: "state_key", pattern: "" }], stateEvent("m.room.name", "x"))).toBe(false);
  });

  it("missing or non-string key/pattern never match", () => {
    expect(conditionsMatch([{ kind: "event_match", key: "type" }], message({}))).toBe(false);
    expect(conditionsMatch([{ kind: "event_match", pattern: "*" }], message({}))).toBe(false);
    expect(conditionsMatch([{ kind: "event_match", key: "type", pattern: 5 }], message({}))).toBe(false);
  });
});

describe("event_property_is", () => {
  const create = (federate: unknown) => ({
    content: {
      creator: "@example:example.org",
      "m.federate": federate as JsonObject[string],
      predecessor: { event_id: "$something:example.org", room_id: "!oldroom:example.org" },
      room_version: "1",
    },
    event_id: "$143273582443PhrSn:example.org",
    room_id: "!636q39766251:example.com",
    sender: "@example:example.org",
    state_key: "",
    type: "m.room.create",
  });

  it.each([
    [true, true],
    ["true", false],
    [1, false],
    [false, false],
    [null, false],
  ])("the spec's m.federate example: value true against %j", (federate, expected) => {
    expect(conditionsMatch([{ kind: "event_property_is", key: "content.m\\.federate", value: true }], create(federate))).toBe(expected);
  });

  const cases: [string, unknown, unknown, boolean][] = [
    // [name, condition value, event value, matches]
    ["string = string", "a", "a", true],
    ["string is case-sensitive", "a", "A", false],
    ["string is not a glob", "a*", "abc", false],
    ["integer = integer", 1, 1, true],
    ["integer = the same written 1.0 (JSON cannot tell)", 1, JSON.parse("1.0"), true],
    ["integer vs string", 1, "1", false],
    ["integer vs boolean", 1, true, false],
    ["0 vs false", 0, false, false],
    ["negative integer", -5, -5, true],
    ["largest canonical integer", 2 ** 53 - 1, 2 ** 53 - 1, true],
    ["a condition integer out of range never matches", 2 ** 53, 2 ** 53, false],
    ["a float condition never matches", 1.5, 1.5, false],
    ["integer vs float event value", 1, 1.5, false],
    ["boolean = boolean", false, false, true],
    ["boolean vs string", false, "false", false],
    ["null = null", null, null, true],
    ["null vs missing", null, undefined, false],
    ["null vs string", null, "null", false],
    ["an object condition never matches", { a: 1 }, { a: 1 }, false],
    ["an array condition never matches", [1], [1], false],
    ["a compound event value never matches", "a", ["a"], false],
    ["missing value never matches", undefined, "x", false],
  ];

  it.each(cases)("%s", (_name, value, eventValue, expected) => {
    const content: JsonObject = { body: "x" };
    if (eventValue !== undefined) content.prop = eventValue as JsonObject[string];
    const condition: JsonObject = { kind: "event_property_is", key: "content.prop" };
    if (value !== undefined) condition.value = value as JsonObject[string];
    expect(conditionsMatch([condition as { kind: string }], message(content))).toBe(expected);
  });
});

describe("event_property_contains", () => {
  const alias = (altAliases: unknown) => ({
    content: { alias: "#somewhere:localhost", alt_aliases: altAliases as JsonObject[string] },
    event_id: "$143273582443PhrSn:example.org",
    origin_server_ts: 1432735824653,
    room_id: "!jEsUZKDJdhlrceRyVU:example.org",
    sender: "@example:example.org",
    state_key: "",
    type: "m.room.canonical_alias",
    unsigned: { age: 1234 },
  });
  const myroom = [{ kind: "event_property_contains", key: "content.alt_aliases", value: "#myroom:example.com" }];

  it.each([
    [["#somewhere:example.org", "#myroom:example.com"], true],
    [[":example.com"], false],
    [["#MYROOM:example.com"], false],
    ["#myroom:example.com", false], // not an array
    [[["#myroom:example.com"]], false], // nested arrays are ignored
  ])("the spec's alt_aliases example: %j", (altAliases, expected) => {
    expect(conditionsMatch(myroom, alias(altAliases))).toBe(expected);
  });

  const mixed = [1, "a", null, true, { x: 1 }, [2], 2.5];
  it.each([
    [1, true],
    ["a", true],
    [null, true],
    [true, true],
    ["1", false],
    [false, false],
    [2, false], // inside a nested array
    [2.5, false], // a float condition never matches
    [{ x: 1 }, false], // compound values never match
  ])("in a mixed array: %j", (value, expected) => {
    const condition = { kind: "event_property_contains", key: "content.list", value: value as JsonObject[string] };
    expect(conditionsMatch([condition], message({ list: mixed }))).toBe(expected);
  });

  it("a missing property never matches", () => {
    expect(conditionsMatch([{ kind: "event_property_contains", key: "content.nothing", value: null }], message({}))).toBe(false);
  });
});

describe("contains_display_name", () => {
  const condition = [{ kind: "contains_display_name" }];
  it.each([
    ["Alice", "hello Alice", true],
    ["Alice", "hello alice!", true],
    ["Alice", "hello Alice_2", false],
    ["Alice", "Aliceson", false],
    ["foo bar", "foo bar baz", true],
    ["ba", "foo bar baz", false],
    ["ba[rz]", "foo bar baz", false], // not a regex
    ["Ca*", "Carol", false], // not a glob either
    ["Ca*", "hi Ca*!", true],
    ["Zoë", "ZOË, look", true],
    ["Σοφία", "γεια σου σοφία", true],
    ["Émile", "émile?", true],
    ["", "anything", false],
    [null, "anything", false],
  ])("display name %j in %j: %s", (displayName, body, expected) => {
    expect(conditionsMatch(condition, message({ body }), { displayName })).toBe(expected);
  });

  it("needs a string body", () => {
    expect(conditionsMatch(condition, message({ body: 5 }), { displayName: "5" })).toBe(false);
    expect(conditionsMatch(condition, message({}), { displayName: "x" })).toBe(false);
  });
});

describe("room_member_count", () => {
  it.each([
    ["2", 2, true],
    ["2", 3, false],
    ["==2", 2, true],
    ["<3", 2, true],
    ["<2", 2, false],
    [">1", 2, true],
    [">2", 2, false],
    ["<=2", 2, true],
    ["<=1", 2, false],
    [">=2", 2, true],
    [">=3", 2, false],
    ["<=10", 10, true],
    ["0", 0, true],
    ["02", 2, true],
  ])("is %j with %d members: %s", (is, count, expected) => {
    expect(conditionsMatch([{ kind: "room_member_count", is }], message({}), { roomMemberCount: count })).toBe(expected);
  });

  it.each([["=2"], ["=<2"], ["!=2"], ["2.0"], [" 2"], ["2 "], ["+2"], ["-1"], [""], ["abc"], ["<"], ["0x2"]])("a malformed is %j never matches", (is) => {
    for (const count of [0, 1, 2, 3]) {
      expect(conditionsMatch([{ kind: "room_member_count", is }], message({}), { roomMemberCount: count })).toBe(false);
    }
  });

  it("a missing or non-string is never matches", () => {
    expect(conditionsMatch([{ kind: "room_member_count" }], message({}), { roomMemberCount: 2 })).toBe(false);
    expect(conditionsMatch([{ kind: "room_member_count", is: 2 }], message({}), { roomMemberCount: 2 })).toBe(false);
  });
});

describe("sender_notification_permission", () => {
  const levels = (key: string) => ({ room: 50, custom: 10 })[key] ?? 50;
  it.each([
    ["room", 50, true],
    ["room", 49, false],
    ["custom", 10, true],
    ["custom", 9, false],
    ["unlisted", 50, true],
  ])("key %j with sender power %d: %s", (key, power, expected) => {
    expect(conditionsMatch([{ kind: "sender_notification_permission", key }], message({}), { senderPowerLevel: power, notificationPowerLevel: levels })).toBe(expected);
  });

  it("a missing or non-string key never matches", () => {
    expect(conditionsMatch([{ kind: "sender_notification_permission" }], message({}), { senderPowerLevel: 100 })).toBe(false);
    expect(conditionsMatch([{ kind: "sender_notification_permission", key: 1 }], message({}), { senderPowerLevel: 100 })).toBe(false);
  });
});

describe("rules and rule sets", () => {
  it("unknown condition kinds never match, even beside ones that do", () => {
    expect(conditionsMatch([{ kind: "org.example.future" }], message({}))).toBe(false);
    expect(conditionsMatch([{ kind: "event_match", key: "type", pattern: "m.room.message" }, { kind: "org.example.future" }], message({}))).toBe(false);
  });

  it("a rule with no conditions always matches", () => {
    expect(conditionsMatch([], { type: "anything" })).toBe(true);
  });

  it("all conditions must hold", () => {
    const conditions: PushCondition[] = [
      { kind: "event_match", key: "content.body", pattern: "beer" },
      { kind: "room_member_count", is: "<=10" },
    ];
    expect(conditionsMatch(conditions, message({ body: "beer o'clock" }), { roomMemberCount: 10 })).toBe(true);
    expect(conditionsMatch(conditions, message({ body: "beer o'clock" }), { roomMemberCount: 11 })).toBe(false);
    expect(conditionsMatch(conditions, message({ body: "wine" }), { roomMemberCount: 3 })).toBe(false);
  });

  it("disabled rules never match", () => {
    const ruleset = onlyOverride([]);
    (ruleset.override[0] as { enabled: boolean }).enabled = false;
    expect(evaluatePush(compileRuleset(ruleset), preparePushEvent(message({})), context())).toBeUndefined();
    expect(compileRuleset(ruleset).rules).toEqual([]);
  });

  it("kinds are checked in order: override, content, room, sender, underride", () => {
    const rule = (rule_id: string, extra: object) => ({ rule_id, default: false, enabled: true, actions: [rule_id], ...extra });
    const all = {
      override: [rule("o", { conditions: [{ kind: "event_match", key: "content.body", pattern: "override" }] })],
      content: [rule("c", { pattern: "content" })],
      room: [rule(ROOM, {})],
      sender: [rule(BOB, {})],
      underride: [rule("u", { conditions: [] })],
    };
    const outcome = (event: JsonObject) => evaluatePush(compileRuleset(all), preparePushEvent(event), context())?.ruleId;
    expect(outcome(message({ body: "override content" }))).toBe("o");
    expect(outcome(message({ body: "content" }))).toBe("c");
    expect(outcome(message({ body: "x" }))).toBe(ROOM);
    expect(outcome(message({ body: "x" }, { room_id: "!other:example.org" }))).toBe(BOB);
    expect(outcome(message({ body: "x" }, { room_id: "!other:example.org", sender: "@carol:example.org" }))).toBe("u");
  });

  it("within a kind, the first rule wins", () => {
    const ruleset = onlyOverride([]);
    ruleset.override.push({ rule_id: "second", default: false, enabled: true, conditions: [], actions: [] });
    expect(evaluatePush(compileRuleset(ruleset), preparePushEvent(message({})), context())?.ruleId).toBe("test");
  });

  it("room and sender rules compare ids exactly", () => {
    const ruleset = emptyUserRules().rules;
    ruleset.room = [{ rule_id: "!Room:example.org", default: false, enabled: true, actions: [] }];
    ruleset.sender = [{ rule_id: "@Bob:example.org", default: false, enabled: true, actions: [] }];
    const compiled = compileRuleset(ruleset);
    expect(evaluatePush(compiled, preparePushEvent(message({}, { room_id: "!room:example.org", sender: BOB })), context())).toBeUndefined();
    expect(evaluatePush(compiled, preparePushEvent(message({}, { room_id: "!Room:example.org" })), context())?.kind).toBe("room");
    expect(evaluatePush(compiled, preparePushEvent(message({}, { sender: "@Bob:example.org" })), context())?.kind).toBe("sender");
  });

  it("content rules match content.body by words and need a string body", () => {
    const ruleset = emptyUserRules().rules;
    ruleset.content = [{ rule_id: "cake", default: false, enabled: true, pattern: "cake", actions: ["notify"] }];
    const compiled = compileRuleset(ruleset);
    const run = (content: JsonObject) => evaluatePush(compiled, preparePushEvent(message(content)), context())?.ruleId;
    expect(run({ body: "I like CAKE." })).toBe("cake");
    expect(run({ body: "cupcakes" })).toBeUndefined();
    expect(run({ body: ["cake"] })).toBeUndefined();
    expect(run({ topic: "cake" })).toBeUndefined();
  });

  it("the outcome is shared and frozen", () => {
    const compiled = compileRuleset(onlyOverride([], ["notify"]));
    const a = evaluatePush(compiled, preparePushEvent(message({})), context());
    const b = evaluatePush(compiled, preparePushEvent(message({ body: "other" })), context());
    expect(a).toBe(b);
    expect(Object.isFrozen(a)).toBe(true);
    expect(Object.isFrozen(a?.actions)).toBe(true);
  });

  it("compiling does not change the rule set, and later changes to it do not reach the compiled outcome", () => {
    const ruleset = serverDefaultRules(ALICE);
    const before = JSON.stringify(ruleset);
    const compiled = compileRuleset(ruleset);
    expect(JSON.stringify(ruleset)).toBe(before);
    (ruleset.underride.find((r) => r.rule_id === ".m.rule.message")?.actions as PushAction[]).push("changed");
    expect(evaluatePush(compiled, preparePushEvent(message({ body: "x" })), context())?.actions).toEqual(["notify"]);
  });
});

describe("actions", () => {
  const outcomeOf = (actions: PushAction[]) => evaluatePush(compileRuleset(onlyOverride([], actions)), preparePushEvent(message({})), context());

  it.each<[string, PushAction[], PushAction[], boolean, boolean]>([
    ["notify", ["notify"], ["notify"], true, false],
    ["nothing", [], [], false, false],
    ["dont_notify is stripped", ["dont_notify"], [], false, false],
    ["coalesce is stripped", ["notify", "coalesce"], ["notify"], true, false],
    ["highlight without a value is true", ["notify", { set_tweak: "highlight" }], ["notify", { set_tweak: "highlight" }], true, true],
    ["highlight true", [{ set_tweak: "highlight", value: true }], [{ set_tweak: "highlight", value: true }], false, true],
    ["highlight false", ["notify", { set_tweak: "highlight", value: false }], ["notify", { set_tweak: "highlight", value: false }], true, false],
    ["highlight \"true\" is not true", [{ set_tweak: "highlight", value: "true" }], [{ set_tweak: "highlight", value: "true" }], false, false],
    ["highlight null is not true", [{ set_tweak: "highlight", value: null }], [{ set_tweak: "highlight", value: null }], false, false],
    ["other tweaks pass through", [{ set_tweak: "sound", value: "bing" }, { set_tweak: "x-flash", value: 3 }], [{ set_tweak: "sound", value: "bing" }, { set_tweak: "x-flash", value: 3 }], false, false],
    ["unknown actions pass through", ["org.example.action", "notify"], ["org.example.action", "notify"], true, false],
  ])("%s", (_name, actions, kept, notify, highlight) => {
    expect(outcomeOf(actions)).toMatchObject({ actions: kept, notify, highlight });
  });
});
