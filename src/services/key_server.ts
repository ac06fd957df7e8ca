/**
 * Our side of the key exchange (server-server API, "Publishing Keys" and "Querying Keys Through Another Server"):
 * the signed answer to `GET /_matrix/key/v2/server`, and the notary that answers `/_matrix/key/v2/query` for other
 * servers from what we hold, refreshing it from the server when it is too old, and adding our signature.
 */
import type { Logger } from "pino";
import type { OldSigningKey } from "../config/config.js";
import type { SigningKey } from "../core/crypto/ed25519.js";
import { signJson } from "../core/crypto/signing.js";
import { isValidServerName } from "../core/ids/ids.js";
import { isJsonObject, type JsonObject } from "../core/json/types.js";
import type { ServerKeyRow, ServerKeyStore } from "../storage/server_keys.js";
import type { KeyFetcher } from "./keys.js";

export interface KeyServerOptions {
  serverName: string;
  signingKey: SigningKey;
  oldSigningKeys: readonly OldSigningKey[];
  /** Synapse `key_refresh_interval`: our responses are valid this long. */
  keyRefreshIntervalMs: number;
  fetcher: Pick<KeyFetcher, "refreshFromServer">;
  store: Pick<ServerKeyStore, "getKeys">;
  /** `federation_domain_whitelist`: the notary does not contact servers outside it. */
  isDomainAllowed: (serverName: string) => boolean;
  log: Logger;
  now?: () => number;
}

/** What a notary query asks about one server. */
export interface ServerKeyCriteria {
  /** Wanted key ids, each with its `minimum_valid_until_ts` (undefined when not given). Empty: all keys. */
  keyIds: Record<string, number | undefined>;
  /** The `minimum_valid_until_ts` of an all-keys query (`GET /query/{serverName}`). */
  minimumValidUntilTs?: number;
}

export class KeyServer {
  private own: { json: JsonObject; refreshAt: number } | undefined;
  private readonly now: () => number;

  constructor(private readonly opts: KeyServerOptions) {
    this.now = opts.now ?? Date.now;
  }

  /**
   * Our keys, signed, `valid_until_ts` = now + key_refresh_interval. Re-signed after half the interval, so what we
   * serve is never close to expiry ("Originating servers should avoid returning responses that expire in less than
   * an hour").
   */
  ownKeys(): JsonObject {
    const now = this.now();
    if (!this.own || now >= this.own.refreshAt) {
      const { serverName, signingKey, keyRefreshIntervalMs } = this.opts;
      const oldVerifyKeys: JsonObject = {};
      for (const k of this.opts.oldSigningKeys) oldVerifyKeys[k.keyId] = { key: k.key, expired_ts: k.expiredTs };
      const json = signJson(
        {
          server_name: serverName,
          valid_until_ts: now + keyRefreshIntervalMs,
          verify_keys: { [signingKey.keyId]: { key: signingKey.publicKeyBase64 } },
          old_verify_keys: oldVerifyKeys,
        },
        serverName,
        signingKey,
      );
      this.own = { json, refreshAt: now + keyRefreshIntervalMs / 2 };
    }
    return this.own.json;
  }

  /**
   * Answers a notary query: for each server, the key responses we hold (refreshed from the server first when
   * missing or stale), each with our signature added. Servers we know nothing about and cannot reach are left out
   * ("Servers which are offline and have no cached keys will not be included in the result").
   */
  async query(criteria: Record<string, ServerKeyCriteria>): Promise<JsonObject[]> {
    const answers = await Promise.all(Object.entries(criteria).map(([server, c]) => this.answerFor(server, c)));
    const out: JsonObject[] = [];
    for (const jsons of answers) {
      for (const json of jsons) {
        let parsed: unknown;
        try {
          parsed = JSON.parse(json);
        } catch {
          continue;
        }
        if (isJsonObject(parsed)) out.push(signJson(parsed, this.opts.serverName, this.opts.signingKey));
      }
    }
    return out;
  }

  /** The distinct stored responses to serve for one server. */
  private async answerFor(serverName: string, c: ServerKeyCriteria): Promise<string[]> {
    if (serverName === this.opts.serverName) return [JSON.stringify(this.ownKeys())];
    if (!isValidServerName(serverName)) return [];
    const wanted = Object.keys(c.keyIds);
    let rows = await this.opts.store.getKeys(serverName);
    if (this.isStale(rows, c) && this.opts.isDomainAllowed(serverName)) {
      // "Notary servers can return keys for servers that are offline … by using cached responses": a failed
      // refresh leaves what we had.
      await this.opts.fetcher.refreshFromServer(serverName);
      rows = await this.opts.store.getKeys(serverName);
    }
    const served = wanted.length === 0 ? rows : rows.filter((r) => wanted.includes(r.key_id));
    return [...new Set(served.map((r) => r.key_json))];
  }

  /**
   * Whether we should ask the server again: a wanted key is missing, or its response is not valid until the
   * requested `minimum_valid_until_ts`, or (without one) is past half its lifetime ("Intermediate notary servers
   * should cache a response for half of its lifetime to avoid serving a stale response").
   */
  private isStale(rows: ServerKeyRow[], c: ServerKeyCriteria): boolean {
    const now = this.now();
    const fresh = (row: ServerKeyRow, minimum: number | undefined): boolean => {
      const validUntil = responseValidUntil(row.key_json);
      return minimum !== undefined ? validUntil >= minimum : (row.ts_added_ms + validUntil) / 2 >= now;
    };
    const wanted = Object.entries(c.keyIds);
    if (wanted.length === 0) return !rows.some((r) => fresh(r, c.minimumValidUntilTs));
    return wanted.some(([keyId, minimum]) => {
      const row = rows.find((r) => r.key_id === keyId);
      return !row || !fresh(row, minimum);
    });
  }
}

function responseValidUntil(json: string): number {
  try {
    const v = (JSON.parse(json) as { valid_until_ts?: unknown }).valid_until_ts;
    return typeof v === "number" ? v : 0;
  } catch {
    return 0;
  }
}
