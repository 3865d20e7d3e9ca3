// etcd's slow-request warnings and request traces: the pieces (trace.ts, slow.ts, heartbeat.ts),
// then the client services over real gRPC with a LocalMember (trace and warning lines as etcd's).
import { Etcd3 } from 'etcd3';
import t from 'tap';
import { TimeoutDetector } from '../src/heartbeat.js';
import { describeRequest, describeResult, SlowRequests } from '../src/slow.js';
import { RequestTrace } from '../src/trace.js';
import { serveLocal } from './helpers/local-member.js';

type Line = { level: string; msg: string; fields: Record<string, unknown> };
const b = (s: string): Buffer => Buffer.from(s);

t.test('a trace is logged only over its threshold, with the steps that took their share', async (t) => {
  const lines: Line[] = [];
  const log = (level: string, msg: string, fields: Record<string, unknown>): void => void lines.push({ level, msg, fields });
  const quick = new RequestTrace('put', () => [['key', 'a']], 1000);
  quick.step('process raft request', 1040);
  t.notOk(quick.logIfLong(100, log, 1090), 'a 90 ms request under a 100 ms threshold is not logged');
  t.same(lines, []);

  const slow = new RequestTrace('put', () => [['key', 'a'], ['req_size', 12]], 1000);
  slow.step('process raft request', 1150);
  slow.step('apply', 1160);
  slow.field('response_revision', 7);
  t.ok(slow.logIfLong(100, log, 1170), 'a 170 ms request is');
  t.equal(lines.length, 1);
  const [line] = lines;
  t.match(line!.msg, /^trace\[\d+\] put$/, "etcd's trace[N] <operation>");
  const n = /\[(\d+)\]/.exec(line!.msg)![1];
  t.equal(line!.level, 'info');
  t.same(line!.fields.detail, '{key:a; req_size:12; response_revision:7; }', "etcd's detail: each field as key:value; ");
  t.equal(line!.fields.duration, '170ms');
  // The step threshold is 100 / (2 steps + 1) = 33.3 ms: the 150 ms step is listed, the 10 ms one is not.
  t.same(line!.fields.steps, [`trace[${n}] 'process raft request'  (duration: 150ms)`]);
  t.equal(new Date(line!.fields.end as string).getTime() - new Date(line!.fields.start as string).getTime(), 170, 'start and end as wall-clock times');
});

t.test('apply request took too long: over the threshold only, counted, strings built only then', async (t) => {
  const lines: Line[] = [];
  const slow = new SlowRequests(100, (level, msg, fields) => void lines.push({ level, msg, fields }));
  let built = 0;
  const request = (): string => {
    built++;
    return 'put:<key:"a" value_size:1 >';
  };
  slow.warnIfSlow(99.9, '', request, () => 'response_revision:3');
  t.equal(slow.count, 0);
  t.equal(built, 0, 'a quick request costs no description');
  slow.warnIfSlow(250.5, 'read-only range ', request, () => 'range_response_count:1', new Error('boom'));
  t.equal(slow.count, 1, 'etcd_server_slow_apply_total');
  t.same(lines, [
    {
      level: 'warn',
      msg: 'apply request took too long',
      fields: {
        took: '250.5ms',
        'expected-duration': '100ms',
        prefix: 'read-only range ',
        request: 'put:<key:"a" value_size:1 >',
        response: 'range_response_count:1',
        error: 'boom',
      },
    },
  ]);
});

t.test('requests are described as etcd logs them, values left out', async (t) => {
  t.equal(describeRequest({ put: { key: b('k'), value: b('hello') } }), 'put:<key:"k" value_size:5 >');
  t.equal(describeRequest({ put: { key: b('k'), value: b('v'), lease: 7n } }), 'put:<key:"k" value_size:1 lease:7 >');
  t.equal(describeRequest({ deleteRange: { key: b('a'), rangeEnd: b('b') } }), 'delete_range:<key:"a" range_end:"b" >');
  t.equal(describeRequest({ range: { key: b('a') } }), 'range:<key:"a" >');
  t.equal(
    describeRequest({
      txn: {
        compare: [{ key: b('c'), target: 1, result: 0, version: 2 }],
        success: [{ requestPut: { key: b('c'), value: b('secret') } }, { requestRange: { key: b('c') } }],
        failure: [{ requestDeleteRange: { key: b('c') } }],
      },
    }),
    'txn:<compare:<target:1 key:"c" > success:<request_put:<key:"c" value_size:6 >> success:<request_range:<key:"c" >> failure:<request_delete_range:<key:"c" >> >',
  );
  t.notMatch(describeRequest({ txn: { success: [{ requestPut: { key: b('c'), value: b('secret') } }] } }), /secret/, 'no value is logged');
  t.equal(describeRequest({ compaction: { revision: 9 } }), 'compaction:<revision:9 >');
  t.equal(describeRequest({ leaseGrant: { TTL: 60, ID: 5n } }), 'lease_grant:<ttl:60 id:5 >');
  t.equal(describeRequest({ authUserAdd: { name: 'u', hashedPassword: 'x' } } as never), 'auth_user_add:<>', 'others by name only');
  t.equal(describeResult({ kind: 'ok', response: { header: { revision: 4 } } as never }), 'response_revision:4');
  t.equal(describeResult({ kind: 'skipped' }), 'skipped');
});

t.test("the heartbeat timeout detector: late by what exceeds the expected gap, afresh after a reset", async (t) => {
  const td = new TimeoutDetector(200);
  t.equal(td.observe(2, 1000), 0, 'the first heartbeat to a peer has nothing to be late against');
  t.equal(td.observe(2, 1150), 0, 'within twice the interval');
  t.equal(td.observe(3, 1160), 0, 'each peer on its own');
  t.equal(td.observe(2, 1450), 100, '300 ms after the previous one: 100 ms over');
  td.reset();
  t.equal(td.observe(2, 5000), 0, 'a new leader starts afresh');
});

t.test('the services trace writes and warn of slow reads, as etcd does', async (t) => {
  // A negative threshold, as etcd would take it: every request is over it.
  const h = await serveLocal({ warningApplyMs: -1 });
  const etcd = new Etcd3({ hosts: h.addr });
  t.teardown(async () => {
    etcd.close();
    await h.stop();
  });
  await etcd.put('slow/a').value('hello');
  const put = h.member.logged.find((l) => / put$/.test(l.msg))!;
  t.ok(put, 'the put was traced');
  t.match(put.fields.detail, /^\{key:slow\/a; req_size:\d+; response_revision:\d+; \}$/);
  t.match(put.fields.steps, [/'process raft request'/], 'its step up to the apply');

  const before = h.member.slow.count;
  t.equal(await etcd.get('slow/a').string(), 'hello');
  const range = h.member.logged.find((l) => l.msg === 'apply request took too long' && l.fields.prefix === 'read-only range ')!;
  t.match(range.fields, { request: 'key:"slow/a" ', response: 'range_response_count:1', 'expected-duration': '-1ms' });
  t.equal(h.member.slow.count, before + 1, 'counted');
  const rangeTrace = h.member.logged.find((l) => / range$/.test(l.msg))!;
  t.match(rangeTrace.fields.detail, /^\{range_begin:slow\/a; range_end:; response_count:1; response_revision:\d+; \}$/);
  t.match(rangeTrace.fields.steps, [/'agreement among raft nodes before linearized reading'/], 'a linearizable read waits for its barrier');

  h.member.logged.length = 0;
  await etcd.get('slow/a').serializable(true).string();
  t.same(h.member.logged.find((l) => / range$/.test(l.msg))?.fields.steps, [], 'a serializable one does not');

  h.member.logged.length = 0;
  await etcd.if('slow/a', 'Value', '==', 'hello').then(etcd.put('slow/b').value('x')).commit();
  t.match(h.member.logged.find((l) => / transaction$/.test(l.msg))?.fields.detail, /^\{read_only:false; response_revision:\d+; \}$/);
  await etcd.if('slow/a', 'Value', '==', 'hello').then(etcd.get('slow/b')).commit();
  t.match(h.member.logged.find((l) => l.fields.prefix === 'read-only txn ')?.fields, { request: 'compare:<target:3 key:"slow/a" > success:<request_range:<key:"slow/b" >> ', response: 'response_count:1' });
});

t.test('at the default threshold, quick requests log nothing', async (t) => {
  const h = await serveLocal();
  const etcd = new Etcd3({ hosts: h.addr });
  t.teardown(async () => {
    etcd.close();
    await h.stop();
  });
  await etcd.put('quiet/a').value('1');
  await etcd.get('quiet/a').string();
  t.same(h.member.logged, []);
  t.equal(h.member.slow.count, 0);
});
