// Linearizable reads by ReadIndex (Raft thesis §6.4), batched into rounds.
//
// A read arriving at the leader is answered with the commit index at its arrival once the leader
// has proved that it was still leader *after* the read arrived: a quorum acknowledged a heartbeat
// sent after that moment. Heartbeats carry a round number; a follower's ack of round r confirms
// every round <= r (those heartbeats left no later than r's). One round serves every read queued
// before it started, so a burst of reads costs one heartbeat round, not one each.

import type { NodeId } from './messages.js';
import { committedIndex } from './quorum.js';

export interface ReadRequest {
  readonly context: Uint8Array;
  /** Who asked: the leader itself (answer with a ReadState) or a follower (answer with a message). */
  readonly from: NodeId;
  /** The leader's commit index when the read arrived. */
  readonly index: number;
}

interface Queued extends ReadRequest {
  /** The round whose quorum ack releases this read; 0 until a round covering it has started. */
  round: number;
}

export class ReadOnly {
  private queue: Queued[] = [];
  /** Rounds only grow over a node's life, so an ack from an earlier leadership can't be mistaken. */
  private lastRound = 0;
  private acked = new Map<NodeId, number>();

  get pending(): number {
    return this.queue.length;
  }

  /** The round heartbeats should carry now: the newest started, or 0 with nothing waiting. */
  currentRound(): number {
    return this.queue.length > 0 ? this.lastRound : 0;
  }

  /** Are there reads waiting for a round, and no earlier round still unconfirmed? */
  canStartRound(): boolean {
    return this.queue.length > 0 && this.queue[0]!.round === 0;
  }

  add(req: ReadRequest): void {
    this.queue.push({ ...req, round: 0 });
  }

  /**
   * Starts a round for the reads not yet covered by one, if any. Unless `force`, waits while an
   * earlier round is still unconfirmed: its confirmation will start the next round. Returns the
   * new round to broadcast, or 0.
   */
  maybeStartRound(force: boolean): number {
    const last = this.queue[this.queue.length - 1];
    if (last === undefined || last.round !== 0) return 0;
    if (!force && this.queue[0]!.round !== 0) return 0;
    this.lastRound++;
    for (let i = this.queue.length - 1; i >= 0 && this.queue[i]!.round === 0; i--) this.queue[i]!.round = this.lastRound;
    return this.lastRound;
  }

  /** Records a voter's ack of `round` and returns the reads a quorum has now confirmed, in order. */
  ack(self: NodeId, voters: readonly NodeId[], from: NodeId, round: number): ReadRequest[] {
    if (round > (this.acked.get(from) ?? 0)) this.acked.set(from, round);
    return this.release(self, voters);
  }

  /** Releases what the current acks confirm (also after a membership change shrinks the quorum). */
  release(self: NodeId, voters: readonly NodeId[]): ReadRequest[] {
    if (this.queue.length === 0) return [];
    const confirmed = committedIndex(voters, (id) => (id === self ? this.lastRound : this.acked.get(id)));
    let n = 0;
    while (n < this.queue.length && this.queue[n]!.round !== 0 && this.queue[n]!.round <= confirmed) n++;
    if (n === 0) return [];
    return this.queue.splice(0, n);
  }

  /** Leadership ended or began: reads in flight are abandoned (their clients time out and retry). */
  reset(): void {
    this.queue = [];
    this.acked.clear();
  }
}
