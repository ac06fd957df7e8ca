/**
 * A federation server's stand-in for tests: a TLS listener on 127.0.0.1 that a TestNetwork name points at, passing
 * requests through to a real test server's TLS listener unless a test answers them itself. It plays a resident or
 * remote server that misbehaves in one precise way — a template without `origin_server_ts`, a refused make_join,
 * no /v2/send_join, a 404 for /get_missing_events — while everything else is the real server's answer. Requests
 * keep their X-Matrix signatures: the destination name is the one the network maps to this proxy.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, request as httpsRequest, type Server } from "node:https";
import type { IncomingHttpHeaders } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestNetwork } from "./federation.js";
import { selfSignedCertificate } from "./tls.js";

export interface ProxiedRequest {
  method: string;
  /** Path and query as received. */
  url: string;
  path: string;
  query: URLSearchParams;
  headers: IncomingHttpHeaders;
  body: unknown;
}

export interface ProxyAnswer {
  status: number;
  /** A JSON value, or a string sent as it is (e.g. "" for an empty body). */
  body: unknown;
  /** The real server's answer as it came (bytes and headers), for `passRaw`; from an intercept, sent as it is. */
  raw?: { headers: IncomingHttpHeaders; bytes: Buffer };
}

/** What a hook returns: an answer of its own, or undefined to pass the request through. */
export type Intercept = (req: ProxiedRequest) => ProxyAnswer | undefined | Promise<ProxyAnswer | undefined>;
/** Rewrites the real server's answer to a request (status and parsed JSON body); undefined keeps it. */
export type Rewrite = (req: ProxiedRequest, answer: ProxyAnswer) => ProxyAnswer | undefined;

export class FederationProxy {
  /** Every request received, in order. */
  readonly seen: ProxiedRequest[] = [];
  intercept: Intercept | undefined;
  rewrite: Rewrite | undefined;
  /** Pass the real server's answers on byte for byte with their headers (binary bodies: media) unless rewritten. */
  passRaw = false;
  port = 0;
  private server!: Server;
  private dir = "";

  /** `targetPort`: the real server's TLS port. */
  constructor(private readonly targetPort: number) {}

  /** Listens and makes `name` resolve to this proxy in `network`. */
  async start(network: TestNetwork, name: string): Promise<this> {
    this.dir = mkdtempSync(join(tmpdir(), "myelin-proxy-"));
    const cert = selfSignedCertificate(this.dir, [name.replace(/:\d+$/, ""), "127.0.0.1"]);
    this.server = createServer({ cert: readFileSync(cert.certPath), key: readFileSync(cert.keyPath) }, (req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const raw = Buffer.concat(chunks);
        const u = new URL(req.url ?? "/", "https://proxy");
        let body: unknown;
        try {
          body = raw.length > 0 ? JSON.parse(raw.toString("utf8")) : undefined;
        } catch {
          body = raw.toString("utf8");
        }
        const r: ProxiedRequest = { method: req.method ?? "GET", url: req.url ?? "/", path: u.pathname, query: u.searchParams, headers: req.headers, body };
        this.seen.push(r);
        void (async () => {
          let answer = this.intercept ? await this.intercept(r) : undefined;
          if (!answer) {
            const real = await this.forward(req.method ?? "GET", req.url ?? "/", req.headers, raw);
            answer = this.rewrite?.(r, real);
            if (!answer && this.passRaw && real.raw) {
              const { connection: _c, "transfer-encoding": _t, "keep-alive": _k, ...headers } = real.raw.headers;
              res.writeHead(real.status, headers).end(real.raw.bytes);
              return;
            }
            answer ??= real;
          }
          if (answer.raw) {
            res.writeHead(answer.status, answer.raw.headers).end(answer.raw.bytes);
            return;
          }
          const text = typeof answer.body === "string" ? answer.body : JSON.stringify(answer.body);
          res.writeHead(answer.status, text === "" ? {} : { "content-type": "application/json" }).end(text);
        })().catch((e: unknown) => {
          res.writeHead(502).end(JSON.stringify({ errcode: "M_UNKNOWN", error: String(e) }));
        });
      });
    });
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    this.port = (this.server.address() as AddressInfo).port;
    network.register(name, this.port);
    return this;
  }

  /** The requests seen for paths starting with `prefix`. */
  requests(prefix: string): ProxiedRequest[] {
    return this.seen.filter((r) => r.path.startsWith(prefix));
  }

  private forward(method: string, url: string, headers: IncomingHttpHeaders, body: Buffer): Promise<ProxyAnswer> {
    return new Promise((resolve, reject) => {
      const out = httpsRequest(
        { host: "127.0.0.1", port: this.targetPort, method, path: url, headers: { ...headers, "content-length": String(body.length) }, rejectUnauthorized: false, agent: false },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => {
            const bytes = Buffer.concat(chunks);
            const text = bytes.toString("utf8");
            let parsed: unknown = text;
            try {
              parsed = text ? JSON.parse(text) : "";
            } catch {
              // not JSON: passed on as text
            }
            resolve({ status: res.statusCode ?? 502, body: parsed, raw: { headers: res.headers, bytes } });
          });
          res.on("error", reject);
        },
      );
      out.on("error", reject);
      out.end(body);
    });
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((r) => this.server.close(r));
    rmSync(this.dir, { recursive: true, force: true });
  }
}
