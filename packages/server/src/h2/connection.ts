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
 * both ways, RST_STREAM, PING, WINDOW_UPDATE, GOAWAY (both ways, and close() in two steps, §6.8),
 * the connection and stream errors of §5.4, the request checks of §8.2 and §8.3, and limits on what
 * a hostile client can make us buffer or do for nothing (floods of acks, resets, empty frames).
 * What it does not: server push (never sent), priorities (checked, then ignored).
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
  MAX_STREAM_ID,
  MAX_WINDOW_BYTES,
  Setting,
  frame,
  goAwayPayload,
  readFrames,
  unpad,
  settingsPayload,
  u32,
  writeFrameHeader,
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

/**
 * Control frames we owe the client (PING and SETTINGS acks, RST_STREAMs) handed to a socket that has
 * no room for them: past this many, ENHANCE_YOUR_CALM. A client that sends PINGs and reads nothing
 * would otherwise have us buffer acks without end. nghttp2 caps its queued acks at 1000 too.
 */
export const MAX_OWED_CONTROL_FRAMES = 1000;

/**
 * Rapid reset (CVE-2023-44487): a stream the client opens and resets before we answer costs us the
 * work it started and the client nothing. Such resets draw on a bucket of RESET_BURST tokens refilled
 * at RESET_REFILL_PER_SECOND (nghttp2's defaults); an empty bucket is ENHANCE_YOUR_CALM. gRPC clients
 * cancel calls (deadlines, aborted watches), a few at a time: far inside that.
 */
export const RESET_BURST = 1000;
export const RESET_REFILL_PER_SECOND = 33;

/**
 * Frames that carry nothing and end nothing (DATA without data or END_STREAM, CONTINUATION without a
 * fragment or END_HEADERS), in a row: past this many, ENHANCE_YOUR_CALM. They cost us a frame's work
 * each and no flow control; no client needs more than a few.
 */
export const MAX_EMPTY_FRAMES = 100;

/** close(): how long the PING between its two GOAWAYs may take before the second goes anyway. */
const GOAWAY_PING_TIMEOUT_MS = 1000;
/** The payload of that PING: its ack is told apart from the acks of a client's own PINGs by it. */
const GOAWAY_PING = Buffer.from('goaway!!', 'latin1');

const monotonicNow = (): number => performance.now();

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

function frameTooLarge(len: number): never {
  throw new ConnectionError(ErrorCode.FrameSizeError, `frame of ${len} bytes`);
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
  /** In the connection's send queue (data or an end waiting to go out). */
  queued = false;
  /** What the request's content-length says is still to come in DATA; -1 without one. */
  contentLeft = -1;

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

/**
 * Shortens `a` to `n` elements by popping. Setting `length` instead (to 0 above all) makes V8 give
 * up the array's backing store, so the next push allocates a new one: on the arrays a connection
 * empties and refills every turn, that was a backing store per flush (micro-benchmark: 147
 * scavenges per million empty-and-refill cycles of 6 elements, none with pops).
 */
function truncate(a: unknown[], n: number): void {
  while (a.length > n) a.pop();
}

const enum Phase {
  Preface,
  Frames,
  Closed,
}

/** Where close() is (§6.8). */
const enum Closing {
  No,
  /** GOAWAY(2^31-1) and a PING sent: streams the client opened before it saw them are still served. */
  Announced,
  /** GOAWAY with the last stream served: the connection ends when those streams have. */
  Final,
}

export class H2ServerConnection {
  private readonly streams = new Map<number, H2Stream>();
  /**
   * Streams with data or an end waiting to go out, in the order they asked; a stream is in it
   * while its `queued` is set (one taken out is skipped, then dropped at the next pump). Not a
   * Set: this one empties and refills every turn, and a Set reallocates its table as it shrinks
   * and grows, in old space once the connection is old (V8 rehashes in the table's generation):
   * on a leader serving 100 watchers that was a sixth of what survived its scavenges.
   */
  private sending: H2Stream[] = [];
  private readonly decoder: HpackDecoder;
  private readonly encoder = new HpackEncoder();
  private phase = Phase.Preface;
  private inBuf: Buffer | undefined;
  /** A header block spread over HEADERS and CONTINUATION frames (§6.10). */
  private continuation: { id: number; flags: number; selfDependent: boolean; parts: Buffer[]; bytes: number } | undefined;
  /**
   * Streams closed lately, and whether we reset them: frames the client had in flight to a stream we
   * reset are dropped; DATA or HEADERS on one both sides ended is STREAM_CLOSED (§5.1).
   */
  private readonly recentlyClosed = new Map<number, boolean>();
  private lastStreamId = 0;
  /** The client has sent its SETTINGS, which must come first (§3.4). */
  private settingsSeen = false;
  private closing = Closing.No;
  private closingTimer: NodeJS.Timeout | undefined;
  /** The client sent GOAWAY: it opens no more streams, and the connection ends when its open ones have. */
  private peerGoingAway = false;

  /** Control frames queued since the socket last took a write with room to spare (MAX_OWED_CONTROL_FRAMES). */
  private owedControl = 0;
  /** The rapid-reset bucket (RESET_BURST), as of resetTokensAt by the clock. */
  private resetTokens = RESET_BURST;
  private resetTokensAt: number;
  /** Empty frames in a row (MAX_EMPTY_FRAMES). */
  private emptyFrames = 0;

  private peerInitialWindow = DEFAULT_WINDOW_BYTES;
  private peerMaxFrame = DEFAULT_MAX_FRAME_BYTES;
  private connSendWindow = DEFAULT_WINDOW_BYTES;
  private connRecvWindow: number;
  private connRecvUnacked = 0;

  /** What the next flush writes: buffers, and `undefined` for each DATA frame header in outHeaders. */
  private out: Array<Buffer | undefined> = [];
  /**
   * DATA frame headers, three numbers each (flags, stream ID, length), in the order of their slots
   * in `out`: written straight into the flush's buffer, where a Buffer of 9 bytes per frame was
   * the largest allocation of a watch fan-out (one frame per watcher and event).
   */
  private outHeaders: number[] = [];
  private outBytes = 0;
  private flushScheduled = false;
  private pumping = false;
  socketBlocked = false;
  private readonly closedPromise: Promise<void>;

  readonly limits: H2Limits;

  constructor(
    readonly socket: Duplex,
    private readonly onStream: StreamHandler,
    limits: H2Limits = DEFAULT_H2_LIMITS,
    /** An exception from our side (not a protocol error of the client's): the connection is closed, the process goes on. */
    private readonly onError?: (err: Error) => void,
    /** Milliseconds, for the rapid-reset bucket: read once per connection and once per stream reset unanswered. */
    private readonly now: () => number = monotonicNow,
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
    this.resetTokensAt = now();
    this.closedPromise = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('data', (chunk: Buffer) => this.onBytes(chunk));
    socket.on('drain', () => {
      this.socketBlocked = false;
      this.owedControl = 0;
      this.grantConnection();
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
   * Graceful close (§6.8): GOAWAY with the largest stream id and a PING; once the PING comes back (or
   * after GOAWAY_PING_TIMEOUT_MS) a second GOAWAY with the last stream served, and new streams are
   * refused; the connection ends when its open streams have. Resolves when the socket is closed.
   */
  close(): Promise<void> {
    if (this.phase === Phase.Closed || this.closing !== Closing.No) return this.closedPromise;
    // A client that has sent GOAWAY opens nothing more: there is nothing in flight to wait for.
    if (this.peerGoingAway) {
      this.finalGoAway();
      return this.closedPromise;
    }
    this.closing = Closing.Announced;
    // Streams the client opens before it has read this are still served; the PING's ack comes after
    // the last of them, which sets the last stream id of the second GOAWAY.
    this.push(frame(FrameType.GoAway, 0, 0, goAwayPayload(MAX_STREAM_ID, ErrorCode.NoError)));
    this.push(frame(FrameType.Ping, 0, 0, GOAWAY_PING));
    this.closingTimer = setTimeout(() => this.finalGoAway(), GOAWAY_PING_TIMEOUT_MS);
    this.closingTimer.unref();
    return this.closedPromise;
  }

  private finalGoAway(): void {
    clearTimeout(this.closingTimer);
    this.closingTimer = undefined;
    if (this.phase === Phase.Closed || this.closing === Closing.Final) return;
    this.closing = Closing.Final;
    this.push(frame(FrameType.GoAway, 0, 0, goAwayPayload(this.lastStreamId, ErrorCode.NoError)));
    this.maybeFinish();
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
      const off = readFrames(buf, DEFAULT_MAX_FRAME_BYTES, this.frameIn, frameTooLarge);
      if (off < buf.length && this.phase === Phase.Frames) this.inBuf = buf.subarray(off);
    } catch (err) {
      if (err instanceof ConnectionError) return this.fail(err.code, err.message);
      // A bug of ours, or a stream handler's: this connection ends, the member does not.
      this.onError?.(err instanceof Error ? err : new Error(String(err)));
      this.fail(ErrorCode.InternalError, 'internal error');
    }
  }

  /** readFrames' handler, bound once: one frame, then whether to read on. */
  private readonly frameIn = (type: number, flags: number, id: number, p: Buffer): boolean => {
    this.onFrame(type, flags, id, p);
    if (this.owedControl > MAX_OWED_CONTROL_FRAMES) throw new ConnectionError(ErrorCode.EnhanceYourCalm, 'control frames not read');
    return this.phase === Phase.Frames;
  };

  private onFrame(type: number, flags: number, id: number, p: Buffer): void {
    if (!this.settingsSeen) {
      if (type !== FrameType.Settings || (flags & Flag.Ack) !== 0) throw new ConnectionError(ErrorCode.ProtocolError, 'the preface must end with SETTINGS');
      this.settingsSeen = true;
    }
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
        return this.onPriority(id, p);
      case FrameType.RstStream: {
        if (id === 0) throw new ConnectionError(ErrorCode.ProtocolError, 'RST_STREAM on stream 0');
        if (p.length !== 4) throw new ConnectionError(ErrorCode.FrameSizeError, 'RST_STREAM length');
        if (id > this.lastStreamId) throw new ConnectionError(ErrorCode.ProtocolError, 'RST_STREAM on an idle stream');
        const s = this.streams.get(id);
        if (s === undefined) return;
        if (!s.headersSent) this.takeResetToken();
        this.closeStream(s, true);
        return;
      }
      case FrameType.Settings:
        return this.onSettings(flags, id, p);
      case FrameType.PushPromise:
        throw new ConnectionError(ErrorCode.ProtocolError, 'PUSH_PROMISE from a client');
      case FrameType.Ping:
        if (id !== 0) throw new ConnectionError(ErrorCode.ProtocolError, 'PING on a stream');
        if (p.length !== 8) throw new ConnectionError(ErrorCode.FrameSizeError, 'PING length');
        if ((flags & Flag.Ack) === 0) this.pushOwed(frame(FrameType.Ping, Flag.Ack, 0, p));
        else if (this.closing === Closing.Announced && p.equals(GOAWAY_PING)) this.finalGoAway();
        return;
      case FrameType.GoAway:
        if (id !== 0) throw new ConnectionError(ErrorCode.ProtocolError, 'GOAWAY on a stream');
        // The client opens no more streams; the ones it has run to their end.
        this.peerGoingAway = true;
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
    this.pushOwed(frame(FrameType.Settings, Flag.Ack, 0));
    if (this.sending.length > 0) this.schedule();
  }

  private onPriority(id: number, p: Buffer): void {
    if (id === 0) throw new ConnectionError(ErrorCode.ProtocolError, 'PRIORITY on stream 0');
    // Read and ignored, but checked (§6.3, §5.3.1). It may come for a stream in any state.
    let code: ErrorCode;
    if (p.length !== 5) code = ErrorCode.FrameSizeError;
    else if ((p.readUInt32BE(0) & 0x7fffffff) === id) code = ErrorCode.ProtocolError;
    else return;
    // A stream error on an idle stream cannot be sent (no RST_STREAM there, §6.4): the connection
    // takes it (§5.4.1 allows that). A closed stream has nothing left to reset.
    if (id > this.lastStreamId) throw new ConnectionError(code, 'PRIORITY on an idle stream: bad length or depends on itself');
    const s = this.streams.get(id);
    if (s !== undefined) this.resetStream(s, code, true);
  }

  /** A stream the client reset before we answered it: one token of the rapid-reset bucket. */
  private takeResetToken(): void {
    const now = this.now();
    this.resetTokens = Math.min(RESET_BURST, this.resetTokens + ((now - this.resetTokensAt) * RESET_REFILL_PER_SECOND) / 1000);
    this.resetTokensAt = now;
    if (this.resetTokens < 1) throw new ConnectionError(ErrorCode.EnhanceYourCalm, 'too many streams reset before their answer');
    this.resetTokens -= 1;
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
    if (this.sending.length > 0) this.schedule();
  }

  private onData(flags: number, id: number, p: Buffer): void {
    if (id === 0) throw new ConnectionError(ErrorCode.ProtocolError, 'DATA on stream 0');
    if (id > this.lastStreamId) throw new ConnectionError(ErrorCode.ProtocolError, 'DATA on an idle stream');
    // Flow control counts the whole payload, padding included (§6.9.1).
    if (p.length > this.connRecvWindow) throw new ConnectionError(ErrorCode.FlowControlError, 'connection window exceeded');
    this.connRecvWindow -= p.length;
    this.connRecvUnacked += p.length;
    this.grantConnection();
    const data = unpad(flags, p);
    if (data === undefined) throw new ConnectionError(ErrorCode.ProtocolError, 'bad padding');
    const end = (flags & Flag.EndStream) !== 0;
    if (data.length > 0) this.emptyFrames = 0;
    else if (!end && ++this.emptyFrames > MAX_EMPTY_FRAMES) throw new ConnectionError(ErrorCode.EnhanceYourCalm, 'empty DATA frames');
    const s = this.streams.get(id);
    if (s === undefined) {
      // A stream we reset (or refused, or answered early) may still get what was in flight: dropped.
      // One that both sides ended gets nothing more from a client that keeps to §5.1.
      if (this.recentlyClosed.get(id) === false) throw new ConnectionError(ErrorCode.StreamClosed, `DATA on closed stream ${id}`);
      return;
    }
    if (s.remoteEnded) return this.resetStream(s, ErrorCode.StreamClosed, true);
    if (p.length > s.recvWindow) return this.resetStream(s, ErrorCode.FlowControlError, true);
    s.recvWindow -= p.length;
    if (s.contentLeft >= 0) {
      s.contentLeft -= data.length;
      // More DATA than the content-length: malformed (§8.1.1).
      if (s.contentLeft < 0) return this.resetStream(s, ErrorCode.ProtocolError, true);
    }
    if (!end) {
      s.recvUnacked += p.length;
      this.grantStream(s);
    }
    if (data.length > 0) s.onData?.(data);
    if (end && !s.closed) this.remoteEnd(s);
  }

  /**
   * Gives a stream's window back once half of it is used, unless the stream's answers are piling up
   * unsent (past streamHighWaterBytes): a client that sends without reading what it is sent then
   * waits (§5.2), where we would buffer its answers without end. pump() calls this again as they leave.
   */
  private grantStream(s: H2Stream): void {
    if (s.recvUnacked < this.limits.streamWindowBytes / 2 || s.pendingBytes >= this.limits.streamHighWaterBytes || s.remoteEnded || s.closed) return;
    this.push(frame(FrameType.WindowUpdate, 0, s.id, u32(s.recvUnacked)));
    s.recvWindow += s.recvUnacked;
    s.recvUnacked = 0;
  }

  /** The same for the connection: held while the socket takes no more of what we send (until 'drain'). */
  private grantConnection(): void {
    if (this.connRecvUnacked < this.limits.connectionWindowBytes / 2 || this.socketBlocked) return;
    this.push(frame(FrameType.WindowUpdate, 0, 0, u32(this.connRecvUnacked)));
    this.connRecvWindow += this.connRecvUnacked;
    this.connRecvUnacked = 0;
  }

  private onHeaders(flags: number, id: number, p: Buffer): void {
    if (id === 0 || id % 2 === 0) throw new ConnectionError(ErrorCode.ProtocolError, `HEADERS on stream ${id}`);
    let block = unpad(flags, p);
    if (block === undefined) throw new ConnectionError(ErrorCode.ProtocolError, 'bad padding');
    this.emptyFrames = 0;
    let selfDependent = false;
    if ((flags & Flag.Priority) !== 0) {
      if (block.length < 5) throw new ConnectionError(ErrorCode.FrameSizeError, 'HEADERS priority');
      selfDependent = (block.readUInt32BE(0) & 0x7fffffff) === id;
      block = block.subarray(5);
    }
    if ((flags & Flag.EndHeaders) === 0) {
      this.continuation = { id, flags, selfDependent, parts: [block], bytes: block.length };
      return;
    }
    this.onHeaderBlock(id, flags, block, selfDependent);
  }

  private onContinuation(flags: number, id: number, p: Buffer): void {
    const c = this.continuation;
    if (c === undefined || c.id !== id) throw new ConnectionError(ErrorCode.ProtocolError, 'unexpected CONTINUATION');
    if (p.length > 0) {
      this.emptyFrames = 0;
      c.parts.push(p);
      c.bytes += p.length;
      // A header block that never ends is an attack (the CONTINUATION flood), not a request.
      if (c.bytes > MAX_HEADER_BLOCK_FACTOR * this.limits.maxHeaderListBytes) throw new ConnectionError(ErrorCode.EnhanceYourCalm, 'header block too large');
    } else if ((flags & Flag.EndHeaders) === 0 && ++this.emptyFrames > MAX_EMPTY_FRAMES) {
      throw new ConnectionError(ErrorCode.EnhanceYourCalm, 'empty CONTINUATION frames');
    }
    if ((flags & Flag.EndHeaders) === 0) return;
    this.continuation = undefined;
    this.onHeaderBlock(id, c.flags, Buffer.concat(c.parts), c.selfDependent);
  }

  /** `selfDependent`: the HEADERS had a priority block that made the stream depend on itself (§5.3.1). */
  private onHeaderBlock(id: number, flags: number, block: Buffer, selfDependent: boolean): void {
    // Every block is decoded, even for a stream we refuse: the HPACK table must stay in step.
    const headers = this.decoder.decode(block);
    if (headers instanceof HpackError && !(headers instanceof HeaderListTooLong)) {
      throw new ConnectionError(ErrorCode.CompressionError, headers.message);
    }
    const end = (flags & Flag.EndStream) !== 0;
    const existing = this.streams.get(id);
    if (existing !== undefined) {
      // Trailers: they must end the stream (§8.1), without pseudo-headers (§8.1, §8.3).
      if (!end || existing.remoteEnded || selfDependent) return this.resetStream(existing, ErrorCode.ProtocolError, true);
      if (!(headers instanceof HpackError) && checkFields(headers, true) === MALFORMED) return this.resetStream(existing, ErrorCode.ProtocolError, true);
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
    if (this.closing === Closing.Final || this.peerGoingAway || this.streams.size >= this.limits.maxConcurrentStreams) {
      return this.refuse(id, ErrorCode.RefusedStream);
    }
    let contentLength = -1;
    if (!(headers instanceof HpackError)) {
      contentLength = checkFields(headers, false);
      // A malformed request (§8.1.1) never reaches the app; a body shorter than its content-length is one.
      if (contentLength === MALFORMED || selfDependent || (end && contentLength > 0)) return this.refuse(id, ErrorCode.ProtocolError);
    }
    const s = new H2Stream(id, headers instanceof HpackError ? [] : headers, this, this.peerInitialWindow, this.limits.streamWindowBytes);
    this.streams.set(id, s);
    s.contentLeft = contentLength;
    // A request without a body is half-closed at once: an answer given in onStream ends the stream.
    s.remoteEnded = end;
    if (headers instanceof HeaderListTooLong) {
      s.respond([':status', '431'], true);
      return;
    }
    this.onStream(s);
    if (end && !s.closed) this.remoteEnd(s);
  }

  /** RST_STREAM for a stream that never reached the app; what the client sends on it in the meantime is dropped. */
  private refuse(id: number, code: ErrorCode): void {
    this.remember(id, true);
    this.pushOwed(frame(FrameType.RstStream, 0, id, u32(code)));
  }

  private remoteEnd(s: H2Stream): void {
    // A body shorter than its content-length: malformed (§8.1.1).
    if (s.contentLeft > 0) return this.resetStream(s, ErrorCode.ProtocolError, true);
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
    if (!s.queued) {
      s.queued = true;
      this.sending.push(s);
    }
    this.schedule();
  }

  /** Our side of the stream is done; a client still sending is told to stop (§8.1). */
  localEnd(s: H2Stream): void {
    s.localEnded = true;
    s.queued = false;
    if (s.remoteEnded) return this.closeStream(s, false);
    this.resetStream(s, ErrorCode.NoError, false);
  }

  resetStream(s: H2Stream, code: ErrorCode, byPeerError: boolean): void {
    this.pushOwed(frame(FrameType.RstStream, 0, s.id, u32(code)));
    s.resetSent = true;
    this.closeStream(s, byPeerError || code !== ErrorCode.NoError);
  }

  private closeStream(s: H2Stream, reset: boolean): void {
    if (s.closed) return;
    s.closed = true;
    this.streams.delete(s.id);
    s.queued = false;
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

  /** A control frame the client made us owe it: counted until the socket has room (MAX_OWED_CONTROL_FRAMES). */
  private pushOwed(b: Buffer): void {
    this.owedControl++;
    this.push(b);
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
    const chunk = this.out.length === 1 && this.out[0] !== undefined ? this.out[0] : this.joinOut();
    truncate(this.out, 0);
    truncate(this.outHeaders, 0);
    this.outBytes = 0;
    if (this.socket.write(chunk)) this.owedControl = 0;
    else this.socketBlocked = true;
  }

  /** Everything in `out` in one buffer, the DATA frame headers written in place. */
  private joinOut(): Buffer {
    const chunk = Buffer.allocUnsafe(this.outBytes);
    const hs = this.outHeaders;
    let at = 0;
    let h = 0;
    for (const b of this.out) {
      if (b === undefined) {
        writeFrameHeader(chunk, at, FrameType.Data, hs[h]!, hs[h + 1]!, hs[h + 2]!);
        h += 3;
        at += FRAME_HEADER_BYTES;
      } else {
        chunk.set(b, at);
        at += b.length;
      }
    }
    return chunk;
  }

  private pump(): void {
    // A stream's end can finish the connection, whose last flush pumps again: that one has
    // nothing of its own left to send, and must not compact the array under this loop.
    if (this.pumping) return;
    this.pumping = true;
    try {
      this.pumpQueue();
    } finally {
      this.pumping = false;
    }
  }

  private pumpQueue(): void {
    const q = this.sending;
    let kept = 0;
    let i = 0;
    for (; i < q.length; i++) {
      const s = q[i]!;
      if (!s.queued) continue;
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
        this.out.push(undefined);
        this.outHeaders.push(last ? Flag.EndStream : 0, s.id, n);
        this.outBytes += FRAME_HEADER_BYTES;
        this.append(chunk);
      }
      if (s.recvUnacked > 0) this.grantStream(s);
      if (s.pendingBytes > 0) {
        q[kept++] = s;
        if (s.wantsDrain && s.pendingBytes < this.limits.streamHighWaterBytes) {
          s.wantsDrain = false;
          s.onDrain?.();
        }
        if (this.connSendWindow === 0) {
          i++;
          break;
        }
        continue;
      }
      s.queued = false;
      if (s.ending) {
        if (s.trailers !== undefined) this.sendHeaders(s, s.trailers, true);
        else if (!endSent) this.append(frame(FrameType.Data, Flag.EndStream, s.id));
        this.localEnd(s);
      } else if (s.wantsDrain) {
        s.wantsDrain = false;
        s.onDrain?.();
      }
    }
    for (; i < q.length; i++) if (q[i]!.queued) q[kept++] = q[i]!;
    truncate(q, kept);
  }

  // ------------------------------------------------------------ ending

  private fail(code: ErrorCode, message: string): void {
    if (this.phase === Phase.Closed) return;
    // Nothing more for the streams: GOAWAY is the last frame.
    for (const s of this.sending) s.queued = false;
    this.sending = [];
    this.push(frame(FrameType.GoAway, 0, 0, goAwayPayload(this.lastStreamId, code, message)));
    this.finish();
  }

  private maybeFinish(): void {
    if (this.streams.size > 0 || this.phase === Phase.Closed) return;
    if (this.closing === Closing.Final || this.peerGoingAway) this.finish();
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
    clearTimeout(this.closingTimer);
    for (const s of [...this.streams.values()]) this.closeStream(s, true);
  }
}

/** checkFields' answer for a malformed field section (§8.1.1): a stream error. */
const MALFORMED = -2;

const PSEUDO_METHOD = 1;
const PSEUDO_SCHEME = 2;
const PSEUDO_PATH = 4;
const PSEUDO_AUTHORITY = 8;

/**
 * The checks of §8.2 and §8.3 on a request's header list, or on its trailers: the content-length it
 * gives (-1 for none), or MALFORMED. Every request goes through it, so it is one pass over the list
 * and allocates nothing; the names it compares are mostly the HPACK static table's own strings.
 */
function checkFields(h: readonly string[], trailers: boolean): number {
  let pseudo = 0;
  let regular = false;
  let connect = false;
  let contentLength = -1;
  for (let i = 0; i < h.length; i += 2) {
    const name = h[i]!;
    const value = h[i + 1]!;
    if (name.charCodeAt(0) === 0x3a) {
      // A request's four, each once, before the regular fields; none in trailers.
      if (regular || trailers) return MALFORMED;
      let bit: number;
      switch (name) {
        case ':method':
          bit = PSEUDO_METHOD;
          connect = value === 'CONNECT';
          break;
        case ':scheme':
          bit = PSEUDO_SCHEME;
          break;
        case ':path':
          if (value.length === 0) return MALFORMED;
          bit = PSEUDO_PATH;
          break;
        case ':authority':
          bit = PSEUDO_AUTHORITY;
          break;
        default:
          return MALFORMED;
      }
      if ((pseudo & bit) !== 0) return MALFORMED;
      pseudo |= bit;
      continue;
    }
    regular = true;
    if (!isFieldName(name)) return MALFORMED;
    switch (name) {
      case 'te':
        // The one connection-specific field HTTP/2 keeps, and only for this (§8.2.2).
        if (value !== 'trailers') return MALFORMED;
        break;
      case 'connection':
      case 'keep-alive':
      case 'proxy-connection':
      case 'transfer-encoding':
      case 'upgrade':
        return MALFORMED;
      case 'content-length': {
        if (trailers) break;
        const n = decimal(value);
        if (n < 0 || (contentLength >= 0 && n !== contentLength)) return MALFORMED;
        contentLength = n;
        break;
      }
      default:
        break;
    }
  }
  if (trailers) return -1;
  // CONNECT names a host, not a resource (§8.5).
  if (connect) return pseudo === (PSEUDO_METHOD | PSEUDO_AUTHORITY) ? contentLength : MALFORMED;
  const required = PSEUDO_METHOD | PSEUDO_SCHEME | PSEUDO_PATH;
  return (pseudo & required) === required ? contentLength : MALFORMED;
}

/** §8.2.1: a field name has no controls, space, colon, upper case, DEL or octet past it. */
function isFieldName(name: string): boolean {
  if (name.length === 0) return false;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c <= 0x20 || c === 0x3a || (c >= 0x41 && c <= 0x5a) || c >= 0x7f) return false;
  }
  return true;
}

/** A content-length's value: decimal digits and nothing else, else -1. Past 15 digits is no body we take. */
function decimal(s: string): number {
  if (s.length === 0 || s.length > 15) return -1;
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const d = s.charCodeAt(i) - 0x30;
    if (d < 0 || d > 9) return -1;
    n = 10 * n + d;
  }
  return n;
}
