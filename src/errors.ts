/**
 * Matrix errors (spec "Standard error response"): services throw these; the HTTP layer renders them once as
 * `{"errcode", "error", ...extra}` with the right status. Anything else thrown becomes a logged 500 M_UNKNOWN.
 */
export class MatrixError extends Error {
  constructor(
    readonly status: number,
    readonly errcode: string,
    message: string,
    readonly extra: Record<string, unknown> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }

  toJSON(): Record<string, unknown> {
    return { errcode: this.errcode, error: this.message, ...this.extra };
  }
}

export const badJson = (msg: string) => new MatrixError(400, "M_BAD_JSON", msg);
export const notJson = (msg = "Content not JSON.") => new MatrixError(400, "M_NOT_JSON", msg);
export const invalidParam = (msg: string) => new MatrixError(400, "M_INVALID_PARAM", msg);
export const missingParam = (msg: string) => new MatrixError(400, "M_MISSING_PARAM", msg);
export const forbidden = (msg: string, extra?: Record<string, unknown>) => new MatrixError(403, "M_FORBIDDEN", msg, extra);
export const notFound = (msg: string) => new MatrixError(404, "M_NOT_FOUND", msg);
export const unrecognized = (msg = "Unrecognized request") => new MatrixError(404, "M_UNRECOGNIZED", msg);
export const tooLarge = (msg = "Request too large") => new MatrixError(413, "M_TOO_LARGE", msg);
export const unknownError = (msg = "Internal server error") => new MatrixError(500, "M_UNKNOWN", msg);

export function limitExceeded(retryAfterMs: number): MatrixError {
  const ms = Math.max(0, Math.ceil(retryAfterMs));
  return new MatrixError(
    429,
    "M_LIMIT_EXCEEDED",
    "Too many requests",
    { retry_after_ms: ms },
    { "Retry-After": String(Math.ceil(ms / 1000)) },
  );
}

/** 401 for User-Interactive Auth: the body is the UIA state (flows, params, session, completed), with errcode/error
 * only when the last attempted stage failed — as the spec's examples and Synapse show it. */
export class UiaRequiredError extends MatrixError {
  constructor(readonly body: Record<string, unknown>) {
    super(401, typeof body.errcode === "string" ? body.errcode : "M_UNAUTHORIZED", typeof body.error === "string" ? body.error : "User-interactive authentication required");
  }

  override toJSON(): Record<string, unknown> {
    return this.body;
  }
}
