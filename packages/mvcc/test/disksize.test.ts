// The store's size on disk: every file counted, LevelDB's table files stat'ed only until their
// size holds still, and forgotten when the directory is replaced.
import { appendFileSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { DiskSize } from '../src/disksize.js';
import { Backend } from '../src/backend.js';

t.test('sums the files; a table file is remembered once its size held still', async (t) => {
  const dir = t.testdir();
  writeFileSync(join(dir, '000001.ldb'), Buffer.alloc(1000));
  writeFileSync(join(dir, '000002.log'), Buffer.alloc(10));
  writeFileSync(join(dir, 'MANIFEST-000003'), Buffer.alloc(5));
  const size = new DiskSize(dir);
  t.equal(await size.measure(), 1015);
  // A table still being written grows between two measures: not remembered yet.
  appendFileSync(join(dir, '000001.ldb'), Buffer.alloc(500));
  appendFileSync(join(dir, '000002.log'), Buffer.alloc(20));
  t.equal(await size.measure(), 1535, 'the growth is seen');
  t.equal(await size.measure(), 1535, 'the same size twice: the table is settled');
  // A settled table is not stat'ed again (LevelDB never rewrites one): a change to it goes unseen,
  // while the log, which LevelDB appends to, is always measured.
  appendFileSync(join(dir, '000001.ldb'), Buffer.alloc(7));
  appendFileSync(join(dir, '000002.log'), Buffer.alloc(3));
  t.equal(await size.measure(), 1538, 'the log is measured every time, the settled table is not');
  rmSync(join(dir, '000001.ldb'));
  writeFileSync(join(dir, '000004.ldb'), Buffer.alloc(200));
  t.equal(await size.measure(), 33 + 5 + 200, 'a deleted table drops out, a new one counts');
  // A directory replaced under the same names (a restored snapshot).
  size.forget();
  writeFileSync(join(dir, '000004.ldb'), Buffer.alloc(50));
  t.equal(await size.measure(), 33 + 5 + 50);
  t.equal(await new DiskSize(join(dir, 'missing')).measure(), 0, 'no directory: nothing');
});

t.test("a backend's disk size is its LevelDB directory's, after a write and after a reopen", async (t) => {
  const dir = join(t.testdir(), 'db');
  mkdirSync(dir);
  const b = await Backend.open(dir);
  t.teardown(() => b.close());
  const empty = await b.diskSize();
  t.ok(empty > 0, `a fresh database has its log and manifest (${empty} bytes)`);
  for (let i = 0; i < 100; i++) b.put(Buffer.from(`k${i}`), Buffer.alloc(1000, i));
  await b.flush();
  const after = await b.diskSize();
  t.ok(after >= empty + 100_000, `the written values count (${after} bytes)`);
  await b.reopen(async () => {});
  t.ok((await b.diskSize()) > 0, 'measured again after a reopen');
});
