// Disk failures through the FileSystem seam: typed errors, and no write acknowledged afterwards.
import t from 'tap';
import {
  FaultInjectingFileSystem,
  Wal,
  WalDiskFullError,
  WalIoError,
  WalPoisonedError,
  nodeFileSystem,
} from '../src/index.js';
import { TINY_SEGMENT, entries, entry, hs, openWal, tempDir } from './helpers.js';

t.test('an fdatasync error poisons the log: that save and every later one fail', async (t) => {
  const dir = tempDir(t);
  const disk = new FaultInjectingFileSystem(nodeFileSystem);
  const { wal } = await openWal(dir, { fs: disk });
  await wal.save({ entries: entries(1, 5, 1), hardState: hs(1, 5) });
  disk.arm('datasync', { code: 'EIO', pathIncludes: '.wal', times: 1 });
  const err = await wal.save({ entries: entries(6, 6, 1) }).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(err instanceof WalIoError, 'a typed I/O error');
  t.equal((err as WalIoError).op, 'fdatasync');
  t.match((err as WalIoError).file, /\.wal$/);
  t.equal(disk.fired.get('datasync'), 1);
  t.equal(wal.failure, err, 'the log remembers why');
  // The disk is fine again, but what the failed fsync left on it is unknown: no more writes.
  await t.rejects(wal.save({ entries: entries(6, 6, 1) }), WalPoisonedError);
  await t.rejects(wal.saveSnapshot({ metadata: { index: 3, term: 1, confState: { voters: [1], learners: [] } }, data: new Uint8Array(1) }), WalPoisonedError);
  await wal.close();
  // A restart replays what is there; everything acknowledged is.
  const { wal: w2, replay } = await openWal(dir);
  t.ok(replay.entries.length >= 5);
  t.same(
    replay.entries.slice(0, 5).map((e) => e.index),
    [1, 2, 3, 4, 5],
  );
  await w2.close();
});

t.test('ENOSPC on a write is a WalDiskFullError, and poisons too', async (t) => {
  const dir = tempDir(t);
  const disk = new FaultInjectingFileSystem(nodeFileSystem);
  const { wal } = await openWal(dir, { fs: disk });
  disk.arm('write', { code: 'ENOSPC', pathIncludes: '.wal' });
  await t.rejects(wal.save({ entries: [entry(1, 1)] }), WalDiskFullError);
  disk.disarm('write');
  await t.rejects(wal.save({ entries: [entry(1, 1)] }), { code: 'WAL_POISONED', first: { code: 'WAL_DISK_FULL' } });
  await wal.close();
});

t.test('ENOSPC while preallocating the next segment surfaces at the rollover that needs it', async (t) => {
  const dir = tempDir(t);
  const disk = new FaultInjectingFileSystem(nodeFileSystem);
  const { wal } = await openWal(dir, { fs: disk, segmentBytes: TINY_SEGMENT });
  disk.arm('write', { code: 'ENOSPC', pathIncludes: '.tmp' });
  let failed: unknown;
  let acked = 0;
  for (let i = 1; i <= 200 && failed === undefined; i++) {
    try {
      await wal.save({ entries: [entry(i, 1)], hardState: hs(1, i) });
      acked = i;
    } catch (e) {
      failed = e;
    }
  }
  t.ok(failed instanceof WalDiskFullError, `rollover after ${acked} entries failed as disk full`);
  t.match((failed as WalDiskFullError).op, /preallocate/);
  disk.disarm('write');
  await wal.close();
  const { wal: w2, replay } = await openWal(dir, { segmentBytes: TINY_SEGMENT });
  t.equal(replay.entries.length, acked, 'everything acknowledged before it is there');
  await w2.close();
});

t.test('a failed snapshot fsync is a typed error and poisons', async (t) => {
  const dir = tempDir(t);
  const disk = new FaultInjectingFileSystem(nodeFileSystem);
  const { wal } = await openWal(dir, { fs: disk });
  await wal.save({ entries: entries(1, 10, 1) });
  disk.arm('sync', { code: 'EIO', pathIncludes: '.snap', times: 1 });
  await t.rejects(
    wal.saveSnapshot({ metadata: { index: 5, term: 1, confState: { voters: [1], learners: [] } }, data: new Uint8Array(8) }),
    { code: 'WAL_IO', op: 'snapshot fsync' },
  );
  await t.rejects(wal.save({ entries: [entry(11, 1)] }), WalPoisonedError);
  await wal.close();
  const { wal: w2, replay } = await openWal(dir);
  t.equal(replay.snapshot, undefined, 'no marker was written for it');
  t.equal(replay.entries.length, 10);
  await w2.close();
});

t.test('a failure opening the log is typed and leaves the directory unlocked', async (t) => {
  const dir = tempDir(t);
  await (await openWal(dir)).wal.close();
  const disk = new FaultInjectingFileSystem(nodeFileSystem);
  disk.arm('readFile', { code: 'EIO', pathIncludes: '.wal', times: 1 });
  await t.rejects(Wal.open(dir, { fs: disk, logger: () => {} }), { code: 'WAL_IO', op: 'read' });
  const { wal } = await Wal.open(dir, { fs: disk, logger: () => {} });
  await wal.close();
});
