// Typed errors at the package boundary. Every error has a stable `code` so callers (the server,
// chaos checks) can branch without parsing messages.

export abstract class WalError extends Error {
  abstract readonly code: string;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A record that cannot be trusted where truncating it could drop acknowledged data. */
export class WalCorruptError extends WalError {
  readonly code = 'WAL_CORRUPT';
  constructor(
    readonly file: string,
    readonly offset: number,
    readonly reason: string,
  ) {
    super(`wal: corrupt record in ${file} at offset ${offset}: ${reason}`);
  }
}

/** Records that are each intact but do not form a Raft log (a gap, a missing segment, a lost snapshot). */
export class WalReplayError extends WalError {
  readonly code = 'WAL_REPLAY';
  constructor(
    readonly reason: string,
    readonly file?: string,
    readonly offset?: number,
  ) {
    super(`wal: cannot replay${file === undefined ? '' : ` ${file}${offset === undefined ? '' : ` at offset ${offset}`}`}: ${reason}`);
  }
}

export class WalNotFoundError extends WalError {
  readonly code = 'WAL_NOT_FOUND';
  constructor(readonly dir: string) {
    super(`wal: no write-ahead log in ${dir} (pass metadata to create one)`);
  }
}

export class WalLockedError extends WalError {
  readonly code = 'WAL_LOCKED';
  constructor(
    readonly dir: string,
    readonly pid: number,
  ) {
    super(`wal: data directory ${dir} is locked by process ${pid}`);
  }
}

/** ENOSPC on a write, preallocation or fsync. The log is poisoned afterwards. */
export class WalDiskFullError extends WalError {
  readonly code = 'WAL_DISK_FULL';
  constructor(
    readonly op: string,
    readonly file: string,
    cause: unknown,
  ) {
    super(`wal: disk full during ${op} of ${file}`, { cause });
  }
}

/** Any other I/O failure (EIO on fsync above all). The log is poisoned afterwards. */
export class WalIoError extends WalError {
  readonly code = 'WAL_IO';
  constructor(
    readonly op: string,
    readonly file: string,
    cause: unknown,
  ) {
    super(`wal: ${op} of ${file} failed: ${errnoOf(cause) ?? String(cause)}`, { cause });
  }
}

/**
 * After a failed write or fsync the bytes on disk are unknown (Linux may even drop the dirty pages
 * and report success on the next fsync), so nothing written later may be acknowledged.
 */
export class WalPoisonedError extends WalError {
  readonly code = 'WAL_POISONED';
  constructor(readonly first: WalError) {
    super(`wal: refusing writes after an earlier failure: ${first.message}`, { cause: first });
  }
}

export class WalClosedError extends WalError {
  readonly code = 'WAL_CLOSED';
  constructor() {
    super('wal: closed');
  }
}

/** A batch the log cannot hold: a record larger than a segment, or entries that do not extend the log. */
export class WalInvalidBatchError extends WalError {
  readonly code = 'WAL_INVALID_BATCH';
  constructor(reason: string) {
    super(`wal: invalid batch: ${reason}`);
  }
}

export class SnapshotCorruptError extends WalError {
  readonly code = 'SNAPSHOT_CORRUPT';
  constructor(
    readonly file: string,
    readonly reason: string,
  ) {
    super(`wal: corrupt snapshot file ${file}: ${reason}`);
  }
}

export function errnoOf(e: unknown): string | undefined {
  if (typeof e === 'object' && e !== null && 'code' in e && typeof (e as { code: unknown }).code === 'string') {
    return (e as { code: string }).code;
  }
  return undefined;
}

/** Wraps a raw fs error as the typed error the API promises. */
export function ioError(op: string, file: string, e: unknown): WalError {
  if (e instanceof WalError) return e;
  return errnoOf(e) === 'ENOSPC' ? new WalDiskFullError(op, file, e) : new WalIoError(op, file, e);
}
