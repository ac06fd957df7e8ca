/**
 * The "done when": two people chat through matrix-js-sdk. Each runs the SDK's own /sync loop
 * (startClient with its in-memory store); one acts through the SDK's request methods (create, invite, join, send,
 * edit, react, redact, typing, receipts, name/topic, leave, kick, ban) and the test asserts on what the other
 * person's client then holds.
 */
import * as sdk from "matrix-js-sdk";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { Client, registerUser, type TestUser } from "../helpers/http.js";
import { startTestServer, type TestServer } from "../helpers/server.js";

let ts: TestServer;
let raw: Client;
const running: sdk.MatrixClient[] = [];

beforeAll(async () => {
  ts = await startTestServer();
  raw = new Client(ts.baseUrl);
});
afterEach(() => {
  for (const cl of running.splice(0)) cl.stopClient();
});
afterAll(async () => {
  await ts?.close();
});

/** The SDK logs every request at debug level; keep the test output to errors. */
const quietLogger: NonNullable<sdk.ICreateClientOpts["logger"]> = {
  trace: () => {},
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: (...msg: unknown[]) => console.error(...msg),
  getChild: () => quietLogger,
};

async function startClient(u: TestUser): Promise<sdk.MatrixClient> {
  const client = sdk.createClient({ baseUrl: ts.baseUrl, accessToken: u.accessToken, userId: u.userId, deviceId: u.deviceId, logger: quietLogger });
  running.push(client);
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
  await client.startClient({ initialSyncLimit: 30 });
  await prepared;
  return client;
}

/** Polls a condition on a client's state until it yields a value (not undefined/false), or fails at the deadline. */
async function waitFor<T>(what: string, fn: () => T | undefined | null | false, deadlineMs = 10_000): Promise<T> {
  const deadline = Date.now() + deadlineMs;
  while (true) {
    const v = fn();
    if (v !== undefined && v !== null && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function timeline(client: sdk.MatrixClient, roomId: string): sdk.MatrixEvent[] {
  return client.getRoom(roomId)?.getLiveTimeline().getEvents() ?? [];
}

function findEvent(client: sdk.MatrixClient, roomId: string, eventId: string): sdk.MatrixEvent | undefined {
  return timeline(client, roomId).find((e) => e.getId() === eventId);
}

function membership(client: sdk.MatrixClient, roomId: string, userId: string): string | undefined {
  return client.getRoom(roomId)?.getMember(userId)?.membership;
}

describe("two people chat through matrix-js-sdk", () => {
  it("create, invite, join, send, edit, react, redact, typing, receipts, name and topic, leave", async () => {
    const aliceUser = await registerUser(raw);
    const bobUser = await registerUser(raw);
    const alice = await startClient(aliceUser);
    const bob = await startClient(bobUser);

    // Create with an invite; Bob's client sees the invite and joins.
    const { room_id: roomId } = await alice.createRoom({ name: "SDK chat", preset: sdk.Preset.PrivateChat, invite: [bobUser.userId] });
    await waitFor("bob sees the invite", () => bob.getRoom(roomId)?.getMyMembership() === sdk.KnownMembership.Invite);
    expect(bob.getRoom(roomId)!.getMember(bobUser.userId)!.events.member!.getSender()).toBe(aliceUser.userId);
    await bob.joinRoom(roomId);
    await waitFor("bob is joined", () => bob.getRoom(roomId)?.getMyMembership() === sdk.KnownMembership.Join);
    await waitFor("alice sees bob join", () => membership(alice, roomId, bobUser.userId) === sdk.KnownMembership.Join);
    expect(bob.getRoom(roomId)!.name).toBe("SDK chat");

    // Send: Alice's message reaches Bob.
    const { event_id: hello } = await alice.sendMessage(roomId, { msgtype: sdk.MsgType.Text, body: "Hello Bob" });
    const got = await waitFor("bob receives the message", () => findEvent(bob, roomId, hello));
    expect(got.getSender()).toBe(aliceUser.userId);
    expect(got.getContent()).toEqual({ msgtype: "m.text", body: "Hello Bob" });

    // Bob answers.
    const { event_id: reply } = await bob.sendMessage(roomId, { msgtype: sdk.MsgType.Text, body: "Hi Alice" });
    await waitFor("alice receives the reply", () => findEvent(alice, roomId, reply));

    // Edit (m.replace): Bob's client applies it to the original.
    const { event_id: edit } = await alice.sendEvent(roomId, sdk.EventType.RoomMessage, {
      msgtype: sdk.MsgType.Text,
      body: "* Hello Bob!",
      "m.new_content": { msgtype: sdk.MsgType.Text, body: "Hello Bob!" },
      "m.relates_to": { rel_type: sdk.RelationType.Replace, event_id: hello },
    });
    await waitFor("bob receives the edit", () => findEvent(bob, roomId, edit));
    const original = await waitFor("bob's client applies the edit", () => {
      const e = findEvent(bob, roomId, hello);
      return e && e.replacingEventId() === edit ? e : undefined;
    });
    expect(original.getContent().body).toBe("Hello Bob!");

    // React (m.annotation): Alice's client aggregates Bob's reaction.
    const { event_id: reaction } = await bob.sendEvent(roomId, sdk.EventType.Reaction, {
      "m.relates_to": { rel_type: sdk.RelationType.Annotation, event_id: hello, key: "👍" },
    });
    await waitFor("alice receives the reaction", () => findEvent(alice, roomId, reaction));
    const annotations = await waitFor("alice's client aggregates the reaction", () =>
      alice.getRoom(roomId)?.relations.getChildEventsForEvent(hello, sdk.RelationType.Annotation, sdk.EventType.Reaction)?.getSortedAnnotationsByKey(),
    );
    expect(annotations[0]![0]).toBe("👍");
    expect([...annotations[0]![1]].map((e) => e.getSender())).toEqual([bobUser.userId]);

    // Redact: Bob's reply disappears on Alice's side.
    await bob.redactEvent(roomId, reply, undefined, { reason: "never mind" });
    const redacted = await waitFor("alice sees the redaction", () => {
      const e = findEvent(alice, roomId, reply);
      return e?.isRedacted() ? e : undefined;
    });
    expect(redacted.getContent()).toEqual({});
    const fetched = await alice.fetchRoomEvent(roomId, reply);
    expect(fetched.content).toEqual({});
    expect((fetched.unsigned as { redacted_because?: { sender?: string } }).redacted_because?.sender).toBe(bobUser.userId);

    // Typing: Bob sees Alice typing, then stop.
    await alice.sendTyping(roomId, true, 20_000);
    await waitFor("bob sees alice typing", () => bob.getRoom(roomId)?.getMember(aliceUser.userId)?.typing === true);
    await alice.sendTyping(roomId, false, 0);
    await waitFor("bob sees alice stop typing", () => bob.getRoom(roomId)?.getMember(aliceUser.userId)?.typing === false);

    // Read receipt: Alice sees that Bob read her latest message (the newest event, so no implicit receipt is later).
    const { event_id: readThis } = await alice.sendMessage(roomId, { msgtype: sdk.MsgType.Text, body: "Read this?" });
    const readThisOnBob = await waitFor("bob receives the message", () => findEvent(bob, roomId, readThis));
    await bob.sendReadReceipt(readThisOnBob, sdk.ReceiptType.Read);
    await waitFor("alice sees bob's receipt", () => {
      const e = findEvent(alice, roomId, readThis);
      return e && alice.getRoom(roomId)?.getReceiptsForEvent(e).some((r) => r.userId === bobUser.userId && r.type === sdk.ReceiptType.Read);
    });
    expect(alice.getRoom(roomId)!.getEventReadUpTo(bobUser.userId)).toBe(readThis);

    // Name and topic changes reach Bob.
    await alice.setRoomName(roomId, "Renamed chat");
    await alice.setRoomTopic(roomId, "What we talk about");
    await waitFor("bob sees the new name", () => bob.getRoom(roomId)?.name === "Renamed chat");
    await waitFor("bob sees the new topic", () => bob.getRoom(roomId)?.currentState.getStateEvents(sdk.EventType.RoomTopic, "")?.getContent().topic === "What we talk about");

    // Leave: Alice sees Bob go, and Bob's client moves the room to left.
    await bob.leave(roomId);
    await waitFor("alice sees bob leave", () => membership(alice, roomId, bobUser.userId) === sdk.KnownMembership.Leave);
    await waitFor("bob's client knows it left", () => bob.getRoom(roomId)?.getMyMembership() === sdk.KnownMembership.Leave);
  }, 60_000);

  it("kick and ban", async () => {
    const aliceUser = await registerUser(raw);
    const bobUser = await registerUser(raw);
    const carolUser = await registerUser(raw);
    const alice = await startClient(aliceUser);
    const bob = await startClient(bobUser);
    const carol = await startClient(carolUser);

    const { room_id: roomId } = await alice.createRoom({ name: "Moderated", preset: sdk.Preset.PublicChat });
    await bob.joinRoom(roomId);
    await carol.joinRoom(roomId);
    await waitFor("alice sees both join", () => membership(alice, roomId, bobUser.userId) === "join" && membership(alice, roomId, carolUser.userId) === "join");

    // Bob (power 0) cannot kick; the SDK surfaces the server's 403.
    const refused = await bob.kick(roomId, carolUser.userId).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(refused).toBeInstanceOf(sdk.MatrixError);
    expect((refused as sdk.MatrixError).httpStatus).toBe(403);
    expect((refused as sdk.MatrixError).errcode).toBe("M_FORBIDDEN");

    // Kick: Bob's client sees himself removed, by Alice, with the reason.
    await alice.kick(roomId, bobUser.userId, "be nice");
    await waitFor("bob's client knows it was kicked", () => bob.getRoom(roomId)?.getMyMembership() === sdk.KnownMembership.Leave);
    const kickEvent = bob.getRoom(roomId)!.currentState.getStateEvents(sdk.EventType.RoomMember, bobUser.userId)!;
    expect(kickEvent.getSender()).toBe(aliceUser.userId);
    expect(kickEvent.getContent().reason).toBe("be nice");
    await waitFor("carol sees the kick", () => membership(carol, roomId, bobUser.userId) === "leave");

    // Ban: Bob cannot come back; Carol sees it.
    await alice.ban(roomId, bobUser.userId, "really");
    await waitFor("carol sees the ban", () => membership(carol, roomId, bobUser.userId) === "ban");
    const rejoin = await bob.joinRoom(roomId).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((rejoin as sdk.MatrixError).httpStatus).toBe(403);
    await alice.unban(roomId, bobUser.userId);
    await waitFor("carol sees the unban", () => membership(carol, roomId, bobUser.userId) === "leave");
    await bob.joinRoom(roomId);
    await waitFor("carol sees bob back", () => membership(carol, roomId, bobUser.userId) === "join");
  }, 60_000);

  it("notification counts and highlights reach the SDK and clear with a read receipt; push rules load and change", async () => {
    const aliceUser = await registerUser(raw);
    const bobUser = await registerUser(raw);
    const carolUser = await registerUser(raw);
    const alice = await startClient(aliceUser);
    const bob = await startClient(bobUser);
    // The SDK fetched the server's push rules at start-up.
    expect(bob.pushRules?.global.underride?.some((r) => r.rule_id === ".m.rule.message")).toBe(true);

    const { room_id: roomId } = await alice.createRoom({ name: "Counts", preset: sdk.Preset.PublicChat });
    await bob.joinRoom(roomId);
    const carol = await startClient(carolUser);
    await carol.joinRoom(roomId);
    await waitFor("alice sees both join", () => membership(alice, roomId, bobUser.userId) === "join" && membership(alice, roomId, carolUser.userId) === "join");

    await alice.sendMessage(roomId, { msgtype: sdk.MsgType.Text, body: "plain" });
    const { event_id: ping } = await alice.sendMessage(roomId, { msgtype: sdk.MsgType.Text, body: "bob!", "m.mentions": { user_ids: [bobUser.userId] } });
    const room = () => bob.getRoom(roomId)!;
    await waitFor("bob's client counts two, one highlighted", () =>
      room().getUnreadNotificationCount(sdk.NotificationCountType.Total) === 2 && room().getUnreadNotificationCount(sdk.NotificationCountType.Highlight) === 1,
    );

    const pingOnBob = await waitFor("bob has the mention", () => findEvent(bob, roomId, ping));
    await bob.sendReadReceipt(pingOnBob, sdk.ReceiptType.Read);
    await waitFor("the counts clear", () => room().getUnreadNotificationCount(sdk.NotificationCountType.Total) === 0 && room().getUnreadNotificationCount(sdk.NotificationCountType.Highlight) === 0);

    // A push rule change arrives as m.push_rules account data and the SDK's rules follow.
    await bob.setPushRuleEnabled("global", sdk.PushRuleKind.Underride, ".m.rule.message", false);
    await waitFor("bob's client sees the rule disabled", () => bob.pushRules?.global.underride?.find((r) => r.rule_id === ".m.rule.message")?.enabled === false);
    await carol.sendMessage(roomId, { msgtype: sdk.MsgType.Text, body: "silent for bob" });
    await alice.sendMessage(roomId, { msgtype: sdk.MsgType.Text, body: "last", "m.mentions": { user_ids: [bobUser.userId] } });
    await waitFor("only the mention counts", () => room().getUnreadNotificationCount(sdk.NotificationCountType.Total) === 1);
  }, 60_000);
});
