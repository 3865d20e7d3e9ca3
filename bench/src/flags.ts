/**
 * Flags of `npm run bench`. A bad flag is a FlagError: main prints its message and the usage
 * line and exits 2, never a stack trace.
 */
import { join } from 'node:path';
import { durationMs } from '@capstan/chaos/duration';

export class FlagError extends Error {
  override readonly name = 'FlagError';
}

export type TargetName = 'capstan' | 'etcd';

export const WORKLOAD_NAMES = [
  'put-seq',
  'put',
  'range',
  'range-serializable',
  'range-prefix',
  'txn-cas',
  'lease-grant',
  'lease-keepalive',
  'watch',
  'disk',
] as const;
export type WorkloadName = (typeof WORKLOAD_NAMES)[number];

export interface BenchArgs {
  /** The systems measured, in order: one, or capstan and etcd with --against etcd. */
  targets: TargetName[];
  members: number;
  /** Given: no cluster is started, every workload runs against these (host:port or http://host:port). */
  endpoints: string[] | undefined;
  /** With --endpoints: where /metrics is, for the disk row (optional). */
  metricsEndpoints: string[] | undefined;
  quick: boolean;
  /** Measured time per workload and target. */
  durationMs: number;
  /** Load before measuring, per workload and target (not recorded). */
  warmupMs: number;
  /** Load each target gets once, before its first workload (not recorded): see SETTLE_WORKLOADS. */
  settleMs: number;
  /** After the last workload, the clusters this tool started are left idle this long, then their memory is read again (0: not). */
  restMs: number;
  /** With two targets, each workload's duration is split into this many alternating rounds (rounds.ts). */
  rounds: number;
  workloads: WorkloadName[];
  channels: number;
  inflight: number;
  watchers: number;
  /** Puts per second in the watch workload. */
  watchRate: number;
  valueSize: number;
  /** Raw fdatasync samples for the disk row. */
  fsyncSamples: number;
  results: string;
  cpuProf: boolean;
  /** Node and V8 flags for the Capstan members this tool starts (`--trace-gc`, ...), before the member's own. */
  memberNodeArgs: string[];
  /** etcd flags for every member of both systems this tool starts (`--experimental-warning-apply-duration=20ms`, ...). */
  memberFlags: string[];
  keepData: boolean;
  help: boolean;
}

export const USAGE = `usage: npm run bench -- [--target capstan|etcd] [--against etcd] [--members 1|3|5]
  [--endpoints host:port,...] [--metrics-endpoints http://host:port,...] [--quick]
  [--duration 15s] [--warmup 2s] [--settle 10s] [--rest 40s] [--rounds 5] [--workloads ${WORKLOAD_NAMES.join(',')}]
  [--channels 16] [--inflight 16] [--watchers 100] [--watch-rate 100] [--value-size 256]
  [--fsync-samples N] [--results DIR] [--cpu-prof] [--member-node-args "--trace-gc ..."]
  [--member-flags "--experimental-warning-apply-duration=20ms ..."] [--keep-data]`;

/** The shortest measured window of a round (as --duration's own minimum). */
export const MIN_ROUND_MS = 500;

export const DEFAULTS = {
  members: 3,
  durationMs: 15_000,
  warmupMs: 2_000,
  settleMs: 10_000,
  quickDurationMs: 4_000,
  quickWarmupMs: 1_000,
  quickSettleMs: 8_000,
  /** Past a Capstan member's quiet window (30 s, packages/cli quietgc.ts) and its two checks after. */
  restMs: 40_000,
  quickRestMs: 0,
  /** With --against: 3 s rounds of the 15 s, 2 s rounds of --quick's 4 s. */
  rounds: 5,
  quickRounds: 2,
  channels: 16,
  inflight: 16,
  watchers: 100,
  watchRate: 100,
  valueSize: 256,
  fsyncSamples: 1000,
  quickFsyncSamples: 200,
} as const;

/** A duration flag's value in ms, as chaos `durationMs` reads it (`90s`, `500ms`, `2m`, `1h`; a bare number is seconds). */
export function parseDuration(flag: string, v: string): number {
  const ms = durationMs(v);
  if (ms === undefined) throw new FlagError(`${flag}: bad duration ${JSON.stringify(v)} (e.g. 10s, 500ms, 2m)`);
  return ms;
}

function positiveInt(flag: string, v: string, max: number): number {
  if (!/^\d+$/.test(v)) throw new FlagError(`${flag} must be a positive integer, not ${JSON.stringify(v)}`);
  const n = Number(v);
  if (n < 1 || n > max) throw new FlagError(`${flag} must be between 1 and ${max}, not ${n}`);
  return n;
}

function endpointList(flag: string, v: string): string[] {
  const list = v.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (list.length === 0) throw new FlagError(`${flag} needs at least one host:port`);
  for (const e of list) {
    if (!/^(https?:\/\/)?[^/:\s]+:\d+\/?$/.test(e)) throw new FlagError(`${flag}: ${JSON.stringify(e)} is not host:port or http://host:port`);
    if (e.startsWith('https://')) throw new FlagError(`${flag}: ${e}: TLS is not supported by the load generator`);
  }
  return list;
}

const BOOLEAN_FLAGS = new Set(['--quick', '--cpu-prof', '--keep-data', '--help', '-h']);
const VALUE_FLAGS = new Set([
  '--target',
  '--against',
  '--members',
  '--endpoints',
  '--metrics-endpoints',
  '--duration',
  '--warmup',
  '--settle',
  '--rest',
  '--rounds',
  '--workloads',
  '--channels',
  '--inflight',
  '--watchers',
  '--watch-rate',
  '--value-size',
  '--fsync-samples',
  '--results',
  '--member-node-args',
  '--member-flags',
]);

/**
 * Flags the tool sets on every member itself, the same for both systems (targets.ts): not for
 * --member-flags, whose flags go after them, so that a comparison keeps its footing.
 */
const TOOL_MEMBER_FLAGS = [
  'name',
  'data-dir',
  'listen-client-urls',
  'advertise-client-urls',
  'listen-peer-urls',
  'initial-advertise-peer-urls',
  'initial-cluster',
  'initial-cluster-token',
  'initial-cluster-state',
  'listen-metrics-urls',
  'heartbeat-interval',
  'election-timeout',
  'quota-backend-bytes',
  'snapshot-count',
];

/** A value of flags, each starting with --, split on spaces. */
function flagList(flag: string, v: string, what: string): string[] {
  const list = v.split(/\s+/).filter((x) => x !== '');
  const bad = list.find((x) => !x.startsWith('--'));
  if (list.length === 0 || bad !== undefined) throw new FlagError(`${flag} takes ${what}, each starting with --${bad === undefined ? '' : `, not ${JSON.stringify(bad)}`}`);
  return list;
}

/** The default results folder: bench/results/<UTC time> under the repository root. */
export function defaultResults(repoRoot: string, now = new Date()): string {
  return join(repoRoot, 'bench', 'results', now.toISOString().replace(/[:.]/g, '-').replace(/Z$/, 'Z'));
}

export function parseArgs(argv: readonly string[], repoRoot: string): BenchArgs {
  let target: TargetName = 'capstan';
  let against: TargetName | undefined;
  let duration: number | undefined;
  let warmup: number | undefined;
  let settle: number | undefined;
  let rest: number | undefined;
  let rounds: number | undefined;
  let fsyncSamples: number | undefined;
  const a: BenchArgs = {
    targets: [],
    members: DEFAULTS.members,
    endpoints: undefined,
    metricsEndpoints: undefined,
    quick: false,
    durationMs: 0,
    warmupMs: 0,
    settleMs: 0,
    restMs: 0,
    rounds: 1,
    workloads: [...WORKLOAD_NAMES],
    channels: DEFAULTS.channels,
    inflight: DEFAULTS.inflight,
    watchers: DEFAULTS.watchers,
    watchRate: DEFAULTS.watchRate,
    valueSize: DEFAULTS.valueSize,
    fsyncSamples: 0,
    results: '',
    cpuProf: false,
    memberNodeArgs: [],
    memberFlags: [],
    keepData: false,
    help: false,
  };
  const seen = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const eq = arg.indexOf('=');
    const flag = arg.startsWith('--') && eq > 0 ? arg.slice(0, eq) : arg;
    if (!flag.startsWith('-')) throw new FlagError(`unexpected argument ${JSON.stringify(arg)}`);
    if (!BOOLEAN_FLAGS.has(flag) && !VALUE_FLAGS.has(flag)) throw new FlagError(`unknown flag ${flag}`);
    if (seen.has(flag)) throw new FlagError(`${flag} given twice`);
    seen.add(flag);
    if (BOOLEAN_FLAGS.has(flag)) {
      if (eq > 0) throw new FlagError(`${flag} takes no value`);
      if (flag === '--quick') a.quick = true;
      else if (flag === '--cpu-prof') a.cpuProf = true;
      else if (flag === '--keep-data') a.keepData = true;
      else a.help = true;
      continue;
    }
    const v = eq > 0 ? arg.slice(eq + 1) : argv[++i];
    // --member-node-args and --member-flags take flags, so their values start with dashes.
    if (v === undefined || (eq < 0 && v.startsWith('--') && flag !== '--member-node-args' && flag !== '--member-flags')) throw new FlagError(`${flag} needs a value`);
    switch (flag) {
      case '--target':
        if (v !== 'capstan' && v !== 'etcd') throw new FlagError(`--target is capstan or etcd, not ${JSON.stringify(v)}`);
        target = v;
        break;
      case '--against':
        if (v !== 'etcd') throw new FlagError(`--against takes etcd (the only other system), not ${JSON.stringify(v)}`);
        against = v;
        break;
      case '--members':
        if (!['1', '3', '5'].includes(v)) throw new FlagError(`--members is 3 or 5 (or 1), not ${JSON.stringify(v)}`);
        a.members = Number(v);
        break;
      case '--endpoints':
        a.endpoints = endpointList(flag, v);
        break;
      case '--metrics-endpoints':
        a.metricsEndpoints = endpointList(flag, v);
        break;
      case '--duration':
        duration = parseDuration(flag, v);
        if (duration < MIN_ROUND_MS) throw new FlagError(`--duration must be at least ${MIN_ROUND_MS}ms`);
        break;
      case '--warmup':
        warmup = parseDuration(flag, v);
        break;
      case '--settle':
        settle = parseDuration(flag, v);
        break;
      case '--rest':
        rest = parseDuration(flag, v);
        break;
      case '--rounds':
        rounds = positiveInt(flag, v, 100);
        break;
      case '--workloads': {
        const names = v.split(',').map((s) => s.trim()).filter((s) => s !== '');
        const bad = names.filter((n) => !(WORKLOAD_NAMES as readonly string[]).includes(n));
        if (names.length === 0 || bad.length > 0) throw new FlagError(`--workloads: unknown ${bad.join(', ') || '(none given)'} (known: ${WORKLOAD_NAMES.join(', ')})`);
        // In the canonical order, each once.
        a.workloads = WORKLOAD_NAMES.filter((n) => names.includes(n));
        break;
      }
      case '--channels':
        a.channels = positiveInt(flag, v, 256);
        break;
      case '--inflight':
        a.inflight = positiveInt(flag, v, 1024);
        break;
      case '--watchers':
        a.watchers = positiveInt(flag, v, 10_000);
        break;
      case '--watch-rate':
        a.watchRate = positiveInt(flag, v, 100_000);
        break;
      case '--value-size':
        a.valueSize = positiveInt(flag, v, 1024 * 1024);
        if (a.valueSize < 16) throw new FlagError('--value-size must be at least 16 (the watch workload writes a timestamp and a sequence number)');
        break;
      case '--fsync-samples':
        fsyncSamples = positiveInt(flag, v, 1_000_000);
        break;
      case '--member-node-args':
        a.memberNodeArgs = flagList(flag, v, 'node flags');
        break;
      case '--member-flags': {
        a.memberFlags = flagList(flag, v, "etcd's member flags");
        const own = a.memberFlags.map((f) => f.replace(/^--/, '').split('=')[0]!).find((name) => TOOL_MEMBER_FLAGS.includes(name));
        if (own !== undefined) throw new FlagError(`--member-flags cannot set --${own}: the tool sets it, the same for both systems`);
        break;
      }
      case '--results':
        if (v.trim() === '') throw new FlagError('--results needs a directory');
        a.results = v;
        break;
      default:
        throw new FlagError(`unknown flag ${flag}`);
    }
  }
  if (against !== undefined) {
    if (seen.has('--target') && target !== 'capstan') throw new FlagError('--against etcd compares Capstan with etcd: leave out --target (or say --target capstan)');
    if (a.endpoints !== undefined) throw new FlagError('--against etcd starts both clusters itself: it cannot be used with --endpoints');
    a.targets = ['capstan', against];
  } else {
    a.targets = [target];
  }
  if (a.endpoints !== undefined) {
    if (seen.has('--members')) throw new FlagError('--members starts a cluster; --endpoints uses one that runs: give one or the other');
    if (a.cpuProf) throw new FlagError('--cpu-prof applies to members this tool starts, not to --endpoints');
    if (a.memberNodeArgs.length > 0) throw new FlagError('--member-node-args applies to members this tool starts, not to --endpoints');
    if (a.memberFlags.length > 0) throw new FlagError('--member-flags applies to members this tool starts, not to --endpoints');
    if (rest !== undefined && rest > 0) throw new FlagError('--rest reads the memory of members this tool starts, not of --endpoints');
  } else if (a.metricsEndpoints !== undefined) {
    throw new FlagError('--metrics-endpoints goes with --endpoints (members this tool starts are scraped by themselves)');
  }
  if (a.cpuProf && !a.targets.includes('capstan')) throw new FlagError('--cpu-prof profiles Capstan members: it needs --target capstan or --against etcd');
  if (a.memberNodeArgs.length > 0 && !a.targets.includes('capstan')) throw new FlagError('--member-node-args is for Capstan members (node): it needs --target capstan or --against etcd');
  a.durationMs = duration ?? (a.quick ? DEFAULTS.quickDurationMs : DEFAULTS.durationMs);
  a.warmupMs = warmup ?? Math.min(a.quick ? DEFAULTS.quickWarmupMs : DEFAULTS.warmupMs, Math.floor(a.durationMs / 4));
  a.settleMs = settle ?? (a.quick ? DEFAULTS.quickSettleMs : DEFAULTS.settleMs);
  a.restMs = a.endpoints !== undefined ? 0 : (rest ?? (a.quick ? DEFAULTS.quickRestMs : DEFAULTS.restMs));
  if (rounds !== undefined && a.targets.length === 1 && rounds > 1) throw new FlagError('--rounds alternates two systems: it goes with --against etcd');
  a.rounds = a.targets.length === 1 ? 1 : (rounds ?? (a.quick ? DEFAULTS.quickRounds : DEFAULTS.rounds));
  if (a.durationMs / a.rounds < MIN_ROUND_MS) throw new FlagError(`--rounds ${a.rounds} leaves rounds of ${Math.floor(a.durationMs / a.rounds)} ms: each must measure at least ${MIN_ROUND_MS} ms (raise --duration or lower --rounds)`);
  a.fsyncSamples = fsyncSamples ?? (a.quick ? DEFAULTS.quickFsyncSamples : DEFAULTS.fsyncSamples);
  if (a.results === '') a.results = defaultResults(repoRoot);
  return a;
}
