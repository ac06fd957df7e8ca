import type { SqlMigration } from "./index.js";

/**
 * The media repository (spec "Content repository"), Synapse's tables under its names: local media and their
 * thumbnails, and the cache of other servers' media (filled by the federation side). The bytes live on disk under
 * `media_store_path` (services/media/media_store.ts); these rows say what they are.
 *
 * `media_length` is null while a media id made by POST /create waits for its upload. `authenticated`: uploaded
 * while `enable_authenticated_media` was on, so the legacy unauthenticated endpoints never serve it.
 */
export const m011_media: SqlMigration = () => [
  `CREATE TABLE local_media_repository (
    media_id TEXT NOT NULL PRIMARY KEY,
    user_id TEXT NOT NULL,
    media_type TEXT,
    upload_name TEXT,
    media_length BIGINT,
    created_ts BIGINT NOT NULL,
    unused_expires_at BIGINT,
    uploaded_ts BIGINT,
    last_access_ts BIGINT,
    quarantined_by TEXT,
    safe_from_quarantine INTEGER NOT NULL DEFAULT 0,
    authenticated INTEGER NOT NULL DEFAULT 0,
    sha256 TEXT
  )`,
  // Upload limits (bytes per user since a time) and pending /create ids per user.
  `CREATE INDEX local_media_repository_user_created ON local_media_repository (user_id, created_ts)`,
  `CREATE TABLE local_media_repository_thumbnails (
    media_id TEXT NOT NULL,
    thumbnail_width INTEGER NOT NULL,
    thumbnail_height INTEGER NOT NULL,
    thumbnail_type TEXT NOT NULL,
    thumbnail_method TEXT NOT NULL,
    thumbnail_length BIGINT NOT NULL,
    animated INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (media_id, thumbnail_width, thumbnail_height, thumbnail_type, thumbnail_method)
  )`,
  // filesystem_id: our own random id for the file's path, so another server's media id never names a file here.
  `CREATE TABLE remote_media_cache (
    media_origin TEXT NOT NULL,
    media_id TEXT NOT NULL,
    filesystem_id TEXT NOT NULL,
    media_type TEXT,
    upload_name TEXT,
    media_length BIGINT,
    created_ts BIGINT NOT NULL,
    last_access_ts BIGINT,
    quarantined_by TEXT,
    authenticated INTEGER NOT NULL DEFAULT 0,
    sha256 TEXT,
    PRIMARY KEY (media_origin, media_id)
  )`,
  `CREATE TABLE remote_media_cache_thumbnails (
    media_origin TEXT NOT NULL,
    media_id TEXT NOT NULL,
    filesystem_id TEXT NOT NULL,
    thumbnail_width INTEGER NOT NULL,
    thumbnail_height INTEGER NOT NULL,
    thumbnail_type TEXT NOT NULL,
    thumbnail_method TEXT NOT NULL,
    thumbnail_length BIGINT NOT NULL,
    animated INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (media_origin, media_id, thumbnail_width, thumbnail_height, thumbnail_type, thumbnail_method)
  )`,
];
