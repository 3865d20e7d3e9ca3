/**
 * The whole LevelDB as a byte stream, for Raft snapshots: a magic header, then records
 * [key length u32][value length u32][key][value], then a trailer record (key length 0xFFFFFFFF)
 * holding the CRC32C of every byte before it. The decoder accepts the stream cut anywhere (gRPC
 * chunks are not record-aligned) and refuses a stream that is truncated or altered.
 */
import { crc32c } from '@node-rs/crc32';
import { errSnapshot } from './errors.js';

const MAGIC = Buffer.from('CAPSNAP1');
const TRAILER = 0xffffffff;
/**
 * The stream's length is a multiple of this (zeros after the trailer): etcdctl's `snapshot save`
 * expects a bbolt file, whose size is whole pages, and refuses anything else before the sha256.
 */
export const SNAPSHOT_ALIGN_BYTES = 512;
/** Bytes per emitted chunk, about; one record may exceed it. */
export const SNAPSHOT_CHUNK_BYTES = 1 << 20;

export async function* encodeSnapshot(pairs: AsyncIterable<[Buffer, Buffer]>): AsyncGenerator<Buffer> {
  let crc = crc32c(MAGIC);
  let parts: Buffer[] = [MAGIC];
  let size = MAGIC.length;
  /** Bytes already yielded. */
  let total = 0;
  const flush = (): Buffer => {
    const chunk = Buffer.concat(parts, size);
    total += size;
    parts = [];
    size = 0;
    return chunk;
  };
  for await (const [k, v] of pairs) {
    const head = Buffer.allocUnsafe(8);
    head.writeUInt32BE(k.length, 0);
    head.writeUInt32BE(v.length, 4);
    crc = crc32c(v, crc32c(k, crc32c(head, crc)));
    parts.push(head, k, v);
    size += 8 + k.length + v.length;
    if (size >= SNAPSHOT_CHUNK_BYTES) yield flush();
  }
  const trailer = Buffer.allocUnsafe(8);
  trailer.writeUInt32BE(TRAILER, 0);
  trailer.writeUInt32BE(crc, 4);
  parts.push(trailer);
  size += 8;
  const pad = (SNAPSHOT_ALIGN_BYTES - ((total + size) % SNAPSHOT_ALIGN_BYTES)) % SNAPSHOT_ALIGN_BYTES;
  if (pad > 0) parts.push(Buffer.alloc(pad));
  size += pad;
  yield flush();
}

/** Yields the records in batches, and only after the trailer checks out does it return normally. */
export async function* decodeSnapshot(chunks: AsyncIterable<Uint8Array>): AsyncGenerator<Array<[Buffer, Buffer]>> {
  let buf = Buffer.alloc(0);
  let crc = 0;
  let started = false;
  let ended = false;
  let padding = 0;
  for await (const c of chunks) {
    if (ended) {
      checkPadding(c, (padding += c.length));
      continue;
    }
    buf = buf.length === 0 ? Buffer.from(c) : Buffer.concat([buf, c]);
    if (!started) {
      if (buf.length < MAGIC.length) continue;
      if (!buf.subarray(0, MAGIC.length).equals(MAGIC)) throw errSnapshot('not a capstan snapshot (bad magic)');
      crc = crc32c(MAGIC);
      buf = buf.subarray(MAGIC.length);
      started = true;
    }
    const batch: Array<[Buffer, Buffer]> = [];
    let off = 0;
    while (buf.length - off >= 8) {
      const kl = buf.readUInt32BE(off);
      if (kl === TRAILER) {
        if (buf.readUInt32BE(off + 4) !== crc >>> 0) throw errSnapshot('checksum mismatch');
        const rest = buf.subarray(off + 8);
        checkPadding(rest, (padding += rest.length));
        ended = true;
        off = buf.length;
        break;
      }
      const vl = buf.readUInt32BE(off + 4);
      if (buf.length - off < 8 + kl + vl) break;
      const k = Buffer.from(buf.subarray(off + 8, off + 8 + kl));
      const v = Buffer.from(buf.subarray(off + 8 + kl, off + 8 + kl + vl));
      crc = crc32c(v, crc32c(k, crc32c(buf.subarray(off, off + 8), crc)));
      batch.push([k, v]);
      off += 8 + kl + vl;
    }
    buf = buf.subarray(off);
    if (batch.length > 0) yield batch;
  }
  if (!ended) throw errSnapshot(started ? 'truncated (no trailer)' : 'empty');
}

/** After the trailer only alignment zeros may follow. */
function checkPadding(bytes: Uint8Array, total: number): void {
  if (total >= SNAPSHOT_ALIGN_BYTES || bytes.some((b) => b !== 0)) throw errSnapshot('bytes after the trailer');
}
