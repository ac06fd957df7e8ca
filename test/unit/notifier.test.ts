/**
 * The notifier's room groups (services/notifier.ts): a long-lived set of rooms registered once and shared by
 * successive waits, woken by any of its rooms or the waiter's user, ended by the timeout, an abort or shutdown.
 */
import { describe, expect, it } from "vitest";
import { Notifier, RoomGroup } from "../../src/services/notifier.js";

describe("Notifier room groups", () => {
  it("wakes on a room of the group or the user; not on other rooms; times out and aborts as a plain wait", async () => {
    const n = new Notifier();
    const g = new RoomGroup(["!a:x", "!b:x"]);
    const byRoom = n.wait({ rooms: g, users: ["@u:x"] }, 5000);
    n.notify({ rooms: ["!other:x"] });
    n.notify({ rooms: ["!b:x"] });
    expect(await byRoom).toBe(true);
    expect(n.waiting).toBe(0);

    const byUser = n.wait({ rooms: g, users: ["@u:x"] }, 5000);
    n.notify({ users: ["@u:x"] });
    expect(await byUser).toBe(true);

    expect(await n.wait({ rooms: g, users: ["@u:x"] }, 20)).toBe(false);
    const ctl = new AbortController();
    const aborted = n.wait({ rooms: g, users: ["@u:x"] }, 5000, ctl.signal);
    ctl.abort();
    expect(await aborted).toBe(false);

    // Two waiters on one group both wake; the group is registered once.
    const both = [n.wait({ rooms: g, users: ["@u:x"] }, 5000), n.wait({ rooms: g, users: ["@v:x"] }, 5000)];
    n.notify({ rooms: ["!a:x"] });
    expect(await Promise.all(both)).toEqual([true, true]);
    expect(g.listeners.size).toBe(0);

    const closing = n.wait({ rooms: g, users: ["@u:x"] }, 5000);
    n.close();
    expect(await closing).toBe(false);
  });
});
