/**
 * One etcd member: the Raft driver loop (tick, step, Ready: persist to the WAL with one fsync, then
 * send, then apply to the state machine, then advance; a steady leader's Ready is sent and applied
 * while it is written, see handleBehind), proposals and their waiters, ReadIndex barriers for
 * linearizable reads, and the lessor's primary duties while leading.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { ApplyRequest, ApplyResponse, ApplyResult, LeaseTimeToLiveResponse, TxnRequest } from '@capstan/mvcc';
import { MvccError, StateMachine } from '@capstan/mvcc';
import {
  bootstrap,
  ConfChangeType,
  decodeConfChange,
  RaftError,
  type ConfChange,
  EntryType,
  isStorageError,
  MemoryStorage,
  MessageType,
  RawNode,
  Role,
  type Entry,
  type HardState,
  type Message,
  type NodeId,
  type Ready,
  type Snapshot,
} from '@capstan/raft';
import { Wal, WalInvalidBatchError, failpoints, fire, goDuration, type SaveBatch, type SaveOptions } from '@capstan/wal';
import {
  AlarmType,
  errLearnerNotReady,
  errMemberExist,
  errMemberNotFound,
  errMemberNotLearner,
  errNoLeader,
  errNoSpace,
  errPeerURLExist,
  errRequestTooLarge,
  errStopped,
  errTimeout,
  errTooManyRequests,
  ServerError,
  type AlarmMember,
  type Member,
  type MemberInfo,
  type MemberStatus,
} from './api.js';
import { askPeers, PeerTransport } from './peer.js';
import { errorPayload } from './forwarding.js';
import { packr } from './peercodec.js';
import { decodeProposal, encodeProposal, type Proposal, type ProposerRef } from './proposal.js';
import type { TLSConfig } from './tls.js';
import { TimeoutDetector } from './heartbeat.js';
import { DEFAULT_WARNING_APPLY_MS, SlowRequests, describeRequest, describeResult } from './slow.js';
import type { RequestTrace } from './trace.js';

/** etcd's --max-request-bytes default. */
export const DEFAULT_MAX_REQUEST_BYTES = 1.5 * 1024 * 1024;
/** etcd's maxGapBetweenApplyAndCommitIndex: beyond it new proposals get "too many requests". */
export const MAX_GAP_APPLY_COMMIT = 5000;
/** How often the leader looks for expired leases (etcd: 500 ms). */
export const LEASE_EXPIRY_CHECK_MS = 500;
/** Leases revoked per expiry check at most. */
export const LEASE_REVOKES_PER_CHECK = 500;
/** How often the leader proposes lease checkpoints, so remaining TTLs survive a leader change. */
export const LEASE_CHECKPOINT_MS = 5000;
export const VERSION = '3.5.0';
/** How often a member compares its store's size with --quota-backend-bytes. */
export const QUOTA_CHECK_MS = 1000;
/** etcd's readyPercent: a learner is promotable once its log reaches this share of the leader's. */
export const LEARNER_READY_PERCENT = 0.9;
/**
 * Applied entries between two snapshots of the store: etcd 3.6's --snapshot-count default (3.2-3.5
 * used 100,000, for a v2 store dumped whole at each snapshot; etcd-io/etcd#15408). Our snapshot is a
 * LevelDB sync and the member list, while every entry behind it stays in the in-memory log and
 * the heap. After the bench's heavy workloads, at 100 puts/s under 100 watchers, 100,000 held the
 * leader's heap at 41-51 MB after each full collection, with scavenges of 4-28 ms; put throughput
 * over 16x16 channels was 4,392-4,593/s against 5,374/s at 10,000 (bench/README.md, "Snapshot count").
 */
export const DEFAULT_SNAPSHOT_COUNT = 10_000;
/** Entries kept in the log behind a snapshot, so a slightly slow follower catches up without one (etcd's). */
export const SNAPSHOT_CATCHUP_ENTRIES = 5000;

export interface MemberConfig {
  readonly name: string;
  readonly dataDir: string;
  readonly clientURLs: readonly string[];
  readonly peerURLs: readonly string[];
  /** name -> peer URLs, as --initial-cluster. */
  readonly initialCluster: ReadonlyMap<string, readonly string[]>;
  readonly initialClusterState: 'new' | 'existing';
  readonly initialClusterToken: string;
  readonly heartbeatMs: number;
  readonly electionMs: number;
  readonly maxRequestBytes: number;
  readonly maxTxnOps: number;
  readonly snapshotCount?: number;
  /** --quota-backend-bytes: beyond it the member raises NOSPACE and the cluster refuses writes that grow the store. */
  readonly quotaBackendBytes?: number;
  /** --auth-token-ttl in milliseconds: how long an unused simple token stays valid (etcd: 300 s). */
  readonly authTokenTTLMs?: number;
  /** --experimental-warning-apply-duration in ms: an apply (or a read) slower than this is logged, and so is the trace of a request slower than this. */
  readonly warningApplyMs?: number;
  /** Entries kept behind a snapshot; etcd's constant, a knob here for tests. */
  readonly snapshotCatchUpEntries?: number;
  /** Seconds each WAL fdatasync took (etcd's wal_fsync_duration times the fdatasync alone). */
  readonly observeFsync?: (seconds: number) => void;
  readonly log: (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
  /** TLS for dialing https peer URLs and serving https listen peer URLs (--peer-cert-file and friends, or --peer-auto-tls). */
  readonly peerTLS?: TLSConfig;
}

interface Settle<T> {
  resolve(r: T): void;
  reject(e: Error): void;
  /** performance.now() past which the request fails (expireRequests). */
  deadline: number;
}
interface Waiter extends Settle<ApplyResponse> {
  /** The client request's trace, told when its entry is applied. */
  trace?: RequestTrace | undefined;
}
type LeaderWaiter = Settle<void>;

/** Rejects with `err()` the requests at the front of `pending` (in deadline order) whose deadline is past. */
function expireFront<K>(pending: Iterable<[K, { deadline: number; reject(e: Error): void }]>, remove: (key: K) => unknown, now: number, err: () => Error): void {
  for (const [key, r] of pending) {
    if (r.deadline > now) break;
    remove(key);
    r.reject(err());
  }
}

/** What a Raft snapshot's data holds; the store itself travels beside it, streamed by the transport. */
interface SnapshotData {
  members: MemberInfo[];
  alarms?: AlarmMember[];
}

/** What a ConfChange entry's context carries: the member being added, and who waits for it. */
interface ConfContext extends ProposerRef {
  member?: { id: bigint; name: string; peerURLs: string[] };
}

/** etcd derives member IDs from the peer URLs and the cluster token; 48 bits here (Raft ids are numbers). */
export function memberIdOf(peerURLs: readonly string[], token: string): NodeId {
  const h = createHash('sha1').update([...peerURLs].sort().join('')).update(token).digest();
  return h.readUIntBE(0, 6) || 1;
}

export function clusterIdOf(ids: readonly NodeId[], token: string): bigint {
  const h = createHash('sha1')
    .update([...ids].sort((a, b) => a - b).join(','))
    .update(token)
    .digest();
  return h.readBigUInt64BE(0) & 0x7fffffffffffffffn;
}

export class RaftMember implements Member {
  readonly memberId: bigint;
  readonly clusterId: bigint;
  readonly name: string;
  readonly limits: { maxRequestBytes: number; maxTxnOps: number };
  readonly transport: PeerTransport;
  private readonly id: NodeId;
  private readonly infos = new Map<NodeId, MemberInfo>();
  private readonly waiters = new Map<number, Waiter>();
  private nextReq = 1;
  /** This process's incarnation, drawn at start (see ProposerRef). */
  private readonly incarnation = randomBytes(4).readUInt32BE(0);
  private readonly reads = new Map<string, Settle<void> & { index: number }>();
  private nextRead = 1;
  private applied = 0;
  private committed = 0;
  private role: Role = Role.Follower;
  private lead: NodeId = 0;
  private stopped = false;
  private wake: (() => void) | undefined;
  private readonly timers: NodeJS.Timeout[] = [];
  private loopDone: Promise<void> = Promise.resolve();
  private readonly requestTimeoutMs: number;
  leaderChanges = 0;
  /** etcd's "apply request took too long" warnings; services.ts warns of slow reads through it too. */
  readonly slow: SlowRequests;
  /** Heartbeats this leader sent later than twice the interval after the previous one (etcd_server_heartbeat_send_failures_total). */
  heartbeatSendFailures = 0;
  private readonly heartbeats: TimeoutDetector;
  private removed = false;
  private alarmList: AlarmMember[] = [];
  snapshotsSent = 0;
  snapshotsInstalled = 0;
  private snapIndex = 0;
  /** The member's own snapshot being saved, in the background (maybeSnapshot). */
  private snapshotting: Promise<void> | undefined;
  /** A snapshot of the store from the leader is being installed: no snapshot of our own meanwhile. */
  private restoring = false;
  /** Serializes applying entries with installing a snapshot of the store. */
  private applyLock: Promise<void> = Promise.resolve();
  /** The leader's write in the background (Ready.writeBehind), if one is under way. */
  private writing: Promise<void> | undefined;
  /** What write-behind Readys gathered while it ran: the next write, one fsync for all of them. */
  private nextWrite: { entries: Entry[]; hardState: HardState | undefined } | undefined;
  /** Index of the last ConfChange entry applied (a snapshot may not be cut before it). */
  private confIndex = 0;
  private appliedWaiters: Array<{ index: number; resolve(): void }> = [];
  private readonly leaderWaiters = new Set<LeaderWaiter>();

  private constructor(
    private readonly cfg: MemberConfig,
    readonly sm: StateMachine,
    private readonly wal: Wal,
    private readonly storage: MemoryStorage,
    private readonly rn: RawNode,
    id: NodeId,
    clusterId: bigint,
  ) {
    this.id = id;
    this.memberId = BigInt(id);
    this.clusterId = clusterId;
    this.name = cfg.name;
    this.limits = { maxRequestBytes: cfg.maxRequestBytes, maxTxnOps: cfg.maxTxnOps };
    // etcd: 5 s plus two election timeouts.
    this.requestTimeoutMs = 5000 + 2 * cfg.electionMs;
    this.slow = new SlowRequests(cfg.warningApplyMs ?? DEFAULT_WARNING_APPLY_MS, cfg.log);
    this.heartbeats = new TimeoutDetector(2 * cfg.heartbeatMs);
    this.transport = new PeerTransport({
      onMessages: (msgs) => this.receive(msgs),
      onUnreachable: (peer) => this.rn.reportUnreachable(peer),
      onForward: (req) => this.handleForward(req),
      onSnapshot: (msg, data) => this.installSnapshot(msg, data),
    }, cfg.peerTLS);
  }

  static async start(cfg: MemberConfig): Promise<RaftMember> {
    const dir = join(cfg.dataDir, 'member');
    await mkdir(dir, { recursive: true });
    const ids = new Map<string, NodeId>();
    for (const [name, urls] of cfg.initialCluster) ids.set(name, memberIdOf(urls, cfg.initialClusterToken));
    const mine = cfg.initialCluster.get(cfg.name);
    if (mine === undefined || [...mine].sort().join(',') !== [...cfg.peerURLs].sort().join(',')) {
      throw new Error(`--initial-cluster has ${cfg.name}=${mine?.join(',') ?? '(missing)'} but --initial-advertise-peer-urls is ${cfg.peerURLs.join(',')}`);
    }
    let id = ids.get(cfg.name)!;
    let clusterId = clusterIdOf([...ids.values()], cfg.initialClusterToken);
    let remote: MemberInfo[] | undefined;
    const walDir = join(dir, 'wal');
    const exists = await stat(walDir).then(
      () => true,
      () => false,
    );
    if (!exists && cfg.initialClusterState === 'existing') {
      // Joining: the cluster already has an ID, and gave this member its ID when it was added.
      const others = [...cfg.initialCluster].filter(([n]) => n !== cfg.name).flatMap(([, urls]) => urls);
      const c = await askPeers(others, { op: 'cluster' }, cfg.peerTLS) as { clusterId: bigint; members: MemberInfo[] };
      const me = c.members.find((m) => [...m.peerURLs].sort().join(',') === [...cfg.peerURLs].sort().join(','));
      if (me === undefined) throw new Error(`this member's peer URLs ${cfg.peerURLs.join(',')} are not in the cluster's member list: add it first (etcdctl member add)`);
      id = Number(me.id);
      clusterId = c.clusterId;
      remote = c.members;
    }
    const { wal, replay } = await Wal.open(walDir, {
      metadata: { memberId: id, clusterId: clusterId.toString(16) },
      logger: (level, msg, fields) => cfg.log(level === 'error' ? 'error' : level === 'warn' ? 'warn' : 'info', msg, fields),
    });
    wal.onFsync = cfg.observeFsync;
    if (!replay.created) {
      // A restart: who this member is was decided when its log was created.
      id = replay.metadata.memberId;
      clusterId = BigInt(`0x${replay.metadata.clusterId}`);
    }
    const storage = new MemoryStorage();
    if (replay.created) {
      if (cfg.initialClusterState === 'new') {
        bootstrap(storage, [...ids.values()]);
        const ents = storage.entries(1, storage.lastIndex() + 1, Infinity);
        if (!Array.isArray(ents)) throw new Error('bootstrap entries unreadable');
        await wal.save({ hardState: storage.initialState().hardState, entries: ents });
      }
    } else {
      if (replay.snapshot !== undefined) storage.applySnapshot(replay.snapshot);
      storage.setHardState(replay.hardState);
      if (replay.entries.length > 0) storage.append(replay.entries);
    }
    const sm = await StateMachine.open(join(dir, 'db'), {
      maxTxnOps: cfg.maxTxnOps,
      minTTL: Math.ceil((1.5 * cfg.electionMs) / 1000),
      tokenTTLMs: cfg.authTokenTTLMs,
    });
    const rn = new RawNode({
      id,
      storage,
      electionTick: Math.max(2, Math.round(cfg.electionMs / cfg.heartbeatMs)),
      heartbeatTick: 1,
      random: (n) => randomBytes(4).readUInt32BE(0) % n,
      preVote: true,
      checkQuorum: true,
      applied: replay.snapshot?.metadata.index ?? 0,
    });
    const m = new RaftMember(cfg, sm, wal, storage, rn, id, clusterId);
    const initial: MemberInfo[] =
      remote ??
      [...cfg.initialCluster].map(([name, urls]) => {
        const mid = ids.get(name)!;
        return { id: BigInt(mid), name, peerURLs: [...urls], clientURLs: mid === id ? [...cfg.clientURLs] : [], isLearner: false };
      });
    // After a snapshot its members list; otherwise the bootstrap members, and replaying the log's
    // conf changes (they come again: applied starts at the snapshot) rebuilds the rest.
    const snapData = replay.snapshot !== undefined ? (packr.unpack(replay.snapshot.data) as SnapshotData) : undefined;
    m.setMembers(snapData?.members ?? initial);
    m.alarmList = snapData?.alarms ?? [];
    m.snapIndex = replay.snapshot?.metadata.index ?? 0;
    m.publish();
    m.run();
    return m;
  }

  private setMembers(list: readonly MemberInfo[]): void {
    for (const id of this.infos.keys()) if (!list.some((mi) => Number(mi.id) === id)) this.transport.removePeer(id);
    this.infos.clear();
    for (const mi of list) {
      const id = Number(mi.id);
      this.infos.set(id, id === this.id ? { ...mi, clientURLs: [...this.cfg.clientURLs] } : mi);
      if (id !== this.id && mi.peerURLs.length > 0) this.transport.setPeer(id, mi.peerURLs[0]!);
    }
  }

  term(): number {
    return this.rn.term;
  }

  get isLeader(): boolean {
    return this.role === Role.Leader;
  }

  get leaderId(): NodeId {
    return this.lead;
  }

  get appliedIndex(): number {
    return this.applied;
  }

  get committedIndex(): number {
    return this.committed;
  }

  get pendingProposals(): number {
    return this.waiters.size;
  }

  // ------------------------------------------------------------------ requests

  /** `trace`, if given, is marked when the request's entry is applied here (etcd's 'process raft request'). */
  propose(req: ApplyRequest, trace?: RequestTrace): Promise<ApplyResponse> {
    if (this.refusedForSpace(req)) return Promise.reject(errNoSpace());
    return this.proposeRaw({ r: req }, trace);
  }

  private proposeRaw(body: Pick<Proposal, 'r' | 'a' | 'u' | 'al'>, trace?: RequestTrace): Promise<ApplyResponse> {
    if (this.stopped) return Promise.reject(errStopped());
    const i = this.nextReq++;
    let data: Buffer;
    try {
      data = encodeProposal({ o: this.id, g: this.incarnation, i, ...body });
    } catch (err) {
      return Promise.reject(err as Error);
    }
    if (data.length > this.cfg.maxRequestBytes) return Promise.reject(errRequestTooLarge());
    // With a leader known (nearly always) the proposal goes in now, without a promise to wait on first.
    if (this.lead !== 0) return this.proposeData(i, data, trace);
    return this.waitForLeader().then(() => this.proposeData(i, data, trace));
  }

  private proposeData(i: number, data: Buffer, trace?: RequestTrace): Promise<ApplyResponse> {
    if (this.committed - this.applied > MAX_GAP_APPLY_COMMIT) return Promise.reject(errTooManyRequests());
    return new Promise<ApplyResponse>((resolve, reject) => {
      this.waiters.set(i, { resolve, reject, deadline: this.deadline(), trace });
      const err = this.rn.propose(data);
      if (err !== undefined) {
        this.waiters.delete(i);
        reject(errNoLeader());
        return;
      }
      this.kick();
    });
  }

  async readBarrier(): Promise<void> {
    if (this.stopped) throw errStopped();
    await this.waitForLeader();
    const n = this.nextRead++;
    const ctx = Buffer.allocUnsafe(8);
    ctx.writeUInt32BE(this.id % 2 ** 32, 0);
    ctx.writeUInt32BE(n, 4);
    const key = ctx.toString('hex');
    return new Promise<void>((resolve, reject) => {
      this.reads.set(key, { resolve, reject, index: -1, deadline: this.deadline() });
      this.rn.readIndex(ctx);
      this.kick();
    });
  }

  waitApplied(index: number): Promise<void> {
    if (index <= this.applied) return Promise.resolve();
    if (this.stopped) return Promise.reject(errStopped());
    return new Promise((resolve) => this.appliedWaiters.push({ index, resolve }));
  }

  private notifyApplied(): void {
    if (this.appliedWaiters.length === 0) return;
    const ready = this.appliedWaiters.filter((w) => w.index <= this.applied);
    this.appliedWaiters = this.appliedWaiters.filter((w) => w.index > this.applied);
    for (const w of ready) w.resolve();
  }

  /**
   * A member that has not yet heard from a leader (just started, or in an election) holds the
   * request for up to the request timeout rather than failing at once, as etcd's requests wait.
   * It resolves as soon as a leader is known: woken by the Ready that reports it, not by polling,
   * so requests that waited (the member's own publish first) are proposed before any client that
   * learned of the leader afterwards (from /health, say) can propose.
   */
  private waitForLeader(): Promise<void> {
    if (this.stopped) return Promise.reject(errStopped());
    if (this.lead !== 0) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.leaderWaiters.add({ resolve, reject, deadline: this.deadline() });
    });
  }

  private settleLeaderWaiters(err?: Error): void {
    for (const w of this.leaderWaiters) {
      if (err === undefined) w.resolve();
      else w.reject(err);
    }
    this.leaderWaiters.clear();
  }

  async leaseKeepAlive(id: bigint): Promise<number> {
    if (this.isLeader) return this.sm.lessor.renew(id);
    return (await this.toLeader({ op: 'keepalive', id })) as number;
  }

  async leaseTimeToLive(id: bigint, keys: boolean): Promise<LeaseTimeToLiveResponse> {
    if (!this.isLeader) return (await this.toLeader({ op: 'ttl', id, keys })) as LeaseTimeToLiveResponse;
    await this.readBarrier();
    const t = this.sm.lessor.timeToLive(id, keys);
    return { header: { revision: this.sm.store.rev }, ID: id, TTL: t.TTL, grantedTTL: t.grantedTTL, keys: t.keys };
  }

  async leaseLeases(): Promise<bigint[]> {
    await this.readBarrier();
    return this.sm.lessor.leases();
  }

  members(): MemberInfo[] {
    return [...this.infos.values()].sort((a, b) => (a.id < b.id ? -1 : 1));
  }

  async addMember(peerURLs: string[], isLearner: boolean): Promise<{ member: MemberInfo; members: MemberInfo[] }> {
    const key = [...peerURLs].sort().join(',');
    for (const m of this.infos.values()) if (m.peerURLs.some((u) => peerURLs.includes(u))) throw errPeerURLExist();
    // etcd salts a runtime-added member's ID with the time, so a re-added member gets a new one.
    const mid = memberIdOf(peerURLs, `${this.cfg.initialClusterToken}/${Date.now()}`);
    if (this.infos.has(mid)) throw errMemberExist();
    const members = await this.confChange(isLearner ? ConfChangeType.AddLearnerNode : ConfChangeType.AddNode, mid, {
      id: BigInt(mid),
      name: '',
      peerURLs: key.split(','),
    });
    return { member: this.infos.get(mid) ?? { id: BigInt(mid), name: '', peerURLs, clientURLs: [], isLearner }, members };
  }

  async removeMember(id: bigint): Promise<MemberInfo[]> {
    if (!this.infos.has(Number(id))) throw errMemberNotFound();
    return this.confChange(ConfChangeType.RemoveNode, Number(id));
  }

  async updateMember(id: bigint, peerURLs: string[]): Promise<MemberInfo[]> {
    if (!this.infos.has(Number(id))) throw errMemberNotFound();
    for (const m of this.infos.values()) if (m.id !== id && m.peerURLs.some((u) => peerURLs.includes(u))) throw errPeerURLExist();
    await this.proposeRaw({ u: { id, peerURLs } });
    return this.members();
  }

  /** etcd's PromoteMember: only a learner, only once it has caught up, decided by the leader. */
  async promoteMember(id: bigint): Promise<MemberInfo[]> {
    const m = this.infos.get(Number(id));
    if (m === undefined) throw errMemberNotFound();
    if (!m.isLearner) throw errMemberNotLearner();
    if (!this.isLeader) {
      await this.toLeader({ op: 'promote', id });
      await this.readBarrier();
      return this.members();
    }
    const st = this.rn.status();
    const learner = st.progress?.get(Number(id));
    const leaderMatch = st.progress?.get(this.id)?.match ?? st.commit;
    if (learner === undefined || learner.match < leaderMatch * LEARNER_READY_PERCENT) throw errLearnerNotReady();
    return this.confChange(ConfChangeType.AddNode, Number(id));
  }

  /** Proposes a membership change and resolves with the members once it is applied here. */
  private async confChange(type: ConfChangeType, nodeId: NodeId, member?: ConfContext['member']): Promise<MemberInfo[]> {
    if (this.stopped) throw errStopped();
    await this.waitForLeader();
    const i = this.nextReq++;
    const context = packr.pack({ o: this.id, g: this.incarnation, i, member } satisfies ConfContext);
    return new Promise<MemberInfo[]>((resolve, reject) => {
      this.waiters.set(i, { resolve: () => resolve(this.members()), reject, deadline: this.deadline() });
      const err = this.rn.proposeConfChange({ type, nodeId, context });
      if (err !== undefined) {
        this.waiters.delete(i);
        reject(err === RaftError.ProposalDropped ? errNoLeader() : new ServerError('FAILED_PRECONDITION', `etcdserver: ${String(err)}`));
        return;
      }
      this.kick();
    });
  }

  /** The member was removed from the cluster: it stops, as etcd's does. */
  onRemoved: () => void = () => {};
  /** The loop failed (a WAL that cannot write or fsync): this member can go on no further, as etcd's fatal. */
  onFatal: (err: Error) => void = () => {};

  async status(): Promise<MemberStatus> {
    const st = this.rn.status();
    const dbSize = await this.sm.store.backend.diskSize();
    return {
      version: VERSION,
      dbSize,
      dbSizeInUse: dbSize,
      leader: BigInt(st.lead),
      raftIndex: st.commit,
      raftTerm: st.term,
      raftAppliedIndex: this.applied,
      errors: [],
      isLearner: st.confState.learners.includes(this.id),
    };
  }

  alarms(): AlarmMember[] {
    return [...this.alarmList];
  }

  async alarm(action: 'activate' | 'deactivate', memberID: bigint, alarm: AlarmType): Promise<AlarmMember[]> {
    await this.proposeRaw({ al: { action, memberID, alarm } });
    return this.alarms();
  }

  private get noSpace(): boolean {
    return this.alarmList.some((a) => a.alarm === AlarmType.NOSPACE);
  }

  /** etcd's quota: with NOSPACE raised, only requests that cannot grow the store go through. */
  private refusedForSpace(req: ApplyRequest): boolean {
    if (!this.noSpace) return false;
    if (req.put !== undefined || req.leaseGrant !== undefined) return true;
    return req.txn !== undefined && txnHasPut(req.txn);
  }

  /** Each member checks its own store; one over quota raises NOSPACE for itself (etcd's). */
  private async checkQuota(): Promise<void> {
    const quota = this.cfg.quotaBackendBytes;
    if (quota === undefined || quota <= 0 || this.stopped || this.lead === 0) return;
    if (this.alarmList.some((a) => a.alarm === AlarmType.NOSPACE && a.memberID === this.memberId)) return;
    const size = (await this.status()).dbSize;
    if (size <= quota) return;
    this.cfg.log('warn', 'database space exceeded: raising NOSPACE', { 'quota-size-bytes': quota, 'db-size-bytes': size });
    await this.alarm('activate', this.memberId, AlarmType.NOSPACE).catch(() => {});
  }

  async defragment(): Promise<void> {
    await this.sm.store.backend.compactAll();
  }

  moveLeader(target: bigint): Promise<void> {
    if (!this.isLeader) return Promise.reject(new ServerError('FAILED_PRECONDITION', 'etcdserver: not leader'));
    this.rn.transferLeader(Number(target));
    this.kick();
    return new Promise((resolve, reject) => {
      const started = Date.now();
      const check = setInterval(() => {
        if (this.lead === Number(target)) {
          clearInterval(check);
          resolve();
        } else if (Date.now() - started > this.requestTimeoutMs) {
          clearInterval(check);
          reject(errTimeout());
        }
      }, this.cfg.heartbeatMs);
    });
  }

  async snapshot(): Promise<AsyncIterable<Buffer>> {
    return (await this.sm.snapshot()).chunks;
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    this.kick();
    this.settleLeaderWaiters(errStopped());
    await this.loopDone;
    await this.writesDone();
    this.transport.close();
    for (const w of this.waiters.values()) w.reject(errStopped());
    for (const r of this.reads.values()) r.reject(errStopped());
    await this.snapshotting;
    await this.wal.close();
    await this.sm.close();
  }

  // ------------------------------------------------------------------ the loop

  private receive(msgs: Message[]): void {
    if (this.stopped) return;
    for (const m of msgs) this.rn.step(m);
    this.kick();
  }

  /** When a request made now fails unanswered: the request timeout from now. */
  private deadline(): number {
    return performance.now() + this.requestTimeoutMs;
  }

  /**
   * Fails the requests past their deadline, at each tick (so up to a heartbeat late). Every
   * request has the same timeout and each collection is in the order the requests were made, so
   * the expired ones are at its front. One Node Timeout per request cost more:
   * they were 1.7 MB of the 77 MB that a leader's scavenges kept alive in 10 s of 16x16 puts (README).
   */
  private expireRequests(): void {
    const now = performance.now();
    expireFront(this.waiters, (i) => this.waiters.delete(i), now, errTimeout);
    expireFront(this.reads, (key) => this.reads.delete(key), now, errTimeout);
    expireFront(this.leaderWaiters.entries(), (w) => this.leaderWaiters.delete(w), now, errNoLeader);
  }

  private kick(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  private run(): void {
    this.timers.push(
      setInterval(() => {
        this.rn.tick();
        this.kick();
        this.expireRequests();
      }, this.cfg.heartbeatMs),
      setInterval(() => this.revokeExpired(), LEASE_EXPIRY_CHECK_MS),
      setInterval(() => this.checkpointLeases(), LEASE_CHECKPOINT_MS),
      setInterval(() => void this.checkQuota(), QUOTA_CHECK_MS),
    );
    this.loopDone = this.loop().catch((err: unknown) => this.fail('raft loop failed; stopping', err));
  }

  private fail(msg: string, err: unknown): void {
    this.cfg.log('error', msg, { error: String((err as Error)?.stack ?? err) });
    process.exitCode = 1;
    void this.stop();
    this.onFatal(err instanceof Error ? err : new Error(String(err)));
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      if (!this.rn.hasReady()) {
        await new Promise<void>((resolve) => (this.wake = resolve));
        continue;
      }
      const rd = this.rn.ready();
      if (rd.writeBehind) {
        await this.handleBehind(rd);
        continue;
      }
      await this.handle(rd);
      this.rn.advance(rd);
      if (this.removed) {
        setImmediate(() => this.onRemoved());
        return;
      }
    }
  }

  private async handle(rd: Ready): Promise<void> {
    // Raft thesis 10.2.1: a leader may send its appends while it writes the entries itself, for it
    // counts itself only once advance() reports them durable (Raft.onPersisted); the simulation's
    // driver does the same. Every other message waits for the fsync, and so does everything in a
    // Ready that changes role, term or vote: those must be durable before any peer hears of them.
    const hs = this.storage.getHardState();
    const early =
      this.role === Role.Leader &&
      rd.softState === undefined &&
      rd.snapshot === undefined &&
      (rd.hardState === undefined || (rd.hardState.term === hs.term && rd.hardState.vote === hs.vote))
        ? rd.messages.filter((m) => m.type === MessageType.App)
        : [];
    this.sendMessages(early);
    if (rd.softState !== undefined) this.onSoftState(rd.softState.role, rd.softState.lead);
    const applyFirst = this.appliableBeforeSave(rd);
    if (applyFirst > 0) await this.applyCommitted(rd, 0, applyFirst);
    // Writes in the background (this member was leading) complete first: the WAL keeps saves in
    // order, and no message of this Ready may speak for entries before they are on disk.
    if (this.writing !== undefined) await this.writesDone();
    if (rd.snapshot !== undefined || rd.entries.length > 0 || rd.hardState !== undefined) {
      // A follower's acknowledgement waits for this fdatasync: inline, it is two thread hand-offs
      // shorter (INLINE_SYNC_MAX_BYTES). A leader's own writes go on in the background instead.
      await this.save({ hardState: rd.hardState, entries: rd.entries, snapshot: rd.snapshot }, { inlineSync: this.role !== Role.Leader });
    }
    if (rd.hardState !== undefined) this.committed = rd.hardState.commit;
    if (this.stopped) return;
    this.sendMessages(early.length === 0 ? rd.messages : rd.messages.filter((m) => m.type !== MessageType.App));
    await this.applyCommitted(rd, applyFirst, rd.committedEntries.length);
    this.afterApply(rd);
  }

  /**
   * A steady leader's Ready (Ready.writeBehind): sent, and its committed entries applied, now,
   * while its entries are written in the background. Those entries are committed by a quorum's
   * disks (Raft counts this member only for what persisted() reported), so the leader's own fsync
   * is off a write's path whenever the followers are quicker: with it on the path, a write waited
   * for the slower of the leader's fsync and the quicker follower's, and the leader's event loop
   * stood still while its fsync ran inline.
   */
  private async handleBehind(rd: Ready): Promise<void> {
    this.sendMessages(rd.messages);
    this.writeBehind(rd.entries, rd.hardState);
    if (rd.hardState !== undefined) this.committed = rd.hardState.commit;
    await this.applyCommitted(rd, 0, rd.committedEntries.length);
    this.rn.advanceApplied(rd);
    this.afterApply(rd);
  }

  /**
   * Writes a write-behind Ready's entries and hard state, or, while a write is under way, gathers
   * them into the next one: Readys come far more often than fsyncs complete under load, and the
   * WAL gives each save its own fsync. A leader's entries only ever extend its log, so gathering
   * is appending.
   */
  private writeBehind(entries: readonly Entry[], hardState: HardState | undefined): void {
    if (entries.length === 0 && hardState === undefined) return;
    if (this.writing !== undefined) {
      const next = (this.nextWrite ??= { entries: [], hardState: undefined });
      for (const e of entries) next.entries.push(e);
      if (hardState !== undefined) next.hardState = hardState;
      return;
    }
    this.writing = this.save({ hardState, entries }).then(
      () => {
        const last = entries[entries.length - 1];
        if (last !== undefined && !this.stopped) {
          this.rn.persisted(last.index, last.term);
          this.kick();
        }
        this.writing = undefined;
        const next = this.nextWrite;
        this.nextWrite = undefined;
        if (next !== undefined) this.writeBehind(next.entries, next.hardState);
      },
      (err: unknown) => {
        this.writing = undefined;
        this.nextWrite = undefined;
        this.fail('raft loop failed; stopping', err);
      },
    );
  }

  /** Resolves once no write-behind is under way or gathered. */
  private async writesDone(): Promise<void> {
    while (this.writing !== undefined) await this.writing;
  }

  /** One WAL save between the failpoints, then recorded in the Storage Raft reads. */
  private async save(batch: SaveBatch, options?: SaveOptions): Promise<void> {
    const before = failpoints.pass('raftBeforeSave');
    if (before !== undefined) await fire('raftBeforeSave', before);
    await this.wal.save(batch, options);
    const after = failpoints.pass('raftAfterSave');
    if (after !== undefined) await fire('raftAfterSave', after);
    if (batch.snapshot !== undefined) this.storage.applySnapshot(batch.snapshot);
    if (batch.entries !== undefined && batch.entries.length > 0) this.storage.append(batch.entries.map(detached));
    if (batch.hardState !== undefined) this.storage.setHardState(batch.hardState);
  }

  private afterApply(rd: Ready): void {
    this.maybeSnapshot();
    for (const rs of rd.readStates) {
      const r = this.reads.get(Buffer.from(rs.context).toString('hex'));
      if (r !== undefined) r.index = rs.index;
    }
    this.serveReads();
  }

  /**
   * How many of the Ready's committed entries may be applied before its save: those this member
   * already holds durably (its storage holds only what the WAL has synced, and a committed entry
   * is never overwritten), so that a put's answer and its watch events do not wait for the fsync
   * of entries that came after it, as etcd's apply goroutine runs beside its WAL write. That
   * includes a follower's Ready that only learns the commit index: its save is a write without an
   * fsync, but still a trip through libuv's pool that a follower's watchers waited for. Only
   * normal entries, and only in a Ready that changes neither role nor snapshot: a membership
   * change is applied after the save, as before.
   */
  private appliableBeforeSave(rd: Ready): number {
    if (rd.snapshot !== undefined || rd.softState !== undefined) return 0;
    const durable = this.storage.lastIndex();
    const ents = rd.committedEntries;
    let n = 0;
    while (n < ents.length && ents[n]!.index <= durable && ents[n]!.type === EntryType.Normal) n++;
    return n;
  }

  /**
   * Applies the Ready's snapshot, if any, and committedEntries[from, to) in one turn of the apply
   * lock, then answers whoever waited for them. A Ready with a snapshot applies nothing before its
   * save (appliableBeforeSave), so the snapshot comes first here, as it must.
   */
  private async applyCommitted(rd: Ready, from: number, to: number): Promise<void> {
    const snap = rd.snapshot;
    if (snap !== undefined || from < to) {
      await this.withApplyLock(async () => {
        if (snap !== undefined) {
          // The store itself was installed from the stream before Raft saw the MsgSnap.
          const data = packr.unpack(snap.data) as SnapshotData;
          this.setMembers(data.members);
          this.alarmList = data.alarms ?? [];
          this.snapIndex = snap.metadata.index;
          if (snap.metadata.index > this.applied) this.applied = snap.metadata.index;
        }
        for (let i = from; i < to; i++) this.applyEntry(rd.committedEntries[i]!);
      });
    }
    this.notifyApplied();
  }

  private sendMessages(msgs: readonly Message[]): void {
    if (msgs.length === 0) return;
    if (this.role === Role.Leader) this.checkHeartbeats(msgs);
    const snaps = msgs.filter((m) => m.type === MessageType.Snap);
    this.transport.send(snaps.length === 0 ? msgs : msgs.filter((m) => m.type !== MessageType.Snap));
    for (const m of snaps) this.sendSnapshot(m);
  }

  /** etcd's raftNode.processMessages: a heartbeat to a follower more than twice the interval after the last one means this loop was held up. */
  private checkHeartbeats(msgs: readonly Message[]): void {
    for (const m of msgs) {
      if (m.type !== MessageType.Heartbeat) continue;
      const exceeded = this.heartbeats.observe(m.to, performance.now());
      if (exceeded <= 0) continue;
      this.heartbeatSendFailures++;
      this.cfg.log('warn', 'leader failed to send out heartbeat on time; took too long, leader is overloaded likely from slow disk', {
        to: m.to.toString(16),
        'heartbeat-interval': goDuration(this.cfg.heartbeatMs),
        'expected-duration': goDuration(this.heartbeats.maxMs),
        'exceeded-duration': goDuration(exceeded),
      });
    }
  }

  private withApplyLock(fn: () => Promise<void>): Promise<void> {
    const run = this.applyLock.then(fn);
    this.applyLock = run.catch(() => {});
    return run;
  }

  /**
   * etcd's triggerSnapshot: every snapshotCount applied entries, snapshot and compact the log. The
   * snapshot is cut here, at the applied index, and saved in the background, as etcd saves its own
   * in a goroutine beside the raft loop: the store's sync, the snapshot file and the release of old
   * segments took 5-38 ms (median about 10) every 2-3 s per member under 16x16 puts, all of it
   * holding the loop. Nothing waits for it: until it is durable the WAL still holds every entry.
   */
  private maybeSnapshot(): void {
    if (this.snapshotting !== undefined || this.restoring || this.stopped) return;
    const count = this.cfg.snapshotCount ?? DEFAULT_SNAPSHOT_COUNT;
    // A leader writing behind applies entries before its log holds them, or holds the commit
    // index that committed them: a snapshot past either would restart it with applied beyond
    // commit. Members and alarms are taken as they are now, perhaps a few entries later than
    // that; replaying those entries over them changes nothing (each sets what it names), unless
    // one changed the configuration, so a snapshot waits until the last change is durable.
    const index = Math.min(this.applied, this.storage.lastIndex(), this.storage.getHardState().commit);
    if (index - this.snapIndex <= count || index < this.confIndex) return;
    const data = packr.pack({ members: this.members(), alarms: this.alarms() } satisfies SnapshotData);
    const snap = this.storage.createSnapshot(index, this.rn.status().confState, data);
    if (isStorageError(snap)) {
      this.cfg.log('warn', 'snapshot not taken', { index, error: String(snap) });
      return;
    }
    this.snapshotting = this.saveSnapshot(snap)
      .catch((err: unknown) => {
        if (err instanceof WalInvalidBatchError) this.cfg.log('warn', 'snapshot not saved', { index, error: err.message });
        else this.fail('saving a snapshot failed; stopping', err);
      })
      .finally(() => (this.snapshotting = undefined));
  }

  private async saveSnapshot(snap: Snapshot): Promise<void> {
    const index = snap.metadata.index;
    const started = performance.now();
    // The store must be durable through `index` before the WAL may forget the entries behind it.
    await this.sm.store.backend.sync();
    const synced = performance.now();
    await this.wal.saveSnapshot(snap);
    const keep = this.cfg.snapshotCatchUpEntries ?? SNAPSHOT_CATCHUP_ENTRIES;
    if (index - keep > this.storage.firstIndex()) this.storage.compact(index - keep);
    // A snapshot from the leader may have moved it further meanwhile.
    if (index > this.snapIndex) this.snapIndex = index;
    const took = (ms: number): string => `${ms.toFixed(1)}ms`;
    this.cfg.log('info', 'saved snapshot', { index, 'store-sync': took(synced - started), took: took(performance.now() - started) });
  }

  /** A follower needs the store: stream it beside the MsgSnap, then tell Raft how it went. */
  private sendSnapshot(m: Message): void {
    void (async () => {
      const { chunks } = await this.sm.snapshot();
      await this.transport.sendSnapshot(m.to, m, chunks);
    })().then(
      () => {
        this.snapshotsSent++;
        this.rn.reportSnapshot(m.to, true);
        this.kick();
      },
      (err: unknown) => {
        this.cfg.log('warn', 'sending snapshot failed', { to: m.to.toString(16), error: String(err) });
        this.rn.reportSnapshot(m.to, false);
        this.kick();
      },
    );
  }

  /**
   * The leader's store arrived with its MsgSnap: install it unless this member is already past it
   * (a store may only move forward), then let Raft take the snapshot.
   */
  private async installSnapshot(m: Message, data: AsyncIterable<Buffer>): Promise<void> {
    if (m.type !== MessageType.Snap) throw new Error(`expected MsgSnap, got ${m.type}`);
    await this.withApplyLock(async () => {
      this.restoring = true;
      try {
        // Our own snapshot's store sync must not run into the store being replaced.
        await this.snapshotting;
        if (m.snapshot.metadata.index > this.rn.status().commit) {
          if (await this.sm.restore(data, { onlyForward: true })) {
            this.snapshotsInstalled++;
            this.cfg.log('info', 'installed snapshot from leader', { index: m.snapshot.metadata.index, 'consistent-index': this.sm.consistentIndex });
          }
        } else {
          for await (const _ of data) {
            // drain: Raft has this already
          }
        }
      } finally {
        this.restoring = false;
      }
    });
    this.receive([m]);
  }

  private onSoftState(role: Role, lead: NodeId): void {
    if (lead !== this.lead) {
      this.leaderChanges++;
      this.cfg.log('info', 'leader changed', { leader: lead.toString(16), term: this.rn.status().term });
    }
    const wasLeader = this.role === Role.Leader;
    this.role = role;
    this.lead = lead;
    if (lead !== 0) this.settleLeaderWaiters();
    if (role === Role.Leader && !wasLeader) {
      this.heartbeats.reset();
      this.sm.lessor.promote(this.cfg.electionMs);
    }
    else if (role !== Role.Leader && wasLeader) this.sm.lessor.demote();
  }

  private applyEntry(e: Entry): void {
    if (e.type === EntryType.ConfChange) {
      const cc = decodeConfChange(e.data);
      if (!(cc instanceof Error)) this.applyConfChange(cc);
      this.confIndex = e.index;
      this.sm.applyEmpty(e.index);
    } else if (e.data.length === 0) {
      this.sm.applyEmpty(e.index);
    } else {
      const p = decodeProposal(e.data);
      if (p instanceof Error) throw p;
      const start = performance.now();
      const result = this.applyProposal(e.index, p);
      const w = this.proposedHere(p) ? this.waiters.get(p.i) : undefined;
      // etcd warns of a slow apply on every member, whoever proposed it.
      this.slow.warnIfSlow(performance.now() - start, '', () => (p.r !== undefined ? describeRequest(p.r) : ''), () => describeResult(result), result.kind === 'error' ? result.error : undefined);
      if (w !== undefined) {
        w.trace?.step('process raft request', start);
        this.waiters.delete(p.i);
        if (result.kind === 'ok') {
          if (result.physical !== undefined) result.physical.then(() => w.resolve(result.response), (err: Error) => w.reject(err));
          else w.resolve(result.response);
        } else if (result.kind === 'error') w.reject(result.error);
        else w.reject(errTimeout());
      }
    }
    this.applied = e.index;
  }

  /** Proposed by this process (not by another member, nor by this member before a restart). */
  private proposedHere(ref: ProposerRef): boolean {
    return ref.o === this.id && ref.g === this.incarnation;
  }

  private applyProposal(index: number, p: Proposal): ApplyResult {
    if (p.a !== undefined) return this.applyAttributes(index, p.a);
    if (p.u !== undefined) return this.applyUpdate(index, p.u);
    if (p.al !== undefined) return this.applyAlarm(index, p.al);
    const req = p.r ?? {};
    // Decided in log order, so every member refuses the same entries.
    if (this.refusedForSpace(req)) {
      this.sm.applyEmpty(index);
      const e = errNoSpace();
      return { kind: 'error', error: new MvccError('ErrNoSpace', e.code, e.message) };
    }
    return this.sm.apply(index, req);
  }

  private applyAlarm(index: number, al: NonNullable<Proposal['al']>): ApplyResult {
    const same = (a: AlarmMember): boolean => a.memberID === al.memberID && a.alarm === al.alarm;
    if (al.action === 'activate') {
      if (al.alarm !== AlarmType.NONE && !this.alarmList.some(same)) this.alarmList.push({ memberID: al.memberID, alarm: al.alarm });
    } else {
      this.alarmList = this.alarmList.filter((a) => !same(a));
    }
    this.sm.applyEmpty(index);
    return { kind: 'ok', response: { header: { revision: this.sm.store.rev } } };
  }

  private applyConfChange(cc: ConfChange): void {
    this.rn.applyConfChange(cc);
    const ctx = cc.context !== undefined && cc.context.length > 0 ? (packr.unpack(cc.context) as ConfContext) : undefined;
    const known = this.infos.get(cc.nodeId);
    switch (cc.type) {
      case ConfChangeType.AddNode:
      case ConfChangeType.AddLearnerNode: {
        const isLearner = cc.type === ConfChangeType.AddLearnerNode;
        const info: MemberInfo = {
          id: BigInt(cc.nodeId),
          name: known?.name ?? ctx?.member?.name ?? '',
          peerURLs: ctx?.member?.peerURLs ?? known?.peerURLs ?? [],
          clientURLs: known?.clientURLs ?? [],
          isLearner,
        };
        this.infos.set(cc.nodeId, info);
        if (cc.nodeId !== this.id && info.peerURLs.length > 0) this.transport.setPeer(cc.nodeId, info.peerURLs[0]!);
        break;
      }
      case ConfChangeType.RemoveNode:
        this.infos.delete(cc.nodeId);
        if (cc.nodeId === this.id) {
          this.cfg.log('warn', 'the member has been permanently removed from the cluster');
          this.removed = true;
        } else this.transport.removePeer(cc.nodeId);
        break;
    }
    if (ctx !== undefined && this.proposedHere(ctx)) {
      const w = this.waiters.get(ctx.i);
      if (w !== undefined) {
        this.waiters.delete(ctx.i);
        w.resolve({ header: { revision: this.sm.store.rev } });
      }
    }
  }

  private applyUpdate(index: number, u: NonNullable<Proposal['u']>): ApplyResult {
    const id = Number(u.id);
    const known = this.infos.get(id);
    if (known !== undefined) {
      this.infos.set(id, { ...known, peerURLs: u.peerURLs });
      if (id !== this.id) this.transport.setPeer(id, u.peerURLs[0]!);
    }
    this.sm.applyEmpty(index);
    return { kind: 'ok', response: { header: { revision: this.sm.store.rev } } };
  }

  private applyAttributes(index: number, a: NonNullable<Proposal['a']>): ApplyResult {
    const id = Number(a.id);
    const known = this.infos.get(id);
    if (known !== undefined) this.infos.set(id, { ...known, name: a.name, clientURLs: id === this.id ? [...this.cfg.clientURLs] : a.clientURLs });
    this.sm.applyEmpty(index);
    return { kind: 'ok', response: { header: { revision: this.sm.store.rev } } };
  }

  /** etcd's publish: once there is a leader, tell the cluster this member's name and client URLs. */
  private publish(): void {
    const attempt = (): void => {
      if (this.stopped) return;
      this.proposeRaw({ a: { id: this.memberId, name: this.name, clientURLs: [...this.cfg.clientURLs] } }).catch(() => {
        const t = setTimeout(attempt, this.cfg.electionMs);
        t.unref();
      });
    };
    attempt();
  }

  private serveReads(): void {
    for (const [key, r] of this.reads) {
      if (r.index >= 0 && r.index <= this.applied) {
        this.reads.delete(key);
        r.resolve();
      }
    }
  }

  // ------------------------------------------------------------------ leases on the leader

  private revokeExpired(): void {
    if (!this.isLeader || this.stopped) return;
    for (const id of this.sm.lessor.expired(LEASE_REVOKES_PER_CHECK)) {
      this.propose({ leaseRevoke: { ID: id } }).catch(() => {});
    }
  }

  private checkpointLeases(): void {
    if (!this.isLeader || this.stopped) return;
    const cps = this.sm.lessor.checkpoints(1000);
    if (cps.length > 0) this.propose({ leaseCheckpoint: { checkpoints: cps } }).catch(() => {});
  }

  // ------------------------------------------------------------------ forwarding

  private async toLeader(req: { op: string; [k: string]: unknown }): Promise<unknown> {
    if (this.lead === 0) throw errNoLeader();
    const res = (await this.transport.forward(this.lead, req).catch(() => {
      throw errTimeout();
    })) as { error?: { code: string; message: string } } | unknown;
    const e = (res as { error?: { code: string; message: string } } | null)?.error;
    if (e !== undefined && typeof e === 'object') {
      throw new MvccError('Forwarded', e.code as MvccError['code'], e.message);
    }
    return res;
  }

  private async handleForward(req: unknown): Promise<unknown> {
    const r = req as { op: string; id: bigint; keys?: boolean };
    try {
      if (r.op === 'keepalive') return await this.leaseKeepAlive(r.id);
      if (r.op === 'ttl') return await this.leaseTimeToLive(r.id, r.keys === true);
      if (r.op === 'promote') return (await this.promoteMember(r.id)).length;
      if (r.op === 'cluster') return { clusterId: this.clusterId, members: this.members() };
      throw new ServerError('INVALID_ARGUMENT', `unknown forwarded op ${r.op}`);
    } catch (err) {
      return { error: errorPayload(err) };
    }
  }
}

function txnHasPut(t: TxnRequest): boolean {
  return [...(t.success ?? []), ...(t.failure ?? [])].some((op) => op.requestPut !== undefined || (op.requestTxn !== undefined && txnHasPut(op.requestTxn)));
}

/**
 * The entry with its data copied out of whatever buffer it was cut from. Entries stay in the
 * in-memory log until a snapshot compacts them (up to snapshot-count of them), and a view pins its
 * whole buffer: a proposal is a slice of msgpackr's shared scratch buffer (it grows to hundreds of
 * KiB), a follower's entry a slice of the socket chunk it arrived in.
 */
export function detached(e: Entry): Entry {
  if (e.data.length === 0) return e;
  return { term: e.term, index: e.index, type: e.type, data: Buffer.from(e.data) };
}
