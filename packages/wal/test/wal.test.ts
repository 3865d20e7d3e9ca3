import t, { type Test } from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Entry } from '@capstan/raft';
import {
  FSYNC_DURATION_BUCKETS,
  INLINE_SYNC_MAX_BYTES,
  INLINE_SYNC_MAX_MS,
  Persisted,
  Wal,
  WalClosedError,
  WalInvalidBatchError,
  WalNotFoundError,
  WRITE_BLOCK_BYTES,
  WARN_SYNC_MS,
  goDuration,
  nodeFileSystem,
  type FileHandle,
  type FileSystem,
} from '../src/index.js';
import { ZERO_WRITE_BYTES, zeroFill } from '../src/segment.js';
import {
  META,
  SMALL_SEGMENT,
  TINY_SEGMENT,
  entries,
  entry,
  entryData,
  hs,
  openWal,
  sameBytes,
  segmentFiles,
  tempDir,
  walDir,
} from './helpers.js';

function assertEntries(t: Test, got: readonly Entry[], want: readonly Entry[]): void {
  t.equal(got.length, want.length, 'entry count');
  for (let i = 0; i < Math.min(got.length, want.length); i++) {
    const g = got[i]!;
    const w = want[i]!;
    if (g.index !== w.index || g.term !== w.term || g.type !== w.type || !sameBytes(g.data, w.data)) {
      t.fail(`entry ${i}: got (${g.index}, ${g.term}), want (${w.index}, ${w.term})`);
      return;
    }
  }
}

t.test('a missing data directory is not a log unless metadata asks to create one', async (t) => {
  const dir = path.join(tempDir(t), 'not-there');
  await t.rejects(Wal.open(dir, { logger: () => {} }), WalNotFoundError);
  t.notOk(fs.existsSync(dir), 'nothing created');
  const { wal, replay } = await openWal(dir);
  t.ok(replay.created);
  t.same(replay.metadata, META);
  t.same(replay.hardState, { term: 0, vote: 0, commit: 0 });
  t.equal(replay.snapshot, undefined);
  t.same(replay.entries, []);
  await wal.close();
  const again = await Wal.open(dir, { logger: () => {} });
  t.notOk(again.replay.created, 'reopened, not recreated');
  t.same(again.replay.metadata, META);
  await again.wal.close();
});

t.test('an empty data directory is not a log either', async (t) => {
  const dir = tempDir(t);
  await t.rejects(Wal.open(dir, { logger: () => {} }), WalNotFoundError);
  t.same(fs.readdirSync(dir), [], 'and the lock is gone again');
  const { wal, replay } = await openWal(dir);
  t.ok(replay.created);
  await wal.close();
});

t.test('segments are preallocated to their full size with zeros', async (t) => {
  const dir = tempDir(t);
  const { wal } = await openWal(dir);
  await wal.save({ entries: entries(1, 3, 1), hardState: hs(1, 3) });
  const file = path.join(walDir(dir), segmentFiles(dir)[0]!);
  const buf = fs.readFileSync(file);
  t.equal(buf.length, SMALL_SEGMENT);
  let end = buf.length;
  while (end > 0 && buf[end - 1] === 0) end--;
  t.ok(end > 0 && end < 4096, 'a few records, then zeros to the end');
  await wal.close();
});

t.test('zeroFill writes pieces of ZERO_WRITE_BYTES through the pool, last first, and syncs every 2 MiB', async (t) => {
  // A write's size sets the size of the page-cache folio it lands in, and each later append into
  // that folio walks all of its blocks (segment.ts, ZERO_WRITE_BYTES): the fill must not write big.
  const file = path.join(tempDir(t), 'seg');
  const h = await nodeFileSystem.open(file, 'create');
  const writes: Array<{ position: number; length: number; background: boolean | undefined }> = [];
  const syncedAfter: number[] = [];
  const write = h.write.bind(h);
  const datasync = h.datasync.bind(h);
  h.write = (buf, offset, length, position, background) => {
    writes.push({ position, length, background });
    return write(buf, offset, length, position, background);
  };
  h.datasync = (inline) => {
    syncedAfter.push(writes.length);
    return datasync(inline);
  };
  const to = 5 * 1024 * 1024 + 100;
  await zeroFill(h, 0, to, true);
  await h.close();

  t.ok(writes.every((w) => w.length <= ZERO_WRITE_BYTES && w.length > 0), 'no write bigger than ZERO_WRITE_BYTES');
  t.ok(writes.every((w) => w.background === true), 'every write through the pool');
  let end = to;
  for (const w of writes) {
    if (w.position + w.length !== end) break;
    end = w.position;
  }
  t.equal(end, 0, 'contiguous pieces from the end of the range back to its start');
  t.same(syncedAfter, [32, 64, 81], 'an fdatasync after each 2 MiB written, and one after the last piece');
  const buf = fs.readFileSync(file);
  t.equal(buf.length, to);
  t.ok(buf.every((b) => b === 0), 'all zeros');
});

t.test('saved state comes back on reopen', async (t) => {
  const dir = tempDir(t);
  const { wal } = await openWal(dir);
  const want = entries(1, 50, 1);
  for (let i = 0; i < 50; i += 10) {
    await wal.save({ entries: want.slice(i, i + 10), hardState: hs(1, i + 10, 3) });
  }
  t.equal(wal.lastIndex, 50);
  await wal.close();
  const { wal: w2, replay } = await openWal(dir);
  assertEntries(t, replay.entries, want);
  t.same(replay.hardState, hs(1, 50, 3));
  t.equal(w2.lastIndex, 50);
  // And appending continues where it left off.
  await w2.save({ entries: [entry(51, 2)], hardState: hs(2, 51) });
  await w2.close();
  const { wal: w3, replay: r3 } = await openWal(dir);
  assertEntries(t, r3.entries, [...want, entry(51, 2)]);
  t.same(r3.hardState, hs(2, 51));
  await w3.close();
});

t.test('rollover across many small segments, and replay across them', async (t) => {
  const dir = tempDir(t);
  const { wal } = await openWal(dir, { segmentBytes: TINY_SEGMENT });
  const want = entries(1, 400, 1);
  for (let i = 0; i < 400; i += 7) {
    await wal.save({ entries: want.slice(i, i + 7), hardState: hs(1, Math.min(i + 7, 400)) });
  }
  await wal.close();
  const files = segmentFiles(dir);
  t.ok(files.length > 10, `${files.length} segments`);
  files.forEach((f, i) => t.equal(parseInt(f.slice(0, 16), 16), i, `segment ${i} is in sequence`));
  // Each segment's name says every live entry before it is below its first index.
  let prevFirst = 0;
  for (const f of files) {
    const first = parseInt(f.slice(17, 33), 16);
    t.ok(first >= prevFirst, 'first indexes do not go down');
    prevFirst = first;
  }
  const { wal: w2, replay } = await openWal(dir, { segmentBytes: TINY_SEGMENT });
  assertEntries(t, replay.entries, want);
  t.same(replay.hardState, hs(1, 400));
  await w2.close();
});

t.test('a batch larger than a segment gets a segment of its own, grown to fit', async (t) => {
  const dir = tempDir(t);
  const { wal } = await openWal(dir, { segmentBytes: TINY_SEGMENT });
  await wal.save({ entries: entries(1, 2, 1) });
  const big: Entry[] = [];
  for (let i = 3; i <= 200; i++) big.push(entry(i, 1));
  await wal.save({ entries: big, hardState: hs(1, 200) });
  await wal.close();
  const files = segmentFiles(dir);
  t.equal(files.length, 2);
  t.ok(fs.statSync(path.join(walDir(dir), files[1]!)).size > TINY_SEGMENT, 'grown');
  const { wal: w2, replay } = await openWal(dir, { segmentBytes: TINY_SEGMENT });
  assertEntries(t, replay.entries, entries(1, 200, 1));
  await w2.close();
});

t.test('an entry from a later term replaces the entry at its index and everything after it', async (t) => {
  const dir = tempDir(t);
  const { wal } = await openWal(dir, { segmentBytes: TINY_SEGMENT });
  await wal.save({ entries: entries(1, 10, 1), hardState: hs(1, 4) });
  await wal.save({ entries: entries(6, 8, 2), hardState: hs(2, 4) });
  // Then overwrite again from an older segment's range once segments have rolled over.
  for (let i = 9; i <= 120; i += 4) await wal.save({ entries: entries(i, i + 3, 2) });
  await wal.save({ entries: entries(100, 101, 3), hardState: hs(3, 99) });
  await wal.close();
  t.ok(segmentFiles(dir).length > 3, 'the overwrite crossed segments');
  const { wal: w2, replay } = await openWal(dir, { segmentBytes: TINY_SEGMENT });
  assertEntries(t, replay.entries, [...entries(1, 5, 1), ...entries(6, 99, 2), ...entries(100, 101, 3)]);
  t.same(replay.hardState, hs(3, 99));
  t.equal(w2.lastIndex, 101);
  await w2.close();
});

t.test('save resolves with a Persisted token that only the WAL can make', async (t) => {
  const dir = tempDir(t);
  const { wal } = await openWal(dir);
  const p = await wal.save({ entries: entries(1, 3, 1), hardState: hs(1, 2) });
  t.ok(p instanceof Persisted);
  t.ok(Persisted.is(p));
  t.equal(p.lastIndex, 3);
  t.same(p.hardState, hs(1, 2));
  t.equal(p.batch, 1);
  t.notOk(Persisted.is({ batch: 1, lastIndex: 3, hardState: hs(1, 2) }), 'a look-alike is not a token');
  const Ctor = Persisted as unknown as new (...args: unknown[]) => Persisted;
  t.throws(() => new Ctor(Symbol('wal.persisted'), 1, 3, hs(1, 2)), TypeError);
  const empty = await wal.save({});
  t.equal(empty.lastIndex, 3, 'an empty batch writes nothing and reports the durable state');
  await wal.close();
});

/** The node file system with `wrap` applied to every handle it opens in the WAL's directory. */
function walHandlesFs(wrap: (h: FileHandle, path: string) => void): FileSystem {
  return {
    ...nodeFileSystem,
    async open(p, mode) {
      const h = await nodeFileSystem.open(p, mode);
      if (p.includes(`${path.sep}wal${path.sep}`)) wrap(h, p);
      return h;
    },
  };
}

/** The node file system with the fdatasync of the WAL's segment files replaced by `datasync`. */
function walDatasyncFs(datasync: (inner: () => Promise<void>) => Promise<void>): FileSystem {
  return walHandlesFs((h) => {
    const inner = h.datasync.bind(h);
    h.datasync = () => datasync(inner);
  });
}

/** The node file system, counting the WAL's fdatasyncs and how many run at once. */
function countingFs(): { fs: FileSystem; datasyncs: () => number; maxInFlight: () => number } {
  let inFlight = 0;
  let maxInFlight = 0;
  let datasyncs = 0;
  const fs = walDatasyncFs(async (inner) => {
    inFlight++;
    datasyncs++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    try {
      await inner();
    } finally {
      inFlight--;
    }
  });
  return { fs, datasyncs: () => datasyncs, maxInFlight: () => maxInFlight };
}

t.test('a segment is zero-filled a chunk at a time, each chunk flushed before the next is written', async (t) => {
  const dir = tempDir(t);
  // Unflushed bytes written to each segment file, and the most any file ever had.
  const unflushed = new Map<string, number>();
  let most = 0;
  let filled = 0;
  const recording = walHandlesFs((h, p) => {
    const write = h.write.bind(h);
    const datasync = h.datasync.bind(h);
    h.write = async (buf, offset, length, position) => {
      const n = (unflushed.get(p) ?? 0) + length;
      unflushed.set(p, n);
      most = Math.max(most, n);
      filled += length;
      await write(buf, offset, length, position);
    };
    h.datasync = async () => {
      await datasync();
      unflushed.set(p, 0);
    };
  });
  const segment = 16 * 1024 * 1024;
  const { wal } = await openWal(dir, { fs: recording, segmentBytes: segment });
  await wal.save({ entries: entries(1, 3, 1), hardState: hs(1, 3) });
  await wal.close();
  t.ok(filled >= segment, `the segment was written whole (${filled} bytes)`);
  t.ok(most <= 2 * 1024 * 1024, `at most one 2 MiB chunk waited for writeback (${most} bytes)`);
});

t.test('an append is written through to the end of its block in zeros, so no write lands in part of a block', async (t) => {
  const dir = tempDir(t);
  const writes: { position: number; length: number; tail: Uint8Array }[] = [];
  let recording = false;
  const fs0 = walHandlesFs((h) => {
    const write = h.write.bind(h);
    h.write = async (buf, offset, length, position) => {
      // Only appends: the preallocation's zeros come before recording starts.
      if (recording) writes.push({ position, length, tail: buf.slice(offset, offset + length) });
      await write(buf, offset, length, position);
    };
  });
  // A segment size that is not a whole number of blocks: the last write stops at its end.
  const segment = 5 * WRITE_BLOCK_BYTES + 1000;
  const { wal } = await openWal(dir, { fs: fs0, segmentBytes: segment });
  recording = true;
  const want: Entry[] = [];
  // Entries of 100 to 2,500 bytes: most batches end inside a block, some cross one.
  for (let i = 1; i <= 24; i++) {
    const e: Entry = { index: i, term: 1, type: 0, data: new Uint8Array(100 + ((i * 613) % 2400)).fill(i) };
    want.push(e);
    await wal.save({ entries: [e], hardState: hs(1, i) });
  }
  await wal.close();
  t.ok(writes.length >= 24, `${writes.length} appends`);
  let blockStarts = 0;
  for (const w of writes) {
    const end = w.position + w.length;
    const segEnd = end === segment || end % WRITE_BLOCK_BYTES === 0;
    if (!segEnd) t.fail(`a write at ${w.position} ends at ${end}, inside a block`);
    if (w.position % WRITE_BLOCK_BYTES === 0) blockStarts++;
  }
  t.ok(blockStarts >= 1, 'a segment rolled over: writes from the start of a block too');
  // Every write ends in the zeros it padded with: the bytes after the last record are zero.
  const last = writes[writes.length - 1]!;
  t.equal(last.tail[last.tail.length - 1], 0, 'padded with zeros');
  const { wal: w2, replay } = await openWal(dir, { segmentBytes: segment });
  assertEntries(t, replay.entries, want);
  t.same(replay.hardState, hs(1, 24));
  await w2.close();
});

t.test('concurrent saves are serialized: one fdatasync in flight, completions in call order', async (t) => {
  const dir = tempDir(t);
  const counting = countingFs();
  const { wal } = await openWal(dir, { fs: counting.fs });
  const atOpen = counting.datasyncs();
  const done: number[] = [];
  const saves: Promise<Persisted>[] = [];
  for (let i = 1; i <= 40; i++) {
    saves.push(wal.save({ entries: [entry(i, 1)], hardState: hs(1, i) }).then((p) => (done.push(p.lastIndex), p)));
  }
  const tokens = await Promise.all(saves);
  t.equal(counting.maxInFlight(), 1, 'never two fdatasyncs at once');
  t.equal(counting.datasyncs() - atOpen, 40, 'one fdatasync per save');
  t.same(done, tokens.map((p) => p.lastIndex), 'resolved in call order');
  t.same(
    tokens.map((p) => p.batch),
    Array.from({ length: 40 }, (_, i) => i + 1),
  );
  await wal.close();
  const { wal: w2, replay } = await openWal(dir);
  t.equal(replay.entries.length, 40);
  await w2.close();
});

t.test('an inline save syncs on the calling thread while its batch is small and the disk quick', async (t) => {
  const dir = tempDir(t);
  const inline: boolean[] = [];
  let delayMs = 0;
  // No real fdatasync: how long one takes is up to the test, not to a shared disk.
  const recording = walHandlesFs((h) => {
    h.datasync = async (onThread?: boolean) => {
      inline.push(onThread === true);
      if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
    };
  });
  const { wal } = await openWal(dir, { fs: recording });
  t.equal(wal.inlineSyncMaxMs, INLINE_SYNC_MAX_MS);
  // Far above a call that does nothing, however busy the machine; the slow one is above it.
  wal.inlineSyncMaxMs = 200;
  const last = (): boolean | undefined => inline[inline.length - 1];
  await wal.save({ entries: [entry(1, 1)], hardState: hs(1, 1) });
  t.equal(last(), false, 'not asked: through the thread pool');
  await wal.save({ entries: [entry(2, 1)], hardState: hs(1, 2) }, { inlineSync: true });
  t.equal(last(), true, 'asked, small batch, quick disk: inline');
  const big: Entry = { index: 3, term: 1, type: 0, data: new Uint8Array(INLINE_SYNC_MAX_BYTES + 1).fill(3) };
  await wal.save({ entries: [big], hardState: hs(1, 3) }, { inlineSync: true });
  t.equal(last(), false, `a batch over ${INLINE_SYNC_MAX_BYTES} bytes: through the pool`);
  await wal.save({ entries: [entry(4, 1)], hardState: hs(1, 4) }, { inlineSync: true });
  t.equal(last(), true, 'small again: inline');
  // This one takes longer than inlineSyncMaxMs: the disk counts as slow for the next one.
  delayMs = 250;
  await wal.save({ entries: [entry(5, 1)], hardState: hs(1, 5) }, { inlineSync: true });
  t.equal(last(), true);
  delayMs = 0;
  await wal.save({ entries: [entry(6, 1)], hardState: hs(1, 6) }, { inlineSync: true });
  t.equal(last(), false, 'after a slow fdatasync: through the pool');
  await wal.save({ entries: [entry(7, 1)], hardState: hs(1, 7) }, { inlineSync: true });
  t.equal(last(), true, 'quick again: inline');
  await wal.close();
  const { wal: w2, replay } = await openWal(dir);
  t.same(
    replay.entries.map((e) => e.index),
    [1, 2, 3, 4, 5, 6, 7],
    'every save is in the log, inline or not',
  );
  t.same(replay.hardState, hs(1, 7));
  await w2.close();
});

t.test('an inline fdatasync that fails rejects, as one through the pool does', async (t) => {
  const file = path.join(tempDir(t), 'f');
  const h = await nodeFileSystem.open(file, 'create');
  await h.datasync(true);
  await h.close();
  // Its descriptor is closed: fdatasync fails with EBADF, as a rejection rather than a throw.
  let thrown: unknown;
  let p: Promise<void> | undefined;
  try {
    p = h.datasync(true);
  } catch (e) {
    thrown = e;
  }
  t.equal(thrown, undefined, 'no synchronous throw');
  await t.rejects(p!, { code: 'EBADF' });
  await t.rejects(h.datasync(false), { code: 'EBADF' });
});

t.test('a batch that only moves the commit index is written without an fdatasync (MustSync)', async (t) => {
  const dir = tempDir(t);
  const counting = countingFs();
  const { wal } = await openWal(dir, { fs: counting.fs });
  await wal.save({ entries: entries(1, 3, 1), hardState: hs(1, 0) });
  const before = counting.datasyncs();
  await wal.save({ hardState: hs(1, 3) });
  t.equal(counting.datasyncs(), before, 'commit only: no fdatasync');
  await wal.save({ hardState: hs(2, 3) });
  t.equal(counting.datasyncs(), before + 1, 'a new term: fdatasync');
  await wal.save({ hardState: hs(2, 3, 7) });
  t.equal(counting.datasyncs(), before + 2, 'a vote: fdatasync');
  await wal.save({ entries: entries(4, 4, 2), hardState: hs(2, 3, 7) });
  t.equal(counting.datasyncs(), before + 3, 'entries: fdatasync');
  await wal.save({ hardState: hs(2, 4, 7) });
  await wal.close();
  const { wal: w2, replay } = await openWal(dir);
  t.same(replay.hardState, hs(2, 4, 7), 'the unsynced commit was still written (a process crash keeps it)');
  await w2.close();
});

t.test('batches that would not replay are refused before anything is written', async (t) => {
  const dir = tempDir(t);
  const { wal } = await openWal(dir);
  await wal.save({ entries: entries(1, 5, 1) });
  await t.rejects(wal.save({ entries: [entry(7, 1)] }), WalInvalidBatchError, 'a gap');
  await t.rejects(wal.save({ entries: [entry(6, 1), entry(8, 1)] }), WalInvalidBatchError, 'not contiguous');
  const ok = await wal.save({ entries: [entry(6, 1)] });
  t.equal(ok.lastIndex, 6, 'and the log is not poisoned by them');
  t.equal(wal.failure, undefined);
  await wal.close();
  await t.rejects(wal.save({ entries: [entry(7, 1)] }), WalClosedError);
});

t.test('metrics: etcd fsync histogram and bytes written', async (t) => {
  const dir = tempDir(t);
  const { wal } = await openWal(dir);
  const given: number[] = [];
  wal.onFsync = (s) => given.push(s);
  for (let i = 1; i <= 5; i++) await wal.save({ entries: [entry(i, 1)], hardState: hs(1, i) });
  const m = wal.metrics();
  t.equal(given.length, 5, 'onFsync hears each fdatasync');
  t.equal(given.reduce((a, b) => a + b, 0), m.fsyncDuration.sum, 'the same seconds the histogram got');
  t.equal(m.fsyncDuration.name, 'etcd_disk_wal_fsync_duration_seconds');
  t.equal(m.fsyncDuration.buckets.length, 14);
  t.equal(m.fsyncDuration.buckets[0], 0.001);
  t.equal(m.fsyncDuration.buckets[13], 8.192);
  t.same(m.fsyncDuration.buckets, FSYNC_DURATION_BUCKETS);
  t.equal(m.fsyncDuration.count, 5);
  t.ok(m.fsyncDuration.sum > 0);
  const counts = m.fsyncDuration.counts;
  t.ok(counts.every((c, i) => i === 0 || c >= counts[i - 1]!), 'cumulative');
  t.equal(m.bytesWritten.name, 'etcd_disk_wal_write_bytes_total');
  let bytes = 0;
  for (let i = 1; i <= 5; i++) bytes += entryData(i, 1).length;
  t.ok(m.bytesWritten.value > bytes, 'payload plus framing');
  await wal.close();
});

t.test('an fdatasync over a second is logged as "slow fdatasync", as etcd logs it', async (t) => {
  const dir = tempDir(t);
  const lines: Array<{ level: string; msg: string; fields?: Record<string, unknown> }> = [];
  const { wal } = await openWal(dir, { logger: (level, msg, fields) => lines.push({ level, msg, fields }) });
  t.equal(wal.warnSyncMs, WARN_SYNC_MS);
  t.equal(WARN_SYNC_MS, 1000, "etcd's warnSyncDuration");
  await wal.save({ entries: [entry(1, 1)], hardState: hs(1, 1) });
  t.same(lines.filter((l) => l.msg === 'slow fdatasync'), [], 'a quick one is not');
  // Lowered below any real fdatasync, so the next one is over it.
  wal.warnSyncMs = -1;
  await wal.save({ entries: [entry(2, 1)], hardState: hs(1, 2) });
  const slow = lines.filter((l) => l.msg === 'slow fdatasync');
  t.equal(slow.length, 1);
  t.match(slow[0], { level: 'warn', fields: { took: /^[\d.]+(ns|µs|ms|s)$/, 'expected-duration': '-1ms' } });
  await wal.close();
});

t.test('durations are printed as Go prints a time.Duration', async (t) => {
  t.equal(goDuration(0), '0s');
  t.equal(goDuration(0.00085), '850ns');
  t.equal(goDuration(0.0125), '12.5µs');
  t.equal(goDuration(103.2), '103.2ms');
  t.equal(goDuration(100), '100ms');
  t.equal(goDuration(1500), '1.5s');
  t.equal(goDuration(123_000), '2m3s');
  t.equal(goDuration(3_600_000), '1h0m0s');
  t.equal(goDuration(-40), '-40ms');
});
