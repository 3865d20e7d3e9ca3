export * from './types.js';
export * from './errors.js';
export { Backend, type BackendOptions } from './backend.js';
export { DiskSize } from './disksize.js';
export { KvStore, type LeaseHooks, type StoreOptions, type TxnListener, COMPACTION_BATCH_LIMIT } from './store.js';
export { checkRange, checkPut, checkDelete, checkTxn, checkRequestOp, DEFAULT_MAX_TXN_OPS } from './validate.js';
export { toRangeEnd, latin1, type RangeEnd } from './treeindex.js';
export { StateMachine, DEFAULT_MIN_LEASE_TTL, type ApplyResult, type StateMachineOptions } from './apply.js';
export {
  AuthStore,
  hashPassword,
  NO_USER,
  ROOT_USER,
  ROOT_ROLE,
  DEFAULT_BCRYPT_COST,
  MIN_BCRYPT_COST,
  MAX_BCRYPT_COST,
  DEFAULT_TOKEN_TTL_MS,
  type AuthInfo,
  type AuthStoreOptions,
  type User,
  type Role,
} from './auth.js';
export { Lessor, MAX_LEASE_TTL, type Lease, type LessorOptions } from './lessor.js';
export { encodeSnapshot, decodeSnapshot, SNAPSHOT_CHUNK_BYTES } from './snapshot.js';
export * from './watch.js';
