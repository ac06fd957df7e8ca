/**
 * Server name resolution (server-server API, "Resolving server names"): from a server name to where to connect, the
 * `Host` header to send, and the name the certificate must be valid for (our TLS SNI). Every DNS query and the
 * `/.well-known/matrix/server` fetch go through injected functions, so tests map names to 127.0.0.1 and never touch
 * real DNS; production uses node:dns and the HTTPS transport (transport.ts).
 */
import { promises as dns } from "node:dns";
import { isIP } from "node:net";
import { CacheRegistry, ENTRY_BYTES, STRING_BYTES, type Cache } from "../util/cache.js";
import { parseServerName } from "../core/ids/ids.js";
import { FederationError } from "./errors.js";

export interface SrvRecord {
  name: string;
  port: number;
  priority: number;
  weight: number;
}

/** DNS, as discovery and the transport need it. */
export interface Resolver {
  /** SRV records for a name; `[]` when the name has none. Throws on DNS failures other than "no such record". */
  lookupSrv(name: string): Promise<SrvRecord[]>;
  /** IP addresses for a host name (CNAME, AAAA and A records). Throws when there are none. */
  lookupHost(name: string): Promise<string[]>;
}

/** DNS answers that mean "there is no such record", as opposed to "DNS failed". */
const NO_RECORDS = new Set(["ENODATA", "ENOTFOUND", "ENOTIMP", "EBADNAME", "ENONAME"]);

/** The system's DNS: SRV through the configured DNS servers, hosts through getaddrinfo (so /etc/hosts applies). */
export const systemResolver: Resolver = {
  async lookupSrv(name) {
    try {
      return await dns.resolveSrv(name);
    } catch (e) {
      if (NO_RECORDS.has((e as NodeJS.ErrnoException).code ?? "")) return [];
      throw e;
    }
  },
  async lookupHost(name) {
    const found = await dns.lookup(name, { all: true, verbatim: true });
    return found.map((a) => a.address);
  },
};

export interface WellKnownHttpResponse {
  status: number;
  /** Lower-case header names. */
  headers: Record<string, string | undefined>;
  body: string;
}

/**
 * One HTTPS GET of a URL, without following redirects (discovery follows them itself, to detect loops). Throws on
 * network failures; any HTTP status is a response.
 */
export type WellKnownFetcher = (url: string) => Promise<WellKnownHttpResponse>;

export interface ServerTarget {
  /** An IP address (IPv6 without brackets) or a DNS name to resolve with `lookupHost`. */
  host: string;
  port: number;
}

export interface ResolvedServer {
  serverName: string;
  /** Where to connect, in the order to try them (several only for SRV records). */
  targets: ServerTarget[];
  /** The `Host` header for requests. */
  hostHeader: string;
  /** The name the certificate must be valid for and the SNI to send; undefined when it is an IP address. */
  tlsServername: string | undefined;
}

const DEFAULT_PORT = 8448;
const HOUR = 3600_000;
/** "The recommended sensible default is 24 hours." */
export const WELL_KNOWN_DEFAULT_CACHE_MS = 24 * HOUR;
/** "Servers should additionally impose a maximum cache time for responses: 48 hours is recommended." */
export const WELL_KNOWN_MAX_CACHE_MS = 48 * HOUR;
/** Synapse's floor, so a server cannot make us fetch its .well-known for every request. */
export const WELL_KNOWN_MIN_CACHE_MS = 5 * 60_000;
/** "Errors are recommended to be cached for up to an hour, and servers are encouraged to exponentially back off for
 * repeated failures": the first error is cached 5 minutes, doubling up to an hour. */
export const WELL_KNOWN_ERROR_CACHE_FIRST_MS = 5 * 60_000;
export const WELL_KNOWN_ERROR_CACHE_MAX_MS = HOUR;
/** In the last 20% of a result's lifetime we refetch, keeping the old result if the server is briefly down. */
const GRACE_FRACTION = 0.2;
const MAX_REDIRECTS = 5;
/** node:dns gives no TTL for SRV answers; a short fixed lifetime keeps the per-request cost down. */
const SRV_CACHE_MS = 10 * 60_000;

interface WellKnownEntry {
  /** The delegated server name, or null for "no valid .well-known" (an error, cached). */
  result: string | null;
  expiresAt: number;
  ttl: number;
  /** Consecutive failed lookups, for the error backoff. */
  failures: number;
}

type WellKnownOutcome = { ok: true; server: string; ttl: number } | { ok: false; temporary: boolean };

export interface DiscoveryOptions {
  /** Where its caches are sized and counted (a private registry when absent). */
  caches?: CacheRegistry;
  resolver: Resolver;
  fetchWellKnown: WellKnownFetcher;
  now?: () => number;
}

export class ServerDiscovery {
  private readonly resolver: Resolver;
  private readonly fetchWellKnown: WellKnownFetcher;
  private readonly now: () => number;
  private readonly wellKnownCache: Cache<string, WellKnownEntry>;
  private readonly wellKnownInflight = new Map<string, Promise<string | null>>();
  private readonly srvCache: Cache<string, { records: SrvRecord[]; expiresAt: number }>;

  constructor(opts: DiscoveryOptions) {
    const caches = opts.caches ?? new CacheRegistry();
    this.wellKnownCache = caches.create("server_discovery", (_v, k) => STRING_BYTES(k) + 3 * ENTRY_BYTES);
    this.srvCache = caches.create("server_srv", (v, k) => STRING_BYTES(k) + ENTRY_BYTES * (1 + v.records.length));
    this.resolver = opts.resolver;
    this.fetchWellKnown = opts.fetchWellKnown;
    this.now = opts.now ?? Date.now;
  }

  /** Resolves a server name. Throws FederationError ("invalid_destination" or "unreachable"). */
  async resolve(serverName: string): Promise<ResolvedServer> {
    const parsed = parseServerName(serverName);
    if (!parsed) throw new FederationError("invalid_destination", serverName, "not a valid server name");
    const hostname = parsed.host;

    // Step 1: "If the hostname is an IP literal, then that IP address should be used, together with the given port
    // number, or 8448 if no port is given … The Host header in the request should be set to the server name".
    if (parsed.kind !== "dns") {
      return { serverName, targets: [{ host: unbracket(hostname), port: parsed.port ?? DEFAULT_PORT }], hostHeader: serverName, tlsServername: undefined };
    }
    // Step 2: a hostname with an explicit port: resolve the hostname, "Host header of the original server name (with
    // port)", certificate for the hostname.
    if (parsed.port !== undefined) {
      return { serverName, targets: [{ host: hostname, port: parsed.port }], hostHeader: serverName, tlsServername: hostname };
    }

    // Step 3: /.well-known/matrix/server.
    const delegated = await this.wellKnown(hostname);
    if (delegated !== null) {
      const d = parseServerName(delegated)!; // validated when the .well-known was read
      const dHost = d.host;
      // 3.1: delegated IP literal: "Host header containing the IP address, including the port if one was provided".
      if (d.kind !== "dns") {
        return { serverName, targets: [{ host: unbracket(dHost), port: d.port ?? DEFAULT_PORT }], hostHeader: delegated, tlsServername: undefined };
      }
      // 3.2: delegated hostname and port: "Host header of <delegated_hostname>:<delegated_port>".
      if (d.port !== undefined) {
        return { serverName, targets: [{ host: dHost, port: d.port }], hostHeader: delegated, tlsServername: dHost };
      }
      // 3.3 `_matrix-fed._tcp`, 3.4 (deprecated) `_matrix._tcp`, 3.5 port 8448; all with "a Host header containing
      // the <delegated_hostname>" and a certificate for it.
      const targets = (await this.srvTargets(serverName, dHost)) ?? [{ host: dHost, port: DEFAULT_PORT }];
      return { serverName, targets, hostHeader: dHost, tlsServername: dHost };
    }

    // Steps 4 (`_matrix-fed._tcp`), 5 (deprecated `_matrix._tcp`) and 6 (port 8448): the `.well-known` failed, so
    // the Host header and certificate are for <hostname>.
    const targets = (await this.srvTargets(serverName, hostname)) ?? [{ host: hostname, port: DEFAULT_PORT }];
    return { serverName, targets, hostHeader: hostname, tlsServername: hostname };
  }

  /** SRV targets for a host, `_matrix-fed._tcp` first, then the deprecated `_matrix._tcp`; null when neither exists. */
  private async srvTargets(serverName: string, host: string): Promise<ServerTarget[] | null> {
    for (const service of ["_matrix-fed._tcp.", "_matrix._tcp."]) {
      const records = await this.lookupSrv(serverName, service + host);
      if (records.length === 0) continue;
      // RFC 2782: a single record with target "." means "the service is decidedly not available at this domain".
      if (records.length === 1 && (records[0]!.name === "." || records[0]!.name === "")) {
        throw new FederationError("unreachable", serverName, `SRV ${service}${host} says the service is not available`);
      }
      return sortSrv(records).map((r) => ({ host: r.name.replace(/\.$/, ""), port: r.port }));
    }
    return null;
  }

  private async lookupSrv(serverName: string, name: string): Promise<SrvRecord[]> {
    const now = this.now();
    const cached = this.srvCache.get(name);
    if (cached && cached.expiresAt > now) return cached.records;
    let records: SrvRecord[];
    try {
      records = await this.resolver.lookupSrv(name);
    } catch (e) {
      // A DNS failure is not "no record": falling through to port 8448 could reach a different server.
      if (cached) return cached.records;
      throw new FederationError("unreachable", serverName, `SRV lookup for ${name} failed: ${(e as Error).message}`, { cause: e });
    }
    this.srvCache.set(name, { records, expiresAt: now + SRV_CACHE_MS });
    return records;
  }

  /**
   * The delegated server name from `https://<hostname>/.well-known/matrix/server`, or null when there is no valid
   * one. Cached per the spec; concurrent lookups for one host share a request.
   */
  wellKnown(hostname: string): Promise<string | null> {
    const now = this.now();
    const entry = this.wellKnownCache.get(hostname);
    if (entry && now < entry.expiresAt - GRACE_FRACTION * entry.ttl) return Promise.resolve(entry.result);
    let inflight = this.wellKnownInflight.get(hostname);
    if (!inflight) {
      inflight = this.refreshWellKnown(hostname, entry).finally(() => this.wellKnownInflight.delete(hostname));
      this.wellKnownInflight.set(hostname, inflight);
    }
    return inflight;
  }

  private async refreshWellKnown(hostname: string, previous: WellKnownEntry | undefined): Promise<string | null> {
    const outcome = await this.fetchAndParse(hostname);
    const now = this.now();
    if (outcome.ok) {
      if (outcome.ttl > 0) this.wellKnownCache.set(hostname, { result: outcome.server, expiresAt: now + outcome.ttl, ttl: outcome.ttl, failures: 0 });
      else this.wellKnownCache.delete(hostname);
      return outcome.server;
    }
    // A temporary failure while a previous result is still valid keeps that result (Synapse does the same).
    if (outcome.temporary && previous && previous.result !== null && now < previous.expiresAt) return previous.result;
    const failures = previous && previous.result === null ? previous.failures + 1 : 1;
    const ttl = Math.min(WELL_KNOWN_ERROR_CACHE_FIRST_MS * 2 ** (failures - 1), WELL_KNOWN_ERROR_CACHE_MAX_MS);
    this.wellKnownCache.set(hostname, { result: null, expiresAt: now + ttl, ttl, failures });
    return null;
  }

  /** Fetches, following 30x redirects ("redirection loops should be avoided"), and validates the response. */
  private async fetchAndParse(hostname: string): Promise<WellKnownOutcome> {
    let url = `https://${hostname}/.well-known/matrix/server`;
    const seen = new Set<string>([url]);
    let res: WellKnownHttpResponse;
    for (let hops = 0; ; hops++) {
      try {
        res = await this.fetchWellKnown(url);
      } catch {
        return { ok: false, temporary: true };
      }
      const location = res.headers.location;
      if (![301, 302, 303, 307, 308].includes(res.status) || location === undefined) break;
      let next: URL;
      try {
        next = new URL(location, url);
      } catch {
        return { ok: false, temporary: false };
      }
      // Never downgrade to plain HTTP, loop, or follow an endless chain.
      if (next.protocol !== "https:" || seen.has(next.href) || hops >= MAX_REDIRECTS) return { ok: false, temporary: false };
      seen.add(next.href);
      url = next.href;
    }
    if (res.status >= 500) return { ok: false, temporary: true };
    // "If the response is invalid (bad JSON, missing properties, non-200 response, etc), skip to step 4."
    if (res.status !== 200) return { ok: false, temporary: false };
    let body: unknown;
    try {
      // "servers parsing the response should assume that the body is JSON regardless of type".
      body = JSON.parse(res.body);
    } catch {
      return { ok: false, temporary: false };
    }
    const server = typeof body === "object" && body !== null && !Array.isArray(body) ? (body as Record<string, unknown>)["m.server"] : undefined;
    if (typeof server !== "string" || !parseServerName(server)) return { ok: false, temporary: false };
    return { ok: true, server, ttl: cachePeriod(res.headers, this.now()) };
  }
}

/**
 * How long to cache a `.well-known` response: "Servers should respect the cache control headers present on the
 * response, or use a sensible default when headers are not present" — `no-store` means not at all, then
 * `Cache-Control: max-age`, then `Expires`, clamped to [5 minutes, 48 hours]; 24 hours by default.
 */
export function cachePeriod(headers: Record<string, string | undefined>, now: number): number {
  const directives = new Map<string, string | undefined>();
  for (const part of (headers["cache-control"] ?? "").split(",")) {
    const [k = "", v] = part.split("=", 2).map((s) => s.trim());
    if (k) directives.set(k.toLowerCase(), v?.replace(/^"|"$/g, ""));
  }
  if (directives.has("no-store")) return 0;
  let ms: number | undefined;
  const maxAge = directives.get("max-age");
  if (maxAge !== undefined && /^\d+$/.test(maxAge)) ms = Number(maxAge) * 1000;
  else if (headers.expires !== undefined) {
    const at = Date.parse(headers.expires);
    // RFC 9111: an invalid Expires (such as "0") means "already expired".
    ms = Number.isNaN(at) ? 0 : at - now;
  }
  if (ms === undefined) return WELL_KNOWN_DEFAULT_CACHE_MS;
  return Math.min(Math.max(ms, WELL_KNOWN_MIN_CACHE_MS), WELL_KNOWN_MAX_CACHE_MS);
}

/** RFC 2782 order: ascending priority; within a priority, a weighted random order. */
export function sortSrv(records: SrvRecord[], random: () => number = Math.random): SrvRecord[] {
  const byPriority = new Map<number, SrvRecord[]>();
  for (const r of records) byPriority.set(r.priority, [...(byPriority.get(r.priority) ?? []), r]);
  const out: SrvRecord[] = [];
  for (const priority of [...byPriority.keys()].sort((a, b) => a - b)) {
    const group = [...byPriority.get(priority)!];
    while (group.length > 0) {
      const total = group.reduce((s, r) => s + r.weight, 0);
      let pick = 0;
      if (total > 0) {
        let target = random() * total;
        pick = group.findIndex((r) => (target -= r.weight) < 0);
        if (pick < 0) pick = group.length - 1;
      } else {
        pick = Math.floor(random() * group.length);
      }
      out.push(group.splice(pick, 1)[0]!);
    }
  }
  return out;
}

function unbracket(host: string): string {
  return host.startsWith("[") ? host.slice(1, -1) : host;
}

/** Whether a connect target is an IP address rather than a name to look up. */
export function isIpAddress(host: string): boolean {
  return isIP(host) !== 0;
}
