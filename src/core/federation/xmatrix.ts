/**
 * The `X-Matrix` Authorization scheme (server-server API, "Request Authentication"): parsing and formatting the
 * header, and the JSON object whose signature it carries. Pure: no I/O, no key lookups.
 *
 * The header follows RFC 9110 §11.4: `X-Matrix` (case-insensitive), one or more spaces, then a comma-separated list
 * of `name=value` parameters. Names are case-insensitive; values are tokens or quoted strings (with backslash
 * escapes); "zero or more spaces and tabs around each comma are allowed"; "the recipient should allow colons to be
 * included in values without requiring the value to be enclosed in quotes"; "unknown parameters are ignored".
 */
import { signJson } from "../crypto/signing.js";
import type { SigningKey } from "../crypto/ed25519.js";
import { isValidServerName } from "../ids/ids.js";
import type { JsonObject, JsonValue } from "../json/types.js";

/** The authorisation parameters of one X-Matrix header. */
export interface XMatrixAuth {
  /** "the server name of the sending server". */
  origin: string;
  /** "the server name of the receiving server"; optional "for compatibility with older servers". */
  destination?: string;
  /** "the ID, including the algorithm name, of the sending server's key used to sign the request". */
  key: string;
  /** The signature (the spec's prose calls it `signature`; every implementation sends `sig`). */
  sig: string;
}

export class XMatrixParseError extends Error {}

const SCHEME = "x-matrix";
/** RFC 9110 `tchar`. */
const TCHAR = /[!#$%&'*+\-.^_`|~0-9A-Za-z]/;
const isWs = (c: string | undefined): boolean => c === " " || c === "\t";

/**
 * Parses an `Authorization` header value. Throws XMatrixParseError when it is not X-Matrix, is malformed, repeats
 * a parameter (RFC 9110: "each parameter name MUST only occur once"; two parsers picking different copies would let
 * a signature cover one origin while the request claims another), lacks `origin`, `key` or `sig`, or names an
 * origin or destination that is not a server name.
 */
export function parseXMatrix(header: string): XMatrixAuth {
  const schemeEnd = header.search(/[ \t]/);
  if (schemeEnd < 0 || header.slice(0, schemeEnd).toLowerCase() !== SCHEME) throw new XMatrixParseError("not an X-Matrix Authorization header");
  const params = new Map<string, string>();
  let i = schemeEnd;
  const n = header.length;
  const skipWs = () => {
    while (isWs(header[i])) i++;
  };
  skipWs();
  while (i < n) {
    // Empty list elements (",,") are allowed by RFC 9110's list syntax and ignored.
    if (header[i] === ",") {
      i++;
      skipWs();
      continue;
    }
    const nameStart = i;
    while (i < n && TCHAR.test(header[i]!)) i++;
    if (i === nameStart) throw new XMatrixParseError(`unexpected character at ${i}`);
    const name = header.slice(nameStart, i).toLowerCase();
    skipWs(); // RFC 9110 allows BWS around "=".
    if (header[i] !== "=") throw new XMatrixParseError(`parameter "${name}" has no value`);
    i++;
    skipWs();
    let value = "";
    if (header[i] === '"') {
      i++;
      let closed = false;
      while (i < n) {
        const c = header[i]!;
        if (c === '"') {
          closed = true;
          i++;
          break;
        }
        if (c === "\\") {
          const next = header[i + 1];
          if (next === undefined || isCtl(next)) throw new XMatrixParseError("bad escape in a quoted value");
          value += next;
          i += 2;
          continue;
        }
        if (isCtl(c)) throw new XMatrixParseError("control character in a quoted value");
        value += c;
        i++;
      }
      if (!closed) throw new XMatrixParseError("unterminated quoted value");
    } else {
      // A token; colons, and the `/`, `+` and `=` of base64, are accepted unquoted for older senders.
      const start = i;
      while (i < n && (TCHAR.test(header[i]!) || header[i] === ":" || header[i] === "/" || header[i] === "=")) i++;
      value = header.slice(start, i);
      if (value === "") throw new XMatrixParseError(`parameter "${name}" has an empty value`);
    }
    if (params.has(name)) throw new XMatrixParseError(`parameter "${name}" appears twice`);
    params.set(name, value);
    skipWs();
    if (i < n && header[i] !== ",") throw new XMatrixParseError(`unexpected character after parameter "${name}"`);
  }

  const origin = params.get("origin");
  const key = params.get("key");
  const sig = params.get("sig");
  if (origin === undefined || key === undefined || sig === undefined) throw new XMatrixParseError("X-Matrix needs origin, key and sig");
  if (!isValidServerName(origin)) throw new XMatrixParseError("origin is not a server name");
  const destination = params.get("destination");
  if (destination !== undefined && !isValidServerName(destination)) throw new XMatrixParseError("destination is not a server name");
  return destination === undefined ? { origin, key, sig } : { origin, destination, key, sig };
}

function isCtl(c: string): boolean {
  const code = c.charCodeAt(0);
  return (code < 0x20 && code !== 0x09) || code === 0x7f;
}

/** A quoted-string: `"` and `\` escaped (the spec asks senders to avoid backslashes; server names never need them). */
function quote(value: string): string {
  return `"${value.replace(/["\\]/g, "\\$&")}"`;
}

/**
 * Formats the header the way the spec asks senders to for compatibility with older servers: "only include one
 * space after X-Matrix, only use lower-case names, … avoid including whitespace around the commas".
 */
export function formatXMatrix(auth: XMatrixAuth): string {
  const parts = [`origin=${quote(auth.origin)}`];
  if (auth.destination !== undefined) parts.push(`destination=${quote(auth.destination)}`);
  parts.push(`key=${quote(auth.key)}`, `sig=${quote(auth.sig)}`);
  return `X-Matrix ${parts.join(",")}`;
}

export interface RequestToSign {
  method: string;
  /** The request target: the full path from `/_matrix/…`, with `?` and the query string if present. */
  uri: string;
  origin: string;
  destination: string;
  /** The JSON-parsed request body, when there is one. */
  content?: JsonValue;
}

/** The object whose signature the header carries (step 1 of "Request Authentication"). */
export function requestSigningJson(req: RequestToSign): JsonObject {
  const obj: JsonObject = { method: req.method, uri: req.uri, origin: req.origin, destination: req.destination };
  if (req.content !== undefined) obj.content = req.content;
  return obj;
}

/** Signs a request and returns its `Authorization` header value. */
export function signRequest(req: RequestToSign, key: SigningKey): string {
  const signed = signJson(requestSigningJson(req), req.origin, key);
  const sig = (signed.signatures as Record<string, Record<string, string>>)[req.origin]![key.keyId]!;
  return formatXMatrix({ origin: req.origin, destination: req.destination, key: key.keyId, sig });
}
