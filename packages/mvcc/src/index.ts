export * from './types.js';
export * from './errors.js';
export { Backend, type BackendOptions } from './backend.js';
export { KvStore, type LeaseHooks, type StoreOptions, type TxnListener, COMPACTION_BATCH_LIMIT } from './store.js';
export { checkRange, checkPut, checkDelete, checkTxn, checkRequestOp, DEFAULT_MAX_TXN_OPS } from './validate.js';
export { toRangeEnd, latin1, type RangeEnd } from './treeindex.js';
