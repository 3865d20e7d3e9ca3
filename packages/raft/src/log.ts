// The Raft log: the durable part in Storage, the part not yet durable in Unstable, and the
// committed and applied cursors over both.

import type { Entry, Snapshot } from './messages.js';
import { isStorageError, limitSize, StorageError, type Storage } from './storage.js';
import { Unstable } from './unstable.js';

/** Ran into a state Raft cannot be in: a bug or corrupt storage. The member must stop. */
export class RaftInvariantError extends Error {
  override readonly name = 'RaftInvariantError';
}

export class RaftLog {
  readonly unstable: Unstable;
  /** Highest index known to be stored on a quorum. */
  committed: number;
  /** Highest index handed to the application to apply. */
  applied: number;

  constructor(
    readonly storage: Storage,
    private readonly maxCommittedSizePerReady: number,
  ) {
    const first = storage.firstIndex();
    const last = storage.lastIndex();
    this.unstable = new Unstable(last + 1);
    this.committed = first - 1;
    this.applied = first - 1;
  }

  firstIndex(): number {
    return this.unstable.maybeFirstIndex() ?? this.storage.firstIndex();
  }

  lastIndex(): number {
    return this.unstable.maybeLastIndex() ?? this.storage.lastIndex();
  }

  /** The last index this node has durably: entries after it may be lost by a crash. */
  persistedIndex(): number {
    return this.unstable.snapshot !== undefined ? this.storage.lastIndex() : this.unstable.offset - 1;
  }

  term(i: number): number | StorageError {
    const dummy = this.firstIndex() - 1;
    if (i < dummy) return StorageError.Compacted;
    if (i > this.lastIndex()) return StorageError.Unavailable;
    const t = this.unstable.maybeTerm(i);
    if (t !== undefined) return t;
    return this.storage.term(i);
  }

  /** The term at i, or 0 where it is unknown (compacted or beyond the log). */
  termOrZero(i: number): number {
    const t = this.term(i);
    return isStorageError(t) ? 0 : t;
  }

  lastTerm(): number {
    const t = this.term(this.lastIndex());
    if (isStorageError(t)) throw new RaftInvariantError(`raft: unexpected error getting the last term (${t})`);
    return t;
  }

  matchTerm(i: number, t: number): boolean {
    return this.term(i) === t;
  }

  /** Would a candidate with this last entry have a log at least as up to date as ours? */
  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    const ours = this.lastTerm();
    return lastTerm > ours || (lastTerm === ours && lastIndex >= this.lastIndex());
  }

  /**
   * Appends entries a leader sent after (index, logTerm) if our log has that entry. Returns the
   * index of the last new entry, or undefined when the logs don't match there.
   */
  maybeAppend(index: number, logTerm: number, committed: number, ents: readonly Entry[]): number | undefined {
    if (!this.matchTerm(index, logTerm)) return undefined;
    const lastNew = index + ents.length;
    const ci = this.findConflict(ents);
    if (ci !== 0) {
      if (ci <= this.committed) {
        throw new RaftInvariantError(`raft: entry ${ci} conflicts with committed entry [committed(${this.committed})]`);
      }
      this.append(ents.slice(ci - index - 1));
    }
    this.commitTo(Math.min(committed, lastNew));
    return lastNew;
  }

  append(ents: readonly Entry[]): number {
    if (ents.length === 0) return this.lastIndex();
    const after = ents[0]!.index - 1;
    if (after < this.committed) {
      throw new RaftInvariantError(`raft: after(${after}) is out of range [committed(${this.committed})]`);
    }
    this.unstable.truncateAndAppend(ents);
    return this.lastIndex();
  }

  /**
   * The index of the first entry that is new or conflicts with ours (same index, other term), or
   * 0 when we have them all.
   */
  findConflict(ents: readonly Entry[]): number {
    for (const e of ents) {
      if (!this.matchTerm(e.index, e.term)) return e.index;
    }
    return 0;
  }

  /**
   * The last index <= `index` whose term is <= `term`, with its term: the follower's best guess
   * at where its log could match a leader's whose entry at `index` has `term`. Term 0 = unknown.
   */
  findConflictByTerm(index: number, term: number): { index: number; term: number } {
    for (; index > 0; index--) {
      const ours = this.term(index);
      if (isStorageError(ours)) return { index, term: 0 };
      if (ours <= term) return { index, term: ours };
    }
    return { index: 0, term: 0 };
  }

  /** Committed entries not yet handed to the application, up to the per-Ready size limit. */
  nextCommittedEntries(): readonly Entry[] {
    const off = Math.max(this.applied + 1, this.firstIndex());
    if (this.committed + 1 <= off) return [];
    const ents = this.slice(off, this.committed + 1, this.maxCommittedSizePerReady);
    if (isStorageError(ents)) throw new RaftInvariantError(`raft: unexpected error getting unapplied entries (${ents})`);
    return ents;
  }

  hasNextCommittedEntries(): boolean {
    return this.committed > Math.max(this.applied, this.firstIndex() - 1);
  }

  snapshot(): Snapshot | StorageError {
    return this.unstable.snapshot ?? this.storage.snapshot();
  }

  hasPendingSnapshot(): boolean {
    return this.unstable.snapshot !== undefined;
  }

  commitTo(toCommit: number): void {
    if (this.committed >= toCommit) return;
    if (this.lastIndex() < toCommit) {
      throw new RaftInvariantError(
        `raft: tocommit(${toCommit}) is out of range [lastIndex(${this.lastIndex()})]. Was the raft log corrupted, truncated, or lost?`,
      );
    }
    this.committed = toCommit;
  }

  appliedTo(i: number): void {
    if (i === 0) return;
    if (this.committed < i || i < this.applied) {
      throw new RaftInvariantError(`raft: applied(${i}) is out of range [prevApplied(${this.applied}), committed(${this.committed})]`);
    }
    this.applied = i;
  }

  stableTo(i: number, t: number): void {
    this.unstable.stableTo(i, t);
  }

  stableSnapTo(i: number): void {
    this.unstable.stableSnapTo(i);
  }

  /** Entries from i to the end, at most maxBytes (at least one). */
  entries(i: number, maxBytes: number): readonly Entry[] | StorageError {
    if (i > this.lastIndex()) return [];
    return this.slice(i, this.lastIndex() + 1, maxBytes);
  }

  /** Entries in [lo, hi), at most maxBytes (at least one). */
  slice(lo: number, hi: number, maxBytes: number): readonly Entry[] | StorageError {
    if (lo > hi) throw new RaftInvariantError(`raft: invalid slice ${lo} > ${hi}`);
    const first = this.firstIndex();
    if (lo < first) return StorageError.Compacted;
    if (hi > this.lastIndex() + 1) {
      throw new RaftInvariantError(`raft: slice[${lo},${hi}) out of bound [${first},${this.lastIndex()}]`);
    }
    if (lo === hi) return [];
    const off = this.unstable.offset;
    let ents: readonly Entry[] = [];
    if (lo < off) {
      const stored = this.storage.entries(lo, Math.min(hi, off), maxBytes);
      if (isStorageError(stored)) {
        if (stored === StorageError.Compacted) return stored;
        throw new RaftInvariantError(`raft: entries[${lo}:${Math.min(off, hi)}) is unavailable from storage`);
      }
      // Storage stopped early because of the size limit: don't add unstable entries after a gap.
      if (stored.length < Math.min(hi, off) - lo) return stored;
      ents = stored;
    }
    if (hi > off) {
      const uns = this.unstable.slice(Math.max(lo, off), hi);
      ents = ents.length > 0 ? ents.concat(uns) : uns;
    }
    return limitSize(ents, maxBytes);
  }

  restore(s: Snapshot): void {
    this.committed = s.metadata.index;
    this.unstable.restore(s);
  }
}

