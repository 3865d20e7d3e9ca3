/**
 * The value stored under a revision key: a fixed header then the key and value bytes. A fixed layout
 * (rather than msgpack) makes the bytes a pure function of the KeyValue, which HashKV relies on to
 * agree across members, and decodes without allocating more than the two slices.
 *
 *   createRevision u64 | modRevision u64 | version u64 | lease i64 | keyLength u32 | key | value
 *
 * Tombstones hold only the key, as etcd's do (every number zero, value empty).
 */
import { readU64, writeU64 } from './revision.js';
import type { KeyValue } from './types.js';

const HEADER_BYTES = 8 * 4 + 4;
const EMPTY = Buffer.alloc(0);

export function encodeKv(
  key: Uint8Array,
  createRevision: number,
  modRevision: number,
  version: number,
  value: Uint8Array,
  lease: bigint,
): Buffer {
  const buf = Buffer.allocUnsafe(HEADER_BYTES + key.length + value.length);
  writeU64(buf, 0, createRevision);
  writeU64(buf, 8, modRevision);
  writeU64(buf, 16, version);
  buf.writeBigInt64BE(lease, 24);
  buf.writeUInt32BE(key.length, 32);
  buf.set(key, HEADER_BYTES);
  buf.set(value, HEADER_BYTES + key.length);
  return buf;
}

export function encodeTombstone(key: Uint8Array): Buffer {
  return encodeKv(key, 0, 0, 0, EMPTY, 0n);
}

export function decodeKv(buf: Buffer): KeyValue {
  const keyLength = buf.readUInt32BE(32);
  return {
    key: buf.subarray(HEADER_BYTES, HEADER_BYTES + keyLength),
    createRevision: readU64(buf, 0),
    modRevision: readU64(buf, 8),
    version: readU64(buf, 16),
    value: buf.subarray(HEADER_BYTES + keyLength),
    lease: buf.readBigInt64BE(24),
  };
}

/** Just the key, for scans that filter records by key before decoding the rest. */
export function decodeKvKey(buf: Buffer): Buffer {
  return buf.subarray(HEADER_BYTES, HEADER_BYTES + buf.readUInt32BE(32));
}
