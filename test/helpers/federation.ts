/**
 * A pretend network for federation tests: server names like `hs1.test` resolve (through the injected Resolver and
 * `.well-known` fetcher) to test servers' TLS listeners on 127.0.0.1, so several Myelin servers federate without
 * real DNS. Each server may get its own view, with some names unreachable, to test notaries and failures.
 */
import type { FastifyInstance } from "fastify";
import { defineFederationRoute } from "../../src/api/federation/auth.js";
import type { Resolver, SrvRecord, WellKnownFetcher, WellKnownHttpResponse } from "../../src/federation/discovery.js";
import type { FederationDeps } from "../../src/server.js";
import type { Services } from "../../src/services/services.js";
import { Client } from "./http.js";
import { startTestServer, type StartOptions, type TestServer } from "./server.js";

function notFound(name: string): Error {
  return Object.assign(new Error(`getaddrinfo ENOTFOUND ${name}`), { code: "ENOTFOUND" });
}

export class TestNetwork {
  /** Host name → addresses. */
  readonly hosts = new Map<string, string[]>();
  /** SRV name (`_matrix-fed._tcp.hs1.test`) → records. */
  readonly srv = new Map<string, SrvRecord[]>();
  /** `.well-known` URL → response; anything else answers 404. */
  readonly wellKnown = new Map<string, WellKnownHttpResponse>();
  /** Every name looked up, in order (hosts as `A name`, SRV as `SRV name`, .well-known as `GET url`). */
  readonly log: string[] = [];

  /** The resolver and `.well-known` fetcher as seen by one server; `unreachable` names do not resolve for it. */
  deps(unreachable: readonly string[] = []): FederationDeps {
    const hidden = (name: string) => unreachable.some((u) => name === u || name.endsWith(`.${u}`));
    const resolver: Resolver = {
      lookupSrv: async (name) => {
        this.log.push(`SRV ${name}`);
        return hidden(name) ? [] : (this.srv.get(name) ?? []);
      },
      lookupHost: async (name) => {
        this.log.push(`A ${name}`);
        const found = hidden(name) ? undefined : this.hosts.get(name);
        if (!found) throw notFound(name);
        return found;
      },
    };
    const wellKnownFetcher: WellKnownFetcher = async (url) => {
      this.log.push(`GET ${url}`);
      const host = new URL(url).hostname;
      if (hidden(host) || !this.hosts.has(host)) throw notFound(host);
      return this.wellKnown.get(url) ?? { status: 404, headers: {}, body: '{"errcode":"M_NOT_FOUND"}' };
    };
    return { resolver, wellKnownFetcher };
  }

  /** Makes `name` resolve to 127.0.0.1 with its federation port given by SRV `_matrix-fed._tcp.<name>`. */
  register(name: string, port: number): void {
    this.hosts.set(name, ["127.0.0.1"]);
    this.srv.set(`_matrix-fed._tcp.${name}`, [{ name, port, priority: 10, weight: 5 }]);
  }
}

/** A federation endpoint for tests: echoes the authenticated origin, the request target and the body. */
export function testRoutes(app: FastifyInstance, services: Services): void {
  defineFederationRoute(app, services, {
    method: ["GET", "PUT", "POST"],
    paths: ["/_matrix/federation/v1/_test/echo"],
    handler: ({ origin, body, req }) => ({ origin, uri: req.raw.url, content: body }),
  });
}

export interface FederatedServerOptions extends StartOptions {
  /** Names this server cannot reach. */
  unreachable?: string[];
}

/**
 * Starts a server named `name` with a TLS federation listener, registered in the network. Between test servers
 * certificates are self-signed, so `federation_verify_certificates: false`; 127.0.0.0/8 is whitelisted; no notary
 * unless the test configures one.
 */
export async function startFederatedServer(network: TestNetwork, name: string, opts: FederatedServerOptions = {}): Promise<TestServer> {
  const server = await startTestServer({
    ...opts,
    serverName: name,
    tls: true,
    server: { federation: network.deps(opts.unreachable), routes: testRoutes, ...opts.server },
    config: {
      federation_verify_certificates: false,
      ip_range_whitelist: ["127.0.0.0/8"],
      trusted_key_servers: [],
      ...opts.config,
    },
  });
  network.register(name, server.tlsPort!);
  return server;
}

export interface ServerPair {
  network: TestNetwork;
  hs1: TestServer;
  hs2: TestServer;
  c1: Client;
  c2: Client;
}

/** The usual two-server setup: hs1.test and hs2.test on one pretend network, with a client for each. */
export async function startServerPair(opts: { hs1?: FederatedServerOptions; hs2?: FederatedServerOptions } = {}): Promise<ServerPair> {
  const network = new TestNetwork();
  const hs1 = await startFederatedServer(network, "hs1.test", opts.hs1);
  const hs2 = await startFederatedServer(network, "hs2.test", opts.hs2);
  return { network, hs1, hs2, c1: new Client(hs1.baseUrl), c2: new Client(hs2.baseUrl) };
}
