/**
 * Ed25519 signing keys as Matrix uses them (spec: "Signing JSON"), on Node's built-in crypto.
 * A key is identified by `ed25519:<version>`; Synapse stores it as the line `ed25519 <version> <unpadded b64 seed>`.
 */
import { createPrivateKey, createPublicKey, randomBytes, sign, verify, type KeyObject } from "node:crypto";
import { decodeBase64, encodeBase64 } from "../json/base64.js";

// DER prefixes that wrap a raw 32-byte Ed25519 seed / public key (RFC 8410).
const PKCS8_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");
const SPKI_PREFIX = Buffer.from("302a300506032b6570032100", "hex");

export interface SigningKey {
  /** "ed25519:" + version, e.g. "ed25519:a_AbCd". */
  readonly keyId: string;
  readonly seed: Buffer;
  readonly publicKey: Buffer;
  readonly publicKeyBase64: string;
  readonly privateKeyObject: KeyObject;
}

export function signingKeyFromSeed(version: string, seed: Buffer): SigningKey {
  if (seed.length !== 32) throw new Error("an ed25519 seed is 32 bytes");
  const privateKeyObject = createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, seed]), format: "der", type: "pkcs8" });
  const spki = createPublicKey(privateKeyObject).export({ format: "der", type: "spki" });
  const publicKey = Buffer.from(spki.subarray(SPKI_PREFIX.length));
  return { keyId: `ed25519:${version}`, seed, publicKey, publicKeyBase64: encodeBase64(publicKey), privateKeyObject };
}

const VERSION_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_";

/** A fresh key with a Synapse-style version `a_XXXX`. */
export function generateSigningKey(): SigningKey {
  const rnd = randomBytes(4);
  let version = "a_";
  for (const b of rnd) version += VERSION_CHARS[b % VERSION_CHARS.length];
  return signingKeyFromSeed(version, randomBytes(32));
}

/** Synapse's signing key file: one line per key, `ed25519 <version> <seed>`. */
export function formatSigningKeyFile(keys: SigningKey[]): string {
  return keys.map((k) => `ed25519 ${k.keyId.slice("ed25519:".length)} ${encodeBase64(k.seed)}\n`).join("");
}

export function parseSigningKeyFile(text: string): SigningKey[] {
  const keys: SigningKey[] = [];
  for (const [lineNo, raw] of text.split(/\r?\n/).entries()) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const parts = line.split(/\s+/);
    if (parts.length !== 3 || parts[0] !== "ed25519") {
      throw new Error(`signing key file line ${lineNo + 1}: expected "ed25519 <version> <base64 seed>"`);
    }
    const seed = decodeBase64(parts[2]!);
    if (!seed || seed.length !== 32) throw new Error(`signing key file line ${lineNo + 1}: seed is not 32 bytes of base64`);
    keys.push(signingKeyFromSeed(parts[1]!, seed));
  }
  if (keys.length === 0) throw new Error("signing key file holds no key");
  return keys;
}

export function signBytes(key: SigningKey, data: Uint8Array): string {
  return encodeBase64(sign(null, data, key.privateKeyObject));
}

const publicKeyCache = new Map<string, KeyObject>();

/** Verifies an unpadded-base64 signature against an unpadded-base64 public key. Never throws. */
export function verifyBytes(publicKeyBase64: string, data: Uint8Array, signatureBase64: string): boolean {
  const sig = decodeBase64(signatureBase64);
  if (!sig || sig.length !== 64) return false;
  let keyObj = publicKeyCache.get(publicKeyBase64);
  if (!keyObj) {
    const raw = decodeBase64(publicKeyBase64);
    if (!raw || raw.length !== 32) return false;
    try {
      keyObj = createPublicKey({ key: Buffer.concat([SPKI_PREFIX, raw]), format: "der", type: "spki" });
    } catch {
      return false;
    }
    if (publicKeyCache.size > 10_000) publicKeyCache.clear();
    publicKeyCache.set(publicKeyBase64, keyObj);
  }
  try {
    return verify(null, data, keyObj, sig);
  } catch {
    return false;
  }
}
