// The Raft state machine: roles, elections, replication, commit, reads, transfers and membership.
// It has no clock, no network and no disk: time arrives as tick(), messages as step(), and all
// output is collected in `msgs` and the log for the driver to take through a Ready.

import { applyToConfState, decodeConfChange, validateConfChange } from './confchange.js';
import { RaftInvariantError, RaftLog } from './log.js';
import {
  ConfChangeType,
  EntryType,
  entriesSize,
  MessageType,
  NONE,
  type ConfChange,
  type ConfState,
  type Entry,
  type HardState,
  type Message,
  type MsgApp,
  type MsgAppResp,
  type MsgHeartbeat,
  type MsgHeartbeatResp,
  type MsgProp,
  type MsgSnap,
  type MsgVote,
  type NodeId,
  type ProposedEntry,
  type ReadState,
  type Snapshot,
} from './messages.js';
import { Progress } from './progress.js';
import { committedIndex, majority, voteResult, VoteResult } from './quorum.js';
import { ReadOnly, type ReadRequest } from './readonly.js';
import { isStorageError, type Storage } from './storage.js';

export enum Role {
  Follower = 'follower',
  PreCandidate = 'pre-candidate',
  Candidate = 'candidate',
  Leader = 'leader',
}

export interface SoftState {
  readonly lead: NodeId;
  readonly role: Role;
}

export enum RaftError {
  ProposalDropped = 'raft: proposal dropped',
  StepLocalMsg = 'raft: cannot step raft local message',
  StepPeerNotFound = 'raft: cannot step as peer not found',
}

export type Logger = (level: 'debug' | 'info' | 'warn', msg: string) => void;

export interface Config {
  id: NodeId;
  storage: Storage;
  /** Ticks a follower waits without hearing a leader before campaigning (randomized in [e, 2e)). */
  electionTick: number;
  /** A leader sends heartbeats every this many ticks. */
  heartbeatTick: number;
  /** The injected RNG: an integer in [0, n). */
  random: (n: number) => number;
  /** Last applied index when restarting; defaults to the storage snapshot's index. */
  applied?: number;
  preVote?: boolean;
  checkQuorum?: boolean;
  maxSizePerMsg?: number;
  maxInflightMsgs?: number;
  maxInflightBytes?: number;
  maxUncommittedEntriesSize?: number;
  maxCommittedSizePerReady?: number;
  logger?: Logger;
}

/** Limits, named as etcd names them, with etcd's server defaults. */
export const DEFAULT_MAX_SIZE_PER_MSG = 1024 * 1024;
export const DEFAULT_MAX_INFLIGHT_MSGS = 256;
export const DEFAULT_MAX_COMMITTED_SIZE_PER_READY = 64 * 1024 * 1024;

enum CampaignKind {
  PreElection,
  Election,
  Transfer,
}

export class Raft {
  readonly id: NodeId;
  term = 0;
  vote: NodeId = NONE;
  role: Role = Role.Follower;
  lead: NodeId = NONE;
  readonly log: RaftLog;

  /** Replication progress of every member (voters and learners), this node included. */
  readonly prs = new Map<NodeId, Progress>();
  voters: NodeId[] = [];
  learners: NodeId[] = [];
  private votes = new Map<NodeId, boolean>();

  msgs: Message[] = [];
  readStates: ReadState[] = [];

  leadTransferee: NodeId = NONE;
  /** A conf change may be proposed only once the log is applied past this index. */
  pendingConfIndex = 0;
  private uncommittedSize = 0;
  /** Entries were proposed and not yet sent to followers. */
  private appendsPending = false;
  private readonly readOnly = new ReadOnly();
  /** Reads that arrived before this leader committed an entry of its term: it can't know commit yet. */
  private pendingReadIndex: ReadRequest[] = [];

  private electionElapsed = 0;
  private heartbeatElapsed = 0;
  private randomizedElectionTimeout = 0;

  private readonly electionTimeout: number;
  private readonly heartbeatTimeout: number;
  private readonly checkQuorum: boolean;
  private readonly preVote: boolean;
  private readonly maxMsgSize: number;
  private readonly maxInflight: number;
  private readonly maxInflightBytes: number;
  private readonly maxUncommittedSize: number;
  private readonly random: (n: number) => number;
  private readonly logger: Logger;

  constructor(c: Config) {
    if (!Number.isSafeInteger(c.id) || c.id === NONE) throw new RangeError('raft: cannot use none as id');
    if (c.heartbeatTick <= 0) throw new RangeError('raft: heartbeat tick must be greater than 0');
    if (c.electionTick <= c.heartbeatTick) throw new RangeError('raft: election tick must be greater than heartbeat tick');
    this.id = c.id;
    this.electionTimeout = c.electionTick;
    this.heartbeatTimeout = c.heartbeatTick;
    this.random = c.random;
    this.checkQuorum = c.checkQuorum ?? true;
    this.preVote = c.preVote ?? true;
    this.maxMsgSize = c.maxSizePerMsg ?? DEFAULT_MAX_SIZE_PER_MSG;
    this.maxInflight = c.maxInflightMsgs ?? DEFAULT_MAX_INFLIGHT_MSGS;
    this.maxInflightBytes = c.maxInflightBytes ?? 0;
    this.maxUncommittedSize = c.maxUncommittedEntriesSize ?? 0;
    this.logger = c.logger ?? (() => {});
    this.log = new RaftLog(c.storage, c.maxCommittedSizePerReady ?? DEFAULT_MAX_COMMITTED_SIZE_PER_READY);

    const { hardState, confState } = c.storage.initialState();
    this.setConfig(confState);
    if (hardState.term !== 0 || hardState.vote !== NONE || hardState.commit !== 0) this.loadState(hardState);
    if (c.applied !== undefined && c.applied > 0) this.log.appliedTo(c.applied);
    this.becomeFollower(this.term, NONE);
  }

  private loadState(hs: HardState): void {
    if (hs.commit > this.log.lastIndex()) {
      throw new RaftInvariantError(`raft: state.commit ${hs.commit} is out of range [${this.log.committed}, ${this.log.lastIndex()}]`);
    }
    // A commit below the snapshot just means the hard state was written before the snapshot.
    this.log.commitTo(hs.commit);
    this.term = hs.term;
    this.vote = hs.vote;
  }

  softState(): SoftState {
    return { lead: this.lead, role: this.role };
  }

  hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.log.committed };
  }

  confState(): ConfState {
    return { voters: this.voters, learners: this.learners };
  }

  // ---------------------------------------------------------------- roles

  private reset(term: number): void {
    if (this.term !== term) {
      this.term = term;
      this.vote = NONE;
    }
    this.lead = NONE;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.randomizedElectionTimeout = this.electionTimeout + this.random(this.electionTimeout);
    this.leadTransferee = NONE;
    this.votes = new Map();
    const last = this.log.lastIndex();
    for (const [id, pr] of this.prs) {
      const fresh = this.newProgress(last + 1, pr.learner);
      if (id === this.id) fresh.match = this.log.persistedIndex();
      this.prs.set(id, fresh);
    }
    this.pendingConfIndex = 0;
    this.uncommittedSize = 0;
    this.appendsPending = false;
    this.readOnly.reset();
    this.pendingReadIndex = [];
  }

  private newProgress(next: number, learner: boolean): Progress {
    return new Progress(next, learner, this.maxInflight, this.maxInflightBytes);
  }

  becomeFollower(term: number, lead: NodeId): void {
    this.reset(term);
    this.lead = lead;
    this.role = Role.Follower;
    this.logger('info', `${this.id} became follower at term ${this.term}`);
  }

  private becomePreCandidate(): void {
    if (this.role === Role.Leader) throw new RaftInvariantError('raft: invalid transition [leader -> pre-candidate]');
    // Neither term nor vote changes: a pre-vote that fails must leave no trace.
    this.votes = new Map();
    this.lead = NONE;
    this.role = Role.PreCandidate;
    this.logger('info', `${this.id} became pre-candidate at term ${this.term}`);
  }

  private becomeCandidate(): void {
    if (this.role === Role.Leader) throw new RaftInvariantError('raft: invalid transition [leader -> candidate]');
    this.reset(this.term + 1);
    this.vote = this.id;
    this.role = Role.Candidate;
    this.logger('info', `${this.id} became candidate at term ${this.term}`);
  }

  private becomeLeader(): void {
    if (this.role === Role.Follower) throw new RaftInvariantError('raft: invalid transition [follower -> leader]');
    this.reset(this.term);
    this.lead = this.id;
    this.role = Role.Leader;
    this.prs.get(this.id)?.becomeReplicate();
    // The no-op lets this leader commit (and so learn the commit index) without waiting for a
    // client, since entries of earlier terms are only committed by counting one of its own.
    this.appendEntries([{ type: EntryType.Normal, data: new Uint8Array(0) }], true);
    // No membership change until an entry of this term is applied: otherwise a change could be
    // decided under a configuration a previous leader had already left (Ongaro's single-server
    // change bug), so wait until everything up to and including the no-op is applied.
    this.pendingConfIndex = this.log.lastIndex();
    this.logger('info', `${this.id} became leader at term ${this.term}`);
  }

  // ---------------------------------------------------------------- time

  tick(): void {
    if (this.role === Role.Leader) this.tickHeartbeat();
    else this.tickElection();
  }

  private tickElection(): void {
    this.electionElapsed++;
    if (this.promotable() && this.electionElapsed >= this.randomizedElectionTimeout) {
      this.electionElapsed = 0;
      this.hup(false);
    }
  }

  private tickHeartbeat(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    if (this.electionElapsed >= this.electionTimeout) {
      this.electionElapsed = 0;
      if (this.checkQuorum && !this.quorumActive()) {
        this.logger('warn', `${this.id} stepped down to follower since quorum is not active`);
        this.becomeFollower(this.term, NONE);
        return;
      }
      // A transfer that did not finish within an election timeout has failed.
      if (this.leadTransferee !== NONE) this.abortLeaderTransfer();
    }
    if (this.heartbeatElapsed >= this.heartbeatTimeout) {
      this.heartbeatElapsed = 0;
      // Reads queued behind an unconfirmed round (perhaps lost heartbeats) get a fresh round.
      this.readOnly.maybeStartRound(true);
      this.bcastHeartbeat(this.readOnly.currentRound());
    }
  }

  /** Has a quorum been heard from within the last election timeout? Resets the marks for the next. */
  private quorumActive(): boolean {
    let active = 0;
    for (const id of this.voters) {
      const pr = this.prs.get(id)!;
      if (id === this.id || pr.recentActive) active++;
    }
    for (const [id, pr] of this.prs) if (id !== this.id) pr.recentActive = false;
    return active >= majority(this.voters.length);
  }

  // ---------------------------------------------------------------- elections

  promotable(): boolean {
    const pr = this.prs.get(this.id);
    return pr !== undefined && !pr.learner && !this.log.hasPendingSnapshot();
  }

  /** Starts an election, or a transfer's election that skips pre-vote and the voters' lease. */
  hup(transfer: boolean): void {
    if (this.role === Role.Leader) return;
    if (!this.promotable()) {
      this.logger('warn', `${this.id} is unpromotable and can not campaign`);
      return;
    }
    // A committed but unapplied membership change might remove or add voters: campaigning under
    // the old configuration could elect a leader the new one doesn't know.
    if (this.hasUnappliedConfChanges()) {
      this.logger('warn', `${this.id} cannot campaign at term ${this.term} since there are still pending configuration changes to apply`);
      return;
    }
    if (transfer) this.campaign(CampaignKind.Transfer);
    else this.campaign(this.preVote ? CampaignKind.PreElection : CampaignKind.Election);
  }

  private hasUnappliedConfChanges(): boolean {
    if (this.log.applied >= this.log.committed) return false;
    const ents = this.log.slice(this.log.applied + 1, this.log.committed + 1, Number.MAX_SAFE_INTEGER);
    if (isStorageError(ents)) return false;
    return ents.some((e) => e.type === EntryType.ConfChange);
  }

  private campaign(kind: CampaignKind): void {
    let type: MessageType.Vote | MessageType.PreVote;
    let term: number;
    if (kind === CampaignKind.PreElection) {
      this.becomePreCandidate();
      type = MessageType.PreVote;
      // Ask as if for the next term, without taking it: a partitioned node can't inflate terms.
      term = this.term + 1;
    } else {
      this.becomeCandidate();
      type = MessageType.Vote;
      term = this.term;
    }
    if (this.poll(this.id, true) === VoteResult.Won) {
      // A single voter wins at once.
      if (kind === CampaignKind.PreElection) this.campaign(CampaignKind.Election);
      else this.becomeLeader();
      return;
    }
    const index = this.log.lastIndex();
    const logTerm = this.log.lastTerm();
    for (const to of this.voters) {
      if (to === this.id) continue;
      this.send({ type, from: this.id, to, term, index, logTerm, transfer: kind === CampaignKind.Transfer });
    }
  }

  private poll(id: NodeId, granted: boolean): VoteResult {
    if (!this.votes.has(id)) this.votes.set(id, granted);
    return voteResult(this.voters, this.votes);
  }

  // ---------------------------------------------------------------- step

  step(m: Message): RaftError | undefined {
    if (m.term === 0) {
      // Forwarded requests carry no term: they are about the cluster, not about this node's term.
    } else if (m.term > this.term) {
      if (m.type === MessageType.Vote || m.type === MessageType.PreVote) {
        const inLease = this.checkQuorum && this.lead !== NONE && this.electionElapsed < this.electionTimeout;
        // We heard from a leader within the minimum election timeout: ignore the disruptor,
        // unless the leader itself asked for this election (transfer).
        if (!m.transfer && inLease) return undefined;
      }
      if (m.type === MessageType.PreVote) {
        // A pre-vote never changes our term.
      } else if (m.type === MessageType.PreVoteResp && !m.reject) {
        // Granted pre-votes are answered with the future term; we take it only if we win.
      } else if (m.type === MessageType.App || m.type === MessageType.Heartbeat || m.type === MessageType.Snap) {
        this.becomeFollower(m.term, m.from);
      } else {
        this.becomeFollower(m.term, NONE);
      }
    } else if (m.term < this.term) {
      if ((this.checkQuorum || this.preVote) && (m.type === MessageType.Heartbeat || m.type === MessageType.App)) {
        // A leader cut off from us may have been deposed without knowing: tell it our term so it
        // steps down. (Without this, with pre-vote, our pre-votes would fail against it forever.)
        this.send({ type: MessageType.AppResp, from: this.id, to: m.from, term: this.term, index: 0, reject: false, rejectHint: 0, logTerm: 0 });
      } else if (m.type === MessageType.PreVote) {
        this.send({ type: MessageType.PreVoteResp, from: this.id, to: m.from, term: this.term, reject: true });
      }
      return undefined;
    }

    if (m.type === MessageType.Vote || m.type === MessageType.PreVote) {
      this.handleVote(m);
      return undefined;
    }
    switch (this.role) {
      case Role.Leader:
        return this.stepLeader(m);
      case Role.Candidate:
      case Role.PreCandidate:
        return this.stepCandidate(m);
      case Role.Follower:
        return this.stepFollower(m);
    }
  }

  private handleVote(m: MsgVote): void {
    const canVote =
      this.vote === m.from ||
      (this.vote === NONE && this.lead === NONE) ||
      (m.type === MessageType.PreVote && m.term > this.term);
    const resp = m.type === MessageType.Vote ? MessageType.VoteResp : MessageType.PreVoteResp;
    if (canVote && this.log.isUpToDate(m.index, m.logTerm)) {
      // A granted pre-vote is answered with the candidate's (future) term so it can count it.
      this.send({ type: resp, from: this.id, to: m.from, term: m.term, reject: false });
      if (m.type === MessageType.Vote) {
        this.electionElapsed = 0;
        this.vote = m.from;
      }
    } else {
      this.send({ type: resp, from: this.id, to: m.from, term: this.term, reject: true });
    }
  }

  private stepLeader(m: Message): RaftError | undefined {
    switch (m.type) {
      case MessageType.Prop:
        return this.leaderPropose(m);
      case MessageType.ReadIndex:
        this.leaderReadIndex({ context: m.context, from: m.from, index: this.log.committed });
        return undefined;
      case MessageType.TransferLeader:
        this.leaderTransfer(m.from);
        return undefined;
      case MessageType.AppResp:
        this.handleAppendResponse(m);
        return undefined;
      case MessageType.HeartbeatResp:
        this.handleHeartbeatResponse(m);
        return undefined;
      default:
        return undefined;
    }
  }

  private stepCandidate(m: Message): RaftError | undefined {
    switch (m.type) {
      case MessageType.Prop:
        this.logger('info', `${this.id} no leader at term ${this.term}; dropping proposal`);
        return RaftError.ProposalDropped;
      case MessageType.App:
      case MessageType.Heartbeat:
      case MessageType.Snap:
        // Someone already won this term: follow it.
        this.becomeFollower(m.term, m.from);
        return this.stepFollower(m);
      case MessageType.VoteResp:
      case MessageType.PreVoteResp: {
        // Only the answers to the election this node is running count.
        const mine = this.role === Role.PreCandidate ? MessageType.PreVoteResp : MessageType.VoteResp;
        if (m.type !== mine) return undefined;
        const res = this.poll(m.from, !m.reject);
        if (res === VoteResult.Won) {
          if (this.role === Role.PreCandidate) {
            this.campaign(CampaignKind.Election);
          } else {
            this.becomeLeader();
            this.bcastAppend();
          }
        } else if (res === VoteResult.Lost) {
          // A pre-candidate's rejection may carry a higher term, which step() already took.
          this.becomeFollower(this.term, NONE);
        }
        return undefined;
      }
      default:
        return undefined;
    }
  }

  private stepFollower(m: Message): RaftError | undefined {
    switch (m.type) {
      case MessageType.Prop:
        if (this.lead === NONE) {
          this.logger('info', `${this.id} no leader at term ${this.term}; dropping proposal`);
          return RaftError.ProposalDropped;
        }
        this.send({ ...m, to: this.lead });
        return undefined;
      case MessageType.App:
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleAppendEntries(m);
        return undefined;
      case MessageType.Heartbeat:
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleHeartbeat(m);
        return undefined;
      case MessageType.Snap:
        this.electionElapsed = 0;
        this.lead = m.from;
        this.handleSnapshot(m);
        return undefined;
      case MessageType.TransferLeader:
      case MessageType.ReadIndex:
        if (this.lead === NONE) {
          this.logger('info', `${this.id} no leader at term ${this.term}; dropping ${m.type}`);
          return RaftError.ProposalDropped;
        }
        this.send({ ...m, to: this.lead });
        return undefined;
      case MessageType.TimeoutNow:
        this.logger('info', `${this.id} received MsgTimeoutNow from ${m.from} and starts an election to get leadership`);
        this.hup(true);
        return undefined;
      case MessageType.ReadIndexResp:
        this.readStates.push({ index: m.index, context: m.context });
        return undefined;
      default:
        return undefined;
    }
  }

  // ---------------------------------------------------------------- follower side of replication

  private handleAppendEntries(m: MsgApp): void {
    if (m.index < this.log.committed) {
      this.sendAppResp(m.from, this.log.committed, false, 0, 0);
      return;
    }
    const lastNew = this.log.maybeAppend(m.index, m.logTerm, m.commit, m.entries);
    if (lastNew !== undefined) {
      this.sendAppResp(m.from, lastNew, false, 0, 0);
      return;
    }
    // Tell the leader where our logs might match, skipping whole terms we know can't, so a
    // follower far behind is found in one round trip per term rather than one per entry.
    const hint = this.log.findConflictByTerm(Math.min(m.index, this.log.lastIndex()), m.logTerm);
    this.sendAppResp(m.from, m.index, true, hint.index, hint.term);
  }

  private sendAppResp(to: NodeId, index: number, reject: boolean, rejectHint: number, logTerm: number): void {
    this.send({ type: MessageType.AppResp, from: this.id, to, term: this.term, index, reject, rejectHint, logTerm });
  }

  private handleHeartbeat(m: MsgHeartbeat): void {
    this.log.commitTo(m.commit);
    this.send({ type: MessageType.HeartbeatResp, from: this.id, to: m.from, term: this.term, readRound: m.readRound });
  }

  private handleSnapshot(m: MsgSnap): void {
    if (this.restore(m.snapshot)) {
      this.sendAppResp(m.from, this.log.lastIndex(), false, 0, 0);
    } else {
      this.sendAppResp(m.from, this.log.committed, false, 0, 0);
    }
  }

  /** Installs a snapshot from the leader. Returns false when it brings nothing new. */
  private restore(s: Snapshot): boolean {
    const meta = s.metadata;
    if (meta.index <= this.log.committed) return false;
    if (this.role !== Role.Follower) {
      this.logger('warn', `${this.id} attempted to restore snapshot as ${this.role}; should never happen`);
      return false;
    }
    const cs = meta.confState;
    if (!cs.voters.includes(this.id) && !cs.learners.includes(this.id)) {
      this.logger('warn', `${this.id} attempted to restore snapshot but it is not in the ConfState; should never happen`);
      return false;
    }
    if (this.log.matchTerm(meta.index, meta.term)) {
      // We have the entries already: just learn that they are committed.
      this.log.commitTo(meta.index);
      return false;
    }
    this.log.restore(s);
    this.prs.clear();
    this.setConfig(cs);
    return true;
  }

  // ---------------------------------------------------------------- leader side of replication

  private leaderPropose(m: MsgProp): RaftError | undefined {
    if (m.entries.length === 0) return RaftError.ProposalDropped;
    if (!this.prs.has(this.id)) return RaftError.ProposalDropped; // removed from the cluster
    if (this.leadTransferee !== NONE) {
      this.logger('debug', `${this.id} [term ${this.term}] transfer leadership to ${this.leadTransferee} is in progress; dropping proposal`);
      return RaftError.ProposalDropped;
    }
    let cs = this.confState();
    for (let i = 0; i < m.entries.length; i++) {
      const e = m.entries[i]!;
      if (e.type !== EntryType.ConfChange) continue;
      if (this.pendingConfIndex > this.log.applied) {
        this.logger('info', `${this.id} ignoring conf change: one is already pending (index ${this.pendingConfIndex}, applied ${this.log.applied})`);
        return RaftError.ProposalDropped;
      }
      let cc: ConfChange;
      try {
        cc = decodeConfChange(e.data);
      } catch (err) {
        this.logger('warn', `${this.id} ignoring malformed conf change: ${(err as Error).message}`);
        return RaftError.ProposalDropped;
      }
      const why = validateConfChange(cs, cc);
      if (why !== undefined) {
        this.logger('info', `${this.id} ignoring conf change: ${why}`);
        return RaftError.ProposalDropped;
      }
      cs = applyToConfState(cs, cc);
      this.pendingConfIndex = this.log.lastIndex() + i + 1;
    }
    if (!this.appendEntries(m.entries, false)) return RaftError.ProposalDropped;
    // Sent from ready(): every proposal between two Readys then shares one MsgApp per follower.
    this.appendsPending = true;
    return undefined;
  }

  hasAppendsToSend(): boolean {
    return this.appendsPending && this.role === Role.Leader;
  }

  /** Sends followers the entries proposed since the last Ready (those not already sent). */
  flushAppends(): void {
    if (!this.hasAppendsToSend()) return;
    this.appendsPending = false;
    for (const id of this.prs.keys()) {
      if (id === this.id) continue;
      while (this.maybeSendAppend(id, false)) {
        /* as many as the window and message size allow */
      }
    }
  }

  /**
   * Appends proposed entries with this term. The leader's own progress advances only when the
   * driver reports them durable (advance), so the leader never counts itself for an entry it could
   * still lose in a crash.
   */
  private appendEntries(proposed: readonly ProposedEntry[], free: boolean): boolean {
    const size = entriesSize(proposed);
    if (!free && this.maxUncommittedSize > 0 && this.uncommittedSize > 0 && this.uncommittedSize + size > this.maxUncommittedSize) {
      this.logger('debug', `${this.id} appending new entries to log would exceed uncommitted entry size limit; dropping proposal`);
      return false;
    }
    if (!free) this.uncommittedSize += size;
    const li = this.log.lastIndex();
    const ents: Entry[] = proposed.map((e, i) => ({ term: this.term, index: li + 1 + i, type: e.type, data: e.data }));
    this.log.append(ents);
    return true;
  }

  /** The driver made entries and hard state durable: the leader may now count itself. */
  onPersisted(): void {
    if (this.role !== Role.Leader) return;
    const pr = this.prs.get(this.id);
    if (pr === undefined) return;
    if (pr.maybeUpdate(this.log.persistedIndex()) && this.maybeCommit()) this.bcastAppend();
  }

  onApplied(ents: readonly Entry[]): void {
    if (this.role !== Role.Leader || ents.length === 0) return;
    this.uncommittedSize = Math.max(0, this.uncommittedSize - entriesSize(ents.filter((e) => e.term === this.term)));
  }

  private handleAppendResponse(m: MsgAppResp): void {
    const pr = this.prs.get(m.from);
    if (pr === undefined) return;
    pr.recentActive = true;
    if (m.reject) {
      let next = m.rejectHint;
      if (m.logTerm > 0) next = this.log.findConflictByTerm(m.rejectHint, m.logTerm).index;
      if (pr.maybeDecrTo(m.index, next)) {
        if (pr.state.kind === 'replicate') pr.becomeProbe();
        this.sendAppend(m.from);
      }
      return;
    }
    const wasPaused = pr.isPaused();
    if (!pr.maybeUpdate(m.index)) return;
    switch (pr.state.kind) {
      case 'probe':
        pr.becomeReplicate();
        break;
      case 'snapshot':
        if (pr.match >= pr.state.pendingSnapshot) {
          pr.becomeProbe();
          pr.becomeReplicate();
        }
        break;
      case 'replicate':
        pr.state.inflights.freeLE(m.index);
        break;
    }
    if (this.maybeCommit()) {
      this.bcastAppend();
    } else if (wasPaused) {
      this.sendAppend(m.from);
    }
    // Keep the pipe full while there is more to send and the window allows.
    while (this.maybeSendAppend(m.from, false)) {
      /* sent one more */
    }
    if (m.from === this.leadTransferee && pr.match === this.log.lastIndex()) {
      this.logger('info', `${this.id} sent MsgTimeoutNow to ${m.from} after received MsgAppResp`);
      this.sendTimeoutNow(m.from);
    }
  }

  private handleHeartbeatResponse(m: MsgHeartbeatResp): void {
    const pr = this.prs.get(m.from);
    if (pr === undefined) return;
    pr.recentActive = true;
    if (pr.state.kind === 'probe') pr.state.paused = false;
    else if (pr.state.kind === 'replicate' && pr.state.inflights.full()) pr.state.inflights.freeFirstOne();
    if (pr.match < this.log.lastIndex()) this.sendAppend(m.from);
    if (m.readRound > 0 && !pr.learner) {
      this.answerReads(this.readOnly.ack(this.id, this.voters, m.from, m.readRound));
    }
  }

  /** Commits the highest index a quorum has, if it is of this term. */
  private maybeCommit(): boolean {
    if (this.voters.length === 0) return false;
    const mci = committedIndex(this.voters, (id) => this.prs.get(id)?.match);
    if (mci <= this.log.committed) return false;
    // Raft §5.4.2: an entry of an earlier term is committed only by committing one of this term
    // after it, never by counting its own replicas.
    if (this.log.termOrZero(mci) !== this.term) return false;
    const hadCommitInTerm = this.committedEntryInCurrentTerm();
    this.log.commitTo(mci);
    if (!hadCommitInTerm) this.releasePendingReadIndex();
    return true;
  }

  private committedEntryInCurrentTerm(): boolean {
    return this.log.termOrZero(this.log.committed) === this.term;
  }

  bcastAppend(): void {
    for (const id of this.prs.keys()) if (id !== this.id) this.sendAppend(id);
  }

  private sendAppend(to: NodeId): void {
    this.maybeSendAppend(to, true);
  }

  /**
   * Sends the follower the entries it lacks (or a snapshot when they are compacted away). With
   * sendIfEmpty false, only sends when there are entries. Returns whether a message was sent.
   */
  private maybeSendAppend(to: NodeId, sendIfEmpty: boolean): boolean {
    const pr = this.prs.get(to);
    if (pr === undefined || pr.isPaused()) return false;
    const prevIndex = pr.next - 1;
    const prevTerm = this.log.term(prevIndex);
    const ents = this.log.entries(pr.next, this.maxMsgSize);
    if (isStorageError(prevTerm) || isStorageError(ents)) return this.sendSnapshot(to, pr);
    if (ents.length === 0 && !sendIfEmpty) return false;
    this.send({ type: MessageType.App, from: this.id, to, term: this.term, index: prevIndex, logTerm: prevTerm, entries: ents, commit: this.log.committed });
    const last = ents.length > 0 ? ents[ents.length - 1]!.index : prevIndex;
    pr.sentEntries(ents.length, last, entriesSize(ents));
    return true;
  }

  private sendSnapshot(to: NodeId, pr: Progress): boolean {
    if (!pr.recentActive) {
      this.logger('debug', `${this.id} ignore sending snapshot to ${to} since it is not recently active`);
      return false;
    }
    const snap = this.log.snapshot();
    if (isStorageError(snap)) {
      this.logger('debug', `${this.id} failed to send snapshot to ${to} because snapshot is temporarily unavailable`);
      return false;
    }
    if (snap.metadata.index === 0) throw new RaftInvariantError('raft: need non-empty snapshot');
    this.logger('info', `${this.id} sending snapshot [index ${snap.metadata.index}, term ${snap.metadata.term}] to ${to}`);
    pr.becomeSnapshot(snap.metadata.index);
    this.send({ type: MessageType.Snap, from: this.id, to, term: this.term, snapshot: snap });
    return true;
  }

  private bcastHeartbeat(readRound: number): void {
    for (const [id, pr] of this.prs) {
      if (id === this.id) continue;
      // Never tell a follower to commit past what it is known to hold.
      const commit = Math.min(pr.match, this.log.committed);
      this.send({ type: MessageType.Heartbeat, from: this.id, to: id, term: this.term, commit, readRound });
    }
  }

  // ---------------------------------------------------------------- reads

  private leaderReadIndex(req: ReadRequest): void {
    if (!this.committedEntryInCurrentTerm()) {
      // Our commit index may be behind what an earlier leader committed until our no-op commits.
      this.pendingReadIndex.push(req);
      return;
    }
    this.readOnly.add(req);
  }

  private releasePendingReadIndex(): void {
    if (this.pendingReadIndex.length === 0) return;
    const reqs = this.pendingReadIndex;
    this.pendingReadIndex = [];
    // They arrived before any commit of this term; now the commit index is at least theirs.
    for (const r of reqs) this.readOnly.add({ ...r, index: this.log.committed });
  }

  /** Reads wait for a round that started after them; is there one to start? */
  hasReadsToConfirm(): boolean {
    return this.role === Role.Leader && this.readOnly.canStartRound();
  }

  /**
   * Starts a heartbeat round for the reads that arrived since the last one. The driver calls
   * this (through RawNode.ready) once per batch of steps, so a burst of reads shares one round.
   */
  startReadRound(): void {
    if (this.role !== Role.Leader) return;
    if (this.voters.length === 1 && this.voters[0] === this.id) {
      // A sole voter needs nobody's confirmation.
      this.readOnly.maybeStartRound(true);
      this.answerReads(this.readOnly.release(this.id, this.voters));
      return;
    }
    const round = this.readOnly.maybeStartRound(false);
    if (round !== 0) this.bcastHeartbeat(round);
  }

  private answerReads(reqs: readonly ReadRequest[]): void {
    for (const r of reqs) {
      if (r.from === this.id || r.from === NONE) {
        this.readStates.push({ index: r.index, context: r.context });
      } else {
        this.send({ type: MessageType.ReadIndexResp, from: this.id, to: r.from, term: this.term, index: r.index, context: r.context });
      }
    }
    // Reads that queued while the released round was in flight get the next one in ready().
  }

  // ---------------------------------------------------------------- leader transfer

  private leaderTransfer(transferee: NodeId): void {
    const pr = this.prs.get(transferee);
    if (pr === undefined || pr.learner) {
      this.logger('debug', `${this.id} ignored transferring leadership to ${transferee}: not a voter`);
      return;
    }
    if (this.leadTransferee !== NONE) {
      if (this.leadTransferee === transferee) return;
      this.abortLeaderTransfer();
    }
    if (transferee === this.id) return;
    // The transfer must finish within one election timeout.
    this.electionElapsed = 0;
    this.leadTransferee = transferee;
    if (pr.match === this.log.lastIndex()) {
      this.sendTimeoutNow(transferee);
    } else {
      this.sendAppend(transferee);
    }
  }

  private sendTimeoutNow(to: NodeId): void {
    this.send({ type: MessageType.TimeoutNow, from: this.id, to, term: this.term });
  }

  abortLeaderTransfer(): void {
    this.leadTransferee = NONE;
  }

  // ---------------------------------------------------------------- local reports

  reportUnreachable(id: NodeId): void {
    const pr = this.prs.get(id);
    if (this.role !== Role.Leader || pr === undefined) return;
    // The transport lost the connection: what was in flight is probably lost too.
    if (pr.state.kind === 'replicate') pr.becomeProbe();
  }

  reportSnapshot(id: NodeId, ok: boolean): void {
    const pr = this.prs.get(id);
    if (this.role !== Role.Leader || pr === undefined || pr.state.kind !== 'snapshot') return;
    pr.becomeProbe(ok);
    // Wait for a heartbeat reply before probing: the follower may still be installing it.
    pr.pauseProbe();
  }

  // ---------------------------------------------------------------- membership

  applyConfChange(cc: ConfChange): ConfState {
    const cs = this.confState();
    const why = validateConfChange(cs, cc);
    if (why !== undefined) {
      this.logger('warn', `${this.id} ignoring invalid conf change at apply: ${why}`);
      return cs;
    }
    this.setConfig(applyToConfState(cs, cc));
    if (cc.type === ConfChangeType.RemoveNode && cc.nodeId === this.leadTransferee) this.abortLeaderTransfer();
    if (this.role !== Role.Leader) return this.confState();
    if (!this.prs.has(this.id) || this.prs.get(this.id)!.learner) {
      // A leader that removed itself steps down; the others elect a leader among themselves.
      this.becomeFollower(this.term, NONE);
      return this.confState();
    }
    // A smaller quorum may commit more; reads waiting on a removed member may be confirmed.
    if (this.maybeCommit()) this.bcastAppend();
    else for (const id of this.prs.keys()) if (id !== this.id) this.maybeSendAppend(id, false);
    this.answerReads(this.readOnly.release(this.id, this.voters));
    return this.confState();
  }

  /** Makes `cs` the configuration, keeping the progress of members that stay. */
  private setConfig(cs: ConfState): void {
    const last = this.log.lastIndex();
    const keep = new Set([...cs.voters, ...cs.learners]);
    for (const id of [...this.prs.keys()]) if (!keep.has(id)) this.prs.delete(id);
    for (const id of cs.voters) {
      const pr = this.prs.get(id);
      if (pr === undefined) this.prs.set(id, this.newMemberProgress(last));
      else pr.learner = false;
    }
    for (const id of cs.learners) {
      if (!this.prs.has(id)) {
        const pr = this.newMemberProgress(last);
        pr.learner = true;
        this.prs.set(id, pr);
      }
    }
    this.voters = [...cs.voters].sort((a, b) => a - b);
    this.learners = [...cs.learners].sort((a, b) => a - b);
  }

  private newMemberProgress(last: number): Progress {
    const pr = this.newProgress(last + 1, false);
    // A new member counts as active so check-quorum doesn't depose the leader before it answers.
    pr.recentActive = true;
    return pr;
  }

  // ---------------------------------------------------------------- output

  private send(m: Message): void {
    this.msgs.push(m);
  }
}

