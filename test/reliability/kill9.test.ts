// Durability: kill -9 the server in the middle of a burst of sends, restart it, and every event that got a 200 is
// still there; the room keeps working. Runs the compiled server (npm test builds first) as a real process.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { Client, registerUser } from "../helpers/http.js";
import { baseYaml, createTestDatabase, type TestDatabase } from "../helpers/server.js";

const ROOT = join(import.meta.dirname, "../..");
let proc: ChildProcess | undefined;
let db: TestDatabase | undefined;
let dir: string | undefined;

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

async function start(configPath: string, base: string): Promise<ChildProcess> {
  const p = spawn(process.execPath, [join(ROOT, "bin/myelin.js"), "start", "--config", configPath], { stdio: process.env.MYELIN_TEST_LOG ? "inherit" : "ignore" });
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      if ((await fetch(`${base}/health`)).ok) return p;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) throw new Error("server did not start");
    await new Promise((r) => setTimeout(r, 50));
  }
}

afterAll(async () => {
  proc?.kill("SIGKILL");
  await db?.drop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("kill -9 during a burst of sends", () => {
  it("keeps every acknowledged event", async () => {
    dir = mkdtempSync(join(tmpdir(), "myelin-kill9-"));
    db = await createTestDatabase(dir);
    const port = await freePort();
    const yaml = baseYaml("kill9.test", dir, db.yaml);
    (yaml.listeners as { port: number }[])[0]!.port = port;
    yaml.log_level = "error";
    const configPath = join(dir, "homeserver.yaml");
    writeFileSync(configPath, JSON.stringify(yaml));
    const base = `http://127.0.0.1:${port}`;
    proc = await start(configPath, base);
    const c = new Client(base);
    const u = await registerUser(c);
    const roomId = (await c.post("/_matrix/client/v3/createRoom", {}, { token: u.accessToken })).body.room_id as string;
    const send = (i: number) => c.put(`/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/k${i}`, { msgtype: "m.text", body: `m${i}` }, { token: u.accessToken });

    // 16 senders until the process dies; kill it once some sends were acknowledged.
    const acked = new Map<number, string>();
    let next = 0;
    let killed = false;
    const victim = proc;
    const workers = Array.from({ length: 16 }, async () => {
      while (next < 5000) {
        const i = next++;
        try {
          const r = await send(i);
          if (r.status === 200) acked.set(i, r.body.event_id as string);
          if (acked.size >= 150 && !killed) {
            killed = true;
            victim.kill("SIGKILL");
          }
        } catch {
          return; // connection refused or reset: the server is gone
        }
      }
    });
    await Promise.all(workers);
    expect(killed).toBe(true);
    if (victim.exitCode === null && victim.signalCode === null) await new Promise((r) => victim.once("exit", r));

    proc = await start(configPath, base);
    const all = new Set<string>();
    let from: string | undefined;
    for (;;) {
      const page = await c.get(`/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/messages?dir=b&limit=500${from ? `&from=${encodeURIComponent(from)}` : ""}`, { token: u.accessToken });
      expect(page.status, page.text).toBe(200);
      for (const e of page.body.chunk as { event_id: string }[]) all.add(e.event_id);
      if (!page.body.end) break;
      from = page.body.end as string;
    }
    const missing = [...acked.values()].filter((id) => !all.has(id));
    expect(missing).toEqual([]);
    // Retrying an acknowledged transaction returns the same event; the room still takes new events.
    const [i0, id0] = [...acked.entries()][0]!;
    expect((await send(i0)).body.event_id).toBe(id0);
    const after = await send(100_000);
    expect(after.status, after.text).toBe(200);
    const state = await c.get(`/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/state`, { token: u.accessToken });
    expect(state.status).toBe(200);
  });
});
