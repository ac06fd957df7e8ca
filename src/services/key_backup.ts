/**
 * Server-side key backups (client-server "Server-side key backups", key_backup.yaml). A user has backup versions;
 * the current one is the most recently created version that is not deleted, and only it takes new keys. The keys
 * are opaque to the server except for the metadata that decides which of two keys for one session to keep.
 *
 * Every write runs in one transaction that first locks the version's row (KeyBackupStore.lockVersion), so the
 * compare-and-replace of concurrent uploads, and an upload racing a deletion, never interleave — on PostgreSQL
 * across processes too.
 */
import { isJsonObject, type JsonObject, type JsonValue } from "../core/json/types.js";
import { MatrixError, badJson, invalidParam, missingParam, notFound } from "../errors.js";
import type { KeyBackupData, KeyBackupVersionRow, StoredRoomKey } from "../storage/key_backup.js";
import type { Storage, Stores } from "../storage/storage.js";

/** The one algorithm the spec defines; its auth_data has a required `public_key`. */
export const MEGOLM_BACKUP_V1 = "m.megolm_backup.v1.curve25519-aes-sha2";

/** Room and session ids are at most 255 bytes, as every Matrix identifier. */
const MAX_ID_BYTES = 255;

/** GET /room_keys/version(/{version}). */
export interface BackupVersionInfo {
  algorithm: string;
  auth_data: JsonValue;
  count: number;
  etag: string;
  version: string;
}

/** RoomKeysUpdateResponse: the answer to every PUT and DELETE of keys. */
export interface RoomKeysUpdateResponse {
  etag: string;
  count: number;
}

/** The spec's RoomKeyBackup: the sessions of one room. */
export interface RoomKeyBackup {
  sessions: Record<string, KeyBackupData>;
}

/** Which keys a /room_keys/keys request addresses: all, one room's, or one session's. */
export interface KeysTarget {
  roomId?: string;
  sessionId?: string;
}

/** 403 M_WRONG_ROOM_KEYS_VERSION: keys may only be written to the current version, named in `current_version`. */
export function wrongRoomKeysVersion(currentVersion: number): MatrixError {
  return new MatrixError(403, "M_WRONG_ROOM_KEYS_VERSION", "Wrong backup version.", { current_version: String(currentVersion) });
}

const unknownVersion = () => notFound("Unknown backup version");

/**
 * A version as the client names it. Versions are issued as decimal integers, so anything else names no backup
 * (404, as Synapse), rather than being a malformed request.
 */
export function parseBackupVersion(raw: string): number | undefined {
  if (!/^[1-9][0-9]{0,15}$/.test(raw)) return undefined;
  const n = Number(raw);
  return Number.isSafeInteger(n) ? n : undefined;
}

/**
 * The spec's rule for two keys of one session: the verified one; then the lower `first_message_index` (it can
 * decrypt more messages); then the lower `forwarded_count`. On a tie the stored key stays.
 */
export function isBetterRoomKey(candidate: KeyBackupData, stored: KeyBackupData): boolean {
  if (candidate.is_verified !== stored.is_verified) return candidate.is_verified;
  if (candidate.first_message_index !== stored.first_message_index) return candidate.first_message_index < stored.first_message_index;
  return candidate.forwarded_count < stored.forwarded_count;
}

const isObject = isJsonObject;

/** The request body itself must be an object (Synapse: "Content must be a JSON object.", M_BAD_JSON). */
function bodyObject(body: unknown): JsonObject {
  if (!isObject(body)) throw badJson("Content must be a JSON object.");
  return body;
}

/** A required field: absent is M_MISSING_PARAM, present with the wrong type M_INVALID_PARAM. */
function field<T>(obj: JsonObject, name: string, where: string, check: (v: unknown) => v is T, type: string): T {
  if (!Object.hasOwn(obj, name)) throw missingParam(`Missing '${name}'${where}`);
  const v = obj[name];
  if (!check(v)) throw invalidParam(`'${name}'${where} must be ${type}`);
  return v;
}

const isString = (v: unknown): v is string => typeof v === "string";
const isPresent = (v: unknown): v is JsonValue => v !== null && v !== undefined;
const isBoolean = (v: unknown): v is boolean => typeof v === "boolean";
/** Indices and counts: integers, never negative, within JSON's safe range (canonical JSON's). */
const isCount = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;

function checkId(id: string, what: string): string {
  if (id.length === 0) throw invalidParam(`${what} must not be empty`);
  if (Buffer.byteLength(id, "utf8") > MAX_ID_BYTES) throw invalidParam(`${what} is longer than ${MAX_ID_BYTES} bytes`);
  return id;
}

/** KeyBackupData: the four required fields; anything else the client sent is not kept (the spec defines no more). */
export function parseKeyBackupData(v: unknown, where: string): KeyBackupData {
  if (!isObject(v)) throw invalidParam(`Key data${where} must be an object`);
  return {
    first_message_index: field(v, "first_message_index", where, isCount, "a non-negative integer"),
    forwarded_count: field(v, "forwarded_count", where, isCount, "a non-negative integer"),
    is_verified: field(v, "is_verified", where, isBoolean, "a boolean"),
    // Opaque to the server, which never decrypts it: kept as sent, as Synapse does (the spec's algorithm makes it
    // an object; older clients and SyTest send strings).
    session_data: field(v, "session_data", where, isPresent, "present"),
  };
}

/** RoomKeyBackup (`{"sessions": {...}}`) of one room, as a list of keys. */
function parseRoomKeyBackup(v: unknown, roomId: string, out: StoredRoomKey[]): void {
  const where = ` for room ${roomId}`;
  if (!isObject(v)) throw invalidParam(`Room key backup${where} must be an object`);
  const sessions = field(v, "sessions", where, isObject, "an object");
  for (const [sessionId, key] of Object.entries(sessions)) {
    checkId(sessionId, "Session ID");
    out.push({ roomId, sessionId, key: parseKeyBackupData(key, ` in session ${sessionId}${where}`) });
  }
}

/** The body of any PUT /room_keys/keys…, by the level the path names, as the list of keys it carries. */
export function parseRoomKeysUpload(target: KeysTarget, body: unknown): StoredRoomKey[] {
  const obj = bodyObject(body);
  const out: StoredRoomKey[] = [];
  if (target.roomId !== undefined && target.sessionId !== undefined) {
    out.push({ roomId: target.roomId, sessionId: target.sessionId, key: parseKeyBackupData(obj, "") });
  } else if (target.roomId !== undefined) {
    parseRoomKeyBackup(obj, target.roomId, out);
  } else {
    const rooms = field(obj, "rooms", "", isObject, "an object");
    for (const [roomId, room] of Object.entries(rooms)) parseRoomKeyBackup(room, checkId(roomId, "Room ID"), out);
  }
  return out;
}

/** `algorithm` and `auth_data` of POST and PUT /room_keys/version. */
function parseBackupInfo(body: JsonObject): { algorithm: string; authData: JsonValue } {
  const algorithm = field(body, "algorithm", "", isString, "a string");
  if (algorithm.length === 0) throw invalidParam("'algorithm' must not be empty");
  // Other algorithms' auth_data is opaque (the server never interprets it, and new ones such as MSC4048's should
  // not need a server upgrade; Synapse keeps any value); the spec's own is held to its AuthData definition.
  if (algorithm !== MEGOLM_BACKUP_V1) return { algorithm, authData: field(body, "auth_data", "", isPresent, "present") };
  const authData = field(body, "auth_data", "", isObject, "an object");
  {
    field(authData, "public_key", " in auth_data", isString, "a string");
    if (Object.hasOwn(authData, "signatures") && !isObject(authData.signatures)) throw invalidParam("'signatures' in auth_data must be an object");
  }
  return { algorithm, authData };
}

export class KeyBackupService {
  constructor(private readonly storage: Storage) {}

  /** POST /room_keys/version: the new version becomes the current one. */
  async createVersion(userId: string, body: unknown): Promise<string> {
    const { algorithm, authData } = parseBackupInfo(bodyObject(body));
    return String(await this.storage.keyBackup.createVersion(userId, algorithm, authData));
  }

  /** GET /room_keys/version (the current version) and /room_keys/version/{version}. */
  async versionInfo(userId: string, version?: string): Promise<BackupVersionInfo> {
    const store = this.storage.keyBackup;
    let row: KeyBackupVersionRow | undefined;
    if (version === undefined) {
      row = await store.currentVersion(userId);
      if (!row) throw notFound("No current backup version");
    } else {
      const n = parseBackupVersion(version);
      row = n === undefined ? undefined : await store.version(userId, n);
      if (!row) throw unknownVersion();
    }
    return { algorithm: row.algorithm, auth_data: row.authData, count: await store.count(userId, row.version), etag: String(row.etag), version: String(row.version) };
  }

  /**
   * PUT /room_keys/version/{version}: only auth_data changes, of the current version only (older versions take no
   * writes, as for keys). Checks in Synapse's order: the body's version, the backup's existence, the algorithm.
   */
  async updateVersion(userId: string, version: string, body: unknown): Promise<void> {
    const obj = bodyObject(body);
    if (Object.hasOwn(obj, "version") && obj.version !== version) {
      if (typeof obj.version !== "string") throw invalidParam("'version' must be a string");
      throw invalidParam("Version in body does not match");
    }
    const { algorithm, authData } = parseBackupInfo(obj);
    const n = parseBackupVersion(version);
    if (n === undefined) throw unknownVersion();
    await this.storage.transaction(async (tx) => {
      const row = await tx.keyBackup.lockVersion(userId, n);
      if (!row) throw unknownVersion();
      if (row.algorithm !== algorithm) throw invalidParam("Algorithm does not match");
      const current = await tx.keyBackup.currentVersion(userId);
      if (current && current.version !== n) throw wrongRoomKeysVersion(current.version);
      await tx.keyBackup.setAuthData(userId, n, authData);
    });
  }

  /** DELETE /room_keys/version/{version}: the version and all its keys. Deleting it again succeeds, as the spec says. */
  async deleteVersion(userId: string, version: string): Promise<void> {
    const n = parseBackupVersion(version);
    if (n === undefined) throw unknownVersion();
    await this.storage.transaction(async (tx) => {
      const row = await tx.keyBackup.versionIncludingDeleted(userId, n);
      if (!row) throw unknownVersion();
      if (!row.deleted) await tx.keyBackup.deleteVersion(userId, n);
    });
  }

  /**
   * PUT /room_keys/keys…: each key is stored unless the backup already holds a better one for its session. The
   * etag moves only when a key was stored. A version that exists but is not the current one is 403
   * M_WRONG_ROOM_KEYS_VERSION naming the current version; one that does not exist is 404.
   */
  async uploadKeys(userId: string, version: string, target: KeysTarget, body: unknown): Promise<RoomKeysUpdateResponse> {
    const keys = parseRoomKeysUpload(target, body);
    const n = parseBackupVersion(version);
    return this.storage.transaction(async (tx) => {
      const row = n === undefined ? undefined : await tx.keyBackup.lockVersion(userId, n);
      const current = await tx.keyBackup.currentVersion(userId);
      if (!row) throw notFound(current ? "Unknown backup version" : "No current backup version");
      if (current && current.version !== row.version) throw wrongRoomKeysVersion(current.version);
      const toStore = await this.keysToStore(tx, userId, row.version, keys);
      let etag = row.etag;
      if (toStore.length > 0) {
        await tx.keyBackup.putRoomKeys(userId, row.version, toStore);
        await tx.keyBackup.setEtag(userId, row.version, ++etag);
      }
      return { etag: String(etag), count: await tx.keyBackup.count(userId, row.version) };
    });
  }

  /** GET /room_keys/keys…: all keys, one room's (`{"sessions": {}}` when none), or one session's (404 when none). */
  async getKeys(userId: string, version: string, target: KeysTarget): Promise<{ rooms: Record<string, RoomKeyBackup> } | RoomKeyBackup | KeyBackupData> {
    const n = parseBackupVersion(version);
    const row = n === undefined ? undefined : await this.storage.keyBackup.version(userId, n);
    if (!row) throw unknownVersion();
    const stored = await this.storage.keyBackup.roomKeys(userId, row.version, target.roomId, target.sessionId);
    if (target.sessionId !== undefined) {
      const key = stored[0];
      if (!key) throw notFound("No room_keys found");
      return key.key;
    }
    const rooms: Record<string, RoomKeyBackup> = {};
    for (const k of stored) (rooms[k.roomId] ??= { sessions: {} }).sessions[k.sessionId] = k.key;
    if (target.roomId !== undefined) return rooms[target.roomId] ?? { sessions: {} };
    return { rooms };
  }

  /** DELETE /room_keys/keys…: of any live version (not only the current one), as Synapse. */
  async deleteKeys(userId: string, version: string, target: KeysTarget): Promise<RoomKeysUpdateResponse> {
    const n = parseBackupVersion(version);
    return this.storage.transaction(async (tx) => {
      const row = n === undefined ? undefined : await tx.keyBackup.lockVersion(userId, n);
      if (!row) throw unknownVersion();
      let etag = row.etag;
      if ((await tx.keyBackup.deleteRoomKeys(userId, row.version, target.roomId, target.sessionId)) > 0) {
        await tx.keyBackup.setEtag(userId, row.version, ++etag);
      }
      return { etag: String(etag), count: await tx.keyBackup.count(userId, row.version) };
    });
  }

  /** The uploaded keys that win against what is stored (and against each other, should one body repeat a session). */
  private async keysToStore(tx: Stores, userId: string, version: number, keys: readonly StoredRoomKey[]): Promise<StoredRoomKey[]> {
    const byRoom = new Map<string, Map<string, StoredRoomKey>>();
    for (const k of keys) {
      let room = byRoom.get(k.roomId);
      if (!room) byRoom.set(k.roomId, (room = new Map()));
      const seen = room.get(k.sessionId);
      if (!seen || isBetterRoomKey(k.key, seen.key)) room.set(k.sessionId, k);
    }
    const out: StoredRoomKey[] = [];
    for (const [roomId, sessions] of byRoom) {
      const stored = new Map((await tx.keyBackup.roomKeysOf(userId, version, roomId, [...sessions.keys()])).map((s) => [s.sessionId, s.key]));
      for (const k of sessions.values()) {
        const existing = stored.get(k.sessionId);
        if (!existing || isBetterRoomKey(k.key, existing)) out.push(k);
      }
    }
    return out;
  }
}
