/**
 * The Sliding Sync request (services/sync/sliding_request.ts): Synapse's and the MSC's newer shapes, `$ME`/`$LAZY`,
 * wildcard matching, combining room configs, sticky list and extension settings, and the errors for bad input.
 */
import { describe, expect, it } from "vitest";
import { MatrixError } from "../../src/errors.js";
import { combineConfigs, parseSlidingRequest, stateWanted } from "../../src/services/sync/sliding_request.js";

const ME = "@me:example.org";
const parse = (body: unknown, previous?: Record<string, unknown>) => parseSlidingRequest(body, ME, previous as never);
const errcode = (fn: () => unknown) => {
  try {
    fn();
  } catch (e) {
    if (e instanceof MatrixError) return e.errcode;
    throw e;
  }
  return undefined;
};

describe("required_state", () => {
  it("pairs with wildcards, $ME and $LAZY", () => {
    const req = parse({ lists: { a: { ranges: [[0, 1]], timeline_limit: 5, required_state: [["m.room.member", "$ME"], ["m.room.member", "$LAZY"], ["org.x", "*"], ["*", "k"]] } } });
    const spec = req.lists.get("a")!.requiredState;
    expect(spec.lazy).toBe(true);
    expect(stateWanted(spec, "m.room.member", ME)).toBe(true);
    expect(stateWanted(spec, "m.room.member", "@other:example.org")).toBe(false);
    expect(stateWanted(spec, "org.x", "anything")).toBe(true);
    expect(stateWanted(spec, "m.room.topic", "k")).toBe(true);
    expect(stateWanted(spec, "m.room.topic", "")).toBe(false);
  });

  it("the newer {include, exclude, lazy_members} shape", () => {
    const spec = parse({ room_subscriptions: { "!r:x": { timeline_limit: 1, required_state: { include: [{}], exclude: [{ type: "m.room.create", state_key: "" }], lazy_members: true } } } }).subscriptions.get("!r:x")!.requiredState;
    expect(spec.lazy).toBe(true);
    expect(stateWanted(spec, "m.room.name", "")).toBe(true);
    expect(stateWanted(spec, "m.room.create", "")).toBe(false);
  });

  it("combining configs takes the superset", () => {
    const a = { timelineLimit: 1, requiredState: { include: [["m.room.name", ""]] as [string, string][], exclude: [], lazy: false } };
    const b = { timelineLimit: 10, requiredState: { include: [["m.room.topic", ""]] as [string, string][], exclude: [], lazy: true } };
    const c = combineConfigs(a, b);
    expect(c.timelineLimit).toBe(10);
    expect(c.requiredState.lazy).toBe(true);
    expect(stateWanted(c.requiredState, "m.room.name", "")).toBe(true);
    expect(stateWanted(c.requiredState, "m.room.topic", "")).toBe(true);
  });
});

describe("sticky settings", () => {
  it("a list of only ranges keeps its settings; extensions keep theirs but to_device.since", () => {
    const first = parse({ lists: { a: { ranges: [[0, 9]], timeline_limit: 7, required_state: [["m.room.name", ""]], filters: { is_dm: true } } }, extensions: { to_device: { enabled: true, since: "5" }, e2ee: { enabled: true } } });
    const second = parse({ lists: { a: { ranges: [[0, 19]] } }, extensions: { to_device: {} } }, first.sticky);
    const list = second.lists.get("a")!;
    expect(list.ranges).toEqual([[0, 19]]);
    expect(list.timelineLimit).toBe(7);
    expect(list.filters.isDm).toBe(true);
    expect(second.extensions.e2ee).toBe(true);
    expect(second.extensions.toDevice).toEqual({ since: undefined, limit: 100 });
    // A complete list replaces the old one; a list left out is gone.
    const third = parse({ lists: { a: { ranges: [[0, 1]], timeline_limit: 1 }, b: { timeline_limit: 1 } } }, second.sticky);
    expect(third.lists.get("a")!.filters).toEqual({ isDm: undefined, isEncrypted: undefined, isInvite: undefined, roomTypes: undefined, notRoomTypes: undefined, spaces: undefined, tags: undefined, notTags: undefined });
    expect(third.lists.get("b")!.ranges).toBeUndefined();
    expect(parse({ lists: { b: { timeline_limit: 1 } } }, third.sticky).lists.has("a")).toBe(false);
  });
});

describe("bad input", () => {
  it("wrong types are M_BAD_JSON, bad values M_INVALID_PARAM", () => {
    expect(errcode(() => parse([]))).toBe("M_BAD_JSON");
    expect(errcode(() => parse({ lists: { a: { ranges: [[0, "1"]] } } }))).toBe("M_BAD_JSON");
    expect(errcode(() => parse({ lists: { a: { ranges: [[3, 1]] } } }))).toBe("M_INVALID_PARAM");
    expect(errcode(() => parse({ lists: { a: { ranges: [[-1, 1]] } } }))).toBe("M_INVALID_PARAM");
    expect(errcode(() => parse({ lists: { a: { range: [0, 2 ** 60] } } }))).toBe("M_INVALID_PARAM");
    expect(errcode(() => parse({ lists: { a: { timeline_limit: 1.5 } } }))).toBe("M_BAD_JSON");
    expect(errcode(() => parse({ room_subscriptions: { nope: { timeline_limit: 1 } } }))).toBe("M_INVALID_PARAM");
    expect(errcode(() => parse({ extensions: { receipts: { enabled: true, lists: "all" } } }))).toBe("M_BAD_JSON");
    expect(errcode(() => parse({ extensions: { to_device: { enabled: true, limit: 0 } } }))).toBe("M_INVALID_PARAM");
    expect(parse({ lists: { a: { timeline_limit: 10_000 } } }).lists.get("a")!.timelineLimit).toBe(100);
  });
});
