import t from 'tap';
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { MEMBER_HEAP_GROWING_PERCENT, MEMBER_INTERRUPT_BUDGET_BYTES, tuneV8ForMember } from '../src/v8tuning.js';

const execFileAsync = promisify(execFile);
const TUNE = `if (process.argv[1] === 'tune') (await import(${JSON.stringify(new URL('../src/v8tuning.js', import.meta.url).href)})).tuneV8ForMember([]);`;

function args(flags: string[], program: string, mode: 'tune' | 'default'): string[] {
  return [...flags, '--input-type=module', '-e', `${TUNE}\n${program}`, mode];
}

function run(flags: string[], program: string, mode: 'tune' | 'default'): string {
  return execFileSync(process.execPath, args(flags, program, mode), { encoding: 'utf8' });
}

/** Both at once: the slow children mostly sleep. */
async function runBoth(flags: string[], program: string): Promise<{ control: string; tuned: string }> {
  const go = async (mode: 'tune' | 'default') => (await execFileAsync(process.execPath, args(flags, program, mode), { encoding: 'utf8' })).stdout;
  const [control, tuned] = await Promise.all([go('default'), go('tune')]);
  return { control, tuned };
}

// A child runs a small function 300 times and asks V8 whether it was optimized: with the default
// budget it is not yet, with the member's it is. Recompilation is made synchronous so the answer
// does not depend on a background compiler thread.
const HOT = `
function f(a) { let s = 0; for (let i = 0; i < 4; i++) s += a[i] * 2 + 1; return s; }
const arr = [1, 2, 3, 4];
for (let i = 0; i < 300; i++) f(arr);
const OPTIMIZED = 16;
console.log((%GetOptimizationStatus(f) & OPTIMIZED) !== 0 ? 'optimized' : 'not optimized');
`;

t.test('the member budget makes V8 optimize a hot function sooner', async (t) => {
  const flags = ['--allow-natives-syntax', '--no-concurrent-recompilation'];
  t.equal(run(flags, HOT, 'default').trim(), 'not optimized', 'control: V8 default budget');
  t.equal(run(flags, HOT, 'tune').trim(), 'optimized', `--interrupt-budget=${MEMBER_INTERRUPT_BUDGET_BYTES}`);
});

// A child keeps some objects, collects, then allocates slowly (a little every 50 ms, as a member
// under light load) and collects again; after each collection V8 prints the factor it set the next
// limit with: "[HeapController] Limit: old size: N KB, new limit: M KB (F)". After the fast start
// V8's own choice is its ceiling (4.0); after the slow part it falls (1.1 here). V8 judges the
// allocation rate over its last 5 s, so the slow part lasts 6.5 s: at 1 s, the fast start was
// still in the window and V8 kept 4.0 in one run of the whole suite. The member's factor is
// fixed: its ceiling, both times.
const GROW = `
const live = [];
for (let i = 0; i < 200000; i++) live.push({ i, s: 'x' + i });
globalThis.gc();
for (let k = 0; k < 130; k++) {
  for (let i = 0; i < 1000; i++) live.push({ i, s: 'y' + i });
  await new Promise((r) => setTimeout(r, 50));
}
globalThis.gc();
console.log(live.length);
`;

function limitFactors(out: string): string[] {
  return [...out.matchAll(/\[HeapController\] Limit: .*\(([\d.]+)\)/g)].map((m) => m[1]!);
}

t.test('the member heap grows to four times its live size before the next full collection, however slowly it allocates', async (t) => {
  const flags = ['--expose-gc', '--trace-gc-verbose'];
  const expected = (1 + MEMBER_HEAP_GROWING_PERCENT / 100).toFixed(1);
  const out = await runBoth(flags, GROW);
  const control = limitFactors(out.control);
  t.ok(control.length > 0, 'V8 reports the factor');
  t.not(control[control.length - 1], expected, `control: V8 chose ${control.join(', ')}`);
  const tuned = limitFactors(out.tuned);
  t.ok(tuned.length > 0 && tuned.every((f) => f === expected), `tuned: ${tuned.join(', ')}`);
});

t.test('a flag given on the command line wins', async (t) => {
  const growing = `--heap-growing-percent=${MEMBER_HEAP_GROWING_PERCENT}`;
  t.same(tuneV8ForMember(['--interrupt-budget=67584']), [growing]);
  t.same(tuneV8ForMember(['--interrupt_budget', '1000', '--heap_growing_percent=50']), []);
  t.same(tuneV8ForMember(['--max-old-space-size=100']), [`--interrupt-budget=${MEMBER_INTERRUPT_BUDGET_BYTES}`, growing]);
});
