/**
 * The content repository (spec "Content repository"): local uploads (direct, and POST /create then PUT), downloads
 * and thumbnails, upload limits, and the metadata admins act on (quarantine, deletion). Other servers' media go
 * through one hook, `fetchRemote`, which the federation media client fills in; until then they are 404.
 *
 * Behaviour follows Synapse where the spec is silent: its limits and their errcodes, `enable_authenticated_media`
 * (media uploaded while it is on is never served by the legacy unauthenticated endpoints), 24 h for an unused
 * /create id, and the wait for a pending upload (`timeout_ms`, default 20 s, at most 60 s) ending in 504
 * M_NOT_YET_UPLOADED.
 */
import { randomInt } from "node:crypto";
import { open } from "node:fs/promises";
import type { Readable } from "node:stream";
import type { Logger } from "pino";
import type { MediaConfig } from "../../config/config.js";
import { isValidServerName } from "../../core/ids/ids.js";
import { MatrixError, forbidden, notFound, tooLarge } from "../../errors.js";
import type { LocalMediaRow, LocalThumbnailRow, MediaStore } from "../../storage/media.js";
import { KeyedLock } from "../../util/keyed_lock.js";
import type { RateLimiter } from "../ratelimit.js";
import type { MediaFileStore } from "./media_store.js";
import { ImageRejected, type GeneratedThumbnail, type ThumbnailMethod, type Thumbnailer } from "./thumbnailer.js";

/** Synapse's defaults for how long a download waits for a pending upload. */
export const DEFAULT_WAIT_MS = 20_000;
export const MAX_WAIT_MS = 60_000;

/** A media id from a request: the characters the spec allows (`A-Za-z0-9_-`); ours are 24 letters and digits. */
const MEDIA_ID = /^[A-Za-z0-9_-]{1,255}$/;
const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
/** How many thumbnails are made at once (decoding images is CPU work; the machine has other things to do). */
const THUMBNAIL_CONCURRENCY = 1;
const ACCESS_FLUSH_MS = 10_000;
/** How often `media_retention` runs (Synapse: daily), and how many media it deletes per query. */
const RETENTION_PERIOD_MS = 24 * 3600_000;
const RETENTION_BATCH = 500;

/** A file to serve: the original media or a thumbnail. */
export interface MediaContent {
  path: string;
  contentType: string;
  length: number;
  /** The uploader's file name (none for thumbnails). */
  uploadName: string | null;
}

export interface ThumbnailRequest {
  width: number;
  height: number;
  method: ThumbnailMethod;
  animated: boolean;
}

/** How the request for media came in. */
export interface MediaAccess {
  /** Through an authenticated endpoint (/_matrix/client/v1/media, federation), not the legacy /_matrix/media. */
  authenticated: boolean;
  /** How long to wait for media created but not yet uploaded, ms (capped at 60 s). */
  timeoutMs: number;
  /** `allow_remote`: false means never ask another server. */
  allowRemote: boolean;
}

export interface RemoteMediaRequest extends MediaAccess {
  /** Set for a thumbnail; otherwise the media itself. */
  thumbnail?: ThumbnailRequest;
}

/** Fetches (or finds in the cache) another server's media; the federation media client implements it. */
export type RemoteMediaFetcher = (serverName: string, mediaId: string, request: RemoteMediaRequest) => Promise<MediaContent>;

export interface UploadInput {
  userId: string;
  contentType: string;
  /** The uploader's name for the file, if any. */
  filename?: string | null;
  source: Readable | Buffer;
  /** The request's Content-Length, when it sent one: refused up front when already too large. */
  contentLength?: number;
}

export interface MediaRepositoryDeps {
  serverName: string;
  config: MediaConfig;
  maxUploadSize: number;
  store: MediaStore;
  files: MediaFileStore;
  thumbnailer: Thumbnailer;
  /** `rc_media_create`, per user. */
  createLimiter: RateLimiter;
  log: Logger;
  now?: () => number;
}

export class MediaRepository {
  /** The federation media client, once there is one. */
  remote?: RemoteMediaFetcher;

  private readonly serverName: string;
  private readonly config: MediaConfig;
  private readonly store: MediaStore;
  private readonly files: MediaFileStore;
  private readonly thumbnailer: Thumbnailer;
  private readonly log: Logger;
  private readonly now: () => number;
  /** Downloads waiting for a pending upload, by media id (in-process; scale-out adds a cross-process wake-up). */
  private readonly waiters = new Map<string, Set<() => void>>();
  /** Background thumbnail generation in progress, by media id: a thumbnail request waits for it. */
  private readonly generating = new Map<string, Promise<void>>();
  /** Serialises uploads to the same /create media id. */
  private readonly uploadLock = new KeyedLock();
  /** Dynamic thumbnails: which stored thumbnail answered an exact request (its size may differ: no upscaling). */
  private readonly exactThumbnails = new Map<string, LocalThumbnailRow>();
  private readonly accessed = new Set<string>();
  private accessTimer: NodeJS.Timeout | undefined;
  private retentionTimer: NodeJS.Timeout | undefined;
  private thumbnailSlots = THUMBNAIL_CONCURRENCY;
  private readonly thumbnailQueue: (() => void)[] = [];
  private closed = false;

  constructor(private readonly deps: MediaRepositoryDeps) {
    this.serverName = deps.serverName;
    this.config = deps.config;
    this.store = deps.store;
    this.files = deps.files;
    this.thumbnailer = deps.thumbnailer;
    this.log = deps.log;
    this.now = deps.now ?? Date.now;
  }

  async start(): Promise<void> {
    await this.files.start();
    this.accessTimer = setInterval(() => void this.flushAccessTimes(), ACCESS_FLUSH_MS);
    this.accessTimer.unref();
    this.retentionTimer = setInterval(() => {
      this.applyRetention().catch((err: unknown) => this.log.warn({ err }, "media: applying media_retention failed"));
    }, RETENTION_PERIOD_MS);
    this.retentionTimer.unref();
  }

  /**
   * `media_retention`: deletes local media not accessed within `local_media_lifetime` and cached remote media not
   * accessed within `remote_media_lifetime` (quarantined and protected media stay, as in Synapse), and forgets
   * /create media ids that expired unused. Runs daily; how many of each went.
   */
  async applyRetention(): Promise<{ local: number; remote: number; expiredPending: number }> {
    await this.flushAccessTimes();
    const now = this.now();
    let local = 0;
    let remote = 0;
    if (this.config.localMediaLifetimeMs !== undefined) {
      for (let batch; (batch = await this.store.localNotAccessedSince(now - this.config.localMediaLifetimeMs, RETENTION_BATCH)).length > 0 && !this.closed; ) {
        for (const mediaId of batch) await this.deleteLocal(mediaId);
        local += batch.length;
      }
    }
    if (this.config.remoteMediaLifetimeMs !== undefined) {
      for (let batch; (batch = await this.store.remoteNotAccessedSince(now - this.config.remoteMediaLifetimeMs, RETENTION_BATCH)).length > 0 && !this.closed; ) {
        for (const m of batch) await this.deleteRemote(m.media_origin, m.media_id);
        remote += batch.length;
      }
    }
    const expiredPending = await this.store.deleteExpiredPending(now);
    if (local + remote + expiredPending > 0) this.log.info({ local, remote, expiredPending }, "media: media_retention deleted media");
    return { local, remote, expiredPending };
  }

  /** Releases waiting downloads (they answer at once) and records access times. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.accessTimer);
    clearInterval(this.retentionTimer);
    for (const set of this.waiters.values()) for (const wake of set) wake();
    this.waiters.clear();
    await Promise.allSettled([...this.generating.values()]);
    await this.flushAccessTimes();
  }

  /** GET /media/config. */
  uploadConfig(): { "m.upload.size": number } {
    return { "m.upload.size": this.deps.maxUploadSize };
  }

  /**
   * Stores new local media from `source` (POST /upload; URL previews store a page's image with it). Resolves once the
   * file is on disk and recorded; thumbnails follow in the background.
   */
  async storeLocal(input: UploadInput): Promise<{ mediaId: string; contentUri: string; size: number }> {
    this.checkDeclaredLength(input.contentLength);
    const mediaId = randomMediaId();
    const written = await this.writeContent(mediaId, input);
    const now = this.now();
    await this.store.createLocal({
      media_id: mediaId,
      user_id: input.userId,
      media_type: input.contentType,
      upload_name: input.filename ?? null,
      media_length: written.size,
      created_ts: now,
      unused_expires_at: null,
      uploaded_ts: now,
      authenticated: this.config.enableAuthenticatedMedia ? 1 : 0,
      sha256: written.sha256,
    });
    this.uploaded(mediaId);
    return { mediaId, contentUri: this.mxc(mediaId), size: written.size };
  }

  /** POST /_matrix/media/v1/create: a media id to upload to later (`rc_media_create`, `max_pending_media_uploads`). */
  async create(userId: string): Promise<{ content_uri: string; unused_expires_at: number }> {
    this.deps.createLimiter.take(userId);
    const now = this.now();
    const pending = await this.store.pendingUploads(userId, now);
    if (pending.count >= this.config.maxPendingMediaUploads) {
      const retry = Math.max(0, (pending.firstExpiresAt ?? now) - now);
      throw new MatrixError(429, "M_LIMIT_EXCEEDED", "Too many pending media uploads", { retry_after_ms: retry }, { "Retry-After": String(Math.ceil(retry / 1000)) });
    }
    const mediaId = randomMediaId();
    const expiresAt = now + this.config.unusedExpirationTimeMs;
    await this.store.createLocal({
      media_id: mediaId,
      user_id: userId,
      media_type: null,
      upload_name: null,
      media_length: null,
      created_ts: now,
      unused_expires_at: expiresAt,
      uploaded_ts: null,
      authenticated: this.config.enableAuthenticatedMedia ? 1 : 0,
      sha256: null,
    });
    return { content_uri: this.mxc(mediaId), unused_expires_at: expiresAt };
  }

  /** PUT /_matrix/media/v3/upload/{serverName}/{mediaId}: the content of a media id made by /create. */
  async uploadTo(serverName: string, mediaId: string, input: UploadInput): Promise<void> {
    if (serverName !== this.serverName || !MEDIA_ID.test(mediaId)) throw notFound("Unknown media ID");
    await this.uploadLock.run(mediaId, async () => {
      const row = await this.store.getLocal(mediaId);
      if (!row) throw notFound("Unknown media ID");
      if (row.user_id !== input.userId) throw forbidden("Only the creator of the media ID can upload to it");
      if (row.media_length !== null) throw new MatrixError(409, "M_CANNOT_OVERWRITE_MEDIA", "Media ID already has content");
      if (this.isExpired(row)) throw notFound("Media ID has expired");
      this.checkDeclaredLength(input.contentLength);
      const written = await this.writeContent(mediaId, input);
      const stored = await this.store.setUploaded(mediaId, {
        media_type: input.contentType,
        upload_name: input.filename ?? null,
        media_length: written.size,
        uploaded_ts: this.now(),
        sha256: written.sha256,
        authenticated: this.config.enableAuthenticatedMedia ? 1 : 0,
      });
      if (!stored) throw new MatrixError(409, "M_CANNOT_OVERWRITE_MEDIA", "Media ID already has content");
      this.uploaded(mediaId);
    });
  }

  /** Download: the media's file and how to serve it. */
  async download(serverName: string, mediaId: string, access: MediaAccess): Promise<MediaContent> {
    checkIds(serverName, mediaId);
    if (serverName !== this.serverName) return this.remoteMedia(serverName, mediaId, access);
    const row = await this.servableLocal(mediaId, access);
    this.accessed.add(mediaId);
    return { path: this.files.localContent(mediaId), contentType: row.media_type ?? "application/octet-stream", length: row.media_length ?? 0, uploadName: row.upload_name };
  }

  /**
   * A thumbnail (spec "Thumbnails"): with `dynamic_thumbnails`, one of the requested size, made on demand; otherwise
   * the best of those made after the upload — the smallest at least as large as requested with the requested
   * method, else the largest. Never upscaled: an image smaller than requested gives a thumbnail of its own size.
   */
  async thumbnail(serverName: string, mediaId: string, request: ThumbnailRequest, access: MediaAccess): Promise<MediaContent> {
    checkIds(serverName, mediaId);
    if (serverName !== this.serverName) return this.remoteMedia(serverName, mediaId, { ...access, thumbnail: request });
    const row = await this.servableLocal(mediaId, access);
    await this.generating.get(mediaId);
    this.accessed.add(mediaId);
    const stored = await this.store.localThumbnails(mediaId);
    if (this.config.dynamicThumbnails) {
      const exact = this.exactThumbnails.get(exactKey(mediaId, request)) ?? stored.find((t) => isExact(t, request));
      if (exact && stored.some((t) => sameThumbnail(t, exact))) return this.thumbnailContent(mediaId, exact);
      const made = await this.generateLocalThumbnail(row, request, request.animated);
      if (!made) throw new MatrixError(400, "M_UNKNOWN", "Failed to generate thumbnail.");
      this.rememberExact(exactKey(mediaId, request), made);
      return this.thumbnailContent(mediaId, made);
    }
    if (stored.length === 0) {
      throw new MatrixError(400, "M_UNKNOWN", "Cannot find any thumbnails for the requested media. It may not be an image we can thumbnail. (Dynamic thumbnails are disabled on this server.)");
    }
    return this.thumbnailContent(mediaId, selectThumbnail(stored, request)!);
  }

  /** Opens a file to stream; a file gone from disk is 404 M_NOT_FOUND. */
  async open(content: MediaContent): Promise<Readable> {
    try {
      const fh = await open(content.path, "r");
      return fh.createReadStream();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") throw notFound("Not found");
      throw e;
    }
  }

  /**
   * The hook for other servers' media: the federation media client sets `remote` (which fills remote_media_cache and
   * the remote_content/ files). Until it exists, other servers' media are not found.
   */
  async fetchRemote(serverName: string, mediaId: string, request: RemoteMediaRequest): Promise<MediaContent> {
    if (!this.remote) throw notFound("Remote media is not available on this server yet");
    return this.remote(serverName, mediaId, request);
  }

  /**
   * Quarantines (or with `by` null, releases) media: quarantined media is never served (404). Local media marked
   * safe from quarantine is left alone. Whether anything changed.
   */
  async quarantine(serverName: string, mediaId: string, by: string | null): Promise<boolean> {
    if (serverName === this.serverName) return this.store.quarantineLocal(mediaId, by);
    return this.store.quarantineRemote(serverName, mediaId, by);
  }

  /** Deletes media: its files (and thumbnails) and its rows. */
  async delete(serverName: string, mediaId: string): Promise<void> {
    checkIds(serverName, mediaId);
    if (serverName === this.serverName) await this.deleteLocal(mediaId);
    else await this.deleteRemote(serverName, mediaId);
  }

  /** How many downloads wait for the upload of `mediaId` (tests and metrics). */
  waitingFor(mediaId: string): number {
    return this.waiters.get(mediaId)?.size ?? 0;
  }

  /** Resolves when the background thumbnails of `mediaId` are done (tests and the admin API). */
  async thumbnailsSettled(mediaId: string): Promise<void> {
    await this.generating.get(mediaId);
  }

  /** The rows go first: a file whose row is gone is never served, while a row without its file would be a 404 forever. */
  private async deleteLocal(mediaId: string): Promise<void> {
    await this.store.deleteLocal(mediaId);
    for (const key of this.exactThumbnails.keys()) if (key.startsWith(`${mediaId}/`)) this.exactThumbnails.delete(key);
    try {
      await this.files.remove(this.files.localContent(mediaId));
      await this.files.remove(this.files.localThumbnailDir(mediaId));
    } catch (err) {
      this.log.warn({ err, mediaId }, "media: removing the files of deleted media failed");
    }
  }

  private async deleteRemote(origin: string, mediaId: string): Promise<void> {
    const row = await this.store.getRemote(origin, mediaId);
    if (!row) return;
    await this.store.deleteRemote(origin, mediaId);
    try {
      await this.files.remove(this.files.remoteContent(origin, row.filesystem_id));
      await this.files.remove(this.files.remoteThumbnailDir(origin, row.filesystem_id));
    } catch (err) {
      this.log.warn({ err, origin, mediaId }, "media: removing the files of deleted remote media failed");
    }
  }

  private mxc(mediaId: string): string {
    return `mxc://${this.serverName}/${mediaId}`;
  }

  private checkDeclaredLength(length: number | undefined): void {
    if (length !== undefined && length > this.deps.maxUploadSize) throw tooLarge("Upload request body is too large");
  }

  /** Writes the upload's file, then applies `media_upload_limits` to its real size (Synapse checks after storing too). */
  private async writeContent(mediaId: string, input: UploadInput): Promise<{ size: number; sha256: string }> {
    const path = this.files.localContent(mediaId);
    const written = await this.files.write(path, input.source, this.deps.maxUploadSize);
    try {
      await this.checkUploadLimits(input.userId, written.size);
    } catch (e) {
      await this.files.remove(path);
      throw e;
    }
    return written;
  }

  /** `media_upload_limits`: bytes per user per period, over them 400 M_RESOURCE_LIMIT_EXCEEDED (as Synapse). */
  private async checkUploadLimits(userId: string, size: number): Promise<void> {
    // Longest period first: while the total over a longer period fits a shorter limit, the shorter one needs no query.
    let total: number | undefined;
    for (const limit of this.config.uploadLimits) {
      if (total === undefined || total + size > limit.maxBytes) total = await this.store.uploadedBytesSince(userId, this.now() - limit.timePeriodMs);
      if (total + size > limit.maxBytes) throw new MatrixError(400, "M_RESOURCE_LIMIT_EXCEEDED", "Media upload limit exceeded");
    }
  }

  private isExpired(row: LocalMediaRow): boolean {
    return row.media_length === null && row.unused_expires_at !== null && row.unused_expires_at <= this.now();
  }

  /** The upload of `mediaId` landed: wake its waiting downloads and make its thumbnails. */
  private uploaded(mediaId: string): void {
    const set = this.waiters.get(mediaId);
    this.waiters.delete(mediaId);
    for (const wake of set ?? []) wake();
    const job = this.generateThumbnails(mediaId)
      .catch((err: unknown) => this.log.warn({ err, mediaId }, "media: generating thumbnails failed"))
      .finally(() => {
        if (this.generating.get(mediaId) === job) this.generating.delete(mediaId);
      });
    this.generating.set(mediaId, job);
  }

  /**
   * Local media that may be served for this request: uploaded (waiting up to `timeoutMs` for a pending upload),
   * not quarantined, and — on the legacy endpoints, with `enable_authenticated_media` — not uploaded while it was on.
   */
  private async servableLocal(mediaId: string, access: MediaAccess): Promise<LocalMediaRow> {
    const deadline = this.now() + Math.min(Math.max(access.timeoutMs, 0), MAX_WAIT_MS);
    for (;;) {
      // Registered before the read, so an upload landing in between still wakes us.
      let wake!: () => void;
      const woken = new Promise<void>((resolve) => (wake = resolve));
      const set = this.waiters.get(mediaId) ?? new Set();
      set.add(wake);
      this.waiters.set(mediaId, set);
      let row: LocalMediaRow | undefined;
      try {
        row = await this.store.getLocal(mediaId);
        if (!row || row.quarantined_by !== null || this.isExpired(row)) throw notFound("Not found");
        if (!access.authenticated && this.config.enableAuthenticatedMedia && row.authenticated === 1) throw notFound("Not found");
        if (row.media_length !== null) return row;
        const wait = deadline - this.now();
        if (wait <= 0 || this.closed) throw new MatrixError(504, "M_NOT_YET_UPLOADED", "Media has not been uploaded yet");
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([woken, new Promise<void>((resolve) => (timer = setTimeout(resolve, wait)))]);
        clearTimeout(timer);
      } finally {
        set.delete(wake);
        if (set.size === 0 && this.waiters.get(mediaId) === set) this.waiters.delete(mediaId);
      }
    }
  }

  private async remoteMedia(serverName: string, mediaId: string, request: RemoteMediaRequest): Promise<MediaContent> {
    if (!request.allowRemote) throw notFound("Not found (allow_remote is false)");
    return this.fetchRemote(serverName, mediaId, request);
  }

  /** The configured `thumbnail_sizes`, made one at a time after an upload (and animated too for animated images). */
  private async generateThumbnails(mediaId: string): Promise<void> {
    const row = await this.store.getLocal(mediaId);
    if (!row || this.config.thumbnailSizes.length === 0) return;
    const info = await this.probe(row);
    if (!info) return;
    for (const size of this.config.thumbnailSizes) {
      if (this.closed) return;
      const request = { ...size, animated: false };
      await this.generateLocalThumbnail(row, request, false);
      if (info.animated) await this.generateLocalThumbnail(row, request, true);
    }
  }

  private async probe(row: LocalMediaRow): Promise<{ animated: boolean } | null> {
    try {
      return await this.withThumbnailSlot(() => this.thumbnailer.probe(this.files.localContent(row.media_id)));
    } catch (e) {
      if (e instanceof ImageRejected) return null;
      throw e;
    }
  }

  /** Makes one thumbnail and records it; null when the media is not an image we can thumbnail. */
  private async generateLocalThumbnail(row: LocalMediaRow, request: ThumbnailRequest, animated: boolean): Promise<LocalThumbnailRow | null> {
    const source = this.files.localContent(row.media_id);
    try {
      return await this.withThumbnailSlot(async () => {
        const info = await this.thumbnailer.probe(source);
        if (!info) return null;
        const size = { width: request.width, height: request.height, method: request.method };
        const made = await this.files.writeWith<GeneratedThumbnail>(
          (t) => this.files.localThumbnail(row.media_id, t),
          (tmp) => this.thumbnailer.generate(source, size, tmp, { animated: animated && info.animated }),
        );
        const thumb: LocalThumbnailRow = {
          media_id: row.media_id,
          thumbnail_width: made.width,
          thumbnail_height: made.height,
          thumbnail_type: made.type,
          thumbnail_method: made.method,
          thumbnail_length: made.length,
          animated: made.animated ? 1 : 0,
        };
        await this.store.addLocalThumbnail(thumb);
        return thumb;
      });
    } catch (e) {
      if (e instanceof ImageRejected) {
        this.log.debug({ mediaId: row.media_id, err: e }, "media: image refused by the thumbnailer");
        return null;
      }
      throw e;
    }
  }

  private thumbnailContent(mediaId: string, t: LocalThumbnailRow): MediaContent {
    const key = { width: t.thumbnail_width, height: t.thumbnail_height, type: t.thumbnail_type, method: t.thumbnail_method };
    return { path: this.files.localThumbnail(mediaId, key), contentType: t.thumbnail_type, length: t.thumbnail_length, uploadName: null };
  }

  private rememberExact(key: string, t: LocalThumbnailRow): void {
    if (this.exactThumbnails.size >= 10_000) this.exactThumbnails.delete(this.exactThumbnails.keys().next().value!);
    this.exactThumbnails.set(key, t);
  }

  private async withThumbnailSlot<T>(fn: () => Promise<T>): Promise<T> {
    if (this.thumbnailSlots === 0) await new Promise<void>((resolve) => this.thumbnailQueue.push(resolve));
    else this.thumbnailSlots--;
    try {
      return await fn();
    } finally {
      const next = this.thumbnailQueue.shift();
      if (next) next();
      else this.thumbnailSlots++;
    }
  }

  private async flushAccessTimes(): Promise<void> {
    if (this.accessed.size === 0) return;
    const ids = [...this.accessed];
    this.accessed.clear();
    await this.store.touchLocal(ids, this.now()).catch((err: unknown) => this.log.warn({ err }, "media: recording access times failed"));
  }
}

/** Media ids and server names from a request path: anything malformed is simply not found. */
function checkIds(serverName: string, mediaId: string): void {
  if (!isValidServerName(serverName) || !MEDIA_ID.test(mediaId)) throw notFound("Not found");
}

/** Synapse's `random_string(24)`: 24 letters and digits, from a CSPRNG. */
export function randomMediaId(): string {
  let id = "";
  for (let i = 0; i < 24; i++) id += ALPHABET[randomInt(ALPHABET.length)];
  return id;
}

/**
 * The stored thumbnail that best answers a request: with the requested method (any, when none has it), the
 * animated kind preferred when asked for; of those, the smallest at least as large as requested — both sides for
 * crop, either side for scale (a scaled thumbnail keeps the image's aspect) — else the largest.
 */
export function selectThumbnail(stored: readonly LocalThumbnailRow[], request: ThumbnailRequest): LocalThumbnailRow | undefined {
  const sameMethod = stored.filter((t) => t.thumbnail_method === request.method);
  let candidates = sameMethod.length > 0 ? sameMethod : [...stored];
  const animatedMatch = candidates.filter((t) => (t.animated === 1) === request.animated);
  if (animatedMatch.length > 0) candidates = animatedMatch;
  const area = (t: LocalThumbnailRow) => t.thumbnail_width * t.thumbnail_height;
  const bigEnough = candidates.filter((t) =>
    t.thumbnail_method === "crop"
      ? t.thumbnail_width >= request.width && t.thumbnail_height >= request.height
      : t.thumbnail_width >= request.width || t.thumbnail_height >= request.height,
  );
  if (bigEnough.length > 0) return bigEnough.reduce((a, b) => (area(b) < area(a) || (area(b) === area(a) && b.thumbnail_length < a.thumbnail_length) ? b : a));
  return candidates.reduce<LocalThumbnailRow | undefined>((a, b) => (!a || area(b) > area(a) ? b : a), undefined);
}

function exactKey(mediaId: string, r: ThumbnailRequest): string {
  return `${mediaId}/${r.width}x${r.height}/${r.method}/${r.animated ? 1 : 0}`;
}

function isExact(t: LocalThumbnailRow, r: ThumbnailRequest): boolean {
  return t.thumbnail_width === r.width && t.thumbnail_height === r.height && t.thumbnail_method === r.method && (t.animated === 1) === r.animated;
}

function sameThumbnail(a: LocalThumbnailRow, b: LocalThumbnailRow): boolean {
  return a.thumbnail_width === b.thumbnail_width && a.thumbnail_height === b.thumbnail_height && a.thumbnail_type === b.thumbnail_type && a.thumbnail_method === b.thumbnail_method;
}
