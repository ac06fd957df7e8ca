/**
 * Server-side key backups: backup versions and their session keys. This store only reads and writes rows; which
 * key to keep and which version may be written are the service's rules (services/key_backup.ts).
 */
import type { JsonValue } from "../core/json/types.js";
import type { Kysely } from "kysely";
import type { Schema } from "./schema.js";

/** A backup version as stored (`deleted` versions are only seen by `versionIncludingDeleted`). */
export interface KeyBackupVersionRow {
  version: number;
  algorithm: string;
  authData: JsonValue;
  etag: number;
  deleted: boolean;
}

/** The spec's KeyBackupData: what is stored for one megolm session. */
export interface KeyBackupData {
  first_message_index: number;
  forwarded_count: number;
  is_verified: boolean;
  session_data: JsonValue;
}

export interface StoredRoomKey {
  roomId: string;
  sessionId: string;
  key: KeyBackupData;
}

/** Rows per multi-row statement: well under SQLite's and PostgreSQL's bound-parameter limits. */
const CHUNK = 200;

type VersionSelect = { version: number; algorithm: string; auth_data: string; etag: number; deleted: number };
type SessionSelect = { room_id: string; session_id: string; first_message_index: number; forwarded_count: number; is_verified: number; session_data: string };

function versionOf(r: VersionSelect): KeyBackupVersionRow {
  return { version: Number(r.version), algorithm: r.algorithm, authData: JSON.parse(r.auth_data) as JsonValue, etag: Number(r.etag), deleted: r.deleted !== 0 };
}

function roomKeyOf(r: SessionSelect): StoredRoomKey {
  return {
    roomId: r.room_id,
    sessionId: r.session_id,
    key: {
      first_message_index: Number(r.first_message_index),
      forwarded_count: Number(r.forwarded_count),
      is_verified: Number(r.is_verified) !== 0,
      session_data: JSON.parse(r.session_data) as JsonValue,
    },
  };
}

const VERSION_COLUMNS = ["version", "algorithm", "auth_data", "etag", "deleted"] as const;
const SESSION_COLUMNS = ["room_id", "session_id", "first_message_index", "forwarded_count", "is_verified", "session_data"] as const;

export class KeyBackupStore {
  constructor(private readonly db: Kysely<Schema>) {}

  /**
   * A new version numbered one past the user's highest ever (deleted ones included, so a number is never reused).
   * Two creations racing on PostgreSQL may pick the same number: the loser's insert does nothing and it tries again.
   */
  async createVersion(userId: string, algorithm: string, authData: JsonValue): Promise<number> {
    for (;;) {
      const max = await this.db
        .selectFrom("key_backup_versions")
        .select((eb) => eb.fn.max("version").as("m"))
        .where("user_id", "=", userId)
        .executeTakeFirst();
      const version = Number(max?.m ?? 0) + 1;
      const inserted = await this.db
        .insertInto("key_backup_versions")
        .values({ user_id: userId, version, algorithm, auth_data: JSON.stringify(authData), etag: 0, deleted: 0 })
        .onConflict((oc) => oc.columns(["user_id", "version"]).doNothing())
        .returning("version")
        .executeTakeFirst();
      if (inserted) return version;
    }
  }

  /** The current version: the most recently created one that is not deleted. */
  async currentVersion(userId: string): Promise<KeyBackupVersionRow | undefined> {
    const r = await this.db
      .selectFrom("key_backup_versions")
      .select(VERSION_COLUMNS)
      .where("user_id", "=", userId)
      .where("deleted", "=", 0)
      .orderBy("version", "desc")
      .limit(1)
      .executeTakeFirst();
    return r ? versionOf(r) : undefined;
  }

  /** A version that exists and is not deleted. */
  async version(userId: string, version: number): Promise<KeyBackupVersionRow | undefined> {
    const r = await this.versionIncludingDeleted(userId, version);
    return r && !r.deleted ? r : undefined;
  }

  async versionIncludingDeleted(userId: string, version: number): Promise<KeyBackupVersionRow | undefined> {
    const r = await this.db
      .selectFrom("key_backup_versions")
      .select(VERSION_COLUMNS)
      .where("user_id", "=", userId)
      .where("version", "=", version)
      .executeTakeFirst();
    return r ? versionOf(r) : undefined;
  }

  /**
   * Reads a live version and, inside a transaction, holds its row until commit: a write that changes nothing
   * takes PostgreSQL's row lock, so writers of one backup run one after another (SQLite serialises every write
   * transaction anyway). Without the lock, two uploads of a new session could both insert it.
   */
  async lockVersion(userId: string, version: number): Promise<KeyBackupVersionRow | undefined> {
    const r = await this.db
      .updateTable("key_backup_versions")
      .set((eb) => ({ etag: eb.ref("etag") }))
      .where("user_id", "=", userId)
      .where("version", "=", version)
      .where("deleted", "=", 0)
      .returning(VERSION_COLUMNS)
      .executeTakeFirst();
    return r ? versionOf(r) : undefined;
  }

  async setAuthData(userId: string, version: number, authData: JsonValue): Promise<void> {
    await this.db
      .updateTable("key_backup_versions")
      .set({ auth_data: JSON.stringify(authData) })
      .where("user_id", "=", userId)
      .where("version", "=", version)
      .execute();
  }

  async setEtag(userId: string, version: number, etag: number): Promise<void> {
    await this.db.updateTable("key_backup_versions").set({ etag }).where("user_id", "=", userId).where("version", "=", version).execute();
  }

  /** Deletes the version's keys and marks it deleted; its auth_data goes too, as nothing will read it again. */
  async deleteVersion(userId: string, version: number): Promise<void> {
    await this.db.deleteFrom("key_backup_sessions").where("user_id", "=", userId).where("version", "=", version).execute();
    await this.db
      .updateTable("key_backup_versions")
      .set({ deleted: 1, auth_data: "{}" })
      .where("user_id", "=", userId)
      .where("version", "=", version)
      .execute();
  }

  /** The version's keys, optionally of one room or one session. */
  async roomKeys(userId: string, version: number, roomId?: string, sessionId?: string): Promise<StoredRoomKey[]> {
    let q = this.db.selectFrom("key_backup_sessions").select(SESSION_COLUMNS).where("user_id", "=", userId).where("version", "=", version);
    if (roomId !== undefined) q = q.where("room_id", "=", roomId);
    if (sessionId !== undefined) q = q.where("session_id", "=", sessionId);
    return (await q.execute()).map(roomKeyOf);
  }

  /** The stored keys among the given sessions of one room. */
  async roomKeysOf(userId: string, version: number, roomId: string, sessionIds: readonly string[]): Promise<StoredRoomKey[]> {
    const out: StoredRoomKey[] = [];
    for (let i = 0; i < sessionIds.length; i += CHUNK) {
      const rows = await this.db
        .selectFrom("key_backup_sessions")
        .select(SESSION_COLUMNS)
        .where("user_id", "=", userId)
        .where("version", "=", version)
        .where("room_id", "=", roomId)
        .where("session_id", "in", sessionIds.slice(i, i + CHUNK))
        .execute();
      out.push(...rows.map(roomKeyOf));
    }
    return out;
  }

  /** Inserts the keys, replacing the stored key of a session that has one. */
  async putRoomKeys(userId: string, version: number, keys: readonly StoredRoomKey[]): Promise<void> {
    for (let i = 0; i < keys.length; i += CHUNK) {
      const rows = keys.slice(i, i + CHUNK).map((k) => ({
        user_id: userId,
        version,
        room_id: k.roomId,
        session_id: k.sessionId,
        first_message_index: k.key.first_message_index,
        forwarded_count: k.key.forwarded_count,
        is_verified: k.key.is_verified ? 1 : 0,
        session_data: JSON.stringify(k.key.session_data),
      }));
      await this.db
        .insertInto("key_backup_sessions")
        .values(rows)
        .onConflict((oc) =>
          oc.columns(["user_id", "version", "room_id", "session_id"]).doUpdateSet((eb) => ({
            first_message_index: eb.ref("excluded.first_message_index"),
            forwarded_count: eb.ref("excluded.forwarded_count"),
            is_verified: eb.ref("excluded.is_verified"),
            session_data: eb.ref("excluded.session_data"),
          })),
        )
        .execute();
    }
  }

  /** Deletes the version's keys (optionally of one room or one session); returns how many went. */
  async deleteRoomKeys(userId: string, version: number, roomId?: string, sessionId?: string): Promise<number> {
    let q = this.db.deleteFrom("key_backup_sessions").where("user_id", "=", userId).where("version", "=", version);
    if (roomId !== undefined) q = q.where("room_id", "=", roomId);
    if (sessionId !== undefined) q = q.where("session_id", "=", sessionId);
    const r = await q.executeTakeFirst();
    return Number(r.numDeletedRows);
  }

  async count(userId: string, version: number): Promise<number> {
    const r = await this.db
      .selectFrom("key_backup_sessions")
      .select((eb) => eb.fn.countAll().as("n"))
      .where("user_id", "=", userId)
      .where("version", "=", version)
      .executeTakeFirst();
    return Number(r?.n ?? 0);
  }

  /** Every version and key of the user (account deactivation). */
  async deleteAll(userId: string): Promise<void> {
    await this.db.deleteFrom("key_backup_sessions").where("user_id", "=", userId).execute();
    await this.db.deleteFrom("key_backup_versions").where("user_id", "=", userId).execute();
  }
}
