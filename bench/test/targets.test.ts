// What the bench reads from /proc: a process's CPU seconds, the machine's busy seconds, a process's
// resident memory.
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cpuSeconds, machineBusySeconds, membersMemory, parseResident, residentKiB, withRest } from '../src/targets.js';

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

t.test('parseResident: VmRSS and VmHWM in KiB, or nothing when either is missing', async (t) => {
  const status = 'Name:\tnode\nVmPeak:\t 1200000 kB\nVmHWM:\t  265432 kB\nVmRSS:\t  251000 kB\nRssAnon:\t  200000 kB\n';
  t.same(parseResident(status), { rss: 251000, peak: 265432 });
  t.equal(parseResident('Name:\tkthreadd\nState:\tS (sleeping)\n'), undefined, 'a kernel thread has neither');
  t.equal(parseResident('VmRSS:\t  251000 kB\n'), undefined, 'no peak');
  t.equal(parseResident('VmHWMx:\t 1 kB\nVmRSS:\t 2 kB\n'), undefined, 'a field whose name only starts the same');
});

t.test('membersMemory: each member that can be read, in MiB, with its name and role', async (t) => {
  const members = [
    { name: 'm0', pid: 10, leader: true },
    { name: 'm1', pid: 11, leader: false },
    { name: 'm2', pid: undefined, leader: false },
  ];
  const read = (pid: number) => (pid === 10 ? { rss: 2048, peak: 3072 } : undefined);
  t.same(membersMemory({ members }, read), [{ name: 'm0', leader: true, rssMiB: 2, peakRssMiB: 3 }], 'm1 unreadable, m2 without a pid: left out');
  t.same(membersMemory({ members: [] }, read), [], '--endpoints: no members');
});

t.test('withRest: each member\'s RSS after --rest, matched by name', async (t) => {
  const end = [
    { name: 'm0', leader: true, rssMiB: 300, peakRssMiB: 350 },
    { name: 'm1', leader: false, rssMiB: 280, peakRssMiB: 330 },
  ];
  const rested = [
    { name: 'm1', leader: false, rssMiB: 150, peakRssMiB: 330 },
    { name: 'm0', leader: true, rssMiB: 160, peakRssMiB: 352 },
  ];
  t.same(withRest(end, rested), [
    { name: 'm0', leader: true, rssMiB: 300, peakRssMiB: 352, restRssMiB: 160 },
    { name: 'm1', leader: false, rssMiB: 280, peakRssMiB: 330, restRssMiB: 150 },
  ], 'the peak as read after the rest: m0 grew 2 MiB past its old one while resting');
  t.same(withRest(end, rested.slice(0, 1)).map((m) => m.restRssMiB), [undefined, 150], 'a member not read after the rest has none');
});

t.test('on this machine: this process\'s resident set, no more than its peak, and growing as it touches memory', async (t) => {
  const before = residentKiB(process.pid);
  if (before === undefined) {
    t.pass('no /proc here');
    return;
  }
  t.ok(before.rss > 0 && before.rss <= before.peak, `0 < VmRSS <= VmHWM (${JSON.stringify(before)})`);
  // 64 MiB written page by page is resident until the buffer is collected.
  const buf = Buffer.alloc(64 * 1024 * 1024, 1);
  const after = residentKiB(process.pid)!;
  t.ok(after.peak - before.rss >= 48 * 1024, `the peak grew by most of the 64 MiB (${JSON.stringify(after)})`);
  t.equal(buf[buf.length - 1], 1);
  t.equal(residentKiB(2 ** 22 + 1), undefined, 'no such process');
});
