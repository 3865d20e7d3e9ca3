// One short run of the command on a 1-member Capstan cluster it starts: concurrent puts, the watch
// and the disk row. The JSON must hold sane numbers and the channels must be distinct TCP
// connections; nothing is asserted about speed (test machines are noisy).
import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BenchResults } from '../src/report.js';
import { startCluster } from '../src/targets.js';

const MAIN = fileURLToPath(new URL('../src/main.js', import.meta.url));
const RUN_TIMEOUT_MS = 120_000;

/** Runs the command with `args`, stopping it if it outlives RUN_TIMEOUT_MS; its exit code and output. */
async function runBench(t: Test, args: readonly string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  // The bench stops its members as it exits (SIGTERM included); SIGKILL only if that hangs.
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  });
  const code = await new Promise<number | null>((resolve) => {
    const timer = setTimeout(() => {
      child.kill('SIGTERM');
      setTimeout(() => child.kill('SIGKILL'), 10_000).unref();
    }, RUN_TIMEOUT_MS);
    child.once('exit', (c) => {
      clearTimeout(timer);
      resolve(c);
    });
  });
  return { code, stdout, stderr };
}

t.test('a short run: puts, watch and disk on one Capstan member', async (t) => {
  const dir = t.testdir();
  const args = [
    '--members=1',
    '--workloads=put,watch,disk',
    '--duration=2s',
    '--warmup=500ms',
    '--settle=1s',
    '--channels=3',
    '--inflight=4',
    '--watchers=6',
    '--watch-rate=40',
    '--fsync-samples=20',
    '--rest=1s',
    `--results=${dir}`,
  ];
  const { code, stdout, stderr } = await runBench(t, args);
  t.equal(code, 0, `exit 0\n${stderr}`);

  const r = JSON.parse(readFileSync(join(dir, 'results.json'), 'utf8')) as BenchResults;
  t.equal(r.tool, 'capstan-bench');
  t.same(r.settings.targets, ['capstan']);
  t.same(r.settings.tcpConnections, { capstan: 3 }, 'three channels are three TCP connections');
  t.match(r.settings.cluster, { heartbeatMs: 100, electionMs: 1000 });
  t.same(
    r.results.map((x) => x.workload),
    ['put', 'watch'],
  );
  for (const x of r.results) {
    t.ok(x.ops > 0, `${x.workload}: ops ${x.ops} > 0`);
    t.ok(x.opsPerSec > 0, `${x.workload}: ops/s > 0`);
    t.equal(x.errors, 0, `${x.workload}: no errors ${x.errorSamples.join('; ')}`);
    const l = x.latency;
    t.ok(l.min > 0 && l.min <= l.p50 && l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.max, `${x.workload}: 0 < min <= p50 <= p90 <= p99 <= max (${JSON.stringify(l)})`);
    t.equal(l.count, x.ops, `${x.workload}: every op in the histogram`);
    t.equal(
      x.histogram.reduce((n, [, , c]) => n + c, 0),
      x.ops,
      `${x.workload}: the buckets add up`,
    );
    t.ok(x.throughput.length === 2 && x.throughput.every((n) => n >= 0), `${x.workload}: a count per second`);
    t.ok(x.walFsync !== undefined && x.walFsync.fsyncs > 0, `${x.workload}: the member's WAL synced during the window`);
    t.ok(x.cpu !== undefined && x.cpu.clientPercent > 0 && x.cpu.membersPercent! > 0, `${x.workload}: CPU used by the bench and the member (${JSON.stringify(x.cpu)})`);
    t.ok(x.cpu !== undefined && typeof x.cpu.otherPercent === 'number' && x.cpu.otherPercent >= 0, `${x.workload}: CPU used by other processes (${JSON.stringify(x.cpu)})`);
    // A node process holds tens of MiB at least, and none of these a GiB.
    t.ok(x.memory !== undefined && x.memory.membersRssMiB > 20 && x.memory.membersRssMiB < 1024, `${x.workload}: the member's resident set (${JSON.stringify(x.memory)})`);
  }
  const [m0] = r.memory?.capstan ?? [];
  t.ok(m0 !== undefined && m0.name === 'm0' && m0.leader && m0.rssMiB > 20 && m0.rssMiB <= m0.peakRssMiB, `the member's memory at the end, and its peak (${JSON.stringify(r.memory)})`);
  t.match(stdout, /### memory: the members' resident set\n\n[^]*\| capstan \| m0 \(leader at start\) \d+ \| \d+ \| \d+ \| \d+ \|/, 'with the column for --rest');
  t.ok(m0 !== undefined && m0.restRssMiB !== undefined && m0.restRssMiB > 20 && m0.restRssMiB <= m0.peakRssMiB, `its memory after 1 s at rest (${m0?.restRssMiB} MiB)`);
  t.match(stderr, /leaving the members idle for 1 s, then reading their memory again/, "said on the progress line");
  t.equal(r.settings.restMs, 1000);
  const put = r.results.find((x) => x.workload === 'put')!;
  t.equal(put.channels, 3);
  t.equal(put.inflight, 4);
  const watch = r.results.find((x) => x.workload === 'watch')!;
  const e = watch.extra as Record<string, number | boolean>;
  t.equal(e.watchers, 6);
  t.ok((e.putsAcknowledged as number) > 0, 'puts acknowledged');
  t.equal(e.expectedEvents, (e.putsAcknowledged as number) * 6);
  t.equal(e.receivedEvents, e.expectedEvents, 'every watcher saw every acknowledged put');
  t.equal(e.missingEvents, 0);
  t.equal(e.duplicateEvents, 0);
  t.equal(e.watchersComplete, 6);
  t.equal(e.allReceived, true);
  t.equal(watch.ops, e.expectedEvents, 'one latency per watcher-event');
  // One member, so every watcher is on the leader.
  t.equal(e.leaderWatchers, 6);
  const byRole = watch.extra as Record<string, { count: number }>;
  t.equal(byRole.leaderWatchLatency!.count, watch.ops, 'every event at the leader');
  t.equal(byRole.followerWatchLatency!.count, 0, 'no followers');
  const tail = watch.putTail!;
  t.equal(tail.atMs.length, e.putsAcknowledged, 'each acknowledged put in the chart');
  t.equal(tail.slowestMs.length, tail.atMs.length);
  t.ok(tail.atMs.every((at, i) => at >= 0 && at < watch.durationMs && (i === 0 || at >= tail.atMs[i - 1]!)), 'sent within the window, in order');
  t.ok(Math.abs(Math.max(...tail.slowestMs) - watch.latency.max) <= 0.01, 'the slowest put holds the slowest event');

  t.ok(r.disk?.raw !== undefined && r.disk.raw.samples === 20, 'raw fdatasync measured');
  t.ok(r.disk!.raw!.latency.p50 > 0 && r.disk!.raw!.latency.p50 <= r.disk!.raw!.latency.p99);
  const wal = r.disk!.walFsync.capstan!;
  t.ok(wal.fsyncs > 0 && wal.p50 > 0 && wal.p50 <= wal.p99, `WAL fsyncs from /metrics: ${JSON.stringify({ n: wal.fsyncs, p50: wal.p50, p99: wal.p99 })}`);

  const html = readFileSync(join(dir, 'report.html'), 'utf8');
  t.match(html, /<h2 id="put">/);
  t.match(html, /<h2 id="watch">/);
  t.match(html, /data-series="capstan"/);
  t.match(html, /watch: each put's slowest event/, 'the watch puts chart');
  t.equal(r.settings.settleMs, 1000);
  t.equal(r.host.otherCpuMaxPercent, Math.max(...r.results.map((x) => x.cpu!.otherPercent!)), 'the busiest window is in the host section');
  // Where DAMON runs (this workplace's VMs), kdamond's CPU is read in every window and summed per system.
  if (r.host.damon !== undefined) {
    for (const x of r.results) t.ok(x.cpu!.kdamondPercent! >= 0, `${x.workload}: kdamond's CPU in the window (${JSON.stringify(x.cpu)})`);
    t.ok(r.host.damon.byTarget!.capstan! >= 0, `kdamond beside capstan: ${JSON.stringify(r.host.damon.byTarget)}`);
    t.match(stdout, /in the measured windows [\d.]+% beside capstan/);
  } else {
    t.ok(r.results.every((x) => x.cpu!.kdamondPercent === undefined), 'no kdamond, no figure');
  }
  const settled = /capstan settling: (\d+) ops over 1\.0 s \(put, put-seq\), not recorded/.exec(stderr);
  t.ok(settled !== null && Number(settled[1]) > 0, `the member was settled before the first workload: ${settled?.[0] ?? stderr}`);
  t.ok(stderr.indexOf('settling:') < stderr.indexOf('capstan put:'), 'settling comes before the first workload');
  // Scraped once before any load, so the load generator's first fetch() is not in a window.
  t.match(stderr, /channels on 3 TCP connections; \/metrics from 1 of 1 members/, 'the member was scraped once before settling');
  t.ok(stderr.indexOf('/metrics from') < stderr.indexOf('settling:'), 'that scrape comes before settling');
  t.match(stdout, /### put: /);
  t.match(stdout, /\| capstan \| /);
  t.match(stdout, /report: .*report\.html/);

  // The member was started, logged, and stopped by the bench; its data is gone.
  const log = readFileSync(join(dir, 'capstan', 'm0.log'), 'utf8');
  t.match(log, /chaos: m0 \(pid \d+\) exited/, 'the member was stopped');
  t.notOk(existsSync(join(dir, 'data')), 'data removed');
  t.same(readdirSync(dir).sort(), ['capstan', 'report.html', 'results.json']);
});

t.test('--cpu-prof, --member-node-args and --member-flags: the member\'s profile, a flame graph drawn from it, both in the report; the flags on its command line', async (t) => {
  const dir = t.testdir();
  const { code, stdout, stderr } = await runBench(t, ['--members=1', '--workloads=put-seq', '--duration=1s', '--warmup=200ms', '--settle=0', '--rest=0', '--cpu-prof', '--member-node-args', '--trace-gc', '--member-flags', '--experimental-warning-apply-duration=60s', `--results=${dir}`]);
  t.equal(code, 0, `exit 0\n${stderr}`);
  const r = JSON.parse(readFileSync(join(dir, 'results.json'), 'utf8')) as BenchResults;
  // Under the test runner, whose hooks follow child processes, a member has a loader thread that
  // writes a profile too (m0-thread1); run by hand, one profile.
  t.ok(
    r.profiles!.every((x) => x.member === 'm0' || /^m0-thread\d+$/.test(x.member)),
    `every profile is the member's: ${r.profiles!.map((x) => x.member).join(', ')}`,
  );
  const p = r.profiles![0]!;
  t.equal(p.member, 'm0');
  t.equal(p.leader, true);
  t.match(p.profile, /^prof\/CPU\.\d+\.\d+\.\d+\.0\.\d+\.cpuprofile$/);
  t.equal(p.flame, 'prof/m0.flame.svg');
  t.ok(p.busyMs > 0 && p.busyMs <= p.profiledMs, `busy ${p.busyMs} of ${p.profiledMs} ms`);
  t.ok(p.top.length > 0 && p.top.every((x) => x.selfMs > 0 && x.share > 0 && x.share <= 1), 'its busiest functions, with time');
  t.match(readFileSync(join(dir, p.flame), 'utf8'), /^<svg [^]*capstan m0 \(leader at start\), pid \d+: CPU profile[^]*<\/svg>\n$/);
  t.match(stdout, /CPU profiles of the Capstan members \(flame graphs and profiles in .*prof\):\n  m0 \(leader at start\): busy /);
  t.match(readFileSync(join(dir, 'report.html'), 'utf8'), /<a href="prof\/m0\.flame\.svg">flame graph<\/a>/);
  // --member-node-args: after --cpu-prof's flags, before the member's script.
  t.match(readFileSync(join(dir, 'capstan', 'm0.log'), 'utf8'), /chaos: starting m0: \S+ --cpu-prof --cpu-prof-dir=\S+ --trace-gc \S+main\.js member /);
  t.same(r.settings.memberNodeArgs, ['--trace-gc']);
  // --member-flags: after the tool's own member flags.
  t.match(readFileSync(join(dir, 'capstan', 'm0.log'), 'utf8'), /chaos: starting m0: .* --snapshot-count=\d+ --experimental-warning-apply-duration=60s/);
  t.same(r.settings.memberFlags, ['--experimental-warning-apply-duration=60s']);
});

t.test('/metrics is scraped outside every measured window, and the WAL fsyncs are still counted', async (t) => {
  const dir = t.testdir();
  const cluster = await startCluster('capstan', { members: 1, resultsDir: join(dir, 'cluster'), cpuProf: false, memberNodeArgs: [], memberFlags: [], keepData: false });
  t.teardown(() => cluster.stop());
  // A pass-through in front of the member's /metrics that notes when each scrape came and went.
  const scrapes: { from: number; to: number }[] = [];
  const proxy = createServer((req, res) => {
    const from = Date.now();
    void fetch(`${cluster.metricsEndpoints[0]}${req.url ?? '/'}`)
      .then((r) => r.text())
      .then((body) => res.end(body, () => scrapes.push({ from, to: Date.now() })));
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  t.teardown(() => proxy.close());
  const metrics = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
  const endpoint = cluster.endpoints[0]!.replace(/^https?:\/\//, '');
  const { code, stderr } = await runBench(t, [
    `--endpoints=${endpoint}`,
    `--metrics-endpoints=${metrics}`,
    '--workloads=put,watch',
    '--duration=2s',
    '--warmup=600ms',
    '--settle=0',
    '--channels=2',
    '--inflight=2',
    '--watchers=2',
    '--watch-rate=20',
    `--results=${join(dir, 'run')}`,
  ]);
  t.equal(code, 0, `exit 0\n${stderr}`);
  const r = JSON.parse(readFileSync(join(dir, 'run', 'results.json'), 'utf8')) as BenchResults;
  const windows = r.results.flatMap((x) => x.windows ?? []);
  t.equal(windows.length, 2, 'a window per workload');
  t.ok(windows.every((w) => w.startMs < w.endMs), `each window opens before it closes: ${JSON.stringify(windows)}`);
  // One scrape when the tool connects, then one before and one after each window.
  t.equal(scrapes.length, 1 + 2 * windows.length, `scrapes: ${JSON.stringify(scrapes)}`);
  const inside = scrapes.filter((s) => windows.some((w) => s.from < w.endMs && s.to > w.startMs));
  t.same(inside, [], 'no scrape overlaps a window');
  for (const x of r.results) t.ok(x.walFsync !== undefined && x.walFsync.fsyncs > 0, `${x.workload}: the member's WAL fsyncs were counted`);
});
