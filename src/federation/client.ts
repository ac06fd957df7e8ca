/**
 * The outbound federation HTTP client: every request is signed with `X-Matrix` (origin = our server name,
 * destination = the target's server name, as before any delegation), carries a JSON body when it has one, and goes
 * to where server discovery says, over HTTPS with the transport's certificate and IP range rules. Failures are
 * FederationErrors, so callers can tell a refused destination from a down one or an error answer.
 */
import type { SigningKey } from "../core/crypto/ed25519.js";
import { signRequest } from "../core/federation/xmatrix.js";
import { JsonSyntaxError, parseJson } from "../core/json/parse.js";
import { isJsonObject, type JsonObject } from "../core/json/types.js";
import { FederationError } from "./errors.js";
import type { ServerDiscovery, ServerTarget } from "./discovery.js";
import type { StreamingResponse, Transport, TransportRequest } from "./transport.js";

export type QueryValue = string | number | boolean | readonly (string | number | boolean)[] | undefined;

export interface FederationRequestOptions {
  method: "GET" | "PUT" | "POST" | "DELETE";
  destination: string;
  /** The path from `/_matrix/…`, with path parameters already percent-encoded (see `encodePath`). */
  path: string;
  query?: Record<string, QueryValue>;
  /** The JSON body; PUT and POST always send one (`{}` when absent), as the spec requires. */
  body?: JsonObject;
  /** Default 60 s (Synapse's federation client timeout). */
  timeoutMs?: number;
  /** Default 100 MiB (Synapse's cap on federation responses). */
  maxResponseBytes?: number;
}

export interface FederationClientOptions {
  serverName: string;
  signingKey: SigningKey;
  discovery: ServerDiscovery;
  transport: Transport;
  /** `federation_domain_whitelist`: when set, only these servers are contacted. */
  domainWhitelist?: ReadonlySet<string>;
}

export const DEFAULT_TIMEOUT_MS = 60_000;
export const DEFAULT_MAX_RESPONSE_BYTES = 100 * 1024 * 1024;

export class FederationClient {
  constructor(private readonly opts: FederationClientOptions) {}

  get serverName(): string {
    return this.opts.serverName;
  }

  /** Whether `federation_domain_whitelist` lets us talk to this server (always, without a whitelist). */
  isDomainAllowed(serverName: string): boolean {
    return this.opts.domainWhitelist === undefined || this.opts.domainWhitelist.has(serverName);
  }

  /** Sends a signed request and returns the JSON object answered. Throws FederationError. */
  async request(req: FederationRequestOptions): Promise<JsonObject> {
    const parsed = await this.requestJson(req);
    // "all endpoints in this specification require the destination server to return a JSON object".
    if (!isJsonObject(parsed)) throw new FederationError("invalid_response", req.destination, `${req.method} ${req.path} did not answer a JSON object`);
    return parsed;
  }

  /**
   * The v1 forms of send_join, send_leave and invite answer `[200, {…}]` (kept "for compatibility", MSC1802):
   * a PUT that returns the object inside that pair. Throws FederationError.
   */
  async putV1(destination: string, path: string, body: JsonObject, opts: Partial<FederationRequestOptions> = {}): Promise<JsonObject> {
    const parsed = await this.requestJson({ ...opts, method: "PUT", destination, path, body });
    if (!Array.isArray(parsed) || parsed.length !== 2 || !isJsonObject(parsed[1])) {
      throw new FederationError("invalid_response", destination, `PUT ${path} did not answer a [200, {…}] pair`);
    }
    return parsed[1];
  }

  /**
   * Sends a signed request and hands over a 2xx (or 3xx: the caller follows `Location`) answer's body unread (media
   * downloads); `maxResponseBytes` applies
   * to a declared Content-Length only, the caller bounds the rest. A non-2xx answer is read (bounded) and thrown as
   * FederationError "http", as `request` does. Throws FederationError.
   */
  async requestStream(req: FederationRequestOptions & { accept?: string }): Promise<StreamingResponse> {
    const { destination, targets, transportReq } = await this.prepare(req, req.accept ?? "*/*");
    const res = await this.opts.transport.stream(destination, targets, transportReq);
    if (res.status >= 200 && res.status < 400) return res;
    const chunks: Buffer[] = [];
    let size = 0;
    try {
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        size += chunk.length;
        if (size > ERROR_BODY_MAX_BYTES) break;
        chunks.push(chunk);
      }
    } catch {
      // an error answer cut short: its status is what matters
    } finally {
      res.body.destroy();
    }
    throw httpError(req, res.status, parseJsonOrUndefined(Buffer.concat(chunks)));
  }

  /** Sends a signed request and returns the parsed JSON answered (any JSON value). Throws FederationError. */
  private async requestJson(req: FederationRequestOptions): Promise<unknown> {
    const { destination, targets, transportReq } = await this.prepare(req, "application/json");
    const res = await this.opts.transport.send(destination, targets, transportReq);
    const parsed = parseJsonOrUndefined(res.body);
    if (res.status < 200 || res.status >= 300) throw httpError(req, res.status, parsed);
    return parsed;
  }

  /** Discovery and the X-Matrix signature: where to send `req`, and what. */
  private async prepare(req: FederationRequestOptions, accept: string): Promise<{ destination: string; targets: readonly ServerTarget[]; transportReq: TransportRequest }> {
    const { destination } = req;
    if (!this.isDomainAllowed(destination)) throw new FederationError("denied", destination, "not in federation_domain_whitelist");
    const resolved = await this.opts.discovery.resolve(destination);
    const uri = req.path + queryString(req.query);
    const content = req.method === "PUT" || req.method === "POST" ? (req.body ?? {}) : req.body;
    const authorization = signRequest({ method: req.method, uri, origin: this.opts.serverName, destination, content }, this.opts.signingKey);
    const headers: Record<string, string> = { authorization, "user-agent": "Myelin", accept };
    let body: Buffer | undefined;
    if (content !== undefined) {
      body = Buffer.from(JSON.stringify(content), "utf8");
      headers["content-type"] = "application/json";
    }
    return {
      destination,
      targets: resolved.targets,
      transportReq: {
        method: req.method,
        path: uri,
        hostHeader: resolved.hostHeader,
        servername: resolved.tlsServername,
        headers,
        body,
        timeoutMs: req.timeoutMs ?? DEFAULT_TIMEOUT_MS,
        maxResponseBytes: req.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES,
      },
    };
  }

  get(destination: string, path: string, query?: Record<string, QueryValue>, opts: Partial<FederationRequestOptions> = {}): Promise<JsonObject> {
    return this.request({ ...opts, method: "GET", destination, path, query });
  }

  put(destination: string, path: string, body: JsonObject, opts: Partial<FederationRequestOptions> = {}): Promise<JsonObject> {
    return this.request({ ...opts, method: "PUT", destination, path, body });
  }

  post(destination: string, path: string, body: JsonObject, opts: Partial<FederationRequestOptions> = {}): Promise<JsonObject> {
    return this.request({ ...opts, method: "POST", destination, path, body });
  }

  close(): void {
    this.opts.transport.close();
  }
}

/** How much of an error answer is read. */
const ERROR_BODY_MAX_BYTES = 64 * 1024;

function parseJsonOrUndefined(body: Buffer): unknown {
  try {
    return parseJson(body.toString("utf8")).value;
  } catch (e) {
    if (!(e instanceof JsonSyntaxError)) throw e;
    return undefined;
  }
}

function httpError(req: FederationRequestOptions, status: number, parsed: unknown): FederationError {
  const errcode = isJsonObject(parsed) && typeof parsed.errcode === "string" ? parsed.errcode : undefined;
  const detail = isJsonObject(parsed) && typeof parsed.error === "string" ? `: ${parsed.error}` : "";
  return new FederationError("http", req.destination, `${req.method} ${req.path} answered ${status}${errcode ? ` ${errcode}` : ""}${detail}`, {
    status,
    errcode,
    body: parsed,
  });
}

/** A tagged template that percent-encodes its values: encodePath`/_matrix/federation/v1/event/${eventId}`. */
export function encodePath(strings: TemplateStringsArray, ...values: string[]): string {
  return strings.reduce((out, s, i) => out + s + (i < values.length ? encodeURIComponent(values[i]!) : ""), "");
}

/** `?a=1&b=x&b=y`, percent-encoded; the signed `uri` is exactly what is sent. */
export function queryString(query: Record<string, QueryValue> | undefined): string {
  if (!query) return "";
  const parts: string[] = [];
  for (const [k, v] of Object.entries(query)) {
    if (v === undefined) continue;
    for (const item of Array.isArray(v) ? v : [v]) parts.push(`${encodeURIComponent(k)}=${encodeURIComponent(String(item))}`);
  }
  return parts.length > 0 ? `?${parts.join("&")}` : "";
}
