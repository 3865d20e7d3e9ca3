// One seeded simulation: a cluster of RawNodes, each behind a driver that keeps the Ready contract,
// over a simulated clock and network, with clients and faults, checked after every step.

import {
  ConfChangeType,
  decodeConfChange,
  EntryType,
  MemoryStorage,
  MessageType,
  RawNode,
  Role,
  bootstrap,
  isStorageError,
  type Message,
  type NodeId,
  type Ready,
} from '../src/index.js';
import { Invariants, Violation } from './invariants.js';
import { decodePut, encodePut, KvStateMachine } from './kv.js';
import { checkOperations, kvModel, type KvInput, type KvOutput, type Operation } from './linearizability.js';
import { Network } from './network.js';
import { EventQueue } from './queue.js';
import { Rng } from './rng.js';

export interface SimOptions {
  readonly seed: number;
  readonly steps: number;
  readonly members: 3 | 5;
  /** Called with a line for every event (replay with --trace). */
  readonly trace?: (line: string) => void;
  /** For planting bugs in the driver: send a Ready's messages before persisting it. */
  readonly sendBeforePersist?: boolean;
}

export interface SimStats {
  steps: number;
  elections: number;
  crashes: number;
  midReadyCrashes: number;
  /** Leader Readys written in the background (sent and applied before their write completed). */
  writtenBehind: number;
  partitions: number;
  snapshotsSent: number;
  snapshotsTaken: number;
  confChangesApplied: number;
  transfers: number;
  writesOk: number;
  readsOk: number;
  opsUnknown: number;
  maxCommit: number;
}

export interface SimResult {
  readonly seed: number;
  readonly stats: SimStats;
  /** A digest of every event in order: equal digests mean identical runs. */
  readonly digest: number;
  readonly violation?: { readonly step: number; readonly invariant: string; readonly details: string; readonly recent: readonly string[] };
}

/** Timing, in simulated milliseconds. */
const TICK_MS = 10;
const ELECTION_TICK = 10;
/** A client thinks this long (ms, uniform) between one operation's end and the next's start. */
const CLIENT_THINK_MS = [0, 4] as const;
/** A client whose request was refused (no leader) waits this much longer before the next. */
const REFUSED_BACKOFF_MS = 20;
const FAULT_EVERY_MS = 40;
const OP_TIMEOUT_MS = 400;
/** Chance that a crash strikes while a Ready is half done (before its fsync, or before its sends). */
const MID_READY_CRASH_RATE = 0.0007;
const KEYS = ['a', 'b', 'c', 'd', 'e'];
const MAX_NODES = 9;
const MAX_VOTERS = 7;
const MIN_VOTERS = 3;
/** A node snapshots its state machine after applying this many entries (randomized per node). */
const SNAPSHOT_EVERY = [5, 40] as const;
const RECENT_EVENTS = 25;
const ORPHAN_CLIENT = 1_000_000;
const ORPHAN_KEY = 'orphan';

type Event =
  | { kind: 'tick' }
  | { kind: 'deliver'; msg: Message }
  | { kind: 'client'; client: number }
  | { kind: 'fault' }
  | { kind: 'restart'; id: NodeId }
  | { kind: 'crash'; id: NodeId }
  | { kind: 'fsync'; id: NodeId; incarnation: number }
  | { kind: 'timeout'; op: PendingOp };

interface PendingOp {
  readonly client: number;
  readonly seq: number;
  readonly input: KvInput;
  readonly call: number;
  /** Index into the history, to fill in the result. */
  readonly slot: number;
  done: boolean;
}

interface SimNode {
  readonly id: NodeId;
  readonly storage: MemoryStorage;
  readonly rng: Rng;
  rn: RawNode | undefined;
  sm: KvStateMachine;
  removed: boolean;
  lastSnapshotAt: number;
  snapshotEvery: number;
  /** Writes proposed through this node, by client:seq. */
  writes: Map<string, PendingOp>;
  /** Reads waiting for their ReadState, by context. */
  reads: Map<string, PendingOp>;
  /** Reads confirmed, waiting for the state machine to reach their index. */
  readyReads: { index: number; op: PendingOp }[];
  /** Counts restarts, so an fsync completing for an earlier life is ignored. */
  incarnation: number;
  role: Role;
  /** The voter sets this node had since it last persisted a commit index. */
  configs: (readonly NodeId[])[];
  /**
   * Readys being written, oldest first; they complete in this order, as the WAL's saves do. A
   * write-behind Ready (`held` undefined) was sent and applied already; any other holds back its
   * messages, and the node takes no new Ready until it is done.
   */
  writing: PendingWrite[];
}

interface PendingWrite {
  readonly rd: Ready;
  readonly held: readonly Message[] | undefined;
}

/** Chance that a leader writes a Ready that allows it in the background (Ready.writeBehind). */
const WRITE_BEHIND_RATE = 0.7;

export function simulate(opts: SimOptions): SimResult {
  return new Simulation(opts).run();
}

class Simulation {
  private readonly rng: Rng;
  private readonly netRng: Rng;
  private readonly net: Network;
  private readonly q = new EventQueue<Event>();
  private readonly nodes = new Map<NodeId, SimNode>();
  private readonly storages = new Map<NodeId, MemoryStorage>();
  private readonly inv = new Invariants();
  private readonly history: Operation<KvInput, KvOutput>[] = [];
  /** Outcomes: undefined while unknown; filled on completion. */
  private readonly outcomes: ({ output: KvOutput; ret: number } | undefined)[] = [];
  /** Operations that definitely did not happen (refused by the node): left out of the check. */
  private readonly refused = new Set<number>();
  private clientSeq: number[];
  private nextId: NodeId;
  private counter = 0;
  private orphanSeq = 0;
  private step = 0;
  private digest = 0x811c9dc5;
  private readonly recent: { step: number; time: number; ev: Event }[] = [];
  private readonly stats: SimStats = {
    steps: 0, elections: 0, crashes: 0, midReadyCrashes: 0, writtenBehind: 0, partitions: 0, snapshotsSent: 0, snapshotsTaken: 0,
    confChangesApplied: 0, transfers: 0, writesOk: 0, readsOk: 0, opsUnknown: 0, maxCommit: 0,
  };

  /** Flow-control limits vary by seed: one entry per message exposes commit-rule bugs. */
  private readonly maxSizePerMsg: number;
  private readonly maxInflightMsgs: number;

  constructor(private readonly opts: SimOptions) {
    this.rng = new Rng(opts.seed);
    this.maxSizePerMsg = this.rng.pick([1, 64, 1024, 65536]);
    this.maxInflightMsgs = this.rng.pick([1, 2, 8, 256]);
    this.netRng = this.rng.fork();
    this.net = new Network(this.netRng);
    const ids = Array.from({ length: opts.members }, (_, i) => i + 1);
    this.nextId = ids.length + 1;
    for (const id of ids) {
      const storage = new MemoryStorage();
      bootstrap(storage, ids);
      this.addNode(id, storage);
    }
    const nClients = this.rng.between(3, 5);
    this.clientSeq = new Array(nClients).fill(0);
    this.q.at(TICK_MS, { kind: 'tick' });
    for (let c = 0; c < nClients; c++) this.q.at(this.rng.between(...CLIENT_THINK_MS), { kind: 'client', client: c });
    this.q.at(FAULT_EVERY_MS * 4, { kind: 'fault' });
  }

  run(): SimResult {
    try {
      for (this.step = 1; this.step <= this.opts.steps; this.step++) {
        const ev = this.q.pop();
        if (ev === undefined) break;
        this.handle(ev.event);
      }
      this.step = Math.min(this.step, this.opts.steps);
      this.checkHistory();
    } catch (e) {
      if (!(e instanceof Violation)) throw e;
      const recent = this.recent.map((r) => `[${r.step}] t=${r.time} ${describe(r.ev)}`);
      return this.result({ step: this.step, invariant: e.invariant, details: e.message, recent });
    }
    return this.result(undefined);
  }

  private result(violation: SimResult['violation']): SimResult {
    this.stats.steps = this.step;
    this.stats.maxCommit = this.inv.commit;
    return { seed: this.opts.seed, stats: this.stats, digest: this.digest >>> 0, ...(violation ? { violation } : {}) };
  }

  // ---------------------------------------------------------------- nodes

  private addNode(id: NodeId, storage: MemoryStorage): SimNode {
    const rng = this.rng.fork();
    const n: SimNode = {
      id, storage, rng, rn: undefined, sm: new KvStateMachine(), removed: false, lastSnapshotAt: 0,
      snapshotEvery: rng.between(...SNAPSHOT_EVERY), writes: new Map(), reads: new Map(), readyReads: [],
      incarnation: 0, role: Role.Follower, writing: [], configs: [],
    };
    this.nodes.set(id, n);
    this.storages.set(id, storage);
    this.start(n);
    return n;
  }

  /** (Re)starts a node from what its storage holds, as a fresh process would. */
  private start(n: SimNode): void {
    const snap = n.storage.snapshot();
    if (isStorageError(snap)) throw new Error(`sim: node ${n.id} has no snapshot (${snap})`);
    n.sm = KvStateMachine.restore(snap.data);
    n.lastSnapshotAt = snap.metadata.index;
    n.incarnation++;
    n.role = Role.Follower;
    n.configs = [];
    n.rn = new RawNode({
      id: n.id,
      storage: n.storage,
      electionTick: ELECTION_TICK,
      heartbeatTick: 1,
      random: (k) => n.rng.int(k),
      applied: snap.metadata.index,
      maxSizePerMsg: this.maxSizePerMsg,
      maxInflightMsgs: this.maxInflightMsgs,
    });
    this.process(n);
  }

  private crash(n: SimNode): void {
    if (n.rn === undefined) return;
    n.rn = undefined;
    n.writing = [];
    n.writes.clear();
    n.reads.clear();
    n.readyReads = [];
    this.stats.crashes++;
    this.q.after(this.rng.between(20, 400), { kind: 'restart', id: n.id });
  }

  private alive(): SimNode[] {
    return [...this.nodes.values()].filter((n) => n.rn !== undefined && !n.removed);
  }

  private leader(): SimNode | undefined {
    let best: SimNode | undefined;
    for (const n of this.alive()) {
      const st = n.rn!.status();
      if (st.role === Role.Leader && (best === undefined || st.term > best.rn!.status().term)) best = n;
    }
    return best;
  }

  // ---------------------------------------------------------------- the driver

  /**
   * Handles the node's Readys as a real driver does: the fsync takes time (sometimes none), the
   * leader sends its appends while its own fsync runs (Raft thesis §10.2.1: it only counts itself
   * once advance() reports the entries durable), and every other message waits for the fsync.
   * A leader may also write a Ready in the background (writeBehind): send and apply now, report
   * the write with persisted() when it completes, and go on to the next Ready meanwhile.
   */
  private process(n: SimNode): void {
    for (let guard = 0; n.rn !== undefined && n.writing.every((w) => w.held === undefined) && n.rn.hasReady(); guard++) {
      if (guard > 1000) throw new Error(`sim: node ${n.id} never runs out of Readys`);
      const rd = n.rn.ready();
      if (rd.softState !== undefined) {
        if (rd.softState.role === Role.Leader) {
          this.stats.elections++;
          // The term now, not when the fsync completes: it may have stepped down by then.
          this.inv.leader(n.id, n.rn.status().term);
        }
        n.role = rd.softState.role;
      }
      const early = this.opts.sendBeforePersist
        ? rd.messages
        : n.role === Role.Leader ? rd.messages.filter((m) => m.type === MessageType.App) : [];
      this.send(n, early);
      const held = early.length === 0 ? rd.messages : rd.messages.filter((m) => !early.includes(m));
      if (rd.writeBehind && !this.opts.sendBeforePersist && n.rng.chance(WRITE_BEHIND_RATE)) {
        this.writeBehind(n, rd, held);
        continue;
      }
      if (n.writing.length > 0 || n.rng.chance(0.5)) {
        this.startWrite(n, { rd, held });
        return;
      }
      this.finishReady(n, rd, held);
    }
  }

  /** A write completes after a while, and after every write started before it. */
  private startWrite(n: SimNode, w: PendingWrite): void {
    n.writing.push(w);
    this.q.after(n.rng.between(1, 6), { kind: 'fsync', id: n.id, incarnation: n.incarnation });
  }

  private writeBehind(n: SimNode, rd: Ready, held: readonly Message[]): void {
    this.stats.writtenBehind++;
    this.send(n, held);
    this.startWrite(n, { rd, held: undefined });
    this.apply(n, rd, true);
    if (n.rn === undefined) return;
    n.rn.advanceApplied(rd);
    this.maybeSnapshot(n);
  }

  /** The oldest write of the node completed (its fsync event fired). */
  private finishWrite(n: SimNode): void {
    const w = n.writing.shift();
    if (w === undefined) return;
    if (w.held !== undefined) return this.finishReady(n, w.rd, w.held);
    if (n.rng.chance(MID_READY_CRASH_RATE)) return this.midReadyCrash(n);
    this.persist(n, w.rd);
    const last = w.rd.entries[w.rd.entries.length - 1];
    if (last !== undefined) n.rn!.persisted(last.index, last.term);
    this.maybeSnapshot(n);
  }

  /** The fsync of a Ready completed (or is about to, when a crash takes it first). */
  private finishReady(n: SimNode, rd: Ready, held: readonly Message[]): void {
    const rn = n.rn!;
    // A crash before the fsync loses the whole Ready; after it, what was not yet sent or applied.
    if (n.rng.chance(MID_READY_CRASH_RATE)) return this.midReadyCrash(n);
    this.persist(n, rd);
    if (n.rng.chance(MID_READY_CRASH_RATE)) return this.midReadyCrash(n);
    this.send(n, held);
    this.apply(n, rd);
    if (n.rn === undefined || n.removed) return;
    rn.advance(rd);
    this.maybeSnapshot(n);
  }

  private midReadyCrash(n: SimNode): void {
    this.stats.midReadyCrashes++;
    this.crash(n);
  }

  private persist(n: SimNode, rd: Ready): void {
    const s = n.storage;
    if (rd.snapshot !== undefined) s.applySnapshot(rd.snapshot);
    if (rd.entries.length > 0) {
      this.inv.appended(n.id, s, rd.entries);
      s.append(rd.entries);
    }
    if (rd.hardState !== undefined) {
      s.setHardState(rd.hardState);
      const st = n.rn!.status();
      // Whoever decided this commit must still be leading (in this life): a leader that has since
      // restarted no longer knows the configuration it decided under. Then a later report checks.
      const leader = st.role === Role.Leader ? n : this.nodes.get(st.lead);
      const deciding = leader?.rn !== undefined && leader.role === Role.Leader;
      const configs = deciding ? [...leader.configs, leader.rn!.status().confState.voters] : [];
      this.inv.committed(n.id, s, rd.hardState.commit, configs, this.storages);
      if (leader === n) n.configs = [];
    }
    // Its log as it became leader is on disk now (the term was checked when the Ready was made).
    if (rd.softState?.role === Role.Leader) this.inv.newLeader(n.id, s);
  }

  private send(n: SimNode, msgs: readonly Message[]): void {
    for (const m of msgs) {
      const delays = this.net.delays(m.from, m.to);
      if (m.type === MessageType.Snap) {
        this.stats.snapshotsSent++;
        if (delays.length === 0) n.rn?.reportSnapshot(m.to, false);
      }
      for (const d of delays) this.q.after(d, { kind: 'deliver', msg: m });
    }
  }

  /**
   * `behind`: the Ready is still being written, so its committed entries may not be on this
   * node's disk; they must be on a quorum's.
   */
  private apply(n: SimNode, rd: Ready, behind = false): void {
    if (rd.snapshot !== undefined) {
      n.sm = KvStateMachine.restore(rd.snapshot.data);
      n.sm.applied = rd.snapshot.metadata.index;
      n.lastSnapshotAt = rd.snapshot.metadata.index;
    }
    const configs = behind ? [...n.configs, n.rn!.status().confState.voters] : [];
    for (const e of rd.committedEntries) {
      this.inv.applied(n.id, e);
      if (behind) this.inv.durable(n.id, e, configs, this.storages);
      n.sm.applied = e.index;
      if (e.type === EntryType.ConfChange) {
        const cc = decodeConfChange(e.data);
        n.configs.push(n.rn!.status().confState.voters);
        n.rn!.applyConfChange(cc);
        this.stats.confChangesApplied++;
        if (cc.type === ConfChangeType.RemoveNode && cc.nodeId === n.id) {
          // A removed member shuts down, as etcd's does.
          n.removed = true;
          return;
        }
      } else if (e.data.byteLength > 0) {
        const c = decodePut(e.data);
        n.sm.apply(e.index, c);
        const op = n.writes.get(`${c.client}:${c.seq}`);
        if (op !== undefined) {
          n.writes.delete(`${c.client}:${c.seq}`);
          this.complete(op, { kind: 'put' });
          this.stats.writesOk++;
        }
      }
    }
    for (const rs of rd.readStates) {
      const key = ctxKey(rs.context);
      const op = n.reads.get(key);
      if (op === undefined) continue;
      n.reads.delete(key);
      n.readyReads.push({ index: rs.index, op });
    }
    if (n.readyReads.length > 0) {
      const waiting: typeof n.readyReads = [];
      for (const r of n.readyReads) {
        if (r.index > n.sm.applied) {
          waiting.push(r);
          continue;
        }
        this.complete(r.op, { kind: 'get', value: n.sm.data.get(r.op.input.key) });
        this.stats.readsOk++;
      }
      n.readyReads = waiting;
    }
  }

  private maybeSnapshot(n: SimNode): void {
    const applied = n.sm.applied;
    if (applied - n.lastSnapshotAt < n.snapshotEvery) return;
    // A leader writing behind applies entries before its disk holds them or the commit index that
    // committed them; a snapshot past either would restart it with applied beyond commit.
    if (applied > Math.min(n.storage.lastIndex(), n.storage.initialState().hardState.commit)) return;
    const snap = n.storage.createSnapshot(applied, n.rn!.status().confState, n.sm.snapshot());
    if (isStorageError(snap)) return;
    n.lastSnapshotAt = applied;
    this.stats.snapshotsTaken++;
    // Keep a short tail so that slightly lagging followers still get entries, not a snapshot.
    const keep = n.rng.int(10);
    if (applied - keep > n.storage.firstIndex()) n.storage.compact(applied - keep);
  }

  // ---------------------------------------------------------------- events

  private handle(ev: Event): void {
    this.note(ev);
    switch (ev.kind) {
      case 'tick':
        for (const n of this.shuffled(this.alive())) {
          n.rn!.tick();
          this.process(n);
        }
        this.q.after(TICK_MS, { kind: 'tick' });
        return;
      case 'deliver':
        return this.deliver(ev.msg);
      case 'client':
        return this.clientStep(ev.client);
      case 'fault':
        this.fault();
        this.q.after(FAULT_EVERY_MS, { kind: 'fault' });
        return;
      case 'fsync': {
        const n = this.nodes.get(ev.id)!;
        if (n.incarnation !== ev.incarnation || n.rn === undefined) return;
        this.finishWrite(n);
        this.process(n);
        return;
      }
      case 'crash': {
        const n = this.nodes.get(ev.id)!;
        if (n.rn !== undefined) this.crash(n);
        this.net.heal();
        return;
      }
      case 'restart': {
        const n = this.nodes.get(ev.id)!;
        if (n.rn === undefined && !n.removed) this.start(n);
        return;
      }
      case 'timeout':
        if (!ev.op.done) {
          ev.op.done = true;
          this.stats.opsUnknown++;
          this.idle(ev.op.client);
        }
        return;
    }
  }

  private deliver(m: Message): void {
    const to = this.nodes.get(m.to);
    const from = this.nodes.get(m.from);
    const ok = to !== undefined && to.rn !== undefined && !to.removed && this.net.connected(m.from, m.to);
    if (m.type === MessageType.Snap && from?.rn !== undefined) {
      // The transport tells the leader how the snapshot went, as etcd's does.
      if (ok) to.rn!.step(m);
      from.rn.reportSnapshot(m.to, ok);
      if (ok) this.process(to);
      this.process(from);
      return;
    }
    if (!ok) return;
    to.rn!.step(m);
    this.process(to);
  }

  /** The client is done with its operation: it starts the next one after a think time. */
  private idle(c: number, backoff = 0): void {
    this.q.after(backoff + this.rng.between(...CLIENT_THINK_MS), { kind: 'client', client: c });
  }

  private clientStep(c: number): void {
    const nodes = this.alive();
    if (nodes.length === 0) return this.idle(c);
    const n = this.rng.pick(nodes);
    const seq = ++this.clientSeq[c]!;
    const key = this.rng.pick(KEYS);
    const input: KvInput = this.rng.chance(0.5) ? { kind: 'put', key, value: `${c}.${seq}` } : { kind: 'get', key };
    const op: PendingOp = { client: c, seq, input, call: this.tick(), slot: this.history.length, done: false };
    this.history.push({ client: c, input, call: op.call });
    this.outcomes.push(undefined);
    this.q.after(OP_TIMEOUT_MS, { kind: 'timeout', op });
    const err =
      input.kind === 'put'
        ? n.rn!.propose(encodePut({ client: c, seq, key, value: input.value }))
        : n.rn!.readIndex(new TextEncoder().encode(`${c}:${seq}`));
    if (err !== undefined) {
      // Refused on the spot: it certainly never happened.
      this.refused.add(op.slot);
      op.done = true;
      this.idle(c, REFUSED_BACKOFF_MS);
    } else if (input.kind === 'put') {
      n.writes.set(`${c}:${seq}`, op);
    } else {
      n.reads.set(`${c}:${seq}`, op);
    }
    this.process(n);
  }

  private complete(op: PendingOp, output: KvOutput): void {
    if (op.done) return;
    op.done = true;
    this.outcomes[op.slot] = { output, ret: this.tick() };
    this.idle(op.client);
  }

  private fault(): void {
    const r = this.rng.float();
    const ids = [...this.nodes.values()].filter((n) => !n.removed).map((n) => n.id);
    if (r < 0.1) {
      this.net.heal();
    } else if (r < 0.16) {
      const side = ids.filter(() => this.rng.chance(0.5));
      this.net.partition(side, ids.filter((id) => !side.includes(id)));
      this.stats.partitions++;
    } else if (r < 0.2) {
      const one = this.rng.pick(ids);
      this.net.partition([one], ids.filter((id) => id !== one));
      this.stats.partitions++;
    } else if (r < 0.25) {
      // Asymmetric: one direction of a few links.
      for (let i = this.rng.between(1, 3); i > 0; i--) this.net.cutOneWay(this.rng.pick(ids), this.rng.pick(ids));
      this.stats.partitions++;
    } else if (r < 0.3) {
      const alive = this.alive();
      if (alive.length > 0) this.crash(this.rng.pick(alive));
    } else if (r < 0.34) {
      const l = this.leader();
      if (l !== undefined) {
        const voters = l.rn!.status().confState.voters;
        l.rn!.transferLeader(this.rng.pick(voters));
        this.stats.transfers++;
        this.process(l);
      }
    } else if (r < 0.4) {
      this.membershipChange();
    } else if (r < 0.46) {
      this.isolateLeader();
    }
  }

  /**
   * The leader is cut off from every other member while clients can still reach it. Half the time
   * it keeps running (a deposed leader that doesn't know it yet: where stale reads come from);
   * half the time it appends entries nobody else receives and dies (Raft paper Figure 8: repeated,
   * this leaves uncommitted entries of different terms at one index, where a commit rule that
   * counts replicas of an old term's entry goes wrong).
   */
  private isolateLeader(): void {
    const l = this.leader();
    if (l === undefined) return;
    const others = [...this.nodes.keys()].filter((id) => id !== l.id);
    this.net.partition([l.id], others);
    this.stats.partitions++;
    if (this.rng.chance(0.5)) return;
    for (let i = this.rng.between(1, 3); i > 0; i--) {
      // Written by no client and read by none: only its position in the log matters.
      l.rn!.propose(encodePut({ client: ORPHAN_CLIENT, seq: ++this.orphanSeq, key: ORPHAN_KEY, value: String(this.orphanSeq) }));
    }
    this.process(l);
    this.q.after(this.rng.between(1, 15), { kind: 'crash', id: l.id });
  }

  private membershipChange(): void {
    const l = this.leader();
    if (l === undefined) return;
    const { voters, learners } = l.rn!.status().confState;
    const r = this.rng.float();
    // Proposals may be refused (one change already pending): that is part of what is exercised.
    if (r < 0.35 && this.nodes.size < MAX_NODES) {
      const id = this.nextId;
      const type = this.rng.chance(0.7) ? ConfChangeType.AddLearnerNode : ConfChangeType.AddNode;
      if (l.rn!.proposeConfChange({ type, nodeId: id }) === undefined) {
        this.nextId++;
        this.addNode(id, new MemoryStorage());
      }
    } else if (r < 0.65 && learners.length > 0 && voters.length < MAX_VOTERS) {
      l.rn!.proposeConfChange({ type: ConfChangeType.AddNode, nodeId: this.rng.pick(learners) });
    } else if (voters.length > MIN_VOTERS || learners.length > 0) {
      const pool = voters.length > MIN_VOTERS ? [...voters, ...learners] : learners;
      l.rn!.proposeConfChange({ type: ConfChangeType.RemoveNode, nodeId: this.rng.pick(pool) });
    }
    this.process(l);
  }

  // ---------------------------------------------------------------- checking

  /** Linearizability of the whole history: equivalent to checking every prefix, at one go. */
  private checkHistory(): void {
    const ops: Operation<KvInput, KvOutput>[] = [];
    for (let i = 0; i < this.history.length; i++) {
      if (this.refused.has(i)) continue;
      const o = this.outcomes[i];
      ops.push(o !== undefined ? { ...this.history[i]!, output: o.output, ret: o.ret } : this.history[i]!);
    }
    const res = checkOperations(kvModel, ops);
    if (!res.ok) throw new Violation('linearizability', res.message);
  }

  // ---------------------------------------------------------------- bookkeeping

  /** A logical clock for the history: every call and return gets a distinct, increasing time. */
  private tick(): number {
    return ++this.counter;
  }

  private shuffled<T>(xs: T[]): T[] {
    for (let i = xs.length - 1; i > 0; i--) {
      const j = this.rng.int(i + 1);
      [xs[i], xs[j]] = [xs[j]!, xs[i]!];
    }
    return xs;
  }

  private note(ev: Event): void {
    let code: number;
    let a = 0;
    let b = 0;
    switch (ev.kind) {
      case 'deliver':
        code = 1 + MESSAGE_CODES.indexOf(ev.msg.type);
        a = ev.msg.from;
        b = ev.msg.to;
        break;
      case 'restart':
        code = 40;
        a = ev.id;
        break;
      case 'crash':
        code = 38;
        a = ev.id;
        break;
      case 'fsync':
        code = 39;
        a = ev.id;
        break;
      case 'timeout':
        code = 41;
        a = ev.op.client;
        break;
      default:
        code = ev.kind === 'tick' ? 42 : ev.kind === 'client' ? 43 + ev.client : 60;
    }
    for (const x of [this.q.now, code, a, b]) {
      this.digest = Math.imul(this.digest ^ x, 0x01000193) >>> 0;
    }
    this.recent.push({ step: this.step, time: this.q.now, ev });
    if (this.recent.length > RECENT_EVENTS) this.recent.shift();
    this.opts.trace?.(`[${this.step}] t=${this.q.now} ${describe(ev)}`);
  }
}

const MESSAGE_CODES = Object.values(MessageType);

function ctxKey(ctx: Uint8Array): string {
  return new TextDecoder().decode(ctx);
}

function describe(ev: Event): string {
  switch (ev.kind) {
    case 'deliver': {
      const m = ev.msg;
      const extra =
        m.type === MessageType.App
          ? ` index=${m.index} logTerm=${m.logTerm} n=${m.entries.length} commit=${m.commit}`
          : m.type === MessageType.AppResp
            ? ` index=${m.index}${m.reject ? ` reject hint=${m.rejectHint}` : ''}`
            : m.type === MessageType.VoteResp || m.type === MessageType.PreVoteResp
              ? m.reject ? ' reject' : ' grant'
              : m.type === MessageType.Snap
                ? ` snap=${m.snapshot.metadata.index}`
                : '';
      return `${m.type} ${m.from}->${m.to} term=${m.term}${extra}`;
    }
    case 'restart':
      return `restart ${ev.id}`;
    case 'fsync':
      return `fsync done on ${ev.id}`;
    case 'crash':
      return `crash ${ev.id}`;
    case 'timeout':
      return `timeout client ${ev.op.client} seq ${ev.op.seq}`;
    case 'client':
      return `client ${ev.client}`;
    default:
      return ev.kind;
  }
}
