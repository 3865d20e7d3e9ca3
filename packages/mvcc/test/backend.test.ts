// The LevelDB side: staged writes, one batch per turn, and putLatest's one write per batch.
import { join } from 'node:path';
import t from 'tap';
import { Backend } from '../src/index.js';
import { BATCH_LIMIT } from '../src/backend.js';

const b = (s: string): Buffer => Buffer.from(s);

type Op = { type: string; key: Buffer; value?: Buffer };

/** Records each chained batch's ops as it is written. */
function spyBatches(be: Backend): Op[][] {
  type Chained = { put(k: Buffer, v: Buffer): unknown; del(k: Buffer): unknown; write(o: unknown): Promise<void> };
  const batches: Op[][] = [];
  const inner = be.db.batch.bind(be.db) as () => Chained;
  (be.db as unknown as { batch: unknown }).batch = (): Chained => {
    const real = inner();
    const ops: Op[] = [];
    return {
      put: (key, value) => (ops.push({ type: 'put', key, value }), real.put(key, value)),
      del: (key) => (ops.push({ type: 'del', key }), real.del(key)),
      write: (o) => (batches.push(ops), real.write(o)),
    };
  };
  return batches;
}

t.test('putLatest writes only the last value staged before a batch, after the batch\'s other writes', async (t) => {
  const be = await Backend.open(join(t.testdir(), 'db'));
  t.teardown(() => be.close());
  const batches = spyBatches(be);
  be.put(b('a'), b('1'));
  be.putLatest(b('ci'), b('1'));
  be.put(b('b'), b('2'));
  be.putLatest(b('ci'), b('2'));
  t.same(be.getSync(b('ci')), b('2'), 'reads see the latest before it is written');
  await be.flush();
  t.equal(batches.length, 1, 'one batch');
  t.same(
    batches[0]!.map((op) => [op.key.toString(), op.value?.toString()]),
    [
      ['a', '1'],
      ['b', '2'],
      ['ci', '2'],
    ],
  );
  t.same(await be.db.get(b('ci')), b('2'));
  be.putLatest(b('ci'), b('3'));
  await be.flush();
  t.equal(batches.length, 2, 'a putLatest alone is a batch of its own');
  t.same(await be.db.get(b('ci')), b('3'));
  await be.flush();
  t.equal(batches.length, 2, 'nothing staged, nothing written');
});

t.test('a batch over BATCH_LIMIT goes out where an apply ends, never in the middle of one', async (t) => {
  const be = await Backend.open(join(t.testdir(), 'db'));
  t.teardown(() => be.close());
  const batches = spyBatches(be);
  // One apply staging more than the limit (a range delete over many keys, say).
  for (let i = 0; i <= BATCH_LIMIT; i++) be.put(b(`k/${i}`), b('v'));
  t.equal(batches.length, 0, 'nothing written while the apply stages');
  be.putLatest(b('ci'), b('1'));
  t.equal(batches.length, 1, 'its end writes the batch at once, not on the interval');
  t.equal(batches[0]!.length, BATCH_LIMIT + 2, 'the whole apply and its consistent index');
  t.same(batches[0]!.at(-1)!.key, b('ci'));
  await be.flush();
  t.same(await be.db.get(b('ci')), b('1'));
});
