/**
 * What a run leaves: markdown tables (stdout), results.json (every number, the settings, the
 * histograms) and report.html (self-contained: charts are SVG drawn here, no script, no CDN).
 */
import { esc } from './common.js';
import { describeDamon, type DamonMonitor } from './damon.js';
import type { TargetName, WorkloadName } from './flags.js';
import { Histogram, type LatencySummary } from './hist.js';
import { busyShare, memberTitle, type ProfileSummary } from './flame.js';
import type { FsyncStats } from './metrics.js';
import type { MemberMemory } from './targets.js';
import type { PutTail, RoundFigures, WorkloadResult } from './workloads.js';

/**
 * A measured window in which other processes kept this much of one CPU busy (percent) makes the
 * run's verdicts unreliable: on 2 CPUs the systems under test already use most of both.
 */
export const BUSY_OTHER_PERCENT = 20;

/**
 * Whether a run's figures are noise: by the CPU other processes used in the busiest measured
 * window when that was measured, else by the load average at the start.
 */
export function wasBusy(host: Pick<BenchResults['host'], 'cpus' | 'loadavgStart' | 'otherCpuMaxPercent'>): boolean {
  return host.otherCpuMaxPercent !== undefined ? host.otherCpuMaxPercent > BUSY_OTHER_PERCENT : host.loadavgStart[0]! > host.cpus;
}

export interface RawFsyncResult {
  dir: string;
  samples: number;
  /** Milliseconds. */
  latency: LatencySummary;
  histogram: [number, number, number][];
}

export interface DiskResult {
  raw: RawFsyncResult | undefined;
  /** Per target: the members' WAL fsyncs (all members added up) over every measured window. */
  walFsync: Partial<Record<TargetName, FsyncStats>>;
}

export interface Comparison {
  workload: WorkloadName;
  /** capstan ÷ etcd: above 1 is better for Capstan. */
  opsPerSec: number;
  /** capstan ÷ etcd: below 1 is better for Capstan. */
  p50: number;
  p90: number;
  p99: number;
  max: number;
  /** capstan ÷ etcd, the members' resident memory at the window's end: below 1 is better for Capstan (NaN when unknown). */
  membersRss: number;
}

export interface TargetCheck {
  goal: string;
  value: string;
  met: boolean;
  /**
   * The same ratio in each round (Capstan's round i over etcd's round i, which ran right after or
   * before it), and in how many the goal held: how steady the verdict is on a noisy machine.
   * Absent unless both systems ran the same number of rounds, at least two.
   */
  rounds?: { ratios: number[]; held: number };
}

export interface BenchResults {
  tool: 'capstan-bench';
  schema: 1;
  startedAt: string;
  finishedAt: string;
  command: string[];
  host: {
    cpus: number;
    cpuModel: string;
    memoryGiB: number;
    node: string;
    platform: string;
    loadavgStart: number[];
    loadavgEnd: number[];
    /** The most CPU (percent of one) other processes used in any measured window, when known. */
    otherCpuMaxPercent?: number;
    /** The kernel's data access monitor, when a kdamond ran (its stalls show in latency tails). */
    damon?: {
      monitors: DamonMonitor[];
      cpuPercent: number | undefined;
      /** Its CPU in each system's measured windows (damonCpuByTarget); absent in older results. */
      byTarget?: Record<string, number>;
    };
  };
  settings: Record<string, unknown>;
  results: (WorkloadResult & { walFsync?: FsyncStats })[];
  disk: DiskResult | undefined;
  comparisons: Comparison[];
  /** The issue's targets, when Capstan and etcd ran on 3 members in the same run. */
  checks: TargetCheck[];
  /** With --cpu-prof: each Capstan member's profile and the flame graph drawn from it. */
  profiles?: ProfileSummary[];
  /** Each started system's members' memory at the end of the run (absent for --endpoints). */
  memory?: Partial<Record<TargetName, MemberMemory[]>>;
}

export const COLORS: Record<TargetName, string> = { capstan: '#1f77b4', etcd: '#ff7f0e' };
const RAW_COLOR = '#2ca02c';

// ---------------------------------------------------------------- numbers

export function fmtNum(n: number | undefined, digits = 2): string {
  if (n === undefined || !Number.isFinite(n)) return '-';
  if (Math.abs(n) >= 1000) return Math.round(n).toLocaleString('en-US');
  if (Math.abs(n) >= 100) return n.toFixed(Math.max(0, digits - 2));
  if (Math.abs(n) >= 10) return n.toFixed(Math.max(0, digits - 1));
  return n.toFixed(digits);
}

function ratio(a: number, b: number): number {
  return b === 0 ? NaN : a / b;
}

export function fmtRatio(r: number): string {
  return Number.isFinite(r) ? `${r.toFixed(2)}x` : '-';
}

export function compare(results: readonly WorkloadResult[]): Comparison[] {
  const out: Comparison[] = [];
  const names = [...new Set(results.map((r) => r.workload))];
  for (const w of names) {
    const c = results.find((r) => r.workload === w && r.target === 'capstan');
    const e = results.find((r) => r.workload === w && r.target === 'etcd');
    if (c === undefined || e === undefined) continue;
    out.push({
      workload: w,
      opsPerSec: ratio(c.opsPerSec, e.opsPerSec),
      p50: ratio(c.latency.p50, e.latency.p50),
      p90: ratio(c.latency.p90, e.latency.p90),
      p99: ratio(c.latency.p99, e.latency.p99),
      max: ratio(c.latency.max, e.latency.max),
      membersRss: c.memory !== undefined && e.memory !== undefined ? ratio(c.memory.membersRssMiB, e.memory.membersRssMiB) : NaN,
    });
  }
  return out;
}

/** One of the issue's targets: a figure of one workload, as a capstan/etcd ratio, and the bound on it. */
interface Target {
  goal: string;
  workload: WorkloadName;
  figure: keyof RoundFigures;
  met: (ratio: number) => boolean;
  /** Whether the run measured what the goal names (the watch goal is for 100 watchers). */
  applies?: (r: WorkloadResult) => boolean;
}

const TARGETS: readonly Target[] = [
  { goal: 'concurrent puts: throughput at least 1.2x etcd', workload: 'put', figure: 'opsPerSec', met: (x) => x >= 1.2 },
  { goal: 'concurrent puts: p99 no worse than etcd', workload: 'put', figure: 'p99', met: (x) => x <= 1 },
  { goal: 'sequential puts: p50 no worse than etcd', workload: 'put-seq', figure: 'p50', met: (x) => x <= 1 },
  { goal: 'linearizable reads: throughput at least etcd', workload: 'range', figure: 'opsPerSec', met: (x) => x >= 1 },
  { goal: 'watch (100 watchers): p99 put-to-event no worse than etcd', workload: 'watch', figure: 'p99', met: (x) => x <= 1, applies: (r) => r.extra.watchers === 100 },
];

/** A target's ratio in each round, when both systems ran the same rounds. */
function roundRatios(target: Target, capstan: WorkloadResult, etcd: WorkloadResult): TargetCheck['rounds'] {
  const c = capstan.roundFigures;
  const e = etcd.roundFigures;
  if (c === undefined || e === undefined || c.length !== e.length || c.length < 2) return undefined;
  const ratios = c.map((f, i) => ratio(f[target.figure], e[i]![target.figure]));
  return { ratios, held: ratios.filter((x) => target.met(x)).length };
}

/** The issue's targets (3 members on loopback, ratios against etcd in the same run). */
export function checkTargets(results: readonly WorkloadResult[], comparisons: readonly Comparison[], members: number): TargetCheck[] {
  if (members !== 3) return [];
  const checks: TargetCheck[] = [];
  for (const target of TARGETS) {
    const cmp = comparisons.find((c) => c.workload === target.workload);
    const capstan = results.find((r) => r.workload === target.workload && r.target === 'capstan');
    const etcd = results.find((r) => r.workload === target.workload && r.target === 'etcd');
    if (cmp === undefined || capstan === undefined || etcd === undefined) continue;
    if (target.applies !== undefined && !target.applies(capstan)) continue;
    const value = cmp[target.figure];
    const rounds = roundRatios(target, capstan, etcd);
    checks.push({ goal: target.goal, value: fmtRatio(value), met: target.met(value), ...(rounds !== undefined ? { rounds } : {}) });
  }
  return checks;
}

/** A check's ratio in each round and how many held ("1.10x 0.95x (1 of 2)"), or a dash. */
function fmtRounds(c: TargetCheck): string {
  return c.rounds === undefined ? '-' : `${c.rounds.ratios.map(fmtRatio).join(' ')} (${c.rounds.held} of ${c.rounds.ratios.length})`;
}

/** The targets table: its header, and a row per check; the rounds' column only when some check has rounds (not with --rounds 1). */
function checksRows(checks: readonly TargetCheck[], verdict: (met: boolean) => string, cell: (s: string) => string): { header: string[]; rows: string[][] } {
  const withRounds = checks.some((c) => c.rounds !== undefined);
  const header = ['goal', 'capstan/etcd', 'met', ...(withRounds ? ['each round (met in)'] : [])];
  const rows = checks.map((c) => [cell(c.goal), cell(c.value), verdict(c.met), ...(withRounds ? [cell(fmtRounds(c))] : [])]);
  return { header, rows };
}

// ---------------------------------------------------------------- markdown

function mdTable(header: string[], rows: string[][], align: ('l' | 'r')[]): string {
  const lines = [`| ${header.join(' | ')} |`, `|${align.map((a) => (a === 'r' ? '---:' : ':---')).join('|')}|`];
  for (const r of rows) lines.push(`| ${r.join(' | ')} |`);
  return lines.join('\n');
}

/** A watch result's put acknowledgement latency, p50/p99 in ms. */
function putAck(r: WorkloadResult): string {
  const put = r.extra.putLatency as LatencySummary | undefined;
  return put === undefined ? '-' : `${fmtNum(put.p50)}/${fmtNum(put.p99)}`;
}

/** A watch result's event latency p99 at the leader's watchers and at the followers', in ms, when the tool knew the leader. */
function roleP99(r: WorkloadResult): string {
  const leader = r.extra.leaderWatchLatency as LatencySummary | undefined;
  const followers = r.extra.followerWatchLatency as LatencySummary | undefined;
  if (leader === undefined || followers === undefined) return '-';
  const p99 = (l: LatencySummary): string => (l.count === 0 ? '-' : fmtNum(l.p99));
  return `${p99(leader)}/${p99(followers)}`;
}

const RATIO_NOTE = 'capstan/etcd: ops/s above 1.00x = Capstan faster; latencies below 1.00x = Capstan faster; RSS below 1.00x = Capstan smaller';

/** The members' resident memory at the window's end, all added up, in MiB. */
function rssCell(r: WorkloadResult): string {
  return r.memory === undefined ? '-' : fmtNum(r.memory.membersRssMiB, 0);
}

interface MemoryTableParts {
  header: string[];
  rows: string[][];
  note: string;
}

const MEMORY_HEADER = ['target', 'peak RSS MiB, each member', 'peak RSS MiB, all members', 'RSS MiB at the end, all members'];
const MEMORY_NOTE =
  "peak: the most a member held resident at once since it started (VmHWM in /proc/<pid>/status); at the end: VmRSS once the last workload finished, before the members stopped; capstan/etcd below 1.00x = Capstan smaller";

/**
 * The members' memory at the end of the run: a row per system, and the ratio row when both ran;
 * with --rest, a column for what they held after it. Undefined when no started member was read.
 */
function memoryParts(memory: NonNullable<BenchResults['memory']>, targets: readonly TargetName[], restMs: number): MemoryTableParts | undefined {
  const read = targets.flatMap((t) => (memory[t] !== undefined && memory[t]!.length > 0 ? [t] : []));
  if (read.length === 0) return undefined;
  const rested = restMs > 0 && read.some((t) => memory[t]!.some((m) => m.restRssMiB !== undefined));
  const sum = (ms: readonly MemberMemory[], f: (m: MemberMemory) => number): number => ms.reduce((a, m) => a + f(m), 0);
  // All members' peak, at the end and (with --rest) at rest: NaN at rest unless every member was read then.
  const totals = (ms: readonly MemberMemory[]): number[] => [
    sum(ms, (m) => m.peakRssMiB),
    sum(ms, (m) => m.rssMiB),
    ...(rested ? [ms.every((m) => m.restRssMiB !== undefined) ? sum(ms, (m) => m.restRssMiB!) : NaN] : []),
  ];
  const rows = read.map((t) => {
    const ms = memory[t]!;
    const each = ms.map((m) => `${m.name}${m.leader ? ' (leader at start)' : ''} ${fmtNum(m.peakRssMiB, 0)}`).join(', ');
    return [t, each, ...totals(ms).map((v) => fmtNum(v, 0))];
  });
  const c = memory.capstan;
  const e = memory.etcd;
  if (c !== undefined && e !== undefined && c.length > 0 && e.length > 0) {
    const etcd = totals(e);
    rows.push(['capstan/etcd', '', ...totals(c).map((v, i) => fmtRatio(ratio(v, etcd[i]!)))]);
  }
  const seconds = restMs / 1000;
  return {
    header: rested ? [...MEMORY_HEADER, `RSS MiB after ${seconds} s at rest, all members`] : MEMORY_HEADER,
    rows,
    note: rested
      ? `${MEMORY_NOTE}; at rest: VmRSS after both clusters were left idle ${seconds} s once the last workload finished (a Capstan member collects its heap's garbage once quiet for 30 s; Go's runtime gives memory back on its own schedule)`
      : MEMORY_NOTE,
  };
}

/** The members' memory at the end of the run; undefined when no started member could be read. */
export function memoryTable(memory: NonNullable<BenchResults['memory']>, targets: readonly TargetName[], restMs = 0): string | undefined {
  const m = memoryParts(memory, targets, restMs);
  if (m === undefined) return undefined;
  return `### memory: the members' resident set\n\n${mdTable(m.header, m.rows, m.header.map((_, i) => (i < 2 ? 'l' : 'r')))}\n\n(${m.note})`;
}

/** The table of one workload: a row per target, and the ratio row when both ran. */
export function workloadTable(results: readonly WorkloadResult[], comparison: Comparison | undefined): string {
  const first = results[0]!;
  const isWatch = first.workload === 'watch';
  const header = ['target', isWatch ? 'events/s' : 'ops/s', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms', isWatch ? 'events' : 'ops', 'errors'];
  // The puts' own acknowledgements: a tail they share is the commit path's, not the fan-out's.
  // Followers' watchers wait one hop more (the commit from the leader): where a tail comes from.
  if (isWatch) header.push('all received', 'put ack p50/p99 ms', 'p99 at leader/followers ms');
  if (first.workload === 'txn-cas') header.push('failed compares');
  header.push('CPU % members/bench', 'RSS MiB members');
  const rows = results.map((r) => {
    const row = [r.target, fmtNum(r.opsPerSec, 0), fmtNum(r.latency.p50), fmtNum(r.latency.p90), fmtNum(r.latency.p99), fmtNum(r.latency.max), String(r.ops), String(r.errors)];
    if (isWatch) row.push(r.extra.allReceived ? 'yes' : `NO (${String(r.extra.missingEvents)} missing)`, putAck(r), roleP99(r));
    if (first.workload === 'txn-cas') row.push(String(r.extra.failedCompares));
    row.push(r.cpu ? `${r.cpu.membersPercent === undefined ? '-' : Math.round(r.cpu.membersPercent)}/${Math.round(r.cpu.clientPercent)}` : '-', rssCell(r));
    return row;
  });
  if (comparison) {
    const row = ['capstan/etcd', `${fmtRatio(comparison.opsPerSec)} (higher better)`, fmtRatio(comparison.p50), fmtRatio(comparison.p90), fmtRatio(comparison.p99), fmtRatio(comparison.max), '', ''];
    while (row.length < header.length - 1) row.push('');
    row.push(fmtRatio(comparison.membersRss));
    rows.push(row);
  }
  const title = `### ${first.workload}: ${first.description}`;
  return `${title}\n\n${mdTable(header, rows, header.map((_, i) => (i === 0 ? 'l' : 'r')))}${comparison ? `\n\n(${RATIO_NOTE})` : ''}`;
}

export function diskTable(disk: DiskResult, targets: readonly TargetName[]): string {
  const header = ['what', 'fsyncs', 'p50 ms', 'p90 ms', 'p99 ms', 'mean ms'];
  const rows: string[][] = [];
  if (disk.raw) {
    const l = disk.raw.latency;
    rows.push(['raw 4 KiB write + fdatasync (no server)', String(disk.raw.samples), fmtNum(l.p50, 3), fmtNum(l.p90, 3), fmtNum(l.p99, 3), fmtNum(l.mean, 3)]);
  }
  for (const t of targets) {
    const f = disk.walFsync[t];
    if (f === undefined) {
      rows.push([`${t} WAL fsync`, 'no /metrics', '', '', '', '']);
      continue;
    }
    rows.push([`${t} WAL fsync (all members, around the measured windows)`, String(f.fsyncs), fmtNum(f.p50, 3), fmtNum(f.p90, 3), fmtNum(f.p99, 3), fmtNum(f.mean, 3)]);
  }
  const c = disk.walFsync.capstan;
  const e = disk.walFsync.etcd;
  if (c && e) rows.push(['capstan/etcd (latencies: lower better)', fmtRatio(ratio(c.fsyncs, e.fsyncs)), fmtRatio(ratio(c.p50, e.p50)), fmtRatio(ratio(c.p90, e.p90)), fmtRatio(ratio(c.p99, e.p99)), fmtRatio(ratio(c.mean, e.mean))]);
  return `### disk: raw fdatasync vs the members' WAL fsync\n\n${mdTable(header, rows, ['l', 'r', 'r', 'r', 'r', 'r'])}\n\n(WAL figures from etcd_disk_wal_fsync_duration_seconds on /metrics: bucketed, so percentiles are interpolated within etcd's power-of-two buckets from 1 ms)`;
}

export function checksTable(checks: readonly TargetCheck[]): string {
  const { header, rows } = checksRows(checks, (met) => (met ? 'yes' : 'NO'), (s) => s);
  return `### targets (issue 8)\n\n${mdTable(header, rows, header.map((_, i) => (i === 1 ? 'r' : 'l')))}`;
}

// ---------------------------------------------------------------- SVG charts

interface Series {
  name: string;
  color: string;
  points: [number, number][];
}

interface ChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  /** x tick positions and labels; computed from the data when absent. */
  xTicks?: [number, string][];
  yLog?: boolean;
  width?: number;
  height?: number;
}

const W = 560;
const H = 300;
const M = { left: 64, right: 16, top: 44, bottom: 44 };

function niceStep(range: number, ticks: number): number {
  const raw = range / Math.max(1, ticks);
  const mag = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * mag >= raw) return m * mag;
  return 10 * mag;
}

function linearTicks(lo: number, hi: number, n = 5): number[] {
  if (hi <= lo) return [lo];
  const step = niceStep(hi - lo, n);
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

/** 1-2-5 ticks between lo and hi (both > 0). */
function logTicks(lo: number, hi: number): number[] {
  const out: number[] = [];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** e;
      if (v >= lo * 0.999 && v <= hi * 1.001) out.push(v);
    }
  }
  return out;
}

function tickLabel(v: number): string {
  if (v === 0) return '0';
  if (Math.abs(v) >= 1000) return v.toLocaleString('en-US', { maximumFractionDigits: 0 });
  if (Math.abs(v) >= 1) return String(Number(v.toPrecision(3)));
  return String(Number(v.toPrecision(2)));
}

/** A line chart as an SVG element (a legend on top, axes with ticks, one polyline per series). */
export function lineChart(o: ChartOptions): string {
  const width = o.width ?? W;
  const height = o.height ?? H;
  const pts = o.series.flatMap((s) => s.points);
  const body: string[] = [];
  body.push(`<text x="${width / 2}" y="16" text-anchor="middle" class="t">${esc(o.title)}</text>`);
  if (pts.length === 0) {
    body.push(`<text x="${width / 2}" y="${height / 2}" text-anchor="middle">no data</text>`);
    return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">${body.join('')}</svg>`;
  }
  const xs = pts.map((p) => p[0]);
  const ys = pts.map((p) => p[1]).filter((y) => !o.yLog || y > 0);
  let x0 = Math.min(...xs);
  let x1 = Math.max(...xs);
  if (x1 === x0) x1 = x0 + 1;
  let y0: number;
  let y1: number;
  if (o.yLog) {
    y0 = Math.max(1e-3, Math.min(...ys));
    y1 = Math.max(...ys);
    const lo = 10 ** Math.floor(Math.log10(y0));
    y0 = y0 / lo >= 5 ? 5 * lo : y0 / lo >= 2 ? 2 * lo : lo;
    y1 = y1 <= y0 ? y0 * 10 : y1 * 1.1;
  } else {
    y0 = 0;
    y1 = Math.max(...ys, 0) * 1.1 || 1;
    const step = niceStep(y1, 5);
    y1 = Math.ceil(y1 / step) * step;
  }
  if (o.xTicks) {
    x0 = Math.min(x0, ...o.xTicks.map((t) => t[0]));
    x1 = Math.max(x1, ...o.xTicks.map((t) => t[0]));
  }
  const pw = width - M.left - M.right;
  const ph = height - M.top - M.bottom;
  const sx = (x: number): number => M.left + ((x - x0) / (x1 - x0)) * pw;
  const sy = (y: number): number => {
    const f = o.yLog ? (Math.log10(Math.max(y, y0)) - Math.log10(y0)) / (Math.log10(y1) - Math.log10(y0)) : (y - y0) / (y1 - y0);
    return M.top + ph - f * ph;
  };
  const f1 = (n: number): string => n.toFixed(1);
  // grid and y ticks
  const yt = o.yLog ? logTicks(y0, y1) : linearTicks(y0, y1);
  for (const v of yt) {
    body.push(`<line x1="${M.left}" x2="${M.left + pw}" y1="${f1(sy(v))}" y2="${f1(sy(v))}" class="g"/>`);
    body.push(`<text x="${M.left - 6}" y="${f1(sy(v) + 4)}" text-anchor="end">${tickLabel(v)}</text>`);
  }
  const xt = o.xTicks ?? linearTicks(x0, x1, 8).map((v) => [v, tickLabel(v)] as [number, string]);
  for (const [v, label] of xt) {
    body.push(`<line x1="${f1(sx(v))}" x2="${f1(sx(v))}" y1="${M.top}" y2="${M.top + ph}" class="g"/>`);
    body.push(`<text x="${f1(sx(v))}" y="${M.top + ph + 16}" text-anchor="middle">${esc(label)}</text>`);
  }
  body.push(`<rect x="${M.left}" y="${M.top}" width="${pw}" height="${ph}" class="frame"/>`);
  body.push(`<text x="${M.left + pw / 2}" y="${height - 6}" text-anchor="middle">${esc(o.xLabel)}</text>`);
  body.push(`<text transform="translate(14 ${M.top + ph / 2}) rotate(-90)" text-anchor="middle">${esc(o.yLabel)}</text>`);
  for (const s of o.series) {
    if (s.points.length === 0) continue;
    const path = s.points.map((p) => `${f1(sx(p[0]))},${f1(sy(p[1]))}`).join(' ');
    body.push(`<polyline points="${path}" fill="none" stroke="${s.color}" stroke-width="2" data-series="${esc(s.name)}"><title>${esc(s.name)}</title></polyline>`);
    if (s.points.length <= 60) for (const p of s.points) body.push(`<circle cx="${f1(sx(p[0]))}" cy="${f1(sy(p[1]))}" r="2.5" fill="${s.color}"/>`);
  }
  // legend
  o.series.forEach((s, i) => {
    const lx = M.left + i * 110;
    body.push(`<rect x="${lx}" y="${M.top - 18}" width="12" height="12" fill="${s.color}"/><text x="${lx + 16}" y="${M.top - 8}">${esc(s.name)}</text>`);
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${esc(o.title)}">${body.join('')}</svg>`;
}

/** Grouped bars: one group per category, one bar per series (values are fractions 0..1). */
export function barChart(o: { title: string; xLabel: string; yLabel: string; categories: string[]; series: { name: string; color: string; values: number[] }[] }): string {
  const width = Math.max(W, M.left + M.right + o.categories.length * 14 * (o.series.length + 1));
  const height = H;
  const pw = width - M.left - M.right;
  const ph = height - M.top - M.bottom;
  const maxV = Math.max(0.01, ...o.series.flatMap((s) => s.values));
  const yTop = Math.min(1, Math.ceil((maxV * 1.1) / 0.1) * 0.1);
  const body: string[] = [`<text x="${width / 2}" y="16" text-anchor="middle" class="t">${esc(o.title)}</text>`];
  for (const v of linearTicks(0, yTop)) {
    const y = M.top + ph - (v / yTop) * ph;
    body.push(`<line x1="${M.left}" x2="${M.left + pw}" y1="${y.toFixed(1)}" y2="${y.toFixed(1)}" class="g"/>`);
    body.push(`<text x="${M.left - 6}" y="${(y + 4).toFixed(1)}" text-anchor="end">${Math.round(v * 100)}%</text>`);
  }
  const gw = pw / Math.max(1, o.categories.length);
  const bw = (gw * 0.8) / Math.max(1, o.series.length);
  o.categories.forEach((c, ci) => {
    o.series.forEach((s, si) => {
      const v = s.values[ci] ?? 0;
      const h = (v / yTop) * ph;
      const x = M.left + ci * gw + gw * 0.1 + si * bw;
      body.push(`<rect x="${x.toFixed(1)}" y="${(M.top + ph - h).toFixed(1)}" width="${bw.toFixed(1)}" height="${h.toFixed(1)}" fill="${s.color}"><title>${esc(`${s.name} ${c}: ${(v * 100).toFixed(1)}%`)}</title></rect>`);
    });
    body.push(`<text x="${(M.left + ci * gw + gw / 2).toFixed(1)}" y="${M.top + ph + 16}" text-anchor="middle">${esc(c)}</text>`);
  });
  body.push(`<rect x="${M.left}" y="${M.top}" width="${pw}" height="${ph}" class="frame"/>`);
  body.push(`<text x="${M.left + pw / 2}" y="${height - 6}" text-anchor="middle">${esc(o.xLabel)}</text>`);
  body.push(`<text transform="translate(14 ${M.top + ph / 2}) rotate(-90)" text-anchor="middle">${esc(o.yLabel)}</text>`);
  o.series.forEach((s, i) => {
    const lx = M.left + i * 150;
    body.push(`<rect x="${lx}" y="${M.top - 18}" width="12" height="12" fill="${s.color}"/><text x="${lx + 16}" y="${M.top - 8}">${esc(s.name)}</text>`);
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${esc(o.title)}">${body.join('')}</svg>`;
}

/** x position of quantile q on a percentile plot: log10(1 / (1 - q)) (0 at 0%, 1 at 90%, 2 at 99%...). */
export function percentileX(q: number, count: number): number {
  const cap = Math.max(1, Math.log10(Math.max(count, 10)));
  return q >= 1 ? cap : Math.min(cap, Math.log10(1 / (1 - q)));
}

function percentileTicks(maxX: number): [number, string][] {
  const ticks: [number, string][] = [[0, '0%']];
  const labels = ['90%', '99%', '99.9%', '99.99%', '99.999%', '99.9999%'];
  for (let k = 1; k <= Math.floor(maxX) && k <= labels.length; k++) ticks.push([k, labels[k - 1]!]);
  return ticks;
}

export function latencyChart(results: readonly WorkloadResult[], title: string): string {
  const series: Series[] = results.map((r) => {
    const h = Histogram.fromBuckets(r.histogram);
    return { name: r.target, color: COLORS[r.target], points: h.distribution().map(([q, ms]) => [percentileX(q, h.count), ms] as [number, number]) };
  });
  const maxX = Math.max(1, ...series.flatMap((s) => s.points.map((p) => p[0])));
  return lineChart({ title, xLabel: 'percentile (the right end is the max)', yLabel: 'latency ms (log scale)', series, xTicks: percentileTicks(maxX), yLog: true });
}

export function throughputChart(results: readonly WorkloadResult[], title: string, unit: string): string {
  const series: Series[] = results.map((r) => ({ name: r.target, color: COLORS[r.target], points: r.throughput.map((n, i) => [i + 0.5, n] as [number, number]) }));
  return lineChart({ title, xLabel: 'second of the measured window', yLabel: `${unit}/s`, series });
}

/**
 * Points a put chart draws per system at most: a default run has 1,500 puts, a long one can have
 * far more than a 560-pixel chart can show. Past this, the chart keeps the slowest put of each
 * slice of the window (at its own time): spikes further apart than a slice all stay.
 */
export const MAX_PUT_POINTS = 2000;

/** [second, slowest ms] per put, or per slice of the window when there are more than `max`. */
export function putTailPoints(tail: PutTail, max = MAX_PUT_POINTS): [number, number][] {
  const n = tail.atMs.length;
  if (n <= max) return tail.atMs.map((at, i) => [at / 1000, tail.slowestMs[i]!]);
  const from = tail.atMs[0]!;
  const width = (tail.atMs[n - 1]! - from) / max || 1;
  const out: [number, number][] = [];
  let lastSlice = -1;
  for (let i = 0; i < n; i++) {
    const slice = Math.min(max - 1, Math.floor((tail.atMs[i]! - from) / width));
    const point: [number, number] = [tail.atMs[i]! / 1000, tail.slowestMs[i]!];
    if (slice !== lastSlice) out.push(point);
    else if (point[1] > out[out.length - 1]![1]) out[out.length - 1] = point;
    lastSlice = slice;
  }
  return out;
}

/** The watch workload's puts over the measured time: when a stall comes, and at what period. */
export function putTailChart(results: readonly WorkloadResult[], title: string): string {
  const series: Series[] = results
    .filter((r) => r.putTail !== undefined)
    .map((r) => ({ name: r.target, color: COLORS[r.target], points: putTailPoints(r.putTail!) }));
  return lineChart({ title, xLabel: 'second of the measured window (the put sent)', yLabel: 'slowest event ms', series });
}

export function diskChart(disk: DiskResult, targets: readonly TargetName[]): string {
  // The raw samples in etcd's WAL fsync buckets, so the three are comparable bar for bar.
  const bounds: number[] = [];
  const firstTarget = targets.map((t) => disk.walFsync[t]).find((f) => f !== undefined);
  for (const [le] of firstTarget?.buckets ?? []) if (le !== null) bounds.push(le);
  if (bounds.length === 0) for (let k = 0; k < 14; k++) bounds.push(0.001 * 2 ** k);
  const categories = [...bounds.map((b) => `≤${tickLabel(b * 1000)}`), `>${tickLabel(bounds[bounds.length - 1]! * 1000)}`];
  const series: { name: string; color: string; values: number[] }[] = [];
  if (disk.raw) {
    const counts = new Array<number>(bounds.length + 1).fill(0);
    for (const [low, , c] of disk.raw.histogram) {
      const s = low / 1e6;
      const i = bounds.findIndex((b) => s <= b);
      counts[i < 0 ? bounds.length : i]! += c;
    }
    const total = counts.reduce((a, b) => a + b, 0) || 1;
    series.push({ name: 'raw fdatasync', color: RAW_COLOR, values: counts.map((c) => c / total) });
  }
  for (const t of targets) {
    const f = disk.walFsync[t];
    if (!f) continue;
    const total = f.fsyncs || 1;
    const values = bounds.map((b) => f.buckets.find(([le]) => le !== null && Math.abs(le - b) < 1e-12)?.[1] ?? 0);
    values.push(f.buckets.find(([le]) => le === null)?.[1] ?? 0);
    series.push({ name: `${t} WAL fsync`, color: COLORS[t], values: values.map((v) => v / total) });
  }
  return barChart({ title: 'fsync latency: share of fsyncs per bucket', xLabel: 'ms (etcd_disk_wal_fsync_duration_seconds buckets)', yLabel: 'share of fsyncs', categories, series });
}

// ---------------------------------------------------------------- HTML

const CSS = `body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1200px;color:#222;padding:0 16px}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td code{white-space:pre-wrap;text-align:left;display:block}td:first-child,th:first-child{text-align:left}
th{background:#f4f4f4}.charts{display:flex;flex-wrap:wrap;gap:12px}svg{background:#fff;border:1px solid #eee}
svg text{font:11px system-ui,sans-serif;fill:#333}svg text.t{font-weight:600;font-size:12px}svg .g{stroke:#eee}svg .frame{fill:none;stroke:#999}
.note{color:#555;font-size:13px}.bad{color:#b00;font-weight:600}.ok{color:#070}code{background:#f4f4f4;padding:0 3px}`;

function htmlTable(header: string[], rows: string[][]): string {
  return `<table><tr>${header.map((h) => `<th>${esc(h)}</th>`).join('')}</tr>${rows.map((r) => `<tr>${r.map((c) => `<td>${c}</td>`).join('')}</tr>`).join('')}</table>`;
}

/** Functions per member in the console's profile lines (report.html lists TOP_FUNCTIONS). */
const PROFILE_TOP_CONSOLE = 3;

/** A member's name and busy time, as the console and report.html list its profile. */
function profileHeading(p: ProfileSummary): { title: string; busy: string } {
  const share = busyShare(p.busyMs, p.profiledMs);
  return {
    title: memberTitle(p.member, p.leader),
    busy: `busy ${fmtNum(p.busyMs / 1000, 1)} s of ${fmtNum(p.profiledMs / 1000, 1)} s${share === undefined ? '' : ` (${share})`}`,
  };
}

/** Each member's profile in the console: its busy time, its flame graph, the three functions with the most time in themselves. */
export function profilesText(profiles: readonly ProfileSummary[], dir: string): string {
  if (profiles.length === 0) return `CPU profiles: none written to ${dir}`;
  const lines = profiles.map((p) => {
    const { title, busy } = profileHeading(p);
    const top = p.top.slice(0, PROFILE_TOP_CONSOLE).map((t) => `${t.name} ${(100 * t.share).toFixed(1)}%`);
    return `  ${title}: ${busy}, ${p.flame}; most time in ${top.join(', ') || '-'}`;
  });
  return `CPU profiles of the Capstan members (flame graphs and profiles in ${dir}):\n${lines.join('\n')}`;
}

/** The --cpu-prof section: links to each member's flame graph and profile, and its busiest functions. */
function profilesHtml(profiles: readonly ProfileSummary[]): string {
  const parts = [
    '<h2 id="profiles">CPU profiles</h2>',
    `<p class="note">Each Capstan member ran under <code>node --cpu-prof</code> for the whole run (settling and every workload, not only the measured windows). ` +
      `The flame graph shows where its busy time went (time spent waiting left out; a box's width is its share, hover it for the time); the .cpuprofile opens in Chrome DevTools or speedscope. ` +
      `The table lists the functions with the most time in themselves, over all the stacks they were on.</p>`,
  ];
  for (const p of profiles) {
    const { title, busy } = profileHeading(p);
    parts.push(`<h3>${esc(title)}</h3><p class="note"><a href="${esc(p.flame)}">flame graph</a> · <a href="${esc(p.profile)}">profile</a>; ${busy}</p>`);
    parts.push(htmlTable(['function', 'self ms', 'share of busy'], p.top.map((t) => [`<code>${esc(t.name)}</code>`, fmtNum(t.selfMs, 0), `${(100 * t.share).toFixed(1)}%`])));
  }
  return parts.join('\n');
}

export function renderHtml(r: BenchResults): string {
  const targets = (['capstan', 'etcd'] as TargetName[]).filter((t) => r.results.some((x) => x.target === t));
  const parts: string[] = [];
  const s = r.settings;
  parts.push(`<h1>Capstan bench: ${esc(targets.join(' vs '))}</h1>`);
  parts.push(
    `<p class="note">${esc(r.startedAt)} to ${esc(r.finishedAt)}; ${r.host.cpus} CPUs (${esc(r.host.cpuModel)}), load average at start ${r.host.loadavgStart.map((x) => x.toFixed(1)).join(' ')}, at end ${r.host.loadavgEnd.map((x) => x.toFixed(1)).join(' ')}. ` +
      `Command: <code>${esc(r.command.join(' '))}</code></p>`,
  );
  const other = r.host.otherCpuMaxPercent;
  if (wasBusy(r.host)) {
    parts.push(
      other !== undefined
        ? `<p class="bad">Other processes kept up to ${other.toFixed(0)}% of a CPU busy during a measured window: these figures are noisy.</p>`
        : `<p class="bad">The machine was busy (load average above its CPU count): these figures are noisy.</p>`,
    );
  }
  const damon = r.host.damon !== undefined ? describeDamon(r.host.damon.monitors, r.host.damon.cpuPercent, r.host.damon.byTarget) : undefined;
  if (damon !== undefined) parts.push(`<p class="bad">${esc(damon)}</p>`);
  parts.push('<details><summary>Settings</summary>');
  parts.push(htmlTable(['setting', 'value'], Object.entries(s).filter(([, v]) => v !== undefined).map(([k, v]) => [esc(k), `<code>${esc(typeof v === 'string' ? v : JSON.stringify(v))}</code>`])));
  parts.push('</details>');
  parts.push(
    `<p class="note">How to read: each workload ran on each system in turn (never both at once), with a warm-up before the measured window. ` +
      `Latency is the time from sending a request to its answer, on the client (the bench process). The left chart is the latency distribution by percentile (log scale on both axes: the right end is the slowest request); lower is better. ` +
      `The right chart is completed operations per second during the measured window. For watch, a third chart has each put's slowest event (over every watcher) at the time the put was sent, rounds back to back: a stall shows as a spike, and stalls at a fixed period as spikes that far apart. CPU % is CPU time used during the measured window in percent of one core (${r.host.cpus} here), by all members together and by the load generator: with both near the machine's total, the client or the machine limits the figures, not the system measured. RSS is the members' resident memory added up when the measured window closed (over rounds, the largest). In the ratio rows, capstan/etcd above 1 is better for Capstan for ops/s, below 1 is better for Capstan for latencies and RSS.</p>`,
  );
  if (r.checks.length > 0) {
    parts.push('<h2>Targets (issue 8)</h2>');
    const { header, rows } = checksRows(r.checks, (met) => (met ? '<span class="ok">yes</span>' : '<span class="bad">no</span>'), esc);
    parts.push(htmlTable(header, rows));
  }
  const names = [...new Set(r.results.map((x) => x.workload))];
  for (const w of names) {
    const rs = r.results.filter((x) => x.workload === w).sort((a, b) => targets.indexOf(a.target) - targets.indexOf(b.target));
    const first = rs[0]!;
    const isWatch = w === 'watch';
    parts.push(`<h2 id="${esc(w)}">${esc(w)}</h2><p class="note">${esc(first.description)}</p>`);
    const header = ['target', isWatch ? 'events/s' : 'ops/s', 'p50 ms', 'p90 ms', 'p99 ms', 'p99.9 ms', 'max ms', isWatch ? 'events' : 'ops', 'errors', 'WAL fsyncs (p99 ms)', 'CPU % members / bench', 'RSS MiB members'];
    const rows = rs.map((x) => [
      `<span style="color:${COLORS[x.target]}">■</span> ${esc(x.target)}`,
      fmtNum(x.opsPerSec, 0),
      fmtNum(x.latency.p50),
      fmtNum(x.latency.p90),
      fmtNum(x.latency.p99),
      fmtNum(x.latency.p999),
      fmtNum(x.latency.max),
      String(x.ops),
      x.errors > 0 ? `<span class="bad" title="${esc(x.errorSamples.join('\n'))}">${x.errors}</span>` : '0',
      x.walFsync ? `${x.walFsync.fsyncs} (${fmtNum(x.walFsync.p99, 3)})` : '-',
      x.cpu ? `${x.cpu.membersPercent === undefined ? '-' : Math.round(x.cpu.membersPercent)} / ${Math.round(x.cpu.clientPercent)}` : '-',
      rssCell(x),
    ]);
    const c = r.comparisons.find((x) => x.workload === w);
    if (c) rows.push(['capstan/etcd', `${fmtRatio(c.opsPerSec)} ↑`, `${fmtRatio(c.p50)} ↓`, `${fmtRatio(c.p90)} ↓`, `${fmtRatio(c.p99)} ↓`, '', `${fmtRatio(c.max)} ↓`, '', '', '', '', `${fmtRatio(c.membersRss)} ↓`]);
    parts.push(htmlTable(header, rows));
    if (isWatch)
      parts.push(
        `<p class="note">${rs
          .map((x) => `${esc(x.target)}: ${String(x.extra.receivedEvents)} of ${String(x.extra.expectedEvents)} events received by ${String(x.extra.watchers)} watchers (${String(x.extra.watchersComplete)} saw every acknowledged put${x.extra.allReceived ? '' : ' — <span class="bad">events missing</span>'}); puts acknowledged after p50 / p99 ${putAck(x)} ms; event p99 at the leader's / the followers' watchers ${roleP99(x)} ms.`)
          .join('<br>')}</p>`,
      );
    if (w === 'txn-cas') parts.push(`<p class="note">${rs.map((x) => `${esc(x.target)}: ${String(x.extra.failedCompares)} failed compares (each key has a single writer: should be 0)`).join('<br>')}</p>`);
    const tail = rs.some((x) => x.putTail !== undefined) ? putTailChart(rs, `${w}: each put's slowest event`) : '';
    parts.push(`<div class="charts">${latencyChart(rs, `${w}: latency by percentile`)}${throughputChart(rs, `${w}: throughput over time`, isWatch ? 'events' : 'ops')}${tail}</div>`);
  }
  if (r.disk) {
    parts.push('<h2 id="disk">disk</h2>');
    parts.push(
      `<p class="note">The raw row is 4 KiB write + fdatasync into a preallocated file in ${esc(r.disk.raw?.dir ?? '-')} (same disk as the members' data), with no server running load. ` +
        `The WAL rows are the members' own etcd_disk_wal_fsync_duration_seconds histograms (all members added up) from a quarter second before each workload's measured window to its last answer (no scrape falls inside a window): how often the WAL synced and how long each sync took under load.</p>`,
    );
    const rows: string[][] = [];
    if (r.disk.raw) {
      const l = r.disk.raw.latency;
      rows.push(['raw fdatasync', String(r.disk.raw.samples), fmtNum(l.p50, 3), fmtNum(l.p90, 3), fmtNum(l.p99, 3), fmtNum(l.mean, 3)]);
    }
    for (const t of targets) {
      const f = r.disk.walFsync[t];
      if (f) rows.push([`${esc(t)} WAL fsync`, String(f.fsyncs), fmtNum(f.p50, 3), fmtNum(f.p90, 3), fmtNum(f.p99, 3), fmtNum(f.mean, 3)]);
    }
    parts.push(htmlTable(['what', 'fsyncs', 'p50 ms', 'p90 ms', 'p99 ms', 'mean ms'], rows));
    parts.push(`<div class="charts">${diskChart(r.disk, targets)}</div>`);
  }
  const memory = r.memory === undefined ? undefined : memoryParts(r.memory, targets, typeof r.settings.restMs === 'number' ? r.settings.restMs : 0);
  if (memory !== undefined) {
    parts.push('<h2 id="memory">memory</h2>');
    parts.push(`<p class="note">${esc(memory.note)}.</p>`);
    parts.push(htmlTable(memory.header, memory.rows.map((row) => row.map(esc))));
  }
  if (r.profiles !== undefined && r.profiles.length > 0) parts.push(profilesHtml(r.profiles));
  parts.push(`<p class="note">Every number is in results.json beside this file.</p>`);
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Capstan bench ${esc(r.startedAt)}</title><style>${CSS}</style></head><body>${parts.join('\n')}</body></html>\n`;
}
