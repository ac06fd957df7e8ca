/**
 * Send-to-device messaging (client-server "Send-to-Device messaging", server-server "Send-to-device messaging"):
 * messages for local devices wait in each device's inbox, numbered on the to-device stream, until the device
 * acknowledges them by syncing past them ("the server should infer that any send-to-device messages in that
 * response have been delivered successfully, and delete them from the store"); messages for other servers'
 * users travel as `m.direct_to_device` EDUs through the durable federation outbox.
 */
import { randomBytes } from "node:crypto";
import type { Logger } from "pino";
import { isHistoricalUserId, userIdDomain } from "../core/ids/ids.js";
import { isJsonObject, type JsonObject } from "../core/json/types.js";
import { badJson, invalidParam } from "../errors.js";
import type { InboxRow } from "../storage/device_inbox.js";
import type { Storage, Stores } from "../storage/storage.js";
import { StreamIdGenerator } from "../storage/stream_ids.js";
import type { FederationSender } from "./federation/sender.js";
import type { Notifier } from "./notifier.js";
import type { Requester } from "./tokens.js";

/** Spec: "If there is a large queue of send-to-device messages, the server should limit the number sent in each
 * /sync response. 100 messages is recommended as a reasonable limit." */
export const TO_DEVICE_SYNC_LIMIT = 100;
const STREAM = "to_device";
/** Spec (m.direct_to_device): message_id is an "arbitrary utf8 string, of maximum length 32 codepoints". */
const MAX_MESSAGE_ID_LENGTH = 32;

/** `{userId: {deviceId | "*": content}}`, validated. */
export type DeviceMessages = Map<string, Map<string, JsonObject>>;

interface Delivery {
  userId: string;
  deviceId: string;
  content: JsonObject;
}

/** What the E2EE streams (to-device, device lists) need: storage, /sync wake-ups and the federation outbox. */
export interface DeviceStreamDeps {
  serverName: string;
  storage: Storage;
  notifier: Notifier;
  sender: FederationSender;
  log: Logger;
}

export class ToDeviceService {
  private stream!: StreamIdGenerator;

  constructor(private readonly deps: DeviceStreamDeps) {}

  async start(): Promise<void> {
    const { deviceInbox } = this.deps.storage;
    // Acknowledged messages are deleted, so the persisted high-water mark keeps new ids above every token handed out.
    this.stream = new StreamIdGenerator(Math.max(await deviceInbox.maxStreamId(), await deviceInbox.position(STREAM)));
  }

  /** The to-device stream's position for sync tokens. */
  position(): number {
    return this.stream.position();
  }

  /**
   * PUT /sendToDevice/{eventType}/{txnId}. Idempotent per device (or access token) and txnId: a retry answers 200
   * and sends nothing, even after a restart. Everything — local inboxes, outbox EDUs, the transaction id — commits
   * together before the client is answered.
   */
  async send(r: Requester, type: string, txnId: string, body: unknown): Promise<void> {
    const messages = parseMessages(body);
    const local: Delivery[] = [];
    const remote = new Map<string, Record<string, Record<string, JsonObject>>>();
    for (const [userId, byDevice] of messages) {
      const domain = userIdDomain(userId)!;
      if (domain === this.deps.serverName) {
        local.push(...(await this.expand(userId, byDevice)));
      } else {
        let m = remote.get(domain);
        if (!m) remote.set(domain, (m = {}));
        m[userId] = Object.fromEntries(byDevice);
      }
    }
    const edus = [...remote].map(([destination, msgs]) => ({
      destination,
      edu: JSON.stringify({ edu_type: "m.direct_to_device", content: { sender: r.userId, type, message_id: randomBytes(12).toString("base64url"), messages: msgs } }),
    }));
    const requester = r.deviceId ?? `token:${r.tokenId}`;
    const sent = await this.deliver(r.userId, type, local, async (tx) => {
      if (!(await tx.deviceInbox.recordTxn(r.userId, requester, txnId, Date.now()))) return false;
      await tx.outbox.add(edus, Date.now());
      return true;
    });
    if (sent) this.deps.sender.sendOutbox(remote.keys());
  }

  /**
   * An inbound `m.direct_to_device` EDU: the sender must belong to the origin; a message_id already received from
   * the origin is ignored; only this server's users and their existing devices get the message.
   */
  async receiveEdu(origin: string, c: JsonObject): Promise<void> {
    const { sender, type, message_id: messageId } = c;
    if (typeof sender !== "string" || userIdDomain(sender) !== origin || typeof type !== "string" || typeof messageId !== "string") return;
    if (messageId.length === 0 || [...messageId].length > MAX_MESSAGE_ID_LENGTH) return;
    let messages: DeviceMessages;
    try {
      messages = parseMessages({ messages: c.messages });
    } catch {
      return;
    }
    const local: Delivery[] = [];
    for (const [userId, byDevice] of messages) if (userIdDomain(userId) === this.deps.serverName) local.push(...(await this.expand(userId, byDevice)));
    await this.deliver(sender, type, local, (tx) => tx.deviceInbox.recordFederationMessage(origin, messageId, Date.now()));
  }

  /**
   * /sync's `to_device.events` for a device: acknowledges (deletes) what the client received up to its token, then
   * returns the next messages after it, at most `limit` (Sliding Sync's to_device extension sets it); `position` is the token's new to-device
   * position (the last message returned, when the backlog is longer).
   */
  async forSync(userId: string, deviceId: string, since: number, to: number, limit = TO_DEVICE_SYNC_LIMIT): Promise<{ events: JsonObject[]; position: number }> {
    const inbox = this.deps.storage.deviceInbox;
    if (since > 0 && (await inbox.hasUpTo(userId, deviceId, since))) await inbox.deleteUpTo(userId, deviceId, since);
    // Nothing new on the stream since the token: no read (as presence does).
    const rows = to > since ? await inbox.since(userId, deviceId, since, to, limit) : [];
    const position = rows.length === limit ? rows.at(-1)!.stream_id : Math.max(since, to);
    return { events: rows.map((r) => JSON.parse(r.message) as JsonObject), position };
  }

  /** A local user's devices a message map names: `*` is every device; a named device must exist (else dropped). */
  private async expand(userId: string, byDevice: Map<string, JsonObject>): Promise<Delivery[]> {
    const devices = (await this.deps.storage.devices.list(userId)).map((d) => d.device_id);
    const all = byDevice.get("*");
    const out: Delivery[] = [];
    for (const deviceId of devices) {
      // "Only one message can be sent to each device per transaction": a message naming the device wins over `*`.
      const content = byDevice.get(deviceId) ?? all;
      if (content) out.push({ userId, deviceId, content });
    }
    return out;
  }

  /**
   * Writes local deliveries in one transaction with whatever `guard` writes; nothing is written when the guard
   * answers false (a duplicate). Wakes the recipients' /sync once committed.
   */
  private async deliver(sender: string, type: string, local: Delivery[], guard: (tx: Stores) => Promise<boolean>): Promise<boolean> {
    const ids = local.map(() => this.stream.next());
    let done = false;
    let persisted = ids.length === 0;
    try {
      done = await this.deps.storage.transaction(async (tx) => {
        // Even an id left unused (a duplicate) moves the position tokens carry, so the high-water mark covers it.
        if (ids.length > 0) await tx.deviceInbox.raisePosition(STREAM, ids.at(-1)!);
        if (!(await guard(tx))) return false;
        const rows: InboxRow[] = local.map((d, i) => ({ stream_id: ids[i]!, user_id: d.userId, device_id: d.deviceId, message: JSON.stringify({ sender, type, content: d.content }) }));
        await tx.deviceInbox.insert(rows);
        return true;
      });
      persisted = true;
    } finally {
      if (!persisted) await this.deps.storage.deviceInbox.raisePosition(STREAM, ids.at(-1)!).catch(() => {});
      for (const id of ids) this.stream.finish(id);
    }
    if (done && local.length > 0) this.deps.notifier.notify({ users: new Set(local.map((d) => d.userId)) });
    return done;
  }
}

/** Validates `{"messages": {userId: {deviceId: content}}}` (400 M_BAD_JSON for a wrong shape, M_INVALID_PARAM for a bad user id). */
export function parseMessages(body: unknown): DeviceMessages {
  if (!isJsonObject(body)) throw badJson("Content must be a JSON object.");
  const messages = body.messages;
  if (!isJsonObject(messages)) throw badJson("'messages' must be an object of user IDs to objects of device IDs to message contents");
  const out: DeviceMessages = new Map();
  for (const [userId, byDevice] of Object.entries(messages)) {
    if (!isHistoricalUserId(userId)) throw invalidParam(`Invalid user ID: ${userId}`);
    if (!isJsonObject(byDevice)) throw badJson(`messages for ${userId} must be an object of device IDs to message contents`);
    const devices = new Map<string, JsonObject>();
    for (const [deviceId, content] of Object.entries(byDevice)) {
      if (!isJsonObject(content)) throw badJson(`The message for ${userId} device ${deviceId} must be an object`);
      if (deviceId.length === 0) throw invalidParam("Device IDs may not be empty");
      devices.set(deviceId, content);
    }
    out.set(userId, devices);
  }
  return out;
}
