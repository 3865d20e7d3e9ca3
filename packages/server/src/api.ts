/**
 * The seam between the gRPC services (which only translate the wire) and the member (Raft, WAL,
 * apply loop). Everything a client request needs from the member is here; errors cross it as
 * ServerError or mvcc's MvccError, both carrying the gRPC code and etcd's message.
 */
import type { ApplyRequest, ApplyResponse, GrpcCode, LeaseTimeToLiveResponse, StateMachine } from '@capstan/mvcc';
import type { SlowRequests } from './slow.js';
import type { RequestTrace } from './trace.js';

export class ServerError extends Error {
  override readonly name = 'ServerError';
  constructor(
    readonly code: GrpcCode,
    message: string,
  ) {
    super(message);
  }
}

function define(code: GrpcCode, message: string): () => ServerError {
  return () => new ServerError(code, message);
}

// etcd's rpctypes, same codes and messages.
export const errNoLeader = define('UNAVAILABLE', 'etcdserver: no leader');
export const errTimeout = define('UNAVAILABLE', 'etcdserver: request timed out');
export const errTimeoutDueToLeaderFail = define('UNAVAILABLE', 'etcdserver: request timed out, possibly due to previous leader failure');
export const errLeaderChanged = define('UNAVAILABLE', 'etcdserver: leader changed');
export const errStopped = define('UNAVAILABLE', 'etcdserver: server stopped');
export const errTooManyRequests = define('RESOURCE_EXHAUSTED', 'etcdserver: too many requests');
export const errNoSpace = define('RESOURCE_EXHAUSTED', 'etcdserver: mvcc: database space exceeded');
export const errRequestTooLarge = define('INVALID_ARGUMENT', 'etcdserver: request is too large');
export const errMemberNotFound = define('NOT_FOUND', 'etcdserver: member not found');
export const errMemberExist = define('FAILED_PRECONDITION', 'etcdserver: member ID already exist');
export const errPeerURLExist = define('FAILED_PRECONDITION', 'etcdserver: Peer URLs already exists');
export const errMemberNotLearner = define('FAILED_PRECONDITION', 'etcdserver: can only promote a learner member');
export const errLearnerNotReady = define('FAILED_PRECONDITION', 'etcdserver: can only promote a learner member which is in sync with leader');
export const errUnhealthy = define('UNAVAILABLE', 'etcdserver: unhealthy cluster');
export const errNotLeader = define('FAILED_PRECONDITION', 'etcdserver: not leader');
export const errBadLeaderTransferee = define('FAILED_PRECONDITION', 'etcdserver: bad leader transferee');
export const errNotCapable = define('UNAVAILABLE', 'etcdserver: not capable');

export interface MemberInfo {
  readonly id: bigint;
  readonly name: string;
  readonly peerURLs: readonly string[];
  readonly clientURLs: readonly string[];
  readonly isLearner: boolean;
}

export interface MemberStatus {
  readonly version: string;
  readonly dbSize: number;
  readonly dbSizeInUse: number;
  readonly leader: bigint;
  readonly raftIndex: number;
  readonly raftTerm: number;
  readonly raftAppliedIndex: number;
  readonly errors: readonly string[];
  readonly isLearner: boolean;
}

export const AlarmType = { NONE: 0, NOSPACE: 1, CORRUPT: 2 } as const;
export type AlarmType = (typeof AlarmType)[keyof typeof AlarmType];

export interface AlarmMember {
  readonly memberID: bigint;
  readonly alarm: AlarmType;
}

export interface Member {
  readonly clusterId: bigint;
  readonly memberId: bigint;
  readonly name: string;
  /** The current Raft term, for response headers. */
  term(): number;
  readonly sm: StateMachine;
  readonly limits: { readonly maxRequestBytes: number; readonly maxTxnOps: number };

  /**
   * Proposes through Raft; resolves with the response once applied here; rejects with ServerError / MvccError.
   * `trace`, if given, is marked when the entry is applied here (etcd's 'process raft request').
   */
  propose(req: ApplyRequest, trace?: RequestTrace): Promise<ApplyResponse>;
  /** etcd's slow-request warnings, at --experimental-warning-apply-duration. */
  readonly slow: SlowRequests;
  /** Resolves once this member has applied everything committed before the call (ReadIndex). */
  readBarrier(): Promise<void>;
  /** Resolves once this member has applied entry `index` (a token issued there is known here). */
  waitApplied(index: number): Promise<void>;

  /** Keepalive: answered by the leader (forwarded if this member is not it); the TTL, 0 when the lease is gone. */
  leaseKeepAlive(id: bigint): Promise<number>;
  leaseTimeToLive(id: bigint, keys: boolean): Promise<LeaseTimeToLiveResponse>;
  leaseLeases(): Promise<bigint[]>;

  members(): MemberInfo[];
  addMember(peerURLs: string[], isLearner: boolean): Promise<{ member: MemberInfo; members: MemberInfo[] }>;
  removeMember(id: bigint): Promise<MemberInfo[]>;
  updateMember(id: bigint, peerURLs: string[]): Promise<MemberInfo[]>;
  promoteMember(id: bigint): Promise<MemberInfo[]>;

  status(): Promise<MemberStatus>;
  alarms(): AlarmMember[];
  /** Activate / deactivate (disarm) through Raft; resolves with the alarms after. */
  alarm(action: 'activate' | 'deactivate', memberID: bigint, alarm: AlarmType): Promise<AlarmMember[]>;
  defragment(): Promise<void>;
  moveLeader(target: bigint): Promise<void>;
  /** The whole backend as a stream (Maintenance.Snapshot). */
  snapshot(): Promise<AsyncIterable<Buffer>>;
}
