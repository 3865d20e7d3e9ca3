// Snapshot files in `snap/`: the state machine's image plus the Raft metadata it was taken at.
//
// Layout: [magic 8 bytes "CAPSNAP1"][meta length u32 LE][data length u64 LE][crc32c u32 LE]
//         [meta: msgpack [index, term, voters, learners]][data]
// The CRC covers meta then data. A file is written as `<name>.tmp`, fsynced, renamed into place
// and the directory fsynced: a crash leaves either no file or a whole one.
import * as path from 'node:path';
import { Packr, Unpackr } from 'msgpackr';
import type { Snapshot, SnapshotMetadata } from '@capstan/raft';
import type { FileSystem } from './fs.js';
import { crc32c } from './crc32c.js';
import { SnapshotCorruptError, WalError, ioError } from './errors.js';

const MAGIC = Buffer.from('CAPSNAP1', 'latin1');
const HEADER_BYTES = MAGIC.length + 4 + 8 + 4;
const SUFFIX = '.snap';
const TMP_SUFFIX = '.snap.tmp';
const BROKEN_SUFFIX = '.broken';
const NAME_RE = /^([0-9a-f]{16})-([0-9a-f]{16})\.snap$/;
/** etcd's --max-snapshots default. */
export const DEFAULT_MAX_SNAPSHOT_FILES = 5;

const packr = new Packr({ useRecords: false });
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true });

export interface SnapshotFileName {
  readonly name: string;
  readonly term: number;
  readonly index: number;
}

export function snapshotFileName(term: number, index: number): string {
  return `${hex16(term)}-${hex16(index)}${SUFFIX}`;
}

export function parseSnapshotFileName(name: string): SnapshotFileName | undefined {
  const m = NAME_RE.exec(name);
  if (m === null) return undefined;
  return { name, term: parseInt(m[1]!, 16), index: parseInt(m[2]!, 16) };
}

/** Snapshot files in `dir`, newest (highest index) first. */
export async function listSnapshotFiles(fs: FileSystem, dir: string): Promise<SnapshotFileName[]> {
  const names = (await fs.readdir(dir)).map(parseSnapshotFileName).filter((n) => n !== undefined);
  return names.sort((a, b) => b.index - a.index || b.term - a.term);
}

export async function removeTempSnapshots(fs: FileSystem, dir: string): Promise<void> {
  for (const n of await fs.readdir(dir)) if (n.endsWith(TMP_SUFFIX)) await fs.unlink(path.join(dir, n));
}

export async function writeSnapshotFile(fs: FileSystem, dir: string, snap: Snapshot): Promise<string> {
  const { index, term, confState } = snap.metadata;
  const meta = Buffer.from(packr.pack([index, term, [...confState.voters], [...confState.learners]]));
  const header = Buffer.alloc(HEADER_BYTES);
  MAGIC.copy(header, 0);
  header.writeUInt32LE(meta.length, MAGIC.length);
  header.writeBigUInt64LE(BigInt(snap.data.byteLength), MAGIC.length + 4);
  header.writeUInt32LE(crc32c(snap.data, crc32c(meta)), MAGIC.length + 12);
  const head = Buffer.concat([header, meta]);

  const name = snapshotFileName(term, index);
  const final = path.join(dir, name);
  const tmp = final + '.tmp';
  let op = 'create';
  try {
    const f = await fs.open(tmp, 'create');
    try {
      op = 'write';
      await f.write(head, 0, head.length, 0);
      await f.write(snap.data, 0, snap.data.byteLength, head.length);
      op = 'fsync';
      await f.sync();
    } finally {
      await f.close();
    }
    op = 'rename';
    await fs.rename(tmp, final);
    op = 'directory fsync';
    await fs.syncDir(dir);
  } catch (e) {
    throw ioError(`snapshot ${op}`, tmp, e);
  }
  return final;
}

export async function readSnapshotFile(fs: FileSystem, file: string): Promise<Snapshot> {
  let buf: Buffer;
  try {
    buf = await fs.readFile(file);
  } catch (e) {
    throw ioError('read', file, e);
  }
  if (buf.length < HEADER_BYTES || !buf.subarray(0, MAGIC.length).equals(MAGIC)) {
    throw new SnapshotCorruptError(file, 'bad magic or short header');
  }
  const metaLen = buf.readUInt32LE(MAGIC.length);
  const dataLen = Number(buf.readBigUInt64LE(MAGIC.length + 4));
  const stored = buf.readUInt32LE(MAGIC.length + 12);
  if (HEADER_BYTES + metaLen + dataLen !== buf.length) {
    throw new SnapshotCorruptError(file, `length ${buf.length} does not match header (${metaLen} + ${dataLen})`);
  }
  const meta = buf.subarray(HEADER_BYTES, HEADER_BYTES + metaLen);
  const data = buf.subarray(HEADER_BYTES + metaLen);
  if (crc32c(data, crc32c(meta)) !== stored) throw new SnapshotCorruptError(file, 'crc mismatch');
  let v: unknown;
  try {
    v = unpackr.unpack(meta);
  } catch {
    throw new SnapshotCorruptError(file, 'undecodable metadata');
  }
  const [index, term, voters, learners] = Array.isArray(v) ? v : [];
  if (typeof index !== 'number' || typeof term !== 'number' || !Array.isArray(voters) || !Array.isArray(learners)) {
    throw new SnapshotCorruptError(file, 'malformed metadata');
  }
  const metadata: SnapshotMetadata = { index, term, confState: { voters, learners } };
  return { metadata, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}

/** Moves an unreadable snapshot aside (as etcd does) so it is neither loaded nor counted again. */
export async function quarantineSnapshotFile(fs: FileSystem, file: string): Promise<void> {
  await fs.rename(file, file + BROKEN_SUFFIX);
}

/**
 * Deletes all but the newest `keep` snapshot files at or before index `upTo` (the log's marker).
 * Older ones can no longer be replayed from anyway.
 */
export async function purgeSnapshotFiles(fs: FileSystem, dir: string, keep: number, upTo: number): Promise<string[]> {
  // A file past the log's marker may be one whose marker is still being written: not counted, not removed.
  const files = (await listSnapshotFiles(fs, dir)).filter((f) => f.index <= upTo);
  const removed: string[] = [];
  for (const f of files.slice(Math.max(1, keep))) {
    const p = path.join(dir, f.name);
    try {
      await fs.unlink(p);
      removed.push(p);
    } catch (e) {
      throw e instanceof WalError ? e : ioError('unlink', p, e);
    }
  }
  return removed;
}

function hex16(n: number): string {
  return n.toString(16).padStart(16, '0');
}
