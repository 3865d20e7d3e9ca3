/**
 * The systems under test: a cluster this tool starts (Capstan members, or Debian's etcd 3.4, the
 * way chaos/ starts them, but with peers talking directly, no proxies), or endpoints given.
 * Both kinds of cluster get the same settings, recorded in results.json.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { ChaosCluster } from '@capstan/chaos/cluster';
import { etcdBinaries, REPO_ROOT } from '@capstan/chaos/etcd-binaries';
import { PROFILE_DIR } from './flame.js';
import type { TargetName } from './flags.js';

/** The same for both systems (etcd's own defaults for heartbeat and election). */
export const CLUSTER_SETTINGS = {
  heartbeatMs: 100,
  electionMs: 1000,
  /** etcd's largest recommended quota: long runs must not hit NOSPACE. */
  quotaBackendBytes: 8 * 1024 * 1024 * 1024,
  /**
   * Given to both: etcd 3.6's default and kubeadm's, and Capstan's. Debian's etcd 3.4 would
   * otherwise keep its own default, 100,000.
   */
  snapshotCount: 10_000,
  peers: 'direct on loopback (no proxies)',
  clientUrls: 'http on loopback',
} as const;

export { REPO_ROOT };

export interface Target {
  readonly name: TargetName;
  /** Client endpoints, the leader first when known (so one-channel workloads talk to the leader). */
  readonly endpoints: string[];
  readonly metricsEndpoints: string[];
  /** Index in endpoints of the leader at start, when known. */
  readonly leader: number | undefined;
  readonly version: string;
  readonly started: boolean;
  /** Pids of the member processes it started (none for --endpoints). */
  pids(): number[];
  /** The members it started, as they were at start (none for --endpoints): name (m0, m1, ...), pid, and whether it led. */
  readonly members: readonly { name: string; pid: number | undefined; leader: boolean }[];
  /** Stops members it started (gracefully: SIGTERM, so CPU profiles are written) and removes data unless kept. */
  stop(): Promise<void>;
}

export interface StartOptions {
  members: number;
  /** Logs go to <resultsDir>/<name>/, data to <resultsDir>/data/<name>/. */
  resultsDir: string;
  cpuProf: boolean;
  /** Node flags for Capstan members, after --cpu-prof's. */
  memberNodeArgs: readonly string[];
  /** Member flags for both systems, after the tool's own. */
  memberFlags: readonly string[];
  keepData: boolean;
}

/** CPU seconds (user + system) a process has used, from /proc/<pid>/stat; undefined if unreadable. */
export function cpuSeconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / CLOCK_TICKS;
  } catch {
    return undefined;
  }
}

/** A process's resident memory, in KiB: now (VmRSS) and at its peak so far (VmHWM). */
export interface ResidentKiB {
  rss: number;
  peak: number;
}

/** VmRSS and VmHWM from the text of /proc/<pid>/status; undefined when either is missing. */
export function parseResident(status: string): ResidentKiB | undefined {
  const kib = (field: string): number | undefined => {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(status);
    return m === null ? undefined : Number(m[1]);
  };
  const rss = kib('VmRSS');
  const peak = kib('VmHWM');
  return rss === undefined || peak === undefined ? undefined : { rss, peak };
}

/** A process's resident memory from /proc/<pid>/status; undefined if unreadable (gone, or not Linux). */
export function residentKiB(pid: number): ResidentKiB | undefined {
  try {
    return parseResident(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return undefined;
  }
}

/** One member's resident memory when the run ended, before the members were stopped (MiB). */
export interface MemberMemory {
  name: string;
  leader: boolean;
  rssMiB: number;
  /** VmHWM: the most it held at once since it started. */
  peakRssMiB: number;
  /** VmRSS after --rest, the cluster idle that long once the last workload ended. */
  restRssMiB?: number;
}

/** The memory of each member a target started, as it is now (members that cannot be read are left out). */
export function membersMemory(target: Pick<Target, 'members'>, read: (pid: number) => ResidentKiB | undefined = residentKiB): MemberMemory[] {
  const out: MemberMemory[] = [];
  for (const m of target.members) {
    const r = m.pid === undefined ? undefined : read(m.pid);
    if (r !== undefined) out.push({ name: m.name, leader: m.leader, rssMiB: r.rss / 1024, peakRssMiB: r.peak / 1024 });
  }
  return out;
}

/**
 * `memory` with each member's RSS in `rested` (read after --rest, same names) as its restRssMiB,
 * and its peak as read then: a member can grow while it rests, and its peak since it started
 * takes that in.
 */
export function withRest(memory: readonly MemberMemory[], rested: readonly MemberMemory[]): MemberMemory[] {
  return memory.map((m) => {
    const r = rested.find((x) => x.name === m.name);
    return r === undefined ? m : { ...m, peakRssMiB: Math.max(m.peakRssMiB, r.peakRssMiB), restRssMiB: r.rssMiB };
  });
}

/**
 * CPU seconds the whole machine has spent busy since boot (every CPU: user, nice, system, irq,
 * softirq and steal from /proc/stat; idle and iowait are not busy), or undefined off Linux.
 */
export function machineBusySeconds(stat = '/proc/stat'): number | undefined {
  try {
    const line = readFileSync(stat, 'utf8').split('\n', 1)[0]!;
    const f = line.trim().split(/\s+/);
    if (f[0] !== 'cpu') return undefined;
    const [user, nice, system, , , irq, softirq, steal] = f.slice(1, 9).map(Number);
    return (user! + nice! + system! + irq! + softirq! + (steal ?? 0)) / CLOCK_TICKS;
  } catch {
    return undefined;
  }
}

/** Linux's USER_HZ, 100 on every architecture Node runs on. */
const CLOCK_TICKS = 100;

function rotate<T>(xs: readonly T[], first: number): T[] {
  return [...xs.slice(first), ...xs.slice(0, first)];
}

function capstanVersion(): string {
  try {
    const commit = execFileSync('git', ['-C', REPO_ROOT, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const dirty = execFileSync('git', ['-C', REPO_ROOT, 'status', '--porcelain', '--untracked-files=no'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    return `capstan ${commit}${dirty ? ' (uncommitted changes)' : ''}`;
  } catch {
    return 'capstan (unknown commit)';
  }
}

function etcdVersion(): string {
  try {
    const out = execFileSync(etcdBinaries().etcd, ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const v = /etcd Version: (\S+)/.exec(out)?.[1];
    return v !== undefined ? `etcd ${v}` : out.split('\n')[0]!;
  } catch {
    return 'etcd (unknown version)';
  }
}

export async function startCluster(name: TargetName, opts: StartOptions): Promise<Target> {
  const dataDir = join(opts.resultsDir, 'data', name);
  const cluster = await ChaosCluster.start({
    target: name,
    members: opts.members,
    resultsDir: join(opts.resultsDir, name),
    dataDir,
    heartbeatMs: CLUSTER_SETTINGS.heartbeatMs,
    electionMs: CLUSTER_SETTINGS.electionMs,
    extraArgs: [`--quota-backend-bytes=${CLUSTER_SETTINGS.quotaBackendBytes}`, `--snapshot-count=${CLUSTER_SETTINGS.snapshotCount}`, ...opts.memberFlags],
    peerProxies: false,
    ...(name === 'capstan' ? { nodeArgs: [...(opts.cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${join(opts.resultsDir, PROFILE_DIR)}`] : []), ...opts.memberNodeArgs] } : {}),
  });
  const leader = await cluster.leader();
  const first = leader ?? 0;
  let stopped = false;
  return {
    name,
    endpoints: rotate(cluster.clientEndpoints(), first),
    metricsEndpoints: cluster.metricsEndpoints(),
    leader: leader === undefined ? undefined : 0,
    version: name === 'capstan' ? capstanVersion() : etcdVersion(),
    started: true,
    pids: () => Array.from({ length: cluster.size }, (_, i) => cluster.pid(i)).filter((p): p is number => p !== undefined),
    members: Array.from({ length: cluster.size }, (_, i) => ({ name: `m${i}`, pid: cluster.pid(i), leader: i === leader })),
    async stop() {
      if (stopped) return;
      stopped = true;
      // SIGTERM first: a Capstan member run with --cpu-prof writes its profile as it exits.
      await Promise.all(Array.from({ length: cluster.size }, (_, i) => cluster.kill(i, 'SIGTERM')));
      await cluster.close();
      if (!opts.keepData) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Endpoints given with --endpoints: nothing to start or stop. */
export function givenEndpoints(name: TargetName, endpoints: string[], metricsEndpoints: string[] | undefined): Target {
  return {
    name,
    endpoints,
    metricsEndpoints: metricsEndpoints ?? [],
    leader: undefined,
    version: `${name} at ${endpoints.join(',')}`,
    started: false,
    pids: () => [],
    members: [],
    async stop() {},
  };
}
