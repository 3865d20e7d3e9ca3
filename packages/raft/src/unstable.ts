// Entries and a snapshot that this node holds but has not yet been told are durable. They become
// stable when the driver persists a Ready and calls advance (or persisted).

import type { Entry, Snapshot } from './messages.js';

export class Unstable {
  snapshot: Snapshot | undefined;
  entries: Entry[] = [];
  /** Index of entries[0]; everything before it is in Storage. */
  offset: number;
  /**
   * The last index handed to the driver to write (in a Ready's entries), at least offset - 1.
   * Entries after it are new: a leader writing in the background asks for Readys while earlier
   * ones are still being written, and must not be given the same entries twice.
   */
  inProgress: number;

  constructor(offset: number) {
    this.offset = offset;
    this.inProgress = offset - 1;
  }

  /** Entries not yet handed to the driver, in an array of their own (this one keeps growing). */
  toWrite(): Entry[] {
    return this.entries.slice(this.inProgress + 1 - this.offset);
  }

  hasToWrite(): boolean {
    return this.offset + this.entries.length - 1 > this.inProgress;
  }

  /** Every entry is now handed to the driver. */
  acceptInProgress(): void {
    this.inProgress = this.offset + this.entries.length - 1;
  }

  maybeFirstIndex(): number | undefined {
    return this.snapshot ? this.snapshot.metadata.index + 1 : undefined;
  }

  maybeLastIndex(): number | undefined {
    if (this.entries.length > 0) return this.offset + this.entries.length - 1;
    return this.snapshot?.metadata.index;
  }

  maybeTerm(i: number): number | undefined {
    if (i < this.offset) {
      const m = this.snapshot?.metadata;
      return m !== undefined && m.index === i ? m.term : undefined;
    }
    const last = this.maybeLastIndex();
    if (last === undefined || i > last) return undefined;
    return this.entries[i - this.offset]!.term;
  }

  /** Entries up to (i, t) are durable. A mismatched term means they were replaced meanwhile: keep them. */
  stableTo(i: number, t: number): void {
    if (this.maybeTerm(i) !== t || i < this.offset) return;
    this.entries = this.entries.slice(i + 1 - this.offset);
    this.offset = i + 1;
    if (this.inProgress < i) this.inProgress = i;
  }

  stableSnapTo(i: number): void {
    if (this.snapshot !== undefined && this.snapshot.metadata.index === i) this.snapshot = undefined;
  }

  restore(s: Snapshot): void {
    this.offset = s.metadata.index + 1;
    this.inProgress = s.metadata.index;
    this.entries = [];
    this.snapshot = s;
  }

  truncateAndAppend(ents: readonly Entry[]): void {
    const after = ents[0]!.index;
    // Entries being written that these replace must be written again, after them.
    if (this.inProgress >= after) this.inProgress = after - 1;
    if (after === this.offset + this.entries.length) {
      for (const e of ents) this.entries.push(e);
    } else if (after <= this.offset) {
      // Replaces everything unstable, and tells the driver (through offset) that storage from
      // `after` on is stale.
      this.offset = after;
      this.entries = ents.slice();
    } else {
      this.entries = this.entries.slice(0, after - this.offset);
      for (const e of ents) this.entries.push(e);
    }
  }

  slice(lo: number, hi: number): Entry[] {
    return this.entries.slice(lo - this.offset, hi - this.offset);
  }
}
