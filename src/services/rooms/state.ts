/**
 * State groups with caching: the state after any event is its state group's map, loaded from the group's delta
 * chain (storage/state_deltas.ts) and kept in an LRU cache. New groups are planned here and written by the event
 * writer in the same transaction as the event that creates them.
 */
import { CacheRegistry, ENTRY_BYTES, type Cache } from "../../util/cache.js";
import type { StateMap } from "../../core/events/event.js";
import type { Storage } from "../../storage/storage.js";
import { applyDeltas, deltaBaseDepth, mergeDeltas, type StateDelta } from "../../storage/state_deltas.js";
import type { StateGroupNode } from "../../storage/state_groups.js";

/** A Map slot holding a key and a value that other maps share. */
const STATE_SLOT_BYTES = 48;

interface NodeMeta {
  id: number;
  prevGroup: number | null;
  chainDepth: number;
  delta: StateDelta;
}

export class StateService {
  /** Full state maps by group. Keys and values are shared with the maps they came from: a slot is what each costs. */
  private readonly states: Cache<number, StateMap>;
  private readonly nodes: Cache<number, NodeMeta>;
  private nextGroupId = 0;

  constructor(
    private readonly storage: Storage,
    caches = new CacheRegistry(),
  ) {
    this.states = caches.create("state_maps", (m) => ENTRY_BYTES + m.size * STATE_SLOT_BYTES);
    this.nodes = caches.create("state_groups", (n) => 2 * ENTRY_BYTES + n.delta.size * 2 * STATE_SLOT_BYTES);
  }

  async start(): Promise<void> {
    this.nextGroupId = (await this.storage.stateGroups.maxId()) + 1;
  }

  /** The full state of a group. */
  async stateOf(groupId: number): Promise<StateMap> {
    const cached = this.states.get(groupId);
    if (cached) return cached;
    const chain = await this.loadChain(groupId);
    // Apply from the root down, caching each ancestor's state on the way (siblings share them).
    let state: StateMap = new Map();
    for (let i = chain.length - 1; i >= 0; i--) {
      const n = chain[i]!;
      const known = this.states.get(n.id);
      state = known ?? applyDeltas(state, [n.delta]);
      if (!known) this.states.set(n.id, state);
    }
    return state;
  }

  private async node(groupId: number): Promise<NodeMeta> {
    const n = this.nodes.get(groupId);
    if (n) return n;
    await this.loadChain(groupId);
    return this.nodes.get(groupId)!;
  }

  /** The group and its delta ancestors, nearest first. */
  private async loadChain(groupId: number): Promise<NodeMeta[]> {
    const out: NodeMeta[] = [];
    let id: number | null = groupId;
    while (id !== null) {
      const n = this.nodes.get(id);
      if (!n) break;
      out.push(n);
      id = n.prevGroup;
    }
    if (id === null) return out;
    const loaded = await this.storage.stateGroups.loadChain(id);
    if (loaded.length === 0) throw new Error(`state group ${id} not found`);
    for (const n of loaded) {
      const meta = { id: n.id, prevGroup: n.prevGroup, chainDepth: n.chainDepth, delta: n.delta };
      this.nodes.set(n.id, meta);
      out.push(meta);
    }
    return out;
  }

  /**
   * Plans a new group: the state of `base` (or nothing, for a room's first state) with `changes` applied. The
   * delta is taken against the ancestor at deltaBaseDepth(depth), merging the deltas between it and `base`.
   */
  async planGroup(roomId: string, base: number | null, changes: StateDelta): Promise<{ node: StateGroupNode; state: StateMap }> {
    const id = this.nextGroupId++;
    if (base === null) {
      const state = applyDeltas(new Map(), [changes]);
      return { node: { id, roomId, prevGroup: null, chainDepth: 0, delta: new Map(changes) }, state };
    }
    const baseState = await this.stateOf(base);
    const baseNode = await this.node(base);
    const depth = baseNode.chainDepth + 1;
    const targetDepth = deltaBaseDepth(depth);
    const between: StateDelta[] = [];
    let cur: NodeMeta = baseNode;
    while (cur.chainDepth > targetDepth) {
      between.push(cur.delta);
      cur = await this.node(cur.prevGroup!);
    }
    between.reverse();
    between.push(changes);
    const state = applyDeltas(baseState, [changes]);
    return { node: { id, roomId, prevGroup: cur.id, chainDepth: depth, delta: mergeDeltas(between) }, state };
  }

  /** After the writing transaction committed: remember the group. */
  remember(node: StateGroupNode, state: StateMap): void {
    this.nodes.set(node.id, { id: node.id, prevGroup: node.prevGroup, chainDepth: node.chainDepth, delta: node.delta });
    this.states.set(node.id, state);
  }
}
