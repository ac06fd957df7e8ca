/** The media repository's Thumbnailer: sharp (libvips). */
import { SharpThumbnailer } from "./sharp_thumbnailer.js";
import type { Thumbnailer } from "./thumbnailer.js";

export function createThumbnailer(opts: { maxImagePixels: number }): Thumbnailer {
  return new SharpThumbnailer(opts);
}
