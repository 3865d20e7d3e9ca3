#!/usr/bin/env node
/**
 * `npm run bench -- [--against etcd] [--quick] ...`: every workload on Capstan (and etcd), one
 * system loaded at a time, a table per workload on stdout, a progress bar on stderr, and
 * report.html + results.json in the results folder. See bench/README.md.
 */
import { mkdirSync, rmdirSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import { join, resolve } from 'node:path';
import { connectionsTo, hostPort, RawClient } from './client.js';
import { damonCpuByTarget, damonCpuSeconds, damonMonitors, describeDamon, type DamonMonitor } from './damon.js';
import { rawFdatasync } from './disk.js';
import { FlagError, parseArgs, USAGE, WORKLOAD_NAMES, type BenchArgs, type WorkloadName } from './flags.js';
import { drawFlames, PROFILE_DIR, type ProfileSummary } from './flame.js';
import { Histogram } from './hist.js';
import { addHistograms, EMPTY_HISTOGRAM, fsyncStats, scrapeWalFsync, subtractHistogram, type PromHistogram } from './metrics.js';
import { Progress } from './progress.js';
import { checksTable, checkTargets, compare, diskTable, memoryTable, profilesText, renderHtml, wasBusy, workloadTable, type BenchResults, type DiskResult } from './report.js';
import { CLUSTER_SETTINGS, cpuSeconds, givenEndpoints, machineBusySeconds, membersMemory, REPO_ROOT, residentKiB, startCluster, withRest, type Target } from './targets.js';
import { mergeRounds, roundArgs, roundOrder } from './rounds.js';
import { runWorkload, SETTLE_WORKLOADS, SPECS, type RunContext, type WorkloadResult } from './workloads.js';

type Runnable = Exclude<WorkloadName, 'disk'>;

/** What runOne reads at each edge of a measured window. */
interface EdgeMark {
  at: number;
  /** Date.now(), for the result's `windows`. */
  wallMs: number;
  /** CPU seconds so far. */
  client: number;
  members: number | undefined;
  machine: number | undefined;
  /** DAMON's kdamond threads, when any run and can be read. */
  kdamond: number | undefined;
  /** The members' resident memory, added up (KiB): read at the end edge only, after the CPU figures. */
  membersRssKiB?: number;
}

interface Live {
  target: Target;
  client: RawClient;
  prefix: string;
  /** WAL fsyncs over every measured window so far. */
  fsync: PromHistogram;
  connections: number | undefined;
}

function out(line = ''): void {
  process.stdout.write(`${line}\n`);
}

function helpText(): string {
  const lines = [USAGE, '', 'workloads:'];
  for (const w of WORKLOAD_NAMES) lines.push(`  ${w.padEnd(20)}${w === 'disk' ? "raw fdatasync vs the members' WAL fsync histograms" : SPECS[w].title}`);
  lines.push('', 'See bench/README.md.');
  return lines.join('\n');
}

/** How long before a measured window opens its WAL fsync histograms are scraped (see runOne). */
export const SCRAPE_LEAD_MS = 250;

/** One run of a workload on one system (one round of it); `fsync` is the members' WAL fsyncs around its window (SCRAPE_LEAD_MS), when scraped. */
async function runOne(
  live: Live,
  name: Runnable,
  args: BenchArgs,
  progress: Progress,
  step: number,
  round: string,
  damon: readonly DamonMonitor[],
): Promise<{ result: WorkloadResult; fsync: PromHistogram | undefined }> {
  const label = `${live.target.name} ${name}${round}`;
  progress.begin(step, label);
  const t0 = performance.now();
  // The WAL fsync histograms before the window (the one after it is taken once the workload returns).
  let before: Promise<PromHistogram | undefined> | undefined;
  // The window's edges: when, and the CPU used by then (this process, the members, the machine, kdamond).
  const edges: { start?: EdgeMark; end?: EdgeMark } = {};
  const mark = (edge: 'start' | 'end'): EdgeMark => {
    const u = process.cpuUsage();
    const pids = live.target.pids();
    const members = pids.map(cpuSeconds);
    const m: EdgeMark = {
      at: performance.now(),
      wallMs: Date.now(),
      client: (u.user + u.system) / 1e6,
      members: members.every((c) => c !== undefined) && members.length > 0 ? members.reduce((a, b) => a! + b!, 0)! : undefined,
      machine: machineBusySeconds(),
      kdamond: damon.length > 0 ? damonCpuSeconds(damon, cpuSeconds) : undefined,
    };
    if (edge === 'end') {
      const resident = pids.map(residentKiB);
      if (resident.length > 0 && resident.every((r) => r !== undefined)) m.membersRssKiB = resident.reduce((a, r) => a + r!.rss, 0);
    }
    return m;
  };
  const scrape = async (): Promise<PromHistogram | undefined> => {
    if (live.target.metricsEndpoints.length === 0) return undefined;
    const r = await scrapeWalFsync(live.target.metricsEndpoints);
    return r.answered === live.target.metricsEndpoints.length ? r.hist : undefined;
  };
  const ctx: RunContext = {
    client: live.client,
    args,
    target: live.target.name,
    prefix: live.prefix,
    leaderAddress: leaderAddress(live.target),
    progress: (fraction, ops) => progress.update(step, label, fraction, ops, Math.max(0, performance.now() - t0 - args.warmupMs)),
    window: (edge) => {
      // A warm-up whose lead timer has not fired yet (a busy event loop): scraped at the edge, as a last resort.
      if (edge === 'start') before ??= scrape();
      edges[edge] ??= mark(edge);
    },
  };
  // The WAL fsync histograms are scraped off the measured window: a scrape holds each member's
  // event loop (and this process) for milliseconds, and at the window's edge it fell on the first
  // measured requests. So the counts run from SCRAPE_LEAD_MS before the window opens (or from the
  // workload's start, if its warm-up is shorter) until its last request is answered.
  let lead: NodeJS.Timeout | undefined;
  if (args.warmupMs > SCRAPE_LEAD_MS) lead = setTimeout(() => (before ??= scrape()), args.warmupMs - SCRAPE_LEAD_MS);
  else await (before = scrape());
  let r: WorkloadResult;
  try {
    r = await runWorkload(name, ctx);
  } finally {
    clearTimeout(lead);
  }
  const after = scrape();
  if (edges.start && edges.end && edges.end.at > edges.start.at) {
    const secs = (edges.end.at - edges.start.at) / 1000;
    const { start, end } = edges;
    const clientPercent = (100 * (end.client - start.client)) / secs;
    const membersPercent = start.members !== undefined && end.members !== undefined ? (100 * (end.members - start.members)) / secs : undefined;
    r.cpu = { clientPercent, membersPercent };
    // /proc/stat counts in ticks, so a quiet machine can come out a little below zero.
    if (membersPercent !== undefined && start.machine !== undefined && end.machine !== undefined) {
      r.cpu.otherPercent = Math.max(0, (100 * (end.machine - start.machine)) / secs - clientPercent - membersPercent);
    }
    if (start.kdamond !== undefined && end.kdamond !== undefined) r.cpu.kdamondPercent = (100 * (end.kdamond - start.kdamond)) / secs;
  }
  if (edges.start && edges.end) r.windows = [{ startMs: edges.start.wallMs, endMs: edges.end.wallMs }];
  if (edges.end?.membersRssKiB !== undefined) r.memory = { membersRssMiB: edges.end.membersRssKiB / 1024 };
  const [from, to] = await Promise.all([before, after]);
  let fsync: PromHistogram | undefined;
  if (from !== undefined && to !== undefined) {
    fsync = subtractHistogram(to, from);
    live.fsync = addHistograms([live.fsync, fsync]);
  }
  const unit = name === 'watch' ? 'events' : 'ops';
  progress.end(
    step,
    `${label}: ${r.ops} ${unit}, ${Math.round(r.opsPerSec)} ${unit}/s, p50 ${r.latency.p50.toFixed(2)} ms, p99 ${r.latency.p99.toFixed(2)} ms${r.errors > 0 ? `, ${r.errors} errors (${r.errorSamples[0] ?? ''})` : ''}`,
  );
  return { result: r, fsync };
}

/** The leader's host:port at start, as the client's channels name it, when known. */
function leaderAddress(target: Target): string | undefined {
  return target.leader === undefined ? undefined : hostPort(target.endpoints[target.leader]!);
}

/** The measured window in which other processes used the most CPU, if that was measured. */
function busiestWindow(results: readonly WorkloadResult[]): { percent: number; label: string } | undefined {
  let best: { percent: number; label: string } | undefined;
  for (const r of results) {
    const p = r.cpu?.otherPercent;
    if (p !== undefined && (best === undefined || p > best.percent)) best = { percent: p, label: `${r.target} ${r.workload}` };
  }
  return best;
}

/** Each started member's memory as it is now, into `memory` by system (members that cannot be read are left out). */
function readMemory(lives: readonly Live[], memory: NonNullable<BenchResults['memory']>): void {
  for (const l of lives) {
    const ms = membersMemory(l.target);
    if (ms.length > 0) memory[l.target.name] = ms;
  }
}

/** --settle: SETTLE_WORKLOADS on one target, under a prefix of their own, nothing recorded. */
async function settle(live: Live, args: BenchArgs, progress: Progress, step: number): Promise<void> {
  const label = `${live.target.name} settling`;
  progress.begin(step, label);
  const share = Math.max(500, Math.floor(args.settleMs / SETTLE_WORKLOADS.length));
  const t0 = performance.now();
  let ops = 0;
  for (const [i, name] of SETTLE_WORKLOADS.entries()) {
    const r = await runWorkload(name, {
      client: live.client,
      args: { ...args, durationMs: share, warmupMs: 0 },
      target: live.target.name,
      prefix: `${live.prefix}settle/`,
      leaderAddress: leaderAddress(live.target),
      progress: (fraction, n) => progress.update(step, label, (i + fraction) / SETTLE_WORKLOADS.length, ops + n, performance.now() - t0),
      window: () => {},
    });
    ops += r.ops;
  }
  progress.end(step, `${label}: ${ops} ops over ${((share * SETTLE_WORKLOADS.length) / 1000).toFixed(1)} s (${SETTLE_WORKLOADS.join(', ')}), not recorded`);
}

async function main(argv: readonly string[]): Promise<number> {
  let args: BenchArgs;
  try {
    args = parseArgs(argv, REPO_ROOT);
  } catch (err) {
    if (err instanceof FlagError) {
      process.stderr.write(`bench: ${err.message}\n${USAGE}\n`);
      return 2;
    }
    throw err;
  }
  if (args.help) {
    out(helpText());
    return 0;
  }
  const startedAt = new Date();
  const loadavgStart = os.loadavg();
  const damon = damonMonitors();
  const damonCpuStart = damonCpuSeconds(damon, cpuSeconds);
  const dir = resolve(args.results);
  mkdirSync(dir, { recursive: true });
  const runnable = args.workloads.filter((w): w is Runnable => w !== 'disk');
  const withDisk = args.workloads.includes('disk');
  const totalSteps = (withDisk ? 1 : 0) + 1 + (args.settleMs > 0 && runnable.length > 0 ? args.targets.length : 0) + runnable.length * args.targets.length * args.rounds;
  const progress = new Progress(process.stderr, totalSteps);
  let step = 0;

  out(`# Capstan bench: ${args.targets.join(' vs ')}`);
  out();
  out(
    `${args.endpoints ? `endpoints ${args.endpoints.join(',')}` : `${args.members} members each, started here`}; ${args.settleMs > 0 ? `each system settled by ${args.settleMs / 1000} s of puts first; ` : ''}${args.durationMs / 1000} s per workload after ${args.warmupMs / 1000} s of warm-up${args.rounds > 1 ? ` (${args.rounds} alternating rounds of ${roundArgs(args, 1).durationMs / 1000} s, each after the first warmed up for ${roundArgs(args, 1).warmupMs / 1000} s)` : ''}; ` +
      `${args.channels} channels x ${args.inflight} in flight; results in ${dir}`,
  );
  out(`load average ${loadavgStart.map((l) => l.toFixed(1)).join(' ')} on ${os.cpus().length} CPUs${loadavgStart[0]! > os.cpus().length ? ' (busy at start; the build just before counts)' : ''}`);
  const damonNote = describeDamon(damon);
  if (damonNote !== undefined) out(damonNote);
  out();

  // The disk first, before any member runs.
  let raw: DiskResult['raw'];
  if (withDisk) {
    const rawDir = join(dir, 'data');
    progress.begin(++step, `raw fdatasync x ${args.fsyncSamples}`);
    const h = new Histogram();
    for (const ns of rawFdatasync(rawDir, args.fsyncSamples)) h.record(ns / 1000);
    raw = { dir: rawDir, samples: args.fsyncSamples, latency: h.summary(), histogram: h.buckets() };
    progress.end(step, `raw fdatasync: p50 ${raw.latency.p50.toFixed(3)} ms, p99 ${raw.latency.p99.toFixed(3)} ms`);
  }

  const lives: Live[] = [];
  const runId = Date.now().toString(36);
  const stopAll = async (): Promise<void> => {
    for (const l of lives) l.client.close();
    await Promise.allSettled(lives.map((l) => l.target.stop()));
  };
  let failures = 0;
  const results: (WorkloadResult & { walFsync?: ReturnType<typeof fsyncStats> })[] = [];
  const memory: NonNullable<BenchResults['memory']> = {};
  try {
    progress.begin(++step, args.endpoints ? 'connecting' : `starting ${args.targets.join(' and ')} (${args.members} members each)`);
    const started: Target[] = [];
    try {
      const targets = await Promise.all(
        args.targets.map(async (t) => {
          const target = args.endpoints
            ? givenEndpoints(t, args.endpoints, args.metricsEndpoints)
            : await startCluster(t, { members: args.members, resultsDir: dir, cpuProf: args.cpuProf, memberNodeArgs: args.memberNodeArgs, memberFlags: args.memberFlags, keepData: args.keepData });
          started.push(target);
          return target;
        }),
      );
      for (const target of targets) {
        // Connections of the load generator alone (the cluster keeps a status client of its own).
        const ports = target.endpoints.map((e) => Number(hostPort(e).split(':').pop()));
        const before = connectionsTo(ports);
        const client = await RawClient.open(target.endpoints, args.channels);
        const after = connectionsTo(ports);
        const connections = before === undefined || after === undefined ? undefined : after - before;
        lives.push({ target, client, prefix: `/bench/${runId}/${target.name}/`, fsync: EMPTY_HISTOGRAM, connections });
      }
    } catch (err) {
      await Promise.allSettled(started.filter((t) => !lives.some((l) => l.target === t)).map((t) => t.stop()));
      throw err;
    }
    // The first fetch() in a process loads and compiles Node's HTTP client: left to the first
    // measured window's edge, it stalled this process for about half a second there, and the
    // system measured first (Capstan) paid for it (watch p99 44-83 ms, against 17-23 ms with this).
    const answered = await Promise.all(lives.map(async (l) => (l.target.metricsEndpoints.length === 0 ? undefined : (await scrapeWalFsync(l.target.metricsEndpoints)).answered)));
    progress.end(
      step,
      lives
        .map((l, i) => {
          const metrics = answered[i] === undefined ? '' : `; /metrics from ${answered[i]} of ${l.target.metricsEndpoints.length} members`;
          return `${l.target.version}: ${l.target.endpoints.join(',')}${l.target.leader === 0 ? ' (leader first)' : ''}; ${args.channels} channels on ${l.connections ?? '?'} TCP connections${metrics}`;
        })
        .join('; '),
    );

    if (args.settleMs > 0 && runnable.length > 0) {
      for (const live of lives) {
        try {
          await settle(live, args, progress, ++step);
        } catch (err) {
          progress.note(`bench: ${live.target.name} settling failed: ${(err as Error).message}`);
        }
      }
    }
    for (const [wi, name] of runnable.entries()) {
      const done = new Map<Live, { results: WorkloadResult[]; fsync: (PromHistogram | undefined)[] }>();
      const failed = new Set<Live>();
      for (let round = 0; round < args.rounds; round++) {
        const order = roundOrder(lives, wi, round, args.rounds);
        const settings = roundArgs(args, round);
        for (const live of order) {
          step++;
          if (failed.has(live)) continue;
          try {
            const one = await runOne(live, name, settings, progress, step, args.rounds > 1 ? ` ${round + 1}/${args.rounds}` : '', damon);
            const d = done.get(live) ?? { results: [], fsync: [] };
            d.results.push(one.result);
            d.fsync.push(one.fsync);
            done.set(live, d);
          } catch (err) {
            failures++;
            failed.add(live);
            progress.note(`bench: ${live.target.name} ${name} failed: ${(err as Error).message}`);
          }
        }
      }
      const these: WorkloadResult[] = [];
      for (const live of lives) {
        const d = done.get(live);
        if (d === undefined || failed.has(live)) continue;
        const r: WorkloadResult & { walFsync?: ReturnType<typeof fsyncStats> } = mergeRounds(d.results);
        if (d.fsync.every((f) => f !== undefined)) r.walFsync = fsyncStats(addHistograms(d.fsync as PromHistogram[]));
        results.push(r);
        these.push(r);
      }
      if (these.length > 0) {
        these.sort((a, b) => args.targets.indexOf(a.target) - args.targets.indexOf(b.target));
        out(workloadTable(these, compare(these)[0]));
        out();
      }
    }
    readMemory(lives, memory);
    if (args.restMs > 0 && Object.keys(memory).length > 0) {
      // Both clusters idle at once: what each gives back with no load (a Capstan member collects
      // its heap after 30 s quiet; Go's runtime returns memory on its own schedule).
      progress.note(`leaving the members idle for ${args.restMs / 1000} s, then reading their memory again`);
      await new Promise((r) => setTimeout(r, args.restMs));
      for (const l of lives) {
        const ms = memory[l.target.name];
        if (ms !== undefined) memory[l.target.name] = withRest(ms, membersMemory(l.target));
      }
    }
  } finally {
    // Read before they stop (if the run did not get to it): what each member holds after the last
    // workload, and its peak.
    if (Object.keys(memory).length === 0) readMemory(lives, memory);
    progress.note(args.endpoints ? 'closing the channels' : 'stopping the members');
    await stopAll();
    // Members' data directories are gone unless kept; the folder that held them goes too if empty.
    if (!args.keepData) {
      try {
        rmdirSync(join(dir, 'data'));
      } catch {
        // kept data, or never made
      }
    }
  }

  const damonCpuEnd = damonCpuSeconds(damon, cpuSeconds);
  const runSeconds = (Date.now() - startedAt.getTime()) / 1000;
  const damonCpuPercent = damonCpuStart !== undefined && damonCpuEnd !== undefined && runSeconds > 0 ? (100 * (damonCpuEnd - damonCpuStart)) / runSeconds : undefined;
  const comparisons = compare(results);
  const checks = args.endpoints ? [] : checkTargets(results, comparisons, args.members);
  const busy = busiestWindow(results);
  let disk: DiskResult | undefined;
  if (withDisk) {
    disk = { raw, walFsync: {} };
    for (const l of lives) if (l.fsync.count > 0 || l.target.metricsEndpoints.length > 0) disk.walFsync[l.target.name] = fsyncStats(l.fsync);
    out(diskTable(disk, args.targets));
    out();
  }
  const memoryText = memoryTable(memory, args.targets, args.restMs);
  if (memoryText !== undefined) {
    out(memoryText);
    out();
  }
  if (checks.length > 0) {
    out(checksTable(checks));
    out();
    if (wasBusy({ cpus: os.cpus().length, loadavgStart, otherCpuMaxPercent: busy?.percent })) {
      out(
        busy !== undefined
          ? `(other processes kept ${busy.percent.toFixed(0)}% of a CPU busy while ${busy.label} was measured: these verdicts are not meaningful)\n`
          : '(the machine was busy during this run: these verdicts are not meaningful)\n',
      );
    }
  }
  // Whenever DAMON ran, not only under the verdicts: its stalls are in any run's tails.
  const damonByTarget = damonCpuByTarget(results);
  const damonEnd = describeDamon(damon, damonCpuPercent, damonByTarget);
  if (damonEnd !== undefined) out(`(${damonEnd})\n`);
  for (const r of results) {
    if (r.workload === 'watch' && r.extra.allReceived !== true) out(`WARNING: ${r.target} watch: ${String(r.extra.missingEvents)} events of acknowledged puts never reached their watcher`);
    if (r.workload === 'txn-cas' && r.extra.failedCompares !== 0) out(`WARNING: ${r.target} txn-cas: ${String(r.extra.failedCompares)} compares failed on keys with a single writer`);
  }

  // After the members stopped: a member run with --cpu-prof writes its profile as it exits.
  let profiles: ProfileSummary[] | undefined;
  const profiled = lives.find((l) => l.target.name === 'capstan' && l.target.started);
  if (args.cpuProf && profiled !== undefined) {
    const { drawn, skipped } = drawFlames(dir, PROFILE_DIR, 'capstan', profiled.target.members);
    profiles = drawn;
    out(profilesText(drawn, join(dir, PROFILE_DIR)));
    for (const s of skipped) out(`WARNING: a CPU profile was not drawn: ${s}`);
    out();
  }

  const cpu = os.cpus()[0];
  const report: BenchResults = {
    tool: 'capstan-bench',
    schema: 1,
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    command: ['npm', 'run', 'bench', '--', ...argv],
    host: {
      cpus: os.cpus().length,
      cpuModel: cpu?.model ?? 'unknown',
      memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
      node: process.version,
      platform: `${os.platform()} ${os.release()}`,
      loadavgStart,
      loadavgEnd: os.loadavg(),
      otherCpuMaxPercent: busy?.percent,
      ...(damon.length > 0 ? { damon: { monitors: damon, cpuPercent: damonCpuPercent, byTarget: damonByTarget } } : {}),
    },
    settings: {
      targets: args.targets,
      versions: Object.fromEntries(lives.map((l) => [l.target.name, l.target.version])),
      members: args.endpoints ? undefined : args.members,
      endpoints: Object.fromEntries(lives.map((l) => [l.target.name, l.target.endpoints])),
      cluster: args.endpoints ? 'given endpoints' : CLUSTER_SETTINGS,
      durationMs: args.durationMs,
      warmupMs: args.warmupMs,
      settleMs: args.settleMs,
      restMs: args.restMs,
      rounds: args.rounds,
      channels: args.channels,
      inflight: args.inflight,
      tcpConnections: Object.fromEntries(lives.map((l) => [l.target.name, l.connections ?? null])),
      watchers: args.watchers,
      watchRate: args.watchRate,
      valueSize: args.valueSize,
      quick: args.quick,
      cpuProf: args.cpuProf ? join(dir, PROFILE_DIR) : false,
      memberNodeArgs: args.memberNodeArgs,
      memberFlags: args.memberFlags,
      workloads: args.workloads,
    },
    results,
    disk,
    comparisons,
    checks,
    ...(profiles === undefined ? {} : { profiles }),
    ...(Object.keys(memory).length > 0 ? { memory } : {}),
  };
  writeFileSync(join(dir, 'results.json'), `${JSON.stringify(report, null, 1)}\n`);
  writeFileSync(join(dir, 'report.html'), renderHtml(report));
  out(`report: ${join(dir, 'report.html')}`);
  out(`raw numbers: ${join(dir, 'results.json')}`);
  return failures > 0 ? 1 : 0;
}

// Interrupted: exit through process.exit so the clusters' exit handlers kill the members.
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => process.exit(130));

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
