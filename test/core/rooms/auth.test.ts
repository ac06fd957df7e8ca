/**
 * Authorisation rules, table-driven over room versions 1-12 where the rules differ.
 */
import { describe, expect, it } from "vitest";
import type { Event } from "../../../src/core/events/event.js";
import { signingKeyFromSeed } from "../../../src/core/crypto/ed25519.js";
import { signJson } from "../../../src/core/crypto/signing.js";
import type { JsonObject } from "../../../src/core/json/types.js";
import { checkAuthEventsList, checkEventAuth, type AuthResult } from "../../../src/core/rooms/auth.js";
import { authEventsSelection } from "../../../src/core/rooms/auth_selection.js";
import { ROOM_VERSIONS, getRoomVersion, type RoomVersion } from "../../../src/core/rooms/versions.js";
import { RoomBuilder, type EventSpec } from "./helpers.js";

const ALL = [...ROOM_VERSIONS.values()];
const v = (id: string): RoomVersion => getRoomVersion(id)!;
const byVersion = ALL.map((r) => [r.id, r] as const);

const ALICE = "@alice:example.org";
const BOB = "@bob:example.org";
const CAROL = "@carol:example.org";
const MOD = "@mod:example.org";
const EVE = "@eve:other.org";

/** Builds the event without applying it and checks it against the builder's current state. */
function check(b: RoomBuilder, spec: EventSpec, opts?: Parameters<typeof checkEventAuth>[3]): AuthResult {
  return checkEventAuth(b.version, b.make(spec), b.lookup, opts);
}
const ok = (r: AuthResult): boolean => r.allowed;

/** alice (creator, 100 where creators can be listed), mod at 50, bob joined at 0. */
function room(version: RoomVersion, joinRule = "public", pl: JsonObject = {}): RoomBuilder {
  const users: JsonObject = version.privilegedCreators ? { [MOD]: 50 } : { [ALICE]: 100, [MOD]: 50 };
  const b = new RoomBuilder(version).bootstrap(ALICE, { joinRule: "public", powerLevels: { users, ...pl } });
  b.join(MOD);
  b.join(BOB);
  if (joinRule !== "public") b.add({ type: "m.room.join_rules", sender: ALICE, state_key: "", content: { join_rule: joinRule } });
  return b;
}

describe("m.room.create (rule 1)", () => {
  const create = (r: RoomVersion, spec: Partial<EventSpec> = {}): AuthResult => {
    const b = new RoomBuilder(r);
    const content: JsonObject = { room_version: r.id, ...(r.createHasCreatorField ? { creator: ALICE } : {}) };
    return check(b, { type: "m.room.create", sender: ALICE, state_key: "", content, ...spec });
  };

  it.each(byVersion)("v%s: a plain create event is allowed", (_id, r) => {
    expect(create(r)).toEqual({ allowed: true });
  });

  it.each(byVersion)("v%s: prev_events are rejected", (_id, r) => {
    expect(ok(create(r, { prev_events: ["$x"] }))).toBe(false);
  });

  it.each(byVersion)("v%s: an unknown room_version is rejected; an absent one is not", (_id, r) => {
    expect(ok(create(r, { content: { room_version: "99", creator: ALICE } }))).toBe(false);
    expect(ok(create(r, { content: { room_version: 12, creator: ALICE } }))).toBe(false);
    expect(ok(create(r, { content: { creator: ALICE } }))).toBe(true);
  });

  it.each(byVersion)("v%s: room_id domain (v1-v11) / room_id presence (v12)", (_id, r) => {
    if (r.roomIdIsCreateEventHash) {
      expect(ok(create(r, { pdu: { room_id: "!room:example.org" } }))).toBe(false);
    } else {
      expect(ok(create(r, { pdu: { room_id: "!room:other.org" } }))).toBe(false);
      expect(ok(create(r, { sender: EVE }))).toBe(false);
    }
  });

  it.each(byVersion)("v%s: content.creator is required up to v10", (_id, r) => {
    expect(ok(create(r, { content: { room_version: r.id } }))).toBe(!r.createHasCreatorField);
    expect(r.createHasCreatorField).toBe(Number(r.id) <= 10);
  });

  it.each(byVersion)("v%s: additional_creators is validated from v12", (_id, r) => {
    const c = (extra: JsonObject[string]): boolean => ok(create(r, { content: { room_version: r.id, creator: ALICE, additional_creators: extra } }));
    expect(c([BOB, CAROL])).toBe(true);
    expect(c([])).toBe(true);
    expect(c(["not a user id"])).toBe(!r.privilegedCreators);
    expect(c([BOB, 5])).toBe(!r.privilegedCreators);
    expect(c(BOB)).toBe(!r.privilegedCreators);
  });
});

describe("create event in the auth state (v1-v11 rule 2.4, v12 rule 2)", () => {
  it.each(byVersion)("v%s: no create event, no auth", (_id, r) => {
    const b = room(r);
    const e = b.make({ type: "m.room.message", sender: BOB, content: { body: "hi" } });
    expect(ok(checkEventAuth(r, e, (t, k) => (t === "m.room.create" ? undefined : b.lookup(t, k))))).toBe(false);
  });

  it("v12: the room id must be the create event's id", () => {
    const b = room(v("12"));
    const e = { ...b.make({ type: "m.room.message", sender: BOB, content: {} }), room_id: "!somewhere-else" };
    expect(checkEventAuth(v("12"), e, b.lookup)).toEqual({ allowed: false, reason: "room_id is not the create event's id" });
    expect(b.roomId).toBe(`!${b.lookup("m.room.create", "")!.event_id.slice(1)}`);
  });
});

describe("m.federate", () => {
  it.each(byVersion)("v%s: m.federate false keeps other servers out", (_id, r) => {
    const b = new RoomBuilder(r).bootstrap(ALICE, { createContent: { "m.federate": false } });
    expect(ok(check(b, { type: "m.room.member", sender: EVE, state_key: EVE, content: { membership: "join" } }))).toBe(false);
    expect(ok(check(b, { type: "m.room.member", sender: BOB, state_key: BOB, content: { membership: "join" } }))).toBe(true);
    const fed = new RoomBuilder(r).bootstrap(ALICE, { createContent: { "m.federate": true } });
    expect(ok(check(fed, { type: "m.room.member", sender: EVE, state_key: EVE, content: { membership: "join" } }))).toBe(true);
  });
});

describe("m.room.aliases (v1-v5 rule 4)", () => {
  it.each(byVersion)("v%s", (_id, r) => {
    const b = room(r);
    const special = Number(r.id) <= 5;
    expect(r.specialCaseAliasesAuth).toBe(special);
    // EVE is not in the room: only the special case lets her through.
    expect(ok(check(b, { type: "m.room.aliases", sender: EVE, state_key: "other.org", content: { aliases: [] } }))).toBe(special);
    expect(ok(check(b, { type: "m.room.aliases", sender: EVE, state_key: "example.org", content: { aliases: [] } }))).toBe(false);
    expect(ok(check(b, { type: "m.room.aliases", sender: EVE, content: { aliases: [] } }))).toBe(false);
    // From v6 it is an ordinary state event: state_default 50.
    expect(ok(check(b, { type: "m.room.aliases", sender: BOB, state_key: "example.org", content: { aliases: [] } }))).toBe(special);
    expect(ok(check(b, { type: "m.room.aliases", sender: MOD, state_key: "example.org", content: { aliases: [] } }))).toBe(true);
  });
});

describe("joins (rule 5.3)", () => {
  const join = (b: RoomBuilder, user: string, extra: JsonObject = {}, spec: Partial<EventSpec> = {}): AuthResult =>
    check(b, { type: "m.room.member", sender: user, state_key: user, content: { membership: "join", ...extra }, ...spec });

  it.each(byVersion)("v%s: the creator's first join follows the create event", (_id, r) => {
    const b = new RoomBuilder(r);
    const create = b.add({ type: "m.room.create", sender: ALICE, state_key: "", content: { room_version: r.id, creator: ALICE } });
    expect(ok(join(b, ALICE))).toBe(true);
    expect(ok(join(b, BOB))).toBe(false); // no join rules: invite-only
    expect(ok(join(b, ALICE, {}, { prev_events: [create.event_id, "$other"] }))).toBe(false);
  });

  it.each(byVersion)("v%s: public rooms; bans; joining for someone else", (_id, r) => {
    const b = room(r);
    expect(ok(join(b, CAROL))).toBe(true);
    expect(ok(join(b, BOB))).toBe(true); // already joined: a profile change
    expect(ok(check(b, { type: "m.room.member", sender: BOB, state_key: CAROL, content: { membership: "join" } }))).toBe(false);
    b.member(MOD, CAROL, "ban");
    expect(ok(join(b, CAROL))).toBe(false);
  });

  it.each(byVersion)("v%s: invite-only rooms", (_id, r) => {
    const b = room(r, "invite");
    expect(ok(join(b, CAROL))).toBe(false);
    b.member(BOB, CAROL, "invite");
    expect(ok(join(b, CAROL))).toBe(true);
  });

  it.each(byVersion)("v%s: knock join rule (v7+) behaves like invite for joins", (_id, r) => {
    const b = room(r, "knock");
    expect(ok(join(b, CAROL))).toBe(false);
    b.member(BOB, CAROL, "invite");
    expect(ok(join(b, CAROL))).toBe(r.knocking);
    expect(r.knocking).toBe(Number(r.id) >= 7);
  });

  for (const rule of ["restricted", "knock_restricted"]) {
    it.each(byVersion)(`v%s: ${rule} join rule`, (_id, r) => {
      const available = rule === "restricted" ? r.restrictedJoinRule : r.knockRestrictedJoinRule;
      expect(available).toBe(Number(r.id) >= (rule === "restricted" ? 8 : 10));
      const b = room(r, rule, { invite: 50 });
      const signedBy = (server: string): Partial<EventSpec> => ({ pdu: { signatures: { [server]: { "ed25519:a": "sig" } } } });
      const via = { join_authorised_via_users_server: MOD };
      expect(ok(join(b, CAROL))).toBe(false);
      expect(ok(join(b, CAROL, via, signedBy("example.org")))).toBe(available);
      // the authorising server's signature is required (v8+ rule 5.2)
      expect(ok(join(b, CAROL, via))).toBe(false);
      expect(ok(check(b, { type: "m.room.member", sender: CAROL, state_key: CAROL, content: { membership: "join", ...via } }, { verifyJoinAuthorisedSignature: (s) => s === "example.org" }))).toBe(available);
      expect(ok(check(b, { type: "m.room.member", sender: CAROL, state_key: CAROL, content: { membership: "join", ...via } }, { verifyJoinAuthorisedSignature: () => false }))).toBe(false);
      // the authorising user must be joined and able to invite
      expect(ok(join(b, CAROL, { join_authorised_via_users_server: BOB }, signedBy("example.org")))).toBe(false);
      expect(ok(join(b, CAROL, { join_authorised_via_users_server: "@gone:example.org" }, signedBy("example.org")))).toBe(false);
      // invited users need no authoriser
      b.member(MOD, CAROL, "invite");
      expect(ok(join(b, CAROL))).toBe(available);
    });
  }
});

describe("invites (rule 5.4)", () => {
  const invite = (b: RoomBuilder, sender: string, target: string): AuthResult =>
    check(b, { type: "m.room.member", sender, state_key: target, content: { membership: "invite" } });

  it.each(byVersion)("v%s", (_id, r) => {
    const b = room(r, "invite", { invite: 50 });
    expect(ok(invite(b, MOD, CAROL))).toBe(true);
    expect(ok(invite(b, BOB, CAROL))).toBe(false); // below the invite level
    expect(ok(invite(b, EVE, CAROL))).toBe(false); // not joined
    expect(ok(invite(b, MOD, BOB))).toBe(false); // already joined
    b.member(MOD, CAROL, "ban");
    expect(ok(invite(b, ALICE, CAROL))).toBe(false); // banned
  });
});

describe("leave, kick, ban (rules 5.5, 5.6)", () => {
  const member = (b: RoomBuilder, sender: string, target: string, membership: string): AuthResult =>
    check(b, { type: "m.room.member", sender, state_key: target, content: { membership } });

  it.each(byVersion)("v%s", (_id, r) => {
    const b = room(r, "public", { kick: 50, ban: 75 });
    expect(ok(member(b, BOB, BOB, "leave"))).toBe(true);
    expect(ok(member(b, CAROL, CAROL, "leave"))).toBe(false); // never joined
    expect(ok(member(b, BOB, MOD, "leave"))).toBe(false); // kick without the level
    expect(ok(member(b, MOD, BOB, "leave"))).toBe(true);
    expect(ok(member(b, MOD, ALICE, "leave"))).toBe(false); // target above the sender
    expect(ok(member(b, MOD, BOB, "ban"))).toBe(false); // ban level 75
    expect(ok(member(b, ALICE, BOB, "ban"))).toBe(true);
    expect(ok(member(b, EVE, BOB, "ban"))).toBe(false); // not joined
    b.member(ALICE, BOB, "ban");
    expect(ok(member(b, MOD, BOB, "leave"))).toBe(false); // unban needs the ban level
    expect(ok(member(b, ALICE, BOB, "leave"))).toBe(true);
    expect(ok(member(b, BOB, BOB, "leave"))).toBe(false); // banned users cannot leave
    expect(ok(member(b, ALICE, BOB, "nonsense"))).toBe(false);
  });

  it.each(byVersion)("v%s: equal levels cannot kick or ban each other", (_id, r) => {
    const b = room(r, "public", { users: { [ALICE]: 100, [MOD]: 50, [BOB]: 50 } });
    expect(ok(member(b, MOD, BOB, "leave"))).toBe(false);
    expect(ok(member(b, MOD, BOB, "ban"))).toBe(false);
  });

  it("v12: creators cannot be kicked or banned by anyone; they can remove anyone", () => {
    const r = v("12");
    const b = room(r, "public", { users: { [MOD]: 9007199254740991 } });
    expect(ok(member(b, MOD, ALICE, "ban"))).toBe(false);
    expect(ok(member(b, MOD, ALICE, "leave"))).toBe(false);
    expect(ok(member(b, ALICE, MOD, "ban"))).toBe(true);
  });
});

describe("knocking (rule 5.7)", () => {
  const knock = (b: RoomBuilder, sender: string, target = sender): AuthResult =>
    check(b, { type: "m.room.member", sender, state_key: target, content: { membership: "knock" } });

  it.each(byVersion)("v%s", (_id, r) => {
    const b = room(r, "knock");
    expect(ok(knock(b, CAROL))).toBe(r.knocking);
    expect(ok(knock(b, BOB))).toBe(false); // joined
    expect(ok(knock(b, BOB, CAROL))).toBe(false); // for someone else
    expect(ok(knock(room(r, "public"), CAROL))).toBe(false);
    expect(ok(knock(room(r, "knock_restricted"), CAROL))).toBe(r.knockRestrictedJoinRule);
    expect(ok(knock(room(r, "restricted"), CAROL))).toBe(false);
    if (r.knocking) {
      b.member(CAROL, CAROL, "knock");
      // rescinding a knock
      expect(ok(check(b, { type: "m.room.member", sender: CAROL, state_key: CAROL, content: { membership: "leave" } }))).toBe(true);
      b.member(MOD, CAROL, "invite");
      expect(ok(knock(b, CAROL))).toBe(false); // already invited
      b.member(MOD, CAROL, "ban");
      expect(ok(knock(b, CAROL))).toBe(false);
    }
  });
});

describe("third-party invites (rules 5.4.1, 7)", () => {
  const key = signingKeyFromSeed("0", Buffer.alloc(32, 7));
  const other = signingKeyFromSeed("1", Buffer.alloc(32, 9));

  function setup(r: RoomVersion): RoomBuilder {
    const b = room(r, "invite", { invite: 50 });
    b.add({
      type: "m.room.third_party_invite",
      sender: MOD,
      state_key: "tok",
      content: { display_name: "c...", key_validity_url: "https://id/", public_key: other.publicKeyBase64, public_keys: [{ public_key: key.publicKeyBase64 }] },
    });
    return b;
  }
  const signed = (mxid: string, token: string, k = key): JsonObject => signJson({ mxid, token, sender: MOD }, "id.example.org", k);
  const invite = (b: RoomBuilder, sender: string, s: JsonObject, target = CAROL): AuthResult =>
    check(b, { type: "m.room.member", sender, state_key: target, content: { membership: "invite", third_party_invite: { display_name: "c", signed: s } } });

  it.each(byVersion)("v%s", (_id, r) => {
    const b = setup(r);
    expect(ok(invite(b, MOD, signed(CAROL, "tok")))).toBe(true);
    expect(ok(invite(b, MOD, signed(CAROL, "tok", other)))).toBe(true); // public_key counts too
    expect(ok(invite(b, MOD, signed(CAROL, "tok", signingKeyFromSeed("2", Buffer.alloc(32, 1)))))).toBe(false);
    expect(ok(invite(b, MOD, { ...signed(CAROL, "tok"), mxid: BOB }))).toBe(false); // signature no longer matches
    expect(ok(invite(b, MOD, signed(BOB, "tok"), CAROL))).toBe(false); // mxid is not the state_key
    expect(ok(invite(b, MOD, signed(CAROL, "other")))).toBe(false); // no such token
    expect(ok(invite(b, ALICE, signed(CAROL, "tok")))).toBe(false); // not the inviter
    expect(ok(invite(b, MOD, { mxid: CAROL }))).toBe(false);
    expect(ok(check(b, { type: "m.room.member", sender: MOD, state_key: CAROL, content: { membership: "invite", third_party_invite: {} } }))).toBe(false);
    b.member(ALICE, CAROL, "ban");
    expect(ok(invite(b, MOD, signed(CAROL, "tok")))).toBe(false);
  });

  it.each(byVersion)("v%s: m.room.third_party_invite needs the invite level", (_id, r) => {
    const b = room(r, "invite", { invite: 50 });
    const tpi = (sender: string): AuthResult => check(b, { type: "m.room.third_party_invite", sender, state_key: "t2", content: {} });
    expect(ok(tpi(MOD))).toBe(true);
    expect(ok(tpi(BOB))).toBe(false);
  });
});

describe("sender membership and send levels (rules 6, 8, 9)", () => {
  it.each(byVersion)("v%s", (_id, r) => {
    const b = room(r, "public", { events: { "m.room.name": 0, "m.room.encrypted": 60 } });
    const send = (sender: string, type: string, stateKey?: string): boolean =>
      ok(check(b, { type, sender, ...(stateKey !== undefined ? { state_key: stateKey } : {}), content: {} }));
    expect(send(BOB, "m.room.message")).toBe(true);
    expect(send(CAROL, "m.room.message")).toBe(false); // not joined
    expect(send(BOB, "m.room.encrypted")).toBe(false); // events override
    expect(send(BOB, "m.room.topic", "")).toBe(false); // state_default 50
    expect(send(MOD, "m.room.topic", "")).toBe(true);
    expect(send(BOB, "m.room.name", "")).toBe(true); // events override below state_default
    // state keys that are user ids belong to that user
    expect(send(MOD, "m.custom", BOB)).toBe(false);
    expect(send(MOD, "m.custom", MOD)).toBe(true);
    b.member(BOB, BOB, "leave");
    expect(send(BOB, "m.room.message")).toBe(false);
  });

  it.each(byVersion)("v%s: events_default and state_default", (_id, r) => {
    const b = room(r, "public", { events_default: 20, state_default: 0 });
    expect(ok(check(b, { type: "m.room.message", sender: BOB, content: {} }))).toBe(false);
    expect(ok(check(b, { type: "m.room.message", sender: MOD, content: {} }))).toBe(true);
    expect(ok(check(b, { type: "m.room.topic", sender: BOB, state_key: "", content: {} }))).toBe(true);
  });
});

describe("m.room.redaction (v1-v2 rule 11)", () => {
  it.each(byVersion)("v%s", (_id, r) => {
    const b = room(r);
    const redact = (sender: string, redacts: string, id?: string): boolean =>
      ok(check(b, { type: "m.room.redaction", sender, redacts, content: r.redactsInContent ? { redacts } : {}, ...(id ? { id } : {}) }));
    const v1v2 = Number(r.id) <= 2;
    expect(r.redactionAuthDeferred).toBe(!v1v2);
    expect(redact(MOD, "$abc:other.org")).toBe(true); // redact level 50
    expect(redact(BOB, "$abc:other.org", "$red:example.org")).toBe(!v1v2);
    expect(redact(BOB, "$abc:example.org", "$red:example.org")).toBe(true);
  });

  it.each(byVersion)("v%s: an events level for m.room.redaction applies to everyone", (_id, r) => {
    const b = room(r, "public", { events: { "m.room.redaction": 60 } });
    expect(ok(check(b, { type: "m.room.redaction", sender: MOD, redacts: "$x:example.org", id: "$r:example.org", content: {} }))).toBe(false);
  });
});

describe("m.room.power_levels (rule 10)", () => {
  const setPl = (b: RoomBuilder, sender: string, content: JsonObject): AuthResult =>
    check(b, { type: "m.room.power_levels", sender, state_key: "", content });
  /** The current content with changes. */
  const cur = (b: RoomBuilder, changes: JsonObject): JsonObject => ({ ...b.lookup("m.room.power_levels", "")!.content, ...changes });

  it.each(byVersion)("v%s: levels above one's own", (_id, r) => {
    const b = room(r, "public", { events: { "m.room.topic": 50 } });
    const users = b.lookup("m.room.power_levels", "")!.content.users as JsonObject;
    // mod (50) may promote bob to 50 but not above; may not touch alice (100) or lower mod's peers
    expect(ok(setPl(b, MOD, cur(b, { users: { ...users, [BOB]: 50 } })))).toBe(true);
    expect(ok(setPl(b, MOD, cur(b, { users: { ...users, [BOB]: 51 } })))).toBe(false);
    expect(ok(setPl(b, MOD, cur(b, { users: { ...users, [MOD]: 51 } })))).toBe(false);
    expect(ok(setPl(b, MOD, cur(b, { users: { ...users, [MOD]: 10 } })))).toBe(true); // self-demotion
    expect(ok(setPl(b, MOD, cur(b, { ban: 50 })))).toBe(true); // unchanged value
    expect(ok(setPl(b, MOD, cur(b, { ban: 40 })))).toBe(true);
    expect(ok(setPl(b, MOD, cur(b, { ban: 60 })))).toBe(false);
    expect(ok(setPl(b, MOD, cur(b, { events: { "m.room.topic": 10 } })))).toBe(true);
    expect(ok(setPl(b, MOD, cur(b, { events: { "m.room.topic": 60 } })))).toBe(false);
    expect(ok(setPl(b, BOB, cur(b, {})))).toBe(false); // below the m.room.power_levels level (state_default)
    if (!r.privilegedCreators) {
      expect(ok(setPl(b, MOD, cur(b, { users: { ...users, [ALICE]: 10 } })))).toBe(false);
      expect(ok(setPl(b, MOD, cur(b, { users: { [MOD]: 50 } })))).toBe(false); // removing alice
    }
    // another user at the sender's level cannot be changed
    const b2 = room(r, "public", { users: { ...users, [BOB]: 50 } });
    const users2 = b2.lookup("m.room.power_levels", "")!.content.users as JsonObject;
    expect(ok(setPl(b2, MOD, cur(b2, { users: { ...users2, [BOB]: 0 } })))).toBe(false);
  });

  it.each(byVersion)("v%s: a property a level-bound sender adds or removes is only judged on its present side", (_id, r) => {
    const b = room(r, "public", { ban: 40 });
    const withoutBan = { ...b.lookup("m.room.power_levels", "")!.content };
    delete withoutBan.ban;
    // mod (50) removes ban=40 (the default 50 comes into force) and adds kick=30 where none was
    expect(ok(setPl(b, MOD, { ...withoutBan, kick: 30 }))).toBe(true);
  });

  it.each(byVersion)("v%s: integer-only values from v10", (_id, r) => {
    const b = room(r);
    const stringy = !r.integerPowerLevels;
    expect(ok(setPl(b, ALICE, cur(b, { ban: "50" })))).toBe(stringy);
    expect(ok(setPl(b, ALICE, cur(b, { events: { "m.room.topic": "20" } })))).toBe(stringy);
    expect(ok(setPl(b, ALICE, cur(b, { users: { ...(cur(b, {}).users as JsonObject), [BOB]: "10" } })))).toBe(stringy);
    expect(ok(setPl(b, ALICE, cur(b, { notifications: { room: "20" } })))).toBe(stringy);
    expect(ok(setPl(b, ALICE, cur(b, { ban: "fifty" })))).toBe(false);
    expect(ok(setPl(b, ALICE, cur(b, { users: { ...(cur(b, {}).users as JsonObject), "not-a-user": 10 } })))).toBe(false);
    expect(ok(setPl(b, ALICE, cur(b, { users: [] })))).toBe(false);
    expect(ok(setPl(b, ALICE, cur(b, { ban: 50.5 })))).toBe(Number(r.id) <= 5); // v1-v5 truncate floats
  });

  it.each(byVersion)("v%s: notifications are limited from v6", (_id, r) => {
    const b = room(r, "public", { notifications: { room: 20 } });
    const limited = r.limitNotificationsPowerLevels;
    expect(limited).toBe(Number(r.id) >= 6);
    expect(ok(setPl(b, MOD, cur(b, { notifications: { room: 60 } })))).toBe(!limited);
    expect(ok(setPl(b, MOD, cur(b, { notifications: { room: 40 } })))).toBe(true);
    const high = room(r, "public", { notifications: { room: 80 } });
    expect(ok(setPl(high, MOD, cur(high, { notifications: { room: 40 } })))).toBe(!limited);
    expect(ok(setPl(high, MOD, cur(high, { notifications: "junk" })))).toBe(!limited);
  });

  it("v12: room creators cannot appear in users", () => {
    const r = v("12");
    const b = new RoomBuilder(r).bootstrap(ALICE, { createContent: { additional_creators: [CAROL] } });
    expect(ok(setPl(b, ALICE, { users: { [BOB]: 50 } }))).toBe(true);
    expect(ok(setPl(b, ALICE, { users: { [ALICE]: 100 } }))).toBe(false);
    expect(ok(setPl(b, ALICE, { users: { [CAROL]: 100 } }))).toBe(false);
    // v11 has no such rule
    const b11 = new RoomBuilder(v("11")).bootstrap(ALICE);
    expect(ok(setPl(b11, ALICE, { users: { [ALICE]: 100 } }))).toBe(true);
  });

  it.each(byVersion)("v%s: the first power levels event is only validated", (_id, r) => {
    const b = new RoomBuilder(r);
    b.add({ type: "m.room.create", sender: ALICE, state_key: "", content: { room_version: r.id, creator: ALICE } });
    b.join(ALICE);
    const users: JsonObject = r.privilegedCreators ? { [BOB]: 1000 } : { [ALICE]: 100, [BOB]: 1000 };
    expect(ok(setPl(b, ALICE, { users, ban: 1000 }))).toBe(true);
    expect(ok(setPl(b, BOB, { users }))).toBe(false); // bob is not joined
  });

  it.each(byVersion)("v%s: a malformed value in the current event rejects only what needs it", (_id, r) => {
    if (r.integerPowerLevels) return; // v10+ never accepts such an event
    const b = room(r, "public", { kick: "lots" });
    expect(ok(check(b, { type: "m.room.message", sender: BOB, content: {} }))).toBe(true);
    const kick = check(b, { type: "m.room.member", sender: ALICE, state_key: BOB, content: { membership: "leave" } });
    expect(kick.allowed).toBe(false);
  });
});

describe("checkAuthEventsList (rule 3 / v1 rule 2)", () => {
  function setup(r: RoomVersion): { b: RoomBuilder; msg: Event; auth: Event[] } {
    const b = room(r, "invite");
    const msg = b.make({ type: "m.room.message", sender: BOB, content: {} });
    return { b, msg, auth: msg.auth_events.map((id) => b.getEvent(id)!) };
  }
  const withAuth = (e: Event, auth: Event[]): Event => ({ ...e, auth_events: auth.map((a) => a.event_id) });

  it.each(byVersion)("v%s: the selected auth events pass", (_id, r) => {
    const { msg, auth } = setup(r);
    expect(auth.map((a) => a.type).sort()).toEqual(
      r.roomIdIsCreateEventHash ? ["m.room.member", "m.room.power_levels"] : ["m.room.create", "m.room.member", "m.room.power_levels"],
    );
    expect(checkAuthEventsList(r, msg, auth)).toEqual({ allowed: true });
    expect(ok(checkAuthEventsList(r, msg, auth, { isRejected: (id) => id === auth[0]!.event_id }))).toBe(false);
  });

  it.each(byVersion)("v%s: entries outside the selection, duplicates, other rooms, the create event", (_id, r) => {
    const { b, msg, auth } = setup(r);
    const jr = b.lookup("m.room.join_rules", "")!;
    expect(ok(checkAuthEventsList(r, withAuth(msg, [...auth, jr]), [...auth, jr]))).toBe(false);
    const oldJr = [...b.events.values()].find((e) => e.type === "m.room.join_rules" && e.event_id !== jr.event_id)!;
    const join = b.make({ type: "m.room.member", sender: CAROL, state_key: CAROL, content: { membership: "join" } });
    const joinAuth = join.auth_events.map((id) => b.getEvent(id)!);
    expect(ok(checkAuthEventsList(r, join, joinAuth))).toBe(true);
    expect(ok(checkAuthEventsList(r, withAuth(join, [...joinAuth, oldJr]), [...joinAuth, oldJr]))).toBe(false);
    const foreign = { ...auth[0]!, room_id: "!elsewhere:example.org" };
    expect(ok(checkAuthEventsList(r, msg, [foreign, ...auth.slice(1)]))).toBe(false);
    const create = b.lookup("m.room.create", "")!;
    const noCreate = auth.filter((a) => a.type !== "m.room.create");
    // v1-v11 require the create event; v12 forbids it
    expect(ok(checkAuthEventsList(r, withAuth(msg, noCreate), noCreate))).toBe(r.roomIdIsCreateEventHash);
    expect(ok(checkAuthEventsList(r, withAuth(msg, [...noCreate, create]), [...noCreate, create]))).toBe(!r.roomIdIsCreateEventHash);
    expect(ok(checkAuthEventsList(r, msg, auth.slice(1)))).toBe(false); // one not supplied
  });

  it("the selection follows the membership", () => {
    const r = v("10");
    const sel = (content: JsonObject): string[] =>
      authEventsSelection(r, { type: "m.room.member", sender: BOB, state_key: CAROL, content }).map(([t, k]) => `${t}|${k}`);
    expect(sel({ membership: "ban" })).toEqual(["m.room.create|", "m.room.power_levels|", `m.room.member|${BOB}`, `m.room.member|${CAROL}`]);
    expect(sel({ membership: "invite", third_party_invite: { signed: { token: "t" } } })).toContain("m.room.third_party_invite|t");
    expect(sel({ membership: "join", join_authorised_via_users_server: MOD })).toContain(`m.room.member|${MOD}`);
    expect(sel({ membership: "knock" })).toContain("m.room.join_rules|");
    expect(authEventsSelection(v("7"), { type: "m.room.member", sender: BOB, state_key: BOB, content: { membership: "join", join_authorised_via_users_server: MOD } })).not.toContainEqual(["m.room.member", MOD]);
    expect(authEventsSelection(r, { type: "m.room.create", sender: BOB, state_key: "", content: {} })).toEqual([]);
  });
});
