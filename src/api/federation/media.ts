/**
 * The federation content repository (server-server API, "Content Repository"): other servers fetch our users' media
 *   GET /_matrix/federation/v1/media/download/{mediaId}
 *   GET /_matrix/federation/v1/media/thumbnail/{mediaId}?width=&height=&method=&animated=&timeout_ms=
 * as `multipart/mixed`: a JSON metadata part (`{}`), then the bytes with their Content-Type and Content-Disposition
 * (we always send the bytes, never a `Location`). Only local media: a server asks the origin, never us for a third
 * server's media. The file is streamed between the framing, never read whole.
 */
import { Readable } from "node:stream";
import type { FastifyInstance, FastifyReply } from "fastify";
import { DEFAULT_WAIT_MS, MAX_WAIT_MS, type MediaAccess, type MediaContent } from "../../services/media/media_repository.js";
import { multipartContentType, multipartFrame, newBoundary } from "../../services/media/multipart.js";
import type { Services } from "../../services/services.js";
import { thumbnailRequestOf } from "../client/media.js";
import { MEDIA_CACHE_CONTROL, contentDisposition, servedContentType } from "../http/media_headers.js";
import { intParam } from "../http/params.js";
import { defineFederationRoute } from "./auth.js";

const V1 = "/_matrix/federation/v1/media";

export function registerFederationMedia(app: FastifyInstance, services: Services): void {
  if (!services.config.media.enableMediaRepo) return;
  const { media, config } = services;
  const accessOf = (query: Record<string, string | string[] | undefined>): MediaAccess => ({
    authenticated: true,
    timeoutMs: Math.min(intParam(query, "timeout_ms", DEFAULT_WAIT_MS, 0), MAX_WAIT_MS),
    allowRemote: false,
  });

  defineFederationRoute(app, services, {
    method: "GET",
    paths: [`${V1}/download/:mediaId`],
    handler: async ({ params, query, reply }) => {
      const content = await media.download(config.serverName, params.mediaId!, accessOf(query));
      return sendMultipart(reply, content, await media.open(content), content.uploadName);
    },
  });

  defineFederationRoute(app, services, {
    method: "GET",
    paths: [`${V1}/thumbnail/:mediaId`],
    handler: async ({ params, query, reply }) => {
      const request = thumbnailRequestOf(query);
      const content = await media.thumbnail(config.serverName, params.mediaId!, request, accessOf(query));
      return sendMultipart(reply, content, await media.open(content), null);
    },
  });
}

function sendMultipart(reply: FastifyReply, content: MediaContent, file: Readable, fileName: string | null): FastifyReply {
  const boundary = newBoundary();
  const { head, tail } = multipartFrame(
    boundary,
    {},
    { "Content-Type": servedContentType(content.contentType), "Content-Disposition": contentDisposition(content.contentType, fileName) },
  );
  async function* body(): AsyncGenerator<Buffer> {
    yield head;
    try {
      for await (const chunk of file as AsyncIterable<Buffer>) yield chunk;
    } finally {
      file.destroy();
    }
    yield tail;
  }
  return reply
    .code(200)
    .headers({
      "content-type": multipartContentType(boundary),
      "content-length": String(head.length + content.length + tail.length),
      "cache-control": MEDIA_CACHE_CONTROL,
    })
    .send(Readable.from(body(), { objectMode: false }));
}
