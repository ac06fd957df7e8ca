/**
 * URL previews (spec: GET /_matrix/client/v1/media/preview_url, and the legacy /_matrix/media/v3 one): fetch the
 * page a user names, read its Open Graph data, store its image as local media, answer `og:*` keys with `og:image`
 * as that mxc URI. Synapse's behaviour and config (`url_preview_*`, `max_spider_size`):
 *
 * - Any user can make us fetch any URL, so every hop goes through OutboundHttp with its own IP filter
 *   (`url_preview_ip_range_blacklist` minus `url_preview_ip_range_whitelist`, 0.0.0.0 and :: always): the name is
 *   resolved, every address checked, and we connect to the checked address. Redirects are followed here, one
 *   request per hop, so each hop's scheme (http/https only), URL blacklist and addresses are checked again.
 * - Bounded: `max_spider_size` bytes per response, a deadline per fetch, at most MAX_REDIRECTS hops.
 * - Cached: in memory by URL (which also makes concurrent requests for one URL share one fetch, and remembers
 *   failures for a while so a broken site is not hammered), and in the database by URL and time so previews survive a
 *   restart and `ts` gets the preview as it was then.
 */
import type { Logger } from "pino";
import type { UrlBlacklistEntry, UrlPreviewConfig } from "../../config/config.js";
import { MatrixError } from "../../errors.js";
import { OutboundError, type OutboundHttp, type OutboundResponse } from "../../outbound/http_client.js";
import type { UrlPreviewStore } from "../../storage/url_previews.js";
import type { Cache, CacheRegistry } from "../../util/cache.js";
import { decodeHtml, loadHtmlParser, oEmbedToOpenGraph, parseHtmlPage, type OpenGraph } from "./html_preview.js";

/** What previews need of the media repository: storing a fetched image as local media. */
export interface LocalMediaStore {
  storeLocal(opts: { userId: string; contentType: string; filename: string | null; source: Buffer }): Promise<{ mediaId: string; contentUri: string; size: number }>;
}

/** Some sites only give Open Graph data to crawlers; no version, so we do not advertise what to attack. */
export const PREVIEW_USER_AGENT = "Myelin (bot; +https://github.com/myelin-matrix/myelin)";
const MAX_REDIRECTS = 10;
const ONE_HOUR = 3_600_000;
const ONE_DAY = 24 * ONE_HOUR;
/** Synapse drops keys and values longer than these. */
const OG_KEY_MAX = 50;
const OG_VALUE_MAX = 1000;
/** How often expired rows are deleted from the database (on the next preview after that). */
const EXPIRY_SWEEP_MS = 10 * 60_000;

type Memo = { json: string; expiresAt: number } | { error: MatrixError; expiresAt: number };

export interface UrlPreviewDeps {
  config: UrlPreviewConfig;
  /** Outbound HTTP whose IP filter is the url_preview ranges (not federation's). */
  http: OutboundHttp;
  store: UrlPreviewStore;
  caches: CacheRegistry;
  log: Logger;
  /** Deadline of one fetch (page or image), redirects included. */
  timeoutMs?: number;
  now?: () => number;
}

export class UrlPreviewService {
  /** Where a page's image is stored; without it, previews carry no image. server.ts sets the media repository. */
  media: LocalMediaStore | undefined;
  private readonly memo: Cache<string, Memo>;
  private readonly inflight = new Map<string, Promise<string>>();
  private readonly now: () => number;
  private readonly timeoutMs: number;
  private lastSweep = 0;

  constructor(private readonly deps: UrlPreviewDeps) {
    this.memo = deps.caches.create<string, Memo>("url_previews", (v, k) => 64 + k.length + ("json" in v ? v.json.length : 256));
    this.now = deps.now ?? Date.now;
    this.timeoutMs = deps.timeoutMs ?? 15_000;
  }

  get enabled(): boolean {
    return this.deps.config.enabled;
  }

  /** The preview of `url` as JSON text (the response body), as of `ts` (ms; now when absent). */
  async preview(url: string, userId: string, ts?: number): Promise<string> {
    if (!this.enabled) throw new MatrixError(404, "M_UNRECOGNIZED", "Unrecognized request");
    const parsed = parseHttpUrl(url);
    if (!parsed) throw new MatrixError(400, "M_INVALID_PARAM", "url must be an absolute http or https URL");
    this.checkUrlBlacklist(parsed);
    const now = this.now();
    const memo = this.memo.get(url);
    if (memo && memo.expiresAt > now) {
      if ("error" in memo) throw memo.error;
      return memo.json;
    }
    let pending = this.inflight.get(url);
    if (!pending) {
      pending = this.generate(url, userId, ts ?? now).finally(() => this.inflight.delete(url));
      this.inflight.set(url, pending);
    }
    return pending;
  }

  private async generate(url: string, userId: string, ts: number): Promise<string> {
    this.sweep();
    const stored = await this.deps.store.get(url, ts);
    if (stored && stored.expiresTs > ts) {
      this.memo.set(url, { json: stored.og, expiresAt: Math.min(stored.expiresTs, this.now() + ONE_HOUR) });
      return stored.og;
    }
    try {
      const downloadTs = this.now();
      const { og, expiresMs, mediaId } = await this.build(url, userId);
      const json = JSON.stringify(og);
      const expiresTs = downloadTs + expiresMs;
      await this.deps.store.store(url, downloadTs, expiresTs, json, mediaId);
      this.memo.set(url, { json, expiresAt: Math.min(expiresTs, downloadTs + ONE_HOUR) });
      return json;
    } catch (e) {
      const error = e instanceof MatrixError ? e : new MatrixError(502, "M_UNKNOWN", "Failed to generate a preview of the URL");
      if (!(e instanceof MatrixError)) this.deps.log.warn({ err: e, url }, "URL preview failed");
      // As Synapse, failures are remembered (in memory only) so a failing site is not fetched on every request.
      this.memo.set(url, { error, expiresAt: this.now() + ONE_HOUR });
      throw error;
    }
  }

  private async build(url: string, userId: string): Promise<{ og: OpenGraph; expiresMs: number; mediaId: string | null }> {
    const page = await this.fetch(url);
    const contentType = header(page.res, "content-type") ?? "application/octet-stream";
    const type = contentType.toLowerCase();
    let expiresMs = cacheLifetime(header(page.res, "cache-control"));
    let og: OpenGraph;
    let mediaId: string | null = null;
    if (type.startsWith("image/")) {
      // The URL is an image: the preview is the image itself.
      const filename = filenameOf(header(page.res, "content-disposition"));
      const stored = await this.storeImage(userId, contentType, filename, page.res.body);
      if (!stored) return { og: {}, expiresMs, mediaId };
      og = { "og:description": filename, ...stored.og };
      mediaId = stored.mediaId;
    } else if (type.startsWith("text/html") || type.startsWith("application/xhtml")) {
      if (page.res.body.length === 0) og = {};
      else {
        await loadHtmlParser();
        const parsed = parseHtmlPage(decodeHtml(page.res.body, contentType), page.url);
        og = parsed.og;
        const oembed = parsed.oembedUrl ? await this.fetchOEmbed(url, parsed.oembedUrl) : null;
        if (oembed) {
          // The page's own tags win over oEmbed's (sites often give full Open Graph data and only oEmbed stubs),
          // except where the page has nothing.
          og = { ...oembed.og, ...Object.fromEntries(Object.entries(og).filter(([, v]) => v !== null)) };
          if (!og["og:title"] && oembed.authorName) og["og:title"] = oembed.authorName;
          og["og:title"] ??= null;
          og["og:description"] ??= null;
          if (oembed.cacheAgeMs !== null) expiresMs = Math.min(ONE_DAY, Math.max(ONE_HOUR, oembed.cacheAgeMs));
        }
      }
      mediaId = await this.attachImage(userId, og);
    } else if (type.startsWith("application/json")) {
      og = {}; // oEmbed is not supported: JSON has no Open Graph data of its own
    } else {
      throw new MatrixError(502, "M_UNKNOWN", `Requested file's content type not allowed for this operation: ${contentType}`);
    }
    for (const [k, v] of Object.entries(og)) if (k.length > OG_KEY_MAX || String(v).length > OG_VALUE_MAX) delete og[k];
    return { og, expiresMs, mediaId };
  }

  /** The page's oEmbed document (discovered in its HTML) as Open Graph; null when it cannot be had (it is optional). */
  private async fetchOEmbed(url: string, oembedUrl: string): Promise<ReturnType<typeof oEmbedToOpenGraph>> {
    try {
      const u = parseHttpUrl(oembedUrl);
      if (!u) return null;
      this.checkUrlBlacklist(u);
      const { url: finalUrl, res } = await this.fetch(oembedUrl);
      if (!(header(res, "content-type") ?? "").toLowerCase().startsWith("application/json")) return null;
      await loadHtmlParser();
      return oEmbedToOpenGraph(res.body.toString("utf8"), url, finalUrl);
    } catch (e) {
      this.deps.log.info({ err: e, oembed: oembedUrl }, "URL preview: the page's oEmbed document could not be fetched");
      return null;
    }
  }

  /** Replaces the page's `og:image` URL with the mxc URI of the image, fetched and stored; drops it on failure. */
  private async attachImage(userId: string, og: OpenGraph): Promise<string | null> {
    const ref = og["og:image"];
    delete og["og:image"];
    if (typeof ref !== "string" || ref.length === 0) return null;
    try {
      let image: { type: string; body: Buffer };
      const data = parseDataUrl(ref);
      if (data) image = data;
      else {
        const u = parseHttpUrl(ref);
        if (!u) return null;
        this.checkUrlBlacklist(u);
        const { res } = await this.fetch(ref);
        image = { type: header(res, "content-type") ?? "application/octet-stream", body: res.body };
      }
      if (!image.type.toLowerCase().startsWith("image/")) return null;
      const stored = await this.storeImage(userId, image.type, null, image.body);
      if (!stored) return null;
      Object.assign(og, stored.og);
      return stored.mediaId;
    } catch (e) {
      // As Synapse: the image is optional; the preview stands without it.
      this.deps.log.info({ err: e, image: ref }, "URL preview: the page's image could not be fetched");
      return null;
    }
  }

  private async storeImage(userId: string, contentType: string, filename: string | null, body: Buffer): Promise<{ og: OpenGraph; mediaId: string } | null> {
    if (!this.media) return null;
    const stored = await this.media.storeLocal({ userId, contentType, filename, source: body });
    const og: OpenGraph = { "og:image": stored.contentUri, "og:image:type": contentType, "matrix:image:size": stored.size };
    const dims = imageDimensions(body);
    if (dims) {
      og["og:image:width"] = dims.width;
      og["og:image:height"] = dims.height;
    }
    return { og, mediaId: stored.mediaId };
  }

  /** GET with redirects followed by hand, every hop checked again. Errors are Synapse's. */
  private async fetch(url: string): Promise<{ url: string; res: OutboundResponse }> {
    const { config, http } = this.deps;
    const deadline = this.now() + this.timeoutMs;
    const headers = { "user-agent": PREVIEW_USER_AGENT, "accept-language": config.acceptLanguage.join(", ") };
    let current = url;
    for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
      const remaining = deadline - this.now();
      if (remaining <= 0) throw new MatrixError(504, "M_UNKNOWN", "Timed out fetching the URL");
      let res: OutboundResponse;
      try {
        res = await http.request(current, { method: "GET", headers, timeoutMs: remaining, maxResponseBytes: config.maxSpiderSize });
      } catch (e) {
        throw fetchError(e, config.maxSpiderSize);
      }
      const location = header(res, "location");
      if (res.status >= 300 && res.status < 400 && location !== undefined) {
        let next: URL | null;
        try {
          next = new URL(location, current);
        } catch {
          next = null;
        }
        if (!next || (next.protocol !== "http:" && next.protocol !== "https:")) {
          throw new MatrixError(502, "M_UNKNOWN", "The URL redirected to a location that is not an http or https URL");
        }
        this.checkUrlBlacklist(next);
        current = next.href;
        continue;
      }
      if (res.status < 200 || res.status > 299) throw new MatrixError(502, "M_UNKNOWN", `Got error ${res.status}`);
      return { url: current, res };
    }
    throw new MatrixError(502, "M_UNKNOWN", `Too many redirects (more than ${MAX_REDIRECTS})`);
  }

  close(): void {
    this.deps.http.close();
  }

  private checkUrlBlacklist(url: URL): void {
    if (this.deps.config.urlBlacklist.some((entry) => urlMatches(url, entry))) {
      throw new MatrixError(403, "M_UNKNOWN", "URL blocked by url pattern blocklist entry");
    }
  }

  private sweep(): void {
    const now = this.now();
    if (now - this.lastSweep < EXPIRY_SWEEP_MS) return;
    this.lastSweep = now;
    this.deps.store.deleteExpired(now).catch((err: unknown) => this.deps.log.warn({ err }, "deleting expired URL previews failed"));
  }
}

function fetchError(e: unknown, maxBytes: number): MatrixError {
  if (!(e instanceof OutboundError)) return new MatrixError(502, "M_UNKNOWN", "Failed to download content");
  switch (e.reason) {
    case "too_large":
      return new MatrixError(502, "M_TOO_LARGE", `Requested file is too large > ${maxBytes} bytes`);
    case "timeout":
      return new MatrixError(504, "M_UNKNOWN", "Timed out fetching the URL");
    case "blocked":
      // Synapse's answer when every address is blocked (its resolver then returns none).
      return new MatrixError(502, "M_UNKNOWN", "DNS resolution failure during URL preview generation");
    case "invalid_url":
      return new MatrixError(502, "M_UNKNOWN", "Failed to download content: not an http or https URL");
    case "unreachable":
      return /cannot resolve/.test(e.message)
        ? new MatrixError(502, "M_UNKNOWN", "DNS resolution failure during URL preview generation")
        : new MatrixError(502, "M_UNKNOWN", "Failed to download content");
  }
}

function parseHttpUrl(text: string): URL | null {
  try {
    const u = new URL(text);
    return u.protocol === "http:" || u.protocol === "https:" ? u : null;
  } catch {
    return null;
  }
}

/** `data:image/png;base64,…` (Synapse previews these for page images). */
function parseDataUrl(text: string): { type: string; body: Buffer } | null {
  const m = /^data:([^;,]+)((?:;[^;,=]+=[^;,]*)*)(;base64)?,(.*)$/is.exec(text);
  if (!m) return null;
  const payload = m[4]!;
  return { type: m[1]!, body: m[3] ? Buffer.from(payload, "base64") : Buffer.from(decodeURIComponent(payload), "utf8") };
}

function header(res: OutboundResponse, name: string): string | undefined {
  const v = res.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** How long a preview is kept: the page's Cache-Control max-age, at least an hour and at most a day. */
export function cacheLifetime(cacheControl: string | undefined): number {
  const m = cacheControl ? /(?:^|[,\s])max-age\s*=\s*"?(\d+)/i.exec(cacheControl) : null;
  const ms = m ? Number(m[1]) * 1000 : ONE_HOUR;
  return Math.min(ONE_DAY, Math.max(ONE_HOUR, ms));
}

/** The file name of a Content-Disposition header (`filename*=UTF-8''…` preferred), or null. */
function filenameOf(disposition: string | undefined): string | null {
  if (!disposition) return null;
  const star = /filename\*\s*=\s*(?:utf-8|UTF-8)''([^;]+)/.exec(disposition)?.[1];
  if (star) {
    try {
      return decodeURIComponent(star.trim());
    } catch {
      /* fall through to the plain form */
    }
  }
  const plain = /filename\s*=\s*(?:"([^"]*)"|([^;\s]+))/i.exec(disposition);
  const name = plain?.[1] ?? plain?.[2];
  return name ? name : null;
}

/**
 * One `url_preview_url_blacklist` entry against a URL: every component named must match, a pattern starting with ^
 * as a regular expression anchored at the start (Python's re.match), any other as a glob (fnmatch). Components are
 * Python urlsplit's; a component the URL lacks (no user name, no port) does not match.
 */
export function urlMatches(url: URL, entry: UrlBlacklistEntry): boolean {
  for (const [component, pattern] of Object.entries(entry)) {
    const value = urlComponent(url, component);
    if (value === null) return false;
    const ok = pattern.startsWith("^") ? new RegExp(pattern).test(value) : globToRegExp(pattern).test(value);
    if (!ok) return false;
  }
  return true;
}

function urlComponent(url: URL, component: string): string | null {
  const userinfo = url.username ? `${url.username}${url.password ? `:${url.password}` : ""}@` : "";
  switch (component) {
    case "scheme":
      return url.protocol.slice(0, -1);
    case "netloc":
      return userinfo + url.host;
    case "path":
      return url.pathname;
    case "query":
      return url.search.slice(1);
    case "fragment":
      return url.hash.slice(1);
    case "username":
      return url.username || null;
    case "password":
      return url.password || null;
    case "hostname":
      return url.hostname.replace(/^\[(.*)\]$/, "$1");
    case "port":
      return url.port || null;
    default:
      return null;
  }
}

/** fnmatch: `*`, `?`, `[seq]`, `[!seq]`, matching the whole value. */
function globToRegExp(glob: string): RegExp {
  let re = "";
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === "*") re += "[\\s\\S]*";
    else if (c === "?") re += "[\\s\\S]";
    else if (c === "[") {
      const end = glob.indexOf("]", i + 2);
      if (end === -1) re += "\\[";
      else {
        let set = glob.slice(i + 1, end);
        if (set.startsWith("!")) set = `^${set.slice(1)}`;
        re += `[${set.replace(/\\/g, "\\\\")}]`;
        i = end;
      }
    } else re += c.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
  }
  return new RegExp(`^${re}$`);
}

/** Width and height from a PNG, GIF or JPEG header (og:image:width/height), or null. */
export function imageDimensions(b: Buffer): { width: number; height: number } | null {
  if (b.length >= 24 && b.readUInt32BE(0) === 0x89504e47 && b.toString("latin1", 12, 16) === "IHDR") {
    return { width: b.readUInt32BE(16), height: b.readUInt32BE(20) };
  }
  if (b.length >= 10 && b.toString("latin1", 0, 4) === "GIF8") return { width: b.readUInt16LE(6), height: b.readUInt16LE(8) };
  if (b.length >= 4 && b[0] === 0xff && b[1] === 0xd8) {
    let i = 2;
    while (i + 9 < b.length) {
      if (b[i] !== 0xff) return null;
      const marker = b[i + 1]!;
      if (marker === 0xff) {
        i++;
        continue;
      }
      const len = b.readUInt16BE(i + 2);
      // Start-of-frame markers (baseline, progressive…), not DHT (C4), JPG (C8) or DAC (CC).
      if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
        return { width: b.readUInt16BE(i + 7), height: b.readUInt16BE(i + 5) };
      }
      i += 2 + len;
    }
  }
  return null;
}
