/** Media helpers for HTTP tests: raw uploads and downloads (bytes, not JSON), and a fake Thumbnailer. */
import { readFile, writeFile } from "node:fs/promises";
import { ImageRejected, type GeneratedThumbnail, type ImageInfo, type Thumbnailer, type ThumbnailSize } from "../../src/services/media/thumbnailer.js";
import type { TestUser } from "./http.js";

/** What fetch accepts as a body. */
export type Body = NonNullable<RequestInit["body"]>;

export const MEDIA_V3 = "/_matrix/media/v3";
export const CLIENT_MEDIA = "/_matrix/client/v1/media";

export interface RawResponse {
  status: number;
  headers: Headers;
  bytes: Buffer;
  /** The body as JSON, when it is JSON. */
  json: Record<string, unknown> | undefined;
}

export async function rawRequest(baseUrl: string, method: string, path: string, opts: { token?: string; body?: Body; headers?: Record<string, string>; duplex?: boolean } = {}): Promise<RawResponse> {
  const headers: Record<string, string> = { ...(opts.headers ?? {}) };
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  const init: RequestInit & { duplex?: "half" } = { method, headers };
  if (opts.body !== undefined) init.body = opts.body;
  if (opts.duplex) init.duplex = "half";
  const res = await fetch(baseUrl + path, init);
  const bytes = Buffer.from(await res.arrayBuffer());
  let json: Record<string, unknown> | undefined;
  try {
    json = JSON.parse(bytes.toString("utf8")) as Record<string, unknown>;
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, bytes, json };
}

export function expectMatrixError(res: RawResponse, status: number, errcode: string): void {
  if (res.status !== status || res.json?.errcode !== errcode || typeof res.json?.error !== "string") {
    throw new Error(`expected ${status} ${errcode}, got ${res.status} ${res.bytes.toString("utf8").slice(0, 300)}`);
  }
}

/** POST /_matrix/media/v3/upload; returns the mxc URI's server name and media id. */
export async function upload(
  baseUrl: string,
  user: TestUser,
  body: Buffer | string,
  opts: { contentType?: string; filename?: string; prefix?: string } = {},
): Promise<{ contentUri: string; serverName: string; mediaId: string }> {
  const q = opts.filename !== undefined ? `?filename=${encodeURIComponent(opts.filename)}` : "";
  const headers: Record<string, string> = {};
  if (opts.contentType !== undefined) headers["content-type"] = opts.contentType;
  const res = await rawRequest(baseUrl, "POST", `${opts.prefix ?? MEDIA_V3}/upload${q}`, { token: user.accessToken, body: typeof body === "string" ? body : new Uint8Array(body), headers });
  if (res.status !== 200) throw new Error(`upload: ${res.status} ${res.bytes.toString("utf8")}`);
  const contentUri = res.json!.content_uri as string;
  const m = /^mxc:\/\/([^/]+)\/([^/]+)$/.exec(contentUri);
  if (!m) throw new Error(`not an mxc URI: ${contentUri}`);
  return { contentUri, serverName: m[1]!, mediaId: m[2]! };
}

/**
 * A stand-in for the sharp thumbnailer. An "image" is a file starting with `FAKEIMG <w>x<h>` (`FAKEIMG-ANIM …`
 * for an animated one; `FAKEIMG-BOMB` is refused); a thumbnail is a text file naming its size and method. Sizes
 * follow the spec: crop gives the requested box, scale fits the image in it, and neither ever upscales.
 */
export class FakeThumbnailer implements Thumbnailer {
  generated: { width: number; height: number; method: string; animated: boolean }[] = [];
  /** While set, generate() waits for it (to show thumbnails never delay an upload). */
  gate: Promise<void> | undefined;

  async probe(file: string): Promise<ImageInfo | null> {
    const head = (await readFile(file)).subarray(0, 64).toString("latin1");
    if (head.startsWith("FAKEIMG-BOMB")) throw new ImageRejected("too many pixels");
    const m = /^FAKEIMG(-ANIM)? (\d+)x(\d+)/.exec(head);
    if (!m) return null;
    return { type: "image/png", width: Number(m[2]), height: Number(m[3]), animated: m[1] !== undefined };
  }

  async generate(file: string, size: ThumbnailSize, outFile: string, opts: { animated: boolean }): Promise<GeneratedThumbnail> {
    await this.gate;
    const info = await this.probe(file);
    if (!info) throw new ImageRejected("not an image");
    let width: number;
    let height: number;
    if (size.method === "crop") {
      width = Math.min(size.width, info.width);
      height = Math.min(size.height, info.height);
    } else {
      const ratio = Math.min(size.width / info.width, size.height / info.height, 1);
      width = Math.max(1, Math.round(info.width * ratio));
      height = Math.max(1, Math.round(info.height * ratio));
    }
    const animated = opts.animated && info.animated;
    const body = `thumb ${width}x${height} ${size.method}${animated ? " animated" : ""}`;
    await writeFile(outFile, body);
    this.generated.push({ width, height, method: size.method, animated });
    return { width, height, type: animated ? "image/gif" : "image/png", method: size.method, animated, length: Buffer.byteLength(body) };
  }
}
