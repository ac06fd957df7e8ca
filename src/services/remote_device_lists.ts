/**
 * Remote users' device lists (server-server "Device Management"): a cache of the devices and cross-signing keys of
 * other servers' users we share a room with, kept current from `m.device_list_update` EDUs by following their
 * `prev_id` chain, and resynced through `GET /user/devices/{userId}` when the chain has a gap ("If a server
 * receives an update with a prev_id it does not recognise, it must resync its list by calling the /user/keys/query
 * API" — Synapse, and we, use /user/devices, which carries the stream_id to continue from). /keys/query answers from
 * the cache when it is current. Inbound `m.signing_key_update` updates the cross-signing keys.
 */
import type { Logger } from "pino";
import { encodePath, type FederationClient } from "../federation/client.js";
import { userIdDomain } from "../core/ids/ids.js";
import { isJsonObject, type JsonObject } from "../core/json/types.js";
import type { RemoteDeviceRow } from "../storage/e2e_keys.js";
import type { Storage } from "../storage/storage.js";
import { KeyedLock } from "../util/keyed_lock.js";
import type { CrossSigningService } from "./cross_signing.js";
import type { DeviceListService } from "./device_lists.js";
import type { StoredEvent } from "./rooms/event_cache.js";
import type { EventConsumer } from "./rooms/pipeline/consumers.js";

/** A remote user's keys as /keys/query shows them. */
export interface RemoteUserKeys {
  devices: Record<string, JsonObject>;
  master_key?: JsonObject;
  self_signing_key?: JsonObject;
}

export interface RemoteDeviceListDeps {
  storage: Storage;
  federation: FederationClient;
  deviceLists: DeviceListService;
  crossSigning: CrossSigningService;
  log: Logger;
}

const RESYNC_TIMEOUT_MS = 10_000;

export class RemoteDeviceLists {
  /** One update or resync at a time per user: the prev_id check reads what the previous one wrote. */
  private readonly lock = new KeyedLock();

  constructor(private readonly deps: RemoteDeviceListDeps) {}

  /** Whether a local user shares a room with this remote user: only then do we keep their list current. */
  private async tracked(userId: string): Promise<boolean> {
    return (await this.deps.storage.rooms.roomsForUser(userId, ["join"])).length > 0;
  }

  /** An inbound `m.device_list_update` (only about the origin's own users). */
  async onDeviceListUpdate(origin: string, c: JsonObject): Promise<void> {
    const { user_id: userId, device_id: deviceId, stream_id: streamId } = c;
    if (typeof userId !== "string" || userIdDomain(userId) !== origin || typeof deviceId !== "string" || typeof streamId !== "number") return;
    const prevIds = Array.isArray(c.prev_id) ? c.prev_id.filter((p): p is number => typeof p === "number") : [];
    const applied = await this.lock.run(userId, async () => {
      if (!(await this.tracked(userId))) {
        // Nothing to keep current; a cache left from a shared room no longer gets updates we can trust.
        await this.deps.storage.e2eKeys.forgetRemoteUser(userId);
        return false;
      }
      const [cached] = await this.deps.storage.e2eKeys.remoteUsers([userId]);
      if (cached && cached.stale === 0 && streamId <= cached.stream_id) return false; // already applied
      // Synapse's rule: apply only when every prev_id is the update we applied last; an empty prev_id, an unknown
      // one or no cache at all means we may have missed updates, so resync the whole list.
      const inChain = cached !== undefined && cached.stale === 0 && prevIds.length > 0 && prevIds.every((p) => p === cached.stream_id);
      if (!inChain) {
        // A resync records the change itself; one that failed left nothing new to tell.
        await this.resyncLocked(userId);
        return false;
      } else {
        const { storage } = this.deps;
        await storage.transaction(async (tx) => {
          if (c.deleted === true) await tx.e2eKeys.deleteRemoteDevice(userId, deviceId);
          else {
            const keys = remoteKeys(c.keys, userId, deviceId);
            const name = typeof c.device_display_name === "string" ? c.device_display_name : null;
            await tx.e2eKeys.upsertRemoteDevice({ user_id: userId, device_id: deviceId, display_name: name, key_json: keys ? JSON.stringify(keys) : null });
          }
          await tx.e2eKeys.setRemoteUser(userId, streamId, false);
        });
        return true;
      }
    });
    if (applied) await this.deps.deviceLists.remoteChanged(origin, c);
  }

  /** An inbound `m.signing_key_update`: the user's new master and/or self-signing key. */
  async onSigningKeyUpdate(origin: string, c: JsonObject): Promise<void> {
    const userId = c.user_id;
    if (typeof userId !== "string" || userIdDomain(userId) !== origin) return;
    if (!(await this.tracked(userId))) return;
    if (await this.deps.crossSigning.storeRemote(origin, userId, { master_key: c.master_key, self_signing_key: c.self_signing_key })) {
      await this.deps.deviceLists.remoteChanged(origin, { user_id: userId });
    }
  }

  /**
   * Persisted-event consumer: when we start sharing a room with a remote user again (they join a room of ours, or
   * the first local user joins a room of theirs), updates sent while we shared none may have been missed, so their
   * cached list becomes stale and the next query resyncs it (as Synapse marks such users for resync).
   */
  staleOnJoinConsumer(serverName: string): EventConsumer {
    return {
      name: "remote device lists on join",
      committed: (e) => {
        if (!isLiveJoin(e)) return;
        void this.markStaleOnJoin(serverName, e).catch((err: unknown) => this.deps.log.warn({ err, eventId: e.event.event_id }, "marking device lists stale on a join failed"));
      },
    };
  }

  private async markStaleOnJoin(serverName: string, e: StoredEvent): Promise<void> {
    const userId = e.event.state_key!;
    const { storage } = this.deps;
    let candidates: string[];
    if (userIdDomain(userId) === serverName) {
      const members = await storage.rooms.members(e.event.room_id, ["join"]);
      // Our server was in the room already: its members' lists were kept current.
      if (members.filter((m) => userIdDomain(m.user_id) === serverName).length > 1) return;
      candidates = members.map((m) => m.user_id).filter((u) => userIdDomain(u) !== serverName);
    } else {
      if ((await storage.rooms.roomsForUser(userId, ["join"])).length > 1) return;
      candidates = [userId];
    }
    for (const u of candidates) await this.lock.run(u, () => storage.e2eKeys.markRemoteStale(u));
  }

  /** Resyncs a user's list from their server; false when it could not be reached (the cache is then stale). */
  resync(userId: string): Promise<boolean> {
    return this.lock.run(userId, () => this.resyncLocked(userId));
  }

  private async resyncLocked(userId: string, timeoutMs = RESYNC_TIMEOUT_MS): Promise<boolean> {
    const server = userIdDomain(userId)!;
    const { storage, log } = this.deps;
    let res: JsonObject;
    try {
      res = await this.deps.federation.get(server, encodePath`/_matrix/federation/v1/user/devices/${userId}`, undefined, { timeoutMs });
    } catch (err) {
      log.info({ err, userId }, "device list resync failed; keeping the cached list, marked stale");
      await storage.e2eKeys.markRemoteStale(userId);
      return false;
    }
    if (res.user_id !== userId || typeof res.stream_id !== "number" || !Array.isArray(res.devices)) {
      await storage.e2eKeys.markRemoteStale(userId);
      return false;
    }
    const rows: RemoteDeviceRow[] = [];
    for (const d of res.devices) {
      if (!isJsonObject(d) || typeof d.device_id !== "string") continue;
      const keys = remoteKeys(d.keys, userId, d.device_id);
      rows.push({ user_id: userId, device_id: d.device_id, display_name: typeof d.device_display_name === "string" ? d.device_display_name : null, key_json: keys ? JSON.stringify(keys) : null });
    }
    const streamId = res.stream_id;
    await storage.transaction(async (tx) => {
      await tx.e2eKeys.replaceRemoteDevices(userId, rows);
      await tx.e2eKeys.setRemoteUser(userId, streamId, false);
    });
    await this.deps.crossSigning.storeRemote(server, userId, { master_key: res.master_key, self_signing_key: res.self_signing_key });
    // Local room-mates' clients may hold an older copy (or none, and have just been answered from this one): the
    // list is news, as Synapse notifies after every resync.
    await this.deps.deviceLists.remoteChanged(server, { user_id: userId });
    return true;
  }

  /**
   * The keys of the given remote users we can answer from the cache: those we track whose list is current (a
   * tracked user with no cache, or a stale one, is resynced first, within `timeoutMs`). Users missing from the
   * answer must be asked through /user/keys/query.
   */
  async cached(userIds: readonly string[], timeoutMs: number): Promise<Map<string, RemoteUserKeys>> {
    const out = new Map<string, RemoteUserKeys>();
    if (userIds.length === 0) return out;
    const { e2eKeys } = this.deps.storage;
    const current = new Map((await e2eKeys.remoteUsers(userIds)).map((r) => [r.user_id, r.stale === 0]));
    const usable: string[] = [];
    await Promise.all(
      userIds.map(async (u) => {
        if (!(await this.tracked(u))) return;
        if (current.get(u) === true) usable.push(u);
        // A stale list whose server cannot be reached is still the best answer we have (as Synapse).
        else if ((await this.lock.run(u, () => this.resyncLocked(u, timeoutMs))) || current.has(u)) usable.push(u);
      }),
    );
    if (usable.length === 0) return out;
    for (const u of usable) out.set(u, { devices: {} });
    for (const d of await e2eKeys.remoteDevices(usable)) {
      if (d.key_json === null) continue;
      const keys = JSON.parse(d.key_json) as JsonObject;
      const unsigned = isJsonObject(keys.unsigned) ? keys.unsigned : {};
      keys.unsigned = d.display_name !== null ? { ...unsigned, device_display_name: d.display_name } : unsigned;
      out.get(d.user_id)!.devices[d.device_id] = keys;
    }
    for (const r of await e2eKeys.crossSigningKeys(usable)) {
      const entry = out.get(r.user_id)!;
      if (r.key_type === "master") entry.master_key = JSON.parse(r.key_json) as JsonObject;
      else if (r.key_type === "self_signing") entry.self_signing_key = JSON.parse(r.key_json) as JsonObject;
    }
    return out;
  }
}

/**
 * A remote device's `keys` as its server sent them: kept as given (checking them is for the clients that use them,
 * and Synapse relays them as is), except keys that claim another user or device, which are dropped.
 */
function remoteKeys(v: unknown, userId: string, deviceId: string): JsonObject | null {
  if (!isJsonObject(v)) return null;
  if ((v.user_id !== undefined && v.user_id !== userId) || (v.device_id !== undefined && v.device_id !== deviceId)) return null;
  return v;
}

/** A join into a room's live timeline (not history, an outlier, or a refused event). */
function isLiveJoin(e: StoredEvent): boolean {
  return e.event.type === "m.room.member" && e.event.content.membership === "join" && !!e.event.state_key && !e.outlier && !e.rejected && !e.softFailed && e.streamOrdering > 0;
}
