// The write-ahead log: open (lock, replay, repair a torn tail), group-commit saves, snapshots and
// segment release. The file format and the recovery rules are in README.md.
import * as path from 'node:path';
import type { Entry, HardState, Snapshot } from '@capstan/raft';
import {
  WalClosedError,
  WalError,
  WalInvalidBatchError,
  WalNotFoundError,
  WalPoisonedError,
  WalReplayError,
  ioError,
  SnapshotCorruptError,
} from './errors.js';
import { fire, failpoints } from './crashpoints.js';
import { nodeFileSystem, type FileHandle, type FileSystem } from './fs.js';
import { lockDir, type DirLock } from './lock.js';
import { goDuration, stderrLogger, type WalLogger } from './log.js';
import { WalMetricSet, type WalMetrics } from './metrics.js';
import { MINT, Persisted } from './persisted.js';
import { RecordEncoder, RecordType, type SnapshotMarker, type WalMetadata, type WalRecord } from './record.js';
import { LogBuilder, TermRuns } from './replay.js';
import {
  DEFAULT_SEGMENT_BYTES,
  MIN_SEGMENT_BYTES,
  isTempFile,
  parseSegmentName,
  preallocate,
  scanSegment,
  segmentFileName,
  segmentSeed,
  tempSegmentName,
  zeroFill,
  type SegmentName,
} from './segment.js';
import {
  DEFAULT_MAX_SNAPSHOT_FILES,
  listSnapshotFiles,
  purgeSnapshotFiles,
  quarantineSnapshotFile,
  readSnapshotFile,
  removeTempSnapshots,
  writeSnapshotFile,
} from './snapshot.js';

export const WAL_DIR = 'wal';
export const SNAP_DIR = 'snap';
/** A segment that must grow past the configured size for one huge batch grows in steps of this. */
const SEGMENT_GROWTH_BYTES = 1024 * 1024;
/**
 * Each append is written through to the end of the filesystem block (4 KiB on ext4 and xfs) it
 * ends in, padded with zeros, so the block where the next append begins is whole in the page
 * cache and a write never has to read first. The segment's zeros were written when it was
 * preallocated, often minutes before the log reaches them; once the kernel drops those pages
 * (reclaim, or a DAMON pageout scheme, which drops file pages idle for a minute), an append of a
 * few hundred bytes into one made write(2) read the block from disk before copying: 45 us on an
 * idle disk here, behind the other members' fdatasyncs under load, and on a leader that ran on the
 * event loop, which writes synchronously. A whole block overwritten needs no read (4 us).
 */
export const WRITE_BLOCK_BYTES = 4096;
/**
 * A save asked to sync inline (SaveOptions.inlineSync) runs its fdatasync on the calling thread
 * when its batch is at most this big and the previous fdatasync took at most INLINE_SYNC_MAX_MS.
 * Through libuv's thread pool an fdatasync is two thread hand-offs: the event loop wakes a worker,
 * and the worker wakes the event loop. On a 2-CPU VM running three members and a client, either
 * hand-off can wait for a CPU, and each is a step of a follower's acknowledgement, which every
 * write waits for. Inline, the event loop stands still for the flush instead (a few hundred
 * microseconds on a quick disk): worth it for a follower's small batches, not for a big batch or
 * a disk that has turned slow, which go back to the pool.
 */
export const INLINE_SYNC_MAX_BYTES = 64 * 1024;
/** See INLINE_SYNC_MAX_BYTES: the disk counts as quick while its last fdatasync took at most this (Wal.inlineSyncMaxMs). */
export const INLINE_SYNC_MAX_MS = 5;
/** etcd's warnSyncDuration: an fdatasync slower than this is logged as "slow fdatasync". */
export const WARN_SYNC_MS = 1000;
const FIRST_INDEX = 1;
const NO_SNAPSHOT: SnapshotMarker = Object.freeze({ index: 0, term: 0 });

export interface WalOptions {
  /** Needed only to create a new log (it is then written at the head of every segment). */
  readonly metadata?: WalMetadata;
  /** Preallocated size of each segment file. Default 64 MiB; tests use a few KiB to roll over often. */
  readonly segmentBytes?: number;
  /** Snapshot files kept in snap/ (default 5, as etcd's --max-snapshots). */
  readonly maxSnapshotFiles?: number;
  /** The disk. Tests pass a FaultInjectingFileSystem. */
  readonly fs?: FileSystem;
  readonly logger?: WalLogger;
}

/** How a save is done (not what it holds). */
export interface SaveOptions {
  /** Sync on the calling thread when the batch is small and the disk quick: INLINE_SYNC_MAX_BYTES. */
  readonly inlineSync?: boolean;
}

/** One Raft Ready's worth of durable state. */
export interface SaveBatch {
  readonly hardState?: HardState;
  /** Contiguous; the first may overwrite (index <= the log's last index) as Raft's append does. */
  readonly entries?: readonly Entry[];
  /** A snapshot to persist: written to snap/ (its own fsync) before the batch's records. */
  readonly snapshot?: Snapshot;
}

/** What the log held when it was opened. */
export interface Replay {
  /** True when this open created the log. */
  readonly created: boolean;
  readonly metadata: WalMetadata;
  readonly hardState: HardState;
  /** The snapshot the log starts from (undefined when it starts at index 1). */
  readonly snapshot: Snapshot | undefined;
  /** Every entry after the snapshot, with overwritten entries replaced. */
  readonly entries: Entry[];
}

export interface OpenedWal {
  readonly wal: Wal;
  readonly replay: Replay;
}

interface ActiveSegment {
  readonly name: SegmentName;
  /** Its final path (the handle may have been opened under the temporary name). */
  readonly path: string;
  readonly file: FileHandle;
  /** Where the next record goes. */
  offset: number;
  /** The file's preallocated size. */
  capacity: number;
  /** The CRC of the last record: the seed of the next. */
  crc: number;
}

interface PreparedSegment {
  readonly seq: number;
  readonly path: string;
  readonly file: FileHandle;
  readonly capacity: number;
}

export class Wal {
  private readonly encoder = new RecordEncoder();
  private readonly metricSet = new WalMetricSet();
  /**
   * Given each batch's fdatasync time in seconds, as the fsync histogram is: etcd's
   * wal_fsync_duration times the fdatasync alone, not the write before it.
   */
  onFsync: ((seconds: number) => void) | undefined;
  /** An fdatasync slower than this (ms) is logged; etcd's one second unless a test lowers it. */
  warnSyncMs = WARN_SYNC_MS;
  /** After an fdatasync slower than this (ms), an inline save goes through the pool (INLINE_SYNC_MAX_MS). */
  inlineSyncMaxMs = INLINE_SYNC_MAX_MS;
  private readonly segments: SegmentName[];
  /** Saves run one at a time, in call order: each waits for the previous one's fdatasync. */
  private queue: Promise<unknown> = Promise.resolve();
  /** Releases of what snapshots cover, one at a time, outside the save queue (never rejects). */
  private releasing: Promise<void> = Promise.resolve();
  private prepared: Promise<PreparedSegment> | undefined;
  private poisonedBy: WalError | undefined;
  private closed = false;
  private batches = 0;
  /** How long the last batch's fdatasync took (ms): an inline sync waits for a quick disk. */
  private lastSyncMs = 0;

  private constructor(
    readonly dir: string,
    private readonly fs: FileSystem,
    private readonly lock: DirLock,
    private readonly log: WalLogger,
    private readonly segmentBytes: number,
    private readonly maxSnapshotFiles: number,
    private readonly metadata: WalMetadata,
    private active: ActiveSegment,
    segments: SegmentName[],
    private readonly terms: TermRuns,
    private hardState: HardState,
    private marker: SnapshotMarker,
  ) {
    this.segments = segments;
  }

  /**
   * Opens the log in `dir` (creating it when `options.metadata` is given and there is none), locks
   * the directory, replays it and repairs a torn tail. Throws WalNotFoundError, WalLockedError,
   * WalCorruptError, WalReplayError or an I/O error; never returns a log it could not fully read.
   */
  static async open(dir: string, options: WalOptions = {}): Promise<OpenedWal> {
    const fs = options.fs ?? nodeFileSystem;
    const log = options.logger ?? stderrLogger;
    const segmentBytes = options.segmentBytes ?? DEFAULT_SEGMENT_BYTES;
    if (!Number.isSafeInteger(segmentBytes) || segmentBytes < MIN_SEGMENT_BYTES) {
      throw new RangeError(`wal: segmentBytes must be an integer >= ${MIN_SEGMENT_BYTES}`);
    }
    const maxSnapshotFiles = options.maxSnapshotFiles ?? DEFAULT_MAX_SNAPSHOT_FILES;
    if (!(await fs.exists(dir))) {
      if (options.metadata === undefined) throw new WalNotFoundError(dir);
      await fs.mkdir(dir);
    }
    const lock = await lockDir(dir);
    try {
      const walDir = path.join(dir, WAL_DIR);
      const names = await fs.readdir(walDir);
      for (const n of names.filter(isTempFile)) await fs.unlink(path.join(walDir, n));
      const segments = names
        .map(parseSegmentName)
        .filter((s) => s !== undefined)
        .sort((a, b) => a.seq - b.seq);
      const settings = { fs, lock, log, segmentBytes, maxSnapshotFiles };
      if (segments.length === 0) {
        if (options.metadata === undefined) throw new WalNotFoundError(dir);
        return await Wal.create(dir, options.metadata, settings);
      }
      return await Wal.replay(dir, segments, settings);
    } catch (e) {
      await lock.release().catch(() => {});
      throw e;
    }
  }

  private static async create(
    dir: string,
    metadata: WalMetadata,
    s: { fs: FileSystem; lock: DirLock; log: WalLogger; segmentBytes: number; maxSnapshotFiles: number },
  ): Promise<OpenedWal> {
    const walDir = path.join(dir, WAL_DIR);
    const snapDir = path.join(dir, SNAP_DIR);
    const name = parseSegmentName(segmentFileName(0, FIRST_INDEX))!;
    const final = path.join(walDir, name.name);
    const tmp = path.join(walDir, tempSegmentName(0));
    let file: FileHandle;
    let op = 'create';
    const enc = new RecordEncoder(1024);
    enc.reset(segmentSeed(0));
    enc.add({ type: RecordType.Metadata, metadata }, true);
    try {
      await s.fs.mkdir(walDir);
      await s.fs.mkdir(snapDir);
      await s.fs.syncDir(dir);
      // Written whole under a temporary name first, so a crash never leaves a log without metadata.
      file = await preallocate(s.fs, tmp, s.segmentBytes);
      op = 'write';
      await file.write(enc.bytes, 0, enc.length, 0);
      op = 'fsync';
      await file.datasync();
      op = 'rename';
      await s.fs.rename(tmp, final);
      op = 'directory fsync';
      await s.fs.syncDir(walDir);
    } catch (e) {
      throw ioError(op, final, e);
    }
    const active: ActiveSegment = { name, path: final, file, offset: enc.length, capacity: s.segmentBytes, crc: enc.crc };
    const empty: HardState = { term: 0, vote: 0, commit: 0 };
    const wal = new Wal(dir, s.fs, s.lock, s.log, s.segmentBytes, s.maxSnapshotFiles, metadata, active, [name], TermRuns.of(NO_SNAPSHOT, []), empty, NO_SNAPSHOT);
    s.log('info', 'wal: created', { dir, memberId: metadata.memberId, clusterId: metadata.clusterId });
    return { wal, replay: { created: true, metadata, hardState: empty, snapshot: undefined, entries: [] } };
  }

  private static async replay(
    dir: string,
    segments: SegmentName[],
    s: { fs: FileSystem; lock: DirLock; log: WalLogger; segmentBytes: number; maxSnapshotFiles: number },
  ): Promise<OpenedWal> {
    const walDir = path.join(dir, WAL_DIR);
    const snapDir = path.join(dir, SNAP_DIR);
    for (let i = 1; i < segments.length; i++) {
      if (segments[i]!.seq !== segments[i - 1]!.seq + 1) {
        throw new WalReplayError(`segment ${segments[i - 1]!.seq + 1} is missing`, path.join(walDir, segments[i]!.name));
      }
    }
    const builder = new LogBuilder();
    let tail: { end: number; crc: number; size: number; dirtyEnd: number } | undefined;
    for (let i = 0; i < segments.length; i++) {
      const file = path.join(walDir, segments[i]!.name);
      let buf: Buffer;
      try {
        buf = await s.fs.readFile(file);
      } catch (e) {
        throw ioError('read', file, e);
      }
      const isLast = i === segments.length - 1;
      const scanned = scanSegment(buf, file, segments[i]!.seq, isLast);
      for (const r of scanned.records) builder.apply(r.record, file, r.offset);
      if (isLast) {
        tail = { end: scanned.end, crc: scanned.crc, size: buf.length, dirtyEnd: scanned.end };
        if (scanned.torn !== undefined) {
          tail.dirtyEnd = scanned.torn.offset + scanned.torn.bytes;
          s.log('warn', 'wal: truncating torn tail', {
            file,
            offset: scanned.torn.offset,
            bytesDropped: scanned.torn.bytes,
          });
        }
      }
    }
    builder.check();
    if (builder.metadata === undefined) throw new WalReplayError('no metadata record', path.join(walDir, segments[0]!.name));

    const snapshot = await Wal.loadSnapshot(s.fs, snapDir, builder.marker, s.log);

    const last = segments[segments.length - 1]!;
    const lastPath = path.join(walDir, last.name);
    // The file's own size, whatever segmentBytes says now: a segment made under another setting,
    // or cut short, is simply full sooner.
    const capacity = tail!.size;
    let file: FileHandle;
    try {
      file = await s.fs.open(lastPath, 'readwrite');
      if (tail!.dirtyEnd > tail!.end) {
        // Zeros where the torn bytes were, so the next replay sees the log end cleanly.
        await zeroFill(file, tail!.end, tail!.dirtyEnd);
        await file.datasync();
      }
    } catch (e) {
      throw ioError('tail repair', lastPath, e);
    }
    const active: ActiveSegment = { name: last, path: lastPath, file, offset: tail!.end, capacity, crc: tail!.crc };
    const wal = new Wal(
      dir,
      s.fs,
      s.lock,
      s.log,
      s.segmentBytes,
      s.maxSnapshotFiles,
      builder.metadata,
      active,
      segments,
      TermRuns.of(builder.marker, builder.entries),
      builder.hardState,
      builder.marker,
    );
    if (tail!.end === 0) {
      // A crash between a rollover's rename and its first write left the segment empty: give it
      // the head records now, or it would not replay on its own once older segments are released.
      try {
        await wal.append(wal.headRecords(), [], true, false);
      } catch (e) {
        await file.close().catch(() => {});
        throw e;
      }
    }
    return {
      wal,
      replay: {
        created: false,
        metadata: builder.metadata,
        hardState: builder.hardState,
        snapshot,
        entries: builder.entries,
      },
    };
  }

  /**
   * The snapshot file that the log's newest marker names. Newer files (a crash between writing the
   * file and its marker) are ignored; an unreadable one is moved aside and, since the entries
   * before the marker may already be released, the log refuses to open.
   */
  private static async loadSnapshot(
    fs: FileSystem,
    snapDir: string,
    marker: SnapshotMarker,
    log: WalLogger,
  ): Promise<Snapshot | undefined> {
    await removeTempSnapshots(fs, snapDir);
    const files = await listSnapshotFiles(fs, snapDir);
    for (const f of files) {
      if (f.index > marker.index) {
        log('info', 'wal: ignoring snapshot file newer than the log', { file: path.join(snapDir, f.name) });
        continue;
      }
      if (f.index < marker.index || f.term !== marker.term) continue;
      const file = path.join(snapDir, f.name);
      try {
        return await readSnapshotFile(fs, file);
      } catch (e) {
        if (e instanceof SnapshotCorruptError) {
          log('error', 'wal: snapshot file is corrupt', { file, reason: e.reason });
          await quarantineSnapshotFile(fs, file);
        }
        throw new WalReplayError(`snapshot at index ${marker.index} term ${marker.term} is unreadable: ${(e as Error).message}`, file);
      }
    }
    if (marker.index === 0) return undefined;
    throw new WalReplayError(`no snapshot file for index ${marker.index} term ${marker.term}`, snapDir);
  }

  /**
   * Persists a batch: snapshot file first (if any), then one write of all records and one
   * fdatasync. Resolves with a Persisted token only after that fdatasync returned; rejects with a
   * typed WalError otherwise. A batch that changes nothing but the hard state's commit index is
   * written without the fdatasync (etcd's MustSync), so its commit may not survive a power cut.
   * Calls are serialized: a save starts when the previous one settled. After a failed write or
   * fsync every later save rejects with WalPoisonedError.
   */
  save(batch: SaveBatch, options: SaveOptions = {}): Promise<Persisted> {
    return this.enqueue(batch, false, options.inlineSync === true);
  }

  /**
   * A snapshot the member took itself (log compaction): persists it and releases what it covers.
   * Only its marker record waits in the save queue: the snapshot file is written and fsynced
   * beside the saves in flight, as etcd's snapshotter runs beside its raft loop, and a crash
   * between the two loses nothing (replay ignores a file newer than the log's marker). A snapshot
   * at or behind the log's marker (one from the leader got there first) is refused with
   * WalInvalidBatchError, which does not poison.
   */
  async saveSnapshot(snapshot: Snapshot): Promise<Persisted> {
    this.checkOpen();
    if (snapshot.metadata.index > 0) {
      try {
        await writeSnapshotFile(this.fs, path.join(this.dir, SNAP_DIR), snapshot);
      } catch (e) {
        throw this.poison(e, path.join(this.dir, SNAP_DIR));
      }
    }
    return this.enqueue({ snapshot }, true);
  }

  /**
   * Queues a save behind the ones before it. One with a snapshot resolves once the files the
   * snapshot covers are released too; that release runs outside the queue, so the next save
   * need not wait for its unlinks.
   */
  private enqueue(batch: SaveBatch, snapFileWritten: boolean, inlineSync = false): Promise<Persisted> {
    const run = this.queue.then(() => this.saveNow(batch, snapFileWritten, inlineSync));
    this.queue = run.catch(() => {});
    if (batch.snapshot === undefined) return run;
    return run.then(async (token) => {
      await this.releasing;
      return token;
    });
  }

  /** Waits for saves in flight, then closes files and unlocks the directory. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.queue;
    await this.releasing;
    await this.active.file.close().catch(() => {});
    if (this.prepared !== undefined) {
      const p = await this.prepared.catch(() => undefined);
      if (p !== undefined) {
        await p.file.close().catch(() => {});
        await this.fs.unlink(p.path).catch(() => {});
      }
    }
    await this.lock.release();
  }

  metrics(): WalMetrics {
    return this.metricSet.data();
  }

  /** The error that poisoned the log, if any. */
  get failure(): WalError | undefined {
    return this.poisonedBy;
  }

  get lastIndex(): number {
    return this.terms.lastIndex;
  }

  private checkOpen(): void {
    if (this.closed) throw new WalClosedError();
    if (this.poisonedBy !== undefined) throw new WalPoisonedError(this.poisonedBy);
  }

  /** A failed write or fsync: whatever it left on disk is unknown, so no later save may run. */
  private poison(e: unknown, file: string): WalError {
    const err = e instanceof WalError ? e : ioError('save', file, e);
    this.poisonedBy ??= err;
    return err;
  }

  private async saveNow(batch: SaveBatch, snapFileWritten: boolean, inlineSync: boolean): Promise<Persisted> {
    this.checkOpen();
    const entries = batch.entries ?? [];
    const snap = batch.snapshot !== undefined && batch.snapshot.metadata.index > 0 ? batch.snapshot : undefined;
    const marker = snap === undefined ? this.marker : { index: snap.metadata.index, term: snap.metadata.term };
    if (snapFileWritten && snap !== undefined && marker.index <= this.marker.index) {
      throw new WalInvalidBatchError(`snapshot ${marker.index} is not past the log's snapshot ${this.marker.index}`);
    }
    this.validate(entries, marker, snap !== undefined);
    if (snap === undefined && entries.length === 0 && batch.hardState === undefined) {
      return new Persisted(MINT, this.batches, this.terms.lastIndex, this.hardState);
    }
    try {
      if (snap !== undefined && !snapFileWritten) await writeSnapshotFile(this.fs, path.join(this.dir, SNAP_DIR), snap);
      const records: WalRecord[] = [];
      if (snap !== undefined) records.push({ type: RecordType.Snapshot, marker });
      for (const entry of entries) records.push({ type: RecordType.Entry, entry });
      if (batch.hardState !== undefined) records.push({ type: RecordType.HardState, hardState: batch.hardState });
      // etcd's MustSync: a batch that only moves the commit index is written without an fsync.
      // Losing it to a power cut loses nothing: commit is learned again from the leader, and the
      // state machine skips entries it has already applied (its consistent index).
      const hs = batch.hardState;
      const sync = snap !== undefined || entries.length > 0 || (hs !== undefined && (hs.term !== this.hardState.term || hs.vote !== this.hardState.vote));
      await this.append(records, entries, sync, inlineSync);
    } catch (e) {
      throw this.poison(e, this.active.path);
    }
    this.marker = marker;
    if (snap !== undefined) this.terms.applySnapshot(marker);
    this.terms.append(entries);
    if (batch.hardState !== undefined) this.hardState = batch.hardState;
    this.batches++;
    const token = new Persisted(MINT, this.batches, this.terms.lastIndex, this.hardState);
    if (snap !== undefined) this.releasing = this.releasing.then(() => this.release(marker));
    return token;
  }

  /** Refuses batches the replay would reject, before anything is written (no poisoning). */
  private validate(entries: readonly Entry[], marker: SnapshotMarker, newSnapshot: boolean): void {
    if (entries.length === 0) return;
    const first = entries[0]!.index;
    for (let i = 1; i < entries.length; i++) {
      if (entries[i]!.index !== first + i) throw new WalInvalidBatchError(`entries are not contiguous at ${entries[i]!.index}`);
    }
    if (first <= marker.index) throw new WalInvalidBatchError(`entry ${first} is inside snapshot ${marker.index}`);
    // After a snapshot the log may restart right after it; otherwise it extends or overwrites.
    const last = newSnapshot ? Math.max(this.terms.lastIndex, marker.index) : this.terms.lastIndex;
    if (first > last + 1 && !(newSnapshot && first === marker.index + 1)) {
      throw new WalInvalidBatchError(`entry ${first} leaves a gap after ${last}`);
    }
  }

  private async append(records: WalRecord[], entries: readonly Entry[], sync: boolean, inlineSync: boolean): Promise<void> {
    const enc = this.encoder;
    enc.reset(this.active.crc);
    for (let i = 0; i < records.length; i++) enc.add(records[i]!, i === records.length - 1);
    if (this.active.offset + enc.length > this.active.capacity) {
      await this.rollover(records, entries);
    }
    const seg = this.active;
    const len = enc.length;
    // Through to the end of the block it ends in, in zeros (unwritten space reads as zeros anyway).
    const writeLen = Math.min(Math.ceil((seg.offset + len) / WRITE_BLOCK_BYTES) * WRITE_BLOCK_BYTES, seg.capacity) - seg.offset;
    enc.zeroPad(writeLen);
    try {
      await seg.file.write(enc.bytes, 0, writeLen, seg.offset);
    } catch (e) {
      throw ioError('write', seg.path, e);
    }
    this.metricSet.bytesWritten.inc(len);
    if (sync) await this.datasync(seg, len, inlineSync && len <= INLINE_SYNC_MAX_BYTES && this.lastSyncMs <= this.inlineSyncMaxMs);
    seg.offset += len;
    seg.crc = enc.crc;
    // Started half way through a segment: early enough to be ready, late enough not to compete
    // with the first writes after open for the disk.
    if (this.prepared === undefined && seg.offset * 2 >= seg.capacity) this.prepareNext();
  }

  /** fdatasync of the batch just written (len bytes at seg.offset), through the failpoint before it. */
  private async datasync(seg: ActiveSegment, len: number, inline: boolean): Promise<void> {
    const t0 = process.hrtime.bigint();
    try {
      const act = failpoints.pass('walBeforeFsync');
      // A power cut before the fsync loses the batch: zeros, as the preallocated file had there.
      if (act !== undefined) await fire('walBeforeFsync', act, () => seg.file.write(new Uint8Array(len), 0, len, seg.offset));
      await seg.file.datasync(inline);
    } catch (e) {
      throw ioError('fdatasync', seg.path, e);
    }
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    this.lastSyncMs = seconds * 1000;
    this.metricSet.fsyncDuration.observe(seconds);
    if (this.lastSyncMs > this.warnSyncMs) this.log('warn', 'slow fdatasync', { took: goDuration(this.lastSyncMs), 'expected-duration': goDuration(this.warnSyncMs) });
    this.onFsync?.(seconds);
  }

  /**
   * Moves to a fresh segment and re-frames the batch there behind head records (metadata, hard
   * state, snapshot marker), so each segment replays on its own once older ones are released. A
   * batch never straddles two segments: that keeps it all-or-nothing on replay.
   */
  private async rollover(records: WalRecord[], entries: readonly Entry[]): Promise<void> {
    const enc = this.encoder;
    const seq = this.active.name.seq + 1;
    enc.reset(segmentSeed(seq));
    for (const r of this.headRecords()) enc.add(r);
    for (let i = 0; i < records.length; i++) enc.add(records[i]!, i === records.length - 1);

    const walDir = path.join(this.dir, WAL_DIR);
    // Live entries in earlier segments are all <= the last index, or superseded from entries[0] on.
    const lastIndex = this.terms.lastIndex;
    const firstIndex = entries.length > 0 ? Math.min(lastIndex + 1, entries[0]!.index) : lastIndex + 1;
    const name = parseSegmentName(segmentFileName(seq, firstIndex))!;
    const final = path.join(walDir, name.name);
    const next = this.prepared;
    this.prepared = undefined;
    let prepared: PreparedSegment;
    try {
      prepared = next !== undefined ? await next : await this.preallocateSegment(seq);
    } catch (e) {
      throw ioError('preallocate', final, e);
    }
    let capacity = prepared.capacity;
    let op = 'grow';
    try {
      if (enc.length > capacity) {
        // One batch bigger than a segment: this segment grows to hold it whole.
        const grown = Math.ceil(enc.length / SEGMENT_GROWTH_BYTES) * SEGMENT_GROWTH_BYTES;
        await zeroFill(prepared.file, capacity, grown);
        await prepared.file.sync();
        capacity = grown;
      }
      op = 'rename';
      await this.fs.rename(prepared.path, final);
      op = 'directory fsync';
      await this.fs.syncDir(walDir);
    } catch (e) {
      await prepared.file.close().catch(() => {});
      throw ioError(op, final, e);
    }
    await this.active.file.close().catch(() => {});
    this.active = { name, path: final, file: prepared.file, offset: 0, capacity, crc: segmentSeed(seq) };
    this.segments.push(name);
    this.log('info', 'wal: new segment', { file: final });
  }

  /** What a segment starts with, so that it replays without the segments before it. */
  private headRecords(): WalRecord[] {
    const head: WalRecord[] = [{ type: RecordType.Metadata, metadata: this.metadata }];
    head.push({ type: RecordType.HardState, hardState: this.hardState });
    if (this.marker.index > 0) head.push({ type: RecordType.Snapshot, marker: this.marker });
    return head;
  }

  /** Zero-fills the next segment in the background, so a rollover costs a rename rather than 64 MiB of writes. */
  private prepareNext(): void {
    const p = this.preallocateSegment(this.active.name.seq + 1);
    // The failure is reported by the rollover that needs the file; until then it is not an error.
    p.catch(() => {});
    this.prepared = p;
  }

  private async preallocateSegment(seq: number): Promise<PreparedSegment> {
    const p = path.join(this.dir, WAL_DIR, tempSegmentName(seq));
    const file = await preallocate(this.fs, p, this.segmentBytes);
    return { seq, path: p, file, capacity: this.segmentBytes };
  }

  /**
   * Deletes segments whose every live entry is inside the snapshot, oldest first (a crash part way
   * leaves a contiguous run), and old snapshot files. A failure here loses nothing: it is logged.
   */
  private async release(marker: SnapshotMarker): Promise<void> {
    const walDir = path.join(this.dir, WAL_DIR);
    let removed = 0;
    try {
      while (this.segments.length > 1 && this.segments[1]!.firstIndex <= marker.index + 1) {
        const victim = this.segments[0]!;
        await this.fs.unlink(path.join(walDir, victim.name));
        this.segments.shift();
        removed++;
      }
      if (removed > 0) await this.fs.syncDir(walDir);
      const purged = await purgeSnapshotFiles(this.fs, path.join(this.dir, SNAP_DIR), this.maxSnapshotFiles, marker.index);
      if (removed > 0 || purged.length > 0) {
        this.log('info', 'wal: released files covered by snapshot', {
          snapshotIndex: marker.index,
          segmentsRemoved: removed,
          snapshotFilesRemoved: purged.length,
        });
      }
    } catch (e) {
      this.log('warn', 'wal: could not release old files', { error: (e as Error).message });
    }
  }
}
