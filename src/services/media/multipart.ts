/**
 * `multipart/mixed` (RFC 2046 §5.1) as the federation media endpoints use it (server-server API, "Content
 * Repository"): exactly two parts, JSON metadata then the media (or a `Location` header). Pure: the writer makes the
 * framing around a body it never sees, the parser is a push parser fed chunks as they arrive, so neither buffers
 * the media.
 */
import { randomBytes } from "node:crypto";

/** A part's headers, names lower-cased. */
export type PartHeaders = Map<string, string>;

/** A malformed multipart body. */
export class MultipartError extends Error {}

/** A fresh boundary: 32 hex digits (Synapse uses a uuid4 hex), which no RFC 2046 rule forbids and no body guesses. */
export function newBoundary(): string {
  return randomBytes(16).toString("hex");
}

/** The response's Content-Type for `boundary`. */
export function multipartContentType(boundary: string): string {
  return `multipart/mixed; boundary=${boundary}`;
}

/**
 * The framing of a two-part answer: `head` (the JSON part, then the second part's headers) and `tail` (the close
 * delimiter); the second part's body goes between them.
 */
export function multipartFrame(boundary: string, metadata: Record<string, unknown>, headers: Record<string, string>): { head: Buffer; tail: Buffer } {
  for (const [k, v] of Object.entries(headers)) {
    if (!/^[A-Za-z0-9-]+$/.test(k) || /[\r\n]/.test(v)) throw new Error(`bad part header ${JSON.stringify(k)}`);
  }
  const lines = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`);
  const head = `--${boundary}\r\nContent-Type: application/json\r\n\r\n${JSON.stringify(metadata)}\r\n--${boundary}\r\n${lines.join("")}\r\n`;
  return { head: Buffer.from(head, "utf8"), tail: Buffer.from(`\r\n--${boundary}--\r\n`, "utf8") };
}

/** The `boundary` parameter of a `multipart/mixed` Content-Type; undefined when it is not one. */
export function boundaryOf(contentType: string | undefined): string | undefined {
  if (contentType === undefined) return undefined;
  const [type, ...params] = contentType.split(";");
  if (type!.trim().toLowerCase() !== "multipart/mixed") return undefined;
  for (const p of params) {
    const eq = p.indexOf("=");
    if (eq < 0 || p.slice(0, eq).trim().toLowerCase() !== "boundary") continue;
    let v = p.slice(eq + 1).trim();
    if (v.startsWith('"') && v.endsWith('"') && v.length >= 2) v = v.slice(1, -1);
    // RFC 2046: 1 to 70 characters.
    return v.length >= 1 && v.length <= 70 ? v : undefined;
  }
  return undefined;
}

export type MultipartEvent = { type: "part"; headers: PartHeaders } | { type: "data"; data: Buffer } | { type: "end" };

/** Headers of a part larger than this are refused (ours are a few hundred bytes). */
const MAX_HEADER_BYTES = 16 * 1024;

type State = "preamble" | "afterDelimiter" | "headers" | "body" | "done";

/**
 * A push parser: `write` each chunk and act on the events it returns (a part's headers, pieces of its body, the
 * end of the whole body); `end` when the input ends. Throws MultipartError on malformed input. Holds back at most a
 * delimiter's length of body (the delimiter may be split between chunks), and at most MAX_HEADER_BYTES of headers.
 */
export class MultipartParser {
  private readonly delimiter: Buffer;
  private buf: Buffer = Buffer.alloc(0);
  private state: State = "preamble";
  private parts = 0;

  constructor(boundary: string) {
    // The first delimiter may open the body without the CRLF every later one has: parse as if a CRLF came first.
    this.delimiter = Buffer.from(`\r\n--${boundary}`, "latin1");
    this.buf = Buffer.from("\r\n", "latin1");
  }

  /** How many parts have started. */
  get partCount(): number {
    return this.parts;
  }

  write(chunk: Buffer): MultipartEvent[] {
    const events: MultipartEvent[] = [];
    if (this.state === "done") return events; // the epilogue is ignored
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    for (;;) {
      if (this.state === "preamble") {
        const at = this.buf.indexOf(this.delimiter);
        if (at < 0) {
          this.keepTail();
          if (this.buf.length > MAX_HEADER_BYTES) throw new MultipartError("no boundary found");
          return events;
        }
        this.buf = this.buf.subarray(at + this.delimiter.length);
        this.state = "afterDelimiter";
      } else if (this.state === "afterDelimiter") {
        // "--" closes the body; otherwise optional linear white space, then CRLF.
        if (this.buf.length < 2) return events;
        if (this.buf[0] === 0x2d && this.buf[1] === 0x2d) {
          this.state = "done";
          this.buf = Buffer.alloc(0);
          events.push({ type: "end" });
          return events;
        }
        const crlf = this.buf.indexOf("\r\n");
        if (crlf < 0) {
          if (this.buf.length > 256) throw new MultipartError("malformed boundary line");
          return events;
        }
        if (!/^[ \t]*$/.test(this.buf.subarray(0, crlf).toString("latin1"))) throw new MultipartError("malformed boundary line");
        this.buf = this.buf.subarray(crlf + 2);
        this.state = "headers";
      } else if (this.state === "headers") {
        // No headers at all is allowed: the part then starts with the blank line.
        const end = this.buf.subarray(0, 2).toString("latin1") === "\r\n" ? 0 : this.buf.indexOf("\r\n\r\n");
        if (end < 0) {
          if (this.buf.length > MAX_HEADER_BYTES) throw new MultipartError("part headers too large");
          return events;
        }
        const text = this.buf.subarray(0, end).toString("utf8");
        this.buf = this.buf.subarray(end === 0 ? 2 : end + 4);
        this.parts++;
        events.push({ type: "part", headers: parseHeaders(text) });
        this.state = "body";
      } else if (this.state === "body") {
        const at = this.buf.indexOf(this.delimiter);
        if (at < 0) {
          const keep = Math.min(this.buf.length, this.delimiter.length - 1);
          if (this.buf.length > keep) events.push({ type: "data", data: this.buf.subarray(0, this.buf.length - keep) });
          this.buf = this.buf.subarray(this.buf.length - keep);
          return events;
        }
        if (at > 0) events.push({ type: "data", data: this.buf.subarray(0, at) });
        this.buf = this.buf.subarray(at + this.delimiter.length);
        this.state = "afterDelimiter";
      } else {
        return events;
      }
    }
  }

  /** The input ended: throws unless the close delimiter was seen. */
  end(): void {
    if (this.state !== "done") throw new MultipartError("multipart body ended early");
  }

  private keepTail(): void {
    const keep = Math.min(this.buf.length, this.delimiter.length - 1);
    this.buf = this.buf.subarray(this.buf.length - keep);
  }
}

function parseHeaders(text: string): PartHeaders {
  const headers: PartHeaders = new Map();
  if (text === "") return headers;
  for (const line of text.split("\r\n")) {
    const colon = line.indexOf(":");
    if (colon <= 0) throw new MultipartError(`malformed part header line ${JSON.stringify(line.slice(0, 80))}`);
    const name = line.slice(0, colon).trim().toLowerCase();
    if (!/^[a-z0-9!#$%&'*+.^_`|~-]+$/.test(name)) throw new MultipartError(`malformed part header name ${JSON.stringify(name.slice(0, 80))}`);
    headers.set(name, line.slice(colon + 1).trim());
  }
  return headers;
}

/**
 * The file name of a `Content-Disposition` value (RFC 6266): `filename*=utf-8''…` preferred over `filename="…"`;
 * null when there is none (or it does not decode).
 */
export function fileNameOfDisposition(value: string | undefined): string | null {
  if (value === undefined) return null;
  let plain: string | null = null;
  let extended: string | null = null;
  const re = /;\s*([A-Za-z*]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)/g;
  for (let m = re.exec(value); m !== null; m = re.exec(value)) {
    const name = m[1]!.toLowerCase();
    const raw = m[2]!.trim();
    if (name === "filename") plain = raw.startsWith('"') ? raw.slice(1, -1).replace(/\\(.)/g, "$1") : raw;
    else if (name === "filename*") {
      const ext = /^utf-8'[^']*'(.*)$/i.exec(raw);
      if (ext) {
        try {
          extended = decodeURIComponent(ext[1]!);
        } catch {
          // not valid percent-encoded UTF-8: fall back to filename
        }
      }
    }
  }
  const name = extended ?? plain;
  return name === null || name === "" ? null : name;
}
