/**
 * URL previews over HTTP against a real Myelin (GET /_matrix/client/v1/media/preview_url and the legacy
 * /_matrix/media/v3 path): the test serves its own pages on 127.0.0.1, and names resolve through the injected
 * Resolver, so nothing but 127.0.0.1 is ever contacted (blocked addresses are refused before any connection).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config/config.js";
import { ConfigError } from "../../src/config/reader.js";
import type { Resolver } from "../../src/federation/discovery.js";
import type { LocalMediaStore } from "../../src/services/media/url_preview.js";
import { Client, expectError, registerUser, type TestUser } from "../helpers/http.js";
import { baseYaml, startTestServer, type TestServer } from "../helpers/server.js";

/** A 1×1 PNG. */
const PNG = Buffer.from("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==", "base64");
const MAX_SPIDER = 64 * 1024;

/** The pages the test serves, and every request they got. */
class PageServer {
  readonly requests: IncomingMessage[] = [];
  private server!: Server;
  port = 0;

  async start(): Promise<void> {
    this.server = createServer((req, res) => this.handle(req, res));
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    this.port = (this.server.address() as AddressInfo).port;
  }

  hits(path: string): number {
    return this.requests.filter((r) => r.url === path).length;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    this.requests.push(req);
    const path = req.url ?? "/";
    const html = (body: string, headers: Record<string, string> = {}) => res.writeHead(200, { "content-type": "text/html; charset=utf-8", ...headers }).end(body);
    const redirect = (to: string) => res.writeHead(302, { location: to }).end();
    if (path === "/page" || path === "/counted" || path === "/cached") {
      html(
        `<!doctype html><html><head>
          <meta property="og:title" content="Preview page">
          <meta property="og:description" content="What this page is about.">
          <meta property="og:image" content="/img.png">
          <meta property="og:site_name" content="Test site">
          <title>Ignored</title></head><body><p>Hello</p></body></html>`,
        path === "/cached" ? { "cache-control": "public, max-age=7200" } : {},
      );
    } else if (path === "/img.png" || path === "/direct.png") {
      res.writeHead(200, { "content-type": "image/png", ...(path === "/direct.png" ? { "content-disposition": 'inline; filename="direct.png"' } : {}) }).end(PNG);
    } else if (path === "/fallback") {
      html(`<html><head><title>Only a title</title><meta name="description" content="Meta description"></head><body><img src="pics/big.png" width="200" height="100"></body></html>`);
    } else if (path === "/latin1") {
      res.writeHead(200, { "content-type": "text/html; charset=iso-8859-1" }).end(Buffer.from("<title>Caf\xe9 \x93quoted\x94</title>", "latin1"));
    } else if (path === "/redirect-ok") redirect("/hop2");
    else if (path === "/hop2") redirect(`http://allowed.test:${this.port}/fallback`);
    else if (path === "/redirect-blocked-v4") redirect(`http://127.0.0.2:${this.port}/page`);
    else if (path === "/redirect-blocked-v6") redirect(`http://[::1]:${this.port}/page`);
    else if (path === "/redirect-blocked-name") redirect(`http://private.test:${this.port}/page`);
    else if (path === "/redirect-ftp") redirect("ftp://allowed.test/file");
    else if (path === "/redirect-pattern") redirect(`http://allowed.test:${this.port}/secret/x`);
    else if (path === "/redirect-loop") redirect("/redirect-loop");
    else if (path === "/huge") {
      res.writeHead(200, { "content-type": "text/html" });
      const chunk = `<p>${"x".repeat(1020)}</p>`;
      for (let i = 0; i < 200; i++) res.write(chunk); // ~200 KB, over max_spider_size
      res.end();
    } else if (path === "/json") res.writeHead(200, { "content-type": "application/json" }).end('{"a":1}');
    else if (path === "/text") res.writeHead(200, { "content-type": "text/plain" }).end("plain");
    else if (path === "/oembed-page") html(`<html><head><link rel="alternate" type="application/json+oembed" href="/oembed.json"></head><body></body></html>`);
    else if (path === "/oembed.json") {
      res.writeHead(200, { "content-type": "application/json" }).end(
        JSON.stringify({ version: "1.0", type: "rich", title: "oEmbed title", provider_name: "Provider", thumbnail_url: "/img.png", cache_age: 10_800, html: "<p>Embedded text.</p>" }),
      );
    } else if (path === "/broken-image") html(`<meta property="og:title" content="No image"><meta property="og:image" content="/missing.png">`);
    else res.writeHead(404, { "content-type": "text/plain" }).end("not found");
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** allowed.test and evil.test are 127.0.0.1; private.test is a private address; mixed.test has both. */
const resolver: Resolver = {
  lookupSrv: async () => [],
  lookupHost: async (name) => {
    const hosts: Record<string, string[]> = {
      "allowed.test": ["127.0.0.1"],
      "evil.test": ["127.0.0.1"],
      "private.test": ["10.20.30.40"],
      "mixed.test": ["127.0.0.1", "192.168.1.10"],
    };
    const found = hosts[name];
    if (!found) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${name}`), { code: "ENOTFOUND" });
    return found;
  },
};

class FakeMedia implements LocalMediaStore {
  readonly calls: { userId: string; contentType: string; filename: string | null; source: Buffer }[] = [];
  async storeLocal(opts: { userId: string; contentType: string; filename: string | null; source: Buffer }) {
    this.calls.push(opts);
    const mediaId = `preview${this.calls.length}`;
    return { mediaId, contentUri: `mxc://test.local/${mediaId}`, size: opts.source.length };
  }
}

const DEFAULT_RANGES = ["127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16", "::1/128", "fe80::/10", "fc00::/7"];
const PREVIEW = "/_matrix/client/v1/media/preview_url";
const LEGACY = "/_matrix/media/v3/preview_url";

const pages = new PageServer();
let relaxed: TestServer;
let strict: TestServer;
let disabled: TestServer;
let c: Client;
let u: TestUser;
const media = new FakeMedia();
const page = (path: string, host = "allowed.test") => `http://${host}:${pages.port}${path}`;
const preview = (url: string, token = u.accessToken, base = PREVIEW) => c.get(`${base}?url=${encodeURIComponent(url)}`, { token });

beforeAll(async () => {
  await pages.start();
  const common = { url_preview_enabled: true, url_preview_ip_range_blacklist: DEFAULT_RANGES, max_spider_size: "64K" };
  relaxed = await startTestServer({
    server: { federation: { resolver } },
    config: {
      ...common,
      // 127.0.0.1 only: 127.0.0.2 and ::1 stay blocked.
      url_preview_ip_range_whitelist: ["127.0.0.1/32"],
      url_preview_url_blacklist: [{ netloc: "evil.test:*" }, { scheme: "http", path: "^/secret" }],
      url_preview_accept_language: ["en-GB", "fr;q=0.5"],
    },
  });
  relaxed.server.services.urlPreviews.media = media;
  strict = await startTestServer({ server: { federation: { resolver } }, config: common });
  disabled = await startTestServer({ server: { federation: { resolver } } });
  c = new Client(relaxed.baseUrl);
  u = await registerUser(c);
});
afterAll(async () => {
  await Promise.all([relaxed?.close(), strict?.close(), disabled?.close()]);
  await pages.close();
});

describe("URL previews", () => {
  it("previews a page: its og tags, and its image fetched and stored as local media", async () => {
    const res = await preview(page("/page"));
    expect(res.status, res.text).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^application\/json/);
    expect(res.body).toEqual({
      "og:title": "Preview page",
      "og:description": "What this page is about.",
      "og:site_name": "Test site",
      "og:image": expect.stringMatching(/^mxc:\/\/test\.local\/preview\d+$/),
      "og:image:type": "image/png",
      "matrix:image:size": PNG.length,
      "og:image:width": 1,
      "og:image:height": 1,
    });
    const call = media.calls.find((m) => `mxc://test.local/preview${media.calls.indexOf(m) + 1}` === res.body["og:image"]);
    expect(call).toMatchObject({ userId: u.userId, contentType: "image/png", filename: null });
    expect(call!.source.equals(PNG)).toBe(true);
    // As Synapse's crawler: a bot User-Agent and the configured languages.
    const req = pages.requests.find((r) => r.url === "/page")!;
    expect(req.headers["user-agent"]).toMatch(/^Myelin \(bot; \+https:\/\/.+\)$/);
    expect(req.headers["accept-language"]).toBe("en-GB, fr;q=0.5");
    expect(req.headers.host).toBe(`allowed.test:${pages.port}`);
    // The legacy path answers the same preview (from the cache: no second fetch).
    const legacy = await preview(page("/page"), u.accessToken, LEGACY);
    expect(legacy.status).toBe(200);
    expect(legacy.body).toEqual(res.body);
    expect((await preview(page("/page"), u.accessToken, "/_matrix/media/r0/preview_url")).status).toBe(200);
    expect(pages.hits("/page")).toBe(1);
  });

  it("falls back to <title>, the meta description and the largest <img> (a relative URL resolved against the page)", async () => {
    const before = pages.hits("/pics/big.png");
    const res = await preview(page("/fallback"));
    expect(res.status, res.text).toBe(200);
    expect(res.body["og:title"]).toBe("Only a title");
    expect(res.body["og:description"]).toBe("Meta description");
    // /pics/big.png is a 404 on the page server: the image was fetched and, failing, left out of the preview.
    expect(pages.hits("/pics/big.png")).toBe(before + 1);
    expect(res.body).not.toHaveProperty("og:image");
  });

  it("decodes the page in its charset", async () => {
    const res = await preview(page("/latin1"));
    expect(res.status, res.text).toBe(200);
    expect(res.body["og:title"]).toBe("Café “quoted”");
  });

  it("a URL that is an image previews as that image", async () => {
    const res = await preview(page("/direct.png"));
    expect(res.status, res.text).toBe(200);
    expect(res.body).toMatchObject({ "og:image": expect.stringMatching(/^mxc:\/\//), "og:image:type": "image/png", "matrix:image:size": PNG.length, "og:description": "direct.png" });
    expect(media.calls.at(-1)).toMatchObject({ contentType: "image/png", filename: "direct.png" });
  });

  it("follows redirects, checking every hop, and previews where they end", async () => {
    const res = await preview(page("/redirect-ok"));
    expect(res.status, res.text).toBe(200);
    expect(res.body["og:title"]).toBe("Only a title");
    expect(pages.hits("/hop2")).toBe(1);
  });

  it("refuses a redirect into a blocked range (IPv4, IPv6, or a name resolving there)", async () => {
    for (const path of ["/redirect-blocked-v4", "/redirect-blocked-v6", "/redirect-blocked-name"]) {
      const body = expectError(await preview(page(path)), 502, "M_UNKNOWN");
      expect(body.error).toMatch(/DNS resolution failure/);
    }
  });

  it("refuses a redirect to a scheme that is not http or https", async () => {
    expectError(await preview(page("/redirect-ftp")), 502, "M_UNKNOWN");
  });

  it("refuses a name with any address in a blocked range, even if another is allowed", async () => {
    expectError(await preview(page("/page", "mixed.test")), 502, "M_UNKNOWN");
  });

  it("stops at max_spider_size: an oversize page is 502 M_TOO_LARGE", async () => {
    const body = expectError(await preview(page("/huge")), 502, "M_TOO_LARGE");
    expect(body.error).toContain(String(MAX_SPIDER));
  });

  it("stops after 10 redirects", async () => {
    expectError(await preview(page("/redirect-loop")), 502, "M_UNKNOWN");
    expect(pages.hits("/redirect-loop")).toBe(11);
  });

  it("refuses URLs matching url_preview_url_blacklist (glob or ^regex), directly or through a redirect, without fetching them", async () => {
    const before = pages.requests.length;
    expectError(await preview(page("/page", "evil.test")), 403, "M_UNKNOWN");
    expectError(await preview(page("/secret/thing")), 403, "M_UNKNOWN");
    expect(pages.requests.length).toBe(before);
    expectError(await preview(page("/redirect-pattern")), 403, "M_UNKNOWN");
    expect(pages.hits("/secret/x")).toBe(0);
    // The regex entry is for http only: https is not blocked by it (and not reachable here, hence not 403).
    expect((await preview(`https://allowed.test:${pages.port}/secret/thing`)).status).not.toBe(403);
  });

  it("answers a page error, a non-previewable type and JSON as Synapse", async () => {
    expect(expectError(await preview(page("/nothing-here")), 502, "M_UNKNOWN").error).toBe("Got error 404");
    expectError(await preview(page("/text")), 502, "M_UNKNOWN");
    const json = await preview(page("/json"));
    expect(json.status).toBe(200);
    expect(json.body).toEqual({});
    const noImage = await preview(page("/broken-image"));
    expect(noImage.status).toBe(200);
    expect(noImage.body).toEqual({ "og:title": "No image", "og:description": null });
  });

  it("a page's oEmbed document (discovered in its HTML) fills what the page lacks, its thumbnail stored as the image", async () => {
    const res = await preview(page("/oembed-page"));
    expect(res.status, res.text).toBe(200);
    expect(res.body).toMatchObject({
      "og:url": page("/oembed-page"),
      "og:title": "oEmbed title",
      "og:site_name": "Provider",
      "og:description": "Embedded text.",
      "og:image": expect.stringMatching(/^mxc:\/\//),
      "matrix:image:size": PNG.length,
    });
    const stored = await relaxed.server.services.storage.urlPreviews.get(page("/oembed-page"), Date.now());
    expect(stored!.expiresTs - stored!.downloadTs).toBe(10_800 * 1000); // oEmbed's cache_age
  });

  it("bad requests: missing url, bad ts, not an http(s) URL, no token", async () => {
    expectError(await c.get(PREVIEW, { token: u.accessToken }), 400, "M_MISSING_PARAM");
    expectError(await c.get(LEGACY, { token: u.accessToken }), 400, "M_MISSING_PARAM");
    expectError(await c.get(`${PREVIEW}?url=${encodeURIComponent(page("/page"))}&ts=abc`, { token: u.accessToken }), 400, "M_INVALID_PARAM");
    expectError(await preview("ftp://allowed.test/x"), 400, "M_INVALID_PARAM");
    expectError(await preview("not a url"), 400, "M_INVALID_PARAM");
    expectError(await c.get(`${PREVIEW}?url=${encodeURIComponent(page("/page"))}`), 401, "M_MISSING_TOKEN");
  });

  it("concurrent requests for one URL make one fetch", async () => {
    const results = await Promise.all(Array.from({ length: 6 }, () => preview(page("/counted"))));
    for (const r of results) expect(r.status).toBe(200);
    expect(new Set(results.map((r) => r.text)).size).toBe(1);
    expect(pages.hits("/counted")).toBe(1);
  });

  it("keeps previews in the database for the page's max-age (at least an hour), across a restart", async () => {
    const first = await preview(page("/cached"));
    expect(first.status).toBe(200);
    const stored = await relaxed.server.services.storage.urlPreviews.get(page("/cached"), Date.now());
    expect(stored!.expiresTs - stored!.downloadTs).toBe(7200 * 1000);
    expect(JSON.parse(stored!.og)).toEqual(first.body);
    const uncached = await relaxed.server.services.storage.urlPreviews.get(page("/page"), Date.now());
    expect(uncached!.expiresTs - uncached!.downloadTs).toBe(3600 * 1000);

    relaxed = await relaxed.restart();
    relaxed.server.services.urlPreviews.media = media;
    c = new Client(relaxed.baseUrl);
    const again = await preview(page("/cached"));
    expect(again.status).toBe(200);
    expect(again.body).toEqual(first.body);
    expect(pages.hits("/cached")).toBe(1);
    // A `ts` before the first fetch gets the oldest stored preview, still unexpired.
    const old = await c.get(`${PREVIEW}?url=${encodeURIComponent(page("/cached"))}&ts=${stored!.downloadTs - 1000}`, { token: u.accessToken });
    expect(old.body).toEqual(first.body);
  });
});

describe("URL previews with the default IP ranges", () => {
  it("refuses the test's own pages, by name or by address", async () => {
    const sc = new Client(strict.baseUrl);
    const su = await registerUser(sc);
    for (const url of [page("/page"), `http://127.0.0.1:${pages.port}/page`]) {
      const body = expectError(await sc.get(`${PREVIEW}?url=${encodeURIComponent(url)}`, { token: su.accessToken }), 502, "M_UNKNOWN");
      expect(body.error).toMatch(/DNS resolution failure/);
    }
  });
});

describe("URL previews disabled", () => {
  it("answers 404 M_UNRECOGNIZED on both paths, as Synapse (which registers no route)", async () => {
    const dc = new Client(disabled.baseUrl);
    const du = await registerUser(dc);
    const url = encodeURIComponent(page("/page"));
    expectError(await dc.get(`${PREVIEW}?url=${url}`, { token: du.accessToken }), 404, "M_UNRECOGNIZED");
    expectError(await dc.get(`${LEGACY}?url=${url}`, { token: du.accessToken }), 404, "M_UNRECOGNIZED");
    expectError(await dc.get(`${PREVIEW}?url=${url}`), 404, "M_UNRECOGNIZED");
  });
});

describe("URL preview config", () => {
  const yaml = (extra: Record<string, unknown>) => ({ ...baseYaml("test.local", "/tmp/myelin-preview-config", { name: "sqlite3", args: { database: ":memory:" } }), ...extra });

  it("url_preview_enabled without url_preview_ip_range_blacklist is a config error", () => {
    expect(() => parseConfig(yaml({ url_preview_enabled: true }), "/tmp")).toThrow(ConfigError);
    expect(() => parseConfig(yaml({ url_preview_enabled: true }), "/tmp")).toThrow(/url_preview_ip_range_blacklist/);
    // Disabled, nothing is required.
    expect(parseConfig(yaml({}), "/tmp").config.urlPreview).toMatchObject({ enabled: false, maxSpiderSize: 10 * 1024 * 1024, acceptLanguage: ["en"] });
  });

  it("bad ranges and blacklist entries are refused with the key in the message", () => {
    const on = { url_preview_enabled: true, url_preview_ip_range_blacklist: ["10.0.0.0/8"] };
    expect(() => parseConfig(yaml({ ...on, url_preview_ip_range_blacklist: ["nope"] }), "/tmp")).toThrow(/url_preview_ip_range_blacklist/);
    expect(() => parseConfig(yaml({ ...on, url_preview_url_blacklist: [{ host: "x" }] }), "/tmp")).toThrow(/url_preview_url_blacklist\[0\]\.host/);
    expect(() => parseConfig(yaml({ ...on, url_preview_url_blacklist: [{ path: "^(" }] }), "/tmp")).toThrow(/regular expression/);
    expect(() => parseConfig(yaml({ ...on, url_preview_url_blacklist: ["x"] }), "/tmp")).toThrow(/url_preview_url_blacklist\[0\]/);
    const ok = parseConfig(yaml({ ...on, max_spider_size: "1M", url_preview_url_blacklist: [{ netloc: "*.example.com" }] }), "/tmp").config.urlPreview;
    expect(ok).toMatchObject({ enabled: true, maxSpiderSize: 1024 * 1024, urlBlacklist: [{ netloc: "*.example.com" }], ipRangeBlacklist: ["10.0.0.0/8"] });
  });
});
