// etcd's slow-request warnings from three real `capstan member` processes: etcdctl's requests over
// --experimental-warning-apply-duration, and a leader held up by SIGSTOP, in the members' logs and
// their /metrics.
import t from 'tap';
import { ETCDCTL, etcdctl, healthy, hostPort, startMember, stopMember, threeMembers, until, type MemberProc } from './helpers/cluster.js';

/** A counter or gauge's value in a member's /metrics text. */
async function metric(m: MemberProc, name: string): Promise<number> {
  const text = await (await fetch(`${m.metrics}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? Number.NaN : Number(line.split(' ')[1]);
}

/** Each JSON line a member logged with this message. */
function logged(m: MemberProc, msg: string | RegExp): Array<Record<string, unknown>> {
  return m.log
    .join('')
    .split('\n')
    .flatMap((l) => {
      try {
        return [JSON.parse(l) as Record<string, unknown>];
      } catch {
        return []; // a line still being written
      }
    })
    .filter((r) => (typeof msg === 'string' ? r.msg === msg : msg.test(String(r.msg))));
}

t.test('slow applies, traces and late heartbeats are logged and counted as etcd does', { skip: ETCDCTL === undefined ? 'etcdctl not found' : false }, async (t) => {
  const dir = t.testdir();
  // 1ns: every apply and every request is over it (heartbeat 50 ms, election 500 ms: threeMembers).
  const members: MemberProc[] = (await threeMembers(dir, ['--experimental-warning-apply-duration=1ns'])).map((m) => startMember(m));
  t.teardown(async () => {
    for (const m of members) {
      m.proc.kill('SIGCONT');
      await stopMember(m, 'SIGKILL');
    }
  });
  await until('every member healthy', async () => (await Promise.all(members.map((m) => healthy(m.metrics)))).every(Boolean));
  const ep = members.map((m) => hostPort(m.client)).join(',');
  const put = await etcdctl(ep, ['put', 'slowlog/a', 'hello']);
  t.equal(put.code, 0, put.stderr);
  const get = await etcdctl(ep, ['get', 'slowlog/a']);
  t.equal(get.stdout, 'slowlog/a\nhello\n');

  await until('the put warned of on every member', () => members.every((m) => logged(m, 'apply request took too long').some((r) => r.request === 'put:<key:"slowlog/a" value_size:5 >')));
  for (const m of members) t.ok((await metric(m, 'etcd_server_slow_apply_total')) >= 1, `${m.name}: etcd_server_slow_apply_total counts it`);
  const traces = members.flatMap((m) => logged(m, /^trace\[\d+\] put$/));
  t.ok(traces.some((r) => /^\{key:slowlog\/a; req_size:\d+; response_revision:\d+; \}$/.test(String(r.detail))), 'the member that took the put traced it');
  const reads = members.flatMap((m) => logged(m, 'apply request took too long')).filter((r) => r.prefix === 'read-only range ');
  t.match(reads, [{ request: 'key:"slowlog/a" ', response: 'range_response_count:1', 'expected-duration': '1ns' }], 'the linearizable get, warned of as a read');

  // The leader stopped for 250 ms: its next heartbeat goes out at least 150 ms later than the 100
  // expected, well before the 500 ms election timeout would let a follower take over.
  const leader = await (async () => {
    for (const m of members) if ((await metric(m, 'etcd_server_is_leader')) === 1) return m;
    throw new Error('no leader');
  })();
  t.equal(await metric(leader, 'etcd_server_heartbeat_send_failures_total'), 0, 'no late heartbeat yet');
  leader.proc.kill('SIGSTOP');
  await new Promise((r) => setTimeout(r, 250));
  leader.proc.kill('SIGCONT');
  const msg = 'leader failed to send out heartbeat on time; took too long, leader is overloaded likely from slow disk';
  await until('the late heartbeat logged', () => logged(leader, msg).length > 0);
  t.match(logged(leader, msg)[0], { 'heartbeat-interval': '50ms', 'expected-duration': '100ms', 'exceeded-duration': /ms$/ });
  t.ok((await metric(leader, 'etcd_server_heartbeat_send_failures_total')) >= 1, 'etcd_server_heartbeat_send_failures_total');
});
