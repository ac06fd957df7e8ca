/**
 * Device lists (server-server "Device Management"; client-server /sync `device_lists`). Every change to a user's
 * devices — local (a new device at login or registration, a rename, a deletion) or reported by the user's server
 * (`m.device_list_update`, `m.signing_key_update`) — is numbered on the device-list stream; /sync lists the changed
 * users the syncing user shares a room with. Local changes also go, as `m.device_list_update` EDUs through the
 * durable federation outbox, to every server sharing a room with the user ("Servers must send
 * m.device_list_update EDUs to all the servers who share a room with a given local user").
 */
import { userIdDomain } from "../core/ids/ids.js";
import type { JsonObject } from "../core/json/types.js";
import { PRIVATE_CHANGE, signedByChange } from "../storage/device_lists.js";
import { StreamIdGenerator } from "../storage/stream_ids.js";
import type { DeviceStreamDeps } from "./to_device.js";

export class DeviceListService {
  private stream!: StreamIdGenerator;
  /** The published keys of local devices (e2e_keys.ts), for the `keys` of m.device_list_update; set by server.ts. */
  keysOf?: (userId: string, deviceIds: readonly string[]) => Promise<Map<string, JsonObject>>;

  constructor(private readonly deps: DeviceStreamDeps) {}

  async start(): Promise<void> {
    this.stream = new StreamIdGenerator(await this.deps.storage.deviceLists.maxStreamId());
  }

  /** The device-list stream's position for sync tokens. */
  position(): number {
    return this.stream.position();
  }

  /** The `stream_id` of a user's current device list (GET /user/devices): their newest change. */
  streamIdOf(userId: string): Promise<number> {
    return this.deps.storage.deviceLists.lastStreamId(userId);
  }

  /**
   * A local user's devices changed (after the change committed). Records it on the stream and queues one
   * `m.device_list_update` per device for each server sharing a room with the user, in one transaction: the EDUs
   * are in the outbox before the request that made the change is answered. `keys` are the device's published
   * identity keys (with the signatures others may see), absent while it has none.
   */
  async localChanged(userId: string, deviceIds: readonly string[], deleted: boolean): Promise<void> {
    if (deviceIds.length === 0) return;
    const { storage } = this.deps;
    const servers = new Set<string>();
    for (const r of await storage.rooms.roomsForUser(userId, ["join"])) for (const s of await storage.federation.serversInRoom(r.room_id)) servers.add(s);
    servers.delete(this.deps.serverName);
    const names = new Map<string, string | null>();
    if (!deleted) for (const d of await storage.devices.list(userId)) names.set(d.device_id, d.display_name);
    const keys = !deleted && this.keysOf ? await this.keysOf(userId, deviceIds) : new Map<string, JsonObject>();
    const ids = deviceIds.map(() => this.stream.next());
    try {
      await storage.transaction(async (tx) => {
        // "prev_id: The stream_ids of any prior m.device_list_update EDUs sent for this user which have not been
        // referred to already": we emit in series, so that is the user's previous update.
        let prev = await tx.deviceLists.lastStreamId(userId, ids[0]!);
        await tx.deviceLists.insert(deviceIds.map((deviceId, i) => ({ stream_id: ids[i]!, user_id: userId, device_id: deviceId })));
        const edus: { destination: string; edu: string }[] = [];
        deviceIds.forEach((deviceId, i) => {
          const content: JsonObject = { user_id: userId, device_id: deviceId, stream_id: ids[i]!, prev_id: prev > 0 ? [prev] : [], deleted };
          const name = names.get(deviceId);
          if (name) content.device_display_name = name;
          const k = keys.get(deviceId);
          if (k) content.keys = k;
          prev = ids[i]!;
          const edu = JSON.stringify({ edu_type: "m.device_list_update", content });
          for (const destination of servers) edus.push({ destination, edu });
        });
        await tx.outbox.add(edus, Date.now());
      });
    } finally {
      for (const id of ids) this.stream.finish(id);
    }
    await this.wake(userId);
    this.deps.sender.sendOutbox(servers);
  }

  /**
   * A local user's cross-signing keys changed: a change on the stream (device id "", not about one device) and, for
   * servers sharing a room with the user, an `m.signing_key_update` with the public keys (`master_key`,
   * `self_signing_key`; never the private-to-its-owner user-signing key) through the outbox.
   */
  async localSigningKeysChanged(userId: string, content: { master_key?: JsonObject; self_signing_key?: JsonObject }): Promise<void> {
    const { storage } = this.deps;
    const servers = new Set<string>();
    for (const r of await storage.rooms.roomsForUser(userId, ["join"])) for (const s of await storage.federation.serversInRoom(r.room_id)) servers.add(s);
    servers.delete(this.deps.serverName);
    const send = content.master_key !== undefined || content.self_signing_key !== undefined;
    const id = this.stream.next();
    try {
      await storage.transaction(async (tx) => {
        // Only the user-signing key changed: news for the user's own devices alone.
        await tx.deviceLists.insert([{ stream_id: id, user_id: userId, device_id: send ? "" : PRIVATE_CHANGE }]);
        if (send) {
          const edu = JSON.stringify({ edu_type: "m.signing_key_update", content: { user_id: userId, ...content } });
          await tx.outbox.add([...servers].map((destination) => ({ destination, edu })), Date.now());
        }
      });
    } finally {
      this.stream.finish(id);
    }
    if (send) await this.wake(userId);
    else this.deps.notifier.notify({ users: [userId] });
    if (send) this.deps.sender.sendOutbox(servers);
  }

  /**
   * `signer` signed other users' master keys with their user-signing key: those users' keys changed as the signer
   * sees them (the signatures are visible to the signer alone), so they are in the signer's `device_lists.changed`
   * and nobody else's.
   */
  async signaturesByUserChanged(signer: string, targets: readonly string[]): Promise<void> {
    if (targets.length === 0) return;
    const ids = targets.map(() => this.stream.next());
    try {
      await this.deps.storage.deviceLists.insert(targets.map((t, i) => ({ stream_id: ids[i]!, user_id: t, device_id: signedByChange(signer) })));
    } finally {
      for (const id of ids) this.stream.finish(id);
    }
    this.deps.notifier.notify({ users: [signer] });
  }

  /**
   * A remote user's device list or cross-signing keys changed (remote_device_lists.ts applied the EDU or resynced):
   * recorded on the stream, so local room-mates' clients see the user in `device_lists.changed` and refetch.
   */
  async remoteChanged(origin: string, c: JsonObject): Promise<void> {
    const userId = c.user_id;
    if (typeof userId !== "string" || userIdDomain(userId) !== origin) return;
    const deviceId = typeof c.device_id === "string" ? c.device_id : "";
    const id = this.stream.next();
    try {
      await this.deps.storage.deviceLists.insert([{ stream_id: id, user_id: userId, device_id: deviceId }]);
    } finally {
      this.stream.finish(id);
    }
    await this.wake(userId);
  }

  /**
   * Users with a change in (since, to] whom `userId` should hear about: themself, anyone sharing a room, and users
   * whose master key they signed.
   */
  async changedFor(userId: string, since: number, to: number): Promise<string[]> {
    if (to <= since) return [];
    const { users, signedByViewer } = await this.deps.storage.deviceLists.changedUsers(since, to, userId);
    const out = new Set(signedByViewer);
    if (users.includes(userId)) out.add(userId);
    const others = users.filter((u) => u !== userId && !out.has(u));
    if (others.length > 0) for (const u of await this.deps.storage.rooms.usersSharingRooms(userId, others)) out.add(u);
    return [...out];
  }

  /** Wakes the /sync of the user and of everyone in their rooms. */
  private async wake(userId: string): Promise<void> {
    const rooms = (await this.deps.storage.rooms.roomsForUser(userId, ["join"])).map((r) => r.room_id);
    this.deps.notifier.notify({ rooms, users: [userId] });
  }
}
