/**
 * Cross-signing (client-server "Cross-signing"): a user's master, self-signing and user-signing keys, and the
 * signatures users upload over device keys and master keys. What a requester sees of them is decided here too:
 * signatures by another user's user-signing key are private to that signer.
 */
import { isJsonObject, type JsonObject } from "../core/json/types.js";
import {
  KeyError,
  checkCrossSigningKey,
  crossSigningPublicKey,
  signedByCrossSigningKey,
  signedContent,
  type CrossSigningKey,
  type CrossSigningType,
} from "../core/e2e/keys.js";
import { verifyJsonSignature } from "../core/crypto/signing.js";
import { userIdDomain } from "../core/ids/ids.js";
import { MatrixError, badJson } from "../errors.js";
import type { SignatureRow } from "../storage/e2e_keys.js";
import type { Storage } from "../storage/storage.js";
import type { DeviceListService } from "./device_lists.js";

const TYPES: readonly CrossSigningType[] = ["master", "self_signing", "user_signing"];
/** A signatures upload names at most this many keys: each is a signature check and a write. */
export const MAX_SIGNED_KEYS_PER_UPLOAD = 1000;

export const keyError = (e: KeyError) => new MatrixError(400, e.errcode, e.message);

/** The cross-signing keys of several users, as /keys/query and federation return them. */
export interface CrossSigningView {
  master_keys: Record<string, JsonObject>;
  self_signing_keys: Record<string, JsonObject>;
  user_signing_keys: Record<string, JsonObject>;
}

export class CrossSigningService {
  constructor(
    private readonly storage: Storage,
    private readonly deviceLists: DeviceListService,
  ) {}

  private async stored(userId: string): Promise<Map<CrossSigningType, CrossSigningKey>> {
    const out = new Map<CrossSigningType, CrossSigningKey>();
    for (const r of await this.storage.e2eKeys.crossSigningKeys([userId])) out.set(r.key_type as CrossSigningType, JSON.parse(r.key_json) as CrossSigningKey);
    return out;
  }

  /**
   * Whether POST /keys/device_signing/upload needs User-Interactive Auth: replacing an existing master key does
   * (the spec, MSC3967: "the first upload … does not require UIA"); so does any change once a master key exists. An
   * upload identical to what is stored is idempotent and needs none (as Synapse).
   */
  async uploadNeedsAuth(userId: string, body: JsonObject): Promise<boolean> {
    const stored = await this.stored(userId);
    if (!stored.has("master")) return false;
    for (const t of TYPES) {
      const k = body[`${t}_key`];
      if (k === undefined) continue;
      const s = stored.get(t);
      if (!s || !isJsonObject(k) || JSON.stringify(canonicalOrder(k)) !== JSON.stringify(canonicalOrder(s))) return true;
    }
    return false;
  }

  /**
   * POST /keys/device_signing/upload: each key for the user with its usage; self-signing and user-signing keys
   * signed by the master key (the new one, or the stored one). A new master key makes signatures over the old one
   * void. Stored together; then the device-list change and m.signing_key_update.
   */
  async upload(userId: string, body: JsonObject): Promise<void> {
    const given = new Map<CrossSigningType, { key: CrossSigningKey; publicKey: string }>();
    try {
      for (const t of TYPES) if (body[`${t}_key`] !== undefined) given.set(t, checkCrossSigningKey(body[`${t}_key`], userId, t));
    } catch (e) {
      if (e instanceof KeyError) throw keyError(e);
      throw e;
    }
    if (given.size === 0) return;
    const stored = await this.stored(userId);
    const masterPub = given.get("master")?.publicKey ?? (stored.get("master") ? crossSigningPublicKey(stored.get("master")!) : undefined);
    if (masterPub === undefined) throw new MatrixError(400, "M_MISSING_PARAM", "No master key available to verify the other cross-signing keys");
    for (const t of ["self_signing", "user_signing"] as const) {
      const k = given.get(t);
      if (k && !signedByCrossSigningKey(k.key, userId, masterPub)) throw new MatrixError(400, "M_INVALID_SIGNATURE", `Invalid signature on ${t} key: it must be signed by the master key`);
    }
    const changed = [...given].filter(([t, k]) => signedContentOf(stored.get(t)) !== JSON.stringify(canonicalOrder(k.key)));
    if (changed.length === 0) return;
    const now = Date.now();
    await this.storage.transaction(async (tx) => {
      for (const [t, k] of changed) {
        const old = stored.get(t);
        const oldPub = old ? crossSigningPublicKey(old) : undefined;
        if (oldPub !== undefined && oldPub !== k.publicKey) await tx.e2eKeys.deleteSignaturesOver(userId, oldPub);
        await tx.e2eKeys.setCrossSigningKey(userId, t, JSON.stringify(k.key), now);
      }
    });
    const content: { master_key?: JsonObject; self_signing_key?: JsonObject } = {};
    for (const [t, k] of changed) if (t !== "user_signing") content[`${t}_key`] = k.key;
    await this.deviceLists.localSigningKeysChanged(userId, content);
  }

  /**
   * POST /keys/signatures/upload: `{userId: {keyId: signed key object}}`, where keyId is a device id or a
   * cross-signing public key. Every signature is checked: over one's own devices by one's self-signing key, over
   * one's own master key by one of one's devices, over another user's master key by one's user-signing key. Each
   * signed object must be the key we hold (bar signatures). Good signatures are stored; the rest are `failures`.
   */
  async uploadSignatures(userId: string, body: unknown): Promise<{ failures: Record<string, Record<string, { errcode: string; error: string }>> }> {
    if (!isJsonObject(body)) throw badJson("Content must be a JSON object.");
    const entries = Object.entries(body);
    let count = 0;
    for (const [, byKey] of entries) {
      if (!isJsonObject(byKey)) throw badJson("Each user's entry must be an object of key IDs to signed keys");
      count += Object.keys(byKey).length;
    }
    if (count > MAX_SIGNED_KEYS_PER_UPLOAD) throw new MatrixError(400, "M_INVALID_PARAM", `At most ${MAX_SIGNED_KEYS_PER_UPLOAD} keys may be signed per request`);
    const failures: Record<string, Record<string, { errcode: string; error: string }>> = {};
    const fail = (u: string, k: string, errcode: string, error: string) => ((failures[u] ??= {})[k] = { errcode, error });
    const mine = await this.stored(userId);
    const selfSigningPub = mine.get("self_signing") ? crossSigningPublicKey(mine.get("self_signing")!) : undefined;
    const userSigningPub = mine.get("user_signing") ? crossSigningPublicKey(mine.get("user_signing")!) : undefined;
    const rows: SignatureRow[] = [];
    const devicesSigned: string[] = [];
    let ownMasterSigned = false;
    const othersSigned = new Set<string>();
    for (const [targetUser, byKey] of entries as [string, JsonObject][]) {
      for (const [keyId, signed] of Object.entries(byKey)) {
        if (!isJsonObject(signed) || !isJsonObject(signed.signatures)) {
          fail(targetUser, keyId, "M_INVALID_PARAM", "A signed key object with signatures is required");
          continue;
        }
        const mySigs = signed.signatures[userId];
        if (!isJsonObject(mySigs) || Object.keys(mySigs).length === 0) {
          fail(targetUser, keyId, "M_INVALID_PARAM", `No signatures by ${userId}`);
          continue;
        }
        if (targetUser === userId) {
          const deviceJson = await this.storage.e2eKeys.deviceKey(userId, keyId);
          const master = mine.get("master");
          if (deviceJson !== undefined) {
            // One's own device, signed by one's self-signing key.
            if (selfSigningPub === undefined) {
              fail(targetUser, keyId, "M_NOT_FOUND", "No self-signing key to verify the signature with");
              continue;
            }
            const sigs = this.check(signed, JSON.parse(deviceJson) as JsonObject, userId, selfSigningPub);
            if (typeof sigs === "string") fail(targetUser, keyId, "M_INVALID_SIGNATURE", sigs);
            else {
              rows.push({ target_user_id: userId, target_key_id: keyId, signer_user_id: userId, signer_key_id: `ed25519:${selfSigningPub}`, signature: sigs.sig });
              devicesSigned.push(keyId);
            }
          } else if (master && crossSigningPublicKey(master) === keyId) {
            // One's own master key, signed by one of one's devices (or another of one's own keys).
            const ok = await this.ownMasterSignatures(userId, signed, master, keyId);
            if (typeof ok === "string") fail(targetUser, keyId, "M_INVALID_SIGNATURE", ok);
            else {
              rows.push(...ok);
              ownMasterSigned = true;
            }
          } else {
            fail(targetUser, keyId, "M_NOT_FOUND", "Unknown key: not a device or the master key of this user");
          }
        } else {
          if (userSigningPub === undefined) {
            fail(targetUser, keyId, "M_NOT_FOUND", "No user-signing key to verify the signature with");
            continue;
          }
          const theirs = (await this.storage.e2eKeys.crossSigningKeys([targetUser])).find((r) => r.key_type === "master");
          const master = theirs ? (JSON.parse(theirs.key_json) as JsonObject) : undefined;
          if (!master || crossSigningPublicKey(master) !== keyId) {
            fail(targetUser, keyId, "M_NOT_FOUND", "Unknown key: only another user's master key can be signed");
            continue;
          }
          const sigs = this.check(signed, master, userId, userSigningPub);
          if (typeof sigs === "string") fail(targetUser, keyId, "M_INVALID_SIGNATURE", sigs);
          else {
            rows.push({ target_user_id: targetUser, target_key_id: keyId, signer_user_id: userId, signer_key_id: `ed25519:${userSigningPub}`, signature: sigs.sig });
            othersSigned.add(targetUser);
          }
        }
      }
    }
    if (rows.length > 0) await this.storage.e2eKeys.addSignatures(rows);
    if (devicesSigned.length > 0) await this.deviceLists.localChanged(userId, devicesSigned, false);
    if (ownMasterSigned) {
      const master = (await this.view([userId], userId)).master_keys[userId];
      await this.deviceLists.localSigningKeysChanged(userId, master ? { master_key: master } : {});
    }
    // The signer's own clients learn that those users' keys changed (the signature is visible to them alone).
    await this.deviceLists.signaturesByUserChanged(userId, [...othersSigned]);
    return { failures };
  }

  /** The signature `signer` made with `ed25519:<pub>` over `signed`, when `signed` is `held` and it verifies. */
  private check(signed: JsonObject, held: JsonObject, signer: string, pub: string): { sig: string } | string {
    if (signedContent(signed) !== signedContent(held)) return "The signed object does not match the key held";
    if (!signedByCrossSigningKey(signed, signer, pub)) return "Invalid signature";
    return { sig: ((signed.signatures as JsonObject)[signer] as Record<string, string>)[`ed25519:${pub}`]! };
  }

  private async ownMasterSignatures(userId: string, signed: JsonObject, master: JsonObject, pub: string): Promise<SignatureRow[] | string> {
    if (signedContent(signed) !== signedContent(master)) return "The signed object does not match the master key held";
    const devices = new Map((await this.storage.e2eKeys.deviceKeys([userId])).map((r) => [r.device_id, JSON.parse(r.key_json) as JsonObject]));
    const rows: SignatureRow[] = [];
    for (const [signerKeyId, sig] of Object.entries((signed.signatures as JsonObject)[userId] as JsonObject)) {
      if (signerKeyId === `ed25519:${pub}`) continue; // its own self-signature is already in the key
      const deviceId = signerKeyId.startsWith("ed25519:") ? signerKeyId.slice("ed25519:".length) : undefined;
      const deviceKey = deviceId !== undefined ? (devices.get(deviceId)?.keys as Record<string, string> | undefined)?.[signerKeyId] : undefined;
      if (deviceKey === undefined || typeof sig !== "string") return `Unknown signing key ${signerKeyId}`;
      if (!verifyJsonSignature(signed, userId, signerKeyId, deviceKey)) return `Invalid signature by ${signerKeyId}`;
      rows.push({ target_user_id: userId, target_key_id: pub, signer_user_id: userId, signer_key_id: signerKeyId, signature: sig });
    }
    if (rows.length === 0) return "No signature by a device of the user";
    return rows;
  }

  /**
   * The cross-signing keys of `userIds` as `viewer` may see them (viewer undefined: another server). Each key gets
   * the uploaded signatures by its owner and, for a viewer, their own; `user_signing_keys` only for the viewer.
   */
  async view(userIds: readonly string[], viewer: string | undefined): Promise<CrossSigningView> {
    const out: CrossSigningView = { master_keys: {}, self_signing_keys: {}, user_signing_keys: {} };
    const rows = await this.storage.e2eKeys.crossSigningKeys(userIds);
    if (rows.length === 0) return out;
    const sigs = await this.storage.e2eKeys.signaturesOver([...new Set(rows.map((r) => r.user_id))]);
    for (const r of rows) {
      if (r.key_type === "user_signing" && r.user_id !== viewer) continue;
      const key = JSON.parse(r.key_json) as JsonObject;
      const pub = crossSigningPublicKey(key);
      addSignatures(
        key,
        sigs.filter((s) => s.target_user_id === r.user_id && s.target_key_id === pub && (s.signer_user_id === r.user_id || s.signer_user_id === viewer)),
      );
      const slot = r.key_type === "master" ? out.master_keys : r.key_type === "self_signing" ? out.self_signing_keys : out.user_signing_keys;
      slot[r.user_id] = key;
    }
    return out;
  }

  /**
   * Stores the cross-signing keys a remote server reported for its user (m.signing_key_update, GET
   * /user/devices): only well-formed keys of that user with their usage.
   */
  async storeRemote(origin: string, userId: string, keys: { master_key?: unknown; self_signing_key?: unknown }): Promise<boolean> {
    if (userIdDomain(userId) !== origin) return false;
    let changed = false;
    for (const t of ["master", "self_signing"] as const) {
      const k = keys[`${t}_key`];
      if (k === undefined) continue;
      try {
        checkCrossSigningKey(k, userId, t);
      } catch {
        continue;
      }
      await this.storage.e2eKeys.setCrossSigningKey(userId, t, JSON.stringify(k), Date.now());
      changed = true;
    }
    return changed;
  }
}

/** Merges uploaded signatures into a key object's `signatures`. */
export function addSignatures(key: JsonObject, rows: readonly SignatureRow[]): void {
  if (rows.length === 0) return;
  const sigs = (isJsonObject(key.signatures) ? key.signatures : (key.signatures = {})) as Record<string, Record<string, string>>;
  for (const s of rows) (sigs[s.signer_user_id] ??= {})[s.signer_key_id] = s.signature;
}

function signedContentOf(k: JsonObject | undefined): string | undefined {
  return k ? JSON.stringify(canonicalOrder(k)) : undefined;
}

/** A key object with its properties in a stable order, for comparing two copies (signatures included). */
function canonicalOrder(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(canonicalOrder);
  if (!isJsonObject(v)) return v;
  return Object.fromEntries(Object.keys(v).sort().map((k) => [k, canonicalOrder(v[k])]));
}
