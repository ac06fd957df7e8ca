/**
 * Media metadata (migration 011): local media, their thumbnails, and the cache of other servers' media. The files
 * themselves are on disk (services/media/media_store.ts). One code path for SQLite and PostgreSQL.
 */
import { sql, type Kysely, type Selectable } from "kysely";
import type { LocalMediaTable, LocalMediaThumbnailsTable, RemoteMediaTable, RemoteMediaThumbnailsTable, Schema } from "./schema.js";

export type LocalMediaRow = Selectable<LocalMediaTable>;
export type LocalThumbnailRow = Selectable<LocalMediaThumbnailsTable>;
export type RemoteMediaRow = Selectable<RemoteMediaTable>;
export type RemoteThumbnailRow = Selectable<RemoteMediaThumbnailsTable>;

/** What an upload fills in on its media row. */
export interface UploadedContent {
  media_type: string;
  upload_name: string | null;
  media_length: number;
  uploaded_ts: number;
  sha256: string;
  authenticated: number;
}

export class MediaStore {
  constructor(private readonly db: Kysely<Schema>) {}

  async createLocal(row: Omit<LocalMediaRow, "last_access_ts" | "quarantined_by" | "safe_from_quarantine">): Promise<void> {
    await this.db.insertInto("local_media_repository").values({ ...row, last_access_ts: null, quarantined_by: null, safe_from_quarantine: 0 }).execute();
  }

  async getLocal(mediaId: string): Promise<LocalMediaRow | undefined> {
    return this.db.selectFrom("local_media_repository").selectAll().where("media_id", "=", mediaId).executeTakeFirst();
  }

  /** Fills in the content of a media id still waiting for it; false when it has content already (a racing upload). */
  async setUploaded(mediaId: string, content: UploadedContent): Promise<boolean> {
    const r = await this.db
      .updateTable("local_media_repository")
      .set({ ...content, unused_expires_at: null })
      .where("media_id", "=", mediaId)
      .where("media_length", "is", null)
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  /** Bytes the user uploaded in media created at or after `sinceTs` (Synapse's `get_media_uploaded_size_for_user`). */
  async uploadedBytesSince(userId: string, sinceTs: number): Promise<number> {
    const r = await this.db
      .selectFrom("local_media_repository")
      .select(sql<string | number | null>`SUM(media_length)`.as("total"))
      .where("user_id", "=", userId)
      .where("created_ts", ">=", sinceTs)
      .executeTakeFirst();
    return Number(r?.total ?? 0);
  }

  /** Media ids the user created with /create that still wait for an upload, and when the first of them expires. */
  async pendingUploads(userId: string, now: number): Promise<{ count: number; firstExpiresAt: number | null }> {
    const r = await this.db
      .selectFrom("local_media_repository")
      .select([sql<string | number>`COUNT(*)`.as("n"), sql<string | number | null>`MIN(unused_expires_at)`.as("first")])
      .where("user_id", "=", userId)
      .where("media_length", "is", null)
      .where("unused_expires_at", ">", now)
      .executeTakeFirst();
    return { count: Number(r?.n ?? 0), firstExpiresAt: r?.first == null ? null : Number(r.first) };
  }

  async localThumbnails(mediaId: string): Promise<LocalThumbnailRow[]> {
    return this.db.selectFrom("local_media_repository_thumbnails").selectAll().where("media_id", "=", mediaId).execute();
  }

  /** Records a thumbnail; false when one with the same size, type and method exists already. */
  async addLocalThumbnail(row: LocalThumbnailRow): Promise<boolean> {
    const r = await this.db
      .insertInto("local_media_repository_thumbnails")
      .values(row)
      .onConflict((oc) => oc.columns(["media_id", "thumbnail_width", "thumbnail_height", "thumbnail_type", "thumbnail_method"]).doNothing())
      .executeTakeFirst();
    return Number(r.numInsertedOrUpdatedRows ?? 0) === 1;
  }

  async touchLocal(mediaIds: readonly string[], ts: number): Promise<void> {
    if (mediaIds.length === 0) return;
    await this.db.updateTable("local_media_repository").set({ last_access_ts: ts }).where("media_id", "in", mediaIds).execute();
  }

  /** Sets (or with null, clears) the quarantine mark; media marked safe from quarantine stays served. */
  async quarantineLocal(mediaId: string, by: string | null): Promise<boolean> {
    let q = this.db.updateTable("local_media_repository").set({ quarantined_by: by }).where("media_id", "=", mediaId);
    if (by !== null) q = q.where("safe_from_quarantine", "=", 0);
    return Number((await q.executeTakeFirst()).numUpdatedRows) === 1;
  }

  async setSafeFromQuarantine(mediaId: string, safe: boolean): Promise<void> {
    await this.db.updateTable("local_media_repository").set({ safe_from_quarantine: safe ? 1 : 0 }).where("media_id", "=", mediaId).execute();
  }

  async deleteLocal(mediaId: string): Promise<void> {
    await this.db.deleteFrom("local_media_repository_thumbnails").where("media_id", "=", mediaId).execute();
    await this.db.deleteFrom("local_media_repository").where("media_id", "=", mediaId).execute();
  }

  /**
   * Uploaded local media last accessed (or, never accessed, uploaded) before `beforeTs`, for `media_retention`; as
   * Synapse, media that is quarantined or protected (safe from quarantine) is kept.
   */
  async localNotAccessedSince(beforeTs: number, limit: number): Promise<string[]> {
    const rows = await this.db
      .selectFrom("local_media_repository")
      .select("media_id")
      .where("media_length", "is not", null)
      .where("safe_from_quarantine", "=", 0)
      .where("quarantined_by", "is", null)
      .where((eb) => eb(eb.fn.coalesce("last_access_ts", "uploaded_ts", "created_ts"), "<", beforeTs))
      .limit(limit)
      .execute();
    return rows.map((r) => r.media_id);
  }

  /** Media ids made by /create that expired without an upload: they hold no file, only a row. */
  async deleteExpiredPending(now: number): Promise<number> {
    const r = await this.db.deleteFrom("local_media_repository").where("media_length", "is", null).where("unused_expires_at", "<=", now).executeTakeFirst();
    return Number(r.numDeletedRows);
  }

  /** Cached remote media last accessed (or fetched) before `beforeTs`, not quarantined: for `media_retention`. */
  async remoteNotAccessedSince(beforeTs: number, limit: number): Promise<{ media_origin: string; media_id: string }[]> {
    return this.db
      .selectFrom("remote_media_cache")
      .select(["media_origin", "media_id"])
      .where("quarantined_by", "is", null)
      .where((eb) => eb(eb.fn.coalesce("last_access_ts", "created_ts"), "<", beforeTs))
      .limit(limit)
      .execute();
  }

  async getRemote(origin: string, mediaId: string): Promise<RemoteMediaRow | undefined> {
    return this.db.selectFrom("remote_media_cache").selectAll().where("media_origin", "=", origin).where("media_id", "=", mediaId).executeTakeFirst();
  }

  async storeRemote(row: Omit<RemoteMediaRow, "last_access_ts" | "quarantined_by">): Promise<void> {
    await this.db
      .insertInto("remote_media_cache")
      .values({ ...row, last_access_ts: null, quarantined_by: null })
      .onConflict((oc) => oc.columns(["media_origin", "media_id"]).doNothing())
      .execute();
  }

  async remoteThumbnails(origin: string, mediaId: string): Promise<RemoteThumbnailRow[]> {
    return this.db.selectFrom("remote_media_cache_thumbnails").selectAll().where("media_origin", "=", origin).where("media_id", "=", mediaId).execute();
  }

  async addRemoteThumbnail(row: RemoteThumbnailRow): Promise<boolean> {
    const r = await this.db
      .insertInto("remote_media_cache_thumbnails")
      .values(row)
      .onConflict((oc) => oc.columns(["media_origin", "media_id", "thumbnail_width", "thumbnail_height", "thumbnail_type", "thumbnail_method"]).doNothing())
      .executeTakeFirst();
    return Number(r.numInsertedOrUpdatedRows ?? 0) === 1;
  }

  async touchRemote(origin: string, mediaId: string, ts: number): Promise<void> {
    await this.db.updateTable("remote_media_cache").set({ last_access_ts: ts }).where("media_origin", "=", origin).where("media_id", "=", mediaId).execute();
  }

  async quarantineRemote(origin: string, mediaId: string, by: string | null): Promise<boolean> {
    const r = await this.db.updateTable("remote_media_cache").set({ quarantined_by: by }).where("media_origin", "=", origin).where("media_id", "=", mediaId).executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  async deleteRemote(origin: string, mediaId: string): Promise<void> {
    await this.db.deleteFrom("remote_media_cache_thumbnails").where("media_origin", "=", origin).where("media_id", "=", mediaId).execute();
    await this.db.deleteFrom("remote_media_cache").where("media_origin", "=", origin).where("media_id", "=", mediaId).execute();
  }
}
