/**
 * The state resolution vectors of test/fixtures/state-res (from Ruma; see its README.md): every case's resolved
 * (type, state_key) → event_id map must equal the expected one, by every route the README describes.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import type { Event, PDU, StateMap } from "../../../src/core/events/event.js";
import { stateMapKey } from "../../../src/core/events/event.js";
import { resolveState } from "../../../src/core/rooms/state_res/index.js";
import { getRoomVersion, type RoomVersion } from "../../../src/core/rooms/versions.js";
import { eventFromPdu, readableState } from "./helpers.js";

const ROOT = fileURLToPath(new URL("../../fixtures/state-res/", import.meta.url));
const readJson = <T>(path: string): T => JSON.parse(readFileSync(ROOT + path, "utf8")) as T;

interface Case {
  name: string;
  kind: "batches" | "state_maps";
  pdus: string[];
  state_maps?: string[];
  about: string;
}

const cases = readJson<Case[]>("cases.json");

function load(c: Case): { version: RoomVersion; batches: Event[][]; byId: Map<string, Event> } {
  const batches = c.pdus.map((f) => readJson<PDU[]>(`fixtures/${f}`).map(eventFromPdu));
  const first = batches[0]![0]!;
  expect(first.type).toBe("m.room.create");
  const version = getRoomVersion(first.content.room_version as string);
  if (!version) throw new Error(`unknown room version in ${c.name}`);
  const byId = new Map(batches.flat().map((e) => [e.event_id, e]));
  return { version, batches, byId };
}

function expectedState(name: string): Record<string, string> {
  const entries = readJson<{ type: string; state_key: string; event_id: string }[]>(`expected/${name}.json`);
  return readableState(new Map(entries.map((e) => [stateMapKey(e.type, e.state_key), e.event_id])));
}

const single = (e: Event): StateMap => new Map([[stateMapKey(e.type, e.state_key!), e.event_id]]);

/** Walks the DAG in topological order of prev_events, resolving the state at every event; resolves the leaves. */
function resolveByWalking(version: RoomVersion, events: Event[], byId: Map<string, Event>): StateMap {
  const getEvent = (id: string): Event | undefined => byId.get(id);
  const resolve = (stateSets: StateMap[]): StateMap => resolveState({ version, stateSets, getEvent });
  const children = new Map<string, string[]>();
  const waiting = new Map<string, number>();
  for (const e of events) {
    waiting.set(e.event_id, e.prev_events.length);
    for (const p of e.prev_events) children.set(p, [...(children.get(p) ?? []), e.event_id]);
  }
  const ready = events.filter((e) => e.prev_events.length === 0).map((e) => e.event_id);
  expect(ready.map((id) => byId.get(id)!.type)).toEqual(["m.room.create"]);
  const stateAt = new Map<string, StateMap>();
  while (ready.length > 0) {
    const id = ready.shift()!;
    const e = byId.get(id)!;
    const before = resolve(e.prev_events.map((p) => stateAt.get(p)!));
    const proposed = new Map(before).set(stateMapKey(e.type, e.state_key!), id);
    stateAt.set(id, resolve([before, proposed]));
    for (const c of children.get(id) ?? []) {
      const left = waiting.get(c)! - 1;
      waiting.set(c, left);
      if (left === 0) ready.push(c);
    }
  }
  expect(stateAt.size).toBe(events.length);
  const leaves = events.filter((e) => !children.has(e.event_id));
  return resolve(leaves.map((e) => stateAt.get(e.event_id)!));
}

describe("state resolution vectors (Ruma)", () => {
  it("has all thirteen cases", () => {
    expect(cases).toHaveLength(13);
  });

  for (const c of cases) {
    describe(`${c.name}: ${c.about}`, () => {
      const expected = expectedState(c.name);

      if (c.kind === "state_maps") {
        it("resolves the state maps in one step", () => {
          const { version, byId } = load(c);
          const stateSets = c.state_maps!.map(
            (f) => new Map(readJson<string[]>(`fixtures/${f}`).map((id) => [stateMapKey(byId.get(id)!.type, byId.get(id)!.state_key!), id])),
          );
          const resolved = resolveState({ version, stateSets, getEvent: (id) => byId.get(id) });
          expect(readableState(resolved)).toEqual(expected);
        });
        return;
      }

      it("walking the DAG", () => {
        const { version, batches, byId } = load(c);
        expect(readableState(resolveByWalking(version, batches.flat(), byId))).toEqual(expected);
      });

      it("every PDU its own state map, all at once", () => {
        const { version, batches, byId } = load(c);
        const resolved = resolveState({ version, stateSets: batches.flat().map(single), getEvent: (id) => byId.get(id) });
        expect(readableState(resolved)).toEqual(expected);
      });

      it("every PDU its own state map, one file at a time", () => {
        const { version, batches } = load(c);
        const known = new Map<string, Event>();
        let state: StateMap | undefined;
        for (const batch of batches) {
          for (const e of batch) known.set(e.event_id, e);
          const stateSets = [...(state ? [state] : []), ...batch.map(single)];
          state = resolveState({ version, stateSets, getEvent: (id) => known.get(id) });
        }
        expect(readableState(state!)).toEqual(expected);
      });
    });
  }
});
