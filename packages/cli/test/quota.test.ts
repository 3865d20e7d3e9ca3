// --quota-backend-bytes: past it the member raises NOSPACE, the cluster refuses writes that grow
// the store with etcd's error, deletes still work, and `alarm disarm` lets writes through again.
import t from 'tap';
import { ETCDCTL, etcdctl, healthy, hostPort, oneMember, startMember, stopMember, until } from './helpers/cluster.js';

if (ETCDCTL === undefined) {
  t.fail('etcdctl not found: npm test fetches it with scripts/fetch-etcd.sh');
} else {
  t.test('NOSPACE alarm', async (t) => {
    const m = startMember(await oneMember(t.testdir(), 'q', ['--quota-backend-bytes=60000']));
    const { client, metrics } = m;
    t.teardown(() => stopMember(m, 'SIGKILL'));
    await until('healthy', () => healthy(metrics));
    const ep = hostPort(client);
    const big = 'x'.repeat(20_000);
    // The member checks its size every second, so the alarm may come after any of these puts:
    // write until it does (60 kB of quota, 20 kB a put).
    let accepted = 0;
    for (let i = 0; i < 10 && !(await etcdctl(ep, ['alarm', 'list'])).stdout.includes('alarm:NOSPACE'); i++) {
      if ((await etcdctl(ep, ['put', `k${i}`, big])).stdout === 'OK\n') accepted++;
      await new Promise((r) => setTimeout(r, 300));
    }
    t.ok(accepted >= 3, `puts went through until the quota was passed (${accepted})`);
    await until('the alarm', async () => (await etcdctl(ep, ['alarm', 'list'])).stdout.includes('alarm:NOSPACE'));
    const refused = await etcdctl(ep, ['put', 'more', 'v']);
    t.not(refused.code, 0);
    t.match(refused.stderr, /etcdserver: mvcc: database space exceeded/);
    const txn = await etcdctl(ep, ['txn'], { input: '\nput t 1\n\n\n' });
    t.match(txn.stderr, /database space exceeded/, 'a txn that puts is refused too');
    t.equal((await etcdctl(ep, ['get', 'k1', '--print-value-only'])).stdout.length, 20_001, 'reads work');
    t.equal((await etcdctl(ep, ['del', 'k0'])).stdout, '1\n', 'deletes work');
    t.match((await etcdctl(ep, ['alarm', 'disarm'])).stdout, /alarm:NOSPACE/);
    t.equal((await etcdctl(ep, ['alarm', 'list'])).stdout, '');
    t.equal((await etcdctl(ep, ['put', 'more', 'v'])).stdout, 'OK\n', 'writes go through after disarm');
  });
}
