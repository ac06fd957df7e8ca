/**
 * Event hashes (server-server "Calculating the content hash for an event" and "Calculating the reference hash for
 * an event"). The content hash covers the whole event and lets a receiver tell a redacted copy from a tampered one;
 * the reference hash covers the redacted event and is the event id in room versions 3+.
 */
import { timingSafeEqual } from "node:crypto";
import { decodeBase64, encodeBase64 } from "../json/base64.js";
import { canonicalJsonBytes } from "../json/canonical.js";
import { isJsonObject } from "../json/types.js";
import { sha256 } from "../crypto/signing.js";
import type { RoomVersion } from "../rooms/versions.js";
import type { PDU } from "./event.js";
import { redactPdu } from "./redaction.js";

/** The bytes the content hash covers: canonical JSON of the PDU without `unsigned`, `signatures` and `hashes`.
 * Throws CanonicalJsonError when the PDU cannot be encoded canonically. */
export function contentHashInput(pdu: PDU): Buffer {
  const { unsigned: _u, signatures: _s, hashes: _h, ...rest } = pdu;
  return canonicalJsonBytes(rest);
}

/** The sha256 content hash as unpadded standard base64, the form stored in `hashes.sha256`. */
export function computeContentHash(pdu: PDU): string {
  return encodeBase64(sha256(contentHashInput(pdu)));
}

/** Whether `hashes.sha256` matches the PDU. The received hash is base64-decoded and compared as bytes, as the spec
 * says, so a padded encoding also matches. False for a missing or malformed hash or an unencodable PDU. */
export function contentHashMatches(pdu: PDU): boolean {
  const hashes = pdu.hashes;
  if (!isJsonObject(hashes) || typeof hashes.sha256 !== "string") return false;
  const claimed = decodeBase64(hashes.sha256);
  if (!claimed || claimed.length !== 32) return false;
  let actual: Buffer;
  try {
    actual = sha256(contentHashInput(pdu));
  } catch {
    return false;
  }
  return timingSafeEqual(claimed, actual);
}

/** The bytes the reference hash covers, which are also what the origin server's signature covers: canonical JSON
 * of the redacted PDU without `signatures` and `unsigned` (so `unsigned.age_ts` never matters). */
export function referenceHashInput(version: RoomVersion, pdu: PDU): Buffer {
  const { signatures: _s, unsigned: _u, ...rest } = redactPdu(version, pdu);
  return canonicalJsonBytes(rest);
}

/** The sha256 reference hash of an event. Throws CanonicalJsonError when the redacted PDU cannot be encoded. */
export function computeReferenceHash(version: RoomVersion, pdu: PDU): Buffer {
  return sha256(referenceHashInput(version, pdu));
}
