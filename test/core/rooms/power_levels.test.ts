import { describe, expect, it } from "vitest";
import {
  canBan,
  canInvite,
  canKick,
  canNotify,
  canRedactOthers,
  canSendEvent,
  canUnban,
  eventSendLevel,
  MalformedPowerLevelsError,
  namedLevel,
  parsePowerLevelValue,
  powerLevelsOf,
  roomCreators,
  userPowerLevel,
  type PowerContext,
} from "../../../src/core/rooms/power_levels.js";
import { getRoomVersion, ROOM_VERSIONS, type RoomVersion } from "../../../src/core/rooms/versions.js";
import { RoomBuilder } from "./helpers.js";

const v = (id: string): RoomVersion => getRoomVersion(id)!;
const ALL = [...ROOM_VERSIONS.values()];

describe("parsePowerLevelValue", () => {
  it.each(ALL.map((r) => [r.id, r] as const))("v%s: integers always parse", (_id, r) => {
    expect(parsePowerLevelValue(r, 50)).toBe(50);
    expect(parsePowerLevelValue(r, -10)).toBe(-10);
    expect(parsePowerLevelValue(r, 2 ** 53 - 1)).toBe(2 ** 53 - 1);
    expect(parsePowerLevelValue(r, 2 ** 53)).toBeNull();
    expect(parsePowerLevelValue(r, true)).toBeNull();
    expect(parsePowerLevelValue(r, null)).toBeNull();
    expect(parsePowerLevelValue(r, {})).toBeNull();
    expect(parsePowerLevelValue(r, undefined)).toBeNull();
  });

  it("v1-v9 accept integer strings with sign, leading zeroes and whitespace; v10+ do not", () => {
    for (const r of ALL) {
      const stringy = !r.integerPowerLevels;
      expect(r.integerPowerLevels).toBe(Number(r.id) >= 10);
      for (const [s, n] of [["100", 100], ["000100", 100], ["+100", 100], ["-100", -100], [" 00100 ", 100], ["\t-5\n", -5]] as const) {
        expect(parsePowerLevelValue(r, s)).toBe(stringy ? n : null);
      }
      for (const bad of ["", "1.5", "1e3", "abc", "+-1", "0x10", "1 2"]) expect(parsePowerLevelValue(r, bad)).toBeNull();
    }
  });

  it("v1-v5 truncate floats; v6+ (strict canonical JSON) reject them", () => {
    for (const r of ALL) {
      const floaty = Number(r.id) <= 5;
      expect(parsePowerLevelValue(r, 50.57)).toBe(floaty ? 50 : null);
      expect(parsePowerLevelValue(r, 5.114698e4)).toBe(floaty ? 51146 : null);
      expect(parsePowerLevelValue(r, -0.5)).toBe(floaty ? 0 : null);
      expect(parsePowerLevelValue(r, Infinity)).toBeNull();
      expect(parsePowerLevelValue(r, NaN)).toBeNull();
    }
  });
});

describe("PowerLevels defaults and lookups", () => {
  const r = v("10");
  const b = new RoomBuilder(r).bootstrap("@alice:example.org", { powerLevels: { users: { "@alice:example.org": 100 } } });
  const pl = b.lookup("m.room.power_levels", "")!;

  it("uses the spec defaults", () => {
    const p = powerLevelsOf(r, pl);
    expect(p.get("users_default")).toBe(0);
    expect(p.get("events_default")).toBe(0);
    expect(p.get("state_default")).toBe(50);
    expect(p.get("ban")).toBe(50);
    expect(p.get("kick")).toBe(50);
    expect(p.get("redact")).toBe(50);
    expect(p.get("invite")).toBe(0);
    expect(p.notificationLevel("room")).toBe(50);
    expect(p.notificationLevel("other")).toBeUndefined();
  });

  it("without a power levels event: state_default 50, events_default 0, named levels default", () => {
    expect(eventSendLevel(r, undefined, "m.room.topic", true)).toBe(50);
    expect(eventSendLevel(r, undefined, "m.room.message", false)).toBe(0);
    expect(namedLevel(r, undefined, "ban")).toBe(50);
    expect(namedLevel(r, undefined, "invite")).toBe(0);
  });

  it("events overrides the defaults", () => {
    const b2 = new RoomBuilder(r).bootstrap("@alice:example.org", {
      powerLevels: { events: { "m.room.message": 10, "m.room.topic": 5 }, state_default: 60, events_default: 1 },
    });
    const p = b2.lookup("m.room.power_levels", "");
    expect(eventSendLevel(r, p, "m.room.message", false)).toBe(10);
    expect(eventSendLevel(r, p, "m.room.topic", true)).toBe(5);
    expect(eventSendLevel(r, p, "m.room.name", true)).toBe(60);
    expect(eventSendLevel(r, p, "m.reaction", false)).toBe(1);
  });

  it("a malformed field only fails the lookups that need it", () => {
    const b3 = new RoomBuilder(v("9")).bootstrap("@alice:example.org", { powerLevels: { users: { "@alice:example.org": "100" }, kick: "lots" } });
    const p = powerLevelsOf(v("9"), b3.lookup("m.room.power_levels", "")!);
    expect(p.userLevel("@alice:example.org")).toBe(100);
    expect(() => p.get("kick")).toThrow(MalformedPowerLevelsError);
    expect(p.validate()).toMatch(/kick/);
  });
});

describe("userPowerLevel", () => {
  it("v1-v10: content.creator has 100 without a power levels event; others 0", () => {
    for (const id of ["1", "5", "10"]) {
      const b = new RoomBuilder(v(id));
      const create = b.add({ type: "m.room.create", sender: "@alice:example.org", state_key: "", content: { creator: "@carol:example.org" } });
      expect(userPowerLevel(v(id), create, undefined, "@carol:example.org")).toBe(100);
      expect(userPowerLevel(v(id), create, undefined, "@alice:example.org")).toBe(0);
    }
  });

  it("v11: the create sender has 100 without a power levels event", () => {
    const b = new RoomBuilder(v("11"));
    const create = b.add({ type: "m.room.create", sender: "@alice:example.org", state_key: "", content: { creator: "@carol:example.org" } });
    expect(userPowerLevel(v("11"), create, undefined, "@alice:example.org")).toBe(100);
    expect(userPowerLevel(v("11"), create, undefined, "@carol:example.org")).toBe(0);
  });

  it("with a power levels event: users, then users_default; the creator gets no special level before v12", () => {
    const b = new RoomBuilder(v("11")).bootstrap("@alice:example.org", { powerLevels: { users: { "@bob:example.org": 30 }, users_default: 5 } });
    const create = b.lookup("m.room.create", "");
    const pl = b.lookup("m.room.power_levels", "");
    expect(userPowerLevel(v("11"), create, pl, "@bob:example.org")).toBe(30);
    expect(userPowerLevel(v("11"), create, pl, "@alice:example.org")).toBe(5);
  });

  it("v12: creators (sender + additional_creators) have infinite power, with or without power levels", () => {
    const r = v("12");
    const b = new RoomBuilder(r);
    const create = b.add({
      type: "m.room.create",
      sender: "@alice:example.org",
      state_key: "",
      content: { room_version: "12", additional_creators: ["@bob:example.org"] },
    });
    expect([...roomCreators(r, create)].sort()).toEqual(["@alice:example.org", "@bob:example.org"]);
    expect(userPowerLevel(r, create, undefined, "@alice:example.org")).toBe(Infinity);
    expect(userPowerLevel(r, create, undefined, "@bob:example.org")).toBe(Infinity);
    expect(userPowerLevel(r, create, undefined, "@carol:example.org")).toBe(0);
    b.join("@alice:example.org");
    const pl = b.add({ type: "m.room.power_levels", sender: "@alice:example.org", state_key: "", content: { users_default: 10 } });
    expect(userPowerLevel(r, create, pl, "@bob:example.org")).toBe(Infinity);
    expect(userPowerLevel(r, create, pl, "@carol:example.org")).toBe(10);
  });
});

describe("can-do helpers", () => {
  const r = v("10");
  const b = new RoomBuilder(r).bootstrap("@alice:example.org", {
    powerLevels: {
      users: { "@alice:example.org": 100, "@mod:example.org": 50, "@low:example.org": 10 },
      invite: 10,
      ban: 60,
      notifications: { room: 20 },
      events: { "m.room.name": 50 },
      kick: "oops" as unknown as number,
    },
  });
  const ctx: PowerContext = { version: r, create: b.lookup("m.room.create", ""), powerLevels: b.lookup("m.room.power_levels", "") };

  it("answers from the levels", () => {
    expect(canInvite(ctx, "@low:example.org")).toBe(true);
    expect(canInvite(ctx, "@nobody:example.org")).toBe(false);
    expect(canBan(ctx, "@alice:example.org", "@mod:example.org")).toBe(true);
    expect(canBan(ctx, "@mod:example.org", "@low:example.org")).toBe(false);
    expect(canSendEvent(ctx, "@mod:example.org", "m.room.name", true)).toBe(true);
    expect(canSendEvent(ctx, "@low:example.org", "m.room.name", true)).toBe(false);
    expect(canSendEvent(ctx, "@low:example.org", "m.room.message", false)).toBe(true);
    expect(canRedactOthers(ctx, "@mod:example.org")).toBe(true);
    expect(canNotify(ctx, "@low:example.org", "room")).toBe(false);
    expect(canNotify(ctx, "@mod:example.org", "room")).toBe(true);
    expect(canNotify(ctx, "@mod:example.org", "unknown")).toBe(false);
  });

  it("answers no when the value it needs is malformed", () => {
    expect(canKick(ctx, "@alice:example.org", "@low:example.org")).toBe(false);
    expect(canUnban(ctx, "@alice:example.org", "@low:example.org")).toBe(false);
  });
});
