/**
 * The shapes of end-to-end encryption keys (client-server "End-to-End Encryption": Device keys, One-time and
 * fallback keys, Cross-signing) and their signatures, checked as pure functions. Each check throws a KeyError with
 * the errcode the spec (or, where it is silent, Synapse) gives; services turn it into a 400.
 */
import { verifyJsonSignature } from "../crypto/signing.js";
import { decodeBase64 } from "../json/base64.js";
import { canonicalJson } from "../json/canonical.js";
import { isJsonObject, type JsonObject } from "../json/types.js";

export class KeyError extends Error {
  constructor(
    readonly errcode: "M_BAD_JSON" | "M_INVALID_PARAM" | "M_INVALID_SIGNATURE" | "M_MISSING_PARAM" | "M_NOT_FOUND",
    message: string,
  ) {
    super(message);
  }
}

/**
 * `DeviceKeys` as uploaded: user_id, device_id, algorithms, keys, signatures. The last three are absent together
 * for a device that publishes no identity keys (see checkDeviceKeys).
 */
export type DeviceKeys = JsonObject & {
  user_id: string;
  device_id: string;
  algorithms?: string[];
  keys?: Record<string, string>;
  signatures?: Record<string, Record<string, string>>;
};

/** `CrossSigningKey`: user_id, usage, keys (exactly one, `ed25519:<public key>` → public key), signatures. */
export interface CrossSigningKey extends JsonObject {
  user_id: string;
  usage: string[];
  keys: Record<string, string>;
}

export type CrossSigningType = "master" | "self_signing" | "user_signing";

/** Curve25519 and Ed25519 public keys are 32 bytes, in unpadded base64. */
export function isKey32(v: unknown): v is string {
  if (typeof v !== "string" || v.includes("=")) return false;
  const bytes = decodeBase64(v);
  return bytes !== null && bytes.length === 32;
}

/** An `<algorithm>:<key id>` name with both parts non-empty; returns them. */
export function splitKeyId(name: string): [algorithm: string, id: string] | undefined {
  const i = name.indexOf(":");
  if (i <= 0 || i === name.length - 1) return undefined;
  return [name.slice(0, i), name.slice(i + 1)];
}

function isSignatureMap(v: unknown): v is Record<string, Record<string, string>> {
  return isJsonObject(v) && Object.values(v).every((byKey) => isJsonObject(byKey) && Object.values(byKey).every((s) => typeof s === "string"));
}

/**
 * `device_keys` of POST /keys/upload: well-formed, for the requesting user and device ("user_id: The ID of the user
 * the device belongs to. Must match the user ID used when logging in."; "device_id … Must match the device ID used
 * when logging in"), identity keys named `<algorithm>:<device_id>`, and self-signed by the device's ed25519 key.
 * An object with none of `algorithms`, `keys` and `signatures` is a device with no identity keys, accepted as
 * Synapse accepts it; once any of them is given, all three must be there and hold. Missing fields and wrong types
 * are M_BAD_JSON (as Synapse's schema check answers).
 */
export function checkDeviceKeys(v: unknown, userId: string, deviceId: string): DeviceKeys {
  if (!isJsonObject(v)) throw new KeyError("M_BAD_JSON", "device_keys must be an object");
  if (typeof v.user_id !== "string") throw new KeyError("M_BAD_JSON", "device_keys.user_id must be a string");
  if (typeof v.device_id !== "string") throw new KeyError("M_BAD_JSON", "device_keys.device_id must be a string");
  if (v.user_id !== userId) throw new KeyError("M_INVALID_PARAM", "device_keys.user_id does not match the authenticated user");
  if (v.device_id !== deviceId) throw new KeyError("M_INVALID_PARAM", "device_keys.device_id does not match the authenticated device");
  if (v.algorithms === undefined && v.keys === undefined && v.signatures === undefined) return v as DeviceKeys;
  if (!Array.isArray(v.algorithms) || !v.algorithms.every((a) => typeof a === "string")) throw new KeyError("M_BAD_JSON", "device_keys.algorithms must be an array of strings");
  if (!isJsonObject(v.keys)) throw new KeyError("M_BAD_JSON", "device_keys.keys must be an object");
  if (!isSignatureMap(v.signatures)) throw new KeyError("M_BAD_JSON", "device_keys.signatures must be an object of user IDs to key IDs to signatures");
  for (const [name, key] of Object.entries(v.keys)) {
    const parts = splitKeyId(name);
    if (!parts || parts[1] !== deviceId) throw new KeyError("M_INVALID_PARAM", `device key ${name} must be named <algorithm>:${deviceId}`);
    if (typeof key !== "string") throw new KeyError("M_BAD_JSON", `device key ${name} must be a string`);
    if ((parts[0] === "ed25519" || parts[0] === "curve25519") && !isKey32(key)) throw new KeyError("M_INVALID_PARAM", `device key ${name} is not a 32-byte unpadded base64 key`);
  }
  const ed = v.keys[`ed25519:${deviceId}`];
  if (typeof ed !== "string") throw new KeyError("M_BAD_JSON", `device_keys.keys must hold ed25519:${deviceId}`);
  if (typeof v.signatures[userId]?.[`ed25519:${deviceId}`] !== "string") throw new KeyError("M_INVALID_SIGNATURE", "device_keys must be signed by the device's ed25519 key");
  if (!verifyJsonSignature(v, userId, `ed25519:${deviceId}`, ed)) throw new KeyError("M_INVALID_SIGNATURE", "The device's self-signature on device_keys does not verify");
  return v as DeviceKeys;
}

/**
 * The identity keys of two uploads of one device differ (Synapse refuses such a change for an existing device id).
 * A device that had none may gain them.
 */
export function identityKeysChanged(before: DeviceKeys, after: DeviceKeys): boolean {
  if (before.keys === undefined) return false;
  return canonicalJson(before.keys) !== canonicalJson(after.keys ?? null);
}

/** One key of `one_time_keys` or `fallback_keys`: the parsed name and the value to store. */
export interface UploadedKey {
  algorithm: string;
  keyId: string;
  /** The key as uploaded: a string, or a KeyObject (`key`, `signatures`, optional `fallback`). */
  value: string | JsonObject;
}

/**
 * One-time or fallback keys of POST /keys/upload ("The names of the properties should be in the format
 * `<algorithm>:<key_id>`"). A `signed_*` key is a KeyObject signed by the device (`signedBy`: the device's ed25519
 * key, when known, is checked); a `curve25519` key is a bare 32-byte key. Other algorithms pass as strings or objects.
 */
export function checkUploadedKeys(v: unknown, what: string, userId: string, deviceId: string, signedBy: string | undefined): UploadedKey[] {
  if (!isJsonObject(v)) throw new KeyError("M_BAD_JSON", `${what} must be an object`);
  const out: UploadedKey[] = [];
  for (const [name, value] of Object.entries(v)) {
    const parts = splitKeyId(name);
    if (!parts) throw new KeyError("M_INVALID_PARAM", `${what}: ${name} must be named <algorithm>:<key_id>`);
    const [algorithm, keyId] = parts;
    if (typeof value === "string") {
      if (algorithm.startsWith("signed_")) throw new KeyError("M_INVALID_SIGNATURE", `${what}: ${name} must be a signed key object`);
      if (algorithm === "curve25519" && !isKey32(value)) throw new KeyError("M_INVALID_PARAM", `${what}: ${name} is not a 32-byte unpadded base64 key`);
    } else if (isJsonObject(value)) {
      if (typeof value.key !== "string") throw new KeyError("M_BAD_JSON", `${what}: ${name}.key must be a string`);
      if (algorithm === "signed_curve25519" && !isKey32(value.key)) throw new KeyError("M_INVALID_PARAM", `${what}: ${name}.key is not a 32-byte unpadded base64 key`);
      if (value.signatures !== undefined && !isSignatureMap(value.signatures)) throw new KeyError("M_BAD_JSON", `${what}: ${name}.signatures must be an object`);
      if (algorithm.startsWith("signed_")) {
        if (typeof value.signatures?.[userId]?.[`ed25519:${deviceId}`] !== "string") throw new KeyError("M_INVALID_SIGNATURE", `${what}: ${name} must be signed by the device`);
        if (signedBy !== undefined && !verifyJsonSignature(value, userId, `ed25519:${deviceId}`, signedBy)) throw new KeyError("M_INVALID_SIGNATURE", `${what}: the signature on ${name} does not verify`);
      }
    } else {
      throw new KeyError("M_BAD_JSON", `${what}: ${name} must be a string or a key object`);
    }
    out.push({ algorithm, keyId, value });
  }
  return out;
}

/**
 * A cross-signing key of POST /keys/device_signing/upload: for the user, with the usage its slot needs, exactly one
 * ed25519 key named by itself. Returns its public key. ("keys: The public key. The object must have exactly one
 * property, whose name is in the form `<algorithm>:<unpadded_base64_public_key>`".)
 */
export function checkCrossSigningKey(v: unknown, userId: string, type: CrossSigningType): { key: CrossSigningKey; publicKey: string } {
  if (!isJsonObject(v)) throw new KeyError("M_BAD_JSON", `${type}_key must be an object`);
  if (v.user_id !== userId) throw new KeyError("M_INVALID_PARAM", `Invalid ${type} key: user_id must be ${userId}`);
  if (!Array.isArray(v.usage) || !v.usage.every((u) => typeof u === "string") || !v.usage.includes(type)) throw new KeyError("M_INVALID_PARAM", `Invalid ${type} key: usage must include ${type}`);
  const publicKey = crossSigningPublicKey(v);
  if (publicKey === undefined) throw new KeyError("M_INVALID_PARAM", `Invalid ${type} key: keys must hold exactly one ed25519:<public key>`);
  if (v.signatures !== undefined && !isSignatureMap(v.signatures)) throw new KeyError("M_BAD_JSON", `${type}_key.signatures must be an object`);
  return { key: v as CrossSigningKey, publicKey };
}

/** The public key of a cross-signing key object, when it holds exactly one well-formed ed25519 key. */
export function crossSigningPublicKey(v: JsonObject): string | undefined {
  if (!isJsonObject(v.keys)) return undefined;
  const entries = Object.entries(v.keys);
  if (entries.length !== 1) return undefined;
  const [name, key] = entries[0]!;
  if (name !== `ed25519:${String(key)}` || !isKey32(key)) return undefined;
  return key;
}

/** Whether `obj` carries a valid signature by `signerUserId`'s key `ed25519:<publicKey>`. */
export function signedByCrossSigningKey(obj: JsonObject, signerUserId: string, publicKey: string): boolean {
  return verifyJsonSignature(obj, signerUserId, `ed25519:${publicKey}`, publicKey);
}

/** A key object without `signatures` and `unsigned`, canonical: what two copies of one key must agree on. */
export function signedContent(obj: JsonObject): string {
  const { signatures: _s, unsigned: _u, ...rest } = obj;
  return canonicalJson(rest);
}
