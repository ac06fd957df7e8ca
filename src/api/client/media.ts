/**
 * The content repository's endpoints (spec "Content repository"), served by listeners with the `client` or `media`
 * resource:
 *   POST /_matrix/media/{v3,r0,v1}/upload, POST /_matrix/media/v1/create, PUT /_matrix/media/v3/upload/{server}/{id}
 *   GET  /_matrix/client/v1/media/{config,download,thumbnail}/…   (authenticated)
 *   GET  /_matrix/media/{v3,r0}/{config,download,thumbnail}/…     (legacy; download and thumbnail unauthenticated)
 *
 * Upload bodies are raw bytes, streamed to disk: this plugin scope replaces the app's JSON body parser with one that
 * hands the request stream through untouched.
 */
import type { IncomingMessage } from "node:http";
import { Readable } from "node:stream";
import type { FastifyInstance, FastifyReply } from "fastify";
import { MatrixError } from "../../errors.js";
import { DEFAULT_WAIT_MS, MAX_WAIT_MS, type MediaAccess, type MediaContent, type ThumbnailRequest, type UploadInput } from "../../services/media/media_repository.js";
import type { Services } from "../../services/services.js";
import { MEDIA_CACHE_CONTROL, MEDIA_SAFETY_HEADERS, contentDisposition, servedContentType } from "../http/media_headers.js";
import { boolParam, intParam, stringParam } from "../http/params.js";
import { defineRoute, requester, type RouteContext } from "../http/routes.js";

const LEGACY = ["/_matrix/media/v3", "/_matrix/media/r0"];
const AUTHENTICATED = "/_matrix/client/v1/media";
/** After refusing an upload, how long its client may go on sending (discarded) before the connection is closed. */
const LINGER_MS = 2_000;
/** Larger than any real width or height; beyond it a thumbnail request is malformed. */
const MAX_THUMBNAIL_SIDE = 100_000;

type Ctx = RouteContext<Record<string, unknown>>;

export function registerMediaApi(app: FastifyInstance, services: Services): void {
  if (!services.config.media.enableMediaRepo) return;
  void app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser("*", (_req, payload, done) => done(null, payload));
    // A Content-Type Fastify cannot parse is a bad upload parameter here, not a JSON body problem; the rest goes
    // on to the app's error handler.
    scope.setErrorHandler((error: Error & { code?: string }) => {
      if (error.code === "FST_ERR_CTP_INVALID_MEDIA_TYPE") throw new MatrixError(400, "M_INVALID_PARAM", "Invalid Content-Type header");
      throw error;
    });
    registerUploads(scope, services);
    registerDownloads(scope, services);
  });
}

function registerUploads(app: FastifyInstance, services: Services): void {
  const { media } = services;

  defineRoute(app, services, {
    method: "POST",
    paths: ["/_matrix/media/v3/upload", "/_matrix/media/r0/upload", "/_matrix/media/v1/upload"],
    handler: (ctx) => withUploadBody(ctx, async (input) => ({ content_uri: (await media.storeLocal(input)).contentUri })),
  });

  defineRoute(app, services, {
    method: "POST",
    paths: ["/_matrix/media/v1/create"],
    handler: async (ctx) => {
      // The body, if any, is ignored (the spec defines none).
      discardBody(ctx.req.raw, ctx.body);
      const userId = requester(ctx).userId;
      // As Synapse: a suspended account uploads nothing (spec "Account suspension" leaves the list to servers).
      await ctx.services.accountModeration.assertNotSuspended(userId);
      return media.create(userId);
    },
  });

  defineRoute(app, services, {
    method: "PUT",
    paths: ["/_matrix/media/v3/upload/:serverName/:mediaId"],
    handler: (ctx) =>
      withUploadBody(ctx, async (input) => {
        await media.uploadTo(ctx.params.serverName!, ctx.params.mediaId!, input);
        return {};
      }),
  });

  for (const prefix of [AUTHENTICATED, ...LEGACY]) {
    defineRoute(app, services, {
      method: "GET",
      paths: [`${prefix}/config`],
      allowGuest: true,
      handler: () => media.uploadConfig(),
    });
  }
}

function registerDownloads(app: FastifyInstance, services: Services): void {
  const { media } = services;
  for (const authenticated of [true, false]) {
    const prefixes = authenticated ? [AUTHENTICATED] : LEGACY;
    const auth = authenticated ? "required" : "none";
    defineRoute(app, services, {
      method: "GET",
      paths: prefixes.flatMap((p) => [`${p}/download/:serverName/:mediaId`, `${p}/download/:serverName/:mediaId/:fileName`]),
      auth,
      allowGuest: true,
      handler: async (ctx) => {
        ctx.reply.headers(MEDIA_SAFETY_HEADERS);
        const content = await media.download(ctx.params.serverName!, ctx.params.mediaId!, accessOf(ctx, authenticated));
        const fileName = ctx.params.fileName !== undefined && ctx.params.fileName !== "" ? ctx.params.fileName : content.uploadName;
        return sendFile(ctx.reply, content, await media.open(content), fileName);
      },
    });
    defineRoute(app, services, {
      method: "GET",
      paths: prefixes.map((p) => `${p}/thumbnail/:serverName/:mediaId`),
      auth,
      allowGuest: true,
      handler: async (ctx) => {
        ctx.reply.headers(MEDIA_SAFETY_HEADERS);
        const request = thumbnailRequestOf(ctx.query);
        const content = await media.thumbnail(ctx.params.serverName!, ctx.params.mediaId!, request, accessOf(ctx, authenticated));
        return sendFile(ctx.reply, content, await media.open(content), null);
      },
    });
  }
}

function accessOf(ctx: Ctx, authenticated: boolean): MediaAccess {
  return {
    authenticated,
    timeoutMs: Math.min(intParam(ctx.query, "timeout_ms", DEFAULT_WAIT_MS, 0), MAX_WAIT_MS),
    allowRemote: boolParam(ctx.query, "allow_remote", true),
  };
}

export function thumbnailRequestOf(q: Ctx["query"]): ThumbnailRequest {
  const width = intParam(q, "width", undefined, 1, MAX_THUMBNAIL_SIDE);
  const height = intParam(q, "height", undefined, 1, MAX_THUMBNAIL_SIDE);
  if (width === undefined || height === undefined) throw new MatrixError(400, "M_MISSING_PARAM", "Missing width or height query parameter");
  const method = stringParam(q, "method") ?? "scale";
  if (method !== "crop" && method !== "scale") throw new MatrixError(400, "M_INVALID_PARAM", "Query parameter method must be crop or scale");
  return { width, height, method, animated: boolParam(q, "animated", false) };
}

/** Streams a file with its type, length, disposition and the media caching policy (the safety headers are set). */
function sendFile(reply: FastifyReply, content: MediaContent, stream: Readable, fileName: string | null): FastifyReply {
  return reply
    .code(200)
    .headers({
      "content-type": servedContentType(content.contentType),
      "content-length": String(content.length),
      "content-disposition": contentDisposition(content.contentType, fileName),
      "cache-control": MEDIA_CACHE_CONTROL,
    })
    .send(stream);
}

/**
 * Reads an upload's metadata (Content-Type, `filename`, Content-Length) and runs `fn` on its streamed body. Whatever
 * happens, a body not read to its end is drained afterwards, so the client finishes sending and reads our answer
 * (an early 413, say) instead of meeting a reset connection.
 */
async function withUploadBody<T>(ctx: Ctx, fn: (input: UploadInput) => Promise<T>): Promise<T> {
  const userId = requester(ctx).userId;
  const raw = ctx.req.raw;
  try {
    await ctx.services.accountModeration.assertNotSuspended(userId);
    const input: UploadInput = {
      userId,
      contentType: contentTypeOf(raw),
      filename: fileNameOf(ctx.query),
      source: ctx.body instanceof Readable ? ctx.body : Buffer.alloc(0),
    };
    const length = raw.headers["content-length"];
    if (length !== undefined) input.contentLength = Number(length);
    return await fn(input);
  } finally {
    discardBody(raw, ctx.body);
  }
}

function contentTypeOf(req: IncomingMessage): string {
  const type = req.headers["content-type"]?.trim();
  if (type === undefined || type === "") return "application/octet-stream";
  if (type.length > 255 || !/^[\x20-\x7e]+$/.test(type)) throw new MatrixError(400, "M_INVALID_PARAM", "Invalid Content-Type header");
  return type;
}

function fileNameOf(q: Ctx["query"]): string | null {
  const name = stringParam(q, "filename");
  if (name === undefined || name === "") return null;
  if (name.length > 1024) throw new MatrixError(400, "M_INVALID_PARAM", "filename is too long");
  return name;
}

/** Drains (and discards) what is left of a request body, closing the connection if that takes too long. */
function discardBody(req: IncomingMessage, body: unknown): void {
  if (!(body instanceof Readable) || req.complete || req.destroyed) return;
  const timer = setTimeout(() => req.socket.destroy(), LINGER_MS);
  timer.unref();
  const done = () => clearTimeout(timer);
  req.once("end", done);
  req.once("close", done);
  req.resume();
}
