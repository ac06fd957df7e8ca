/**
 * Other servers' media (spec "Content repository"; server-server API "Content Repository"), behind the
 * repository's `fetchRemote` hook: served from our cache (remote_media_cache + remote_content/), else fetched from
 * the origin once and cached.
 *
 * Fetching follows Synapse: ask the origin's authenticated `/_matrix/federation/v1/media/download/{mediaId}`
 * (multipart/mixed: JSON metadata, then the bytes or a `Location` to GET them from); an origin without that endpoint
 * (404/405 M_UNRECOGNIZED, 400 M_UNRECOGNIZED) is asked the legacy `/_matrix/media/v3/download/{origin}/{mediaId}
 * ?allow_remote=false&allow_redirect=true`. The body streams to a temp file, bounded by `max_upload_size` (over it:
 * 502 M_TOO_LARGE, nothing stored). The origin's 404 is our 404; anything else going wrong is 502 M_UNKNOWN "Failed
 * to fetch remote media", and the origin is then left alone for a short, growing while (answered 502 at once).
 *
 * Concurrent requests for one file share one fetch. Thumbnails are Synapse's default too: never asked of the
 * origin, but made here from the cached original — the `thumbnail_sizes` once it is fetched, or with
 * `dynamic_thumbnails` the requested size — and kept in remote_media_cache_thumbnails / remote_thumbnail/.
 */
import type { Readable } from "node:stream";
import { Readable as ReadableStream } from "node:stream";
import type { Logger } from "pino";
import type { MediaConfig } from "../../config/config.js";
import { MatrixError, notFound } from "../../errors.js";
import { encodePath, type FederationClient } from "../../federation/client.js";
import { FederationError, isUnknownEndpoint } from "../../federation/errors.js";
import type { StreamingResponse } from "../../federation/transport.js";
import type { OutboundHttp } from "../../outbound/http_client.js";
import type { MediaStore, RemoteMediaRow, RemoteThumbnailRow } from "../../storage/media.js";
import { randomMediaId, type MediaContent, type RemoteMediaRequest, type ThumbnailRequest } from "./media_repository.js";
import type { MediaFileStore } from "./media_store.js";
import { MultipartError, MultipartParser, boundaryOf, fileNameOfDisposition, type MultipartEvent, type PartHeaders } from "./multipart.js";
import { ImageRejected, selectThumbnail, type GeneratedThumbnail, type Thumbnailer } from "./thumbnailer.js";

/** Time to the origin's response headers beyond the `timeout_ms` it may wait for a pending upload. */
const HEADERS_GRACE_MS = 30_000;
/** A body that sends nothing for this long is abandoned. */
const IDLE_TIMEOUT_MS = 60_000;
const METADATA_MAX_BYTES = 64 * 1024;
/** Backoff after a failed fetch from an origin: 2 s, doubling per further failure, at most 10 minutes. */
const BACKOFF_BASE_MS = 2_000;
const BACKOFF_MAX_MS = 10 * 60_000;
/** last_access_ts is written at most this often per file. */
const ACCESS_WRITE_MS = 10_000;

export interface RemoteMediaDeps {
  serverName: string;
  config: MediaConfig;
  maxUploadSize: number;
  store: MediaStore;
  files: MediaFileStore;
  thumbnailer: Thumbnailer;
  federation: FederationClient;
  outbound: OutboundHttp;
  log: Logger;
  now?: () => number;
}

/** What a fetch brought: where the bytes are and what they are. */
interface Fetched {
  contentType: string;
  uploadName: string | null;
  size: number;
  sha256: string;
}

const failed = () => new MatrixError(502, "M_UNKNOWN", "Failed to fetch remote media");
const tooLargeRemote = (max: number) => new MatrixError(502, "M_TOO_LARGE", `Requested file is too large > ${max} bytes`);

export class RemoteMedia {
  private readonly now: () => number;
  /** Fetches in progress, by origin and media id: later requests join them. */
  private readonly fetching = new Map<string, Promise<RemoteMediaRow>>();
  /** Thumbnail generation in progress, by origin and media id. */
  private readonly thumbnailing = new Map<string, Promise<void>>();
  /** Origins whose last fetch failed: not asked again until `until`. */
  private readonly backoff = new Map<string, { failures: number; until: number }>();
  private readonly lastAccessWrite = new Map<string, number>();
  /** Thumbnails are made one at a time (CPU work). */
  private thumbnailChain: Promise<unknown> = Promise.resolve();

  constructor(private readonly deps: RemoteMediaDeps) {
    this.now = deps.now ?? Date.now;
  }

  /** The repository's RemoteMediaFetcher. */
  readonly fetch = async (origin: string, mediaId: string, request: RemoteMediaRequest): Promise<MediaContent> => {
    const row = await this.cached(origin, mediaId, request);
    if (request.thumbnail) return this.thumbnail(row, request.thumbnail);
    return {
      path: this.deps.files.remoteContent(origin, row.filesystem_id),
      contentType: row.media_type ?? "application/octet-stream",
      length: Number(row.media_length ?? 0),
      uploadName: row.upload_name,
    };
  };

  /** Origins currently backed off (tests, metrics). */
  backingOff(origin: string): boolean {
    return (this.backoff.get(origin)?.until ?? 0) > this.now();
  }

  /** The cache row of the file, fetched first when it is not cached; 404 for quarantined (or hidden) media. */
  private async cached(origin: string, mediaId: string, request: RemoteMediaRequest): Promise<RemoteMediaRow> {
    const { config } = this.deps;
    // As Synapse: with enable_authenticated_media, what we fetch is authenticated media, which the legacy
    // unauthenticated endpoints never serve — so they need not fetch it either.
    const hidden = (r: RemoteMediaRow) => !request.authenticated && config.enableAuthenticatedMedia && r.authenticated === 1;
    let row = await this.deps.store.getRemote(origin, mediaId);
    if (!row) {
      if (!request.authenticated && config.enableAuthenticatedMedia) throw notFound("Not found");
      const key = `${origin}/${mediaId}`;
      let job = this.fetching.get(key);
      if (!job) {
        job = this.fetchAndStore(origin, mediaId, request.timeoutMs).finally(() => this.fetching.delete(key));
        this.fetching.set(key, job);
      }
      row = await job;
    }
    if (row.quarantined_by !== null || hidden(row)) throw notFound("Not found");
    await this.touch(row);
    return row;
  }

  private async touch(row: RemoteMediaRow): Promise<void> {
    const key = `${row.media_origin}/${row.media_id}`;
    const now = this.now();
    if (now - (this.lastAccessWrite.get(key) ?? 0) < ACCESS_WRITE_MS) return;
    if (this.lastAccessWrite.size >= 10_000) this.lastAccessWrite.clear();
    this.lastAccessWrite.set(key, now);
    await this.deps.store.touchRemote(row.media_origin, row.media_id, now).catch((err: unknown) => this.deps.log.warn({ err }, "media: recording a remote access time failed"));
  }

  private async fetchAndStore(origin: string, mediaId: string, timeoutMs: number): Promise<RemoteMediaRow> {
    const { files, store, config, log } = this.deps;
    const back = this.backoff.get(origin);
    if (back && back.until > this.now()) throw failed();
    const filesystemId = randomMediaId();
    const target = files.remoteContent(origin, filesystemId);
    let fetched: Fetched;
    try {
      fetched = await this.download(origin, mediaId, timeoutMs, target);
    } catch (e) {
      await files.remove(target);
      const err = this.toMatrixError(origin, mediaId, e);
      if (err.errcode === "M_UNKNOWN") this.failedOrigin(origin);
      throw err;
    }
    this.backoff.delete(origin);
    await store.storeRemote({
      media_origin: origin,
      media_id: mediaId,
      filesystem_id: filesystemId,
      media_type: fetched.contentType,
      upload_name: fetched.uploadName,
      media_length: fetched.size,
      created_ts: this.now(),
      authenticated: config.enableAuthenticatedMedia ? 1 : 0,
      sha256: fetched.sha256,
    });
    const row = await store.getRemote(origin, mediaId);
    if (!row) throw failed();
    // Another process cached it first: ours is a spare copy.
    if (row.filesystem_id !== filesystemId) await files.remove(target);
    else this.startThumbnails(row);
    log.debug({ origin, mediaId, size: fetched.size }, "media: cached remote media");
    return row;
  }

  private failedOrigin(origin: string): void {
    const failures = (this.backoff.get(origin)?.failures ?? 0) + 1;
    const wait = Math.min(BACKOFF_BASE_MS * 2 ** (failures - 1), BACKOFF_MAX_MS);
    if (this.backoff.size >= 10_000) this.backoff.clear();
    this.backoff.set(origin, { failures, until: this.now() + wait });
  }

  /** Synapse's answers: the origin's 404 (and 504 M_NOT_YET_UPLOADED) are passed on; all else is 502. */
  private toMatrixError(origin: string, mediaId: string, e: unknown): MatrixError {
    if (e instanceof MatrixError) return e;
    if (e instanceof FederationError && e.reason === "http") {
      if (e.status === 404) return notFound("Not found");
      if (e.status === 504 && e.errcode === "M_NOT_YET_UPLOADED") return new MatrixError(504, "M_NOT_YET_UPLOADED", "Media has not been uploaded yet");
    }
    this.deps.log.warn({ origin, mediaId, err: e instanceof Error ? e.message : String(e) }, "media: fetching remote media failed");
    return failed();
  }

  /** Fetches the file into `target`: the federation endpoint, else the legacy one. */
  private async download(origin: string, mediaId: string, timeoutMs: number, target: string): Promise<Fetched> {
    const { federation } = this.deps;
    // The size limit is ours to apply (502 M_TOO_LARGE), not the transport's.
    const common = { method: "GET" as const, destination: origin, timeoutMs: timeoutMs + HEADERS_GRACE_MS, maxResponseBytes: Number.MAX_SAFE_INTEGER };
    let res: StreamingResponse;
    try {
      res = await federation.requestStream({ ...common, path: encodePath`/_matrix/federation/v1/media/download/${mediaId}`, query: { timeout_ms: timeoutMs }, accept: "multipart/mixed" });
    } catch (e) {
      if (!isUnknownEndpoint(e)) throw e;
      res = await federation.requestStream({
        ...common,
        path: encodePath`/_matrix/media/v3/download/${origin}/${mediaId}`,
        query: { allow_remote: false, allow_redirect: true, timeout_ms: timeoutMs },
      });
      return this.fromResponse(res, target, true);
    }
    return this.fromResponse(res, target, false);
  }

  /** The bytes of an answer: multipart (federation), plain (legacy), or a redirect (legacy `allow_redirect`). */
  private async fromResponse(res: StreamingResponse, target: string, legacy: boolean): Promise<Fetched> {
    try {
      if (res.status >= 300) {
        if (!legacy) throw new MultipartError(`unexpected status ${res.status}`);
        return await this.followLocation(header(res.headers.location), target);
      }
      // A declared length over the limit is refused before reading (the multipart framing is allowed for).
      const declared = Number(header(res.headers["content-length"]));
      const { maxUploadSize } = this.deps;
      if (Number.isFinite(declared) && declared > maxUploadSize + (legacy ? 0 : METADATA_MAX_BYTES)) throw tooLargeRemote(maxUploadSize);
      const contentType = header(res.headers["content-type"]);
      if (legacy) return await this.writeFile(ReadableStream.from(guarded(res.body)), target, contentType, fileNameOfDisposition(header(res.headers["content-disposition"])));
      const boundary = boundaryOf(contentType);
      if (boundary === undefined) throw new MultipartError(`not multipart/mixed: ${contentType ?? "no Content-Type"}`);
      return await this.fromMultipart(res.body, boundary, target);
    } finally {
      res.body.destroy();
    }
  }

  private async fromMultipart(body: Readable, boundary: string, target: string): Promise<Fetched> {
    const parser = new MultipartParser(boundary);
    const events = eventsOf(guarded(body), parser)[Symbol.asyncIterator]();
    const next = async (): Promise<MultipartEvent> => {
      const r = await events.next();
      if (r.done) throw new MultipartError("multipart body ended early");
      return r.value;
    };
    // The metadata part: JSON (an empty object today), read and set aside.
    const first = await next();
    if (first.type !== "part" || !/^application\/json\b/i.test(first.headers.get("content-type") ?? "")) throw new MultipartError("the first part is not JSON metadata");
    let metadataBytes = 0;
    let ev = await next();
    for (; ev.type === "data"; ev = await next()) {
      metadataBytes += ev.data.length;
      if (metadataBytes > METADATA_MAX_BYTES) throw new MultipartError("metadata part too large");
    }
    if (ev.type !== "part") throw new MultipartError("no media part");
    const headers: PartHeaders = ev.headers;
    const location = headers.get("location");
    if (location !== undefined) return this.followLocation(location, target);
    async function* media(): AsyncGenerator<Buffer> {
      for (let e = await next(); e.type !== "end"; e = await next()) {
        if (e.type === "part") throw new MultipartError("more than two parts");
        yield e.data;
      }
    }
    return this.writeFile(ReadableStream.from(media()), target, headers.get("content-type"), fileNameOfDisposition(headers.get("content-disposition")));
  }

  /** A `Location` (multipart part, or legacy redirect): a plain HTTPS GET under the outbound IP range rules. */
  private async followLocation(location: string | undefined, target: string): Promise<Fetched> {
    if (location === undefined || !/^https:\/\//i.test(location)) throw new MultipartError("Location is not an https URL");
    const { outbound, maxUploadSize } = this.deps;
    // Streamed to disk as it arrives, as the multipart body is: never held whole in memory.
    const res = await outbound.requestStream(location, { method: "GET", headers: { "user-agent": "Myelin" }, timeoutMs: IDLE_TIMEOUT_MS });
    try {
      if (res.status === 404) throw notFound("Not found");
      if (res.status !== 200) throw new MultipartError(`Location answered ${res.status}`);
      const declared = Number(header(res.headers["content-length"]));
      if (Number.isFinite(declared) && declared > maxUploadSize) throw tooLargeRemote(maxUploadSize);
      return await this.writeFile(res.body, target, header(res.headers["content-type"]), fileNameOfDisposition(header(res.headers["content-disposition"])));
    } finally {
      res.body.destroy();
    }
  }

  private async writeFile(source: Readable | Buffer, target: string, contentType: string | undefined, uploadName: string | null): Promise<Fetched> {
    const { files, maxUploadSize } = this.deps;
    let written;
    try {
      written = await files.write(target, source, maxUploadSize);
    } catch (e) {
      if (e instanceof MatrixError && e.errcode === "M_TOO_LARGE") throw tooLargeRemote(maxUploadSize);
      throw e;
    }
    return { contentType: cleanContentType(contentType), uploadName, size: written.size, sha256: written.sha256 };
  }

  /** Synapse's default: thumbnails are ours, made from the cached original. */
  private async thumbnail(row: RemoteMediaRow, request: ThumbnailRequest): Promise<MediaContent> {
    const { store, config } = this.deps;
    const key = `${row.media_origin}/${row.media_id}`;
    if (!this.thumbnailing.has(key) && !config.dynamicThumbnails && (await store.remoteThumbnails(row.media_origin, row.media_id)).length === 0) {
      // Made at fetch time; a cache from before (or a failed run) gets them now.
      this.startThumbnails(row);
    }
    await this.thumbnailing.get(key);
    const stored = await store.remoteThumbnails(row.media_origin, row.media_id);
    if (config.dynamicThumbnails) {
      const exact = stored.find((t) => t.thumbnail_width === request.width && t.thumbnail_height === request.height && t.thumbnail_method === request.method && (t.animated === 1) === request.animated);
      const made = exact ?? (await this.serialised(() => this.makeThumbnail(row, request, request.animated)));
      if (!made) throw new MatrixError(400, "M_UNKNOWN", "Failed to generate thumbnail.");
      return this.thumbnailContent(made);
    }
    const chosen = selectThumbnail(
      stored.map((t) => ({ width: t.thumbnail_width, height: t.thumbnail_height, method: t.thumbnail_method as "crop" | "scale", type: t.thumbnail_type, animated: t.animated === 1, row: t })),
      request,
    );
    if (!chosen) {
      throw new MatrixError(400, "M_UNKNOWN", "Cannot find any thumbnails for the requested media. It may not be an image we can thumbnail. (Dynamic thumbnails are disabled on this server.)");
    }
    return this.thumbnailContent(chosen.row);
  }

  private thumbnailContent(t: RemoteThumbnailRow): MediaContent {
    const key = { width: t.thumbnail_width, height: t.thumbnail_height, type: t.thumbnail_type, method: t.thumbnail_method };
    return { path: this.deps.files.remoteThumbnail(t.media_origin, t.filesystem_id, key), contentType: t.thumbnail_type, length: Number(t.thumbnail_length), uploadName: null };
  }

  /** The `thumbnail_sizes` of a newly cached file, in the background (a thumbnail request waits for them). */
  private startThumbnails(row: RemoteMediaRow): void {
    const sizes = this.deps.config.thumbnailSizes;
    if (sizes.length === 0) return;
    const key = `${row.media_origin}/${row.media_id}`;
    const job = this.serialised(async () => {
      const info = await this.deps.thumbnailer.probe(this.deps.files.remoteContent(row.media_origin, row.filesystem_id)).catch((e: unknown) => {
        if (e instanceof ImageRejected) return null;
        throw e;
      });
      if (!info) return;
      for (const size of sizes) {
        await this.makeThumbnail(row, { ...size, animated: false }, false);
        if (info.animated) await this.makeThumbnail(row, { ...size, animated: true }, true);
      }
    })
      .catch((err: unknown) => this.deps.log.warn({ err, origin: row.media_origin, mediaId: row.media_id }, "media: thumbnailing remote media failed"))
      .finally(() => {
        if (this.thumbnailing.get(key) === job) this.thumbnailing.delete(key);
      });
    this.thumbnailing.set(key, job);
  }

  /** One thumbnail, recorded; null when the file is not an image we thumbnail. Call within `serialised`. */
  private async makeThumbnail(row: RemoteMediaRow, request: ThumbnailRequest, animated: boolean): Promise<RemoteThumbnailRow | null> {
    const { files, thumbnailer, store } = this.deps;
    const source = files.remoteContent(row.media_origin, row.filesystem_id);
    try {
      const info = await thumbnailer.probe(source);
      if (!info) return null;
      const made = await files.writeWith<GeneratedThumbnail>(
        (t) => files.remoteThumbnail(row.media_origin, row.filesystem_id, t),
        (tmp) => thumbnailer.generate(source, { width: request.width, height: request.height, method: request.method }, tmp, { animated: animated && info.animated }),
      );
      const thumb: RemoteThumbnailRow = {
        media_origin: row.media_origin,
        media_id: row.media_id,
        filesystem_id: row.filesystem_id,
        thumbnail_width: made.width,
        thumbnail_height: made.height,
        thumbnail_type: made.type,
        thumbnail_method: made.method,
        thumbnail_length: made.length,
        animated: made.animated ? 1 : 0,
      };
      await store.addRemoteThumbnail(thumb);
      return thumb;
    } catch (e) {
      if (e instanceof ImageRejected) return null;
      throw e;
    }
  }

  private serialised<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.thumbnailChain.then(fn, fn);
    this.thumbnailChain = run.catch(() => undefined);
    return run;
  }
}

/** The parser's events over a body stream. */
async function* eventsOf(body: AsyncIterable<Buffer>, parser: MultipartParser): AsyncGenerator<MultipartEvent> {
  for await (const chunk of body) yield* parser.write(chunk);
  parser.end();
}

/** The chunks of `body`; it is destroyed when it sends nothing for IDLE_TIMEOUT_MS. */
async function* guarded(body: Readable): AsyncGenerator<Buffer> {
  const fire = () => body.destroy(new Error(`no data for ${IDLE_TIMEOUT_MS} ms`));
  let timer = setTimeout(fire, IDLE_TIMEOUT_MS);
  try {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      clearTimeout(timer);
      timer = setTimeout(fire, IDLE_TIMEOUT_MS);
      yield chunk;
    }
  } finally {
    clearTimeout(timer);
  }
}

function header(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/** The origin's Content-Type, if it is a sane one (we serve it back to clients). */
function cleanContentType(type: string | undefined): string {
  const t = type?.trim();
  if (t === undefined || t === "" || t.length > 255 || !/^[\x20-\x7e]+$/.test(t)) return "application/octet-stream";
  return t;
}
