// Rebuilds Raft's durable state from records in the order they were written.
import type { Entry, HardState } from '@capstan/raft';
import { WalReplayError } from './errors.js';
import { RecordType, type SnapshotMarker, type WalMetadata, type WalRecord } from './record.js';

const NO_MARKER: SnapshotMarker = Object.freeze({ index: 0, term: 0 });
const EMPTY_HARD_STATE: HardState = Object.freeze({ term: 0, vote: 0, commit: 0 });

export class LogBuilder {
  metadata: WalMetadata | undefined;
  hardState: HardState = EMPTY_HARD_STATE;
  /** The newest snapshot the log starts from. */
  marker: SnapshotMarker = NO_MARKER;
  /** Contiguous entries after `marker` (or the first entry replay saw, once older segments are released). */
  entries: Entry[] = [];

  apply(r: WalRecord, file: string, offset: number): void {
    switch (r.type) {
      case RecordType.Metadata:
        this.metadata = r.metadata;
        return;
      case RecordType.HardState:
        this.hardState = r.hardState;
        return;
      case RecordType.Snapshot:
        this.applyMarker(r.marker);
        return;
      case RecordType.Entry:
        this.appendEntry(r.entry, file, offset);
        return;
    }
  }

  /** Raft's append: an entry at index i replaces i and everything after it. */
  private appendEntry(e: Entry, file: string, offset: number): void {
    const es = this.entries;
    if (e.index <= this.marker.index) {
      throw new WalReplayError(`entry ${e.index} is inside snapshot ${this.marker.index}`, file, offset);
    }
    if (es.length === 0) {
      es.push(e);
      return;
    }
    const first = es[0]!.index;
    const last = es[es.length - 1]!.index;
    if (e.index === last + 1) {
      es.push(e);
    } else if (e.index > last + 1) {
      throw new WalReplayError(`entry ${e.index} leaves a gap after ${last}`, file, offset);
    } else if (e.index >= first) {
      es.length = e.index - first;
      es.push(e);
    } else {
      es.length = 0;
      es.push(e);
    }
  }

  /**
   * A snapshot whose (index, term) is in the log compacts it: the entries after it stay (a member's
   * own snapshot). One that is not replaces the whole log (a snapshot received from the leader),
   * as Raft's restore does. Segments repeat the newest marker at their head: a repeat is a no-op.
   */
  private applyMarker(m: SnapshotMarker): void {
    if (m.index < this.marker.index) return;
    if (m.index === this.marker.index && m.term === this.marker.term) return;
    const es = this.entries;
    const first = es.length > 0 ? es[0]!.index : 0;
    const at = m.index - first;
    if (es.length > 0 && at >= 0 && at < es.length && es[at]!.term === m.term) {
      this.entries = es.slice(at + 1);
    } else {
      this.entries = [];
    }
    this.marker = m;
  }

  get lastIndex(): number {
    const es = this.entries;
    return es.length > 0 ? es[es.length - 1]!.index : this.marker.index;
  }

  /** The log must continue right after its snapshot: anything else means entries were lost. */
  check(): void {
    const es = this.entries;
    if (es.length > 0 && es[0]!.index !== this.marker.index + 1) {
      throw new WalReplayError(
        `entries start at ${es[0]!.index} but the snapshot ends at ${this.marker.index}: entries in between are missing`,
      );
    }
  }
}

/**
 * The terms of the live log as runs (first index, term): enough to tell whether a snapshot's
 * (index, term) is in the log, as replay does, without keeping the entries in memory.
 */
export class TermRuns {
  private runs: { first: number; term: number }[] = [];

  constructor(
    private base: SnapshotMarker,
    private last: number,
  ) {}

  static of(marker: SnapshotMarker, entries: readonly Entry[]): TermRuns {
    const r = new TermRuns(marker, marker.index);
    r.append(entries);
    return r;
  }

  get lastIndex(): number {
    return this.last;
  }

  append(entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    const first = entries[0]!.index;
    while (this.runs.length > 0 && this.runs[this.runs.length - 1]!.first >= first) this.runs.pop();
    for (const e of entries) {
      const top = this.runs[this.runs.length - 1];
      if (top === undefined || top.term !== e.term) this.runs.push({ first: e.index, term: e.term });
    }
    this.last = entries[entries.length - 1]!.index;
  }

  termAt(index: number): number | undefined {
    if (index === this.base.index) return this.base.term;
    if (index < this.base.index || index > this.last) return undefined;
    for (let i = this.runs.length - 1; i >= 0; i--) if (this.runs[i]!.first <= index) return this.runs[i]!.term;
    return undefined;
  }

  /** Mirrors LogBuilder's marker rule: keep what follows a snapshot the log contains, else drop it all. */
  applySnapshot(m: SnapshotMarker): void {
    if (this.termAt(m.index) === m.term) {
      while (this.runs.length > 1 && this.runs[1]!.first <= m.index) this.runs.shift();
    } else {
      this.runs = [];
      this.last = m.index;
    }
    this.base = m;
  }
}
