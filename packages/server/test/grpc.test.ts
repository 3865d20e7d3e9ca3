/**
 * The client gRPC services over an in-process test member (no Raft), driven by real clients: the
 * etcd3 npm package, Debian's etcdctl 3.4 when it can be found, and a raw client using our codec.
 */
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { connect } from 'node:http2';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { Etcd3, type IKeyValue } from 'etcd3';
import t, { type Test } from 'tap';
import { codec, rawClient, rawWatch, serviceDefinition } from '../src/grpc/index.js';
import { serveLocal } from './helpers/local-member.js';

const here = dirname(fileURLToPath(import.meta.url));

function findEtcdctl(): string | undefined {
  const candidates = [process.env.ETCDCTL_BIN, '/work/.cache/etcd/usr/bin/etcdctl', '/usr/bin/etcdctl'];
  // .cache/etcd at the repository root (dpkg -x of Debian's etcd-client).
  let dir = here;
  for (let i = 0; i < 6; i++) {
    candidates.push(join(dir, '.cache', 'etcd', 'usr', 'bin', 'etcdctl'));
    dir = resolve(dir, '..');
  }
  return candidates.find((c) => c !== undefined && existsSync(c));
}

const h = await serveLocal({ services: { progressIntervalMs: 200 } });
t.teardown(() => h.stop());
const etcd = new Etcd3({ hosts: h.addr });
t.teardown(() => etcd.close());
const etcdctlBin = findEtcdctl();

function etcdctl(args: string[], input?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((res) => {
    const child = execFile(
      etcdctlBin!,
      [`--endpoints=${h.addr}`, '--dial-timeout=3s', '--command-timeout=10s', ...args],
      { env: { ...process.env, ETCDCTL_API: '3' }, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => res({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
    if (input !== undefined) child.stdin!.end(input);
  });
}

async function rejectsStatus(t: Test, p: Promise<unknown>, want: { code?: grpc.status; details: string }): Promise<void> {
  try {
    await p;
    t.fail(`expected ${want.details}`);
  } catch (err) {
    const e = err as grpc.ServiceError;
    t.equal(e.details, want.details);
    if (want.code !== undefined) t.equal(e.code, want.code);
  }
}

const str = (kv: IKeyValue): [string, string] => [kv.key.toString(), kv.value.toString()];

// ---------------------------------------------------------------- etcd3 client

t.test('put/get/delete with options (etcd3)', async (t) => {
  await etcd.put('a/1').value('one');
  await etcd.put('a/2').value('two');
  await etcd.put('a/3').value('three');
  await etcd.put('b/1').value('bee');
  t.equal(await etcd.get('a/1').string(), 'one');
  t.equal(await etcd.get('missing').string(), null);
  t.same(await etcd.getAll().prefix('a/').strings(), { 'a/1': 'one', 'a/2': 'two', 'a/3': 'three' });
  t.same(await etcd.getAll().prefix('a/').keys(), ['a/1', 'a/2', 'a/3']);
  t.equal(await etcd.getAll().prefix('a/').count(), 3);
  const limited = await etcd.getAll().prefix('a/').limit(2).exec();
  t.equal(limited.kvs.length, 2);
  t.equal(limited.more, true);
  t.equal(limited.count, '3');
  const desc = await etcd.getAll().prefix('a/').sort('Key', 'Descend').keys();
  t.same(desc, ['a/3', 'a/2', 'a/1']);
  const byValue = await etcd.getAll().prefix('a/').sort('Value', 'Ascend').strings();
  t.same(Object.keys(byValue), ['a/1', 'a/3', 'a/2']);
  // A past revision.
  const rev1 = Number((await etcd.get('a/1').exec()).kvs[0]!.mod_revision);
  await etcd.put('a/1').value('uno');
  t.equal(await etcd.get('a/1').revision(rev1).string(), 'one');
  t.equal(await etcd.get('a/1').string(), 'uno');
  // prev-kv on put and delete.
  const put = await etcd.put('a/1').value('eins').getPrevious();
  t.equal(put?.value.toString(), 'uno');
  const deleted = await etcd.delete().prefix('a/').getPrevious();
  t.same(deleted.map(str).sort(), [
    ['a/1', 'eins'],
    ['a/2', 'two'],
    ['a/3', 'three'],
  ]);
  t.equal(await etcd.getAll().prefix('a/').count(), 0);
  // The header carries the member's identity and the revision.
  const r = await etcd.kv.range({ key: Buffer.from('b/1') });
  t.equal(r.header.cluster_id, (0xcdef0123456789abn).toString());
  t.equal(r.header.member_id, (0x8e9e05c52164694dn).toString());
  t.equal(r.header.raft_term, '7');
  t.equal(r.header.revision, String(h.member.sm.store.rev));
  // Linearizable reads pass the barrier; serializable ones do not.
  const before = h.member.barriers;
  await etcd.kv.range({ key: Buffer.from('b/1'), serializable: true });
  t.equal(h.member.barriers, before);
  await etcd.kv.range({ key: Buffer.from('b/1') });
  t.equal(h.member.barriers, before + 1);
});

t.test('txn with compares (etcd3)', async (t) => {
  await etcd.put('tx/k').value('v1');
  const ok = await etcd.if('tx/k', 'Value', '==', 'v1').then(etcd.put('tx/k').value('v2')).else(etcd.put('tx/other').value('x')).commit();
  t.equal(ok.succeeded, true);
  t.equal(await etcd.get('tx/k').string(), 'v2');
  const no = await etcd.if('tx/k', 'Version', '>', 5).then(etcd.put('tx/k').value('v3')).else(etcd.get('tx/k')).commit();
  t.equal(no.succeeded, false);
  t.equal(no.responses[0]!.response_range!.kvs[0]!.value.toString(), 'v2');
  t.equal(await etcd.get('tx/k').string(), 'v2');
  const missing = await etcd.if('tx/none', 'Create', '==', 0).then(etcd.put('tx/none').value('new')).commit();
  t.equal(missing.succeeded, true);
  // A read-only txn is served locally, not proposed.
  const proposals = h.member.proposed.length;
  const ro = await etcd.if('tx/k', 'Mod', '>', 0).then(etcd.get('tx/k')).commit();
  t.equal(ro.succeeded, true);
  t.equal(h.member.proposed.length, proposals);
  // Errors of etcd's checks.
  await t.rejects(etcd.if('tx/k', 'Value', '==', 'v2').then(etcd.put('tx/k').value('a'), etcd.put('tx/k').value('b')).commit(), {
    message: /etcdserver: duplicate key given in txn request/,
  });
});

t.test('empty key and oversized requests (etcd3)', async (t) => {
  await t.rejects(etcd.put('').value('x').exec(), { message: /etcdserver: key is not provided/ });
  await t.rejects(etcd.kv.range({ key: Buffer.alloc(0) }), { message: /etcdserver: key is not provided/ });
  const big = Buffer.alloc(1.6 * 1024 * 1024, 'x');
  await t.rejects(etcd.put('big').value(big).exec(), { message: /etcdserver: request is too large/ });
  // Past max-request-bytes + 512 KiB, gRPC itself refuses the message (a client of its own: etcd3
  // takes that for a broken host and opens its circuit breaker).
  const other = new Etcd3({ hosts: h.addr });
  await t.rejects(other.put('bigger').value(Buffer.alloc(2.2 * 1024 * 1024)).exec(), { message: /larger than max|RESOURCE_EXHAUSTED|exceeds/i });
  other.close();
  t.equal(await etcd.get('big').string(), null);
  t.equal(await etcd.get('b/1').string(), 'bee');
});

t.test('watch: prefix, past revision, prev kv, cancel (etcd3)', async (t) => {
  const start = h.member.sm.store.rev;
  await etcd.put('w/1').value('a');
  await etcd.put('w/2').value('b');
  await etcd.delete().key('w/1');
  // From a past revision: the history comes back first, with prev kv.
  const w = await etcd.watch().prefix('w/').startRevision(String(start + 1)).withPreviousKV().create();
  const seen: string[] = [];
  const done = new Promise<void>((res) => {
    w.on('put', (kv, prev) => {
      seen.push(`put ${kv.key.toString()}=${kv.value.toString()} prev=${prev?.value.toString() ?? '-'}`);
      if (seen.length === 4) res();
    });
    w.on('delete', (kv, prev) => {
      seen.push(`del ${kv.key.toString()} prev=${prev?.value.toString() ?? '-'}`);
      if (seen.length === 4) res();
    });
  });
  await etcd.put('w/2').value('c');
  await etcd.put('x/unrelated').value('z');
  await done;
  t.same(seen, ['put w/1=a prev=-', 'put w/2=b prev=-', 'del w/1 prev=a', 'put w/2=c prev=b']);
  await w.cancel();
  // After the cancel, nothing more arrives.
  let late = 0;
  w.on('put', () => late++);
  await etcd.put('w/3').value('d');
  await new Promise((r) => setTimeout(r, 100));
  t.equal(late, 0);
});

t.test('lease grant, keepalive, ttl, revoke, list (etcd3)', async (t) => {
  const lease = etcd.lease(30, { autoKeepAlive: false });
  const id = await lease.grant();
  t.ok(BigInt(id) > 0n && BigInt(id) < 1n << 63n, 'a positive int63 ID');
  await lease.put('l/key').value('v');
  const ka = await lease.keepaliveOnce();
  t.equal(ka.TTL, '30');
  t.equal(ka.ID, id);
  const ttl = await etcd.leaseClient.leaseTimeToLive({ ID: id, keys: true });
  t.equal(ttl.grantedTTL, '30');
  t.ok(Number(ttl.TTL) > 25 && Number(ttl.TTL) <= 30);
  t.same(
    ttl.keys.map((k) => k.toString()),
    ['l/key'],
  );
  const list = await etcd.leaseClient.leaseLeases({});
  t.ok(list.leases.some((l) => l.ID === id));
  await lease.revoke();
  t.equal(await etcd.get('l/key').string(), null);
  const gone = await etcd.leaseClient.leaseTimeToLive({ ID: id });
  t.equal(gone.TTL, '-1');
  await t.rejects(etcd.leaseClient.leaseRevoke({ ID: id }), { message: /etcdserver: requested lease not found/ });
  // Expiry: the member revokes it, and the key goes.
  const short = etcd.lease(2, { autoKeepAlive: false });
  await short.put('l/short').value('v');
  await new Promise((r) => setTimeout(r, 2600));
  t.equal(await etcd.get('l/short').string(), null);
});

t.test('compaction errors (etcd3)', async (t) => {
  await etcd.put('c/k').value('1');
  const rev = h.member.sm.store.rev;
  await etcd.put('c/k').value('2');
  await etcd.kv.compact({ revision: rev, physical: true });
  await t.rejects(etcd.get('c/k').revision(rev - 1).exec(), { message: /etcdserver: mvcc: required revision has been compacted/ });
  await t.rejects(etcd.kv.compact({ revision: rev }), { message: /etcdserver: mvcc: required revision has been compacted/ });
  await t.rejects(etcd.kv.compact({ revision: rev + 1000 }), { message: /etcdserver: mvcc: required revision is a future revision/ });
  // A watch from a compacted revision is cancelled with compact_revision set (etcd3 reports it
  // as an error of the watcher).
  const w = etcd.watch().key('c/k').startRevision(String(rev - 1)).watcher();
  const err = await new Promise<Error>((res) => w.on('error', res));
  t.match(err.message, /Watcher canceled/);
  const raw = rawWatch(h.addr);
  raw.call.write({ msg: { createRequest: { key: Buffer.from('c/k'), startRevision: rev - 1 } }, size: 0 });
  const created = await raw.next();
  t.equal(created.created, true);
  const cancelled = await raw.next();
  t.equal(cancelled.canceled, true);
  t.equal(cancelled.compactRevision, rev);
  t.equal(cancelled.watchId, created.watchId);
  raw.close();
});

// ---------------------------------------------------------------- our codec, raw

t.test('raw client: exact 64-bit IDs, proto3 defaults, cluster and maintenance', async (t) => {
  const kv = rawClient(h.addr, 'KV');
  const lease = rawClient(h.addr, 'Lease');
  const cluster = rawClient(h.addr, 'Cluster');
  const maint = rawClient(h.addr, 'Maintenance');
  const auth = rawClient(h.addr, 'Auth');
  t.teardown(() => [kv, lease, cluster, maint, auth].forEach((c) => c.client.close()));

  const big = (1n << 63n) - 1n;
  const g = await lease.call.LeaseGrant!({ TTL: 60, ID: big });
  t.equal(g.ID, big);
  t.equal(g.header.clusterId, 0xcdef0123456789abn);
  t.equal(g.header.memberId, 0x8e9e05c52164694dn);
  await kv.call.Put!({ key: Buffer.from('raw/k'), value: Buffer.from('v'), lease: big });
  const r = await kv.call.Range!({ key: Buffer.from('raw/k') });
  t.equal(r.kvs[0].lease, big);
  t.equal(r.kvs[0].version, 1);
  t.equal(r.more, false);
  t.equal(r.count, 1);
  const none = await kv.call.Range!({ key: Buffer.from('raw/none') });
  t.same(none.kvs, []);
  t.equal(none.count, 0);
  await lease.call.LeaseRevoke!({ ID: big });

  // Cluster.
  const list = await cluster.call.MemberList!({});
  t.equal(list.members.length, 1);
  t.equal(list.members[0].ID, 0x8e9e05c52164694dn);
  await rejectsStatus(t, cluster.call.MemberAdd!({ peerURLs: ['not a url'] }), { code: grpc.status.INVALID_ARGUMENT, details: 'etcdserver: given member URLs are invalid' });
  await rejectsStatus(t, cluster.call.MemberAdd!({ peerURLs: ['http://10.0.0.1:2380/path'] }), { details: 'etcdserver: given member URLs are invalid' });
  const added = await cluster.call.MemberAdd!({ peerURLs: ['http://10.0.0.1:2380'], isLearner: true });
  t.equal(added.member.isLearner, true);
  t.equal(added.members.length, 2);
  const promoted = await cluster.call.MemberPromote!({ ID: added.member.ID });
  t.equal(promoted.members.find((m: { ID: bigint }) => m.ID === added.member.ID).isLearner, false);
  await cluster.call.MemberUpdate!({ ID: added.member.ID, peerURLs: ['http://10.0.0.2:2380'] });
  const removed = await cluster.call.MemberRemove!({ ID: added.member.ID });
  t.equal(removed.members.length, 1);
  await rejectsStatus(t, cluster.call.MemberRemove!({ ID: 12345n }), { code: grpc.status.NOT_FOUND, details: 'etcdserver: member not found' });

  // Maintenance.
  const st = await maint.call.Status!({});
  t.equal(st.leader, 0x8e9e05c52164694dn);
  t.equal(st.version, '3.5.0');
  t.same(st.errors, []);
  const alarmed = await maint.call.Alarm!({ action: 1, memberID: 0x8e9e05c52164694dn, alarm: 1 });
  t.same(alarmed.alarms, [{ memberID: 0x8e9e05c52164694dn, alarm: 1 }]);
  t.same((await maint.call.Alarm!({ action: 0 })).alarms, [{ memberID: 0x8e9e05c52164694dn, alarm: 1 }]);
  const disarmed = await maint.call.Alarm!({ action: 2, memberID: 0x8e9e05c52164694dn, alarm: 1 });
  t.equal(disarmed.alarms.length, 1);
  t.same((await maint.call.Alarm!({ action: 0 })).alarms, []);
  const hkv = await maint.call.HashKV!({ revision: 0 });
  const hash = await maint.call.Hash!({});
  t.equal(hash.hash, hkv.hash);
  t.equal(hkv.compactRevision, h.member.sm.store.compactRev);
  await maint.call.Defragment!({});
  t.equal(h.member.defrags, 1);
  await rejectsStatus(t, maint.call.MoveLeader!({ targetID: 1n }), { details: 'etcdserver: not leader' });

  // Auth: never enabled.
  const as = await auth.call.AuthStatus!({});
  t.equal(as.enabled, false);
  await rejectsStatus(t, auth.call.Authenticate!({ name: 'root', password: 'x' }), {
    code: grpc.status.FAILED_PRECONDITION,
    details: 'etcdserver: authentication is not enabled',
  });
  await rejectsStatus(t, auth.call.AuthEnable!({}), { details: 'etcdserver: root user does not exist' });
  t.same((await auth.call.UserList!({})).users, []);
  await rejectsStatus(t, auth.call.UserGet!({ name: 'x' }), { details: 'etcdserver: user name not found' });
});

t.test('raw watch stream: all keys, progress, cancel, fragments', async (t) => {
  const raw = rawWatch(h.addr);
  t.teardown(raw.close);
  // An empty key with range_end \0 watches every key (v3rpc turns the key into \0).
  raw.call.write({ msg: { createRequest: { key: Buffer.alloc(0), rangeEnd: Buffer.from([0]), fragment: true, prevKv: true } }, size: 0 });
  const created = await raw.next();
  t.equal(created.created, true);
  t.equal(created.header.clusterId, 0xcdef0123456789abn);
  t.equal(created.header.raftTerm, 7);
  await etcd.put('rw/a').value('1');
  const ev = await raw.next();
  t.equal(ev.events.length, 1);
  t.equal(ev.events[0].kv.key.toString(), 'rw/a');
  t.equal(ev.header.revision, h.member.sm.store.rev);
  raw.call.write({ msg: { progressRequest: {} }, size: 0 });
  const progress = await raw.next();
  t.same(progress.events, []);
  t.equal(progress.header.revision, h.member.sm.store.rev);
  // One txn whose events (with prev kvs) outgrow max-request-bytes arrives in fragments.
  const value = Buffer.alloc(300 * 1024, 'v');
  for (const k of ['rw/b', 'rw/c', 'rw/d']) {
    await etcd.put(k).value(value);
    await raw.next();
  }
  await etcd.if('rw/a', 'Version', '>', 0).then(etcd.put('rw/b').value(value), etcd.put('rw/c').value(value), etcd.put('rw/d').value(value)).commit();
  const pieces: Array<Record<string, any>> = []; // eslint-disable-line @typescript-eslint/no-explicit-any
  do pieces.push(await raw.next());
  while (pieces.at(-1)!.fragment === true);
  t.ok(pieces.length > 1, 'fragmented');
  t.equal(pieces.reduce((n, p) => n + p.events.length, 0), 3);
  raw.call.write({ msg: { cancelRequest: { watchId: created.watchId } }, size: 0 });
  const cancelled = await raw.next();
  t.equal(cancelled.canceled, true);
  t.equal(cancelled.watchId, created.watchId);
});

t.test('snapshot: the stream then its sha256', async (t) => {
  const maint = rawClient(h.addr, 'Maintenance');
  t.teardown(() => maint.client.close());
  const def = serviceDefinition('Maintenance').Snapshot!;
  const call = maint.client.makeServerStreamRequest(def.path, def.requestSerialize, def.responseDeserialize, { msg: {}, size: 0 });
  const msgs: Array<{ blob: Buffer; remainingBytes: number }> = [];
  for await (const m of call) msgs.push(m as { blob: Buffer; remainingBytes: number });
  t.ok(msgs.length >= 2);
  const data = Buffer.concat(msgs.slice(0, -1).map((m) => m.blob));
  t.same(msgs.at(-1)!.blob, createHash('sha256').update(data).digest());
  t.equal(msgs.at(-2)!.remainingBytes, 0);
  let expect = data.length;
  for (const m of msgs.slice(0, -1)) {
    expect -= m.blob.length;
    t.ok(m.remainingBytes <= expect, 'remaining bytes never overstates');
  }
  // The same bytes as the member's own snapshot stream.
  const own: Buffer[] = [];
  for await (const c of await h.member.snapshot()) own.push(c);
  t.equal(Buffer.concat(own).length, data.length);
});

t.test('the server survives malformed messages', async (t) => {
  const kvDef = serviceDefinition('KV');
  const client = new grpc.Client(h.addr, grpc.credentials.createInsecure());
  t.teardown(() => client.close());
  const id = (b: Buffer): Buffer => b;
  const garbage = await new Promise<grpc.ServiceError | null>((res) =>
    client.makeUnaryRequest(kvDef.Range!.path, id, id, Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]), (err) => res(err)),
  );
  t.equal(garbage?.code, grpc.status.INTERNAL);
  // A raw HTTP/2 stream with a torn gRPC frame.
  await new Promise<void>((res) => {
    const s = connect(`http://${h.addr}`);
    s.on('error', () => res());
    const req = s.request({ ':method': 'POST', ':path': '/etcdserverpb.KV/Range', 'content-type': 'application/grpc', te: 'trailers' });
    req.on('error', () => undefined);
    req.on('response', () => undefined);
    req.on('data', () => undefined);
    req.on('close', () => {
      s.close();
      res();
    });
    req.end(Buffer.from([0x00, 0x00, 0x00, 0x10, 0x00, 0x01]));
  });
  // And one with a compressed flag nobody negotiated.
  await new Promise<void>((res) => {
    const s = connect(`http://${h.addr}`);
    s.on('error', () => res());
    const req = s.request({ ':method': 'POST', ':path': '/etcdserverpb.Watch/Watch', 'content-type': 'application/grpc', te: 'trailers' });
    req.on('error', () => undefined);
    req.on('data', () => undefined);
    req.on('close', () => {
      s.close();
      res();
    });
    req.end(Buffer.from([0x01, 0x00, 0x00, 0x00, 0x02, 0xff, 0xff]));
  });
  t.equal(await etcd.get('b/1').string(), 'bee');
  const ok = await new Promise<Buffer>((res, rej) =>
    client.makeUnaryRequest(kvDef.Range!.path, id, id, codec<Record<string, unknown>>('etcdserverpb.RangeRequest').encode({ key: Buffer.from('b/1') }), (err, r) =>
      err ? rej(err) : res(r!),
    ),
  );
  t.equal((codec<{ kvs: Array<{ value: Buffer }> }>('etcdserverpb.RangeResponse').decode(ok).kvs[0]!.value).toString(), 'bee');
});

// ---------------------------------------------------------------- etcdctl

t.test('etcdctl 3.4', { skip: etcdctlBin === undefined ? 'etcdctl not found (apt-get download etcd-client; dpkg -x into .cache/etcd)' : false }, async (t) => {
  const ok = async (args: string[], input?: string): Promise<string> => {
    const r = await etcdctl(args, input);
    t.equal(r.code, 0, `etcdctl ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  t.equal(await ok(['put', 'ctl/a', '1']), 'OK\n');
  await ok(['put', 'ctl/b', '2']);
  await ok(['put', 'ctl/c', '3']);
  t.equal(await ok(['get', 'ctl/a']), 'ctl/a\n1\n');
  t.equal(await ok(['get', 'ctl/', '--prefix', '--keys-only']), 'ctl/a\n\nctl/b\n\nctl/c\n\n');
  t.equal(await ok(['get', 'ctl/', '--prefix', '--limit=2', '--print-value-only']), '1\n2\n');
  t.equal(await ok(['get', 'ctl/', '--prefix', '--sort-by=KEY', '--order=DESCEND', '--print-value-only']), '3\n2\n1\n');
  const json = JSON.parse(await ok(['get', 'ctl/', '--prefix', '--limit=1', '-w', 'json'])) as { count: number; more: boolean; kvs: unknown[] };
  t.equal(json.count, 3);
  t.equal(json.more, true);
  t.equal(json.kvs.length, 1);
  const revA = Number(JSON.parse(await ok(['get', 'ctl/a', '-w', 'json'])).kvs[0].mod_revision);
  await ok(['put', 'ctl/a', '11']);
  t.equal(await ok(['get', 'ctl/a', `--rev=${revA}`, '--print-value-only']), '1\n');
  t.equal(await ok(['put', 'ctl/a', '111', '--prev-kv']), 'OK\nctl/a\n11\n');
  t.equal(await ok(['del', 'ctl/c', '--prev-kv']), '1\nctl/c\n3\n');
  t.equal(await ok(['get', 'ctl/', '--from-key', '--keys-only', '--limit=1']), 'ctl/a\n\n');

  // Txn from stdin: compares, then, else.
  const txn = await ok(['txn'], 'value("ctl/a") = "111"\n\nput ctl/t yes\n\nput ctl/t no\n\n');
  t.equal(txn, 'SUCCESS\n\nOK\n');
  t.equal(await ok(['get', 'ctl/t', '--print-value-only']), 'yes\n');
  const txn2 = await ok(['txn'], 'mod("ctl/a") < "2"\n\nput ctl/t yes2\n\nget ctl/t\n\n');
  t.equal(txn2, 'FAILURE\n\nctl/t\nyes\n');

  // Errors exactly as etcd prints them.
  const big = await etcdctl(['put', 'ctl/big'], 'x'.repeat(1.6 * 1024 * 1024));
  t.not(big.code, 0);
  t.match(big.stderr, /etcdserver: request is too large/);
  const empty = await etcdctl(['put', '', 'v']);
  t.not(empty.code, 0);
  t.match(empty.stderr, /etcdserver: key is not provided/);

  // Leases.
  const grant = await ok(['lease', 'grant', '60']);
  const leaseHex = /lease ([0-9a-f]+) granted with TTL\(60s\)/.exec(grant)?.[1];
  t.ok(leaseHex, grant);
  await ok(['put', 'ctl/leased', 'v', `--lease=${leaseHex}`]);
  t.match(await ok(['lease', 'keep-alive', '--once', leaseHex!]), new RegExp(`lease ${leaseHex} keepalived with TTL\\(60\\)`));
  t.match(await ok(['lease', 'timetolive', leaseHex!, '--keys']), /granted with TTL\(60s\), remaining\(\d+s\), attached keys\(\[ctl\/leased\]\)/);
  t.match(await ok(['lease', 'list']), new RegExp(leaseHex!));
  t.match(await ok(['lease', 'revoke', leaseHex!]), /revoked/);
  t.equal(await ok(['get', 'ctl/leased']), '');
  t.match(await ok(['lease', 'timetolive', leaseHex!]), /already expired/);

  // Watch: from a past revision with prev kv, then cancelled when etcdctl exits.
  const rev = h.member.sm.store.rev;
  await ok(['put', 'ctl/w', 'x1']);
  await ok(['put', 'ctl/w', 'x2']);
  const watched = await new Promise<string>((res) => {
    const child = spawn(etcdctlBin!, [`--endpoints=${h.addr}`, 'watch', 'ctl/w', '--prefix', `--rev=${rev + 1}`, '--prev-kv'], {
      env: { ...process.env, ETCDCTL_API: '3' },
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.split('\n').filter((l) => l === 'PUT').length >= 2 && out.endsWith('x2\n')) child.kill('SIGINT');
    });
    child.on('close', () => res(out));
    setTimeout(() => child.kill('SIGKILL'), 5000).unref();
  });
  t.equal(watched, 'PUT\nctl/w\nx1\nPUT\nctl/w\nx1\nctl/w\nx2\n');

  // Compaction.
  const now = h.member.sm.store.rev;
  t.match(await ok(['compaction', String(now - 1), '--physical']), new RegExp(`compacted revision ${now - 1}`));
  const old = await etcdctl(['get', 'ctl/a', `--rev=${now - 2}`]);
  t.not(old.code, 0);
  t.match(old.stderr, /etcdserver: mvcc: required revision has been compacted/);
  const again = await etcdctl(['compaction', String(now - 2)]);
  t.match(again.stderr, /etcdserver: mvcc: required revision has been compacted/);

  // Cluster and maintenance.
  const members = JSON.parse(await ok(['member', 'list', '-w', 'json'])) as { header: { cluster_id: number }; members: Array<{ name: string }> };
  t.equal(members.members[0]!.name, 'local');
  t.match(await ok(['member', 'list']), /8e9e05c52164694d, started, local, http:\/\/127.0.0.1:2380, http:\/\/127.0.0.1:2379, false/);
  const statusOut = await ok(['endpoint', 'status', '-w', 'json']);
  // etcdctl prints uint64s in full; JSON.parse would round them.
  t.match(statusOut, `"cluster_id":${0xcdef0123456789abn}`);
  t.match(statusOut, `"member_id":${0x8e9e05c52164694dn}`);
  t.match(statusOut, `"leader":${0x8e9e05c52164694dn}`);
  t.match(await ok(['endpoint', 'hashkv']), /, \d+/);
  t.match((await etcdctl(['endpoint', 'health'])).stderr, /is healthy/);
  t.equal(await ok(['alarm', 'list']), '');
  t.match(await ok(['defrag']), /Finished defragmenting etcd member/);
  t.equal(await ok(['role', 'list']), '');
  t.equal(await ok(['user', 'list']), '');
  const authErr = await etcdctl(['--user=root:x', 'get', 'k']);
  t.match(authErr.stderr, /authentication is not enabled/);
  const snapPath = join(h.dir, 'snap.db');
  t.match(await ok(['snapshot', 'save', snapPath]), /Snapshot saved at/);
  const snap = await readFile(snapPath);
  t.same(snap.subarray(-32), createHash('sha256').update(snap.subarray(0, -32)).digest(), 'the sha256 trailer');
});

t.test('an error without a gRPC code is INTERNAL, logged, and the server goes on', async (t) => {
  const maint = rawClient(h.addr, 'Maintenance');
  t.teardown(() => maint.client.close());
  const before = h.logs.length;
  h.member.defragError = new Error('disk on fire');
  await rejectsStatus(t, maint.call.Defragment!({}), { code: grpc.status.INTERNAL, details: 'disk on fire' });
  const logged = h.logs.slice(before);
  t.equal(logged.length, 1);
  t.match(logged[0], { level: 'error', method: 'Defragment', error: 'disk on fire' });
  h.logs.splice(before);
  await maint.call.Defragment!({});
  t.equal(await etcd.get('b/1').string(), 'bee');
});

t.test('grpc_server_handled_total: every answered call, by method and status code', async (t) => {
  const count = (service: string, method: string, code: string): number =>
    h.handled.series().find((s) => s.service === service && s.method === method && s.code === code)?.count ?? 0;
  const puts = count('etcdserverpb.KV', 'Put', 'OK');
  const invalid = count('etcdserverpb.KV', 'Put', 'INVALID_ARGUMENT');
  await etcd.put('handled/a').value('1');
  await etcd.put('handled/b').value('2');
  await t.rejects(etcd.put('').value('x').exec(), { message: /key is not provided/ });
  t.equal(count('etcdserverpb.KV', 'Put', 'OK'), puts + 2, 'two puts answered OK');
  t.equal(count('etcdserverpb.KV', 'Put', 'INVALID_ARGUMENT'), invalid + 1, 'the empty key counted under its code');
  t.equal(await etcd.get('handled/a').string(), '1', 'answers still arrive through the interceptor');
  const series = h.handled.series();
  t.match(series.find((s) => s.method === 'Put' && s.code === 'OK'), { type: 'unary', service: 'etcdserverpb.KV' });
  t.match(series.find((s) => s.method === 'Defragment' && s.code === 'INTERNAL'), { type: 'unary', service: 'etcdserverpb.Maintenance', count: 1 });
  t.match(series.find((s) => s.method === 'Snapshot' && s.code === 'OK'), { type: 'server_stream', service: 'etcdserverpb.Maintenance' });
  t.ok(series.every((s) => s.count > 0), 'no empty series');
});

t.test('no unexpected errors were logged', async (t) => {
  t.same(
    h.logs.filter((l) => l.level === 'error'),
    [],
  );
});
