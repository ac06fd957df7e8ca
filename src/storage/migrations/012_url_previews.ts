import type { SqlMigration } from "./index.js";

/**
 * URL previews (spec: GET /_matrix/client/v1/media/preview_url), as Synapse's local_media_repository_url_cache: one
 * row per fetch of a URL, so a preview survives a restart and a request with `ts` gets the preview as it was then.
 * Only successful previews are stored; failures stay in the in-memory cache.
 */
export const m012_url_previews: SqlMigration = () => [
  `CREATE TABLE url_previews (
    url TEXT NOT NULL,
    download_ts BIGINT NOT NULL,
    expires_ts BIGINT NOT NULL,
    og TEXT NOT NULL,
    media_id TEXT
  )`,
  "CREATE INDEX url_previews_url ON url_previews (url, download_ts)",
  "CREATE INDEX url_previews_expires ON url_previews (expires_ts)",
];
