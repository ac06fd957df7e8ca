/**
 * Which certificates outbound HTTPS trusts, with real TLS on 127.0.0.1 and a test CA, as Synapse decides it:
 *  - `federation_custom_ca_list` replaces the system store for federation: a certificate issued by a listed CA is
 *    accepted, one issued by another CA (or self-signed) is not, and the name must still match;
 *  - `federation_certificate_verification_whitelist` (globs) skips verification for matching host names only;
 *  - `use_insecure_ssl_client_just_for_testing_do_not_use` turns verification off for the non-federation client
 *    (push gateways), which otherwise verifies against the system store and ignores the federation CA list;
 *  - the config keys reach both clients: two servers with CA-issued certificates federate with verification on.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config/config.js";
import { ConfigError } from "../../src/config/reader.js";
import { generateSigningKey } from "../../src/core/crypto/ed25519.js";
import { FederationClient } from "../../src/federation/client.js";
import { ServerDiscovery } from "../../src/federation/discovery.js";
import { FederationError } from "../../src/federation/errors.js";
import { DEFAULT_IP_RANGE_BLACKLIST, IpRangeFilter } from "../../src/federation/ip_filter.js";
import { hostGlobMatcher, loadCaCertificates, Transport, type TransportOptions } from "../../src/federation/transport.js";
import { OutboundError, OutboundHttp } from "../../src/outbound/http_client.js";
import { startFederatedServer, TestNetwork } from "../helpers/federation.js";
import { Client, expectError, registerUser } from "../helpers/http.js";
import { poll, send, V3, type Json } from "../helpers/rooms.js";
import { baseYaml, type TestServer } from "../helpers/server.js";
import { selfSignedCertificate, testCertificateAuthority, type CertificateAuthority } from "../helpers/tls.js";

const KEYS = "/_matrix/key/v2/server";
let dir: string;
let ca: CertificateAuthority;
let rogue: CertificateAuthority;
let network: TestNetwork;
let hs1: TestServer;
const servers: TestServer[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "myelin-ca-"));
  ca = testCertificateAuthority(mkdtempSync(join(dir, "ca-")));
  rogue = testCertificateAuthority(mkdtempSync(join(dir, "rogue-")), "Rogue CA");
  network = new TestNetwork();
  hs1 = await startFederatedServer(network, "hs1.test", {
    tlsCertificate: ca.issue(dir, ["hs1.test", "127.0.0.1"]),
    config: { federation_verify_certificates: true, federation_custom_ca_list: [ca.certPath] },
  });
  servers.push(hs1);
  // A name the certificate does not cover, pointing at the same listener.
  network.register("elsewhere.test", hs1.tlsPort!);
});

afterAll(async () => {
  for (const s of servers) await s.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A federation client of "tester.test" over the test network, with the given certificate rules. */
function client(opts: Partial<TransportOptions>): FederationClient {
  const deps = network.deps();
  const transport = new Transport({
    resolver: deps.resolver!,
    ipFilter: new IpRangeFilter(DEFAULT_IP_RANGE_BLACKLIST, ["127.0.0.0/8"]),
    verifyCertificates: true,
    ...opts,
  });
  const discovery = new ServerDiscovery({ resolver: deps.resolver!, fetchWellKnown: deps.wellKnownFetcher! });
  return new FederationClient({ serverName: "tester.test", signingKey: generateSigningKey(), discovery, transport });
}

async function tlsFailure(p: Promise<unknown>): Promise<FederationError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(FederationError);
  expect((err as FederationError).reason).toBe("tls");
  return err as FederationError;
}

describe("federation_custom_ca_list", () => {
  it("trusts a certificate issued by a listed CA", async () => {
    const c = client({ customCas: loadCaCertificates([ca.certPath]) });
    expect(await c.get("hs1.test", KEYS)).toMatchObject({ server_name: "hs1.test" });
    c.close();
  });

  it("without the list, the same certificate is refused (the test CA is in no system store)", async () => {
    const c = client({});
    await tlsFailure(c.get("hs1.test", KEYS));
    c.close();
  });

  it("replaces the trusted CAs: a list naming only another CA refuses it", async () => {
    const c = client({ customCas: loadCaCertificates([rogue.certPath]) });
    await tlsFailure(c.get("hs1.test", KEYS));
    c.close();
  });

  it("still checks the name: a listed CA's certificate for hs1.test is refused for elsewhere.test", async () => {
    const c = client({ customCas: loadCaCertificates([ca.certPath]) });
    const err = await tlsFailure(c.get("elsewhere.test", KEYS));
    expect(err.message).toMatch(/elsewhere\.test|altnames|Hostname/i);
    c.close();
  });

  it("reads every certificate of every file, and refuses files without one", () => {
    const both = join(dir, "both.pem");
    writeFileSync(both, readFileSync(rogue.certPath, "utf8") + readFileSync(ca.certPath, "utf8"));
    expect(loadCaCertificates([both])).toHaveLength(2);
    const junk = join(dir, "junk.pem");
    writeFileSync(junk, "not a certificate\n");
    expect(() => loadCaCertificates([junk])).toThrow(ConfigError);
    expect(() => loadCaCertificates([join(dir, "missing.pem")])).toThrow(ConfigError);
  });

  it("config: paths resolve against the config directory; an empty list is an error, as in Synapse", () => {
    const yaml = baseYaml("cfg.test", dir, { name: "sqlite3", args: { database: ":memory:" } });
    const { config, warnings } = parseConfig(
      {
        ...yaml,
        federation_custom_ca_list: ["ca.pem", "/abs/other.pem"],
        federation_certificate_verification_whitelist: ["*.onion", "lon.example.com"],
        use_insecure_ssl_client_just_for_testing_do_not_use: true,
      },
      "/etc/myelin",
    );
    expect(warnings).toEqual([]);
    expect(config.federationCustomCaList).toEqual(["/etc/myelin/ca.pem", "/abs/other.pem"]);
    expect(config.federationCertificateVerificationWhitelist).toEqual(["*.onion", "lon.example.com"]);
    expect(config.useInsecureSslClientJustForTesting).toBe(true);
    const defaults = parseConfig(yaml, "/etc/myelin").config;
    expect(defaults.federationCustomCaList).toBeUndefined();
    expect(defaults.federationCertificateVerificationWhitelist).toEqual([]);
    expect(defaults.useInsecureSslClientJustForTesting).toBe(false);
    expect(() => parseConfig({ ...yaml, federation_custom_ca_list: [] }, "/etc/myelin")).toThrow(/without any certificate files/);
    expect(() => parseConfig({ ...yaml, federation_certificate_verification_whitelist: ["bücher.example"] }, "/etc/myelin")).toThrow(ConfigError);
  });
});

describe("federation_certificate_verification_whitelist", () => {
  it("globs match whole host names, case-insensitively; * and ? are the only wildcards", () => {
    const m = hostGlobMatcher(["*.onion", "lon.example.com", "hs?.test"]);
    expect(m("abc.onion")).toBe(true);
    expect(m("LON.example.COM")).toBe(true);
    expect(m("hs1.test")).toBe(true);
    expect(m("hs10.test")).toBe(false);
    expect(m("lon.example.com.evil")).toBe(false);
    expect(m("lonXexample.com")).toBe(false);
    expect(m("onion")).toBe(false);
  });

  it("skips verification for a matching host only", async () => {
    const c = client({ verificationWhitelist: ["HS?.test"] });
    expect(await c.get("hs1.test", KEYS)).toMatchObject({ server_name: "hs1.test" });
    const other = client({ verificationWhitelist: ["other.test"] });
    await tlsFailure(other.get("hs1.test", KEYS));
    c.close();
    other.close();
  });
});

describe("between two servers", () => {
  it("with the CA listed on both sides and verification on, a remote join and messages work", async () => {
    const hs2 = await startFederatedServer(network, "hs2.test", {
      tlsCertificate: ca.issue(dir, ["hs2.test", "127.0.0.1"]),
      config: { federation_verify_certificates: true, federation_custom_ca_list: [ca.certPath] },
    });
    servers.push(hs2);
    const c1 = new Client(hs1.baseUrl);
    const c2 = new Client(hs2.baseUrl);
    const alice = await registerUser(c1);
    const bob = await registerUser(c2);
    const created = await c1.post(`${V3}/createRoom`, { preset: "public_chat" }, { token: alice.accessToken });
    expect(created.status, created.text).toBe(200);
    const roomId = created.body.room_id as string;
    const joined = await c2.post(`${V3}/join/${encodeURIComponent(roomId)}?server_name=hs1.test`, {}, { token: bob.accessToken });
    expect(joined.status, joined.text).toBe(200);
    await send(c1, alice, roomId, { msgtype: "m.text", body: "over verified TLS" });
    await poll(async () => {
      const r = await c2.get<{ chunk: Json[] }>(`${V3}/rooms/${encodeURIComponent(roomId)}/messages?dir=b&limit=10`, { token: bob.accessToken });
      return r.body.chunk?.some((e) => (e.content as Json | undefined)?.body === "over verified TLS") ? true : undefined;
    });
  });

  it("a server verifying without the CA cannot reach hs1: 502 M_UNKNOWN naming the TLS failure", async () => {
    const hs3 = await startFederatedServer(network, "hs3.test", {
      tlsCertificate: ca.issue(dir, ["hs3.test", "127.0.0.1"]),
      config: { federation_verify_certificates: true },
    });
    servers.push(hs3);
    const c3 = new Client(hs3.baseUrl);
    const carol = await registerUser(c3);
    const res = await c3.get(`${V3}/profile/${encodeURIComponent("@nobody:hs1.test")}`, { token: carol.accessToken });
    const body = expectError(res, 502, "M_UNKNOWN");
    expect(String(body.error)).toMatch(/TLS/);
  });
});

/** An HTTPS push gateway on 127.0.0.1 that records the notify requests it gets. */
async function httpsGateway(cert: { certPath: string; keyPath: string }): Promise<{ server: Server; url: string; received: Json[] }> {
  const received: Json[] = [];
  const server = createServer({ cert: readFileSync(cert.certPath), key: readFileSync(cert.keyPath) }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      received.push(JSON.parse(Buffer.concat(chunks).toString("utf8")) as Json);
      res.writeHead(200, { "content-type": "application/json" }).end('{"rejected":[]}');
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { server, url: `https://127.0.0.1:${(server.address() as AddressInfo).port}/_matrix/push/v1/notify`, received };
}

describe("the non-federation client (push gateways)", () => {
  it("verifies against the system store by default, and ignores the federation CA list", async () => {
    const gw = await httpsGateway(ca.issue(dir, ["127.0.0.1"]));
    try {
      const http = new OutboundHttp({ resolver: network.deps().resolver!, ipFilter: new IpRangeFilter(DEFAULT_IP_RANGE_BLACKLIST, ["127.0.0.0/8"]) });
      const err = await http.request(gw.url, { method: "POST", body: Buffer.from("{}"), timeoutMs: 5000, maxResponseBytes: 1024 }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(OutboundError);
      expect((err as Error).message).toMatch(/certificate/i);
      expect(gw.received).toHaveLength(0);
      http.close();
    } finally {
      gw.server.close();
    }
  });

  it("use_insecure_ssl_client_just_for_testing_do_not_use: a self-signed push gateway gets the notification", async () => {
    const gw = await httpsGateway(selfSignedCertificate(mkdtempSync(join(dir, "gw-")), ["127.0.0.1"]));
    try {
      const hs4 = await startFederatedServer(network, "hs4.test", { config: { use_insecure_ssl_client_just_for_testing_do_not_use: true } });
      servers.push(hs4);
      const c4 = new Client(hs4.baseUrl);
      const owner = await registerUser(c4);
      const target = await registerUser(c4);
      const set = await c4.post(
        `${V3}/pushers/set`,
        { kind: "http", app_id: "org.example.tls", app_display_name: "T", device_display_name: "D", pushkey: "tls-key", lang: "en", data: { url: gw.url } },
        { token: target.accessToken },
      );
      expect(set.status, set.text).toBe(200);
      const room = await c4.post(`${V3}/createRoom`, { preset: "trusted_private_chat", invite: [target.userId], is_direct: true }, { token: owner.accessToken });
      expect(room.status, room.text).toBe(200);
      await poll(async () => (gw.received.length > 0 ? true : undefined));
      expect(gw.received[0]).toMatchObject({ notification: { room_id: room.body.room_id } });
    } finally {
      gw.server.close();
    }
  });
});
