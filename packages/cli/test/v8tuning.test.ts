import t from 'tap';
import { execFileSync } from 'node:child_process';
import { MEMBER_INTERRUPT_BUDGET_BYTES, tuneV8ForMember } from '../src/v8tuning.js';

// A child runs a small function 300 times and asks V8 whether it was optimized: with the default
// budget it is not yet, with the member's it is. Recompilation is made synchronous so the answer
// does not depend on a background compiler thread.
const PROBE = `
const tune = process.argv[1] === 'tune';
if (tune) (await import(${JSON.stringify(new URL('../src/v8tuning.js', import.meta.url).href)})).tuneV8ForMember([]);
function f(a) { let s = 0; for (let i = 0; i < 4; i++) s += a[i] * 2 + 1; return s; }
const arr = [1, 2, 3, 4];
for (let i = 0; i < 300; i++) f(arr);
const OPTIMIZED = 16;
console.log((%GetOptimizationStatus(f) & OPTIMIZED) !== 0 ? 'optimized' : 'not optimized');
`;

function probe(mode: 'tune' | 'default'): string {
  return execFileSync(process.execPath, ['--allow-natives-syntax', '--no-concurrent-recompilation', '--input-type=module', '-e', PROBE, mode], { encoding: 'utf8' }).trim();
}

t.test('the member budget makes V8 optimize a hot function sooner', async (t) => {
  t.equal(probe('default'), 'not optimized', 'control: V8 default budget');
  t.equal(probe('tune'), 'optimized', `--interrupt-budget=${MEMBER_INTERRUPT_BUDGET_BYTES}`);
});

t.test('a budget given on the command line wins', async (t) => {
  t.equal(tuneV8ForMember(['--interrupt-budget=67584']), false);
  t.equal(tuneV8ForMember(['--interrupt_budget', '1000']), false);
  t.equal(tuneV8ForMember(['--max-old-space-size=100']), true);
});
