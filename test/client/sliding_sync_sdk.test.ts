/**
 * Sliding Sync through a real client: matrix-js-sdk's SlidingSync driving a MatrixClient (startClient with
 * `slidingSync`). The SDK posts to the MSC3575 path, which Myelin serves with the same MSC4186 engine (no shim).
 */
import * as sdk from "matrix-js-sdk";
import { SlidingSync, SlidingSyncEvent } from "matrix-js-sdk/lib/sliding-sync.js";
import { logger as sdkLogger } from "matrix-js-sdk/lib/logger.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Client, registerUser } from "../helpers/http.js";
import { V3, nextTxn, poll, roomWith, send } from "../helpers/rooms.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

let ts: TestServer;
let c: Client;

beforeAll(async () => {
  // The SDK's sliding-sync code logs through its global logger: keep the output to errors.
  sdkLogger.setLevel("error", false);
  ts = await startTestServer();
  c = new Client(ts.baseUrl);
});
afterAll(async () => {
  await ts?.close();
});

const quietLogger: NonNullable<sdk.ICreateClientOpts["logger"]> = {
  trace: () => {},
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: (...msg: unknown[]) => console.error(...msg),
  getChild: () => quietLogger,
};


describe("matrix-js-sdk SlidingSync", () => {
  it("fills the client's rooms and timelines, follows new messages and delivers to-device messages", async () => {
    const alice = await registerUser(c);
    const bob = await registerUser(c);
    const roomId = await roomWith(c, bob, [alice], { name: "SDK room" });
    await send(c, bob, roomId, "before");

    // No shim: the SDK posts to MSC3575's path, which Myelin serves with the MSC4186 engine.
    const client = sdk.createClient({ baseUrl: ts.baseUrl, accessToken: alice.accessToken, userId: alice.userId, deviceId: alice.deviceId, logger: quietLogger });
    const lists = new Map([["all", { ranges: [[0, 9]], timeline_limit: 5, required_state: [["*", "*"]] }]]);
    const slidingSync = new SlidingSync(ts.baseUrl, lists, { timeline_limit: 5, required_state: [["*", "*"]] }, client, 1000);
    const toDevice: sdk.MatrixEvent[] = [];
    client.on(sdk.ClientEvent.ToDeviceEvent, (e) => toDevice.push(e));
    await client.startClient({ slidingSync });
    try {
      const bodies = () =>
        client
          .getRoom(roomId)
          ?.getLiveTimeline()
          .getEvents()
          .filter((e) => e.getType() === "m.room.message")
          .map((e) => e.getContent().body as string) ?? [];
      await poll(async () => (bodies().includes("before") ? true : undefined));
      expect(client.getRoom(roomId)!.name).toBe("SDK room");
      expect(client.getRoom(roomId)!.getMyMembership()).toBe("join");

      await send(c, bob, roomId, "after");
      await poll(async () => (bodies().includes("after") ? true : undefined));
      expect(bodies().slice(-2)).toEqual(["before", "after"]);

      const res = await c.put(`${V3}/sendToDevice/org.example.ping/${nextTxn()}`, { messages: { [alice.userId]: { [alice.deviceId]: { n: 1 } } } }, { token: bob.accessToken });
      expect(res.status).toBe(200);
      await poll(async () => (toDevice.some((e) => e.getType() === "org.example.ping") ? true : undefined));
      expect(toDevice.filter((e) => e.getType() === "org.example.ping")).toHaveLength(1);
    } finally {
      slidingSync.stop();
      client.stopClient();
    }
  });

  it("keeps the room list ordered by activity as others send, join and leave; a room subscription scrolls back through /messages", async () => {
    const alice = await registerUser(c);
    const bob = await registerUser(c);
    const carol = await registerUser(c);
    const rooms: string[] = [];
    for (const name of ["first", "second", "third"]) {
      const roomId = await roomWith(c, bob, [alice], { name });
      rooms.push(roomId);
    }
    // A long history in the first room, beyond the list's timeline_limit, to scroll back through.
    for (let i = 0; i < 30; i++) await send(c, bob, rooms[0]!, `old ${i}`);
    await send(c, bob, rooms[1]!, "second is newer");
    await send(c, bob, rooms[2]!, "third is newest");

    const client = sdk.createClient({ baseUrl: ts.baseUrl, accessToken: alice.accessToken, userId: alice.userId, deviceId: alice.deviceId, logger: quietLogger });
    const lists = new Map([["all", { ranges: [[0, 9]], timeline_limit: 1, required_state: [["m.room.name", ""], ["m.room.member", "$LAZY"]] }]]);
    // The subscription asks for all state but no longer a timeline: this SDK does not read MSC4186's
    // `expanded_timeline` (it would append the older events after the newest); history comes from scrolling back.
    const slidingSync = new SlidingSync(ts.baseUrl, lists, { timeline_limit: 1, required_state: [["*", "*"]] }, client, 1000);
    // What the SDK was told of each room's recency (bump_stamp), as Element sorts its room list by it.
    const bump = new Map<string, number>();
    slidingSync.on(SlidingSyncEvent.RoomData, (roomId, data) => {
      // MSC4186's field, which this SDK's MSC3575 typings do not list.
      const stamp = (data as { bump_stamp?: unknown }).bump_stamp;
      if (typeof stamp === "number") bump.set(roomId, stamp);
    });
    const order = () => [...rooms].sort((a, b) => (bump.get(b) ?? 0) - (bump.get(a) ?? 0));
    await client.startClient({ slidingSync });
    try {
      await poll(async () => (rooms.every((r) => bump.has(r)) ? true : undefined));
      expect(order()).toEqual([rooms[2], rooms[1], rooms[0]]);

      // bob writes in the first room: it moves to the top.
      await send(c, bob, rooms[0]!, "first again");
      await poll(async () => (order()[0] === rooms[0] ? true : undefined));
      expect(order()).toEqual([rooms[0], rooms[2], rooms[1]]);

      // carol joins the second room and then leaves it: the SDK's member list follows.
      expect((await c.post(`${V3}/rooms/${encodeURIComponent(rooms[1]!)}/invite`, { user_id: carol.userId }, { token: bob.accessToken })).status).toBe(200);
      expect((await c.post(`${V3}/join/${encodeURIComponent(rooms[1]!)}`, {}, { token: carol.accessToken })).status).toBe(200);
      await send(c, carol, rooms[1]!, "hi from carol");
      await poll(async () => (client.getRoom(rooms[1]!)?.getMember(carol.userId)?.membership === "join" ? true : undefined));
      await poll(async () => (order()[0] === rooms[1] ? true : undefined));
      expect((await c.post(`${V3}/rooms/${encodeURIComponent(rooms[1]!)}/leave`, {}, { token: carol.accessToken })).status).toBe(200);
      await poll(async () => (client.getRoom(rooms[1]!)?.getMember(carol.userId)?.membership === "leave" ? true : undefined));

      // Opening the first room: a subscription (its whole state), then scrolling back with prev_batch.
      slidingSync.modifyRoomSubscriptions(new Set([rooms[0]!]));
      await poll(async () => (client.getRoom(rooms[0]!)?.currentState.getStateEvents("m.room.power_levels", "") ? true : undefined));
      const bodies = () =>
        client
          .getRoom(rooms[0]!)!
          .getLiveTimeline()
          .getEvents()
          .filter((e) => e.getType() === "m.room.message")
          .map((e) => e.getContent().body as string);
      const room = client.getRoom(rooms[0]!)!;
      for (let i = 0; i < 5 && !bodies().includes("old 0"); i++) await client.scrollback(room, 20);
      const all = bodies();
      expect(all.slice(0, 3)).toEqual(["old 0", "old 1", "old 2"]);
      expect(all.at(-1)).toBe("first again");
      expect(new Set(all).size).toBe(all.length);
    } finally {
      slidingSync.stop();
      client.stopClient();
    }
  });
});
