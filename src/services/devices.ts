/**
 * Devices (spec "Device Management"). Deleting a device ends its session: its access and refresh tokens and its
 * pending to-device messages and its published E2EE keys (device keys, one-time and fallback keys) go with it. Every change is announced through
 * `hooks.onChanged` (the device-list stream, see device_lists.ts).
 */
import { randomBytes } from "node:crypto";
import { notFound } from "../errors.js";
import type { Storage, Stores } from "../storage/storage.js";
import type { TokenService } from "./tokens.js";

export interface DeviceInfo {
  device_id: string;
  display_name?: string;
  last_seen_ip?: string;
  last_seen_ts?: number;
}

/** Device ids are 10 upper-case letters, as Synapse makes them. */
export function generateDeviceId(): string {
  const bytes = randomBytes(10);
  let id = "";
  for (const b of bytes) id += String.fromCharCode(65 + (b % 26));
  return id;
}

export interface DeviceHooks {
  /** A user's devices were created (or logged in to again), renamed or deleted; called after the change committed. */
  onChanged?: (userId: string, deviceIds: string[], deleted: boolean) => Promise<void>;
  /** Devices were deleted (with their pushers); called after the change committed. */
  onDeleted?: (userId: string, deviceIds: string[]) => void;
}

export class DeviceService {
  readonly hooks: DeviceHooks = {};
  /** last-seen updates, flushed in batches so a request never waits on them. */
  private readonly pendingSeen = new Map<string, { userId: string; deviceId: string; ts: number; ip: string | null; ua: string | null }>();
  private flushTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly storage: Storage,
    private readonly tokens: TokenService,
  ) {}

  async list(userId: string): Promise<DeviceInfo[]> {
    return (await this.storage.devices.list(userId)).map(toInfo);
  }

  /** GET /devices: every device but the dehydrated one (MSC3814; Synapse leaves it out too, it is no session). */
  async listForClient(userId: string): Promise<DeviceInfo[]> {
    const [all, dehydrated] = await Promise.all([this.storage.devices.list(userId), this.storage.dehydratedDevices.recordedId(userId)]);
    return all.filter((d) => d.device_id !== dehydrated).map(toInfo);
  }

  async get(userId: string, deviceId: string): Promise<DeviceInfo> {
    const d = await this.storage.devices.get(userId, deviceId);
    if (!d) throw notFound("Device not found");
    return toInfo(d);
  }

  async setDisplayName(userId: string, deviceId: string, displayName: string | null): Promise<void> {
    if (!(await this.storage.devices.setDisplayName(userId, deviceId, displayName))) throw notFound("Device not found");
    await this.changed(userId, [deviceId], false);
  }

  /** Announces committed device changes (see DeviceHooks). */
  async changed(userId: string, deviceIds: string[], deleted: boolean): Promise<void> {
    if (deleted) this.hooks.onDeleted?.(userId, deviceIds);
    if (deviceIds.length > 0) await this.hooks.onChanged?.(userId, deviceIds, deleted);
  }

  /** Deletes devices and everything that authenticates them, in the caller's transaction. Returns revoked token hashes. */
  async deleteInTx(tx: Stores, userId: string, deviceIds: string[]): Promise<string[]> {
    await tx.tokens.deleteRefreshTokens(userId, { deviceIds });
    const hashes = await tx.tokens.deleteAccessTokens(userId, { deviceIds });
    await tx.devices.delete(userId, deviceIds);
    await tx.deviceInbox.deleteForDevices(userId, deviceIds);
    await tx.peeks.removeDevices(userId, deviceIds);
    // A device's pushers go with it (Synapse removes them when the device logs out).
    await tx.push.deletePushersOfDevices(userId, deviceIds);
    await tx.e2eKeys.deleteDevices(userId, deviceIds);
    return hashes;
  }

  async delete(userId: string, deviceIds: string[]): Promise<void> {
    const existing = new Set((await this.storage.devices.list(userId)).map((d) => d.device_id));
    const hashes = await this.storage.transaction((tx) => this.deleteInTx(tx, userId, deviceIds));
    this.tokens.invalidate(hashes);
    await this.changed(userId, deviceIds.filter((d) => existing.has(d)), true);
  }

  /**
   * GET /admin/whois (spec "Server administration"): per device, one session whose one connection is the device's
   * last use (ip, last_seen, user_agent) — what the server keeps; devices never used from an address have none.
   */
  async whois(userId: string): Promise<Record<string, { sessions: { connections: { ip: string; last_seen: number; user_agent: string }[] }[] }>> {
    const out: Record<string, { sessions: { connections: { ip: string; last_seen: number; user_agent: string }[] }[] }> = {};
    for (const d of await this.storage.devices.list(userId)) {
      // A use not yet flushed to the database is the newest.
      const pending = this.pendingSeen.get(`${userId}|${d.device_id}`);
      const ip = pending?.ip ?? d.last_seen_ip;
      const lastSeen = pending?.ts ?? d.last_seen_ts;
      const ua = pending ? pending.ua : d.last_seen_user_agent;
      const connections = ip !== null && lastSeen !== null ? [{ ip, last_seen: lastSeen, user_agent: ua ?? "" }] : [];
      out[d.device_id] = { sessions: [{ connections }] };
    }
    return out;
  }

  /** Records that a device was used; written within a few seconds, off the request path. */
  noteSeen(userId: string, deviceId: string, ip: string | null, userAgent: string | null): void {
    this.pendingSeen.set(`${userId}|${deviceId}`, { userId, deviceId, ts: Date.now(), ip, ua: userAgent });
    if (!this.flushTimer) {
      this.flushTimer = setTimeout(() => void this.flushSeen(), 5000);
      this.flushTimer.unref();
    }
  }

  async flushSeen(): Promise<void> {
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    const batch = [...this.pendingSeen.values()];
    this.pendingSeen.clear();
    for (const s of batch) {
      try {
        await this.storage.devices.touch(s.userId, s.deviceId, s.ts, s.ip, s.ua);
      } catch {
        // Best effort: last-seen data is advisory.
      }
    }
  }
}

function toInfo(d: { device_id: string; display_name: string | null; last_seen_ip: string | null; last_seen_ts: number | null }): DeviceInfo {
  const out: DeviceInfo = { device_id: d.device_id };
  if (d.display_name !== null) out.display_name = d.display_name;
  if (d.last_seen_ip !== null) out.last_seen_ip = d.last_seen_ip;
  if (d.last_seen_ts !== null) out.last_seen_ts = d.last_seen_ts;
  return out;
}
