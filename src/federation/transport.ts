/**
 * One HTTPS exchange with a federation host: resolve the host to addresses (through the injected Resolver), drop
 * addresses in blocked IP ranges, connect to the first one that answers with the right SNI and `Host`, verify the
 * certificate, and read a bounded response within a deadline. We connect to the very address we checked, so a DNS
 * answer cannot change between the check and the connection.
 *
 * Certificates are checked as Synapse's federation TLS policy does: against the system's CA store, or, with
 * `federation_custom_ca_list`, against those CAs only; not at all with `federation_verify_certificates: false`, or
 * for host names matching `federation_certificate_verification_whitelist`.
 */
import { Agent, request as httpsRequest } from "node:https";
import type { IncomingHttpHeaders, IncomingMessage } from "node:http";
import { readFileSync } from "node:fs";
import { X509Certificate } from "node:crypto";
import { createSecureContext, type SecureContext } from "node:tls";
import { ConfigError } from "../config/reader.js";
import { FederationError } from "./errors.js";
import { isIpAddress, type Resolver, type ServerTarget, type WellKnownFetcher } from "./discovery.js";
import type { IpRangeFilter } from "./ip_filter.js";

export interface TransportOptions {
  resolver: Resolver;
  ipFilter: IpRangeFilter;
  verifyCertificates: boolean;
  /** PEM CA certificates trusted instead of the system store (`federation_custom_ca_list`). */
  customCas?: readonly string[];
  /** Host name globs whose certificates are not verified (`federation_certificate_verification_whitelist`). */
  verificationWhitelist?: readonly string[];
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/**
 * Reads `federation_custom_ca_list`: every certificate of every PEM file (Synapse reads each file at start-up and
 * refuses to start on one it cannot parse). Throws ConfigError.
 */
export function loadCaCertificates(paths: readonly string[]): string[] {
  const out: string[] = [];
  for (const path of paths) {
    let text: string;
    try {
      text = readFileSync(path, "utf8");
    } catch (e) {
      throw new ConfigError(`config key "federation_custom_ca_list": cannot read ${path}: ${(e as Error).message}`);
    }
    const pems = text.match(PEM_CERTIFICATE) ?? [];
    if (pems.length === 0) throw new ConfigError(`config key "federation_custom_ca_list": ${path} holds no PEM certificate`);
    for (const pem of pems) {
      try {
        new X509Certificate(pem);
      } catch (e) {
        throw new ConfigError(`config key "federation_custom_ca_list": error parsing a certificate in ${path}: ${(e as Error).message}`);
      }
      out.push(pem);
    }
  }
  return out;
}

/**
 * A matcher for Synapse's host globs (matrix-common's glob_to_regex): `*` any run of characters, `?` one
 * character, everything else literal; the whole name must match, case-insensitively.
 */
export function hostGlobMatcher(globs: readonly string[]): (host: string) => boolean {
  if (globs.length === 0) return () => false;
  const res = globs.map((g) => new RegExp(`^${g.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*+/g, ".*").replace(/\?/g, ".")}$`, "i"));
  return (host) => res.some((re) => re.test(host));
}

export interface TransportRequest {
  method: string;
  /** Path and query, as sent on the request line. */
  path: string;
  hostHeader: string;
  /** SNI and the name the certificate must match; undefined for IP addresses (no SNI, certificate for the IP). */
  servername: string | undefined;
  headers?: Record<string, string>;
  body?: Buffer;
  timeoutMs: number;
  maxResponseBytes: number;
}

export interface TransportResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** An answer whose body is read by the caller (media): `body` must be consumed or destroyed. */
export interface StreamingResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: IncomingMessage;
}

export class Transport {
  /** Keep-alive connections, pooled per address, port, SNI and verification setting by node:https. */
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 16, maxFreeSockets: 4, timeout: 60_000 });
  /** Built once: the custom CAs replace node's bundled roots for every connection of this transport. */
  private readonly secureContext: SecureContext | undefined;
  private readonly unverified: (host: string) => boolean;

  constructor(private readonly opts: TransportOptions) {
    this.secureContext = opts.customCas && opts.customCas.length > 0 ? createSecureContext({ ca: [...opts.customCas] }) : undefined;
    this.unverified = hostGlobMatcher(opts.verificationWhitelist ?? []);
  }

  /** Whether the certificate of `host` (the name it must be valid for) is verified. */
  verifies(host: string): boolean {
    return this.opts.verifyCertificates && !this.unverified(host);
  }

  /**
   * Sends one request to the first reachable target. `destination` names the server in errors. Throws
   * FederationError: "blocked", "unreachable", "tls", "timeout" or "invalid_response" (too large).
   */
  async send(destination: string, targets: readonly ServerTarget[], req: TransportRequest): Promise<TransportResponse> {
    return this.tryTargets(destination, targets, req, (address, port, r) => this.sendTo(destination, address, port, r));
  }

  /**
   * As `send`, but resolves once the response headers are in (within `timeoutMs`); the body is the caller's to read,
   * bound and time (`maxResponseBytes` applies only to a declared Content-Length).
   */
  async stream(destination: string, targets: readonly ServerTarget[], req: TransportRequest): Promise<StreamingResponse> {
    return this.tryTargets(destination, targets, req, async (address, port, r) => {
      try {
        return await this.open(destination, address, port, r);
      } catch (e) {
        if (!(e instanceof StaleSocketError)) throw e;
        return this.open(destination, address, port, r);
      }
    });
  }

  private async tryTargets<T>(destination: string, targets: readonly ServerTarget[], req: TransportRequest, fn: (address: string, port: number, req: TransportRequest) => Promise<T>): Promise<T> {
    let firstError: FederationError | undefined;
    let blocked = 0;
    let candidates = 0;
    const deadline = Date.now() + req.timeoutMs;
    for (const target of targets) {
      let addresses: string[];
      try {
        addresses = isIpAddress(target.host) ? [target.host] : await this.opts.resolver.lookupHost(target.host);
      } catch (e) {
        firstError ??= new FederationError("unreachable", destination, `cannot resolve ${target.host}: ${(e as Error).message}`, { cause: e });
        continue;
      }
      for (const address of addresses) {
        candidates++;
        if (!this.opts.ipFilter.isAllowed(address)) {
          blocked++;
          continue;
        }
        const remaining = deadline - Date.now();
        if (remaining <= 0) throw new FederationError("timeout", destination, `no response within ${req.timeoutMs} ms`);
        try {
          return await fn(address, target.port, { ...req, timeoutMs: remaining });
        } catch (e) {
          // Only "this address did not work" moves on; a certificate or timeout problem is the server's answer.
          const err = e as FederationError;
          if (err.reason !== "unreachable") throw err;
          firstError ??= err;
        }
      }
    }
    if (candidates > 0 && blocked === candidates) {
      throw new FederationError("blocked", destination, "every address of this server is in a blocked IP range (ip_range_blacklist)");
    }
    throw firstError ?? new FederationError("unreachable", destination, "no address to connect to");
  }

  /** One request to one address. A pooled keep-alive connection the server closed meanwhile is retried once on a
   * fresh connection, as node's documentation recommends. */
  async sendTo(destination: string, address: string, port: number, req: TransportRequest): Promise<TransportResponse> {
    try {
      return await this.attempt(destination, address, port, req);
    } catch (e) {
      if (!(e instanceof StaleSocketError)) throw e;
      return this.attempt(destination, address, port, req);
    }
  }

  /** One request whose response body is handed over unread once its headers are in. */
  private open(destination: string, address: string, port: number, req: TransportRequest): Promise<StreamingResponse> {
    return new Promise((resolve, reject) => {
      let settled = false;
      const fail = (err: Error) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        request.destroy();
        reject(err);
      };
      const request = this.clientRequest(address, port, req);
      const timer = setTimeout(() => fail(new FederationError("timeout", destination, `no response within ${req.timeoutMs} ms`)), req.timeoutMs);
      request.on("error", (e: NodeJS.ErrnoException) => {
        if (request.reusedSocket && e.code === "ECONNRESET" && !settled) return fail(new StaleSocketError());
        fail(classify(destination, address, port, e));
      });
      request.on("response", (res) => {
        const declared = Number(res.headers["content-length"]);
        if (Number.isFinite(declared) && declared > req.maxResponseBytes) {
          fail(new FederationError("invalid_response", destination, `response of ${declared} bytes exceeds the ${req.maxResponseBytes} byte limit`));
          return;
        }
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        // Errors after this point surface on the body stream.
        res.on("error", () => request.destroy());
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: res });
      });
      request.end(req.body);
    });
  }

  private clientRequest(address: string, port: number, req: TransportRequest) {
    const headers: Record<string, string> = { ...req.headers, host: req.hostHeader };
    if (req.body !== undefined) headers["content-length"] = String(req.body.length);
    return httpsRequest({
      host: address,
      port,
      method: req.method,
      path: req.path,
      headers,
      agent: this.agent,
      // An empty servername tells node not to send SNI (its default would derive one from the Host header).
      servername: req.servername ?? "",
      // The agent pools connections per servername and rejectUnauthorized, so a whitelisted host never shares
      // a connection with a verified one; the secure context is the same for all of them.
      rejectUnauthorized: this.verifies(req.servername ?? address),
      ...(this.secureContext ? { secureContext: this.secureContext } : {}),
    });
  }

  private attempt(destination: string, address: string, port: number, req: TransportRequest): Promise<TransportResponse> {
    return new Promise((resolve, reject) => {
      let settled = false;
      const fail = (err: FederationError) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        request.destroy();
        reject(err);
      };
      const request = this.clientRequest(address, port, req);
      const timer = setTimeout(() => fail(new FederationError("timeout", destination, `no response within ${req.timeoutMs} ms`)), req.timeoutMs);
      request.on("error", (e: NodeJS.ErrnoException) => {
        if (request.reusedSocket && e.code === "ECONNRESET" && !settled) {
          settled = true;
          clearTimeout(timer);
          reject(new StaleSocketError());
          return;
        }
        fail(classify(destination, address, port, e));
      });
      request.on("response", (res) => {
        const declared = Number(res.headers["content-length"]);
        if (Number.isFinite(declared) && declared > req.maxResponseBytes) {
          fail(new FederationError("invalid_response", destination, `response of ${declared} bytes exceeds the ${req.maxResponseBytes} byte limit`));
          return;
        }
        const chunks: Buffer[] = [];
        let size = 0;
        res.on("data", (chunk: Buffer) => {
          size += chunk.length;
          if (size > req.maxResponseBytes) {
            fail(new FederationError("invalid_response", destination, `response exceeds the ${req.maxResponseBytes} byte limit`));
            return;
          }
          chunks.push(chunk);
        });
        res.on("error", (e: NodeJS.ErrnoException) => fail(classify(destination, address, port, e)));
        res.on("end", () => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) });
        });
      });
      request.end(req.body);
    });
  }

  /** Closes pooled connections (at shutdown). */
  close(): void {
    this.agent.destroy();
  }
}

class StaleSocketError extends Error {}

function classify(destination: string, address: string, port: number, e: NodeJS.ErrnoException): FederationError {
  const code = e.code ?? "";
  const where = `${address.includes(":") ? `[${address}]` : address}:${port}`;
  if (/CERT|SSL|TLS|UNABLE_TO_|SELF_SIGNED|ALTNAME|HOSTNAME_MISMATCH/.test(code) || /certificate|tls|ssl/i.test(e.message)) {
    return new FederationError("tls", destination, `TLS with ${where} failed: ${e.message}`, { cause: e });
  }
  // Refused, reset, unreachable network…: another address of the server may do better.
  return new FederationError("unreachable", destination, `connection to ${where} failed: ${e.message}`, { cause: e });
}

/** Synapse's limit on a `.well-known/matrix/server` body. */
const WELL_KNOWN_MAX_BYTES = 50 * 1024;
const WELL_KNOWN_TIMEOUT_MS = 10_000;

/** The production `.well-known` fetcher: a GET over this transport (same IP filtering and certificate rules). */
export function wellKnownFetcher(transport: Transport): WellKnownFetcher {
  return async (url) => {
    const u = new URL(url);
    if (u.protocol !== "https:") throw new Error("only https is allowed");
    const host = u.hostname.startsWith("[") ? u.hostname.slice(1, -1) : u.hostname;
    const res = await transport.send(u.host, [{ host, port: u.port ? Number(u.port) : 443 }], {
      method: "GET",
      path: u.pathname + u.search,
      hostHeader: u.host,
      servername: isIpAddress(host) ? undefined : host,
      headers: { "user-agent": "Myelin", accept: "application/json" },
      timeoutMs: WELL_KNOWN_TIMEOUT_MS,
      maxResponseBytes: WELL_KNOWN_MAX_BYTES,
    });
    const headers: Record<string, string | undefined> = {};
    for (const [k, v] of Object.entries(res.headers)) headers[k] = Array.isArray(v) ? v.join(", ") : v;
    return { status: res.status, headers, body: res.body.toString("utf8") };
  };
}
