/**
 * The outbound client's transport rules against real listeners on 127.0.0.1: certificate verification, IP range
 * blocking, typed errors for error answers, oversized answers and timeouts, and `.well-known` delegation.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:https";
import type { TLSSocket } from "node:tls";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateSigningKey } from "../../src/core/crypto/ed25519.js";
import { FederationClient } from "../../src/federation/client.js";
import { ServerDiscovery } from "../../src/federation/discovery.js";
import { FederationError } from "../../src/federation/errors.js";
import { DEFAULT_IP_RANGE_BLACKLIST, IpRangeFilter } from "../../src/federation/ip_filter.js";
import { Transport, wellKnownFetcher } from "../../src/federation/transport.js";
import { startFederatedServer, TestNetwork } from "../helpers/federation.js";
import type { TestServer } from "../helpers/server.js";
import { selfSignedCertificate } from "../helpers/tls.js";

/** An endpoint that needs no authentication: the client under test signs as tester.test, which nobody can verify. */
const KEYS = "/_matrix/key/v2/server";
let network: TestNetwork;
let hs1: TestServer;
let dir: string;
let silent: Server;
/** A TLS server that records the SNI and Host of each request. */
let recorder: Server;
let recorderPort = 0;
const seen: { servername: string | false | null | undefined; host: string | undefined }[] = [];

beforeAll(async () => {
  network = new TestNetwork();
  // Its TLS listener also serves the client resource, which carries /.well-known (as in Synapse).
  hs1 = await startFederatedServer(network, "hs1.test", {
    tlsResources: ["federation", "keys", "client"],
    config: { serve_server_wellknown: true, public_baseurl: "https://hs1.test/" },
  });
  // A TLS server that accepts connections and never answers.
  dir = mkdtempSync(join(tmpdir(), "myelin-tls-"));
  const { certPath, keyPath } = selfSignedCertificate(dir, ["silent.test", "127.0.0.1"]);
  silent = createServer({ cert: readFileSync(certPath), key: readFileSync(keyPath) }, () => {});
  await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
  const addr = silent.address();
  network.register("silent.test", typeof addr === "object" && addr ? addr.port : 0);
  const other = selfSignedCertificate(mkdtempSync(join(dir, "r-")), ["sni.test", "127.0.0.1"]);
  recorder = createServer({ cert: readFileSync(other.certPath), key: readFileSync(other.keyPath) }, (req, res) => {
    seen.push({ servername: (req.socket as TLSSocket).servername, host: req.headers.host });
    res.setHeader("content-type", "application/json");
    res.end("{}");
  });
  await new Promise<void>((resolve) => recorder.listen(0, "127.0.0.1", resolve));
  const raddr = recorder.address();
  recorderPort = typeof raddr === "object" && raddr ? raddr.port : 0;
  network.register("sni.test", recorderPort);
});

afterAll(async () => {
  for (const s of [silent, recorder]) {
    s?.closeAllConnections();
    await new Promise((r) => s?.close(r));
  }
  await hs1?.close();
  rmSync(dir, { recursive: true, force: true });
});

interface ClientOptions {
  verifyCertificates?: boolean;
  blacklist?: readonly string[];
  whitelist?: string[];
}

/** A federation client for server "tester.test" over the test network. */
function client(opts: ClientOptions = {}): FederationClient {
  const deps = network.deps();
  const transport = new Transport({
    resolver: deps.resolver!,
    ipFilter: new IpRangeFilter(opts.blacklist ?? DEFAULT_IP_RANGE_BLACKLIST, opts.whitelist ?? ["127.0.0.0/8"]),
    verifyCertificates: opts.verifyCertificates ?? false,
  });
  const discovery = new ServerDiscovery({ resolver: deps.resolver!, fetchWellKnown: deps.wellKnownFetcher! });
  return new FederationClient({ serverName: "tester.test", signingKey: generateSigningKey(), discovery, transport });
}

async function failure(p: Promise<unknown>): Promise<FederationError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(FederationError);
    return e as FederationError;
  }
  throw new Error("expected a FederationError");
}

describe("TLS", () => {
  it("talks HTTPS to the TLS listener when verification is off", async () => {
    const c = client();
    expect(await c.get("hs1.test", KEYS)).toMatchObject({ server_name: "hs1.test" });
    c.close();
  });

  it("rejects the self-signed certificate when verification is on (the default)", async () => {
    const c = client({ verifyCertificates: true });
    const err = await failure(c.get("hs1.test", "/_matrix/federation/v1/version"));
    expect(err.reason).toBe("tls");
    c.close();
  });
});

describe("IP ranges", () => {
  it("refuses a destination resolving to a loopback address unless whitelisted", async () => {
    const c = client({ whitelist: [] });
    const err = await failure(c.get("hs1.test", "/_matrix/federation/v1/version"));
    expect(err.reason).toBe("blocked");
    c.close();
  });

  it("refuses IP literal server names in blocked ranges too, and never connects (a refused port would say unreachable)", async () => {
    const c = client({ whitelist: [] });
    expect((await failure(c.get("127.0.0.1:1", "/_matrix/federation/v1/version"))).reason).toBe("blocked");
    expect((await failure(c.get("[::1]:1", "/_matrix/federation/v1/version"))).reason).toBe("blocked");
    expect((await failure(c.get("10.0.0.1:1", "/_matrix/federation/v1/version"))).reason).toBe("blocked");
    c.close();
  });

  it("follows the configured blacklist rather than the default", async () => {
    const c = client({ blacklist: ["10.0.0.0/8"], whitelist: [] });
    expect(await c.get("hs1.test", KEYS)).toMatchObject({ server_name: "hs1.test" });
    c.close();
  });

  it("a server started without ip_range_whitelist cannot reach its peers on 127.0.0.1", async () => {
    const hs = await startFederatedServer(network, "strict.test", { config: { ip_range_whitelist: [] } });
    try {
      await expect(hs.server.services.federationClient.get("hs1.test", "/_matrix/key/v2/server")).rejects.toMatchObject({ reason: "blocked" });
    } finally {
      await hs.close();
    }
  });
});

describe("errors", () => {
  it("an error answer is reason http, with status and errcode", async () => {
    const c = client();
    const err = await failure(c.get("hs1.test", "/_matrix/federation/v1/no_such_endpoint"));
    expect(err).toMatchObject({ reason: "http", status: 404, errcode: "M_UNRECOGNIZED" });
    // hs1 cannot get tester.test's keys (the name does not resolve): 401.
    expect(await failure(c.get("hs1.test", "/_matrix/federation/v1/_test/echo"))).toMatchObject({ reason: "http", status: 401, errcode: "M_UNAUTHORIZED" });
    c.close();
  });

  it("an answer larger than the cap is reason invalid_response", async () => {
    const c = client();
    expect((await failure(c.get("hs1.test", "/_matrix/key/v2/server", undefined, { maxResponseBytes: 64 }))).reason).toBe("invalid_response");
    c.close();
  });

  it("no answer in time is reason timeout", async () => {
    const c = client();
    const started = Date.now();
    expect((await failure(c.get("silent.test", "/_matrix/federation/v1/version", undefined, { timeoutMs: 300 }))).reason).toBe("timeout");
    expect(Date.now() - started).toBeLessThan(5000);
    c.close();
  });

  it("an unknown name or a closed port is reason unreachable; a bad name invalid_destination", async () => {
    const c = client();
    expect((await failure(c.get("nowhere.test", "/_matrix/federation/v1/version"))).reason).toBe("unreachable");
    network.hosts.set("closed.test", ["127.0.0.1"]);
    network.srv.set("_matrix-fed._tcp.closed.test", [{ name: "closed.test", port: 1, priority: 0, weight: 0 }]);
    expect((await failure(c.get("closed.test", "/_matrix/federation/v1/version"))).reason).toBe("unreachable");
    expect((await failure(c.get("bad name", "/_matrix/federation/v1/version"))).reason).toBe("invalid_destination");
    c.close();
  });

  it("tries the next SRV target when one refuses the connection", async () => {
    network.hosts.set("multi.test", ["127.0.0.1"]);
    network.srv.set("_matrix-fed._tcp.multi.test", [
      { name: "multi.test", port: 1, priority: 0, weight: 0 },
      { name: "multi.test", port: hs1.tlsPort!, priority: 1, weight: 0 },
    ]);
    const c = client();
    expect(await c.get("multi.test", KEYS)).toMatchObject({ server_name: "hs1.test" });
    c.close();
  });
});

describe("SNI and Host", () => {
  it("sends the SNI and Host that discovery chose, and no SNI for IP addresses", async () => {
    network.hosts.set("deleg.test", ["127.0.0.1"]);
    network.wellKnown.set("https://deleg.test/.well-known/matrix/server", { status: 200, headers: {}, body: JSON.stringify({ "m.server": `sni.test:${recorderPort}` }) });
    const c = client();
    seen.length = 0;
    await c.get("sni.test", KEYS); // SRV: Host and certificate for the server name
    await c.get(`127.0.0.1:${recorderPort}`, KEYS); // IP literal: no SNI, Host with the port
    await c.get("deleg.test", KEYS); // .well-known with a port: the delegated host:port
    expect(seen).toEqual([
      { servername: "sni.test", host: "sni.test" },
      { servername: false, host: `127.0.0.1:${recorderPort}` },
      { servername: "sni.test", host: `sni.test:${recorderPort}` },
    ]);
    c.close();
  });
});

describe(".well-known delegation", () => {
  it("reaches a server delegated with .well-known (no SRV)", async () => {
    network.hosts.set("delegating.test", ["127.0.0.1"]);
    network.wellKnown.set("https://delegating.test/.well-known/matrix/server", { status: 200, headers: {}, body: JSON.stringify({ "m.server": `hs1.test:${hs1.tlsPort}` }) });
    const c = client();
    expect(await c.get("delegating.test", KEYS)).toMatchObject({ server_name: "hs1.test" });
    expect(network.log).toContain("GET https://delegating.test/.well-known/matrix/server");
    c.close();
  });

  it("the production fetcher reads a Myelin's /.well-known/matrix/server over HTTPS, with the transport's rules", async () => {
    const deps = network.deps();
    const transport = new Transport({ resolver: deps.resolver!, ipFilter: new IpRangeFilter(DEFAULT_IP_RANGE_BLACKLIST, ["127.0.0.0/8"]), verifyCertificates: false });
    const res = await wellKnownFetcher(transport)(`https://hs1.test:${hs1.tlsPort}/.well-known/matrix/server`);
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toEqual({ "m.server": "hs1.test:443" });
    await expect(wellKnownFetcher(transport)(`http://hs1.test:${hs1.tlsPort}/.well-known/matrix/server`)).rejects.toThrow();
    const strict = new Transport({ resolver: deps.resolver!, ipFilter: new IpRangeFilter(DEFAULT_IP_RANGE_BLACKLIST), verifyCertificates: false });
    await expect(wellKnownFetcher(strict)(`https://hs1.test:${hs1.tlsPort}/.well-known/matrix/server`)).rejects.toMatchObject({ reason: "blocked" });
    transport.close();
    strict.close();
  });
});
