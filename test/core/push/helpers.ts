// Shared fixtures for the push rule tests: users, a default evaluation context, event builders.
import type { JsonObject } from "../../../src/core/json/types.js";
import {
  compileRuleset,
  emptyUserRules,
  evaluatePush,
  preparePushEvent,
  serverDefaultRules,
  type PushCondition,
  type PushContext,
  type PushOutcome,
  type PushRule,
  type Ruleset,
} from "../../../src/core/push/index.js";

export const ALICE = "@alice:example.org";
export const BOB = "@bob:example.org";
export const ROOM = "!room:example.org";

/** Alice in a 10-member room, sender at power 0, notifications at the default 50. */
export function context(overrides: Partial<PushContext> = {}): PushContext {
  return {
    userId: ALICE,
    displayName: "Alice",
    roomMemberCount: 10,
    senderPowerLevel: 0,
    notificationPowerLevel: () => 50,
    ...overrides,
  };
}

export function message(content: JsonObject, extra: JsonObject = {}): JsonObject {
  return { type: "m.room.message", room_id: ROOM, sender: BOB, event_id: "$e", content, ...extra };
}

export function stateEvent(type: string, stateKey: string | undefined, content: JsonObject = {}): JsonObject {
  const event: JsonObject = { type, room_id: ROOM, sender: BOB, event_id: "$s", content };
  if (stateKey !== undefined) event.state_key = stateKey;
  return event;
}

/** Alice's outcome under the server defaults. */
export function defaultsOutcome(event: JsonObject, ctx: Partial<PushContext> = {}): PushOutcome | undefined {
  const c = context(ctx);
  return evaluatePush(compileRuleset(serverDefaultRules(c.userId)), preparePushEvent(event), c);
}

/** A rule set with one enabled override rule with these conditions. */
export function onlyOverride(conditions: PushCondition[], actions: PushRule["actions"] = ["notify"]): Ruleset {
  const ruleset = emptyUserRules().rules;
  ruleset.override = [{ rule_id: "test", default: false, enabled: true, conditions, actions }];
  return ruleset;
}

/** Does a lone override rule with these conditions match the event? */
export function conditionsMatch(conditions: PushCondition[], event: JsonObject, ctx: Partial<PushContext> = {}): boolean {
  return evaluatePush(compileRuleset(onlyOverride(conditions)), preparePushEvent(event), context(ctx)) !== undefined;
}

/** A small deterministic PRNG (mulberry32), so property tests are repeatable. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function pick<T>(random: () => number, items: readonly T[]): T {
  return items[Math.floor(random() * items.length)] as T;
}
