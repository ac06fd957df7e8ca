/**
 * Asking a room's Policy Server to sign an event (spec v1.18 "Asking for a Policy Server signature on an event"):
 * `POST /_matrix/policy/v1/sign` with the PDU, as a signed federation request. The answer's signature is added to
 * the event and checked against the key in the room state before the event goes any further.
 *
 * How a failure reaches the client whose event it was (the event is discarded in every case):
 *   - the Policy Server answered an error (400 M_FORBIDDEN "possible spam", 403 ACL'd, 429…): that error, verbatim;
 *   - it answered 200 without a signature: 403 M_FORBIDDEN (as Synapse);
 *   - its signature does not verify with the room's key, or it could not be reached: 502 M_UNKNOWN.
 */
import type { Logger } from "pino";
import type { Event } from "../../core/events/event.js";
import { hasValidPolicyServerSignature, withPolicyServerSignature, type PolicyServer } from "../../core/rooms/policy_server.js";
import { isJsonObject } from "../../core/json/types.js";
import type { RoomVersion } from "../../core/rooms/versions.js";
import { MatrixError, forbidden } from "../../errors.js";
import type { FederationClient } from "../../federation/client.js";
import { FederationError } from "../../federation/errors.js";
import { trustedEvent } from "../rooms/event_cache.js";

export const POLICY_SIGN_PATH = "/_matrix/policy/v1/sign";
/** Synapse's timeout for this request: long enough for a Policy Server that scans media, short of blocking sends. */
export const POLICY_SIGN_TIMEOUT_MS = 30_000;

export class PolicyServerClient {
  constructor(
    private readonly client: FederationClient,
    private readonly log: Logger,
    private readonly timeoutMs = POLICY_SIGN_TIMEOUT_MS,
  ) {}

  /** The event with the Policy Server's valid signature added; MatrixError when it refuses or cannot be asked. */
  async sign(ps: PolicyServer, version: RoomVersion, event: Event): Promise<Event> {
    const { unsigned: _u, ...pdu } = event.pdu;
    let answer: unknown;
    try {
      answer = await this.client.post(ps.serverName, POLICY_SIGN_PATH, pdu, { timeoutMs: this.timeoutMs });
    } catch (e) {
      throw this.failure(ps, event, e);
    }
    const signed = withPolicyServerSignature(event.pdu, ps, answer);
    if (!signed) throw forbidden("This event has been rejected as probable spam by the policy server");
    if (!hasValidPolicyServerSignature(version, signed, ps)) {
      this.log.warn({ eventId: event.event_id, policyServer: ps.serverName }, "the Policy Server's signature does not verify with the key in m.room.policy");
      throw new MatrixError(502, "M_UNKNOWN", `Policy server ${ps.serverName} failed to sign the event correctly`);
    }
    return trustedEvent(event.event_id, event.room_id, signed);
  }

  private failure(ps: PolicyServer, event: Event, e: unknown): unknown {
    if (!(e instanceof FederationError)) return e;
    if (e.reason === "http") {
      // "If the Policy Server returned an error, that error SHOULD be provided to the client verbatim." Except a
      // 401: between servers it is about our request's signature, to a client it would mean its access token.
      const body = isJsonObject(e.details.body) ? e.details.body : {};
      const { errcode: _c, error, ...extra } = body;
      const status = e.status === 401 ? 403 : (e.status ?? 502);
      return new MatrixError(status, e.errcode ?? "M_UNKNOWN", typeof error === "string" ? error : e.message, extra);
    }
    this.log.info({ err: e.message, eventId: event.event_id, policyServer: ps.serverName }, "could not reach the Policy Server");
    return new MatrixError(502, "M_UNKNOWN", `Could not reach the room's policy server ${ps.serverName}: ${e.message}`);
  }
}
