/**
 * Inbound transactions (server-server API, PUT /send/{txnId}): idempotent per origin and transaction id; PDUs are
 * handled room by room in the order sent (rooms in parallel); EDUs (typing, receipts, presence) update ephemeral
 * state for the origin's own users; m.direct_to_device fills local device inboxes; m.device_list_update and
 * m.signing_key_update update the cache of the origin's user's device list (remote_device_lists.ts).
 */
import type { Logger } from "pino";
import { userIdDomain } from "../../core/ids/ids.js";
import { isJsonObject, type JsonObject } from "../../core/json/types.js";
import { MatrixError } from "../../errors.js";
import type { Storage } from "../../storage/storage.js";
import type { PresenceService } from "../ephemeral/presence.js";
import type { ReceiptService } from "../ephemeral/receipts.js";
import type { TypingService } from "../ephemeral/typing.js";
import type { RemoteDeviceLists } from "../remote_device_lists.js";
import type { ToDeviceService } from "../to_device.js";
import type { FederationPdus, PduResult } from "./pdus.js";
import { MAX_EDUS_PER_TXN, MAX_PDUS_PER_TXN, type FederationSender } from "./sender.js";

/** Remote typing notifications carry no timeout; Synapse expires them after a minute. */
const REMOTE_TYPING_TIMEOUT_MS = 60_000;

export class FederationTransactions {
  private readonly inFlight = new Map<string, Promise<JsonObject>>();

  constructor(
    private readonly deps: {
      storage: Storage;
      toDevice: ToDeviceService;
      remoteDeviceLists: RemoteDeviceLists;
      pdus: FederationPdus;
      sender: FederationSender;
      typing: TypingService;
      receipts: ReceiptService;
      presence: PresenceService;
      log: Logger;
      /** Whether the room's m.room.server_acl lets the server in (unknown rooms: no). */
      aclAllows: (origin: string, roomId: string) => Promise<boolean>;
    },
  ) {}

  async receive(origin: string, txnId: string, body: JsonObject): Promise<JsonObject> {
    const pdus = body.pdus ?? [];
    const edus = body.edus ?? [];
    if (!Array.isArray(pdus) || !Array.isArray(edus)) throw new MatrixError(400, "M_BAD_JSON", "pdus and edus must be lists");
    if (pdus.length > MAX_PDUS_PER_TXN || edus.length > MAX_EDUS_PER_TXN) throw new MatrixError(400, "M_BAD_JSON", `A transaction holds at most ${MAX_PDUS_PER_TXN} PDUs and ${MAX_EDUS_PER_TXN} EDUs`);
    this.deps.sender.wake(origin);
    const key = `${origin}\u0000${txnId}`;
    const running = this.inFlight.get(key);
    if (running) return running;
    const p = (async () => {
      const done = await this.deps.storage.federation.receivedTxn(origin, txnId);
      if (done !== undefined) return JSON.parse(done) as JsonObject;
      const response = { pdus: await this.handlePdus(origin, pdus) };
      await this.handleEdus(origin, edus);
      await this.deps.storage.federation.recordReceivedTxn(origin, txnId, JSON.stringify(response));
      return response;
    })().finally(() => this.inFlight.delete(key));
    this.inFlight.set(key, p);
    return p;
  }

  private async handlePdus(origin: string, pdus: unknown[]): Promise<Record<string, JsonObject>> {
    const byRoom = new Map<string, unknown[]>();
    for (const p of pdus) {
      const roomId = isJsonObject(p) && typeof p.room_id === "string" ? p.room_id : "";
      let list = byRoom.get(roomId);
      if (!list) byRoom.set(roomId, (list = []));
      list.push(p);
    }
    const results: Record<string, JsonObject> = {};
    await Promise.all(
      [...byRoom].map(async ([roomId, list]) => {
        // Spec "Server Access Control Lists": PDUs from a server the room's ACL denies are dropped, checked before
        // anything else about them; each is answered with an error, as Synapse does. (Rooms we do not know are left
        // to `receive`, which answers "unknown room".)
        if (roomId && (await this.deps.storage.rooms.get(roomId)) && !(await this.deps.aclAllows(origin, roomId))) {
          this.deps.log.info({ origin, roomId }, "dropped PDUs from a server denied by the room's ACL");
          for (const p of list) {
            const eventId = await this.deps.pdus.eventIdOf(p);
            if (eventId) results[eventId] = { error: `Server ${origin} is banned from room ${roomId} by its server ACL` };
          }
          return;
        }
        for (const p of list) {
          const r: PduResult = await this.deps.pdus.receive(origin, p);
          if (r.eventId) results[r.eventId] = r.error !== undefined ? { error: r.error } : {};
        }
      }),
    );
    return results;
  }

  private async handleEdus(origin: string, edus: unknown[]): Promise<void> {
    for (const edu of edus) {
      if (!isJsonObject(edu) || !isJsonObject(edu.content)) continue;
      try {
        if (edu.edu_type === "m.typing") await this.typing(origin, edu.content);
        else if (edu.edu_type === "m.receipt") await this.receipt(origin, edu.content);
        else if (edu.edu_type === "m.presence") await this.presence(origin, edu.content);
        else if (edu.edu_type === "m.direct_to_device") await this.deps.toDevice.receiveEdu(origin, edu.content);
        else if (edu.edu_type === "m.device_list_update") await this.deps.remoteDeviceLists.onDeviceListUpdate(origin, edu.content);
        else if (edu.edu_type === "m.signing_key_update") await this.deps.remoteDeviceLists.onSigningKeyUpdate(origin, edu.content);
      } catch (e) {
        this.deps.log.debug({ err: e, origin, edu: edu.edu_type }, "ignored an EDU");
      }
    }
  }

  /** Only the origin's own users, only in rooms they are joined to, and only where the room's ACL allows the origin. */
  private async isJoinedRemoteUser(origin: string, userId: unknown, roomId: unknown): Promise<boolean> {
    if (typeof userId !== "string" || typeof roomId !== "string" || userIdDomain(userId) !== origin) return false;
    if (!(await this.deps.aclAllows(origin, roomId))) return false;
    const rows = await this.deps.storage.rooms.roomsForUser(userId, ["join"]);
    return rows.some((r) => r.room_id === roomId);
  }

  private async typing(origin: string, c: JsonObject): Promise<void> {
    if (!(await this.isJoinedRemoteUser(origin, c.user_id, c.room_id))) return;
    this.deps.typing.setTyping(c.room_id as string, c.user_id as string, c.typing === true, REMOTE_TYPING_TIMEOUT_MS);
  }

  private async receipt(origin: string, c: JsonObject): Promise<void> {
    for (const [roomId, byType] of Object.entries(c)) {
      if (!isJsonObject(byType)) continue;
      const read = byType["m.read"];
      if (!isJsonObject(read)) continue;
      for (const [userId, r] of Object.entries(read)) {
        if (!isJsonObject(r) || !Array.isArray(r.event_ids) || !(await this.isJoinedRemoteUser(origin, userId, roomId))) continue;
        const data = isJsonObject(r.data) ? r.data : {};
        const threadId = typeof data.thread_id === "string" ? data.thread_id : undefined;
        for (const eventId of r.event_ids) if (typeof eventId === "string") await this.deps.receipts.setReceipt(roomId, userId, "m.read", eventId, threadId, { remote: true }).catch(() => {});
      }
    }
  }

  private async presence(origin: string, c: JsonObject): Promise<void> {
    const push = Array.isArray(c.push) ? c.push : [];
    for (const p of push) {
      if (!isJsonObject(p) || typeof p.user_id !== "string" || userIdDomain(p.user_id) !== origin || typeof p.presence !== "string") continue;
      await this.deps.presence.setRemote(p.user_id, {
        presence: p.presence,
        statusMsg: typeof p.status_msg === "string" ? p.status_msg : undefined,
        lastActiveAgo: typeof p.last_active_ago === "number" ? p.last_active_ago : 0,
        currentlyActive: p.currently_active === true,
      });
    }
  }
}
