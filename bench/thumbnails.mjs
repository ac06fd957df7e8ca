// Thumbnail benchmark (issue 14). Usage: npm run bench:thumbnails -- [--rounds 20] [--concurrent N] [--inflight 8]
// Runs the thumbnailer from dist/ (after `npm run build`) in this process, no server: every round makes all the
// default thumbnail sizes of a source image, `--inflight` sources submitted at once, and the thumbnailer's own job
// bound (`--concurrent`, default: cores, at most 2) decides how many decode at a time. Sources are made here with
// sharp: photo-like content (blurred noise), so the encoders see real entropy, not flat colour.
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import sharp from "sharp";

const { SharpThumbnailer } = await import("../dist/services/media/sharp_thumbnailer.js");
const { DEFAULT_THUMBNAIL_SIZES } = await import("../dist/services/media/thumbnailer.js");

const args = process.argv.slice(2);
const arg = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : def;
};
const ROUNDS = Number(arg("rounds", "20"));
const INFLIGHT = Number(arg("inflight", "8"));
const concurrent = arg("concurrent", undefined);

const dir = mkdtempSync(join(tmpdir(), "myelin-bench-thumbs-"));
const photo = (width, height, channels = 3) =>
  sharp({ create: { width, height, channels, noise: { type: "gaussian", mean: 128, sigma: 60 } } }).blur(1.5);

async function source(name, make) {
  const file = join(dir, name);
  writeFileSync(file, await make());
  return file;
}

async function animatedGif(width, height, frames) {
  const pngs = await Promise.all(Array.from({ length: frames }, () => photo(width, height).png().toBuffer()));
  return sharp(pngs, { join: { animated: true } }).gif({ delay: pngs.map(() => 50), loop: 0 }).toBuffer();
}

const sources = [
  { label: "JPEG 2000×1500", file: await source("photo.jpg", () => photo(2000, 1500).jpeg({ quality: 85 }).toBuffer()), animated: false },
  { label: "PNG 640×480 (alpha)", file: await source("shot.png", () => photo(640, 480, 4).png().toBuffer()), animated: false },
  { label: "GIF 320×240 × 20 frames, animated out", file: await source("anim.gif", () => animatedGif(320, 240, 20)), animated: true },
];

const thumbnailer = new SharpThumbnailer({ maxImagePixels: 32_000_000, ...(concurrent ? { maxConcurrent: Number(concurrent) } : {}) });
const rows = [];
let peakRss = 0;
const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 10);

for (const src of sources) {
  const oneSource = async (round) => {
    let bytes = 0;
    for (const [i, size] of DEFAULT_THUMBNAIL_SIZES.entries()) {
      const t = await thumbnailer.generate(src.file, size, join(dir, `out-${round}-${i}`), { animated: src.animated });
      bytes += t.length;
    }
    return bytes;
  };
  await oneSource(-1); // warm up: loads libvips' codecs
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let next = 0;
  let bytes = 0;
  await Promise.all(
    Array.from({ length: Math.min(INFLIGHT, ROUNDS) }, async () => {
      while (next < ROUNDS) bytes += await oneSource(next++);
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const thumbs = ROUNDS * DEFAULT_THUMBNAIL_SIZES.length;
  rows.push({
    source: `${src.label} (${(statSync(src.file).size / 1024).toFixed(0)} KB)`,
    perSecond: thumbs / seconds,
    sourcesPerSecond: ROUNDS / seconds,
    cpuMsPerThumb: (cpu.user + cpu.system) / 1000 / thumbs,
    avgKb: bytes / thumbs / 1024,
  });
}
clearInterval(sampler);
rmSync(dir, { recursive: true, force: true });

console.log(`\n${ROUNDS} rounds × ${DEFAULT_THUMBNAIL_SIZES.length} default sizes, ${INFLIGHT} sources in flight, ${thumbnailer.load.peak} decoding at once\n`);
console.log("| Source | thumbnails/s | sources/s (all 5 sizes) | CPU ms/thumbnail | avg thumbnail |");
console.log("|---|---|---|---|---|");
for (const r of rows) {
  console.log(`| ${r.source} | ${r.perSecond.toFixed(1)} | ${r.sourcesPerSecond.toFixed(1)} | ${r.cpuMsPerThumb.toFixed(1)} | ${r.avgKb.toFixed(1)} KB |`);
}
console.log(`\nPeak RSS of this process: ${(peakRss / 1024 / 1024).toFixed(0)} MB`);
