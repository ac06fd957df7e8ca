/**
 * The Application Service API end to end: a fake application service (a real HTTP server on 127.0.0.1) registered
 * through `app_service_config_files`, and a real Myelin. Registration, login and identity assertion with the
 * as_token, exclusive namespaces, transactions (order, retry after the service was down, after a restart, the same
 * txnId for the same events), ephemeral data, user and alias queries, third-party lookups, ping and the services'
 * room directories.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseAppServiceRegistration } from "../../src/config/appservice.js";
import { ConfigError } from "../../src/config/reader.js";
import { Client, expectError, registerUser, uniqueName, type TestUser } from "../helpers/http.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

interface Txn {
  txnId: string;
  authorization: string | undefined;
  events: Record<string, unknown>[];
  ephemeral?: Record<string, unknown>[];
}

/** A fake application service: records transactions, answers queries as the test tells it. */
class FakeAppService {
  server!: Server;
  port = 0;
  txns: Txn[] = [];
  /** Status to answer transactions with (503: "down"). */
  txnStatus = 200;
  failedAttempts = 0;
  failedTxnIds: string[] = [];
  onUserQuery?: (userId: string) => Promise<number>;
  onAliasQuery?: (alias: string) => Promise<number>;
  pingStatus = 200;
  pingDelayMs = 0;
  pings: unknown[] = [];
  requests: string[] = [];

  constructor(readonly hsToken: string) {}

  async start(port = 0): Promise<void> {
    this.server = createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((resolve) => this.server.listen(port, "127.0.0.1", resolve));
    this.port = (this.server.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((r) => this.server.close(r));
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = chunks.length ? (JSON.parse(Buffer.concat(chunks).toString("utf8")) as Record<string, unknown>) : {};
    const url = new URL(req.url!, "http://x");
    this.requests.push(`${req.method} ${url.pathname}`);
    const send = (status: number, json: unknown) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(json));
    };
    if (req.headers.authorization !== `Bearer ${this.hsToken}`) return send(403, { errcode: "M_FORBIDDEN", error: "bad hs_token" });
    const p = decodeURIComponent(url.pathname);
    let m: RegExpExecArray | null;
    if ((m = /^\/_matrix\/app\/v1\/transactions\/(.+)$/.exec(p)) && req.method === "PUT") {
      if (this.txnStatus !== 200) {
        this.failedAttempts++;
        this.failedTxnIds.push(m[1]!);
        return send(this.txnStatus, { errcode: "M_UNKNOWN", error: "down" });
      }
      this.txns.push({ txnId: m[1]!, authorization: req.headers.authorization, events: body.events as Record<string, unknown>[], ephemeral: body.ephemeral as Record<string, unknown>[] | undefined });
      return send(200, {});
    }
    if ((m = /^\/_matrix\/app\/v1\/users\/(.+)$/.exec(p))) return send(this.onUserQuery ? await this.onUserQuery(m[1]!) : 404, {});
    if ((m = /^\/_matrix\/app\/v1\/rooms\/(.+)$/.exec(p))) return send(this.onAliasQuery ? await this.onAliasQuery(m[1]!) : 404, {});
    if (p === "/_matrix/app/v1/ping") {
      this.pings.push(body);
      if (this.pingDelayMs) await new Promise((r) => setTimeout(r, this.pingDelayMs));
      return send(this.pingStatus, this.pingStatus === 200 ? {} : { errcode: "M_UNKNOWN", error: "nope" });
    }
    if (p === "/_matrix/app/v1/thirdparty/protocol/gitter") {
      return send(200, { user_fields: ["username"], location_fields: ["room"], icon: "mxc://x/y", field_types: {}, instances: [{ desc: "Gitter", network_id: "gitter-net", fields: {} }] });
    }
    if (p === "/_matrix/app/v1/thirdparty/location/gitter") {
      return send(200, [{ alias: "#gitter_room:test.local", protocol: "gitter", fields: { room: url.searchParams.get("room") } }, { junk: true }]);
    }
    if (p === "/_matrix/app/v1/thirdparty/user") {
      return send(200, [{ userid: url.searchParams.get("userid"), protocol: "gitter", fields: { username: "bob" } }]);
    }
    send(404, { errcode: "M_UNRECOGNIZED", error: "Unrecognized request" });
  }
}

let dir: string;
let fake: FakeAppService;
let ts: TestServer;
let c: Client;
const AS_TOKEN = "as_token_" + Math.random().toString(36).slice(2);
const HS_TOKEN = "hs_token_" + Math.random().toString(36).slice(2);
const BOT_TOKEN = "bot_token_" + Math.random().toString(36).slice(2);
const SERVER = "test.local";

function registrationYaml(url: string | null, extra = ""): string {
  return `id: bridge
url: ${url === null ? "null" : JSON.stringify(url)}
as_token: ${JSON.stringify(AS_TOKEN)}
hs_token: ${JSON.stringify(HS_TOKEN)}
sender_localpart: bridgebot
rate_limited: false
receive_ephemeral: true
protocols: [gitter]
namespaces:
  users:
    - { exclusive: true, regex: "@gitter_.*:test\\\\.local" }
    - { exclusive: false, regex: "@shared_.*" }
  aliases:
    - { exclusive: true, regex: "#gitter_.*" }
  rooms: []
${extra}`;
}

async function until<T>(what: string, f: () => T | undefined | false | Promise<T | undefined | false>, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const eventsOf = (type: string) => fake.txns.flatMap((t) => t.events).filter((e) => e.type === type);

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "myelin-as-"));
  fake = new FakeAppService(HS_TOKEN);
  await fake.start();
  writeFileSync(join(dir, "bridge.yaml"), registrationYaml(fake.url));
  // A second service without a URL (a bot): it acts, it receives nothing.
  writeFileSync(join(dir, "bot.yaml"), `id: bot\nurl: null\nas_token: ${BOT_TOKEN}\nhs_token: bot_hs\nsender_localpart: botty\nnamespaces: { users: [], aliases: [], rooms: [] }\n`);
  ts = await startTestServer({ config: { app_service_config_files: [join(dir, "bridge.yaml"), join(dir, "bot.yaml")], rc_message: { per_second: 0.001, burst_count: 3 } } });
  c = new Client(ts.baseUrl);
});
afterAll(async () => {
  await ts?.close();
  await fake?.stop();
});

const as = (path: string, userId?: string) => (userId ? `${path}${path.includes("?") ? "&" : "?"}user_id=${encodeURIComponent(userId)}` : path);

async function registerGhost(localpart: string, extra: Record<string, unknown> = {}) {
  return c.post("/_matrix/client/v3/register", { type: "m.login.application_service", username: localpart, ...extra }, { token: AS_TOKEN });
}

describe("registration files", () => {
  it("are validated with messages naming the file and key", () => {
    expect(() => parseAppServiceRegistration({ id: "x", as_token: "a", hs_token: "h", sender_localpart: "s", namespaces: { users: [{ exclusive: true, regex: "(" }] } }, "f.yaml")).toThrow(
      /f\.yaml.*namespaces\.users\[0\]\.regex/,
    );
    expect(() => parseAppServiceRegistration({ id: "x", hs_token: "h", sender_localpart: "s" }, "f.yaml")).toThrow(ConfigError);
    expect(() => parseAppServiceRegistration({ id: "x", as_token: "a", hs_token: "h", sender_localpart: "s", namespaces: { users: [{ regex: ".*" }] } }, "f.yaml")).toThrow(/exclusive/);
  });

  it("duplicate ids or as_tokens stop start-up", async () => {
    writeFileSync(join(dir, "dup.yaml"), registrationYaml(null));
    await expect(startTestServer({ config: { app_service_config_files: [join(dir, "bridge.yaml"), join(dir, "dup.yaml")] } })).rejects.toThrow(/same id/);
  });
});

describe("registration, login and identity assertion", () => {
  it("the as_token acts as the sender, who exists from the start", async () => {
    const res = await c.get("/_matrix/client/v3/account/whoami", { token: AS_TOKEN });
    expect(res.status).toBe(200);
    expect(res.body.user_id).toBe(`@bridgebot:${SERVER}`);
  });

  it("registers users in its namespace without UIA; inhibit_login; underscores allowed", async () => {
    const name = uniqueName("gitter_");
    const r = await registerGhost(name);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ user_id: `@${name}:${SERVER}`, home_server: SERVER });
    expect(typeof r.body.access_token).toBe("string");
    const r2 = await registerGhost(uniqueName("gitter_"), { inhibit_login: true });
    expect(r2.status).toBe(200);
    expect(r2.body.access_token).toBeUndefined();
    expect(r2.body.device_id).toBeUndefined();
    const r3 = await registerGhost(uniqueName("_shared_x"));
    expect(r3.status).toBe(400); // not in the namespace: "@_shared" does not start with "@shared_"
    expectError(r3, 400, "M_EXCLUSIVE");
    expect((await registerGhost(uniqueName("shared_"))).status).toBe(200);
  });

  it("errors: outside the namespace, wrong or missing token, another service's namespace", async () => {
    expectError(await registerGhost("someone_else"), 400, "M_EXCLUSIVE");
    expectError(await c.post("/_matrix/client/v3/register", { type: "m.login.application_service", username: "gitter_x" }), 401, "M_MISSING_TOKEN");
    expectError(await c.post("/_matrix/client/v3/register", { type: "m.login.application_service", username: "gitter_x" }, { token: "nope" }), 401, "M_UNKNOWN_TOKEN");
    expectError(await c.post("/_matrix/client/v3/register", { type: "m.login.application_service", username: "gitter_y" }, { token: BOT_TOKEN }), 400, "M_EXCLUSIVE");
    expectError(await c.post("/_matrix/client/v3/register", { type: "m.login.application_service" }, { token: AS_TOKEN }), 400, "M_MISSING_PARAM");
  });

  it("ordinary users cannot register in an exclusive namespace, but may in a non-exclusive one", async () => {
    const first = await c.post("/_matrix/client/v3/register", { username: uniqueName("gitter_"), password: "pw pw pw pw" });
    expectError(first, 400, "M_EXCLUSIVE");
    expectError(await c.get(`/_matrix/client/v3/register/available?username=${uniqueName("gitter_")}`), 400, "M_EXCLUSIVE");
    expect((await registerUser(c, uniqueName("shared_"))).userId).toMatch(/^@shared_/);
  });

  it("logs in as its users with m.login.application_service", async () => {
    const flows = await c.get("/_matrix/client/v3/login");
    expect((flows.body.flows as { type: string }[]).map((f) => f.type)).toContain("m.login.application_service");
    const name = uniqueName("gitter_");
    await registerGhost(name, { inhibit_login: true });
    const login = await c.post("/_matrix/client/v3/login", { type: "m.login.application_service", identifier: { type: "m.id.user", user: name } }, { token: AS_TOKEN });
    expect(login.status).toBe(200);
    expect(login.body.user_id).toBe(`@${name}:${SERVER}`);
    const who = await c.get("/_matrix/client/v3/account/whoami", { token: login.body.access_token as string });
    expect(who.body.user_id).toBe(`@${name}:${SERVER}`);
    expectError(await c.post("/_matrix/client/v3/login", { type: "m.login.application_service", identifier: { type: "m.id.user", user: "alice" } }, { token: AS_TOKEN }), 400, "M_EXCLUSIVE");
    expectError(await c.post("/_matrix/client/v3/login", { type: "m.login.application_service", identifier: { type: "m.id.user", user: name } }), 401, "M_MISSING_TOKEN");
  });

  it("masquerades with user_id and device_id; refuses users outside the namespace or not registered", async () => {
    const name = uniqueName("gitter_");
    const reg = await registerGhost(name);
    const userId = `@${name}:${SERVER}`;
    const who = await c.get(as("/_matrix/client/v3/account/whoami", userId), { token: AS_TOKEN });
    expect(who.body).toMatchObject({ user_id: userId });
    const withDevice = await c.get(as(`/_matrix/client/v3/account/whoami?device_id=${reg.body.device_id as string}`, userId), { token: AS_TOKEN });
    expect(withDevice.body).toMatchObject({ user_id: userId, device_id: reg.body.device_id });
    expectError(await c.get(as("/_matrix/client/v3/account/whoami?device_id=NOPE", userId), { token: AS_TOKEN }), 400, "M_UNKNOWN_DEVICE");
    const outsider = await registerUser(c);
    expectError(await c.get(as("/_matrix/client/v3/account/whoami", outsider.userId), { token: AS_TOKEN }), 403, "M_FORBIDDEN");
    expectError(await c.get(as("/_matrix/client/v3/account/whoami", `@gitter_never_registered:${SERVER}`), { token: AS_TOKEN }), 403, "M_FORBIDDEN");
    // Another user's profile: a ghost may not set it.
    expectError(await c.put(as(`/_matrix/client/v3/profile/${encodeURIComponent(outsider.userId)}/displayname`, userId), { displayname: "x" }, { token: AS_TOKEN }), 403, "M_FORBIDDEN");
    const setName = await c.put(as(`/_matrix/client/v3/profile/${encodeURIComponent(userId)}/displayname`, userId), { displayname: "Ghost" }, { token: AS_TOKEN });
    expect(setName.status).toBe(200);
  });

  it("deactivates its users without UIA", async () => {
    const name = uniqueName("gitter_");
    await registerGhost(name, { inhibit_login: true });
    const res = await c.post(as("/_matrix/client/v3/account/deactivate", `@${name}:${SERVER}`), {}, { token: AS_TOKEN });
    expect(res.status).toBe(200);
  });

  it("is not rate-limited when rate_limited: false", async () => {
    const room = await c.post("/_matrix/client/v3/createRoom", {}, { token: AS_TOKEN });
    expect(room.status).toBe(200);
    for (let i = 0; i < 5; i++) {
      const s = await c.put(`/_matrix/client/v3/rooms/${room.body.room_id as string}/send/m.room.message/rl${i}`, { msgtype: "m.text", body: "x" }, { token: AS_TOKEN });
      expect(s.status).toBe(200);
    }
  });
});

describe("aliases", () => {
  let owner: TestUser;
  let roomId: string;
  beforeAll(async () => {
    owner = await registerUser(c);
    roomId = (await c.post("/_matrix/client/v3/createRoom", {}, { token: owner.accessToken })).body.room_id as string;
  });

  it("only the service creates aliases in its exclusive namespace; it need not be in the room", async () => {
    const alias = `#gitter_${uniqueName("a")}:${SERVER}`;
    expectError(await c.put(`/_matrix/client/v3/directory/room/${encodeURIComponent(alias)}`, { room_id: roomId }, { token: owner.accessToken }), 400, "M_EXCLUSIVE");
    expectError(await c.post("/_matrix/client/v3/createRoom", { room_alias_name: alias.slice(1, alias.indexOf(":")) }, { token: owner.accessToken }), 400, "M_EXCLUSIVE");
    expect((await c.put(`/_matrix/client/v3/directory/room/${encodeURIComponent(alias)}`, { room_id: roomId }, { token: AS_TOKEN })).status).toBe(200);
    expectError(await c.put(`/_matrix/client/v3/directory/room/${encodeURIComponent(`#other_${uniqueName("a")}:${SERVER}`)}`, { room_id: roomId }, { token: AS_TOKEN }), 400, "M_EXCLUSIVE");
    expectError(await c.delete(`/_matrix/client/v3/directory/room/${encodeURIComponent(alias)}`, undefined, { token: owner.accessToken }), 400, "M_EXCLUSIVE");
  });

  it("an unknown alias in the namespace is asked of the service, which may create it (lookup and join)", async () => {
    const alias = `#gitter_${uniqueName("q")}:${SERVER}`;
    const asked: string[] = [];
    fake.onAliasQuery = async (a) => {
      asked.push(a);
      const r = await c.put(`/_matrix/client/v3/directory/room/${encodeURIComponent(a)}`, { room_id: roomId }, { token: AS_TOKEN });
      return r.status === 200 ? 200 : 500;
    };
    const res = await c.get(`/_matrix/client/v3/directory/room/${encodeURIComponent(alias)}`, { token: owner.accessToken });
    expect(res.status).toBe(200);
    expect(res.body.room_id).toBe(roomId);
    expect(asked).toEqual([alias]);
    fake.onAliasQuery = async () => 404;
    expectError(await c.get(`/_matrix/client/v3/directory/room/${encodeURIComponent(`#gitter_${uniqueName("none")}:${SERVER}`)}`, { token: owner.accessToken }), 404, "M_NOT_FOUND");
    // A join by alias asks too.
    const alias2 = `#gitter_${uniqueName("j")}:${SERVER}`;
    await c.put(`/_matrix/client/v3/directory/list/room/${roomId}`, { visibility: "public" }, { token: owner.accessToken });
    await c.put(`/_matrix/client/v3/rooms/${roomId}/state/m.room.join_rules`, { join_rule: "public" }, { token: owner.accessToken });
    fake.onAliasQuery = async (a) => ((await c.put(`/_matrix/client/v3/directory/room/${encodeURIComponent(a)}`, { room_id: roomId }, { token: AS_TOKEN })).status === 200 ? 200 : 500);
    const joiner = await registerUser(c);
    const join = await c.post(`/_matrix/client/v3/join/${encodeURIComponent(alias2)}`, {}, { token: joiner.accessToken });
    expect(join.status).toBe(200);
    fake.onAliasQuery = undefined;
  });
});

describe("transactions", () => {
  it("pushes the events the service is interested in, in order, with the hs_token as Bearer", async () => {
    const user = await registerUser(c);
    const roomId = (await c.post("/_matrix/client/v3/createRoom", {}, { token: user.accessToken })).body.room_id as string;
    // Not interesting yet: no member of the room is the service's.
    await c.put(`/_matrix/client/v3/rooms/${roomId}/send/m.room.message/t0`, { msgtype: "m.text", body: "before" }, { token: user.accessToken });
    const ghost = uniqueName("gitter_");
    await registerGhost(ghost, { inhibit_login: true });
    const ghostId = `@${ghost}:${SERVER}`;
    await c.post(`/_matrix/client/v3/rooms/${roomId}/invite`, { user_id: ghostId }, { token: user.accessToken });
    expect((await c.post(as(`/_matrix/client/v3/rooms/${roomId}/join`, ghostId), {}, { token: AS_TOKEN })).status).toBe(200);
    await c.put(`/_matrix/client/v3/rooms/${roomId}/send/m.room.message/t1`, { msgtype: "m.text", body: "m1" }, { token: user.accessToken });
    for (let i = 2; i <= 3; i++) await c.put(as(`/_matrix/client/v3/rooms/${roomId}/send/m.room.message/t${i}`, ghostId), { msgtype: "m.text", body: `m${i}` }, { token: AS_TOKEN });
    await until("three messages", () => eventsOf("m.room.message").filter((e) => e.room_id === roomId).length >= 3);
    const msgs = eventsOf("m.room.message").filter((e) => e.room_id === roomId);
    expect(msgs.map((e) => (e.content as { body: string }).body)).toEqual(["m1", "m2", "m3"]);
    const members = eventsOf("m.room.member").filter((e) => e.room_id === roomId && e.state_key === ghostId);
    expect(members.map((e) => (e.content as { membership: string }).membership)).toEqual(["invite", "join"]);
    expect(fake.txns.every((t) => t.authorization === `Bearer ${HS_TOKEN}`)).toBe(true);
    const ids = fake.txns.map((t) => Number(t.txnId));
    expect(msgs.at(-1)!.sender).toBe(ghostId);
    expect(ids).toEqual([...ids].sort((a, b) => a - b));
    expect(new Set(ids).size).toBe(ids.length);
  });

  it("rooms with an alias in the namespace are interesting", async () => {
    const user = await registerUser(c);
    const roomId = (await c.post("/_matrix/client/v3/createRoom", {}, { token: user.accessToken })).body.room_id as string;
    await c.put(`/_matrix/client/v3/directory/room/${encodeURIComponent(`#gitter_${uniqueName("r")}:${SERVER}`)}`, { room_id: roomId }, { token: AS_TOKEN });
    await c.put(`/_matrix/client/v3/rooms/${roomId}/send/m.room.message/x`, { msgtype: "m.text", body: "via alias" }, { token: user.accessToken });
    await until("the message", () => eventsOf("m.room.message").some((e) => e.room_id === roomId));
  });

  it("retries with backoff while the service is down, keeping order and txn ids", { timeout: 60_000 }, async () => {
    const user = await registerUser(c);
    const roomId = (await c.post("/_matrix/client/v3/createRoom", {}, { token: user.accessToken })).body.room_id as string;
    await c.put(`/_matrix/client/v3/directory/room/${encodeURIComponent(`#gitter_${uniqueName("d")}:${SERVER}`)}`, { room_id: roomId }, { token: AS_TOKEN });
    fake.txnStatus = 503;
    fake.failedAttempts = 0;
    await c.put(`/_matrix/client/v3/rooms/${roomId}/send/m.room.message/d1`, { msgtype: "m.text", body: "d1" }, { token: user.accessToken });
    await until("a failed attempt", () => fake.failedAttempts >= 2);
    await c.put(`/_matrix/client/v3/rooms/${roomId}/send/m.room.message/d2`, { msgtype: "m.text", body: "d2" }, { token: user.accessToken });
    fake.txnStatus = 200;
    await until("both messages", () => eventsOf("m.room.message").filter((e) => e.room_id === roomId).length >= 2, 30_000);
    // Backoff: 1 s, 2 s, 4 s… so two failures take at least a second.
    expect(eventsOf("m.room.message").filter((e) => e.room_id === roomId).map((e) => (e.content as { body: string }).body)).toEqual(["d1", "d2"]);
  });

  it("a transaction not acknowledged before a restart is sent after it, under the same txnId", { timeout: 60_000 }, async () => {
    const user = await registerUser(c);
    const roomId = (await c.post("/_matrix/client/v3/createRoom", {}, { token: user.accessToken })).body.room_id as string;
    await c.put(`/_matrix/client/v3/directory/room/${encodeURIComponent(`#gitter_${uniqueName("s")}:${SERVER}`)}`, { room_id: roomId }, { token: AS_TOKEN });
    fake.txnStatus = 500;
    fake.failedTxnIds = [];
    const attempts = fake.failedTxnIds;
    await c.put(`/_matrix/client/v3/rooms/${roomId}/send/m.room.message/r1`, { msgtype: "m.text", body: "across restart" }, { token: user.accessToken });
    await until("a failed attempt", () => attempts.length >= 1);
    ts = await ts.restart();
    c = new Client(ts.baseUrl);
    fake.txnStatus = 200;
    await until("the message after the restart", () => fake.txns.find((t) => t.events.some((e) => e.room_id === roomId && (e.content as { body?: string }).body === "across restart")), 30_000);
    const delivered = fake.txns.find((t) => t.events.some((e) => e.room_id === roomId))!;
    expect(delivered.txnId).toBe(attempts[0]);
    expect(eventsOf("m.room.message").filter((e) => e.room_id === roomId)).toHaveLength(1);
  });

  it("ephemeral: typing and receipts in interesting rooms (receive_ephemeral)", async () => {
    const user = await registerUser(c);
    const roomId = (await c.post("/_matrix/client/v3/createRoom", {}, { token: user.accessToken })).body.room_id as string;
    await c.put(`/_matrix/client/v3/directory/room/${encodeURIComponent(`#gitter_${uniqueName("e")}:${SERVER}`)}`, { room_id: roomId }, { token: AS_TOKEN });
    const sent = await c.put(`/_matrix/client/v3/rooms/${roomId}/send/m.room.message/e1`, { msgtype: "m.text", body: "read me" }, { token: user.accessToken });
    await c.put(`/_matrix/client/v3/rooms/${roomId}/typing/${encodeURIComponent(user.userId)}`, { typing: true, timeout: 10_000 }, { token: user.accessToken });
    await c.post(`/_matrix/client/v3/rooms/${roomId}/receipt/m.read/${encodeURIComponent(sent.body.event_id as string)}`, {}, { token: user.accessToken });
    const eph = () => fake.txns.flatMap((t) => t.ephemeral ?? []).filter((e) => e.room_id === roomId);
    await until("typing", () => eph().some((e) => e.type === "m.typing" && (e.content as { user_ids: string[] }).user_ids.includes(user.userId)));
    await until("the receipt", () => eph().some((e) => e.type === "m.receipt"));
  });
});

describe("queries", () => {
  it("inviting an unknown user in the namespace asks the service, which may create it", async () => {
    const user = await registerUser(c);
    const roomId = (await c.post("/_matrix/client/v3/createRoom", {}, { token: user.accessToken })).body.room_id as string;
    const name = uniqueName("gitter_");
    const userId = `@${name}:${SERVER}`;
    const asked: string[] = [];
    fake.onUserQuery = async (u) => {
      asked.push(u);
      return (await registerGhost(name, { inhibit_login: true })).status === 200 ? 200 : 500;
    };
    const inv = await c.post(`/_matrix/client/v3/rooms/${roomId}/invite`, { user_id: userId }, { token: user.accessToken });
    expect(inv.status).toBe(200);
    expect(asked).toEqual([userId]);
    fake.onUserQuery = async () => 404;
    expectError(await c.post(`/_matrix/client/v3/rooms/${roomId}/invite`, { user_id: `@gitter_${uniqueName("no")}:${SERVER}` }, { token: user.accessToken }), 404, "M_NOT_FOUND");
    fake.onUserQuery = undefined;
  });

  it("third-party protocols and lookups come from the service", async () => {
    const user = await registerUser(c);
    const protocols = await c.get("/_matrix/client/v3/thirdparty/protocols", { token: user.accessToken });
    expect(protocols.status).toBe(200);
    expect(protocols.body.gitter).toMatchObject({ user_fields: ["username"], instances: [{ network_id: "gitter-net", instance_id: "bridge|gitter-net" }] });
    // Metadata is kept an hour, as Synapse does: asking again does not ask the service.
    const asked = fake.requests.filter((r) => r.endsWith("/thirdparty/protocol/gitter")).length;
    expect((await c.get("/_matrix/client/v3/thirdparty/protocol/gitter", { token: user.accessToken })).body).toMatchObject({ user_fields: ["username"] });
    expect(fake.requests.filter((r) => r.endsWith("/thirdparty/protocol/gitter")).length).toBe(asked);
    const loc = await c.get("/_matrix/client/v3/thirdparty/location/gitter?room=general", { token: user.accessToken });
    expect(loc.body).toEqual([{ alias: "#gitter_room:test.local", protocol: "gitter", fields: { room: "general" } }]);
    const u = await c.get(`/_matrix/client/v3/thirdparty/user?userid=${encodeURIComponent("@gitter_bob:test.local")}`, { token: user.accessToken });
    expect(u.body).toEqual([{ userid: "@gitter_bob:test.local", protocol: "gitter", fields: { username: "bob" } }]);
  });
});

describe("ping", () => {
  const ping = (id: string, token: string, body: unknown = {}) => c.post(`/_matrix/client/v1/appservice/${id}/ping`, body, { token });

  it("pings the service and reports the round trip", async () => {
    fake.pingStatus = 200;
    const res = await ping("bridge", AS_TOKEN, { transaction_id: "ping1" });
    expect(res.status).toBe(200);
    expect(typeof res.body.duration_ms).toBe("number");
    expect(fake.pings.at(-1)).toEqual({ transaction_id: "ping1" });
  });

  it("errors: another service's id, no URL, a bad status, a service that is down", async () => {
    expectError(await ping("bot", AS_TOKEN), 403, "M_FORBIDDEN");
    const user = await registerUser(c);
    expectError(await ping("bridge", user.accessToken), 403, "M_FORBIDDEN");
    expectError(await ping("bot", BOT_TOKEN), 400, "M_URL_NOT_SET");
    fake.pingStatus = 500;
    const bad = expectError(await ping("bridge", AS_TOKEN), 502, "M_BAD_STATUS");
    expect(bad.status).toBe(500);
    fake.pingStatus = 200;
  });
});

describe("room directory per network", () => {
  it("the service publishes rooms in its network's list, separate from the main one", async () => {
    const user = await registerUser(c);
    const roomId = (await c.post("/_matrix/client/v3/createRoom", {}, { token: user.accessToken })).body.room_id as string;
    const path = `/_matrix/client/v3/directory/list/appservice/gitter-net/${roomId}`;
    expectError(await c.put(path, { visibility: "public" }, { token: user.accessToken }), 403, "M_FORBIDDEN");
    expect((await c.put(path, { visibility: "public" }, { token: AS_TOKEN })).status).toBe(200);
    const ids = async (body: Record<string, unknown>) => ((await c.post("/_matrix/client/v3/publicRooms", body, { token: user.accessToken })).body.chunk as { room_id: string }[]).map((r) => r.room_id);
    expect(await ids({})).not.toContain(roomId);
    expect(await ids({ third_party_instance_id: "bridge|gitter-net" })).toContain(roomId);
    expect(await ids({ include_all_networks: true })).toContain(roomId);
    expect(await ids({ include_all_networks: "true" })).toContain(roomId);
    expect((await c.delete(path, {}, { token: AS_TOKEN })).status).toBe(200);
    expect(await ids({ third_party_instance_id: "bridge|gitter-net" })).not.toContain(roomId);
  });
});
