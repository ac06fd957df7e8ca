/**
 * Builds the server's Thumbnailer. A placeholder until the sharp (libvips) implementation lands: it thumbnails
 * nothing (every file probes as "not an image"), so thumbnail requests answer 400 M_UNKNOWN and uploads work as usual.
 */
import type { Thumbnailer } from "./thumbnailer.js";

export function createThumbnailer(opts: { maxImagePixels: number }): Thumbnailer {
  void opts;
  return {
    probe: async () => null,
    generate: async () => {
      throw new Error("no thumbnailer is configured");
    },
  };
}
