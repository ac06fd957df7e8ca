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

export interface Thumbnailer {
  /** The image's type and size, or null when the file is not an image type we thumbnail. Throws ImageRejected. */
  probe(file: string): Promise<ImageInfo | null>;
  /**
   * Writes a thumbnail of `file` at `size` to `outFile`. `animated`: keep the animation (GIF/WebP in, same type
   * out); otherwise the first frame. Throws ImageRejected.
   */
  generate(file: string, size: ThumbnailSize, outFile: string, opts: { animated: boolean }): Promise<GeneratedThumbnail>;
}
