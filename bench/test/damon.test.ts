// What the bench reads about the kernel's data access monitor from sysfs, and how it says it.
import t from 'tap';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { damonCpuByTarget, damonCpuSeconds, damonMonitors, describeDamon } from '../src/damon.js';

function files(root: string, tree: Record<string, string>): void {
  for (const [path, content] of Object.entries(tree)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), `${content}\n`);
  }
}

/** sysfs files of kdamond `k` with one context: its state, pid, operations, and a sample_us if given. */
function kdamond(k: number, state: string, pid: number, operations: string, sampleUs?: string): Record<string, string> {
  const dir = `kdamonds/${k}`;
  return {
    [`${dir}/state`]: state,
    [`${dir}/pid`]: String(pid),
    [`${dir}/contexts/0/operations`]: operations,
    ...(sampleUs === undefined ? {} : { [`${dir}/contexts/0/monitoring_attrs/intervals/sample_us`]: sampleUs }),
  };
}

t.test('damonMonitors: every context of every kdamond that is on, with its schemes', async (t) => {
  const root = t.testdir();
  files(root, {
    'kdamonds/nr_kdamonds': '3',
    ...kdamond(0, 'on', 83, 'paddr', '500000'),
    'kdamonds/0/contexts/nr_contexts': '1',
    'kdamonds/0/contexts/0/schemes/nr_schemes': '2',
    'kdamonds/0/contexts/0/schemes/0/action': 'pageout',
    'kdamonds/0/contexts/0/schemes/1/action': 'lru_prio',
    ...kdamond(1, 'off', -1, 'vaddr'),
    ...kdamond(2, 'on', 90, 'vaddr', '5000'),
  });
  t.same(damonMonitors(root), [
    { pid: 83, operations: 'paddr', sampleMs: 500, actions: ['pageout', 'lru_prio'] },
    { pid: 90, operations: 'vaddr', sampleMs: 5, actions: [] },
  ]);
});

t.test('damonMonitors: a context without a readable sampling interval says so, not NaN', async (t) => {
  const root = t.testdir();
  files(root, { ...kdamond(0, 'on', 83, 'paddr'), ...kdamond(1, 'on', 84, 'paddr', 'garbled') });
  const ms = damonMonitors(root);
  t.same(ms.map((m) => m.sampleMs), [undefined, undefined]);
  t.equal(JSON.parse(JSON.stringify(ms[0])).sampleMs, undefined, 'left out of results.json, not null');
  t.match(describeDamon(ms), /kdamond 83 samples physical memory at an interval it does not show;/);
  t.notMatch(describeDamon(ms), /NaN|undefined/);
});

t.test('damonMonitors: none where DAMON has no sysfs, or nothing runs', async (t) => {
  t.same(damonMonitors(join(t.testdir(), 'absent')), []);
  const root = t.testdir();
  files(root, { 'kdamonds/nr_kdamonds': '1', 'kdamonds/0/state': 'off', 'kdamonds/0/pid': '-1' });
  t.same(damonMonitors(root), []);
  t.ok(Array.isArray(damonMonitors()), 'this host answers without throwing');
});

t.test('damonCpuSeconds: each kdamond thread once; undefined when one cannot be read', async (t) => {
  const monitors = [
    { pid: 83, operations: 'paddr', sampleMs: 500, actions: [] },
    { pid: 83, operations: 'paddr', sampleMs: 500, actions: [] },
    { pid: 90, operations: 'vaddr', sampleMs: 5, actions: [] },
  ];
  const seen: number[] = [];
  t.equal(
    damonCpuSeconds(monitors, (pid) => {
      seen.push(pid);
      return pid === 83 ? 1.5 : 0.25;
    }),
    1.75,
  );
  t.same(seen, [83, 90]);
  t.equal(damonCpuSeconds(monitors, (pid) => (pid === 90 ? undefined : 1)), undefined);
  t.equal(damonCpuSeconds([], () => undefined), 0);
});

t.test('describeDamon: names the period, the schemes and the CPU it took; nothing when none runs', async (t) => {
  t.equal(describeDamon([]), undefined);
  const line = describeDamon([{ pid: 83, operations: 'paddr', sampleMs: 500, actions: ['pageout'] }], 3.94);
  t.match(line, /^DAMON is on: kdamond 83 samples physical memory every 500 ms \(schemes: pageout\); it used 3\.9% of a CPU during the run\./);
  t.match(line, /latency tails \(p99, max\) of every system/);
  t.notMatch(describeDamon([{ pid: 90, operations: 'vaddr', sampleMs: 5, actions: [] }]), /schemes|used/);
});

t.test('damonCpuByTarget: each system\'s windows weighted by length; a system with an unread window left out', async (t) => {
  const w = (target: string, durationMs: number, kdamondPercent?: number) => ({ target, durationMs, cpu: kdamondPercent === undefined ? {} : { kdamondPercent } });
  t.same(damonCpuByTarget([w('capstan', 1000, 4), w('etcd', 2000, 1), w('capstan', 3000, 0), w('etcd', 2000, 2)]), { capstan: 1, etcd: 1.5 });
  t.same(damonCpuByTarget([w('capstan', 1000, 4), w('capstan', 1000)]), {}, 'one window without the figure: no figure for the system');
  t.same(damonCpuByTarget([{ target: 'etcd', durationMs: 1000 }]), {}, 'a window without a CPU block');
  t.same(damonCpuByTarget([]), {});
});

t.test('describeDamon: kdamond beside each system in the measured windows, with or without the run figure', async (t) => {
  const m = [{ pid: 83, operations: 'paddr', sampleMs: 500, actions: ['pageout'] }];
  t.match(describeDamon(m, 3.2, { capstan: 1.44, etcd: 0.71 }), /; it used 3\.2% of a CPU during the run; in the measured windows 1\.4% beside capstan, 0\.7% beside etcd\. Each sample/);
  t.match(describeDamon(m, undefined, { etcd: 0.71 }), /\(schemes: pageout\); in the measured windows 0\.7% beside etcd\./);
  t.notMatch(describeDamon(m, 3.2, {}), /measured windows/);
});
