/**
 * The "done when" with a second, independent crypto stack: a raw-HTTP client on libolm
 * (test/helpers/olm_client.ts) against one Myelin, chatting in a megolm-encrypted room with a matrix-js-sdk client
 * on Element's Rust crypto, and with another libolm client. Each side decrypts what the other sent.
 */
import * as sdk from "matrix-js-sdk";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { MEGOLM_ENCRYPTION, newDevice, startCryptoClient, stopClients, waitFor, waitForDecrypted } from "../helpers/e2ee_sdk.js";
import { Client, registerUser } from "../helpers/http.js";
import { OlmClient } from "../helpers/olm_client.js";
import { createRoom, enc, joinRoom, V3 } from "../helpers/rooms.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

let ts: TestServer;
let raw: Client;
const olmClients: OlmClient[] = [];

async function startOlm(...args: Parameters<typeof OlmClient.start>): Promise<OlmClient> {
  const c = await OlmClient.start(...args);
  olmClients.push(c);
  return c;
}

beforeAll(async () => {
  ts = await startTestServer();
  raw = new Client(ts.baseUrl);
});
afterEach(() => {
  stopClients();
  for (const c of olmClients.splice(0)) c.close();
});
afterAll(async () => {
  await ts?.close();
});

/** What the server holds for the event: ciphertext only. */
async function expectStoredEncrypted(token: string, roomId: string, eventId: string, plaintext: string): Promise<void> {
  const stored = await raw.get<{ type: string; content: Record<string, unknown> }>(`${V3}/rooms/${enc(roomId)}/event/${enc(eventId)}`, { token });
  expect(stored.status).toBe(200);
  expect(stored.body.type).toBe("m.room.encrypted");
  expect(stored.body.content.algorithm).toBe("m.megolm.v1.aes-sha2");
  expect(stored.text).not.toContain(plaintext);
}

describe("end-to-end encryption with libolm as a second stack", () => {
  it("a libolm user and a Rust-crypto user chat in an encrypted room and each decrypts the other", async () => {
    const aliceUser = await registerUser(raw);
    const bobUser = await registerUser(raw);
    const alice = await startOlm(ts.baseUrl, aliceUser);
    const bob = await startCryptoClient(ts.baseUrl, bobUser);

    const roomId = await createRoom(raw, aliceUser, { preset: "private_chat", invite: [bobUser.userId], initial_state: [MEGOLM_ENCRYPTION] });
    await waitFor("bob sees the invite", () => bob.getRoom(roomId)?.getMyMembership() === sdk.KnownMembership.Invite);
    await bob.joinRoom(roomId);
    await waitFor("bob's client knows the room is encrypted", () => bob.getCrypto()!.isEncryptionEnabledInRoom(roomId));
    await waitFor("alice sees bob's device", async () => (await alice.queryDevices([bobUser.userId])).some((d) => d.deviceId === bobUser.deviceId));

    const hello = await alice.sendMessage(roomId, "Hello from libolm, secretly");
    const onBob = await waitForDecrypted(bob, roomId, hello);
    expect(onBob.getSender()).toBe(aliceUser.userId);
    expect(onBob.getWireType()).toBe("m.room.encrypted");
    expect(onBob.getContent()).toEqual({ msgtype: "m.text", body: "Hello from libolm, secretly" });
    // The Rust crypto attributes the session to alice's libolm device.
    expect(onBob.getSenderKey()).toBe(alice.curve25519);

    const reply = await bob.sendMessage(roomId, { msgtype: sdk.MsgType.Text, body: "Hello from Rust, secretly" });
    const onAlice = await alice.waitForDecrypted(roomId, reply.event_id);
    expect(onAlice.sender).toBe(bobUser.userId);
    expect(onAlice.senderDevice.deviceId).toBe(bobUser.deviceId);
    expect(onAlice.type).toBe("m.room.message");
    expect(onAlice.content).toEqual({ msgtype: "m.text", body: "Hello from Rust, secretly" });

    // A second message on alice's megolm session (the next ratchet index) still decrypts.
    const again = await alice.sendMessage(roomId, "and once more");
    expect((await waitForDecrypted(bob, roomId, again)).getContent().body).toBe("and once more");

    await expectStoredEncrypted(bobUser.accessToken, roomId, hello, "secretly");
    await expectStoredEncrypted(aliceUser.accessToken, roomId, reply.event_id, "secretly");
    expect(alice.refused).toEqual([]);
  }, 60_000);

  it("two libolm users chat both ways, and a second libolm device of one of them reads new messages", async () => {
    const aliceUser = await registerUser(raw);
    const bobUser = await registerUser(raw);
    const alice = await startOlm(ts.baseUrl, aliceUser);
    const bob = await startOlm(ts.baseUrl, bobUser, 5);

    const roomId = await createRoom(raw, aliceUser, { preset: "private_chat", invite: [bobUser.userId], initial_state: [MEGOLM_ENCRYPTION] });
    await joinRoom(raw, bobUser, roomId);

    const hello = await alice.sendMessage(roomId, "Hi Bob, from libolm");
    const onBob = await bob.waitForDecrypted(roomId, hello);
    expect(onBob).toMatchObject({ sender: aliceUser.userId, type: "m.room.message", content: { msgtype: "m.text", body: "Hi Bob, from libolm" } });
    expect(onBob.senderDevice.curve25519).toBe(alice.curve25519);

    // Bob answers over the Olm session alice opened (a normal message now) with his own megolm session.
    const reply = await bob.sendMessage(roomId, "Hi Alice, from libolm too");
    const onAlice = await alice.waitForDecrypted(roomId, reply);
    expect(onAlice).toMatchObject({ sender: bobUser.userId, content: { body: "Hi Alice, from libolm too" } });
    expect(onAlice.senderDevice.deviceId).toBe(bobUser.deviceId);

    // Alice's claim used one of bob's five one-time keys; his sync tops the pool up again.
    const counts = await raw.post<{ one_time_key_counts: Record<string, number> }>(`${V3}/keys/upload`, {}, { token: bobUser.accessToken });
    expect(counts.body.one_time_key_counts.signed_curve25519).toBe(20);

    // Bob logs in a second libolm device: alice's next message reaches both, and the new device's answer reaches her.
    const bobPhone = await startOlm(ts.baseUrl, await newDevice(ts.baseUrl, bobUser, "Bob's phone"));
    const both = await alice.sendMessage(roomId, "to both of your devices");
    expect((await bobPhone.waitForDecrypted(roomId, both)).content.body).toBe("to both of your devices");
    expect((await bob.waitForDecrypted(roomId, both)).content.body).toBe("to both of your devices");
    // The phone got alice's megolm session from a later index on: her first message stays unreadable there.
    expect(bobPhone.decrypted.has(hello)).toBe(false);
    expect(bobPhone.undecryptable.get(hello)).toContain("OLM.UNKNOWN_MESSAGE_INDEX");
    const fromPhone = await bobPhone.sendMessage(roomId, "from bob's phone");
    expect((await alice.waitForDecrypted(roomId, fromPhone)).content.body).toBe("from bob's phone");
    expect((await bob.waitForDecrypted(roomId, fromPhone)).senderDevice.deviceId).toBe(bobPhone.deviceId);

    await expectStoredEncrypted(bobUser.accessToken, roomId, hello, "libolm");
    for (const c of [alice, bob, bobPhone]) expect(c.refused).toEqual([]);
  }, 60_000);
});
