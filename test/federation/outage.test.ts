/**
 * A destination that is down, then comes back: nothing alice sent meanwhile is lost. The sender backs off (1 s
 * doubling), is woken when the destination contacts us, and catches up with the newest event per room; the
 * destination fetches the rest with /get_missing_events. Also across a restart of the sending server itself.
 *
 * Each server is reached through a TCP relay on a fixed port, as a real server keeps its address across restarts
 * (TestServer.restart() picks a new port, and the other server's discovery caches SRV answers for minutes). A
 * server that is stopped leaves its relay refusing connections.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { closeFederatedServers } from "../helpers/federation_close.js";
import { RelayedServers } from "../helpers/relay.js";
import { Client, registerUser, type TestUser } from "../helpers/http.js";
import { bodies, createRoom, enc, messages, poll, send, sync, syncUntil, V3, type SyncResponse } from "../helpers/rooms.js";
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
const restart = (name: string, s: TestServer) => relayed.restart(name, s);

beforeAll(async () => {
  ({ relayed, hs1, hs2 } = await RelayedServers.pair());
  alice = await registerUser(c1());
  bob = await registerUser(c2());
});
afterAll(async () => {
  await closeFederatedServers([hs1, hs2]);
  await relayed.close();
});

/** alice's room on hs1 with bob (hs2) joined, the join seen by hs1. */
async function sharedRoom(): Promise<string> {
  const roomId = await createRoom(c1(), alice, { preset: "public_chat" });
  const r = await c2().post(`${V3}/join/${enc(roomId)}?server_name=hs1.test`, {}, { token: bob.accessToken });
  expect(r.status, r.text).toBe(200);
  await poll(async () => ((await hs1.server.services.membership.currentMembership(roomId, bob.userId)) === "join" ? true : undefined));
  return roomId;
}

/** hs1's backoff state for hs2. */
function backoff(): { retryLastTs: number; retryIntervalMs: number; failureTs: number | null } | undefined {
  return hs1.server.services.federationSender.status().find((d) => d.destination === "hs2.test");
}

/** Every message body bob can see in the room on hs2, oldest first (through /messages, backfilling as needed). */
async function bobSees(roomId: string): Promise<string[]> {
  const all: string[] = [];
  let from: string | undefined;
  for (let page = 0; page < 20; page++) {
    const r = await messages(c2(), bob, roomId, { limit: 50, ...(from ? { from } : {}) });
    all.push(...bodies(r.chunk));
    if (!r.end) break;
    from = r.end;
  }
  return all.reverse();
}

describe("a destination that is down, then comes back", () => {
  it("every message sent while hs2 was down arrives once hs2 is back and contacts hs1", async () => {
    const roomId = await sharedRoom();
    await send(c1(), alice, roomId, "before the outage");
    await poll(async () => ((await bobSees(roomId)).includes("before the outage") ? true : undefined));
    const since = (await sync(c2(), bob)).next_batch;

    await down("hs2.test", hs2);
    const sent = Array.from({ length: 6 }, (_, i) => `while down ${i}`);
    for (const body of sent) await send(c1(), alice, roomId, body);
    // hs1 failed to reach hs2 a few times and is backing off (1 s, 2 s, 4 s…).
    const state = await poll(async () => {
      const b = backoff();
      return b && b.retryIntervalMs >= 4000 ? b : undefined;
    }, 15_000);
    const nextRetryAt = state.retryLastTs + state.retryIntervalMs;

    hs2 = await up("hs2.test", await hs2.restart());
    // hs2 contacts hs1 (bob's message goes out in a transaction): hs1 retries at once rather than at its next
    // backoff deadline, and catches up.
    await send(c2(), bob, roomId, "bob is back");
    const s = await syncUntil(c2(), bob, since, (r: SyncResponse) => r.rooms.join[roomId]?.timeline.events.some((e) => e.content.body === sent.at(-1)) ?? false, { deadlineMs: 15_000 });
    expect(Date.now(), "hs1 waited for its backoff to end although hs2 had contacted it").toBeLessThan(nextRetryAt);
    expect(s.rooms.join[roomId]).toBeDefined();
    // Catch-up sent only the newest event; hs2 fetched the others with /get_missing_events.
    const seen = await bobSees(roomId);
    for (const body of ["before the outage", ...sent]) expect(seen, body).toContain(body);
    expect(seen.filter((b) => b.startsWith("while down"))).toEqual(sent);
    await poll(async () => (backoff()?.retryIntervalMs === 0 ? true : undefined));

    // hs1 got bob's message too.
    await poll(async () => {
      const r = await messages(c1(), alice, roomId, { limit: 10 });
      return bodies(r.chunk).includes("bob is back") ? true : undefined;
    });
  });

  it("without being contacted, hs1 retries on its own when its backoff ends", async () => {
    const roomId = await sharedRoom();
    await down("hs2.test", hs2);
    await send(c1(), alice, roomId, "while down, retried");
    // The previous test ended with the backoff cleared: a failed attempt for this message sets it again. Whatever
    // happens, hs2 comes back up, so that the tests after this one find it running.
    try {
      await poll(async () => ((backoff()?.retryIntervalMs ?? 0) > 0 ? true : undefined), 20_000);
    } finally {
      hs2 = await up("hs2.test", await hs2.restart());
    }
    // The restart can take seconds on a busy machine, and hs1 doubles its backoff meanwhile: allow until its next
    // scheduled retry, plus time to deliver.
    const b = backoff()!;
    const deadlineMs = Math.max(0, b.retryLastTs + b.retryIntervalMs - Date.now()) + 15_000;
    await poll(async () => ((await bobSees(roomId)).includes("while down, retried") ? true : undefined), deadlineMs, 200);
  }, 60_000);

  it("hs1 restarting with messages queued for a down hs2 loses nothing once both are up", async () => {
    const roomId = await sharedRoom();
    await down("hs2.test", hs2);
    const sent = Array.from({ length: 5 }, (_, i) => `queued ${i}`);
    for (const body of sent) await send(c1(), alice, roomId, body);
    await poll(async () => (backoff()?.failureTs ? true : undefined));

    hs1 = await restart("hs1.test", hs1);
    hs2 = await up("hs2.test", await hs2.restart());
    // Nobody contacts hs1: its sender resumes on its own from the database (backoff state and delivery position).
    await poll(async () => ((await bobSees(roomId)).includes(sent.at(-1)!) ? true : undefined), 20_000, 200);
    const seen = await bobSees(roomId);
    expect(seen.filter((b) => b.startsWith("queued"))).toEqual(sent);

    // And the room works both ways after it.
    await send(c2(), bob, roomId, "all good");
    await poll(async () => (bodies((await messages(c1(), alice, roomId, { limit: 10 })).chunk).includes("all good") ? true : undefined));
  });

  it("more messages than one /get_missing_events returns are all delivered", async () => {
    const roomId = await sharedRoom();
    await down("hs2.test", hs2);
    const sent = Array.from({ length: 25 }, (_, i) => `burst ${i}`);
    for (const body of sent) await send(c1(), alice, roomId, body);
    await poll(async () => (backoff()?.failureTs ? true : undefined));
    hs2 = await up("hs2.test", await hs2.restart());
    await send(c2(), bob, roomId, "wake up");
    await poll(async () => ((await bobSees(roomId)).includes(sent.at(-1)!) ? true : undefined), 15_000, 200);
    const seen = await bobSees(roomId);
    expect(seen.filter((b) => b.startsWith("burst"))).toEqual(sent);
  });

  it("a gap deeper than /get_missing_events follows is filled by backfill as bob scrolls back", async () => {
    const roomId = await sharedRoom();
    await down("hs2.test", hs2);
    // More than the 10 rounds of 10 that /get_missing_events follows: hs2 takes the state at the gap instead.
    const sent = Array.from({ length: 130 }, (_, i) => `deep ${i}`);
    for (const body of sent) await send(c1(), alice, roomId, body);
    await poll(async () => (backoff()?.failureTs ? true : undefined));
    hs2 = await up("hs2.test", await hs2.restart());
    await send(c2(), bob, roomId, "back again");
    await poll(async () => ((await bobSees(roomId)).includes(sent.at(-1)!) ? true : undefined), 15_000, 200);
    // Paging back through the gap fetches what catch-up skipped: every message, in order, nothing twice.
    const seen = await bobSees(roomId);
    expect(seen.filter((b) => b.startsWith("deep "))).toEqual(sent);
  });
});
