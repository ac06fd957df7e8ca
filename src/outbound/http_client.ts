/**
 * Outbound HTTP(S) to hosts that clients name — push gateways now, URL previews later — under the same rules as
 * federation: the host is resolved through the injected Resolver, addresses in blocked ranges (`ip_range_blacklist`
 * unless `ip_range_whitelist`) are never contacted, and we connect to the very address we checked, so a DNS answer
 * cannot change between the check and the connection. Responses are bounded in size and time.
 */
import type { Readable } from "node:stream";
import { Agent as HttpAgent, request as httpRequest, type IncomingHttpHeaders } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import { isIP } from "node:net";
import type { Resolver } from "../federation/discovery.js";
import type { IpRangeFilter } from "../federation/ip_filter.js";

export class OutboundError extends Error {
  constructor(
    readonly reason: "blocked" | "unreachable" | "timeout" | "too_large" | "invalid_url",
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export interface OutboundRequest {
  method: string;
  headers?: Record<string, string>;
  body?: Buffer;
  timeoutMs: number;
  maxResponseBytes: number;
}

export interface OutboundResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** A response whose body is read as it arrives (the caller bounds its size and must consume or destroy it). */
export interface OutboundStreamResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Readable;
}

export interface OutboundHttpOptions {
  resolver: Resolver;
  ipFilter: IpRangeFilter;
  verifyCertificates?: boolean;
  /**
   * Refuse a host when any of its addresses is blocked, not only when all are (Synapse's rule for URL previews: a
   * name that resolves partly into a private network is not one to fetch from at all).
   */
  refuseIfAnyAddressBlocked?: boolean;
}

export class OutboundHttp {
  private readonly http = new HttpAgent({ keepAlive: true, maxSockets: 8, timeout: 60_000 });
  private readonly https = new HttpsAgent({ keepAlive: true, maxSockets: 8, timeout: 60_000 });

  constructor(private readonly opts: OutboundHttpOptions) {}

  async request(url: string, req: OutboundRequest): Promise<OutboundResponse> {
    return (await this.send(url, req, false)) as OutboundResponse;
  }

  /**
   * As request(), but resolves once the headers are in, with the body as a stream (media fetched from a `Location`
   * goes to disk as it arrives). `timeoutMs` bounds the wait for headers, then each pause in the body.
   */
  async requestStream(url: string, req: Omit<OutboundRequest, "maxResponseBytes">): Promise<OutboundStreamResponse> {
    return (await this.send(url, { ...req, maxResponseBytes: Number.MAX_SAFE_INTEGER }, true)) as OutboundStreamResponse;
  }

  private async send(url: string, req: OutboundRequest, stream: boolean): Promise<OutboundResponse | OutboundStreamResponse> {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      throw new OutboundError("invalid_url", `not a URL: ${url}`);
    }
    if (u.protocol !== "http:" && u.protocol !== "https:") throw new OutboundError("invalid_url", `unsupported scheme ${u.protocol}`);
    const host = u.hostname.startsWith("[") ? u.hostname.slice(1, -1) : u.hostname;
    let addresses: string[];
    try {
      addresses = isIP(host) ? [host] : await this.opts.resolver.lookupHost(host);
    } catch (e) {
      throw new OutboundError("unreachable", `cannot resolve ${host}: ${(e as Error).message}`, { cause: e });
    }
    const allowed = addresses.filter((a) => this.opts.ipFilter.isAllowed(a));
    if (this.opts.refuseIfAnyAddressBlocked && allowed.length < addresses.length) {
      throw new OutboundError("blocked", `an address of ${host} is in a blocked IP range`);
    }
    if (allowed.length === 0) throw new OutboundError("blocked", `every address of ${host} is in a blocked IP range (ip_range_blacklist)`);
    let first: OutboundError | undefined;
    const deadline = Date.now() + req.timeoutMs;
    for (const address of allowed) {
      const remaining = deadline - Date.now();
      if (remaining <= 0) break;
      try {
        return await this.attempt(u, host, address, { ...req, timeoutMs: remaining }, stream);
      } catch (e) {
        if (!(e instanceof OutboundError) || e.reason !== "unreachable") throw e;
        first ??= e;
      }
    }
    throw first ?? new OutboundError("timeout", `no response from ${host} within ${req.timeoutMs} ms`);
  }

  private attempt(u: URL, host: string, address: string, req: OutboundRequest, stream: boolean): Promise<OutboundResponse | OutboundStreamResponse> {
    const tls = u.protocol === "https:";
    return new Promise((resolve, reject) => {
      let settled = false;
      const fail = (err: OutboundError) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        request.destroy();
        reject(err);
      };
      const headers: Record<string, string> = { ...req.headers, host: u.host };
      if (req.body !== undefined) headers["content-length"] = String(req.body.length);
      const options = {
        host: address,
        port: u.port ? Number(u.port) : tls ? 443 : 80,
        method: req.method,
        path: u.pathname + u.search,
        headers,
      };
      const request = tls
        ? httpsRequest({ ...options, agent: this.https, servername: isIP(host) ? "" : host, rejectUnauthorized: this.opts.verifyCertificates ?? true })
        : httpRequest({ ...options, agent: this.http });
      const timer = setTimeout(() => fail(new OutboundError("timeout", `no response from ${host} within ${req.timeoutMs} ms`)), req.timeoutMs);
      request.on("error", (e) => fail(new OutboundError("unreachable", `request to ${host} failed: ${e.message}`, { cause: e })));
      request.on("response", (res) => {
        if (stream) {
          settled = true;
          clearTimeout(timer);
          res.setTimeout(req.timeoutMs, () => res.destroy(new Error(`response from ${host} stalled for ${req.timeoutMs} ms`)));
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: res });
          return;
        }
        const chunks: Buffer[] = [];
        let size = 0;
        res.on("data", (chunk: Buffer) => {
          size += chunk.length;
          if (size > req.maxResponseBytes) fail(new OutboundError("too_large", `response from ${host} exceeds ${req.maxResponseBytes} bytes`));
          else chunks.push(chunk);
        });
        res.on("error", (e) => fail(new OutboundError("unreachable", `response from ${host} failed: ${e.message}`, { cause: e })));
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

  close(): void {
    this.http.destroy();
    this.https.destroy();
  }
}
