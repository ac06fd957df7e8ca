/** Real E2EE key material for tests: device keys, one-time keys and cross-signing keys, signed as clients sign them. */
import { randomBytes } from "node:crypto";
import { generateSigningKey, type SigningKey } from "../../src/core/crypto/ed25519.js";
import { signJson } from "../../src/core/crypto/signing.js";
import { encodeBase64 } from "../../src/core/json/base64.js";
import type { JsonObject } from "../../src/core/json/types.js";

export type Json = Record<string, unknown>;

/** An ed25519 key whose id is `ed25519:<name>` (devices) or `ed25519:<public key>` (cross-signing). */
export function keyNamed(key: SigningKey, name: string): SigningKey {
  return { ...key, keyId: `ed25519:${name}` };
}

export const curveKey = (): string => encodeBase64(randomBytes(32));

export interface TestDevice {
  userId: string;
  deviceId: string;
  /** The device's ed25519 key, id `ed25519:<deviceId>`. */
  signing: SigningKey;
  deviceKeys: JsonObject;
}

export function makeDevice(userId: string, deviceId: string): TestDevice {
  const signing = keyNamed(generateSigningKey(), deviceId);
  const deviceKeys = signJson(
    {
      user_id: userId,
      device_id: deviceId,
      algorithms: ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
      keys: { [`curve25519:${deviceId}`]: curveKey(), [`ed25519:${deviceId}`]: signing.publicKeyBase64 },
    },
    userId,
    signing,
  );
  return { userId, deviceId, signing, deviceKeys };
}

/** `n` signed_curve25519 one-time keys signed by the device, named `signed_curve25519:<prefix><i>`. */
export function signedOtks(d: TestDevice, n: number, prefix = "k", extra: Json = {}): Record<string, JsonObject> {
  const out: Record<string, JsonObject> = {};
  for (let i = 0; i < n; i++) out[`signed_curve25519:${prefix}${i}`] = signJson({ key: curveKey(), ...(extra as JsonObject) }, d.userId, d.signing);
  return out;
}

export interface CrossSigningKeys {
  master: SigningKey;
  selfSigning: SigningKey;
  userSigning: SigningKey;
  masterKey: JsonObject;
  selfSigningKey: JsonObject;
  userSigningKey: JsonObject;
}

const csKey = () => {
  const k = generateSigningKey();
  return keyNamed(k, k.publicKeyBase64);
};

/** A fresh master, self-signing and user-signing key set for the user, the last two signed by the master. */
export function makeCrossSigning(userId: string): CrossSigningKeys {
  const master = csKey();
  const selfSigning = csKey();
  const userSigning = csKey();
  const obj = (k: SigningKey, usage: string): JsonObject => ({ user_id: userId, usage: [usage], keys: { [k.keyId]: k.publicKeyBase64 } });
  return {
    master,
    selfSigning,
    userSigning,
    masterKey: obj(master, "master"),
    selfSigningKey: signJson(obj(selfSigning, "self_signing"), userId, master),
    userSigningKey: signJson(obj(userSigning, "user_signing"), userId, master),
  };
}

/** A key object without its signatures, signed afresh by `signer` only (as POST /keys/signatures/upload sends it). */
export function signOnly(obj: JsonObject, signerUserId: string, signer: SigningKey): JsonObject {
  const { signatures: _s, unsigned: _u, ...rest } = obj;
  return signJson(rest as JsonObject, signerUserId, signer);
}
