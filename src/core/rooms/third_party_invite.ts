/**
 * m.room.third_party_invite content and its `signed` proofs (spec "Third-party invites"): the public keys an
 * invite lists, and which of them verifies a `signed` object. Shared by the auth rules (rule 5.4.1) and by the
 * homeserver that turns an identity server's signed proof into an invite (which also checks the key is not revoked).
 */
import { verifyJsonSignature } from "../crypto/signing.js";
import { isJsonObject, type JsonObject, type JsonValue } from "../json/types.js";

export interface InvitePublicKey {
  public_key: string;
  key_validity_url?: string;
}

/** `public_key` (with the top-level `key_validity_url`) and every entry of `public_keys`. */
export function invitePublicKeys(content: JsonObject): InvitePublicKey[] {
  const keys: InvitePublicKey[] = [];
  if (typeof content.public_key === "string") {
    keys.push({ public_key: content.public_key, ...(typeof content.key_validity_url === "string" ? { key_validity_url: content.key_validity_url } : {}) });
  }
  const list: JsonValue | undefined = content.public_keys;
  if (Array.isArray(list)) {
    for (const k of list) {
      if (isJsonObject(k) && typeof k.public_key === "string") keys.push({ public_key: k.public_key, ...(typeof k.key_validity_url === "string" ? { key_validity_url: k.key_validity_url } : {}) });
    }
  }
  return keys;
}

/** The first key whose ed25519 signature (by any entity) on `signed` verifies, or undefined. */
export function verifyingKey(signed: JsonObject, keys: InvitePublicKey[]): InvitePublicKey | undefined {
  const sigs = signed.signatures;
  if (!isJsonObject(sigs) || keys.length === 0) return undefined;
  for (const [entity, byKey] of Object.entries(sigs)) {
    if (!isJsonObject(byKey)) continue;
    for (const keyId of Object.keys(byKey)) {
      if (!keyId.startsWith("ed25519:")) continue;
      for (const k of keys) if (verifyJsonSignature(signed, entity, keyId, k.public_key)) return k;
    }
  }
  return undefined;
}
