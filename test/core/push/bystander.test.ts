// The large-room fast path (src/core/push/evaluate.ts): concernsUser, evaluateDefaultsForBystander and
// equivalentToDefaultsIn. Property tests over many generated events and users check that the fast path gives exactly
// what full evaluation of the user's rules gives, whenever it says it may be used.
import { describe, expect, it } from "vitest";
import type { JsonObject, JsonValue } from "../../../src/core/json/types.js";
import {
  compileRuleset,
  concernsUser,
  effectiveRuleset,
  emptyUserRules,
  equivalentToDefaultsIn,
  evaluateDefaultsForBystander,
  evaluatePush,
  preparePushEvent,
  putUserRule,
  serverDefaultRules,
  setRuleActions,
  setRuleEnabled,
  type PushContext,
  type UserPushRules,
} from "../../../src/core/push/index.js";
import { ALICE, BOB, ROOM, context, message, pick, prng, stateEvent } from "./helpers.js";

/** Users chosen to hit the corners: glob characters in ids, non-ASCII names, empty and missing display names. */
const USERS: [string, string | null][] = [
  [ALICE, "Alice"],
  [BOB, "Bob Smith"],
  ["@ca*rol:example.org", "Ca?rol"],
  ["@d?ve:example.org", null],
  ["@eve:example.org", ""],
  ["@zoe:example.org", "Zoë"],
  ["@sofia:example.org", "Σοφία"],
  ["@kelvin:example.org", "\u212aelvin"],
  ["@sam:example.org", "ſam"],
  ["@room:example.org", "room"],
  ["@x:example.org", "-"],
  ["@_:example.org", "Ali"],
  ["@ALICE:example.org", "ALICE"],
];

const WORDS = [
  "hello", "Alice", "alice", "ALICE!", "Aliceson", "bob", "Bob Smith", "bob smith", "ca*rol", "carol", "Ca?rol", "cazrol",
  "d?ve", "dave", "eve", "Zoë", "ZOË", "zoe", "σοφία", "ΣΟΦΊΑ", "kelvin", "KELVIN", "sam", "SAM", "ſam", "@room", "room",
  "-", "_", "Ali", "x", "😀", "\n", "e", "_alice", "alice_", "ex@room", "(bob)",
];

function randomEvent(random: () => number): JsonObject {
  const userIds = USERS.map(([id]) => id);
  const body = Array.from({ length: 1 + Math.floor(random() * 5) }, () => pick(random, WORDS)).join(pick(random, [" ", "", ", ", "-"]));
  const content: JsonObject = {};
  if (random() < 0.9) content.body = random() < 0.95 ? body : 42;
  content.msgtype = pick(random, ["m.text", "m.text", "m.notice", "m.emote"]);
  const mentions = random();
  if (mentions < 0.25) content["m.mentions"] = {};
  else if (mentions < 0.45) content["m.mentions"] = { user_ids: [pick(random, userIds), pick(random, [...userIds, 5, "@ALICE:EXAMPLE.ORG"])] as JsonValue[] };
  else if (mentions < 0.55) content["m.mentions"] = { room: pick(random, [true, false, "true"]) };
  else if (mentions < 0.6) content["m.mentions"] = pick(random, [null, "x", [ALICE]]);
  if (random() < 0.1) content["m.relates_to"] = { rel_type: pick(random, ["m.replace", "m.thread"]), event_id: "$x" };
  const type = pick(random, [
    "m.room.message", "m.room.message", "m.room.message", "m.room.member", "m.room.member", "m.room.encrypted", "m.reaction",
    "m.room.tombstone", "m.room.server_acl", "m.call.invite", "M.ROOM.MEMBER", "org.example.other",
  ]);
  if (type.toLowerCase() === "m.room.member") content.membership = pick(random, ["invite", "invite", "join", "leave", "INVITE"]);
  const event: JsonObject = { type, room_id: ROOM, sender: "@sender:example.org", content };
  const stateKey = random();
  if (stateKey < 0.5) event.state_key = pick(random, [...userIds, "", "@ALICE:EXAMPLE.ORG", "@cazrol:example.org", "@dave:example.org"]);
  else if (stateKey < 0.55) event.state_key = 7;
  return event;
}

function randomShared(random: () => number): Omit<PushContext, "userId" | "displayName"> {
  return {
    roomMemberCount: pick(random, [1, 2, 2, 3, 50]),
    senderPowerLevel: pick(random, [0, 49, 50, 100]),
    notificationPowerLevel: () => 50,
  };
}

describe("the bystander outcome", () => {
  it("equals full evaluation of the server defaults whenever concernsUser is false", () => {
    const random = prng(20240601);
    const compiled = new Map(USERS.map(([id]) => [id, compileRuleset(serverDefaultRules(id))]));
    let bystanders = 0;
    let concerned = 0;
    const outcomes = new Set<string | undefined>();
    for (let i = 0; i < 4000; i++) {
      const raw = randomEvent(random);
      const event = preparePushEvent(raw);
      const shared = randomShared(random);
      const bystander = evaluateDefaultsForBystander(event, shared);
      for (const [userId, name] of USERS) {
        const displayName = random() < 0.1 ? null : name;
        const full = evaluatePush(compiled.get(userId)!, event, { ...shared, userId, displayName });
        outcomes.add(full?.ruleId);
        if (concernsUser(event, userId, displayName)) {
          concerned++;
          continue;
        }
        bystanders++;
        if (JSON.stringify(full) !== JSON.stringify(bystander)) {
          expect({ event: raw, userId, displayName, outcome: full }).toEqual({ event: raw, userId, displayName, outcome: bystander });
        }
      }
    }
    // The generator reaches both paths and most rules.
    expect(bystanders).toBeGreaterThan(10_000);
    expect(concerned).toBeGreaterThan(2_000);
    for (const id of [".m.rule.invite_for_me", ".m.rule.is_user_mention", ".m.rule.contains_display_name", ".m.rule.contains_user_name", ".m.rule.roomnotif", ".m.rule.is_room_mention"]) {
      expect(outcomes).toContain(id);
    }
  });

  it.each<[string, JsonObject, string | null, boolean]>([
    ["invited", stateEvent("m.room.member", ALICE, { membership: "invite" }), "Alice", true],
    ["invited, other case", stateEvent("m.room.member", "@Alice:Example.org", { membership: "invite" }), "Alice", true],
    ["someone else invited", stateEvent("m.room.member", BOB, { membership: "invite" }), "Alice", false],
    ["joined", stateEvent("m.room.member", ALICE, { membership: "join" }), "Alice", false],
    ["mentioned", message({ body: "x", "m.mentions": { user_ids: [ALICE] } }), "Alice", true],
    ["someone else mentioned", message({ body: "x", "m.mentions": { user_ids: [BOB] } }), "Alice", false],
    ["display name in body", message({ body: "hi Alice" }), "Alice", true],
    ["display name in body with m.mentions", message({ body: "hi Alice", "m.mentions": {} }), "Alice", false],
    ["localpart in body", message({ body: "hi alice" }), null, true],
    ["neither", message({ body: "hi all" }), "Alice", false],
    ["no body", message({}), "Alice", false],
  ])("concernsUser: %s", (_name, event, displayName, expected) => {
    expect(concernsUser(preparePushEvent(event), ALICE, displayName)).toBe(expected);
  });

  it("a glob in a user id is a glob, as the default rules' patterns are", () => {
    const invite = preparePushEvent(stateEvent("m.room.member", "@cazrol:example.org", { membership: "invite" }));
    expect(concernsUser(invite, "@ca*rol:example.org", null)).toBe(true);
    expect(evaluatePush(compileRuleset(serverDefaultRules("@ca*rol:example.org")), invite, context({ userId: "@ca*rol:example.org" }))?.ruleId).toBe(
      ".m.rule.invite_for_me",
    );
  });

  it("is what the defaults give someone the event does not name", () => {
    const shared = { roomMemberCount: 3, senderPowerLevel: 100, notificationPowerLevel: () => 50 };
    expect(evaluateDefaultsForBystander(preparePushEvent(message({ body: "hi" })), shared)?.ruleId).toBe(".m.rule.message");
    expect(evaluateDefaultsForBystander(preparePushEvent(message({ body: "@room hi" })), shared)?.ruleId).toBe(".m.rule.roomnotif");
    expect(evaluateDefaultsForBystander(preparePushEvent(message({ body: "hi", "m.mentions": { room: true } })), shared)?.ruleId).toBe(".m.rule.is_room_mention");
    expect(evaluateDefaultsForBystander(preparePushEvent(stateEvent("m.room.member", ALICE, { membership: "invite" })), shared)?.ruleId).toBe(".m.rule.member_event");
    expect(evaluateDefaultsForBystander(preparePushEvent({ type: "org.example", content: {} }), shared)).toBeUndefined();
  });
});

describe("equivalentToDefaultsIn", () => {
  const OTHER = "!other:example.org";
  const put = (stored: UserPushRules, kind: string, id: string, body: object) => putUserRule(stored, kind, id, body, {});
  const scoped = (roomId: string) => ({ conditions: [{ kind: "event_match", key: "room_id", pattern: roomId }], actions: [] });

  const cases: [string, UserPushRules, boolean][] = [
    ["nothing changed", emptyUserRules(), true],
    ["a room rule for another room", put(emptyUserRules(), "room", OTHER, { actions: [] }), true],
    ["a room rule for this room", put(emptyUserRules(), "room", ROOM, { actions: [] }), false],
    ["a disabled room rule for this room", setRuleEnabled(put(emptyUserRules(), "room", ROOM, { actions: [] }), ALICE, "room", ROOM, false), true],
    ["an override scoped to another room", put(emptyUserRules(), "override", "mute", scoped(OTHER)), true],
    ["an underride scoped to another room", put(emptyUserRules(), "underride", "mute", scoped(OTHER)), true],
    ["an override scoped to this room", put(emptyUserRules(), "override", "mute", scoped(ROOM)), false],
    ["an override scoped to this room in other case", put(emptyUserRules(), "override", "mute", scoped("!ROOM:EXAMPLE.ORG")), false],
    ["an override scoped by a glob", put(emptyUserRules(), "override", "mute", scoped("!oth*")), false],
    ["an override scoped by a glob that cannot match here", put(emptyUserRules(), "override", "mute", scoped("!zzz?")), false],
    ["an override with a room_id condition beside others", put(emptyUserRules(), "override", "m", { conditions: [{ kind: "event_match", key: "type", pattern: "*" }, { kind: "event_match", key: "room_id", pattern: OTHER }], actions: [] }), true],
    ["an override on another key", put(emptyUserRules(), "override", "m", { conditions: [{ kind: "event_match", key: "content.room_id", pattern: OTHER }], actions: [] }), false],
    ["an override with no room condition", put(emptyUserRules(), "override", "m", { conditions: [], actions: [] }), false],
    ["a sender rule", put(emptyUserRules(), "sender", "@spam:example.org", { actions: [] }), false],
    ["a content rule", put(emptyUserRules(), "content", "cake", { pattern: "cake", actions: [] }), false],
    ["master enabled", setRuleEnabled(emptyUserRules(), ALICE, "override", ".m.rule.master", true), false],
    ["a default rule disabled", setRuleEnabled(emptyUserRules(), ALICE, "override", ".m.rule.contains_display_name", false), false],
    ["a default rule enabled, as it was", setRuleEnabled(emptyUserRules(), ALICE, "underride", ".m.rule.message", true), true],
    ["a default rule's actions changed", setRuleActions(emptyUserRules(), ALICE, "underride", ".m.rule.message", ["notify", { set_tweak: "highlight" }]), false],
    ["a default rule's actions set to what they were", setRuleActions(emptyUserRules(), ALICE, "underride", ".m.rule.call", ["notify", { value: "ring", set_tweak: "sound" }]), true],
    ["a default rule's actions changed only by historical actions", setRuleActions(emptyUserRules(), ALICE, "override", ".m.rule.member_event", ["dont_notify"]), true],
  ];

  it.each(cases)("%s: %s", (_name, stored, expected) => {
    expect(equivalentToDefaultsIn(stored, ROOM)).toBe(expected);
  });

  it("when true, the user's rules give the defaults' outcome for events in that room", () => {
    const random = prng(7);
    const others = ["!a:example.org", "!b:example.org", OTHER];
    let checked = 0;
    for (let i = 0; i < 300; i++) {
      let stored = emptyUserRules();
      for (let n = Math.floor(random() * 4); n > 0; n--) {
        const choice = random();
        const id = `r${n}`;
        if (choice < 0.3) stored = put(stored, "room", pick(random, [...others, ROOM]), { actions: pick(random, [[], ["notify", { set_tweak: "highlight" }]]) });
        else if (choice < 0.6) stored = put(stored, pick(random, ["override", "underride"]), id, { ...scoped(pick(random, [...others, ROOM])), actions: ["notify", { set_tweak: "sound", value: "x" }] });
        else if (choice < 0.7) stored = put(stored, "sender", "@sender:example.org", { actions: [] });
        else if (choice < 0.8) stored = setRuleEnabled(stored, ALICE, "underride", ".m.rule.message", random() < 0.5);
        else stored = setRuleActions(stored, ALICE, "override", ".m.rule.suppress_notices", pick(random, [[], ["dont_notify"], ["notify"]]));
      }
      if (!equivalentToDefaultsIn(stored, ROOM)) continue;
      const own = compileRuleset(effectiveRuleset(ALICE, stored));
      const defaults = compileRuleset(serverDefaultRules(ALICE));
      for (let j = 0; j < 20; j++) {
        const event = preparePushEvent(randomEvent(random));
        const ctx = { ...randomShared(random), userId: ALICE, displayName: "Alice" };
        expect(evaluatePush(own, event, ctx)).toEqual(evaluatePush(defaults, event, ctx));
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(1000);
  });
});
