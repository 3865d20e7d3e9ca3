// Runs a range of seeds (the CLI and the tap test share this), stopping at the first violation.

import { simulate, type SimResult, type SimStats } from './simulate.js';

export interface RunOptions {
  readonly first: number;
  readonly count: number;
  readonly steps: number;
  /** Fixed cluster size; by default seeds alternate between 3 and 5 members. */
  readonly members?: 3 | 5;
  readonly trace?: (line: string) => void;
  /** Progress lines; violations always go to `report`. */
  readonly log: (line: string) => void;
  readonly report: (line: string) => void;
}

export interface RunSummary {
  readonly seeds: number;
  readonly steps: number;
  readonly violations: number;
  readonly totals: SimStats;
  readonly failure?: SimResult;
}

export function membersFor(seed: number): 3 | 5 {
  return seed % 2 === 0 ? 5 : 3;
}

export function runSeeds(o: RunOptions): RunSummary {
  let steps = 0;
  let seeds = 0;
  let totals: SimStats | undefined;
  const progressEvery = Math.max(1, Math.floor(o.count / 10));
  for (let seed = o.first; seed < o.first + o.count; seed++) {
    const members = o.members ?? membersFor(seed);
    const r = simulate({ seed, steps: o.steps, members, ...(o.trace ? { trace: o.trace } : {}) });
    seeds++;
    steps += r.stats.steps;
    totals = add(totals, r.stats);
    if (r.violation !== undefined) {
      const v = r.violation;
      o.report(`sim: seed ${seed}: step ${v.step}: ${v.invariant}: ${v.details}`);
      o.report(`sim: last events before the violation:\n${v.recent.map((l) => `  ${l}`).join('\n')}`);
      o.report(`sim: replay with: npm run sim -- --seed ${seed} --members ${members} --steps ${o.steps} --trace`);
      return { seeds, steps, violations: 1, totals, failure: r };
    }
    if ((seed - o.first + 1) % progressEvery === 0 && o.count > 1) {
      o.log(`sim: ${seed - o.first + 1}/${o.count} seeds clean (${steps} steps; ${totals.elections} elections, ${totals.crashes} crashes, ${totals.snapshotsSent} snapshots sent, ${totals.confChangesApplied} conf change entries applied (summed over members), ${totals.writesOk} writes and ${totals.readsOk} reads acknowledged)`);
    }
  }
  return { seeds, steps, violations: 0, totals: totals ?? emptyStats() };
}

function emptyStats(): SimStats {
  return {
    steps: 0, elections: 0, crashes: 0, midReadyCrashes: 0, writtenBehind: 0, partitions: 0, snapshotsSent: 0, snapshotsTaken: 0,
    confChangesApplied: 0, transfers: 0, writesOk: 0, readsOk: 0, opsUnknown: 0, maxCommit: 0,
  };
}

function add(a: SimStats | undefined, b: SimStats): SimStats {
  const out = { ...(a ?? emptyStats()) };
  for (const k of Object.keys(out) as (keyof SimStats)[]) out[k] = k === 'maxCommit' ? Math.max(out[k], b[k]) : out[k] + b[k];
  return out;
}
