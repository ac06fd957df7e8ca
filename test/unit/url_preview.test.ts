/**
 * URL previews without a homeserver: url_preview_url_blacklist matching (Synapse's semantics), cache lifetimes, image
 * sizes, and the service's deadline and failure caching against a page server on 127.0.0.1 (no database: a fake store).
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MatrixError } from "../../src/errors.js";
import { IpRangeFilter } from "../../src/federation/ip_filter.js";
import { OutboundHttp } from "../../src/outbound/http_client.js";
import { cacheLifetime, imageDimensions, UrlPreviewService, urlMatches } from "../../src/services/media/url_preview.js";
import type { StoredUrlPreview, UrlPreviewStore } from "../../src/storage/url_previews.js";
import { CacheRegistry } from "../../src/util/cache.js";

describe("url_preview_url_blacklist entries", () => {
  const url = new URL("https://user:pw@Sub.Example.com:8443/a/b.html?x=1#frag");
  it("match when every component matches: globs match the whole value, ^regexes from the start", () => {
    expect(urlMatches(url, { netloc: "user:pw@sub.example.com:8443" })).toBe(true);
    expect(urlMatches(url, { netloc: "*.example.com" })).toBe(false); // netloc has the port (and user info)
    expect(urlMatches(url, { hostname: "*.example.com" })).toBe(true);
    expect(urlMatches(url, { hostname: "sub.example.co?" })).toBe(true);
    expect(urlMatches(url, { hostname: "[st]ub.example.com" })).toBe(true);
    expect(urlMatches(url, { hostname: "[!s]ub.example.com" })).toBe(false);
    expect(urlMatches(url, { scheme: "https", path: "^/a/" })).toBe(true);
    expect(urlMatches(url, { scheme: "http", path: "^/a/" })).toBe(false);
    expect(urlMatches(url, { path: "^/b" })).toBe(false);
    expect(urlMatches(url, { query: "x=*", fragment: "frag", port: "8443", username: "user", password: "pw" })).toBe(true);
  });
  it("a component the URL lacks never matches", () => {
    const plain = new URL("http://example.com/");
    expect(urlMatches(plain, { port: "*" })).toBe(false);
    expect(urlMatches(plain, { username: "*" })).toBe(false);
    expect(urlMatches(plain, { query: "" })).toBe(true); // present but empty, as urlsplit's ''
  });
  it("glob metacharacters of regexes are literal", () => {
    expect(urlMatches(new URL("http://a.b/x+y"), { path: "/x+y" })).toBe(true);
    expect(urlMatches(new URL("http://a.b/xxy"), { path: "/x+y" })).toBe(false);
  });
});

describe("cacheLifetime", () => {
  it("is Cache-Control max-age, at least an hour and at most a day", () => {
    expect(cacheLifetime(undefined)).toBe(3_600_000);
    expect(cacheLifetime("no-cache")).toBe(3_600_000);
    expect(cacheLifetime("public, max-age=60")).toBe(3_600_000);
    expect(cacheLifetime("public, max-age=7200")).toBe(7_200_000);
    expect(cacheLifetime("max-age=999999999")).toBe(86_400_000);
  });
});

describe("imageDimensions", () => {
  it("reads PNG, GIF and JPEG headers; null for anything else", () => {
    const png = Buffer.from("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==", "base64");
    expect(imageDimensions(png)).toEqual({ width: 1, height: 1 });
    const gif = Buffer.from([0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x20, 0x03, 0x58, 0x02, 0, 0]);
    expect(imageDimensions(gif)).toEqual({ width: 800, height: 600 });
    // SOI, an APP0 segment, then SOF0 with height 480 and width 640.
    const jpeg = Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x04, 0x00, 0x00, 0xff, 0xc0, 0x00, 0x11, 0x08, 0x01, 0xe0, 0x02, 0x80, 0x03, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    expect(imageDimensions(jpeg)).toEqual({ width: 640, height: 480 });
    expect(imageDimensions(Buffer.from("not an image"))).toBeNull();
    expect(imageDimensions(Buffer.from([0xff, 0xd8, 0xff]))).toBeNull();
  });
});

describe("UrlPreviewService deadlines and failures", () => {
  const hung: ServerResponse[] = [];
  const hits: string[] = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    hits.push(req.url ?? "");
    if (req.url === "/hang") hung.push(res); // never answered: the fetch deadline must end it
    else res.writeHead(500).end();
  });
  let port = 0;
  let service: UrlPreviewService;
  const rows: StoredUrlPreview[] = [];
  const store = {
    get: async () => rows[0],
    store: async (_url: string, downloadTs: number, expiresTs: number, og: string) => void rows.push({ downloadTs, expiresTs, og }),
    deleteExpired: async () => 0,
  } as unknown as UrlPreviewStore;

  beforeAll(async () => {
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    port = (server.address() as AddressInfo).port;
    const http = new OutboundHttp({ resolver: { lookupSrv: async () => [], lookupHost: async () => ["127.0.0.1"] }, ipFilter: new IpRangeFilter([]) });
    const config = { enabled: true, ipRangeBlacklist: [], ipRangeWhitelist: [], urlBlacklist: [], maxSpiderSize: 1024, acceptLanguage: ["en"] };
    service = new UrlPreviewService({ config, http, store, caches: new CacheRegistry(), log: pino({ level: "silent" }), timeoutMs: 300 });
  });
  afterAll(async () => {
    service.close();
    for (const r of hung) r.destroy();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it("a page that never answers ends at the deadline with 504", async () => {
    const err = await service.preview(`http://page.test:${port}/hang`, "@u:test").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MatrixError);
    expect(err).toMatchObject({ status: 504, errcode: "M_UNKNOWN" });
  });

  it("a failure is remembered: the next request for the URL does not fetch again, and nothing is stored", async () => {
    const url = `http://page.test:${port}/error`;
    await expect(service.preview(url, "@u:test")).rejects.toMatchObject({ status: 502, message: "Got error 500" });
    await expect(service.preview(url, "@u:test")).rejects.toMatchObject({ status: 502 });
    expect(hits.filter((h) => h === "/error")).toHaveLength(1);
    expect(rows).toHaveLength(0);
  });
});
