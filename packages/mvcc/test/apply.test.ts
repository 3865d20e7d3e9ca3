import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t, { type Test } from 'tap';
import { StateMachine, WatchHub, type ApplyResult } from '../src/index.js';
import { entry } from './fixtures/entries.js';

const b = (s: string): Buffer => Buffer.from(s);
const APPLIER = fileURLToPath(new URL('./fixtures/applier.js', import.meta.url));

let dirs = 0;
async function open(t: Test, dir = join(t.testdir(), `sm-${++dirs}`)): Promise<StateMachine> {
  const sm = await StateMachine.open(dir, { now: () => 0 });
  t.teardown(() => sm.close());
  return sm;
}

function response(r: ApplyResult): unknown {
  if (r.kind !== 'ok') throw new Error(`expected a response, got ${r.kind}`);
  return r.response;
}

t.test('entries at or below the consistent index are skipped; failed requests still advance it', async (t) => {
  const sm = await open(t);
  response(sm.apply(1, { put: { key: b('a'), value: b('1') } }));
  t.same(sm.apply(1, { put: { key: b('a'), value: b('2') } }), { kind: 'skipped' });
  const bad = sm.apply(2, { put: { key: b('a'), ignoreValue: true, value: b('x') } });
  t.equal(bad.kind, 'error');
  t.equal(bad.kind === 'error' && bad.error.message, 'etcdserver: value is provided');
  t.equal(sm.consistentIndex, 2);
  sm.applyEmpty(3);
  t.equal(sm.consistentIndex, 3);
  t.equal(sm.store.rev, 2, 'only the first put wrote');
  const empty = sm.apply(4, {});
  t.equal(empty.kind === 'error' && empty.error.code, 'INVALID_ARGUMENT');
});

t.test('lease grant, attach, revoke deletes the keys in one revision', async (t) => {
  const sm = await open(t);
  const g = response(sm.apply(1, { leaseGrant: { ID: 100n, TTL: 1 } })) as { ID: bigint; TTL: number };
  t.same([g.ID, g.TTL], [100n, 2], 'a TTL below the minimum is raised to it');
  const dup = sm.apply(2, { leaseGrant: { ID: 100n, TTL: 10 } });
  t.equal(dup.kind === 'error' && dup.error.message, 'etcdserver: lease already exists');
  sm.apply(3, { put: { key: b('x'), value: b('1'), lease: 100n } });
  sm.apply(4, { put: { key: b('y'), value: b('1'), lease: 100n } });
  sm.apply(5, { put: { key: b('z'), value: b('1') } });
  t.same([...sm.lessor.timeToLive(100n, true).keys.map(String)], ['x', 'y']);
  const before = sm.store.rev;
  response(sm.apply(6, { leaseRevoke: { ID: 100n } }));
  t.equal(sm.store.rev, before + 1, 'one revision for all the lease\'s keys');
  t.same(sm.store.range({ key: b('a'), rangeEnd: b('zz') }).kvs.map((kv) => kv.key.toString()), ['z']);
  const again = sm.apply(7, { leaseRevoke: { ID: 100n } });
  t.equal(again.kind === 'error' && again.error.message, 'etcdserver: requested lease not found');
  const orphan = sm.apply(8, { put: { key: b('w'), value: b('1'), lease: 100n } });
  t.equal(orphan.kind === 'error' && orphan.error.code, 'NOT_FOUND');
});

t.test('leases, their keys and checkpointed TTLs survive a restart', async (t) => {
  const dir = join(t.testdir(), 'restart');
  let sm = await StateMachine.open(dir, { now: () => 0 });
  sm.apply(1, { leaseGrant: { ID: 7n, TTL: 100 } });
  sm.apply(2, { put: { key: b('held'), value: b('1'), lease: 7n } });
  sm.apply(3, { leaseCheckpoint: { checkpoints: [{ ID: 7n, remaining_TTL: 40 }] } });
  await sm.close();
  let now = 1000;
  sm = await StateMachine.open(dir, { now: () => now });
  t.teardown(() => sm.close());
  t.same(sm.lessor.leases(), [7n]);
  t.same(sm.lessor.timeToLive(7n, true).keys.map(String), ['held'], 'the key is attached again');
  sm.lessor.promote(0);
  t.equal(sm.lessor.remaining(7n), 40_000, 'the new primary counts from the checkpointed TTL');
  now += 40_001;
  t.same(sm.lessor.expired(10), [7n]);
  sm.apply(4, { leaseRevoke: { ID: 7n } });
  t.equal(sm.store.range({ key: b('held') }).count, 0);
});

t.test('a snapshot restores into another directory as the same store', async (t) => {
  const src = await open(t);
  for (let i = 1; i <= 400; i++) src.apply(i, entry(i));
  const { index, chunks } = await src.snapshot();
  t.equal(index, 400);
  // Applies go on while the stream is read: it must still show index 400.
  src.apply(401, { put: { key: b('late'), value: b('1') } });
  // Re-chunk at odd sizes, as a transport would.
  const all = [];
  for await (const c of chunks) all.push(c);
  const bytes = Buffer.concat(all);
  async function* cut(): AsyncGenerator<Buffer> {
    for (let o = 0; o < bytes.length; o += 777) yield bytes.subarray(o, o + 777);
  }
  const dst = await open(t);
  dst.apply(1, { put: { key: b('only-here'), value: b('1') } });
  let resets = 0;
  dst.store.onReset(() => resets++);
  await dst.restore(cut());
  t.equal(resets, 1, 'reset listeners hear of it');
  t.equal(dst.consistentIndex, 400);
  t.equal(dst.store.range({ key: b('only-here') }).count, 0, 'what was there before is gone');
  t.equal(dst.store.range({ key: b('late') }).count, 0);
  const h400 = await src.store.hashKV(dst.store.rev);
  t.equal((await dst.store.hashKV(0)).hash, h400.hash, 'HashKV equal at the snapshot revision');
  t.same(dst.lessor.leases(), src.lessor.leases());
  t.same(dst.store.range({ key: b('key/'), rangeEnd: b('key0') }).kvs.map((kv) => kv.value.toString()),
    src.store.range({ key: b('key/'), rangeEnd: b('key0'), revision: dst.store.rev }).kvs.map((kv) => kv.value.toString()));
});

t.test('a truncated or altered snapshot is refused and the old store stays', async (t) => {
  const src = await open(t);
  for (let i = 1; i <= 50; i++) src.apply(i, entry(i));
  const parts = [];
  for await (const c of (await src.snapshot()).chunks) parts.push(c);
  const bytes = Buffer.concat(parts);
  const victim = await open(t);
  victim.apply(1, { put: { key: b('mine'), value: b('1') } });
  async function* of(buf: Buffer): AsyncGenerator<Buffer> {
    yield buf;
  }
  t.equal(bytes.length % 512, 0, 'whole 512-byte blocks, as etcdctl snapshot save wants');
  // The trailer and the zero padding after it take at most 519 bytes: cut into what is before.
  await t.rejects(victim.restore(of(bytes.subarray(0, bytes.length - 520))), { message: 'mvcc: bad snapshot: truncated (no trailer)' });
  await t.rejects(victim.restore(of(Buffer.concat([bytes, Buffer.alloc(512)]))), { message: 'mvcc: bad snapshot: bytes after the trailer' });
  const flipped = Buffer.from(bytes);
  flipped[100] ^= 1;
  await t.rejects(victim.restore(of(flipped)), { message: 'mvcc: bad snapshot: checksum mismatch' });
  await t.rejects(victim.restore(of(Buffer.from('nonsense and more'))), { message: 'mvcc: bad snapshot: not a capstan snapshot (bad magic)' });
  t.equal(victim.store.range({ key: b('mine') }).count, 1, 'the store from before the failed restores');
  victim.apply(2, { put: { key: b('mine'), value: b('2') } });
  t.equal(victim.store.range({ key: b('mine') }).kvs[0]!.version, 2, 'and it still takes writes');
});

t.test('apply is idempotent across SIGKILL: replaying the whole log gives the same store', async (t) => {
  // Long enough (about half a second here) that the seeded kills, 5 to 125 ms in, land mid-apply.
  const N = 10_000;
  const ref = await open(t);
  for (let i = 1; i <= N; i++) ref.apply(i, entry(i));
  const want = await ref.store.hashKV(0);
  // Seeded kill delays, so a failing round can be told apart and rerun.
  let seed = 12345;
  const rand = (): number => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
  let killedMidway = 0;
  for (let round = 0; round < 6; round++) {
    const dir = join(t.testdir(), `crash-${round}`);
    // Two kills per round: a crash can also hit a member that is replaying after a crash.
    for (let kill = 0; kill < 2; kill++) {
      const child = spawn(process.execPath, [APPLIER, dir, String(N)], { stdio: ['ignore', 'pipe', 'inherit'] });
      // Listening from the start: a child that finished before the kill has already exited.
      const exited = once(child, 'exit');
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      await once(child.stdout, 'data');
      await new Promise((r) => setTimeout(r, 5 + rand() * 120));
      child.kill('SIGKILL');
      await exited;
      if (!out.includes('done')) killedMidway++;
    }
    const sm = await StateMachine.open(dir, { now: () => 0 });
    const from = sm.consistentIndex;
    for (let i = 1; i <= N; i++) sm.apply(i, entry(i));
    const got = await sm.store.hashKV(0);
    t.same([got.hash, got.header.revision, sm.lessor.leases()], [want.hash, want.header.revision, ref.lessor.leases()], `round ${round}: resumed after index ${from}`);
    await sm.close();
  }
  t.ok(killedMidway > 0, `some kills landed mid-apply (${killedMidway} of 12)`);
});

t.test('watchers of a store replaced by a snapshot catch up from the new store, once and in order', async (t) => {
  const a = await open(t);
  const src = await open(t);
  for (let i = 1; i <= 30; i++) {
    const req = { put: { key: b(`w/${i % 4}`), value: b(`v${i}`) } };
    if (i <= 10) a.apply(i, req);
    src.apply(i, req);
  }
  const hub = new WatchHub(a.store);
  t.teardown(() => hub.close());
  const revs: number[] = [];
  const stream = hub.newStream((resp) => {
    for (const e of resp.events) revs.push(e.kv.modRevision);
    return true;
  });
  stream.watch({ key: b('w/'), rangeEnd: b('w0'), startRevision: 5 });
  await until(() => revs.length === 7, 'catch-up to revision 11');
  const { chunks } = await src.snapshot();
  t.ok(await a.restore(chunks, { onlyForward: true }));
  await until(() => revs.length === 27, 'catch-up after the restore');
  a.apply(31, { put: { key: b('w/x'), value: b('live') } });
  await until(() => revs.length === 28, 'a live write after it');
  t.same(revs, Array.from({ length: 28 }, (_, i) => 5 + i), 'revisions 5..32, each once');
  const older = await open(t);
  older.apply(1, { put: { key: b('old'), value: b('1') } });
  t.notOk(await a.restore((await older.snapshot()).chunks, { onlyForward: true }), 'a store behind this one is refused');
  t.equal(a.consistentIndex, 31);
});

async function until(cond: () => boolean, what: string): Promise<void> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > 10_000) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
