/**
 * Thumbnails (spec "Content repository", Thumbnails): images decoded and resized off the event loop, never upscaled,
 * with decompression bombs and malformed files refused. The interface the media repository builds on; the
 * implementation is sharp (libvips).
 */

export type ThumbnailMethod = "crop" | "scale";

/** One configured size (Synapse's `thumbnail_sizes` entry). */
export interface ThumbnailSize {
  width: number;
  height: number;
  method: ThumbnailMethod;
}

/** Synapse's default `thumbnail_sizes`. */
export const DEFAULT_THUMBNAIL_SIZES: readonly ThumbnailSize[] = [
  { width: 32, height: 32, method: "crop" },
  { width: 96, height: 96, method: "crop" },
  { width: 320, height: 240, method: "scale" },
  { width: 640, height: 480, method: "scale" },
  { width: 800, height: 600, method: "scale" },
];

/** What an image file is, read from its header. */
export interface ImageInfo {
  /** The detected type, e.g. image/png — not the uploader's claim. */
  type: string;
  width: number;
  height: number;
  /** More than one frame (animated GIF or WebP). */
  animated: boolean;
}

/** A thumbnail written to disk. */
export interface GeneratedThumbnail {
  width: number;
  height: number;
  /** Content type of the thumbnail file. */
  type: string;
  method: ThumbnailMethod;
  animated: boolean;
  /** Bytes written. */
  length: number;
}

/** The file is not an image we can read, is malformed, or is larger than `max_image_pixels`. */
export class ImageRejected extends Error {}

/** An ImageRejected for an image over `max_image_pixels` (the spec's 413 M_TOO_LARGE), not a malformed one. */
export class ImageTooLarge extends ImageRejected {}

export interface Thumbnailer {
  /** The image's type and size, or null when the file is not an image type we thumbnail. Throws ImageRejected. */
  probe(file: string): Promise<ImageInfo | null>;
  /**
   * Writes a thumbnail of `file` at `size` to `outFile`. `animated`: keep the animation (GIF/WebP in, same type
   * out); otherwise the first frame. Throws ImageRejected.
   */
  generate(file: string, size: ThumbnailSize, outFile: string, opts: { animated: boolean }): Promise<GeneratedThumbnail>;
}

/** The fields of a stored thumbnail that choosing one needs. */
export interface ThumbnailCandidate {
  width: number;
  height: number;
  method: ThumbnailMethod;
  type: string;
  animated?: boolean;
}

/**
 * The stored thumbnail that best answers a request, or undefined (Synapse's `_select_thumbnail`, with the spec's
 * animation rule). Only thumbnails made with the requested method qualify, as in Synapse. With `animated` an animated
 * one is preferred, a still used when there is none; without it an animated one is never returned (the spec's MUST
 * NOT). Among the rest:
 * - crop: the ones at least as large as the request in both dimensions, closest aspect ratio first, then smallest;
 * - scale: the ones that reach the requested box in at least one dimension (a scaled thumbnail fits inside the box,
 *   so the limiting dimension is the one that reaches it), smallest first;
 * - if none is that large (the original was smaller), the largest.
 * Ties go to the earlier candidate.
 */
export function selectThumbnail<T extends ThumbnailCandidate>(
  candidates: readonly T[],
  want: { width: number; height: number; method: ThumbnailMethod; animated: boolean },
): T | undefined {
  const sameMethod = candidates.filter((c) => c.method === want.method);
  let pool = sameMethod.filter((c) => !c.animated);
  if (want.animated) {
    const animated = sameMethod.filter((c) => c.animated);
    if (animated.length > 0) pool = animated;
  }
  const area = (c: T) => c.width * c.height;
  // How far the candidate's aspect ratio is from the request's, as a ratio >= 1 (exact in integers when equal).
  const aspectOff = (c: T) => {
    const a = c.width * want.height;
    const b = c.height * want.width;
    return Math.max(a, b) / Math.max(1, Math.min(a, b));
  };
  const largeEnough = pool.filter((c) =>
    want.method === "crop" ? c.width >= want.width && c.height >= want.height : c.width >= want.width || c.height >= want.height,
  );
  if (largeEnough.length > 0) {
    return best(largeEnough, (a, b) => (want.method === "crop" ? aspectOff(a) - aspectOff(b) : 0) || area(a) - area(b));
  }
  return best(pool, (a, b) => area(b) - area(a) || (want.method === "crop" ? aspectOff(a) - aspectOff(b) : 0));
}

/** The first item that no later item beats under `compare` (negative: the first argument is better). */
function best<T>(items: readonly T[], compare: (a: T, b: T) => number): T | undefined {
  let chosen: T | undefined;
  for (const item of items) if (chosen === undefined || compare(item, chosen) < 0) chosen = item;
  return chosen;
}

/**
 * Synapse's `thumbnail_sizes`: a list of `{width, height, method}` (positive integers; "crop" or "scale"). Absent
 * means the defaults; an empty list means no thumbnails are made ahead of time. Identical entries are kept once.
 * Throws an Error naming the bad entry.
 */
export function parseThumbnailSizes(raw: unknown): ThumbnailSize[] {
  if (raw === undefined || raw === null) return DEFAULT_THUMBNAIL_SIZES.map((s) => ({ ...s }));
  if (!Array.isArray(raw)) throw new Error("thumbnail_sizes must be a list of {width, height, method}");
  const sizes: ThumbnailSize[] = [];
  raw.forEach((entry: unknown, i) => {
    const where = `thumbnail_sizes[${i}]`;
    if (typeof entry !== "object" || entry === null || Array.isArray(entry)) throw new Error(`${where} must be a mapping with width, height and method`);
    const { width, height, method } = entry as Record<string, unknown>;
    for (const [name, value] of [["width", width], ["height", height]] as const) {
      if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 1) throw new Error(`${where}.${name} must be a positive integer`);
    }
    if (method !== "crop" && method !== "scale") throw new Error(`${where}.method must be "crop" or "scale"`);
    const size: ThumbnailSize = { width: width as number, height: height as number, method };
    if (!sizes.some((s) => s.width === size.width && s.height === size.height && s.method === size.method)) sizes.push(size);
  });
  return sizes;
}
