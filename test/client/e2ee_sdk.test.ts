/**
 * The issue's "done when", with Element's own crypto stack: matrix-js-sdk with `initRustCrypto`
 * (@matrix-org/matrix-sdk-crypto-wasm) against one Myelin. Two users chat in a megolm-encrypted room and each
 * decrypts the other; cross-signing is bootstrapped, a second device is cross-signed and reads new messages; a key
 * backup is created and a fresh device restores old messages' keys from it.
 */
import * as sdk from "matrix-js-sdk";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  MEGOLM_ENCRYPTION,
  newDevice,
  passwordAuth,
  startCryptoClient,
  stopClients,
  unlockWith,
  waitFor,
  waitForDecrypted,
} from "../helpers/e2ee_sdk.js";
import { Client, registerUser } from "../helpers/http.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

let ts: TestServer;
let raw: Client;

beforeAll(async () => {
  ts = await startTestServer();
  raw = new Client(ts.baseUrl);
});
afterEach(() => stopClients());
afterAll(async () => {
  await ts?.close();
});

/** Alice creates an encrypted room and invites Bob; both clients see each other joined. */
async function encryptedRoom(alice: sdk.MatrixClient, bob: sdk.MatrixClient): Promise<string> {
  const { room_id: roomId } = await alice.createRoom({ name: "Secret", preset: sdk.Preset.PrivateChat, invite: [bob.getUserId()!], initial_state: [MEGOLM_ENCRYPTION] });
  await waitFor("bob sees the invite", () => bob.getRoom(roomId)?.getMyMembership() === sdk.KnownMembership.Invite);
  await bob.joinRoom(roomId);
  await waitFor("alice sees bob join", () => alice.getRoom(roomId)?.getMember(bob.getUserId()!)?.membership === sdk.KnownMembership.Join);
  expect(await alice.getCrypto()!.isEncryptionEnabledInRoom(roomId)).toBe(true);
  await waitFor("bob's client knows the room is encrypted", () => bob.getCrypto()!.isEncryptionEnabledInRoom(roomId));
  return roomId;
}

async function send(client: sdk.MatrixClient, roomId: string, body: string): Promise<string> {
  const { event_id } = await client.sendMessage(roomId, { msgtype: sdk.MsgType.Text, body });
  return event_id;
}

describe("end-to-end encryption through matrix-js-sdk's Rust crypto", () => {
  it("two users chat in an encrypted room and each decrypts the other", async () => {
    const aliceUser = await registerUser(raw);
    const bobUser = await registerUser(raw);
    const alice = await startCryptoClient(ts.baseUrl, aliceUser);
    const bob = await startCryptoClient(ts.baseUrl, bobUser);
    const roomId = await encryptedRoom(alice, bob);

    const hello = await send(alice, roomId, "Hello Bob, secretly");
    const onBob = await waitForDecrypted(bob, roomId, hello);
    expect(onBob.getSender()).toBe(aliceUser.userId);
    expect(onBob.getWireType()).toBe("m.room.encrypted");
    expect(onBob.getContent()).toEqual({ msgtype: "m.text", body: "Hello Bob, secretly" });

    const reply = await send(bob, roomId, "Hi Alice, also secretly");
    const onAlice = await waitForDecrypted(alice, roomId, reply);
    expect(onAlice.getSender()).toBe(bobUser.userId);
    expect(onAlice.getContent().body).toBe("Hi Alice, also secretly");

    // The server only ever held ciphertext.
    const stored = await raw.get<{ type: string; content: Record<string, unknown> }>(`/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/event/${encodeURIComponent(hello)}`, { token: bobUser.accessToken });
    expect(stored.status).toBe(200);
    expect(stored.body.type).toBe("m.room.encrypted");
    expect(stored.body.content.algorithm).toBe("m.megolm.v1.aes-sha2");
    expect(stored.text).not.toContain("secretly");
  }, 60_000);

  it("cross-signing is bootstrapped; a second device is cross-signed and reads new messages", async () => {
    const aliceUser = await registerUser(raw);
    const bobUser = await registerUser(raw);
    const alice = await startCryptoClient(ts.baseUrl, aliceUser);
    const bob = await startCryptoClient(ts.baseUrl, bobUser);
    const roomId = await encryptedRoom(alice, bob);

    const auth = passwordAuth(aliceUser);
    await alice.getCrypto()!.bootstrapCrossSigning({ authUploadDeviceSigningKeys: auth });
    expect(auth.challenges).toBe(0); // the first upload needs no User-Interactive Auth
    expect(await alice.getCrypto()!.isCrossSigningReady()).toBe(true);
    const status = await alice.getCrypto()!.getCrossSigningStatus();
    expect(status.publicKeysOnDevice).toBe(true);
    expect(status.privateKeysCachedLocally).toEqual({ masterKey: true, selfSigningKey: true, userSigningKey: true });
    // The first device signs itself with the new self-signing key as part of the bootstrap (uploaded, then queried).
    await waitFor("alice's first device is cross-signed", async () => (await alice.getCrypto()!.getDeviceVerificationStatus(aliceUser.userId, aliceUser.deviceId))?.crossSigningVerified);
    // Bob sees that Alice has cross-signing keys.
    await waitFor("bob sees alice's cross-signing keys", () => bob.getCrypto()!.userHasCrossSigningKeys(aliceUser.userId, true));

    // A second device logs in; the first sees it and cross-signs it.
    const laptopUser = await newDevice(ts.baseUrl, aliceUser, "Alice's laptop");
    const laptop = await startCryptoClient(ts.baseUrl, laptopUser);
    await waitFor("alice's first device sees the laptop's keys", async () => (await alice.getCrypto()!.getUserDeviceInfo([aliceUser.userId], true)).get(aliceUser.userId)?.has(laptopUser.deviceId));
    expect((await alice.getCrypto()!.getDeviceVerificationStatus(aliceUser.userId, laptopUser.deviceId))?.crossSigningVerified).toBe(false);
    await alice.getCrypto()!.crossSignDevice(laptopUser.deviceId);
    await waitFor("the laptop is cross-signed, as alice's first device sees it", async () => (await alice.getCrypto()!.getDeviceVerificationStatus(aliceUser.userId, laptopUser.deviceId))?.crossSigningVerified);
    // Bob, who has not verified Alice, still sees that the laptop is signed by its owner.
    await waitFor("bob sees the laptop signed by alice", async () => (await bob.getCrypto()!.getDeviceVerificationStatus(aliceUser.userId, laptopUser.deviceId))?.signedByOwner);

    // New messages from Bob reach both of Alice's devices.
    const fresh = await send(bob, roomId, "for both of your devices");
    expect((await waitForDecrypted(laptop, roomId, fresh)).getContent().body).toBe("for both of your devices");
    expect((await waitForDecrypted(alice, roomId, fresh)).getContent().body).toBe("for both of your devices");
    // And the laptop's own message reaches Bob.
    const fromLaptop = await send(laptop, roomId, "sent from the laptop");
    expect((await waitForDecrypted(bob, roomId, fromLaptop)).getContent().body).toBe("sent from the laptop");

    // Replacing the cross-signing keys asks for the password; Bob's client sees the new master key.
    const masterBefore = await alice.getCrypto()!.getCrossSigningKeyId();
    await alice.getCrypto()!.bootstrapCrossSigning({ setupNewCrossSigning: true, authUploadDeviceSigningKeys: auth });
    expect(auth.challenges).toBe(1);
    const masterAfter = await alice.getCrypto()!.getCrossSigningKeyId();
    expect(masterAfter).not.toBe(masterBefore);
    // Bob's client follows: the first device is signed by the new keys, the laptop (signed by the old ones) no longer.
    await waitFor("bob sees the laptop no longer signed by alice's new keys", async () => {
      const crypto = bob.getCrypto()!;
      const first = await crypto.getDeviceVerificationStatus(aliceUser.userId, aliceUser.deviceId);
      const second = await crypto.getDeviceVerificationStatus(aliceUser.userId, laptopUser.deviceId);
      return first?.signedByOwner === true && second?.signedByOwner === false;
    });
    const keys = await raw.post<{ master_keys: Record<string, { keys: Record<string, string> }> }>("/_matrix/client/v3/keys/query", { device_keys: { [aliceUser.userId]: [] } }, { token: bobUser.accessToken });
    expect(Object.keys(keys.body.master_keys[aliceUser.userId]!.keys)).toEqual([`ed25519:${masterAfter}`]);
  }, 60_000);

  it("a key backup is created and a fresh device restores old messages from it", async () => {
    const aliceUser = await registerUser(raw);
    const bobUser = await registerUser(raw);
    const alice = await startCryptoClient(ts.baseUrl, aliceUser);
    const bob = await startCryptoClient(ts.baseUrl, bobUser);
    const roomId = await encryptedRoom(alice, bob);
    await alice.getCrypto()!.bootstrapCrossSigning({ authUploadDeviceSigningKeys: passwordAuth(aliceUser) });

    const mine = await send(alice, roomId, "old message from alice");
    const theirs = await send(bob, roomId, "old message from bob");
    await waitForDecrypted(alice, roomId, theirs);

    // A new backup: the SDK creates a version, signs it, and uploads the room keys it holds.
    // resetKeyBackup starts using the new version in the background; checkKeyBackupAndEnable waits for that check.
    await alice.getCrypto()!.resetKeyBackup();
    const check = await alice.getCrypto()!.checkKeyBackupAndEnable();
    expect(check?.backupInfo.algorithm).toBe("m.megolm_backup.v1.curve25519-aes-sha2");
    expect(check?.trustInfo).toEqual({ trusted: true, matchesDecryptionKey: true });
    const version = await alice.getCrypto()!.getActiveSessionBackupVersion();
    expect(version).toBe(check!.backupInfo.version);
    // Both sessions (Alice's outbound one and Bob's) reach the server.
    const backedUp = await waitFor("both room keys are in the backup", async () => {
      const res = await raw.get<{ rooms: Record<string, { sessions: Record<string, unknown> }> }>(`/_matrix/client/v3/room_keys/keys?version=${version}`, { token: aliceUser.accessToken });
      const sessions = Object.keys(res.body.rooms?.[roomId]?.sessions ?? {});
      return sessions.length === 2 ? sessions : undefined;
    }, 30_000);
    expect(backedUp).toHaveLength(2);
    const backupKey = await alice.getCrypto()!.getSessionBackupPrivateKey();
    expect(backupKey).toBeInstanceOf(Uint8Array);

    // A fresh device cannot read the old messages until it restores from the backup.
    const tabletUser = await newDevice(ts.baseUrl, aliceUser, "Alice's tablet");
    const tablet = await startCryptoClient(ts.baseUrl, tabletUser);
    await waitFor("the tablet has the old messages, undecryptable", () => {
      const events = tablet.getRoom(roomId)?.getLiveTimeline().getEvents() ?? [];
      const old = events.filter((e) => e.getId() === mine || e.getId() === theirs);
      return old.length === 2 && old.every((e) => e.isDecryptionFailure());
    });
    await tablet.getCrypto()!.storeSessionBackupPrivateKey(backupKey!, version!);
    const restored = await tablet.getCrypto()!.restoreKeyBackup();
    expect(restored.imported).toBe(2);
    expect((await waitForDecrypted(tablet, roomId, mine)).getContent().body).toBe("old message from alice");
    expect((await waitForDecrypted(tablet, roomId, theirs)).getContent().body).toBe("old message from bob");
  }, 60_000);

  it("with a recovery key (secret storage), a fresh device verifies itself and restores the backup", async () => {
    const aliceUser = await registerUser(raw);
    const bobUser = await registerUser(raw);
    // Secret storage is unlocked with the recovery key; the first device makes it (as Element's "set up recovery").
    const recovery: { key?: Uint8Array } = {};
    const alice = await startCryptoClient(ts.baseUrl, aliceUser, { cryptoCallbacks: { getSecretStorageKey: async ({ keys }) => [Object.keys(keys)[0]!, recovery.key!] } });
    const bob = await startCryptoClient(ts.baseUrl, bobUser);
    const roomId = await encryptedRoom(alice, bob);

    await alice.getCrypto()!.bootstrapCrossSigning({ authUploadDeviceSigningKeys: passwordAuth(aliceUser) });
    const generated = await alice.getCrypto()!.createRecoveryKeyFromPassphrase();
    recovery.key = generated.privateKey;
    await alice.getCrypto()!.bootstrapSecretStorage({ createSecretStorageKey: async () => generated, setupNewSecretStorage: true, setupNewKeyBackup: true });
    expect(await alice.getCrypto()!.isSecretStorageReady()).toBe(true);
    const version = await waitFor("alice backs up to the new version", () => alice.getCrypto()!.getActiveSessionBackupVersion());
    // The secrets are account data, encrypted: the server never holds them in the clear.
    const defaultKey = await raw.get<{ key: string }>(`/_matrix/client/v3/user/${encodeURIComponent(aliceUser.userId)}/account_data/m.secret_storage.default_key`, { token: aliceUser.accessToken });
    expect(defaultKey.status).toBe(200);
    const stored = await raw.get<{ encrypted: Record<string, { ciphertext: string }> }>(`/_matrix/client/v3/user/${encodeURIComponent(aliceUser.userId)}/account_data/m.megolm_backup.v1`, { token: aliceUser.accessToken });
    expect(Object.keys(stored.body.encrypted)).toEqual([defaultKey.body.key]);

    const old = await send(bob, roomId, "before the new device");
    await waitForDecrypted(alice, roomId, old);
    await waitFor("bob's room key is in the backup", async () => {
      const res = await raw.get<{ rooms: Record<string, { sessions: Record<string, unknown> }> }>(`/_matrix/client/v3/room_keys/keys?version=${version}`, { token: aliceUser.accessToken });
      return Object.keys(res.body.rooms?.[roomId]?.sessions ?? {}).length >= 1;
    }, 30_000);

    // A fresh device: the recovery key unlocks the cross-signing keys (it signs itself) and the backup key.
    const phoneUser = await newDevice(ts.baseUrl, aliceUser, "Alice's phone");
    const phone = await startCryptoClient(ts.baseUrl, phoneUser, { cryptoCallbacks: unlockWith(generated.privateKey) });
    // Importing private keys needs the public ones first (as Element waits for its own keys before asking).
    await waitFor("the phone has alice's public cross-signing keys", () => phone.getCrypto()!.userHasCrossSigningKeys(aliceUser.userId, true));
    await phone.getCrypto()!.bootstrapCrossSigning({ authUploadDeviceSigningKeys: passwordAuth(aliceUser) });
    expect(await phone.getCrypto()!.isCrossSigningReady()).toBe(true);
    await waitFor("the phone is cross-signed", async () => (await phone.getCrypto()!.getDeviceVerificationStatus(aliceUser.userId, phoneUser.deviceId))?.crossSigningVerified);
    await waitFor("bob sees the phone signed by alice", async () => (await bob.getCrypto()!.getDeviceVerificationStatus(aliceUser.userId, phoneUser.deviceId))?.signedByOwner);

    await phone.getCrypto()!.loadSessionBackupPrivateKeyFromSecretStorage();
    const restored = await phone.getCrypto()!.restoreKeyBackup();
    expect(restored.imported).toBeGreaterThanOrEqual(1);
    expect((await waitForDecrypted(phone, roomId, old)).getContent().body).toBe("before the new device");
  }, 60_000);
});
