import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Snapshot } from '@capstan/raft';
import { Wal, WalInvalidBatchError, nodeFileSystem, type FileSystem } from '../src/index.js';
import { readSnapshotFile, writeSnapshotFile } from '../src/snapshot.js';
import { TINY_SEGMENT, captureLog, entries, hs, openWal, segmentFiles, tempDir } from './helpers.js';

function snapshot(index: number, term: number, body = `state@${index}`): Snapshot {
  return {
    metadata: { index, term, confState: { voters: [1, 2, 3], learners: [4] } },
    data: new TextEncoder().encode(body),
  };
}

function snapDir(dir: string): string {
  return path.join(dir, 'snap');
}

function snapFiles(dir: string): string[] {
  return fs.readdirSync(snapDir(dir)).sort();
}

t.test('snapshot files round-trip and are written via a temporary file', async (t) => {
  const dir = tempDir(t);
  const snap = snapshot(42, 3, 'x'.repeat(100_000));
  const file = await writeSnapshotFile(nodeFileSystem, dir, snap);
  t.equal(path.basename(file), '0000000000000003-000000000000002a.snap');
  t.same(fs.readdirSync(dir), [path.basename(file)], 'no temporary file left behind');
  const back = await readSnapshotFile(nodeFileSystem, file);
  t.same(back.metadata, snap.metadata);
  t.equal(Buffer.from(back.data).toString(), 'x'.repeat(100_000));
  const buf = fs.readFileSync(file);
  buf[buf.length - 1]! ^= 1;
  fs.writeFileSync(file, buf);
  await t.rejects(readSnapshotFile(nodeFileSystem, file), { code: 'SNAPSHOT_CORRUPT' });
});

t.test('a snapshot releases the segments wholly before it; replay starts from it', async (t) => {
  const dir = tempDir(t);
  const { wal } = await openWal(dir, { segmentBytes: TINY_SEGMENT });
  for (let i = 1; i <= 300; i += 5) await wal.save({ entries: entries(i, i + 4, 1), hardState: hs(1, i + 4) });
  const before = segmentFiles(dir);
  t.ok(before.length > 8, `${before.length} segments`);
  await wal.saveSnapshot(snapshot(200, 1));
  const after = segmentFiles(dir);
  t.ok(after.length < before.length, `released ${before.length - after.length} segments`);
  // What is left still starts at or before 201 ...
  t.ok(parseInt(after[0]!.slice(17, 33), 16) <= 201, 'the first kept segment may hold entry 201');
  // ... and nothing kept is wholly before the snapshot.
  t.ok(after.length < 2 || parseInt(after[1]!.slice(17, 33), 16) > 201, 'the one after it does not');
  t.same(snapFiles(dir), ['0000000000000001-00000000000000c8.snap']);
  await wal.save({ entries: entries(301, 310, 1), hardState: hs(1, 310) });
  await wal.close();

  const { wal: w2, replay } = await openWal(dir, { segmentBytes: TINY_SEGMENT });
  t.same(replay.snapshot?.metadata, snapshot(200, 1).metadata);
  t.equal(Buffer.from(replay.snapshot!.data).toString(), 'state@200');
  t.equal(replay.entries[0]!.index, 201, 'entries start right after the snapshot');
  t.equal(replay.entries.length, 110);
  t.same(replay.hardState, hs(1, 310));

  // Another snapshot once more segments have rolled: the head of the first kept segment repeats
  // an older marker, and replay still lines up.
  for (let i = 311; i <= 500; i += 5) await w2.save({ entries: entries(i, i + 4, 1), hardState: hs(1, i + 4) });
  await w2.saveSnapshot(snapshot(450, 1));
  await w2.close();
  const { wal: w3, replay: r3 } = await openWal(dir, { segmentBytes: TINY_SEGMENT });
  t.equal(r3.snapshot?.metadata.index, 450);
  t.equal(r3.entries[0]!.index, 451);
  t.equal(r3.entries[r3.entries.length - 1]!.index, 500);
  await w3.close();
});

t.test('a snapshot from the leader that the log does not contain replaces the log', async (t) => {
  const dir = tempDir(t);
  const { wal } = await openWal(dir);
  await wal.save({ entries: entries(1, 10, 1), hardState: hs(1, 5) });
  // A follower far behind: the leader sends a snapshot at 20 (term 3) and then entries 21..22.
  const p = await wal.save({ snapshot: snapshot(20, 3), entries: entries(21, 22, 3), hardState: hs(3, 22) });
  t.equal(p.lastIndex, 22);
  await wal.close();
  const { wal: w2, replay } = await openWal(dir);
  t.equal(replay.snapshot?.metadata.index, 20);
  t.same(
    replay.entries.map((e) => [e.index, e.term]),
    [
      [21, 3],
      [22, 3],
    ],
  );
  // A snapshot whose index the log has, at a different term, also replaces it.
  await w2.save({ entries: entries(23, 30, 3) });
  const p2 = await w2.save({ snapshot: snapshot(25, 4) });
  t.equal(p2.lastIndex, 25, 'the log now ends at the snapshot');
  await w2.close();
  const { wal: w3, replay: r3 } = await openWal(dir);
  t.equal(r3.snapshot?.metadata.index, 25);
  t.same(r3.entries, [], 'entries 26..30 of term 3 are not the log the snapshot came from');
  await w3.close();
});

t.test("a member's own snapshot keeps the entries after it", async (t) => {
  const dir = tempDir(t);
  const { wal } = await openWal(dir);
  await wal.save({ entries: entries(1, 10, 2), hardState: hs(2, 10) });
  const p = await wal.saveSnapshot(snapshot(6, 2));
  t.equal(p.lastIndex, 10, 'the log still ends at 10');
  await wal.close();
  const { wal: w2, replay } = await openWal(dir);
  t.same(
    replay.entries.map((e) => e.index),
    [7, 8, 9, 10],
  );
  await t.rejects(w2.save({ entries: entries(5, 5, 2) }), WalInvalidBatchError, 'no entries inside the snapshot');
  await w2.close();
});

t.test('old snapshot files are purged to maxSnapshotFiles, newest kept', async (t) => {
  const dir = tempDir(t);
  const { wal } = await openWal(dir, { maxSnapshotFiles: 2 });
  await wal.save({ entries: entries(1, 50, 1), hardState: hs(1, 50) });
  for (const i of [10, 20, 30, 40]) await wal.saveSnapshot(snapshot(i, 1));
  t.same(snapFiles(dir), ['0000000000000001-000000000000001e.snap', '0000000000000001-0000000000000028.snap']);
  await wal.close();
});

t.test("a member's own snapshot writes its file while a save waits for its fdatasync", async (t) => {
  const dir = tempDir(t);
  // The segments' fdatasyncs wait while `gate` is set; a snapshot file's rename is reported.
  let gate: Promise<void> | undefined;
  let renamed: (() => void) | undefined;
  const snapRenamed = new Promise<void>((resolve) => (renamed = resolve));
  const fs: FileSystem = {
    ...nodeFileSystem,
    async open(p, mode) {
      const h = await nodeFileSystem.open(p, mode);
      if (p.includes(`${path.sep}wal${path.sep}`)) {
        const inner = h.datasync.bind(h);
        h.datasync = async () => {
          if (gate !== undefined) await gate;
          await inner();
        };
      }
      return h;
    },
    async rename(from, to) {
      await nodeFileSystem.rename(from, to);
      if (to.endsWith('.snap')) renamed!();
    },
  };
  const { wal } = await openWal(dir, { fs });
  await wal.save({ entries: entries(1, 10, 1), hardState: hs(1, 10) });
  let open: (() => void) | undefined;
  gate = new Promise<void>((resolve) => (open = resolve));
  let saved = false;
  const save = wal.save({ entries: entries(11, 12, 1), hardState: hs(1, 12) }).then((p) => {
    saved = true;
    return p;
  });
  const own = wal.saveSnapshot(snapshot(8, 1));
  let timer: NodeJS.Timeout | undefined;
  const first = await Promise.race([
    snapRenamed.then(() => 'snapshot file'),
    new Promise<string>((resolve) => (timer = setTimeout(() => resolve('nothing within 5 s'), 5000))),
  ]);
  clearTimeout(timer);
  t.equal(first, 'snapshot file', 'the snapshot file was written while the save waited');
  t.notOk(saved, 'the save was still waiting for its fdatasync');
  gate = undefined;
  open!();
  t.equal((await save).lastIndex, 12);
  t.equal((await own).lastIndex, 12, 'the marker joined the queue behind it');
  await wal.close();
  const { wal: w2, replay } = await openWal(dir);
  t.equal(replay.snapshot?.metadata.index, 8);
  t.same(
    replay.entries.map((e) => e.index),
    [9, 10, 11, 12],
  );
  await w2.close();
});

t.test("a member's own snapshot behind the log's marker is refused and does not poison", async (t) => {
  const dir = tempDir(t);
  const { wal } = await openWal(dir);
  await wal.save({ entries: entries(1, 20, 1), hardState: hs(1, 20) });
  // A snapshot from the leader at 15 got in first.
  await wal.save({ snapshot: snapshot(15, 1) });
  await t.rejects(wal.saveSnapshot(snapshot(10, 1)), WalInvalidBatchError);
  await t.rejects(wal.saveSnapshot(snapshot(15, 1)), WalInvalidBatchError, 'nor at it');
  t.equal(wal.failure, undefined, 'not poisoned');
  await wal.save({ entries: entries(21, 21, 1), hardState: hs(1, 21) });
  await wal.close();
  const { wal: w2, replay } = await openWal(dir);
  t.equal(replay.snapshot?.metadata.index, 15);
  t.equal(replay.entries[replay.entries.length - 1]!.index, 21);
  await w2.close();
});

t.test('the purge neither counts nor removes a snapshot file past the marker', async (t) => {
  const dir = tempDir(t);
  const { wal } = await openWal(dir, { maxSnapshotFiles: 1 });
  await wal.save({ entries: entries(1, 50, 1), hardState: hs(1, 50) });
  await wal.saveSnapshot(snapshot(10, 1));
  // A file whose marker is not written yet (another snapshot's, still in flight).
  await writeSnapshotFile(nodeFileSystem, snapDir(dir), snapshot(40, 1));
  await wal.saveSnapshot(snapshot(20, 1));
  t.same(snapFiles(dir), ['0000000000000001-0000000000000014.snap', '0000000000000001-0000000000000028.snap'], "the marker's own file is kept");
  await wal.close();
  const { wal: w2, replay } = await openWal(dir);
  t.equal(replay.snapshot?.metadata.index, 20);
  await w2.close();
});

t.test('a snapshot file without a marker (crash between the two) is ignored', async (t) => {
  const dir = tempDir(t);
  const { wal } = await openWal(dir);
  await wal.save({ entries: entries(1, 20, 1), hardState: hs(1, 20) });
  await wal.saveSnapshot(snapshot(10, 1));
  await wal.close();
  await writeSnapshotFile(nodeFileSystem, snapDir(dir), snapshot(15, 1));
  fs.writeFileSync(path.join(snapDir(dir), '0000000000000001-0000000000000011.snap.tmp'), 'half written');
  const log = captureLog();
  const { wal: w2, replay } = await Wal.open(dir, { logger: log.logger });
  t.equal(replay.snapshot?.metadata.index, 10, 'the newest snapshot the log knows of');
  t.equal(replay.entries[0]!.index, 11);
  t.ok(log.lines.some((l) => l.msg === 'wal: ignoring snapshot file newer than the log'));
  t.notOk(snapFiles(dir).some((n) => n.endsWith('.tmp')), 'temporary files removed');
  await w2.close();
});

t.test('a corrupt snapshot file that the log needs refuses to open and is moved aside', async (t) => {
  const dir = tempDir(t);
  const { wal } = await openWal(dir);
  await wal.save({ entries: entries(1, 20, 1), hardState: hs(1, 20) });
  await wal.saveSnapshot(snapshot(10, 1));
  await wal.close();
  const file = path.join(snapDir(dir), snapFiles(dir)[0]!);
  const buf = fs.readFileSync(file);
  buf[buf.length - 2]! ^= 0x40;
  fs.writeFileSync(file, buf);
  await t.rejects(Wal.open(dir, { logger: () => {} }), { code: 'WAL_REPLAY' });
  t.ok(fs.existsSync(file + '.broken'), 'quarantined');
  fs.rmSync(file + '.broken');
  await t.rejects(Wal.open(dir, { logger: () => {} }), { code: 'WAL_REPLAY', message: /no snapshot file/ });
});
