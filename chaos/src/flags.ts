/**
 * Flags of `npm run chaos`. A bad flag is a UsageError: main prints its message and the usage, not
 * a stack trace.
 */
import { join } from 'node:path';
import type { Target } from './cluster.js';
import { durationMs } from './duration.js';
import { FAULT_KINDS, type FaultKind } from './run.js';

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export const USAGE = `usage: npm run chaos -- [--target capstan|etcd] [--members 3|5] [--duration 60s] [--seed S]
                      [--faults kind,kind] [--results DIR]
  --target    the cluster under test: Capstan members, or etcd 3.4 from Debian's etcd-server (default capstan)
  --members   3 or 5 (default 3)
  --duration  how long faults and the workload run: 90s, 30m, 1h (default 60s)
  --seed      draws the fault schedule and the workload; the same seed replays the same schedule
  --faults    only these kinds of fault: ${FAULT_KINDS.join(',')}
  --results   where histories and member logs go (default chaos-results/<target>-<members>-seed<S>-<time>)
The last line is "chaos: <target> <ops> ops, <faults> faults, <V> violations"; the exit code is 1 on violations.`;

export interface Args {
  readonly target: Target;
  readonly members: 3 | 5;
  readonly durationMs: number;
  readonly seed: number;
  readonly results: string;
  readonly faults?: FaultKind[];
}

export function parseDuration(v: string): number {
  const ms = durationMs(v);
  if (ms === undefined) throw new UsageError(`bad duration ${JSON.stringify(v)} (e.g. 90s, 30m)`);
  if (!(ms > 0)) throw new UsageError(`--duration must be more than 0, not ${JSON.stringify(v)}`);
  return ms;
}

/** The flags, or 'help' when --help or -h is among them. */
export function parseArgs(argv: readonly string[], now: Date = new Date()): Args | 'help' {
  if (argv.includes('--help') || argv.includes('-h')) return 'help';
  let target: Target = 'capstan';
  let members: 3 | 5 = 3;
  let durationMs = 60_000;
  let seed = now.getTime() % 1_000_000;
  let results = '';
  let faults: FaultKind[] | undefined;
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i]!.split('=', 2) as [string, string | undefined];
    if (!flag.startsWith('--')) throw new UsageError(`unexpected argument ${JSON.stringify(argv[i])}`);
    const v = inline ?? argv[++i];
    if (v === undefined) throw new UsageError(`flag needs an argument: ${flag}`);
    if (flag === '--target') {
      if (v !== 'capstan' && v !== 'etcd') throw new UsageError('--target is capstan or etcd');
      target = v;
    } else if (flag === '--members') {
      if (v !== '3' && v !== '5') throw new UsageError('--members is 3 or 5');
      members = Number(v) as 3 | 5;
    } else if (flag === '--duration') durationMs = parseDuration(v);
    else if (flag === '--seed') {
      if (!/^\d+$/.test(v) || !Number.isSafeInteger(Number(v))) throw new UsageError(`--seed is a non-negative integer, not ${JSON.stringify(v)}`);
      seed = Number(v);
    } else if (flag === '--results') results = v;
    else if (flag === '--faults') {
      const kinds = v.split(',');
      const bad = kinds.filter((k) => !(FAULT_KINDS as readonly string[]).includes(k));
      if (bad.length > 0) throw new UsageError(`--faults: unknown ${bad.map((k) => JSON.stringify(k)).join(', ')} (known: ${FAULT_KINDS.join(',')})`);
      faults = kinds as FaultKind[];
    } else throw new UsageError(`flag provided but not defined: ${flag}`);
  }
  if (results === '') results = join('chaos-results', `${target}-${members}-seed${seed}-${now.toISOString().replace(/[:.]/g, '-')}`);
  return { target, members, durationMs, seed, results, ...(faults ? { faults } : {}) };
}
