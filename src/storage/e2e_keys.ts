/**
 * E2EE key storage (migration 008): device keys, one-time and fallback keys, cross-signing keys and their uploaded
 * signatures, and the cache of remote users' device lists. One code path for SQLite and PostgreSQL.
 */
import type { Kysely } from "kysely";
import type { Schema } from "./schema.js";

export interface StoredKey {
  key_id: string;
  key_json: string;
}

export interface SignatureRow {
  target_user_id: string;
  target_key_id: string;
  signer_user_id: string;
  signer_key_id: string;
  signature: string;
}

export interface RemoteDeviceRow {
  user_id: string;
  device_id: string;
  display_name: string | null;
  key_json: string | null;
}

/** Attempts at claiming one key before giving up on a pool other claims keep emptying under us. */
const CLAIM_ATTEMPTS = 5;

export class E2eKeyStore {
  constructor(private readonly db: Kysely<Schema>) {}

  // Device keys.

  async deviceKeys(userIds: readonly string[]): Promise<{ user_id: string; device_id: string; key_json: string }[]> {
    if (userIds.length === 0) return [];
    return this.db.selectFrom("e2e_device_keys").select(["user_id", "device_id", "key_json"]).where("user_id", "in", [...userIds]).execute();
  }

  async deviceKey(userId: string, deviceId: string): Promise<string | undefined> {
    const r = await this.db.selectFrom("e2e_device_keys").select("key_json").where("user_id", "=", userId).where("device_id", "=", deviceId).executeTakeFirst();
    return r?.key_json;
  }

  async setDeviceKeys(userId: string, deviceId: string, json: string, ts: number): Promise<void> {
    await this.db
      .insertInto("e2e_device_keys")
      .values({ user_id: userId, device_id: deviceId, key_json: json, ts })
      .onConflict((oc) => oc.columns(["user_id", "device_id"]).doUpdateSet({ key_json: json, ts }))
      .execute();
  }

  // One-time keys.

  /** The stored one-time keys of a device among `names` (`<algorithm>:<key id>`). */
  async oneTimeKeys(userId: string, deviceId: string, keys: readonly { algorithm: string; keyId: string }[]): Promise<{ algorithm: string; key_id: string; key_json: string }[]> {
    if (keys.length === 0) return [];
    return this.db
      .selectFrom("e2e_one_time_keys")
      .select(["algorithm", "key_id", "key_json"])
      .where("user_id", "=", userId)
      .where("device_id", "=", deviceId)
      .where("key_id", "in", [...new Set(keys.map((k) => k.keyId))])
      .execute();
  }

  async addOneTimeKeys(userId: string, deviceId: string, keys: readonly { algorithm: string; keyId: string; json: string }[], ts: number): Promise<void> {
    // Chunked: a statement's bound parameters are limited (SQLite 32766, PostgreSQL 65535).
    for (let i = 0; i < keys.length; i += 500) {
      const rows = keys.slice(i, i + 500).map((k) => ({ user_id: userId, device_id: deviceId, algorithm: k.algorithm, key_id: k.keyId, key_json: k.json, ts }));
      await this.db.insertInto("e2e_one_time_keys").values(rows).onConflict((oc) => oc.doNothing()).execute();
    }
  }

  /** `one_time_key_counts`: unclaimed keys per algorithm. */
  async countOneTimeKeys(userId: string, deviceId: string): Promise<Record<string, number>> {
    const rows = await this.db
      .selectFrom("e2e_one_time_keys")
      .select(["algorithm", (eb) => eb.fn.countAll().as("n")])
      .where("user_id", "=", userId)
      .where("device_id", "=", deviceId)
      .groupBy("algorithm")
      .execute();
    return Object.fromEntries(rows.map((r) => [r.algorithm, Number(r.n)]));
  }

  /**
   * Takes one one-time key of the algorithm from the device's pool: a single DELETE … RETURNING, so two claims
   * never get the same key on either engine. On PostgreSQL a concurrent claim of the same row makes ours delete
   * nothing (its row is gone when our DELETE re-checks it); then we try the next key while any is left.
   */
  async claimOneTimeKey(userId: string, deviceId: string, algorithm: string): Promise<StoredKey | undefined> {
    for (let attempt = 0; attempt < CLAIM_ATTEMPTS; attempt++) {
      const pick = this.db
        .selectFrom("e2e_one_time_keys")
        .select("key_id")
        .where("user_id", "=", userId)
        .where("device_id", "=", deviceId)
        .where("algorithm", "=", algorithm)
        .orderBy("key_id")
        .limit(1);
      const taken = await this.db
        .deleteFrom("e2e_one_time_keys")
        .where("user_id", "=", userId)
        .where("device_id", "=", deviceId)
        .where("algorithm", "=", algorithm)
        .where("key_id", "=", pick)
        .returning(["key_id", "key_json"])
        .executeTakeFirst();
      if (taken) return taken;
      const left = await pick.executeTakeFirst();
      if (!left) return undefined;
    }
    return undefined;
  }

  // Fallback keys.

  /** Replaces the device's fallback key of the algorithm; the new one is unused. */
  async setFallbackKey(userId: string, deviceId: string, algorithm: string, keyId: string, json: string): Promise<void> {
    await this.db
      .insertInto("e2e_fallback_keys")
      .values({ user_id: userId, device_id: deviceId, algorithm, key_id: keyId, key_json: json, used: 0 })
      .onConflict((oc) => oc.columns(["user_id", "device_id", "algorithm"]).doUpdateSet({ key_id: keyId, key_json: json, used: 0 }))
      .execute();
  }

  async fallbackKey(userId: string, deviceId: string, algorithm: string): Promise<(StoredKey & { used: number }) | undefined> {
    return this.db
      .selectFrom("e2e_fallback_keys")
      .select(["key_id", "key_json", "used"])
      .where("user_id", "=", userId)
      .where("device_id", "=", deviceId)
      .where("algorithm", "=", algorithm)
      .executeTakeFirst();
  }

  /** The fallback key of the algorithm, marked used (it stays in place). */
  async claimFallbackKey(userId: string, deviceId: string, algorithm: string): Promise<StoredKey | undefined> {
    return this.db
      .updateTable("e2e_fallback_keys")
      .set({ used: 1 })
      .where("user_id", "=", userId)
      .where("device_id", "=", deviceId)
      .where("algorithm", "=", algorithm)
      .returning(["key_id", "key_json"])
      .executeTakeFirst();
  }

  /** `device_unused_fallback_key_types`. */
  async unusedFallbackAlgorithms(userId: string, deviceId: string): Promise<string[]> {
    const rows = await this.db.selectFrom("e2e_fallback_keys").select("algorithm").where("user_id", "=", userId).where("device_id", "=", deviceId).where("used", "=", 0).execute();
    return rows.map((r) => r.algorithm).sort();
  }

  /** A device is gone (deleted or logged out): every key it published and every signature over it. */
  async deleteDevices(userId: string, deviceIds: readonly string[]): Promise<void> {
    if (deviceIds.length === 0) return;
    const ids = [...deviceIds];
    await this.db.deleteFrom("e2e_device_keys").where("user_id", "=", userId).where("device_id", "in", ids).execute();
    await this.db.deleteFrom("e2e_one_time_keys").where("user_id", "=", userId).where("device_id", "in", ids).execute();
    await this.db.deleteFrom("e2e_fallback_keys").where("user_id", "=", userId).where("device_id", "in", ids).execute();
    await this.db.deleteFrom("e2e_cross_signing_signatures").where("target_user_id", "=", userId).where("target_key_id", "in", ids).execute();
  }

  // Cross-signing keys.

  async crossSigningKeys(userIds: readonly string[]): Promise<{ user_id: string; key_type: string; key_json: string }[]> {
    if (userIds.length === 0) return [];
    return this.db.selectFrom("e2e_cross_signing_keys").select(["user_id", "key_type", "key_json"]).where("user_id", "in", [...userIds]).execute();
  }

  async setCrossSigningKey(userId: string, type: string, json: string, ts: number): Promise<void> {
    await this.db
      .insertInto("e2e_cross_signing_keys")
      .values({ user_id: userId, key_type: type, key_json: json, ts })
      .onConflict((oc) => oc.columns(["user_id", "key_type"]).doUpdateSet({ key_json: json, ts }))
      .execute();
  }

  /** A new key replaced the old one: signatures made over the old key no longer apply to anything. */
  async deleteSignaturesOver(userId: string, keyId: string): Promise<void> {
    await this.db.deleteFrom("e2e_cross_signing_signatures").where("target_user_id", "=", userId).where("target_key_id", "=", keyId).execute();
  }

  // Uploaded signatures.

  async addSignatures(rows: readonly SignatureRow[]): Promise<void> {
    for (const r of rows) {
      await this.db
        .insertInto("e2e_cross_signing_signatures")
        .values(r)
        .onConflict((oc) => oc.columns(["target_user_id", "target_key_id", "signer_user_id", "signer_key_id"]).doUpdateSet({ signature: r.signature }))
        .execute();
    }
  }

  /** Every uploaded signature over keys of these users. */
  async signaturesOver(userIds: readonly string[]): Promise<SignatureRow[]> {
    if (userIds.length === 0) return [];
    return this.db.selectFrom("e2e_cross_signing_signatures").selectAll().where("target_user_id", "in", [...userIds]).execute();
  }

  // Remote device-list cache.

  async remoteUsers(userIds: readonly string[]): Promise<{ user_id: string; stream_id: number; stale: number }[]> {
    if (userIds.length === 0) return [];
    return this.db.selectFrom("device_lists_remote_users").selectAll().where("user_id", "in", [...userIds]).execute();
  }

  async remoteDevices(userIds: readonly string[]): Promise<RemoteDeviceRow[]> {
    if (userIds.length === 0) return [];
    return this.db.selectFrom("device_lists_remote_devices").selectAll().where("user_id", "in", [...userIds]).execute();
  }

  async setRemoteUser(userId: string, streamId: number, stale: boolean): Promise<void> {
    const v = { stream_id: streamId, stale: stale ? 1 : 0 };
    await this.db
      .insertInto("device_lists_remote_users")
      .values({ user_id: userId, ...v })
      .onConflict((oc) => oc.column("user_id").doUpdateSet(v))
      .execute();
  }

  async markRemoteStale(userId: string): Promise<void> {
    await this.db.updateTable("device_lists_remote_users").set({ stale: 1 }).where("user_id", "=", userId).execute();
  }

  async upsertRemoteDevice(row: RemoteDeviceRow): Promise<void> {
    await this.db
      .insertInto("device_lists_remote_devices")
      .values(row)
      .onConflict((oc) => oc.columns(["user_id", "device_id"]).doUpdateSet({ display_name: row.display_name, key_json: row.key_json }))
      .execute();
  }

  async deleteRemoteDevice(userId: string, deviceId: string): Promise<void> {
    await this.db.deleteFrom("device_lists_remote_devices").where("user_id", "=", userId).where("device_id", "=", deviceId).execute();
  }

  /** Replaces a remote user's whole device list (a resync). */
  async replaceRemoteDevices(userId: string, rows: readonly RemoteDeviceRow[]): Promise<void> {
    await this.db.deleteFrom("device_lists_remote_devices").where("user_id", "=", userId).execute();
    for (let i = 0; i < rows.length; i += 200) await this.db.insertInto("device_lists_remote_devices").values(rows.slice(i, i + 200)).execute();
  }

  /** We no longer share a room with a remote user: their cache would go stale unnoticed, so it goes. */
  async forgetRemoteUser(userId: string): Promise<void> {
    await this.db.deleteFrom("device_lists_remote_devices").where("user_id", "=", userId).execute();
    await this.db.deleteFrom("device_lists_remote_users").where("user_id", "=", userId).execute();
    await this.db.deleteFrom("e2e_cross_signing_keys").where("user_id", "=", userId).execute();
  }
}
