/**
 * The bytes of a proposal: what a normal Raft entry carries, written once by the member that
 * proposes it and read by every member as it applies it (and again after a restart, from the WAL).
 *
 * A put, by far the most common request, is written field by field: as msgpack, its field names
 * cost more to pack and unpack than the rest of the request (a leader packing proposals was the
 * largest part of its msgpack time under sequential puts, and every member unpacks each entry).
 * Everything else stays msgpack. The first byte tells them apart: PUT_PROPOSAL (0xc1) is the one
 * byte msgpack never uses, so entries written before this format still read.
 *
 *   put = 0xc1 | proposer f64 | incarnation f64 | request number f64 | authRevision f64
 *         | username (length u32, UTF-8) | flags u8 | lease i64 | key (length u32, bytes)
 *         | value (length u32, bytes)
 *
 * A field left out of the request (no value, no lease, a flag unset) is left out of what is read,
 * so both forms give the state machine the same request.
 */
import type { ApplyRequest, AuthHeader, PutRequest } from '@capstan/mvcc';
import type { NodeId } from '@capstan/raft';
import type { AlarmType } from './api.js';
import { packr } from './peercodec.js';

/**
 * Who proposed an entry and which of its waiters to wake: the member, its incarnation (a restarted
 * member numbers its requests from 1 again, while entries its previous life proposed may still be
 * committed and applied after the restart: without it they woke the new waiter of the same number
 * and answered it with their result), and the request number.
 */
export interface ProposerRef {
  o: NodeId;
  g: number;
  i: number;
}

/** What a proposed entry carries: who proposed it (to find the waiter) and the request. */
export interface Proposal extends ProposerRef {
  /** A request for the state machine... */
  r?: ApplyRequest;
  /** ...or a member publishing its name and client URLs (etcd's attribute publish)... */
  a?: { id: bigint; name: string; clientURLs: string[] };
  /** ...or new peer URLs for a member (etcd's MemberUpdate)... */
  u?: { id: bigint; peerURLs: string[] };
  /** ...or an alarm raised or disarmed. */
  al?: { action: 'activate' | 'deactivate'; memberID: bigint; alarm: AlarmType };
}

const PUT_PROPOSAL = 0xc1;
/** The tag, proposer, incarnation, request number, authRevision and the username's length. */
const HEAD_BYTES = 1 + 4 * 8 + 4;
/** After the username: flags, lease and the key's length... */
const MIDDLE_BYTES = 1 + 8 + 4;
/** ...and after the key, the value's length. */
const LENGTH_BYTES = 4;
const FIXED_BYTES = HEAD_BYTES + MIDDLE_BYTES + LENGTH_BYTES;

const enum PutFlag {
  PrevKv = 1,
  IgnoreValue = 2,
  IgnoreLease = 4,
  HasValue = 8,
  HasLease = 16,
  /** prevKv, ignoreValue, ignoreLease given as false rather than left out. */
  PrevKvSet = 32,
  IgnoreValueSet = 64,
  IgnoreLeaseSet = 128,
}

export class ProposalError extends Error {
  override readonly name = 'ProposalError';
}

/** A put with nothing but a put and its header goes field by field. */
function plainPut(p: Proposal): p is Proposal & { r: { put: PutRequest; header: AuthHeader } } {
  const r = p.r;
  if (r === undefined || r.put === undefined || r.header === undefined || p.a !== undefined || p.u !== undefined || p.al !== undefined) return false;
  for (const k in r) if (k !== 'put' && k !== 'header' && r[k as keyof ApplyRequest] !== undefined) return false;
  return true;
}

export function encodeProposal(p: Proposal): Buffer {
  if (!plainPut(p)) return packr.pack(p);
  const put = p.r.put;
  const header = p.r.header;
  const user = Buffer.byteLength(header.username);
  const value = put.value;
  const buf = Buffer.allocUnsafe(FIXED_BYTES + user + put.key.length + (value?.length ?? 0));
  let off = 0;
  buf[off++] = PUT_PROPOSAL;
  off = buf.writeDoubleLE(p.o, off);
  off = buf.writeDoubleLE(p.g, off);
  off = buf.writeDoubleLE(p.i, off);
  off = buf.writeDoubleLE(header.authRevision, off);
  off = buf.writeUInt32LE(user, off);
  off += buf.write(header.username, off);
  buf[off++] =
    (put.prevKv === true ? PutFlag.PrevKv : 0) |
    (put.ignoreValue === true ? PutFlag.IgnoreValue : 0) |
    (put.ignoreLease === true ? PutFlag.IgnoreLease : 0) |
    (value !== undefined ? PutFlag.HasValue : 0) |
    (put.lease !== undefined ? PutFlag.HasLease : 0) |
    (put.prevKv !== undefined ? PutFlag.PrevKvSet : 0) |
    (put.ignoreValue !== undefined ? PutFlag.IgnoreValueSet : 0) |
    (put.ignoreLease !== undefined ? PutFlag.IgnoreLeaseSet : 0);
  off = buf.writeBigInt64LE(put.lease ?? 0n, off);
  off = buf.writeUInt32LE(put.key.length, off);
  buf.set(put.key, off);
  off += put.key.length;
  off = buf.writeUInt32LE(value?.length ?? 0, off);
  if (value !== undefined) buf.set(value, off);
  return buf;
}

/**
 * The proposal in an entry's data. A put's key and value are views into `data` (the entry's own
 * copy, server `detached`), as the store copies what it keeps.
 */
export function decodeProposal(data: Uint8Array): Proposal | ProposalError {
  if (data[0] !== PUT_PROPOSAL) {
    try {
      // A view of its own: msgpackr hangs a DataView on the buffer it reads, and the entry's stays
      // in the in-memory log until a snapshot compacts it.
      return packr.unpack(data.subarray()) as Proposal;
    } catch (err) {
      return new ProposalError(`proposal does not decode: ${(err as Error).message}`);
    }
  }
  const buf = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (buf.length < FIXED_BYTES) return new ProposalError(`put proposal of ${buf.length} bytes`);
  const o = buf.readDoubleLE(1);
  const g = buf.readDoubleLE(9);
  const i = buf.readDoubleLE(17);
  const authRevision = buf.readDoubleLE(25);
  const userLength = buf.readUInt32LE(33);
  let off = HEAD_BYTES;
  if (off + userLength + MIDDLE_BYTES + LENGTH_BYTES > buf.length) return new ProposalError('put proposal cut short');
  const username = buf.toString('utf8', off, off + userLength);
  off += userLength;
  const flags = buf[off]!;
  const lease = buf.readBigInt64LE(off + 1);
  const keyLength = buf.readUInt32LE(off + 9);
  off += MIDDLE_BYTES;
  if (off + keyLength + LENGTH_BYTES > buf.length) return new ProposalError('put proposal cut short');
  const key = buf.subarray(off, off + keyLength);
  off += keyLength;
  const valueLength = buf.readUInt32LE(off);
  off += LENGTH_BYTES;
  if (off + valueLength !== buf.length) return new ProposalError('put proposal of the wrong length');
  const put: PutRequest = { key };
  if ((flags & PutFlag.HasValue) !== 0) put.value = buf.subarray(off, off + valueLength);
  if ((flags & PutFlag.HasLease) !== 0) put.lease = lease;
  if ((flags & PutFlag.PrevKvSet) !== 0) put.prevKv = (flags & PutFlag.PrevKv) !== 0;
  if ((flags & PutFlag.IgnoreValueSet) !== 0) put.ignoreValue = (flags & PutFlag.IgnoreValue) !== 0;
  if ((flags & PutFlag.IgnoreLeaseSet) !== 0) put.ignoreLease = (flags & PutFlag.IgnoreLease) !== 0;
  return { o, g, i, r: { header: { username, authRevision }, put } };
}
