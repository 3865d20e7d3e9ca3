#!/usr/bin/env node
/**
 * `npm run chaos -- [--target capstan|etcd] [--members 3|5] [--duration 60s] [--seed S]
 * [--faults kind,kind] [--results DIR]`: a cluster of real processes under a checked workload and seeded faults.
 * Last line: `chaos: <target> <ops> ops, <faults> faults, <V> violations`; exit 1 on violations.
 */
import { join } from 'node:path';
import { KNOWN_DEFECTS } from './check.js';
import { ChaosCluster, type Target } from './cluster.js';
import { FAULT_KINDS, runChaos, type FaultKind } from './run.js';

interface Args {
  target: Target;
  members: 3 | 5;
  durationMs: number;
  seed: number;
  results: string;
  faults?: FaultKind[];
}

function parseDuration(v: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(v);
  if (m === null) throw new Error(`bad duration ${JSON.stringify(v)} (e.g. 90s, 30m)`);
  const n = Number(m[1]);
  return m[2] === 'ms' ? n : m[2] === 'm' ? n * 60_000 : m[2] === 'h' ? n * 3_600_000 : n * 1000;
}

export function parseArgs(argv: readonly string[]): Args {
  const a: Args = { target: 'capstan', members: 3, durationMs: 60_000, seed: Date.now() % 1_000_000, results: '' };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i]!.split('=', 2) as [string, string | undefined];
    const v = inline ?? argv[++i];
    if (v === undefined) throw new Error(`flag needs an argument: ${flag}`);
    if (flag === '--target') {
      if (v !== 'capstan' && v !== 'etcd') throw new Error('--target is capstan or etcd');
      a.target = v;
    } else if (flag === '--members') {
      if (v !== '3' && v !== '5') throw new Error('--members is 3 or 5');
      a.members = Number(v) as 3 | 5;
    } else if (flag === '--duration') a.durationMs = parseDuration(v);
    else if (flag === '--seed') a.seed = Number(v);
    else if (flag === '--results') a.results = v;
    else if (flag === '--faults') {
      const kinds = v.split(',');
      const bad = kinds.filter((k) => !(FAULT_KINDS as readonly string[]).includes(k));
      if (bad.length > 0 || kinds.length === 0) throw new Error(`--faults: unknown ${bad.join(',')} (known: ${FAULT_KINDS.join(',')})`);
      a.faults = kinds as FaultKind[];
    }
    else throw new Error(`flag provided but not defined: ${flag}`);
  }
  if (!Number.isInteger(a.seed) || a.seed < 0) throw new Error('--seed is a non-negative integer');
  if (a.results === '') a.results = join('chaos-results', `${a.target}-${a.members}-seed${a.seed}-${new Date().toISOString().replace(/[:.]/g, '-')}`);
  return a;
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  const log = (l: string): void => void process.stdout.write(`${l}\n`);
  log(`chaos: ${args.target}, ${args.members} members, ${args.durationMs / 1000} s, seed ${args.seed}, results in ${args.results}`);
  const cluster = await ChaosCluster.start({ target: args.target, members: args.members, resultsDir: args.results });
  // Interrupted: the members go too (a signal's default action would skip the exit handlers that kill them).
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => process.exit(130));
  try {
    const r = await runChaos(cluster, { ...args, resultsDir: args.results, log });
    for (const v of r.violations) log(`VIOLATION ${v.check}: ${v.detail}`);
    for (const d of new Set(r.known.map((v) => v.known!))) {
      const seen = r.known.filter((v) => v.known === d);
      log(`known defect of ${args.target}, not counted (${seen.length} seen): ${KNOWN_DEFECTS[d]}`);
      for (const v of seen) log(`  ${v.check}: ${v.detail}`);
    }
    if (r.violations.length > 0) {
      log(`replay the fault schedule: npm run chaos -- --target ${args.target} --members ${args.members} --duration ${args.durationMs / 1000}s --seed ${args.seed}${args.faults ? ` --faults ${args.faults.join(',')}` : ''}`);
    }
    log(`chaos: ${args.target} ${r.ops} ops, ${r.faults.length} faults, ${r.violations.length} violations`);
    return r.violations.length === 0 ? 0 : 1;
  } finally {
    await cluster.close();
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`chaos: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(1);
  },
);
