// The driver's handle on Raft: feed it time, messages and proposals; take its output as Readys.
// See API.md (and README.md) for the contract a driver must keep.

import { encodeConfChange } from './confchange.js';
import {
  EntryType,
  hardStateEqual,
  MessageType,
  type ConfChange,
  type ConfState,
  type Entry,
  type HardState,
  type Message,
  type NodeId,
  type ReadState,
  type Snapshot,
} from './messages.js';
import { Raft, RaftError, Role, type Config, type SoftState } from './raft.js';

export interface Ready {
  /** Present only when it changed since the last Ready. */
  readonly softState?: SoftState;
  /** Present only when it changed: persist it (with entries, in one fsync). */
  readonly hardState?: HardState;
  /** Persist; they may replace a suffix of the durable log. */
  readonly entries: readonly Entry[];
  /** Persist, and restore the state machine from it before applying committedEntries. */
  readonly snapshot?: Snapshot;
  /** Apply in order, after the persisting above. */
  readonly committedEntries: readonly Entry[];
  /** Send only after entries, hardState and snapshot are durable. */
  readonly messages: readonly Message[];
  /** Serve each read once the applied index reaches its index. */
  readonly readStates: readonly ReadState[];
  /** The persisted state changed in a way that needs an fsync (entries, term or vote). */
  readonly mustSync: boolean;
  /**
   * This node leads and the Ready changes neither role, term, vote nor snapshot, and applies no
   * ConfChange: none of its messages promises anything about this node's disk, so the driver may
   * send them and apply its committed entries (committed means durable on a quorum, which counts
   * this node only for what it reported persisted) while the entries are still being written. It
   * then calls advanceApplied(rd) at once and persisted() when the write completes.
   */
  readonly writeBehind: boolean;
}

export interface ProgressStatus {
  readonly match: number;
  readonly next: number;
  readonly state: 'probe' | 'replicate' | 'snapshot';
  readonly learner: boolean;
}

export interface Status {
  readonly id: NodeId;
  readonly term: number;
  readonly vote: NodeId;
  readonly commit: number;
  readonly applied: number;
  readonly lead: NodeId;
  readonly role: Role;
  readonly lastIndex: number;
  readonly confState: ConfState;
  readonly leadTransferee: NodeId;
  /** Only on the leader. */
  readonly progress?: ReadonlyMap<NodeId, ProgressStatus>;
}

/** Responses from a member that is not (or no longer) in the configuration are refused. */
const RESPONSES = new Set<MessageType>([MessageType.AppResp, MessageType.HeartbeatResp]);

export class RawNode {
  private readonly raft: Raft;
  private prevSoft: SoftState;
  private prevHard: HardState;

  constructor(config: Config) {
    this.raft = new Raft(config);
    this.prevSoft = this.raft.softState();
    this.prevHard = this.raft.hardState();
  }

  tick(): void {
    this.raft.tick();
  }

  /** Starts an election now (as a timeout would). */
  campaign(): void {
    this.raft.hup(false);
  }

  step(m: Message): RaftError | undefined {
    if (m.to !== this.raft.id) return RaftError.StepLocalMsg;
    if (RESPONSES.has(m.type) && !this.raft.prs.has(m.from)) return RaftError.StepPeerNotFound;
    return this.raft.step(m);
  }

  propose(data: Uint8Array): RaftError | undefined {
    return this.stepProposal(EntryType.Normal, data);
  }

  proposeConfChange(cc: ConfChange): RaftError | undefined {
    return this.stepProposal(EntryType.ConfChange, encodeConfChange(cc));
  }

  private stepProposal(type: EntryType, data: Uint8Array): RaftError | undefined {
    const id = this.raft.id;
    return this.raft.step({ type: MessageType.Prop, from: id, to: id, term: 0, entries: [{ type, data }] });
  }

  /** Asks for a linearizable read; a ReadState with this context appears in a later Ready, or never. */
  readIndex(context: Uint8Array): RaftError | undefined {
    const id = this.raft.id;
    return this.raft.step({ type: MessageType.ReadIndex, from: id, to: id, term: 0, context });
  }

  /** Asks the leader (wherever this is called) to hand leadership to `transferee`. */
  transferLeader(transferee: NodeId): RaftError | undefined {
    return this.raft.step({ type: MessageType.TransferLeader, from: transferee, to: this.raft.id, term: 0 });
  }

  applyConfChange(cc: ConfChange): ConfState {
    return this.raft.applyConfChange(cc);
  }

  reportUnreachable(id: NodeId): void {
    this.raft.reportUnreachable(id);
  }

  reportSnapshot(id: NodeId, ok: boolean): void {
    this.raft.reportSnapshot(id, ok);
  }

  hasReady(): boolean {
    const r = this.raft;
    const soft = r.softState();
    if (soft.lead !== this.prevSoft.lead || soft.role !== this.prevSoft.role) return true;
    if (!hardStateEqual(r.hardState(), this.prevHard)) return true;
    if (r.log.hasPendingSnapshot()) return true;
    if (r.msgs.length > 0 || r.readStates.length > 0 || r.hasReadsToConfirm() || r.hasAppendsToSend()) return true;
    if (r.log.unstable.hasToWrite()) return true;
    return r.log.hasNextCommittedEntries();
  }

  /** Everything to persist, send and apply now. Call advance() with it once that is done. */
  ready(): Ready {
    const r = this.raft;
    r.startReadRound();
    r.flushAppends();
    const entries = r.log.unstable.toWrite();
    r.log.unstable.acceptInProgress();
    const committedEntries = r.log.nextCommittedEntries();
    const soft = r.softState();
    const hard = r.hardState();
    const softChanged = soft.lead !== this.prevSoft.lead || soft.role !== this.prevSoft.role;
    const hardChanged = !hardStateEqual(hard, this.prevHard);
    const termOrVote = hard.term !== this.prevHard.term || hard.vote !== this.prevHard.vote;
    const mustSync = entries.length > 0 || termOrVote;
    const writeBehind =
      r.role === Role.Leader && !softChanged && !termOrVote && r.log.unstable.snapshot === undefined && committedEntries.every((e) => e.type === EntryType.Normal);
    const rd: Ready = {
      ...(softChanged ? { softState: soft } : {}),
      ...(hardChanged ? { hardState: hard } : {}),
      ...(r.log.unstable.snapshot !== undefined ? { snapshot: r.log.unstable.snapshot } : {}),
      entries,
      committedEntries,
      messages: r.msgs,
      readStates: r.readStates,
      mustSync,
      writeBehind,
    };
    r.msgs = [];
    r.readStates = [];
    if (softChanged) this.prevSoft = soft;
    if (hardChanged) this.prevHard = hard;
    return rd;
  }

  /** Tells Raft that everything in `rd` was persisted, sent and applied. */
  advance(rd: Ready): void {
    const r = this.raft;
    const lastEntry = rd.entries[rd.entries.length - 1];
    if (lastEntry !== undefined) r.log.stableTo(lastEntry.index, lastEntry.term);
    if (rd.snapshot !== undefined) r.log.stableSnapTo(rd.snapshot.metadata.index);
    this.advanceApplied(rd);
    if (rd.snapshot !== undefined && rd.snapshot.metadata.index > r.log.applied) r.log.appliedTo(rd.snapshot.metadata.index);
    r.onPersisted();
  }

  /**
   * A `writeBehind` Ready was sent and its committed entries applied; its entries are still
   * being written. ready() may be called again; call persisted() when the write completes.
   */
  advanceApplied(rd: Ready): void {
    const lastApplied = rd.committedEntries[rd.committedEntries.length - 1];
    if (lastApplied === undefined) return;
    this.raft.log.appliedTo(lastApplied.index);
    this.raft.onApplied(rd.committedEntries);
  }

  /**
   * The entries through (index, term) that a `writeBehind` Ready handed over are durable: the
   * leader may now count itself for them. Writes complete in the order their Readys came; a write
   * whose entries were replaced meanwhile (the term at index differs) counts for nothing.
   */
  persisted(index: number, term: number): void {
    this.raft.log.stableTo(index, term);
    this.raft.onPersisted();
  }

  /** The current term: status() without building the rest (every response header carries it). */
  get term(): number {
    return this.raft.term;
  }

  status(): Status {
    const r = this.raft;
    const base = {
      id: r.id,
      term: r.term,
      vote: r.vote,
      commit: r.log.committed,
      applied: r.log.applied,
      lead: r.lead,
      role: r.role,
      lastIndex: r.log.lastIndex(),
      confState: r.confState(),
      leadTransferee: r.leadTransferee,
    };
    if (r.role !== Role.Leader) return base;
    const progress = new Map<NodeId, ProgressStatus>();
    for (const [id, pr] of r.prs) progress.set(id, { match: pr.match, next: pr.next, state: pr.stateName, learner: pr.learner });
    return { ...base, progress };
  }
}
