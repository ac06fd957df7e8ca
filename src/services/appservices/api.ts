/**
 * The homeserver → application service HTTP API (spec "Homeserver -> Application Service API"): transactions, user
 * and alias queries, third-party lookups and ping. Every request carries `Authorization: Bearer <hs_token>`, as
 * current Synapse sends it. As the spec's "Legacy routes" asks, a request the versioned path does not answer
 * successfully is tried once more on the unversioned path (with the `access_token` query parameter those old
 * services read), and a service that only answers there is addressed there first for an hour before the versioned
 * path is tried again.
 *
 * The URL is the admin's own setting, so requests go through the HTTP client without the outbound IP range filter.
 */
import { OutboundError, type OutboundHttp, type OutboundResponse } from "../../outbound/http_client.js";
import type { ApplicationService } from "./application_service.js";

const TRANSACTION_TIMEOUT_MS = 60_000;
const QUERY_TIMEOUT_MS = 30_000;
const PING_TIMEOUT_MS = 15_000;
const MAX_RESPONSE_BYTES = 1024 * 1024;
const LEGACY_RETRY_MS = 3600_000;

export type PingOutcome =
  | { ok: true; durationMs: number }
  | { ok: false; reason: "url_not_set" | "connection_failed" | "connection_timeout" }
  | { ok: false; reason: "bad_status"; status: number; body: string };

interface Call {
  method: "GET" | "PUT" | "POST";
  /** Under `/_matrix/app/v1`. */
  path: string;
  /** The legacy path (under the service's URL), if the spec names one. */
  legacyPath?: string;
  query?: URLSearchParams;
  body?: unknown;
  timeoutMs: number;
}

export class AppServiceApi {
  /** Services that answered only on legacy paths, and since when. */
  private readonly legacySince = new Map<string, number>();

  constructor(
    private readonly http: OutboundHttp,
    private readonly now: () => number = Date.now,
  ) {}

  /** PUT /transactions/{txnId}; resolves when the service acknowledged it (2xx), throws otherwise. */
  async pushTransaction(as: ApplicationService, txnId: number, body: string): Promise<void> {
    const id = encodeURIComponent(String(txnId));
    const res = await this.call(as, { method: "PUT", path: `/transactions/${id}`, legacyPath: `/transactions/${id}`, body: Buffer.from(body), timeoutMs: TRANSACTION_TIMEOUT_MS });
    if (res.status < 200 || res.status >= 300) throw new Error(`application service ${as.id} answered transaction ${txnId} with HTTP ${res.status}`);
  }

  /** GET /users/{userId}: true when the service says it created the user (200). */
  async queryUser(as: ApplicationService, userId: string): Promise<boolean> {
    const p = `/users/${encodeURIComponent(userId)}`;
    return this.query(as, { method: "GET", path: p, legacyPath: p, timeoutMs: QUERY_TIMEOUT_MS });
  }

  /** GET /rooms/{roomAlias}: true when the service says it created the alias (200). */
  async queryAlias(as: ApplicationService, alias: string): Promise<boolean> {
    const p = `/rooms/${encodeURIComponent(alias)}`;
    return this.query(as, { method: "GET", path: p, legacyPath: p, timeoutMs: QUERY_TIMEOUT_MS });
  }

  private async query(as: ApplicationService, call: Call): Promise<boolean> {
    if (as.url === null) return false;
    try {
      const res = await this.call(as, call);
      return res.status >= 200 && res.status < 300;
    } catch {
      return false;
    }
  }

  /** GET /thirdparty/protocol/{protocol}; undefined when the service does not answer with an object. */
  async protocol(as: ApplicationService, protocol: string): Promise<Record<string, unknown> | undefined> {
    const p = `/thirdparty/protocol/${encodeURIComponent(protocol)}`;
    const json = await this.getJson(as, p, `/_matrix/app/unstable${p}`);
    return typeof json === "object" && json !== null && !Array.isArray(json) ? (json as Record<string, unknown>) : undefined;
  }

  /** GET /thirdparty/{location|user}[/{protocol}]?fields…; whatever list the service answers (checked by the caller). */
  async thirdPartyQuery(as: ApplicationService, kind: "location" | "user", protocol: string | undefined, fields: Record<string, string[]>): Promise<unknown[]> {
    const p = `/thirdparty/${kind}${protocol !== undefined ? `/${encodeURIComponent(protocol)}` : ""}`;
    const query = new URLSearchParams();
    for (const [k, vs] of Object.entries(fields)) for (const v of vs) query.append(k, v);
    const json = await this.getJson(as, p, `/_matrix/app/unstable${p}`, query);
    return Array.isArray(json) ? json : [];
  }

  private async getJson(as: ApplicationService, path: string, legacyPath: string, query?: URLSearchParams): Promise<unknown> {
    if (as.url === null) return undefined;
    try {
      const res = await this.call(as, { method: "GET", path, legacyPath, query, timeoutMs: QUERY_TIMEOUT_MS });
      if (res.status !== 200) return undefined;
      return JSON.parse(res.body.toString("utf8")) as unknown;
    } catch {
      return undefined;
    }
  }

  /** POST /_matrix/app/v1/ping (no legacy path: the endpoint is new in v1.7). */
  async ping(as: ApplicationService, transactionId: string | undefined): Promise<PingOutcome> {
    if (as.url === null) return { ok: false, reason: "url_not_set" };
    const started = this.now();
    let res: OutboundResponse;
    try {
      res = await this.send(as, as.url + "/_matrix/app/v1/ping", { method: "POST", path: "/ping", body: Buffer.from(JSON.stringify(transactionId !== undefined ? { transaction_id: transactionId } : {})), timeoutMs: PING_TIMEOUT_MS }, false);
    } catch (e) {
      if (e instanceof OutboundError && e.reason === "timeout") return { ok: false, reason: "connection_timeout" };
      return { ok: false, reason: "connection_failed" };
    }
    if (res.status < 200 || res.status >= 300) return { ok: false, reason: "bad_status", status: res.status, body: res.body.toString("utf8").slice(0, 4096) };
    return { ok: true, durationMs: this.now() - started };
  }

  private async call(as: ApplicationService, call: Call): Promise<OutboundResponse> {
    if (as.url === null) throw new Error(`application service ${as.id} has no url`);
    const v1 = `${as.url}/_matrix/app/v1${call.path}`;
    const legacy = call.legacyPath !== undefined ? `${as.url}${call.legacyPath}` : undefined;
    const since = this.legacySince.get(as.id);
    const legacyFirst = legacy !== undefined && since !== undefined && this.now() - since < LEGACY_RETRY_MS;
    const [first, second] = legacyFirst ? [legacy, v1] : [v1, legacy];
    const firstIsLegacy = legacyFirst;
    // A service that cannot be reached (or does not answer in time) is not tried on the other path: only an answer
    // other than success is.
    const res = await this.send(as, first, call, firstIsLegacy);
    if (res.status >= 200 && res.status < 300) {
      if (!firstIsLegacy) this.legacySince.delete(as.id);
      return res;
    }
    if (second === undefined) return res;
    let retry: OutboundResponse;
    try {
      retry = await this.send(as, second, call, !firstIsLegacy);
    } catch {
      return res;
    }
    if (retry.status >= 200 && retry.status < 300) {
      if (firstIsLegacy) this.legacySince.delete(as.id);
      else this.legacySince.set(as.id, this.now());
      return retry;
    }
    return res;
  }

  private send(as: ApplicationService, url: string, call: Pick<Call, "method" | "query" | "body" | "timeoutMs" | "path">, legacy: boolean): Promise<OutboundResponse> {
    const query = new URLSearchParams(call.query);
    if (legacy) query.set("access_token", as.registration.hsToken);
    const qs = query.toString();
    const headers: Record<string, string> = { authorization: `Bearer ${as.registration.hsToken}` };
    let body: Buffer | undefined;
    if (call.body !== undefined) {
      body = Buffer.isBuffer(call.body) ? call.body : Buffer.from(JSON.stringify(call.body));
      headers["content-type"] = "application/json";
    }
    return this.http.request(qs ? `${url}?${qs}` : url, { method: call.method, headers, body, timeoutMs: call.timeoutMs, maxResponseBytes: MAX_RESPONSE_BYTES });
  }
}
