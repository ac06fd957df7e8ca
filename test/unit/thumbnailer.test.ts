/**
 * The thumbnailer (services/media/sharp_thumbnailer.ts) and the pure helpers beside its interface: formats in and
 * out, crop/scale sizes without upscaling, EXIF orientation, animation only when asked, decompression bombs and
 * malformed files refused before decoding, no SVG rasterising, the job bound; selectThumbnail and
 * parseThumbnailSizes. Fixture images are made here with sharp, or by hand where they must be broken.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { crc32, deflateSync } from "node:zlib";
import sharp from "sharp";
import { afterAll, describe, expect, it } from "vitest";
import { SharpThumbnailer } from "../../src/services/media/sharp_thumbnailer.js";
import {
  DEFAULT_THUMBNAIL_SIZES,
  ImageRejected,
  ImageTooLarge,
  parseThumbnailSizes,
  selectThumbnail,
  type ThumbnailMethod,
} from "../../src/services/media/thumbnailer.js";
import { createThumbnailer } from "../../src/services/media/thumbnailer_factory.js";

const dir = mkdtempSync(join(tmpdir(), "myelin-thumbs-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let seq = 0;
const MAX_PIXELS = 32_000_000; // Synapse's default max_image_pixels
const thumbs = new SharpThumbnailer({ maxImagePixels: MAX_PIXELS });

function save(bytes: Buffer | string, name = "in"): string {
  const file = join(dir, `${name}-${seq++}`);
  writeFileSync(file, bytes);
  return file;
}
const out = () => join(dir, `out-${seq++}`);

type Colour = { r: number; g: number; b: number; alpha?: number };
const RED: Colour = { r: 255, g: 0, b: 0 };
const solid = (width: number, height: number, background: Colour = RED, channels: 3 | 4 = 3) =>
  sharp({ create: { width, height, channels, background } });

/** An animated image of `frames` frames of width×height, each its own colour. */
async function animation(width: number, height: number, frames: number, format: "gif" | "webp"): Promise<Buffer> {
  const colours = Array.from({ length: frames }, (_, i) => ({ r: (i * 80) % 256, g: 255 - ((i * 80) % 256), b: 128 }));
  const pngs = await Promise.all(colours.map((c) => solid(width, height, c, 4).png().toBuffer()));
  const joined = sharp(pngs, { join: { animated: true } });
  return format === "gif" ? joined.gif({ delay: pngs.map(() => 100), loop: 0 }).toBuffer() : joined.webp({ delay: pngs.map(() => 100), loop: 0 }).toBuffer();
}

async function decoded(file: string) {
  const m = await sharp(file, { animated: true }).metadata();
  return { format: m.format, width: m.width, height: m.pageHeight ?? m.height, pages: m.pages ?? 1, hasAlpha: m.hasAlpha };
}

function pngChunk(type: string, data: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, "latin1"), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([length, body, crc]);
}

/** A valid-looking PNG header declaring width×height, with a few hundred bytes of pixel data. */
function pngDeclaring(width: number, height: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  return Buffer.concat([signature, pngChunk("IHDR", ihdr), pngChunk("IDAT", deflateSync(Buffer.alloc(4096))), pngChunk("IEND", Buffer.alloc(0))]);
}

/** A GIF declaring `frames` frames of width×height, each an empty LZW stream (clear code, end code): ~14 bytes a frame. */
function gifDeclaring(width: number, height: number, frames: number): Buffer {
  const u16 = (n: number) => [n & 0xff, n >> 8];
  const parts = [Buffer.from("GIF89a", "latin1"), Buffer.from([...u16(width), ...u16(height), 0x80, 0, 0, 0, 0, 0, 255, 255, 255])];
  const frame = Buffer.from([0x2c, 0, 0, 0, 0, ...u16(width), ...u16(height), 0, 2, 1, 0x2c, 0]);
  for (let i = 0; i < frames; i++) parts.push(frame);
  parts.push(Buffer.from([0x3b]));
  return Buffer.concat(parts);
}

describe("formats", () => {
  it("JPEG in, JPEG out", async () => {
    const file = save(await solid(400, 300).jpeg().toBuffer());
    expect(await thumbs.probe(file)).toEqual({ type: "image/jpeg", width: 400, height: 300, animated: false });
    const o = out();
    const t = await thumbs.generate(file, { width: 96, height: 96, method: "crop" }, o, { animated: false });
    expect(t).toMatchObject({ type: "image/jpeg", width: 96, height: 96, method: "crop", animated: false });
    expect(await decoded(o)).toMatchObject({ format: "jpeg", width: 96, height: 96, pages: 1 });
  });

  it("PNG with alpha in, PNG with alpha out, transparency kept", async () => {
    const file = save(await solid(400, 300, { r: 0, g: 0, b: 255, alpha: 0 }, 4).png().toBuffer());
    expect(await thumbs.probe(file)).toEqual({ type: "image/png", width: 400, height: 300, animated: false });
    const o = out();
    const t = await thumbs.generate(file, { width: 320, height: 240, method: "scale" }, o, { animated: false });
    expect(t).toMatchObject({ type: "image/png", width: 320, height: 240 });
    expect(await decoded(o)).toMatchObject({ format: "png", hasAlpha: true });
    const { data } = await sharp(o).raw().toBuffer({ resolveWithObject: true });
    expect(data[3]).toBe(0); // the first pixel is still fully transparent
  });

  it("opaque PNG in, PNG out", async () => {
    const file = save(await solid(200, 100).png().toBuffer());
    const o = out();
    expect((await thumbs.generate(file, { width: 32, height: 32, method: "crop" }, o, { animated: false })).type).toBe("image/png");
    expect(await decoded(o)).toMatchObject({ format: "png", width: 32, height: 32 });
  });

  it("WebP in: JPEG out when opaque (as Synapse), PNG when it has alpha", async () => {
    const opaque = save(await solid(300, 200).webp().toBuffer());
    expect(await thumbs.probe(opaque)).toEqual({ type: "image/webp", width: 300, height: 200, animated: false });
    const o1 = out();
    expect((await thumbs.generate(opaque, { width: 96, height: 96, method: "crop" }, o1, { animated: false })).type).toBe("image/jpeg");
    expect((await decoded(o1)).format).toBe("jpeg");
    const clear = save(await solid(300, 200, { r: 0, g: 255, b: 0, alpha: 0.5 }, 4).webp().toBuffer());
    const o2 = out();
    expect((await thumbs.generate(clear, { width: 96, height: 96, method: "crop" }, o2, { animated: false })).type).toBe("image/png");
    expect(await decoded(o2)).toMatchObject({ format: "png", hasAlpha: true });
  });

  it("a still GIF in, PNG out", async () => {
    const file = save(await solid(120, 80).gif().toBuffer());
    expect(await thumbs.probe(file)).toEqual({ type: "image/gif", width: 120, height: 80, animated: false });
    const o = out();
    expect(await thumbs.generate(file, { width: 96, height: 96, method: "crop" }, o, { animated: true })).toMatchObject({ type: "image/png", animated: false, width: 96, height: 80 });
    expect((await decoded(o)).format).toBe("png");
  });

  it("the type comes from the content, not the file name or claim", async () => {
    const file = save(await solid(64, 64).png().toBuffer(), "claims.jpg");
    expect((await thumbs.probe(file))?.type).toBe("image/png");
  });
});

describe("sizes", () => {
  it("the default sizes of a 2000×1500 JPEG have exactly the configured dimensions", async () => {
    const file = save(await solid(2000, 1500).jpeg().toBuffer());
    for (const size of DEFAULT_THUMBNAIL_SIZES) {
      const o = out();
      const t = await thumbs.generate(file, size, o, { animated: false });
      expect([t.width, t.height]).toEqual([size.width, size.height]);
      expect(await decoded(o)).toMatchObject({ width: size.width, height: size.height });
      expect(t.length).toBeGreaterThan(0);
    }
  });

  it("scale keeps the aspect ratio inside the box; crop fills the box exactly", async () => {
    const file = save(await solid(1000, 500).jpeg().toBuffer());
    const scale = await thumbs.generate(file, { width: 320, height: 240, method: "scale" }, out(), { animated: false });
    expect([scale.width, scale.height]).toEqual([320, 160]);
    const tall = save(await solid(500, 1000).jpeg().toBuffer());
    const scaleTall = await thumbs.generate(tall, { width: 320, height: 240, method: "scale" }, out(), { animated: false });
    expect([scaleTall.width, scaleTall.height]).toEqual([120, 240]);
    const crop = await thumbs.generate(file, { width: 96, height: 96, method: "crop" }, out(), { animated: false });
    expect([crop.width, crop.height]).toEqual([96, 96]);
    const wide = await thumbs.generate(tall, { width: 320, height: 100, method: "crop" }, out(), { animated: false });
    expect([wide.width, wide.height]).toEqual([320, 100]);
  });

  it("crop takes the centre", async () => {
    // Left third red, middle green, right third blue: a square crop is all green.
    const stripes = await sharp({ create: { width: 300, height: 100, channels: 3, background: RED } })
      .composite([
        { input: await solid(100, 100, { r: 0, g: 255, b: 0 }).png().toBuffer(), left: 100, top: 0 },
        { input: await solid(100, 100, { r: 0, g: 0, b: 255 }).png().toBuffer(), left: 200, top: 0 },
      ])
      .png()
      .toBuffer();
    const o = out();
    await thumbs.generate(save(stripes), { width: 32, height: 32, method: "crop" }, o, { animated: false });
    const { data, info } = await sharp(o).raw().toBuffer({ resolveWithObject: true });
    for (const x of [0, info.width - 1]) {
      const i = x * info.channels;
      // Green at both edges (the resampling filter blends in a little of the neighbouring stripes).
      expect(data[i + 1]).toBeGreaterThan(200);
      expect(Math.max(data[i] ?? 255, data[i + 2] ?? 255)).toBeLessThan(60);
    }
  });

  it("never upscales: a smaller source gives at most its own size", async () => {
    const small = save(await solid(50, 30).png().toBuffer());
    for (const size of DEFAULT_THUMBNAIL_SIZES.filter((s) => s.width > 50)) {
      const t = await thumbs.generate(small, size, out(), { animated: false });
      expect([t.width, t.height]).toEqual([50, 30]);
    }
    // Crop smaller than the source in one dimension only: cut to the box there, the source's size in the other.
    const strip = save(await solid(200, 40).png().toBuffer());
    const t = await thumbs.generate(strip, { width: 96, height: 96, method: "crop" }, out(), { animated: false });
    expect([t.width, t.height]).toEqual([96, 40]);
    const s = await thumbs.generate(strip, { width: 800, height: 600, method: "scale" }, out(), { animated: false });
    expect([s.width, s.height]).toEqual([200, 40]);
  });

  it("honours EXIF orientation", async () => {
    // Stored 400×200, left half red and right half blue, with orientation 6 (display rotated 90° clockwise):
    // shown 200×400 with red on top.
    const stored = await solid(400, 200, { r: 0, g: 0, b: 255 })
      .composite([{ input: await solid(200, 200).png().toBuffer(), left: 0, top: 0 }])
      .jpeg()
      .withMetadata({ orientation: 6 })
      .toBuffer();
    const file = save(stored);
    expect(await thumbs.probe(file)).toMatchObject({ width: 200, height: 400 });
    const o = out();
    const t = await thumbs.generate(file, { width: 320, height: 240, method: "scale" }, o, { animated: false });
    expect([t.width, t.height]).toEqual([120, 240]);
    const { data, info } = await sharp(o).raw().toBuffer({ resolveWithObject: true });
    const pixel = (x: number, y: number) => Array.from(data.subarray((y * info.width + x) * info.channels, (y * info.width + x) * info.channels + 3));
    expect(pixel(60, 10)[0]).toBeGreaterThan(200); // red on top
    expect(pixel(60, 230)[2]).toBeGreaterThan(200); // blue at the bottom
    expect((await sharp(o).metadata()).orientation).toBeUndefined(); // no EXIF left to rotate it twice
  });
});

describe("animation", () => {
  it("an animated GIF gives an animated WebP when asked, a still PNG of the first frame otherwise", async () => {
    const file = save(await animation(200, 100, 3, "gif"));
    expect(await thumbs.probe(file)).toEqual({ type: "image/gif", width: 200, height: 100, animated: true });
    const a = out();
    const anim = await thumbs.generate(file, { width: 96, height: 96, method: "crop" }, a, { animated: true });
    expect(anim).toMatchObject({ type: "image/webp", animated: true, width: 96, height: 96 });
    expect(await decoded(a)).toMatchObject({ format: "webp", pages: 3, width: 96, height: 96 });
    const scaled = await thumbs.generate(file, { width: 320, height: 240, method: "scale" }, out(), { animated: true });
    expect([scaled.width, scaled.height, scaled.animated]).toEqual([200, 100, true]);
    const s = out();
    const still = await thumbs.generate(file, { width: 96, height: 96, method: "crop" }, s, { animated: false });
    expect(still).toMatchObject({ type: "image/png", animated: false, width: 96, height: 96 });
    expect(await decoded(s)).toMatchObject({ format: "png", pages: 1 });
    const { data } = await sharp(s).raw().toBuffer({ resolveWithObject: true });
    expect([data[0], data[1], data[2]]).toEqual([0, 255, 128]); // the first frame's colour
  });

  it("an animated WebP stays animated WebP when asked, a still otherwise", async () => {
    const file = save(await animation(120, 120, 4, "webp"));
    expect(await thumbs.probe(file)).toEqual({ type: "image/webp", width: 120, height: 120, animated: true });
    const a = out();
    expect(await thumbs.generate(file, { width: 32, height: 32, method: "crop" }, a, { animated: true })).toMatchObject({ type: "image/webp", animated: true });
    expect(await decoded(a)).toMatchObject({ pages: 4, width: 32, height: 32 });
    const s = out();
    const still = await thumbs.generate(file, { width: 32, height: 32, method: "crop" }, s, { animated: false });
    expect(still.animated).toBe(false);
    expect((await decoded(s)).pages).toBe(1);
  });

  it("animated asked of a still image gives a still", async () => {
    const file = save(await solid(100, 100).jpeg().toBuffer());
    expect(await thumbs.generate(file, { width: 32, height: 32, method: "crop" }, out(), { animated: true })).toMatchObject({ type: "image/jpeg", animated: false });
  });
});

describe("refused input", () => {
  const expectRejected = async (file: string, kind: typeof ImageRejected = ImageRejected) => {
    const o = out();
    await expect(thumbs.generate(file, { width: 32, height: 32, method: "crop" }, o, { animated: false })).rejects.toBeInstanceOf(kind);
    await expect(thumbs.generate(file, { width: 320, height: 240, method: "scale" }, out(), { animated: true })).rejects.toBeInstanceOf(kind);
    expect(existsSync(o)).toBe(false); // nothing half-written left behind
  };

  it("decompression bombs are refused from their header, with bounded memory", async () => {
    const png = save(pngDeclaring(50_000, 50_000)); // 2.5 billion pixels declared in a few kilobytes
    const gif = save(gifDeclaring(4000, 4000, 3000)); // 3000 frames of 16M pixels in 42 KB; each frame alone is under the limit
    const rss0 = process.memoryUsage().rss;
    for (let i = 0; i < 5; i++) {
      for (const file of [png, gif]) {
        await expect(thumbs.probe(file)).rejects.toBeInstanceOf(ImageTooLarge);
        await expectRejected(file, ImageTooLarge);
      }
    }
    expect(process.memoryUsage().rss - rss0).toBeLessThan(64 * 1024 * 1024);
  });

  it("max_image_pixels counts every frame of an animation", async () => {
    const small = new SharpThumbnailer({ maxImagePixels: 5000 });
    const still = save(await solid(60, 40).png().toBuffer()); // 2,400 pixels
    expect(await small.probe(still)).toMatchObject({ width: 60, height: 40 });
    const anim = save(await animation(60, 40, 3, "gif")); // 7,200 pixels over three frames
    await expect(small.probe(anim)).rejects.toBeInstanceOf(ImageTooLarge);
    await expect(small.generate(anim, { width: 32, height: 32, method: "crop" }, out(), { animated: false })).rejects.toBeInstanceOf(ImageTooLarge);
    const big = save(await solid(100, 100).jpeg().toBuffer());
    await expect(small.probe(big)).rejects.toThrow(/max_image_pixels/);
  });

  it("malformed files are rejected, never a crash", async () => {
    const png = await solid(300, 300).png({ compressionLevel: 0 }).toBuffer();
    const jpeg = await solid(300, 300).jpeg().toBuffer();
    const truncatedPng = save(png.subarray(0, png.length / 2));
    const truncatedJpeg = save(jpeg.subarray(0, jpeg.length - 100));
    await expectRejected(truncatedPng);
    await expectRejected(truncatedJpeg);
    // A PNG signature followed by JPEG data; a file cut inside the header; random bytes; text; nothing.
    const wrongMagic = save(Buffer.concat([png.subarray(0, 8), jpeg.subarray(3)]));
    const headerOnly = save(png.subarray(0, 20));
    const random = save(Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 2654435761) >>> 24)));
    const text = save("this is not an image, whatever its Content-Type says\n");
    const empty = save(Buffer.alloc(0));
    for (const file of [wrongMagic, headerOnly, random, text, empty]) {
      await expect(thumbs.probe(file)).rejects.toBeInstanceOf(ImageRejected);
      await expectRejected(file);
    }
  });

  it("SVG, PDF and video are not thumbnailed: probe says null, and SVG never reaches a renderer", async () => {
    const svg = save('<?xml version="1.0"?>\n<!DOCTYPE svg [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100"><text>&x;</text></svg>');
    const bareSvg = save('\uFEFF  <svg width="10" height="10"/>');
    const pdf = save("%PDF-1.7\n%âãÏÓ\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n");
    const mp4 = save(Buffer.concat([Buffer.from([0, 0, 0, 0x18]), Buffer.from("ftypmp42", "latin1"), Buffer.alloc(64)]));
    const webm = save(Buffer.concat([Buffer.from([0x1a, 0x45, 0xdf, 0xa3]), Buffer.alloc(64)]));
    for (const file of [svg, bareSvg, pdf, mp4, webm]) {
      expect(await thumbs.probe(file)).toBeNull();
      await expectRejected(file);
    }
  });
});

describe("job bound", () => {
  it("runs at most maxConcurrent images at once; the rest wait their turn", async () => {
    const t = new SharpThumbnailer({ maxImagePixels: MAX_PIXELS, maxConcurrent: 2 });
    const file = save(await solid(1200, 900).jpeg().toBuffer());
    const jobs = Array.from({ length: 8 }, () => t.generate(file, { width: 640, height: 480, method: "scale" }, out(), { animated: false }));
    expect(t.load).toMatchObject({ running: 2, waiting: 6 });
    const done = await Promise.all(jobs);
    expect(done.every((d) => d.width === 640)).toBe(true);
    expect(t.load).toEqual({ running: 0, waiting: 0, peak: 2 });
  });

  it("a failing job frees its slot", async () => {
    const t = new SharpThumbnailer({ maxImagePixels: MAX_PIXELS, maxConcurrent: 1 });
    const bad = save("not an image");
    const good = save(await solid(64, 64).png().toBuffer());
    const results = await Promise.allSettled([t.probe(bad), t.probe(bad), t.probe(good)]);
    expect(results.map((r) => r.status)).toEqual(["rejected", "rejected", "fulfilled"]);
    expect(t.load).toEqual({ running: 0, waiting: 0, peak: 1 });
  });

  it("the factory gives the sharp thumbnailer", async () => {
    const t = createThumbnailer({ maxImagePixels: 1000 });
    expect(t).toBeInstanceOf(SharpThumbnailer);
    await expect(t.probe(save(await solid(40, 40).png().toBuffer()))).rejects.toBeInstanceOf(ImageTooLarge);
  });
});

describe("selectThumbnail", () => {
  type C = { width: number; height: number; method: ThumbnailMethod; type: string; animated?: boolean; id: string };
  const c = (id: string, width: number, height: number, method: ThumbnailMethod, animated = false): C => ({ id, width, height, method, type: "image/png", animated });
  // What the default sizes make of a 2000×1500 image.
  const defaults = [c("c32", 32, 32, "crop"), c("c96", 96, 96, "crop"), c("s320", 320, 240, "scale"), c("s640", 640, 480, "scale"), c("s800", 800, 600, "scale")];
  const pick = (cands: C[], width: number, height: number, method: ThumbnailMethod, animated = false) => selectThumbnail(cands, { width, height, method, animated })?.id;

  it("an exact match", () => {
    expect(pick(defaults, 32, 32, "crop")).toBe("c32");
    expect(pick(defaults, 96, 96, "crop")).toBe("c96");
    expect(pick(defaults, 640, 480, "scale")).toBe("s640");
  });

  it("the smallest one at least as large", () => {
    expect(pick(defaults, 50, 50, "crop")).toBe("c96");
    expect(pick(defaults, 10, 10, "crop")).toBe("c32");
    expect(pick(defaults, 400, 300, "scale")).toBe("s640");
    expect(pick(defaults, 100, 100, "scale")).toBe("s320");
    // A scaled thumbnail reaching the box in its limiting dimension is large enough (a wide original).
    expect(pick([c("w1", 320, 160, "scale"), c("w2", 640, 320, "scale")], 320, 240, "scale")).toBe("w1");
  });

  it("for crop, the closest aspect ratio among those large enough, then the smallest", () => {
    const cands = [c("square", 400, 400, "crop"), c("wide", 640, 360, "crop"), c("wider", 1280, 720, "crop")];
    expect(pick(cands, 320, 180, "crop")).toBe("wide");
    expect(pick(cands, 300, 300, "crop")).toBe("square");
    expect(pick(cands, 700, 400, "crop")).toBe("wider"); // the only one large enough in both dimensions
  });

  it("falls back to the largest when none is large enough", () => {
    expect(pick(defaults, 1000, 1000, "scale")).toBe("s800");
    expect(pick(defaults, 200, 200, "crop")).toBe("c96");
    const small = [c("a", 50, 30, "crop"), c("b", 32, 32, "crop")];
    expect(pick(small, 96, 96, "crop")).toBe("a");
  });

  it("only the requested method; nothing when there is none", () => {
    expect(pick([c("s", 800, 600, "scale")], 32, 32, "crop")).toBeUndefined();
    expect(pick([], 32, 32, "scale")).toBeUndefined();
  });

  it("animated ones when asked (a still when there is none), never when not asked", () => {
    const cands = [c("still", 96, 96, "crop"), c("anim", 96, 96, "crop", true), c("still32", 32, 32, "crop")];
    expect(pick(cands, 96, 96, "crop", true)).toBe("anim");
    expect(pick(cands, 96, 96, "crop", false)).toBe("still");
    expect(pick(cands, 32, 32, "crop", true)).toBe("anim"); // animation preferred over a closer size
    expect(pick([c("still", 96, 96, "crop")], 96, 96, "crop", true)).toBe("still");
    expect(pick([c("anim", 96, 96, "crop", true)], 96, 96, "crop", false)).toBeUndefined();
  });

  it("ties go to the earlier candidate", () => {
    expect(pick([c("first", 96, 96, "crop"), c("second", 96, 96, "crop")], 96, 96, "crop")).toBe("first");
  });
});

describe("parseThumbnailSizes", () => {
  it("Synapse's list of {width, height, method}; absent means the defaults", () => {
    expect(parseThumbnailSizes(undefined)).toEqual(DEFAULT_THUMBNAIL_SIZES);
    expect(parseThumbnailSizes(null)).toEqual(DEFAULT_THUMBNAIL_SIZES);
    expect(parseThumbnailSizes([])).toEqual([]);
    expect(
      parseThumbnailSizes([
        { width: 32, height: 32, method: "crop" },
        { width: 1024, height: 768, method: "scale" },
        { width: 32, height: 32, method: "crop" },
      ]),
    ).toEqual([
      { width: 32, height: 32, method: "crop" },
      { width: 1024, height: 768, method: "scale" },
    ]);
  });

  it("bad entries are refused with a message naming them", () => {
    expect(() => parseThumbnailSizes("32x32")).toThrow(/thumbnail_sizes must be a list/);
    expect(() => parseThumbnailSizes([{ width: 32, height: 32 }])).toThrow(/thumbnail_sizes\[0\]\.method/);
    expect(() => parseThumbnailSizes([{ width: 32, height: 32, method: "stretch" }])).toThrow(/"crop" or "scale"/);
    expect(() => parseThumbnailSizes([{ width: 32, height: 32, method: "crop" }, { width: "32", height: 32, method: "crop" }])).toThrow(/thumbnail_sizes\[1\]\.width/);
    expect(() => parseThumbnailSizes([{ width: 0, height: 32, method: "crop" }])).toThrow(/width must be a positive integer/);
    expect(() => parseThumbnailSizes([{ width: 32, height: 1.5, method: "scale" }])).toThrow(/height must be a positive integer/);
    expect(() => parseThumbnailSizes([[32, 32, "crop"]])).toThrow(/thumbnail_sizes\[0\] must be a mapping/);
    expect(() => parseThumbnailSizes([null])).toThrow(/thumbnail_sizes\[0\]/);
  });
});
