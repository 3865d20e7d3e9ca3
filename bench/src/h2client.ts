/**
 * The client side of one HTTP/2 connection (RFC 9113), just what the load generator needs: streams
 * opened by us, HEADERS/CONTINUATION, DATA with flow control both ways, RST_STREAM, SETTINGS, PING,
 * WINDOW_UPDATE and GOAWAY. No push (disabled in our SETTINGS), no priorities, no TLS.
 *
 * Why not node:http2: each of its streams is a Duplex with a native handle, and at 10,000 calls a
 * second the load generator spent 12-15% of its time in scavenges of 8-30 ms, which every request
 * in flight then waited out and the run counted as the server's latency (bench/README.md, "The
 * load generator"). Here a stream is one small object of the caller's, and the frames one turn of
 * the event loop sends leave in one corked socket write. The wire constants and HPACK are the
 * member's own (@capstan/server's h2), which interoperate with grpc-go and nghttp2.
 */
import * as net from 'node:net';
import { CLIENT_PREFACE, DEFAULT_MAX_FRAME_BYTES, DEFAULT_WINDOW_BYTES, ErrorCode, Flag, FRAME_HEADER_BYTES } from '@capstan/server/h2/frames';
import { FrameType, Setting, frame, readFrames, settingsPayload, u32, unpad, writeFrameHeader } from '@capstan/server/h2/frames';
import { HpackDecoder, HpackEncoder } from '@capstan/server/h2/hpack';

/** What a stream's owner is told. Exactly one onClose per stream, after which nothing else. */
export interface StreamHandler {
  /** A header block: the response headers, or the trailers (`endStream`). [name, value, ...]. */
  onHeaders(fields: string[], endStream: boolean): void;
  /** DATA payload, in order (a view into the frame: copy it to keep it past the call). */
  onData(payload: Buffer): void;
  /**
   * The stream is over: both sides ended it (`why` undefined), the server reset it (`why.rstCode`),
   * we cancelled it, or the connection was lost (`why.error`).
   */
  onClose(why: CloseReason | undefined): void;
}

export interface CloseReason {
  readonly rstCode?: number;
  readonly error?: Error;
}

/** Our receive windows, per stream and for the connection. */
export interface H2ClientOptions {
  readonly windowBytes: number;
  readonly connectTimeoutMs: number;
}

/** A stream we opened and have not yet seen closed. */
class ClientStream {
  sendWindow: number;
  /** DATA received since our last WINDOW_UPDATE for it. */
  unacked = 0;
  /** Bytes waiting for send window, and whether END_STREAM goes after them. */
  queued: Buffer[] = [];
  endQueued = false;
  localEnded = false;

  constructor(
    readonly id: number,
    readonly handler: StreamHandler,
    sendWindow: number,
  ) {
    this.sendWindow = sendWindow;
  }
}

export class H2ClientConnection {
  private readonly streams = new Map<number, ClientStream>();
  private readonly encoder = new HpackEncoder();
  private readonly decoder = new HpackDecoder();
  private nextId = 1;
  private peerInitialWindow = DEFAULT_WINDOW_BYTES;
  private peerMaxFrame = DEFAULT_MAX_FRAME_BYTES;
  private peerMaxStreams = Infinity;
  private connSendWindow = DEFAULT_WINDOW_BYTES;
  private connUnacked = 0;
  /** Streams with bytes waiting for send window, in the order they began to wait. */
  private readonly blocked = new Set<ClientStream>();
  private inbuf: Buffer | undefined;
  /** A header block spread over HEADERS and CONTINUATION frames. */
  private headerParts: Buffer[] | undefined;
  private headerStream = 0;
  private headerEnd = false;
  private corked = false;
  /** Set once the connection is unusable (lost, GOAWAY, protocol error): why. */
  private dead: Error | undefined;

  private constructor(
    private readonly socket: net.Socket,
    private readonly opts: H2ClientOptions,
  ) {}

  /** Connects and resolves once the server's SETTINGS arrived (so it speaks HTTP/2). */
  static connect(host: string, port: number, opts: H2ClientOptions): Promise<H2ClientConnection> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host, port, noDelay: true });
      const c = new H2ClientConnection(socket, opts);
      let settled = false;
      const fail = (err: Error): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        socket.destroy();
        reject(err);
      };
      const timer = setTimeout(() => fail(new Error(`no HTTP/2 SETTINGS within ${opts.connectTimeoutMs} ms`)), opts.connectTimeoutMs);
      c.onSettings = () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(c);
      };
      socket.once('connect', () => c.start());
      socket.on('data', (chunk: Buffer) => c.read(chunk));
      socket.on('error', (err) => {
        fail(err);
        c.lose(err);
      });
      socket.on('close', () => {
        fail(new Error('connection closed before HTTP/2 SETTINGS'));
        c.lose(new Error('connection closed'));
      });
    });
  }

  /** Called on the server's first SETTINGS (connect() waits for it). */
  private onSettings: () => void = () => {};

  get usable(): boolean {
    return this.dead === undefined;
  }

  /**
   * Opens a stream with a header list ([name, value, ...]) and, if given, its first DATA; `end`
   * ends our side after it. Returns the stream id, or an Error if no stream can be opened now.
   */
  open(fields: readonly string[], handler: StreamHandler, data: Buffer | undefined, end: boolean): number | Error {
    if (this.dead !== undefined) return this.dead;
    if (this.streams.size >= this.peerMaxStreams) return new Error(`the server allows ${this.peerMaxStreams} streams at once`);
    const id = this.nextId;
    this.nextId += 2;
    const s = new ClientStream(id, handler, this.peerInitialWindow);
    this.streams.set(id, s);
    const block = this.encoder.encode(fields);
    // Header blocks of a gRPC request are far below any peer's frame size: no CONTINUATION needed.
    if (block.length > this.peerMaxFrame) throw new RangeError(`header block of ${block.length} bytes`);
    const noData = data === undefined || data.length === 0;
    this.send(frame(FrameType.Headers, Flag.EndHeaders | (end && noData ? Flag.EndStream : 0), id, block));
    if (end && noData) s.localEnded = true;
    else if (!noData) this.write(id, data, end);
    return id;
  }

  /** Sends DATA on stream `id` (within the flow-control windows; the rest waits), `end` after it. */
  write(id: number, data: Buffer, end: boolean): void {
    const s = this.streams.get(id);
    if (s === undefined || s.localEnded || s.endQueued) return;
    s.queued.push(data);
    s.endQueued = end;
    // Behind bytes already waiting for window, pump() sends nothing and leaves the stream blocked.
    this.pump(s);
  }

  /** Ends stream `id` from our side with RST_STREAM (CANCEL by default); its handler hears onClose. */
  reset(id: number, code: number = ErrorCode.Cancel): void {
    const s = this.streams.get(id);
    if (s === undefined) return;
    this.send(frame(FrameType.RstStream, 0, id, u32(code)));
    this.close(s, { rstCode: code });
  }

  /** Closes the socket; every open stream hears onClose with an error. */
  destroy(): void {
    this.lose(new Error('connection closed by the client'));
    this.socket.destroy();
  }

  private start(): void {
    this.send(CLIENT_PREFACE);
    this.send(
      frame(
        FrameType.Settings,
        0,
        0,
        settingsPayload([
          [Setting.EnablePush, 0],
          [Setting.InitialWindowSize, this.opts.windowBytes],
        ]),
      ),
    );
    if (this.opts.windowBytes > DEFAULT_WINDOW_BYTES) this.send(frame(FrameType.WindowUpdate, 0, 0, u32(this.opts.windowBytes - DEFAULT_WINDOW_BYTES)));
  }

  /** Queues bytes for the socket; everything queued in one turn goes out in one write. */
  private send(b: Buffer): void {
    if (this.socket.destroyed) return;
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(() => {
        this.corked = false;
        this.socket.uncork();
      });
    }
    this.socket.write(b);
  }

  /** Sends what stream `s` has queued, as far as the windows allow. */
  private pump(s: ClientStream): void {
    while (s.queued.length > 0) {
      const head = s.queued[0]!;
      const room = Math.min(this.connSendWindow, s.sendWindow, this.peerMaxFrame);
      if (room <= 0 && head.length > 0) {
        this.blocked.add(s);
        return;
      }
      const n = Math.min(room, head.length);
      const last = n === head.length && s.queued.length === 1;
      const end = last && s.endQueued;
      const f = Buffer.allocUnsafe(FRAME_HEADER_BYTES + n);
      writeFrameHeader(f, 0, FrameType.Data, end ? Flag.EndStream : 0, s.id, n);
      head.copy(f, FRAME_HEADER_BYTES, 0, n);
      this.send(f);
      this.connSendWindow -= n;
      s.sendWindow -= n;
      if (n === head.length) s.queued.shift();
      else s.queued[0] = head.subarray(n);
      if (end) s.localEnded = true;
    }
    this.blocked.delete(s);
  }

  private read(chunk: Buffer): void {
    const b = this.inbuf === undefined ? chunk : Buffer.concat([this.inbuf, chunk]);
    let off: number;
    try {
      off = readFrames(b, DEFAULT_MAX_FRAME_BYTES, this.frameIn, frameTooLarge);
    } catch (err) {
      return this.protocolError((err as Error).message);
    }
    this.inbuf = off === b.length ? undefined : b.subarray(off);
  }

  /** readFrames' handler, bound once: one frame, then whether to read on. */
  private readonly frameIn = (type: number, flags: number, id: number, payload: Buffer): boolean => {
    this.onFrame(type, flags, id, payload);
    return this.dead === undefined;
  };

  private onFrame(type: number, flags: number, id: number, payload: Buffer): void {
    if (this.headerParts !== undefined && type !== FrameType.Continuation) return this.protocolError('a header block was interrupted');
    switch (type) {
      case FrameType.Data:
        return this.onDataFrame(flags, id, payload);
      case FrameType.Headers: {
        let p = unpad(flags, payload);
        if (p === undefined) return this.protocolError('bad padding');
        if (flags & Flag.Priority) p = p.subarray(5);
        return this.onHeaderFragment(id, p, (flags & Flag.EndHeaders) !== 0, (flags & Flag.EndStream) !== 0);
      }
      case FrameType.Continuation:
        if (this.headerParts === undefined || id !== this.headerStream) return this.protocolError('CONTINUATION out of place');
        return this.onHeaderFragment(id, payload, (flags & Flag.EndHeaders) !== 0, this.headerEnd);
      case FrameType.RstStream: {
        const s = this.streams.get(id);
        if (s !== undefined) this.close(s, { rstCode: payload.length >= 4 ? payload.readUInt32BE(0) : ErrorCode.ProtocolError });
        return;
      }
      case FrameType.Settings:
        if (flags & Flag.Ack) return;
        return this.onSettingsFrame(payload);
      case FrameType.Ping:
        if (!(flags & Flag.Ack)) this.send(frame(FrameType.Ping, Flag.Ack, 0, payload));
        return;
      case FrameType.GoAway: {
        const last = payload.readUInt32BE(0) & 0x7fffffff;
        const code = payload.readUInt32BE(4);
        const why = new Error(`the server sent GOAWAY (code ${code}${payload.length > 8 ? `: ${payload.subarray(8).toString('latin1')}` : ''})`);
        this.dead ??= why;
        for (const s of [...this.streams.values()]) if (s.id > last) this.close(s, { error: why });
        return;
      }
      case FrameType.WindowUpdate: {
        const inc = payload.readUInt32BE(0) & 0x7fffffff;
        if (id === 0) {
          this.connSendWindow += inc;
          for (const s of [...this.blocked]) this.pump(s);
        } else {
          const s = this.streams.get(id);
          if (s === undefined) return;
          s.sendWindow += inc;
          if (this.blocked.has(s)) this.pump(s);
        }
        return;
      }
      case FrameType.PushPromise:
        return this.protocolError('PUSH_PROMISE, though push was disabled');
      default:
        // PRIORITY and unknown types: nothing to do (§5.5).
        return;
    }
  }

  private onDataFrame(flags: number, id: number, payload: Buffer): void {
    // Flow control counts the whole payload, padding included (§6.9.1).
    this.connUnacked += payload.length;
    if (this.connUnacked >= this.opts.windowBytes / 2) {
      this.send(frame(FrameType.WindowUpdate, 0, 0, u32(this.connUnacked)));
      this.connUnacked = 0;
    }
    const s = this.streams.get(id);
    if (s === undefined) return;
    const data = unpad(flags, payload);
    if (data === undefined) return this.protocolError('bad padding');
    const end = (flags & Flag.EndStream) !== 0;
    if (!end) {
      s.unacked += payload.length;
      if (s.unacked >= this.opts.windowBytes / 2) {
        this.send(frame(FrameType.WindowUpdate, 0, id, u32(s.unacked)));
        s.unacked = 0;
      }
    }
    if (data.length > 0) s.handler.onData(data);
    if (end) this.remoteEnd(s);
  }

  private onHeaderFragment(id: number, fragment: Buffer, endHeaders: boolean, endStream: boolean): void {
    if (!endHeaders) {
      if (this.headerParts === undefined) {
        this.headerParts = [];
        this.headerStream = id;
        this.headerEnd = endStream;
      }
      this.headerParts.push(Buffer.from(fragment));
      return;
    }
    let block = fragment;
    if (this.headerParts !== undefined) {
      this.headerParts.push(fragment);
      block = Buffer.concat(this.headerParts);
      this.headerParts = undefined;
    }
    // Every block is decoded, a stream's or not: the HPACK table must stay in step with the server's.
    const fields = this.decoder.decode(block);
    if (fields instanceof Error) return this.protocolError(`HPACK: ${fields.message}`);
    const s = this.streams.get(id);
    if (s === undefined) return;
    s.handler.onHeaders(fields, endStream);
    if (endStream && this.streams.get(id) === s) this.remoteEnd(s);
  }

  private onSettingsFrame(p: Buffer): void {
    for (let i = 0; i + 6 <= p.length; i += 6) {
      const key = p.readUInt16BE(i);
      const v = p.readUInt32BE(i + 2);
      if (key === Setting.HeaderTableSize) this.encoder.setMaxTableSize(v);
      else if (key === Setting.MaxConcurrentStreams) this.peerMaxStreams = v;
      else if (key === Setting.MaxFrameSize) this.peerMaxFrame = v;
      else if (key === Setting.InitialWindowSize) {
        const delta = v - this.peerInitialWindow;
        this.peerInitialWindow = v;
        for (const s of this.streams.values()) s.sendWindow += delta;
      }
    }
    this.send(frame(FrameType.Settings, Flag.Ack, 0));
    if (this.peerInitialWindow > 0) for (const s of [...this.blocked]) this.pump(s);
    this.onSettings();
  }

  private remoteEnd(s: ClientStream): void {
    // The server's END_STREAM (trailers) ends the call. If our side is still open (a stream, or a
    // request the server answered before reading it all), it is reset, as gRPC clients do.
    if (!s.localEnded) this.send(frame(FrameType.RstStream, 0, s.id, u32(ErrorCode.NoError)));
    this.close(s, undefined);
  }

  private close(s: ClientStream, why: CloseReason | undefined): void {
    if (this.streams.get(s.id) !== s) return;
    this.streams.delete(s.id);
    this.blocked.delete(s);
    s.handler.onClose(why);
  }

  private protocolError(what: string): void {
    const err = new Error(`HTTP/2 protocol error from the server: ${what}`);
    this.send(frame(FrameType.GoAway, 0, 0, Buffer.concat([u32(Math.max(0, this.nextId - 2)), u32(ErrorCode.ProtocolError)])));
    this.lose(err);
    this.socket.end();
  }

  /** The connection is unusable: every open stream hears why. */
  private lose(err: Error): void {
    this.dead ??= err;
    for (const s of [...this.streams.values()]) this.close(s, { error: err });
  }
}

/** We advertise no SETTINGS_MAX_FRAME_SIZE: a larger frame breaks the protocol (§4.2). */
function frameTooLarge(len: number): never {
  throw new Error(`a frame of ${len} bytes, over the ${DEFAULT_MAX_FRAME_BYTES} we allow`);
}
