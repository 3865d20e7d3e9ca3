// The tables and the HTML report from hand-made results: both systems in every chart, the ratio
// row, the targets' verdicts, and nothing fetched from elsewhere.
import t from 'tap';
import { Histogram } from '../src/hist.js';
import { histOf } from './helpers.js';
import type { TargetName, WorkloadName } from '../src/flags.js';
import { fsyncStats } from '../src/metrics.js';
import { BUSY_OTHER_PERCENT, checksTable, checkTargets, compare, diskTable, memoryTable, profilesText, putTailPoints, renderHtml, workloadTable, type BenchResults } from '../src/report.js';
import type { ProfileSummary } from '../src/flame.js';
import type { WorkloadResult } from '../src/workloads.js';

function fake(workload: WorkloadName, target: TargetName, scale: number, extra: Record<string, unknown> = {}): WorkloadResult {
  const h = new Histogram();
  for (let i = 1; i <= 1000; i++) h.record(i * 10 * scale);
  return {
    workload,
    target,
    description: `${workload} described`,
    channels: 2,
    inflight: 2,
    durationMs: 3000,
    ops: 1000,
    errors: 0,
    errorSamples: [],
    opsPerSec: 1000 / 3 / scale,
    latency: h.summary(),
    histogram: h.buckets(),
    throughput: [300 / scale, 350 / scale, 350 / scale],
    extra,
  };
}

const WATCH_EXTRA = { watchers: 100, allReceived: true, missingEvents: 0, receivedEvents: 300, expectedEvents: 300, watchersComplete: 100, putLatency: undefined };

function results(): WorkloadResult[] {
  return [
    fake('put', 'capstan', 1),
    fake('put', 'etcd', 2),
    fake('put-seq', 'capstan', 1),
    fake('put-seq', 'etcd', 0.5),
    fake('range', 'capstan', 1),
    fake('range', 'etcd', 1),
    fake('watch', 'capstan', 1, WATCH_EXTRA),
    fake('watch', 'etcd', 1, WATCH_EXTRA),
  ];
}

/** A quiet run's results around `rs`, with `more` on top. */
function runOf(rs: WorkloadResult[], more: Partial<BenchResults> = {}): BenchResults {
  return {
    tool: 'capstan-bench',
    schema: 1,
    startedAt: '2026-01-01T00:00:00.000Z',
    finishedAt: '2026-01-01T00:01:00.000Z',
    command: ['npm', 'run', 'bench'],
    host: { cpus: 2, cpuModel: 'test', memoryGiB: 1, node: 'v20', platform: 'linux', loadavgStart: [1, 1, 1], loadavgEnd: [1, 1, 1] },
    settings: {},
    results: rs,
    disk: undefined,
    comparisons: compare(rs),
    checks: [],
    ...more,
  };
}

t.test('ratios are capstan / etcd, and the targets are judged from them', async (t) => {
  const rs = results();
  const cmp = compare(rs);
  t.same(
    cmp.map((c) => c.workload),
    ['put', 'put-seq', 'range', 'watch'],
  );
  const put = cmp[0]!;
  t.ok(Math.abs(put.opsPerSec - 2) < 1e-9, 'twice the throughput');
  t.ok(put.p50 < 0.51 && put.p50 > 0.49, 'half the latency');
  const checks = checkTargets(rs, cmp, 3);
  t.same(
    checks.map((c) => c.met),
    [true, true, false, true, true],
    'put throughput, put p99, put-seq p50 (missed), range throughput, watch p99',
  );
  t.same(checkTargets(rs, cmp, 5), [], 'the targets are for 3 members');
  const md = workloadTable(rs.slice(0, 2), put);
  t.match(md, /^### put: put described/);
  t.match(md, /\| capstan \| 333 \|/);
  t.match(md, /\| etcd \| 167 \|/);
  t.match(md, /\| capstan\/etcd \| 2\.00x \(higher better\) \| 0\.50x \|/);
  t.match(md, /latencies below 1\.00x = Capstan faster/);
  t.notMatch(workloadTable(rs.slice(0, 1), undefined), /capstan\/etcd/, 'no ratio row for one system');
});

t.test('each target is also judged round by round, Capstan\'s round i against etcd\'s', async (t) => {
  const rs = results();
  const figures = (ops: number[], p50: number[], p99: number[]) => ops.map((o, i) => ({ opsPerSec: o, p50: p50[i]!, p99: p99[i]! }));
  const [putC, putE, seqC, seqE, , , watchC, watchE] = rs;
  putC!.roundFigures = figures([300, 200, 400], [1, 1, 1], [10, 30, 10]);
  putE!.roundFigures = figures([200, 200, 200], [1, 1, 1], [20, 20, 20]);
  seqC!.roundFigures = figures([1, 1], [2, 2], [1, 1]);
  seqE!.roundFigures = figures([1, 1, 1], [1, 1, 1], [1, 1, 1]);
  watchC!.roundFigures = figures([1, 1], [1, 1], [24, 18]);
  watchE!.roundFigures = figures([1, 1], [1, 1], [20, 20]);
  const checks = checkTargets(rs, compare(rs), 3);
  const byGoal = (s: string) => checks.find((c) => c.goal.startsWith(s))!;
  const tput = byGoal('concurrent puts: throughput');
  t.same(tput.rounds?.held, 2, 'throughput: 1.5x, 1.0x, 2.0x against at least 1.2x');
  t.ok(Math.abs(tput.rounds!.ratios[0]! - 1.5) < 1e-9 && Math.abs(tput.rounds!.ratios[2]! - 2) < 1e-9);
  t.same(byGoal('concurrent puts: p99').rounds?.held, 2, 'p99: 0.5x, 1.5x, 0.5x against at most 1.00x');
  t.notOk('rounds' in byGoal('sequential'), 'rounds that do not pair up: none');
  t.notOk('rounds' in byGoal('linearizable'), 'no rounds recorded: none');
  const watch = byGoal('watch');
  t.same(watch.rounds, { ratios: [1.2, 0.9], held: 1 });
  const md = checksTable(checks);
  t.match(md, /\| goal \| capstan\/etcd \| met \| each round \(met in\) \|/);
  t.match(md, /\| watch \(100 watchers\)[^\n]*\| 1\.00x \| yes \| 1\.20x 0\.90x \(1 of 2\) \|/, 'the verdict is the pooled figure\'s, the rounds beside it');
  t.match(md, /\| linearizable reads[^\n]*\| - \|/);
  const single = checksTable(checkTargets(results(), compare(results()), 3));
  t.match(single, /\| goal \| capstan\/etcd \| met \|\n/, 'no check has rounds (--rounds 1): no rounds column');
  t.notMatch(single, /each round/);
});

t.test('the watch table has the puts\' own acknowledgement latency beside the events\'', async (t) => {
  const acks = histOf(Array.from({ length: 100 }, (_, i) => (i >= 95 ? 12 : 2)));
  const rs = [fake('watch', 'capstan', 1, { ...WATCH_EXTRA, putLatency: acks.summary() }), fake('watch', 'etcd', 1, WATCH_EXTRA)];
  const md = workloadTable(rs, compare(rs)[0]);
  t.match(md, /\| all received \| put ack p50\/p99 ms \|/);
  t.match(md, /\| capstan \|[^\n]*\| yes \| 2\.\d+\/12\.\d+ \|/, 'p50 and p99 of the acknowledgements');
  t.match(md, /\| etcd \|[^\n]*\| yes \| - \| - \|/, 'none recorded: a dash');
});

t.test('the watch table splits the event p99 between the leader\'s watchers and the followers\'', async (t) => {
  const leader = histOf(Array.from({ length: 100 }, (_, i) => (i >= 98 ? 9 : 2)));
  const followers = histOf(Array.from({ length: 100 }, (_, i) => (i >= 98 ? 30 : 3)));
  const split = { leaderWatchers: 1, leaderWatchLatency: leader.summary(), followerWatchLatency: followers.summary() };
  const alone = { leaderWatchers: 1, leaderWatchLatency: leader.summary(), followerWatchLatency: new Histogram().summary() };
  const rs = [fake('watch', 'capstan', 1, { ...WATCH_EXTRA, ...split }), fake('watch', 'etcd', 1, { ...WATCH_EXTRA, ...alone })];
  const md = workloadTable(rs, compare(rs)[0]);
  t.match(md, /\| put ack p50\/p99 ms \| p99 at leader\/followers ms \|/);
  t.match(md, /\| capstan \|[^\n]*\| 9\.\d+\/(29|30|31)\.?\d* \|/, 'each side its own p99');
  t.match(md, /\| etcd \|[^\n]*\| 9\.\d+\/- \|/, 'no follower watchers (one member): a dash');
  const unknown = workloadTable([fake('watch', 'capstan', 1, { ...WATCH_EXTRA, putLatency: leader.summary() })], undefined);
  t.match(unknown, /\| capstan \|[^\n]*\| yes \| 2\.\d+\/9\.\d+ \| - \|/, 'leader unknown (--endpoints): a dash');
});

t.test('report.html: every workload has a latency and a throughput chart with both systems', async (t) => {
  const rs = results();
  const cmp = compare(rs);
  const fs = fsyncStats({ buckets: [[0.001, 5], [0.002, 9], [Infinity, 10]], count: 10, sum: 0.012 });
  const raw = new Histogram();
  for (let i = 0; i < 50; i++) raw.record(500 + i * 20);
  const report: BenchResults = {
    tool: 'capstan-bench',
    schema: 1,
    startedAt: '2026-01-01T00:00:00.000Z',
    finishedAt: '2026-01-01T00:01:00.000Z',
    command: ['npm', 'run', 'bench', '--', '--against', 'etcd', '<script>'],
    host: { cpus: 2, cpuModel: 'test', memoryGiB: 1, node: 'v20', platform: 'linux', loadavgStart: [9, 9, 9], loadavgEnd: [1, 1, 1] },
    settings: { members: 3, endpoints: undefined },
    results: rs,
    disk: { raw: { dir: '/tmp/x', samples: 50, latency: raw.summary(), histogram: raw.buckets() }, walFsync: { capstan: fs, etcd: fs } },
    comparisons: cmp,
    checks: checkTargets(rs, cmp, 3),
  };
  const html = renderHtml(report);
  t.match(html, /^<!doctype html>/);
  t.match(html, /<th>met<\/th><\/tr>/, 'no rounds recorded: the targets\' table has no rounds column');
  const withRounds = renderHtml({ ...report, checks: report.checks.map((c, i) => (i === 0 ? { ...c, rounds: { ratios: [1.5, 0.5], held: 1 } } : c)) });
  t.match(withRounds, /<th>each round \(met in\)<\/th>/, 'rounds recorded: the column');
  t.match(withRounds, /<td>1\.50x 0\.50x \(1 of 2\)<\/td>/);
  t.match(withRounds, /<td>-<\/td>/, 'a check without rounds: a dash');
  t.notMatch(html, /<script/i, 'no script, and the command is escaped');
  t.notMatch(html, /https?:\/\/(?!www\.w3\.org\/2000\/svg)/, 'nothing loaded from elsewhere');
  for (const w of ['put', 'put-seq', 'range', 'watch']) {
    const section = html.slice(html.indexOf(`<h2 id="${w}">`), html.indexOf('<h2', html.indexOf(`<h2 id="${w}">`) + 1));
    const svgs = section.match(/<svg[\s\S]*?<\/svg>/g) ?? [];
    t.equal(svgs.length, 2, `${w}: two charts`);
    for (const svg of svgs) {
      t.match(svg, /data-series="capstan"/, `${w}: capstan series`);
      t.match(svg, /data-series="etcd"/, `${w}: etcd series`);
      const points = [...svg.matchAll(/<polyline points="([^"]+)"/g)].map((m) => m[1]!.split(' ').length);
      t.ok(points.every((n) => n >= 3), `${w}: every series has points`);
      t.notMatch(svg, /NaN|Infinity/, `${w}: finite coordinates`);
    }
  }
  t.match(html, /<h2 id="disk">/);
  t.match(html, /raw fdatasync/);
  t.match(html, /capstan WAL fsync/);
  t.match(html, /The machine was busy/, 'no CPU measure of other processes: the load average decides');
  const measured = (other: number): string => renderHtml({ ...report, host: { ...report.host, otherCpuMaxPercent: other } });
  t.match(measured(BUSY_OTHER_PERCENT + 15), new RegExp(`Other processes kept up to ${BUSY_OTHER_PERCENT + 15}% of a CPU busy`), 'other processes measured busy');
  t.notMatch(measured(BUSY_OTHER_PERCENT - 15), /Other processes kept|The machine was busy/, 'measured quiet: a high load average at start (the build) is not a verdict');
  t.match(html, /Targets \(issue 8\)/);
  const md = diskTable(report.disk!, ['capstan', 'etcd']);
  t.match(md, /\| raw 4 KiB write \+ fdatasync \(no server\) \| 50 \|/);
  t.match(md, /\| capstan WAL fsync .* \| 10 \| 1\.000 \|/);
  t.match(md, /capstan\/etcd \(latencies: lower better\) \| 1\.00x/);
  t.notMatch(html, /CPU profiles/, 'no profiles section without --cpu-prof');
});

t.test('memory: the members\' resident set in each workload\'s table, and each member\'s peak at the end', async (t) => {
  const [c, e] = [fake('put', 'capstan', 1), fake('put', 'etcd', 2)];
  c.memory = { membersRssMiB: 750.4 };
  e.memory = { membersRssMiB: 250 };
  const md = workloadTable([c, e], compare([c, e])[0]);
  t.match(md, /\| CPU % members\/bench \| RSS MiB members \|\n/);
  t.match(md, /\| capstan \|[^\n]*\| 750 \|\n/);
  t.match(md, /\| etcd \|[^\n]*\| 250 \|\n/);
  t.match(md, /\| capstan\/etcd \|[^\n]*\| 3\.00x \|\n/, 'the ratio in the last column');
  t.match(md, /RSS below 1\.00x = Capstan smaller/);
  const unread = [fake('put', 'capstan', 1), e];
  t.match(workloadTable(unread, compare(unread)[0]), /\| capstan \|[^\n]*\| - \|\n[^]*\| capstan\/etcd \|[^\n]*\| - \|\n/, 'one system unread (--endpoints): dashes');

  const memory = {
    capstan: [
      { name: 'm0', leader: true, rssMiB: 250, peakRssMiB: 262 },
      { name: 'm1', leader: false, rssMiB: 240, peakRssMiB: 250 },
    ],
    etcd: [
      { name: 'm0', leader: false, rssMiB: 90, peakRssMiB: 100 },
      { name: 'm1', leader: true, rssMiB: 70, peakRssMiB: 80 },
    ],
  };
  const table = memoryTable(memory, ['capstan', 'etcd'])!;
  t.match(table, /^### memory: the members' resident set\n/);
  t.match(table, /\| capstan \| m0 \(leader at start\) 262, m1 250 \| 512 \| 490 \|/, 'each peak, then the peaks and the ends added up');
  t.match(table, /\| etcd \| m0 100, m1 \(leader at start\) 80 \| 180 \| 160 \|/);
  t.match(table, /\| capstan\/etcd \|  \| 2\.84x \| 3\.06x \|/);
  t.notMatch(memoryTable({ capstan: memory.capstan }, ['capstan'])!, /\| capstan\/etcd \|/, 'one system: no ratio row');
  t.equal(memoryTable({}, ['capstan', 'etcd']), undefined, 'nothing read (--endpoints): no table');

  const report = runOf([c, e], { memory });
  const html = renderHtml(report);
  t.match(html, /<th>RSS MiB members<\/th><\/tr>/);
  t.match(html, /<td>750<\/td><\/tr>/);
  t.match(html, /<td>3\.00x ↓<\/td><\/tr>/);
  const section = html.slice(html.indexOf('<h2 id="memory">'));
  t.match(section, /<td>m0 \(leader at start\) 262, m1 250<\/td><td>512<\/td><td>490<\/td>/);
  t.notMatch(renderHtml({ ...report, memory: undefined }), /<h2 id="memory">/, 'none read: no section');
  t.notMatch(table, /at rest/, 'no --rest: no column');

  // --rest: what each member held once both clusters were left idle.
  const rested = {
    capstan: memory.capstan.map((m, i) => ({ ...m, restRssMiB: [120, 100][i]! })),
    etcd: memory.etcd.map((m, i) => ({ ...m, restRssMiB: [60, 50][i]! })),
  };
  const restTable = memoryTable(rested, ['capstan', 'etcd'], 40_000)!;
  t.match(restTable, /\| RSS MiB at the end, all members \| RSS MiB after 40 s at rest, all members \|/);
  t.match(restTable, /\| capstan \| m0 \(leader at start\) 262, m1 250 \| 512 \| 490 \| 220 \|/, 'the rest column: the members added up');
  t.match(restTable, /\| etcd \|[^\n]*\| 180 \| 160 \| 110 \|/);
  t.match(restTable, /\| capstan\/etcd \|  \| 2\.84x \| 3\.06x \| 2\.00x \|/, 'and its ratio');
  t.match(restTable, /at rest: VmRSS after both clusters were left idle 40 s/);
  const halfRested = { capstan: rested.capstan, etcd: memory.etcd };
  t.match(memoryTable(halfRested, ['capstan', 'etcd'], 40_000)!, /\| etcd \|[^\n]*\| 160 \| - \|\n\| capstan\/etcd \|[^\n]*\| - \|/, 'a system not read after the rest: dashes');
  t.notMatch(memoryTable(memory, ['capstan', 'etcd'], 40_000)!, /at rest/, 'nothing read after the rest: no column');
  const restSection = renderHtml(runOf([c, e], { memory: rested, settings: { restMs: 40_000 } }));
  t.match(restSection.slice(restSection.indexOf('<h2 id="memory">')), /<th>RSS MiB after 40 s at rest, all members<\/th>[^]*<td>512<\/td><td>490<\/td><td>220<\/td>/, 'the HTML section has it too');
});

t.test('report.html: the watch workload\'s puts over time, when recorded', async (t) => {
  const tail = (slow: number): WorkloadResult['putTail'] => ({ atMs: [0, 10, 20, 30], slowestMs: [2, slow, 2, 3] });
  const rs = results().map((r) => (r.workload === 'watch' ? { ...r, putTail: tail(r.target === 'capstan' ? 40 : 20) } : r));
  const html = renderHtml(runOf(rs));
  const from = html.indexOf('<h2 id="watch">');
  const svgs = html.slice(from, html.indexOf('<h2', from + 1)).match(/<svg[\s\S]*?<\/svg>/g) ?? [];
  t.equal(svgs.length, 3, 'a third chart');
  t.match(svgs[2]!, /aria-label="watch: each put's slowest event"/);
  const lines = [...svgs[2]!.matchAll(/<polyline points="([^"]+)" fill="none" stroke="[^"]+" stroke-width="2" data-series="(\w+)"/g)].map((m) => [m[2], m[1]!.split(' ').length]);
  t.same(lines, [['capstan', 4], ['etcd', 4]], 'one point a put, each system');
  const put = html.slice(html.indexOf('<h2 id="put">'), html.indexOf('<h2', html.indexOf('<h2 id="put">') + 1));
  t.equal(put.match(/<svg/g)?.length, 2, 'other workloads: two charts');
});

t.test('the put chart: every put up to its limit, past it the slowest of each slice at its own time', async (t) => {
  t.same(putTailPoints({ atMs: [0, 500, 1500], slowestMs: [2, 9, 3] }, 3), [[0, 2], [0.5, 9], [1.5, 3]], 'few puts: each one');
  // 60,000 puts 10 ms apart (a 600 s run), a 40 ms spike every 545 ms.
  const atMs = Array.from({ length: 60_000 }, (_, i) => i * 10);
  const slowestMs = atMs.map((at) => (at % 545 < 10 ? 40 : 2 + (at % 7) / 10));
  const points = putTailPoints({ atMs, slowestMs }, 2000);
  t.ok(points.length <= 2000 && points.length > 1900, `at most the limit: ${points.length}`);
  t.ok(points.every((p, i) => i === 0 || p[0] > points[i - 1]![0]), 'in time order');
  const byAt = new Map(atMs.map((at, i) => [at / 1000, slowestMs[i]!]));
  t.ok(points.every(([at, ms]) => byAt.get(at) === ms), 'each point is a put as it was');
  const spikes = atMs.filter((_, i) => slowestMs[i] === 40).length;
  t.equal(points.filter((p) => p[1] === 40).length, spikes, 'every spike kept (545 ms apart, in slices of 300 ms)');
});

t.test('--cpu-prof: each member\'s flame graph and busiest functions, in the console and report.html', async (t) => {
  const profile = (member: string, leader: boolean, busyMs: number): ProfileSummary => ({
    member,
    pid: 100,
    leader,
    profile: `prof/CPU.1.2.100.0.001.cpuprofile`,
    flame: `prof/${member}.flame.svg`,
    profiledMs: 20_000,
    busyMs,
    top: [
      { name: 'writeBuffer', selfMs: 400, share: 0.2 },
      { name: '(garbage collector)', selfMs: 200, share: 0.1 },
      { name: 'apply <mvcc>/apply.js:3', selfMs: 100, share: 0.05 },
      { name: 'fourth', selfMs: 50, share: 0.025 },
    ],
  });
  const profiles = [profile('m0', true, 2_000), profile('m1', false, 1_000)];
  const text = profilesText(profiles, '/r/prof');
  t.match(text, /^CPU profiles of the Capstan members \(flame graphs and profiles in \/r\/prof\):/);
  t.match(text, /\n  m0 \(leader at start\): busy 2\.0 s of 20 s \(10%\), prof\/m0\.flame\.svg; most time in writeBuffer 20\.0%, \(garbage collector\) 10\.0%, apply <mvcc>\/apply\.js:3 5\.0%$/m);
  t.notMatch(text, /fourth/, 'three functions per member in the console');
  t.match(text, /\n  m1: busy 1\.0 s/);
  t.equal(profilesText([], '/r/prof'), 'CPU profiles: none written to /r/prof');
  const rs = results();
  const cmp = compare(rs);
  const html = renderHtml(runOf(rs, { command: ['npm', 'run', 'bench', '--', '--cpu-prof'], comparisons: cmp, profiles }));
  const section = html.slice(html.indexOf('<h2 id="profiles">'));
  t.match(section, /<h3>m0 \(leader at start\)<\/h3><p class="note"><a href="prof\/m0\.flame\.svg">flame graph<\/a> · <a href="prof\/CPU\.1\.2\.100\.0\.001\.cpuprofile">profile<\/a>; busy 2\.0 s of 20 s \(10%\)/);
  t.match(section, /<td><code>apply &lt;mvcc&gt;\/apply\.js:3<\/code><\/td><td>100<\/td><td>5\.0%<\/td>/, 'a function per row, escaped');
  t.match(section, /<code>fourth<\/code>/, 'report.html lists more than the console');
  t.notMatch(html, /<script/i);
});
