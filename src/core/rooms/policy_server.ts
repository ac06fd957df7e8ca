/**
 * Policy Servers (spec v1.18, server-server API "Policy Servers", MSC4284): a server in the room, named by the
 * `m.room.policy` state event, that signs the events it recommends for inclusion. The pure part: whether a room
 * uses a Policy Server, which events need its signature, and whether an event carries a valid one. Asking the
 * Policy Server (POST /_matrix/policy/v1/sign) is services/rooms/policy_server.ts.
 */
import { isStateEvent, stateMapKey, type PDU, type StateMap } from "../events/event.js";
import { verifyEventSignature } from "../events/signing.js";
import { isValidServerName, userIdDomain } from "../ids/ids.js";
import { isJsonObject, type JsonObject } from "../json/types.js";
import type { RoomVersion } from "./versions.js";

export const POLICY_EVENT_TYPE = "m.room.policy";
/** "The Key ID for the `ed25519` key in `m.room.policy` is *always* `ed25519:policy_server`." */
export const POLICY_SERVER_KEY_ID = "ed25519:policy_server";

/** A room's Policy Server: its server name (`via`) and the ed25519 key its signatures are checked against. */
export interface PolicyServer {
  readonly serverName: string;
  /** Unpadded base64 (standard or URL-safe) ed25519 public key, from `public_keys.ed25519`. */
  readonly ed25519: string;
}

/**
 * The Policy Server an `m.room.policy` event's content designates, when it is valid: "a string value for `via`"
 * and "an object value for `public_keys` containing at least a string value for `ed25519`". As Synapse, a `via`
 * that is not a valid server name designates nothing (no request could reach it).
 */
export function policyServerFromContent(content: unknown): PolicyServer | undefined {
  if (!isJsonObject(content)) return undefined;
  const { via, public_keys: keys } = content;
  if (typeof via !== "string" || !isValidServerName(via)) return undefined;
  if (!isJsonObject(keys) || typeof keys.ed25519 !== "string") return undefined;
  return { serverName: via, ed25519: keys.ed25519 };
}

/**
 * "Determining if a Policy Server is enabled in a room": current state has a valid `m.room.policy` with an empty
 * state key (its content is `policyContent`, undefined when there is none), and its `via` server has at least one
 * joined user in current state.
 */
export function roomPolicyServer(policyContent: unknown, hasJoinedUser: (serverName: string) => boolean): PolicyServer | undefined {
  if (policyContent === undefined) return undefined;
  const ps = policyServerFromContent(policyContent);
  return ps && hasJoinedUser(ps.serverName) ? ps : undefined;
}

/** The state map key of the event that designates the Policy Server. */
export const POLICY_STATE_KEY = stateMapKey(POLICY_EVENT_TYPE, "");

const MEMBER_PREFIX = stateMapKey("m.room.member", "");

/**
 * The member events in a state map whose user is on `serverName` (any membership): the candidates for "has at
 * least one joined user". Scans the state keys; the caller loads these few events to read their membership.
 */
export function memberEventsOfServer(state: StateMap, serverName: string): string[] {
  const out: string[] = [];
  const suffix = `:${serverName}`;
  for (const [key, eventId] of state) {
    if (!key.startsWith(MEMBER_PREFIX) || !key.endsWith(suffix)) continue;
    if (userIdDomain(key.slice(MEMBER_PREFIX.length)) === serverName) out.push(eventId);
  }
  return out;
}

/**
 * Whether an event needs the Policy Server's signature: every event except the `m.room.policy` state event with an
 * empty state key (which is never sent to the Policy Server, so a room can always turn it off). Non-state
 * `m.room.policy` events and ones with another state key do need it, as do membership and power level events.
 */
export function needsPolicyServerSignature(event: { type: string; state_key?: string }): boolean {
  return !(event.type === POLICY_EVENT_TYPE && isStateEvent(event) && event.state_key === "");
}

/**
 * Whether the PDU carries a valid signature from the Policy Server's key: `signatures[via]["ed25519:policy_server"]`
 * over the redacted event, checked with the key in the room state (not the server's published keys, which should
 * differ). Never throws.
 */
export function hasValidPolicyServerSignature(version: RoomVersion, pdu: PDU, ps: PolicyServer): boolean {
  return verifyEventSignature(version, pdu, ps.serverName, POLICY_SERVER_KEY_ID, ps.ed25519);
}

/**
 * "Validating Policy Server signatures": whether an event is recommended for inclusion — always when the room uses
 * no Policy Server (`ps` undefined) or the event is exempt, otherwise only with a valid Policy Server signature. An
 * event that is not recommended is soft-failed (or, being sent by a local client, refused).
 */
export function recommendedForInclusion(version: RoomVersion, event: { type: string; state_key?: string; pdu: PDU }, ps: PolicyServer | undefined): boolean {
  return ps === undefined || !needsPolicyServerSignature(event) || hasValidPolicyServerSignature(version, event.pdu, ps);
}

/**
 * The PDU with the signature from a `POST /_matrix/policy/v1/sign` answer (`{via: {"ed25519:policy_server": sig}}`)
 * added. Only that one signature is taken, and every signature already there is kept: the Policy Server's name may
 * be the sender's, whose own signature the answer need not repeat. Undefined when the answer holds no such signature.
 */
export function withPolicyServerSignature(pdu: PDU, ps: PolicyServer, answer: unknown): PDU | undefined {
  const mine = isJsonObject(answer) ? answer[ps.serverName] : undefined;
  const sig = isJsonObject(mine) ? mine[POLICY_SERVER_KEY_ID] : undefined;
  if (typeof sig !== "string") return undefined;
  const existing: JsonObject = isJsonObject(pdu.signatures) ? pdu.signatures : {};
  const ours: JsonObject = isJsonObject(existing[ps.serverName]) ? (existing[ps.serverName] as JsonObject) : {};
  return { ...pdu, signatures: { ...existing, [ps.serverName]: { ...ours, [POLICY_SERVER_KEY_ID]: sig } } };
}
