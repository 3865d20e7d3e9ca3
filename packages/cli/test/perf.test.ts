// etcdctl's own sanity benchmark, `check perf --load s` (60 s of writes at a small load, with its
// pass criteria on throughput and latency), against three real members.
import t from 'tap';
import { ETCDCTL, etcdctl, healthy, hostPort, startMember, stopMember, threeMembers, until, type MemberProc } from './helpers/cluster.js';

if (ETCDCTL === undefined) {
  t.fail('etcdctl not found: npm test fetches it with scripts/fetch-etcd.sh');
} else {
  t.test('etcdctl check perf --load s passes', async (t) => {
    const members: MemberProc[] = (await threeMembers(t.testdir())).map(startMember);
    t.teardown(async () => {
      for (const m of members) await stopMember(m, 'SIGKILL');
    });
    await until('every member healthy', async () => (await Promise.all(members.map((m) => healthy(m.metrics)))).every(Boolean));
    const r = await etcdctl(members.map((m) => hostPort(m.client)).join(','), ['check', 'perf', '--load=s'], { timeoutMs: 180_000 });
    const verdict = r.stdout.slice(r.stdout.lastIndexOf('1m0s') + 4).trim();
    t.comment(verdict.replace(/\n/g, ' | '));
    t.equal(r.code, 0, r.stderr);
    t.match(r.stdout, /PASS: Throughput is \d+ writes\/s/);
    t.match(r.stdout, /\nPASS\n?$/);
  });
}
