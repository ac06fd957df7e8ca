/**
 * Three servers and state resolution races: alice (hs1) created the room, bob (hs2) and carol (hs3) joined and
 * were given power 100. Then bob and carol change the same state at the same moment on their own servers, each
 * building on the same prev event — a real fork of the DAG, which every server has to resolve. Whatever each server
 * saw first, all three must end on the same current state.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stateMapKey } from "../../src/core/events/event.js";
import { TestNetwork, startFederatedServer } from "../helpers/federation.js";
import { closeFederatedServers } from "../helpers/federation_close.js";
import { Client, registerUser, type TestUser } from "../helpers/http.js";
import { allState, createRoom, enc, findState, getState, poll, send, setState, V3, type Json } from "../helpers/rooms.js";
import type { TestServer } from "../helpers/server.js";

let network: TestNetwork;
const servers: TestServer[] = [];
const clients: Client[] = [];
/** users[i] lives on servers[i]: alice on hs1, bob on hs2, carol on hs3. */
const users: TestUser[] = [];

beforeAll(async () => {
  network = new TestNetwork();
  for (const name of ["hs1.test", "hs2.test", "hs3.test"]) servers.push(await startFederatedServer(network, name));
  for (const s of servers) clients.push(new Client(s.baseUrl));
  for (const c of clients) users.push(await registerUser(c));
});
afterAll(async () => {
  await closeFederatedServers(servers);
});

/** The room's current state on each server: (type, state_key) → event id and content, as its user sees it. */
async function stateOnEach(roomId: string, type: string, stateKey = ""): Promise<{ eventId: string; content: Json }[]> {
  return Promise.all(
    clients.map(async (c, i) => {
      const e = findState(await allState(c, users[i]!, roomId), type, stateKey);
      return { eventId: e?.event_id ?? "", content: e?.content ?? {} };
    }),
  );
}

/** The forward extremities of the room on server i. */
async function extremities(i: number, roomId: string): Promise<string[]> {
  const head = await servers[i]!.server.services.roomCore.persister.head(roomId);
  return [...(head?.extremities ?? [])].sort();
}

/** Waits until all three servers have the same forward extremities (every event has reached everyone). */
async function settled(roomId: string, deadlineMs = 15_000): Promise<string[]> {
  return poll(async () => {
    const all = await Promise.all([0, 1, 2].map((i) => extremities(i, roomId)));
    const first = JSON.stringify(all[0]);
    return all.every((x) => JSON.stringify(x) === first) ? all[0] : undefined;
  }, deadlineMs);
}

/** Waits until all three servers agree on the current state event of (type, state_key); returns it. */
async function converged(roomId: string, type: string, deadlineMs = 15_000): Promise<{ eventId: string; content: Json }> {
  let last: { eventId: string; content: Json }[] = [];
  try {
    return await poll(async () => {
      last = await stateOnEach(roomId, type);
      return last.every((s) => s.eventId === last[0]!.eventId && s.eventId !== "") ? last[0] : undefined;
    }, deadlineMs);
  } catch (e) {
    throw new Error(`${type} did not converge: ${JSON.stringify(last)}`, { cause: e });
  }
}

/**
 * A room of alice's on hs1 with bob and carol joined and given `levels` (power 100 each by default) — both enough
 * to change the power levels — everything seen by all three servers.
 */
async function raceRoom(version?: string, levels: { bob: number; carol: number } = { bob: 100, carol: 100 }): Promise<string> {
  const lowest = Math.min(levels.bob, levels.carol);
  const [alice, bob, carol] = users as [TestUser, TestUser, TestUser];
  const roomId = await createRoom(clients[0]!, alice, { preset: "public_chat", ...(version ? { room_version: version } : {}) });
  for (const i of [1, 2]) {
    const r = await clients[i]!.post(`${V3}/join/${enc(roomId)}?server_name=hs1.test`, {}, { token: users[i]!.accessToken });
    expect(r.status, r.text).toBe(200);
  }
  const pl = await getState(clients[0]!, alice, roomId, "m.room.power_levels");
  await setState(clients[0]!, alice, roomId, "m.room.power_levels", "", {
    ...pl,
    users: { ...(pl.users as Json), [bob.userId]: levels.bob, [carol.userId]: levels.carol },
    // Both may change the power levels.
    events: { ...(pl.events as Json), "m.room.power_levels": Math.min(100, lowest) },
  });
  await poll(async () => {
    const seen = await stateOnEach(roomId, "m.room.power_levels");
    return seen.every((s) => (s.content.users as Record<string, number> | undefined)?.[carol.userId] === levels.carol) ? true : undefined;
  });
  await settled(roomId);
  return roomId;
}

/** The prev_events of an event as hs1 stored it. */
async function prevEventsOf(eventId: string): Promise<string[]> {
  const e = await poll(async () => servers[0]!.server.services.roomCore.events.get(eventId));
  return [...e.event.prev_events].sort();
}

describe("state resolution across three servers", () => {
  // "Each demoting the other" cannot be authorised at all: the auth rules refuse a change to the level of a user
  // whose level is not below the sender's, so two users at 100 cannot demote each other. The two races below are
  // what can happen: a higher user demotes a lower one who is changing the levels at the same moment (decided by
  // the auth checks inside state resolution), and two equals make conflicting changes (decided by its ordering).
  for (const version of ["12", "10"]) {
    it(`bob demoting carol while carol changes the power levels resolves to bob's change everywhere (room version ${version})`, async () => {
      const [alice, bob, carol] = users as [TestUser, TestUser, TestUser];
      const roomId = await raceRoom(version, { bob: 100, carol: 50 });
      const tip = await settled(roomId);
      const pl = await getState(clients[0]!, alice, roomId, "m.room.power_levels");
      const levels = pl.users as Record<string, number>;

      const [fromBob, fromCarol] = await Promise.all([
        setState(clients[1]!, bob, roomId, "m.room.power_levels", "", { ...pl, users: { ...levels, [carol.userId]: 0 } }),
        setState(clients[2]!, carol, roomId, "m.room.power_levels", "", { ...pl, users: { ...levels, "@erin:hs1.test": 40 }, invite: 50 }),
      ]);
      // A real fork: both events were built on the same prev event, so no server can order one after the other and
      // each must resolve the two state sets (the test would otherwise only exercise linear state updates).
      expect(await prevEventsOf(fromBob)).toEqual(tip);
      expect(await prevEventsOf(fromCarol)).toEqual(tip);

      // hs2 soft-fails carol's change (she has no power in its current state, spec "Soft failure"); hs3 gets bob's
      // after its own and resolves the fork; hs1 does either. State resolution orders bob's (higher power) first,
      // after which carol's no longer passes the auth checks: bob's wins on every server.
      const winner = await converged(roomId, "m.room.power_levels");
      expect(winner.eventId).toBe(fromBob);
      const carolsOnHs2 = await poll(async () => servers[1]!.server.services.roomCore.events.get(fromCarol));
      expect(carolsOnHs2.softFailed).toBe(true);
      const bobsOnHs3 = await poll(async () => servers[2]!.server.services.roomCore.events.get(fromBob));
      expect(bobsOnHs3.softFailed).toBe(false);
      expect((winner.content.users as Record<string, number>)[carol.userId]).toBe(0);
      for (const s of servers) {
        const head = await s.server.services.roomCore.persister.head(roomId);
        expect(head?.state.get(stateMapKey("m.room.power_levels", ""))).toBe(fromBob);
      }

      // Later events build on both branches (carol's soft-failed event included, once hs3's messages cite it); the
      // servers then resolve all of it again, and must still agree.
      await Promise.all([0, 1, 2].map((i) => send(clients[i]!, users[i]!, roomId, `after the race from ${i}`)));
      await send(clients[0]!, alice, roomId, "merge");
      await settled(roomId);
      expect(await converged(roomId, "m.room.power_levels")).toEqual(winner);
      // carol, demoted, cannot change the levels on any server now.
      const refused = await clients[2]!.put(`${V3}/rooms/${enc(roomId)}/state/m.room.power_levels/`, { ...winner.content, invite: 0 }, { token: carol.accessToken });
      expect(refused.status, refused.text).toBe(403);
    });
  }

  it("conflicting power level changes by two users of equal power converge on all three servers", async () => {
    const [alice, bob, carol] = users as [TestUser, TestUser, TestUser];
    const roomId = await raceRoom();
    const tip = await settled(roomId);
    const pl = await getState(clients[0]!, alice, roomId, "m.room.power_levels");
    const levels = pl.users as Record<string, number>;
    const [fromBob, fromCarol] = await Promise.all([
      setState(clients[1]!, bob, roomId, "m.room.power_levels", "", { ...pl, users: { ...levels, "@erin:hs1.test": 10 }, kick: 60 }),
      setState(clients[2]!, carol, roomId, "m.room.power_levels", "", { ...pl, users: { ...levels, "@erin:hs1.test": 20 }, ban: 70 }),
    ]);
    // Same prev event: a fork (see above).
    expect(await prevEventsOf(fromBob)).toEqual(tip);
    expect(await prevEventsOf(fromCarol)).toEqual(tip);
    // Both stay authorised whichever applies first, so neither is soft-failed: every server resolves the fork on
    // receipt, without further traffic, to the same event.
    const winner = await converged(roomId, "m.room.power_levels");
    expect([fromBob, fromCarol]).toContain(winner.eventId);
    const ext = await settled(roomId);
    expect(ext).toEqual([fromBob, fromCarol].sort());
    for (const s of await stateOnEach(roomId, "m.room.power_levels")) expect(s).toEqual(winner);
  });

  it("a concurrent topic change from hs2 and hs3 converges without further traffic", async () => {
    const [, bob, carol] = users as [TestUser, TestUser, TestUser];
    const roomId = await raceRoom();
    const tip = await settled(roomId);
    const [fromBob, fromCarol] = await Promise.all([
      setState(clients[1]!, bob, roomId, "m.room.topic", "", { topic: "bob's topic" }),
      setState(clients[2]!, carol, roomId, "m.room.topic", "", { topic: "carol's topic" }),
    ]);
    // Both on the same prev event: a fork each server resolves when the other branch arrives.
    expect(await prevEventsOf(fromBob)).toEqual(tip);
    expect(await prevEventsOf(fromCarol)).toEqual(tip);
    // Neither is soft-failed anywhere (both senders may set the topic), so the resolution happens on receipt.
    const winner = await converged(roomId, "m.room.topic");
    expect([fromBob, fromCarol]).toContain(winner.eventId);
    const ext = await settled(roomId);
    expect(ext.sort()).toEqual([fromBob, fromCarol].sort());
    for (const s of await stateOnEach(roomId, "m.room.topic")) expect(s).toEqual(winner);
  });

  it("many concurrent state changes from all three servers converge", async () => {
    const roomId = await raceRoom();
    await settled(roomId);
    // Several rounds of simultaneous changes to shared and per-server state.
    for (let round = 0; round < 3; round++) {
      await Promise.all(
        [0, 1, 2].map(async (i) => {
          await setState(clients[i]!, users[i]!, roomId, "m.room.topic", "", { topic: `round ${round} from ${i}` });
          await setState(clients[i]!, users[i]!, roomId, "m.room.name", "", { name: `name ${round} from ${i}` });
        }),
      );
    }
    await settled(roomId);
    const topic = await converged(roomId, "m.room.topic");
    const name = await converged(roomId, "m.room.name");
    expect(topic.content.topic).toMatch(/^round \d from \d$/);
    expect(name.content.name).toMatch(/^name \d from \d$/);
  });
});
