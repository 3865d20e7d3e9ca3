// Damage on disk: torn tails are repaired, anything else refuses to open with file and offset.
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Wal, WalCorruptError } from '../src/index.js';
import { scanSegment } from '../src/segment.js';
import {
  META,
  TINY_SEGMENT,
  captureLog,
  dataEnd,
  entries,
  entry,
  hs,
  lastSegmentPath,
  openWal,
  segmentFiles,
  tempDir,
  walDir,
} from './helpers.js';

/** A log of `n` entries over batches of four, the last save being entry n alone (one record). */
async function logWithLoneLastRecord(
  dir: string,
  segmentBytes?: number,
  n = 30,
): Promise<{ start: number; end: number; file: string }> {
  const { wal } = await openWal(dir, segmentBytes === undefined ? {} : { segmentBytes });
  for (let i = 1; i < n; i += 4) {
    await wal.save({ entries: entries(i, Math.min(i + 3, n - 1), 1), hardState: hs(1, Math.min(i + 3, n - 1)) });
  }
  const file = lastSegmentPath(dir);
  const start = dataEnd(file);
  await wal.save({ entries: [entry(n, 1)] });
  const end = dataEnd(file);
  await wal.close();
  return { start, end, file };
}

async function reopen(dir: string, segmentBytes?: number) {
  const log = captureLog();
  const opened = await Wal.open(dir, { logger: log.logger, ...(segmentBytes === undefined ? {} : { segmentBytes }) });
  const lastIndex = opened.wal.lastIndex;
  const entriesSeen = opened.replay.entries;
  await opened.wal.close();
  return { lastIndex, entries: entriesSeen, lines: log.lines };
}

t.test('a torn last record is truncated at every byte offset, with a log line', async (t) => {
  const dir = tempDir(t);
  const { start, end, file } = await logWithLoneLastRecord(dir);
  t.ok(end - start > 20, `last record is ${end - start} bytes`);
  const original = fs.readFileSync(file);
  for (const how of ['zero-filled', 'file cut short'] as const) {
    let failures = 0;
    for (let k = 0; k < end - start; k++) {
      const damaged = Buffer.from(original);
      if (how === 'zero-filled') damaged.fill(0, start + k, end);
      fs.writeFileSync(file, how === 'zero-filled' ? damaged : damaged.subarray(0, start + k));
      const r = await reopen(dir);
      const torn = r.lines.filter((l) => l.msg === 'wal: truncating torn tail');
      const ok =
        r.lastIndex === 29 &&
        r.entries.length === 29 &&
        (k === 0 ? torn.length === 0 : torn.length === 1 && torn[0]!.fields?.['file'] === file && torn[0]!.fields?.['offset'] === start);
      const bytes = torn[0]?.fields?.['bytesDropped'];
      if (!ok || (k > 0 && !(typeof bytes === 'number' && bytes > 0 && bytes <= k))) {
        failures++;
        t.fail(`${how} at +${k}: lastIndex ${r.lastIndex}, log ${JSON.stringify(torn)}`);
      }
      // Repaired: the next open has nothing to say.
      if ((await reopen(dir)).lines.length !== 0) failures++;
    }
    t.equal(failures, 0, `${how}: every offset of the last record handled`);
  }
});

t.test('a bit flipped in the last record is a torn tail: truncated', async (t) => {
  const dir = tempDir(t);
  const { start, end, file } = await logWithLoneLastRecord(dir);
  const original = fs.readFileSync(file);
  let failures = 0;
  for (let at = start; at < end; at++) {
    for (const bit of [0, 7]) {
      const damaged = Buffer.from(original);
      damaged[at]! ^= 1 << bit;
      fs.writeFileSync(file, damaged);
      const r = await reopen(dir);
      if (r.lastIndex !== 29 || r.lines.filter((l) => l.msg === 'wal: truncating torn tail').length !== 1) {
        failures++;
        t.fail(`flip at ${at} bit ${bit}: lastIndex ${r.lastIndex}`);
      }
    }
  }
  t.equal(failures, 0, 'every byte of the last record');
});

t.test('a bit flipped in a record that valid records follow refuses to open, naming file and offset', async (t) => {
  const dir = tempDir(t);
  await logWithLoneLastRecord(dir);
  const file = lastSegmentPath(dir);
  const original = fs.readFileSync(file);
  const records = scanSegment(original, file, 0, true).records;
  t.ok(records.length > 10);
  let checked = 0;
  // Every record but the last: every byte of its header, every fifth byte of its payload.
  const HEADER = 9;
  for (let r = 0; r < records.length - 1; r++) {
    const from = records[r]!.offset;
    const to = records[r + 1]!.offset;
    for (let at = from; at < to; at += at - from < HEADER ? 1 : 5) {
      const damaged = Buffer.from(original);
      damaged[at]! ^= 0x10;
      fs.writeFileSync(file, damaged);
      try {
        await reopen(dir);
        t.fail(`flip at ${at} (record at ${from}) opened`);
      } catch (e) {
        if (!(e instanceof WalCorruptError) || e.file !== file || e.offset !== from) {
          t.fail(`flip at ${at}: ${String(e)}`);
        }
      }
      checked++;
    }
  }
  fs.writeFileSync(file, original);
  t.ok(checked > 300, `${checked} flips refused`);
  t.equal((await reopen(dir)).lastIndex, 30, 'the undamaged log still opens');
});

t.test('any damage in an earlier segment refuses to open, naming file and offset', async (t) => {
  const dir = tempDir(t);
  await logWithLoneLastRecord(dir, TINY_SEGMENT, 120);
  const files = segmentFiles(dir);
  t.ok(files.length >= 3, `${files.length} segments`);
  const file = path.join(walDir(dir), files[1]!);
  const original = fs.readFileSync(file);
  const records = scanSegment(original, file, 1, false).records;
  // Including the last record of that segment: for a sealed segment there is no torn tail.
  for (const r of [records[0]!, records[records.length >> 1]!, records[records.length - 1]!]) {
    const damaged = Buffer.from(original);
    damaged[r.offset + 10]! ^= 0x01;
    fs.writeFileSync(file, damaged);
    const err = await reopen(dir, TINY_SEGMENT).then(
      () => undefined,
      (e: unknown) => e,
    );
    t.ok(err instanceof WalCorruptError, `record at ${r.offset}: refused`);
    t.equal((err as WalCorruptError).file, file);
    t.equal((err as WalCorruptError).offset, r.offset);
    t.match((err as Error).message, file);
  }
  // A sealed segment cut short loses its last batch's end: that is corruption too.
  const last = records[records.length - 1]!;
  const cut = Buffer.from(original);
  cut.fill(0, last.offset);
  fs.writeFileSync(file, cut);
  await t.rejects(reopen(dir, TINY_SEGMENT), WalCorruptError);
  fs.writeFileSync(file, original);
  t.equal((await reopen(dir, TINY_SEGMENT)).lastIndex, 120);
});

t.test('a missing segment in the middle refuses to open', async (t) => {
  const dir = tempDir(t);
  await logWithLoneLastRecord(dir, TINY_SEGMENT, 120);
  const files = segmentFiles(dir);
  fs.rmSync(path.join(walDir(dir), files[1]!));
  await t.rejects(reopen(dir, TINY_SEGMENT), { code: 'WAL_REPLAY' });
});

t.test('a segment renamed out of its place fails its CRC chain', async (t) => {
  const dir = tempDir(t);
  await logWithLoneLastRecord(dir, TINY_SEGMENT, 120);
  const files = segmentFiles(dir);
  const a = path.join(walDir(dir), files[1]!);
  const b = path.join(walDir(dir), files[2]!);
  const bufA = fs.readFileSync(a);
  fs.writeFileSync(a, fs.readFileSync(b));
  fs.writeFileSync(b, bufA);
  await t.rejects(reopen(dir, TINY_SEGMENT), { code: 'WAL_CORRUPT', file: a, offset: 0 });
});

t.test('zeros where a record should be, with data after them, is corruption, not a tail', async (t) => {
  const dir = tempDir(t);
  await logWithLoneLastRecord(dir);
  const file = lastSegmentPath(dir);
  const original = fs.readFileSync(file);
  const records = scanSegment(original, file, 0, true).records;
  const victim = records[records.length >> 1]!;
  const next = records[(records.length >> 1) + 1]!;
  const damaged = Buffer.from(original);
  damaged.fill(0, victim.offset, next.offset);
  fs.writeFileSync(file, damaged);
  await t.rejects(reopen(dir), { code: 'WAL_CORRUPT', file, offset: victim.offset });
});

t.test('a whole batch is dropped when its last record never made it (a save is all or nothing)', async (t) => {
  const dir = tempDir(t);
  const { wal } = await openWal(dir);
  await wal.save({ entries: entries(1, 5, 1), hardState: hs(1, 5) });
  const file = lastSegmentPath(dir);
  const before = dataEnd(file);
  await wal.save({ entries: entries(6, 10, 2), hardState: hs(2, 10) });
  await wal.close();
  const original = fs.readFileSync(file);
  const records = scanSegment(original, file, 0, true).records.filter((r) => r.offset >= before);
  t.equal(records.length, 6, 'five entries and a hard state');
  // Cut exactly at each record boundary inside the second batch: every prefix is intact records.
  for (const r of records) {
    const damaged = Buffer.from(original);
    damaged.fill(0, r.offset);
    fs.writeFileSync(file, damaged);
    const got = await reopen(dir);
    t.equal(got.lastIndex, 5, `cut at ${r.offset}: back to the first batch`);
    const { wal: w, replay } = await Wal.open(dir, { logger: () => {} });
    t.same(replay.hardState, hs(1, 5));
    await w.close();
  }
});

t.test('a log that ends in the zeros of a preallocated segment opens without complaint', async (t) => {
  const dir = tempDir(t);
  const { wal } = await openWal(dir);
  await wal.save({ entries: entries(1, 3, 1), hardState: hs(1, 3) });
  await wal.close();
  const file = lastSegmentPath(dir);
  const buf = fs.readFileSync(file);
  t.equal(buf.subarray(dataEnd(file)).every((b) => b === 0), true, 'zeros after the data');
  const r = await reopen(dir);
  t.equal(r.lastIndex, 3);
  t.same(r.lines, [], 'no repair needed');
  // The metadata record alone (a log created and never written) is a log too.
  const dir2 = tempDir(t);
  await (await openWal(dir2)).wal.close();
  const { wal: w2, replay } = await Wal.open(dir2, { logger: () => {} });
  t.same(replay.metadata, META);
  await w2.close();
});

t.test('a segment left empty by a crash right after a rollover gets its head records on open', async (t) => {
  const dir = tempDir(t);
  const { wal } = await openWal(dir, { segmentBytes: TINY_SEGMENT });
  for (let i = 1; i <= 60; i += 3) await wal.save({ entries: entries(i, i + 2, 1), hardState: hs(1, i + 2) });
  await wal.close();
  const files = segmentFiles(dir);
  const last = path.join(walDir(dir), files[files.length - 1]!);
  // As if the process died between renaming the new segment in and writing to it.
  const seq = files.length;
  const empty = path.join(walDir(dir), `${seq.toString(16).padStart(16, '0')}-${(61).toString(16).padStart(16, '0')}.wal`);
  fs.writeFileSync(empty, Buffer.alloc(TINY_SEGMENT));
  t.ok(fs.existsSync(last));
  const { wal: w2, replay } = await Wal.open(dir, { segmentBytes: TINY_SEGMENT, logger: () => {} });
  t.equal(replay.entries.length, 60);
  await w2.close();
  const records = scanSegment(fs.readFileSync(empty), empty, seq, true).records;
  t.same(
    records.map((r) => r.record.type),
    [4, 2],
    'metadata and hard state written at its head',
  );
  // So it replays alone once everything before it is gone.
  for (const f of files) fs.rmSync(path.join(walDir(dir), f));
  const { wal: w3, replay: r3 } = await Wal.open(dir, { segmentBytes: TINY_SEGMENT, logger: () => {} });
  t.same(r3.metadata, META);
  t.same(r3.hardState, hs(1, 60));
  await w3.close();
});
