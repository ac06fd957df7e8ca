/**
 * Send-to-device messaging and device lists across two servers on loopback (server-server "Send-to-device
 * messaging", "Device Management"): m.direct_to_device EDUs reach the remote device's /sync; messages sent while the
 * destination is down — even across a restart of the sender — arrive once it is back; m.device_list_update EDUs
 * from a login on one server show the user in a room-mate's `device_lists.changed` on the other.
 *
 * Each server is reached through a relay on a fixed port, so it keeps its address across restarts.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { closeFederatedServers } from "../helpers/federation_close.js";
import { Client, login, registerUser, type TestUser } from "../helpers/http.js";
import { RelayedServers } from "../helpers/relay.js";
import { V3, createRoom, enc, nextTxn, poll, sync, syncUntil, type SyncResponse } from "../helpers/rooms.js";
import type { TestServer } from "../helpers/server.js";

let relayed: RelayedServers;
let hs1: TestServer;
let hs2: TestServer;
let alice: TestUser;
let bob: TestUser;

const c1 = () => new Client(hs1.baseUrl);
const c2 = () => new Client(hs2.baseUrl);

const up = (name: string, s: TestServer) => relayed.up(name, s);
const down = (name: string, s: TestServer) => relayed.down(name, s);

beforeAll(async () => {
  ({ relayed, hs1, hs2 } = await RelayedServers.pair());
  alice = await registerUser(c1());
  bob = await registerUser(c2());
});
afterAll(async () => {
  await closeFederatedServers([hs1, hs2]);
  await relayed.close();
});

interface ToDeviceEvent {
  sender: string;
  type: string;
  content: Record<string, unknown>;
}
const toDevice = (s: SyncResponse) => s.to_device.events as ToDeviceEvent[];

async function sendToDevice(c: Client, from: TestUser, messages: Record<string, Record<string, unknown>>, type = "m.test"): Promise<void> {
  const r = await c.put(`${V3}/sendToDevice/${enc(type)}/${nextTxn()}`, { messages }, { token: from.accessToken });
  expect(r.status, r.text).toBe(200);
}

/** Long-polls until the user's device got to-device messages matching `pred`; returns all received meanwhile. */
async function receive(c: Client, u: TestUser, since: string, pred: (all: ToDeviceEvent[]) => boolean, deadlineMs = 15_000): Promise<ToDeviceEvent[]> {
  const all: ToDeviceEvent[] = [];
  await syncUntil(
    c,
    u,
    since,
    (s) => {
      all.push(...toDevice(s));
      return pred(all);
    },
    { deadlineMs },
  );
  return all;
}

const outboxOf = (s: TestServer, destination: string) => s.server.services.storage.outbox.forDestination(destination, 100);

describe("send-to-device over federation", () => {
  it("reaches a device on the other server, and `*` all of them; the outbox empties once acknowledged", async () => {
    const since = (await sync(c2(), bob)).next_batch;
    await sendToDevice(c1(), alice, { [bob.userId]: { [bob.deviceId]: { hello: "bob" } } }, "m.room_key_request");
    await sendToDevice(c1(), alice, { [bob.userId]: { "*": { hello: "all" } } });
    const got = await receive(c2(), bob, since, (all) => all.length >= 2);
    expect(got).toEqual([
      { sender: alice.userId, type: "m.room_key_request", content: { hello: "bob" } },
      { sender: alice.userId, type: "m.test", content: { hello: "all" } },
    ]);
    await poll(async () => ((await outboxOf(hs1, "hs2.test")).length === 0 ? true : undefined));
    // And back.
    const aliceSince = (await sync(c1(), alice)).next_batch;
    await sendToDevice(c2(), bob, { [alice.userId]: { [alice.deviceId]: { hello: "alice" } } });
    expect(await receive(c1(), alice, aliceSince, (all) => all.length >= 1)).toEqual([{ sender: bob.userId, type: "m.test", content: { hello: "alice" } }]);
  });

  it("an inbound m.direct_to_device is deduplicated by message_id, and only from the origin's own users", async () => {
    const since = (await sync(c2(), bob)).next_batch;
    const edu = { sender: alice.userId, type: "m.test", message_id: "dup-1", messages: { [bob.userId]: { "*": { dup: 1 } } } };
    const tx = hs2.server.services.toDevice;
    await tx.receiveEdu("hs1.test", edu);
    await tx.receiveEdu("hs1.test", edu);
    // A sender not of the origin is refused.
    await tx.receiveEdu("evil.test", { ...edu, message_id: "dup-2" });
    await sendToDevice(c1(), alice, { [bob.userId]: { "*": { last: true } } });
    const got = await receive(c2(), bob, since, (all) => all.some((e) => e.content.last === true));
    expect(got.map((e) => e.content)).toEqual([{ dup: 1 }, { last: true }]);
  });

  it("messages sent while the destination is down, and across a restart of the sender, arrive once it is back", async () => {
    const since = (await sync(c2(), bob)).next_batch;
    await poll(async () => ((await outboxOf(hs1, "hs2.test")).length === 0 ? true : undefined));
    await down("hs2.test", hs2);
    await sendToDevice(c1(), alice, { [bob.userId]: { "*": { n: 1 } } });
    await sendToDevice(c1(), alice, { [bob.userId]: { "*": { n: 2 } } });
    await poll(async () => (hs1.server.services.federationSender.status().find((d) => d.destination === "hs2.test")?.failureTs ? true : undefined));
    expect((await outboxOf(hs1, "hs2.test")).length).toBe(2);

    // The sender restarts with the messages still queued, then sends one more.
    await down("hs1.test", hs1);
    hs1 = await up("hs1.test", await hs1.restart());
    await sendToDevice(c1(), alice, { [bob.userId]: { "*": { n: 3 } } });

    hs2 = await up("hs2.test", await hs2.restart());
    // hs2 contacting hs1 ends hs1's backoff at once.
    await sendToDevice(c2(), bob, { [alice.userId]: { "*": { ping: true } } });
    const got = await receive(c2(), bob, since, (all) => all.length >= 3, 20_000);
    expect(got.map((e) => e.content)).toEqual([{ n: 1 }, { n: 2 }, { n: 3 }]);
    await poll(async () => ((await outboxOf(hs1, "hs2.test")).length === 0 ? true : undefined));
  });
});

describe("device lists over federation", () => {
  it("a login on hs2 shows the user as changed in the /sync of a room-mate on hs1, and /user/devices lists the device", async () => {
    const roomId = await createRoom(c1(), alice, { preset: "public_chat" });
    const join = await c2().post(`${V3}/join/${enc(roomId)}?server_name=hs1.test`, {}, { token: bob.accessToken });
    expect(join.status, join.text).toBe(200);
    await poll(async () => ((await hs1.server.services.membership.currentMembership(roomId, bob.userId)) === "join" ? true : undefined));
    const aliceSince = (await sync(c1(), alice)).next_batch;

    const r = await login(c2(), bob.userId, bob.password, { initial_device_display_name: "bob's laptop" });
    expect(r.status, r.text).toBe(200);
    const s = await syncUntil(c1(), alice, aliceSince, (x) => x.device_lists.changed.includes(bob.userId), { deadlineMs: 15_000 });
    expect(s.device_lists.changed).toContain(bob.userId);

    // And the other way: alice's new device reaches bob's /sync on hs2.
    const bobSince = (await sync(c2(), bob)).next_batch;
    expect((await login(c1(), alice.userId, alice.password)).status).toBe(200);
    await syncUntil(c2(), bob, bobSince, (x) => x.device_lists.changed.includes(alice.userId), { deadlineMs: 15_000 });

    // hs2 serves bob's device list with the stream_id of his latest update.
    const devices = await hs1.server.services.federationClient.get("hs2.test", `/_matrix/federation/v1/user/devices/${enc(bob.userId)}`);
    const body = devices as { user_id: string; stream_id: number; devices: { device_id: string; device_display_name?: string }[] };
    expect(body.user_id).toBe(bob.userId);
    expect(body.stream_id).toBe(await hs2.server.services.deviceLists.streamIdOf(bob.userId));
    expect(body.devices).toContainEqual({ device_id: r.body.device_id, device_display_name: "bob's laptop" });
  });

  it("an inbound m.signing_key_update or device update for a user not of the origin is ignored", async () => {
    const before = hs1.server.services.deviceLists.position();
    await hs1.server.services.deviceLists.remoteChanged("evil.test", { user_id: bob.userId, device_id: "X", stream_id: 1 });
    expect(hs1.server.services.deviceLists.position()).toBe(before);
    await hs1.server.services.deviceLists.remoteChanged("hs2.test", { user_id: bob.userId });
    expect(hs1.server.services.deviceLists.position()).toBe(before + 1);
  });
});
