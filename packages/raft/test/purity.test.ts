// The core must stay a pure state machine: no I/O, timers, clocks or randomness of its own, so
// that the simulator's seed alone decides what happens.
import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const srcDir = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src');
const FORBIDDEN: readonly [RegExp, string][] = [
  [/from\s+['"](node:)?(fs|net|http2?|https|dgram|child_process|timers|worker_threads|os|crypto)(\/[^'"]*)?['"]/, 'an I/O module'],
  [/\bimport\(/, 'a dynamic import'],
  [/Math\.random/, 'Math.random'],
  [/Date\.now|new Date\(|performance\.now|process\.hrtime/, 'a clock'],
  [/setTimeout|setInterval|setImmediate|queueMicrotask|process\.nextTick/, 'a timer'],
  [/\bprocess\./, 'the process object'],
];

const files = readdirSync(srcDir).filter((f) => f.endsWith('.ts'));

t.ok(files.length >= 10, `found the sources (${files.length} files in ${srcDir})`);
for (const f of files) {
  const body = readFileSync(join(srcDir, f), 'utf8');
  for (const [re, what] of FORBIDDEN) {
    t.notMatch(body, re, `${f} uses no ${what}`);
  }
}

t.test('the check itself catches a planted import', async (t) => {
  t.match("import { open } from 'node:fs';", FORBIDDEN[0]![0]);
  t.match('const x = Math.random();', FORBIDDEN[2]![0]);
  t.match('setTimeout(f, 1)', FORBIDDEN[4]![0]);
});
