/**
 * One chaos run: a cluster of real processes, the checked workload, faults on a schedule drawn
 * from the seed, then everything healed, the final state read, and the checkers run.
 */
import { execFile } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Etcd3 } from 'etcd3';
import { Rng } from '@capstan/raft/rng';
import { checkAll, type KnownDefect, type Violation } from './check.js';
import { KEYS, now, OP_TIMEOUT_MS, PREFIX, SENTINEL_KEY, timeout, Workload } from './workload.js';

export const FAULT_KINDS = [
  'kill',
  'kill-leader',
  'kill-minority',
  'kill-all',
  'pause',
  'isolate-leader',
  'partition',
  'cut-one-way',
  'bridge',
  'delay',
  'fsync-error',
  'crash-before-fsync',
  'crash-after-fsync',
  'power-cut',
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];
/** The faults that need failpoints in the members (Capstan's). */
export const DISK_FAULTS: readonly FaultKind[] = ['fsync-error', 'crash-before-fsync', 'crash-after-fsync', 'power-cut'];

export interface RunOptions {
  readonly target: 'capstan' | 'etcd';
  readonly members: 3 | 5;
  readonly durationMs: number;
  readonly seed: number;
  readonly resultsDir: string;
  /** The kinds of fault drawn from (default: all the target supports). */
  readonly faults?: readonly FaultKind[];
  /** Mean time between faults. */
  readonly faultEveryMs?: number;
  readonly log?: (line: string) => void;
}

/** What the runner needs of a cluster: the faults it can inject and where its clients connect. */
export interface FaultableCluster {
  readonly size: number;
  clientEndpoints(): string[];
  kill(i: number): Promise<void>;
  restart(i: number): Promise<void>;
  pause(i: number): void;
  resume(i: number): void;
  /** Cuts every link between the two groups (both ways unless oneWay: then only from a to b). */
  partition(a: readonly number[], b: readonly number[], oneWay?: boolean): void;
  /** The others split in two halves that can both reach member i but not each other. */
  bridge(i: number): { left: number[]; right: number[] };
  /** Latency on every member-to-member link. */
  delay(ms: number): void;
  heal(): void;
  leader(): Promise<number | undefined>;
  isRunning(i: number): boolean;
  etcdctl(): string;
  close(): Promise<void>;
  /** Members have named failpoints (Capstan's): disk faults join the schedule. */
  readonly failpoints: boolean;
  armFailpoint(i: number, name: string, term: string): Promise<void>;
  exitsWithin(i: number, ms: number): Promise<boolean>;
}

/** Under the workload every member saves within moments of a failpoint being armed. */
export const FAILPOINT_FIRE_MS = 5000;

export interface FaultRecord {
  readonly at: number;
  readonly fault: string;
  readonly members: readonly number[];
}

export interface RunResult {
  readonly ops: number;
  readonly faults: FaultRecord[];
  readonly violations: Violation[];
  /** Findings that match a known defect of the target (see KNOWN_DEFECTS): reported, not counted. */
  readonly known: Violation[];
}

/** The defects each target is known to have. */
const TARGET_DEFECTS: Readonly<Record<RunOptions['target'], ReadonlySet<KnownDefect>>> = {
  capstan: new Set(),
  etcd: new Set(['etcd-prev-kv-race']),
};

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function runChaos(cluster: FaultableCluster, opts: RunOptions): Promise<RunResult> {
  const log = opts.log ?? (() => {});
  const rng = new Rng(opts.seed);
  const faultRng = rng.fork();
  const workload = new Workload(cluster.clientEndpoints(), rng.fork());
  const started = now();
  const running = workload.run();
  const faults: FaultRecord[] = [];
  const every = opts.faultEveryMs ?? 4000;
  const n = cluster.size;
  const minority = Math.floor((n - 1) / 2);
  const fault = async (name: string, members: number[], act: () => Promise<void>): Promise<void> => {
    faults.push({ at: Math.round(now() - started), fault: name, members });
    log(`chaos: ${(now() - started).toFixed(0)} ms: ${name} ${members.join(',')}`);
    await act();
  };
  /**
   * Arms the failpoint in each wave of victims in turn, waiting for a wave to die of it before
   * arming the next, and restarts them all after `hold`.
   */
  const diskFault = (name: string, waves: number[][], failpoint: string, term: string, hold: number): Promise<void> =>
    fault(name, waves.flat(), async () => {
      for (const wave of waves) {
        for (const i of wave) await cluster.armFailpoint(i, failpoint, term).catch((err: unknown) => log(`chaos: ${String(err)}`));
        for (const i of wave) {
          if (await cluster.exitsWithin(i, FAILPOINT_FIRE_MS)) continue;
          log(`chaos: ${failpoint}=${term} did not fire in member ${i} within ${FAILPOINT_FIRE_MS} ms: killed instead`);
          await cluster.kill(i);
        }
      }
      await sleep(hold);
      for (const i of waves.flat()) await cluster.restart(i);
    });
  const all = [...Array(n).keys()];
  const leaderOr = async (i: number): Promise<number> => (await cluster.leader()) ?? i;
  const kills = (name: string, victims: number[], hold: number): Promise<void> =>
    fault(name, victims, async () => {
      for (const i of victims) await cluster.kill(i);
      await sleep(hold);
      for (const i of victims) await cluster.restart(i);
    });
  const cut = (name: string, victims: number[], hold: number, a: number[], b: number[], oneWay = false): Promise<void> =>
    fault(name, victims, async () => {
      cluster.partition(a, b, oneWay);
      await sleep(hold);
      cluster.heal();
    });
  const others = (xs: number[]): number[] => all.filter((i) => !xs.includes(i));
  // Each draws what it needs from the seed's stream; `hold` is how long the fault lasts.
  const kinds: Record<FaultKind, (hold: number, shuffled: number[]) => Promise<void>> = {
    kill: (hold) => kills('kill+restart', [faultRng.int(n)], hold),
    'kill-leader': async (hold) => kills('kill leader+restart', [await leaderOr(faultRng.int(n))], hold),
    'kill-minority': (hold, sh) => kills('kill minority+restart', sh.slice(0, minority), hold),
    'kill-all': (hold) => kills('kill all+restart', all, hold / 2),
    pause: (hold) => {
      const i = faultRng.int(n);
      return fault('pause+resume', [i], async () => {
        cluster.pause(i);
        await sleep(hold);
        cluster.resume(i);
      });
    },
    'isolate-leader': async (hold) => {
      const l = await leaderOr(faultRng.int(n));
      return cut('isolate leader', [l], hold, [l], others([l]));
    },
    partition: (hold, sh) => cut('partition minority', sh.slice(0, minority), hold, sh.slice(0, minority), sh.slice(minority)),
    'cut-one-way': (hold) => {
      const i = faultRng.int(n);
      return cut('cut one way (others -> member)', [i], hold, others([i]), [i], true);
    },
    bridge: (hold) => {
      const i = faultRng.int(n);
      return fault('bridge', [i], async () => {
        cluster.bridge(i);
        await sleep(hold);
        cluster.heal();
      });
    },
    delay: (hold) => {
      const ms = faultRng.between(20, 200);
      return fault(`delay ${ms} ms on every link`, all, async () => {
        cluster.delay(ms);
        await sleep(hold * 2);
        cluster.heal();
      });
    },
    'fsync-error': (hold) => diskFault('fsync error', [[faultRng.int(n)]], 'walBeforeFsync', 'error(EIO)', hold),
    'crash-before-fsync': async (hold) => {
      const i = faultRng.chance(0.5) ? await leaderOr(faultRng.int(n)) : faultRng.int(n);
      return diskFault('crash before fsync (unsynced batch lost)', [[i]], 'walBeforeFsync', 'crash', hold);
    },
    'crash-after-fsync': async (hold) => {
      const i = faultRng.chance(0.5) ? await leaderOr(faultRng.int(n)) : faultRng.int(n);
      return diskFault('crash after fsync before apply', [[i]], 'raftAfterSave', 'crash', hold);
    },
    // The followers go first and the leader once they are down: of a power cut's interleavings the
    // one that loses a write a follower acknowledged before its fsync (the leader, cut first, could
    // not commit anything more).
    'power-cut': async (hold) => {
      const l = await cluster.leader();
      const waves = l === undefined ? [all] : [others([l]), [l]];
      return diskFault('power cut (every member crashes before its next fsync, the leader last)', waves, 'walBeforeFsync', 'crash', hold / 2);
    },
  };
  const enabled = (opts.faults ?? FAULT_KINDS).filter((k) => cluster.failpoints || !DISK_FAULTS.includes(k));
  if (enabled.length === 0) throw new Error(`none of the faults ${(opts.faults ?? []).join(',')} can be injected into ${opts.target}`);
  while (now() - started < opts.durationMs - every) {
    await sleep(faultRng.between(every / 2, (every * 3) / 2));
    const kind = enabled[faultRng.int(enabled.length)]!;
    const hold = faultRng.between(1000, 3000);
    await kinds[kind](hold, [...all].sort(() => faultRng.float() - 0.5));
  }
  // Heal everything, give the cluster time to settle, then stop the workload.
  cluster.heal();
  for (let i = 0; i < n; i++) if (!cluster.isRunning(i)) await cluster.restart(i);
  const rest = opts.durationMs - (now() - started);
  if (rest > 0) await sleep(rest);
  workload.stop();
  await running;

  // The final state, read linearizably once everything is healed: part of the history, so an
  // acknowledged write that was lost shows up as a violation of linearizability.
  const final = new Etcd3({ hosts: cluster.clientEndpoints(), dialTimeout: 2000 });
  const violations: Violation[] = [];
  let sentinelRev: number | undefined;
  try {
    for (let k = 0; k < KEYS; k++) {
      const key = `${PREFIX}k${k}`;
      const call = now();
      const v = await retry(() => timeout(final.get(key).string(), OP_TIMEOUT_MS));
      workload.recorded.ops.push({ client: -1, input: { kind: 'get', key }, call, output: { kind: 'get', value: v }, ret: now() });
    }
    // A write after the final reads, for the main watch to drain to (see Workload.closeWatch).
    const sentinel = await retry(() => timeout(final.put(SENTINEL_KEY).value('end').exec(), OP_TIMEOUT_MS));
    sentinelRev = Number(sentinel.header.revision);
    violations.push(...(await checkHashes(cluster, final)));
  } catch (err) {
    violations.push({ check: 'final read', detail: `the healed cluster did not answer: ${String(err)}` });
  } finally {
    await workload.closeWatch(sentinelRev);
    final.close();
    workload.close();
  }
  violations.push(...checkAll(workload.recorded, TARGET_DEFECTS[opts.target]));
  await mkdir(opts.resultsDir, { recursive: true });
  const json = (x: unknown): string => JSON.stringify(x, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 1);
  await writeFile(join(opts.resultsDir, 'history.json'), json(workload.recorded));
  await writeFile(join(opts.resultsDir, 'faults.json'), json(faults));
  await writeFile(join(opts.resultsDir, 'violations.json'), json(violations));
  return {
    ops: workload.recorded.ops.length,
    faults,
    violations: violations.filter((v) => v.known === undefined),
    known: violations.filter((v) => v.known !== undefined),
  };
}

async function retry<T>(fn: () => Promise<T>, tries = 20): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await fn();
    } catch (err) {
      if (i >= tries) throw err;
      await sleep(500);
    }
  }
}

/** Every member ends with the same HashKV at one revision. */
async function checkHashes(cluster: FaultableCluster, client: Etcd3): Promise<Violation[]> {
  const rev = Number((await retry(() => timeout(client.maintenance.status(), OP_TIMEOUT_MS))).header.revision);
  const endpoints = cluster.clientEndpoints().map((e) => new URL(e).host);
  const run = promisify(execFile);
  const hashes: string[] = [];
  for (const ep of endpoints) {
    const out = await retry(async () => {
      const { stdout } = await run(cluster.etcdctl(), [`--endpoints=${ep}`, 'endpoint', 'hashkv', `--rev=${rev}`, '-w', 'json'], { env: { ...process.env, ETCDCTL_API: '3' }, timeout: 15_000 });
      return stdout;
    });
    hashes.push(String((JSON.parse(out) as Array<{ HashKV: { hash: number } }>)[0]!.HashKV.hash));
  }
  if (new Set(hashes).size === 1) return [];
  return [{ check: 'hashkv', detail: `members differ at revision ${rev}: ${endpoints.map((e, i) => `${e}=${hashes[i]}`).join(' ')}` }];
}
