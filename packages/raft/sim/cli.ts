// npm run sim -- [--seeds N] [--steps M] [--seed S] [--members 3|5] [--trace] [--quiet]
// Runs seeded simulations and exits 1 at the first violation, printing how to replay it.
// The last line is always `sim: <N> seeds, <steps> steps, <V> violations`.

import { parseArgs } from 'node:util';
import { runSeeds } from './run.js';

function main(): number {
  const { values } = parseArgs({
    options: {
      seeds: { type: 'string', default: '100' },
      steps: { type: 'string', default: '2000' },
      seed: { type: 'string' },
      first: { type: 'string', default: '1' },
      members: { type: 'string' },
      trace: { type: 'boolean', default: false },
      quiet: { type: 'boolean', default: false },
    },
    strict: true,
  });
  const num = (name: string, v: string | undefined): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < 0) throw new Error(`--${name} must be a non-negative integer, got ${JSON.stringify(v)}`);
    return n;
  };
  const members = num('members', values.members);
  if (members !== undefined && members !== 3 && members !== 5) throw new Error('--members must be 3 or 5');
  const one = num('seed', values.seed);
  const summary = runSeeds({
    first: one ?? num('first', values.first)!,
    count: one !== undefined ? 1 : num('seeds', values.seeds)!,
    steps: num('steps', values.steps)!,
    ...(members !== undefined ? { members } : {}),
    ...(values.trace ? { trace: (l: string) => console.log(l) } : {}),
    log: values.quiet ? () => {} : (l: string) => console.log(l),
    report: (l: string) => console.log(l),
  });
  console.log(`sim: ${summary.seeds} seeds, ${summary.steps} steps, ${summary.violations} violations`);
  return summary.violations === 0 ? 0 : 1;
}

try {
  process.exitCode = main();
} catch (e) {
  console.error(`sim: ${(e as Error).message}`);
  console.log('sim: 0 seeds, 0 steps, 0 violations');
  process.exitCode = 2;
}
