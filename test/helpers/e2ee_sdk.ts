/**
 * matrix-js-sdk clients with Element's Rust crypto (`initRustCrypto`, @matrix-org/matrix-sdk-crypto-wasm), for the
 * end-to-end encryption tests: each client keeps its crypto state in memory and runs the SDK's own /sync loop.
 */
import { LoggerLevel, Tracing } from "@matrix-org/matrix-sdk-crypto-wasm";
import * as sdk from "matrix-js-sdk";
import type { AuthDict, UIAuthCallback } from "matrix-js-sdk";
import { logger as sdkGlobalLogger } from "matrix-js-sdk/lib/logger.js";
import { Client, login, type TestUser } from "./http.js";

/** The SDK logs every request and crypto step; keep the test output to errors. */
export const quietLogger: NonNullable<sdk.ICreateClientOpts["logger"]> = {
  trace: () => {},
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: (...msg: unknown[]) => console.error(...msg),
  getChild: () => quietLogger,
};

// Parts of the SDK (sync, backup, room encryption) log through its global logger rather than the client's, and its
// child loggers start at debug level: keep all of them to errors.
sdkGlobalLogger.setLevel("error");
const childOf = sdkGlobalLogger.withPrefix.bind(sdkGlobalLogger);
sdkGlobalLogger.getChild = sdkGlobalLogger.withPrefix = (prefix: string) => {
  const child = childOf(prefix);
  child.setLevel("error", false);
  return child;
};

/** Clients started by a test file, stopped after each test. */
export const runningClients: sdk.MatrixClient[] = [];

export function stopClients(): void {
  for (const cl of runningClients.splice(0)) cl.stopClient();
}

/**
 * A client for `u` with Rust crypto initialised (in-memory store) and its sync loop prepared. `start` gives the
 * startClient options (e.g. a SlidingSync, which needs the client); by default a /sync v2 loop.
 */
export async function startCryptoClient(
  baseUrl: string,
  u: TestUser,
  opts: Partial<sdk.ICreateClientOpts> = {},
  start: (client: sdk.MatrixClient) => sdk.IStartClientOpts = () => ({ initialSyncLimit: 30 }),
): Promise<sdk.MatrixClient> {
  const client = sdk.createClient({ ...opts, baseUrl, accessToken: u.accessToken, userId: u.userId, deviceId: u.deviceId, logger: quietLogger });
  runningClients.push(client);
  await client.initRustCrypto({ useIndexedDB: false });
  // initRustCrypto turns the Rust crypto's tracing on at debug level, to the console.
  new Tracing(LoggerLevel.Error).turnOn();
  const prepared = new Promise<void>((resolve, reject) => {
    const onSync = (state: sdk.SyncState, _prev: sdk.SyncState | null, data?: sdk.SyncStateData) => {
      if (state === sdk.SyncState.Prepared || state === sdk.SyncState.Syncing) {
        client.off(sdk.ClientEvent.Sync, onSync);
        resolve();
      } else if (state === sdk.SyncState.Error) {
        client.off(sdk.ClientEvent.Sync, onSync);
        reject(data?.error ?? new Error("sync error"));
      }
    };
    client.on(sdk.ClientEvent.Sync, onSync);
  });
  await client.startClient(start(client));
  await prepared;
  return client;
}

/** Logs `u` in again as a new device (password login). */
export async function newDevice(baseUrl: string, u: TestUser, displayName: string): Promise<TestUser> {
  const res = await login(new Client(baseUrl), u.userId, u.password, { initial_device_display_name: displayName });
  if (res.status !== 200) throw new Error(`login: ${res.status} ${res.text}`);
  return { ...u, accessToken: res.body.access_token as string, deviceId: res.body.device_id as string };
}

/**
 * The `authUploadDeviceSigningKeys` callback of `bootstrapCrossSigning`: first without auth (the first upload needs
 * none), and with the account password if the server answers with a User-Interactive Auth challenge. `challenges`
 * counts the challenges answered.
 */
export function passwordAuth(u: TestUser): UIAuthCallback<void> & { challenges: number } {
  const callback = async (makeRequest: Parameters<UIAuthCallback<void>>[0]) => {
    try {
      await makeRequest(null);
    } catch (e) {
      const err = e as sdk.MatrixError;
      if (err.httpStatus !== 401 || typeof err.data?.session !== "string") throw e;
      callback.challenges++;
      const auth: AuthDict = { type: "m.login.password", identifier: { type: "m.id.user", user: u.userId }, password: u.password, session: err.data.session };
      await makeRequest(auth);
    }
  };
  callback.challenges = 0;
  return callback;
}

/** `cryptoCallbacks` that unlock secret storage with `recoveryKey` (as a user typing their recovery key would). */
export function unlockWith(recoveryKey: Uint8Array): sdk.ICreateClientOpts["cryptoCallbacks"] {
  return { getSecretStorageKey: async ({ keys }) => [Object.keys(keys)[0]!, recoveryKey] };
}

/** Polls a condition until it yields a value (not undefined/null/false), or fails at the deadline. */
export async function waitFor<T>(what: string, fn: () => T | undefined | null | false | Promise<T | undefined | null | false>, deadlineMs = 20_000): Promise<T> {
  const deadline = Date.now() + deadlineMs;
  while (true) {
    const v = await fn();
    if (v !== undefined && v !== null && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export function findEvent(client: sdk.MatrixClient, roomId: string, eventId: string): sdk.MatrixEvent | undefined {
  return client.getRoom(roomId)?.getLiveTimeline().getEvents().find((e) => e.getId() === eventId);
}

/**
 * Waits until `client` holds the event and has decrypted it, and returns the event. The event must arrive
 * encrypted (`m.room.encrypted` on the wire) and decrypt to an `m.room.message`.
 */
export async function waitForDecrypted(client: sdk.MatrixClient, roomId: string, eventId: string, deadlineMs = 20_000): Promise<sdk.MatrixEvent> {
  return waitFor(
    `${client.getUserId()}/${client.getDeviceId()} decrypts ${eventId}`,
    () => {
      const e = findEvent(client, roomId, eventId);
      if (!e || e.isBeingDecrypted() || e.isDecryptionFailure() || !e.isEncrypted()) return undefined;
      return e.getType() === "m.room.message" ? e : undefined;
    },
    deadlineMs,
  );
}

/** The encryption state event an encrypted room is created with. */
export const MEGOLM_ENCRYPTION = { type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } };
