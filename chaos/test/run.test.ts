// A short chaos run in `npm test`: three Capstan members, the checked workload, seeded faults
// (kills, pauses, partitions through the proxies, disk faults through failpoints), zero violations.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { ChaosCluster } from '../src/cluster.js';
import { runChaos } from '../src/run.js';

t.test('chaos: capstan, 3 members, 75 s, seed 7', async (t) => {
  const results = join(t.testdir(), 'results');
  const cluster = await ChaosCluster.start({ target: 'capstan', members: 3, resultsDir: results });
  t.teardown(() => cluster.close());
  const lines: string[] = [];
  const r = await runChaos(cluster, { target: 'capstan', members: 3, durationMs: 75_000, seed: 7, resultsDir: results, log: (l) => lines.push(l) });
  t.comment(`chaos: capstan ${r.ops} ops, ${r.faults.length} faults, ${r.violations.length} violations`);
  t.same(r.violations, [], lines.join('\n'));
  t.ok(r.faults.length >= 5, `faults were injected (${r.faults.map((f) => f.fault).join(', ')})`);
  t.ok(r.ops > 1000, `the workload ran (${r.ops} operations)`);
  const history = JSON.parse(await readFile(join(results, 'history.json'), 'utf8')) as { watchComplete?: boolean; watchEvents: { key: string }[] };
  t.equal(history.watchComplete, true, 'the main watch drained to the sentinel written after the final reads');
  t.equal(history.watchEvents.at(-1)?.key, 'chaos/sentinel', 'which is its last event');
});
