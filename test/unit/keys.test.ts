/**
 * KeyFetcher and KeyServer rules with a fake federation client, store and clock: validation of key responses,
 * validity (the 7-day cap, old keys), fetch order and throttling, notary signatures, and the notary's cache rules.
 */
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { generateSigningKey, type SigningKey } from "../../src/core/crypto/ed25519.js";
import { signJson } from "../../src/core/crypto/signing.js";
import type { JsonObject } from "../../src/core/json/types.js";
import { FederationError } from "../../src/federation/errors.js";
import { KeyServer } from "../../src/services/key_server.js";
import { KeyFetcher, keyRowsFromResponse, KeyResponseError, MAX_KEY_VALIDITY_MS, type TrustedKeyServer } from "../../src/services/keys.js";
import type { ServerKeyRow } from "../../src/storage/server_keys.js";

const DAY = 86_400_000;
const log = pino({ level: "silent" });

class MemoryStore {
  rows = new Map<string, ServerKeyRow>();
  async getKeys(serverName: string): Promise<ServerKeyRow[]> {
    return [...this.rows.values()].filter((r) => r.server_name === serverName);
  }
  async upsertKeys(rows: readonly ServerKeyRow[]): Promise<void> {
    for (const r of rows) {
      const k = `${r.server_name} ${r.key_id}`;
      const existing = this.rows.get(k);
      if (!existing || r.valid_until_ts >= existing.valid_until_ts) this.rows.set(k, r);
    }
  }
}

/** A fake network of key servers: `responses[server]` answers GET /key/v2/server; notaries answer POST /query. */
class FakeClient {
  direct = new Map<string, () => JsonObject>();
  notary = new Map<string, (body: JsonObject) => JsonObject>();
  calls: string[] = [];
  async get(destination: string, path: string): Promise<JsonObject> {
    this.calls.push(`GET ${destination}${path}`);
    const f = this.direct.get(destination);
    if (!f) throw new FederationError("unreachable", destination, "down");
    return f();
  }
  async post(destination: string, path: string, body: JsonObject): Promise<JsonObject> {
    this.calls.push(`POST ${destination}${path}`);
    const f = this.notary.get(destination);
    if (!f) throw new FederationError("unreachable", destination, "down");
    return f(body);
  }
}

function keyResponse(server: string, key: SigningKey, validUntil: number, extra: JsonObject = {}): JsonObject {
  return signJson({ server_name: server, valid_until_ts: validUntil, verify_keys: { [key.keyId]: { key: key.publicKeyBase64 } }, old_verify_keys: {}, ...extra }, server, key);
}

function setup(trusted: TrustedKeyServer[] = []) {
  const clock = { now: 1_700_000_000_000 };
  const store = new MemoryStore();
  const client = new FakeClient();
  const me = generateSigningKey();
  const fetcher = new KeyFetcher({
    serverName: "me.test",
    ownKeys: [{ keyId: me.keyId, key: me.publicKeyBase64, validUntilTs: Number.MAX_SAFE_INTEGER }],
    store,
    client,
    trustedKeyServers: trusted,
    log,
    now: () => clock.now,
  });
  return { clock, store, client, fetcher, me };
}

describe("keyRowsFromResponse", () => {
  const key = generateSigningKey();
  const now = 1_700_000_000_000;

  it("caps validity at 7 days after fetching ('the lesser of valid_until_ts and 7 days into the future')", () => {
    const rows = keyRowsFromResponse("a.test", keyResponse("a.test", key, now + 365 * DAY), "a.test", now);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ server_name: "a.test", key_id: key.keyId, verify_key: key.publicKeyBase64, valid_until_ts: now + MAX_KEY_VALIDITY_MS, from_server: "a.test", ts_added_ms: now });
    expect(keyRowsFromResponse("a.test", keyResponse("a.test", key, now + DAY), "a.test", now)[0]!.valid_until_ts).toBe(now + DAY);
  });

  it("turns old_verify_keys into keys valid until their expired_ts, winning over verify_keys", () => {
    const old = generateSigningKey();
    const res = keyResponse("a.test", key, now + DAY, { old_verify_keys: { [old.keyId]: { key: old.publicKeyBase64, expired_ts: now - DAY } } });
    const rows = keyRowsFromResponse("a.test", res, "a.test", now);
    expect(rows.find((r) => r.key_id === old.keyId)?.valid_until_ts).toBe(now - DAY);
    const both = keyResponse("a.test", key, now + DAY, { old_verify_keys: { [key.keyId]: { key: key.publicKeyBase64, expired_ts: now - 1 } } });
    expect(keyRowsFromResponse("a.test", both, "a.test", now)).toMatchObject([{ key_id: key.keyId, valid_until_ts: now - 1 }]);
  });

  it("ignores unsupported algorithms", () => {
    const res = keyResponse("a.test", key, now + DAY, { verify_keys: { [key.keyId]: { key: key.publicKeyBase64 }, "curve25519:x": { key: "abc" } } });
    expect(keyRowsFromResponse("a.test", res, "a.test", now).map((r) => r.key_id)).toEqual([key.keyId]);
  });

  const other = generateSigningKey();
  const bad: [string, () => JsonObject][] = [
    ["a response about another server", () => keyResponse("b.test", key, now + DAY)],
    ["an unsigned response", () => ({ server_name: "a.test", valid_until_ts: now + DAY, verify_keys: { [key.keyId]: { key: key.publicKeyBase64 } } })],
    ["a response signed only by a key it does not list", () => signJson({ server_name: "a.test", valid_until_ts: now + DAY, verify_keys: { [key.keyId]: { key: key.publicKeyBase64 } } }, "a.test", other)],
    ["a tampered response", () => ({ ...keyResponse("a.test", key, now + DAY), valid_until_ts: now + 2 * DAY })],
    ["a response signed by another server only", () => signJson({ server_name: "a.test", valid_until_ts: now + DAY, verify_keys: { [key.keyId]: { key: key.publicKeyBase64 } } }, "b.test", key)],
    ["no valid_until_ts", () => signJson({ server_name: "a.test", verify_keys: { [key.keyId]: { key: key.publicKeyBase64 } } }, "a.test", key)],
    ["a key that is not 32 bytes", () => signJson({ server_name: "a.test", valid_until_ts: now + DAY, verify_keys: { [key.keyId]: { key: key.publicKeyBase64 }, "ed25519:short": { key: "AAAA" } } }, "a.test", key)],
    ["a malformed old key", () => keyResponse("a.test", key, now + DAY, { old_verify_keys: { "ed25519:old": { key: key.publicKeyBase64 } } })],
  ];
  for (const [what, make] of bad) {
    it(`rejects ${what}`, () => {
      expect(() => keyRowsFromResponse("a.test", make(), "a.test", now)).toThrow(KeyResponseError);
    });
  }
});

describe("KeyFetcher", () => {
  it("fetches a missing key directly, then serves it from its cache", async () => {
    const { client, fetcher, clock } = setup();
    const key = generateSigningKey();
    client.direct.set("a.test", () => keyResponse("a.test", key, clock.now + DAY));
    const doc = signJson({ a: 1 }, "a.test", key);
    await fetcher.verifySignedJson(doc, "a.test", { atTs: clock.now });
    await fetcher.verifySignedJson(doc, "a.test", { atTs: clock.now });
    expect(client.calls).toEqual(["GET a.test/_matrix/key/v2/server"]);
  });

  it("refetches a key that expired, but at most once per interval", async () => {
    const { client, fetcher, clock } = setup();
    const key = generateSigningKey();
    client.direct.set("a.test", () => keyResponse("a.test", key, clock.now + 60_000));
    const doc = signJson({ a: 1 }, "a.test", key);
    await fetcher.verifySignedJson(doc, "a.test", { atTs: clock.now });
    clock.now += 120_000;
    await fetcher.verifySignedJson(doc, "a.test", { atTs: clock.now });
    expect(client.calls).toHaveLength(2);
    // An unknown key: one fetch, then refusals without fetching for REFETCH_INTERVAL_MS.
    const stranger = generateSigningKey();
    const forged = signJson({ a: 1 }, "a.test", stranger);
    clock.now += 60_000;
    await expect(fetcher.verifySignedJson(forged, "a.test", { atTs: clock.now })).rejects.toMatchObject({ status: 401 });
    await expect(fetcher.verifySignedJson(forged, "a.test", { atTs: clock.now })).rejects.toMatchObject({ status: 401 });
    expect(client.calls).toHaveLength(3);
  });

  it("shares one fetch between concurrent verifications", async () => {
    const { client, fetcher, clock } = setup();
    const key = generateSigningKey();
    client.direct.set("a.test", () => keyResponse("a.test", key, clock.now + DAY));
    const doc = signJson({ a: 1 }, "a.test", key);
    await Promise.all([1, 2, 3].map(() => fetcher.verifySignedJson(doc, "a.test", { atTs: clock.now })));
    expect(client.calls).toHaveLength(1);
  });

  it("asks the notaries in order when the server is down, asking for keys valid until the needed time", async () => {
    const notaryKey = generateSigningKey();
    const { client, fetcher, clock } = setup([{ serverName: "down.test" }, { serverName: "n.test", verifyKeys: { [notaryKey.keyId]: notaryKey.publicKeyBase64 } }]);
    const key = generateSigningKey();
    let asked: JsonObject | undefined;
    client.notary.set("n.test", (body) => {
      asked = body;
      return { server_keys: [signJson(keyResponse("a.test", key, clock.now + DAY), "n.test", notaryKey), signJson(keyResponse("evil.test", generateSigningKey(), clock.now + DAY), "n.test", notaryKey)] };
    });
    await fetcher.verifySignedJson(signJson({ a: 1 }, "a.test", key), "a.test", { atTs: clock.now });
    expect(client.calls).toEqual(["GET a.test/_matrix/key/v2/server", "POST down.test/_matrix/key/v2/query", "POST n.test/_matrix/key/v2/query"]);
    expect(asked).toEqual({ server_keys: { "a.test": { [key.keyId]: { minimum_valid_until_ts: clock.now } } } });
    // Only what was asked about is taken.
    expect((await fetcher.getVerifyKeys("evil.test", ["ed25519:x"])).size).toBe(0);
  });

  it("refuses notary answers without the configured notary signature, or with a bad one", async () => {
    const notaryKey = generateSigningKey();
    const impostor = generateSigningKey();
    const key = generateSigningKey();
    for (const sign of [(o: JsonObject) => o, (o: JsonObject) => signJson(o, "n.test", impostor), (o: JsonObject) => ({ ...signJson(o, "n.test", notaryKey), valid_until_ts: 1 })]) {
      const { client, fetcher, clock } = setup([{ serverName: "n.test", verifyKeys: { [notaryKey.keyId]: notaryKey.publicKeyBase64 } }]);
      client.notary.set("n.test", () => ({ server_keys: [sign(keyResponse("a.test", key, clock.now + DAY))] }));
      await expect(fetcher.verifySignedJson(signJson({ a: 1 }, "a.test", key), "a.test", { atTs: clock.now })).rejects.toMatchObject({ status: 401 });
    }
    // Without configured verify_keys, the answer is taken on the server's own signature.
    const { client, fetcher, clock } = setup([{ serverName: "n.test" }]);
    client.notary.set("n.test", () => ({ server_keys: [keyResponse("a.test", key, clock.now + DAY)] }));
    await fetcher.verifySignedJson(signJson({ a: 1 }, "a.test", key), "a.test", { atTs: clock.now });
  });

  it("requires every verifiable signature of the server to be valid", async () => {
    const { client, fetcher, clock } = setup();
    const k1 = generateSigningKey();
    const k2 = generateSigningKey();
    client.direct.set("a.test", () =>
      signJson(signJson({ server_name: "a.test", valid_until_ts: clock.now + DAY, verify_keys: { [k1.keyId]: { key: k1.publicKeyBase64 }, [k2.keyId]: { key: k2.publicKeyBase64 } } }, "a.test", k1), "a.test", k2),
    );
    const doc: JsonObject = signJson(signJson({ a: 1 }, "a.test", k1), "a.test", k2);
    await fetcher.verifySignedJson(doc, "a.test", { atTs: clock.now });
    const sigs = doc.signatures as Record<string, Record<string, string>>;
    const broken = { ...doc, signatures: { "a.test": { ...sigs["a.test"], [k2.keyId]: sigs["a.test"]![k1.keyId]! } } };
    await expect(fetcher.verifySignedJson(broken, "a.test", { atTs: clock.now })).rejects.toMatchObject({ status: 401 });
  });

  it("keeps the longest validity it has seen for a key", async () => {
    const { client, fetcher, clock, store } = setup();
    const key = generateSigningKey();
    client.direct.set("a.test", () => keyResponse("a.test", key, clock.now + 3 * DAY));
    await fetcher.fetchDirect("a.test");
    client.direct.set("a.test", () => keyResponse("a.test", key, clock.now + DAY));
    await fetcher.fetchDirect("a.test");
    expect((await store.getKeys("a.test"))[0]!.valid_until_ts).toBe(clock.now + 3 * DAY);
    expect((await fetcher.getVerifyKeys("a.test", [key.keyId])).get(key.keyId)!.validUntilTs).toBe(clock.now + 3 * DAY);
  });
});

describe("KeyServer (notary)", () => {
  function notary() {
    const clock = { now: 1_700_000_000_000 };
    const store = new MemoryStore();
    const refreshed: string[] = [];
    const me = generateSigningKey();
    const remote = generateSigningKey();
    const server = new KeyServer({
      serverName: "me.test",
      signingKey: me,
      oldSigningKeys: [],
      keyRefreshIntervalMs: DAY,
      store,
      fetcher: {
        refreshFromServer: async (name) => {
          refreshed.push(name);
          await store.upsertKeys(keyRowsFromResponse(name, keyResponse(name, remote, clock.now + DAY), name, clock.now));
        },
      },
      isDomainAllowed: (name) => name !== "blocked.test",
      log,
      now: () => clock.now,
    });
    return { clock, store, refreshed, server, me, remote };
  }

  it("serves cached responses until half their lifetime, then refreshes", async () => {
    const { clock, refreshed, server } = notary();
    await server.query({ "a.test": { keyIds: {} } });
    clock.now += 0.4 * DAY;
    await server.query({ "a.test": { keyIds: {} } });
    expect(refreshed).toEqual(["a.test"]);
    clock.now += 0.2 * DAY;
    await server.query({ "a.test": { keyIds: {} } });
    expect(refreshed).toEqual(["a.test", "a.test"]);
  });

  it("refreshes when a minimum_valid_until_ts is beyond what it holds, or a key is missing", async () => {
    const { clock, refreshed, server, remote } = notary();
    await server.query({ "a.test": { keyIds: {} } });
    await server.query({ "a.test": { keyIds: { [remote.keyId]: clock.now + 0.5 * DAY } } });
    expect(refreshed).toHaveLength(1);
    await server.query({ "a.test": { keyIds: { [remote.keyId]: clock.now + 2 * DAY } } });
    expect(refreshed).toHaveLength(2);
    await server.query({ "a.test": { keyIds: {}, minimumValidUntilTs: clock.now + 2 * DAY } });
    expect(refreshed).toHaveLength(3);
    expect(await server.query({ "a.test": { keyIds: { "ed25519:unknown": undefined } } })).toEqual([]);
    expect(refreshed).toHaveLength(4);
  });

  it("adds its signature, keeps the server's, and does not contact servers outside federation_domain_whitelist", async () => {
    const { refreshed, server } = notary();
    const [answer] = await server.query({ "a.test": { keyIds: {} } });
    expect(Object.keys(answer!.signatures as object).sort()).toEqual(["a.test", "me.test"]);
    expect(await server.query({ "blocked.test": { keyIds: {} } })).toEqual([]);
    expect(refreshed).toEqual(["a.test"]);
  });

  it("answers its own keys without fetching, re-signing them after half the refresh interval", async () => {
    const { clock, refreshed, server, me } = notary();
    const first = server.ownKeys();
    expect(first).toMatchObject({ server_name: "me.test", valid_until_ts: clock.now + DAY, verify_keys: { [me.keyId]: { key: me.publicKeyBase64 } }, old_verify_keys: {} });
    clock.now += 0.4 * DAY;
    expect(server.ownKeys()).toBe(first);
    clock.now += 0.2 * DAY;
    expect(server.ownKeys().valid_until_ts).toBe(clock.now + DAY);
    expect((await server.query({ "me.test": { keyIds: {} } }))[0]!.server_name).toBe("me.test");
    expect(refreshed).toEqual([]);
  });
});
