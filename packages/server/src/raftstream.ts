/**
 * Raft message streams between members on plain TCP (or TLS), as etcd's rafthttp streams are its
 * own framing rather than gRPC: one connection per direction, dialed by the sender, opened with a
 * preface the peer listener routes by (listen.ts), then frames of [length u32 BE][payload].
 *
 * A gRPC client stream cost about 53 us of CPU per message and receipt against about 30 us for
 * this framing (a ping-pong of 400-byte messages between two processes on the 2-core VM), and its
 * writes wait for the next turn of the event loop, where a socket write leaves at once.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { peerVerifyOptions, type TLSConfig } from './tls.js';

/** The first bytes a Raft stream sends. No HTTP/1 method and not HTTP/2's preface starts with "RA". */
export const RAFT_STREAM_PREFACE = Buffer.from('RAFT capstan/1\n');
/** What listen.ts sniffs to hand a connection to the Raft stream. */
export const RAFT_STREAM_SNIFF = RAFT_STREAM_PREFACE.subarray(0, 2);
export const FRAME_HEADER_BYTES = 4;
const EMPTY = Buffer.alloc(0);

/** Fills in the length header of a frame whose payload was written after FRAME_HEADER_BYTES reserved bytes. */
export function sealFrame(frame: Buffer): Buffer {
  frame.writeUInt32BE(frame.length - FRAME_HEADER_BYTES, 0);
  return frame;
}

export class FrameError extends Error {
  override readonly name = 'FrameError';
}

/**
 * Splits a byte stream into frames: the preface first, then each payload whole, however the
 * chunks fall. A wrong preface or a frame over `maxFrameBytes` is an error: the connection is not
 * a Raft stream, or not one we can follow, and is closed.
 */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private prefaceSeen = false;

  constructor(private readonly maxFrameBytes: number) {}

  /** Adds a chunk; returns the payloads it completed, or an error. */
  push(chunk: Buffer): Buffer[] | FrameError {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const out: Buffer[] = [];
    if (!this.prefaceSeen) {
      if (this.buffered < RAFT_STREAM_PREFACE.length) return out;
      const head = this.take(RAFT_STREAM_PREFACE.length);
      if (!head.equals(RAFT_STREAM_PREFACE)) return new FrameError('not a Raft stream: wrong preface');
      this.prefaceSeen = true;
    }
    while (this.buffered >= FRAME_HEADER_BYTES) {
      const len = this.peekLength();
      if (len > this.maxFrameBytes) return new FrameError(`frame of ${len} bytes is over the limit of ${this.maxFrameBytes}`);
      if (this.buffered < FRAME_HEADER_BYTES + len) break;
      this.take(FRAME_HEADER_BYTES);
      out.push(this.take(len));
    }
    return out;
  }

  private peekLength(): number {
    if (this.chunks[0]!.length < FRAME_HEADER_BYTES) this.chunks = [Buffer.concat(this.chunks, this.buffered)];
    return this.chunks[0]!.readUInt32BE(0);
  }

  /** Removes and returns the next n buffered bytes (n <= buffered). */
  private take(n: number): Buffer {
    if (n === 0) return EMPTY;
    const first = this.chunks[0]!;
    let out: Buffer;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      const all = Buffer.concat(this.chunks, this.buffered);
      out = all.subarray(0, n);
      this.chunks = all.length > n ? [all.subarray(n)] : [];
    }
    this.buffered -= n;
    return out;
  }
}

/**
 * Dials a peer's Raft stream at `url` (http or https): TLS with this side's certificate when the
 * URL is https, verifying the peer's as the gRPC peer channels do. Writes may start at once: they
 * are queued until the connection is up.
 */
export function dialRaftStream(url: string, tls: TLSConfig | undefined): Socket {
  const u = new URL(url);
  const host = u.hostname.replace(/^\[|\]$/g, '');
  const port = Number(u.port);
  const socket =
    u.protocol === 'https:'
      ? tlsConnect({
          host,
          port,
          ...(tls?.ca !== undefined ? { ca: tls.ca } : {}),
          ...(tls !== undefined ? { cert: tls.cert, key: tls.key } : {}),
          ...peerVerifyOptions(tls),
        })
      : netConnect({ host, port });
  socket.setNoDelay(true);
  socket.write(RAFT_STREAM_PREFACE);
  return socket;
}
