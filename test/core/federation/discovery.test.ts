/**
 * Server name resolution, every step of the spec's algorithm, over a fake resolver, a fake `.well-known` server and
 * a fake clock: no real DNS or network.
 */
import { describe, expect, it } from "vitest";
import {
  cachePeriod,
  ServerDiscovery,
  sortSrv,
  type Resolver,
  type SrvRecord,
  type WellKnownHttpResponse,
} from "../../../src/federation/discovery.js";
import { FederationError } from "../../../src/federation/errors.js";

const HOUR = 3600_000;

class FakeNet {
  srv = new Map<string, SrvRecord[] | Error>();
  wellKnown = new Map<string, WellKnownHttpResponse | Error>();
  calls: string[] = [];
  now = 1_700_000_000_000;

  resolver: Resolver = {
    lookupSrv: async (name) => {
      this.calls.push(`SRV ${name}`);
      const r = this.srv.get(name);
      if (r instanceof Error) throw r;
      return r ?? [];
    },
    lookupHost: async () => {
      throw new Error("discovery must not resolve addresses");
    },
  };

  discovery(): ServerDiscovery {
    return new ServerDiscovery({
      resolver: this.resolver,
      fetchWellKnown: async (url) => {
        this.calls.push(`GET ${url}`);
        const r = this.wellKnown.get(url);
        if (r instanceof Error) throw r;
        return r ?? { status: 404, headers: {}, body: "" };
      },
      now: () => this.now,
    });
  }

  delegate(host: string, server: unknown, headers: Record<string, string> = {}): void {
    this.wellKnown.set(`https://${host}/.well-known/matrix/server`, { status: 200, headers, body: JSON.stringify({ "m.server": server }) });
  }
}

const srv = (name: string, port: number, priority = 10, weight = 0): SrvRecord => ({ name, port, priority, weight });
const WK = (host: string) => `GET https://${host}/.well-known/matrix/server`;

describe("resolving server names", () => {
  it("step 1: an IPv4 literal is used as is, port 8448 by default, Host = the server name, no SNI", async () => {
    const net = new FakeNet();
    const d = net.discovery();
    expect(await d.resolve("1.2.3.4")).toEqual({ serverName: "1.2.3.4", targets: [{ host: "1.2.3.4", port: 8448 }], hostHeader: "1.2.3.4", tlsServername: undefined });
    expect(await d.resolve("1.2.3.4:8000")).toEqual({ serverName: "1.2.3.4:8000", targets: [{ host: "1.2.3.4", port: 8000 }], hostHeader: "1.2.3.4:8000", tlsServername: undefined });
    expect(net.calls).toEqual([]);
  });

  it("step 1: an IPv6 literal connects without brackets and keeps them in the Host header", async () => {
    const d = new FakeNet().discovery();
    expect(await d.resolve("[2001:db8::1]:8449")).toEqual({
      serverName: "[2001:db8::1]:8449",
      targets: [{ host: "2001:db8::1", port: 8449 }],
      hostHeader: "[2001:db8::1]:8449",
      tlsServername: undefined,
    });
    expect((await d.resolve("[::1]")).targets).toEqual([{ host: "::1", port: 8448 }]);
  });

  it("step 2: a hostname with an explicit port skips .well-known and SRV; Host includes the port, SNI is the hostname", async () => {
    const net = new FakeNet();
    net.delegate("example.org", "elsewhere.example:443");
    expect(await net.discovery().resolve("example.org:8000")).toEqual({
      serverName: "example.org:8000",
      targets: [{ host: "example.org", port: 8000 }],
      hostHeader: "example.org:8000",
      tlsServername: "example.org",
    });
    expect(net.calls).toEqual([]);
  });

  it("step 3.1: .well-known delegating to an IP literal: that address, 8448 unless given, Host = the delegated name", async () => {
    const net = new FakeNet();
    net.delegate("a.example", "5.6.7.8");
    net.delegate("b.example", "5.6.7.8:9000");
    net.delegate("c.example", "[2001:db8::2]:9001");
    const d = net.discovery();
    expect(await d.resolve("a.example")).toEqual({ serverName: "a.example", targets: [{ host: "5.6.7.8", port: 8448 }], hostHeader: "5.6.7.8", tlsServername: undefined });
    expect(await d.resolve("b.example")).toMatchObject({ targets: [{ host: "5.6.7.8", port: 9000 }], hostHeader: "5.6.7.8:9000", tlsServername: undefined });
    expect(await d.resolve("c.example")).toMatchObject({ targets: [{ host: "2001:db8::2", port: 9001 }], hostHeader: "[2001:db8::2]:9001", tlsServername: undefined });
    expect(net.calls.filter((c) => c.startsWith("SRV"))).toEqual([]);
  });

  it("step 3.2: .well-known delegating to host:port: no SRV; Host = host:port, certificate for the delegated host", async () => {
    const net = new FakeNet();
    net.delegate("example.org", "matrix.example.net:443");
    net.srv.set("_matrix-fed._tcp.matrix.example.net", [srv("wrong.example", 1)]);
    expect(await net.discovery().resolve("example.org")).toEqual({
      serverName: "example.org",
      targets: [{ host: "matrix.example.net", port: 443 }],
      hostHeader: "matrix.example.net:443",
      tlsServername: "matrix.example.net",
    });
    expect(net.calls).toEqual([WK("example.org")]);
  });

  it("step 3.3: .well-known delegating to a bare host: SRV _matrix-fed._tcp of the delegated host; Host and certificate are the delegated host", async () => {
    const net = new FakeNet();
    net.delegate("example.org", "matrix.example.net");
    net.srv.set("_matrix-fed._tcp.matrix.example.net", [srv("fed1.example.net.", 8443)]);
    // SRV records of the original name no longer matter.
    net.srv.set("_matrix-fed._tcp.example.org", [srv("wrong.example", 1)]);
    expect(await net.discovery().resolve("example.org")).toEqual({
      serverName: "example.org",
      targets: [{ host: "fed1.example.net", port: 8443 }],
      hostHeader: "matrix.example.net",
      tlsServername: "matrix.example.net",
    });
    expect(net.calls).toEqual([WK("example.org"), "SRV _matrix-fed._tcp.matrix.example.net"]);
  });

  it("step 3.4: then the deprecated _matrix._tcp of the delegated host", async () => {
    const net = new FakeNet();
    net.delegate("example.org", "matrix.example.net");
    net.srv.set("_matrix._tcp.matrix.example.net", [srv("old.example.net", 8449)]);
    expect(await net.discovery().resolve("example.org")).toMatchObject({ targets: [{ host: "old.example.net", port: 8449 }], hostHeader: "matrix.example.net", tlsServername: "matrix.example.net" });
    expect(net.calls).toEqual([WK("example.org"), "SRV _matrix-fed._tcp.matrix.example.net", "SRV _matrix._tcp.matrix.example.net"]);
  });

  it("step 3.5: no SRV for the delegated host: the delegated host on 8448", async () => {
    const net = new FakeNet();
    net.delegate("example.org", "matrix.example.net");
    expect(await net.discovery().resolve("example.org")).toEqual({
      serverName: "example.org",
      targets: [{ host: "matrix.example.net", port: 8448 }],
      hostHeader: "matrix.example.net",
      tlsServername: "matrix.example.net",
    });
  });

  it("step 4: no .well-known: SRV _matrix-fed._tcp of the hostname, with Host and certificate for the hostname", async () => {
    const net = new FakeNet();
    net.srv.set("_matrix-fed._tcp.example.org", [srv("fed.example.org", 8443)]);
    expect(await net.discovery().resolve("example.org")).toEqual({
      serverName: "example.org",
      targets: [{ host: "fed.example.org", port: 8443 }],
      hostHeader: "example.org",
      tlsServername: "example.org",
    });
    expect(net.calls).toEqual([WK("example.org"), "SRV _matrix-fed._tcp.example.org"]);
  });

  it("step 5: then the deprecated _matrix._tcp of the hostname", async () => {
    const net = new FakeNet();
    net.srv.set("_matrix._tcp.example.org", [srv("legacy.example.org", 8449)]);
    expect(await net.discovery().resolve("example.org")).toMatchObject({ targets: [{ host: "legacy.example.org", port: 8449 }], hostHeader: "example.org", tlsServername: "example.org" });
    expect(net.calls).toEqual([WK("example.org"), "SRV _matrix-fed._tcp.example.org", "SRV _matrix._tcp.example.org"]);
  });

  it("step 6: nothing at all: the hostname on 8448", async () => {
    const net = new FakeNet();
    expect(await net.discovery().resolve("example.org")).toEqual({ serverName: "example.org", targets: [{ host: "example.org", port: 8448 }], hostHeader: "example.org", tlsServername: "example.org" });
  });

  it("_matrix-fed._tcp wins over _matrix._tcp when both exist", async () => {
    const net = new FakeNet();
    net.srv.set("_matrix-fed._tcp.example.org", [srv("new.example.org", 1)]);
    net.srv.set("_matrix._tcp.example.org", [srv("old.example.org", 2)]);
    expect((await net.discovery().resolve("example.org")).targets).toEqual([{ host: "new.example.org", port: 1 }]);
  });

  it("tries several SRV targets in priority order", async () => {
    const net = new FakeNet();
    net.srv.set("_matrix-fed._tcp.example.org", [srv("b.example.org", 2, 20), srv("a.example.org", 1, 10), srv("c.example.org", 3, 30)]);
    expect((await net.discovery().resolve("example.org")).targets.map((t) => t.host)).toEqual(["a.example.org", "b.example.org", "c.example.org"]);
  });

  it('an SRV record with target "." means the service is not available', async () => {
    const net = new FakeNet();
    net.srv.set("_matrix-fed._tcp.example.org", [srv(".", 0)]);
    await expect(net.discovery().resolve("example.org")).rejects.toMatchObject({ reason: "unreachable" });
  });

  it("a failing SRV lookup (not a missing record) fails the resolution rather than guessing port 8448", async () => {
    const net = new FakeNet();
    net.srv.set("_matrix-fed._tcp.example.org", Object.assign(new Error("SERVFAIL"), { code: "ESERVFAIL" }));
    await expect(net.discovery().resolve("example.org")).rejects.toBeInstanceOf(FederationError);
  });

  it("refuses names that are not server names", async () => {
    const d = new FakeNet().discovery();
    for (const bad of ["", "exa mple.org", "example.org:0", "example.org:99999", "[::1", "a/b"]) {
      await expect(d.resolve(bad)).rejects.toMatchObject({ reason: "invalid_destination" });
    }
  });
});

describe(".well-known/matrix/server", () => {
  const invalid: [string, WellKnownHttpResponse][] = [
    ["a 404", { status: 404, headers: {}, body: "" }],
    ["a 500", { status: 500, headers: {}, body: '{"m.server":"x.example"}' }],
    ["a 204", { status: 204, headers: {}, body: "" }],
    ["bad JSON", { status: 200, headers: {}, body: "{m.server: x}" }],
    ["a JSON array", { status: 200, headers: {}, body: '["x.example"]' }],
    ["no m.server", { status: 200, headers: {}, body: '{"m.homeserver":"x.example"}' }],
    ["a non-string m.server", { status: 200, headers: {}, body: '{"m.server":8448}' }],
    ["an m.server that is not a server name", { status: 200, headers: {}, body: '{"m.server":"https://x.example/"}' }],
    ["an m.server with a bad port", { status: 200, headers: {}, body: '{"m.server":"x.example:70000"}' }],
  ];
  for (const [what, response] of invalid) {
    it(`is ignored on ${what} (continue with step 4)`, async () => {
      const net = new FakeNet();
      net.wellKnown.set("https://example.org/.well-known/matrix/server", response);
      net.srv.set("_matrix-fed._tcp.example.org", [srv("fed.example.org", 8443)]);
      expect(await net.discovery().resolve("example.org")).toMatchObject({ targets: [{ host: "fed.example.org", port: 8443 }], hostHeader: "example.org" });
    });
  }

  it("ignores the Content-Type: the body is JSON whatever it says", async () => {
    const net = new FakeNet();
    net.wellKnown.set("https://example.org/.well-known/matrix/server", { status: 200, headers: { "content-type": "text/html" }, body: '{"m.server":"m.example:443"}' });
    expect((await net.discovery().resolve("example.org")).hostHeader).toBe("m.example:443");
  });

  it("follows redirects, relative ones included", async () => {
    const net = new FakeNet();
    net.wellKnown.set("https://example.org/.well-known/matrix/server", { status: 301, headers: { location: "https://www.example.org/wk" }, body: "" });
    net.wellKnown.set("https://www.example.org/wk", { status: 307, headers: { location: "/final" }, body: "" });
    net.delegate("www.example.org", "m.example:443");
    net.wellKnown.set("https://www.example.org/final", net.wellKnown.get("https://www.example.org/.well-known/matrix/server")!);
    expect((await net.discovery().resolve("example.org")).targets).toEqual([{ host: "m.example", port: 443 }]);
    expect(net.calls).toEqual([WK("example.org"), "GET https://www.example.org/wk", "GET https://www.example.org/final"]);
  });

  it("stops at a redirect loop, a downgrade to http, or too many redirects, and falls back to step 4", async () => {
    const cases: Record<string, WellKnownHttpResponse>[] = [
      {
        "https://example.org/.well-known/matrix/server": { status: 302, headers: { location: "https://b.example/x" }, body: "" },
        "https://b.example/x": { status: 302, headers: { location: "https://example.org/.well-known/matrix/server" }, body: "" },
      },
      { "https://example.org/.well-known/matrix/server": { status: 301, headers: { location: "http://example.org/.well-known/matrix/server" }, body: "" } },
      Object.fromEntries(Array.from({ length: 10 }, (_, i) => [i === 0 ? "https://example.org/.well-known/matrix/server" : `https://example.org/${i}`, { status: 302, headers: { location: `/${i + 1}` }, body: "" }])),
    ];
    for (const responses of cases) {
      const net = new FakeNet();
      for (const [url, r] of Object.entries(responses)) net.wellKnown.set(url, r);
      net.wellKnown.set("https://example.org/7", { status: 200, headers: {}, body: '{"m.server":"too.far:1"}' });
      expect((await net.discovery().resolve("example.org")).targets).toEqual([{ host: "example.org", port: 8448 }]);
      expect(net.calls.filter((c) => c.startsWith("GET")).length).toBeLessThanOrEqual(6);
    }
  });

  it("caches a response 24 hours by default, refreshing it in the last fifth of its life", async () => {
    const net = new FakeNet();
    net.delegate("example.org", "m.example:443");
    const d = net.discovery();
    await d.resolve("example.org");
    net.now += 19 * HOUR;
    await d.resolve("example.org");
    expect(net.calls.filter((c) => c.startsWith("GET"))).toHaveLength(1);
    net.now += 1 * HOUR; // 20h: within the last 20% of 24h
    await d.resolve("example.org");
    expect(net.calls.filter((c) => c.startsWith("GET"))).toHaveLength(2);
  });

  it("respects Cache-Control max-age, capped at 48 hours and floored at 5 minutes; no-store is not cached", async () => {
    for (const [header, fresh, stale] of [
      ["max-age=3600", 0.79 * HOUR, 0.81 * HOUR],
      ["public, max-age=10000000", 38 * HOUR, 39 * HOUR],
      ["max-age=1", 3 * 60_000, 5 * 60_000],
    ] as const) {
      const net = new FakeNet();
      net.delegate("example.org", "m.example:443", { "cache-control": header });
      const d = net.discovery();
      await d.resolve("example.org");
      const start = net.now;
      net.now = start + fresh;
      await d.resolve("example.org");
      expect(net.calls.filter((c) => c.startsWith("GET")), header).toHaveLength(1);
      net.now = start + stale;
      await d.resolve("example.org");
      expect(net.calls.filter((c) => c.startsWith("GET")), header).toHaveLength(2);
    }
    const net = new FakeNet();
    net.delegate("example.org", "m.example:443", { "cache-control": "no-store" });
    const d = net.discovery();
    await d.resolve("example.org");
    await d.resolve("example.org");
    expect(net.calls.filter((c) => c.startsWith("GET"))).toHaveLength(2);
  });

  it("caches errors, backing off exponentially from 5 minutes up to an hour", async () => {
    const net = new FakeNet();
    const d = net.discovery();
    const gets = () => net.calls.filter((c) => c.startsWith("GET")).length;
    let expected = 0;
    for (const minutes of [5, 10, 20, 40, 60, 60]) {
      await d.resolve("example.org");
      expect(gets()).toBe(++expected);
      net.now += 0.79 * minutes * 60_000;
      await d.resolve("example.org");
      expect(gets(), `cached for ${minutes} minutes`).toBe(expected);
      net.now += 0.21 * minutes * 60_000 + 1;
    }
    // A success resets the backoff.
    net.delegate("example.org", "m.example:443");
    expect((await d.resolve("example.org")).hostHeader).toBe("m.example:443");
  });

  it("keeps a still-valid result when a refresh fails temporarily (network error or 5xx), but not after a 404", async () => {
    const net = new FakeNet();
    net.delegate("example.org", "m.example:443");
    const d = net.discovery();
    await d.resolve("example.org");
    net.now += 21 * HOUR;
    net.wellKnown.set("https://example.org/.well-known/matrix/server", new Error("ECONNREFUSED"));
    expect((await d.resolve("example.org")).hostHeader).toBe("m.example:443");
    net.wellKnown.set("https://example.org/.well-known/matrix/server", { status: 503, headers: {}, body: "" });
    expect((await d.resolve("example.org")).hostHeader).toBe("m.example:443");
    net.wellKnown.set("https://example.org/.well-known/matrix/server", { status: 404, headers: {}, body: "" });
    expect((await d.resolve("example.org")).hostHeader).toBe("example.org");
  });

  it("shares one request between concurrent lookups", async () => {
    const net = new FakeNet();
    net.delegate("example.org", "m.example:443");
    const d = net.discovery();
    await Promise.all([d.resolve("example.org"), d.resolve("example.org"), d.resolve("example.org")]);
    expect(net.calls.filter((c) => c.startsWith("GET"))).toHaveLength(1);
  });
});

describe("cachePeriod", () => {
  const now = Date.parse("2025-01-01T00:00:00Z");
  it("reads Expires when there is no max-age, and treats an invalid date as expired (then floored)", () => {
    expect(cachePeriod({ expires: "Wed, 01 Jan 2025 10:00:00 GMT" }, now)).toBe(10 * HOUR);
    expect(cachePeriod({ expires: "0" }, now)).toBe(5 * 60_000);
    expect(cachePeriod({ "cache-control": "max-age=7200", expires: "Wed, 01 Jan 2025 10:00:00 GMT" }, now)).toBe(2 * HOUR);
    expect(cachePeriod({}, now)).toBe(24 * HOUR);
    expect(cachePeriod({ "cache-control": "No-Store" }, now)).toBe(0);
  });
});

describe("sortSrv", () => {
  it("orders by priority, then picks by weight", () => {
    const records = [srv("low-weight", 1, 5, 1), srv("later", 1, 9, 100), srv("high-weight", 1, 5, 99)];
    // random() = 0.5 of total weight 100 lands in the 99-weight record.
    expect(sortSrv(records, () => 0.5).map((r) => r.name)).toEqual(["high-weight", "low-weight", "later"]);
    expect(sortSrv(records, () => 0).map((r) => r.name)).toEqual(["low-weight", "high-weight", "later"]);
  });
});
