// Adding up a system's alternating rounds of one workload: the merged result must be what one
// window holding every round's requests would have given.
import t from 'tap';
import { Histogram } from '../src/hist.js';
import { histOf, latencyExtra } from './helpers.js';
import { mergeLatency, mergeRounds, roundOrder } from '../src/rounds.js';
import type { WorkloadResult } from '../src/workloads.js';

function round(values: number[], opts: { durationMs?: number; extra?: Record<string, unknown>; cpu?: WorkloadResult['cpu']; errors?: string[] } = {}): WorkloadResult {
  const h = histOf(values);
  const durationMs = opts.durationMs ?? 1000;
  return {
    workload: 'put-seq',
    target: 'capstan',
    description: 'test',
    channels: 1,
    inflight: 1,
    durationMs,
    ops: values.length,
    errors: opts.errors?.length ?? 0,
    errorSamples: opts.errors ?? [],
    opsPerSec: values.length / (durationMs / 1000),
    latency: h.summary(),
    histogram: h.buckets(),
    throughput: [values.length],
    extra: opts.extra ?? {},
    cpu: opts.cpu,
  };
}

t.test('one round comes back as it is', async (t) => {
  const r = round([1, 2, 3]);
  t.equal(mergeRounds([r]), r);
  t.throws(() => mergeRounds([]), /no rounds/);
});

t.test('latency, counts and throughput of rounds add up to one window of them all', async (t) => {
  // Round one fast, round two slow: the merged p50 sits between, p99 in the slow round.
  const fast = Array.from({ length: 900 }, (_, i) => 1 + (i % 100) / 100);
  const slow = Array.from({ length: 100 }, (_, i) => 20 + i / 10);
  const a = round(fast, { durationMs: 1000, errors: ['e1', 'e2', 'e3'] });
  const b = round(slow, { durationMs: 2000, errors: ['e4', 'e5', 'e6'] });
  const m = mergeRounds([a, b]);
  const whole = new Histogram();
  for (const v of [...fast, ...slow]) whole.recordMs(v);
  const w = whole.summary();
  t.equal(m.rounds, 2);
  t.equal(m.ops, 1000);
  t.equal(m.durationMs, 3000);
  t.equal(m.opsPerSec, 1000 / 3);
  t.equal(m.errors, 6);
  t.same(m.errorSamples, ['e1', 'e2', 'e3', 'e4', 'e5'], 'at most five samples, first rounds first');
  t.equal(m.latency.count, 1000);
  t.equal(m.latency.min, w.min);
  t.equal(m.latency.max, w.max);
  t.ok(Math.abs(m.latency.mean - w.mean) < 1e-9, `mean ${m.latency.mean} = ${w.mean}`);
  for (const q of ['p50', 'p90', 'p99', 'p999'] as const) t.equal(m.latency[q], w[q], `${q} as one window`);
  t.ok(m.latency.p99 >= 20, 'the slow round sets the p99');
  t.same(m.histogram, whole.buckets());
  t.same(m.throughput, [900, 100], 'the measured seconds of each round, back to back');
  t.same(
    m.roundFigures,
    [
      { opsPerSec: 900, p50: a.latency.p50, p99: a.latency.p99 },
      { opsPerSec: 50, p50: b.latency.p50, p99: b.latency.p99 },
    ],
    'each round keeps its own figures, in order',
  );
  t.notOk('roundFigures' in a, 'a single round has none');
});

t.test('extras: counts add, checks must hold in every round, settings stay', async (t) => {
  const put = (ms: number[]): Record<string, unknown> => latencyExtra('putLatency', ms);
  const a = round([1], { extra: { watchers: 100, expectedEvents: 200, receivedEvents: 200, missingEvents: 0, watchersComplete: 100, allReceived: true, ...put([2, 3]) } });
  const b = round([1], { extra: { watchers: 100, expectedEvents: 300, receivedEvents: 299, missingEvents: 1, watchersComplete: 99, allReceived: false, ...put([4, 40]) } });
  const x = mergeRounds([a, b]).extra;
  t.equal(x.watchers, 100, 'a setting is not added up');
  t.equal(x.expectedEvents, 500);
  t.equal(x.receivedEvents, 499);
  t.equal(x.missingEvents, 1);
  t.equal(x.watchersComplete, 99, 'watchers that saw every put in every round');
  t.equal(x.allReceived, false, 'one round missing an event fails the check');
  const pl = x.putLatency as { count: number; min: number; max: number; p50: number };
  t.equal(pl.count, 4);
  t.equal(pl.min, 2);
  t.equal(pl.max, 40);
  t.equal(pl.p50, (put([2, 3, 4, 40]).putLatency as { p50: number }).p50, 'p50 as one window of the four puts');
  t.same(x.putLatencyHistogram, put([2, 3, 4, 40]).putLatencyHistogram);
});

t.test('extras: the leader\'s and the followers\' watch latencies merge like the puts\'', async (t) => {
  const roles = (leader: number[], followers: number[]): Record<string, unknown> => ({
    leaderWatchers: 2,
    ...latencyExtra('leaderWatchLatency', leader),
    ...latencyExtra('followerWatchLatency', followers),
  });
  const x = mergeRounds([round([1], { extra: roles([1, 2], [5]) }), round([1], { extra: roles([3], [6, 70]) })]).extra;
  t.equal(x.leaderWatchers, 2, 'a setting');
  t.match(x.leaderWatchLatency, { count: 3, min: 1, max: 3 });
  t.match(x.followerWatchLatency, { count: 3, min: 5, max: 70 });
  t.same(x.followerWatchLatencyHistogram, histOf([5, 6, 70]).buckets());
});

t.test('CPU: averaged over the windows, the busiest round for other processes', async (t) => {
  const a = round([1], { durationMs: 1000, cpu: { clientPercent: 10, membersPercent: 100, otherPercent: 5 } });
  const b = round([1], { durationMs: 3000, cpu: { clientPercent: 30, membersPercent: 60, otherPercent: 25 } });
  t.same(mergeRounds([a, b]).cpu, { clientPercent: 25, membersPercent: 70, otherPercent: 25 });
  const ka = round([1], { durationMs: 1000, cpu: { clientPercent: 10, membersPercent: 100, kdamondPercent: 4 } });
  const kb = round([1], { durationMs: 3000, cpu: { clientPercent: 30, membersPercent: 60, kdamondPercent: 0 } });
  t.equal(mergeRounds([ka, kb]).cpu!.kdamondPercent, 1, 'kdamond averaged over the windows');
  t.notOk('kdamondPercent' in mergeRounds([ka, b]).cpu!, 'kdamond unread in a round: left out');
  const c = round([1], { durationMs: 1000, cpu: { clientPercent: 10, membersPercent: undefined } });
  t.same(mergeRounds([a, c]).cpu, { clientPercent: 10, membersPercent: undefined }, 'members unknown in a round: unknown');
  t.equal(mergeRounds([a, round([1])]).cpu, undefined, 'a round without CPU figures: none');
});

t.test('memory: the largest of the rounds\' resident sets, none if a round lacks it', async (t) => {
  const a = { ...round([1]), memory: { membersRssMiB: 700 } };
  const b = { ...round([1]), memory: { membersRssMiB: 760 } };
  const c = { ...round([1]), memory: { membersRssMiB: 730 } };
  t.same(mergeRounds([a, b, c]).memory, { membersRssMiB: 760 });
  t.notOk('memory' in mergeRounds([a, round([1])]), 'a round without it (--endpoints): none');
});

t.test('windows: every round\'s, in order; none when a round lacks them', async (t) => {
  const a = { ...round([1]), windows: [{ startMs: 1000, endMs: 2000 }] };
  const b = { ...round([2]), windows: [{ startMs: 5000, endMs: 6000 }] };
  t.same(mergeRounds([a, b]).windows, [
    { startMs: 1000, endMs: 2000 },
    { startMs: 5000, endMs: 6000 },
  ]);
  t.notOk('windows' in mergeRounds([a, round([3])]), 'a round without its window: left out');
});

t.test('watch puts: the rounds back to back, each shifted by the windows before it; none when a round lacks them', async (t) => {
  const a = { ...round([1], { durationMs: 2500 }), putTail: { atMs: [0, 10.25], slowestMs: [3, 40.5] } };
  const b = { ...round([2], { durationMs: 2500 }), putTail: { atMs: [0.1, 2499.99], slowestMs: [2.5, 4] } };
  t.same(mergeRounds([a, b]).putTail, { atMs: [0, 10.25, 2500.1, 4999.99], slowestMs: [3, 40.5, 2.5, 4] });
  t.notOk('putTail' in mergeRounds([a, round([3])]), 'a round without them: left out');
  // Two 40-minute rounds at 100 puts a second: more puts in each than one call takes arguments.
  const long = (): WorkloadResult => {
    const atMs = Array.from({ length: 240_000 }, (_, i) => i * 10);
    return { ...round([1], { durationMs: 2_400_000 }), putTail: { atMs, slowestMs: atMs.map((at) => at % 7) } };
  };
  const merged = mergeRounds([long(), long()]).putTail!;
  t.equal(merged.slowestMs.length, 480_000, 'every put of two long rounds');
  t.equal(merged.atMs[480_000 - 1], 2_400_000 + 2_399_990);
  t.equal(merged.slowestMs[240_000 + 3], 30 % 7);
});

t.test('rounds of different workloads or systems are refused', async (t) => {
  const a = round([1]);
  t.throws(() => mergeRounds([a, { ...a, target: 'etcd' }]), /mixed/);
  t.throws(() => mergeRounds([a, { ...a, workload: 'put' }]), /mixed/);
});

t.test('empty rounds merge to an empty latency', async (t) => {
  const m = mergeLatency([{ latency: new Histogram().summary(), histogram: [] }]);
  t.equal(m.latency.count, 0);
  t.same(m.histogram, []);
});

t.test('round order: flips every round, and no system starts a workload right after its own last round', async (t) => {
  for (let rounds = 1; rounds <= 6; rounds++) {
    const runs: string[] = [];
    const starts = new Map<string, number>();
    for (let w = 0; w < 9; w++) {
      for (let r = 0; r < rounds; r++) {
        const order = roundOrder(['capstan', 'etcd'], w, r, rounds);
        t.same([...order].sort(), ['capstan', 'etcd'], 'every system runs every round');
        if (r > 0) t.same(order, roundOrder(['capstan', 'etcd'], w, r - 1, rounds).reverse(), 'the order flips within a workload');
        starts.set(order[0]!, (starts.get(order[0]!) ?? 0) + 1);
        if (w > 0 && r === 0) t.not(order[0], runs.at(-1), `rounds=${rounds}: workload ${w} starts with the system that did not just run`);
        runs.push(...order);
      }
    }
    // Within a workload, first place is shared as evenly as the count of rounds allows.
    const total = 9 * rounds;
    t.ok(Math.abs((starts.get('capstan') ?? 0) - (starts.get('etcd') ?? 0)) <= 9 * (rounds % 2), `rounds=${rounds}: first places ${JSON.stringify([...starts])} of ${total}`);
  }
  t.same(roundOrder(['capstan'], 3, 1, 5), ['capstan'], 'one system runs alone');
});
