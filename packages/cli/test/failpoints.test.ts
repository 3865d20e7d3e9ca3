// Named failpoints on a real member process: armed from CAPSTAN_FAILPOINTS at start or over HTTP
// while it runs; a crash is a SIGKILL at that place, an fsync error stops the member with exit 1,
// and a restarted member has every write it acknowledged.
import t, { type Test } from 'tap';
import { ETCDCTL, etcdctl, healthy, hostPort, oneMember, startMember, stopMember, until, type MemberProc } from './helpers/cluster.js';

const exited = (m: MemberProc): Promise<{ code: number | null; signal: NodeJS.Signals | null }> =>
  m.proc.exitCode !== null || m.proc.signalCode !== null
    ? Promise.resolve({ code: m.proc.exitCode, signal: m.proc.signalCode })
    : new Promise((resolve) => m.proc.once('exit', (code, signal) => resolve({ code, signal })));

const arm = (m: MemberProc, name: string, term: string, method = 'PUT'): Promise<Response> =>
  fetch(`${m.client}/debug/failpoints/${name}`, { method, body: method === 'PUT' ? term : undefined, signal: AbortSignal.timeout(3000) });

const withFailpoints = (spec: string): NodeJS.ProcessEnv => ({ ...process.env, CAPSTAN_FAILPOINTS: spec });

/** A one-member cluster with failpoints on, healthy, with key `acked`=1 written and acknowledged. */
async function withAckedWrite(t: Test, name: string): Promise<{ spec: Omit<MemberProc, 'proc' | 'log'>; m: MemberProc; ep: string }> {
  const spec = await oneMember(t.testdir(), name);
  const m = startMember(spec, withFailpoints(''));
  t.teardown(() => stopMember(m, 'SIGKILL'));
  await until('healthy', () => healthy(m.metrics));
  const ep = hostPort(m.client);
  t.equal((await etcdctl(ep, ['put', 'acked', '1'])).stdout, 'OK\n');
  return { spec, m, ep };
}

/** Restarts the member without failpoints and checks that `acked` survived. */
async function restartHasAcked(t: Test, spec: Omit<MemberProc, 'proc' | 'log'>, ep: string): Promise<void> {
  const back = startMember(spec);
  t.teardown(() => stopMember(back, 'SIGKILL'));
  await until('healthy after restart', () => healthy(back.metrics));
  t.equal((await etcdctl(ep, ['get', 'acked', '--print-value-only'])).stdout, '1\n', 'the acknowledged write is there');
}

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
    const { spec, m, ep } = await withAckedWrite(t, 'http');
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

    await restartHasAcked(t, spec, ep);
    // It was fsynced before the crash, so the one-member cluster commits it when it comes back.
    t.equal((await etcdctl(ep, ['get', 'during', '--print-value-only'])).stdout, '2\n', 'the durable, unacknowledged one too');
  });

  t.test('from the environment: walBeforeFsync=crash loses the unsynced batch, nothing acknowledged', async (t) => {
    const { spec, m, ep } = await withAckedWrite(t, 'env');
    await stopMember(m);

    const crashing = startMember(spec, withFailpoints('walBeforeFsync=crash'));
    t.teardown(() => stopMember(crashing, 'SIGKILL'));
    // Restarting campaigns, and the vote is the first batch saved: the member dies there.
    t.same(await exited(crashing), { code: null, signal: 'SIGKILL' });
    t.match(crashing.log.join(''), /"failpoint":"walBeforeFsync"/);

    // The zeroed batch leaves the log readable and whole.
    await restartHasAcked(t, spec, ep);
    t.equal((await etcdctl(ep, ['put', 'after', '2'])).stdout, 'OK\n');
  });

  t.test('walBeforeFsync=error(EIO): the member stops with exit 1, as etcd does on a failed fsync', async (t) => {
    const { spec, m, ep } = await withAckedWrite(t, 'eio');
    t.equal((await arm(m, 'walBeforeFsync', 'error(EIO)')).status, 204);
    const put = await etcdctl(ep, ['put', 'failed', '2'], { timeoutMs: 10_000 });
    t.not(put.stdout, 'OK\n', 'not acknowledged');
    t.same(await exited(m), { code: 1, signal: null });
    t.match(m.log.join(''), /raft loop failed; stopping.*fdatasync of .*\.wal failed: EIO/);
    await restartHasAcked(t, spec, ep);
  });
}
