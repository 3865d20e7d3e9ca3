// The record frame: [length u32 LE][crc32c u32 LE][type u8][payload: `length` bytes of msgpack].
// The CRC covers type and payload and is chained: it starts from the previous record's CRC (from
// the segment's seed for the first record), so a record moved, dropped or duplicated breaks the
// chain as surely as a flipped bit does. The type byte's high bit marks the last record of a
// save(): replay drops a batch whose last record never reached the disk, so a save is all or
// nothing across a crash.
import { Packr, Unpackr } from 'msgpackr';
import type { Entry, EntryType, HardState, NodeId } from '@capstan/raft';
import { crc32c } from './crc32c.js';

export const HEADER_BYTES = 9;
const LENGTH_AT = 0;
const CRC_AT = 4;
const TYPE_AT = 8;

/** Set on the type byte of the last record of each batch. */
export const BATCH_END_FLAG = 0x80;
const TYPE_MASK = 0x7f;

export enum RecordType {
  Entry = 1,
  HardState = 2,
  /** Raft's log up to (index, term) lives in a snapshot file from here on. */
  Snapshot = 3,
  Metadata = 4,
}

/** Who this log belongs to, written at the head of every segment. */
export interface WalMetadata {
  readonly memberId: NodeId;
  /** etcd cluster ids are 64-bit: kept as the hex string etcd prints. */
  readonly clusterId: string;
}

/** The point in the Raft log a snapshot file covers. */
export interface SnapshotMarker {
  readonly index: number;
  readonly term: number;
}

export type WalRecord =
  | { readonly type: RecordType.Entry; readonly entry: Entry }
  | { readonly type: RecordType.HardState; readonly hardState: HardState }
  | { readonly type: RecordType.Snapshot; readonly marker: SnapshotMarker }
  | { readonly type: RecordType.Metadata; readonly metadata: WalMetadata };

// Arrays rather than maps keep payloads small and decoding cheap; records (msgpackr's shared
// structures) stay off because every record must decode on its own.
const packr = new Packr({ useRecords: false });
// copyBuffers: entry data must not pin the whole segment read buffer in memory.
const unpackr = new Unpackr({ useRecords: false, copyBuffers: true, mapsAsObjects: true });

/** The payload of a record other than an entry (RecordEncoder writes those itself, writeEntryPayload). */
function payloadOf(r: Exclude<WalRecord, { type: RecordType.Entry }>): unknown[] {
  switch (r.type) {
    case RecordType.HardState:
      return [r.hardState.term, r.hardState.vote, r.hardState.commit];
    case RecordType.Snapshot:
      return [r.marker.index, r.marker.term];
    case RecordType.Metadata:
      return [r.metadata.memberId, r.metadata.clusterId];
  }
}

function isNat(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
}

/** Decodes a payload whose CRC already checked out; undefined if it is not a well-formed record. */
export function decodePayload(type: number, payload: Uint8Array): WalRecord | undefined {
  let v: unknown;
  try {
    v = unpackr.unpack(payload);
  } catch {
    return undefined;
  }
  if (!Array.isArray(v)) return undefined;
  switch (type) {
    case RecordType.Entry: {
      const [term, index, etype, data] = v as unknown[];
      if (!isNat(term) || !isNat(index) || !isNat(etype) || !(data instanceof Uint8Array)) return undefined;
      // Buffer is a Uint8Array subclass: hand out the plain type the raft package uses.
      const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      return { type, entry: { term, index, type: etype as EntryType, data: bytes } };
    }
    case RecordType.HardState: {
      const [term, vote, commit] = v as unknown[];
      if (!isNat(term) || !isNat(vote) || !isNat(commit)) return undefined;
      return { type, hardState: { term, vote, commit } };
    }
    case RecordType.Snapshot: {
      const [index, term] = v as unknown[];
      if (!isNat(index) || !isNat(term)) return undefined;
      return { type, marker: { index, term } };
    }
    case RecordType.Metadata: {
      const [memberId, clusterId] = v as unknown[];
      if (!isNat(memberId) || typeof clusterId !== 'string') return undefined;
      return { type, metadata: { memberId, clusterId } };
    }
    default:
      return undefined;
  }
}

export function isRecordType(t: number): t is RecordType {
  return t >= RecordType.Entry && t <= RecordType.Metadata;
}



/** The most an entry's payload takes besides its data: the array byte, three numbers and the bin header. */
const ENTRY_PAYLOAD_MAX_FIXED = 1 + 3 * 9 + 5;

/**
 * An entry's payload, [term, index, type, data], in the msgpack msgpackr writes for it (positive
 * ints in their smallest form, float64 from 2^32 up, since msgpackr reads a uint64 as a bigint),
 * so decodePayload reads it like any other. Returns where it ends.
 */
function writeEntryPayload(b: Buffer, off: number, e: Entry): number {
  b[off++] = 0x94;
  off = writeUint(b, off, e.term);
  off = writeUint(b, off, e.index);
  off = writeUint(b, off, e.type);
  const n = e.data.length;
  if (n < 0x100) {
    b[off++] = 0xc4;
    b[off++] = n;
  } else if (n < 0x10000) {
    b[off++] = 0xc5;
    off = b.writeUInt16BE(n, off);
  } else {
    b[off++] = 0xc6;
    off = b.writeUInt32BE(n, off);
  }
  b.set(e.data, off);
  return off + n;
}

function writeUint(b: Buffer, off: number, v: number): number {
  if (v < 0x80) {
    b[off] = v;
    return off + 1;
  }
  if (v < 0x100) {
    b[off] = 0xcc;
    b[off + 1] = v;
    return off + 2;
  }
  if (v < 0x10000) {
    b[off] = 0xcd;
    return b.writeUInt16BE(v, off + 1);
  }
  if (v < 2 ** 32) {
    b[off] = 0xce;
    return b.writeUInt32BE(v, off + 1);
  }
  b[off] = 0xcb;
  return b.writeDoubleBE(v, off + 1);
}

/**
 * Frames records into one reusable buffer, so a whole batch goes to the kernel in a single write.
 * `ends[i]` is where record i ends, which is where a batch may be split across segments.
 */
export class RecordEncoder {
  private buf: Buffer;
  private len = 0;
  readonly ends: number[] = [];
  /** The CRC of the last record framed: the seed of the next one. */
  crc = 0;

  constructor(initialBytes = 64 * 1024) {
    this.buf = Buffer.allocUnsafe(initialBytes);
  }

  reset(seed: number): void {
    this.len = 0;
    this.ends.length = 0;
    this.crc = seed;
  }

  get length(): number {
    return this.len;
  }

  get bytes(): Buffer {
    return this.buf;
  }

  add(r: WalRecord, batchEnd = false): void {
    const start = this.len;
    let end: number;
    if (r.type === RecordType.Entry) {
      // The commonest record, written as msgpack by hand straight into the batch: no pack() and no copy.
      const e = r.entry;
      this.reserve(HEADER_BYTES + ENTRY_PAYLOAD_MAX_FIXED + e.data.length);
      end = writeEntryPayload(this.buf, start + HEADER_BYTES, e);
    } else {
      const payload = packr.pack(payloadOf(r));
      this.reserve(HEADER_BYTES + payload.length);
      // Copied at once: msgpackr hands back a view into its own buffer, reused by the next pack().
      this.buf.set(payload, start + HEADER_BYTES);
      end = start + HEADER_BYTES + payload.length;
    }
    const b = this.buf;
    b.writeUInt32LE(end - start - HEADER_BYTES, start + LENGTH_AT);
    b[start + TYPE_AT] = batchEnd ? r.type | BATCH_END_FLAG : r.type;
    this.crc = crc32c(b.subarray(start + TYPE_AT, end), this.crc);
    b.writeUInt32LE(this.crc, start + CRC_AT);
    this.len = end;
    this.ends.push(end);
  }

  /** Zeros after the last record up to `to` bytes from the start (growing the buffer); length is unchanged. */
  zeroPad(to: number): void {
    if (to <= this.len) return;
    this.reserve(to - this.len);
    this.buf.fill(0, this.len, to);
  }

  private reserve(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.len);
    this.buf = next;
  }
}

export type ParseResult =
  | {
      readonly kind: 'record';
      readonly record: WalRecord;
      readonly batchEnd: boolean;
      readonly crc: number;
      readonly end: number;
    }
  /** An all-zero header: nothing was ever written here (preallocated space). */
  | { readonly kind: 'zero' }
  | { readonly kind: 'bad'; readonly reason: string };

/** Reads the record at `at`, whose CRC chain starts from `seed`. */
export function parseRecordAt(buf: Uint8Array, at: number, seed: number): ParseResult {
  const avail = buf.length - at;
  if (avail < HEADER_BYTES) {
    for (let i = at; i < buf.length; i++) if (buf[i] !== 0) return { kind: 'bad', reason: 'truncated record header' };
    return { kind: 'zero' };
  }
  const view = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const length = view.readUInt32LE(at + LENGTH_AT);
  const stored = view.readUInt32LE(at + CRC_AT);
  const typeByte = view[at + TYPE_AT]!;
  if (length === 0 && stored === 0 && typeByte === 0) return { kind: 'zero' };
  const type = typeByte & TYPE_MASK;
  if (!isRecordType(type)) return { kind: 'bad', reason: `unknown record type ${type}` };
  if (length === 0 || length > avail - HEADER_BYTES) return { kind: 'bad', reason: `record length ${length} out of range` };
  const end = at + HEADER_BYTES + length;
  const crc = crc32c(view.subarray(at + TYPE_AT, end), seed);
  if (crc !== stored) return { kind: 'bad', reason: `crc mismatch (stored ${hex(stored)}, computed ${hex(crc)})` };
  const record = decodePayload(type, view.subarray(at + HEADER_BYTES, end));
  if (record === undefined) return { kind: 'bad', reason: `undecodable ${RecordType[type]} payload` };
  return { kind: 'record', record, batchEnd: (typeByte & BATCH_END_FLAG) !== 0, crc, end };
}

/** The CRC the record at `at` claims and the one its bytes give, for resynchronising after a bad record. */
export function chainSeedsAfter(buf: Uint8Array, at: number, seed: number): number[] {
  if (buf.length - at < HEADER_BYTES) return [];
  const view = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const seeds = [view.readUInt32LE(at + CRC_AT)];
  const length = view.readUInt32LE(at + LENGTH_AT);
  if (length > 0 && length <= buf.length - at - HEADER_BYTES) {
    seeds.push(crc32c(view.subarray(at + TYPE_AT, at + HEADER_BYTES + length), seed));
  }
  return seeds;
}

function hex(n: number): string {
  return n.toString(16).padStart(8, '0');
}
