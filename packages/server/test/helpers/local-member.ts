/**
 * A `Member` over a real StateMachine in a directory, without Raft: a proposal is applied at once at
 * the next index. Only for testing the gRPC translation layer; the lessor is primary and a timer
 * proposes revokes for expired leases, as the leader does.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { errLeaseNotFound, MvccError, StateMachine, WatchHub, type ApplyRequest, type ApplyResponse, type LeaseTimeToLiveResponse } from '@capstan/mvcc';
import { addClientServices, GrpcServer, maxReceiveBytes, type ClientServicesOptions } from '../../src/grpc/index.js';
import { listenMux } from '../../src/listen.js';
import { HandledCounter } from '../../src/grpc/handled.js';
import { DEFAULT_WARNING_APPLY_MS, SlowRequests } from '../../src/slow.js';
import type { RequestTrace } from '../../src/trace.js';
import {
  AlarmType,
  errMemberNotFound,
  errMemberNotLearner,
  errNotLeader,
  type AlarmMember,
  type Member,
  type MemberInfo,
  type MemberStatus,
} from '../../src/api.js';

export interface LocalMemberOptions {
  maxRequestBytes?: number;
  maxTxnOps?: number;
  clusterId?: bigint;
  memberId?: bigint;
  /** Milliseconds between expired-lease checks; 0 turns them off. */
  expiryCheckMs?: number;
  /** --auth-token-ttl in milliseconds. */
  tokenTTLMs?: number;
  /** --experimental-warning-apply-duration in milliseconds. */
  warningApplyMs?: number;
}

export class LocalMember implements Member {
  readonly name = 'local';
  readonly clusterId: bigint;
  readonly memberId: bigint;
  readonly limits: { maxRequestBytes: number; maxTxnOps: number };
  private index: number;
  private memberList: MemberInfo[];
  private alarmList: AlarmMember[] = [];
  private readonly timer: NodeJS.Timeout | undefined;
  /** Every request proposed, for tests that check what reached the log. */
  readonly proposed: ApplyRequest[] = [];
  /** What the slow-request warnings logged. */
  readonly logged: Array<{ level: string; msg: string; fields: Record<string, unknown> }> = [];
  readonly slow: SlowRequests;
  barriers = 0;
  defrags = 0;
  /** Thrown by the next defragment(), to test errors that carry no gRPC code. */
  defragError: Error | undefined;

  private constructor(
    readonly sm: StateMachine,
    opts: LocalMemberOptions,
  ) {
    this.clusterId = opts.clusterId ?? 0xcdef0123456789abn;
    this.memberId = opts.memberId ?? 0x8e9e05c52164694dn;
    this.limits = { maxRequestBytes: opts.maxRequestBytes ?? 1.5 * 1024 * 1024, maxTxnOps: opts.maxTxnOps ?? 128 };
    this.index = sm.consistentIndex;
    this.slow = new SlowRequests(opts.warningApplyMs ?? DEFAULT_WARNING_APPLY_MS, (level, msg, fields) => this.logged.push({ level, msg, fields }));
    this.memberList = [{ id: this.memberId, name: this.name, peerURLs: ['http://127.0.0.1:2380'], clientURLs: ['http://127.0.0.1:2379'], isLearner: false }];
    sm.lessor.promote(0);
    const every = opts.expiryCheckMs ?? 100;
    if (every > 0) {
      this.timer = setInterval(() => this.revokeExpired(), every);
      this.timer.unref();
    }
  }

  static async open(dir: string, opts: LocalMemberOptions = {}): Promise<LocalMember> {
    const sm = await StateMachine.open(dir, { maxTxnOps: opts.maxTxnOps ?? 128, tokenTTLMs: opts.tokenTTLMs });
    return new LocalMember(sm, opts);
  }

  term(): number {
    return 7;
  }

  async propose(req: ApplyRequest, trace?: RequestTrace): Promise<ApplyResponse> {
    this.proposed.push(req);
    trace?.step('process raft request');
    const r = this.sm.apply(++this.index, req);
    if (r.kind === 'error') throw r.error;
    if (r.kind === 'skipped') throw new Error('entry skipped');
    if (req.compaction?.physical === true && r.physical !== undefined) await r.physical;
    return r.response;
  }

  async readBarrier(): Promise<void> {
    this.barriers++;
  }

  async waitApplied(index: number): Promise<void> {
    if (index > this.index) throw new Error(`entry ${index} is not applied (at ${this.index})`);
  }

  async leaseKeepAlive(id: bigint): Promise<number> {
    try {
      return this.sm.lessor.renew(id);
    } catch (err) {
      if (err instanceof MvccError && err.kind === errLeaseNotFound().kind) return 0;
      throw err;
    }
  }

  async leaseTimeToLive(id: bigint, keys: boolean): Promise<LeaseTimeToLiveResponse> {
    const t = this.sm.lessor.timeToLive(id, keys);
    return { header: { revision: this.sm.store.rev }, ...t };
  }

  async leaseLeases(): Promise<bigint[]> {
    return this.sm.lessor.leases();
  }

  members(): MemberInfo[] {
    return this.memberList;
  }

  async addMember(peerURLs: string[], isLearner: boolean): Promise<{ member: MemberInfo; members: MemberInfo[] }> {
    const member: MemberInfo = { id: randomBytes(8).readBigUInt64BE(), name: '', peerURLs, clientURLs: [], isLearner };
    this.memberList = [...this.memberList, member];
    return { member, members: this.memberList };
  }

  async removeMember(id: bigint): Promise<MemberInfo[]> {
    if (!this.memberList.some((m) => m.id === id)) throw errMemberNotFound();
    this.memberList = this.memberList.filter((m) => m.id !== id);
    return this.memberList;
  }

  async updateMember(id: bigint, peerURLs: string[]): Promise<MemberInfo[]> {
    const i = this.memberList.findIndex((m) => m.id === id);
    if (i < 0) throw errMemberNotFound();
    this.memberList = this.memberList.map((m) => (m.id === id ? { ...m, peerURLs } : m));
    return this.memberList;
  }

  async promoteMember(id: bigint): Promise<MemberInfo[]> {
    const m = this.memberList.find((x) => x.id === id);
    if (m === undefined) throw errMemberNotFound();
    if (!m.isLearner) throw errMemberNotLearner();
    this.memberList = this.memberList.map((x) => (x.id === id ? { ...x, isLearner: false } : x));
    return this.memberList;
  }

  async status(): Promise<MemberStatus> {
    return {
      version: '3.5.0',
      dbSize: 4096,
      dbSizeInUse: 2048,
      leader: this.memberId,
      raftIndex: this.index,
      raftTerm: this.term(),
      raftAppliedIndex: this.index,
      errors: [],
      isLearner: false,
    };
  }

  alarms(): AlarmMember[] {
    return this.alarmList;
  }

  async alarm(action: 'activate' | 'deactivate', memberID: bigint, alarm: AlarmType): Promise<AlarmMember[]> {
    const same = (a: AlarmMember): boolean => a.memberID === memberID && a.alarm === alarm;
    if (action === 'activate') {
      if (alarm !== AlarmType.NONE && !this.alarmList.some(same)) this.alarmList = [...this.alarmList, { memberID, alarm }];
    } else {
      this.alarmList = this.alarmList.filter((a) => !same(a));
    }
    return this.alarmList;
  }

  async defragment(): Promise<void> {
    const err = this.defragError;
    this.defragError = undefined;
    if (err !== undefined) throw err;
    this.defrags++;
  }

  async moveLeader(target: bigint): Promise<void> {
    if (target !== this.memberId) throw errNotLeader();
  }

  async snapshot(): Promise<AsyncIterable<Buffer>> {
    return (await this.sm.snapshot()).chunks;
  }

  async close(): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer);
    await this.sm.close();
  }

  private revokeExpired(): void {
    for (const ID of this.sm.lessor.expired(100)) {
      this.propose({ leaseRevoke: { ID } }).catch(() => undefined);
    }
  }
}

export interface LocalServer {
  member: LocalMember;
  hub: WatchHub;
  server: GrpcServer;
  /** What the server's calls ended with, as /metrics reports them. */
  handled: HandledCounter;
  /** Every call that ended with a status, in order, with its code. */
  calls: Array<[path: string, code: number]>;
  /** host:port on loopback. */
  addr: string;
  dir: string;
  /** What the services logged. */
  logs: Array<Record<string, unknown>>;
  stop(): Promise<void>;
}

/** A LocalMember in a temporary directory behind the client services, on a loopback port the OS picks. */
export async function serveLocal(opts: LocalMemberOptions & { services?: Omit<ClientServicesOptions, 'log'> } = {}): Promise<LocalServer> {
  const dir = await mkdtemp(join(tmpdir(), 'capstan-grpc-'));
  const member = await LocalMember.open(join(dir, 'db'), opts);
  const hub = new WatchHub(member.sm.store);
  const handled = new HandledCounter();
  const calls: Array<[string, number]> = [];
  const server = new GrpcServer({
    maxReceiveBytes: maxReceiveBytes(member.limits),
    onStatus: (path, type, code) => {
      calls.push([path, code]);
      handled.count(path, type, code);
    },
  });
  const logs: Array<Record<string, unknown>> = [];
  // As a member listens.
  server.setFastMethods(addClientServices(server, member, hub, { ...opts.services, log: (r) => logs.push(r) }));
  const mux = await listenMux(['http://127.0.0.1:0'], { grpc: server });
  const port = mux.ports[0]!;
  return {
    member,
    hub,
    server,
    handled,
    calls,
    addr: `127.0.0.1:${port}`,
    dir,
    logs,
    stop: async () => {
      await mux.close();
      server.forceClose();
      hub.close();
      await member.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
