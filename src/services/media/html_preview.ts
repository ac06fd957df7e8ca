/**
 * An HTML page → its Open Graph data, for URL previews (spec: GET /_matrix/client/v1/media/preview_url). Pure: bytes
 * and the page's URL in, an object out; no I/O. Follows Synapse's preview_html: `og:*` (and `article:*`,
 * `profile:*`) meta tags as they are, Twitter card tags where Open Graph has no value, then fallbacks — the first
 * title/h1/h2/h3 for the title, microdata or the largest `<img>` (or the favicon) for the image, the meta description
 * or the page's visible text for the description. Parsed with htmlparser2's streaming callbacks, so no DOM is built.
 */
import type { Parser as ParserClass } from "htmlparser2";

/** htmlparser2 and its entity tables (~9 MB of RSS) are loaded at the first preview, not at start-up. */
let Parser: typeof ParserClass | undefined;
let loading: Promise<void> | undefined;

/** Loads the parser; parseHtmlPage needs it (URL previews await this first). */
export function loadHtmlParser(): Promise<void> {
  loading ??= import("htmlparser2").then((m) => {
    Parser = m.Parser;
  });
  return loading;
}

/** The preview's keys (`og:title`, `og:image`, `matrix:image:size`…), as the spec's response object. */
export type OpenGraph = Record<string, string | number | null>;

/** As Synapse: a page with more than this many tags of one prefix is someone playing games; that prefix is dropped. */
const MAX_TAGS_PER_PREFIX = 50;
/** Description summaries: whole paragraphs up to MIN, cut at a word before MAX (Synapse's 200 and 500). */
const SUMMARY_MIN = 200;
const SUMMARY_MAX = 500;
/** Text kept for the description fallback; more is never needed for a 500-character summary. */
const TEXT_BUDGET = 16 * 1024;

/** Not shown as page text (Synapse's TAGS_TO_REMOVE and ARIA_ROLES_TO_IGNORE, and a title outside <head>). */
const HIDDEN_TAGS = new Set(["head", "title", "header", "nav", "aside", "footer", "script", "noscript", "style", "svg", "iframe", "video", "canvas", "img", "picture", "template"]);
const HIDDEN_ROLES = new Set(["directory", "menu", "menubar", "toolbar"]);
const TITLE_TAGS = ["title", "h1", "h2", "h3"] as const;

const nonBlank = (v: string | undefined): v is string => v !== undefined && v.length > 0;

/**
 * The document's text from its bytes: a byte order mark, then the charset of the Content-Type header, then a
 * `<meta charset>` (or http-equiv) or `<?xml encoding?>` in the first 1024 bytes — the HTML standard's order — then
 * UTF-8, and windows-1252 when the bytes are not UTF-8 (as Synapse's last resort). Unknown labels are skipped.
 */
export function decodeHtml(body: Uint8Array, contentType?: string): string {
  const candidates: string[] = [];
  if (body[0] === 0xef && body[1] === 0xbb && body[2] === 0xbf) candidates.push("utf-8");
  else if (body[0] === 0xfe && body[1] === 0xff) candidates.push("utf-16be");
  else if (body[0] === 0xff && body[1] === 0xfe) candidates.push("utf-16le");
  const header = contentType ? /;\s*charset\s*=\s*"?([^";\s]+)"?/i.exec(contentType)?.[1] : undefined;
  if (header) candidates.push(header);
  const head = Buffer.from(body.subarray(0, 1024)).toString("latin1");
  const meta = /<\s*meta[^>]*charset\s*=\s*["']?([a-z0-9_.:-]+)/i.exec(head)?.[1];
  if (meta) candidates.push(meta);
  const xml = /^\s*<\?xml[^>]*encoding\s*=\s*["']([a-z0-9_.:-]+)["']/i.exec(head)?.[1];
  if (xml) candidates.push(xml);
  for (const label of candidates) {
    let decoder: InstanceType<typeof TextDecoder>;
    try {
      decoder = new TextDecoder(label);
    } catch {
      continue; // not an encoding the WHATWG Encoding standard knows
    }
    return decoder.encoding === "windows-1252" ? decodeWindows1252(body) : decoder.decode(body);
  }
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(body);
  } catch {
    return decodeWindows1252(body);
  }
}

/** windows-1252's 0x80–0x9F (0 where it has no character: those bytes stay C1 controls, as the standard says). */
const CP1252_HIGH = [
  0x20ac, 0, 0x201a, 0x0192, 0x201e, 0x2026, 0x2020, 0x2021, 0x02c6, 0x2030, 0x0160, 0x2039, 0x0152, 0, 0x017d, 0,
  0, 0x2018, 0x2019, 0x201c, 0x201d, 0x2022, 0x2013, 0x2014, 0x02dc, 0x2122, 0x0161, 0x203a, 0x0153, 0, 0x017e, 0x0178,
];

/**
 * windows-1252 (also what the labels latin1, iso-8859-1 and ascii mean on the web). Node 20's TextDecoder decodes
 * it as ISO-8859-1, turning curly quotes and euro signs into control characters, so it is decoded here.
 */
function decodeWindows1252(body: Uint8Array): string {
  let out = "";
  for (let i = 0; i < body.length; i += 8192) {
    const chunk = Array.from(body.subarray(i, i + 8192), (b) => (b >= 0x80 && b <= 0x9f ? CP1252_HIGH[b - 0x80] || b : b));
    out += String.fromCharCode(...chunk);
  }
  return out;
}

interface Img {
  src: string;
  width: number;
  height: number;
}

/** Synapse maps `twitter:x` to `og:x`, except the tags that name accounts or the card type. */
function twitterToOg(key: string): string | null {
  if (key === "twitter:card" || key === "twitter:creator" || key === "twitter:site") return null;
  return `og${key.slice("twitter".length)}`;
}

/** Resolves a URL found in the page against the page (or its `<base href>`); null when it does not parse. */
function resolveUrl(ref: string, base: string): string | null {
  try {
    return new URL(ref.trim(), base).href;
  } catch {
    return null;
  }
}

/**
 * Open Graph data of an HTML document. `pageUrl` is the URL the page was fetched from (after redirects): a relative
 * `og:image` is resolved against it (or the page's `<base href>`). `og:title` and `og:description` are always
 * present, null when the page has neither tag nor fallback (as Synapse answers).
 */
export function htmlToOpenGraph(html: string, pageUrl: string): OpenGraph {
  return parseHtmlPage(html, pageUrl).og;
}

/** The page's Open Graph data and its oEmbed link (`<link rel=alternate type=application/json+oembed>`), if any. */
export function parseHtmlPage(html: string, pageUrl: string): { og: OpenGraph; oembedUrl: string | null } {
  if (!Parser) throw new Error("parseHtmlPage: loadHtmlParser() has not completed");
  const byPrefix: Record<"og" | "article" | "profile" | "twitter", Map<string, string>> = {
    og: new Map(),
    article: new Map(),
    profile: new Map(),
    twitter: new Map(),
  };
  const overflowed = new Set<string>();
  let baseHref: string | undefined;
  let metaImage: string | undefined;
  let metaDescription: string | undefined;
  let favicon: string | undefined;
  let oembedHref: string | undefined;
  const images: Img[] = [];
  let title: string | undefined;

  // One entry per open element: whether text inside it is hidden, and its direct text when it may be the title.
  const stack: { name: string; hidden: boolean; title: string[] | null }[] = [];
  /** The open title/h1/h2/h3 element collecting its text (nested markup included), while no title is chosen. */
  let titleText: string[] | null = null;
  const paragraphs: string[] = [];
  let textKept = 0;

  const addTag = (prefix: keyof typeof byPrefix, key: string, content: string) => {
    if (overflowed.has(prefix)) return;
    const map = byPrefix[prefix];
    if (map.size >= MAX_TAGS_PER_PREFIX && !map.has(key)) {
      overflowed.add(prefix);
      map.clear();
      return;
    }
    map.set(key, content);
  };

  const parser = new Parser(
    {
      onopentag(name, attribs) {
        const parent = stack[stack.length - 1];
        const hidden = (parent?.hidden ?? false) || HIDDEN_TAGS.has(name) || HIDDEN_ROLES.has((attribs.role ?? "").trim().toLowerCase());
        const mayTitle = title === undefined && titleText === null && (TITLE_TAGS as readonly string[]).includes(name);
        if (mayTitle) titleText = [];
        stack.push({ name, hidden, title: mayTitle ? titleText : null });
        if (name === "meta") {
          const content = attribs.content;
          if (!nonBlank(content)) return;
          const property = attribs.property ?? "";
          const m = /^(og|article|profile):/.exec(property);
          if (m) addTag(m[1] as "og" | "article" | "profile", property, content);
          const metaName = attribs.name ?? "";
          if (metaName.startsWith("twitter:")) addTag("twitter", metaName, content);
          if (metaImage === undefined && /image/i.test(attribs.itemprop ?? "")) metaImage = content;
          if (metaDescription === undefined && /description/i.test(metaName)) metaDescription = content;
        } else if (name === "img") {
          if (nonBlank(attribs.src)) images.push({ src: attribs.src, width: Number.parseFloat(attribs.width ?? "") || 0, height: Number.parseFloat(attribs.height ?? "") || 0 });
        } else if (name === "link") {
          const rel = (attribs.rel ?? "").toLowerCase().split(/\s+/);
          if (favicon === undefined && rel.includes("icon") && nonBlank(attribs.href)) favicon = attribs.href;
          // oEmbed discovery; Flickr, among others, writes "alternative".
          const isOEmbed = (rel.includes("alternate") || rel.includes("alternative")) && (attribs.type ?? "").trim().toLowerCase() === "application/json+oembed";
          if (oembedHref === undefined && isOEmbed && nonBlank(attribs.href)) oembedHref = attribs.href;
        } else if (name === "base") {
          if (baseHref === undefined && nonBlank(attribs.href)) baseHref = attribs.href;
        }
      },
      ontext(text) {
        const top = stack[stack.length - 1];
        titleText?.push(text);
        if (top?.hidden || textKept >= TEXT_BUDGET) return;
        const para = text.replace(/\s+/g, "\n").trim();
        if (para.length === 0) return;
        paragraphs.push(para);
        textKept += para.length;
      },
      onclosetag(name) {
        // htmlparser2 closes implied elements itself, so the stack mirrors the document's tree.
        const top = stack.pop();
        if (!top?.title || top.name !== name) return;
        titleText = null;
        const t = top.title.join("").trim();
        if (t.length > 0) title = t;
      },
    },
    { decodeEntities: true, lowerCaseTags: true, lowerCaseAttributeNames: true },
  );
  parser.end(html);

  const og: OpenGraph = {};
  for (const prefix of ["og", "article", "profile"] as const) for (const [k, v] of byPrefix[prefix]) og[k] = v;
  for (const [key, value] of byPrefix.twitter) {
    const mapped = twitterToOg(key);
    if (mapped !== null && !(mapped in og)) og[mapped] = value;
  }

  if (!("og:title" in og)) og["og:title"] = title ?? null;

  if (!("og:image" in og)) {
    if (metaImage !== undefined) og["og:image"] = metaImage;
    else {
      // The largest image over 10×10 by its attributes; else the first image at all; else the favicon.
      const sized = images.filter((i) => i.width > 10 && i.height > 10).sort((a, b) => b.width * b.height - a.width * a.height);
      const pick = sized[0]?.src ?? images[0]?.src ?? favicon;
      if (pick !== undefined) og["og:image"] = pick;
    }
  }
  const base = (baseHref !== undefined ? resolveUrl(baseHref, pageUrl) : null) ?? pageUrl;
  const image = og["og:image"];
  if (typeof image === "string") {
    const resolved = image.startsWith("data:") ? image : resolveUrl(image, base);
    if (resolved === null) delete og["og:image"];
    else og["og:image"] = resolved;
  }

  if (!("og:description" in og)) og["og:description"] = metaDescription ?? summarize(paragraphs);
  else if (og["og:description"]) og["og:description"] = summarize([String(og["og:description"])]);
  const oembedUrl = oembedHref !== undefined ? resolveUrl(oembedHref, base) : null;
  return { og, oembedUrl };
}

export interface OEmbedPreview {
  og: OpenGraph;
  /** `author_name`: the title when there is no other. */
  authorName: string | null;
  /** `cache_age`, in milliseconds. */
  cacheAgeMs: number | null;
}

/**
 * An oEmbed response (https://oembed.com/, version 1.0) as Open Graph, as Synapse converts it: title, provider
 * (og:site_name), thumbnail (og:image); a photo's url is its image; a video's or rich embed's HTML gives the
 * description and, when there is no thumbnail, the image. `url` is the previewed page; `oembedUrl` the oEmbed
 * document's own URL (relative image URLs are resolved against it). Null when it is not a usable oEmbed document.
 */
export function oEmbedToOpenGraph(body: string, url: string, oembedUrl: string): OEmbedPreview | null {
  let doc: unknown;
  try {
    doc = JSON.parse(body);
  } catch {
    return null;
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) return null;
  const o = doc as Record<string, unknown>;
  if (o.version !== undefined && o.version !== "1.0" && o.version !== 1) return null;
  const str = (k: string) => (typeof o[k] === "string" && o[k] !== "" ? (o[k] as string) : undefined);
  const og: OpenGraph = { "og:url": url };
  const title = str("title");
  if (title) og["og:title"] = title;
  const provider = str("provider_name");
  if (provider) og["og:site_name"] = provider;
  const thumbnail = str("thumbnail_url");
  if (thumbnail) og["og:image"] = thumbnail;
  const type = o.type;
  if (type === "photo") {
    const photo = str("url");
    if (photo) og["og:image"] = photo;
  } else if (type === "video" || type === "rich") {
    if (type === "video") og["og:type"] = "video.other";
    const html = str("html");
    if (html) {
      const embedded = parseHtmlPage(html, oembedUrl).og;
      if (embedded["og:description"]) og["og:description"] = embedded["og:description"];
      if (!og["og:image"] && typeof embedded["og:image"] === "string") og["og:image"] = embedded["og:image"];
    }
  } else if (type === "link") og["og:type"] = "website";
  if (typeof og["og:image"] === "string" && !og["og:image"].startsWith("data:")) {
    const resolved = resolveUrl(og["og:image"], oembedUrl);
    if (resolved === null) delete og["og:image"];
    else og["og:image"] = resolved;
  }
  const age = typeof o.cache_age === "number" ? o.cache_age : typeof o.cache_age === "string" ? Number.parseInt(o.cache_age, 10) : NaN;
  return { og, authorName: str("author_name") ?? null, cacheAgeMs: Number.isFinite(age) && age >= 0 ? age * 1000 : null };
}

/**
 * Synapse's summarize_paragraphs: whole paragraphs until at least SUMMARY_MIN characters, then, if that is over
 * SUMMARY_MAX, cut at a word boundary and end with an ellipsis. Null for no text.
 */
export function summarize(paragraphs: Iterable<string>): string | null {
  let description = "";
  for (const p of paragraphs) {
    if (description.length >= SUMMARY_MIN) break;
    description += p.replace(/[\t \r\n]+/g, " ") + "\n\n";
  }
  description = description.trim().replace(/[\t ]+/g, " ").replace(/[\t \r\n]*[\r\n]+/g, "\n\n");
  if (description.length > SUMMARY_MAX) {
    let cut = "";
    for (const m of description.matchAll(/\s*\S+/g)) {
      const word = m[0];
      if (cut.length + word.length < SUMMARY_MAX) cut += word;
      else {
        if (cut.length < SUMMARY_MIN) cut += word;
        break;
      }
    }
    description = cut.slice(0, SUMMARY_MAX).trim() + "…";
  }
  return description.length > 0 ? description : null;
}
