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
import { checkAll, type Violation } from './check.js';
import { KEYS, now, PREFIX, Workload } from './workload.js';

export interface RunOptions {
  readonly target: 'capstan' | 'etcd';
  readonly members: 3 | 5;
  readonly durationMs: number;
  readonly seed: number;
  readonly resultsDir: string;
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
}

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
  /** Arms the failpoint in each victim, waits for them to die of it, and restarts them after `hold`. */
  const diskFault = (name: string, victims: number[], failpoint: string, term: string, hold: number): Promise<void> =>
    fault(name, victims, async () => {
      for (const i of victims) await cluster.armFailpoint(i, failpoint, term).catch((err: unknown) => log(`chaos: ${String(err)}`));
      for (const i of victims) {
        if (await cluster.exitsWithin(i, FAILPOINT_FIRE_MS)) continue;
        log(`chaos: ${failpoint}=${term} did not fire in member ${i} within ${FAILPOINT_FIRE_MS} ms: killed instead`);
        await cluster.kill(i);
      }
      await sleep(hold);
      for (const i of victims) await cluster.restart(i);
    });
  while (now() - started < opts.durationMs - every) {
    await sleep(faultRng.between(every / 2, (every * 3) / 2));
    const kind = faultRng.int(cluster.failpoints ? 12 : 9);
    const hold = faultRng.between(1000, 3000);
    const all = [...Array(n).keys()];
    const shuffled = [...all].sort(() => faultRng.float() - 0.5);
    switch (kind) {
      case 0: {
        const i = faultRng.int(n);
        await fault('kill+restart', [i], async () => {
          await cluster.kill(i);
          await sleep(hold);
          await cluster.restart(i);
        });
        break;
      }
      case 1: {
        const l = (await cluster.leader()) ?? faultRng.int(n);
        await fault('kill leader+restart', [l], async () => {
          await cluster.kill(l);
          await sleep(hold);
          await cluster.restart(l);
        });
        break;
      }
      case 2: {
        const victims = shuffled.slice(0, minority);
        await fault('kill minority+restart', victims, async () => {
          for (const i of victims) await cluster.kill(i);
          await sleep(hold);
          for (const i of victims) await cluster.restart(i);
        });
        break;
      }
      case 3: {
        const i = faultRng.int(n);
        await fault('pause+resume', [i], async () => {
          cluster.pause(i);
          await sleep(hold);
          cluster.resume(i);
        });
        break;
      }
      case 4: {
        const l = (await cluster.leader()) ?? faultRng.int(n);
        await fault('isolate leader', [l], async () => {
          cluster.partition([l], all.filter((i) => i !== l));
          await sleep(hold);
          cluster.heal();
        });
        break;
      }
      case 5: {
        const small = shuffled.slice(0, minority);
        await fault('partition minority', small, async () => {
          cluster.partition(small, all.filter((i) => !small.includes(i)));
          await sleep(hold);
          cluster.heal();
        });
        break;
      }
      case 7: {
        const i = faultRng.int(n);
        await fault('bridge', [i], async () => {
          cluster.bridge(i);
          await sleep(hold);
          cluster.heal();
        });
        break;
      }
      case 8: {
        const ms = faultRng.between(20, 200);
        await fault(`delay ${ms} ms on every link`, all, async () => {
          cluster.delay(ms);
          await sleep(hold * 2);
          cluster.heal();
        });
        break;
      }
      case 9: {
        const i = faultRng.int(n);
        await diskFault('fsync error', [i], 'walBeforeFsync', 'error(EIO)', hold);
        break;
      }
      case 10: {
        const i = faultRng.chance(0.5) ? ((await cluster.leader()) ?? faultRng.int(n)) : faultRng.int(n);
        await diskFault('crash before fsync (unsynced batch lost)', [i], 'walBeforeFsync', 'crash', hold);
        break;
      }
      case 11: {
        if (faultRng.chance(0.5)) {
          const i = faultRng.chance(0.5) ? ((await cluster.leader()) ?? faultRng.int(n)) : faultRng.int(n);
          await diskFault('crash after fsync before apply', [i], 'raftAfterSave', 'crash', hold);
        } else {
          await diskFault('power cut (every member crashes before its next fsync)', all, 'walBeforeFsync', 'crash', hold / 2);
        }
        break;
      }
      case 6:
      default: {
        if (faultRng.chance(0.5)) {
          await fault('kill all+restart', all, async () => {
            for (const i of all) await cluster.kill(i);
            await sleep(hold / 2);
            for (const i of all) await cluster.restart(i);
          });
        } else {
          const i = faultRng.int(n);
          await fault('cut one way (others -> member)', [i], async () => {
            cluster.partition(all.filter((j) => j !== i), [i], true);
            await sleep(hold);
            cluster.heal();
          });
        }
      }
    }
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
  try {
    for (let k = 0; k < KEYS; k++) {
      const key = `${PREFIX}k${k}`;
      const call = now();
      const v = await retry(() => final.get(key).string());
      workload.recorded.ops.push({ client: -1, input: { kind: 'get', key }, call, output: { kind: 'get', value: v }, ret: now() });
    }
    violations.push(...(await checkHashes(cluster, final)));
  } catch (err) {
    violations.push({ check: 'final read', detail: `the healed cluster did not answer: ${String(err)}` });
  } finally {
    final.close();
    workload.close();
  }
  violations.push(...checkAll(workload.recorded));
  await mkdir(opts.resultsDir, { recursive: true });
  const json = (x: unknown): string => JSON.stringify(x, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 1);
  await writeFile(join(opts.resultsDir, 'history.json'), json(workload.recorded));
  await writeFile(join(opts.resultsDir, 'faults.json'), json(faults));
  await writeFile(join(opts.resultsDir, 'violations.json'), json(violations));
  return { ops: workload.recorded.ops.length, faults, violations };
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
  const rev = Number((await retry(() => client.maintenance.status())).header.revision);
  const endpoints = cluster.clientEndpoints().map((e) => new URL(e).host);
  const run = promisify(execFile);
  const hashes: string[] = [];
  for (const ep of endpoints) {
    const out = await retry(async () => {
      const { stdout } = await run(cluster.etcdctl(), [`--endpoints=${ep}`, 'endpoint', 'hashkv', `--rev=${rev}`, '-w', 'json'], { env: { ...process.env, ETCDCTL_API: '3' } });
      return stdout;
    });
    hashes.push(String((JSON.parse(out) as Array<{ HashKV: { hash: number } }>)[0]!.HashKV.hash));
  }
  if (new Set(hashes).size === 1) return [];
  return [{ check: 'hashkv', detail: `members differ at revision ${rev}: ${endpoints.map((e, i) => `${e}=${hashes[i]}`).join(' ')}` }];
}
