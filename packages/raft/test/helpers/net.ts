// A synchronous test network in the style of etcd's raft_test.go: every node's Ready is handled
// at once (persist, send, apply), and messages are delivered in FIFO order until nothing moves.
// Scenario tests read better here than in the randomized simulator.

import {
  bootstrap,
  decodeConfChange,
  EntryType,
  MemoryStorage,
  RawNode,
  type Config,
  type Entry,
  type Message,
  type NodeId,
  type ReadState,
} from '../../src/index.js';

export interface TestNode {
  readonly id: NodeId;
  rn: RawNode;
  readonly storage: MemoryStorage;
  applied: Entry[];
  readStates: ReadState[];
}

export type Filter = (m: Message) => boolean;

export class Net {
  readonly nodes = new Map<NodeId, TestNode>();
  /** Messages in flight, oldest first. */
  queue: Message[] = [];
  /** Every message that was delivered, for assertions. */
  delivered: Message[] = [];
  private cut = new Set<string>();
  /** Return false to drop a message. */
  filter: Filter = () => true;
  /** Nodes whose Ready is not processed (simulates a leader that hasn't finished its fsync). */
  readonly stalled = new Set<NodeId>();

  constructor(
    ids: readonly NodeId[],
    private readonly extra: Partial<Config> = {},
  ) {
    for (const id of ids) {
      const storage = new MemoryStorage();
      bootstrap(storage, ids);
      this.add(id, storage);
    }
    this.settle();
  }

  /** Adds a node over existing storage (or an empty one, for a member joining later). */
  add(id: NodeId, storage = new MemoryStorage()): TestNode {
    const rn = new RawNode({ id, storage, electionTick: 10, heartbeatTick: 1, random: (n) => id % n, ...this.extra });
    const n: TestNode = { id, rn, storage, applied: [], readStates: [] };
    this.nodes.set(id, n);
    return n;
  }

  node(id: NodeId): TestNode {
    const n = this.nodes.get(id);
    if (n === undefined) throw new Error(`no node ${id}`);
    return n;
  }

  isolate(id: NodeId): void {
    for (const other of this.nodes.keys()) {
      if (other === id) continue;
      this.cut.add(`${id}-${other}`);
      this.cut.add(`${other}-${id}`);
    }
  }

  cutLink(from: NodeId, to: NodeId): void {
    this.cut.add(`${from}-${to}`);
  }

  heal(): void {
    this.cut.clear();
  }

  /** Handles one node's Ready as a driver would. Returns whether there was one. */
  process(id: NodeId): boolean {
    const n = this.node(id);
    if (this.stalled.has(id) || !n.rn.hasReady()) return false;
    const rd = n.rn.ready();
    if (rd.snapshot) n.storage.applySnapshot(rd.snapshot);
    n.storage.append(rd.entries);
    if (rd.hardState) n.storage.setHardState(rd.hardState);
    for (const m of rd.messages) this.queue.push(m);
    if (rd.snapshot) n.applied = [];
    for (const e of rd.committedEntries) {
      n.applied.push(e);
      if (e.type === EntryType.ConfChange) n.rn.applyConfChange(decodeConfChange(e.data));
    }
    n.readStates.push(...rd.readStates);
    n.rn.advance(rd);
    return true;
  }

  /** Delivers one queued message. */
  deliverOne(): boolean {
    const m = this.queue.shift();
    if (m === undefined) return false;
    const to = this.nodes.get(m.to);
    if (to === undefined || this.cut.has(`${m.from}-${m.to}`) || !this.filter(m)) return true;
    this.delivered.push(m);
    to.rn.step(m);
    return true;
  }

  /** Runs until no node has a Ready and no message is in flight. */
  settle(maxRounds = 10_000): void {
    for (let i = 0; i < maxRounds; i++) {
      let moved = false;
      for (const id of this.nodes.keys()) moved = this.process(id) || moved;
      while (this.deliverOne()) {
        moved = true;
        for (const id of this.nodes.keys()) this.process(id);
      }
      if (!moved) return;
    }
    throw new Error('network did not settle');
  }

  tick(ids: Iterable<NodeId>, times = 1): void {
    for (let i = 0; i < times; i++) {
      for (const id of ids) this.node(id).rn.tick();
      this.settle();
    }
  }

  tickAll(times = 1): void {
    this.tick([...this.nodes.keys()], times);
  }

  elect(id: NodeId): void {
    this.node(id).rn.campaign();
    this.settle();
  }

  leaders(): NodeId[] {
    return [...this.nodes.values()].filter((n) => n.rn.status().role === 'leader').map((n) => n.id);
  }

  propose(id: NodeId, text: string): ReturnType<RawNode['propose']> {
    const err = this.node(id).rn.propose(new TextEncoder().encode(text));
    this.settle();
    return err;
  }

  /** The data of every applied normal, non-empty entry, as text. */
  appliedText(id: NodeId): string[] {
    return this.node(id)
      .applied.filter((e) => e.type === EntryType.Normal && e.data.byteLength > 0)
      .map((e) => new TextDecoder().decode(e.data));
  }
}
