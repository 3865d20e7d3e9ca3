// The key space against etcd's documented semantics (API reference: KV service; "API guarantees").
import { join } from 'node:path';
import t, { type Test } from 'tap';
import {
  CompareResult,
  errCompacted,
  errFutureRev,
  CompareTarget,
  EventType,
  KvStore,
  MvccError,
  SortOrder,
  SortTarget,
  type Compare,
  type Event,
  type KeyValue,
  type RequestOp,
} from '../src/index.js';

const b = (s: string): Buffer => Buffer.from(s);
const keys = (kvs: readonly KeyValue[]): string[] => kvs.map((kv) => kv.key.toString());
const vals = (kvs: readonly KeyValue[]): string[] => kvs.map((kv) => kv.value.toString());
const put = (key: string, value: string): RequestOp => ({ requestPut: { key: b(key), value: b(value) } });
const del = (key: string, rangeEnd?: string): RequestOp => ({
  requestDeleteRange: { key: b(key), rangeEnd: rangeEnd === undefined ? undefined : b(rangeEnd) },
});
const get = (key: string): RequestOp => ({ requestRange: { key: b(key) } });
const cmp = (key: string, target: Compare['target'], result: Compare['result'], v: number | string | bigint): Compare => {
  const c: Compare = { key: b(key), target, result };
  if (target === CompareTarget.VALUE) c.value = b(v as string);
  else if (target === CompareTarget.VERSION) c.version = v as number;
  else if (target === CompareTarget.CREATE) c.createRevision = v as number;
  else if (target === CompareTarget.MOD) c.modRevision = v as number;
  else c.lease = v as bigint;
  return c;
};

let dirs = 0;
async function open(t: Test, dir?: string): Promise<KvStore> {
  const s = await KvStore.open(dir ?? join(t.testdir(), `store-${++dirs}`));
  t.teardown(() => s.close());
  return s;
}

function throwsMvcc(t: Test, fn: () => unknown, kind: string, message: string, code: string): void {
  try {
    fn();
    t.fail(`expected ${kind}`);
  } catch (err) {
    t.type(err, MvccError);
    const e = err as MvccError;
    t.equal(e.kind, kind);
    t.equal(e.message, message);
    t.equal(e.code, code);
  }
}

t.test('a fresh store is at revision 1 and the first write gets 2', async (t) => {
  const s = await open(t);
  const r = s.range({ key: b('a') });
  t.same({ rev: r.header.revision, kvs: r.kvs.length, count: r.count, more: r.more }, { rev: 1, kvs: 0, count: 0, more: false });
  t.equal(s.put({ key: b('a'), value: b('1') }).header.revision, 2);
  const kv = s.range({ key: b('a') }).kvs[0]!;
  t.same([kv.createRevision, kv.modRevision, kv.version, kv.value.toString(), kv.lease], [2, 2, 1, '1', 0n]);
});

t.test('put, overwrite, delete and recreate: versions and create revisions', async (t) => {
  const s = await open(t);
  s.put({ key: b('k'), value: b('v1') });
  const second = s.put({ key: b('k'), value: b('v2'), prevKv: true });
  t.equal(second.header.revision, 3);
  t.equal(second.prevKv?.value.toString(), 'v1', 'prev_kv is the value before');
  let kv = s.range({ key: b('k') }).kvs[0]!;
  t.same([kv.createRevision, kv.modRevision, kv.version], [2, 3, 2]);
  const d = s.deleteRange({ key: b('k'), prevKv: true });
  t.same([d.deleted, d.header.revision, vals(d.prevKvs)], [1, 4, ['v2']]);
  t.equal(s.range({ key: b('k') }).count, 0);
  s.put({ key: b('k'), value: b('v3') });
  kv = s.range({ key: b('k') }).kvs[0]!;
  t.same([kv.createRevision, kv.modRevision, kv.version], [5, 5, 1], 'a new generation starts at version 1');
  t.equal(s.put({ key: b('k'), value: b('v4'), prevKv: true }).prevKv?.version, 1);
  t.equal(s.put({ key: b('fresh'), value: b(''), prevKv: true }).prevKv, undefined, 'no prev_kv for a new key');
});

t.test('deleting a missing key changes nothing and does not bump the revision', async (t) => {
  const s = await open(t);
  s.put({ key: b('a'), value: b('1') });
  const d = s.deleteRange({ key: b('zzz') });
  t.same([d.deleted, d.header.revision, s.rev], [0, 2, 2]);
  const r = s.deleteRange({ key: b('x'), rangeEnd: b('y') });
  t.same([r.deleted, r.header.revision], [0, 2]);
});

t.test('ranges: single key, prefix, from-key, limit with more and count', async (t) => {
  const s = await open(t);
  for (const k of ['a', 'b', 'c', 'd', 'e', 'foo', 'foo/1', 'foo/2', 'fop']) s.put({ key: b(k), value: b(`v-${k}`) });
  t.same(keys(s.range({ key: b('foo/'), rangeEnd: b('foo0') }).kvs), ['foo/1', 'foo/2'], 'prefix');
  t.same(keys(s.range({ key: b('foo'), rangeEnd: Buffer.of(0) }).kvs), ['foo', 'foo/1', 'foo/2', 'fop'], '\\0 means every key from key');
  t.same(keys(s.range({ key: Buffer.of(0), rangeEnd: Buffer.of(0) }).kvs).length, 9, 'everything');
  let r = s.range({ key: b('a'), rangeEnd: b('f'), limit: 2 });
  t.same([keys(r.kvs), r.more, r.count], [['a', 'b'], true, 5]);
  r = s.range({ key: b('a'), rangeEnd: b('f'), limit: 5 });
  t.same([r.kvs.length, r.more, r.count], [5, false, 5], 'a limit equal to the count has no more');
  r = s.range({ key: b('b'), rangeEnd: b('b') });
  t.same([r.kvs.length, r.count], [0, 0], 'an empty interval');
  r = s.range({ key: b('c'), rangeEnd: b('a') });
  t.same([r.kvs.length, r.count], [0, 0], 'end before key');
  r = s.range({ key: b('a'), rangeEnd: b('f'), countOnly: true });
  t.same([r.kvs.length, r.count, r.more], [0, 5, false], 'count_only');
  r = s.range({ key: b('a'), rangeEnd: b('c'), keysOnly: true });
  t.same([keys(r.kvs), vals(r.kvs)], [['a', 'b'], ['', '']], 'keys_only');
});

t.test('ranges at old revisions, future revisions and compacted revisions', async (t) => {
  const s = await open(t);
  s.put({ key: b('a'), value: b('1') }); // 2
  s.put({ key: b('a'), value: b('2') }); // 3
  s.deleteRange({ key: b('a') }); // 4
  s.put({ key: b('b'), value: b('x') }); // 5
  t.same(vals(s.range({ key: b('a'), revision: 2 }).kvs), ['1']);
  t.same(vals(s.range({ key: b('a'), revision: 3 }).kvs), ['2']);
  t.same(s.range({ key: b('a'), revision: 4 }).kvs, [], 'deleted at 4');
  t.equal(s.range({ key: b('a'), revision: 2 }).header.revision, 5, 'the header carries the current revision');
  t.equal(s.range({ key: b('a'), rangeEnd: Buffer.of(0), revision: 3 }).count, 1);
  throwsMvcc(t, () => s.range({ key: b('a'), revision: 6 }), 'ErrFutureRev', 'etcdserver: mvcc: required revision is a future revision', 'OUT_OF_RANGE');
  await s.compact(3).done;
  throwsMvcc(t, () => s.range({ key: b('a'), revision: 2 }), 'ErrCompacted', 'etcdserver: mvcc: required revision has been compacted', 'OUT_OF_RANGE');
  t.same(vals(s.range({ key: b('a'), revision: 3 }).kvs), ['2'], 'the compacted revision itself stays readable');
});

t.test('sorting, and filters on mod and create revision', async (t) => {
  const s = await open(t);
  s.put({ key: b('c'), value: b('1') }); // 2
  s.put({ key: b('a'), value: b('3') }); // 3
  s.put({ key: b('b'), value: b('2') }); // 4
  s.put({ key: b('a'), value: b('0') }); // 5: a v2
  const all = { key: b('a'), rangeEnd: b('z') };
  t.same(keys(s.range({ ...all, sortOrder: SortOrder.DESCEND }).kvs), ['c', 'b', 'a']);
  t.same(keys(s.range({ ...all, sortTarget: SortTarget.VALUE }).kvs), ['a', 'c', 'b'], 'target without order sorts ascending');
  t.same(keys(s.range({ ...all, sortTarget: SortTarget.MOD, sortOrder: SortOrder.DESCEND }).kvs), ['a', 'b', 'c']);
  t.same(keys(s.range({ ...all, sortTarget: SortTarget.CREATE, sortOrder: SortOrder.ASCEND }).kvs), ['c', 'a', 'b']);
  t.same(keys(s.range({ ...all, sortTarget: SortTarget.VERSION, sortOrder: SortOrder.DESCEND }).kvs), ['a', 'b', 'c'], 'ties keep key order');
  const lim = s.range({ ...all, sortTarget: SortTarget.VALUE, sortOrder: SortOrder.DESCEND, limit: 1 });
  t.same([keys(lim.kvs), lim.more, lim.count], [['b'], true, 3], 'the limit applies after sorting');
  t.same(keys(s.range({ ...all, minModRevision: 4 }).kvs), ['a', 'b']);
  t.same(keys(s.range({ ...all, maxModRevision: 4 }).kvs), ['b', 'c']);
  t.same(keys(s.range({ ...all, minCreateRevision: 3 }).kvs), ['a', 'b']);
  const f = s.range({ ...all, maxCreateRevision: 2 });
  t.same([keys(f.kvs), f.count], [['c'], 3], 'count is taken before the filters');
  throwsMvcc(t, () => s.range({ ...all, sortOrder: 7 as SortOrder }), 'ErrInvalidSortOption', 'etcdserver: invalid sort option', 'INVALID_ARGUMENT');
});

t.test('put options and their errors', async (t) => {
  const s = await open(t);
  s.put({ key: b('k'), value: b('v') });
  s.put({ key: b('k'), ignoreValue: true });
  t.same(vals(s.range({ key: b('k') }).kvs), ['v'], 'ignore_value keeps the value');
  t.equal(s.range({ key: b('k') }).kvs[0]!.version, 2, 'but is a write');
  throwsMvcc(t, () => s.put({ key: b('nope'), ignoreValue: true }), 'ErrKeyNotFound', 'etcdserver: key not found', 'INVALID_ARGUMENT');
  throwsMvcc(t, () => s.put({ key: b('nope'), ignoreLease: true }), 'ErrKeyNotFound', 'etcdserver: key not found', 'INVALID_ARGUMENT');
  throwsMvcc(t, () => s.put({ key: b('k'), value: b('x'), ignoreValue: true }), 'ErrValueProvided', 'etcdserver: value is provided', 'INVALID_ARGUMENT');
  throwsMvcc(t, () => s.put({ key: b('k'), lease: 5n, ignoreLease: true }), 'ErrLeaseProvided', 'etcdserver: lease is provided', 'INVALID_ARGUMENT');
  throwsMvcc(t, () => s.put({ key: b('k'), value: b('x'), lease: 5n }), 'ErrLeaseNotFound', 'etcdserver: requested lease not found', 'NOT_FOUND');
  throwsMvcc(t, () => s.put({ key: b(''), value: b('x') }), 'ErrEmptyKey', 'etcdserver: key is not provided', 'INVALID_ARGUMENT');
  throwsMvcc(t, () => s.range({ key: b('') }), 'ErrEmptyKey', 'etcdserver: key is not provided', 'INVALID_ARGUMENT');
  throwsMvcc(t, () => s.deleteRange({ key: b('') }), 'ErrEmptyKey', 'etcdserver: key is not provided', 'INVALID_ARGUMENT');
  t.equal(s.rev, 3, 'refused requests write nothing');
});

t.test('leases: a put checks the lease exists and moves the key between leases', async (t) => {
  const s = await open(t);
  const attached = new Map<bigint, Set<string>>([[7n, new Set()], [8n, new Set()]]);
  s.setLeaseHooks({
    exists: (id) => attached.has(id),
    attach: (id, k) => attached.get(id)!.add(k),
    detach: (id, k) => attached.get(id)!.delete(k),
  });
  s.put({ key: b('k'), value: b('v'), lease: 7n });
  t.same([...attached.get(7n)!], ['k']);
  s.put({ key: b('k'), ignoreLease: true, value: b('w') });
  t.equal(s.range({ key: b('k') }).kvs[0]!.lease, 7n, 'ignore_lease keeps the lease');
  s.put({ key: b('k'), value: b('v'), lease: 8n });
  t.same([[...attached.get(7n)!], [...attached.get(8n)!]], [[], ['k']]);
  s.put({ key: b('j'), value: b('v'), lease: 8n });
  const rev = s.deleteKeys(['j', 'k', 'missing']);
  const after = s.range({ key: b('j'), rangeEnd: b('l'), revision: rev - 1 });
  t.same([rev, keys(after.kvs), attached.get(8n)!.size], [s.rev, ['j', 'k'], 0], 'deleteKeys deletes in one revision and detaches');
  t.equal(s.range({ key: b('j'), rangeEnd: b('l') }).count, 0);
});

t.test('txn compares: every target and result, missing keys, ranges', async (t) => {
  const s = await open(t);
  s.put({ key: b('a'), value: b('x') }); // 2
  s.put({ key: b('a'), value: b('y') }); // 3: version 2
  s.put({ key: b('b'), value: b('z') }); // 4
  const ok = (c: Compare): boolean => s.txn({ compare: [c] }).succeeded;
  const { VERSION, CREATE, MOD, VALUE, LEASE } = CompareTarget;
  const { EQUAL, NOT_EQUAL, LESS, GREATER } = CompareResult;
  const table: Array<[Compare, boolean]> = [
    [cmp('a', VERSION, EQUAL, 2), true],
    [cmp('a', VERSION, GREATER, 1), true],
    [cmp('a', VERSION, LESS, 2), false],
    [cmp('a', VERSION, NOT_EQUAL, 2), false],
    [cmp('a', CREATE, EQUAL, 2), true],
    [cmp('a', MOD, EQUAL, 3), true],
    [cmp('a', MOD, LESS, 4), true],
    [cmp('a', VALUE, EQUAL, 'y'), true],
    [cmp('a', VALUE, GREATER, 'x'), true],
    [cmp('a', VALUE, LESS, 'x'), false],
    [cmp('a', LEASE, EQUAL, 0n), true],
    [cmp('missing', VERSION, EQUAL, 0), true],
    [cmp('missing', CREATE, EQUAL, 0), true],
    [cmp('missing', VALUE, EQUAL, ''), false],
    [cmp('missing', VALUE, NOT_EQUAL, 'q'), false],
    [{ ...cmp('a', VERSION, GREATER, 0), rangeEnd: b('c') }, true],
    [{ ...cmp('a', VALUE, EQUAL, 'y'), rangeEnd: b('c') }, false],
    [{ ...cmp('a', MOD, GREATER, 2), rangeEnd: b('c') }, true],
  ];
  for (const [c, want] of table) {
    t.equal(ok(c), want, `${c.key.toString()}${c.rangeEnd ? '..' + c.rangeEnd.toString() : ''} target ${c.target} result ${c.result}`);
  }
  t.equal(s.rev, 4, 'read-only txns do not bump the revision');
});

t.test('txn: one revision for all writes, reads see earlier writes, responses per op', async (t) => {
  const s = await open(t);
  s.put({ key: b('gone'), value: b('1') }); // 2
  const r = s.txn({
    compare: [cmp('a', CompareTarget.VERSION, CompareResult.EQUAL, 0)],
    success: [put('a', '1'), get('a'), put('b', '2'), del('gone'), del('never')],
    failure: [put('c', '3')],
  });
  t.ok(r.succeeded);
  t.equal(r.header.revision, 3);
  const [pa, ga, pb, dg, dn] = r.responses;
  t.equal(pa?.responsePut?.header.revision, 3);
  t.same(vals(ga!.responseRange!.kvs), ['1'], 'a range after a put in the same txn sees it');
  t.equal(ga!.responseRange!.header.revision, 3);
  t.equal(pb?.responsePut?.header.revision, 3);
  t.same([dg?.responseDeleteRange?.deleted, dn?.responseDeleteRange?.deleted], [1, 0]);
  const kvs = s.range({ key: b('a'), rangeEnd: b('c') }).kvs;
  t.same(kvs.map((kv) => kv.modRevision), [3, 3], 'both writes share main revision 3');
  t.equal(s.range({ key: b('c') }).count, 0, 'the failure branch did not run');
  const f = s.txn({ compare: [cmp('a', CompareTarget.VERSION, CompareResult.EQUAL, 0)], success: [put('x', '1')], failure: [get('a')] });
  t.same([f.succeeded, f.header.revision, vals(f.responses[0]!.responseRange!.kvs)], [false, 3, ['1']]);
  const empty = s.txn({});
  t.same([empty.succeeded, empty.responses.length, empty.header.revision], [true, 0, 3], 'an empty txn succeeds');
  const noop = s.txn({ success: [del('nothing-here')] });
  t.same([noop.header.revision, s.rev], [3, 3], 'a txn that changes nothing keeps the revision');
});

t.test('nested txns: compares see the state before the txn; results nest', async (t) => {
  const s = await open(t);
  const r = s.txn({
    success: [
      put('k', 'v'),
      { requestTxn: { compare: [cmp('k', CompareTarget.VERSION, CompareResult.EQUAL, 0)], success: [put('inner', 'then')], failure: [put('inner', 'else')] } },
    ],
  });
  t.equal(r.responses[1]!.responseTxn!.succeeded, true, 'the nested compare ran before k was written');
  t.same(vals(s.range({ key: b('inner') }).kvs), ['then']);
  t.equal(r.responses[1]!.responseTxn!.header.revision, 2);
  t.equal(r.responses[1]!.responseTxn!.responses[0]!.responsePut!.header.revision, 2);
  const deep = s.txn({
    success: [
      { requestTxn: { compare: [cmp('k', CompareTarget.VALUE, CompareResult.EQUAL, 'no')], failure: [{ requestTxn: { success: [put('deep', '1')] } }] } },
      { requestTxn: { success: [get('deep')] } },
    ],
  });
  t.equal(deep.responses[0]!.responseTxn!.succeeded, false);
  t.equal(deep.responses[0]!.responseTxn!.responses[0]!.responseTxn!.succeeded, true);
  t.same(vals(deep.responses[1]!.responseTxn!.responses[0]!.responseRange!.kvs), ['1'], 'a later nested txn sees the earlier one\'s write');
});

t.test('txn refusals: duplicate keys, too many ops, empty ops, preconditions', async (t) => {
  const s = await open(t);
  s.put({ key: b('exists'), value: b('1') });
  const dup = (success: RequestOp[]): void =>
    throwsMvcc(t, () => s.txn({ success }), 'ErrDuplicateKey', 'etcdserver: duplicate key given in txn request', 'INVALID_ARGUMENT');
  dup([put('a', '1'), put('a', '2')]);
  dup([put('b', '1'), del('a', 'c')]);
  dup([del('b'), put('b', '1')]);
  dup([put('a', '1'), { requestTxn: { success: [put('a', '2')] } }]);
  dup([del('a', 'z'), { requestTxn: { failure: [put('m', '2')] } }]);
  // Allowed: a key put in both branches of one nested txn; a range and a put of one key; two deletes.
  s.txn({ success: [{ requestTxn: { success: [put('t', '1')], failure: [put('t', '2')] } }, get('t')] });
  s.txn({ success: [get('r'), put('r', '1'), del('x'), del('x')] });
  s.txn({ success: [put('q', '1')], failure: [put('q', '2')] });
  // A "from key" delete is an empty interval to etcd's check, so it never conflicts.
  s.txn({ success: [put('zz1', '1'), { requestDeleteRange: { key: b('zz'), rangeEnd: Buffer.of(0) } }] });
  const many = Array.from({ length: 129 }, (_, i) => put(`k${i}`, 'v'));
  throwsMvcc(t, () => s.txn({ success: many }), 'ErrTooManyOps', 'etcdserver: too many operations in txn request', 'INVALID_ARGUMENT');
  t.doesNotThrow(() => s.txn({ success: many.slice(0, 128) }), '128 ops are allowed');
  throwsMvcc(t, () => s.txn({ success: [{}] }), 'ErrKeyNotFound', 'etcdserver: key not found', 'INVALID_ARGUMENT');
  throwsMvcc(t, () => s.txn({ compare: [cmp('', CompareTarget.VERSION, CompareResult.EQUAL, 0)] }), 'ErrEmptyKey', 'etcdserver: key is not provided', 'INVALID_ARGUMENT');
  const rev = s.rev;
  throwsMvcc(t, () => s.txn({ success: [put('w', '1'), { requestPut: { key: b('nope'), ignoreValue: true } }] }), 'ErrKeyNotFound', 'etcdserver: key not found', 'INVALID_ARGUMENT');
  throwsMvcc(t, () => s.txn({ success: [put('w', '1'), { requestPut: { key: b('w2'), value: b('1'), lease: 9n } }] }), 'ErrLeaseNotFound', 'etcdserver: requested lease not found', 'NOT_FOUND');
  throwsMvcc(t, () => s.txn({ success: [put('w', '1'), { requestRange: { key: b('w'), revision: rev + 5 } }] }), 'ErrFutureRev', 'etcdserver: mvcc: required revision is a future revision', 'OUT_OF_RANGE');
  t.equal(s.rev, rev, 'a refused txn writes nothing');
  t.equal(s.range({ key: b('w') }).count, 0);
  // A precondition on the branch not taken does not matter.
  t.doesNotThrow(() => s.txn({ compare: [cmp('exists', CompareTarget.VERSION, CompareResult.EQUAL, 1)], failure: [{ requestPut: { key: b('nope'), ignoreValue: true } }] }));
});

t.test('compaction: keeps each key\'s newest revision, removes the rest from LevelDB, refuses bad revisions', async (t) => {
  const s = await open(t);
  for (let i = 0; i < 5; i++) s.put({ key: b('a'), value: b(`a${i}`) }); // 2..6
  s.put({ key: b('d'), value: b('x') }); // 7
  s.deleteRange({ key: b('d') }); // 8
  s.put({ key: b('b'), value: b('b') }); // 9
  throwsMvcc(t, () => s.compact(10), 'ErrFutureRev', 'etcdserver: mvcc: required revision is a future revision', 'OUT_OF_RANGE');
  const c = s.compact(8);
  t.equal(c.header.revision, 9);
  await c.done;
  throwsMvcc(t, () => s.compact(8), 'ErrCompacted', 'etcdserver: mvcc: required revision has been compacted', 'OUT_OF_RANGE');
  throwsMvcc(t, () => s.compact(3), 'ErrCompacted', 'etcdserver: mvcc: required revision has been compacted', 'OUT_OF_RANGE');
  t.same(vals(s.range({ key: b('a'), revision: 8 }).kvs), ['a4']);
  const records: string[] = [];
  for await (const [k] of s.backend.db.iterator({ gte: Buffer.of(0x6b), lt: Buffer.of(0x6c) })) {
    records.push(`${k.readUInt32BE(5)}${k.length > 18 ? 't' : ''}`);
  }
  t.same(records, ['6', '9'], 'a4 and b remain; old puts and d (deleted before 8) are gone');
  t.equal(s.compactRev, 8);
  t.equal(s.range({ key: b('d') }).count, 0);
  const d = await s.compact(9).done.then(() => s.range({ key: b('a'), rangeEnd: b('c') }));
  t.same(keys(d.kvs), ['a', 'b'], 'compaction at the current revision keeps the current state');
  s.put({ key: b('a'), value: b('after') });
  t.equal(s.range({ key: b('a') }).kvs[0]!.version, 6, 'versions keep counting after compaction');
});

t.test('HashKV agrees between stores that applied the same writes, whatever was compacted', async (t) => {
  const x = await open(t);
  const y = await open(t);
  for (const s of [x, y]) {
    for (let i = 0; i < 50; i++) s.put({ key: b(`k${i % 7}`), value: b(`v${i}`) });
    s.deleteRange({ key: b('k3') });
    s.txn({ success: [put('t1', '1'), put('t2', '2')] });
  }
  await x.compact(30).done;
  const hy = await y.hashKV(0);
  y.compact(30);
  const hx = await x.hashKV(0);
  const hy2 = await y.hashKV(0);
  t.equal(hx.hash, hy2.hash, 'equal after both compacted');
  t.equal(hx.compactRevision, 30);
  t.equal(hx.header.revision, x.rev);
  t.not(hy.hash, hy2.hash, 'compaction changes the hash of the current revision');
  t.equal((await x.hashKV(40)).hash, (await y.hashKV(40)).hash, 'equal at an older revision');
  y.put({ key: b('k1'), value: b('different') });
  x.put({ key: b('k1'), value: b('other') });
  t.not((await x.hashKV(0)).hash, (await y.hashKV(0)).hash, 'a differing value changes the hash');
  await t.rejects(x.hashKV(10), errCompacted());
  await t.rejects(x.hashKV(x.rev + 1), errFutureRev());
});

t.test('restart: revisions, versions, deletions, compaction and the consistent index survive', async (t) => {
  const dir = t.testdir();
  let s = await KvStore.open(dir);
  s.put({ key: b('a'), value: b('1') }); // 2
  s.put({ key: b('a'), value: b('2') }); // 3
  s.put({ key: b('b'), value: b('1') }); // 4
  s.deleteRange({ key: b('b') }); // 5
  s.put({ key: b('c'), value: b('1') }); // 6
  s.deleteRange({ key: b('c') }); // 7
  await s.compact(7).done;
  s.setConsistentIndex(42);
  const hash = (await s.hashKV(0)).hash;
  await s.close();
  s = await open(t, dir);
  t.equal(s.rev, 7, 'the revision does not go back even though its record (a tombstone) was compacted');
  t.equal(s.compactRev, 7);
  t.equal(s.consistentIndex, 42);
  const a = s.range({ key: b('a') }).kvs[0]!;
  t.same([a.createRevision, a.modRevision, a.version, a.value.toString()], [2, 3, 2, '2']);
  t.same(s.range({ key: b('b'), rangeEnd: b('d') }).kvs, []);
  t.equal((await s.hashKV(0)).hash, hash);
  s.put({ key: b('a'), value: b('3') });
  t.same([s.rev, s.range({ key: b('a') }).kvs[0]!.version], [8, 3]);
  s.put({ key: b('b'), value: b('again') });
  t.equal(s.range({ key: b('b') }).kvs[0]!.version, 1);
});

t.test('restart without compaction keeps every old revision readable', async (t) => {
  const dir = t.testdir();
  let s = await KvStore.open(dir);
  s.put({ key: b('a'), value: b('1') });
  s.deleteRange({ key: b('a') });
  s.put({ key: b('a'), value: b('2') });
  s.put({ key: b('a'), value: b('3') });
  await s.close();
  s = await open(t, dir);
  t.same(vals(s.range({ key: b('a'), revision: 2 }).kvs), ['1']);
  t.same(s.range({ key: b('a'), revision: 3 }).kvs, []);
  const kv = s.range({ key: b('a') }).kvs[0]!;
  t.same([kv.createRevision, kv.version, kv.modRevision], [4, 2, 5]);
  t.equal(s.compactRev, -1);
});

t.test('listeners get each write transaction once with its events, and history reads them back', async (t) => {
  const s = await open(t);
  const seen: Array<[number, Event[]]> = [];
  s.onTxn((rev, evs) => seen.push([rev, [...evs]]));
  s.put({ key: b('a'), value: b('1') });
  s.txn({ success: [put('b', '2'), put('c', '3'), del('a')] });
  s.deleteRange({ key: b('zzz') });
  s.txn({ success: [get('b')] });
  t.same(
    seen.map(([rev, evs]) => [rev, evs.map((e) => `${e.type === EventType.PUT ? 'PUT' : 'DEL'} ${e.kv.key} ${e.kv.modRevision} ${e.kv.version}`)]),
    [
      [2, ['PUT a 2 1']],
      [3, ['PUT b 3 1', 'PUT c 3 1', 'DEL a 3 0']],
    ],
    'no notification for writes that changed nothing',
  );
  const h = await s.history('', null, 2, 3, 100);
  t.same(
    h.events.map((e) => `${e.type === EventType.PUT ? 'PUT' : 'DEL'} ${e.kv.key} ${e.kv.modRevision}`),
    ['PUT a 2', 'PUT b 3', 'PUT c 3', 'DEL a 3'],
  );
  t.equal(h.next, 4);
  const one = await s.history('a', undefined, 1, 3, 1);
  t.same([one.events.length, one.next], [1, 3], 'stops after maxRevs revisions');
  const pre = await s.history('b', 'c', 2, 3, 10);
  t.same(pre.events.map((e) => e.kv.key.toString()), ['b']);
});
