/**
 * The "done when" across two Myelin servers on loopback: alice on hs1.test and bob on hs2.test, each a
 * matrix-js-sdk client with Element's Rust crypto (`initRustCrypto`) talking HTTP to their own server, chat in a
 * megolm-encrypted room. Room keys travel as to-device messages over federation, device keys through
 * /user/keys/query and one-time keys through /user/keys/claim; each decrypts the other.
 */
import * as sdk from "matrix-js-sdk";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { MEGOLM_ENCRYPTION, newDevice, passwordAuth, startCryptoClient, stopClients, waitFor, waitForDecrypted } from "../helpers/e2ee_sdk.js";
import { startServerPair } from "../helpers/federation.js";
import { closeFederatedServers } from "../helpers/federation_close.js";
import { Client, registerUser } from "../helpers/http.js";
import type { TestServer } from "../helpers/server.js";

let hs1: TestServer;
let hs2: TestServer;
let c1: Client;
let c2: Client;

beforeAll(async () => {
  ({ hs1, hs2, c1, c2 } = await startServerPair());
});
afterEach(() => stopClients());
afterAll(async () => {
  await closeFederatedServers([hs1, hs2]);
});

describe("end-to-end encryption across two servers through matrix-js-sdk's Rust crypto", () => {
  it("alice@hs1 and bob@hs2 chat in an encrypted room; each decrypts the other, and a cross-signed second device of bob's reads on", async () => {
    const aliceUser = await registerUser(c1);
    const bobUser = await registerUser(c2);
    const alice = await startCryptoClient(hs1.baseUrl, aliceUser);
    const bob = await startCryptoClient(hs2.baseUrl, bobUser);

    const { room_id: roomId } = await alice.createRoom({ name: "Across", preset: sdk.Preset.PrivateChat, invite: [bobUser.userId], initial_state: [MEGOLM_ENCRYPTION] });
    await waitFor("bob sees the invite", () => bob.getRoom(roomId)?.getMyMembership() === sdk.KnownMembership.Invite);
    await bob.joinRoom(roomId);
    await waitFor("alice sees bob join", () => alice.getRoom(roomId)?.getMember(bobUser.userId)?.membership === sdk.KnownMembership.Join);
    await waitFor("bob's client knows the room is encrypted", () => bob.getCrypto()!.isEncryptionEnabledInRoom(roomId));

    const { event_id: hello } = await alice.sendMessage(roomId, { msgtype: sdk.MsgType.Text, body: "Hello from hs1" });
    const onBob = await waitForDecrypted(bob, roomId, hello);
    expect(onBob.getSender()).toBe(aliceUser.userId);
    expect(onBob.getWireType()).toBe("m.room.encrypted");
    expect(onBob.getContent()).toEqual({ msgtype: "m.text", body: "Hello from hs1" });

    const { event_id: reply } = await bob.sendMessage(roomId, { msgtype: sdk.MsgType.Text, body: "Hello from hs2" });
    const onAlice = await waitForDecrypted(alice, roomId, reply);
    expect(onAlice.getSender()).toBe(bobUser.userId);
    expect(onAlice.getContent().body).toBe("Hello from hs2");

    // What reached hs1 over federation is ciphertext.
    const stored = await c1.get<{ type: string }>(`/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/event/${encodeURIComponent(reply)}`, { token: aliceUser.accessToken });
    expect(stored.body.type).toBe("m.room.encrypted");
    expect(stored.text).not.toContain("Hello from hs2");

    // Bob bootstraps cross-signing; alice's server learns the keys (m.signing_key_update) and her client sees them.
    await bob.getCrypto()!.bootstrapCrossSigning({ authUploadDeviceSigningKeys: passwordAuth(bobUser) });
    await waitFor("alice sees bob's cross-signing keys", () => alice.getCrypto()!.userHasCrossSigningKeys(bobUser.userId, true));

    // Bob logs in a second device and cross-signs it; alice sees it signed by bob (m.device_list_update over federation).
    const bobLaptopUser = await newDevice(hs2.baseUrl, bobUser, "Bob's laptop");
    const bobLaptop = await startCryptoClient(hs2.baseUrl, bobLaptopUser);
    await waitFor("bob's first device sees the laptop", async () => (await bob.getCrypto()!.getUserDeviceInfo([bobUser.userId], true)).get(bobUser.userId)?.has(bobLaptopUser.deviceId));
    await bob.getCrypto()!.crossSignDevice(bobLaptopUser.deviceId);
    await waitFor("alice sees bob's laptop signed by bob", async () => (await alice.getCrypto()!.getDeviceVerificationStatus(bobUser.userId, bobLaptopUser.deviceId))?.signedByOwner);

    // Alice's next message reaches both of bob's devices; the laptop's answer reaches alice.
    const { event_id: second } = await alice.sendMessage(roomId, { msgtype: sdk.MsgType.Text, body: "to both of bob's devices" });
    expect((await waitForDecrypted(bobLaptop, roomId, second)).getContent().body).toBe("to both of bob's devices");
    expect((await waitForDecrypted(bob, roomId, second)).getContent().body).toBe("to both of bob's devices");
    const { event_id: fromLaptop } = await bobLaptop.sendMessage(roomId, { msgtype: sdk.MsgType.Text, body: "from bob's laptop" });
    expect((await waitForDecrypted(alice, roomId, fromLaptop)).getContent().body).toBe("from bob's laptop");
  }, 60_000);
});
