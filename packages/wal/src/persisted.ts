// The proof that a save reached the disk. Only the WAL can make one, and only after the
// fdatasync that covers the batch returned, so a driver that takes a `Persisted` before sending
// Raft's messages cannot send on the strength of a write that might still be lost.
import type { HardState } from '@capstan/raft';

/** Not exported from the package: holding this symbol is what lets wal.ts mint tokens. */
export const MINT: unique symbol = Symbol('wal.persisted');

export class Persisted {
  readonly #brand = true;
  constructor(
    key: typeof MINT,
    /** Monotonic per WAL: the n-th durable batch since open. */
    readonly batch: number,
    /** The last index durable in the log after this batch (the snapshot's index if the log is empty after it). */
    readonly lastIndex: number,
    /** The hard state durable after this batch. */
    readonly hardState: HardState,
  ) {
    if (key !== MINT) throw new TypeError('Persisted is made by Wal.save only');
  }

  /** True for tokens made by a WAL (not structurally copied look-alikes). */
  static is(x: unknown): x is Persisted {
    return typeof x === 'object' && x !== null && #brand in x;
  }
}
