/** "Auth events selection", by room version. */
import { describe, expect, it } from "vitest";
import { authEventTypesFor } from "../../../src/core/events/index.js";
import type { JsonObject } from "../../../src/core/json/types.js";
import { ROOM_VERSIONS } from "../../../src/core/rooms/versions.js";
import { rv } from "./helpers.js";

const ALL = [...ROOM_VERSIONS.keys()];
const alice = "@alice:example.org";
const bob = "@bob:example.org";

const member = (stateKey: string, content: JsonObject, sender = alice) => ({ type: "m.room.member", state_key: stateKey, sender, content });

describe.each(ALL)("room version %s", (id) => {
  const v = rv(id);
  const create: [string, string][] = v.roomIdIsCreateEventHash ? [] : [["m.room.create", ""]];
  const base: [string, string][] = [...create, ["m.room.power_levels", ""], ["m.room.member", alice]];

  it("m.room.create has no auth events", () => {
    expect(authEventTypesFor(v, { type: "m.room.create", state_key: "", sender: alice, content: {} })).toEqual([]);
  });

  it("a message: create (not in v12), power levels, the sender's membership", () => {
    expect(authEventTypesFor(v, { type: "m.room.message", sender: alice, content: { body: "x" } })).toEqual(base);
    expect(authEventTypesFor(v, { type: "m.room.name", state_key: "", sender: alice, content: {} })).toEqual(base);
  });

  it("a self-join adds join rules, once for the sender's own membership", () => {
    expect(authEventTypesFor(v, member(alice, { membership: "join" }))).toEqual([...base, ["m.room.join_rules", ""]]);
  });

  it("an invite adds the target and join rules; a third-party invite its token", () => {
    expect(authEventTypesFor(v, member(bob, { membership: "invite" }))).toEqual([...base, ["m.room.member", bob], ["m.room.join_rules", ""]]);
    const tpi = { membership: "invite", third_party_invite: { display_name: "b", signed: { mxid: bob, token: "tok", signatures: {} } } };
    expect(authEventTypesFor(v, member(bob, tpi))).toEqual([
      ...base, ["m.room.member", bob], ["m.room.join_rules", ""], ["m.room.third_party_invite", "tok"],
    ]);
    // Malformed: no token to select; the auth rules reject the event.
    expect(authEventTypesFor(v, member(bob, { membership: "invite", third_party_invite: { signed: {} } }))).toHaveLength(base.length + 2);
    expect(authEventTypesFor(v, member(bob, { membership: "invite", third_party_invite: "x" }))).toHaveLength(base.length + 2);
    // Only invites look at third_party_invite.
    expect(authEventTypesFor(v, member(bob, { ...tpi, membership: "join" }, bob)).some(([t]) => t === "m.room.third_party_invite")).toBe(false);
  });

  it("knock adds join rules; leave and ban do not", () => {
    expect(authEventTypesFor(v, member(alice, { membership: "knock" }))).toEqual([...base, ["m.room.join_rules", ""]]);
    expect(authEventTypesFor(v, member(alice, { membership: "leave" }))).toEqual(base);
    expect(authEventTypesFor(v, member(bob, { membership: "ban" }))).toEqual([...base, ["m.room.member", bob]]);
    expect(authEventTypesFor(v, member(bob, { membership: "leave" }))).toEqual([...base, ["m.room.member", bob]]);
  });

  it("a restricted join adds the authorising user's membership where the version has restricted rooms", () => {
    const via = "@admin:other.org";
    const got = authEventTypesFor(v, member(bob, { membership: "join", join_authorised_via_users_server: via }, bob));
    const expected: [string, string][] = [...create, ["m.room.power_levels", ""], ["m.room.member", bob], ["m.room.join_rules", ""]];
    expect(got).toEqual(v.restrictedJoinRule ? [...expected, ["m.room.member", via]] : expected);
    // Not for other memberships.
    const invite = authEventTypesFor(v, member(bob, { membership: "invite", join_authorised_via_users_server: via }));
    expect(invite.some(([t, k]) => t === "m.room.member" && k === via)).toBe(false);
  });
});
