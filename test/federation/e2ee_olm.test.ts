/**
 * The second, independent crypto stack across two Myelin servers on loopback: alice on hs1.test is a raw-HTTP
 * libolm client (test/helpers/olm_client.ts), bob on hs2.test a matrix-js-sdk client on Element's Rust crypto. Bob's
 * /keys/query and /keys/claim for alice's libolm device go through hs2 to hs1 over federation (the single-server
 * test covers the other direction of the claim), as do the Olm-encrypted room keys, as to-device messages, both
 * ways; each decrypts the other's megolm messages.
 */
import * as sdk from "matrix-js-sdk";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { MEGOLM_ENCRYPTION, startCryptoClient, stopClients, waitFor, waitForDecrypted } from "../helpers/e2ee_sdk.js";
import { startServerPair } from "../helpers/federation.js";
import { closeFederatedServers } from "../helpers/federation_close.js";
import { Client, registerUser } from "../helpers/http.js";
import { OlmClient } from "../helpers/olm_client.js";
import { createRoom, enc, V3 } from "../helpers/rooms.js";
import type { TestServer } from "../helpers/server.js";

let hs1: TestServer;
let hs2: TestServer;
let c1: Client;
let c2: Client;
let alice: OlmClient | undefined;

beforeAll(async () => {
  ({ hs1, hs2, c1, c2 } = await startServerPair());
});
afterEach(() => {
  stopClients();
  alice?.close();
  alice = undefined;
});
afterAll(async () => {
  await closeFederatedServers([hs1, hs2]);
});

describe("end-to-end encryption across two servers between libolm and Rust crypto", () => {
  it("alice@hs1 on libolm and bob@hs2 on Rust crypto chat in an encrypted room; each decrypts the other", async () => {
    const aliceUser = await registerUser(c1);
    const bobUser = await registerUser(c2);
    alice = await OlmClient.start(hs1.baseUrl, aliceUser);
    const bob = await startCryptoClient(hs2.baseUrl, bobUser);

    const roomId = await createRoom(c1, aliceUser, { preset: "private_chat", invite: [bobUser.userId], initial_state: [MEGOLM_ENCRYPTION] });
    await waitFor("bob sees the invite", () => bob.getRoom(roomId)?.getMyMembership() === sdk.KnownMembership.Invite);
    await bob.joinRoom(roomId);
    await waitFor("bob's client knows the room is encrypted", () => bob.getCrypto()!.isEncryptionEnabledInRoom(roomId));

    // Bob writes first: his Rust crypto claims one of alice's libolm one-time keys through hs2 from hs1, and alice
    // opens the inbound Olm session from his pre-key message.
    const hello = await bob.sendMessage(roomId, { msgtype: sdk.MsgType.Text, body: "Hello from Rust on hs2" });
    const onAlice = await alice.waitForDecrypted(roomId, hello.event_id);
    expect(onAlice.sender).toBe(bobUser.userId);
    expect(onAlice.senderDevice.deviceId).toBe(bobUser.deviceId);
    expect(onAlice.content).toEqual({ msgtype: "m.text", body: "Hello from Rust on hs2" });
    // Of alice's 20 one-time keys on hs1, bob's claim took one.
    const counts = await c1.post<{ one_time_key_counts: Record<string, number> }>(`${V3}/keys/upload`, {}, { token: aliceUser.accessToken });
    expect(counts.body.one_time_key_counts.signed_curve25519).toBe(19);

    // Alice answers over that Olm session with her own megolm session.
    const reply = await alice.sendMessage(roomId, "Hello from libolm on hs1");
    const onBob = await waitForDecrypted(bob, roomId, reply);
    expect(onBob.getSender()).toBe(aliceUser.userId);
    expect(onBob.getWireType()).toBe("m.room.encrypted");
    expect(onBob.getContent()).toEqual({ msgtype: "m.text", body: "Hello from libolm on hs1" });
    expect(onBob.getSenderKey()).toBe(alice.curve25519);

    // What crossed over federation is ciphertext, on both servers.
    for (const [c, token, eventId, text] of [
      [c1, aliceUser.accessToken, hello.event_id, "Hello from Rust"],
      [c2, bobUser.accessToken, reply, "Hello from libolm"],
    ] as const) {
      const stored = await c.get<{ type: string }>(`${V3}/rooms/${enc(roomId)}/event/${enc(eventId)}`, { token });
      expect(stored.body.type).toBe("m.room.encrypted");
      expect(stored.text).not.toContain(text);
    }
    expect(alice.refused).toEqual([]);
  }, 60_000);
});
