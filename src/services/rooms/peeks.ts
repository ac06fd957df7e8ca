/**
 * Peeking (MSC2753): a device follows a world-readable room in /sync (`rooms.peek`) without joining it, from
 * POST /peek/{roomIdOrAlias} until POST /rooms/{roomId}/unpeek, a join, or the room ceasing to be world-readable.
 * Only rooms this server is in can be peeked (peeking over federation, MSC2444, is not built).
 * Peeks are a sync stream: a peek newer than the sync token comes in full, later ones with what is new.
 */
import { MatrixError, forbidden, notFound } from "../../errors.js";
import type { Storage } from "../../storage/storage.js";
import type { PeekRow } from "../../storage/peeks.js";
import type { Notifier } from "../notifier.js";
import type { RoomAccess } from "./rooms.js";

export interface PeekDeps {
  storage: Storage;
  rooms: RoomAccess;
  notifier: Notifier;
  resolveRoom: (roomIdOrAlias: string) => Promise<string>;
}

/** Devices whose peeks are kept in memory (most have none; each entry is small). */
const CACHED_DEVICES = 10_000;

export class PeekService {
  private pos = 0;
  private readonly cache = new Map<string, PeekRow[]>();

  constructor(private readonly deps: PeekDeps) {}

  async start(): Promise<void> {
    this.pos = Math.max(this.pos, await this.deps.storage.peeks.maxId());
  }

  /** The stream position: the newest peek. */
  position(): number {
    return this.pos;
  }

  async peek(userId: string, deviceId: string | null, roomIdOrAlias: string): Promise<string> {
    if (deviceId === null) throw new MatrixError(400, "M_UNKNOWN", "Peeking needs a device");
    const roomId = await this.deps.resolveRoom(roomIdOrAlias);
    const head = await this.deps.rooms.headIfKnown(roomId);
    if (!head) throw notFound("Room not found (peeking into rooms on other servers is not supported)");
    if ((await this.deps.rooms.membership(head, userId)) === "join") return roomId;
    if (!(await this.worldReadable(roomId))) throw forbidden("Peeking is only allowed into world_readable rooms");
    const id = await this.deps.storage.peeks.add(userId, deviceId, roomId);
    this.pos = Math.max(this.pos, id);
    this.cache.delete(key(userId, deviceId));
    this.deps.notifier.notify({ users: [userId] });
    return roomId;
  }

  async unpeek(userId: string, deviceId: string | null, roomId: string): Promise<void> {
    if (deviceId === null) return;
    await this.stop(userId, deviceId, roomId);
  }

  /** Ends a peek (unpeek, a join, the room no longer world-readable). */
  async stop(userId: string, deviceId: string, roomId: string): Promise<void> {
    await this.deps.storage.peeks.remove(userId, deviceId, roomId);
    this.cache.delete(key(userId, deviceId));
  }

  async forDevice(userId: string, deviceId: string): Promise<PeekRow[]> {
    const k = key(userId, deviceId);
    let rows = this.cache.get(k);
    if (!rows) {
      rows = await this.deps.storage.peeks.forDevice(userId, deviceId);
      if (this.cache.size >= CACHED_DEVICES) this.cache.delete(this.cache.keys().next().value!);
      this.cache.set(k, rows);
    }
    return rows;
  }

  async worldReadable(roomId: string): Promise<boolean> {
    const head = await this.deps.rooms.headIfKnown(roomId);
    return head !== undefined && (await this.deps.rooms.stateContent(head, "m.room.history_visibility"))?.history_visibility === "world_readable";
  }
}

const key = (userId: string, deviceId: string) => `${userId}\0${deviceId}`;
