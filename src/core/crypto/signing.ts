/**
 * Signing JSON (spec appendix "Signing JSON"): remove `signatures` and `unsigned`, encode as canonical JSON,
 * sign the bytes, and add the signature under `signatures[entity][keyId]`.
 */
import { canonicalJsonBytes } from "../json/canonical.js";
import type { JsonObject } from "../json/types.js";
import { signBytes, verifyBytes, type SigningKey } from "./ed25519.js";
import { createHash } from "node:crypto";
import { encodeBase64 } from "../json/base64.js";

export type Signatures = Record<string, Record<string, string>>;

/** The bytes a signature covers: canonical JSON of the object without `signatures` and `unsigned`. */
export function signingInput(obj: JsonObject): Buffer {
  const { signatures: _s, unsigned: _u, ...rest } = obj;
  return canonicalJsonBytes(rest);
}

/** Returns a copy of `obj` with this server's signature added (existing signatures are kept). */
export function signJson<T extends JsonObject>(obj: T, entity: string, key: SigningKey): T {
  const sig = signBytes(key, signingInput(obj));
  const existing = (obj.signatures ?? {}) as Signatures;
  return {
    ...obj,
    signatures: { ...existing, [entity]: { ...(existing[entity] ?? {}), [key.keyId]: sig } },
  } as T;
}

/** Checks `signatures[entity][keyId]` on `obj` against a public key. */
export function verifyJsonSignature(obj: JsonObject, entity: string, keyId: string, publicKeyBase64: string): boolean {
  const sigs = obj.signatures as Signatures | undefined;
  const sig = sigs?.[entity]?.[keyId];
  if (typeof sig !== "string") return false;
  let input: Buffer;
  try {
    input = signingInput(obj);
  } catch {
    return false;
  }
  return verifyBytes(publicKeyBase64, input, sig);
}

export function sha256(data: Uint8Array | string): Buffer {
  return createHash("sha256").update(data).digest();
}

export function sha256Base64(data: Uint8Array | string): string {
  return encodeBase64(sha256(data));
}
