/**
 * The server side of one HTTP/2 connection (RFC 9113), for the gRPC services on the client port.
 *
 * Why not node:http2: it hands every header value to JavaScript as an external string, which V8
 * allocates in old space and frees only in a full mark-compact, whose pause then grows with the
 * strings left since the last one (a leader's long pauses spent 10-38 ms on that table alone); and
 * each of its streams is a Duplex whose state outlived two scavenges under load, so it was most of
 * what a member promoted to old space. Here a stream is one small object, header strings come from
 * the HPACK table already decoded (hpack.ts), and everything a turn of the event loop sends leaves
 * in one socket write.
 *
 * What it does: the preface and SETTINGS exchange, HEADERS/CONTINUATION, DATA with flow control
 * both ways, RST_STREAM, PING, WINDOW_UPDATE, GOAWAY (both ways), and the connection and stream
 * errors of §5.4. What it does not: server push (never sent), priorities (read and ignored).
 */
import type { Duplex } from 'node:stream';
import {
  CLIENT_PREFACE,
  DEFAULT_HEADER_TABLE_BYTES,
  DEFAULT_MAX_FRAME_BYTES,
  DEFAULT_WINDOW_BYTES,
  ErrorCode,
  Flag,
  FRAME_HEADER_BYTES,
  FrameType,
  MAX_MAX_FRAME_BYTES,
  MAX_WINDOW_BYTES,
  Setting,
  frame,
  frameHeader,
  goAwayPayload,
  settingsPayload,
  u32,
} from './frames.js';
import { HeaderListTooLong, HpackDecoder, HpackEncoder, HpackError } from './hpack.js';

export interface H2Limits {
  /** SETTINGS_MAX_CONCURRENT_STREAMS: streams past it are refused (REFUSED_STREAM), the client retries. */
  readonly maxConcurrentStreams: number;
  /** SETTINGS_INITIAL_WINDOW_SIZE: what a client may send on a stream before we ask for more. */
  readonly streamWindowBytes: number;
  /** The connection's receive window, raised from 64 KiB with a WINDOW_UPDATE at the start. */
  readonly connectionWindowBytes: number;
  /** SETTINGS_MAX_HEADER_LIST_SIZE: a larger request header list is answered 431. */
  readonly maxHeaderListBytes: number;
  /** A stream's unsent bytes past which write() asks the caller to wait for onDrain. */
  readonly streamHighWaterBytes: number;
}

export const DEFAULT_H2_LIMITS: H2Limits = {
  maxConcurrentStreams: 4096,
  streamWindowBytes: 1 << 20,
  connectionWindowBytes: 16 << 20,
  maxHeaderListBytes: 64 << 10,
  streamHighWaterBytes: 64 << 10,
};

/** A header block (HEADERS and its CONTINUATIONs) past this many times maxHeaderListBytes ends the connection. */
const MAX_HEADER_BLOCK_FACTOR = 4;

/** A connection-level failure (§5.4.1): GOAWAY with the code, then the connection closes. */
class ConnectionError extends Error {
  override readonly name = 'ConnectionError';
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** One request stream, as the layer above sees it. Callbacks are set by the stream handler. */
export class H2Stream {
  /** The request's header list, flat: [name, value, name, value, ...]. */
  readonly headers: readonly string[];
  onData: ((chunk: Buffer) => void) | undefined;
  /** The client half-closed: no more data comes. */
  onEnd: (() => void) | undefined;
  /** The stream is over; `reset` when it ended by RST_STREAM or a lost connection, not by our end(). */
  onClose: ((reset: boolean) => void) | undefined;
  /** The unsent bytes fell below the high-water mark after write() returned false. */
  onDrain: (() => void) | undefined;

  /** Flow control: what we may still send, and what the client has sent that we have not granted back. */
  sendWindow: number;
  recvWindow: number;
  recvUnacked = 0;
  readonly pending: Buffer[] = [];
  pendingBytes = 0;
  /** end() was called: trailers (or an empty END_STREAM) follow the pending data. */
  ending = false;
  trailers: readonly string[] | undefined;
  headersSent = false;
  remoteEnded = false;
  localEnded = false;
  closed = false;
  /** We sent RST_STREAM: what the client still sends on it is dropped. */
  resetSent = false;
  wantsDrain = false;

  constructor(
    readonly id: number,
    headers: readonly string[],
    private readonly conn: H2ServerConnection,
    sendWindow: number,
    recvWindow: number,
  ) {
    this.headers = headers;
    this.sendWindow = sendWindow;
    this.recvWindow = recvWindow;
  }

  /** The first value of a header, by its lower-case name. */
  header(name: string): string | undefined {
    const h = this.headers;
    for (let i = 0; i < h.length; i += 2) if (h[i] === name) return h[i + 1];
    return undefined;
  }

  get socket(): Duplex {
    return this.conn.socket;
  }

  /** Sends the response headers; `endStream` makes them the whole answer (a trailers-only response). */
  respond(headers: readonly string[], endStream = false): void {
    if (this.closed || this.headersSent) return;
    this.headersSent = true;
    if (endStream) this.localEnded = true;
    this.conn.sendHeaders(this, headers, endStream);
    if (endStream) this.conn.localEnd(this);
  }

  /** Queues data; false when the caller should wait for onDrain before writing more. */
  write(data: Buffer): boolean {
    if (this.closed || this.ending) return false;
    if (data.length > 0) {
      this.pending.push(data);
      this.pendingBytes += data.length;
      this.conn.queueData(this);
    }
    if (this.pendingBytes >= this.conn.limits.streamHighWaterBytes || this.conn.socketBlocked) {
      this.wantsDrain = true;
      return false;
    }
    return true;
  }

  /** Ends our side after the pending data, with trailers if given. */
  end(trailers?: readonly string[]): void {
    if (this.closed || this.ending) return;
    this.ending = true;
    this.trailers = trailers;
    this.conn.queueData(this);
  }

  /** Abandons the stream (RST_STREAM). */
  reset(code: ErrorCode = ErrorCode.Cancel): void {
    if (this.closed) return;
    this.conn.resetStream(this, code, false);
  }
}

type StreamHandler = (stream: H2Stream) => void;

const enum Phase {
  Preface,
  Frames,
  Closed,
}

export class H2ServerConnection {
  private readonly streams = new Map<number, H2Stream>();
  /** Streams with data or an end waiting to go out, in the order they asked. */
  private readonly sending = new Set<H2Stream>();
  private readonly decoder: HpackDecoder;
  private readonly encoder = new HpackEncoder();
  private phase = Phase.Preface;
  private inBuf: Buffer | undefined;
  /** A header block spread over HEADERS and CONTINUATION frames (§6.10). */
  private continuation: { id: number; flags: number; parts: Buffer[]; bytes: number } | undefined;
  /**
   * Streams closed lately, and whether we reset them: frames the client had in flight to a stream we
   * reset are dropped; a new HEADERS on one both sides ended is STREAM_CLOSED (§5.1).
   */
  private readonly recentlyClosed = new Map<number, boolean>();
  private lastStreamId = 0;
  private goingAway = false;

  private peerInitialWindow = DEFAULT_WINDOW_BYTES;
  private peerMaxFrame = DEFAULT_MAX_FRAME_BYTES;
  private connSendWindow = DEFAULT_WINDOW_BYTES;
  private connRecvWindow: number;
  private connRecvUnacked = 0;

  private out: Buffer[] = [];
  private outBytes = 0;
  private flushScheduled = false;
  socketBlocked = false;
  private readonly closedPromise: Promise<void>;

  readonly limits: H2Limits;

  constructor(
    readonly socket: Duplex,
    private readonly onStream: StreamHandler,
    limits: H2Limits = DEFAULT_H2_LIMITS,
    /** An exception from our side (not a protocol error of the client's): the connection is closed, the process goes on. */
    private readonly onError?: (err: Error) => void,
  ) {
    // Windows start at 64 KiB for a client until it has our SETTINGS (§6.9.2): we never offer less.
    this.limits = {
      ...limits,
      streamWindowBytes: Math.max(DEFAULT_WINDOW_BYTES, limits.streamWindowBytes),
      connectionWindowBytes: Math.max(DEFAULT_WINDOW_BYTES, limits.connectionWindowBytes),
    };
    limits = this.limits;
    this.decoder = new HpackDecoder(DEFAULT_HEADER_TABLE_BYTES, limits.maxHeaderListBytes);
    this.connRecvWindow = limits.connectionWindowBytes;
    this.closedPromise = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('data', (chunk: Buffer) => this.onBytes(chunk));
    socket.on('drain', () => {
      this.socketBlocked = false;
      this.schedule();
    });
    socket.on('close', () => this.onSocketClose());
    socket.on('error', () => socket.destroy());
    socket.on('end', () => socket.end());
    // The server's preface: its SETTINGS, then room for the whole connection window.
    this.push(
      frame(
        FrameType.Settings,
        0,
        0,
        settingsPayload([
          [Setting.EnablePush, 0],
          [Setting.MaxConcurrentStreams, limits.maxConcurrentStreams],
          [Setting.InitialWindowSize, limits.streamWindowBytes],
          [Setting.MaxHeaderListSize, limits.maxHeaderListBytes],
        ]),
      ),
    );
    if (limits.connectionWindowBytes > DEFAULT_WINDOW_BYTES) {
      this.push(frame(FrameType.WindowUpdate, 0, 0, u32(limits.connectionWindowBytes - DEFAULT_WINDOW_BYTES)));
    }
    socket.resume();
  }

  /** Open streams. */
  get streamCount(): number {
    return this.streams.size;
  }

  /**
   * Graceful close: GOAWAY (no new streams), then the connection ends when its open streams have;
   * resolves when the socket is closed.
   */
  close(): Promise<void> {
    if (this.phase !== Phase.Closed && !this.goingAway) {
      this.goingAway = true;
      this.push(frame(FrameType.GoAway, 0, 0, goAwayPayload(this.lastStreamId, ErrorCode.NoError)));
      this.maybeFinish();
    }
    return this.closedPromise;
  }

  destroy(): void {
    this.socket.destroy();
  }

  // ------------------------------------------------------------ reading

  private onBytes(chunk: Buffer): void {
    if (this.phase === Phase.Closed) return;
    let buf = this.inBuf === undefined ? chunk : Buffer.concat([this.inBuf, chunk]);
    this.inBuf = undefined;
    try {
      if (this.phase === Phase.Preface) {
        if (buf.length < CLIENT_PREFACE.length) {
          if (!CLIENT_PREFACE.subarray(0, buf.length).equals(buf)) throw new ConnectionError(ErrorCode.ProtocolError, 'bad client preface');
          this.inBuf = buf;
          return;
        }
        if (!buf.subarray(0, CLIENT_PREFACE.length).equals(CLIENT_PREFACE)) throw new ConnectionError(ErrorCode.ProtocolError, 'bad client preface');
        buf = buf.subarray(CLIENT_PREFACE.length);
        this.phase = Phase.Frames;
      }
      let off = 0;
      while (this.phase === Phase.Frames && buf.length - off >= FRAME_HEADER_BYTES) {
        const len = (buf[off]! << 16) | (buf[off + 1]! << 8) | buf[off + 2]!;
        if (len > DEFAULT_MAX_FRAME_BYTES) throw new ConnectionError(ErrorCode.FrameSizeError, `frame of ${len} bytes`);
        if (buf.length - off < FRAME_HEADER_BYTES + len) break;
        const type = buf[off + 3]!;
        const flags = buf[off + 4]!;
        const id = buf.readUInt32BE(off + 5) & 0x7fffffff;
        const payload = buf.subarray(off + FRAME_HEADER_BYTES, off + FRAME_HEADER_BYTES + len);
        off += FRAME_HEADER_BYTES + len;
        this.onFrame(type, flags, id, payload);
      }
      if (off < buf.length && this.phase === Phase.Frames) this.inBuf = buf.subarray(off);
    } catch (err) {
      if (err instanceof ConnectionError) return this.fail(err.code, err.message);
      // A bug of ours, or a stream handler's: this connection ends, the member does not.
      this.onError?.(err instanceof Error ? err : new Error(String(err)));
      this.fail(ErrorCode.InternalError, 'internal error');
    }
  }

  private onFrame(type: number, flags: number, id: number, p: Buffer): void {
    if (this.continuation !== undefined && type !== FrameType.Continuation) {
      throw new ConnectionError(ErrorCode.ProtocolError, 'expected CONTINUATION');
    }
    switch (type) {
      case FrameType.Data:
        return this.onData(flags, id, p);
      case FrameType.Headers:
        return this.onHeaders(flags, id, p);
      case FrameType.Continuation:
        return this.onContinuation(flags, id, p);
      case FrameType.Priority:
        if (id === 0) throw new ConnectionError(ErrorCode.ProtocolError, 'PRIORITY on stream 0');
        return;
      case FrameType.RstStream: {
        if (id === 0) throw new ConnectionError(ErrorCode.ProtocolError, 'RST_STREAM on stream 0');
        if (p.length !== 4) throw new ConnectionError(ErrorCode.FrameSizeError, 'RST_STREAM length');
        if (id > this.lastStreamId) throw new ConnectionError(ErrorCode.ProtocolError, 'RST_STREAM on an idle stream');
        const s = this.streams.get(id);
        if (s !== undefined) this.closeStream(s, true);
        return;
      }
      case FrameType.Settings:
        return this.onSettings(flags, id, p);
      case FrameType.PushPromise:
        throw new ConnectionError(ErrorCode.ProtocolError, 'PUSH_PROMISE from a client');
      case FrameType.Ping:
        if (id !== 0) throw new ConnectionError(ErrorCode.ProtocolError, 'PING on a stream');
        if (p.length !== 8) throw new ConnectionError(ErrorCode.FrameSizeError, 'PING length');
        if ((flags & Flag.Ack) === 0) this.push(frame(FrameType.Ping, Flag.Ack, 0, p));
        return;
      case FrameType.GoAway:
        if (id !== 0) throw new ConnectionError(ErrorCode.ProtocolError, 'GOAWAY on a stream');
        // The client opens no more streams; the ones it has run to their end.
        this.goingAway = true;
        this.maybeFinish();
        return;
      case FrameType.WindowUpdate:
        return this.onWindowUpdate(id, p);
      default:
        // Unknown frame types are ignored (§4.1).
        return;
    }
  }

  private onSettings(flags: number, id: number, p: Buffer): void {
    if (id !== 0) throw new ConnectionError(ErrorCode.ProtocolError, 'SETTINGS on a stream');
    if ((flags & Flag.Ack) !== 0) {
      if (p.length !== 0) throw new ConnectionError(ErrorCode.FrameSizeError, 'SETTINGS ack with a payload');
      return;
    }
    if (p.length % 6 !== 0) throw new ConnectionError(ErrorCode.FrameSizeError, 'SETTINGS length');
    for (let i = 0; i < p.length; i += 6) {
      const key = p.readUInt16BE(i);
      const value = p.readUInt32BE(i + 2);
      switch (key) {
        case Setting.HeaderTableSize:
          this.encoder.setMaxTableSize(Math.min(value, DEFAULT_HEADER_TABLE_BYTES));
          break;
        case Setting.EnablePush:
          if (value > 1) throw new ConnectionError(ErrorCode.ProtocolError, 'ENABLE_PUSH');
          break;
        case Setting.InitialWindowSize: {
          if (value > MAX_WINDOW_BYTES) throw new ConnectionError(ErrorCode.FlowControlError, 'INITIAL_WINDOW_SIZE');
          const delta = value - this.peerInitialWindow;
          this.peerInitialWindow = value;
          for (const s of this.streams.values()) {
            s.sendWindow += delta;
            if (s.sendWindow > MAX_WINDOW_BYTES) throw new ConnectionError(ErrorCode.FlowControlError, 'stream window overflow');
          }
          break;
        }
        case Setting.MaxFrameSize:
          if (value < DEFAULT_MAX_FRAME_BYTES || value > MAX_MAX_FRAME_BYTES) throw new ConnectionError(ErrorCode.ProtocolError, 'MAX_FRAME_SIZE');
          this.peerMaxFrame = value;
          break;
        default:
          // MAX_CONCURRENT_STREAMS limits pushes, which we never send; the rest are advisory or unknown.
          break;
      }
    }
    this.push(frame(FrameType.Settings, Flag.Ack, 0));
    if (this.sending.size > 0) this.schedule();
  }

  private onWindowUpdate(id: number, p: Buffer): void {
    if (p.length !== 4) throw new ConnectionError(ErrorCode.FrameSizeError, 'WINDOW_UPDATE length');
    const inc = p.readUInt32BE(0) & 0x7fffffff;
    if (id === 0) {
      if (inc === 0) throw new ConnectionError(ErrorCode.ProtocolError, 'WINDOW_UPDATE of 0');
      this.connSendWindow += inc;
      if (this.connSendWindow > MAX_WINDOW_BYTES) throw new ConnectionError(ErrorCode.FlowControlError, 'connection window overflow');
    } else {
      if (id > this.lastStreamId) throw new ConnectionError(ErrorCode.ProtocolError, 'WINDOW_UPDATE on an idle stream');
      const s = this.streams.get(id);
      if (s === undefined) return;
      if (inc === 0) return this.resetStream(s, ErrorCode.ProtocolError, true);
      s.sendWindow += inc;
      if (s.sendWindow > MAX_WINDOW_BYTES) return this.resetStream(s, ErrorCode.FlowControlError, true);
    }
    if (this.sending.size > 0) this.schedule();
  }

  private onData(flags: number, id: number, p: Buffer): void {
    if (id === 0) throw new ConnectionError(ErrorCode.ProtocolError, 'DATA on stream 0');
    if (id > this.lastStreamId) throw new ConnectionError(ErrorCode.ProtocolError, 'DATA on an idle stream');
    // Flow control counts the whole payload, padding included (§6.9.1).
    if (p.length > this.connRecvWindow) throw new ConnectionError(ErrorCode.FlowControlError, 'connection window exceeded');
    this.connRecvWindow -= p.length;
    this.connRecvUnacked += p.length;
    if (this.connRecvUnacked >= this.limits.connectionWindowBytes / 2) {
      this.push(frame(FrameType.WindowUpdate, 0, 0, u32(this.connRecvUnacked)));
      this.connRecvWindow += this.connRecvUnacked;
      this.connRecvUnacked = 0;
    }
    const s = this.streams.get(id);
    // A stream we closed (answered early, or reset) may still get what was in flight: dropped.
    if (s === undefined) return;
    if (s.remoteEnded) return this.resetStream(s, ErrorCode.StreamClosed, true);
    if (p.length > s.recvWindow) return this.resetStream(s, ErrorCode.FlowControlError, true);
    s.recvWindow -= p.length;
    const data = unpad(flags, p);
    if (data === undefined) throw new ConnectionError(ErrorCode.ProtocolError, 'bad padding');
    const end = (flags & Flag.EndStream) !== 0;
    if (!end) {
      s.recvUnacked += p.length;
      if (s.recvUnacked >= this.limits.streamWindowBytes / 2) {
        this.push(frame(FrameType.WindowUpdate, 0, id, u32(s.recvUnacked)));
        s.recvWindow += s.recvUnacked;
        s.recvUnacked = 0;
      }
    }
    if (data.length > 0) s.onData?.(data);
    if (end && !s.closed) this.remoteEnd(s);
  }

  private onHeaders(flags: number, id: number, p: Buffer): void {
    if (id === 0 || id % 2 === 0) throw new ConnectionError(ErrorCode.ProtocolError, `HEADERS on stream ${id}`);
    let block = unpad(flags, p);
    if (block === undefined) throw new ConnectionError(ErrorCode.ProtocolError, 'bad padding');
    if ((flags & Flag.Priority) !== 0) {
      if (block.length < 5) throw new ConnectionError(ErrorCode.FrameSizeError, 'HEADERS priority');
      block = block.subarray(5);
    }
    if ((flags & Flag.EndHeaders) === 0) {
      this.continuation = { id, flags, parts: [block], bytes: block.length };
      return;
    }
    this.onHeaderBlock(id, flags, block);
  }

  private onContinuation(flags: number, id: number, p: Buffer): void {
    const c = this.continuation;
    if (c === undefined || c.id !== id) throw new ConnectionError(ErrorCode.ProtocolError, 'unexpected CONTINUATION');
    c.parts.push(p);
    c.bytes += p.length;
    // A header block that never ends is an attack (the CONTINUATION flood), not a request.
    if (c.bytes > MAX_HEADER_BLOCK_FACTOR * this.limits.maxHeaderListBytes) throw new ConnectionError(ErrorCode.EnhanceYourCalm, 'header block too large');
    if ((flags & Flag.EndHeaders) === 0) return;
    this.continuation = undefined;
    this.onHeaderBlock(id, c.flags, Buffer.concat(c.parts));
  }

  private onHeaderBlock(id: number, flags: number, block: Buffer): void {
    // Every block is decoded, even for a stream we refuse: the HPACK table must stay in step.
    const headers = this.decoder.decode(block);
    if (headers instanceof HpackError && !(headers instanceof HeaderListTooLong)) {
      throw new ConnectionError(ErrorCode.CompressionError, headers.message);
    }
    const end = (flags & Flag.EndStream) !== 0;
    const existing = this.streams.get(id);
    if (existing !== undefined) {
      // Trailers: they must end the stream (§8.1).
      if (!end || existing.remoteEnded) return this.resetStream(existing, ErrorCode.ProtocolError, true);
      return this.remoteEnd(existing);
    }
    if (id <= this.lastStreamId) {
      // Trailers the client sent before it saw our RST_STREAM: dropped. An id it never used: out of order (§5.1.1).
      const reset = this.recentlyClosed.get(id);
      if (reset === true) return;
      if (reset === false) throw new ConnectionError(ErrorCode.StreamClosed, `HEADERS on closed stream ${id}`);
      throw new ConnectionError(ErrorCode.ProtocolError, `HEADERS on stream ${id}, after stream ${this.lastStreamId}`);
    }
    this.lastStreamId = id;
    if (this.goingAway || this.streams.size >= this.limits.maxConcurrentStreams) {
      this.remember(id, true);
      this.push(frame(FrameType.RstStream, 0, id, u32(ErrorCode.RefusedStream)));
      this.schedule();
      return;
    }
    const s = new H2Stream(id, headers instanceof HpackError ? [] : headers, this, this.peerInitialWindow, this.limits.streamWindowBytes);
    this.streams.set(id, s);
    // A request without a body is half-closed at once: an answer given in onStream ends the stream.
    s.remoteEnded = end;
    if (headers instanceof HeaderListTooLong) {
      s.respond([':status', '431'], true);
      return;
    }
    this.onStream(s);
    if (end && !s.closed) this.remoteEnd(s);
  }

  private remoteEnd(s: H2Stream): void {
    s.remoteEnded = true;
    s.onEnd?.();
    if (s.localEnded) this.closeStream(s, false);
  }

  // ------------------------------------------------------------ writing

  sendHeaders(s: H2Stream, headers: readonly string[], endStream: boolean): void {
    const block = this.encoder.encode(headers);
    const flags = endStream ? Flag.EndStream : 0;
    if (block.length <= this.peerMaxFrame) {
      this.push(frame(FrameType.Headers, flags | Flag.EndHeaders, s.id, block));
      return;
    }
    for (let off = 0; off < block.length; off += this.peerMaxFrame) {
      const part = block.subarray(off, off + this.peerMaxFrame);
      const last = off + this.peerMaxFrame >= block.length;
      const type = off === 0 ? FrameType.Headers : FrameType.Continuation;
      this.push(frame(type, (off === 0 ? flags : 0) | (last ? Flag.EndHeaders : 0), s.id, part));
    }
  }

  queueData(s: H2Stream): void {
    this.sending.add(s);
    this.schedule();
  }

  /** Our side of the stream is done; a client still sending is told to stop (§8.1). */
  localEnd(s: H2Stream): void {
    s.localEnded = true;
    this.sending.delete(s);
    if (s.remoteEnded) return this.closeStream(s, false);
    this.resetStream(s, ErrorCode.NoError, false);
  }

  resetStream(s: H2Stream, code: ErrorCode, byPeerError: boolean): void {
    this.push(frame(FrameType.RstStream, 0, s.id, u32(code)));
    s.resetSent = true;
    this.closeStream(s, byPeerError || code !== ErrorCode.NoError);
  }

  private closeStream(s: H2Stream, reset: boolean): void {
    if (s.closed) return;
    s.closed = true;
    this.streams.delete(s.id);
    this.sending.delete(s);
    this.remember(s.id, s.resetSent || reset);
    // A stream that never got its recvUnacked back still used the connection's window: that was granted as it came.
    s.onClose?.(reset);
    this.maybeFinish();
  }

  private remember(id: number, reset: boolean): void {
    this.recentlyClosed.set(id, reset);
    // A Map iterates in insertion order: the first key is the oldest.
    if (this.recentlyClosed.size > 2 * this.limits.maxConcurrentStreams) this.recentlyClosed.delete(this.recentlyClosed.keys().next().value!);
  }

  private push(b: Buffer): void {
    this.append(b);
    this.schedule();
  }

  /** Adds to what the next flush writes (flush itself calls this: no new flush is scheduled). */
  private append(b: Buffer): void {
    this.out.push(b);
    this.outBytes += b.length;
  }

  private schedule(): void {
    if (this.flushScheduled || this.phase === Phase.Closed) return;
    this.flushScheduled = true;
    // After the current turn's callbacks and promise reactions: all the answers they made leave in one write.
    process.nextTick(() => this.flush());
  }

  /** Moves what the windows allow from streams to the output, then writes the output. */
  private flush(): void {
    this.flushScheduled = false;
    if (this.phase === Phase.Closed) return;
    if (!this.socketBlocked) this.pump();
    if (this.out.length === 0) return;
    const chunk = this.out.length === 1 ? this.out[0]! : Buffer.concat(this.out, this.outBytes);
    this.out = [];
    this.outBytes = 0;
    if (!this.socket.write(chunk)) this.socketBlocked = true;
  }

  private pump(): void {
    for (const s of this.sending) {
      let endSent = false;
      while (s.pendingBytes > 0 && this.connSendWindow > 0 && s.sendWindow > 0) {
        const head = s.pending[0]!;
        const n = Math.min(head.length, this.connSendWindow, s.sendWindow, this.peerMaxFrame);
        let chunk: Buffer;
        if (n === head.length) {
          chunk = head;
          s.pending.shift();
        } else {
          chunk = head.subarray(0, n);
          s.pending[0] = head.subarray(n);
        }
        s.pendingBytes -= n;
        s.sendWindow -= n;
        this.connSendWindow -= n;
        const last = s.pendingBytes === 0 && s.ending && s.trailers === undefined;
        if (last) endSent = true;
        this.append(frameHeader(FrameType.Data, last ? Flag.EndStream : 0, s.id, n));
        this.append(chunk);
      }
      if (s.pendingBytes > 0) {
        if (s.wantsDrain && s.pendingBytes < this.limits.streamHighWaterBytes) {
          s.wantsDrain = false;
          s.onDrain?.();
        }
        if (this.connSendWindow === 0) break;
        continue;
      }
      this.sending.delete(s);
      if (s.ending) {
        if (s.trailers !== undefined) this.sendHeaders(s, s.trailers, true);
        else if (!endSent) this.append(frame(FrameType.Data, Flag.EndStream, s.id));
        this.localEnd(s);
      } else if (s.wantsDrain) {
        s.wantsDrain = false;
        s.onDrain?.();
      }
    }
  }

  // ------------------------------------------------------------ ending

  private fail(code: ErrorCode, message: string): void {
    if (this.phase === Phase.Closed) return;
    // Nothing more for the streams: GOAWAY is the last frame.
    this.sending.clear();
    this.push(frame(FrameType.GoAway, 0, 0, goAwayPayload(this.lastStreamId, code, message)));
    this.finish();
  }

  private maybeFinish(): void {
    if (!this.goingAway || this.streams.size > 0 || this.phase === Phase.Closed) return;
    this.finish();
  }

  /** Writes what is queued now, then ends the connection; its open streams are reset. */
  private finish(): void {
    this.flushScheduled = false;
    this.flush();
    this.onSocketClose();
    this.socket.end();
    // A client that does not close its side is not waited for.
    setTimeout(() => this.socket.destroy(), 1000).unref();
  }

  private onSocketClose(): void {
    this.phase = Phase.Closed;
    for (const s of [...this.streams.values()]) this.closeStream(s, true);
  }
}

/** A DATA or HEADERS payload without its padding (§6.1), or undefined if the padding does not fit. */
function unpad(flags: number, p: Buffer): Buffer | undefined {
  if ((flags & Flag.Padded) === 0) return p;
  if (p.length < 1) return undefined;
  const pad = p[0]!;
  if (pad >= p.length) return undefined;
  return p.subarray(1, p.length - pad);
}
