// What the bench reads about CPU use from /proc: a process's CPU seconds, the machine's busy seconds.
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cpuSeconds, machineBusySeconds } from '../src/targets.js';

t.test('machineBusySeconds: user, nice, system, irq, softirq and steal; not idle or iowait', async (t) => {
  const dir = t.testdir();
  const stat = join(dir, 'stat');
  writeFileSync(stat, 'cpu  100 20 30 400000 5000 6 7 8 0 0\ncpu0 50 10 15 200000 2500 3 3 4 0 0\n');
  t.equal(machineBusySeconds(stat), (100 + 20 + 30 + 6 + 7 + 8) / 100);
  writeFileSync(stat, 'intr 1 2 3\n');
  t.equal(machineBusySeconds(stat), undefined, 'not a cpu line');
  t.equal(machineBusySeconds(join(dir, 'missing')), undefined, 'no /proc/stat');
});

t.test('on this machine both grow as this process burns CPU', async (t) => {
  const machine0 = machineBusySeconds();
  const self0 = cpuSeconds(process.pid);
  if (machine0 === undefined || self0 === undefined) {
    t.pass('no /proc here');
    return;
  }
  // Until this process has used 0.3 s of CPU, however long a busy machine makes that take.
  const used = (): number => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1e6;
  };
  const start = used();
  let x = 0;
  while (used() - start < 0.3) for (let i = 0; i < 1e5; i++) x += Math.sqrt(x + i);
  t.ok(x > 0);
  t.ok(cpuSeconds(process.pid)! - self0 >= 0.25, 'this process: its 0.3 s, in 10 ms ticks');
  t.ok(machineBusySeconds()! - machine0 >= 0.25, 'the machine: at least as much');
});
