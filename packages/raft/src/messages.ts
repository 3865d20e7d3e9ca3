// Entries, persistent state and the messages Raft members exchange.
//
// Messages are a discriminated union on `type`, so a field exists only on the message kinds that
// carry it (a vote response has no entries, an append has no vote). The wire encoding belongs to
// the transport (packages/server); nothing here knows about bytes on a socket.

/** A member id. Zero means "none" (no leader, no vote), as in etcd. */
export type NodeId = number;
export const NONE: NodeId = 0;

export enum EntryType {
  Normal = 0,
  ConfChange = 1,
}

export interface Entry {
  readonly term: number;
  readonly index: number;
  readonly type: EntryType;
  /** Opaque to Raft. An empty Normal entry is the leader's no-op at the start of its term. */
  readonly data: Uint8Array;
}

/** What must be on disk before a message that depends on it leaves the node. */
export interface HardState {
  readonly term: number;
  readonly vote: NodeId;
  readonly commit: number;
}

export const EMPTY_HARD_STATE: HardState = Object.freeze({ term: 0, vote: NONE, commit: 0 });

export function hardStateEqual(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}

/** Membership: who votes and who only follows. */
export interface ConfState {
  readonly voters: readonly NodeId[];
  readonly learners: readonly NodeId[];
}

export const EMPTY_CONF_STATE: ConfState = Object.freeze({ voters: [], learners: [] });

export enum ConfChangeType {
  AddNode = 0,
  RemoveNode = 1,
  AddLearnerNode = 2,
}

/** One membership change: one member at a time, applied when its entry is applied. */
export interface ConfChange {
  readonly type: ConfChangeType;
  readonly nodeId: NodeId;
  /** Opaque to Raft (etcd puts the member's URLs here). */
  readonly context?: Uint8Array;
}

export interface SnapshotMetadata {
  readonly index: number;
  readonly term: number;
  readonly confState: ConfState;
}

export interface Snapshot {
  readonly metadata: SnapshotMetadata;
  /** The state machine's image at metadata.index; opaque to Raft. */
  readonly data: Uint8Array;
}

export const EMPTY_SNAPSHOT: Snapshot = Object.freeze({
  metadata: Object.freeze({ index: 0, term: 0, confState: EMPTY_CONF_STATE }),
  data: new Uint8Array(0),
});

export function isEmptySnapshot(s: Snapshot | undefined): boolean {
  return s === undefined || s.metadata.index === 0;
}

/** A linearizable read that the leader confirmed: safe to serve once `index` is applied. */
export interface ReadState {
  readonly index: number;
  readonly context: Uint8Array;
}

export enum MessageType {
  /** Leader -> follower: entries after (index, logTerm), and the leader's commit. */
  App = 'MsgApp',
  AppResp = 'MsgAppResp',
  Vote = 'MsgVote',
  VoteResp = 'MsgVoteResp',
  PreVote = 'MsgPreVote',
  PreVoteResp = 'MsgPreVoteResp',
  Heartbeat = 'MsgHeartbeat',
  HeartbeatResp = 'MsgHeartbeatResp',
  Snap = 'MsgSnap',
  /** Follower -> leader: a proposal forwarded to whoever leads. */
  Prop = 'MsgProp',
  ReadIndex = 'MsgReadIndex',
  ReadIndexResp = 'MsgReadIndexResp',
  /** Anyone -> leader: please hand leadership to `from`. */
  TransferLeader = 'MsgTransferLeader',
  /** Leader -> transferee: campaign now, without waiting for an election timeout. */
  TimeoutNow = 'MsgTimeoutNow',
}

interface Envelope {
  readonly from: NodeId;
  readonly to: NodeId;
  /** The sender's term; 0 only on messages that are forwarded without a term (Prop, ReadIndex). */
  readonly term: number;
}

export interface MsgApp extends Envelope {
  readonly type: MessageType.App;
  /** Index and term of the entry just before `entries`. */
  readonly index: number;
  readonly logTerm: number;
  readonly entries: readonly Entry[];
  readonly commit: number;
}

export interface MsgAppResp extends Envelope {
  readonly type: MessageType.AppResp;
  /** Accepted: the follower's log matches the leader's up to `index`. Rejected: the probed index. */
  readonly index: number;
  readonly reject: boolean;
  /** On reject: the follower's guess at the last index that might match, and that entry's term. */
  readonly rejectHint: number;
  readonly logTerm: number;
}

export interface MsgVote extends Envelope {
  readonly type: MessageType.Vote | MessageType.PreVote;
  /** The candidate's last log entry, to check that its log is at least as up to date. */
  readonly index: number;
  readonly logTerm: number;
  /** Set when a leader transfer asked for this election: bypasses the voters' leader lease. */
  readonly transfer: boolean;
}

export interface MsgVoteResp extends Envelope {
  readonly type: MessageType.VoteResp | MessageType.PreVoteResp;
  readonly reject: boolean;
}

export interface MsgHeartbeat extends Envelope {
  readonly type: MessageType.Heartbeat;
  /** min(follower's match, leader's commit): a follower must not commit what it may not have. */
  readonly commit: number;
  /** The newest ReadIndex round the leader is confirming; 0 for none. */
  readonly readRound: number;
}

export interface MsgHeartbeatResp extends Envelope {
  readonly type: MessageType.HeartbeatResp;
  readonly readRound: number;
}

export interface MsgSnap extends Envelope {
  readonly type: MessageType.Snap;
  readonly snapshot: Snapshot;
}

export interface MsgProp extends Envelope {
  readonly type: MessageType.Prop;
  readonly entries: readonly ProposedEntry[];
}

export interface MsgReadIndex extends Envelope {
  readonly type: MessageType.ReadIndex;
  readonly context: Uint8Array;
}

export interface MsgReadIndexResp extends Envelope {
  readonly type: MessageType.ReadIndexResp;
  readonly index: number;
  readonly context: Uint8Array;
}

export interface MsgTransferLeader extends Envelope {
  readonly type: MessageType.TransferLeader;
}

export interface MsgTimeoutNow extends Envelope {
  readonly type: MessageType.TimeoutNow;
}

export type Message =
  | MsgApp
  | MsgAppResp
  | MsgVote
  | MsgVoteResp
  | MsgHeartbeat
  | MsgHeartbeatResp
  | MsgSnap
  | MsgProp
  | MsgReadIndex
  | MsgReadIndexResp
  | MsgTransferLeader
  | MsgTimeoutNow;

/** An entry as a client proposes it: the leader assigns term and index. */
export interface ProposedEntry {
  readonly type: EntryType;
  readonly data: Uint8Array;
}

/** Bytes an entry counts for in size limits (message size, uncommitted size, apply batches). */
export function entrySize(e: { readonly data: Uint8Array }): number {
  // A fixed overhead for term, index and type keeps empty entries from being free.
  return e.data.byteLength + ENTRY_OVERHEAD_BYTES;
}
export const ENTRY_OVERHEAD_BYTES = 16;

export function entriesSize(es: readonly { readonly data: Uint8Array }[]): number {
  let n = 0;
  for (const e of es) n += entrySize(e);
  return n;
}
