/** Room-level helpers for HTTP tests: typed shapes of what the server returns, and small request wrappers. */
import type { Client, Response, TestUser } from "./http.js";

export const enc = encodeURIComponent;
export const V3 = "/_matrix/client/v3";

export type Json = Record<string, unknown>;

/** A ClientEvent (spec "Room Event Format"); in /sync room_id is omitted. */
export interface ClientEvent {
  type: string;
  event_id: string;
  sender: string;
  origin_server_ts: number;
  content: Json;
  state_key?: string;
  room_id?: string;
  redacts?: string;
  unsigned?: Json & { age?: number; transaction_id?: string; prev_content?: Json; redacted_because?: ClientEvent };
}

export interface StrippedEvent {
  type: string;
  state_key: string;
  sender: string;
  content: Json;
  event_id?: string;
  origin_server_ts?: number;
}

export interface BasicEvent {
  type: string;
  content: Json;
  sender?: string;
}

export interface Timeline {
  events: ClientEvent[];
  limited?: boolean;
  prev_batch?: string;
}

export interface JoinedRoom {
  timeline: Timeline;
  state: { events: ClientEvent[] };
  ephemeral: { events: BasicEvent[] };
  account_data: { events: BasicEvent[] };
  summary: { "m.heroes"?: string[]; "m.joined_member_count"?: number; "m.invited_member_count"?: number };
  unread_notifications: { notification_count?: number; highlight_count?: number };
}

export interface LeftRoom {
  timeline: Timeline;
  state: { events: ClientEvent[] };
  account_data: { events: BasicEvent[] };
}

export interface SyncResponse {
  next_batch: string;
  rooms: {
    join: Record<string, JoinedRoom>;
    invite: Record<string, { invite_state: { events: StrippedEvent[] } }>;
    leave: Record<string, LeftRoom>;
    knock: Record<string, { knock_state: { events: StrippedEvent[] } }>;
  };
  account_data: { events: BasicEvent[] };
  presence: { events: BasicEvent[] };
  to_device: { events: unknown[] };
  device_lists: { changed: string[]; left: string[] };
  device_one_time_keys_count?: Record<string, number>;
  device_unused_fallback_key_types?: string[];
}

export interface MessagesResponse {
  chunk: ClientEvent[];
  start: string;
  end?: string;
  state?: ClientEvent[];
}

function check<T>(res: Response<T>, what: string): T {
  if (res.status !== 200) throw new Error(`${what}: ${res.status} ${res.text}`);
  return res.body;
}

let txn = 0;
/** A transaction id unique within this test process. */
export function nextTxn(): string {
  txn++;
  return `txn${txn}_${Date.now().toString(36)}`;
}

export async function createRoom(c: Client, user: TestUser, body: Json = {}): Promise<string> {
  const res = await c.post(`${V3}/createRoom`, body, { token: user.accessToken });
  return check(res, "createRoom").room_id as string;
}

export async function joinRoom(c: Client, user: TestUser, roomIdOrAlias: string): Promise<void> {
  check(await c.post(`${V3}/join/${enc(roomIdOrAlias)}`, {}, { token: user.accessToken }), "join");
}

export async function inviteUser(c: Client, inviter: TestUser, roomId: string, userId: string): Promise<void> {
  check(await c.post(`${V3}/rooms/${enc(roomId)}/invite`, { user_id: userId }, { token: inviter.accessToken }), "invite");
}

export async function leaveRoom(c: Client, user: TestUser, roomId: string): Promise<void> {
  check(await c.post(`${V3}/rooms/${enc(roomId)}/leave`, {}, { token: user.accessToken }), "leave");
}

/** A room with `owner` and the other users joined (public_chat unless the body says otherwise). */
export async function roomWith(c: Client, owner: TestUser, others: TestUser[], body: Json = {}): Promise<string> {
  const roomId = await createRoom(c, owner, { preset: "public_chat", ...body });
  for (const u of others) await joinRoom(c, u, roomId);
  return roomId;
}

/** Sends a message event and returns its event id; `content` may be a body text. */
export async function send(c: Client, user: TestUser, roomId: string, content: Json | string, type = "m.room.message"): Promise<string> {
  const body = typeof content === "string" ? { msgtype: "m.text", body: content } : content;
  const res = await c.put(`${V3}/rooms/${enc(roomId)}/send/${enc(type)}/${nextTxn()}`, body, { token: user.accessToken });
  return check(res, "send").event_id as string;
}

export async function setState(c: Client, user: TestUser, roomId: string, type: string, stateKey: string, content: Json): Promise<string> {
  const res = await c.put(`${V3}/rooms/${enc(roomId)}/state/${enc(type)}/${enc(stateKey)}`, content, { token: user.accessToken });
  return check(res, "state").event_id as string;
}

export async function getState(c: Client, user: TestUser, roomId: string, type: string, stateKey = ""): Promise<Json> {
  return check(await c.get(`${V3}/rooms/${enc(roomId)}/state/${enc(type)}/${enc(stateKey)}`, { token: user.accessToken }), `get state ${type}`);
}

export async function allState(c: Client, user: TestUser, roomId: string): Promise<ClientEvent[]> {
  return check(await c.get<ClientEvent[]>(`${V3}/rooms/${enc(roomId)}/state`, { token: user.accessToken }), "state");
}

export async function messages(c: Client, user: TestUser, roomId: string, params: Record<string, string | number> = {}): Promise<MessagesResponse> {
  const q = new URLSearchParams(Object.entries({ dir: "b", ...params }).map(([k, v]): [string, string] => [k, String(v)]));
  return check(await c.get<MessagesResponse>(`${V3}/rooms/${enc(roomId)}/messages?${q}`, { token: user.accessToken }), "messages");
}

export function syncPath(params: Record<string, string | number | boolean | object> = {}): string {
  const q = new URLSearchParams(Object.entries(params).map(([k, v]): [string, string] => [k, typeof v === "object" ? JSON.stringify(v) : String(v)]));
  const s = q.toString();
  return `${V3}/sync${s ? `?${s}` : ""}`;
}

export async function sync(c: Client, user: TestUser, params: Record<string, string | number | boolean | object> = {}): Promise<SyncResponse> {
  return check(await c.get<SyncResponse>(syncPath(params), { token: user.accessToken }), "sync");
}

/**
 * Long-polls /sync from `since` until `pred` holds for a response (returned), or fails at the deadline. Each poll
 * continues from the previous response's next_batch.
 */
export async function syncUntil(
  c: Client,
  user: TestUser,
  since: string,
  pred: (s: SyncResponse) => boolean,
  opts: { deadlineMs?: number; params?: Record<string, string | number | boolean | object> } = {},
): Promise<SyncResponse> {
  const deadline = Date.now() + (opts.deadlineMs ?? 10_000);
  let from = since;
  while (Date.now() < deadline) {
    const s = await sync(c, user, { ...(opts.params ?? {}), since: from, timeout: Math.max(1, Math.min(1000, deadline - Date.now())) });
    if (pred(s)) return s;
    from = s.next_batch;
  }
  throw new Error("syncUntil: condition not met before the deadline");
}

/** Calls `fn` until it returns a value other than undefined, or fails at the deadline. */
export async function poll<T>(fn: () => Promise<T | undefined>, deadlineMs = 10_000, intervalMs = 20): Promise<T> {
  const deadline = Date.now() + deadlineMs;
  while (true) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error("poll: condition not met before the deadline");
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** The state event of (type, state_key) in a list of events. */
export function findState<E extends { type: string; state_key?: string }>(events: E[], type: string, stateKey = ""): E | undefined {
  return events.find((e) => e.type === type && e.state_key === stateKey);
}

export function bodies(events: ClientEvent[]): string[] {
  return events.filter((e) => e.type === "m.room.message").map((e) => e.content.body as string);
}
