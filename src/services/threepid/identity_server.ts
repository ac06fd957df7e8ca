/**
 * The Identity Service API as a homeserver uses it (spec identity-service-api, v2): binding and unbinding 3PIDs,
 * looking addresses up, and storing third-party invites. The identity server is the one the client names
 * (`id_server`), so requests go through the IP-range-filtered outbound client, as push gateways do.
 */
import { createHash } from "node:crypto";
import type { SigningKey } from "../../core/crypto/ed25519.js";
import { signRequest } from "../../core/federation/xmatrix.js";
import { isValidServerName } from "../../core/ids/ids.js";
import { isJsonObject, type JsonObject } from "../../core/json/types.js";
import { MatrixError, invalidParam } from "../../errors.js";
import type { OutboundHttp, OutboundResponse } from "../../outbound/http_client.js";

const TIMEOUT_MS = 30_000;
const MAX_RESPONSE = 1024 * 1024;

/** The answer of POST /store-invite: what goes into the m.room.third_party_invite event. */
export interface StoredInvite {
  token: string;
  displayName: string;
  publicKeys: { public_key: string; key_validity_url?: string }[];
}

export class IdentityServerClient {
  constructor(
    private readonly http: OutboundHttp,
    private readonly serverName: string,
    private readonly signingKey: SigningKey,
  ) {}

  /** A client's `id_server`: a server name (host[:port]), without a scheme (Synapse strips one if sent). */
  static checkIdServer(idServer: unknown): string {
    if (typeof idServer !== "string") throw invalidParam("id_server must be a string");
    const name = idServer.replace(/^https?:\/\//, "").replace(/\/$/, "");
    if (!isValidServerName(name)) throw invalidParam("id_server is not a valid server name");
    return name;
  }

  /** POST /3pid/bind: the identity server's validated session `sid` becomes a binding to `mxid`. */
  async bind(idServer: string, idAccessToken: string, sid: string, clientSecret: string, mxid: string): Promise<JsonObject> {
    const res = await this.send(idServer, "POST", "/_matrix/identity/v2/3pid/bind", { sid, client_secret: clientSecret, mxid }, { bearer: idAccessToken });
    return this.jsonOrError(res);
  }

  /**
   * POST /3pid/unbind, authenticated by our server signature. True when the identity server removed the binding;
   * false when it had none or cannot unbind (400, 404, 501, as Synapse treats them); throws for other failures.
   */
  async unbind(idServer: string, mxid: string, medium: string, address: string): Promise<boolean> {
    const path = "/_matrix/identity/v2/3pid/unbind";
    const content = { mxid, threepid: { medium, address } };
    const authorization = signRequest({ method: "POST", uri: path, origin: this.serverName, destination: idServer, content }, this.signingKey);
    const res = await this.send(idServer, "POST", path, content, { authorization });
    if (res.status >= 200 && res.status < 300) return true;
    if (res.status === 400 || res.status === 404 || res.status === 501) return false;
    throw new MatrixError(500, "M_UNKNOWN", `Failed to unbind from the identity server (HTTP ${res.status})`);
  }

  /** The Matrix ID an address is bound to (v2 hashed lookup), or undefined. */
  async lookup(idServer: string, idAccessToken: string, medium: string, address: string): Promise<string | undefined> {
    const details = this.jsonOrError(await this.send(idServer, "GET", "/_matrix/identity/v2/hash_details", undefined, { bearer: idAccessToken }));
    const algorithms = Array.isArray(details.algorithms) ? details.algorithms : [];
    const pepper = typeof details.lookup_pepper === "string" ? details.lookup_pepper : "";
    let algorithm: string;
    let lookupKey: string;
    // Spec: sha256 of "address medium pepper", unpadded URL-safe base64; "none" sends "address medium" in the clear.
    if (algorithms.includes("sha256")) {
      algorithm = "sha256";
      lookupKey = createHash("sha256").update(`${address} ${medium} ${pepper}`).digest("base64url");
    } else if (algorithms.includes("none")) {
      algorithm = "none";
      lookupKey = `${address} ${medium}`;
    } else {
      throw new MatrixError(400, "M_UNKNOWN", "The identity server supports no lookup algorithm we know");
    }
    const res = this.jsonOrError(await this.send(idServer, "POST", "/_matrix/identity/v2/lookup", { addresses: [lookupKey], algorithm, pepper }, { bearer: idAccessToken }));
    const mxid = isJsonObject(res.mappings) ? res.mappings[lookupKey] : undefined;
    return typeof mxid === "string" ? mxid : undefined;
  }

  /** POST /store-invite: the identity server will tell us (onbind) when the address is bound. */
  async storeInvite(idServer: string, idAccessToken: string, invite: Record<string, string>): Promise<StoredInvite> {
    const res = this.jsonOrError(await this.send(idServer, "POST", "/_matrix/identity/v2/store-invite", invite, { bearer: idAccessToken }));
    const token = res.token;
    const keys = Array.isArray(res.public_keys) ? res.public_keys.filter(isJsonObject) : [];
    const publicKeys = keys
      .filter((k) => typeof k.public_key === "string")
      .map((k) => ({ public_key: k.public_key as string, ...(typeof k.key_validity_url === "string" ? { key_validity_url: k.key_validity_url } : {}) }));
    // Older identity servers answer a single public_key.
    if (publicKeys.length === 0 && typeof res.public_key === "string") publicKeys.push({ public_key: res.public_key, key_validity_url: `https://${idServer}/_matrix/identity/v2/pubkey/isvalid` });
    if (typeof token !== "string" || publicKeys.length === 0) throw new MatrixError(502, "M_UNKNOWN", "The identity server's store-invite answer lacks a token or public keys");
    return { token, publicKeys, displayName: typeof res.display_name === "string" ? res.display_name : "" };
  }

  private async send(idServer: string, method: string, path: string, body: unknown, auth: { bearer?: string; authorization?: string }): Promise<OutboundResponse> {
    const headers: Record<string, string> = { accept: "application/json" };
    if (body !== undefined) headers["content-type"] = "application/json";
    if (auth.bearer !== undefined) headers.authorization = `Bearer ${auth.bearer}`;
    if (auth.authorization !== undefined) headers.authorization = auth.authorization;
    try {
      return await this.http.request(`https://${idServer}${path}`, {
        method,
        headers,
        ...(body !== undefined ? { body: Buffer.from(JSON.stringify(body)) } : {}),
        timeoutMs: TIMEOUT_MS,
        maxResponseBytes: MAX_RESPONSE,
      });
    } catch (e) {
      throw new MatrixError(500, "M_UNKNOWN", `Failed to contact the identity server: ${(e as Error).message}`);
    }
  }

  /** A 2xx JSON object, or the identity server's own error passed on (as Synapse does). */
  private jsonOrError(res: OutboundResponse): JsonObject {
    let body: unknown;
    try {
      body = JSON.parse(res.body.toString("utf8"));
    } catch {
      body = undefined;
    }
    if (res.status >= 200 && res.status < 300 && isJsonObject(body)) return body;
    if (res.status >= 400 && res.status < 500 && isJsonObject(body) && typeof body.errcode === "string") {
      throw new MatrixError(res.status, body.errcode, typeof body.error === "string" ? body.error : "Identity server error");
    }
    throw new MatrixError(500, "M_UNKNOWN", `The identity server answered HTTP ${res.status}`);
  }
}
