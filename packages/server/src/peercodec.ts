/**
 * The bytes of a batch of Raft messages on a peer's Raft stream (raftstream.ts carries the frames).
 *
 * Every put crosses this twice on its critical path (the leader's append, the follower's answer),
 * and msgpack spent most of its time on the field names: in a profile of sequential puts it was
 * the largest share of a follower's JavaScript, most of it decoding appends. Here each message is
 * a kind byte and its fields at fixed places, so a decode reads numbers and slices, and an encode
 * writes straight into the frame. A batch holding a MsgSnap (which carries a snapshot's metadata)
 * stays msgpack; the first byte tells them apart, since BINARY_BATCH (0xc1) is the one byte msgpack
 * never uses.
 *
 *   batch    = 0xc1 | count u32 | message*
 *   message  = kind u8 | from f64 | to f64 | term f64 | fields of the kind (KIND_FIELDS)
 *   entries  = count u32 | (term f64 | index f64 | type u8 | bytes)*      (a MsgProp's: no term, index)
 *   bytes    = length u32 | the bytes
 *
 * Numbers are float64: every Raft number here is a JavaScript number, and float64 holds each exactly.
 */
import { EntryType, MessageType, type Entry, type Message, type ProposedEntry } from '@capstan/raft';
import { Packr } from 'msgpackr';

/** msgpack for what is not binary here, and for the rest of the peer protocol (peer.ts). */
export const packr = new Packr({ useRecords: false, int64AsType: 'bigint', moreTypes: false });

const BINARY_BATCH = 0xc1;
const ENVELOPE_BYTES = 1 + 3 * 8;

/** The kinds in the order of their byte on the wire: append only, a byte's meaning never changes. */
const KINDS = [
  MessageType.App,
  MessageType.AppResp,
  MessageType.Vote,
  MessageType.PreVote,
  MessageType.VoteResp,
  MessageType.PreVoteResp,
  MessageType.Heartbeat,
  MessageType.HeartbeatResp,
  MessageType.Prop,
  MessageType.ReadIndex,
  MessageType.ReadIndexResp,
  MessageType.TransferLeader,
  MessageType.TimeoutNow,
] as const;
type BinaryType = (typeof KINDS)[number];
const KIND_BYTE = new Map<MessageType, number>(KINDS.map((t, i) => [t, i]));

export class PeerCodecError extends Error {
  override readonly name = 'PeerCodecError';
}

/** The size of a batch's encoding, or -1 when it must go as msgpack. */
function binarySize(msgs: readonly Message[]): number {
  let n = 1 + 4;
  for (const m of msgs) {
    n += ENVELOPE_BYTES;
    switch (m.type) {
      case MessageType.App:
        n += 3 * 8 + 4;
        for (const e of m.entries) n += 8 + 8 + 1 + 4 + e.data.length;
        break;
      case MessageType.AppResp:
        n += 8 + 1 + 8 + 8;
        break;
      case MessageType.Vote:
      case MessageType.PreVote:
        n += 8 + 8 + 1;
        break;
      case MessageType.VoteResp:
      case MessageType.PreVoteResp:
        n += 1;
        break;
      case MessageType.Heartbeat:
        n += 8 + 8;
        break;
      case MessageType.HeartbeatResp:
        n += 8;
        break;
      case MessageType.Prop:
        n += 4;
        for (const e of m.entries) n += 1 + 4 + e.data.length;
        break;
      case MessageType.ReadIndex:
        n += 4 + m.context.length;
        break;
      case MessageType.ReadIndexResp:
        n += 8 + 4 + m.context.length;
        break;
      case MessageType.TransferLeader:
      case MessageType.TimeoutNow:
        break;
      default:
        return -1;
    }
  }
  return n;
}

/** A batch's bytes, after `reserve` bytes left for the caller (the frame's length header). */
export function encodeMessages(msgs: readonly Message[], reserve = 0): Buffer {
  const size = binarySize(msgs);
  if (size < 0) {
    const packed = packr.pack(msgs);
    const out = Buffer.allocUnsafe(reserve + packed.length);
    packed.copy(out, reserve);
    return out;
  }
  const w = new Writer(Buffer.allocUnsafe(reserve + size), reserve);
  w.u8(BINARY_BATCH);
  w.u32(msgs.length);
  for (const m of msgs) {
    w.u8(KIND_BYTE.get(m.type)!);
    w.f64(m.from);
    w.f64(m.to);
    w.f64(m.term);
    switch (m.type) {
      case MessageType.App:
        w.f64(m.index);
        w.f64(m.logTerm);
        w.f64(m.commit);
        w.u32(m.entries.length);
        for (const e of m.entries) {
          w.f64(e.term);
          w.f64(e.index);
          w.u8(e.type);
          w.bytes(e.data);
        }
        break;
      case MessageType.AppResp:
        w.f64(m.index);
        w.u8(m.reject ? 1 : 0);
        w.f64(m.rejectHint);
        w.f64(m.logTerm);
        break;
      case MessageType.Vote:
      case MessageType.PreVote:
        w.f64(m.index);
        w.f64(m.logTerm);
        w.u8(m.transfer ? 1 : 0);
        break;
      case MessageType.VoteResp:
      case MessageType.PreVoteResp:
        w.u8(m.reject ? 1 : 0);
        break;
      case MessageType.Heartbeat:
        w.f64(m.commit);
        w.f64(m.readRound);
        break;
      case MessageType.HeartbeatResp:
        w.f64(m.readRound);
        break;
      case MessageType.Prop:
        w.u32(m.entries.length);
        for (const e of m.entries) {
          w.u8(e.type);
          w.bytes(e.data);
        }
        break;
      case MessageType.ReadIndex:
        w.bytes(m.context);
        break;
      case MessageType.ReadIndexResp:
        w.f64(m.index);
        w.bytes(m.context);
        break;
      default:
        break;
    }
  }
  return w.buf;
}

/**
 * The messages of a batch. Byte slices (entries' data, contexts) are views into `payload`, as
 * msgpack's were: whoever keeps one copies it (the member's log does, server `detached`).
 */
export function decodeMessages(payload: Buffer): Message[] | PeerCodecError {
  if (payload.length === 0) return new PeerCodecError('empty batch');
  if (payload[0] !== BINARY_BATCH) {
    try {
      const msgs: unknown = packr.unpack(payload);
      return Array.isArray(msgs) ? (msgs as Message[]) : new PeerCodecError('not a batch');
    } catch (err) {
      return new PeerCodecError(`msgpack batch: ${(err as Error).message}`);
    }
  }
  const r = new Reader(payload, 1);
  try {
    const count = r.u32();
    // Each message takes at least its envelope: a count larger than that is garbage, not a reason to allocate.
    if (count * ENVELOPE_BYTES > payload.length) return new PeerCodecError(`batch of ${count} messages in ${payload.length} bytes`);
    const out: Message[] = [];
    for (let i = 0; i < count; i++) out.push(readMessage(r));
    if (r.off !== payload.length) return new PeerCodecError(`${payload.length - r.off} bytes after the last message`);
    return out;
  } catch (err) {
    if (err instanceof PeerCodecError) return err;
    throw err;
  }
}

function readMessage(r: Reader): Message {
  const kind = r.u8();
  const type: BinaryType | undefined = KINDS[kind];
  if (type === undefined) throw new PeerCodecError(`unknown message kind ${kind}`);
  const from = r.f64();
  const to = r.f64();
  const term = r.f64();
  switch (type) {
    case MessageType.App: {
      const index = r.f64();
      const logTerm = r.f64();
      const commit = r.f64();
      const n = r.count(8 + 8 + 1 + 4);
      const entries: Entry[] = [];
      for (let i = 0; i < n; i++) entries.push({ term: r.f64(), index: r.f64(), type: r.entryType(), data: r.bytes() });
      return { type, from, to, term, index, logTerm, entries, commit };
    }
    case MessageType.AppResp:
      return { type, from, to, term, index: r.f64(), reject: r.u8() !== 0, rejectHint: r.f64(), logTerm: r.f64() };
    case MessageType.Vote:
    case MessageType.PreVote:
      return { type, from, to, term, index: r.f64(), logTerm: r.f64(), transfer: r.u8() !== 0 };
    case MessageType.VoteResp:
    case MessageType.PreVoteResp:
      return { type, from, to, term, reject: r.u8() !== 0 };
    case MessageType.Heartbeat:
      return { type, from, to, term, commit: r.f64(), readRound: r.f64() };
    case MessageType.HeartbeatResp:
      return { type, from, to, term, readRound: r.f64() };
    case MessageType.Prop: {
      const n = r.count(1 + 4);
      const entries: ProposedEntry[] = [];
      for (let i = 0; i < n; i++) entries.push({ type: r.entryType(), data: r.bytes() });
      return { type, from, to, term, entries };
    }
    case MessageType.ReadIndex:
      return { type, from, to, term, context: r.bytes() };
    case MessageType.ReadIndexResp:
      return { type, from, to, term, index: r.f64(), context: r.bytes() };
    case MessageType.TransferLeader:
    case MessageType.TimeoutNow:
      return { type, from, to, term };
  }
}

class Writer {
  constructor(
    readonly buf: Buffer,
    private off: number,
  ) {}

  u8(v: number): void {
    this.buf[this.off++] = v;
  }

  u32(v: number): void {
    this.buf.writeUInt32LE(v, this.off);
    this.off += 4;
  }

  f64(v: number): void {
    this.buf.writeDoubleLE(v, this.off);
    this.off += 8;
  }

  bytes(b: Uint8Array): void {
    this.u32(b.length);
    this.buf.set(b, this.off);
    this.off += b.length;
  }
}

/** Reads with bounds checked: a short or garbled batch is a PeerCodecError, never a view past its end. */
class Reader {
  constructor(
    private readonly buf: Buffer,
    public off: number,
  ) {}

  private need(n: number): void {
    if (this.off + n > this.buf.length) throw new PeerCodecError(`batch cut short at byte ${this.off}`);
  }

  u8(): number {
    this.need(1);
    return this.buf[this.off++]!;
  }

  u32(): number {
    this.need(4);
    const v = this.buf.readUInt32LE(this.off);
    this.off += 4;
    return v;
  }

  f64(): number {
    this.need(8);
    const v = this.buf.readDoubleLE(this.off);
    this.off += 8;
    return v;
  }

  entryType(): EntryType {
    const t = this.u8();
    if (t !== EntryType.Normal && t !== EntryType.ConfChange) throw new PeerCodecError(`unknown entry type ${t}`);
    return t;
  }

  /** A count of items of at least `itemBytes` each, checked against what is left. */
  count(itemBytes: number): number {
    const n = this.u32();
    if (n * itemBytes > this.buf.length - this.off) throw new PeerCodecError(`${n} items in ${this.buf.length - this.off} bytes`);
    return n;
  }

  bytes(): Buffer {
    const n = this.u32();
    this.need(n);
    const b = this.buf.subarray(this.off, this.off + n);
    this.off += n;
    return b;
  }
}
