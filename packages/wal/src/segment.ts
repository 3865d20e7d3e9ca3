// Segment files: naming, preallocation, and reading one back under the recovery rules.
import type { FileHandle, FileSystem } from './fs.js';
import { WalCorruptError } from './errors.js';
import { HEADER_BYTES, chainSeedsAfter, parseRecordAt, type WalRecord } from './record.js';

export const DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024;
/** Small enough for tests that roll over every few records, large enough for the head records. */
export const MIN_SEGMENT_BYTES = 4 * 1024;
const SEGMENT_SUFFIX = '.wal';
const TMP_SUFFIX = '.tmp';
const NAME_RE = /^([0-9a-f]{16})-([0-9a-f]{16})\.wal$/;
/**
 * Zeros are written in pieces of this size, through the thread pool. Since Linux 6.16 ext4 caches
 * a write in a folio as large as the write (up to 2 MiB), and every later write into a folio walks
 * the buffer heads of all of its blocks. Zeroed 2 MiB at a time, a segment made each of the WAL's
 * appends (a few hundred bytes, padded to the block's end) cost 41-61 us of a member's thread in
 * the kernel's write, most of it in ext4_block_write_begin: 165-246 samples of a member at 2 kHz
 * over 10 s of the watch workload, about 2,000 appends. Zeroed 64 KiB at a time (16 blocks a
 * folio): 53-72 samples, 13-18 us an append. A 64 MiB segment is still only 1,024 writes.
 */
export const ZERO_WRITE_BYTES = 64 * 1024;
/** With `flushEach`, zeroFill fdatasyncs after each this many bytes, so little waits for writeback. */
const ZERO_SYNC_BYTES = 2 * 1024 * 1024;
const ZEROS = Buffer.alloc(ZERO_WRITE_BYTES);

export interface SegmentName {
  readonly name: string;
  /** Position in the log's sequence of segments, from 0, with no gaps. */
  readonly seq: number;
  /** Every entry still valid in earlier segments has a smaller index than this. */
  readonly firstIndex: number;
}

export function segmentFileName(seq: number, firstIndex: number): string {
  return `${hex16(seq)}-${hex16(firstIndex)}${SEGMENT_SUFFIX}`;
}

export function parseSegmentName(name: string): SegmentName | undefined {
  const m = NAME_RE.exec(name);
  if (m === null) return undefined;
  return { name, seq: parseInt(m[1]!, 16), firstIndex: parseInt(m[2]!, 16) };
}

export function isTempFile(name: string): boolean {
  return name.endsWith(TMP_SUFFIX);
}

export function tempSegmentName(seq: number): string {
  return `${hex16(seq)}${TMP_SUFFIX}`;
}

/**
 * Each segment's CRC chain starts from its sequence number, so a segment renamed, copied in from
 * another log or replayed out of order fails at its first record.
 */
export function segmentSeed(seq: number): number {
  return seq >>> 0;
}

/**
 * A fully written file of zeros: fdatasync after an append into it only flushes data, never block
 * allocation or the file size (the journal), and replay can tell unwritten space by its zeros.
 *
 * The next segment is filled while the active one takes fdatasyncs on the same disk, so each chunk
 * is flushed before the next is written. Written whole and fsynced once, the 64 MiB queued ahead of
 * a concurrent 4 KiB append + fdatasync (one every 5 ms) and stalled it: p99 8.8-13.5 ms, max
 * 34-39 ms, against 0.7-2.2 ms idle. Flushed a 2 MiB chunk at a time: p99 2.4-3.3 ms, max 3.3-6.8 ms.
 */
export async function preallocate(fs: FileSystem, path: string, bytes: number): Promise<FileHandle> {
  const f = await fs.open(path, 'create');
  try {
    await zeroFill(f, 0, bytes, true);
    await f.sync();
  } catch (e) {
    await f.close().catch(() => {});
    throw e;
  }
  return f;
}

/**
 * Zeroes [from, to), last piece first: a crash part way leaves a zeroed suffix, never a hole. The
 * writes go through the thread pool (a 64 MiB segment is zeroed while the log is in use, and
 * awaiting a write done on the event loop never yields to I/O). `flushEach` fdatasyncs every
 * ZERO_SYNC_BYTES, so the fill never has more than that waiting for writeback.
 */
export async function zeroFill(f: FileHandle, from: number, to: number, flushEach = false): Promise<void> {
  let end = to;
  let unsynced = 0;
  while (end > from) {
    const start = Math.max(from, end - ZERO_WRITE_BYTES);
    await f.write(ZEROS, 0, end - start, start, true);
    unsynced += end - start;
    end = start;
    if (flushEach && (unsynced >= ZERO_SYNC_BYTES || end === from)) {
      await f.datasync();
      unsynced = 0;
    }
  }
}

export interface ReadRecord {
  readonly record: WalRecord;
  readonly offset: number;
}

export interface ScannedSegment {
  readonly records: ReadRecord[];
  /** Where the next record goes: the end of the last valid record. */
  readonly end: number;
  /** The CRC of the last valid record (the segment's seed if none). */
  readonly crc: number;
  /** Set when the last segment ended in a torn record: its offset and how many bytes follow it. */
  readonly torn?: { readonly offset: number; readonly bytes: number };
}

/**
 * Reads every record of a segment. A bad record in any segment but the last, or one in the last
 * segment that valid records follow, is damage to data that may have been acknowledged:
 * WalCorruptError. A bad record in the last segment with nothing valid after it is a write torn by
 * a crash; it and the rest of its batch were never acknowledged (the batch's fdatasync never
 * returned), so they are reported as `torn`, from the end of the last complete batch.
 */
export function scanSegment(buf: Buffer, file: string, seq: number, isLast: boolean): ScannedSegment {
  const records: ReadRecord[] = [];
  let crc = segmentSeed(seq);
  let at = 0;
  // The end of the last complete batch: records past it belong to a save that never finished.
  let committed = { count: 0, end: 0, crc };
  const tornFrom = (reason: string): ScannedSegment => {
    const dataEnd = lastNonZero(buf, committed.end) + 1;
    if (!isLast) throw new WalCorruptError(file, committed.end, reason);
    records.length = committed.count;
    return {
      records,
      end: committed.end,
      crc: committed.crc,
      ...(dataEnd > committed.end ? { torn: { offset: committed.end, bytes: dataEnd - committed.end } } : {}),
    };
  };
  for (;;) {
    const r = parseRecordAt(buf, at, crc);
    if (r.kind === 'record') {
      records.push({ record: r.record, offset: at });
      crc = r.crc;
      at = r.end;
      if (r.batchEnd) committed = { count: records.length, end: at, crc };
      continue;
    }
    if (r.kind === 'zero') {
      const dataEnd = lastNonZero(buf, at) + 1;
      // Zeros where a header should be, yet data after them: a record was wiped out in the middle.
      if (dataEnd > at) throw new WalCorruptError(file, at, `zeroed record header followed by ${dataEnd - at} bytes of data`);
      if (committed.end === at) return { records, end: at, crc };
      return tornFrom('batch cut short in a sealed segment');
    }
    if (!isLast) throw new WalCorruptError(file, at, r.reason);
    const follower = findChainedRecord(buf, at, crc, lastNonZero(buf, at) + 1);
    if (follower !== undefined) {
      throw new WalCorruptError(file, at, `${r.reason}; a valid record follows at offset ${follower}`);
    }
    return tornFrom(r.reason);
  }
}

/**
 * Looks for a record after the bad one at `at` that continues its chain, using both the CRC the
 * bad record stores (its payload was hit) and the one its bytes give (its CRC field was hit). One
 * damaged record, whichever field the damage hit, leaves the next record findable this way.
 */
function findChainedRecord(buf: Buffer, at: number, seed: number, dataEnd: number): number | undefined {
  const seeds = chainSeedsAfter(buf, at, seed);
  for (let p = at + HEADER_BYTES + 1; p + HEADER_BYTES < dataEnd; p++) {
    for (const s of seeds) {
      if (parseRecordAt(buf, p, s).kind === 'record') return p;
    }
  }
  return undefined;
}

/** Index of the last non-zero byte at or after `from`, or from - 1 if there is none. */
export function lastNonZero(buf: Buffer, from: number): number {
  let end = buf.length;
  const probe = ZERO_WRITE_BYTES;
  // memcmp against a zero chunk skips preallocated space fast; only the last dirty chunk is walked.
  while (end > from) {
    const start = Math.max(from, end - probe);
    if (buf.compare(ZEROS, 0, end - start, start, end) !== 0) {
      for (let i = end - 1; i >= start; i--) if (buf[i] !== 0) return i;
    }
    end = start;
  }
  return from - 1;
}

function hex16(n: number): string {
  return n.toString(16).padStart(16, '0');
}
