/**
 * The headers media is served with. Served bytes are whatever a user uploaded, so a browser must never run them in
 * our origin: a sandboxing CSP, no MIME sniffing, and `Content-Disposition: inline` only for types that cannot carry
 * script (Synapse's INLINE_CONTENT_TYPES; never HTML, SVG or JavaScript).
 */

/** Synapse's list of types a browser may show inline. */
const INLINE_CONTENT_TYPES: ReadonlySet<string> = new Set([
  "text/css",
  "text/plain",
  "text/csv",
  "application/json",
  "application/ld+json",
  "image/jpeg",
  "image/gif",
  "image/png",
  "image/apng",
  "image/webp",
  "image/avif",
  "video/mp4",
  "video/webm",
  "video/ogg",
  "video/quicktime",
  "audio/mp4",
  "audio/webm",
  "audio/aac",
  "audio/mpeg",
  "audio/ogg",
  "audio/wave",
  "audio/wav",
  "audio/x-wav",
  "audio/x-pn-wav",
  "audio/flac",
  "audio/x-flac",
]);

/** Types Synapse serves with `; charset=UTF-8` (besides text/*): text formats without a text/ type. */
const TEXT_CONTENT_TYPES: ReadonlySet<string> = new Set(["application/json", "application/ld+json", "application/rtf", "image/svg+xml"]);

/** Synapse's, on every download and thumbnail. */
export const MEDIA_SAFETY_HEADERS: Readonly<Record<string, string>> = {
  "content-security-policy": "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; style-src 'unsafe-inline'; media-src 'self'; object-src 'self';",
  "x-content-security-policy": "sandbox;",
  "referrer-policy": "no-referrer",
  "x-content-type-options": "nosniff",
  "cross-origin-resource-policy": "cross-origin",
  "x-robots-tag": "noindex, nofollow, noarchive, noimageindex",
};

/**
 * Synapse's cache policy: browsers may keep media a day; shared caches must revalidate (s-maxage=0), since
 * authenticated media must not be handed by a proxy to someone without the access token.
 */
export const MEDIA_CACHE_CONTROL = "public, max-age=86400, s-maxage=0, proxy-revalidate";

/** The media type without parameters, lower-cased: "Text/HTML; charset=x" → "text/html". */
export function baseType(contentType: string): string {
  return contentType.split(";", 1)[0]!.trim().toLowerCase();
}

/** The Content-Type to serve: text types get `; charset=utf-8` when they name no charset (as Synapse). */
export function servedContentType(contentType: string): string {
  const base = baseType(contentType);
  if ((base.startsWith("text/") || TEXT_CONTENT_TYPES.has(base)) && !/;\s*charset=/i.test(contentType)) return `${contentType}; charset=utf-8`;
  return contentType;
}

/**
 * `inline` or `attachment` (by type) with the file name per RFC 6266: `filename="…"` when it is plain printable
 * ASCII, else `filename*=utf-8''…` (RFC 5987 percent-encoding). Control characters go, path separators become `_`,
 * and quotes and backslashes are escaped in the quoted form.
 */
export function contentDisposition(contentType: string, fileName: string | null): string {
  const disposition = INLINE_CONTENT_TYPES.has(baseType(contentType)) ? "inline" : "attachment";
  const name = fileName === null ? "" : sanitizeFileName(fileName);
  if (name === "") return disposition;
  if (/^[\x20-\x7e]+$/.test(name)) return `${disposition}; filename="${name.replace(/["\\]/g, "\\$&")}"`;
  return `${disposition}; filename*=utf-8''${encodeRfc5987(name)}`;
}

function sanitizeFileName(name: string): string {
  return (
    name
      .slice(0, 255)
      // eslint-disable-next-line no-control-regex
      .replace(/[\u0000-\u001f\u007f-\u009f]/g, "")
      .replace(/[/\\]/g, "_")
      // A lone surrogate (or half a pair cut by the slice) has no UTF-8 form: encodeURIComponent would throw.
      .replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, "\uFFFD")
  );
}

/** RFC 5987 attr-chars stay; everything else is percent-encoded UTF-8. */
function encodeRfc5987(s: string): string {
  return encodeURIComponent(s).replace(/['()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}
