/**
 * Dehydrated devices (MSC3814, as Element uses it): a device a client leaves in the user's account to receive
 * to-device messages (megolm keys) while none of the user's devices is online, which a later login rehydrates by
 * decrypting `device_data` and reading its messages. It is a real device — a `devices` row, with keys that go
 * through /keys/upload's checks, shown in /keys/query and announced as a device-list change — but it never gets an
 * access token, and GET /devices leaves it out (as Synapse). Each user has at most one; a new one replaces it.
 */
import { KeyError, checkDeviceKeys, checkUploadedKeys } from "../core/e2e/keys.js";
import { isJsonObject, type JsonObject } from "../core/json/types.js";
import { badJson, forbidden, invalidParam, notFound } from "../errors.js";
import type { Storage } from "../storage/storage.js";
import { KeyedLock } from "../util/keyed_lock.js";
import { keyError } from "./cross_signing.js";
import type { DeviceService } from "./devices.js";
import { MAX_ONE_TIME_KEYS_PER_UPLOAD, type E2eKeyService } from "./e2e_keys.js";
import type { ToDeviceService } from "./to_device.js";

/** Device ids are at most 255 characters, as at login. */
const MAX_DEVICE_ID_LENGTH = 255;

export interface DehydratedDeviceDeps {
  storage: Storage;
  devices: DeviceService;
  e2eKeys: E2eKeyService;
  toDevice: ToDeviceService;
}

export class DehydratedDeviceService {
  /** One replacement or deletion per user at a time: each reads which device is the dehydrated one. */
  private readonly lock = new KeyedLock();

  constructor(private readonly deps: DehydratedDeviceDeps) {}

  /** The user's dehydrated device id, if any. */
  async deviceId(userId: string): Promise<string | undefined> {
    return (await this.deps.storage.dehydratedDevices.get(userId))?.device_id;
  }

  /**
   * PUT dehydrated_device: checks the keys as /keys/upload does (and its limits) before anything changes, then replaces the user's
   * dehydrated device (the previous one goes with its keys and messages) and uploads the new one's keys.
   */
  async put(userId: string, body: unknown): Promise<{ device_id: string }> {
    if (!isJsonObject(body)) throw badJson("Content must be a JSON object.");
    const { device_id: deviceId, device_data: deviceData, initial_device_display_name: name } = body;
    if (typeof deviceId !== "string" || deviceId.length === 0 || deviceId.length > MAX_DEVICE_ID_LENGTH) throw badJson(`device_id must be a string of 1 to ${MAX_DEVICE_ID_LENGTH} characters`);
    if (!isJsonObject(deviceData)) throw badJson("device_data must be an object");
    if (name !== undefined && name !== null && typeof name !== "string") throw badJson("initial_device_display_name must be a string");
    const keys: JsonObject = {};
    for (const k of ["device_keys", "one_time_keys", "fallback_keys"] as const) if (body[k] !== undefined && body[k] !== null) keys[k] = body[k];
    try {
      const dk = keys.device_keys !== undefined ? checkDeviceKeys(keys.device_keys, userId, deviceId) : undefined;
      const ed = dk?.keys?.[`ed25519:${deviceId}`];
      const otks = keys.one_time_keys !== undefined ? checkUploadedKeys(keys.one_time_keys, "one_time_keys", userId, deviceId, ed) : [];
      if (otks.length > MAX_ONE_TIME_KEYS_PER_UPLOAD) throw invalidParam(`At most ${MAX_ONE_TIME_KEYS_PER_UPLOAD} one-time keys may be uploaded at once`);
      const fallbacks = keys.fallback_keys !== undefined ? checkUploadedKeys(keys.fallback_keys, "fallback_keys", userId, deviceId, ed) : [];
      if (new Set(fallbacks.map((f) => f.algorithm)).size < fallbacks.length) throw invalidParam("Only one fallback key per algorithm");
    } catch (e) {
      if (e instanceof KeyError) throw keyError(e);
      throw e;
    }
    const { storage, devices, e2eKeys } = this.deps;
    return this.lock.run(userId, async () => {
      const previous = await storage.dehydratedDevices.recordedId(userId);
      // Only a fresh id, or the dehydrated device's own: a logged-in device never becomes the dehydrated one.
      if (previous !== deviceId && (await storage.devices.get(userId, deviceId))) throw invalidParam(`${deviceId} is one of the user's devices already`);
      const now = Date.now();
      await storage.transaction(async (tx) => {
        // No tokens to revoke: a dehydrated device never had any.
        if (previous !== undefined) await devices.deleteInTx(tx, userId, [previous]);
        await tx.devices.upsert(userId, deviceId, typeof name === "string" ? name : null, now);
        await tx.dehydratedDevices.set(userId, deviceId, JSON.stringify(deviceData), now);
      });
      if (previous !== undefined && previous !== deviceId) await devices.changed(userId, [previous], true);
      await devices.changed(userId, [deviceId], false);
      try {
        await e2eKeys.upload(userId, deviceId, keys);
      } catch (e) {
        // Everything the upload refuses was checked above; should it fail still, no half-made device is left.
        await this.removeLocked(userId, deviceId);
        throw e;
      }
      return { device_id: deviceId };
    });
  }

  /** GET dehydrated_device: its id and data; 404 M_NOT_FOUND when the user has none. */
  async get(userId: string): Promise<{ device_id: string; device_data: JsonObject }> {
    const row = await this.deps.storage.dehydratedDevices.get(userId);
    if (!row) throw notFound("No dehydrated device");
    return { device_id: row.device_id, device_data: JSON.parse(row.device_data) as JsonObject };
  }

  /** DELETE dehydrated_device: the device goes, with its keys and messages. */
  async delete(userId: string): Promise<{ device_id: string }> {
    return this.lock.run(userId, async () => {
      const row = await this.deps.storage.dehydratedDevices.get(userId);
      if (!row) {
        await this.deps.storage.dehydratedDevices.delete(userId);
        throw notFound("No dehydrated device");
      }
      await this.removeLocked(userId, row.device_id);
      return { device_id: row.device_id };
    });
  }

  /**
   * POST dehydrated_device/{deviceId}/events: the device's to-device messages in batches, as /sync hands them out:
   * `next_batch` of one call, given to the next, acknowledges (deletes) what the first returned (as Synapse; the
   * MSC would keep them). A batch with no events is the end. 403 M_FORBIDDEN for any other device id.
   */
  async events(userId: string, deviceId: string, body: unknown): Promise<{ events: JsonObject[]; next_batch: string }> {
    if (!isJsonObject(body)) throw badJson("Content must be a JSON object.");
    const token = body.next_batch;
    if (token !== undefined && token !== null && (typeof token !== "string" || !/^\d{1,15}$/.test(token))) throw invalidParam("Invalid next_batch");
    if ((await this.deviceId(userId)) !== deviceId) throw forbidden("Not the user's dehydrated device");
    const since = typeof token === "string" ? Number(token) : 0;
    const { toDevice } = this.deps;
    const r = await toDevice.forSync(userId, deviceId, since, toDevice.position());
    return { events: r.events, next_batch: String(r.position) };
  }

  private async removeLocked(userId: string, deviceId: string): Promise<void> {
    const { storage, devices } = this.deps;
    await storage.transaction(async (tx) => {
      await devices.deleteInTx(tx, userId, [deviceId]);
      await tx.dehydratedDevices.delete(userId);
    });
    await devices.changed(userId, [deviceId], true);
  }
}
