// The durable log as Raft reads it, and an in-memory implementation.
//
// Raft never writes to Storage: the driver persists what a Ready hands it (to the WAL, say) and
// then records it here, so Storage always holds exactly what is durable. Reads that cannot be
// answered come back as typed values, not exceptions, because "compacted" is an ordinary answer
// (the leader then sends a snapshot instead).

import {
  EMPTY_CONF_STATE,
  EMPTY_HARD_STATE,
  entrySize,
  type ConfState,
  type Entry,
  type HardState,
  type Snapshot,
} from './messages.js';

export enum StorageError {
  /** The index is at or before the snapshot: the entries are gone. */
  Compacted = 'compacted',
  /** The index is after the last entry. */
  Unavailable = 'unavailable',
  /** A snapshot is being made; ask again later. */
  SnapshotTemporarilyUnavailable = 'snapshot-temporarily-unavailable',
  /** A snapshot older than the one held was offered. */
  SnapshotOutOfDate = 'snapshot-out-of-date',
}

export function isStorageError(v: unknown): v is StorageError {
  return typeof v === 'string';
}

export interface InitialState {
  readonly hardState: HardState;
  readonly confState: ConfState;
}

export interface Storage {
  initialState(): InitialState;
  /** Entries in [lo, hi), at most maxBytes in size but always at least one if any exist. */
  entries(lo: number, hi: number, maxBytes: number): readonly Entry[] | StorageError;
  /** The term of the entry at i; i may be the snapshot's index. */
  term(i: number): number | StorageError;
  lastIndex(): number;
  /** The index of the first entry still available (snapshot index + 1). */
  firstIndex(): number;
  snapshot(): Snapshot | StorageError;
}

/** Entries in `ents` (sorted, contiguous) limited to maxBytes, keeping at least the first. */
export function limitSize(ents: readonly Entry[], maxBytes: number): readonly Entry[] {
  if (ents.length === 0) return ents;
  let size = entrySize(ents[0]!);
  let n = 1;
  for (; n < ents.length; n++) {
    size += entrySize(ents[n]!);
    if (size > maxBytes) break;
  }
  return n === ents.length ? ents : ents.slice(0, n);
}

/**
 * Storage kept in memory. The driver calls `append`, `setHardState` and `applySnapshot` after the
 * same data is durable elsewhere (or, in the simulator, this *is* the durable state: a crash keeps
 * it and loses everything the node held in memory).
 */
export class MemoryStorage implements Storage {
  private hardState: HardState = EMPTY_HARD_STATE;
  private snap: Snapshot;
  /** ents[0] is a dummy holding the snapshot's index and term. */
  private ents: Entry[];

  constructor(snapshot?: Snapshot) {
    this.snap = snapshot ?? {
      metadata: { index: 0, term: 0, confState: EMPTY_CONF_STATE },
      data: new Uint8Array(0),
    };
    this.ents = [dummy(this.snap.metadata.index, this.snap.metadata.term)];
  }

  initialState(): InitialState {
    return { hardState: this.hardState, confState: this.snap.metadata.confState };
  }

  getHardState(): HardState {
    return this.hardState;
  }

  setHardState(hs: HardState): void {
    this.hardState = hs;
  }

  private offset(): number {
    return this.ents[0]!.index;
  }

  entries(lo: number, hi: number, maxBytes: number): readonly Entry[] | StorageError {
    const off = this.offset();
    if (lo <= off) return StorageError.Compacted;
    if (hi > this.lastIndex() + 1) return StorageError.Unavailable;
    if (this.ents.length === 1) return StorageError.Unavailable;
    return limitSize(this.ents.slice(lo - off, hi - off), maxBytes);
  }

  term(i: number): number | StorageError {
    const off = this.offset();
    if (i < off) return StorageError.Compacted;
    if (i - off >= this.ents.length) return StorageError.Unavailable;
    return this.ents[i - off]!.term;
  }

  lastIndex(): number {
    return this.offset() + this.ents.length - 1;
  }

  firstIndex(): number {
    return this.offset() + 1;
  }

  snapshot(): Snapshot | StorageError {
    return this.snap;
  }

  /** Replaces everything with a snapshot received from the leader. */
  applySnapshot(snap: Snapshot): StorageError | undefined {
    if (this.snap.metadata.index >= snap.metadata.index) return StorageError.SnapshotOutOfDate;
    this.snap = snap;
    this.ents = [dummy(snap.metadata.index, snap.metadata.term)];
    return undefined;
  }

  /** Makes a snapshot of the state machine at `index` (which must be applied) for later use. */
  createSnapshot(index: number, confState: ConfState, data: Uint8Array): Snapshot | StorageError {
    if (index <= this.snap.metadata.index) return StorageError.SnapshotOutOfDate;
    const term = this.term(index);
    if (isStorageError(term)) return term;
    this.snap = { metadata: { index, term, confState }, data };
    return this.snap;
  }

  /** Drops the entries before `compactIndex`, which must not be after the last entry. */
  compact(compactIndex: number): StorageError | undefined {
    const off = this.offset();
    if (compactIndex <= off) return StorageError.Compacted;
    if (compactIndex > this.lastIndex()) return StorageError.Unavailable;
    const keep = this.ents.slice(compactIndex - off);
    keep[0] = dummy(compactIndex, keep[0]!.term);
    this.ents = keep;
    return undefined;
  }

  /**
   * Appends entries, replacing any existing entries at or after the first new index (a new
   * leader's log wins over what this node had but was never committed).
   */
  append(entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    const first = this.firstIndex();
    const last = entries[entries.length - 1]!.index;
    if (last < first) return; // all already compacted away
    const from = entries[0]!.index < first ? entries.slice(first - entries[0]!.index) : entries;
    const off = from[0]!.index - this.offset();
    if (off > this.ents.length) {
      throw new Error(`raft storage: missing log entries [last: ${this.lastIndex()}, append at: ${from[0]!.index}]`);
    }
    this.ents.length = off;
    for (const e of from) this.ents.push(e);
  }
}

function dummy(index: number, term: number): Entry {
  return { index, term, type: 0, data: new Uint8Array(0) };
}
