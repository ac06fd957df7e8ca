/**
 * A second end-to-end encryption stack for the tests, independent of matrix-js-sdk and its Rust crypto: a minimal
 * Matrix client over raw HTTP built on libolm (@matrix-org/olm). It does what an encrypted chat needs and no more:
 * publishes a signed device key and signed one-time keys, finds and checks the room members' devices, opens Olm
 * sessions with claimed one-time keys, shares a Megolm session as an Olm-encrypted `m.room_key`, sends Megolm
 * `m.room.encrypted` events, and decrypts what it receives through /sync. All state is in memory, for one test.
 * Spec: client-server "End-to-End Encryption", `m.olm.v1.curve25519-aes-sha2` and `m.megolm.v1.aes-sha2`.
 */
import Olm from "@matrix-org/olm";
import { canonicalJson } from "../../src/core/json/canonical.js";
import { Client, type TestUser } from "./http.js";
import { enc, nextTxn, syncPath, V3, type ClientEvent, type SyncResponse } from "./rooms.js";

export const OLM_ALGORITHM = "m.olm.v1.curve25519-aes-sha2";
export const MEGOLM_ALGORITHM = "m.megolm.v1.aes-sha2";

let loaded: Promise<void> | undefined;
/** libolm is a wasm module: loaded once per test process. */
export function initOlm(): Promise<void> {
  return (loaded ??= Olm.init());
}

type Signatures = Record<string, Record<string, string>>;

/** A device's published keys (spec `DeviceKeys`). */
export interface DeviceKeys {
  user_id: string;
  device_id: string;
  algorithms: string[];
  keys: Record<string, string>;
  signatures?: Signatures;
  unsigned?: Record<string, unknown>;
}

/** Another device whose published keys carry a valid self-signature. */
export interface PeerDevice {
  userId: string;
  deviceId: string;
  curve25519: string;
  ed25519: string;
  keys: DeviceKeys;
}

/** The plaintext inside an Olm message (spec `OlmPlaintext`). */
interface OlmPlaintext {
  type: string;
  content: Record<string, unknown>;
  sender: string;
  recipient: string;
  recipient_keys: { ed25519: string };
  keys: { ed25519: string };
  sender_device_keys?: DeviceKeys;
}

interface OlmCiphertext {
  type: 0 | 1;
  body: string;
}

/** A room event as decrypted here. */
export interface DecryptedEvent {
  eventId: string;
  roomId: string;
  sender: string;
  /** The device whose Olm channel delivered the Megolm session. */
  senderDevice: PeerDevice;
  type: string;
  content: Record<string, unknown>;
}

interface InboundGroup {
  session: Olm.InboundGroupSession;
  roomId: string;
  senderDevice: PeerDevice;
  /** Message index → event id, to refuse a replayed index (spec: "guard against replay attacks"). */
  indices: Map<number, string>;
}

interface OutboundGroup {
  session: Olm.OutboundGroupSession;
  /** `user|device` of every device the session key went to. */
  sharedWith: Set<string>;
}

/** The bytes a signature covers: canonical JSON without `signatures` and `unsigned` (spec "Signing JSON"). */
function signingText(obj: object): string {
  const { signatures: _s, unsigned: _u, ...rest } = obj as { signatures?: unknown; unsigned?: unknown };
  return canonicalJson(rest);
}

/** Whether `obj` carries a valid `signatures[userId][keyId]` by the ed25519 key `ed25519`, checked by libolm. */
export function verifySignedJson(obj: { signatures?: Signatures }, userId: string, keyId: string, ed25519: string): boolean {
  const sig = obj.signatures?.[userId]?.[keyId];
  if (typeof sig !== "string") return false;
  const util = new Olm.Utility();
  try {
    util.ed25519_verify(ed25519, signingText(obj), sig);
    return true;
  } catch {
    return false;
  } finally {
    util.free();
  }
}

const deviceKey = (d: { userId: string; deviceId: string }) => `${d.userId}|${d.deviceId}`;

export class OlmClient {
  readonly http: Client;
  readonly userId: string;
  readonly deviceId: string;
  readonly curve25519: string;
  readonly ed25519: string;
  /** Our own device keys, signed, as uploaded (and sent along in Olm messages as `sender_device_keys`). */
  readonly deviceKeys: DeviceKeys;
  /** Room events decrypted so far, by event id. */
  readonly decrypted = new Map<string, DecryptedEvent>();
  /** Why events were refused (failed checks), for the test's failure messages. */
  readonly refused: string[] = [];
  /** Room events whose session we hold only from a later message index on, with libolm's error. */
  readonly undecryptable = new Map<string, string>();

  private readonly account: Olm.Account;
  private readonly token: string;
  /** Checked devices by user and device id. The first ed25519 key seen for a device id is kept (no key change). */
  private readonly devices = new Map<string, Map<string, PeerDevice>>();
  /** Olm sessions by the peer's curve25519 key, the one last used for a successful decryption or creation last. */
  private readonly sessions = new Map<string, Olm.Session[]>();
  /** Our Megolm sessions by room id (never rotated: a test's chat is short). */
  private readonly outbound = new Map<string, OutboundGroup>();
  /** Received Megolm sessions by session id (globally unique; the spec says not to key them by sender_key). */
  private readonly inbound = new Map<string, InboundGroup>();
  /** Megolm events waiting for their session key. */
  private readonly pending = new Map<string, ClientEvent & { room_id: string }>();
  private since: string | undefined;

  private constructor(baseUrl: string, user: TestUser) {
    this.http = new Client(baseUrl);
    this.userId = user.userId;
    this.deviceId = user.deviceId;
    this.token = user.accessToken;
    this.account = new Olm.Account();
    this.account.create();
    const identity = JSON.parse(this.account.identity_keys()) as { curve25519: string; ed25519: string };
    this.curve25519 = identity.curve25519;
    this.ed25519 = identity.ed25519;
    const unsigned: DeviceKeys = {
      user_id: this.userId,
      device_id: this.deviceId,
      algorithms: [OLM_ALGORITHM, MEGOLM_ALGORITHM],
      keys: { [`curve25519:${this.deviceId}`]: this.curve25519, [`ed25519:${this.deviceId}`]: this.ed25519 },
    };
    this.deviceKeys = { ...unsigned, signatures: { [this.userId]: { [`ed25519:${this.deviceId}`]: this.sign(unsigned) } } };
  }

  /** A libolm device for `user` (an already logged-in device), with its keys published. */
  static async start(baseUrl: string, user: TestUser, oneTimeKeys = 20): Promise<OlmClient> {
    await initOlm();
    const client = new OlmClient(baseUrl, user);
    await client.uploadKeys(oneTimeKeys, true);
    return client;
  }

  /** Frees libolm's memory. */
  close(): void {
    for (const list of this.sessions.values()) for (const s of list) s.free();
    for (const g of this.outbound.values()) g.session.free();
    for (const g of this.inbound.values()) g.session.free();
    this.account.free();
  }

  private sign(obj: object): string {
    return this.account.sign(signingText(obj));
  }

  private async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await this.http.request<T>(method, path, { token: this.token, body });
    if (res.status !== 200) throw new Error(`${method} ${path}: ${res.status} ${res.text}`);
    return res.body;
  }

  /** Publishes `count` new signed_curve25519 one-time keys (and the device keys the first time). */
  async uploadKeys(count: number, withDeviceKeys = false): Promise<Record<string, number>> {
    this.account.generate_one_time_keys(count);
    const generated = JSON.parse(this.account.one_time_keys()) as { curve25519: Record<string, string> };
    const oneTimeKeys: Record<string, unknown> = {};
    for (const [id, key] of Object.entries(generated.curve25519)) {
      oneTimeKeys[`signed_curve25519:${id}`] = { key, signatures: { [this.userId]: { [`ed25519:${this.deviceId}`]: this.sign({ key }) } } };
    }
    const body = { ...(withDeviceKeys ? { device_keys: this.deviceKeys } : {}), one_time_keys: oneTimeKeys };
    const res = await this.call<{ one_time_key_counts: Record<string, number> }>("POST", `${V3}/keys/upload`, body);
    // Only once the server holds them: a key published twice would let two senders use it.
    this.account.mark_keys_as_published();
    return res.one_time_key_counts;
  }

  /**
   * The devices of `userIds` from /keys/query whose device keys are well-formed, name the user and device they are
   * listed under, and are signed by their own ed25519 key; others are left out (and noted in `refused`).
   */
  async queryDevices(userIds: string[]): Promise<PeerDevice[]> {
    const res = await this.call<{ device_keys: Record<string, Record<string, DeviceKeys>>; failures?: Record<string, unknown> }>("POST", `${V3}/keys/query`, {
      device_keys: Object.fromEntries(userIds.map((u) => [u, []])),
    });
    if (res.failures && Object.keys(res.failures).length > 0) throw new Error(`keys/query failures: ${JSON.stringify(res.failures)}`);
    const out: PeerDevice[] = [];
    for (const userId of userIds) {
      for (const [deviceId, keys] of Object.entries(res.device_keys[userId] ?? {})) {
        const device = this.checkDevice(userId, deviceId, keys);
        if (device) out.push(device);
      }
    }
    return out;
  }

  private checkDevice(userId: string, deviceId: string, keys: DeviceKeys): PeerDevice | undefined {
    const curve25519 = keys.keys?.[`curve25519:${deviceId}`];
    const ed25519 = keys.keys?.[`ed25519:${deviceId}`];
    const why =
      keys.user_id !== userId || keys.device_id !== deviceId
        ? "listed under another user or device"
        : !curve25519 || !ed25519
          ? "without identity keys"
          : !keys.algorithms?.includes(OLM_ALGORITHM)
            ? "without Olm"
            : !verifySignedJson(keys, userId, `ed25519:${deviceId}`, ed25519)
              ? "with a bad self-signature"
              : undefined;
    if (why) {
      this.refused.push(`device ${userId}/${deviceId} ${why}`);
      return undefined;
    }
    const known = this.devices.get(userId)?.get(deviceId);
    if (known && known.ed25519 !== ed25519) {
      this.refused.push(`device ${userId}/${deviceId} changed its ed25519 key`);
      return undefined;
    }
    const device: PeerDevice = known ?? { userId, deviceId, curve25519: curve25519!, ed25519: ed25519!, keys };
    if (!known) {
      const byId = this.devices.get(userId) ?? new Map<string, PeerDevice>();
      byId.set(deviceId, device);
      this.devices.set(userId, byId);
    }
    return device;
  }

  /** Opens an Olm session with each device that has none, from a claimed one-time key; returns those without. */
  async openSessions(devices: PeerDevice[]): Promise<PeerDevice[]> {
    const need = devices.filter((d) => !this.sessions.get(d.curve25519)?.length);
    if (need.length === 0) return [];
    const request: Record<string, Record<string, string>> = {};
    for (const d of need) (request[d.userId] ??= {})[d.deviceId] = "signed_curve25519";
    const res = await this.call<{ one_time_keys: Record<string, Record<string, Record<string, { key: string; signatures?: Signatures }>>>; failures?: Record<string, unknown> }>(
      "POST",
      `${V3}/keys/claim`,
      { one_time_keys: request },
    );
    const missing: PeerDevice[] = [];
    for (const d of need) {
      const claimed = Object.entries(res.one_time_keys[d.userId]?.[d.deviceId] ?? {}).find(([id]) => id.startsWith("signed_curve25519:"));
      if (!claimed || !verifySignedJson(claimed[1], d.userId, `ed25519:${d.deviceId}`, d.ed25519)) {
        if (claimed) this.refused.push(`one-time key ${claimed[0]} of ${d.userId}/${d.deviceId} with a bad signature`);
        missing.push(d);
        continue;
      }
      const session = new Olm.Session();
      session.create_outbound(this.account, d.curve25519, claimed[1].key);
      this.addSession(d.curve25519, session);
    }
    return missing;
  }

  private addSession(curve25519: string, session: Olm.Session): void {
    const list = this.sessions.get(curve25519) ?? [];
    list.push(session);
    this.sessions.set(curve25519, list);
  }

  private touch(curve25519: string, session: Olm.Session): void {
    const list = this.sessions.get(curve25519)!;
    list.splice(list.indexOf(session), 1);
    list.push(session);
  }

  /** The `m.room.encrypted` to-device content carrying `type`/`content` to `device` over its Olm session. */
  private olmEncrypt(device: PeerDevice, type: string, content: Record<string, unknown>): Record<string, unknown> {
    const session = this.sessions.get(device.curve25519)?.at(-1);
    if (!session) throw new Error(`no Olm session with ${device.userId}/${device.deviceId}`);
    const plaintext: OlmPlaintext = {
      type,
      content,
      sender: this.userId,
      recipient: device.userId,
      recipient_keys: { ed25519: device.ed25519 },
      keys: { ed25519: this.ed25519 },
      sender_device_keys: this.deviceKeys,
    };
    const ciphertext: OlmCiphertext = session.encrypt(JSON.stringify(plaintext));
    return { algorithm: OLM_ALGORITHM, sender_key: this.curve25519, ciphertext: { [device.curve25519]: ciphertext } };
  }

  /**
   * Sends a Megolm-encrypted `m.room.message` to the room. The room's outbound session key first goes, as an
   * Olm-encrypted `m.room_key`, to every checked device of the joined members (but this one) that lacks it.
   */
  async sendMessage(roomId: string, body: string): Promise<string> {
    const members = await this.call<{ joined: Record<string, unknown> }>("GET", `${V3}/rooms/${enc(roomId)}/joined_members`);
    const devices = (await this.queryDevices(Object.keys(members.joined))).filter((d) => !(d.userId === this.userId && d.deviceId === this.deviceId));
    let group = this.outbound.get(roomId);
    if (!group) {
      const session = new Olm.OutboundGroupSession();
      session.create();
      group = { session, sharedWith: new Set() };
      this.outbound.set(roomId, group);
    }
    const unshared = devices.filter((d) => !group.sharedWith.has(deviceKey(d)));
    const missing = await this.openSessions(unshared);
    if (missing.length > 0) throw new Error(`no one-time key for ${missing.map(deviceKey).join(", ")}`);
    if (unshared.length > 0) {
      const roomKey = { algorithm: MEGOLM_ALGORITHM, room_id: roomId, session_id: group.session.session_id(), session_key: group.session.session_key() };
      const messages: Record<string, Record<string, unknown>> = {};
      for (const d of unshared) (messages[d.userId] ??= {})[d.deviceId] = this.olmEncrypt(d, "m.room_key", roomKey);
      await this.call("PUT", `${V3}/sendToDevice/m.room.encrypted/${nextTxn()}`, { messages });
      for (const d of unshared) group.sharedWith.add(deviceKey(d));
    }
    const plaintext = { type: "m.room.message", content: { msgtype: "m.text", body }, room_id: roomId };
    const content = {
      algorithm: MEGOLM_ALGORITHM,
      // Deprecated since v1.3 but still to be sent (spec), and still read by older clients.
      sender_key: this.curve25519,
      device_id: this.deviceId,
      session_id: group.session.session_id(),
      ciphertext: group.session.encrypt(JSON.stringify(plaintext)),
    };
    const res = await this.call<{ event_id: string }>("PUT", `${V3}/rooms/${enc(roomId)}/send/m.room.encrypted/${nextTxn()}`, content);
    return res.event_id;
  }

  /** One /sync: Olm to-device messages first (they carry room keys), then the rooms' Megolm events. */
  async sync(timeoutMs = 500): Promise<SyncResponse> {
    const params: Record<string, string | number | object> = { timeout: timeoutMs, filter: { room: { timeline: { limit: 50 } } } };
    if (this.since) params.since = this.since;
    const s = await this.call<SyncResponse>("GET", syncPath(params));
    this.since = s.next_batch;
    for (const ev of (s.to_device?.events ?? []) as { type: string; sender: string; content: Record<string, unknown> }[]) {
      if (ev.type === "m.room.encrypted" && ev.content.algorithm === OLM_ALGORITHM) await this.receiveOlm(ev.sender, ev.content);
    }
    for (const [roomId, room] of Object.entries(s.rooms?.join ?? {})) {
      for (const ev of room.timeline.events) {
        if (ev.type === "m.room.encrypted" && ev.content.algorithm === MEGOLM_ALGORITHM && !this.decrypted.has(ev.event_id)) this.pending.set(ev.event_id, { ...ev, room_id: roomId });
      }
    }
    for (const ev of [...this.pending.values()]) this.decryptRoomEvent(ev);
    // Keep the pool of one-time keys topped up as peers claim them (libolm holds at most 100 unused ones).
    const left = s.device_one_time_keys_count?.signed_curve25519;
    if (typeof left === "number" && left < 10) await this.uploadKeys(20 - left);
    return s;
  }

  /** Decrypts an Olm to-device message and applies the validation checks of the spec before using it. */
  private async receiveOlm(sender: string, content: Record<string, unknown>): Promise<void> {
    const senderKey = content.sender_key as string;
    const mine = (content.ciphertext as Record<string, OlmCiphertext> | undefined)?.[this.curve25519];
    if (typeof senderKey !== "string" || !mine) {
      this.refused.push(`to-device from ${sender} not encrypted for this device`);
      return;
    }
    let text: string | undefined;
    for (const session of this.sessions.get(senderKey) ?? []) {
      // A pre-key message goes to the session it was made for; a normal one to whichever session it decrypts in.
      if (mine.type === 0 && !session.matches_inbound_from(senderKey, mine.body)) continue;
      try {
        text = session.decrypt(mine.type, mine.body);
        this.touch(senderKey, session);
        break;
      } catch {
        // Not this session's message.
      }
    }
    if (text === undefined && mine.type === 0) {
      const session = new Olm.Session();
      try {
        session.create_inbound_from(this.account, senderKey, mine.body);
        text = session.decrypt(0, mine.body);
      } catch (e) {
        session.free();
        this.refused.push(`pre-key message from ${sender}: ${String(e)}`);
        return;
      }
      // Only after a successful decryption (spec): the one-time key is now used up.
      this.account.remove_one_time_keys(session);
      this.addSession(senderKey, session);
    }
    if (text === undefined) {
      this.refused.push(`Olm message from ${sender} matches no session`);
      return;
    }
    const payload = JSON.parse(text) as OlmPlaintext;
    const device = await this.olmSender(sender, senderKey);
    const why =
      payload.sender !== sender
        ? "a different sender inside"
        : payload.recipient !== this.userId || payload.recipient_keys?.ed25519 !== this.ed25519
          ? "meant for another recipient"
          : !device
            ? "from a curve25519 key no device of the sender has"
            : payload.keys?.ed25519 !== device.ed25519
              ? "naming another ed25519 key than the sending device's"
              : payload.sender_device_keys && !this.senderDeviceKeysMatch(payload.sender_device_keys, sender, senderKey, device.ed25519)
                ? "with sender_device_keys that do not match"
                : undefined;
    if (why || !device) {
      this.refused.push(`Olm ${payload.type} from ${sender} ${why}`);
      return;
    }
    if (payload.type === "m.room_key" && payload.content.algorithm === MEGOLM_ALGORITHM) this.addRoomKey(device, payload.content);
  }

  /** The sender's device with this curve25519 key: from what we know, else from a fresh /keys/query. */
  private async olmSender(userId: string, curve25519: string): Promise<PeerDevice | undefined> {
    const find = () => [...(this.devices.get(userId)?.values() ?? [])].find((d) => d.curve25519 === curve25519);
    const known = find();
    if (known) return known;
    await this.queryDevices([userId]);
    return find();
  }

  private senderDeviceKeysMatch(keys: DeviceKeys, sender: string, senderKey: string, ed25519: string): boolean {
    return (
      keys.user_id === sender &&
      keys.keys?.[`curve25519:${keys.device_id}`] === senderKey &&
      keys.keys?.[`ed25519:${keys.device_id}`] === ed25519 &&
      verifySignedJson(keys, sender, `ed25519:${keys.device_id}`, ed25519)
    );
  }

  private addRoomKey(device: PeerDevice, key: Record<string, unknown>): void {
    const session = new Olm.InboundGroupSession();
    session.create(key.session_key as string);
    const sessionId = session.session_id();
    const existing = this.inbound.get(sessionId);
    // The key must be what it claims to be; a copy of a session we hold reaching less far back is no use.
    if (sessionId !== key.session_id || (existing && existing.session.first_known_index() <= session.first_known_index())) {
      if (sessionId !== key.session_id) this.refused.push(`m.room_key from ${device.userId}/${device.deviceId} with a wrong session_id`);
      session.free();
      return;
    }
    existing?.session.free();
    this.inbound.set(sessionId, { session, roomId: key.room_id as string, senderDevice: device, indices: existing?.indices ?? new Map() });
  }

  /** Decrypts a Megolm room event once its session key is here; checks room, sender and message index. */
  private decryptRoomEvent(ev: ClientEvent & { room_id: string }): void {
    const group = this.inbound.get(ev.content.session_id as string);
    if (!group) return; // the key may still be on its way
    if (group.roomId !== ev.room_id || group.senderDevice.userId !== ev.sender) {
      this.pending.delete(ev.event_id);
      this.refused.push(`${ev.event_id}: session of ${group.senderDevice.userId} in ${group.roomId}`);
      return;
    }
    let result: { message_index: number; plaintext: string };
    try {
      result = group.session.decrypt(ev.content.ciphertext as string);
    } catch (e) {
      // Sent before the index our copy of the session starts at: undecryptable unless an earlier copy comes.
      if (String(e).includes("OLM.UNKNOWN_MESSAGE_INDEX")) {
        this.undecryptable.set(ev.event_id, String(e));
        return;
      }
      this.pending.delete(ev.event_id);
      this.refused.push(`${ev.event_id}: ${String(e)}`);
      return;
    }
    this.pending.delete(ev.event_id);
    this.undecryptable.delete(ev.event_id);
    const seen = group.indices.get(result.message_index);
    if (seen !== undefined && seen !== ev.event_id) {
      this.refused.push(`${ev.event_id}: replays message index ${result.message_index} of ${seen}`);
      return;
    }
    group.indices.set(result.message_index, ev.event_id);
    const inner = JSON.parse(result.plaintext) as { type: string; content: Record<string, unknown>; room_id: string };
    if (inner.room_id !== ev.room_id) {
      this.refused.push(`${ev.event_id}: encrypted for room ${inner.room_id}`);
      return;
    }
    this.decrypted.set(ev.event_id, { eventId: ev.event_id, roomId: ev.room_id, sender: ev.sender, senderDevice: group.senderDevice, type: inner.type, content: inner.content });
  }

  /** Syncs until the event has arrived and been decrypted, and returns it. */
  async waitForDecrypted(roomId: string, eventId: string, deadlineMs = 20_000): Promise<DecryptedEvent> {
    const deadline = Date.now() + deadlineMs;
    while (true) {
      const found = this.decrypted.get(eventId);
      if (found && found.roomId === roomId) return found;
      if (Date.now() > deadline) throw new Error(`${this.userId}/${this.deviceId} did not decrypt ${eventId}; refused: ${JSON.stringify(this.refused)}`);
      await this.sync(Math.min(1000, Math.max(1, deadline - Date.now())));
    }
  }
}
