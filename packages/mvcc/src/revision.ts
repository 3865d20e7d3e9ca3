/**
 * Revisions and how they are laid out as LevelDB keys. Like etcd's key bucket, a record's key is its
 * revision, main and sub as 8-byte big-endian integers joined by '_' (so byte order is revision
 * order), with a trailing 't' on tombstones. Everything sits in one LevelDB under a one-byte space
 * prefix, so a single atomic batch can span records, meta and leases.
 */

export interface Revision {
  main: number;
  sub: number;
}

export const SPACE_KEYS = 0x6b; // 'k'
export const SPACE_META = 0x6d; // 'm'
export const SPACE_LEASES = 0x6c; // 'l'
const REV_SEPARATOR = 0x5f; // '_'
const TOMBSTONE_MARK = 0x74; // 't'
const TWO_32 = 2 ** 32;

/** Space byte + main + separator + sub. */
export const REV_KEY_BYTES = 1 + 8 + 1 + 8;

export function compareRev(aMain: number, aSub: number, bMain: number, bSub: number): number {
  return aMain !== bMain ? aMain - bMain : aSub - bSub;
}

export function writeU64(buf: Buffer, offset: number, n: number): void {
  buf.writeUInt32BE(Math.floor(n / TWO_32), offset);
  buf.writeUInt32BE(n >>> 0, offset + 4);
}

export function readU64(buf: Uint8Array, offset: number): number {
  const b = buf as Buffer;
  return b.readUInt32BE(offset) * TWO_32 + b.readUInt32BE(offset + 4);
}

export function revKey(main: number, sub: number, tombstone = false): Buffer {
  const key = Buffer.allocUnsafe(REV_KEY_BYTES + (tombstone ? 1 : 0));
  key[0] = SPACE_KEYS;
  writeU64(key, 1, main);
  key[9] = REV_SEPARATOR;
  writeU64(key, 10, sub);
  if (tombstone) key[REV_KEY_BYTES] = TOMBSTONE_MARK;
  return key;
}

export function revKeyMain(key: Uint8Array): number {
  return readU64(key, 1);
}

export function revKeySub(key: Uint8Array): number {
  return readU64(key, 10);
}

export function isTombstoneKey(key: Uint8Array): boolean {
  return key.length === REV_KEY_BYTES + 1 && key[REV_KEY_BYTES] === TOMBSTONE_MARK;
}

/** The first key of every record at or after main revision `main`. */
export function revKeyLowerBound(main: number): Buffer {
  return revKey(main, 0);
}

export function metaKey(name: string): Buffer {
  return Buffer.concat([Buffer.of(SPACE_META), Buffer.from(name, 'latin1')]);
}

export function leaseKey(id: bigint): Buffer {
  const key = Buffer.allocUnsafe(9);
  key[0] = SPACE_LEASES;
  key.writeBigInt64BE(id, 1);
  return key;
}

export function spaceBounds(space: number): { gte: Buffer; lt: Buffer } {
  return { gte: Buffer.of(space), lt: Buffer.of(space + 1) };
}
