/**
 * Sliding Sync through a real client: matrix-js-sdk's SlidingSync driving a MatrixClient (startClient with
 * `slidingSync`). The SDK posts to the MSC3575 path, which Myelin serves with the same MSC4186 engine (no shim).
 */
import * as sdk from "matrix-js-sdk";
import { SlidingSync } from "matrix-js-sdk/lib/sliding-sync.js";
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
});
