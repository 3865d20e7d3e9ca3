// Named failpoints on a real member process: armed from CAPSTAN_FAILPOINTS at start or over HTTP
// while it runs; a crash is a SIGKILL at that place, an fsync error stops the member with exit 1,
// and a restarted member has every write it acknowledged.
import t from 'tap';
import { ETCDCTL, etcdctl, healthy, hostPort, oneMember, startMember, stopMember, until, type MemberProc } from './helpers/cluster.js';

const exited = (m: MemberProc): Promise<{ code: number | null; signal: NodeJS.Signals | null }> =>
  m.proc.exitCode !== null || m.proc.signalCode !== null
    ? Promise.resolve({ code: m.proc.exitCode, signal: m.proc.signalCode })
    : new Promise((resolve) => m.proc.once('exit', (code, signal) => resolve({ code, signal })));

const arm = (m: MemberProc, name: string, term: string, method = 'PUT'): Promise<Response> =>
  fetch(`${m.client}/debug/failpoints/${name}`, { method, body: method === 'PUT' ? term : undefined, signal: AbortSignal.timeout(3000) });

const withFailpoints = (spec: string): NodeJS.ProcessEnv => ({ ...process.env, CAPSTAN_FAILPOINTS: spec });

if (ETCDCTL === undefined) {
  t.fail('etcdctl not found: npm test fetches it with scripts/fetch-etcd.sh');
} else {
  t.test('failpoints are off unless CAPSTAN_FAILPOINTS is set', async (t) => {
    const m = startMember(await oneMember(t.testdir(), 'off'));
    t.teardown(() => stopMember(m, 'SIGKILL'));
    await until('healthy', () => healthy(m.metrics));
    t.equal((await fetch(`${m.client}/debug/failpoints`)).status, 404, 'no failpoint endpoint');
    t.equal((await arm(m, 'raftAfterSave', 'crash')).status, 404, 'nothing to arm');
    t.equal((await etcdctl(hostPort(m.client), ['put', 'k', 'v'])).stdout, 'OK\n');
  });

  t.test('a bad spec is refused at start with a clear error', async (t) => {
    const m = startMember(await oneMember(t.testdir(), 'bad'), withFailpoints('walBeforeFsync=explode'));
    t.teardown(() => stopMember(m, 'SIGKILL'));
    t.same(await exited(m), { code: 1, signal: null });
    t.match(m.log.join(''), /capstan member: CAPSTAN_FAILPOINTS: failpoint action "explode": want \[P%\]\[N\*\]\(crash\|error\(CODE\)\|off\)/);
    const m2 = startMember(await oneMember(t.testdir(), 'bad2'), withFailpoints('nowhere=crash'));
    t.teardown(() => stopMember(m2, 'SIGKILL'));
    t.same(await exited(m2), { code: 1, signal: null });
    t.match(m2.log.join(''), /unknown failpoint "nowhere" \(known: walBeforeFsync, raftBeforeSave, raftAfterSave\)/);
  });

  t.test('armed over HTTP: raftAfterSave=crash kills the member after the entry is durable', async (t) => {
    const spec = await oneMember(t.testdir(), 'http');
    const m = startMember(spec, withFailpoints(''));
    t.teardown(() => stopMember(m, 'SIGKILL'));
    await until('healthy', () => healthy(m.metrics));
    const ep = hostPort(m.client);
    t.equal((await etcdctl(ep, ['put', 'before', '1'])).stdout, 'OK\n');
    t.equal((await fetch(`${m.client}/debug/failpoints`).then((r) => r.text())), '', 'nothing armed');
    const bad = await arm(m, 'raftAfterSave', 'sometimes');
    t.equal(bad.status, 400);
    t.match(await bad.text(), /failpoint action "sometimes"/);
    t.equal((await arm(m, 'nowhere', 'crash')).status, 400, 'an unknown name is refused');
    t.equal((await arm(m, 'raftAfterSave', '1*crash')).status, 204);
    t.equal(await fetch(`${m.client}/debug/failpoints`).then((r) => r.text()), 'raftAfterSave=1*crash\n');
    const put = await etcdctl(ep, ['put', 'during', '2'], { timeoutMs: 10_000 });
    t.not(put.stdout, 'OK\n', 'the put is not acknowledged');
    t.same(await exited(m), { code: null, signal: 'SIGKILL' }, 'killed where it stood');
    t.match(m.log.join(''), /"msg":"failpoint crash","failpoint":"raftAfterSave"/);

    const again = startMember(spec);
    t.teardown(() => stopMember(again, 'SIGKILL'));
    await until('healthy after restart', () => healthy(again.metrics));
    t.equal((await etcdctl(ep, ['get', 'before', '--print-value-only'])).stdout, '1\n', 'the acknowledged write is there');
    // It was fsynced before the crash, so the one-member cluster commits it when it comes back.
    t.equal((await etcdctl(ep, ['get', 'during', '--print-value-only'])).stdout, '2\n', 'the durable, unacknowledged one too');
  });

  t.test('from the environment: walBeforeFsync=crash loses the unsynced batch, nothing acknowledged', async (t) => {
    const spec = await oneMember(t.testdir(), 'env');
    const m = startMember(spec, withFailpoints(''));
    t.teardown(() => stopMember(m, 'SIGKILL'));
    await until('healthy', () => healthy(m.metrics));
    const ep = hostPort(m.client);
    t.equal((await etcdctl(ep, ['put', 'acked', '1'])).stdout, 'OK\n');
    await stopMember(m);

    const crashing = startMember(spec, withFailpoints('walBeforeFsync=crash'));
    t.teardown(() => stopMember(crashing, 'SIGKILL'));
    // Restarting campaigns, and the vote is the first batch saved: the member dies there.
    t.same(await exited(crashing), { code: null, signal: 'SIGKILL' });
    t.match(crashing.log.join(''), /"failpoint":"walBeforeFsync"/);

    const back = startMember(spec);
    t.teardown(() => stopMember(back, 'SIGKILL'));
    await until('healthy after the crash', () => healthy(back.metrics));
    t.equal((await etcdctl(ep, ['get', 'acked', '--print-value-only'])).stdout, '1\n', 'the zeroed batch left the log readable and whole');
    t.equal((await etcdctl(ep, ['put', 'after', '2'])).stdout, 'OK\n');
  });

  t.test('walBeforeFsync=error(EIO): the member stops with exit 1, as etcd does on a failed fsync', async (t) => {
    const spec = await oneMember(t.testdir(), 'eio');
    const m = startMember(spec, withFailpoints(''));
    t.teardown(() => stopMember(m, 'SIGKILL'));
    await until('healthy', () => healthy(m.metrics));
    const ep = hostPort(m.client);
    t.equal((await etcdctl(ep, ['put', 'acked', '1'])).stdout, 'OK\n');
    t.equal((await arm(m, 'walBeforeFsync', 'error(EIO)')).status, 204);
    const put = await etcdctl(ep, ['put', 'failed', '2'], { timeoutMs: 10_000 });
    t.not(put.stdout, 'OK\n', 'not acknowledged');
    t.same(await exited(m), { code: 1, signal: null });
    t.match(m.log.join(''), /raft loop failed; stopping.*fdatasync of .*\.wal failed: EIO/);

    const back = startMember(spec);
    t.teardown(() => stopMember(back, 'SIGKILL'));
    await until('healthy after restart', () => healthy(back.metrics));
    t.equal((await etcdctl(ep, ['get', 'acked', '--print-value-only'])).stdout, '1\n');
  });
}
