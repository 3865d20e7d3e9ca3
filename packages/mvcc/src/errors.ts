/**
 * Errors as etcd reports them. Each carries the gRPC status code name and the exact message etcd's
 * v3rpc layer sends, so the server maps an MvccError onto a gRPC status 1:1 without a table of its
 * own. `message` is the wire message; `kind` names the etcd error variable it stands for.
 */
export type GrpcCode =
  | 'INVALID_ARGUMENT'
  | 'NOT_FOUND'
  | 'FAILED_PRECONDITION'
  | 'OUT_OF_RANGE'
  | 'RESOURCE_EXHAUSTED'
  | 'UNAVAILABLE'
  | 'INTERNAL';

export class MvccError extends Error {
  override readonly name = 'MvccError';
  constructor(
    readonly kind: string,
    readonly code: GrpcCode,
    message: string,
  ) {
    super(message);
  }
}

function define(kind: string, code: GrpcCode, message: string): () => MvccError {
  return () => new MvccError(kind, code, message);
}

/** etcd's mvcc errors travel prefixed with "etcdserver: " (rpctypes.ErrGRPCCompacted and friends). */
export const errCompacted = define('ErrCompacted', 'OUT_OF_RANGE', 'etcdserver: mvcc: required revision has been compacted');
export const errFutureRev = define('ErrFutureRev', 'OUT_OF_RANGE', 'etcdserver: mvcc: required revision is a future revision');
export const errEmptyKey = define('ErrEmptyKey', 'INVALID_ARGUMENT', 'etcdserver: key is not provided');
export const errKeyNotFound = define('ErrKeyNotFound', 'INVALID_ARGUMENT', 'etcdserver: key not found');
export const errValueProvided = define('ErrValueProvided', 'INVALID_ARGUMENT', 'etcdserver: value is provided');
export const errLeaseProvided = define('ErrLeaseProvided', 'INVALID_ARGUMENT', 'etcdserver: lease is provided');
export const errTooManyOps = define('ErrTooManyOps', 'INVALID_ARGUMENT', 'etcdserver: too many operations in txn request');
export const errDuplicateKey = define('ErrDuplicateKey', 'INVALID_ARGUMENT', 'etcdserver: duplicate key given in txn request');
export const errLeaseNotFound = define('ErrLeaseNotFound', 'NOT_FOUND', 'etcdserver: requested lease not found');
export const errLeaseExists = define('ErrLeaseExist', 'FAILED_PRECONDITION', 'etcdserver: lease already exists');
export const errLeaseTTLTooLarge = define('ErrLeaseTTLTooLarge', 'OUT_OF_RANGE', 'etcdserver: too large lease TTL');
/** Not a gRPC error in etcd: the server forwards keepalives to the leader when it sees this. */
export const errNotPrimary = define('ErrNotPrimary', 'UNAVAILABLE', 'not a primary lessor');
/** Watch creation failures are reported in the created response's cancel_reason, not as a status. */
export const errWatcherDuplicateId = define('ErrWatcherDuplicateID', 'INVALID_ARGUMENT', 'mvcc: duplicate watch ID provided on the WatchStream');
export const errEmptyWatcherRange = define('ErrEmptyWatcherRange', 'INVALID_ARGUMENT', 'mvcc: watcher range is empty');
export const errClosed = define('ErrClosed', 'UNAVAILABLE', 'mvcc: database closed');
export const errCorrupt = (what: string): MvccError => new MvccError('ErrCorrupt', 'INTERNAL', `mvcc: corrupt store: ${what}`);
export const errSnapshot = (what: string): MvccError => new MvccError('ErrSnapshot', 'INVALID_ARGUMENT', `mvcc: bad snapshot: ${what}`);
export const errInvalidSortOption = define('ErrInvalidSortOption', 'INVALID_ARGUMENT', 'etcdserver: invalid sort option');
export const errRequestTooLarge = define('ErrRequestTooLarge', 'INVALID_ARGUMENT', 'etcdserver: request is too large');
