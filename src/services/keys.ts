/**
 * Other servers' signing keys (server-server API, "Retrieving server keys"): fetched from the server itself
 * (`GET /_matrix/key/v2/server`), then through `trusted_key_servers` (`POST /_matrix/key/v2/query`), kept in the
 * database and in memory with their validity, and used to verify signed JSON — requests, and later events.
 *
 * Validity: a key from `verify_keys` may be used until the response's `valid_until_ts`, but "servers MUST use the
 * lesser of valid_until_ts and 7 days into the future"; a key from `old_verify_keys` until its `expired_ts`. Old keys
 * are never deleted, so old events stay verifiable. Whether validity is enforced is the caller's choice (`atTs`):
 * request authentication and room versions 5+ ("enforce signing key validity") pass a timestamp; rooms v1–v4 do not.
 */
import { CacheRegistry, ENTRY_BYTES, STRING_BYTES, type Cache } from "../util/cache.js";
import type { Logger } from "pino";
import { verifyJsonSignature } from "../core/crypto/signing.js";
import { decodeBase64 } from "../core/json/base64.js";
import { isJsonObject, type JsonObject } from "../core/json/types.js";
import { MatrixError } from "../errors.js";
import type { FederationClient } from "../federation/client.js";
import type { ServerKeyRow, ServerKeyStore } from "../storage/server_keys.js";

export interface VerifyKey {
  keyId: string;
  /** Unpadded base64 ed25519 public key. */
  key: string;
  /** Until when signatures by this key are acceptable (ms). */
  validUntilTs: number;
}

export interface TrustedKeyServer {
  serverName: string;
  /** When given, the notary's answers must be signed by one of these (key id → base64 public key). */
  verifyKeys?: Record<string, string>;
}

/** A signature that does not verify, or no usable key to verify it with: 401 M_UNAUTHORIZED where it ends a request. */
export class SignatureError extends MatrixError {
  constructor(message: string) {
    super(401, "M_UNAUTHORIZED", message);
  }
}

/** A key response that is malformed or not properly signed. */
export class KeyResponseError extends Error {}

export interface KeyFetcherOptions {
  /** Where its caches are sized and counted (a private registry when absent). */
  caches?: CacheRegistry;
  serverName: string;
  /** Our own keys: the current one (valid indefinitely) and `old_signing_keys`. Never fetched. */
  ownKeys: readonly VerifyKey[];
  store: Pick<ServerKeyStore, "getKeys" | "upsertKeys">;
  client: Pick<FederationClient, "get" | "post">;
  trustedKeyServers: readonly TrustedKeyServer[];
  log: Logger;
  now?: () => number;
}

/** "Servers MUST use the lesser of valid_until_ts and 7 days into the future". */
export const MAX_KEY_VALIDITY_MS = 7 * 24 * 3600_000;
/** After fetching a server's keys, wait this long before fetching them again for a key we still lack. */
export const REFETCH_INTERVAL_MS = 30_000;
/** Synapse gives `/key/v2/server` 10 s: it is cheap to answer, and a notary must answer its own caller in time. */
const DIRECT_TIMEOUT_MS = 10_000;
const NOTARY_TIMEOUT_MS = 30_000;
const MAX_KEY_RESPONSE_BYTES = 1024 * 1024;

export class KeyFetcher {
  private readonly serverName: string;
  private readonly ownKeys: Map<string, VerifyKey>;
  /** Every key we hold per server (a mirror of the database rows). */
  private readonly cache: Cache<string, Map<string, VerifyKey>>;
  private readonly inflight = new Map<string, Promise<void>>();
  private readonly lastFetch: Cache<string, number>;
  private readonly now: () => number;

  constructor(private readonly opts: KeyFetcherOptions) {
    const caches = opts.caches ?? new CacheRegistry();
    this.cache = caches.create("server_keys", (m, k) => STRING_BYTES(k) + ENTRY_BYTES + m.size * 200);
    this.lastFetch = caches.create("server_key_fetches", (_v, k) => STRING_BYTES(k) + ENTRY_BYTES);
    this.serverName = opts.serverName;
    this.ownKeys = new Map(opts.ownKeys.map((k) => [k.keyId, k]));
    this.now = opts.now ?? Date.now;
  }

  /**
   * Verifies that `obj` carries a valid signature of `serverName` (spec "Checking for a signature"): every
   * signature of that server whose key we can get must verify, and at least one must. With `atTs`, only keys valid
   * at that time count (missing or expired keys are fetched again). Throws SignatureError.
   */
  async verifySignedJson(obj: JsonObject, serverName: string, opts: { atTs?: number } = {}): Promise<void> {
    const sigs = isJsonObject(obj.signatures) ? obj.signatures[serverName] : undefined;
    if (!isJsonObject(sigs)) throw new SignatureError(`Not signed by ${serverName}`);
    const keyIds = Object.keys(sigs).filter((id) => id.startsWith("ed25519:") && typeof sigs[id] === "string");
    if (keyIds.length === 0) throw new SignatureError(`No supported signature from ${serverName}`);
    const atTs = opts.atTs ?? 0;
    const keys = await this.getVerifyKeys(serverName, keyIds, atTs);
    let verified = 0;
    for (const keyId of keyIds) {
      const key = keys.get(keyId);
      if (!key || key.validUntilTs < atTs) continue;
      if (!verifyJsonSignature(obj, serverName, keyId, key.key)) throw new SignatureError(`Invalid signature from ${serverName} with key ${keyId}`);
      verified++;
    }
    if (verified === 0) throw new SignatureError(`No valid signing key of ${serverName} found among ${keyIds.join(", ")}`);
  }

  /**
   * The keys of `serverName` among `keyIds` that we have or can get. A key missing or valid only until before
   * `minimumValidUntilTs` makes us ask the server, then the notaries (at most once per REFETCH_INTERVAL_MS). Keys
   * that are still too old are returned anyway: the caller decides (an old event may still be checked with them).
   */
  async getVerifyKeys(serverName: string, keyIds: readonly string[], minimumValidUntilTs = 0): Promise<Map<string, VerifyKey>> {
    let known = serverName === this.serverName ? this.ownKeys : await this.loadKeys(serverName);
    if (serverName !== this.serverName && !satisfies(known, keyIds, minimumValidUntilTs)) {
      await this.once(serverName, () => this.fetchRemote(serverName, keyIds, minimumValidUntilTs));
      known = await this.loadKeys(serverName);
    }
    const out = new Map<string, VerifyKey>();
    for (const id of keyIds) {
      const key = known.get(id);
      if (key) out.set(id, key);
    }
    return out;
  }

  /**
   * Fetches a server's keys from the server itself; used by the notary, which calls it only when what it holds does
   * not meet a query's criteria (a missing key, or one not valid until the `minimum_valid_until_ts` asked for). As
   * Synapse's notary, each such query asks the origin again: not held back by REFETCH_INTERVAL_MS, only merged with
   * a fetch already under way. Never throws.
   */
  async refreshFromServer(serverName: string): Promise<void> {
    await this.once(
      serverName,
      async () => {
        try {
          await this.fetchDirect(serverName);
        } catch (e) {
          this.opts.log.info({ server: serverName, err: (e as Error).message }, "could not fetch server keys");
        }
      },
      { throttle: false },
    );
  }

  /**
   * Runs `fn` unless a fetch for this server is running (then waits for it) or, with `throttle` (the default), ran
   * within REFETCH_INTERVAL_MS.
   */
  private async once(serverName: string, fn: () => Promise<void>, opts: { throttle?: boolean } = {}): Promise<void> {
    const running = this.inflight.get(serverName);
    if (running) return running;
    const last = this.lastFetch.get(serverName);
    if ((opts.throttle ?? true) && last !== undefined && this.now() - last < REFETCH_INTERVAL_MS) return;
    this.lastFetch.set(serverName, this.now());
    const p = fn().finally(() => this.inflight.delete(serverName));
    this.inflight.set(serverName, p);
    return p;
  }

  /** Directly, then each trusted key server in turn, until the wanted keys are valid long enough. */
  private async fetchRemote(serverName: string, keyIds: readonly string[], minimumValidUntilTs: number): Promise<void> {
    try {
      await this.fetchDirect(serverName);
      if (satisfies(await this.loadKeys(serverName), keyIds, minimumValidUntilTs)) return;
    } catch (e) {
      this.opts.log.info({ server: serverName, err: (e as Error).message }, "could not fetch server keys directly");
    }
    for (const notary of this.opts.trustedKeyServers) {
      if (notary.serverName === serverName || notary.serverName === this.serverName) continue;
      try {
        await this.fetchFromNotary(notary, serverName, keyIds, minimumValidUntilTs);
        if (satisfies(await this.loadKeys(serverName), keyIds, minimumValidUntilTs)) return;
      } catch (e) {
        this.opts.log.info({ server: serverName, notary: notary.serverName, err: (e as Error).message }, "could not fetch server keys from notary");
      }
    }
  }

  /** `GET /_matrix/key/v2/server` on the server itself. Throws FederationError or KeyResponseError. */
  async fetchDirect(serverName: string): Promise<void> {
    const now = this.now();
    const res = await this.opts.client.get(serverName, "/_matrix/key/v2/server", undefined, { timeoutMs: DIRECT_TIMEOUT_MS, maxResponseBytes: MAX_KEY_RESPONSE_BYTES });
    await this.store(keyRowsFromResponse(serverName, res, serverName, now));
  }

  /**
   * `POST /_matrix/key/v2/query` on a notary. Its answers must be signed by the notary's configured `verify_keys`
   * when there are any, and each must be signed by the server it describes, as a direct answer would be.
   */
  async fetchFromNotary(notary: TrustedKeyServer, serverName: string, keyIds: readonly string[], minimumValidUntilTs: number): Promise<void> {
    const now = this.now();
    // "When using the /query endpoint, servers MUST set the minimum_valid_until_ts property".
    const criteria = Object.fromEntries(keyIds.map((id) => [id, { minimum_valid_until_ts: minimumValidUntilTs }]));
    const res = await this.opts.client.post(notary.serverName, "/_matrix/key/v2/query", { server_keys: { [serverName]: criteria } }, { timeoutMs: NOTARY_TIMEOUT_MS, maxResponseBytes: MAX_KEY_RESPONSE_BYTES });
    if (!Array.isArray(res.server_keys)) throw new KeyResponseError(`notary ${notary.serverName} answered without a server_keys list`);
    const rows: ServerKeyRow[] = [];
    for (const entry of res.server_keys) {
      // We asked about one server; anything else in the answer is ignored.
      if (!isJsonObject(entry) || entry.server_name !== serverName) continue;
      try {
        if (notary.verifyKeys) checkNotarySignature(notary, entry);
        rows.push(...keyRowsFromResponse(serverName, entry, notary.serverName, now));
      } catch (e) {
        this.opts.log.warn({ server: serverName, notary: notary.serverName, err: (e as Error).message }, "rejected a key response from a notary");
      }
    }
    await this.store(rows);
  }

  private async loadKeys(serverName: string): Promise<Map<string, VerifyKey>> {
    let keys = this.cache.get(serverName);
    if (!keys) {
      const rows = await this.opts.store.getKeys(serverName);
      keys = new Map(rows.map((r) => [r.key_id, { keyId: r.key_id, key: r.verify_key, validUntilTs: r.valid_until_ts }]));
      this.cache.set(serverName, keys);
    }
    return keys;
  }

  /** Persists rows, and mirrors the store's rule in memory: a key is replaced only by one valid at least as long. */
  private async store(rows: ServerKeyRow[]): Promise<void> {
    if (rows.length === 0) return;
    await this.opts.store.upsertKeys(rows);
    for (const r of rows) {
      const keys = this.cache.get(r.server_name);
      if (!keys) continue; // loaded from the database on next use
      const existing = keys.get(r.key_id);
      if (!existing || r.valid_until_ts >= existing.validUntilTs) keys.set(r.key_id, { keyId: r.key_id, key: r.verify_key, validUntilTs: r.valid_until_ts });
    }
  }
}

function satisfies(known: ReadonlyMap<string, VerifyKey>, keyIds: readonly string[], minimumValidUntilTs: number): boolean {
  return keyIds.every((id) => (known.get(id)?.validUntilTs ?? -1) >= minimumValidUntilTs);
}

function isPublicKey(v: unknown): v is string {
  return typeof v === "string" && decodeBase64(v)?.length === 32;
}

/**
 * Validates one "Server Keys" object (the whole `/key/v2/server` answer, or one entry of a notary's) and turns it
 * into rows: it must be about `serverName`, have a `valid_until_ts`, and carry at least one signature of that
 * server made with a key it lists in `verify_keys` — every such signature must verify. Throws KeyResponseError.
 */
export function keyRowsFromResponse(serverName: string, res: JsonObject, fromServer: string, now: number): ServerKeyRow[] {
  if (res.server_name !== serverName) throw new KeyResponseError(`key response is for ${String(res.server_name)}, not ${serverName}`);
  const validUntil = res.valid_until_ts;
  if (typeof validUntil !== "number" || !Number.isSafeInteger(validUntil)) throw new KeyResponseError(`key response of ${serverName} has no valid_until_ts`);
  if (!isJsonObject(res.verify_keys)) throw new KeyResponseError(`key response of ${serverName} has no verify_keys`);
  const cap = now + MAX_KEY_VALIDITY_MS;
  const keys = new Map<string, { key: string; validUntilTs: number }>();
  for (const [keyId, v] of Object.entries(res.verify_keys)) {
    if (!keyId.startsWith("ed25519:") || !isJsonObject(v)) continue;
    if (!isPublicKey(v.key)) throw new KeyResponseError(`key ${keyId} of ${serverName} is not an ed25519 public key`);
    keys.set(keyId, { key: v.key, validUntilTs: Math.min(validUntil, cap) });
  }
  const sigs = isJsonObject(res.signatures) ? res.signatures[serverName] : undefined;
  let selfSigned = 0;
  if (isJsonObject(sigs)) {
    for (const keyId of Object.keys(sigs)) {
      const key = keys.get(keyId);
      // A signature by a key not in verify_keys may be a notary's own; it proves nothing about this server.
      if (!key) continue;
      if (!verifyJsonSignature(res, serverName, keyId, key.key)) throw new KeyResponseError(`key response of ${serverName} has a bad signature by ${keyId}`);
      selfSigned++;
    }
  }
  if (selfSigned === 0) throw new KeyResponseError(`key response of ${serverName} is not signed by ${serverName}`);
  if (res.old_verify_keys !== undefined && !isJsonObject(res.old_verify_keys)) throw new KeyResponseError(`old_verify_keys of ${serverName} is not an object`);
  for (const [keyId, v] of Object.entries(res.old_verify_keys ?? {})) {
    if (!keyId.startsWith("ed25519:") || !isJsonObject(v)) continue;
    const expired = v.expired_ts;
    if (!isPublicKey(v.key) || typeof expired !== "number" || !Number.isSafeInteger(expired)) throw new KeyResponseError(`old key ${keyId} of ${serverName} is malformed`);
    // Listed as old: usable only for what it signed before it expired (this wins over verify_keys, as in Synapse).
    keys.set(keyId, { key: v.key, validUntilTs: Math.min(expired, cap) });
  }
  const json = JSON.stringify(res);
  return [...keys].map(([keyId, k]) => ({
    server_name: serverName,
    key_id: keyId,
    verify_key: k.key,
    valid_until_ts: k.validUntilTs,
    from_server: fromServer,
    ts_added_ms: now,
    key_json: json,
  }));
}

/** A notary's answer must carry its signature by one of the keys configured for it, and each of those must verify. */
function checkNotarySignature(notary: TrustedKeyServer, entry: JsonObject): void {
  const sigs = isJsonObject(entry.signatures) ? entry.signatures[notary.serverName] : undefined;
  let verified = 0;
  if (isJsonObject(sigs)) {
    for (const [keyId, key] of Object.entries(notary.verifyKeys ?? {})) {
      if (sigs[keyId] === undefined) continue;
      if (!verifyJsonSignature(entry, notary.serverName, keyId, key)) throw new KeyResponseError(`bad signature by notary key ${keyId}`);
      verified++;
    }
  }
  if (verified === 0) throw new KeyResponseError(`not signed by any configured key of notary ${notary.serverName}`);
}
