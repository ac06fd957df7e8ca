/**
 * Checking other servers' federation /hierarchy answers before the client hierarchy and room summaries use them: a
 * wrong room, wrong types and malformed child events are dropped or the answer refused, never passed on.
 */
import { describe, expect, it } from "vitest";
import type { JsonObject } from "../../src/core/json/types.js";
import { parseRemoteHierarchy } from "../../src/services/rooms/hierarchy.js";

const ROOM = "!space:remote.test";
const child = (stateKey: string, content: JsonObject, ts: number | string = 1) => ({ type: "m.space.child", state_key: stateKey, content, sender: "@a:remote.test", origin_server_ts: ts });

describe("parseRemoteHierarchy", () => {
  it("keeps a well-formed answer, orders the children as the spec says", () => {
    const parsed = parseRemoteHierarchy(ROOM, {
      room: {
        room_id: ROOM,
        name: "Space",
        room_type: "m.space",
        num_joined_members: 3,
        world_readable: false,
        guest_can_join: false,
        join_rules: "public",
        children_state: [child("!b:remote.test", { via: ["remote.test"] }, 2), child("!a:remote.test", { via: ["remote.test"] }, 5), child("!c:remote.test", { via: ["remote.test"], order: "0" }, 9)],
      },
      children: [{ room_id: "!a:remote.test", num_joined_members: 1, world_readable: true, guest_can_join: false }],
      inaccessible_children: ["!b:remote.test"],
    });
    expect(parsed).toBeDefined();
    expect(parsed!.room).toEqual({ room_id: ROOM, name: "Space", room_type: "m.space", num_joined_members: 3, world_readable: false, guest_can_join: false, join_rule: "public" });
    expect(parsed!.childrenState.map((c) => c.state_key)).toEqual(["!c:remote.test", "!b:remote.test", "!a:remote.test"]);
    expect([...parsed!.children.keys()]).toEqual(["!a:remote.test"]);
    expect([...parsed!.inaccessible]).toEqual(["!b:remote.test"]);
  });

  it("refuses an answer about another room or without a room", () => {
    expect(parseRemoteHierarchy(ROOM, { room: { room_id: "!other:remote.test" } })).toBeUndefined();
    expect(parseRemoteHierarchy(ROOM, { room: "nope" })).toBeUndefined();
    expect(parseRemoteHierarchy(ROOM, {})).toBeUndefined();
    expect(parseRemoteHierarchy(ROOM, { room: { room_id: 5 } })).toBeUndefined();
  });

  it("drops malformed child events, children and fields of the wrong type", () => {
    const parsed = parseRemoteHierarchy(ROOM, {
      room: {
        room_id: ROOM,
        name: 42,
        num_joined_members: -1,
        world_readable: "yes",
        allowed_room_ids: ["!x:remote.test", 7],
        children_state: [
          child("!ok:remote.test", { via: ["remote.test"] }),
          child("!novia:remote.test", {}),
          child("!emptyvia:remote.test", { via: [] }),
          child("not-a-room", { via: ["remote.test"] }),
          { ...child("!type:remote.test", { via: ["remote.test"] }), type: "m.room.member" },
          { ...child("!ts:remote.test", { via: ["remote.test"] }), origin_server_ts: "soon" },
          "a string",
        ],
      },
      children: [{ room_id: "bad" }, "x", { room_id: "!fine:remote.test" }],
      inaccessible_children: "all of them",
    });
    expect(parsed!.room).toEqual({ room_id: ROOM, num_joined_members: 0, world_readable: false, guest_can_join: false, allowed_room_ids: ["!x:remote.test"] });
    expect(parsed!.childrenState.map((c) => c.state_key)).toEqual(["!ok:remote.test"]);
    expect([...parsed!.children.keys()]).toEqual(["!fine:remote.test"]);
    expect(parsed!.inaccessible.size).toBe(0);
  });
});
