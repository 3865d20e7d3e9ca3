// What the leader knows about one follower's log, and how it may send to it.
//
// probe:     the leader doesn't know where the follower's log matches; it sends one MsgApp at a
//            time and waits for the answer (or a heartbeat reply) before sending the next.
// replicate: the logs match up to `match`; the leader streams entries optimistically, bounded by
//            the inflight window.
// snapshot:  the follower needs a snapshot; nothing is sent until it is applied or fails.

import { Inflights } from './inflights.js';

export type ProgressState =
  | { readonly kind: 'probe'; /** a probe is outstanding: wait for its answer */ paused: boolean }
  | { readonly kind: 'replicate'; readonly inflights: Inflights }
  | { readonly kind: 'snapshot'; /** index of the snapshot being sent */ readonly pendingSnapshot: number };

export class Progress {
  match = 0;
  next: number;
  state: ProgressState = { kind: 'probe', paused: false };
  /** Heard from since the last check-quorum round. */
  recentActive = false;

  constructor(
    next: number,
    public learner: boolean,
    private readonly maxInflightMsgs: number,
    private readonly maxInflightBytes: number,
  ) {
    this.next = next;
  }

  /** `snapshotDelivered`: leaving snapshot state because the snapshot arrived (not because it failed). */
  becomeProbe(snapshotDelivered = true): void {
    // After a snapshot, the follower has at least the snapshot: probe from just past it.
    if (this.state.kind === 'snapshot' && snapshotDelivered) {
      const pending = this.state.pendingSnapshot;
      this.next = Math.max(this.match + 1, pending + 1);
    } else {
      this.next = this.match + 1;
    }
    this.state = { kind: 'probe', paused: false };
  }

  becomeReplicate(): void {
    this.next = this.match + 1;
    this.state = { kind: 'replicate', inflights: new Inflights(this.maxInflightMsgs, this.maxInflightBytes) };
  }

  becomeSnapshot(snapshotIndex: number): void {
    this.state = { kind: 'snapshot', pendingSnapshot: snapshotIndex };
  }

  pauseProbe(): void {
    if (this.state.kind === 'probe') this.state.paused = true;
  }

  /** An acknowledgement up to n. Returns false if it tells nothing new (a stale or duplicate reply). */
  maybeUpdate(n: number): boolean {
    let updated = false;
    if (this.match < n) {
      this.match = n;
      updated = true;
      if (this.state.kind === 'probe') this.state.paused = false;
    }
    this.next = Math.max(this.next, n + 1);
    return updated;
  }

  /**
   * A rejection of the append at index `rejected`; `matchHint` is the follower's guess at where the
   * logs may match. Returns false if the rejection is stale (answers an append no longer current).
   */
  maybeDecrTo(rejected: number, matchHint: number): boolean {
    if (this.state.kind === 'replicate') {
      if (rejected <= this.match) return false;
      this.next = this.match + 1;
      return true;
    }
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1);
    if (this.state.kind === 'probe') this.state.paused = false;
    return true;
  }

  /** Records that a MsgApp with entries up to `lastIndex` (and `bytes` of them) has been sent. */
  sentEntries(count: number, lastIndex: number, bytes: number): void {
    switch (this.state.kind) {
      case 'replicate':
        if (count > 0) {
          this.next = lastIndex + 1;
          this.state.inflights.add(lastIndex, bytes);
        }
        break;
      case 'probe':
        this.state.paused = true;
        break;
      case 'snapshot':
        throw new Error('raft: sending entries to a follower in snapshot state');
    }
  }

  isPaused(): boolean {
    switch (this.state.kind) {
      case 'probe':
        return this.state.paused;
      case 'replicate':
        return this.state.inflights.full();
      case 'snapshot':
        return true;
    }
  }

  get stateName(): 'probe' | 'replicate' | 'snapshot' {
    return this.state.kind;
  }
}
