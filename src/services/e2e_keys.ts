/**
 * Device keys, one-time keys and fallback keys (client-server "End-to-End Encryption", server-server "End-to-End
 * Encryption"): POST /keys/upload, /keys/query, /keys/claim and GET /keys/changes, the federation
 * /user/keys/query and /user/keys/claim we serve, and the key counts in /sync. Remote users are asked through
 * their servers in parallel, within the request's `timeout`; a server that does not answer goes in `failures`.
 */
import type { Logger } from "pino";
import { KeyError, checkDeviceKeys, checkUploadedKeys, identityKeysChanged, type DeviceKeys, type UploadedKey } from "../core/e2e/keys.js";
import { isHistoricalUserId, userIdDomain } from "../core/ids/ids.js";
import { isJsonObject, type JsonObject } from "../core/json/types.js";
import { FederationError } from "../federation/errors.js";
import type { FederationClient } from "../federation/client.js";
import { MatrixError, badJson, invalidParam } from "../errors.js";
import type { SignatureRow } from "../storage/e2e_keys.js";
import type { Storage } from "../storage/storage.js";
import { KeyedLock } from "../util/keyed_lock.js";
import { addSignatures, keyError, type CrossSigningService } from "./cross_signing.js";
import type { DeviceListService } from "./device_lists.js";
import type { RemoteDeviceLists } from "./remote_device_lists.js";

/** One-time keys accepted in one upload (clients upload tens at a time; vodozemac holds at most 100). */
export const MAX_ONE_TIME_KEYS_PER_UPLOAD = 500;
/** One-time keys a device may hold unclaimed. */
export const MAX_ONE_TIME_KEYS_PER_DEVICE = 1000;
/** Users one /keys/query may name (a large encrypted room's members fit; more is refused, not truncated). */
export const MAX_QUERY_USERS = 5000;
/** Devices one /keys/claim may name. */
export const MAX_CLAIM_DEVICES = 5000;
/** Spec: "timeout: The time (in milliseconds) to wait when downloading keys from remote servers. 10 seconds is the recommended default." */
export const DEFAULT_REMOTE_TIMEOUT_MS = 10_000;

export type KeyQueryRequest = Map<string, string[]>;
export type KeyClaimRequest = Map<string, Map<string, string>>;

export interface KeyQueryResult {
  device_keys: Record<string, Record<string, JsonObject>>;
  master_keys: Record<string, JsonObject>;
  self_signing_keys: Record<string, JsonObject>;
  user_signing_keys?: Record<string, JsonObject>;
  failures?: Record<string, JsonObject>;
}

export interface KeyClaimResult {
  one_time_keys: Record<string, Record<string, Record<string, unknown>>>;
  failures?: Record<string, JsonObject>;
}

export interface E2eKeyDeps {
  serverName: string;
  storage: Storage;
  deviceLists: DeviceListService;
  crossSigning: CrossSigningService;
  remote: RemoteDeviceLists;
  federation: FederationClient;
  log: Logger;
}

export class E2eKeyService {
  /** Uploads for one device run one at a time: "does this key id exist already" must see the previous upload. */
  private readonly uploadLock = new KeyedLock();

  constructor(private readonly deps: E2eKeyDeps) {}

  private isLocal(userId: string): boolean {
    return userIdDomain(userId) === this.deps.serverName;
  }

  /**
   * POST /keys/upload. Everything is checked before anything is written, and written in one transaction: a bad key
   * anywhere leaves the device as it was.
   */
  async upload(userId: string, deviceId: string, body: unknown): Promise<{ one_time_key_counts: Record<string, number> }> {
    if (!isJsonObject(body)) throw badJson("Content must be a JSON object.");
    return this.uploadLock.run(`${userId}|${deviceId}`, async () => {
      const { e2eKeys } = this.deps.storage;
      let deviceKeys: DeviceKeys | undefined;
      let otks: UploadedKey[] = [];
      let fallbacks: UploadedKey[] = [];
      const storedJson = await e2eKeys.deviceKey(userId, deviceId);
      const stored = storedJson !== undefined ? (JSON.parse(storedJson) as DeviceKeys) : undefined;
      try {
        if (body.device_keys !== undefined && body.device_keys !== null) deviceKeys = checkDeviceKeys(body.device_keys, userId, deviceId);
        const ed = (deviceKeys ?? stored)?.keys?.[`ed25519:${deviceId}`];
        if (body.one_time_keys !== undefined && body.one_time_keys !== null) otks = checkUploadedKeys(body.one_time_keys, "one_time_keys", userId, deviceId, ed);
        // The unstable name from before MSC2732 was merged, still sent by older clients.
        const fb = body.fallback_keys ?? body["org.matrix.msc2732.fallback_keys"];
        if (fb !== undefined && fb !== null) fallbacks = checkUploadedKeys(fb, "fallback_keys", userId, deviceId, ed);
      } catch (e) {
        if (e instanceof KeyError) throw keyError(e);
        throw e;
      }
      // Synapse keeps a device's identity: new identity keys under an existing device id are refused (a client
      // that lost its keys must log in as a new device); an identical re-upload is fine.
      if (deviceKeys && stored && identityKeysChanged(stored, deviceKeys)) throw invalidParam(`Device ${deviceId} already has different identity keys; log in as a new device instead`);
      if (otks.length > MAX_ONE_TIME_KEYS_PER_UPLOAD) throw invalidParam(`At most ${MAX_ONE_TIME_KEYS_PER_UPLOAD} one-time keys may be uploaded at once`);
      const byAlg = new Set<string>();
      for (const f of fallbacks) {
        if (byAlg.has(f.algorithm)) throw invalidParam(`Only one fallback key per algorithm: two ${f.algorithm} keys given`);
        byAlg.add(f.algorithm);
      }
      // A key id already held must be the same key ("one_time_keys … re-uploading an existing key id with
      // different content" is an error, as Synapse; the same content is a retry and fine).
      const existing = new Map((await e2eKeys.oneTimeKeys(userId, deviceId, otks)).map((r) => [`${r.algorithm}:${r.key_id}`, r.key_json]));
      const fresh: { algorithm: string; keyId: string; json: string }[] = [];
      for (const k of otks) {
        const json = JSON.stringify(k.value);
        const held = existing.get(`${k.algorithm}:${k.keyId}`);
        if (held === undefined) fresh.push({ algorithm: k.algorithm, keyId: k.keyId, json });
        else if (!sameJson(held, k.value)) throw invalidParam(`One-time key ${k.algorithm}:${k.keyId} already exists with different content`);
      }
      const counts = await e2eKeys.countOneTimeKeys(userId, deviceId);
      const held = Object.values(counts).reduce((a, b) => a + b, 0);
      if (held + fresh.length > MAX_ONE_TIME_KEYS_PER_DEVICE) throw invalidParam(`A device may hold at most ${MAX_ONE_TIME_KEYS_PER_DEVICE} one-time keys (it holds ${held})`);
      const newFallbacks: UploadedKey[] = [];
      for (const f of fallbacks) {
        const cur = await e2eKeys.fallbackKey(userId, deviceId, f.algorithm);
        // The same fallback key again keeps its `used` state; any other replaces it, unused.
        if (!cur || cur.key_id !== f.keyId || !sameJson(cur.key_json, f.value)) newFallbacks.push(f);
      }
      const deviceChanged = deviceKeys !== undefined && (storedJson === undefined || !sameJson(storedJson, deviceKeys));
      const now = Date.now();
      if (deviceChanged || fresh.length > 0 || newFallbacks.length > 0) {
        await this.deps.storage.transaction(async (tx) => {
          if (deviceChanged) await tx.e2eKeys.setDeviceKeys(userId, deviceId, JSON.stringify(deviceKeys), now);
          await tx.e2eKeys.addOneTimeKeys(userId, deviceId, fresh, now);
          for (const f of newFallbacks) await tx.e2eKeys.setFallbackKey(userId, deviceId, f.algorithm, f.keyId, JSON.stringify(f.value));
        });
      }
      if (deviceChanged) await this.deps.deviceLists.localChanged(userId, [deviceId], false);
      return { one_time_key_counts: await this.counts(userId, deviceId) };
    });
  }

  /** `one_time_key_counts` / `device_one_time_keys_count`, with `signed_curve25519` always present (clients rely on it). */
  async counts(userId: string, deviceId: string): Promise<Record<string, number>> {
    return { signed_curve25519: 0, ...(await this.deps.storage.e2eKeys.countOneTimeKeys(userId, deviceId)) };
  }

  /** The /sync fields for a device: its one-time key counts and unused fallback key algorithms. */
  async syncFields(userId: string, deviceId: string): Promise<{ device_one_time_keys_count: Record<string, number>; device_unused_fallback_key_types: string[] }> {
    return { device_one_time_keys_count: await this.counts(userId, deviceId), device_unused_fallback_key_types: await this.deps.storage.e2eKeys.unusedFallbackAlgorithms(userId, deviceId) };
  }

  /** The published keys of local devices with the uploaded signatures over them (for /keys/query and EDUs). */
  async localDeviceKeys(userId: string, deviceIds?: readonly string[]): Promise<Map<string, JsonObject>> {
    const out = new Map<string, JsonObject>();
    const rows = (await this.deps.storage.e2eKeys.deviceKeys([userId])).filter((r) => !deviceIds || deviceIds.includes(r.device_id));
    if (rows.length === 0) return out;
    const sigs = await this.deps.storage.e2eKeys.signaturesOver([userId]);
    for (const r of rows) {
      const key = JSON.parse(r.key_json) as JsonObject;
      addSignatures(
        key,
        sigs.filter((s) => s.target_key_id === r.device_id),
      );
      out.set(r.device_id, key);
    }
    return out;
  }

  /**
   * Local users' keys: every device asked for (all when the list is empty) with `unsigned.device_display_name`,
   * and the cross-signing keys as `viewer` may see them (undefined: another server asks).
   */
  async queryLocal(req: KeyQueryRequest, viewer: string | undefined): Promise<KeyQueryResult> {
    const userIds = [...req.keys()].filter((u) => this.isLocal(u));
    const out: KeyQueryResult = { device_keys: {}, master_keys: {}, self_signing_keys: {} };
    if (userIds.length === 0) return viewer !== undefined ? { ...out, user_signing_keys: {} } : out;
    const { storage } = this.deps;
    const allKeys = new Map<string, JsonObject[]>();
    for (const r of await storage.e2eKeys.deviceKeys(userIds)) {
      const list = allKeys.get(r.user_id) ?? [];
      list.push({ device_id: r.device_id, key_json: r.key_json });
      allKeys.set(r.user_id, list);
    }
    const withKeys = userIds.filter((u) => allKeys.has(u));
    const sigsByKey = new Map<string, SignatureRow[]>();
    for (const sig of await storage.e2eKeys.signaturesOver(withKeys)) {
      const k = `${sig.target_user_id}|${sig.target_key_id}`;
      sigsByKey.set(k, [...(sigsByKey.get(k) ?? []), sig]);
    }
    // Every user's device names in one read (a large room's members are queried at once).
    const namesByUser = new Map<string, Map<string, string | null>>();
    for (const d of await storage.devices.namesOf(withKeys)) {
      const m = namesByUser.get(d.user_id) ?? new Map<string, string | null>();
      m.set(d.device_id, d.display_name);
      namesByUser.set(d.user_id, m);
    }
    for (const userId of userIds) {
      const wanted = req.get(userId)!;
      const byDevice: Record<string, JsonObject> = {};
      out.device_keys[userId] = byDevice;
      const rows = allKeys.get(userId);
      if (!rows) continue;
      const names = namesByUser.get(userId) ?? new Map<string, string | null>();
      for (const r of rows) {
        const deviceId = r.device_id as string;
        if ((wanted.length > 0 && !wanted.includes(deviceId)) || !names.has(deviceId)) continue;
        const key = JSON.parse(r.key_json as string) as JsonObject;
        addSignatures(key, sigsByKey.get(`${userId}|${deviceId}`) ?? []);
        const name = names.get(deviceId);
        key.unsigned = name ? { device_display_name: name } : {};
        byDevice[deviceId] = key;
      }
    }
    const cs = await this.deps.crossSigning.view(userIds, viewer);
    out.master_keys = cs.master_keys;
    out.self_signing_keys = cs.self_signing_keys;
    if (viewer !== undefined) out.user_signing_keys = cs.user_signing_keys;
    return out;
  }

  /**
   * POST /keys/query: local users from the database, remote users from the device-list cache when it is current
   * and otherwise from their servers (one /user/keys/query per server, all in parallel, within `timeoutMs`).
   */
  async query(viewer: string, req: KeyQueryRequest, timeoutMs: number): Promise<KeyQueryResult> {
    if (req.size > MAX_QUERY_USERS) throw invalidParam(`At most ${MAX_QUERY_USERS} users may be queried at once`);
    const out = await this.queryLocal(req, viewer);
    out.failures = {};
    const byServer = new Map<string, string[]>();
    for (const userId of req.keys()) {
      if (this.isLocal(userId)) continue;
      const server = userIdDomain(userId)!;
      byServer.set(server, [...(byServer.get(server) ?? []), userId]);
    }
    const deadline = Date.now() + timeoutMs;
    await Promise.all(
      [...byServer].map(async ([server, users]) => {
        const cached = await this.deps.remote.cached(users, Math.max(0, deadline - Date.now()));
        for (const [userId, keys] of cached) {
          const wanted = req.get(userId)!;
          out.device_keys[userId] = Object.fromEntries(Object.entries(keys.devices).filter(([d]) => wanted.length === 0 || wanted.includes(d)));
          if (keys.master_key) out.master_keys[userId] = keys.master_key;
          if (keys.self_signing_key) out.self_signing_keys[userId] = keys.self_signing_key;
        }
        const ask = users.filter((u) => !cached.has(u));
        if (ask.length === 0) return;
        try {
          const res = await this.deps.federation.post(
            server,
            "/_matrix/federation/v1/user/keys/query",
            { device_keys: Object.fromEntries(ask.map((u) => [u, req.get(u)!])) },
            { timeoutMs: Math.max(1, deadline - Date.now()) },
          );
          mergeRemoteQuery(out, server, res);
        } catch (e) {
          out.failures![server] = failureOf(e);
        }
      }),
    );
    // Signatures the viewer made over remote users' master keys are ours to add (the viewer's own, stored here).
    const remoteMasters = Object.keys(out.master_keys).filter((u) => !this.isLocal(u));
    if (remoteMasters.length > 0) {
      const sigs = (await this.deps.storage.e2eKeys.signaturesOver(remoteMasters)).filter((s) => s.signer_user_id === viewer);
      for (const u of remoteMasters) addSignatures(out.master_keys[u]!, sigs.filter((s) => s.target_user_id === u));
    }
    return out;
  }

  /** Claims local one-time keys; the device's fallback key (left in place, marked used) when its pool is empty. */
  async claimLocal(req: KeyClaimRequest): Promise<KeyClaimResult["one_time_keys"]> {
    const out: KeyClaimResult["one_time_keys"] = {};
    const { e2eKeys } = this.deps.storage;
    for (const [userId, devices] of req) {
      if (!this.isLocal(userId)) continue;
      for (const [deviceId, algorithm] of devices) {
        const key = (await e2eKeys.claimOneTimeKey(userId, deviceId, algorithm)) ?? (await e2eKeys.claimFallbackKey(userId, deviceId, algorithm));
        if (!key) continue;
        ((out[userId] ??= {})[deviceId] ??= {})[`${algorithm}:${key.key_id}`] = JSON.parse(key.key_json) as unknown;
      }
    }
    return out;
  }

  /** POST /keys/claim: local keys, and remote ones through one /user/keys/claim per server, in parallel. */
  async claim(req: KeyClaimRequest, timeoutMs: number): Promise<KeyClaimResult> {
    let n = 0;
    for (const d of req.values()) n += d.size;
    if (n > MAX_CLAIM_DEVICES) throw invalidParam(`At most ${MAX_CLAIM_DEVICES} devices may be claimed for at once`);
    const out: KeyClaimResult = { one_time_keys: await this.claimLocal(req), failures: {} };
    const byServer = new Map<string, Record<string, Record<string, string>>>();
    for (const [userId, devices] of req) {
      if (this.isLocal(userId)) continue;
      const server = userIdDomain(userId)!;
      const m = byServer.get(server) ?? {};
      m[userId] = Object.fromEntries(devices);
      byServer.set(server, m);
    }
    await Promise.all(
      [...byServer].map(async ([server, oneTimeKeys]) => {
        try {
          const res = await this.deps.federation.post(server, "/_matrix/federation/v1/user/keys/claim", { one_time_keys: oneTimeKeys }, { timeoutMs });
          if (!isJsonObject(res.one_time_keys)) return;
          for (const [userId, devices] of Object.entries(res.one_time_keys)) {
            // Only what we asked that server about: its own users.
            if (userIdDomain(userId) !== server || !oneTimeKeys[userId] || !isJsonObject(devices)) continue;
            for (const [deviceId, keys] of Object.entries(devices)) if (isJsonObject(keys)) ((out.one_time_keys[userId] ??= {})[deviceId] = keys);
          }
        } catch (e) {
          out.failures![server] = failureOf(e);
        }
      }),
    );
    return out;
  }

  /**
   * GET /keys/changes: users whose device lists changed between two sync tokens, among those the user shares a room
   * with (or newly shares one with: their keys are news too), and in `left` those the user no longer shares any
   * room with, as /sync's `device_lists` reports them.
   */
  async changes(userId: string, from: { events: number; deviceLists: number }, to: { events: number; deviceLists: number }): Promise<{ changed: string[]; left: string[] }> {
    const { rooms } = this.deps.storage;
    const changed = new Set(await this.deps.deviceLists.changedFor(userId, from.deviceLists, to.deviceLists));
    const candidates = new Set<string>();
    if (to.events > from.events) {
      const mine = await rooms.roomsForUser(userId, ["join", "leave", "ban"]);
      const ids = mine.map((r) => r.room_id);
      const moved = ids.length > 0 ? await rooms.membersChangedSince(ids, from.events, to.events) : new Set<string>();
      for (const r of moved.has(userId) ? mine : []) {
        // A room the user joined or left in the range: every member is newly shared, or maybe no longer shared.
        if ((await rooms.membersChangedSince([r.room_id], from.events, to.events)).has(userId)) {
          for (const m of await rooms.members(r.room_id, ["join", "leave", "ban"])) candidates.add(m.user_id);
        }
      }
      for (const u of moved) candidates.add(u);
    }
    candidates.delete(userId);
    const shared = candidates.size > 0 ? await rooms.usersSharingRooms(userId, [...candidates]) : new Set<string>();
    const left: string[] = [];
    for (const u of candidates) {
      if (shared.has(u)) changed.add(u);
      else left.push(u);
    }
    for (const u of left) changed.delete(u);
    return { changed: [...changed], left };
  }
}

/** Adds a server's /user/keys/query answer, keeping only its own users and keys that name them. */
function mergeRemoteQuery(out: KeyQueryResult, server: string, res: JsonObject): void {
  const own = (u: string) => userIdDomain(u) === server;
  if (isJsonObject(res.device_keys)) {
    for (const [userId, devices] of Object.entries(res.device_keys)) {
      if (!own(userId) || !isJsonObject(devices)) continue;
      const byDevice: Record<string, JsonObject> = {};
      for (const [deviceId, keys] of Object.entries(devices)) if (isJsonObject(keys) && keys.user_id === userId && keys.device_id === deviceId) byDevice[deviceId] = keys;
      out.device_keys[userId] = byDevice;
    }
  }
  for (const [field, slot] of [
    ["master_keys", out.master_keys],
    ["self_signing_keys", out.self_signing_keys],
  ] as const) {
    const m = res[field];
    if (!isJsonObject(m)) continue;
    for (const [userId, key] of Object.entries(m)) if (own(userId) && isJsonObject(key) && key.user_id === userId) slot[userId] = key;
  }
}

/** A `failures` entry, as Synapse shapes it: the status the server answered (503 when it was not reached). */
function failureOf(e: unknown): JsonObject {
  if (e instanceof FederationError) return { status: e.status ?? (e.reason === "denied" ? 403 : 503), message: e.message };
  return { status: 503, message: e instanceof Error ? e.message : String(e) };
}

function sameJson(storedJson: string, v: unknown): boolean {
  return stableStringify(JSON.parse(storedJson)) === stableStringify(v);
}

function stableStringify(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stableStringify).join(",")}]`;
  if (isJsonObject(v)) return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${stableStringify(v[k])}`).join(",")}}`;
  return JSON.stringify(v);
}

/** Parses `device_keys` of /keys/query (client or federation): `{userId: [deviceId…]}`. */
export function parseQueryRequest(v: unknown): KeyQueryRequest {
  if (!isJsonObject(v)) throw badJson("device_keys must be an object of user IDs to lists of device IDs");
  const out: KeyQueryRequest = new Map();
  for (const [userId, devices] of Object.entries(v)) {
    if (!isHistoricalUserId(userId)) throw invalidParam(`Invalid user ID: ${userId}`);
    if (!Array.isArray(devices) || !devices.every((d) => typeof d === "string")) throw badJson(`device_keys.${userId} must be a list of device IDs`);
    out.set(userId, devices as string[]);
  }
  return out;
}

/** Parses `one_time_keys` of /keys/claim (client or federation): `{userId: {deviceId: algorithm}}`. */
export function parseClaimRequest(v: unknown): KeyClaimRequest {
  if (!isJsonObject(v)) throw badJson("one_time_keys must be an object of user IDs to objects of device IDs to algorithms");
  const out: KeyClaimRequest = new Map();
  for (const [userId, devices] of Object.entries(v)) {
    if (!isHistoricalUserId(userId)) throw invalidParam(`Invalid user ID: ${userId}`);
    if (!isJsonObject(devices)) throw badJson(`one_time_keys.${userId} must be an object of device IDs to algorithms`);
    const m = new Map<string, string>();
    for (const [deviceId, alg] of Object.entries(devices)) {
      if (typeof alg !== "string" || alg.length === 0) throw badJson(`one_time_keys.${userId}.${deviceId} must be an algorithm name`);
      m.set(deviceId, alg);
    }
    out.set(userId, m);
  }
  return out;
}

/** The `timeout` of /keys/query and /keys/claim, in ms (default 10 s; capped, so a client cannot hold us forever). */
export function remoteTimeout(v: unknown): number {
  if (v === undefined || v === null) return DEFAULT_REMOTE_TIMEOUT_MS;
  if (typeof v !== "number" || !Number.isFinite(v) || v < 0) throw new MatrixError(400, "M_BAD_JSON", "timeout must be a non-negative number of milliseconds");
  return Math.min(Math.max(v, 1), 60_000);
}
