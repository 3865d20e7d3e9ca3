// Majority arithmetic. Membership changes one member at a time, so a configuration is a single
// set of voters (no joint consensus): any two majorities of adjacent configurations intersect.

import type { NodeId } from './messages.js';

export enum VoteResult {
  Pending = 'pending',
  Lost = 'lost',
  Won = 'won',
}

export function majority(n: number): number {
  return Math.floor(n / 2) + 1;
}

/**
 * The largest index that a majority of voters have acknowledged. `acked` gives a voter's index,
 * or undefined when unknown (counted as 0). With no voters the answer is Infinity, so that an
 * empty configuration never holds back a commit computed elsewhere (and callers must guard).
 */
export function committedIndex(voters: readonly NodeId[], acked: (id: NodeId) => number | undefined): number {
  const n = voters.length;
  if (n === 0) return Infinity;
  // Insertion sort, descending, as etcd's does for small configurations: this runs on every
  // acknowledgement, and Array.prototype.sort allocates its work space each time.
  const srt = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const v = acked(voters[i]!) ?? 0;
    let j = i;
    for (; j > 0 && srt[j - 1]! < v; j--) srt[j] = srt[j - 1]!;
    srt[j] = v;
  }
  return srt[majority(n) - 1]!;
}

/** Tallies an election: won once a majority granted, lost once a majority can no longer grant. */
export function voteResult(voters: readonly NodeId[], votes: ReadonlyMap<NodeId, boolean>): VoteResult {
  if (voters.length === 0) return VoteResult.Won;
  let granted = 0;
  let rejected = 0;
  for (const id of voters) {
    const v = votes.get(id);
    if (v === true) granted++;
    else if (v === false) rejected++;
  }
  const q = majority(voters.length);
  if (granted >= q) return VoteResult.Won;
  if (voters.length - rejected < q) return VoteResult.Lost;
  return VoteResult.Pending;
}
