// The etcd3 npm client against three real `capstan member` processes: KV, watch, leases kept
// alive past their TTL, locks, elections and STM transactions under contention.
import t from 'tap';
import { Etcd3, Isolation } from 'etcd3';
import { healthy, startMember, stopMember, threeMembers, until, type MemberProc } from './helpers/cluster.js';

t.test('etcd3 client against a three-member cluster', async (t) => {
  const members: MemberProc[] = (await threeMembers(t.testdir())).map((m) => startMember(m));
  t.teardown(async () => {
    for (const m of members) await stopMember(m, 'SIGKILL');
  });
  await until('every member healthy', async () => (await Promise.all(members.map((m) => healthy(m.metrics)))).every(Boolean));
  const client = new Etcd3({ hosts: members.map((m) => m.client) });
  t.teardown(() => client.close());

  t.test('KV', async (t) => {
    await client.put('k/1').value('one');
    await client.put('k/2').value('two');
    t.equal(await client.get('k/1').string(), 'one');
    t.same(await client.getAll().prefix('k/').strings(), { 'k/1': 'one', 'k/2': 'two' });
    t.equal(await client.getAll().prefix('k/').count(), 2);
    const del = await client.delete().key('k/1').exec();
    t.equal(del.deleted, '1');
    t.equal(await client.get('k/1').string(), null);
    const ok = await client.if('k/2', 'Value', '==', 'two').then(client.put('k/2').value('TWO')).else(client.put('k/x').value('no')).commit();
    t.equal(ok.succeeded, true);
    t.equal(await client.get('k/2').string(), 'TWO');
  });

  t.test('/metrics counts the answered calls (grpc_server_handled_total)', async (t) => {
    const puts = async (): Promise<number> => {
      let sum = 0;
      for (const m of members) {
        const text = await (await fetch(`${m.metrics}/metrics`)).text();
        const line = /^grpc_server_handled_total\{grpc_type="unary",grpc_service="etcdserverpb.KV",grpc_method="Put",grpc_code="OK"\} (\d+)$/m.exec(text);
        sum += Number(line?.[1] ?? 0);
      }
      return sum;
    };
    const before = await puts();
    await client.put('counted').value('1');
    t.equal(await puts(), before + 1, 'one more Put answered OK, on whichever member took it');
  });

  t.test('watch: a prefix, puts and deletes in order', async (t) => {
    const w = await client.watch().prefix('w/').create();
    const seen: string[] = [];
    w.on('put', (kv) => seen.push(`put ${kv.key.toString()}=${kv.value.toString()}`));
    w.on('delete', (kv) => seen.push(`delete ${kv.key.toString()}`));
    await client.put('w/a').value('1');
    await client.put('w/b').value('2');
    await client.delete().key('w/a');
    await until('three events', () => seen.length === 3);
    t.same(seen, ['put w/a=1', 'put w/b=2', 'delete w/a']);
    await w.cancel();
  });

  t.test('a lease kept alive outlives its TTL; revoked, its key goes', async (t) => {
    const lease = client.lease(2);
    t.teardown(() => lease.release());
    await lease.put('leased').value('v');
    await new Promise((r) => setTimeout(r, 3500));
    t.equal(await client.get('leased').string(), 'v', 'still there after 1.75 TTLs thanks to keepalives');
    const ttl = Number((await lease.keepaliveOnce()).TTL);
    t.equal(ttl, 2, 'a keepalive answers with the granted TTL');
    await lease.revoke();
    t.equal(await client.get('leased').string(), null);
  });

  t.test('an unrenewed lease expires and takes its key with it', async (t) => {
    const id = (await client.lease(2, { autoKeepAlive: false }).grant());
    await client.put('expiring').value('v').lease(id);
    await until('expiry', async () => (await client.get('expiring').string()) === null, 10_000);
    t.pass('the leader revoked the expired lease');
  });

  t.test('locks: a held lock is refused to others until released', async (t) => {
    const a = client.lock('the-lock');
    await a.acquire();
    await t.rejects(client.lock('the-lock').acquire(), /Failed to acquire a lock on the-lock/, 'etcd3 locks do not wait: a second holder is refused');
    await a.release();
    const b = client.lock('the-lock');
    await b.acquire();
    t.pass('after the release another holder gets it');
    await b.release();
  });

  t.test('elections: one leader, and the next when it resigns', async (t) => {
    const election = client.election('the-election');
    const first = election.campaign('first');
    await new Promise<void>((resolve, reject) => {
      first.on('elected', () => resolve());
      first.on('error', reject);
    });
    t.equal(await election.leader(), 'first');
    const second = client.election('the-election').campaign('second');
    const secondElected = new Promise<void>((resolve) => second.on('elected', () => resolve()));
    await new Promise((r) => setTimeout(r, 300));
    t.equal(await election.leader(), 'first', 'the second waits');
    await first.resign();
    await secondElected;
    t.equal(await election.leader(), 'second');
    await second.resign();
  });

  t.test('STM: concurrent increments under serializable isolation lose none', async (t) => {
    await client.put('counter').value('0');
    const inc = (): Promise<void> =>
      client.stm({ retries: 50, isolation: Isolation.Serializable }).transact(async (tx) => {
        const v = Number(await tx.get('counter').string());
        await tx.put('counter').value(String(v + 1));
      });
    await Promise.all(Array.from({ length: 20 }, inc));
    t.equal(await client.get('counter').string(), '20');
  });
});
