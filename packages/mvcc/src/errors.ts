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
  | 'INTERNAL'
  | 'PERMISSION_DENIED'
  | 'UNAUTHENTICATED'
  | 'UNKNOWN';

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

// etcd's auth errors (rpctypes.ErrGRPC*), same codes and messages.
export const errRootUserNotExist = define('ErrRootUserNotExist', 'FAILED_PRECONDITION', 'etcdserver: root user does not exist');
export const errRootRoleNotExist = define('ErrRootRoleNotExist', 'FAILED_PRECONDITION', 'etcdserver: root user does not have root role');
export const errUserAlreadyExist = define('ErrUserAlreadyExist', 'FAILED_PRECONDITION', 'etcdserver: user name already exists');
export const errUserEmpty = define('ErrUserEmpty', 'INVALID_ARGUMENT', 'etcdserver: user name is empty');
export const errUserNotFound = define('ErrUserNotFound', 'FAILED_PRECONDITION', 'etcdserver: user name not found');
export const errRoleAlreadyExist = define('ErrRoleAlreadyExist', 'FAILED_PRECONDITION', 'etcdserver: role name already exists');
export const errRoleNotFound = define('ErrRoleNotFound', 'FAILED_PRECONDITION', 'etcdserver: role name not found');
export const errRoleEmpty = define('ErrRoleEmpty', 'INVALID_ARGUMENT', 'etcdserver: role name is empty');
export const errAuthFailed = define('ErrAuthFailed', 'INVALID_ARGUMENT', 'etcdserver: authentication failed, invalid user ID or password');
export const errPermissionNotGiven = define('ErrPermissionNotGiven', 'INVALID_ARGUMENT', 'etcdserver: permission not given');
export const errPermissionDenied = define('ErrPermissionDenied', 'PERMISSION_DENIED', 'etcdserver: permission denied');
export const errRoleNotGranted = define('ErrRoleNotGranted', 'FAILED_PRECONDITION', 'etcdserver: role is not granted to the user');
export const errPermissionNotGranted = define('ErrPermissionNotGranted', 'FAILED_PRECONDITION', 'etcdserver: permission is not granted to the role');
export const errAuthNotEnabled = define('ErrAuthNotEnabled', 'FAILED_PRECONDITION', 'etcdserver: authentication is not enabled');
export const errInvalidAuthToken = define('ErrInvalidAuthToken', 'UNAUTHENTICATED', 'etcdserver: invalid auth token');
export const errInvalidAuthMgmt = define('ErrInvalidAuthMgmt', 'INVALID_ARGUMENT', 'etcdserver: invalid auth management');
export const errAuthOldRevision = define('ErrAuthOldRevision', 'INVALID_ARGUMENT', 'etcdserver: revision of auth store is old');
/**
 * etcd 3.4 has no gRPC mapping for this one: it reaches the client as UNKNOWN with the auth
 * store's own text (a no-password user, which only a client certificate may log in as).
 */
export const errNoPasswordUser = define('ErrNoPasswordUser', 'UNKNOWN', 'auth: authentication failed, password was given for no password user');

/**
 * etcd 3.4's Maintenance server (Hash, HashKV, Defragment, Snapshot) returns the auth store's error
 * unconverted: UNKNOWN with "auth: ..." text. The same error, as that RPC answers it.
 */
export function asUnconvertedAuthError(err: MvccError): MvccError {
  const text: Record<string, string> = {
    ErrUserEmpty: 'auth: user name is empty',
    ErrUserNotFound: 'auth: user not found',
    ErrPermissionDenied: 'auth: permission denied',
    ErrInvalidAuthToken: 'auth: invalid auth token',
    ErrAuthOldRevision: 'auth: revision in header is old',
  };
  const m = text[err.kind];
  return m === undefined ? err : new MvccError(err.kind, 'UNKNOWN', m);
}
