/**
 * The key exchange between Myelin servers on 127.0.0.1 (each with its own database, federating over TLS): publishing
 * keys, fetching them directly, through a notary (trusted_key_servers), keeping them across restarts, and old keys.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateSigningKey, type SigningKey } from "../../src/core/crypto/ed25519.js";
import { signJson, verifyJsonSignature } from "../../src/core/crypto/signing.js";
import type { JsonObject } from "../../src/core/json/types.js";
import { FederationProxy } from "../helpers/fed_proxy.js";
import { startFederatedServer, TestNetwork } from "../helpers/federation.js";
import { Client, expectError } from "../helpers/http.js";
import type { TestServer } from "../helpers/server.js";

const DAY = 86_400_000;
let network: TestNetwork;
let hs1: TestServer;
let hs2: TestServer;
const hs1Key = generateSigningKey();
const oldKey = generateSigningKey();
const OLD_EXPIRED_TS = 1_600_000_000_000;
/** Servers started by individual tests. */
const extras: TestServer[] = [];

beforeAll(async () => {
  network = new TestNetwork();
  hs1 = await startFederatedServer(network, "hs1.test", {
    signingKey: hs1Key,
    config: { old_signing_keys: { [oldKey.keyId]: { key: oldKey.publicKeyBase64, expired_ts: OLD_EXPIRED_TS } } },
  });
  hs2 = await startFederatedServer(network, "hs2.test");
});

afterAll(async () => {
  await Promise.all([hs1, hs2, ...extras].map((s) => s?.close()));
});

function expectSignedBy(obj: JsonObject, server: string, keyId: string, key: string): void {
  expect(verifyJsonSignature(obj, server, keyId, key), `signed by ${server} with ${keyId}`).toBe(true);
}

describe("GET /_matrix/key/v2/server", () => {
  it("publishes our key, signed, valid for key_refresh_interval (1 day by default), with old_signing_keys as old_verify_keys", async () => {
    const before = Date.now();
    const res = await new Client(hs1.baseUrl).get("/_matrix/key/v2/server");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("application/json");
    const body = res.body as JsonObject;
    expect(body).toMatchObject({
      server_name: "hs1.test",
      verify_keys: { [hs1Key.keyId]: { key: hs1Key.publicKeyBase64 } },
      old_verify_keys: { [oldKey.keyId]: { key: oldKey.publicKeyBase64, expired_ts: OLD_EXPIRED_TS } },
    });
    expect(body.valid_until_ts).toBeGreaterThanOrEqual(before + DAY);
    expect(body.valid_until_ts).toBeLessThanOrEqual(Date.now() + DAY);
    expectSignedBy(body, "hs1.test", hs1Key.keyId, hs1Key.publicKeyBase64);
  });

  it("is served on the TLS federation listener too", async () => {
    const res = (await hs2.server.services.federationClient.get("hs1.test", "/_matrix/key/v2/server")) as JsonObject;
    expect(res.server_name).toBe("hs1.test");
  });

  it("answers the deprecated per-key form /server/{keyId} (fetched by Synapse 1.67) with every key", async () => {
    const res = await new Client(hs1.baseUrl).get(`/_matrix/key/v2/server/${encodeURIComponent(hs1Key.keyId)}`);
    expect(res.status).toBe(200);
    const body = res.body as JsonObject;
    expect(body).toMatchObject({ server_name: "hs1.test", verify_keys: { [hs1Key.keyId]: { key: hs1Key.publicKeyBase64 } } });
    expect(body.old_verify_keys).toHaveProperty([oldKey.keyId]);
    expectSignedBy(body, "hs1.test", hs1Key.keyId, hs1Key.publicKeyBase64);
    // An unknown key id gets the same answer: the caller picks the keys it needs.
    const other = await new Client(hs1.baseUrl).get("/_matrix/key/v2/server/ed25519%3Anope");
    expect(other.status).toBe(200);
    expect((other.body as JsonObject).verify_keys).toHaveProperty([hs1Key.keyId]);
  });

  it("honours key_refresh_interval", async () => {
    const hs = await startFederatedServer(network, "short.test", { config: { key_refresh_interval: "1h" } });
    extras.push(hs);
    const body = (await new Client(hs.baseUrl).get("/_matrix/key/v2/server")).body as JsonObject;
    expect(body.valid_until_ts).toBeLessThanOrEqual(Date.now() + 3600_000);
    expect(body.valid_until_ts).toBeGreaterThan(Date.now() + 3500_000);
    expect(body.old_verify_keys).toEqual({});
  });
});

describe("fetching keys directly", () => {
  it("hs2 fetches hs1's keys from hs1, stores them, and verifies hs1's signatures", async () => {
    const keys = await hs2.server.services.keys.getVerifyKeys("hs1.test", [hs1Key.keyId], Date.now());
    expect(keys.get(hs1Key.keyId)).toMatchObject({ key: hs1Key.publicKeyBase64 });
    expect(keys.get(hs1Key.keyId)!.validUntilTs).toBeGreaterThan(Date.now() + DAY - 60_000);
    const rows = await hs2.server.services.storage.serverKeys.getKeys("hs1.test");
    expect(rows.map((r) => [r.key_id, r.from_server]).sort()).toEqual([[hs1Key.keyId, "hs1.test"], [oldKey.keyId, "hs1.test"]].sort());

    const doc = signJson({ hello: "world" }, "hs1.test", hs1Key);
    await hs2.server.services.keys.verifySignedJson(doc, "hs1.test", { atTs: Date.now() });
    await expect(hs2.server.services.keys.verifySignedJson({ ...doc, hello: "there" }, "hs1.test")).rejects.toMatchObject({ errcode: "M_UNAUTHORIZED" });
    await expect(hs2.server.services.keys.verifySignedJson({ hello: "world" }, "hs1.test")).rejects.toMatchObject({ errcode: "M_UNAUTHORIZED" });
  });

  it("keeps old keys for old signatures, enforcing validity only when asked (room versions 5+)", async () => {
    const old = signJson({ event: "from 2020" }, "hs1.test", oldKey);
    // Rooms v1–v4: validity is not enforced.
    await hs2.server.services.keys.verifySignedJson(old, "hs1.test");
    // v5+: fine for an event sent before the key expired, refused after.
    await hs2.server.services.keys.verifySignedJson(old, "hs1.test", { atTs: OLD_EXPIRED_TS - 1000 });
    await expect(hs2.server.services.keys.verifySignedJson(old, "hs1.test", { atTs: OLD_EXPIRED_TS + 1000 })).rejects.toMatchObject({ status: 401 });
    // A request signed with an old key is refused (validity checked at the present).
    await expect(hs2.server.services.keys.verifySignedJson(old, "hs1.test", { atTs: Date.now() })).rejects.toMatchObject({ status: 401 });
  });

  it("a server verifies its own signatures without fetching, old keys included", async () => {
    const ours = signJson({ x: 1 }, "hs1.test", hs1Key);
    await hs1.server.services.keys.verifySignedJson(ours, "hs1.test", { atTs: Date.now() + 365 * DAY });
    await hs1.server.services.keys.verifySignedJson(signJson({ x: 1 }, "hs1.test", oldKey), "hs1.test", { atTs: OLD_EXPIRED_TS });
  });
});

describe("the notary: /_matrix/key/v2/query", () => {
  it("serves its own keys through GET and POST", async () => {
    const client = hs2.server.services.federationClient;
    const viaGet = (await client.get("hs1.test", "/_matrix/key/v2/query/hs1.test")).server_keys as JsonObject[];
    expect(viaGet).toHaveLength(1);
    expect(viaGet[0]).toMatchObject({ server_name: "hs1.test", verify_keys: { [hs1Key.keyId]: { key: hs1Key.publicKeyBase64 } } });
    expectSignedBy(viaGet[0]!, "hs1.test", hs1Key.keyId, hs1Key.publicKeyBase64);
    const viaPost = (await client.post("hs1.test", "/_matrix/key/v2/query", { server_keys: { "hs1.test": { [hs1Key.keyId]: { minimum_valid_until_ts: Date.now() } } } })).server_keys as JsonObject[];
    expect(viaPost).toHaveLength(1);
    expectSignedBy(viaPost[0]!, "hs1.test", hs1Key.keyId, hs1Key.publicKeyBase64);
  });

  it("fetches another server's keys and answers them signed by that server and by itself", async () => {
    const res = await new Client(hs1.baseUrl).post("/_matrix/key/v2/query", { server_keys: { "hs2.test": {} } });
    expect(res.status).toBe(200);
    const [entry, ...rest] = res.body.server_keys as JsonObject[];
    expect(rest).toEqual([]);
    expect(entry).toMatchObject({ server_name: "hs2.test", verify_keys: { [hs2.signingKey.keyId]: { key: hs2.signingKey.publicKeyBase64 } } });
    expectSignedBy(entry!, "hs2.test", hs2.signingKey.keyId, hs2.signingKey.publicKeyBase64);
    expectSignedBy(entry!, "hs1.test", hs1Key.keyId, hs1Key.publicKeyBase64);
    // The deprecated per-key GET form and minimum_valid_until_ts are understood.
    const perKey = await new Client(hs1.baseUrl).get(`/_matrix/key/v2/query/hs2.test/${encodeURIComponent(hs2.signingKey.keyId)}?minimum_valid_until_ts=${Date.now()}`);
    expect((perKey.body.server_keys as JsonObject[]).map((k) => k.server_name)).toEqual(["hs2.test"]);
  });

  it("answers an empty list for servers it cannot reach and knows nothing about, and for no servers", async () => {
    const client = new Client(hs1.baseUrl);
    expect((await client.get("/_matrix/key/v2/query/nowhere.test")).body).toEqual({ server_keys: [] });
    expect((await client.post("/_matrix/key/v2/query", { server_keys: { "nowhere.test": {}, "not a server name": {} } })).body).toEqual({ server_keys: [] });
    expect((await client.post("/_matrix/key/v2/query", { server_keys: {} })).body).toEqual({ server_keys: [] });
  });

  it("rejects malformed queries", async () => {
    const client = new Client(hs1.baseUrl);
    expectError(await client.post("/_matrix/key/v2/query", {}), 400, "M_BAD_JSON");
    expectError(await client.post("/_matrix/key/v2/query", { server_keys: { "hs2.test": { "ed25519:x": { minimum_valid_until_ts: "soon" } } } }), 400, "M_BAD_JSON");
    expectError(await client.get("/_matrix/key/v2/query/hs2.test?minimum_valid_until_ts=soon"), 400, "M_INVALID_PARAM");
  });
});

describe("the notary asks the origin again when a query wants more than it holds", () => {
  /** origin.test: a key server whose /key/v2/server answers are chosen by the test (proxy.intercept). */
  let proxy: FederationProxy;
  const notary = () => new Client(hs1.baseUrl);
  const keyResponse = (key: SigningKey, validUntilTs: number): JsonObject =>
    signJson({ server_name: "origin.test", valid_until_ts: validUntilTs, verify_keys: { [key.keyId]: { key: key.publicKeyBase64 } }, old_verify_keys: {} }, "origin.test", key);
  const query = async (keyId: string, minimum?: number): Promise<JsonObject[]> => {
    const res = await notary().post("/_matrix/key/v2/query", { server_keys: { "origin.test": { [keyId]: minimum === undefined ? {} : { minimum_valid_until_ts: minimum } } } });
    expect(res.status, res.text).toBe(200);
    return res.body.server_keys as JsonObject[];
  };
  const fetches = () => proxy.requests("/_matrix/key/v2/server").length;

  beforeAll(async () => {
    proxy = await new FederationProxy(hs2.tlsPort!).start(network, "origin.test");
  });
  afterAll(async () => {
    await proxy?.close();
  });

  it("a later minimum_valid_until_ts makes it fetch again at once; when the origin then fails, the expired key is still served", async () => {
    proxy.seen.length = 0;
    const key = generateSigningKey();
    const expiry = Date.now() - DAY;
    proxy.intercept = (req) => (req.path.startsWith("/_matrix/key/v2/server") ? { status: 200, body: keyResponse(key, expiry) } : undefined);
    expect((await query(key.keyId)).map((k) => k.valid_until_ts)).toEqual([expiry]);
    expect(fetches()).toBe(1);
    // Within seconds of the first fetch: asked for a key valid later than the one held, it asks the origin again.
    const second = await query(key.keyId, expiry + 1000);
    expect(fetches()).toBe(2);
    expect(second).toHaveLength(1);
    expect(second[0]).toMatchObject({ server_name: "origin.test", valid_until_ts: expiry, verify_keys: { [key.keyId]: { key: key.publicKeyBase64 } } });
    proxy.intercept = (req) => (req.path.startsWith("/_matrix/key/v2/server") ? { status: 400, body: {} } : undefined);
    const third = await query(key.keyId, expiry + 1000);
    expect(fetches()).toBe(3);
    expect(third[0]).toMatchObject({ server_name: "origin.test", valid_until_ts: expiry, verify_keys: { [key.keyId]: { key: key.publicKeyBase64 } } });
  });

  it("a key the origin no longer lists is not forgotten when the origin answers with another", async () => {
    proxy.seen.length = 0;
    const key1 = generateSigningKey();
    const key2 = generateSigningKey();
    const expiry = Date.now() - DAY;
    proxy.intercept = (req) => (req.path.startsWith("/_matrix/key/v2/server") ? { status: 200, body: keyResponse(key1, expiry) } : undefined);
    expect((await query(key1.keyId)).map((k) => Object.keys(k.verify_keys as JsonObject))).toEqual([[key1.keyId]]);
    proxy.intercept = (req) => (req.path.startsWith("/_matrix/key/v2/server") ? { status: 200, body: keyResponse(key2, expiry + 1000) } : undefined);
    await query(key1.keyId, Date.now());
    expect(fetches()).toBe(2);
    const again = await query(key1.keyId, expiry);
    expect(again).toHaveLength(1);
    expect(again[0]).toMatchObject({ server_name: "origin.test", verify_keys: { [key1.keyId]: { key: key1.publicKeyBase64 } } });
  });
});

describe("trusted_key_servers", () => {
  let hs3: TestServer;

  beforeAll(async () => {
    hs3 = await startFederatedServer(network, "hs3.test");
    extras.push(hs3);
  });

  it("a server that cannot reach hs3 gets hs3's keys through the notary hs1, checking hs1's signature", async () => {
    const cut = await startFederatedServer(network, "cut.test", {
      unreachable: ["hs3.test"],
      config: { trusted_key_servers: [{ server_name: "hs1.test", verify_keys: { [hs1Key.keyId]: hs1Key.publicKeyBase64 } }] },
    });
    extras.push(cut);
    const doc = signJson({ from: "hs3" }, "hs3.test", hs3.signingKey);
    await cut.server.services.keys.verifySignedJson(doc, "hs3.test", { atTs: Date.now() });
    const rows = await cut.server.services.storage.serverKeys.getKeys("hs3.test");
    // Stored as vouched for by the notary.
    expect(rows.map((r) => [r.key_id, r.from_server])).toEqual([[hs3.signingKey.keyId, "hs1.test"]]);
  });

  it("refuses the notary's answers when they are not signed by the key configured for it", async () => {
    const wrong = generateSigningKey();
    const misconfigured = await startFederatedServer(network, "misconfigured.test", {
      unreachable: ["hs3.test"],
      config: { trusted_key_servers: [{ server_name: "hs1.test", verify_keys: { [wrong.keyId]: wrong.publicKeyBase64 } }] },
    });
    extras.push(misconfigured);
    const doc = signJson({ from: "hs3" }, "hs3.test", hs3.signingKey);
    await expect(misconfigured.server.services.keys.verifySignedJson(doc, "hs3.test", { atTs: Date.now() })).rejects.toMatchObject({ errcode: "M_UNAUTHORIZED" });
    expect(await misconfigured.server.services.storage.serverKeys.getKeys("hs3.test")).toEqual([]);
  });
});

describe("persistence", () => {
  it("keys fetched before a restart verify signatures afterwards, with the origin gone", async () => {
    const doc = signJson({ persisted: true }, "hs1.test", hs1Key);
    await hs2.server.services.keys.verifySignedJson(doc, "hs1.test", { atTs: Date.now() });
    network.hosts.delete("hs1.test"); // hs1 is now unreachable
    try {
      hs2 = await hs2.restart();
      network.register("hs2.test", hs2.tlsPort!);
      network.hosts.delete("hs1.test");
      await hs2.server.services.keys.verifySignedJson(doc, "hs1.test", { atTs: Date.now() });
      await hs2.server.services.keys.verifySignedJson(signJson({ old: true }, "hs1.test", oldKey), "hs1.test", { atTs: OLD_EXPIRED_TS });
    } finally {
      network.register("hs1.test", hs1.tlsPort!);
    }
  });
});
