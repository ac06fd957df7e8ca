/**
 * A room upgraded on another server (Synapse's transfer_room_state_on_room_upgrade on a remote join): when a local
 * user joins the replacement room through the upgrading server, this server carries over what it keeps about the
 * old room: its users' room tags, its aliases for the room, and its directory listing.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startServerPair } from "../helpers/federation.js";
import { closeFederatedServers } from "../helpers/federation_close.js";
import { Client, registerUser, uniqueName, type TestUser } from "../helpers/http.js";
import { createRoom, enc, getState, poll, setState, V3 } from "../helpers/rooms.js";
import type { TestServer } from "../helpers/server.js";

let hs1: TestServer;
let hs2: TestServer;
let c1: Client;
let c2: Client;
let alice: TestUser;
let bob: TestUser;

beforeAll(async () => {
  ({ hs1, hs2, c1, c2 } = await startServerPair());
  alice = await registerUser(c1);
  bob = await registerUser(c2);
});
afterAll(async () => {
  await closeFederatedServers([hs1, hs2]);
});

describe("joining the replacement of a room upgraded elsewhere", () => {
  it("moves this server's tags, aliases and directory listing of the old room to the new one", async () => {
    const oldRoom = await createRoom(c1, alice, { preset: "public_chat", room_version: "10" });
    const j = await c2.post(`${V3}/join/${enc(oldRoom)}?server_name=hs1.test`, {}, { token: bob.accessToken });
    expect(j.status, j.text).toBe(200);
    await poll(async () => ((await hs1.server.services.membership.currentMembership(oldRoom, bob.userId)) === "join" ? true : undefined));
    // bob may publish the room in hs2's directory.
    const pl = await getState(c1, alice, oldRoom, "m.room.power_levels");
    await setState(c1, alice, oldRoom, "m.room.power_levels", "", { ...pl, users: { ...(pl.users as Record<string, number>), [bob.userId]: 100 } });
    await poll(async () => {
      const r = await c2.get(`${V3}/rooms/${enc(oldRoom)}/state/m.room.power_levels/`, { token: bob.accessToken });
      return (r.body.users as Record<string, number> | undefined)?.[bob.userId] === 100 ? true : undefined;
    });
    const t = { token: bob.accessToken };
    expect((await c2.put(`${V3}/directory/list/room/${enc(oldRoom)}`, { visibility: "public" }, t)).status).toBe(200);
    const alias = `#${uniqueName("up")}:hs2.test`;
    expect((await c2.put(`${V3}/directory/room/${enc(alias)}`, { room_id: oldRoom }, t)).status).toBe(200);
    expect((await c2.put(`${V3}/user/${enc(bob.userId)}/rooms/${enc(oldRoom)}/tags/u.fed`, {}, t)).status).toBe(200);

    const up = await c1.post(`${V3}/rooms/${enc(oldRoom)}/upgrade`, { new_version: "11" }, { token: alice.accessToken });
    expect(up.status, up.text).toBe(200);
    const newRoom = up.body.replacement_room as string;
    const j2 = await c2.post(`${V3}/join/${enc(newRoom)}?server_name=hs1.test`, {}, t);
    expect(j2.status, j2.text).toBe(200);

    expect((await c2.get(`${V3}/user/${enc(bob.userId)}/rooms/${enc(newRoom)}/tags`, t)).body).toEqual({ tags: { "u.fed": {} } });
    expect((await c2.get(`${V3}/directory/room/${enc(alias)}`, t)).body.room_id).toBe(newRoom);
    expect((await c2.get(`${V3}/directory/list/room/${enc(newRoom)}`)).body.visibility).toBe("public");
    expect((await c2.get(`${V3}/directory/list/room/${enc(oldRoom)}`)).body.visibility).toBe("private");
  });
});
