/**
 * What every connection meets before routing: Node's HTTP parser (its limits and errors) and the exact JSON
 * Content-Type. Both live at the Node server level, so they hold for every listener and every bind address alike.
 */
import { STATUS_CODES, ServerResponse, type IncomingMessage, type OutgoingHttpHeader, type OutgoingHttpHeaders, type ServerOptions } from "node:http";
import type { Duplex } from "node:stream";

/**
 * Request line plus headers. Node's default (16 KiB) refuses the long inline `filter` JSON clients put on /sync and
 * /messages, which Synapse serves; past this, 431 M_TOO_LARGE.
 */
export const MAX_HEADER_SIZE = 64 * 1024;

/** After an error answer, how long a connection may still send (discarded) before it is closed outright. */
const LINGER_MS = 2_000;

export const CORS_HEADERS = {
  "access-control-allow-origin": "*",
  "access-control-allow-methods": "GET, HEAD, POST, PUT, DELETE, OPTIONS",
  "access-control-allow-headers": "X-Requested-With, Content-Type, Authorization, Date",
};

/** What Fastify puts on every JSON reply (and appends to a bare `application/json` a route sets). */
const FASTIFY_JSON = "application/json; charset=utf-8";
const JSON_TYPE = "application/json";

/**
 * Sends JSON as exactly `Content-Type: application/json`, as Synapse, Dendrite and Conduit do (SyTest decodes a body
 * only then). Fastify always writes its headers through `writeHead`, so this one check per response covers routes,
 * the error and not-found handlers and `frameworkErrors`, with no hook and nothing allocated. Other types (static
 * pages, media) pass untouched; a route that must send Fastify's exact string can set it with `reply.raw.setHeader`.
 */
export class MatrixServerResponse<Req extends IncomingMessage = IncomingMessage> extends ServerResponse<Req> {
  override writeHead(statusCode: number, reason?: string | OutgoingHttpHeaders | OutgoingHttpHeader[], headers?: OutgoingHttpHeaders | OutgoingHttpHeader[]): this {
    const obj = typeof reason === "object" ? reason : headers;
    if (obj === undefined) {
      // Implicit headers (a streamed reply): they were set with setHeader.
      if (this.getHeader("content-type") === FASTIFY_JSON) this.setHeader("content-type", JSON_TYPE);
    } else if (!Array.isArray(obj) && obj["content-type"] === FASTIFY_JSON) {
      obj["content-type"] = JSON_TYPE;
    }
    return super.writeHead(statusCode, reason as string, headers);
  }
}

/** Options for every Node HTTP(S) server that serves Myelin (Fastify's own and the extra bind addresses'). */
export const HTTP_SERVER_OPTIONS = {
  maxHeaderSize: MAX_HEADER_SIZE,
  ServerResponse: MatrixServerResponse,
  // As Synapse: a request without Host is served (nothing here depends on it), not refused with Node's bare 400.
  requireHostHeader: false,
} satisfies ServerOptions;

/** A parser error's answer, as the raw bytes of a whole HTTP response (there is no response object yet). */
function rawAnswer(status: number, errcode: string, error: string): Buffer {
  const body = JSON.stringify({ errcode, error });
  const cors = Object.entries(CORS_HEADERS)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join("");
  const head = `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: ${JSON_TYPE}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${cors}Connection: close\r\n\r\n`;
  return Buffer.from(head + body);
}

// A request we cannot read the method, target or version of: Synapse's UnrecognizedRequestError (400 M_UNRECOGNIZED).
const BAD_REQUEST_LINE = rawAnswer(400, "M_UNRECOGNIZED", "Malformed request line");
// Bad Content-Length / Transfer-Encoding / chunks: Synapse answers a Content-Length that does not match the body with 400 M_UNKNOWN.
const BAD_FRAMING = rawAnswer(400, "M_UNKNOWN", "Malformed request framing");
// Anything else the parser refuses (bad header syntax…): 400 M_UNKNOWN, Synapse's errcode for an error with none more specific.
const MALFORMED = rawAnswer(400, "M_UNKNOWN", "Malformed request");

/** What each Node (llhttp) parser error is answered with; anything unlisted is MALFORMED. */
const PARSER_ANSWERS: Record<string, Buffer> = {
  // Synapse answers an over-large request with 413 M_TOO_LARGE; for the head (request line + headers) HTTP's status is 431.
  HPE_HEADER_OVERFLOW: rawAnswer(431, "M_TOO_LARGE", "Request line and headers too large"),
  // Chunk extensions past Node's limit are an over-large request too (Node's own answer is 413).
  HPE_CHUNK_EXTENSIONS_OVERFLOW: rawAnswer(413, "M_TOO_LARGE", "Chunk extensions too large"),
  HPE_INVALID_METHOD: BAD_REQUEST_LINE,
  HPE_INVALID_URL: BAD_REQUEST_LINE,
  HPE_INVALID_VERSION: BAD_REQUEST_LINE,
  HPE_INVALID_CONSTANT: BAD_REQUEST_LINE,
  HPE_INVALID_CONTENT_LENGTH: BAD_FRAMING,
  HPE_UNEXPECTED_CONTENT_LENGTH: BAD_FRAMING,
  HPE_INVALID_TRANSFER_ENCODING: BAD_FRAMING,
  HPE_INVALID_CHUNK_SIZE: BAD_FRAMING,
  // Node's headersTimeout/requestTimeout: the client was too slow to send its request (Synapse has no errcode for it).
  ERR_HTTP_REQUEST_TIMEOUT: rawAnswer(408, "M_UNKNOWN", "Request timed out"),
};

const kAnswered = Symbol("myelin.clientErrorAnswered");
type ClientSocket = Duplex & { [kAnswered]?: true; _httpMessage?: ServerResponse | null };

/**
 * Node's `clientError` (a request its parser refused, or a timeout): a Matrix error, then the connection closes.
 * Used as Fastify's `clientErrorHandler` and on the extra bind addresses' servers, so they all answer alike.
 */
export function answerClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
  const s = socket as ClientSocket;
  // Answered already: the parser repeats its error for every later read of this connection.
  if (s.destroyed || s[kAnswered]) return;
  s[kAnswered] = true;
  const code = err.code ?? "";
  // A socket error (ECONNRESET, EPIPE…) rather than an HTTP one: nobody to answer. And as Node: answer only if no
  // response on this connection has started (the error can come mid-body of a request being served; that request's
  // handler then writes to a closed connection, harmlessly).
  if ((!code.startsWith("HPE_") && PARSER_ANSWERS[code] === undefined) || !s.writable || s._httpMessage?.headersSent) {
    s.destroy();
    return;
  }
  // Half-close after the answer and let the peer finish sending (discarded): closing with its bytes unread would
  // reset the connection and could lose our answer before the client reads it (a 100 KiB URL, say).
  s.end(PARSER_ANSWERS[code] ?? MALFORMED);
  s.once("end", () => s.destroy());
  const timer = setTimeout(() => s.destroy(), LINGER_MS);
  timer.unref();
  s.once("close", () => clearTimeout(timer));
}
