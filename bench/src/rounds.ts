/**
 * Rounds: with two systems, each workload runs in short alternating rounds (Capstan, etcd,
 * etcd, Capstan, ...) instead of one block per system, so both are measured across the same
 * minutes and a slow spell of the machine lands on both. This module adds the rounds of one
 * system back up into the one result the tables and the report show.
 */
import type { BenchArgs } from './flags.js';
import { Histogram, histogramKey, type HistogramBuckets, type LatencySummary } from './hist.js';
import { ERROR_SAMPLES, round2, type PutTail, type WorkloadResult } from './workloads.js';

/** A later round's warm-up: the system sat idle while the other one ran. */
export const REWARM_MS = 500;

/** The settings of round `round` (from 0): an equal slice of --duration; after the first, a short re-warm. */
export function roundArgs(args: BenchArgs, round: number): BenchArgs {
  return { ...args, durationMs: Math.floor(args.durationMs / args.rounds), warmupMs: round === 0 ? args.warmupMs : Math.min(args.warmupMs, REWARM_MS) };
}

/**
 * The order in which the systems run round `round` (from 0) of workload number `workload`, with
 * `rounds` rounds per workload. Within a workload the order flips every round (A B, B A, A B, ...),
 * so each system goes first about as often. Across workloads, a workload's first round keeps the
 * last round's order: the system that ended one workload does not begin the next straight after
 * its own heavy rounds, but after one round of the other system, as every other round does. A
 * window right behind a system's own heavy load measures that load's aftermath: 100 puts/s under
 * 100 watchers just after the eight workloads before watch had an event p99 of 31 ms on etcd and
 * 33-36 ms on Capstan, against 20 and 21-23 ms in the window after. Flipping at workload
 * boundaries too put one system there at every boundary, Capstan at watch's.
 */
export function roundOrder<T>(systems: readonly T[], workload: number, round: number, rounds: number): T[] {
  const flips = workload * (rounds - 1) + round;
  return flips % 2 === 0 ? [...systems] : [...systems].reverse();
}

type ExtraMerge = 'sum' | 'min' | 'all' | 'histogram' | 'latency';

/** A latency figure of hist.ts's latencyFigures: the summary merged from the summed buckets. */
function latencyMerge(key: string): Record<string, ExtraMerge> {
  return { [key]: 'latency', [histogramKey(key)]: 'histogram' };
}

/**
 * How a workload's extra figures add up over rounds. `sum`: counts; `min`: a count every round
 * must reach (watchers that saw every put); `all`: a check every round must pass; `histogram`:
 * buckets, added; `latency`: a LatencySummary re-made from the buckets stored under
 * `histogramKey(key)` (hist.ts's latencyFigures). A figure not listed is a setting, the same in
 * every round.
 */
const EXTRA_MERGE: Record<string, ExtraMerge> = {
  putsSent: 'sum',
  putsAcknowledged: 'sum',
  putErrors: 'sum',
  expectedEvents: 'sum',
  receivedEvents: 'sum',
  missingEvents: 'sum',
  duplicateEvents: 'sum',
  watchersComplete: 'min',
  allReceived: 'all',
  ...latencyMerge('putLatency'),
  ...latencyMerge('leaderWatchLatency'),
  ...latencyMerge('followerWatchLatency'),
  failedCompares: 'sum',
  granted: 'sum',
  revokeFailures: 'sum',
  streamsClosedEarly: 'sum',
};

function addBuckets(parts: readonly HistogramBuckets[]): Histogram {
  const h = new Histogram();
  for (const p of parts) h.add(Histogram.fromBuckets(p));
  return h;
}

/** The latency of several histograms together; min, max and mean exact, percentiles from the buckets. */
export function mergeLatency(parts: readonly { latency: LatencySummary; histogram: HistogramBuckets }[]): { latency: LatencySummary; histogram: HistogramBuckets } {
  const h = addBuckets(parts.map((p) => p.histogram));
  const s = h.summary();
  const filled = parts.filter((p) => p.latency.count > 0);
  if (filled.length === 0) return { latency: s, histogram: h.buckets() };
  const min = Math.min(...filled.map((p) => p.latency.min));
  const max = Math.max(...filled.map((p) => p.latency.max));
  const clamp = (v: number): number => Math.max(min, Math.min(max, v));
  return {
    latency: {
      count: s.count,
      min,
      mean: filled.reduce((a, p) => a + p.latency.mean * p.latency.count, 0) / s.count,
      p50: clamp(s.p50),
      p90: clamp(s.p90),
      p99: clamp(s.p99),
      p999: clamp(s.p999),
      max,
    },
    histogram: h.buckets(),
  };
}

function mergeExtra(rounds: readonly WorkloadResult[]): Record<string, unknown> {
  const out: Record<string, unknown> = { ...rounds[0]!.extra };
  for (const key of Object.keys(out)) {
    const values = rounds.map((r) => r.extra[key]);
    switch (EXTRA_MERGE[key]) {
      case 'sum':
        out[key] = values.reduce((a: number, v) => a + Number(v), 0);
        break;
      case 'histogram':
        out[key] = addBuckets(values as HistogramBuckets[]).buckets();
        break;
      case 'min':
        out[key] = Math.min(...values.map(Number));
        break;
      case 'all':
        out[key] = values.every((v) => v === true);
        break;
      case 'latency': {
        const hists = rounds.map((r) => r.extra[histogramKey(key)] as HistogramBuckets | undefined);
        if (hists.every((h) => h !== undefined)) {
          out[key] = mergeLatency(rounds.map((r, i) => ({ latency: r.extra[key] as LatencySummary, histogram: hists[i]! }))).latency;
        }
        break;
      }
      default:
        break;
    }
  }
  return out;
}

/** Weighted by each window's length; undefined when a window did not know. */
export function weighted<W extends { readonly durationMs: number }>(rounds: readonly W[], get: (r: W) => number | undefined): number | undefined {
  let sum = 0;
  let ms = 0;
  for (const r of rounds) {
    const v = get(r);
    if (v === undefined) return undefined;
    sum += v * r.durationMs;
    ms += r.durationMs;
  }
  return ms > 0 ? sum / ms : undefined;
}

/** The rounds' puts back to back, as their throughput: each round's times shifted by the windows before it. */
function mergePutTails(rounds: readonly WorkloadResult[]): PutTail {
  const out: PutTail = { atMs: [], slowestMs: [] };
  let offset = 0;
  for (const r of rounds) {
    for (const at of r.putTail!.atMs) out.atMs.push(round2(at + offset));
    // Not push(...slowestMs): a long round has more puts than a call takes arguments.
    for (const ms of r.putTail!.slowestMs) out.slowestMs.push(ms);
    offset += r.durationMs;
  }
  return out;
}

/** One system's rounds of one workload as one result (a single round is returned as it is). */
export function mergeRounds(rounds: readonly WorkloadResult[]): WorkloadResult {
  if (rounds.length === 0) throw new Error('mergeRounds: no rounds');
  const first = rounds[0]!;
  for (const r of rounds) {
    if (r.workload !== first.workload || r.target !== first.target) throw new Error(`mergeRounds: ${r.target} ${r.workload} mixed with ${first.target} ${first.workload}`);
  }
  if (rounds.length === 1) return first;
  const durationMs = rounds.reduce((a, r) => a + r.durationMs, 0);
  const ops = rounds.reduce((a, r) => a + r.ops, 0);
  const { latency, histogram } = mergeLatency(rounds);
  const merged: WorkloadResult = {
    ...first,
    rounds: rounds.length,
    roundFigures: rounds.map((r) => ({ opsPerSec: r.opsPerSec, p50: r.latency.p50, p99: r.latency.p99 })),
    durationMs,
    ops,
    errors: rounds.reduce((a, r) => a + r.errors, 0),
    errorSamples: rounds.flatMap((r) => r.errorSamples).slice(0, ERROR_SAMPLES),
    opsPerSec: durationMs > 0 ? ops / (durationMs / 1000) : 0,
    latency,
    histogram,
    // The measured seconds of every round, back to back.
    throughput: rounds.flatMap((r) => r.throughput),
    extra: mergeExtra(rounds),
  };
  if (rounds.every((r) => r.windows !== undefined)) merged.windows = rounds.flatMap((r) => r.windows!);
  else delete merged.windows;
  if (rounds.every((r) => r.putTail !== undefined)) merged.putTail = mergePutTails(rounds);
  else delete merged.putTail;
  if (rounds.every((r) => r.cpu !== undefined)) {
    const others = rounds.map((r) => r.cpu!.otherPercent);
    const kdamond = weighted(rounds, (r) => r.cpu!.kdamondPercent);
    merged.cpu = {
      clientPercent: weighted(rounds, (r) => r.cpu!.clientPercent)!,
      membersPercent: weighted(rounds, (r) => r.cpu!.membersPercent),
      // The busiest round: the noise verdict is about any window, and each round is one.
      ...(others.every((o) => o !== undefined) ? { otherPercent: Math.max(...(others as number[])) } : {}),
      ...(kdamond !== undefined ? { kdamondPercent: kdamond } : {}),
    };
  } else {
    delete merged.cpu;
  }
  // The largest: memory a system needs is its peak, not its average.
  if (rounds.every((r) => r.memory !== undefined)) merged.memory = { membersRssMiB: Math.max(...rounds.map((r) => r.memory!.membersRssMiB)) };
  else delete merged.memory;
  return merged;
}
