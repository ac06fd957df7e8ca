/**
 * Signing events (server-server "Signing Events"): the content hash covers the full event, the signature covers
 * the redacted event (so it still verifies after a redaction), and the signature is copied back onto the full event.
 */
import { sha256, signJson, verifyJsonSignature, type Signatures } from "../crypto/signing.js";
import { signBytes, type SigningKey } from "../crypto/ed25519.js";
import { encodeBase64, encodeBase64Url } from "../json/base64.js";
import { canonicalJsonBytes } from "../json/canonical.js";
import { idDomain, userIdDomain } from "../ids/ids.js";
import { isJsonObject, type JsonObject } from "../json/types.js";
import type { RoomVersion } from "../rooms/versions.js";
import type { PDU } from "./event.js";
import { computeContentHash } from "./hashes.js";
import { redactPdu } from "./redaction.js";

/**
 * "Adding hashes and signatures to outgoing events", as Synapse's `add_hashes_and_signatures`: sets
 * `hashes.sha256` (other hash algorithms are kept), signs the redacted form without `unsigned`, and returns a copy
 * of the full PDU carrying the resulting `signatures` (existing signatures from other servers or keys are kept).
 * `unsigned` is left as it was. Throws CanonicalJsonError when the PDU cannot be encoded.
 */
export function hashAndSignEvent(version: RoomVersion, pdu: PDU, serverName: string, key: SigningKey): PDU {
  const hashes: JsonObject = { ...(isJsonObject(pdu.hashes) ? pdu.hashes : {}), sha256: computeContentHash(pdu) };
  const hashed: PDU = { ...pdu, hashes };
  const signed = signJson(redactPdu(version, hashed), serverName, key);
  return { ...hashed, signatures: signed.signatures! };
}

/** Checks `signatures[serverName][keyId]` over the redacted form ("Validating hashes and signatures on received
 * events"), so it holds for the full event and for any redacted copy of it. Never throws. */
export function verifyEventSignature(
  version: RoomVersion,
  pdu: PDU,
  serverName: string,
  keyId: string,
  publicKeyBase64: string,
): boolean {
  return verifyJsonSignature(redactPdu(version, pdu), serverName, keyId, publicKeyBase64);
}

/** The signatures present on a PDU, or an empty map when the field is missing or malformed. */
export function eventSignatures(pdu: PDU): Signatures {
  const sigs = pdu.signatures;
  if (!isJsonObject(sigs)) return {};
  const out: Signatures = {};
  for (const [server, keys] of Object.entries(sigs)) {
    if (!isJsonObject(keys)) continue;
    const entries = Object.entries(keys).filter((e): e is [string, string] => typeof e[1] === "string");
    Object.defineProperty(out, server, { value: Object.fromEntries(entries), enumerable: true, writable: true, configurable: true });
  }
  return out;
}

function isThirdPartyInvite(pdu: PDU): boolean {
  const content = pdu.content;
  return (
    pdu.type === "m.room.member" &&
    isJsonObject(content) &&
    content.membership === "invite" &&
    Object.hasOwn(content, "third_party_invite")
  );
}

/**
 * The servers whose signatures a received event must carry ("Validating hashes and signatures on received events",
 * and the restricted-join auth rule):
 * - the sender's server, unless the event is a third-party invite ("the server which actually sends the event may
 *   be a different server"; the auth rules then check `third_party_invite.signed` instead), as Synapse does;
 * - rooms v1/v2: the server in the `event_id`, the server that created the event;
 * - restricted-join rooms (v8+): for a join carrying `join_authorised_via_users_server`, that user's server.
 * Expects a PDU that passed parsePdu; throws when the ids it needs are malformed.
 */
export function requiredSignatureServers(version: RoomVersion, pdu: PDU): string[] {
  const servers = new Set<string>();
  if (!isThirdPartyInvite(pdu)) servers.add(domainOf(pdu.sender, "sender", userIdDomain));
  if (version.eventIdFormat === "v1") servers.add(domainOf(pdu.event_id, "event_id", idDomain));
  const content = pdu.content;
  if (
    version.restrictedJoinRule &&
    pdu.type === "m.room.member" &&
    isJsonObject(content) &&
    content.membership === "join" &&
    Object.hasOwn(content, "join_authorised_via_users_server")
  ) {
    servers.add(domainOf(content.join_authorised_via_users_server, "join_authorised_via_users_server", userIdDomain));
  }
  return [...servers];
}

function domainOf(id: unknown, field: string, domain: (id: string) => string | null): string {
  const d = typeof id === "string" ? domain(id) : null;
  if (!d) throw new Error(`PDU ${field} has no server name`);
  return d;
}

/** A new event this server created: hashed, signed, with its id and its canonical size known. */
export interface SignedNewEvent {
  pdu: PDU;
  /** v3+: the reference hash id; v1/v2: the `event_id` the PDU carries. */
  eventId: string;
  /** Bytes of the PDU's canonical JSON (without `unsigned`), for the 64 KiB limit. */
  size: number;
}

/**
 * hashAndSignEvent and computeEventId in one pass, for events this server builds (the send hot path): the
 * canonical JSON of the redacted event is both the signature's input and (v3+) the reference hash's input, so it
 * is encoded once. Equivalent to hashAndSignEvent + eventIdOf (tested).
 */
export function signNewEvent(version: RoomVersion, pdu: PDU, serverName: string, key: SigningKey): SignedNewEvent {
  const { unsigned: _u, signatures: _s, hashes: _h, ...rest } = pdu;
  const contentInput = canonicalJsonBytes(rest);
  const hashes: JsonObject = { ...(isJsonObject(pdu.hashes) ? pdu.hashes : {}), sha256: encodeBase64(sha256(contentInput)) };
  const hashed: PDU = { ...pdu, hashes };
  const { signatures: _rs, unsigned: _ru, ...redacted } = redactPdu(version, hashed);
  const signingInput = canonicalJsonBytes(redacted);
  const existing = isJsonObject(pdu.signatures) ? (pdu.signatures as Signatures) : {};
  const signatures: Signatures = { ...existing, [serverName]: { ...(existing[serverName] ?? {}), [key.keyId]: signBytes(key, signingInput) } };
  let eventId: string;
  if (version.eventIdFormat === "v1") eventId = String(pdu.event_id);
  else {
    const ref = sha256(signingInput);
    eventId = "$" + (version.eventIdFormat === "v3" ? encodeBase64(ref) : encodeBase64Url(ref));
  }
  // The full PDU is the content input plus its `hashes` and `signatures` members: a comma, and `{}` dropped.
  const size = contentInput.length + canonicalJsonBytes({ hashes, signatures }).length - 1;
  return { pdu: { ...hashed, signatures: signatures as unknown as JsonObject }, eventId, size };
}
