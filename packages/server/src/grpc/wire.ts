/**
 * Protobuf wire format by hand, for the few messages on hot paths: a watch event goes to every
 * watcher of its key, and protobufjs (a converted copy of the message, then its own writer) cost
 * several microseconds per watcher for bytes that are the same for all of them; a range answers
 * with up to thousands of KeyValues, and Put, Range and DeleteRange are most of the calls. Sizes
 * are computed first, so each message is written once into a buffer of its exact length.
 */
import type { Event, KeyValue } from '@capstan/mvcc';

const WIRE_VARINT = 0;
const WIRE_BYTES = 2;

/** Bytes of a varint holding n: a non-negative integer up to 2^53, or a negative one (10 bytes, as int64). */
export function varintSize(n: number): number {
  if (n < 128) return n < 0 ? 10 : 1;
  if (n < 16384) return 2;
  if (n < 2097152) return 3;
  if (n < 268435456) return 4;
  let size = 5;
  for (n = Math.floor(n / 34359738368); n > 0; n = Math.floor(n / 128)) size++;
  return size;
}

export function bigVarintSize(n: bigint): number {
  let u = BigInt.asUintN(64, n);
  let size = 1;
  while (u >= 128n) {
    u >>= 7n;
    size++;
  }
  return size;
}

export function tagSize(field: number): number {
  return varintSize(field << 3);
}

/** A length-delimited field: tag, length, then `len` bytes. */
export function bytesFieldSize(field: number, len: number): number {
  return tagSize(field) + varintSize(len) + len;
}

/** Writes into a buffer sized beforehand; `pos` ends at the buffer's length when the sizes were right. */
export class WireWriter {
  pos = 0;
  readonly buf: Buffer;

  constructor(size: number) {
    this.buf = Buffer.allocUnsafe(size);
  }

  varint(n: number): void {
    if (n < 0) {
      this.bigVarint(BigInt(n));
      return;
    }
    const buf = this.buf;
    // Bit operations while n fits in 31 bits; division above.
    while (n > 0x7fffffff) {
      buf[this.pos++] = (n % 128) | 128;
      n = Math.floor(n / 128);
    }
    while (n >= 128) {
      buf[this.pos++] = (n & 127) | 128;
      n >>>= 7;
    }
    buf[this.pos++] = n;
  }

  bigVarint(n: bigint): void {
    let u = BigInt.asUintN(64, n);
    while (u >= 128n) {
      this.buf[this.pos++] = Number(u & 127n) | 128;
      u >>= 7n;
    }
    this.buf[this.pos++] = Number(u);
  }

  tag(field: number, wire: number): void {
    this.varint((field << 3) | wire);
  }

  /** A varint field, left out when 0 (proto3's default). */
  uint(field: number, n: number): void {
    if (n === 0) return;
    this.tag(field, WIRE_VARINT);
    this.varint(n);
  }

  big(field: number, n: bigint): void {
    if (n === 0n) return;
    this.tag(field, WIRE_VARINT);
    this.bigVarint(n);
  }

  bool(field: number, b: boolean): void {
    if (!b) return;
    this.tag(field, WIRE_VARINT);
    this.buf[this.pos++] = 1;
  }

  /** A length-delimited field, left out when empty unless `always` (a set message is written even when empty). */
  bytes(field: number, b: Uint8Array, always = false): void {
    if (b.length === 0 && !always) return;
    this.tag(field, WIRE_BYTES);
    this.varint(b.length);
    this.raw(b);
  }

  /** Bytes as they are: a field already encoded. */
  raw(b: Uint8Array): void {
    const n = b.length;
    const buf = this.buf;
    let pos = this.pos;
    // TypedArray.set costs more than a short loop for the small keys most messages carry.
    if (n < 32) for (let i = 0; i < n; i++) buf[pos++] = b[i]!;
    else {
      buf.set(b, pos);
      pos += n;
    }
    this.pos = pos;
  }

  /** The header of a length-delimited field whose `len` bytes the caller writes next. */
  open(field: number, len: number): void {
    this.tag(field, WIRE_BYTES);
    this.varint(len);
  }

  finish(): Buffer {
    if (this.pos !== this.buf.length) throw new Error(`wire: wrote ${this.pos} bytes into ${this.buf.length}`);
    return this.buf;
  }
}

/** Size of a varint field as uint() writes it (nothing for 0). */
export function uintFieldSize(field: number, n: number): number {
  return n === 0 ? 0 : tagSize(field) + varintSize(n);
}

export function bigFieldSize(field: number, n: bigint): number {
  return n === 0n ? 0 : tagSize(field) + bigVarintSize(n);
}

// ---------------------------------------------------------------- mvccpb

function keyValueSize(kv: KeyValue): number {
  return (
    (kv.key.length > 0 ? bytesFieldSize(1, kv.key.length) : 0) +
    uintFieldSize(2, kv.createRevision) +
    uintFieldSize(3, kv.modRevision) +
    uintFieldSize(4, kv.version) +
    (kv.value.length > 0 ? bytesFieldSize(5, kv.value.length) : 0) +
    bigFieldSize(6, kv.lease)
  );
}

function writeKeyValue(w: WireWriter, kv: KeyValue): void {
  w.bytes(1, kv.key);
  w.uint(2, kv.createRevision);
  w.uint(3, kv.modRevision);
  w.uint(4, kv.version);
  w.bytes(5, kv.value);
  w.big(6, kv.lease);
}

/** mvccpb.Event's bytes. */
export function encodeEvent(ev: Event): Buffer {
  const kvSize = keyValueSize(ev.kv);
  const prevSize = ev.prevKv === undefined ? -1 : keyValueSize(ev.prevKv);
  const w = new WireWriter(uintFieldSize(1, ev.type) + bytesFieldSize(2, kvSize) + (prevSize < 0 ? 0 : bytesFieldSize(3, prevSize)));
  w.uint(1, ev.type);
  w.open(2, kvSize);
  writeKeyValue(w, ev.kv);
  if (ev.prevKv !== undefined) {
    w.open(3, prevSize);
    writeKeyValue(w, ev.prevKv);
  }
  return w.finish();
}

// ---------------------------------------------------------------- etcdserverpb

/** etcdserverpb.ResponseHeader as the services fill it. */
export interface HeaderFields {
  readonly clusterId: bigint;
  readonly memberId: bigint;
  readonly revision: number;
  readonly raftTerm: number;
}

/**
 * The cluster and member ID fields, which every header of a member repeats: 64-bit varints from
 * bigints cost a microsecond a header, so the last pair's bytes are kept.
 */
let idsFor: { clusterId: bigint; memberId: bigint; bytes: Buffer } | undefined;

function idBytes(h: HeaderFields): Buffer {
  if (idsFor === undefined || idsFor.clusterId !== h.clusterId || idsFor.memberId !== h.memberId) {
    const w = new WireWriter(bigFieldSize(1, h.clusterId) + bigFieldSize(2, h.memberId));
    w.big(1, h.clusterId);
    w.big(2, h.memberId);
    idsFor = { clusterId: h.clusterId, memberId: h.memberId, bytes: w.finish() };
  }
  return idsFor.bytes;
}

function headerSize(h: HeaderFields): number {
  return idBytes(h).length + uintFieldSize(3, h.revision) + uintFieldSize(4, h.raftTerm);
}

/** Field 1 of every etcdserverpb response: the header, `size` = headerSize(h). */
function writeHeader(w: WireWriter, h: HeaderFields, size: number): void {
  w.open(1, size);
  w.raw(idBytes(h));
  w.uint(3, h.revision);
  w.uint(4, h.raftTerm);
}

/** Repeated KeyValue messages: their sizes, then the bytes they take as fields. */
function keyValuesSize(kvs: readonly KeyValue[], field: number, sizes: number[]): number {
  let total = 0;
  for (const kv of kvs) {
    const n = keyValueSize(kv);
    sizes.push(n);
    total += bytesFieldSize(field, n);
  }
  return total;
}

function writeKeyValues(w: WireWriter, kvs: readonly KeyValue[], field: number, sizes: readonly number[]): void {
  for (let i = 0; i < kvs.length; i++) {
    w.open(field, sizes[i]!);
    writeKeyValue(w, kvs[i]!);
  }
}

/** etcdserverpb.RangeResponse: a 1,000-key range through protobufjs cost milliseconds of conversion. */
export function encodeRangeResponse(r: { readonly kvs: readonly KeyValue[]; readonly more: boolean; readonly count: number }, h: HeaderFields): Buffer {
  const hSize = headerSize(h);
  const sizes: number[] = [];
  const w = new WireWriter(bytesFieldSize(1, hSize) + keyValuesSize(r.kvs, 2, sizes) + (r.more ? 2 : 0) + uintFieldSize(4, r.count));
  writeHeader(w, h, hSize);
  writeKeyValues(w, r.kvs, 2, sizes);
  w.bool(3, r.more);
  w.uint(4, r.count);
  return w.finish();
}

/** etcdserverpb.PutResponse. */
export function encodePutResponse(r: { readonly prevKv?: KeyValue | undefined }, h: HeaderFields): Buffer {
  const hSize = headerSize(h);
  const prevSize = r.prevKv === undefined ? -1 : keyValueSize(r.prevKv);
  const w = new WireWriter(bytesFieldSize(1, hSize) + (prevSize < 0 ? 0 : bytesFieldSize(2, prevSize)));
  writeHeader(w, h, hSize);
  if (r.prevKv !== undefined) {
    w.open(2, prevSize);
    writeKeyValue(w, r.prevKv);
  }
  return w.finish();
}

/** etcdserverpb.DeleteRangeResponse. */
export function encodeDeleteRangeResponse(r: { readonly deleted: number; readonly prevKvs: readonly KeyValue[] }, h: HeaderFields): Buffer {
  const hSize = headerSize(h);
  const sizes: number[] = [];
  const w = new WireWriter(bytesFieldSize(1, hSize) + uintFieldSize(2, r.deleted) + keyValuesSize(r.prevKvs, 3, sizes));
  writeHeader(w, h, hSize);
  w.uint(2, r.deleted);
  writeKeyValues(w, r.prevKvs, 3, sizes);
  return w.finish();
}

/**
 * Each event's bytes, kept while the event is: every watcher given the same event object (the
 * fan-out hands one object to all of them, and one with prev_kv attached to all that asked for it)
 * shares one encoding.
 */
const eventBytes = new WeakMap<Event, Buffer>();

function encodedEvent(ev: Event): Buffer {
  let b = eventBytes.get(ev);
  if (b === undefined) {
    b = encodeEvent(ev);
    eventBytes.set(ev, b);
  }
  return b;
}

/** The fields of etcdserverpb.WatchResponse but the header, which the server fills in. */
export interface WatchResponseFields {
  readonly watchId: number;
  readonly created: boolean;
  readonly canceled: boolean;
  readonly compactRevision: number;
  readonly cancelReason: string;
  readonly fragment: boolean;
  readonly events: readonly Event[];
}

/** etcdserverpb.WatchResponse's bytes, its events' encodings shared with every other watcher's. */
export function encodeWatchResponse(resp: WatchResponseFields, header: HeaderFields): Buffer {
  const hSize = headerSize(header);
  const reason = resp.cancelReason.length > 0 ? Buffer.from(resp.cancelReason, 'utf8') : undefined;
  const events = resp.events.map(encodedEvent);
  let size = bytesFieldSize(1, hSize) + uintFieldSize(2, resp.watchId) + (resp.created ? 2 : 0) + (resp.canceled ? 2 : 0);
  size += uintFieldSize(5, resp.compactRevision) + (reason === undefined ? 0 : bytesFieldSize(6, reason.length)) + (resp.fragment ? 2 : 0);
  for (const e of events) size += bytesFieldSize(11, e.length);
  const w = new WireWriter(size);
  writeHeader(w, header, hSize);
  w.uint(2, resp.watchId);
  w.bool(3, resp.created);
  w.bool(4, resp.canceled);
  w.uint(5, resp.compactRevision);
  if (reason !== undefined) w.bytes(6, reason);
  w.bool(7, resp.fragment);
  for (const e of events) w.bytes(11, e, true);
  return w.finish();
}

/** gRPC's length-prefixed message: a compression flag byte, then the length as 4 bytes big-endian. */
export const GRPC_MESSAGE_PREFIX_BYTES = 5;

/** Writes the prefix of an uncompressed message of `length` bytes at the start of `b`. */
export function writeMessagePrefix(b: Buffer, length: number): void {
  b[0] = 0;
  b.writeUInt32BE(length, 1);
}

/** A message with its prefix, in one buffer so it goes out as one DATA frame. */
export function framedMessage(msg: Buffer): Buffer {
  const out = Buffer.allocUnsafe(GRPC_MESSAGE_PREFIX_BYTES + msg.length);
  writeMessagePrefix(out, msg.length);
  msg.copy(out, GRPC_MESSAGE_PREFIX_BYTES);
  return out;
}

/**
 * The header field (tag, length, header) of the last header a fan-out wrote: every watcher of one
 * revision gets the same header, so all but the first reuse its bytes.
 */
let watchHeader: (HeaderFields & { bytes: Buffer }) | undefined;

function headerField(h: HeaderFields): Buffer {
  const last = watchHeader;
  if (last === undefined || last.revision !== h.revision || last.raftTerm !== h.raftTerm || last.clusterId !== h.clusterId || last.memberId !== h.memberId) {
    const hSize = headerSize(h);
    const w = new WireWriter(bytesFieldSize(1, hSize));
    writeHeader(w, h, hSize);
    // The fields copied: a caller may hand the same object again with other values.
    watchHeader = { clusterId: h.clusterId, memberId: h.memberId, revision: h.revision, raftTerm: h.raftTerm, bytes: w.finish() };
    return watchHeader.bytes;
  }
  return last.bytes;
}

/**
 * A WatchResponse that only carries events (what a fan-out sends every watcher), as a whole gRPC
 * message: its 5-byte prefix first, so the server sends this buffer as it is. The same bytes as
 * encodeWatchResponse with created, canceled, compactRevision and fragment unset, framed.
 */
export function encodeFramedWatchEvents(watchId: number, events: readonly Event[], h: HeaderFields): Buffer {
  const head = headerField(h);
  let size = head.length + uintFieldSize(2, watchId);
  // Each event's bytes are looked up twice (encodedEvent keeps them) rather than listed in an array.
  for (const ev of events) size += bytesFieldSize(11, encodedEvent(ev).length);
  const w = new WireWriter(GRPC_MESSAGE_PREFIX_BYTES + size);
  writeMessagePrefix(w.buf, size);
  w.pos = GRPC_MESSAGE_PREFIX_BYTES;
  w.raw(head);
  w.uint(2, watchId);
  for (const ev of events) w.bytes(11, encodedEvent(ev), true);
  return w.finish();
}
