import { describe, expect, it } from "vitest";
import {
  applyEventFields,
  DEFAULT_FILTER,
  effectiveLimit,
  eventFormat,
  FilterError,
  filtersAll,
  globMatches,
  includeLeave,
  lazyLoadMembers,
  matchesEventFilter,
  parseFilter,
  parseRoomEventFilter,
  parseRoomEventFilterParam,
  parseSyncFilterParam,
  roomEventFilterLazyLoad,
  roomIncluded,
  splitFieldPath,
  timelineLimit,
  unreadThreadNotifications,
  type FilterableEvent,
  type RoomEventFilter,
} from "../../../src/core/filters/index.js";

// The example body of POST /user/{userId}/filter (data/api/client-server/filter.yaml).
const SPEC_EXAMPLE = {
  room: {
    state: { types: ["m.room.*"], not_rooms: ["!726s6s6q:example.com"] },
    timeline: { limit: 10, types: ["m.room.message"], not_rooms: ["!726s6s6q:example.com"], not_senders: ["@spam:example.com"] },
    ephemeral: { types: ["m.receipt", "m.typing"], not_rooms: ["!726s6s6q:example.com"], not_senders: ["@spam:example.com"] },
  },
  presence: { types: ["m.presence"], not_senders: ["@alice:example.com"] },
  event_format: "client",
  event_fields: ["type", "content", "sender"],
};

const ev = (type: string, extra: Partial<FilterableEvent> = {}): FilterableEvent => ({ type, sender: "@alice:example.com", room_id: "!a:example.com", ...extra });

describe("globMatches", () => {
  it.each([
    ["m.*", "m.room.message", true],
    ["m.*", "m.", true],
    ["m.*", "m", false],
    ["m.*", "org.m.x", false],
    ["*", "", true],
    ["*", "anything.at.all", true],
    ["m.room.*", "m.room.member", true],
    ["m.room.*", "m.roomy", false],
    ["m.room.*", "m.presence", false],
    ["*.message", "m.room.message", true],
    ["m.*.message", "m.room.message", true],
    ["m.*.message", "m.message", false],
    ["a*b*c", "abc", true],
    ["a*b*c", "aXbYc", true],
    ["a*b*c", "acb", false],
    ["a*a", "a", false],
    ["a*a", "aa", true],
    ["**", "x", true],
    // Everything but `*` is literal, regex metacharacters included.
    ["m.room.mess+age", "m.room.mess+age", true],
    ["m.room.mess+age", "m.room.messsage", false],
    ["a.b", "a.b", true],
    ["a.b", "aXb", false],
    ["m.room.?", "m.room.x", false],
    ["m.room.?", "m.room.?", true],
    ["[a-z]*", "abc", false],
    ["(x|y)", "x", false],
    ["^m$", "m", false],
    ["m\\*", "m\\anything", true],
    ["m.room.message", "m.room.message", true],
    ["m.room.message", "m.room.messages", false],
  ])("%j vs %j -> %s", (pattern, value, expected) => {
    expect(globMatches(pattern, value)).toBe(expected);
  });
});

describe("matchesEventFilter", () => {
  const cases: [string, RoomEventFilter | undefined, FilterableEvent, boolean][] = [
    ["no filter", undefined, ev("m.room.message"), true],
    ["empty filter", {}, ev("anything"), true],
    ["types exact", { types: ["m.room.message"] }, ev("m.room.message"), true],
    ["types miss", { types: ["m.room.message"] }, ev("m.room.member"), false],
    ["types wildcard", { types: ["m.room.*"] }, ev("m.room.member"), true],
    ["types star", { types: ["*"] }, ev("org.example.custom"), true],
    ["empty types matches nothing", { types: [] }, ev("m.room.message"), false],
    ["metachar literal", { types: ["m.room.mess+age"] }, ev("m.room.messsage"), false],
    ["dot literal", { types: ["a.b"] }, ev("aXb"), false],
    ["not_types", { not_types: ["m.room.member"] }, ev("m.room.member"), false],
    ["not_types other", { not_types: ["m.room.member"] }, ev("m.room.message"), true],
    ["not_types beats types", { types: ["m.room.*"], not_types: ["m.room.member"] }, ev("m.room.member"), false],
    ["not_types wildcard beats exact types", { types: ["m.room.member"], not_types: ["m.*"] }, ev("m.room.member"), false],
    ["empty not_types excludes nothing", { not_types: [] }, ev("m.room.message"), true],
    ["senders", { senders: ["@alice:example.com"] }, ev("m.room.message"), true],
    ["senders miss", { senders: ["@bob:example.com"] }, ev("m.room.message"), false],
    ["empty senders", { senders: [] }, ev("m.room.message"), false],
    ["not_senders", { not_senders: ["@alice:example.com"] }, ev("m.room.message"), false],
    ["not_senders beats senders", { senders: ["@alice:example.com"], not_senders: ["@alice:example.com"] }, ev("x"), false],
    ["senders are not globs", { senders: ["@*"] }, ev("x"), false],
    ["no sender vs senders", { senders: ["@alice:example.com"] }, { type: "m.typing" }, false],
    ["no sender vs not_senders", { not_senders: ["@alice:example.com"] }, { type: "m.typing" }, true],
    ["rooms", { rooms: ["!a:example.com"] }, ev("x"), true],
    ["rooms miss", { rooms: ["!b:example.com"] }, ev("x"), false],
    ["empty rooms", { rooms: [] }, ev("x"), false],
    ["not_rooms", { not_rooms: ["!a:example.com"] }, ev("x"), false],
    ["not_rooms beats rooms", { rooms: ["!a:example.com"], not_rooms: ["!a:example.com"] }, ev("x"), false],
    ["contains_url true, has url", { contains_url: true }, ev("m.room.message", { content: { url: "mxc://a/b" } }), true],
    ["contains_url true, no url", { contains_url: true }, ev("m.room.message", { content: { body: "hi" } }), false],
    ["contains_url true, non-string url", { contains_url: true }, ev("m.room.message", { content: { url: 5 } }), false],
    ["contains_url true, no content", { contains_url: true }, ev("m.room.message"), false],
    ["contains_url false, has url", { contains_url: false }, ev("m.room.message", { content: { url: "mxc://a/b" } }), false],
    ["contains_url false, no url", { contains_url: false }, ev("m.room.message", { content: { body: "hi" } }), true],
    ["contains_url false, non-string url", { contains_url: false }, ev("m.room.message", { content: { url: null } }), true],
    ["contains_url absent ignores url", {}, ev("m.room.message", { content: { url: "mxc://a/b" } }), true],
    ["all lists must pass", { types: ["m.room.message"], senders: ["@bob:example.com"] }, ev("m.room.message"), false],
  ];
  it.each(cases)("%s", (_name, filter, event, expected) => {
    expect(matchesEventFilter(filter, event)).toBe(expected);
  });

  it("applies the spec example's sections", () => {
    const f = parseFilter(SPEC_EXAMPLE);
    const spam = { sender: "@spam:example.com" };
    expect(matchesEventFilter(f.room?.timeline, ev("m.room.message"))).toBe(true);
    expect(matchesEventFilter(f.room?.timeline, ev("m.room.message", spam))).toBe(false);
    expect(matchesEventFilter(f.room?.timeline, ev("m.room.message", { room_id: "!726s6s6q:example.com" }))).toBe(false);
    expect(matchesEventFilter(f.room?.timeline, ev("m.room.member"))).toBe(false);
    expect(matchesEventFilter(f.room?.state, ev("m.room.member"))).toBe(true);
    expect(matchesEventFilter(f.room?.state, ev("m.space.child"))).toBe(false);
    expect(matchesEventFilter(f.room?.ephemeral, { type: "m.typing", room_id: "!a:example.com" })).toBe(true);
    expect(matchesEventFilter(f.presence, { type: "m.presence", sender: "@bob:example.com" })).toBe(true);
    expect(matchesEventFilter(f.presence, { type: "m.presence", sender: "@alice:example.com" })).toBe(false);
  });
});

describe("roomIncluded", () => {
  it.each([
    [{}, "!a:x", true],
    [{ room: {} }, "!a:x", true],
    [{ room: { rooms: ["!a:x"] } }, "!a:x", true],
    [{ room: { rooms: ["!a:x"] } }, "!b:x", false],
    [{ room: { rooms: [] } }, "!a:x", false],
    [{ room: { not_rooms: ["!a:x"] } }, "!a:x", false],
    [{ room: { not_rooms: ["!a:x"] } }, "!b:x", true],
    [{ room: { rooms: ["!a:x"], not_rooms: ["!a:x"] } }, "!a:x", false],
    // Section-level room lists are not the top-level filter.
    [{ room: { timeline: { rooms: ["!b:x"] } } }, "!a:x", true],
  ])("%j / %s -> %s", (json, roomId, expected) => {
    expect(roomIncluded(parseFilter(json), roomId)).toBe(expected);
  });

  it("treats an absent filter as all rooms", () => {
    expect(roomIncluded(undefined, "!a:x")).toBe(true);
    expect(roomIncluded(DEFAULT_FILTER, "!a:x")).toBe(true);
  });
});

describe("parseFilter", () => {
  it("accepts the spec example and keeps its values", () => {
    expect(parseFilter(SPEC_EXAMPLE)).toEqual(SPEC_EXAMPLE);
  });

  it("accepts every known field", () => {
    const json = {
      event_fields: ["content.body"],
      event_format: "federation",
      presence: { limit: 5, types: ["m.presence"], senders: ["@a:x"] },
      account_data: { not_types: ["m.push_rules"] },
      room: {
        rooms: ["!a:x"],
        not_rooms: ["!b"],
        include_leave: true,
        ephemeral: { limit: 1 },
        state: { lazy_load_members: true, include_redundant_members: true },
        timeline: { limit: 0, contains_url: false, unread_thread_notifications: true, not_senders: ["@s:x"] },
        account_data: { types: [] },
      },
    };
    expect(parseFilter(json)).toEqual(json);
  });

  it("ignores unknown keys at every level", () => {
    const parsed = parseFilter({
      "org.example.top": 1,
      presence: { "org.example.x": "y" },
      room: { extra: [1], timeline: { "org.matrix.msc3874.rel_types": 5, limit: 3 } },
    });
    expect(parsed).toEqual({ presence: {}, room: { timeline: { limit: 3 } } });
  });

  it("does not keep RoomEventFilter-only keys on an EventFilter", () => {
    expect(parseFilter({ presence: { rooms: ["!a:x"], contains_url: true } })).toEqual({ presence: {} });
  });

  it("copies arrays rather than aliasing the input", () => {
    const types = ["m.room.message"];
    const parsed = parseFilter({ room: { timeline: { types } } });
    types.push("m.room.member");
    expect(parsed.room?.timeline?.types).toEqual(["m.room.message"]);
  });

  const bad: [string, unknown, string][] = [
    ["null", null, "filter"],
    ["array", [], "filter"],
    ["string", "{}", "filter"],
    ["room not an object", { room: [] }, "room"],
    ["presence null", { presence: null }, "presence"],
    ["timeline not an object", { room: { timeline: "x" } }, "room.timeline"],
    ["types not an array", { room: { timeline: { types: "m.room.message" } } }, "room.timeline.types"],
    ["types with a number", { room: { state: { types: ["m.room.member", 3] } } }, "room.state.types"],
    ["types null", { room: { state: { types: null } } }, "room.state.types"],
    ["not_types object", { account_data: { not_types: {} } }, "account_data.not_types"],
    ["limit a string", { room: { timeline: { limit: "10" } } }, "room.timeline.limit"],
    ["limit negative", { room: { timeline: { limit: -1 } } }, "room.timeline.limit"],
    ["limit a float", { room: { timeline: { limit: 1.5 } } }, "room.timeline.limit"],
    ["limit NaN", { presence: { limit: Number.NaN } }, "presence.limit"],
    ["limit Infinity", { presence: { limit: Infinity } }, "presence.limit"],
    ["limit boolean", { presence: { limit: true } }, "presence.limit"],
    ["event_format unknown", { event_format: "raw" }, "event_format"],
    ["event_format wrong case", { event_format: "Client" }, "event_format"],
    ["event_fields not strings", { event_fields: ["type", 1] }, "event_fields"],
    ["event_fields a string", { event_fields: "type" }, "event_fields"],
    ["lazy_load_members a string", { room: { state: { lazy_load_members: "true" } } }, "room.state.lazy_load_members"],
    ["lazy_load_members a number", { room: { state: { lazy_load_members: 1 } } }, "room.state.lazy_load_members"],
    ["include_redundant_members", { room: { state: { include_redundant_members: null } } }, "room.state.include_redundant_members"],
    ["contains_url a string", { room: { timeline: { contains_url: "yes" } } }, "room.timeline.contains_url"],
    ["include_leave a string", { room: { include_leave: "true" } }, "room.include_leave"],
    ["senders not user ids", { room: { timeline: { senders: ["alice"] } } }, "room.timeline.senders"],
    ["not_senders not user ids", { presence: { not_senders: ["!room:x"] } }, "presence.not_senders"],
    ["rooms not room ids", { room: { rooms: ["#alias:x"] } }, "room.rooms"],
    ["not_rooms not room ids", { room: { timeline: { not_rooms: ["@a:x"] } } }, "room.timeline.not_rooms"],
    ["section rooms not an array", { room: { state: { rooms: "!a:x" } } }, "room.state.rooms"],
  ];
  it.each(bad)("rejects %s", (_name, json, path) => {
    let err: unknown;
    try {
      parseFilter(json);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(FilterError);
    expect(err).toBeInstanceOf(Error);
    expect((err as FilterError).path).toBe(path);
    expect((err as FilterError).message).toContain(path);
  });
});

describe("parseRoomEventFilter and the query parameters", () => {
  it("parses a bare RoomEventFilter (the /messages example)", () => {
    expect(parseRoomEventFilter({ contains_url: true })).toEqual({ contains_url: true });
    expect(parseRoomEventFilterParam('{"contains_url":true}')).toEqual({ contains_url: true });
    expect(parseRoomEventFilterParam('{"lazy_load_members":true,"types":["m.room.message"]}')).toEqual({
      lazy_load_members: true,
      types: ["m.room.message"],
    });
  });

  it("rejects bad RoomEventFilters with the field name", () => {
    expect(() => parseRoomEventFilter({ limit: "5" })).toThrow(/limit/);
    expect(() => parseRoomEventFilter({ lazy_load_members: "yes" })).toThrow(FilterError);
    expect(() => parseRoomEventFilterParam("[]")).toThrow(FilterError);
    expect(() => parseRoomEventFilterParam("{nope")).toThrow(FilterError);
    expect(() => parseRoomEventFilterParam("")).toThrow(FilterError);
  });

  it("tells a filter id from inline JSON by the first character", () => {
    expect(parseSyncFilterParam("66696p746572")).toEqual({ kind: "id", id: "66696p746572" });
    expect(parseSyncFilterParam("0")).toEqual({ kind: "id", id: "0" });
    expect(parseSyncFilterParam(' {"room":{}}')).toEqual({ kind: "id", id: ' {"room":{}}' });
    expect(parseSyncFilterParam('{"room":{"timeline":{"limit":2}}}')).toEqual({ kind: "inline", filter: { room: { timeline: { limit: 2 } } } });
    expect(() => parseSyncFilterParam("{")).toThrow(FilterError);
    expect(() => parseSyncFilterParam('{"room":{"timeline":{"limit":-2}}}')).toThrow(/room\.timeline\.limit/);
  });
});

describe("derived settings", () => {
  it("limits: default when absent, capped at the maximum, 0 kept", () => {
    expect(effectiveLimit(undefined, 10, 100)).toBe(10);
    expect(effectiveLimit({}, 10, 100)).toBe(10);
    expect(effectiveLimit({ limit: 5 }, 10, 100)).toBe(5);
    expect(effectiveLimit({ limit: 5000 }, 10, 100)).toBe(100);
    expect(effectiveLimit({ limit: 0 }, 10, 100)).toBe(0);
    expect(effectiveLimit(parseFilter({ presence: { limit: 1e300 } }).presence, 10, 100)).toBe(100);
    expect(timelineLimit(undefined)).toBe(10);
    expect(timelineLimit(parseFilter(SPEC_EXAMPLE), 20, 50)).toBe(10);
    expect(timelineLimit(parseFilter({ room: { timeline: { limit: 99999 } } }))).toBe(1000);
    expect(timelineLimit({ room: { state: { limit: 3 } } }, 7)).toBe(7);
  });

  it("lazy-loading is read from room.state for /sync", () => {
    expect(lazyLoadMembers(undefined)).toEqual({ enabled: false, includeRedundant: false });
    expect(lazyLoadMembers(parseFilter({ room: { state: { lazy_load_members: true } } }))).toEqual({ enabled: true, includeRedundant: false });
    expect(lazyLoadMembers({ room: { state: { lazy_load_members: true, include_redundant_members: true } } })).toEqual({ enabled: true, includeRedundant: true });
    // include_redundant_members "does not apply unless lazy_load_members is true".
    expect(lazyLoadMembers({ room: { state: { include_redundant_members: true } } })).toEqual({ enabled: false, includeRedundant: false });
    // sync.yaml: "only supported on the state part of a RoomFilter for this endpoint".
    expect(lazyLoadMembers({ room: { timeline: { lazy_load_members: true } } })).toEqual({ enabled: false, includeRedundant: false });
  });

  it("lazy-loading for /messages and /context is on the RoomEventFilter itself", () => {
    expect(roomEventFilterLazyLoad(undefined)).toEqual({ enabled: false, includeRedundant: false });
    expect(roomEventFilterLazyLoad(parseRoomEventFilterParam('{"lazy_load_members":true}'))).toEqual({ enabled: true, includeRedundant: false });
    expect(roomEventFilterLazyLoad({ lazy_load_members: false, include_redundant_members: true })).toEqual({ enabled: false, includeRedundant: false });
  });

  it("include_leave, event_format and unread_thread_notifications default off", () => {
    expect(includeLeave(undefined)).toBe(false);
    expect(includeLeave({ room: { include_leave: true } })).toBe(true);
    expect(eventFormat(DEFAULT_FILTER)).toBe("client");
    expect(eventFormat({ event_format: "federation" })).toBe("federation");
    expect(unreadThreadNotifications(undefined)).toBe(false);
    expect(unreadThreadNotifications({ room: { timeline: { unread_thread_notifications: true } } })).toBe(true);
  });

  it("filtersAll spots sections that can match nothing", () => {
    expect(filtersAll(undefined)).toBe(false);
    expect(filtersAll({})).toBe(false);
    expect(filtersAll({ types: [] })).toBe(true);
    expect(filtersAll({ senders: [] })).toBe(true);
    expect(filtersAll({ rooms: [] })).toBe(true);
    expect(filtersAll({ not_types: ["*"] })).toBe(true);
    expect(filtersAll({ types: ["m.*"], not_types: ["m.room.member"] })).toBe(false);
  });

  it("DEFAULT_FILTER is the empty filter and frozen", () => {
    expect(DEFAULT_FILTER).toEqual({});
    expect(Object.isFrozen(DEFAULT_FILTER)).toBe(true);
  });
});

describe("splitFieldPath", () => {
  it.each([
    ["content.body", ["content", "body"]],
    ["type", ["type"]],
    // The appendix's examples.
    ["content.m\\.relates_to", ["content", "m.relates_to"]],
    ["content.m\\\\foo", ["content", "m\\foo"]],
    // "Other escape sequences are left as-is": `\x` is a backslash and an x.
    ["content.\\x", ["content", "\\x"]],
    // An escaped backslash followed by an unescaped dot splits.
    ["a\\\\.b", ["a\\", "b"]],
    ["a\\\\\\.b", ["a\\.b"]],
    ["trailing\\", ["trailing\\"]],
    ["a..b", ["a", "", "b"]],
    ["", [""]],
    [".", ["", ""]],
  ])("%j", (path, expected) => {
    expect(splitFieldPath(path)).toEqual(expected);
  });
});

describe("applyEventFields", () => {
  const event = {
    event_id: "$e",
    type: "m.room.message",
    sender: "@alice:example.com",
    origin_server_ts: 1,
    content: {
      body: "hi",
      msgtype: "m.text",
      "m.relates_to": { rel_type: "m.thread", event_id: "$root" },
      "m\\foo": 1,
      info: { w: 10, h: 20 },
      list: [{ a: 1 }],
      nothing: null,
    },
    unsigned: { age: 5 },
  };

  it.each([
    ["absent list keeps everything", undefined, event],
    ["empty list keeps everything (as Synapse)", [], event],
    ["spec example", ["type", "content", "sender"], { type: event.type, content: event.content, sender: event.sender }],
    ["nested path", ["content.body"], { content: { body: "hi" } }],
    ["two nested paths merge", ["content.body", "content.msgtype"], { content: { body: "hi", msgtype: "m.text" } }],
    ["escaped dot", ["content.m\\.relates_to"], { content: { "m.relates_to": event.content["m.relates_to"] } }],
    ["escaped dot then deeper", ["content.m\\.relates_to.rel_type"], { content: { "m.relates_to": { rel_type: "m.thread" } } }],
    ["unescaped dot does not find a dotted key", ["content.m.relates_to"], {}],
    ["escaped backslash", ["content.m\\\\foo"], { content: { "m\\foo": 1 } }],
    ["deep", ["content.info.w"], { content: { info: { w: 10 } } }],
    ["missing leaf leaves no empty parents", ["content.nope", "unsigned.nope.deeper"], {}],
    ["null value is kept", ["content.nothing"], { content: { nothing: null } }],
    ["through a non-object", ["content.body.length"], {}],
    ["arrays are not descended", ["content.list.0"], {}],
    ["parent then child", ["content", "content.body"], { content: event.content }],
    ["child then parent", ["content.body", "content"], { content: event.content }],
    ["sibling then nested", ["content.info", "content.info.w", "type"], { content: { info: event.content.info }, type: event.type }],
    ["inherited properties are not fields", ["constructor", "content.toString"], {}],
    ["unknown top-level", ["nope"], {}],
  ])("%s", (_name, fields, expected) => {
    expect(applyEventFields(event, fields as string[] | undefined)).toEqual(expected);
  });

  it("returns the event itself when no fields are listed, and never mutates it", () => {
    const before = JSON.stringify(event);
    expect(applyEventFields(event, undefined)).toBe(event);
    applyEventFields(event, ["content", "content.body", "content.info.w", "unsigned.age"]);
    applyEventFields(event, ["content.info.w", "content.info"]);
    expect(JSON.stringify(event)).toBe(before);
  });

  it("copies a __proto__ key as data without touching the prototype", () => {
    const hostile = JSON.parse('{"type":"x","content":{"__proto__":{"polluted":true}}}') as Record<string, unknown>;
    const out = applyEventFields(hostile, ["content.__proto__", "content.__proto__.polluted"]);
    const content = out.content as Record<string, unknown>;
    expect(Object.getPrototypeOf(content)).toBe(Object.prototype);
    expect(Object.hasOwn(content, "__proto__")).toBe(true);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(JSON.stringify(out)).toBe('{"content":{"__proto__":{"polluted":true}}}');
  });
});
