/**
 * Push rules over HTTP (spec "Push Rules: API"): the server-default rule set as GET /pushrules/ serves it, creating,
 * placing, replacing and deleting user rules, enabling and changing actions of default rules, the m.push_rules
 * account data in /sync, and every error case with its status and errcode.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client, expectError, registerUser, type TestUser } from "../helpers/http.js";
import { startTestServer, type TestServer } from "../helpers/server.js";
import { enc, sync, syncUntil, V3, type Json, type SyncResponse } from "../helpers/rooms.js";

let ts: TestServer;
let c: Client;

beforeAll(async () => {
  ts = await startTestServer();
  c = new Client(ts.baseUrl);
});
afterAll(async () => {
  await ts?.close();
});

type Rule = { rule_id: string; default: boolean; enabled: boolean; actions: unknown[]; conditions?: Json[]; pattern?: string };
type Ruleset = Record<"override" | "content" | "room" | "sender" | "underride", Rule[]>;

const ids = (rules: Rule[]) => rules.map((r) => r.rule_id);
const R = `${V3}/pushrules/global`;

async function rules(u: TestUser): Promise<Ruleset> {
  const res = await c.get<{ global: Ruleset }>(`${V3}/pushrules/`, { token: u.accessToken });
  expect(res.status).toBe(200);
  return res.body.global;
}

async function put(u: TestUser, path: string, body: unknown, query = ""): Promise<void> {
  const res = await c.put(`${R}/${path}${query}`, body, { token: u.accessToken });
  expect(res.status, res.text).toBe(200);
}

function pushRulesIn(s: SyncResponse): Ruleset | undefined {
  const e = (s.account_data?.events ?? []).find((x) => x.type === "m.push_rules");
  return (e?.content as { global?: Ruleset } | undefined)?.global;
}

describe("server-default push rules", () => {
  it("GET /pushrules/ serves the spec's default rules in the spec's order, for this user", async () => {
    const u = await registerUser(c);
    const g = await rules(u);
    expect(ids(g.override)).toEqual([
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
    expect(ids(g.content)).toEqual([".m.rule.contains_user_name"]);
    expect(g.room).toEqual([]);
    expect(g.sender).toEqual([]);
    expect(ids(g.underride)).toEqual([".m.rule.call", ".m.rule.encrypted_room_one_to_one", ".m.rule.room_one_to_one", ".m.rule.message", ".m.rule.encrypted"]);
    expect(g.override[0]).toEqual({ rule_id: ".m.rule.master", default: true, enabled: false, conditions: [], actions: [] });
    const invite = g.override.find((r) => r.rule_id === ".m.rule.invite_for_me")!;
    expect(invite.conditions).toContainEqual({ key: "state_key", kind: "event_match", pattern: u.userId });
    const mention = g.override.find((r) => r.rule_id === ".m.rule.is_user_mention")!;
    expect(mention.conditions).toEqual([{ kind: "event_property_contains", key: "content.m\\.mentions.user_ids", value: u.userId }]);
    expect(g.content[0]!.pattern).toBe(u.userId.slice(1).split(":")[0]);
    // The same through /pushrules/global/ and a single rule's endpoints.
    expect((await c.get(`${R}/`, { token: u.accessToken })).body).toEqual(g);
    expect((await c.get(`${R}/underride/.m.rule.message`, { token: u.accessToken })).body).toEqual(g.underride.find((r) => r.rule_id === ".m.rule.message"));
    expect((await c.get(`${R}/underride/.m.rule.message/enabled`, { token: u.accessToken })).body).toEqual({ enabled: true });
    expect((await c.get(`${R}/underride/.m.rule.message/actions`, { token: u.accessToken })).body).toEqual({ actions: ["notify"] });
  });

  it("default rules can be disabled and given other actions, not deleted", async () => {
    const u = await registerUser(c);
    await put(u, "override/.m.rule.master/enabled", { enabled: true });
    await put(u, "underride/.m.rule.message/actions", { actions: ["notify", { set_tweak: "sound", value: "ding" }] });
    const g = await rules(u);
    expect(g.override[0]!.enabled).toBe(true);
    expect(g.underride.find((r) => r.rule_id === ".m.rule.message")!.actions).toEqual(["notify", { set_tweak: "sound", value: "ding" }]);
    expectError(await c.delete(`${R}/underride/.m.rule.message`, undefined, { token: u.accessToken }), 404, "M_NOT_FOUND");
    expectError(await c.put(`${R}/underride/.m.rule.message`, { actions: [] }, { token: u.accessToken }), 400, "M_UNKNOWN");
  });
});

describe("user rules", () => {
  it("create, place with before/after, replace and delete; the spec's examples", async () => {
    const u = await registerUser(c);
    await put(u, `room/${enc("!dj234r78wl45Gh4D:matrix.org")}`, { actions: [] });
    await put(u, `sender/${enc("@spambot:matrix.org")}`, { actions: [] });
    await put(u, "content/SSByZWFsbHkgbGlrZSBjYWtl", { pattern: "cake", actions: ["notify", { set_tweak: "sound", value: "cakealarm.wav" }] });
    await put(u, "content/U3BvbmdlIGNha2UgaXMgYmVzdA", { pattern: "cake*lie", actions: ["notify"] }, "?before=SSByZWFsbHkgbGlrZSBjYWtl");
    await put(u, "override/U2VlIHlvdSBpbiBUaGUgRHVrZQ", {
      conditions: [
        { kind: "event_match", key: "content.body", pattern: "beer" },
        { kind: "room_member_count", is: "<=10" },
      ],
      actions: ["notify", { set_tweak: "sound", value: "beeroclock.wav" }],
    });
    let g = await rules(u);
    expect(g.room).toEqual([{ rule_id: "!dj234r78wl45Gh4D:matrix.org", default: false, enabled: true, actions: [] }]);
    expect(g.sender).toEqual([{ rule_id: "@spambot:matrix.org", default: false, enabled: true, actions: [] }]);
    expect(ids(g.content)).toEqual(["U3BvbmdlIGNha2UgaXMgYmVzdA", "SSByZWFsbHkgbGlrZSBjYWtl", ".m.rule.contains_user_name"]);
    // User overrides come after .m.rule.master and before the other defaults.
    expect(ids(g.override).slice(0, 3)).toEqual([".m.rule.master", "U2VlIHlvdSBpbiBUaGUgRHVrZQ", ".m.rule.suppress_notices"]);

    // `after` places a rule below another; a new rule without position goes first.
    await put(u, "content/third", { pattern: "tea", actions: [] }, "?after=SSByZWFsbHkgbGlrZSBjYWtl");
    await put(u, "content/first", { pattern: "coffee", actions: [] });
    g = await rules(u);
    expect(ids(g.content)).toEqual(["first", "U3BvbmdlIGNha2UgaXMgYmVzdA", "SSByZWFsbHkgbGlrZSBjYWtl", "third", ".m.rule.contains_user_name"]);
    // Replacing keeps the place; disabling and re-reading work on user rules too.
    await put(u, "content/SSByZWFsbHkgbGlrZSBjYWtl", { pattern: "pie", actions: ["notify"] });
    await put(u, "content/third/enabled", { enabled: false });
    g = await rules(u);
    expect(ids(g.content)).toEqual(["first", "U3BvbmdlIGNha2UgaXMgYmVzdA", "SSByZWFsbHkgbGlrZSBjYWtl", "third", ".m.rule.contains_user_name"]);
    expect(g.content[2]!.pattern).toBe("pie");
    expect(g.content[3]!.enabled).toBe(false);
    // Delete.
    expect((await c.delete(`${R}/content/first`, undefined, { token: u.accessToken })).status).toBe(200);
    expectError(await c.get(`${R}/content/first`, { token: u.accessToken }), 404, "M_NOT_FOUND");
    expect(ids((await rules(u)).content)[0]).toBe("U3BvbmdlIGNha2UgaXMgYmVzdA");
  });

  it("errors: unknown rules, scopes and kinds; bad bodies; reserved and slashed ids; bad before/after", async () => {
    const u = await registerUser(c);
    const t = { token: u.accessToken };
    expectError(await c.get(`${R}/override/nope`, t), 404, "M_NOT_FOUND");
    expectError(await c.get(`${R}/override/nope/enabled`, t), 404, "M_NOT_FOUND");
    expectError(await c.get(`${R}/override/nope/actions`, t), 404, "M_NOT_FOUND");
    expectError(await c.delete(`${R}/override/nope`, undefined, t), 404, "M_NOT_FOUND");
    expectError(await c.put(`${R}/override/nope/enabled`, { enabled: true }, t), 404, "M_NOT_FOUND");
    expectError(await c.put(`${R}/override/nope/actions`, { actions: ["notify"] }, t), 404, "M_NOT_FOUND");
    expectError(await c.get(`${V3}/pushrules/device/override/x`, t), 400, "M_UNRECOGNIZED");
    expectError(await c.get(`${R}/sideways/x`, t), 400, "M_UNRECOGNIZED");
    expectError(await c.put(`${R}/sideways/x`, { actions: [] }, t), 400, "M_UNKNOWN");
    expectError(await c.put(`${R}/override/x`, { conditions: [] }, t), 400, "M_UNKNOWN");
    expectError(await c.put(`${R}/override/x`, { conditions: [], actions: "notify" }, t), 400, "M_UNKNOWN");
    expectError(await c.put(`${R}/override/x`, { conditions: [], actions: [{ bogus: 1 }] }, t), 400, "M_UNKNOWN");
    expectError(await c.put(`${R}/override/x`, { actions: ["notify"] }, t), 400, "M_UNKNOWN");
    expectError(await c.put(`${R}/override/x`, { conditions: [{ key: "type" }], actions: [] }, t), 400, "M_UNKNOWN");
    expectError(await c.put(`${R}/content/x`, { actions: [] }, t), 400, "M_UNKNOWN");
    expectError(await c.put(`${R}/content/.mine`, { pattern: "a", actions: [] }, t), 400, "M_UNKNOWN");
    expectError(await c.put(`${R}/content/${enc("a\\b")}`, { pattern: "a", actions: [] }, t), 400, "M_UNKNOWN");
    await put(u, "content/x", { pattern: "a", actions: [] });
    expectError(await c.put(`${R}/content/y?before=unknown`, { pattern: "a", actions: [] }, t), 400, "M_UNKNOWN");
    expectError(await c.put(`${R}/content/y?after=.m.rule.contains_user_name`, { pattern: "a", actions: [] }, t), 400, "M_UNKNOWN");
    expectError(await c.put(`${R}/override/.m.rule.master/enabled`, { enabled: "yes" }, t), 400, "M_UNKNOWN");
    expectError(await c.put(`${R}/override/.m.rule.master/actions`, { actions: "notify" }, t), 400, "M_UNKNOWN");
    expectError(await c.get(`${V3}/pushrules/`), 401, "M_MISSING_TOKEN");
    // Nothing was half-applied.
    expect(ids((await rules(u)).content)).toEqual(["x", ".m.rule.contains_user_name"]);
  });

  it("malformed paths are 400 M_UNRECOGNIZED, as Synapse answers them: missing parts, no trailing slash, unknown attributes", async () => {
    const u = await registerUser(c);
    const t = { token: u.accessToken };
    const P = `${V3}/pushrules`;
    for (const path of ["/", "/global", "/global/room", "/global/room/", "/global/override/.m.rule.master/not_an_attr"]) {
      expectError(await c.put(`${P}${path}`, { actions: ["notify"] }, t), 400, "M_UNRECOGNIZED");
    }
    expectError(await c.delete(`${P}/global/room/`, undefined, t), 400, "M_UNRECOGNIZED");
    // The listings need their trailing slash; with it they answer.
    for (const path of ["", "/global", "/global/room"]) expectError(await c.get(`${P}${path}`, t), 400, "M_UNRECOGNIZED");
    expect((await c.get(`${P}/`, t)).status).toBe(200);
    expect((await c.get(`${P}/global/`, t)).status).toBe(200);
    const room = await c.get<unknown[]>(`${P}/global/room/`, t);
    expect(room.status).toBe(200);
    expect(Array.isArray(room.body)).toBe(true);
    expectError(await c.get(`${P}/not_a_scope/`, t), 400, "M_UNRECOGNIZED");
    expectError(await c.get(`${P}/global/not_a_template/`, t), 400, "M_UNRECOGNIZED");
    expectError(await c.get(`${P}/global/override/.m.rule.master/not_an_attr`, t), 400, "M_UNRECOGNIZED");
    // Well-formed requests are untouched.
    expect((await c.get(`${P}/global/override/.m.rule.master/enabled`, t)).body).toEqual({ enabled: false });
    expectError(await c.get(`${P}/global/override/not_a_rule_id`, t), 404, "M_NOT_FOUND");
  });
});

describe("m.push_rules account data", () => {
  it("is in every initial sync, and arrives incrementally when the rules change", async () => {
    const u = await registerUser(c);
    const first = await sync(c, u);
    const initial = pushRulesIn(first);
    expect(initial).toEqual(await rules(u));
    // No change: an incremental sync does not repeat it.
    const quiet = await sync(c, u, { since: first.next_batch, timeout: 0 });
    expect(pushRulesIn(quiet)).toBeUndefined();
    await put(u, "override/.m.rule.suppress_notices/enabled", { enabled: false });
    const changed = await syncUntil(c, u, first.next_batch, (s) => pushRulesIn(s) !== undefined);
    expect(pushRulesIn(changed)!.override.find((r) => r.rule_id === ".m.rule.suppress_notices")!.enabled).toBe(false);
    // The account data API cannot write it (server-managed).
    expectError(await c.put(`${V3}/user/${enc(u.userId)}/account_data/m.push_rules`, { global: {} }, { token: u.accessToken }), 405, "M_BAD_JSON");
  });

  it("concurrent rule changes by one user all survive", async () => {
    const u = await registerUser(c);
    await Promise.all(Array.from({ length: 10 }, (_, i) => put(u, `content/r${i}`, { pattern: `w${i}`, actions: [] })));
    expect((await rules(u)).content).toHaveLength(11);
  });
});
