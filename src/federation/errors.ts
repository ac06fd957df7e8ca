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
