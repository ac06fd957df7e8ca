/**
 * Why an outbound federation request failed, as one typed error, so callers (key fetching, the notary, later the
 * transaction queue) can decide what to do: give up, back off, or try another server.
 */
export type FederationFailure =
  /** The destination is not a valid server name. Never worth retrying. */
  | "invalid_destination"
  /** `federation_domain_whitelist` does not list the destination. */
  | "denied"
  /** Every address the destination resolved to is in a blocked IP range (`ip_range_blacklist`). */
  | "blocked"
  /** DNS failed, the SRV record says "no service", or no address accepted a connection. */
  | "unreachable"
  /** The TLS handshake failed, typically certificate verification. */
  | "tls"
  /** No complete response within the request's timeout. */
  | "timeout"
  /** The destination answered with a non-2xx status; `status`, `errcode` and `body` say more. */
  | "http"
  /** The answer was not a JSON object, or was larger than the response size cap. */
  | "invalid_response";

export class FederationError extends Error {
  constructor(
    readonly reason: FederationFailure,
    readonly destination: string,
    message: string,
    readonly details: { status?: number; errcode?: string; body?: unknown; cause?: unknown } = {},
  ) {
    super(`${destination}: ${message}`);
    this.name = "FederationError";
  }

  get status(): number | undefined {
    return this.details.status;
  }

  get errcode(): string | undefined {
    return this.details.errcode;
  }
}

/**
 * Whether an error answer means "this endpoint is not implemented here" (as Synapse's is_unknown_endpoint): 404 or
 * 405 with an empty or non-JSON body or M_UNRECOGNIZED (spec v1.6+), or 400 M_UNRECOGNIZED (older Synapse). Callers
 * then fall back to an older version of the endpoint.
 */
export function isUnknownEndpoint(e: unknown): boolean {
  if (!(e instanceof FederationError) || e.reason !== "http") return false;
  const status = e.status;
  const json = typeof e.details.body === "object" && e.details.body !== null && !Array.isArray(e.details.body);
  if (status === 404 || status === 405) return !json || e.errcode === "M_UNRECOGNIZED";
  return status === 400 && e.errcode === "M_UNRECOGNIZED";
}

/** A 4xx error answer from the remote server (a refusal, as opposed to an outage or a 5xx). */
export function isRemoteRefusal(e: unknown): e is FederationError {
  return e instanceof FederationError && e.reason === "http" && e.status !== undefined && e.status >= 400 && e.status < 500;
}
