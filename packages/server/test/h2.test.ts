// The HTTP/2 server connection (h2/connection.ts) on loopback: node:http2 as the client for the paths
// a real client takes, and a hand-made client writing frames of its own for the ones it never takes.
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import http2 from 'node:http2';
import net from 'node:net';
import { Duplex } from 'node:stream';
import t, { type Test } from 'tap';
import {
  DEFAULT_H2_LIMITS,
  H2ServerConnection,
  MAX_EMPTY_FRAMES,
  MAX_OWED_CONTROL_FRAMES,
  RESET_BURST,
  RESET_REFILL_PER_SECOND,
  type H2Limits,
  type H2Stream,
} from '../src/h2/connection.js';
import { CLIENT_PREFACE, ErrorCode, Flag, FrameType, MAX_STREAM_ID, MAX_WINDOW_BYTES, Setting, frame, settingsPayload, u32 } from '../src/h2/frames.js';
import { HpackDecoder, HpackEncoder } from '../src/h2/hpack.js';

const MiB = 1 << 20;

// ------------------------------------------------------------ the server and its test app

interface Deferred<T> {
  readonly promise: Promise<T>;
  resolve(v: T): void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/** Bytes that show any loss, duplication or reordering: each 4-byte word holds its own index. */
function pattern(n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i + 4 <= n; i += 4) b.writeUInt32BE(i / 4, i);
  return b;
}

/** A printable, deterministic, Huffman-unfriendly string. */
function noise(n: number): string {
  let x = 12345;
  const parts: string[] = [];
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    parts.push(String.fromCharCode(0x21 + (x % 94)));
  }
  return parts.join('');
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** The answer to a request for '/echo': headers from the request, its body back, trailers at its end. */
function echo(s: H2Stream): void {
  let bytes = 0;
  s.respond([
    ...[':status', '200', 'content-type', 'application/x-echo'],
    ...['x-path', s.header(':path') ?? '', 'x-method', s.header(':method') ?? '', 'x-hello', s.header('x-hello') ?? ''],
  ]);
  s.onData = (c) => {
    bytes += c.length;
    s.write(Buffer.from(c));
  };
  s.onEnd = () => s.end(['x-bytes', String(bytes), 'x-end', 'ok']);
}

/** The test app, by :path. */
function app(s: H2Stream): void {
  switch (s.header(':path')) {
    case '/big': {
      // x-size bytes of pattern(), in 64 KiB writes, whatever write() says.
      const body = pattern(Number(s.header('x-size')));
      s.respond([':status', '200']);
      for (let off = 0; off < body.length; off += 64 << 10) s.write(body.subarray(off, off + (64 << 10)));
      s.end(['x-bytes', String(body.length)]);
      return;
    }
    case '/sum': {
      // Reads the whole body, answers its size and hash.
      const chunks: Buffer[] = [];
      s.onData = (c) => chunks.push(Buffer.from(c));
      s.onEnd = () => {
        const body = Buffer.concat(chunks);
        s.respond([':status', '200']);
        s.end(['x-bytes', String(body.length), 'x-sha256', sha256(body)]);
      };
      return;
    }
    case '/early':
      // Answers in full at the first piece of the body, while the client is still sending.
      s.onData = () => {
        s.respond([':status', '200']);
        s.write(Buffer.from('early answer'));
        s.end(['x-early', 'yes']);
      };
      return;
    case '/refuse':
      // A trailers-only answer, given at once.
      s.respond([':status', '405'], true);
      return;
    case '/bigheader':
      s.respond([':status', '200', 'x-big', BIG_HEADER]);
      s.write(Buffer.from('x'));
      s.end();
      return;
    case '/reset':
      s.respond([':status', '200']);
      s.write(Buffer.from('partial'));
      s.reset();
      return;
    case '/hang':
      s.respond([':status', '200']);
      s.write(Buffer.from('x'));
      return;
    default:
      echo(s);
  }
}

const BIG_HEADER = noise(40000);

class TestServer {
  port = 0;
  readonly conns: H2ServerConnection[] = [];
  /** Every stream handed to the app, in order. */
  readonly streams: H2Stream[] = [];
  private readonly closes = new Map<H2Stream, Deferred<boolean>>();

  /** Resolves with onClose's `reset` for the latest stream of this id. */
  closeOf(id: number): Promise<boolean> {
    let s: H2Stream | undefined;
    for (const x of this.streams) if (x.id === id) s = x;
    if (s === undefined) throw new Error(`no stream ${id}`);
    return this.closeDeferred(s).promise;
  }

  closeDeferred(s: H2Stream): Deferred<boolean> {
    let d = this.closes.get(s);
    if (d === undefined) this.closes.set(s, (d = deferred()));
    return d;
  }
}

async function startServer(
  t: Test,
  handler: (s: H2Stream) => void = app,
  limits: Partial<H2Limits> = {},
  /** The connections' clock (the rapid-reset bucket's). */
  now?: () => number,
): Promise<TestServer> {
  const srv = new TestServer();
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.setNoDelay(true); // as listen.ts does
    const onStream = (s: H2Stream): void => {
      srv.streams.push(s);
      s.onClose = (reset) => srv.closeDeferred(s).resolve(reset);
      handler(s);
    };
    srv.conns.push(new H2ServerConnection(socket, onStream, { ...DEFAULT_H2_LIMITS, ...limits }, undefined, now));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  srv.port = (server.address() as net.AddressInfo).port;
  t.teardown(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(r));
  });
  return srv;
}

// ------------------------------------------------------------ node:http2 as the client

async function connectNode(t: Test, port: number, settings: http2.Settings = {}): Promise<http2.ClientHttp2Session> {
  const client = http2.connect(`http://127.0.0.1:${port}`, { settings });
  t.teardown(() => client.destroy());
  client.on('error', (e) => t.fail(`client session: ${String(e)}`));
  await once(client, 'remoteSettings');
  return client;
}

interface Answer {
  headers: http2.IncomingHttpHeaders;
  body: Buffer;
  trailers: http2.IncomingHttpHeaders | undefined;
  rstCode: number | undefined;
}

interface CallOptions {
  headers?: Record<string, string>;
  body?: (Buffer | string)[];
  /** Leave the request open after the body: the caller ends it through `opened`. */
  open?: boolean;
  trailers?: Record<string, string>;
  opened?: (req: http2.ClientHttp2Stream) => void;
}

/** One request on a node:http2 session: its answer once the stream has closed. */
async function call(client: http2.ClientHttp2Session, path: string, o: CallOptions = {}): Promise<Answer> {
  const endStream = o.body === undefined && o.trailers === undefined && o.open !== true;
  const req = client.request({ ':method': 'POST', ':path': path, ...o.headers }, { endStream, waitForTrailers: o.trailers !== undefined });
  if (o.trailers !== undefined) {
    const trailers = o.trailers;
    req.once('wantTrailers', () => req.sendTrailers(trailers));
  }
  const chunks: Buffer[] = [];
  let trailers: http2.IncomingHttpHeaders | undefined;
  req.on('data', (c: Buffer) => chunks.push(c));
  req.once('trailers', (h: http2.IncomingHttpHeaders) => (trailers = Object.fromEntries(Object.entries(h))));
  const response = once(req, 'response') as Promise<[http2.IncomingHttpHeaders]>;
  const closed = once(req, 'close');
  closed.catch(() => undefined);
  for (const b of o.body ?? []) req.write(b);
  if (!endStream && o.open !== true) req.end();
  o.opened?.(req);
  const [headers] = await response;
  await closed;
  return { headers, body: Buffer.concat(chunks), trailers, rstCode: req.rstCode };
}

// ------------------------------------------------------------ a client of frames made by hand

interface Frame {
  readonly type: number;
  readonly flags: number;
  readonly id: number;
  readonly payload: Buffer;
  /** HEADERS: the decoded header list, once the block (with its CONTINUATIONs) is complete. */
  headers?: string[];
}

const TYPE_NAMES = ['DATA', 'HEADERS', 'PRIORITY', 'RST_STREAM', 'SETTINGS', 'PUSH_PROMISE', 'PING', 'GOAWAY', 'WINDOW_UPDATE', 'CONTINUATION'];
const describe = (f: Frame): string => `${TYPE_NAMES[f.type] ?? f.type}(${f.id}${f.flags ? `,0x${f.flags.toString(16)}` : ''}${f.payload.length ? `,${f.payload.length}B` : ''})`;
const isHeaders = (f: Frame, id: number): boolean => f.type === FrameType.Headers && f.id === id && f.headers !== undefined;
const ended = (f: Frame): boolean => (f.flags & Flag.EndStream) !== 0 && (f.type === FrameType.Data || f.headers !== undefined);

interface RawOptions {
  /** Send the preface and an empty (or the given) SETTINGS at once; default true. */
  preface?: boolean;
  settings?: [number, number][];
  /** Acknowledge the server's SETTINGS; default true. */
  ackSettings?: boolean;
  /** Give every received DATA frame's bytes back at once with WINDOW_UPDATEs; default false. */
  grant?: boolean;
  /** Answer the server's PINGs, as every client does; default true. */
  ackPings?: boolean;
}

class RawClient {
  readonly frames: Frame[] = [];
  readonly enc = new HpackEncoder();
  private readonly dec = new HpackDecoder(4096, 1 << 26);
  private inBuf = Buffer.alloc(0);
  private block: { frame: Frame; parts: Buffer[] } | undefined;
  private checks: (() => boolean)[] = [];
  isClosed = false;
  readonly closed: Promise<void>;
  /** Anything the client saw wrong in what the server sent (a DATA frame past a window we gave, HPACK...). */
  readonly violations: string[] = [];

  /** What the server lets us send. */
  connSendWindow = 65535;
  private serverInitialWindow = 65535;
  readonly streamSendWindows = new Map<number, number>();
  /** What we let the server send. */
  private connRecvWindow = 65535;
  private recvInitialWindow = 65535;
  private readonly streamRecvWindows = new Map<number, number>();
  /** The highest stream id we have sent a frame on: the server sends on none higher. */
  private maxId = 0;

  private constructor(
    readonly socket: net.Socket,
    private readonly opts: RawOptions,
  ) {
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        this.isClosed = true;
        this.wake();
        resolve();
      }),
    );
    socket.on('error', () => undefined);
    socket.on('data', (c: Buffer) => this.onBytes(c));
  }

  static async connect(t: Test, port: number, opts: RawOptions = {}): Promise<RawClient> {
    const socket = net.connect(port, '127.0.0.1');
    socket.setNoDelay(true);
    const c = new RawClient(socket, opts);
    t.teardown(() => socket.destroy());
    await once(socket, 'connect');
    if (opts.preface ?? true) {
      const settings = opts.settings ?? [];
      for (const [k, v] of settings) if (k === Setting.InitialWindowSize) c.recvInitialWindow = v;
      c.write(CLIENT_PREFACE, frame(FrameType.Settings, 0, 0, settingsPayload(settings)));
    }
    return c;
  }

  write(...bufs: Buffer[]): void {
    this.socket.write(Buffer.concat(bufs));
  }

  send(type: number, flags: number, id: number, payload?: Buffer): void {
    this.maxId = Math.max(this.maxId, id);
    this.write(frame(type, flags, id, payload));
  }

  private open(id: number): void {
    if (!this.streamSendWindows.has(id)) this.streamSendWindows.set(id, this.serverInitialWindow);
    if (!this.streamRecvWindows.has(id)) this.streamRecvWindows.set(id, this.recvInitialWindow);
  }

  /** HEADERS (END_HEADERS always), optionally padded and with a priority block (on stream 0 unless `dependsOn`). */
  headers(id: number, list: string[], o: { end?: boolean; padding?: number; priority?: boolean; dependsOn?: number } = {}): void {
    this.open(id);
    const block = this.enc.encode(list);
    let flags = Flag.EndHeaders | (o.end ? Flag.EndStream : 0);
    const parts: Buffer[] = [];
    if (o.padding !== undefined) {
      flags |= Flag.Padded;
      parts.push(Buffer.of(o.padding));
    }
    if (o.priority || o.dependsOn !== undefined) {
      flags |= Flag.Priority;
      parts.push(u32(0x80000000 | (o.dependsOn ?? 0)), Buffer.of(200)); // exclusive, weight 201
    }
    parts.push(block);
    if (o.padding !== undefined) parts.push(Buffer.alloc(o.padding));
    this.send(FrameType.Headers, flags, id, Buffer.concat(parts));
  }

  request(id: number, path: string, o: { end?: boolean; extra?: string[]; padding?: number; priority?: boolean; dependsOn?: number } = {}): void {
    const list = [':method', 'POST', ':scheme', 'http', ':authority', 'h2.test', ':path', path, ...(o.extra ?? [])];
    this.headers(id, list, o);
  }

  /** One DATA frame (padded if asked); windows count the whole payload. */
  data(id: number, body: Buffer, o: { end?: boolean; padding?: number } = {}): void {
    let payload = body;
    let flags = o.end ? Flag.EndStream : 0;
    if (o.padding !== undefined) {
      flags |= Flag.Padded;
      payload = Buffer.concat([Buffer.of(o.padding), body, Buffer.alloc(o.padding)]);
    }
    this.connSendWindow -= payload.length;
    this.streamSendWindows.set(id, (this.streamSendWindows.get(id) ?? this.serverInitialWindow) - payload.length);
    this.send(FrameType.Data, flags, id, payload);
  }

  /** A body in DATA frames of at most 16384 bytes, never past the windows the server gave: waits for its WINDOW_UPDATEs. */
  async sendBody(id: number, body: Buffer, end = true): Promise<void> {
    let off = 0;
    while (off < body.length) {
      const room = Math.min(this.connSendWindow, this.streamSendWindows.get(id) ?? this.serverInitialWindow, 16384, body.length - off);
      if (room <= 0) {
        await this.next();
        continue;
      }
      this.data(id, body.subarray(off, off + room), { end: end && off + room === body.length });
      off += room;
    }
  }

  /** A SETTINGS of ours after the first; a new INITIAL_WINDOW_SIZE moves the windows we gave. */
  settings(pairs: [number, number][]): void {
    for (const [k, v] of pairs) {
      if (k !== Setting.InitialWindowSize) continue;
      for (const [id, w] of this.streamRecvWindows) this.streamRecvWindows.set(id, w + v - this.recvInitialWindow);
      this.recvInitialWindow = v;
    }
    this.send(FrameType.Settings, 0, 0, settingsPayload(pairs));
  }

  /** Lets the server send n more bytes on a stream (and on the connection when id is 0). */
  windowUpdate(id: number, n: number): void {
    if (id === 0) this.connRecvWindow += n;
    else this.streamRecvWindows.set(id, (this.streamRecvWindows.get(id) ?? this.recvInitialWindow) + n);
    this.send(FrameType.WindowUpdate, 0, id, u32(n));
  }

  ping(payload: Buffer, flags = 0): void {
    this.send(FrameType.Ping, flags, 0, payload);
  }

  // -------------------------------------------------------- reading

  private onBytes(chunk: Buffer): void {
    this.inBuf = Buffer.concat([this.inBuf, chunk]);
    while (this.inBuf.length >= 9) {
      const len = this.inBuf.readUIntBE(0, 3);
      if (this.inBuf.length < 9 + len) break;
      const b = this.inBuf;
      const f: Frame = { type: b[3]!, flags: b[4]!, id: b.readUInt32BE(5) & 0x7fffffff, payload: Buffer.from(b.subarray(9, 9 + len)) };
      this.inBuf = b.subarray(9 + len);
      this.onFrame(f);
    }
    this.wake();
  }

  private onFrame(f: Frame): void {
    this.frames.push(f);
    if (f.type > FrameType.Continuation || f.id > this.maxId) this.violations.push(`a frame out of nowhere: ${describe(f)}`);
    switch (f.type) {
      case FrameType.Headers:
      case FrameType.Continuation: {
        if (f.type === FrameType.Headers) {
          if (this.block !== undefined) this.violations.push(`HEADERS inside a header block: ${describe(f)}`);
          this.block = { frame: f, parts: [] };
        } else if (this.block === undefined || this.block.frame.id !== f.id) {
          this.violations.push(`CONTINUATION out of place: ${describe(f)}`);
          return;
        }
        this.block.parts.push(f.payload);
        if ((f.flags & Flag.EndHeaders) !== 0) {
          const h = this.dec.decode(Buffer.concat(this.block.parts));
          if (h instanceof Error) this.violations.push(`HPACK: ${h.message}`);
          else this.block.frame.headers = h;
          this.block = undefined;
        }
        return;
      }
      case FrameType.Settings:
        if ((f.flags & Flag.Ack) !== 0) return;
        for (let i = 0; i + 6 <= f.payload.length; i += 6) {
          if (f.payload.readUInt16BE(i) !== Setting.InitialWindowSize) continue;
          const v = f.payload.readUInt32BE(i + 2);
          for (const [id, w] of this.streamSendWindows) this.streamSendWindows.set(id, w + v - this.serverInitialWindow);
          this.serverInitialWindow = v;
        }
        if (this.opts.ackSettings ?? true) this.send(FrameType.Settings, Flag.Ack, 0);
        return;
      case FrameType.Ping:
        if ((f.flags & Flag.Ack) === 0 && (this.opts.ackPings ?? true)) this.ping(f.payload, Flag.Ack);
        return;
      case FrameType.WindowUpdate: {
        const inc = f.payload.readUInt32BE(0) & 0x7fffffff;
        if (f.id === 0) this.connSendWindow += inc;
        else this.streamSendWindows.set(f.id, (this.streamSendWindows.get(f.id) ?? this.serverInitialWindow) + inc);
        return;
      }
      case FrameType.Data: {
        const n = f.payload.length;
        this.connRecvWindow -= n;
        const sw = (this.streamRecvWindows.get(f.id) ?? this.recvInitialWindow) - n;
        this.streamRecvWindows.set(f.id, sw);
        if (this.connRecvWindow < 0 || sw < 0) this.violations.push(`DATA of ${n} on stream ${f.id} past a window (connection ${this.connRecvWindow}, stream ${sw})`);
        if (this.opts.grant && n > 0) {
          this.send(FrameType.WindowUpdate, 0, 0, u32(n));
          this.connRecvWindow += n;
          if ((f.flags & Flag.EndStream) === 0) {
            this.send(FrameType.WindowUpdate, 0, f.id, u32(n));
            this.streamRecvWindows.set(f.id, sw + n);
          }
        }
        return;
      }
      default:
        return;
    }
  }

  private wake(): void {
    this.checks = this.checks.filter((check) => !check());
  }

  /** The first frame from index `from` on that matches; rejects if the connection closes first. */
  waitFor(pred: (f: Frame) => boolean, what: string, from = 0): Promise<Frame> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        for (let i = from; i < this.frames.length; i++) {
          if (pred(this.frames[i]!)) {
            resolve(this.frames[i]!);
            return true;
          }
        }
        if (this.isClosed || this.violations.length > 0) {
          const why = this.isClosed ? 'connection closed' : `server error (${this.violations.join('; ')})`;
          reject(new Error(`${why} waiting for ${what}; got ${this.frames.map(describe).join(' ')}`));
          return true;
        }
        return false;
      };
      if (!check()) this.checks.push(check);
    });
  }

  /** The next frame to arrive (or the close). */
  async next(): Promise<void> {
    await this.waitFor(() => true, 'any frame', this.frames.length).catch(() => undefined);
  }

  /** The server's SETTINGS (not an ack). */
  async serverSettings(): Promise<Map<number, number>> {
    const f = await this.waitFor((f) => f.type === FrameType.Settings && (f.flags & Flag.Ack) === 0, 'SETTINGS');
    const m = new Map<number, number>();
    for (let i = 0; i + 6 <= f.payload.length; i += 6) m.set(f.payload.readUInt16BE(i), f.payload.readUInt32BE(i + 2));
    return m;
  }

  /** The first GOAWAY from index `from` on. */
  async goaway(from = 0): Promise<{ last: number; code: number; debug: string }> {
    const f = await this.waitFor((f) => f.type === FrameType.GoAway, 'GOAWAY', from);
    return goAwayOf(f);
  }

  /** The response headers of a stream, as an object. */
  async response(id: number): Promise<Record<string, string>> {
    const f = await this.waitFor((f) => isHeaders(f, id), `HEADERS on stream ${id}`);
    return pairs(f.headers!);
  }

  /** Waits for the frame that ends the stream from the server's side: END_STREAM or RST_STREAM. */
  streamEnd(id: number): Promise<Frame> {
    return this.waitFor((f) => f.id === id && (ended(f) || f.type === FrameType.RstStream), `the end of stream ${id}`);
  }

  async rst(id: number): Promise<number> {
    const f = await this.waitFor((f) => f.type === FrameType.RstStream && f.id === id, `RST_STREAM on stream ${id}`);
    return f.payload.readUInt32BE(0);
  }

  /** A PING round trip: the server has handled everything sent before it, and flushed once since. */
  async roundTrip(): Promise<void> {
    const payload = Buffer.from(`rt${String(this.frames.length).padStart(6, '0')}`);
    const from = this.frames.length;
    this.ping(payload);
    await this.waitFor((f) => f.type === FrameType.Ping && (f.flags & Flag.Ack) !== 0 && f.payload.equals(payload), 'PING ack', from);
  }

  streamFrames(id: number): Frame[] {
    return this.frames.filter((f) => f.id === id);
  }

  body(id: number): Buffer {
    return Buffer.concat(this.frames.filter((f) => f.type === FrameType.Data && f.id === id).map((f) => f.payload));
  }

  /** The header lists of a stream's HEADERS frames after the first (its trailers), as one object. */
  trailers(id: number): Record<string, string> | undefined {
    const h = this.frames.filter((f) => isHeaders(f, id));
    return h.length > 1 ? pairs(h[h.length - 1]!.headers!) : undefined;
  }
}

function goAwayOf(f: Frame): { last: number; code: number; debug: string } {
  return { last: f.payload.readUInt32BE(0) & 0x7fffffff, code: f.payload.readUInt32BE(4), debug: f.payload.subarray(8).toString() };
}

function pairs(list: readonly string[]): Record<string, string> {
  const o: Record<string, string> = {};
  for (let i = 0; i < list.length; i += 2) o[list[i]!] = list[i + 1]!;
  return o;
}

// ------------------------------------------------------------ 1. requests and responses

t.test('a request with headers and a body both ways, ended by trailers, as node:http2 sees it', async (t) => {
  const srv = await startServer(t);
  const client = await connectNode(t, srv.port);
  const a = await call(client, '/echo', { headers: { 'x-hello': 'world' }, body: ['first ', Buffer.from('second '), 'third'] });
  t.match(a.headers, { ':status': 200, 'content-type': 'application/x-echo', 'x-path': '/echo', 'x-method': 'POST', 'x-hello': 'world' });
  t.equal(a.body.toString(), 'first second third');
  t.same(a.trailers, { 'x-bytes': '18', 'x-end': 'ok' });
  t.equal(a.rstCode, http2.constants.NGHTTP2_NO_ERROR);

  // What the server saw of it.
  const s = srv.streams[0]!;
  t.equal(s.id, 1);
  t.equal(s.header(':method'), 'POST');
  t.equal(s.header(':path'), '/echo');
  t.equal(s.header(':scheme'), 'http');
  t.equal(s.header(':authority'), `127.0.0.1:${srv.port}`);
  t.equal(s.header('x-hello'), 'world');
  t.equal(s.header('x-absent'), undefined);
  t.equal(await srv.closeOf(1), false, 'onClose(false): ended by both sides');
  t.equal(srv.conns[0]!.streamCount, 0);

  // A request with trailers of its own, and one with no body at all.
  const b = await call(client, '/echo', { body: ['with trailers'], trailers: { 'x-client-trailer': '1' } });
  t.equal(b.body.toString(), 'with trailers');
  t.same(b.trailers, { 'x-bytes': '13', 'x-end': 'ok' });
  const c = await call(client, '/echo');
  t.equal(c.headers[':status'], 200);
  t.equal(c.body.length, 0);
  t.same(c.trailers, { 'x-bytes': '0', 'x-end': 'ok' });
  t.equal(srv.conns.length, 1, 'one connection');
  t.same(
    srv.streams.map((s) => s.id),
    [1, 3, 5],
  );
});

t.test('many streams at once on one connection', async (t) => {
  const srv = await startServer(t);
  const client = await connectNode(t, srv.port);
  const n = 24;
  // Every request is sent (and left open) before any is ended, so all are open together on the server.
  const reqs: http2.ClientHttp2Stream[] = [];
  const all = Array.from({ length: n }, (_, i) =>
    call(client, `/echo`, {
      headers: { 'x-hello': `req-${i}` },
      body: [pattern(1000 + i * 7919)],
      open: true,
      opened: (req) => reqs.push(req),
    }),
  );
  await new Promise<void>((resolve) => {
    const check = (): void => {
      if (srv.streams.length === n) resolve();
      else setImmediate(check);
    };
    check();
  });
  t.equal(srv.conns[0]!.streamCount, n, 'all open at once');
  for (const r of reqs) r.end();
  const answers = await Promise.all(all);
  answers.forEach((a, i) => {
    t.equal(a.headers['x-hello'], `req-${i}`, `stream ${i}: its own headers`);
    t.ok(a.body.equals(pattern(1000 + i * 7919)), `stream ${i}: its own body`);
    t.same(a.trailers, { 'x-bytes': String(1000 + i * 7919), 'x-end': 'ok' });
  });
  t.equal(srv.conns.length, 1);
});

t.test('a response header block over 16384 bytes goes out as HEADERS and CONTINUATION', async (t) => {
  const srv = await startServer(t);
  const client = await connectNode(t, srv.port);
  const a = await call(client, '/bigheader');
  t.equal(a.headers['x-big'], BIG_HEADER, 'node:http2 reads it whole');

  const c = await RawClient.connect(t, srv.port);
  c.request(1, '/bigheader', { end: true });
  const h = await c.response(1);
  t.equal(h['x-big'], BIG_HEADER);
  const fs = c.streamFrames(1);
  t.equal(fs[0]!.type, FrameType.Headers);
  t.equal(fs[0]!.flags & Flag.EndHeaders, 0, 'HEADERS without END_HEADERS');
  t.ok(fs[0]!.payload.length <= 16384);
  const conts = fs.slice(1).filter((f) => f.type === FrameType.Continuation);
  t.ok(conts.length >= 1, 'CONTINUATION follows');
  t.equal(conts[conts.length - 1]!.flags & Flag.EndHeaders, Flag.EndHeaders, 'the last one ends the block');
  // Nothing between them, on any stream.
  const first = c.frames.indexOf(fs[0]!);
  t.same(
    c.frames.slice(first, first + 1 + conts.length).map((f) => [f.type, f.id]),
    [[FrameType.Headers, 1], ...conts.map(() => [FrameType.Continuation, 1])],
  );
  await c.streamEnd(1);
  t.same(c.violations, []);
});

t.test("the client's header table size is honoured (0 and 100 bytes)", async (t) => {
  const srv = await startServer(t);
  for (const headerTableSize of [0, 100]) {
    const client = await connectNode(t, srv.port, { headerTableSize });
    for (let i = 0; i < 5; i++) {
      // The same names and values again and again: what an encoder would index.
      const a = await call(client, '/echo', { headers: { 'x-hello': i % 2 ? 'odd' : 'even' } });
      t.equal(a.headers['x-hello'], i % 2 ? 'odd' : 'even', `table ${headerTableSize}, request ${i}`);
      t.equal(a.headers['content-type'], 'application/x-echo');
      t.same(a.trailers, { 'x-bytes': '0', 'x-end': 'ok' });
    }
    client.close();
    await once(client, 'close');
  }
});

// ------------------------------------------------------------ 2. flow control, server to client

t.test('1 MiB to a node:http2 client whose stream window is 1000 bytes arrives whole and in order', async (t) => {
  const srv = await startServer(t);
  const client = await connectNode(t, srv.port, { initialWindowSize: 1000 });
  const a = await call(client, '/big', { headers: { 'x-size': String(MiB) } });
  t.equal(a.body.length, MiB);
  t.ok(a.body.equals(pattern(MiB)), 'in order');
  t.same(a.trailers, { 'x-bytes': String(MiB) });
  t.equal(a.rstCode, http2.constants.NGHTTP2_NO_ERROR);
});

t.test('DATA frames stay within the windows the client gives and its max frame size', async (t) => {
  const srv = await startServer(t);

  // A stream window of 1000, given back frame by frame: no frame over it, none past the window.
  const small = await RawClient.connect(t, srv.port, { settings: [[Setting.InitialWindowSize, 1000]], grant: true });
  small.request(1, '/big', { end: true, extra: ['x-size', String(MiB)] });
  await small.streamEnd(1);
  t.ok(small.body(1).equals(pattern(MiB)), '1 MiB whole and in order');
  const sizes1 = small.streamFrames(1).filter((f) => f.type === FrameType.Data).map((f) => f.payload.length);
  t.ok(Math.max(...sizes1) <= 1000, `no DATA frame over the window of 1000 (largest ${Math.max(...sizes1)})`);
  t.same(small.violations, []);
  t.same(small.trailers(1), { 'x-bytes': String(MiB) });

  // Default frame size, a large window: frames are cut at 16384.
  const dflt = await RawClient.connect(t, srv.port, { settings: [[Setting.InitialWindowSize, 4 * MiB]], grant: true });
  dflt.request(1, '/big', { end: true, extra: ['x-size', String(MiB)] });
  await dflt.streamEnd(1);
  t.ok(dflt.body(1).equals(pattern(MiB)));
  const sizes2 = dflt.streamFrames(1).filter((f) => f.type === FrameType.Data).map((f) => f.payload.length);
  t.equal(Math.max(...sizes2), 16384, 'DATA frames of 16384 at most, and some that full');
  t.same(dflt.violations, []);

  // MAX_FRAME_SIZE 40000: larger frames, none over it.
  const big = await RawClient.connect(t, srv.port, {
    settings: [
      [Setting.InitialWindowSize, 4 * MiB],
      [Setting.MaxFrameSize, 40000],
    ],
    grant: true,
  });
  big.request(1, '/big', { end: true, extra: ['x-size', String(MiB)] });
  await big.streamEnd(1);
  t.ok(big.body(1).equals(pattern(MiB)));
  const sizes3 = big.streamFrames(1).filter((f) => f.type === FrameType.Data).map((f) => f.payload.length);
  t.equal(Math.max(...sizes3), 40000);
  t.same(big.violations, []);
});

t.test('streams waiting for the connection window keep their turn, and finish whole', async (t) => {
  const srv = await startServer(t);
  // Large stream windows, the connection's 65535: 40000 for stream 1, 25535 for 3, none for 5.
  const c = await RawClient.connect(t, srv.port, { settings: [[Setting.InitialWindowSize, 4 * MiB]] });
  for (const id of [1, 3, 5]) c.request(id, '/big', { end: true, extra: ['x-size', '40000'] });
  await c.response(5);
  await c.roundTrip();
  t.same([1, 3, 5].map((id) => c.body(id).length), [40000, 25535, 0], 'the window spent in request order');
  const before = c.frames.length;
  c.windowUpdate(0, 200000);
  await c.streamEnd(3);
  await c.streamEnd(5);
  const after = c.frames.slice(before).filter((f) => f.type === FrameType.Data && f.payload.length > 0).map((f) => f.id);
  t.same([...new Set(after)], [3, 5], `stream 3 is served out before stream 5 starts (${after.join(',')})`);
  for (const id of [1, 3, 5]) t.ok(c.body(id).equals(pattern(40000)), `stream ${id} whole and in order`);
  t.same(c.violations, []);
});

t.test('a SETTINGS that changes the window mid-stream moves the open streams windows', async (t) => {
  const srv = await startServer(t);
  const c = await RawClient.connect(t, srv.port, { settings: [[Setting.InitialWindowSize, 0]] });
  c.request(1, '/big', { end: true, extra: ['x-size', '5000'] });
  await c.response(1);
  await c.roundTrip();
  t.equal(c.body(1).length, 0, 'nothing while the window is 0');
  // Both the stream window (via the setting) and the connection window have room now.
  c.settings([[Setting.InitialWindowSize, 3000]]);
  await c.waitFor((f) => f.type === FrameType.Data && f.id === 1, 'DATA');
  await c.roundTrip();
  t.equal(c.body(1).length, 3000, 'exactly the new window');
  c.windowUpdate(1, 2000);
  await c.streamEnd(1);
  t.ok(c.body(1).equals(pattern(5000)));
  t.same(c.violations, []);
});

// ------------------------------------------------------------ 3. flow control, client to server

t.test('a 3 MiB request body arrives whole from node:http2', async (t) => {
  const body = pattern(3 * MiB);
  for (const limits of [{}, { streamWindowBytes: 65535, connectionWindowBytes: 65535 }]) {
    const srv = await startServer(t, app, limits);
    const client = await connectNode(t, srv.port);
    const a = await call(client, '/sum', { body: [body] });
    t.same(a.trailers, { 'x-bytes': String(body.length), 'x-sha256': sha256(body) }, JSON.stringify(limits));
  }
});

t.test('the server gives back the stream and connection windows with WINDOW_UPDATEs', async (t) => {
  const streamWindowBytes = 100_000;
  const connectionWindowBytes = 200_000;
  const srv = await startServer(t, app, { streamWindowBytes, connectionWindowBytes });
  const c = await RawClient.connect(t, srv.port);
  const settings = await c.serverSettings();
  t.equal(settings.get(Setting.InitialWindowSize), streamWindowBytes);
  const body = pattern(3 * MiB);
  c.request(1, '/sum');
  // Never past a window the server gave: this finishes only if it gives more.
  await c.sendBody(1, body);
  const end = await c.streamEnd(1);
  t.equal(end.type, FrameType.Headers);
  t.same(c.trailers(1), { 'x-bytes': String(body.length), 'x-sha256': sha256(body) });
  const updates = c.frames.filter((f) => f.type === FrameType.WindowUpdate);
  const sum = (id: number): number => updates.filter((f) => f.id === id).reduce((n, f) => n + f.payload.readUInt32BE(0), 0);
  t.ok(sum(1) >= body.length - streamWindowBytes, `stream: ${sum(1)} granted`);
  t.ok(sum(0) >= body.length - 65535, `connection: ${sum(0)} granted`);
  t.equal(updates[0]!.id, 0);
  t.equal(updates[0]!.payload.readUInt32BE(0), connectionWindowBytes - 65535, 'the connection window raised at the start');
});

// No client can overrun a window of ours: it starts at 64 KiB at least and is given back as each
// half is used, and a frame is at most 16 KiB. The windows under 64 KiB asked for are raised to it:
t.test('a connection window under 65535 is only what the client was told: 65535', async (t) => {
  // A client may always send 65535 bytes on a new connection (§6.9.2); nothing can shrink that.
  const srv = await startServer(t, app, { connectionWindowBytes: 1000 });
  const c = await RawClient.connect(t, srv.port);
  await c.serverSettings();
  c.request(1, '/sum');
  c.data(1, Buffer.alloc(16384));
  c.data(1, Buffer.alloc(3616), { end: true });
  const f = await c.waitFor((f) => f.type === FrameType.GoAway || (isHeaders(f, 1) && ended(f)), 'GOAWAY or the answer');
  t.equal(f.type, FrameType.Headers, `answered, not ${describe(f)}`);
});

t.test('a stream window under 65535 does not bind DATA sent before the client has acknowledged it', async (t) => {
  // Until it has our SETTINGS, a client rightly assumes 65535 (§6.9.2); §6.9.3: the receiver
  // "MUST be prepared to receive data that exceeds this window size".
  const srv = await startServer(t, app, { streamWindowBytes: 1000 });
  const c = await RawClient.connect(t, srv.port, { ackSettings: false });
  c.request(1, '/sum');
  c.data(1, Buffer.alloc(16384));
  c.data(1, Buffer.alloc(3616), { end: true });
  const f = await c.waitFor((f) => (f.type === FrameType.RstStream && f.id === 1) || (isHeaders(f, 1) && ended(f)), 'RST_STREAM or the answer');
  t.equal(f.type, FrameType.Headers, `answered, not ${describe(f)}`);
});

// ------------------------------------------------------------ 4. PING and SETTINGS

t.test('PING is answered with its 8 bytes, a PING ack is not; SETTINGS are acknowledged', async (t) => {
  const limits = { maxConcurrentStreams: 77, streamWindowBytes: 123456, maxHeaderListBytes: 5000, connectionWindowBytes: 1 << 21 };
  const srv = await startServer(t, app, limits);
  const c = await RawClient.connect(t, srv.port, { settings: [[Setting.MaxFrameSize, 20000]] });
  const settings = await c.serverSettings();
  t.same(
    [...settings].sort((a, b) => a[0] - b[0]),
    [
      [Setting.EnablePush, 0],
      [Setting.MaxConcurrentStreams, 77],
      [Setting.InitialWindowSize, 123456],
      [Setting.MaxHeaderListSize, 5000],
    ],
    "the server's SETTINGS",
  );
  const firstUpdate = await c.waitFor((f) => f.type === FrameType.WindowUpdate, 'WINDOW_UPDATE');
  t.equal(firstUpdate.id, 0);
  t.equal(firstUpdate.payload.readUInt32BE(0), (1 << 21) - 65535, 'the connection window raised to its limit');

  const acks = (): Frame[] => c.frames.filter((f) => f.type === FrameType.Settings && (f.flags & Flag.Ack) !== 0);
  const ack = await c.waitFor((f) => f.type === FrameType.Settings && (f.flags & Flag.Ack) !== 0, 'SETTINGS ack');
  t.equal(ack.id, 0);
  t.equal(ack.payload.length, 0, 'an ack is empty');

  const notAnswered = Buffer.from('ack-ack!');
  const payload = Buffer.from([1, 2, 3, 4, 250, 251, 252, 253]);
  c.ping(notAnswered, Flag.Ack);
  c.ping(payload);
  const pong = await c.waitFor((f) => f.type === FrameType.Ping, 'PING');
  t.equal(pong.flags, Flag.Ack);
  t.equal(pong.id, 0);
  t.ok(pong.payload.equals(payload), 'the same 8 bytes');
  t.equal(c.frames.filter((f) => f.type === FrameType.Ping).length, 1, 'a PING ack from the client is not answered');

  c.send(FrameType.Settings, 0, 0, settingsPayload([[Setting.HeaderTableSize, 1000]]));
  c.send(FrameType.Settings, 0, 0);
  await c.roundTrip();
  t.equal(acks().length, 3, 'every SETTINGS acknowledged once');

  // node:http2's own view of both.
  const client = await connectNode(t, srv.port);
  const [err, , echoed] = await new Promise<[Error | null, number, Buffer]>((resolve) =>
    client.ping(Buffer.from('nodeping'), (e, d, p) => resolve([e, d, p])),
  );
  t.equal(err, null);
  t.equal(echoed.toString(), 'nodeping');
  const settled = await new Promise<Error | null>((resolve) => client.settings({ initialWindowSize: 50000 }, (e) => resolve(e)));
  t.equal(settled, null, 'node:http2 saw its SETTINGS acknowledged');
  t.equal(client.remoteSettings.maxConcurrentStreams, 77);
  t.equal(client.remoteSettings.initialWindowSize, 123456);
  t.equal(client.remoteSettings.enablePush, false);
});

// ------------------------------------------------------------ 5. RST_STREAM from the client

t.test('RST_STREAM from the client: onClose(reset) and the connection serves on', async (t) => {
  const srv = await startServer(t);
  const client = await connectNode(t, srv.port);
  const req = client.request({ ':method': 'POST', ':path': '/hang' });
  await once(req, 'response');
  req.resume();
  req.close(http2.constants.NGHTTP2_CANCEL);
  t.equal(await srv.closeOf(1), true, 'onClose(true)');
  t.equal(srv.conns[0]!.streamCount, 0);
  const a = await call(client, '/echo', { body: ['after the reset'] });
  t.equal(a.body.toString(), 'after the reset');
  t.equal(srv.conns.length, 1, 'on the same connection');

  // A raw RST_STREAM on a stream that has data waiting for window: dropped, the others go on.
  const c = await RawClient.connect(t, srv.port, { settings: [[Setting.InitialWindowSize, 0]] });
  c.request(1, '/big', { end: true, extra: ['x-size', '10000'] });
  await c.response(1);
  c.send(FrameType.RstStream, 0, 1, u32(ErrorCode.Cancel));
  c.settings([[Setting.InitialWindowSize, 65535]]);
  c.request(3, '/echo', { end: true });
  await c.streamEnd(3);
  await c.roundTrip();
  t.equal(c.body(1).length, 0, 'nothing more on the reset stream');
  t.same(c.trailers(3), { 'x-bytes': '0', 'x-end': 'ok' });
});

t.test('the app resets a stream, or answers with headers alone', async (t) => {
  const srv = await startServer(t);
  const client = await connectNode(t, srv.port);
  const req = client.request({ ':method': 'POST', ':path': '/reset' }, { endStream: true });
  req.on('data', () => undefined);
  req.on('error', () => undefined); // node reports a CANCEL reset as an error too
  await once(req, 'close');
  t.equal(req.rstCode, http2.constants.NGHTTP2_CANCEL, 'RST_STREAM(CANCEL)');
  t.equal(await srv.closeOf(1), true, 'onClose(true)');
  const s = srv.streams[0]!;
  t.equal(s.write(Buffer.from('more')), false, 'write() after the end is refused');
  const a = await call(client, '/refuse');
  t.equal(a.headers[':status'], 405);
  t.equal(a.body.length, 0);
  t.equal(a.trailers, undefined);
  t.equal(a.rstCode, http2.constants.NGHTTP2_NO_ERROR);
  t.equal(await srv.closeOf(3), false);
});

// ------------------------------------------------------------ 6. write() and onDrain

t.test('write() is false past streamHighWaterBytes while the window is shut, onDrain once it opens', async (t) => {
  const results: boolean[] = [];
  let drains = 0;
  let granted = false;
  let drainedAfterGrant: boolean | undefined;
  const srv = await startServer(
    t,
    (s) => {
      s.respond([':status', '200']);
      results.push(s.write(Buffer.alloc(600, 1)), s.write(Buffer.alloc(600, 2)));
      s.onDrain = () => {
        drains++;
        drainedAfterGrant = granted;
        s.end(['x-drained', 'yes']);
      };
    },
    { streamHighWaterBytes: 1000 },
  );
  const c = await RawClient.connect(t, srv.port, { settings: [[Setting.InitialWindowSize, 0]] });
  c.request(1, '/drain', { end: true });
  await c.response(1);
  await c.roundTrip();
  t.same(results, [true, false], 'true under the mark, false past it');
  t.equal(drains, 0, 'no onDrain while the window is shut');
  t.equal(c.body(1).length, 0);
  granted = true;
  c.windowUpdate(1, 1200);
  await c.streamEnd(1);
  t.same(c.trailers(1), { 'x-drained': 'yes' });
  t.equal(drains, 1);
  t.equal(drainedAfterGrant, true, 'onDrain came after the WINDOW_UPDATE');
  t.ok(c.body(1).equals(Buffer.concat([Buffer.alloc(600, 1), Buffer.alloc(600, 2)])));
  t.same(c.violations, []);
});

t.test('onDrain fires once the backlog is under streamHighWaterBytes', async (t) => {
  let drains = 0;
  const srv = await startServer(
    t,
    (s) => {
      s.respond([':status', '200']);
      s.write(Buffer.alloc(1200, 1));
      s.onDrain = () => drains++;
    },
    { streamHighWaterBytes: 1000 },
  );
  const c = await RawClient.connect(t, srv.port, { settings: [[Setting.InitialWindowSize, 0]] });
  c.request(1, '/drain', { end: true });
  await c.response(1);
  c.windowUpdate(1, 300);
  // The pump that sends these 300 bytes leaves 900 < 1000 behind, and would have called onDrain before writing them.
  await c.waitFor((f) => f.type === FrameType.Data && f.id === 1, 'DATA');
  t.equal(drains, 1, 'onDrain with 900 bytes left of 1000 allowed');
});

t.test("a stream whose answers pile up unsent gets no more window until they leave (inbound backpressure)", async (t) => {
  // The echo app answers each chunk; the client's window for our answers is shut, so they pile up.
  const srv = await startServer(t, app, { streamWindowBytes: 65535, streamHighWaterBytes: 1000 });
  const c = await RawClient.connect(t, srv.port, { settings: [[Setting.InitialWindowSize, 0]] });
  await c.serverSettings();
  c.request(1, '/echo');
  const body = pattern(200_000);
  const sending = c.sendBody(1, body);
  // All the window the stream started with is used, and its echo is stuck behind our shut window.
  while ((c.streamSendWindows.get(1) ?? 1) > 0) await c.next();
  await c.roundTrip();
  const updates = (): number => c.frames.filter((f) => f.type === FrameType.WindowUpdate && f.id === 1).length;
  t.equal(updates(), 0, 'no stream WINDOW_UPDATE while 65535 bytes of answers wait');
  t.equal(srv.streams[0]!.pendingBytes, 65535, 'what came in is all that waits: nothing more could');
  // Reading the answers lets the client send again, and the body completes.
  c.windowUpdate(1, 1 << 30);
  c.windowUpdate(0, 1 << 30);
  await sending;
  await c.streamEnd(1);
  t.ok(updates() > 0, 'the window came back once the answers left');
  t.ok(c.body(1).equals(body), 'the whole body echoed, in order');
  t.same(c.violations, []);
});

t.test('the connection window is held while the socket takes nothing more, given back at drain', async (t) => {
  // A socket of our own that never finishes a write: the connection is blocked from the first flush.
  const written: Buffer[] = [];
  let blocked = true;
  const held: (() => void)[] = [];
  const socket = new Duplex({
    read() {},
    write(chunk: Buffer, _enc, cb) {
      written.push(chunk);
      if (blocked) held.push(cb);
      else cb();
    },
    highWaterMark: 1,
  });
  const turn = async (): Promise<void> => {
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
  };
  // What the connection hands the socket, buffered or not.
  const handed: Buffer[] = [];
  const write = socket.write.bind(socket) as (chunk: Buffer) => boolean;
  socket.write = ((chunk: Buffer) => {
    handed.push(chunk);
    return write(chunk);
  }) as typeof socket.write;
  const seen: H2Stream[] = [];
  new H2ServerConnection(socket, (s) => seen.push(s), { ...DEFAULT_H2_LIMITS, connectionWindowBytes: 65535, streamWindowBytes: 1 << 20 });
  // Our SETTINGS go out first, and the socket takes them without ever finishing: blocked.
  await turn();
  t.equal(written.length, 1);
  const enc = new HpackEncoder();
  const frames = (bufs: Buffer[]): Buffer => Buffer.concat(bufs);
  socket.push(frames([CLIENT_PREFACE, frame(FrameType.Settings, 0, 0)]));
  socket.push(frame(FrameType.Headers, Flag.EndHeaders, 1, enc.encode([':method', 'POST', ':scheme', 'http', ':path', '/sink'])));
  // 65535 bytes: the whole connection window, more than half of which would be given back at once.
  for (let off = 0; off < 65535; off += 16384) socket.push(frame(FrameType.Data, 0, 1, Buffer.alloc(Math.min(16384, 65535 - off))));
  await turn();
  const connUpdates = (): number => {
    let n = 0;
    for (const w of handed) {
      for (let off = 0; off + 9 <= w.length; off += 9 + w.readUIntBE(off, 3)) if (w[off + 3] === FrameType.WindowUpdate && (w.readUInt32BE(off + 5) & 0x7fffffff) === 0) n++;
    }
    return n;
  };
  t.equal(seen.length, 1);
  t.equal(connUpdates(), 0, 'no connection WINDOW_UPDATE while the socket is blocked');
  // The socket takes what it was given: 'drain', and the window comes back.
  blocked = false;
  for (const cb of held) cb();
  await turn();
  t.equal(connUpdates(), 1, 'the connection window given back at drain');
  socket.destroy();
});

t.test('end() without trailers once the data is out still ends the stream', async (t) => {
  // The paths of end() that do work: the END_STREAM rides on the last DATA frame.
  const srv = await startServer(t, (s) => {
    s.respond([':status', '200']);
    s.write(Buffer.from('abc'));
    s.end();
  });
  const client = await connectNode(t, srv.port);
  const a = await call(client, '/');
  t.equal(a.body.toString(), 'abc');
  t.equal(a.rstCode, http2.constants.NGHTTP2_NO_ERROR);
});

t.test('end() with nothing to send and no trailers sends END_STREAM', async (t) => {
  const srv = await startServer(t, (s) => {
    s.respond([':status', '200']);
    s.end();
  });
  const c = await RawClient.connect(t, srv.port);
  c.request(1, '/', { end: true });
  t.equal((await c.response(1))[':status'], '200');
  await c.roundTrip();
  t.ok(c.streamFrames(1).some(ended), 'stream 1 ended');
});

t.test('end() with nothing to send while the client is still sending: END_STREAM, RST_STREAM, framing intact', async (t) => {
  // Here the cut falls inside the RST_STREAM that follows: the bytes after it are misframed.
  const srv = await startServer(t, (s) => {
    s.respond([':status', '200']);
    s.end();
  });
  const c = await RawClient.connect(t, srv.port);
  c.request(1, '/');
  await c.response(1);
  await c.roundTrip();
  t.same(
    c.streamFrames(1).map(describe),
    ['HEADERS(1,0x4,1B)', 'DATA(1,0x1)', 'RST_STREAM(1,4B)'],
  );
});

// ------------------------------------------------------------ 7. protocol errors

interface ErrorCase {
  name: string;
  preface?: boolean;
  act: (c: RawClient) => void | Promise<void>;
  code: number;
  last?: number;
}

const requestHeaders = (path: string): string[] => [':method', 'POST', ':scheme', 'http', ':authority', 'h2.test', ':path', path];

const errorCases: ErrorCase[] = [
  {
    name: 'a wrong preface',
    preface: false,
    act: (c) => c.write(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')),
    code: ErrorCode.ProtocolError,
  },
  {
    name: 'a preface that starts right and goes wrong',
    preface: false,
    act: async (c) => {
      c.write(CLIENT_PREFACE.subarray(0, 10));
      await c.serverSettings();
      c.write(Buffer.from('/1.1\r\n\r\nSM\r\n\r\n'));
    },
    code: ErrorCode.ProtocolError,
  },
  { name: 'DATA on stream 0', act: (c) => c.send(FrameType.Data, 0, 0, Buffer.from('x')), code: ErrorCode.ProtocolError },
  { name: 'HEADERS on an even stream id', act: (c) => c.request(2, '/echo', { end: true }), code: ErrorCode.ProtocolError },
  { name: 'HEADERS on stream 0', act: (c) => c.request(0, '/echo', { end: true }), code: ErrorCode.ProtocolError },
  {
    name: 'a frame over 16384 bytes',
    act: async (c) => {
      c.request(1, '/echo');
      await c.response(1);
      c.send(FrameType.Data, 0, 1, Buffer.alloc(16385));
    },
    code: ErrorCode.FrameSizeError,
    last: 1,
  },
  {
    name: 'an unknown frame type over 16384 bytes',
    act: (c) => c.send(0xfa, 0, 0, Buffer.alloc(20000)),
    code: ErrorCode.FrameSizeError,
  },
  { name: 'a WINDOW_UPDATE of 0 on the connection', act: (c) => c.send(FrameType.WindowUpdate, 0, 0, u32(0)), code: ErrorCode.ProtocolError },
  {
    name: 'a connection window past 2^31-1',
    act: (c) => c.send(FrameType.WindowUpdate, 0, 0, u32(0x7fffffff)),
    code: ErrorCode.FlowControlError,
  },
  { name: 'a WINDOW_UPDATE of 3 bytes', act: (c) => c.send(FrameType.WindowUpdate, 0, 0, Buffer.alloc(3, 1)), code: ErrorCode.FrameSizeError },
  { name: 'a WINDOW_UPDATE on an idle stream', act: (c) => c.send(FrameType.WindowUpdate, 0, 9, u32(10)), code: ErrorCode.ProtocolError },
  {
    name: 'a CONTINUATION without HEADERS',
    act: (c) => c.send(FrameType.Continuation, Flag.EndHeaders, 1, c.enc.encode(requestHeaders('/echo'))),
    code: ErrorCode.ProtocolError,
  },
  {
    name: 'a CONTINUATION on another stream',
    act: (c) => {
      const block = c.enc.encode(requestHeaders('/echo'));
      c.send(FrameType.Headers, Flag.EndStream, 1, block.subarray(0, 3));
      c.send(FrameType.Continuation, Flag.EndHeaders, 3, block.subarray(3));
    },
    code: ErrorCode.ProtocolError,
  },
  {
    name: 'a PING inside a header block',
    act: (c) => {
      const block = c.enc.encode(requestHeaders('/echo'));
      c.send(FrameType.Headers, Flag.EndStream, 1, block.subarray(0, 3));
      c.ping(Buffer.alloc(8));
      c.send(FrameType.Continuation, Flag.EndHeaders, 1, block.subarray(3));
    },
    code: ErrorCode.ProtocolError,
  },
  { name: 'HPACK index 0', act: (c) => c.send(FrameType.Headers, Flag.EndHeaders | Flag.EndStream, 1, Buffer.of(0x80)), code: ErrorCode.CompressionError },
  {
    name: 'HPACK index past the tables',
    act: (c) => c.send(FrameType.Headers, Flag.EndHeaders | Flag.EndStream, 1, Buffer.of(0x82, 0xbe)),
    code: ErrorCode.CompressionError,
  },
  {
    name: 'an HPACK table size update over the 4096 allowed',
    act: (c) => c.send(FrameType.Headers, Flag.EndHeaders | Flag.EndStream, 1, Buffer.of(0x3f, 0xe2, 0x1f)),
    code: ErrorCode.CompressionError,
  },
  {
    name: 'an HPACK string cut short',
    act: (c) => c.send(FrameType.Headers, Flag.EndHeaders | Flag.EndStream, 1, Buffer.of(0x40, 0x05, 0x61, 0x62)),
    code: ErrorCode.CompressionError,
  },
  {
    name: 'HEADERS on a stream that both sides have ended',
    act: async (c) => {
      c.request(1, '/echo', { end: true });
      await c.streamEnd(1);
      c.request(1, '/echo', { end: true });
    },
    code: ErrorCode.StreamClosed,
    last: 1,
  },
  {
    name: 'PUSH_PROMISE from a client',
    act: (c) => c.send(FrameType.PushPromise, Flag.EndHeaders, 1, Buffer.concat([u32(2), c.enc.encode(requestHeaders('/echo'))])),
    code: ErrorCode.ProtocolError,
  },
  {
    name: 'SETTINGS_MAX_FRAME_SIZE under 16384',
    act: (c) => c.send(FrameType.Settings, 0, 0, settingsPayload([[Setting.MaxFrameSize, 16383]])),
    code: ErrorCode.ProtocolError,
  },
  {
    name: 'SETTINGS_INITIAL_WINDOW_SIZE over 2^31-1',
    act: (c) => c.send(FrameType.Settings, 0, 0, settingsPayload([[Setting.InitialWindowSize, 2 ** 31]])),
    code: ErrorCode.FlowControlError,
  },
  {
    name: 'SETTINGS_ENABLE_PUSH of 2',
    act: (c) => c.send(FrameType.Settings, 0, 0, settingsPayload([[Setting.EnablePush, 2]])),
    code: ErrorCode.ProtocolError,
  },
  { name: 'a SETTINGS of 5 bytes', act: (c) => c.send(FrameType.Settings, 0, 0, Buffer.alloc(5)), code: ErrorCode.FrameSizeError },
  { name: 'a SETTINGS ack with a payload', act: (c) => c.send(FrameType.Settings, Flag.Ack, 0, Buffer.alloc(6)), code: ErrorCode.FrameSizeError },
  { name: 'SETTINGS on a stream', act: (c) => c.send(FrameType.Settings, 0, 1), code: ErrorCode.ProtocolError },
  { name: 'a PING of 7 bytes', act: (c) => c.ping(Buffer.alloc(7)), code: ErrorCode.FrameSizeError },
  { name: 'a PING on a stream', act: (c) => c.send(FrameType.Ping, 0, 1, Buffer.alloc(8)), code: ErrorCode.ProtocolError },
  { name: 'DATA on an idle stream', act: (c) => c.send(FrameType.Data, 0, 1, Buffer.from('x')), code: ErrorCode.ProtocolError },
  { name: 'RST_STREAM on an idle stream', act: (c) => c.send(FrameType.RstStream, 0, 1, u32(ErrorCode.Cancel)), code: ErrorCode.ProtocolError },
  { name: 'RST_STREAM on stream 0', act: (c) => c.send(FrameType.RstStream, 0, 0, u32(ErrorCode.Cancel)), code: ErrorCode.ProtocolError },
  { name: 'PRIORITY on stream 0', act: (c) => c.send(FrameType.Priority, 0, 0, Buffer.alloc(5)), code: ErrorCode.ProtocolError },
  { name: 'GOAWAY on a stream', act: (c) => c.send(FrameType.GoAway, 0, 1, Buffer.alloc(8)), code: ErrorCode.ProtocolError },
  {
    name: 'DATA whose padding is as long as the frame',
    act: async (c) => {
      c.request(1, '/echo');
      await c.response(1);
      c.send(FrameType.Data, Flag.Padded, 1, Buffer.of(3, 1, 2));
    },
    code: ErrorCode.ProtocolError,
    last: 1,
  },
  {
    name: 'a first frame other than SETTINGS',
    preface: false,
    act: (c) => c.write(CLIENT_PREFACE, frame(FrameType.Ping, 0, 0, Buffer.alloc(8))),
    code: ErrorCode.ProtocolError,
  },
  {
    name: 'a SETTINGS ack as the first frame',
    preface: false,
    act: (c) => c.write(CLIENT_PREFACE, frame(FrameType.Settings, Flag.Ack, 0)),
    code: ErrorCode.ProtocolError,
  },
  { name: 'a PRIORITY of 4 bytes on an idle stream', act: (c) => c.send(FrameType.Priority, 0, 1, Buffer.alloc(4)), code: ErrorCode.FrameSizeError },
  {
    name: 'a PRIORITY on an idle stream that depends on itself',
    act: (c) => c.send(FrameType.Priority, 0, 1, Buffer.concat([u32(1), Buffer.of(15)])),
    code: ErrorCode.ProtocolError,
  },
  {
    name: 'DATA on a stream that both sides have ended',
    act: async (c) => {
      c.request(1, '/echo', { end: true });
      await c.streamEnd(1);
      c.data(1, Buffer.from('x'));
    },
    code: ErrorCode.StreamClosed,
    last: 1,
  },
  {
    name: 'HEADERS whose padding is longer than the frame',
    act: (c) => c.send(FrameType.Headers, Flag.EndHeaders | Flag.Padded, 1, Buffer.of(200, 0x82)),
    code: ErrorCode.ProtocolError,
  },
];

t.test('protocol errors end the connection with GOAWAY and the right code', async (t) => {
  const srv = await startServer(t);
  for (const e of errorCases) {
    await t.test(e.name, async (t) => {
      const c = await RawClient.connect(t, srv.port, { preface: e.preface ?? true });
      const streamsBefore = srv.streams.length;
      await e.act(c);
      const g = await c.goaway();
      t.equal(g.code, e.code, `code ${g.code} (${g.debug})`);
      t.equal(g.last, e.last ?? 0, 'last stream id');
      await c.closed; // the server closes the connection
      for (const s of srv.streams.slice(streamsBefore)) t.equal(s.closed, true, `stream ${s.id} closed with it`);
      t.same(c.violations, []);
    });
  }
  // A stream open when the connection failed was closed as reset.
  const c = await RawClient.connect(t, srv.port);
  c.request(1, '/hang', { end: true });
  await c.response(1);
  c.send(FrameType.Data, 0, 0, Buffer.from('x'));
  await c.goaway();
  t.equal(await srv.closeOf(1), true, 'onClose(true) for the open stream');
});

t.test('HEADERS on a stream id lower than one already used ends the connection: PROTOCOL_ERROR', async (t) => {
  const srv = await startServer(t);
  const c = await RawClient.connect(t, srv.port);
  c.request(5, '/echo', { end: true });
  await c.streamEnd(5);
  c.request(3, '/echo', { end: true });
  const g = await c.goaway();
  t.equal(g.last, 5);
  t.equal(g.code, ErrorCode.ProtocolError);
  await c.closed;
  t.same(
    srv.streams.map((s) => s.id),
    [5],
    'stream 3 never reached the app',
  );
});

// ------------------------------------------------------------ 8. maxConcurrentStreams

t.test('past maxConcurrentStreams a stream is refused, the open ones complete', async (t) => {
  const srv = await startServer(t, app, { maxConcurrentStreams: 2 });
  const c = await RawClient.connect(t, srv.port);
  t.equal((await c.serverSettings()).get(Setting.MaxConcurrentStreams), 2);
  c.request(1, '/echo', { extra: ['x-hello', 'one'] });
  c.request(3, '/echo', { extra: ['x-hello', 'three'] });
  c.request(5, '/echo', { extra: ['x-hello', 'five'] });
  t.equal(await c.rst(5), ErrorCode.RefusedStream);
  t.equal((await c.response(1))['x-hello'], 'one');
  t.equal((await c.response(3))['x-hello'], 'three');
  // What the client sends on the refused stream before it sees the refusal is dropped.
  c.data(5, Buffer.from('never mind'), { end: true });
  c.data(1, Buffer.from('body one'), { end: true });
  c.data(3, Buffer.from('body three'), { end: true });
  await c.streamEnd(1);
  await c.streamEnd(3);
  t.equal(c.body(1).toString(), 'body one');
  t.equal(c.body(3).toString(), 'body three');
  t.same(c.trailers(1), { 'x-bytes': '8', 'x-end': 'ok' });
  t.same(c.trailers(3), { 'x-bytes': '10', 'x-end': 'ok' });
  // With those two done there is room again.
  c.request(7, '/echo', { end: true, extra: ['x-hello', 'seven'] });
  t.equal((await c.response(7))['x-hello'], 'seven');
  await c.streamEnd(7);
  t.same(
    srv.streams.map((s) => s.id),
    [1, 3, 7],
    'stream 5 never reached the app',
  );
  t.same(c.violations, []);
});

// ------------------------------------------------------------ 9. header lists over the limit

t.test('a header list over maxHeaderListBytes is answered 431 and the connection stays usable', async (t) => {
  const srv = await startServer(t, app, { maxHeaderListBytes: 1000 });
  const c = await RawClient.connect(t, srv.port);
  t.equal((await c.serverSettings()).get(Setting.MaxHeaderListSize), 1000);
  // x-hello goes into both HPACK tables with this block: the next block refers to it by index.
  c.request(1, '/echo', { end: true, extra: ['x-hello', 'kept', 'x-big', 'b'.repeat(2000)] });
  const h = await c.response(1);
  t.equal(h[':status'], '431');
  const end = await c.streamEnd(1);
  t.equal(end.type, FrameType.Headers, 'the 431 ends the stream');
  t.same(
    srv.streams.map((s) => s.id),
    [],
    'the app never saw it',
  );
  c.request(3, '/echo', { end: true, extra: ['x-hello', 'kept'] });
  const h3 = await c.response(3);
  t.equal(h3[':status'], '200');
  t.equal(h3['x-hello'], 'kept', "the server's HPACK table kept in step through the refused block");
  await c.streamEnd(3);
  t.notOk(c.frames.some((f) => f.type === FrameType.GoAway));
  t.same(c.violations, []);

  // node:http2 sees the same.
  const client = await connectNode(t, srv.port);
  const a = await call(client, '/echo', { headers: { 'x-big': 'b'.repeat(2000) } });
  t.equal(a.headers[':status'], 431);
  const b = await call(client, '/echo', { headers: { 'x-hello': 'next' } });
  t.equal(b.headers[':status'], 200);
  t.equal(b.headers['x-hello'], 'next');
});

t.test('a request ended by its HEADERS and answered at once gets no RST_STREAM after the answer', async (t) => {
  const srv = await startServer(t, app, { maxHeaderListBytes: 1000 });
  const c = await RawClient.connect(t, srv.port);
  c.request(1, '/echo', { end: true, extra: ['x-big', 'b'.repeat(2000)] });
  t.equal((await c.response(1))[':status'], '431');
  c.request(3, '/refuse', { end: true });
  t.equal((await c.response(3))[':status'], '405');
  await c.roundTrip();
  t.same(
    c.frames.filter((f) => f.type === FrameType.RstStream).map(describe),
    [],
    'both streams were closed by the END_STREAM of the answer',
  );
});

t.test('a header block of endless CONTINUATIONs is cut off, not buffered', async (t) => {
  const srv = await startServer(t, app, { maxHeaderListBytes: 1000 });
  const c = await RawClient.connect(t, srv.port);
  await c.serverSettings();
  // 1000 times the header list the server takes, in a block of ~1 MiB.
  const block = c.enc.encode([...requestHeaders('/echo'), 'x-flood', noise(MiB)]);
  c.send(FrameType.Headers, Flag.EndStream, 1, block.subarray(0, 16384));
  for (let off = 16384; off < block.length; off += 16384) {
    const last = off + 16384 >= block.length;
    c.send(FrameType.Continuation, last ? Flag.EndHeaders : 0, 1, block.subarray(off, off + 16384));
  }
  const f = await c.waitFor((f) => f.type === FrameType.GoAway || isHeaders(f, 1), 'GOAWAY or an answer');
  t.equal(f.type, FrameType.GoAway, `the connection ends before the block does, not ${describe(f)}`);
});

// ------------------------------------------------------------ 10. close()

t.test('close(): GOAWAY(2^31-1) and a PING, then GOAWAY(last stream) at its ack; streams in between are served; resolves once closed', async (t) => {
  const srv = await startServer(t);
  const c = await RawClient.connect(t, srv.port, { ackPings: false });
  c.request(1, '/echo');
  await c.response(1);
  const conn = srv.conns[0]!;
  let resolved = false;
  const closing = conn.close().then(() => {
    resolved = true;
  });
  const first = await c.waitFor((f) => f.type === FrameType.GoAway, 'GOAWAY');
  t.same(goAwayOf(first), { last: MAX_STREAM_ID, code: ErrorCode.NoError, debug: '' }, 'the first GOAWAY lets every stream through');
  const ping = await c.waitFor((f) => f.type === FrameType.Ping && (f.flags & Flag.Ack) === 0, 'PING');
  t.ok(c.frames.indexOf(ping) > c.frames.indexOf(first), 'the PING follows it');
  // A stream the client opened before it saw the GOAWAY: it is served.
  c.request(3, '/echo', { end: true, extra: ['x-hello', 'in between'] });
  t.equal((await c.response(3))['x-hello'], 'in between');
  await c.streamEnd(3);
  t.same(c.trailers(3), { 'x-bytes': '0', 'x-end': 'ok' });
  t.equal(c.frames.filter((f) => f.type === FrameType.GoAway).length, 1, 'no second GOAWAY before the PING is answered');
  c.ping(ping.payload, Flag.Ack);
  const g = await c.goaway(c.frames.indexOf(first) + 1);
  t.same(g, { last: 3, code: ErrorCode.NoError, debug: '' }, 'the second GOAWAY names the last stream served');
  c.request(5, '/echo', { end: true });
  t.equal(await c.rst(5), ErrorCode.RefusedStream, 'a new stream after it is refused');
  t.equal(resolved, false, 'not resolved while stream 1 is open');
  t.equal(conn.streamCount, 1);
  c.data(1, Buffer.from('still served'), { end: true });
  await c.streamEnd(1);
  t.equal(c.body(1).toString(), 'still served');
  t.same(c.trailers(1), { 'x-bytes': '12', 'x-end': 'ok' });
  await closing;
  t.equal(conn.socket.destroyed, true, 'the socket has closed when close() resolves');
  await c.closed;
  t.same(
    srv.streams.map((s) => s.id),
    [1, 3],
  );
  t.equal(await srv.closeOf(1), false);
  t.equal(c.frames.filter((f) => f.type === FrameType.GoAway).length, 2);

  // A second close() on a closed connection resolves too.
  await conn.close();

  // node:http2 as the client: its stream in flight completes, the session closes.
  const client = await connectNode(t, srv.port);
  let req!: http2.ClientHttp2Stream;
  const answer = call(client, '/echo', { body: ['before '], open: true, opened: (r) => (req = r) });
  while (srv.conns.length < 2 || srv.conns[1]!.streamCount < 1) await new Promise((r) => setImmediate(r));
  const goaway = once(client, 'goaway');
  const closing2 = srv.conns[1]!.close();
  const [code, last] = (await goaway) as [number, number];
  t.equal(code, http2.constants.NGHTTP2_NO_ERROR);
  t.equal(last, MAX_STREAM_ID);
  req.end('after GOAWAY');
  const a = await answer;
  t.equal(a.body.toString(), 'before after GOAWAY');
  t.same(a.trailers, { 'x-bytes': '19', 'x-end': 'ok' });
  await closing2;
  t.equal(srv.conns[1]!.socket.destroyed, true);
  if (!client.destroyed) await once(client, 'close');
});

t.test('close() with no stream open ends the connection after the PING round trip', async (t) => {
  const srv = await startServer(t);
  const client = await connectNode(t, srv.port);
  await call(client, '/echo');
  const goaway = once(client, 'goaway');
  await srv.conns[0]!.close();
  t.equal(srv.conns[0]!.socket.destroyed, true);
  const [code] = (await goaway) as [number];
  t.equal(code, http2.constants.NGHTTP2_NO_ERROR);

  // A client that answers the PING and stays: both GOAWAYs, then the server ends the connection.
  const c = await RawClient.connect(t, srv.port);
  c.request(1, '/echo', { end: true });
  await c.streamEnd(1);
  await srv.conns[1]!.close();
  await c.closed;
  t.same(
    c.frames.filter((f) => f.type === FrameType.GoAway || f.type === FrameType.Ping).map((f) => (f.type === FrameType.Ping ? 'PING' : goAwayOf(f).last)),
    [MAX_STREAM_ID, 'PING', 1],
  );
});

t.test('close() with a client that never answers the PING: the second GOAWAY comes anyway', async (t) => {
  const srv = await startServer(t);
  const c = await RawClient.connect(t, srv.port, { ackPings: false });
  c.request(1, '/echo');
  await c.response(1);
  const closing = srv.conns[0]!.close();
  const first = await c.waitFor((f) => f.type === FrameType.GoAway, 'GOAWAY');
  // It goes once the PING has had its time (GOAWAY_PING_TIMEOUT_MS, 1 s).
  const g = await c.goaway(c.frames.indexOf(first) + 1);
  t.same(g, { last: 1, code: ErrorCode.NoError, debug: '' });
  c.request(3, '/echo', { end: true });
  t.equal(await c.rst(3), ErrorCode.RefusedStream);
  c.data(1, Buffer.alloc(0), { end: true });
  await c.streamEnd(1);
  await closing;
  await c.closed;
});

t.test('GOAWAY from the client: its open streams complete, then the connection ends', async (t) => {
  const srv = await startServer(t);
  const c = await RawClient.connect(t, srv.port);
  c.request(1, '/echo');
  await c.response(1);
  c.send(FrameType.GoAway, 0, 0, Buffer.concat([u32(0), u32(ErrorCode.NoError)]));
  await c.roundTrip(); // rejects if the connection closed: it did not, stream 1 is open
  c.data(1, Buffer.from('last words'), { end: true });
  await c.streamEnd(1);
  t.equal(c.body(1).toString(), 'last words');
  await c.closed;
});

// ------------------------------------------------------------ 11. an answer before the request is in

t.test('an answer that ends before the request body: the whole answer, then RST_STREAM(NO_ERROR)', async (t) => {
  const srv = await startServer(t);
  const c = await RawClient.connect(t, srv.port);
  c.request(1, '/early');
  c.data(1, Buffer.from('part one'));
  t.equal(await c.rst(1), ErrorCode.NoError);
  const kinds = c
    .streamFrames(1)
    .map((f) => `${TYPE_NAMES[f.type]}${f.flags & Flag.EndStream && f.type !== FrameType.RstStream ? '+END_STREAM' : ''}`)
    .filter((k, i, all) => k !== 'DATA' || all[i - 1] !== 'DATA');
  t.same(kinds, ['HEADERS', 'DATA', 'HEADERS+END_STREAM', 'RST_STREAM'], 'headers, body, trailers, then the reset');
  t.equal((await c.response(1))[':status'], '200');
  t.equal(c.body(1).toString(), 'early answer');
  t.same(c.trailers(1), { 'x-early': 'yes' });
  t.equal(await srv.closeOf(1), false, 'onClose(false): our end, not a reset');
  // What the client had in flight on it is dropped, and the connection goes on.
  c.data(1, Buffer.from('part two'));
  c.data(1, Buffer.alloc(0), { end: true });
  c.request(3, '/echo', { end: true, extra: ['x-hello', 'next'] });
  t.equal((await c.response(3))['x-hello'], 'next');
  await c.streamEnd(3);
  t.notOk(c.frames.some((f) => f.type === FrameType.GoAway));

  // node:http2: the answer whole, the stream closed with NO_ERROR, the session still fine.
  const client = await connectNode(t, srv.port);
  let req!: http2.ClientHttp2Stream;
  const a = await call(client, '/early', { body: ['part one'], open: true, opened: (r) => (req = r) });
  t.equal(a.headers[':status'], 200);
  t.equal(a.body.toString(), 'early answer');
  t.same(a.trailers, { 'x-early': 'yes' });
  t.equal(a.rstCode, http2.constants.NGHTTP2_NO_ERROR);
  t.ok(req.closed);
  const b = await call(client, '/echo', { body: ['still fine'] });
  t.equal(b.body.toString(), 'still fine');
});

t.test('trailers the client had in flight when the server reset the stream are ignored', async (t) => {
  const srv = await startServer(t);
  const c = await RawClient.connect(t, srv.port);
  c.request(1, '/early');
  c.data(1, Buffer.from('part one'));
  t.equal(await c.rst(1), ErrorCode.NoError);
  // The client's trailers, sent before it saw the RST_STREAM.
  c.headers(1, ['x-client-trailer', '1'], { end: true });
  c.request(3, '/echo', { end: true });
  const f = await c.waitFor((f) => f.type === FrameType.GoAway || isHeaders(f, 3), 'GOAWAY or the answer on stream 3');
  t.equal(f.type, FrameType.Headers, `stream 3 answered, not ${describe(f)}`);
});

// ------------------------------------------------------------ 12. padding and priority

t.test('padding and priority on HEADERS and DATA are stripped', async (t) => {
  const srv = await startServer(t);
  const c = await RawClient.connect(t, srv.port);
  // PADDED and PRIORITY together, then each alone.
  c.request(1, '/echo', { padding: 7, priority: true, extra: ['x-hello', 'padded+priority'] });
  c.request(3, '/echo', { priority: true, extra: ['x-hello', 'priority'] });
  c.request(5, '/echo', { padding: 0, extra: ['x-hello', 'padded'] });
  // A PRIORITY frame on its own, for an idle stream, is read and ignored.
  c.send(FrameType.Priority, 0, 7, Buffer.concat([u32(1), Buffer.of(15)]));
  for (const id of [1, 3, 5]) {
    c.data(id, Buffer.from(`hello ${id} `), { padding: 10 });
    c.data(id, Buffer.from('world'), { padding: 0 });
    c.data(id, Buffer.alloc(0), { padding: 3, end: true });
  }
  c.request(7, '/echo', { end: true, padding: 255, extra: ['x-hello', 'max padding'] });
  t.equal((await c.response(1))['x-hello'], 'padded+priority');
  t.equal((await c.response(3))['x-hello'], 'priority');
  t.equal((await c.response(5))['x-hello'], 'padded');
  t.equal((await c.response(7))['x-hello'], 'max padding');
  t.equal((await c.response(1))['x-path'], '/echo');
  for (const id of [1, 3, 5]) {
    await c.streamEnd(id);
    t.equal(c.body(id).toString(), `hello ${id} world`, `stream ${id}: the data without its padding`);
    t.same(c.trailers(id), { 'x-bytes': String(`hello ${id} world`.length), 'x-end': 'ok' });
  }
  await c.streamEnd(7);
  t.notOk(c.frames.some((f) => f.type === FrameType.GoAway));
  t.same(c.violations, []);
});

// ------------------------------------------------------------ 13. PRIORITY, checked and ignored

const priorityPayload = (dependsOn: number): Buffer => Buffer.concat([u32(dependsOn), Buffer.of(15)]);

t.test('PRIORITY of a bad length or on itself resets an open stream, is ignored on a closed one; a good one goes anywhere', async (t) => {
  const srv = await startServer(t);
  const c = await RawClient.connect(t, srv.port);
  c.request(1, '/echo');
  await c.response(1);
  c.send(FrameType.Priority, 0, 1, Buffer.alloc(4));
  t.equal(await c.rst(1), ErrorCode.FrameSizeError, 'a PRIORITY of 4 bytes: FRAME_SIZE_ERROR');
  t.equal(await srv.closeOf(1), true);
  c.request(3, '/echo');
  await c.response(3);
  c.send(FrameType.Priority, 0, 3, priorityPayload(3));
  t.equal(await c.rst(3), ErrorCode.ProtocolError, 'a stream that depends on itself: PROTOCOL_ERROR');
  t.equal(await srv.closeOf(3), true);
  // Closed streams, reset (1, 3) and ended by both sides (5): nothing left to reset.
  c.request(5, '/echo', { end: true });
  await c.streamEnd(5);
  for (const id of [1, 3, 5]) {
    c.send(FrameType.Priority, 0, id, Buffer.alloc(6));
    c.send(FrameType.Priority, 0, id, priorityPayload(id));
    c.send(FrameType.Priority, 0, id, priorityPayload(0));
  }
  // Idle streams stay idle: stream 7 may still be opened after a PRIORITY for 101.
  c.send(FrameType.Priority, 0, 101, priorityPayload(0));
  c.send(FrameType.Priority, 0, 9, priorityPayload(101));
  c.request(7, '/echo', { end: true, priority: true, extra: ['x-hello', 'after priorities'] });
  t.equal((await c.response(7))['x-hello'], 'after priorities');
  await c.streamEnd(7);
  c.request(9, '/echo', { end: true });
  await c.streamEnd(9);
  await c.roundTrip();
  t.same(
    c.frames.filter((f) => f.type === FrameType.RstStream).map((f) => f.id),
    [1, 3],
    'no RST_STREAM but those two',
  );
  t.notOk(c.frames.some((f) => f.type === FrameType.GoAway));
  t.same(c.violations, []);
});

t.test('HEADERS whose priority makes the stream depend on itself: RST_STREAM(PROTOCOL_ERROR), never in the app', async (t) => {
  const srv = await startServer(t);
  const c = await RawClient.connect(t, srv.port);
  // x-hello goes into both HPACK tables with this block: the next one refers to it by index.
  c.request(1, '/echo', { end: true, dependsOn: 1, extra: ['x-hello', 'kept'] });
  t.equal(await c.rst(1), ErrorCode.ProtocolError);
  c.request(3, '/echo', { dependsOn: 1, extra: ['x-hello', 'kept'] });
  t.equal((await c.response(3))['x-hello'], 'kept', "the server's HPACK table kept in step through the refused block");
  // Trailers that make their stream depend on itself.
  c.headers(3, ['x-trailer', '1'], { end: true, dependsOn: 3 });
  t.equal(await c.rst(3), ErrorCode.ProtocolError);
  t.equal(await srv.closeOf(3), true);
  t.same(
    srv.streams.map((s) => s.id),
    [3],
  );
  t.notOk(c.frames.some((f) => f.type === FrameType.GoAway));
});

// ------------------------------------------------------------ 14. floods

/** Resolves once `cond` holds, looked at after each turn of the event loop. */
async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setImmediate(r));
}

/** The frames a server connection hands its socket from now on, read from the writes (each is whole frames). */
function spyOnWrites(socket: Duplex): Frame[] {
  const frames: Frame[] = [];
  const write = socket.write.bind(socket) as (...args: unknown[]) => boolean;
  socket.write = ((chunk: Buffer, ...rest: unknown[]): boolean => {
    for (let off = 0; off + 9 <= chunk.length; ) {
      const len = chunk.readUIntBE(off, 3);
      const type = chunk[off + 3]!;
      const payload = type === FrameType.Data ? Buffer.alloc(0) : Buffer.from(chunk.subarray(off + 9, off + 9 + len));
      frames.push({ type, flags: chunk[off + 4]!, id: chunk.readUInt32BE(off + 5) & 0x7fffffff, payload });
      off += 9 + len;
    }
    return write(chunk, ...rest);
  }) as typeof socket.write;
  return frames;
}

t.test('PING acks a client leaves unread pile up to MAX_OWED_CONTROL_FRAMES, one more is ENHANCE_YOUR_CALM', async (t) => {
  const srv = await startServer(t);
  for (const pings of [MAX_OWED_CONTROL_FRAMES, MAX_OWED_CONTROL_FRAMES + 1]) {
    await t.test(`${pings} PINGs`, async (t) => {
      const c = await RawClient.connect(t, srv.port, { settings: [[Setting.InitialWindowSize, MAX_WINDOW_BYTES]] });
      c.windowUpdate(0, MAX_WINDOW_BYTES - 65535);
      await c.roundTrip(); // what the server owed so far has gone, into a socket with room
      const conn = srv.conns[srv.conns.length - 1]!;
      const written = spyOnWrites(conn.socket);
      let drained = false;
      conn.socket.on('drain', () => (drained = true));
      // The client reads nothing more and asks for more than the socket buffers of both ends hold.
      c.socket.pause();
      c.request(1, '/big', { end: true, extra: ['x-size', String(16 * MiB)] });
      await until(() => conn.socketBlocked);
      const batch = Array.from({ length: 100 }, (_, i) => frame(FrameType.Ping, 0, 0, Buffer.from(`ping${String(i).padStart(4, '0')}`)));
      for (let n = 0; n < pings; n += 100) c.write(...batch.slice(0, Math.min(100, pings - n)));
      const acks = (): number => written.filter((f) => f.type === FrameType.Ping && (f.flags & Flag.Ack) !== 0).length;
      const goaway = (): Frame | undefined => written.find((f) => f.type === FrameType.GoAway);
      await until(() => acks() >= pings || goaway() !== undefined);
      t.equal(drained, false, 'the socket had no room all along (else this proves nothing)');
      t.equal(acks(), pings, 'every PING was answered');
      if (pings === MAX_OWED_CONTROL_FRAMES) {
        t.equal(goaway(), undefined, 'no GOAWAY at the limit');
        t.equal(conn.socket.writableEnded, false);
      } else {
        t.equal(goAwayOf(goaway()!).code, ErrorCode.EnhanceYourCalm, 'GOAWAY(ENHANCE_YOUR_CALM) past it');
        t.equal(conn.socket.writableEnded, true, 'the server has ended the connection');
      }
    });
  }
});

t.test('rapid reset: streams reset before their answer draw on RESET_BURST tokens, refilled at RESET_REFILL_PER_SECOND', async (t) => {
  let clock = 0;
  const srv = await startServer(
    t,
    (s) => {
      if (s.header(':path') === '/answered') s.respond([':status', '200']);
    },
    {},
    () => clock,
  );
  const c = await RawClient.connect(t, srv.port);
  let id = 1;
  const openAndReset = (path: string, n: number): void => {
    for (let i = 0; i < n; i++, id += 2) {
      c.request(id, path);
      c.send(FrameType.RstStream, 0, id, u32(ErrorCode.Cancel));
    }
  };
  // Calls cancelled once their answer has begun (a watch, a server stream) cost nothing.
  openAndReset('/answered', 2 * RESET_BURST);
  await c.roundTrip();
  // A burst of calls cancelled before any answer, as a client's deadlines may.
  openAndReset('/quiet', RESET_BURST);
  await c.roundTrip();
  // A second later, what has come back.
  clock += 1000;
  openAndReset('/quiet', RESET_REFILL_PER_SECOND);
  await c.roundTrip();
  t.notOk(
    c.frames.some((f) => f.type === FrameType.GoAway),
    'no GOAWAY within the burst and its refill',
  );
  const last = id;
  openAndReset('/quiet', 1);
  const g = await c.goaway();
  t.equal(g.code, ErrorCode.EnhanceYourCalm, g.debug);
  t.equal(g.last, last);
  await c.closed;
  t.equal(srv.streams.length, 3 * RESET_BURST + RESET_REFILL_PER_SECOND + 1);
  t.equal(srv.conns[0]!.streamCount, 0);
});

t.test('empty DATA and CONTINUATION frames: MAX_EMPTY_FRAMES in a row are taken, one more is ENHANCE_YOUR_CALM', async (t) => {
  const srv = await startServer(t);
  const c = await RawClient.connect(t, srv.port);
  // An empty DATA that ends its stream ends something: that is how clients end a request.
  let id = 1;
  for (let i = 0; i < 2 * MAX_EMPTY_FRAMES; i++, id += 2) {
    c.request(id, '/echo');
    c.data(id, Buffer.alloc(0), { end: true });
  }
  await c.streamEnd(id - 2);
  // A frame with data in it starts the count again.
  c.request(id, '/echo');
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < MAX_EMPTY_FRAMES; i++) c.data(id, Buffer.alloc(0));
    c.data(id, Buffer.from('x'));
  }
  await c.roundTrip();
  t.notOk(c.frames.some((f) => f.type === FrameType.GoAway));
  for (let i = 0; i <= MAX_EMPTY_FRAMES; i++) c.data(id, Buffer.alloc(0));
  const g = await c.goaway();
  t.equal(g.code, ErrorCode.EnhanceYourCalm, g.debug);
  t.equal(g.last, id);

  const d = await RawClient.connect(t, srv.port);
  const block = d.enc.encode([...requestHeaders('/echo'), 'x-hello', 'continued']);
  d.send(FrameType.Headers, Flag.EndStream, 1, block.subarray(0, 3));
  for (let i = 0; i < MAX_EMPTY_FRAMES; i++) d.send(FrameType.Continuation, 0, 1);
  d.send(FrameType.Continuation, 0, 1, block.subarray(3, 4));
  for (let i = 0; i < MAX_EMPTY_FRAMES; i++) d.send(FrameType.Continuation, 0, 1);
  d.send(FrameType.Continuation, Flag.EndHeaders, 1, block.subarray(4));
  t.equal((await d.response(1))['x-hello'], 'continued');
  await d.streamEnd(1);
  d.send(FrameType.Headers, Flag.EndStream, 3, block.subarray(0, 3));
  for (let i = 0; i <= MAX_EMPTY_FRAMES; i++) d.send(FrameType.Continuation, 0, 3);
  const g2 = await d.goaway();
  t.equal(g2.code, ErrorCode.EnhanceYourCalm, g2.debug);
  t.equal(g2.last, 1);
});

// ------------------------------------------------------------ 15. malformed requests (§8.1.1, §8.2, §8.3)

const REQ = [':method', 'POST', ':scheme', 'http', ':path', '/echo'];

const malformedRequests: [string, string[]][] = [
  ['a pseudo-header after a regular one', [':method', 'POST', ':scheme', 'http', 'x-a', '1', ':path', '/echo']],
  ['a second :path', [...REQ, ':path', '/echo']],
  ['a second :method', [...REQ, ':method', 'POST']],
  ['a second :authority', [...REQ, ':authority', 'a', ':authority', 'b']],
  ['an unknown pseudo-header', [...REQ, ':protocol', 'websocket']],
  ['a response pseudo-header', [...REQ, ':status', '200']],
  ['no :method', [':scheme', 'http', ':path', '/echo']],
  ['no :scheme', [':method', 'POST', ':path', '/echo']],
  ['no :path', [':method', 'POST', ':scheme', 'http', ':authority', 'h2.test']],
  ['an empty :path', [':method', 'POST', ':scheme', 'http', ':path', '']],
  ['an upper-case name', [...REQ, 'X-Hello', 'world']],
  ['a name with a space', [...REQ, 'x hello', 'world']],
  ['an empty name', [...REQ, '', 'world']],
  ['connection', [...REQ, 'connection', 'keep-alive']],
  ['keep-alive', [...REQ, 'keep-alive', 'timeout=5']],
  ['proxy-connection', [...REQ, 'proxy-connection', 'keep-alive']],
  ['transfer-encoding', [...REQ, 'transfer-encoding', 'chunked']],
  ['upgrade', [...REQ, 'upgrade', 'h2c']],
  ['te other than trailers', [...REQ, 'te', 'gzip']],
  ['te with trailers and more', [...REQ, 'te', 'trailers, deflate']],
  ['a content-length that is no number', [...REQ, 'content-length', '12a']],
  ['a negative content-length', [...REQ, 'content-length', '-1']],
  ['two content-lengths that differ', [...REQ, 'content-length', '1', 'content-length', '2']],
  ['a content-length and END_STREAM on the HEADERS', [...REQ, 'content-length', '5']],
  ['CONNECT with a :path', [':method', 'CONNECT', ':authority', 'h2.test:443', ':path', '/']],
  ['CONNECT with a :scheme', [':method', 'CONNECT', ':authority', 'h2.test:443', ':scheme', 'https']],
  ['CONNECT without :authority', [':method', 'CONNECT']],
];

t.test('a malformed request is a stream error: RST_STREAM(PROTOCOL_ERROR), and the app never sees it', async (t) => {
  const srv = await startServer(t);
  const c = await RawClient.connect(t, srv.port);
  let id = 1;
  for (const [name, list] of malformedRequests) {
    c.headers(id, list, { end: true });
    t.equal(await c.rst(id), ErrorCode.ProtocolError, name);
    id += 2;
  }
  // One with its body on the way: what the client sends on it before it sees the reset is dropped.
  c.headers(id, [...REQ, 'connection', 'close']);
  c.data(id, Buffer.from('body'), { end: true });
  t.equal(await c.rst(id), ErrorCode.ProtocolError);
  id += 2;
  c.request(id, '/echo', { end: true, extra: ['x-hello', 'still here'] });
  t.equal((await c.response(id))['x-hello'], 'still here');
  await c.streamEnd(id);
  t.same(
    srv.streams.map((s) => s.id),
    [id],
    'only the last reached the app',
  );
  t.notOk(c.frames.some((f) => f.type === FrameType.GoAway));
  t.same(c.violations, []);
});

t.test('requests that are well formed, however unusual, reach the app', async (t) => {
  const srv = await startServer(t);
  const c = await RawClient.connect(t, srv.port);
  const requests: [string, string[]][] = [
    ['no :authority', REQ],
    ['pseudo-headers in another order', [':path', '/echo', ':authority', 'h2.test', ':scheme', 'https', ':method', 'POST']],
    [
      'as grpc-js sends it',
      [
        ...[':method', 'POST', ':scheme', 'http', ':path', '/echo', ':authority', '127.0.0.1:2379'],
        ...['grpc-accept-encoding', 'identity,deflate,gzip', 'accept-encoding', 'identity', 'user-agent', 'grpc-node-js/1.14.7'],
        ...['content-type', 'application/grpc', 'te', 'trailers', 'grpc-timeout', '4999m', 'authorization', 'Bearer x.y.z'],
      ],
    ],
    [
      'as grpc-go sends it',
      [
        ...[':method', 'POST', ':scheme', 'http', ':path', '/echo', ':authority', 'localhost:2379'],
        ...['content-type', 'application/grpc', 'user-agent', 'grpc-go/1.59.0', 'te', 'trailers', 'grpc-timeout', '4999831u'],
      ],
    ],
    ['a content-length of 0 and END_STREAM on the HEADERS', [...REQ, 'content-length', '0']],
    ['a host field and odd but allowed name characters', [...REQ, 'host', 'h2.test', "x-odd!#$%&'*+.^_`|~", 'yes']],
    ['CONNECT with :authority alone', [':method', 'CONNECT', ':authority', 'h2.test:443']],
  ];
  let id = 1;
  for (const [name, list] of requests) {
    c.headers(id, list, { end: true });
    t.equal((await c.response(id))[':status'], '200', name);
    const end = await c.streamEnd(id);
    t.not(end.type, FrameType.RstStream, name);
    id += 2;
  }
  t.equal(srv.streams.length, requests.length);
  t.same(c.violations, []);
});

t.test('content-length: DATA that adds up to it is served; more, or less by the end of the stream, is a stream error', async (t) => {
  const srv = await startServer(t);
  const c = await RawClient.connect(t, srv.port);
  const withLength = (n: number): string[] => [...REQ, 'content-length', String(n)];
  // In pieces, padding not counted; ended by trailers; empty; the same length twice.
  c.headers(1, withLength(10));
  c.data(1, Buffer.from('hello'), { padding: 7 });
  c.data(1, Buffer.from('world'), { end: true });
  c.headers(3, withLength(5));
  c.data(3, Buffer.from('hello'));
  c.headers(3, ['x-trailer', '1'], { end: true });
  c.headers(5, withLength(0));
  c.data(5, Buffer.alloc(0), { end: true });
  c.headers(7, [...withLength(5), 'content-length', '5']);
  c.data(7, Buffer.from('hello'), { end: true });
  for (const [id, bytes] of [
    [1, 10],
    [3, 5],
    [5, 0],
    [7, 5],
  ] as const) {
    await c.streamEnd(id);
    t.same(c.trailers(id), { 'x-bytes': String(bytes), 'x-end': 'ok' }, `stream ${id}`);
  }
  // More than it says; less by an END_STREAM on DATA; less by trailers.
  c.headers(9, withLength(2));
  c.data(9, Buffer.from('abc'));
  c.headers(11, withLength(5));
  c.data(11, Buffer.from('abc'), { end: true });
  c.headers(13, withLength(5));
  c.data(13, Buffer.from('abc'));
  c.headers(13, ['x-trailer', '1'], { end: true });
  for (const id of [9, 11, 13]) {
    t.equal(await c.rst(id), ErrorCode.ProtocolError, `stream ${id}`);
    t.equal(await srv.closeOf(id), true);
  }
  t.equal(c.body(9).length, 0, 'the data past the length never reached the app');
  t.notOk(c.frames.some((f) => f.type === FrameType.GoAway));
  t.same(c.violations, []);
});

t.test('trailers with a pseudo-header or a malformed field are a stream error', async (t) => {
  const srv = await startServer(t);
  const c = await RawClient.connect(t, srv.port);
  c.request(1, '/echo');
  c.data(1, Buffer.from('x'));
  c.headers(1, [':path', '/echo'], { end: true });
  t.equal(await c.rst(1), ErrorCode.ProtocolError);
  t.equal(await srv.closeOf(1), true);
  c.request(3, '/echo');
  c.headers(3, ['X-Trailer', '1'], { end: true });
  t.equal(await c.rst(3), ErrorCode.ProtocolError);
  c.request(5, '/echo');
  c.headers(5, ['x-trailer', '1'], { end: true });
  await c.streamEnd(5);
  t.same(c.trailers(5), { 'x-bytes': '0', 'x-end': 'ok' });
  t.equal(await srv.closeOf(5), false);
  t.notOk(c.frames.some((f) => f.type === FrameType.GoAway));
});
