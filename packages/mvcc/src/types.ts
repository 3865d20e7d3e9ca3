/**
 * Request and response shapes, field for field as etcd's etcdserverpb / mvccpb messages (camelCase),
 * so the server maps gRPC messages onto them by renaming nothing. int64 revisions, versions and
 * counts are numbers (exact up to 2^53); lease IDs are bigint because etcd's are full int64 values.
 * Enums keep the proto's numbers.
 */

export interface KeyValue {
  key: Buffer;
  createRevision: number;
  modRevision: number;
  version: number;
  value: Buffer;
  lease: bigint;
}

/** The server fills cluster_id, member_id and raft_term; this layer knows only the revision. */
export interface ResponseHeader {
  revision: number;
}

export const SortOrder = { NONE: 0, ASCEND: 1, DESCEND: 2 } as const;
export type SortOrder = (typeof SortOrder)[keyof typeof SortOrder];
export const SortTarget = { KEY: 0, VERSION: 1, CREATE: 2, MOD: 3, VALUE: 4 } as const;
export type SortTarget = (typeof SortTarget)[keyof typeof SortTarget];

export interface RangeRequest {
  key: Uint8Array;
  rangeEnd?: Uint8Array | undefined;
  limit?: number | undefined;
  revision?: number | undefined;
  sortOrder?: SortOrder | undefined;
  sortTarget?: SortTarget | undefined;
  /** Meaningful only to the server (ReadIndex or not); ignored here. */
  serializable?: boolean | undefined;
  keysOnly?: boolean | undefined;
  countOnly?: boolean | undefined;
  minModRevision?: number | undefined;
  maxModRevision?: number | undefined;
  minCreateRevision?: number | undefined;
  maxCreateRevision?: number | undefined;
}

export interface RangeResponse {
  header: ResponseHeader;
  kvs: KeyValue[];
  more: boolean;
  count: number;
}

export interface PutRequest {
  key: Uint8Array;
  value?: Uint8Array | undefined;
  lease?: bigint | undefined;
  prevKv?: boolean | undefined;
  ignoreValue?: boolean | undefined;
  ignoreLease?: boolean | undefined;
}

export interface PutResponse {
  header: ResponseHeader;
  prevKv?: KeyValue | undefined;
}

export interface DeleteRangeRequest {
  key: Uint8Array;
  rangeEnd?: Uint8Array | undefined;
  prevKv?: boolean | undefined;
}

export interface DeleteRangeResponse {
  header: ResponseHeader;
  deleted: number;
  prevKvs: KeyValue[];
}

export const CompareResult = { EQUAL: 0, GREATER: 1, LESS: 2, NOT_EQUAL: 3 } as const;
export type CompareResult = (typeof CompareResult)[keyof typeof CompareResult];
export const CompareTarget = { VERSION: 0, CREATE: 1, MOD: 2, VALUE: 3, LEASE: 4 } as const;
export type CompareTarget = (typeof CompareTarget)[keyof typeof CompareTarget];

/** The proto's target_union oneof flattened: the field matching `target` is read, as etcd does. */
export interface Compare {
  result: CompareResult;
  target: CompareTarget;
  key: Uint8Array;
  version?: number | undefined;
  createRevision?: number | undefined;
  modRevision?: number | undefined;
  value?: Uint8Array | undefined;
  lease?: bigint | undefined;
  rangeEnd?: Uint8Array | undefined;
}

/** The proto's request oneof: exactly one field set (none set is rejected as etcd does). */
export interface RequestOp {
  requestRange?: RangeRequest | undefined;
  requestPut?: PutRequest | undefined;
  requestDeleteRange?: DeleteRangeRequest | undefined;
  requestTxn?: TxnRequest | undefined;
}

export interface ResponseOp {
  responseRange?: RangeResponse;
  responsePut?: PutResponse;
  responseDeleteRange?: DeleteRangeResponse;
  responseTxn?: TxnResponse;
}

export interface TxnRequest {
  compare?: Compare[] | undefined;
  success?: RequestOp[] | undefined;
  failure?: RequestOp[] | undefined;
}

export interface TxnResponse {
  header: ResponseHeader;
  succeeded: boolean;
  responses: ResponseOp[];
}

export interface CompactionRequest {
  revision: number;
  /** The server waits for `physicalDone` before answering when set, as etcd does. */
  physical?: boolean | undefined;
}

export interface CompactionResponse {
  header: ResponseHeader;
}

export interface HashKVResponse {
  header: ResponseHeader;
  hash: number;
  compactRevision: number;
}

export interface LeaseGrantRequest {
  TTL: number;
  /** Must be non-zero when applied: etcd's server picks the ID before proposing (see LeaseIdGenerator). */
  ID: bigint;
}

export interface LeaseGrantResponse {
  header: ResponseHeader;
  ID: bigint;
  TTL: number;
  error: string;
}

export interface LeaseRevokeRequest {
  ID: bigint;
}

export interface LeaseRevokeResponse {
  header: ResponseHeader;
}

export interface LeaseCheckpoint {
  ID: bigint;
  remaining_TTL: number;
}

export interface LeaseCheckpointRequest {
  checkpoints: LeaseCheckpoint[];
}

export interface LeaseCheckpointResponse {
  header: ResponseHeader;
}

export interface LeaseKeepAliveResponse {
  header: ResponseHeader;
  ID: bigint;
  /** 0 when the lease does not exist, as etcd's LeaseKeepAlive answers. */
  TTL: number;
}

export interface LeaseTimeToLiveRequest {
  ID: bigint;
  keys?: boolean | undefined;
}

export interface LeaseTimeToLiveResponse {
  header: ResponseHeader;
  ID: bigint;
  /** -1 when the lease does not exist, as etcd's LeaseTimeToLive answers. */
  TTL: number;
  grantedTTL: number;
  keys: Buffer[];
}

export interface LeaseStatus {
  ID: bigint;
}

export interface LeaseLeasesResponse {
  header: ResponseHeader;
  leases: LeaseStatus[];
}

/** etcd's authpb.Permission.Type. */
export const PermissionType = { READ: 0, WRITE: 1, READWRITE: 2 } as const;
export type PermissionType = (typeof PermissionType)[keyof typeof PermissionType];

/** etcd's authpb.Permission: `rangeEnd` empty for one key, `\0` for every key from `key` on. */
export interface Permission {
  permType: PermissionType;
  key: Buffer;
  rangeEnd: Buffer;
}

/**
 * Who sent a request and at which auth revision their token was checked (etcd's RequestHeader
 * username and auth_revision). An entry without a header was proposed by the member itself (lease
 * expiry, auto compaction) and is trusted, as etcd's WithRoot.
 */
export interface AuthHeader {
  username: string;
  authRevision: number;
}

/**
 * Auth requests as they travel through the log: passwords only as bcrypt hashes (the server hashes
 * before proposing, as etcd 3.5 does), tokens as the random prefix the proposer picked.
 */
export interface AuthUserAddRequest {
  name: string;
  /** bcrypt hash; absent for a no-password user. */
  hashedPassword?: string | undefined;
  noPassword?: boolean | undefined;
}

export interface AuthenticateRequest {
  name: string;
  /** The token is `${simpleToken}.${index of this entry}`. */
  simpleToken: string;
}

export interface AuthResponse {
  header: ResponseHeader;
}

export interface AuthenticateResponse {
  header: ResponseHeader;
  token: string;
}

/** etcd's InternalRaftRequest, limited to what this state machine applies. Exactly one field set besides `header`. */
export interface ApplyRequest {
  header?: AuthHeader | undefined;
  range?: RangeRequest | undefined;
  put?: PutRequest | undefined;
  deleteRange?: DeleteRangeRequest | undefined;
  txn?: TxnRequest | undefined;
  compaction?: CompactionRequest | undefined;
  leaseGrant?: LeaseGrantRequest | undefined;
  leaseRevoke?: LeaseRevokeRequest | undefined;
  leaseCheckpoint?: LeaseCheckpointRequest | undefined;
  authEnable?: Record<string, never> | undefined;
  authDisable?: Record<string, never> | undefined;
  authenticate?: AuthenticateRequest | undefined;
  authUserAdd?: AuthUserAddRequest | undefined;
  authUserDelete?: { name: string } | undefined;
  authUserChangePassword?: { name: string; hashedPassword: string } | undefined;
  authUserGrantRole?: { user: string; role: string } | undefined;
  authUserRevokeRole?: { name: string; role: string } | undefined;
  authRoleAdd?: { name: string } | undefined;
  authRoleDelete?: { role: string } | undefined;
  authRoleGrantPermission?: { name: string; perm: Permission } | undefined;
  authRoleRevokePermission?: { role: string; key: Buffer; rangeEnd: Buffer } | undefined;
}

export type ApplyResponse =
  | RangeResponse
  | PutResponse
  | DeleteRangeResponse
  | TxnResponse
  | CompactionResponse
  | LeaseGrantResponse
  | LeaseRevokeResponse
  | LeaseCheckpointResponse
  | AuthResponse
  | AuthenticateResponse;

export const EventType = { PUT: 0, DELETE: 1 } as const;
export type EventType = (typeof EventType)[keyof typeof EventType];

export interface Event {
  type: EventType;
  kv: KeyValue;
  prevKv?: KeyValue | undefined;
}

export const FilterType = { NOPUT: 0, NODELETE: 1 } as const;
export type FilterType = (typeof FilterType)[keyof typeof FilterType];

export interface WatchCreateRequest {
  key: Uint8Array;
  rangeEnd?: Uint8Array | undefined;
  startRevision?: number | undefined;
  progressNotify?: boolean | undefined;
  filters?: FilterType[] | undefined;
  prevKv?: boolean | undefined;
  watchId?: number | undefined;
  fragment?: boolean | undefined;
}

export interface WatchResponse {
  header: ResponseHeader;
  watchId: number;
  created: boolean;
  canceled: boolean;
  compactRevision: number;
  cancelReason: string;
  fragment: boolean;
  events: Event[];
}
