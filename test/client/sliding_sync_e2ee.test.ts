/**
 * Encrypted chat over Sliding Sync (issue 16): two matrix-js-sdk clients with Rust crypto sync only through
 * SlidingSync (MSC4186 engine) with the SDK's own extensions — `to_device` carries the room keys, `e2ee` the one-time
 * key counts and device list changes — and each decrypts the other's messages.
 */
import * as sdk from "matrix-js-sdk";
import { SlidingSync } from "matrix-js-sdk/lib/sliding-sync.js";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { MEGOLM_ENCRYPTION, startCryptoClient, stopClients, waitFor, waitForDecrypted } from "../helpers/e2ee_sdk.js";
import { Client, registerUser, type TestUser } from "../helpers/http.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

let ts: TestServer;
let raw: Client;
const syncs: SlidingSync[] = [];

beforeAll(async () => {
  ts = await startTestServer();
  raw = new Client(ts.baseUrl);
});
afterEach(() => {
  for (const s of syncs.splice(0)) s.stop();
  stopClients();
});
afterAll(async () => {
  await ts?.close();
});

/** A client with Rust crypto that syncs only over Sliding Sync (the SDK adds its to_device and e2ee extensions). */
async function slidingCryptoClient(u: TestUser): Promise<sdk.MatrixClient> {
  return startCryptoClient(ts.baseUrl, u, {}, (client) => {
    const lists = new Map([["all", { ranges: [[0, 19]], timeline_limit: 10, required_state: [["*", "*"]] }]]);
    const slidingSync = new SlidingSync(ts.baseUrl, lists, { timeline_limit: 10, required_state: [["*", "*"]] }, client, 1000);
    syncs.push(slidingSync);
    return { slidingSync };
  });
}

describe("encrypted chat over Sliding Sync", () => {
  it("two Rust-crypto clients syncing over SlidingSync with to_device and e2ee each decrypt the other", async () => {
    const aliceUser = await registerUser(raw);
    const bobUser = await registerUser(raw);
    const alice = await slidingCryptoClient(aliceUser);
    const bob = await slidingCryptoClient(bobUser);
    // The SDK registered its crypto extensions on each connection: room keys and key state come only through them.
    for (const s of syncs) expect(Object.keys((s as unknown as { extensions: Record<string, unknown> }).extensions)).toEqual(expect.arrayContaining(["to_device", "e2ee"]));

    // Both devices uploaded their identity and one-time keys (the SDK does that after the e2ee extension's counts).
    await waitFor("both devices' keys are on the server", async () => {
      const res = await raw.post<{ device_keys: Record<string, Record<string, unknown>> }>("/_matrix/client/v3/keys/query", { device_keys: { [aliceUser.userId]: [], [bobUser.userId]: [] } }, { token: aliceUser.accessToken });
      return res.body.device_keys[aliceUser.userId]?.[aliceUser.deviceId] && res.body.device_keys[bobUser.userId]?.[bobUser.deviceId];
    });

    const otks = async (u: TestUser) => ((await raw.post<{ one_time_key_counts: Record<string, number> }>("/_matrix/client/v3/keys/upload", {}, { token: u.accessToken })).body.one_time_key_counts.signed_curve25519 ?? 0);
    const bobTarget = await waitFor("bob's one-time keys are uploaded", async () => ((await otks(bobUser)) > 0 ? otks(bobUser) : undefined));

    const { room_id: roomId } = await alice.createRoom({ name: "Secret over SS", preset: sdk.Preset.PrivateChat, invite: [bobUser.userId], initial_state: [MEGOLM_ENCRYPTION] });
    await waitFor("bob sees the invite", () => bob.getRoom(roomId)?.getMyMembership() === sdk.KnownMembership.Invite);
    await bob.joinRoom(roomId);
    await waitFor("alice sees bob join", () => alice.getRoom(roomId)?.getMember(bobUser.userId)?.membership === sdk.KnownMembership.Join);
    await waitFor("alice's client knows the room is encrypted", () => alice.getCrypto()!.isEncryptionEnabledInRoom(roomId));
    await waitFor("bob's client knows the room is encrypted", () => bob.getCrypto()!.isEncryptionEnabledInRoom(roomId));

    const { event_id: hello } = await alice.sendMessage(roomId, { msgtype: sdk.MsgType.Text, body: "Hello Bob, over sliding sync" });
    const onBob = await waitForDecrypted(bob, roomId, hello);
    expect(onBob.getSender()).toBe(aliceUser.userId);
    expect(onBob.getWireType()).toBe("m.room.encrypted");
    expect(onBob.getContent()).toEqual({ msgtype: "m.text", body: "Hello Bob, over sliding sync" });

    // Another device claims one of Bob's one-time keys: the e2ee extension's count tells Bob's client (it syncs
    // only over Sliding Sync), which tops them up again.
    const claimed = await raw.post("/_matrix/client/v3/keys/claim", { one_time_keys: { [bobUser.userId]: { [bobUser.deviceId]: "signed_curve25519" } } }, { token: aliceUser.accessToken });
    expect(Object.keys((claimed.body.one_time_keys as Record<string, Record<string, object>>)[bobUser.userId]![bobUser.deviceId]!)[0]).toMatch(/^signed_curve25519:/);
    expect(await otks(bobUser)).toBeLessThan(bobTarget);
    await waitFor("bob's client replaces the claimed one-time key", async () => (await otks(bobUser)) >= bobTarget);

    const { event_id: reply } = await bob.sendMessage(roomId, { msgtype: sdk.MsgType.Text, body: "Hi Alice, decrypted here too" });
    const onAlice = await waitForDecrypted(alice, roomId, reply);
    expect(onAlice.getSender()).toBe(bobUser.userId);
    expect(onAlice.getContent().body).toBe("Hi Alice, decrypted here too");

    // The server only held ciphertext.
    const stored = await raw.get<{ type: string }>(`/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/event/${encodeURIComponent(hello)}`, { token: bobUser.accessToken });
    expect(stored.body.type).toBe("m.room.encrypted");
    expect(stored.text).not.toContain("over sliding sync");
  }, 60_000);
});
