/**
 * Pushers and delivery to push gateways (spec "Push Notifications" client behaviour, Push Gateway API): POST
 * /pushers/set and GET /pushers with their errors, and a fake gateway on 127.0.0.1 that records the exact notify
 * bodies for rules that notify, highlight, stay silent or are disabled, answers `rejected`, fails and recovers.
 */
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client, expectError, login, registerUser, type TestUser } from "../helpers/http.js";
import { startTestServer, type TestServer } from "../helpers/server.js";
import { createRoom, enc, inviteUser, poll, roomWith, send, setState, V3, type Json } from "../helpers/rooms.js";

interface Received {
  path: string;
  headers: IncomingMessage["headers"];
  body: { notification: Json & { devices: Json[]; counts: Json } };
}

/** A push gateway: records every notify request; answers per pushkey (rejected, failing, or fine). */
class FakeGateway {
  readonly received: Received[] = [];
  readonly rejected = new Set<string>();
  failing = false;
  private server!: Server;
  url = "";

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as Received["body"];
        if (this.failing) {
          res.writeHead(503).end();
          return;
        }
        this.received.push({ path: req.url ?? "", headers: req.headers, body });
        const keys = body.notification.devices.map((d) => d.pushkey as string).filter((k) => this.rejected.has(k));
        res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ rejected: keys }));
      });
    });
    await new Promise<void>((r) => this.server.listen(0, "127.0.0.1", r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/_matrix/push/v1/notify`;
  }

  for(pushkey: string): Received[] {
    return this.received.filter((r) => r.body.notification.devices.some((d) => d.pushkey === pushkey));
  }

  close(): Promise<void> {
    return new Promise((r) => this.server.close(() => r()));
  }
}

let ts: TestServer;
let c: Client;
const gw = new FakeGateway();

beforeAll(async () => {
  await gw.start();
  // Loopback is in the default ip_range_blacklist; this gateway is allowed explicitly, as an admin would.
  ts = await startTestServer({ config: { ip_range_whitelist: ["127.0.0.1"] } });
  c = new Client(ts.baseUrl);
});
afterAll(async () => {
  await ts?.close();
  await gw.close();
});

let keyCounter = 0;
function pusherBody(extra: Json = {}, data: Json = {}): Json {
  return {
    kind: "http",
    app_id: "org.example.app",
    app_display_name: "Example",
    device_display_name: "Phone",
    pushkey: `key-${++keyCounter}`,
    lang: "en",
    data: { url: gw.url, ...data },
    ...extra,
  };
}

async function setPusher(user: TestUser, body: Json): Promise<void> {
  const res = await c.post(`${V3}/pushers/set`, body, { token: user.accessToken });
  expect(res.status, res.text).toBe(200);
}

async function pushersOf(user: TestUser): Promise<Json[]> {
  const res = await c.get<{ pushers: Json[] }>(`${V3}/pushers`, { token: user.accessToken });
  expect(res.status).toBe(200);
  return res.body.pushers;
}

describe("POST /pushers/set and GET /pushers", () => {
  it("sets, lists, replaces and deletes a pusher", async () => {
    const u = await registerUser(c);
    const body = pusherBody({ profile_tag: "tag1" }, { format: "event_id_only", custom: 1 });
    await setPusher(u, body);
    expect(await pushersOf(u)).toEqual([
      { pushkey: body.pushkey, kind: "http", app_id: "org.example.app", app_display_name: "Example", device_display_name: "Phone", profile_tag: "tag1", lang: "en", data: { url: gw.url, format: "event_id_only", custom: 1 } },
    ]);
    await setPusher(u, { ...body, device_display_name: "Renamed" });
    const list = await pushersOf(u);
    expect(list).toHaveLength(1);
    expect(list[0]!.device_display_name).toBe("Renamed");
    await setPusher(u, { kind: null, app_id: body.app_id, pushkey: body.pushkey });
    expect(await pushersOf(u)).toEqual([]);
  });

  it("without append, the same app id and pushkey move from another user; with append both keep it", async () => {
    const a = await registerUser(c);
    const b = await registerUser(c);
    const body = pusherBody();
    await setPusher(a, body);
    await setPusher(b, { ...body, append: true });
    expect(await pushersOf(a)).toHaveLength(1);
    expect(await pushersOf(b)).toHaveLength(1);
    await setPusher(b, body);
    expect(await pushersOf(a)).toHaveLength(0);
    expect(await pushersOf(b)).toHaveLength(1);
  });

  it("errors: missing and invalid parameters", async () => {
    const u = await registerUser(c);
    const post = (body: unknown) => c.post(`${V3}/pushers/set`, body, { token: u.accessToken });
    expectError(await post({ app_id: "a", pushkey: "k" }), 400, "M_MISSING_PARAM");
    expectError(await post({ kind: "http", pushkey: "k" }), 400, "M_MISSING_PARAM");
    const { lang: _l, ...noLang } = pusherBody();
    expectError(await post(noLang), 400, "M_MISSING_PARAM");
    const { data: _d, ...noData } = pusherBody();
    expectError(await post(noData), 400, "M_MISSING_PARAM");
    expectError(await post(pusherBody({ data: { format: "event_id_only" } })), 400, "M_MISSING_PARAM");
    expectError(await post(pusherBody({}, { url: "https://gw.example/push" })), 400, "M_INVALID_PARAM");
    expectError(await post(pusherBody({}, { url: "not a url" })), 400, "M_INVALID_PARAM");
    expectError(await post(pusherBody({}, { url: "ftp://gw.example/_matrix/push/v1/notify" })), 400, "M_INVALID_PARAM");
    expectError(await post(pusherBody({ data: "nope" })), 400, "M_INVALID_PARAM");
    expectError(await post(pusherBody({ kind: "carrier-pigeon" })), 400, "M_INVALID_PARAM");
    // Email pushers need email, which this server has not configured.
    expectError(await post(pusherBody({ kind: "email", app_id: "m.email", pushkey: "a@example.org" })), 400, "M_INVALID_PARAM");
    expectError(await post(pusherBody({ pushkey: "k".repeat(513) })), 400, "M_INVALID_PARAM");
    expectError(await post(pusherBody({ app_id: "a".repeat(65) })), 400, "M_INVALID_PARAM");
    expectError(await post(pusherBody({ append: "yes" })), 400, "M_INVALID_PARAM");
    expectError(await post([1, 2]), 400, "M_NOT_JSON");
    expectError(await c.post(`${V3}/pushers/set`, pusherBody()), 401, "M_MISSING_TOKEN");
    expectError(await c.get(`${V3}/pushers`), 401, "M_MISSING_TOKEN");
    expect(await pushersOf(u)).toEqual([]);
  });

  it("a device's pushers go when it logs out; others stay", async () => {
    const u = await registerUser(c);
    const other = await login(c, u.userId, u.password);
    const otherToken = other.body.access_token as string;
    await setPusher(u, pusherBody());
    const res = await c.post(`${V3}/pushers/set`, pusherBody(), { token: otherToken });
    expect(res.status).toBe(200);
    expect(await pushersOf(u)).toHaveLength(2);
    expect((await c.post(`${V3}/logout`, {}, { token: otherToken })).status).toBe(200);
    expect(await pushersOf(u)).toHaveLength(1);
  });
});

describe("delivery to a push gateway", () => {
  it("sends the Push Gateway API's notify body for a notifying message; event_id_only sends ids only", async () => {
    const alice = await registerUser(c);
    const bob = await registerUser(c);
    const carol = await registerUser(c);
    const roomId = await roomWith(c, alice, [bob, carol], { name: "Push room" });
    expect((await c.put(`${V3}/profile/${enc(alice.userId)}/displayname`, { displayname: "Alice A" }, { token: alice.accessToken })).status).toBe(200);
    const full = pusherBody({}, { custom: "x" });
    await setPusher(bob, full);
    const idOnly = pusherBody({}, { format: "event_id_only" });
    await setPusher(carol, idOnly);

    const eventId = await send(c, alice, roomId, "hello over push");
    const got = await poll(async () => gw.for(full.pushkey as string).find((r) => r.body.notification.event_id === eventId));
    expect(got.path).toBe("/_matrix/push/v1/notify");
    expect(got.headers["content-type"]).toBe("application/json");
    const n = got.body.notification;
    const device = n.devices[0]!;
    expect(n).toEqual({
      // Synapse's legacy name for event_id, in full-format bodies only.
      id: eventId,
      event_id: eventId,
      room_id: roomId,
      type: "m.room.message",
      sender: alice.userId,
      sender_display_name: "Alice A",
      room_name: "Push room",
      prio: "low",
      content: { msgtype: "m.text", body: "hello over push" },
      counts: { unread: 1 },
      devices: [{ app_id: "org.example.app", pushkey: full.pushkey, pushkey_ts: device.pushkey_ts, data: { custom: "x" }, tweaks: {} }],
    });
    expect(Number.isInteger(device.pushkey_ts)).toBe(true);
    expect(device.pushkey_ts as number).toBeLessThanOrEqual(Date.now() / 1000);

    const ids = await poll(async () => gw.for(idOnly.pushkey as string).find((r) => r.body.notification.event_id === eventId));
    expect(ids.body.notification).toEqual({
      event_id: eventId,
      room_id: roomId,
      prio: "low",
      counts: { unread: 1 },
      devices: [{ app_id: "org.example.app", pushkey: idOnly.pushkey, pushkey_ts: ids.body.notification.devices[0]!.pushkey_ts, data: { format: "event_id_only" }, tweaks: {} }],
    });
  });

  it("a read receipt sends the new badge as a counts-only notification; a read that changes nothing sends none", async () => {
    const alice = await registerUser(c);
    const bob = await registerUser(c);
    const roomId = await roomWith(c, alice, [bob]);
    const p = pusherBody();
    await setPusher(bob, p);
    const key = p.pushkey as string;
    const eventId = await send(c, alice, roomId, "unread soon read");
    await poll(async () => gw.for(key).find((r) => r.body.notification.event_id === eventId));
    const receipt = await c.post(`${V3}/rooms/${enc(roomId)}/receipt/m.read/${enc(eventId)}`, {}, { token: bob.accessToken });
    expect(receipt.status).toBe(200);
    const badge = await poll(async () => gw.for(key).find((r) => r.body.notification.event_id === undefined));
    expect(badge.body.notification).toEqual({
      prio: "low",
      counts: { unread: 0 },
      devices: [{ app_id: "org.example.app", pushkey: key, pushkey_ts: expect.any(Number), data: {}, tweaks: {} }],
    });
    // The same receipt again: the badge is still 0, so nothing more is sent.
    await c.post(`${V3}/rooms/${enc(roomId)}/receipt/m.read/${enc(eventId)}`, {}, { token: bob.accessToken });
    await new Promise((r) => setTimeout(r, 300));
    expect(gw.for(key).filter((r) => r.body.notification.event_id === undefined)).toHaveLength(1);
  });

  it("an invite's push names the membership and the target; a room with only an alias is named by it", async () => {
    const alice = await registerUser(c);
    const bob = await registerUser(c);
    // A format other than event_id_only is kept and gets the full body, as Synapse does.
    const p = pusherBody({}, { format: "full" });
    await setPusher(bob, p);
    const key = p.pushkey as string;
    const roomId = await createRoom(c, alice, { room_alias_name: `pushalias${keyCounter}` });
    const alias = `#pushalias${keyCounter}:${ts.config.serverName}`;
    await setState(c, alice, roomId, "m.room.canonical_alias", "", { alias });
    await inviteUser(c, alice, roomId, bob.userId);
    const invite = await poll(async () => gw.for(key).find((r) => r.body.notification.type === "m.room.member"));
    expect(invite.body.notification).toMatchObject({ membership: "invite", user_is_target: true, sender: alice.userId, room_name: alias, room_alias: alias });
  });

  it("highlights with tweaks and high priority; silent and disabled rules push nothing", async () => {
    const alice = await registerUser(c);
    const bob = await registerUser(c);
    const carol = await registerUser(c);
    const roomId = await roomWith(c, alice, [bob, carol]);
    const p = pusherBody();
    await setPusher(bob, p);
    const mention = await send(c, alice, roomId, { msgtype: "m.text", body: "bob!", "m.mentions": { user_ids: [bob.userId] } });
    const got = await poll(async () => gw.for(p.pushkey as string).find((r) => r.body.notification.event_id === mention));
    expect(got.body.notification.prio).toBe("high");
    expect(got.body.notification.devices[0]!.tweaks).toEqual({ sound: "default", highlight: true });

    // A notice is silent (.m.rule.suppress_notices); with .m.rule.message disabled a plain message is too.
    const notice = await send(c, alice, roomId, { msgtype: "m.notice", body: "beep" });
    expect((await c.put(`${V3}/pushrules/global/underride/.m.rule.message/enabled`, { enabled: false }, { token: bob.accessToken })).status).toBe(200);
    const quiet = await send(c, alice, roomId, "quiet");
    // A marker that does notify, sent last: once it arrives, the earlier ones would have too.
    const marker = await send(c, alice, roomId, { msgtype: "m.text", body: "marker", "m.mentions": { user_ids: [bob.userId] } });
    await poll(async () => gw.for(p.pushkey as string).find((r) => r.body.notification.event_id === marker));
    const pushed = gw.for(p.pushkey as string).map((r) => r.body.notification.event_id);
    expect(pushed).not.toContain(notice);
    expect(pushed).not.toContain(quiet);
  });

  it("a pushkey the gateway rejects deletes its pusher", async () => {
    const alice = await registerUser(c);
    const bob = await registerUser(c);
    const roomId = await roomWith(c, alice, [bob]);
    const p = pusherBody();
    gw.rejected.add(p.pushkey as string);
    await setPusher(bob, p);
    const eventId = await send(c, alice, roomId, "to a dead device");
    await poll(async () => gw.for(p.pushkey as string).find((r) => r.body.notification.event_id === eventId));
    await poll(async () => ((await pushersOf(bob)).length === 0 ? true : undefined));
  });

  it("a failing gateway is retried until it answers, with nothing lost, in order", async () => {
    const alice = await registerUser(c);
    const bob = await registerUser(c);
    const roomId = await roomWith(c, alice, [bob]);
    const p = pusherBody();
    await setPusher(bob, p);
    gw.failing = true;
    const sent = [await send(c, alice, roomId, "one"), await send(c, alice, roomId, "two")];
    await new Promise((r) => setTimeout(r, 300));
    gw.failing = false;
    const got = await poll(async () => {
      const ids = gw.for(p.pushkey as string).map((r) => r.body.notification.event_id);
      return sent.every((id) => ids.includes(id)) ? ids : undefined;
    });
    expect(got.filter((id) => sent.includes(id as string))).toEqual(sent);
  });

  it("pushes still waiting are delivered after a restart", async () => {
    const alice = await registerUser(c);
    const bob = await registerUser(c);
    const roomId = await roomWith(c, alice, [bob]);
    const p = pusherBody();
    await setPusher(bob, p);
    gw.failing = true;
    const eventId = await send(c, alice, roomId, "survives a restart");
    await new Promise((r) => setTimeout(r, 200));
    ts = await ts.restart();
    c = new Client(ts.baseUrl);
    gw.failing = false;
    await poll(async () => gw.for(p.pushkey as string).find((r) => r.body.notification.event_id === eventId));
  });

  it("a gateway in a blocked IP range is never contacted", async () => {
    const blocked = await startTestServer();
    try {
      const bc = new Client(blocked.baseUrl);
      const alice = await registerUser(bc);
      const bob = await registerUser(bc);
      const roomId = await roomWith(bc, alice, [bob]);
      const p = pusherBody();
      expect((await bc.post(`${V3}/pushers/set`, p, { token: bob.accessToken })).status).toBe(200);
      const eventId = await send(bc, alice, roomId, "not to loopback");
      await new Promise((r) => setTimeout(r, 300));
      expect(gw.received.some((r) => r.body.notification.event_id === eventId)).toBe(false);
    } finally {
      await blocked.close();
    }
  });
});
