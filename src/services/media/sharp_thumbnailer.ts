/**
 * The Thumbnailer on sharp (libvips). libvips decodes on libuv's threadpool, so the event loop never waits on pixels.
 * Only JPEG, PNG, GIF and WebP reach the decoder, recognised by their magic bytes (never the uploader's Content-Type);
 * an image's declared size is checked against `max_image_pixels` before a pixel is decoded, so a decompression bomb
 * costs a header read. Other media types we know (SVG, PDF, video, …) are not thumbnailed: SVG in particular is never
 * rasterised, since its renderer would be fed users' XML.
 */
import { open, unlink } from "node:fs/promises";
import { availableParallelism } from "node:os";
import type { Metadata, Sharp, SharpOptions } from "sharp";
import {
  ImageRejected,
  ImageTooLarge,
  type GeneratedThumbnail,
  type ImageInfo,
  type Thumbnailer,
  type ThumbnailSize,
} from "./thumbnailer.js";

type Decodable = "jpeg" | "png" | "gif" | "webp";

const CONTENT_TYPE: Record<Decodable, string> = { jpeg: "image/jpeg", png: "image/png", gif: "image/gif", webp: "image/webp" };

/** Synapse's JPEG quality for thumbnails; also used for WebP. */
const QUALITY = 80;

/** A job still decoding after this long is pathological (a 32M-pixel PNG takes about a second): give its slot back. */
const JOB_TIMEOUT_SECONDS = 60;

export interface SharpThumbnailerOptions {
  /** Synapse's `max_image_pixels`: width × height × frames above which an image is refused unread. */
  maxImagePixels: number;
  /** Images worked on at once; later jobs wait their turn. Default: the number of cores, at most 2. */
  maxConcurrent?: number;
}

/** An image as its header declares it. */
interface Source {
  format: Decodable;
  /** One frame's size, after EXIF orientation. */
  width: number;
  height: number;
  frames: number;
  hasAlpha: boolean;
}

type SharpFactory = (input: string, options: SharpOptions) => Sharp;
let sharpLoaded: Promise<SharpFactory> | undefined;

/**
 * sharp (libvips, ~20 MB of RSS once loaded) is loaded at the first image, so a server that never thumbnails never
 * pays for it. Process-wide settings: no operation cache (thumbnails are made once per size, so a cache would only
 * hold memory); one libvips thread per image: parallelism comes from running `maxConcurrent` images at once, each on
 * one libuv threadpool thread, which leaves the rest of that pool (4 by default) to file I/O and password hashing.
 */
function loadSharp(): Promise<SharpFactory> {
  sharpLoaded ??= import("sharp").then(({ default: sharp }) => {
    sharp.cache(false);
    sharp.concurrency(1);
    return sharp;
  });
  return sharpLoaded;
}

export class SharpThumbnailer implements Thumbnailer {
  private readonly maxImagePixels: number;
  private readonly queue: JobQueue;

  constructor(opts: SharpThumbnailerOptions) {
    this.maxImagePixels = opts.maxImagePixels;
    this.queue = new JobQueue(Math.max(1, opts.maxConcurrent ?? Math.min(2, availableParallelism())));
  }

  /** Jobs running and waiting now, and the most that ever ran at once (for metrics and tests). */
  get load(): { running: number; waiting: number; peak: number } {
    return this.queue.load;
  }

  probe(file: string): Promise<ImageInfo | null> {
    return this.queue.run(async () => {
      const src = await this.inspect(file);
      return src && { type: CONTENT_TYPE[src.format], width: src.width, height: src.height, animated: src.frames > 1 };
    });
  }

  generate(file: string, size: ThumbnailSize, outFile: string, opts: { animated: boolean }): Promise<GeneratedThumbnail> {
    return this.queue.run(async () => {
      const src = await this.inspect(file);
      if (!src) throw new ImageRejected("this type of media is not thumbnailed");
      // The spec: when the media cannot be animated, `animated` is treated as false.
      const animated = opts.animated && src.frames > 1;
      // limitInputPixels again as a backstop; with `animated` libvips counts all frames, as the check above did.
      const sharp = await loadSharp();
      let image = sharp(file, { failOn: "error", limitInputPixels: this.maxImagePixels, animated });
      // Animated GIF/WebP carry no EXIF orientation, and libvips rotates only single images.
      if (!animated) image = image.autoOrient();
      image =
        size.method === "crop"
          ? // Cover then centre-crop; clamping the box to the source means scale 1 at most, so never an upscale.
            image.resize(Math.min(size.width, src.width), Math.min(size.height, src.height), { fit: "cover", position: "centre" })
          : image.resize(size.width, size.height, { fit: "inside", withoutEnlargement: true });
      image = image.timeout({ seconds: JOB_TIMEOUT_SECONDS });
      const type = outputType(src, animated);
      if (type === "image/webp") image = image.webp({ quality: QUALITY, effort: 2 });
      else if (type === "image/jpeg") image = image.jpeg({ quality: QUALITY });
      else image = image.png();
      try {
        const info = await image.toFile(outFile);
        return { width: info.width, height: info.pageHeight ?? info.height, type, method: size.method, animated, length: info.size };
      } catch (err) {
        await unlink(outFile).catch(() => undefined);
        throw rejection(err);
      }
    });
  }

  /** The image's declared format and size, null for a type we do not thumbnail. Throws ImageRejected. */
  private async inspect(file: string): Promise<Source | null> {
    const kind = sniff(await readHead(file));
    if (kind === "other") return null;
    if (kind === "unknown") throw new ImageRejected("the file is not an image this server can read");
    let meta: Metadata;
    try {
      // Header only; the pixel limit is checked below, with frames counted, so it can be told apart from bad data.
      const sharp = await loadSharp();
      meta = await sharp(file, { limitInputPixels: false }).metadata();
    } catch (err) {
      throw rejection(err);
    }
    if (meta.format !== kind) throw new ImageRejected(`the file is not a valid ${kind} image`);
    const width = meta.autoOrient?.width ?? meta.width;
    const height = meta.autoOrient?.height ?? meta.height;
    if (!width || !height) throw new ImageRejected("the image declares no size");
    const frames = Math.max(1, meta.pages ?? 1);
    if (width * height * frames > this.maxImagePixels) {
      const declared = frames > 1 ? `${width}×${height}×${frames} frames` : `${width}×${height}`;
      throw new ImageTooLarge(`the image (${declared}) has more than max_image_pixels (${this.maxImagePixels}) pixels`);
    }
    return { format: kind, width, height, frames, hasAlpha: meta.hasAlpha ?? false };
  }
}

/**
 * The thumbnail's content type, as Synapse chooses it for stills: JPEG stays JPEG, PNG stays PNG, a GIF's first
 * frame becomes PNG (it may be transparent). A still WebP becomes JPEG as in Synapse, or PNG when it has an alpha
 * channel (Synapse flattens it, losing the transparency). Animation is kept as animated WebP, which the spec prefers.
 */
function outputType(src: Source, animated: boolean): string {
  if (animated) return "image/webp";
  if (src.format === "jpeg") return "image/jpeg";
  if (src.format === "webp" && !src.hasAlpha) return "image/jpeg";
  return "image/png";
}

function rejection(err: unknown): ImageRejected {
  if (err instanceof ImageRejected) return err;
  const message = err instanceof Error ? err.message : String(err);
  if (/pixel limit/i.test(message)) return new ImageTooLarge("the image has more than max_image_pixels pixels");
  return new ImageRejected(`the image cannot be read: ${message.split("\n")[0]}`);
}

const HEAD_BYTES = 512;

async function readHead(file: string): Promise<Buffer> {
  const handle = await open(file, "r");
  try {
    const buf = Buffer.alloc(HEAD_BYTES);
    const { bytesRead } = await handle.read(buf, 0, HEAD_BYTES, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

/**
 * What the file's first bytes say it is: one of the formats we decode, "other" for a media type we know and do not
 * thumbnail, "unknown" for anything else (random bytes, text).
 */
function sniff(head: Buffer): Decodable | "other" | "unknown" {
  const bytes = (at: number, ...expected: number[]) => expected.every((b, i) => head[at + i] === b);
  const ascii = (at: number, s: string) => head.toString("latin1", at, at + s.length) === s;
  if (bytes(0, 0xff, 0xd8, 0xff)) return "jpeg";
  if (bytes(0, 0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a)) return "png";
  if (ascii(0, "GIF87a") || ascii(0, "GIF89a")) return "gif";
  if (ascii(0, "RIFF") && ascii(8, "WEBP")) return "webp";
  const known =
    isSvg(head) ||
    ascii(0, "%PDF-") ||
    ascii(4, "ftyp") || // ISO media: MP4, MOV, 3GP, HEIC, AVIF
    bytes(0, 0x1a, 0x45, 0xdf, 0xa3) || // Matroska, WebM
    (ascii(0, "RIFF") && (ascii(8, "AVI ") || ascii(8, "WAVE"))) ||
    ascii(0, "OggS") ||
    ascii(0, "FLV") ||
    bytes(0, 0x00, 0x00, 0x01, 0xba) || // MPEG program stream
    ascii(0, "II*\0") ||
    ascii(0, "MM\0*") || // TIFF
    ascii(0, "BM") ||
    bytes(0, 0x00, 0x00, 0x01, 0x00) || // ICO
    bytes(0, 0xff, 0x0a) ||
    bytes(0, 0x00, 0x00, 0x00, 0x0c, 0x4a, 0x58, 0x4c, 0x20) || // JPEG XL
    bytes(0, 0x00, 0x00, 0x00, 0x0c, 0x6a, 0x50, 0x20, 0x20) || // JPEG 2000
    ascii(0, "8BPS"); // Photoshop
  return known ? "other" : "unknown";
}

/** An XML document whose head has an <svg element (after an optional byte-order mark and whitespace). */
function isSvg(head: Buffer): boolean {
  const text = head.toString("utf8").replace(/^\uFEFF/, "").trimStart().toLowerCase();
  return text.startsWith("<") && text.includes("<svg");
}

/** At most `limit` jobs run at once; the rest wait, first come first served (a waiting job holds only its file path). */
class JobQueue {
  private running = 0;
  private peak = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly limit: number) {}

  get load(): { running: number; waiting: number; peak: number } {
    return { running: this.running, waiting: this.waiting.length, peak: this.peak };
  }

  async run<T>(job: () => Promise<T>): Promise<T> {
    if (this.running < this.limit) this.running++;
    else await new Promise<void>((resolve) => this.waiting.push(resolve)); // the finishing job hands over its slot
    this.peak = Math.max(this.peak, this.running);
    try {
      return await job();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }
}
