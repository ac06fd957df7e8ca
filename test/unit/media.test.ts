/**
 * The media repository's pure parts: Content-Disposition and Content-Type for served media, the choice among stored
 * thumbnails, media ids, and the media config keys (Synapse's names and defaults).
 */
import { describe, expect, it } from "vitest";
import { contentDisposition, servedContentType } from "../../src/api/http/media_headers.js";
import { parseConfig } from "../../src/config/config.js";
import { randomMediaId, selectThumbnail, type ThumbnailRequest } from "../../src/services/media/media_repository.js";
import { DEFAULT_THUMBNAIL_SIZES } from "../../src/services/media/thumbnailer.js";
import type { LocalThumbnailRow } from "../../src/storage/media.js";

describe("Content-Disposition", () => {
  it.each([
    ["image/png", null, "inline"],
    ["image/png", "", "inline"],
    ["application/octet-stream", null, "attachment"],
    ["text/plain; charset=utf-8", "a.txt", 'inline; filename="a.txt"'],
    ["text/html", "a.html", 'attachment; filename="a.html"'],
    ["image/svg+xml", "a.svg", 'attachment; filename="a.svg"'],
    ["application/xhtml+xml", "a.xhtml", 'attachment; filename="a.xhtml"'],
    ["text/javascript", "a.js", 'attachment; filename="a.js"'],
    ["video/MP4", "clip.mp4", 'inline; filename="clip.mp4"'],
    ["image/png", "naïve.png", "inline; filename*=utf-8''na%C3%AFve.png"],
    ["image/png", "it's (1)*.png", `inline; filename="it's (1)*.png"`],
    ["image/png", "ünï it's (1)*.png", "inline; filename*=utf-8''%C3%BCn%C3%AF%20it%27s%20%281%29%2A.png"],
    ["image/png", 'q"uo\\te.png', 'inline; filename="q\\"uo_te.png"'],
    ["image/png", "a/b\\c.png", 'inline; filename="a_b_c.png"'],
    ["image/png", "new\nline\u0000.png", 'inline; filename="newline.png"'],
    ["image/png", "\ud800lone.png", "inline; filename*=utf-8''%EF%BF%BDlone.png"],
    ["image/png", "\u0001\u0002", "inline"],
  ])("%s %j → %s", (type, name, expected) => {
    expect(contentDisposition(type, name)).toBe(expected);
  });
});

describe("served Content-Type", () => {
  it.each([
    ["text/plain", "text/plain; charset=utf-8"],
    ["text/csv", "text/csv; charset=utf-8"],
    ["application/json", "application/json; charset=utf-8"],
    ["text/plain; charset=iso-8859-1", "text/plain; charset=iso-8859-1"],
    ["image/png", "image/png"],
    ["application/octet-stream", "application/octet-stream"],
  ])("%s → %s", (type, expected) => {
    expect(servedContentType(type)).toBe(expected);
  });
});

function row(width: number, height: number, method: string, animated = 0, length = width * height): LocalThumbnailRow {
  return { media_id: "m", thumbnail_width: width, thumbnail_height: height, thumbnail_type: animated ? "image/gif" : "image/png", thumbnail_method: method, thumbnail_length: length, animated };
}
const req = (width: number, height: number, method: "crop" | "scale", animated = false): ThumbnailRequest => ({ width, height, method, animated });
const size = (t: LocalThumbnailRow | undefined) => t && `${t.thumbnail_width}x${t.thumbnail_height} ${t.thumbnail_method}${t.animated ? " animated" : ""}`;

describe("selectThumbnail", () => {
  const stored = [row(32, 32, "crop"), row(96, 96, "crop"), row(320, 240, "scale"), row(640, 480, "scale"), row(800, 600, "scale"), row(96, 96, "crop", 1)];
  it.each([
    [req(32, 32, "crop"), "32x32 crop"],
    [req(33, 20, "crop"), "96x96 crop"],
    [req(500, 500, "crop"), "96x96 crop"],
    [req(320, 240, "scale"), "320x240 scale"],
    [req(321, 100, "scale"), "320x240 scale"],
    [req(100, 400, "scale"), "320x240 scale"],
    [req(641, 481, "scale"), "800x600 scale"],
    [req(5000, 5000, "scale"), "800x600 scale"],
    [req(10, 10, "scale"), "320x240 scale"],
    [req(96, 96, "crop", true), "96x96 crop animated"],
    [req(50, 50, "crop", false), "96x96 crop"],
  ])("%j → %s", (request, expected) => {
    expect(size(selectThumbnail(stored, request))).toBe(expected);
  });

  it("a scaled thumbnail is large enough when either side is (it keeps the image's aspect)", () => {
    expect(size(selectThumbnail([row(320, 100, "scale"), row(640, 200, "scale")], req(300, 240, "scale")))).toBe("320x100 scale");
  });

  it("falls back to the other method when none has the requested one, and to nothing when there is nothing", () => {
    expect(size(selectThumbnail([row(320, 240, "scale")], req(32, 32, "crop")))).toBe("320x240 scale");
    expect(selectThumbnail([], req(32, 32, "crop"))).toBeUndefined();
  });

  it("of equal sizes, the smaller file", () => {
    expect(selectThumbnail([row(96, 96, "crop", 0, 900), row(96, 96, "crop", 0, 500)], req(96, 96, "crop"))!.thumbnail_length).toBe(500);
  });
});

describe("media ids", () => {
  it("are 24 letters and digits, and differ", () => {
    const ids = new Set(Array.from({ length: 200 }, () => randomMediaId()));
    expect(ids.size).toBe(200);
    for (const id of ids) expect(id).toMatch(/^[A-Za-z0-9]{24}$/);
  });
});

describe("media config", () => {
  const parse = (extra: Record<string, unknown> = {}) => parseConfig({ server_name: "example.org", listeners: [{ port: 8008 }], ...extra }, "/etc/myelin");

  it("has Synapse's defaults", () => {
    const { config, warnings } = parse();
    expect(warnings).toEqual([]);
    expect(config.media).toEqual({
      enableMediaRepo: true,
      maxImagePixels: 32 * 1024 * 1024,
      dynamicThumbnails: false,
      thumbnailSizes: DEFAULT_THUMBNAIL_SIZES,
      enableAuthenticatedMedia: true,
      uploadLimits: [],
      maxPendingMediaUploads: 5,
      unusedExpirationTimeMs: 24 * 3600_000,
    });
    expect(config.rateLimits.mediaCreate).toEqual({ perSecond: 10, burstCount: 50 });
  });

  it("reads every key", () => {
    const { config, warnings } = parse({
      enable_media_repo: false,
      max_image_pixels: "10M",
      dynamic_thumbnails: true,
      thumbnail_sizes: [{ width: 64, height: 64, method: "crop" }, { width: 1024, height: 768 }],
      enable_authenticated_media: false,
      media_upload_limits: [{ time_period: "1h", max_size: "100M" }, { time_period: "7d", max_size: "1G" }],
      max_pending_media_uploads: 10,
      unused_expiration_time: "1h",
      media_retention: { local_media_lifetime: "90d", remote_media_lifetime: "14d" },
      rc_media_create: { per_second: 1, burst_count: 5 },
    });
    expect(warnings).toEqual([]);
    expect(config.media).toEqual({
      enableMediaRepo: false,
      maxImagePixels: 10 * 1024 * 1024,
      dynamicThumbnails: true,
      thumbnailSizes: [{ width: 64, height: 64, method: "crop" }, { width: 1024, height: 768, method: "scale" }],
      enableAuthenticatedMedia: false,
      // Longest period first.
      uploadLimits: [{ timePeriodMs: 7 * 86_400_000, maxBytes: 1024 ** 3 }, { timePeriodMs: 3_600_000, maxBytes: 100 * 1024 * 1024 }],
      maxPendingMediaUploads: 10,
      unusedExpirationTimeMs: 3_600_000,
      localMediaLifetimeMs: 90 * 86_400_000,
      remoteMediaLifetimeMs: 14 * 86_400_000,
    });
    expect(config.rateLimits.mediaCreate).toEqual({ perSecond: 1, burstCount: 5 });
  });

  it.each([
    [{ thumbnail_sizes: [{ width: 10, height: 10, method: "stretch" }] }, "thumbnail_sizes[0].method"],
    [{ thumbnail_sizes: [{ width: 10 }] }, "thumbnail_sizes[0]"],
    [{ media_upload_limits: [{ time_period: "1h" }] }, "media_upload_limits[0]"],
    [{ media_upload_limits: [{ time_period: "soon", max_size: "1M" }] }, "media_upload_limits[0].time_period"],
    [{ max_image_pixels: "lots" }, "max_image_pixels"],
  ])("refuses %j naming %s", (doc, key) => {
    expect(() => parse(doc)).toThrow(key);
  });
});
