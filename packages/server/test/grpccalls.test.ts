// GrpcServer (grpc/server.ts) on its own, with small test services written the way grpc-js
// handlers are: unary callbacks, FastMethods, server streams with backpressure, bidi streams,
// compression, limits, HTTP-level refusals, onStatus, deadlines and close(). The clients are a real
// grpc-js client and, for what no client sends, node:http2 or a raw HTTP/2 socket that writes
// exactly the frames a test wants. Cases where the server dies are run in a child process.
import { spawn } from 'node:child_process';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { fileURLToPath } from 'node:url';
import { deflateSync, gzipSync } from 'node:zlib';
import * as grpc from '@grpc/grpc-js';
import t from 'tap';
import type { GrpcType } from '../src/grpc/handled.js';
import { GrpcServer, type FastCall, type FastMethod } from '../src/grpc/server.js';
import { drained } from '../src/grpc/services.js';
import type { H2Stream } from '../src/h2/connection.js';
import { CLIENT_PREFACE, FRAME_HEADER_BYTES, Flag, FrameType, frame, u32 } from '../src/h2/frames.js';
import { HpackDecoder, HpackEncoder, HpackError } from '../src/h2/hpack.js';
import { listenMux } from '../src/listen.js';

// ---------------------------------------------------------------- codecs and service definitions

interface Codec<T> {
  serialize(v: T): Buffer;
  deserialize(b: Buffer): T;
}
const bytes: Codec<Buffer> = { serialize: (b) => b, deserialize: (b) => b };
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;
const json: Codec<Json> = {
  serialize: (v) => Buffer.from(JSON.stringify(v)),
  deserialize: (b) => JSON.parse(b.toString('utf8')) as Json,
};

const SERVICE = 'capstan.test.Calls';
const LIMIT = 100_000;
const KIND = {
  unary: [false, false],
  client_stream: [true, false],
  server_stream: [false, true],
  bidi_stream: [true, true],
} as const satisfies Record<GrpcType, readonly [boolean, boolean]>;

function methodDef<Req, Res>(path: string, type: GrpcType, req: Codec<Req>, res: Codec<Res>): grpc.MethodDefinition<Req, Res> {
  const [requestStream, responseStream] = KIND[type];
  return {
    path,
    requestStream,
    responseStream,
    requestSerialize: req.serialize,
    requestDeserialize: req.deserialize,
    responseSerialize: res.serialize,
    responseDeserialize: res.deserialize,
  };
}

/** Adds one method, by hand, to `server` and gives its path. */
function register<Req, Res>(server: GrpcServer, name: string, type: GrpcType, req: Codec<Req>, res: Codec<Res>, handler: grpc.UntypedHandleCall): string {
  const path = `/${SERVICE}/${name}`;
  server.addService({ [name]: methodDef(path, type, req, res) } as grpc.ServiceDefinition, { [name]: handler });
  return path;
}

/** What GrpcServer's call adds to grpc-js's surface, for the tests that read it. */
interface OwnCall {
  firstMetadata(key: string): string | Buffer | undefined;
  readonly stream: H2Stream;
  getPath(): string;
}
const own = (call: unknown): OwnCall => call as OwnCall;

function deferred<T = void>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/** A gRPC message: [compressed u8][length u32 BE][bytes]. */
function grpcMessage(msg: Buffer, compressed = false): Buffer {
  const out = Buffer.alloc(5 + msg.length);
  out[0] = compressed ? 1 : 0;
  out.writeUInt32BE(msg.length, 1);
  msg.copy(out, 5);
  return out;
}

/** The messages in a response body; throws on a body that is not whole messages. */
function grpcMessages(body: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let off = 0;
  while (off < body.length) {
    if (body.length - off < 5) throw new Error('truncated message prefix');
    const len = body.readUInt32BE(off + 1);
    if (body.length - off - 5 < len) throw new Error('truncated message');
    out.push(body.subarray(off + 5, off + 5 + len));
    off += 5 + len;
  }
  return out;
}

// ---------------------------------------------------------------- the server under test

interface Seen {
  path: string;
  type: GrpcType;
  code: grpc.status;
}
const statuses: Seen[] = [];
const statusesFor = (...paths: string[]): Seen[] => statuses.filter((s) => paths.includes(s.path));

const server = new GrpcServer({ maxReceiveBytes: LIMIT, onStatus: (path, type, code) => statuses.push({ path, type, code }) });
const mux = await listenMux(['http://127.0.0.1:0'], { grpc: server });
t.teardown(() => mux.close());
const port = mux.ports[0]!;
const addr = `127.0.0.1:${port}`;
const client = new grpc.Client(addr, grpc.credentials.createInsecure());
t.teardown(() => client.close());

function unary<Req, Res>(path: string, req: Codec<Req>, res: Codec<Res>, value: Req, md = new grpc.Metadata(), opts: grpc.CallOptions = {}, c = client): Promise<Res> {
  return new Promise((resolve, reject) => c.makeUnaryRequest(path, req.serialize, res.deserialize, value, md, opts, (err, v) => (err ? reject(err) : resolve(v!))));
}

interface StreamResult<T> {
  messages: T[];
  status: grpc.StatusObject;
  error: grpc.ServiceError | undefined;
}

/** Everything a stream brings: its messages (all of them: grpc-js ends the stream after the last) and its status. */
function collect<T>(call: grpc.ClientReadableStream<T> | grpc.ClientDuplexStream<Json, T>, onMessage?: (m: T) => void): Promise<StreamResult<T>> {
  return new Promise((resolve) => {
    const messages: T[] = [];
    let error: grpc.ServiceError | undefined;
    let status: grpc.StatusObject | undefined;
    let ended = false;
    const maybe = (): void => {
      if (ended && status !== undefined) resolve({ messages, status, error });
    };
    call.on('data', (m: T) => {
      messages.push(m);
      onMessage?.(m);
    });
    call.on('error', (e: grpc.ServiceError) => (error = e));
    call.on('end', () => {
      ended = true;
      maybe();
    });
    call.on('status', (s: grpc.StatusObject) => {
      status = s;
      maybe();
    });
  });
}

// ---------------------------------------------------------------- node:http2 and raw HTTP/2 clients

interface H2Result {
  headers: http2.IncomingHttpHeaders;
  trailers: http2.IncomingHttpHeaders | undefined;
  body: Buffer;
  /** grpc-status and the decoded grpc-message, from the trailers or a trailers-only answer. */
  status: string | undefined;
  message: string | undefined;
}

function h2session(): http2.ClientHttp2Session {
  const s = http2.connect(`http://${addr}`);
  s.on('error', () => {});
  return s;
}

/** One request on node:http2: headers, then `body` (written at once) and the end of the request. */
function h2call(session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, body?: Buffer): Promise<H2Result> {
  return new Promise((resolve, reject) => {
    const req = session.request({ ':method': 'POST', 'content-type': 'application/grpc', te: 'trailers', ...headers });
    let head: http2.IncomingHttpHeaders | undefined;
    let trailers: http2.IncomingHttpHeaders | undefined;
    const chunks: Buffer[] = [];
    req.on('response', (h) => (head = h));
    req.on('trailers', (h) => (trailers = h));
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('error', () => {});
    req.on('close', () => {
      if (head === undefined) return reject(new Error(`stream closed without a response (rst ${req.rstCode})`));
      const st = trailers?.['grpc-status'] ?? head['grpc-status'];
      const msg = trailers?.['grpc-message'] ?? head['grpc-message'];
      resolve({
        headers: head,
        trailers,
        body: Buffer.concat(chunks),
        status: st === undefined ? undefined : String(st),
        message: msg === undefined ? undefined : decodeURIComponent(String(msg)),
      });
    });
    req.end(body);
  });
}

interface RawResult {
  /** Each header block the server sent on the stream, as [name, value, ...]. */
  blocks: string[][];
  body: Buffer;
  rst: number | undefined;
  status: string | undefined;
  message: string | undefined;
}

/**
 * An HTTP/2 client on a plain socket that sends exactly the frames it is given (so a test decides
 * where DATA frames begin and end), and reads what comes back frame by frame.
 */
class RawH2 {
  private readonly enc = new HpackEncoder();
  private readonly dec = new HpackDecoder();
  private inBuf = Buffer.alloc(0);
  private nextId = 1;
  private readonly streams = new Map<number, { blocks: string[][]; data: Buffer[]; rst: number | undefined; done: (r: RawResult) => void }>();
  private readonly results = new Map<number, Promise<RawResult>>();

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (c: Buffer) => this.onBytes(c));
    socket.on('error', () => {});
    socket.on('close', () => {
      for (const id of [...this.streams.keys()]) this.finish(id);
    });
    socket.write(Buffer.concat([CLIENT_PREFACE, frame(FrameType.Settings, 0, 0)]));
  }

  static connect(): Promise<RawH2> {
    return new Promise((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => resolve(new RawH2(s)));
      s.once('error', reject);
    });
  }

  /** A new stream's id; its answer is result(id). */
  open(): number {
    const id = this.nextId;
    this.nextId += 2;
    let done!: (r: RawResult) => void;
    this.results.set(id, new Promise<RawResult>((r) => (done = r)));
    this.streams.set(id, { blocks: [], data: [], rst: undefined, done });
    return id;
  }

  result(id: number): Promise<RawResult> {
    return this.results.get(id)!;
  }

  /** A gRPC request's HEADERS frame. */
  headers(id: number, path: string, extra: string[] = [], endStream = false): Buffer {
    const list = [':method', 'POST', ':scheme', 'http', ':path', path, ':authority', addr, 'content-type', 'application/grpc', 'te', 'trailers', ...extra];
    return frame(FrameType.Headers, Flag.EndHeaders | (endStream ? Flag.EndStream : 0), id, this.enc.encode(list));
  }

  data(id: number, payload: Buffer, endStream = false): Buffer {
    return frame(FrameType.Data, endStream ? Flag.EndStream : 0, id, payload);
  }

  /** The frames in one socket write. */
  send(...frames: Buffer[]): void {
    this.socket.write(Buffer.concat(frames));
  }

  close(): void {
    this.socket.destroy();
  }

  private finish(id: number): void {
    const s = this.streams.get(id);
    if (s === undefined) return;
    this.streams.delete(id);
    const last = s.blocks.at(-1) ?? [];
    const get = (name: string): string | undefined => {
      for (let i = 0; i < last.length; i += 2) if (last[i] === name) return last[i + 1];
      return undefined;
    };
    const msg = get('grpc-message');
    s.done({ blocks: s.blocks, body: Buffer.concat(s.data), rst: s.rst, status: get('grpc-status'), message: msg === undefined ? undefined : decodeURIComponent(msg) });
  }

  private onBytes(chunk: Buffer): void {
    let buf = Buffer.concat([this.inBuf, chunk]);
    while (buf.length >= FRAME_HEADER_BYTES) {
      const len = (buf[0]! << 16) | (buf[1]! << 8) | buf[2]!;
      if (buf.length < FRAME_HEADER_BYTES + len) break;
      const type = buf[3]!;
      const flags = buf[4]!;
      const id = buf.readUInt32BE(5) & 0x7fffffff;
      const p = buf.subarray(FRAME_HEADER_BYTES, FRAME_HEADER_BYTES + len);
      buf = buf.subarray(FRAME_HEADER_BYTES + len);
      this.onFrame(type, flags, id, p);
    }
    this.inBuf = buf;
  }

  private onFrame(type: number, flags: number, id: number, p: Buffer): void {
    const s = this.streams.get(id);
    switch (type) {
      case FrameType.Settings:
        if ((flags & Flag.Ack) === 0) this.socket.write(frame(FrameType.Settings, Flag.Ack, 0));
        return;
      case FrameType.Ping:
        if ((flags & Flag.Ack) === 0) this.socket.write(frame(FrameType.Ping, Flag.Ack, 0, p));
        return;
      case FrameType.Headers: {
        // The server's blocks are small: one HEADERS frame, END_HEADERS set, no padding or priority.
        const list = this.dec.decode(p);
        if (list instanceof HpackError) throw list;
        s?.blocks.push(list);
        if ((flags & Flag.EndStream) !== 0) this.finish(id);
        return;
      }
      case FrameType.Data:
        if (p.length > 0) this.socket.write(Buffer.concat([frame(FrameType.WindowUpdate, 0, 0, u32(p.length)), frame(FrameType.WindowUpdate, 0, id, u32(p.length))]));
        s?.data.push(Buffer.from(p));
        if ((flags & Flag.EndStream) !== 0) this.finish(id);
        return;
      case FrameType.RstStream:
        if (s !== undefined) s.rst = p.readUInt32BE(0);
        this.finish(id);
        return;
      default:
        return;
    }
  }
}

// ---------------------------------------------------------------- 1. unary through a plain handler

t.test('unary, grpc-js handler with a callback: value, error status, metadata', async (t) => {
  let seen: { md: grpc.Metadata; first: Record<string, string | Buffer | undefined>; raw: Record<string, string | undefined>; path: string } | undefined;
  const path = register(server, 'Unary', 'unary', json, json, (call: grpc.ServerUnaryCall<Json, Json>, cb: grpc.sendUnaryData<Json>) => {
    const req = call.request;
    if (req.fail !== undefined) return cb({ code: req.fail.code, details: req.fail.details });
    if (req.meta === true) {
      // firstMetadata first: before call.metadata is built it reads the headers directly.
      const first: Record<string, string | Buffer | undefined> = {};
      for (const k of ['token', 'x-plain', 'x-twice', 'x-trace-bin', 'absent']) first[k] = own(call).firstMetadata(k);
      const raw: Record<string, string | undefined> = {};
      for (const k of ['te', 'content-type', 'grpc-timeout', 'user-agent']) raw[k] = own(call).stream.header(k);
      seen = { md: call.metadata, first, raw, path: own(call).getPath() };
    }
    setImmediate(() => cb(null, { echo: req.text, at: 'handler' }));
  });

  t.same(await unary(path, json, json, { text: 'hello, world' }), { echo: 'hello, world', at: 'handler' }, 'the value');

  const err = await unary(path, json, json, { fail: { code: grpc.status.FAILED_PRECONDITION, details: 'not now: 100% sure, try later' } }).catch((e: grpc.ServiceError) => e);
  t.match(err, { code: grpc.status.FAILED_PRECONDITION, details: 'not now: 100% sure, try later' }, 'the error: code and details');

  const md = new grpc.Metadata();
  md.add('token', 'tok-123');
  md.add('x-plain', 'plain value');
  md.add('x-twice', 'a');
  md.add('x-twice', 'b');
  md.add('x-trace-bin', Buffer.from([0, 1, 2, 0xff]));
  md.add('x-trace-bin', Buffer.from('second'));
  t.same(await unary(path, json, json, { meta: true, text: 'm' }, md, { deadline: Date.now() + 60_000 }), { echo: 'm', at: 'handler' });
  t.ok(seen !== undefined, 'the handler saw the call');
  const got = seen!;
  t.equal(got.path, path, 'getPath()');
  t.same(got.md.get('token'), ['tok-123']);
  t.same(got.md.get('x-plain'), ['plain value']);
  t.same(got.md.get('x-twice'), ['a', 'b'], 'a key sent twice: both values, in order');
  t.same(got.md.get('x-trace-bin'), [Buffer.from([0, 1, 2, 0xff]), Buffer.from('second')], 'a -bin key: decoded bytes');
  // The client did send the transport headers...
  t.equal(got.raw.te, 'trailers');
  t.equal(got.raw['content-type'], 'application/grpc');
  t.match(got.raw['grpc-timeout'], /^\d+[HMSmun]$/);
  t.match(got.raw['user-agent'], /grpc-node-js/);
  // ... and they are not in the call's metadata.
  for (const k of ['te', 'content-type', 'grpc-timeout', 'user-agent', 'grpc-accept-encoding', 'accept-encoding']) t.same(got.md.get(k), [], `${k} is not metadata`);
  t.same(Object.keys(got.md.getMap()).sort(), ['token', 'x-plain', 'x-trace-bin', 'x-twice'], 'nothing else is metadata');
  for (const [k, v] of Object.entries(got.first)) t.same(v, got.md.get(k)[0], `firstMetadata('${k}') is metadata.get('${k}')[0]`);
  t.equal(got.first.token, 'tok-123');

  t.same(
    statusesFor(path).map((s) => [s.type, s.code]),
    [
      ['unary', grpc.status.OK],
      ['unary', grpc.status.FAILED_PRECONDITION],
      ['unary', grpc.status.OK],
    ],
  );
});

t.test('firstMetadata with a key in upper case is what metadata.get gives', async (t) => {
  let got: { first: string | Buffer | undefined; get: (string | Buffer)[] } | undefined;
  const path = register(server, 'UnaryCase', 'unary', bytes, bytes, (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
    const first = own(call).firstMetadata('Token');
    got = { first, get: call.metadata.get('Token') };
    cb(null, Buffer.alloc(0));
  });
  const md = new grpc.Metadata();
  md.add('token', 'tok');
  await unary(path, bytes, bytes, Buffer.from('x'), md);
  t.same(got?.get, ['tok']);
  t.equal(got?.first, 'tok', "firstMetadata('Token')");
});

t.test('metadata a handler gives its callback reaches the client, as grpc-js sends it', async (t) => {
  const path = register(server, 'UnaryTrailers', 'unary', json, json, (call: grpc.ServerUnaryCall<Json, Json>, cb: grpc.sendUnaryData<Json>) => {
    const md = new grpc.Metadata();
    md.set('x-why', 'because');
    if (call.request.fail === true) cb({ code: grpc.status.ABORTED, details: 'no', metadata: md });
    else cb(null, { ok: true }, md);
  });
  const err = await unary(path, json, json, { fail: true }).catch((e: grpc.ServiceError) => e);
  t.equal(err.code, grpc.status.ABORTED);
  t.same(err.metadata?.get('x-why'), ['because'], 'the error status carries the metadata');
  const trailer = await new Promise<grpc.Metadata>((resolve, reject) => {
    const call = client.makeUnaryRequest(path, json.serialize, json.deserialize, { fail: false }, (e) => e && reject(e));
    call.on('status', (s: grpc.StatusObject) => resolve(s.metadata));
  });
  t.same(trailer.get('x-why'), ['because'], 'the OK status carries the trailer');
});

// ---------------------------------------------------------------- 2. unary via a FastMethod

t.test('unary via setFastMethods: bytes in and out, a thrown error mapped by status()', async (t) => {
  let handlerCalls = 0;
  const path = register(server, 'Fast', 'unary', json, json, (_call: unknown, cb: grpc.sendUnaryData<Json>) => {
    handlerCalls++;
    cb(null, { from: 'handler' });
  });
  const streamPath = register(server, 'NotFast', 'server_stream', bytes, bytes, (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
    call.write(Buffer.from('from the handler'));
    call.end();
  });
  class Coded extends Error {
    constructor(
      readonly code: grpc.status,
      message: string,
    ) {
      super(message);
    }
  }
  const inputs: Buffer[] = [];
  const metas: (string | Buffer | undefined)[] = [];
  const fast: FastMethod = {
    async run(request: Buffer, call: FastCall): Promise<Buffer> {
      inputs.push(Buffer.from(request));
      metas.push(call.metadata.get('x-k')[0]);
      if (request.toString() === 'coded') throw new Coded(grpc.status.NOT_FOUND, 'no such thing');
      if (request.toString() === 'plain') throw new Error('kaboom');
      return Buffer.from(request).reverse();
    },
    status(err: unknown) {
      if (err instanceof Coded) return { code: err.code, details: `mapped: ${err.message}` };
      return { code: grpc.status.INTERNAL, details: 'internal: ' + (err as Error).message };
    },
  };
  server.setFastMethods(
    new Map([
      [path, fast],
      [streamPath, fast],
    ]),
  );

  const input = Buffer.from([0, 1, 2, 0xfe, 0xff, 0x7b]); // not JSON: the fast method gets bytes, not the codec's decode
  const md = new grpc.Metadata();
  md.set('x-k', 'v');
  t.same(await unary(path, bytes, bytes, input, md), Buffer.from(input).reverse(), 'bytes in, bytes out');
  t.same(inputs[0], input, 'the request bytes as sent');
  t.equal(metas[0], 'v', 'the call has the metadata');
  await t.rejects(unary(path, bytes, bytes, Buffer.from('coded')), { code: grpc.status.NOT_FOUND, details: 'mapped: no such thing' });
  await t.rejects(unary(path, bytes, bytes, Buffer.from('plain')), { code: grpc.status.INTERNAL, details: 'internal: kaboom' });
  t.equal(handlerCalls, 0, 'the callback handler is not called');

  const s = await collect(client.makeServerStreamRequest(streamPath, bytes.serialize, bytes.deserialize, Buffer.from('q')));
  t.same(s.messages.map(String), ['from the handler'], 'a fast method for a streaming path is not used');
  t.same(
    statusesFor(path, streamPath).map((x) => [x.path, x.code]),
    [
      [path, grpc.status.OK],
      [path, grpc.status.NOT_FOUND],
      [path, grpc.status.INTERNAL],
      [streamPath, grpc.status.OK],
    ],
  );
});

// ---------------------------------------------------------------- 3. server streaming

t.test('server stream: many messages then OK; none then OK (trailers only)', async (t) => {
  const path = register(server, 'Count', 'server_stream', json, json, (call: grpc.ServerWritableStream<Json, Json>) => {
    for (let i = 0; i < call.request.n; i++) call.write({ i });
    call.end();
  });
  const r = await collect(client.makeServerStreamRequest(path, json.serialize, json.deserialize, { n: 50 }));
  t.equal(r.status.code, grpc.status.OK);
  t.equal(r.error, undefined);
  t.same(
    r.messages.map((m: Json) => m.i),
    Array.from({ length: 50 }, (_, i) => i),
    'all 50, in order',
  );
  const none = await collect(client.makeServerStreamRequest(path, json.serialize, json.deserialize, { n: 0 }));
  t.equal(none.status.code, grpc.status.OK);
  t.same(none.messages, []);
  t.same(
    statusesFor(path).map((s) => [s.type, s.code]),
    [
      ['server_stream', grpc.status.OK],
      ['server_stream', grpc.status.OK],
    ],
  );
});

t.test('server stream: 200 messages of 32 KiB, the handler waiting for drain, arrive whole and in order', async (t) => {
  const N = 200;
  const SIZE = 32 * 1024;
  const chunk = (i: number): Buffer => {
    const b = Buffer.alloc(SIZE, i & 0xff);
    b.writeUInt32BE(i, 0);
    b.writeUInt32BE(i, SIZE - 4);
    return b;
  };
  let waits = 0;
  let drains = 0;
  const path = register(server, 'Big', 'server_stream', bytes, bytes, (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
    call.on('drain', () => drains++);
    void (async () => {
      for (let i = 0; i < N; i++) {
        if (call.cancelled) return;
        if (!call.write(chunk(i))) {
          waits++;
          await drained(call);
        }
      }
      call.end();
    })();
  });
  const r = await collect(client.makeServerStreamRequest(path, bytes.serialize, bytes.deserialize, Buffer.from('go')));
  t.equal(r.status.code, grpc.status.OK, r.status.details);
  t.equal(r.messages.length, N);
  const wrong = r.messages.map((m, i) => (m.equals(chunk(i)) ? -1 : i)).filter((i) => i >= 0);
  t.same(wrong, [], 'every message is the one sent at its place');
  t.ok(waits > 0, `write() returned false and the handler waited (${waits} times)`);
  t.ok(drains >= waits, `a 'drain' came for each wait (${drains})`);
});

t.test("server stream: emit('error') in the middle ends it with that status after the messages sent", async (t) => {
  let after: { write: boolean } | undefined;
  const path = register(server, 'FailMidway', 'server_stream', bytes, bytes, (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
    for (let i = 0; i < 3; i++) call.write(Buffer.from(`m${i}`));
    setImmediate(() => {
      call.emit('error', { code: grpc.status.ABORTED, details: 'gave up: after 3 (of 5)' });
      after = { write: call.write(Buffer.from('late')) };
      call.end();
    });
  });
  const r = await collect(client.makeServerStreamRequest(path, bytes.serialize, bytes.deserialize, Buffer.from('go')));
  t.same(r.messages.map(String), ['m0', 'm1', 'm2'], 'the messages sent before the error');
  t.equal(r.status.code, grpc.status.ABORTED);
  t.equal(r.status.details, 'gave up: after 3 (of 5)');
  t.match(r.error, { code: grpc.status.ABORTED, details: 'gave up: after 3 (of 5)' });
  t.same(after, { write: false }, 'a write after the status is refused');
  t.same(
    statusesFor(path).map((s) => [s.type, s.code]),
    [['server_stream', grpc.status.ABORTED]],
    'one status: the error (end() after it sends nothing)',
  );
});

// ---------------------------------------------------------------- 4. bidi streaming

t.test('bidi: echo', async (t) => {
  const path = register(server, 'Echo', 'bidi_stream', bytes, bytes, (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
    call.on('data', (m: Buffer) => call.write(Buffer.concat([Buffer.from('echo:'), m])));
    call.on('end', () => call.end());
  });
  const call = client.makeBidiStreamRequest(path, bytes.serialize, bytes.deserialize);
  const done = collect(call);
  for (let i = 0; i < 5; i++) call.write(Buffer.from(`m${i}`));
  call.end();
  const r = await done;
  t.equal(r.status.code, grpc.status.OK);
  t.same(r.messages.map(String), ['echo:m0', 'echo:m1', 'echo:m2', 'echo:m3', 'echo:m4']);
  t.same(statusesFor(path), [{ path, type: 'bidi_stream', code: grpc.status.OK }]);
});

t.test("bidi: the client half-closes; the handler sees 'end' and still writes before end()", async (t) => {
  const events: string[] = [];
  const path = register(server, 'HalfClose', 'bidi_stream', bytes, bytes, (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
    let n = 0;
    call.on('data', (m: Buffer) => {
      n++;
      events.push(`data:${m}`);
    });
    call.on('end', () => {
      events.push('end');
      setImmediate(() => {
        events.push(`write:${call.write(Buffer.from(`got ${n}`))}`);
        call.write(Buffer.from('bye'));
        call.end();
      });
    });
    call.on('finish', () => events.push('finish'));
  });
  const call = client.makeBidiStreamRequest(path, bytes.serialize, bytes.deserialize);
  const done = collect(call);
  call.write(Buffer.from('a'));
  call.write(Buffer.from('b'));
  call.end();
  const r = await done;
  t.equal(r.status.code, grpc.status.OK);
  t.same(r.messages.map(String), ['got 2', 'bye'], 'what the handler wrote after the half-close');
  t.same(events, ['data:a', 'data:b', 'end', 'write:true', 'finish']);
});

t.test("bidi: the client cancels; the handler sees 'cancelled', call.cancelled, and no status is counted", async (t) => {
  const closed = deferred();
  let seen: { cancelled: boolean; write: boolean } | undefined;
  const path = register(server, 'Cancel', 'bidi_stream', bytes, bytes, (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
    call.write(Buffer.from('ready'));
    call.on('cancelled', () => {
      seen = { cancelled: call.cancelled, write: call.write(Buffer.from('late')) };
      // Neither may send or count a status any more.
      call.end();
      call.emit('error', { code: grpc.status.INTERNAL, details: 'after the cancel' });
    });
    call.on('close', () => closed.resolve());
  });
  const call = client.makeBidiStreamRequest(path, bytes.serialize, bytes.deserialize);
  const done = collect(call, () => call.cancel());
  const r = await done;
  t.equal(r.status.code, grpc.status.CANCELLED);
  t.same(r.messages.map(String), ['ready']);
  await closed.promise;
  t.same(seen, { cancelled: true, write: false }, "'cancelled' with call.cancelled true; a write after it is refused");
  // A call on the same connection after it: anything the cancelled call would still send is ahead of this.
  const echo = register(server, 'AfterCancel', 'unary', bytes, bytes, (_c: unknown, cb: grpc.sendUnaryData<Buffer>) => cb(null, Buffer.from('ok')));
  t.equal(String(await unary(echo, bytes, bytes, Buffer.from('x'))), 'ok');
  t.same(statusesFor(path), [], 'no status for the cancelled call');
});

t.test('bidi: a message split over DATA frames, and several messages in one DATA frame, are decoded', async (t) => {
  const got: string[] = [];
  const path = register(server, 'Frames', 'bidi_stream', bytes, bytes, (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
    call.on('data', (m: Buffer) => {
      got.push(m.length > 100 ? `${m.length} bytes` : String(m));
      call.write(m);
    });
    call.on('end', () => call.end());
  });
  const raw = await RawH2.connect();
  t.teardown(() => raw.close());
  const id = raw.open();
  const a = grpcMessage(Buffer.from('split across three frames, the prefix too'));
  const big = Buffer.alloc(40_000);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 0xff;
  const bigMsg = grpcMessage(big);
  const several = Buffer.concat([grpcMessage(Buffer.from('one')), grpcMessage(Buffer.from('two')), grpcMessage(Buffer.alloc(0)), grpcMessage(Buffer.from('four'))]);
  raw.send(
    raw.headers(id, path),
    raw.data(id, a.subarray(0, 2)), // inside the 5-byte prefix
    raw.data(id, a.subarray(2, 12)),
    raw.data(id, a.subarray(12)),
    // 40 000 bytes in frames of at most 16 384 (the largest a server accepts without a setting), cut mid-prefix at the start
    raw.data(id, bigMsg.subarray(0, 3)),
    raw.data(id, bigMsg.subarray(3, 16_384)),
    raw.data(id, bigMsg.subarray(16_384, 32_768)),
    raw.data(id, bigMsg.subarray(32_768)),
    raw.data(id, several),
    raw.data(id, Buffer.alloc(0), true),
  );
  const r = await raw.result(id);
  t.equal(r.status, '0', `status message: ${r.message}`);
  t.same(got, ['split across three frames, the prefix too', '40000 bytes', 'one', 'two', '', 'four'], 'each message whole, in order');
  const echoed = grpcMessages(r.body);
  t.equal(echoed.length, 6);
  t.ok(echoed[1]?.equals(big), 'the large message intact');
  t.same(statusesFor(path), [{ path, type: 'bidi_stream', code: grpc.status.OK }]);
});

t.test('bidi: messages that arrive before the handler listens are kept for it (grpc-js buffers them)', async (t) => {
  const path = register(server, 'LateListener', 'bidi_stream', bytes, bytes, (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
    // As a handler that first awaits something (an auth check) would.
    setImmediate(() => {
      call.on('data', (m: Buffer) => call.write(m));
      call.on('end', () => call.end());
    });
  });
  const raw = await RawH2.connect();
  t.teardown(() => raw.close());
  const id = raw.open();
  // The deadline ends the call if the server loses the end of the request.
  raw.send(raw.headers(id, path, ['grpc-timeout', '3S']), raw.data(id, grpcMessage(Buffer.from('early')), true));
  const r = await raw.result(id);
  t.equal(r.status, '0', `status ${r.status} ${r.message}`);
  t.same(grpcMessages(r.body).map(String), ['early'], 'the message echoed');
});

// ---------------------------------------------------------------- 5. compression

t.test('compression: gzip requests from a grpc-js client are decoded (unary and bidi)', async (t) => {
  // What the server reads off the wire, to see that the client did compress.
  const wire: Buffer[] = [];
  const accept = server.accept.bind(server);
  server.accept = (socket) => {
    socket.on('data', (c: Buffer) => wire.push(c));
    accept(socket);
  };
  t.teardown(() => {
    server.accept = accept;
  });
  const gz = new grpc.Client(addr, grpc.credentials.createInsecure(), { 'grpc.default_compression_algorithm': grpc.compressionAlgorithms.gzip });
  t.teardown(() => gz.close());
  const text = 'capstan compresses well. '.repeat(2000); // 50 000 bytes
  const u = register(server, 'GzUnary', 'unary', json, json, (call: grpc.ServerUnaryCall<Json, Json>, cb: grpc.sendUnaryData<Json>) => cb(null, { len: call.request.text.length, same: call.request.text === text }));
  const b = register(server, 'GzBidi', 'bidi_stream', bytes, bytes, (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
    call.on('data', (m: Buffer) => call.write(Buffer.from(`${m.length}:${m.equals(Buffer.from(text))}`)));
    call.on('end', () => call.end());
  });
  t.same(await unary(u, json, json, { text }, new grpc.Metadata(), {}, gz), { len: text.length, same: true });
  const call = gz.makeBidiStreamRequest(b, bytes.serialize, bytes.deserialize);
  const done = collect(call);
  call.write(Buffer.from(text));
  call.write(Buffer.from(text));
  call.end();
  const r = await done;
  t.equal(r.status.code, grpc.status.OK);
  t.same(r.messages.map(String), [`${text.length}:true`, `${text.length}:true`]);
  // Each compressed message on the wire: flag 1, a length, and gzip's magic.
  const all = Buffer.concat(wire);
  let compressed = 0;
  for (let i = all.indexOf(Buffer.from([0x1f, 0x8b, 0x08])); i >= 0; i = all.indexOf(Buffer.from([0x1f, 0x8b, 0x08]), i + 1)) {
    if (i >= 5 && all[i - 5] === 1 && all.readUInt32BE(i - 4) < text.length) compressed++;
  }
  t.equal(compressed, 3, 'the three requests went compressed (and smaller)');
});

t.test('compression: raw frames with grpc-encoding gzip or deflate and the compressed flag; an unknown encoding', async (t) => {
  const seen: string[] = [];
  const path = register(server, 'RawGz', 'unary', bytes, bytes, (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
    seen.push(String(call.request));
    cb(null, Buffer.from(`got ${call.request.length}`));
  });
  const session = h2session();
  t.teardown(() => session.destroy());
  const payload = Buffer.from('hello through zlib '.repeat(10));
  const gz = await h2call(session, { ':path': path, 'grpc-encoding': 'gzip' }, grpcMessage(gzipSync(payload), true));
  t.equal(gz.status, '0', `status message: ${gz.message}`);
  t.same(grpcMessages(gz.body).map(String), [`got ${payload.length}`]);
  const df = await h2call(session, { ':path': path, 'grpc-encoding': 'deflate' }, grpcMessage(deflateSync(payload), true));
  t.equal(df.status, '0', `status message: ${df.message}`);
  // gzip named but the flag not set: the message is taken as it is.
  const plain = await h2call(session, { ':path': path, 'grpc-encoding': 'gzip' }, grpcMessage(Buffer.from('not compressed')));
  t.equal(plain.status, '0', `status message: ${plain.message}`);
  t.same(seen, [String(payload), String(payload), 'not compressed']);

  const flagOnly = await h2call(session, { ':path': path }, grpcMessage(gzipSync(payload), true));
  t.equal(flagOnly.status, String(grpc.status.INTERNAL), 'the compressed flag without an encoding');
  const bad = await h2call(session, { ':path': path, 'grpc-encoding': 'gzip' }, grpcMessage(Buffer.from('not gzip at all'), true));
  t.equal(bad.status, String(grpc.status.INTERNAL), 'a compressed message that does not inflate');

  const snappy = await h2call(session, { ':path': path, 'grpc-encoding': 'snappy' }, grpcMessage(Buffer.from('x'), true));
  t.equal(snappy.headers[':status'], 200);
  t.equal(snappy.status, String(grpc.status.UNIMPLEMENTED));
  t.equal(snappy.message, 'Received message compressed with unsupported encoding "snappy"');
  t.equal(seen.length, 3, 'the handler saw none of the refused ones');
  t.same(
    statusesFor(path).map((s) => s.code),
    [grpc.status.OK, grpc.status.OK, grpc.status.OK, grpc.status.INTERNAL, grpc.status.INTERNAL, grpc.status.UNIMPLEMENTED],
  );
});

// ---------------------------------------------------------------- 6. limits

t.test('limits: a request over maxReceiveBytes gets RESOURCE_EXHAUSTED (unary, and on a bidi stream)', async (t) => {
  let unaryCalls = 0;
  const u = register(server, 'Limit', 'unary', bytes, bytes, (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
    unaryCalls++;
    cb(null, Buffer.from(String(call.request.length)));
  });
  t.equal(String(await unary(u, bytes, bytes, Buffer.alloc(LIMIT, 1))), String(LIMIT), 'exactly the limit is taken');
  await t.rejects(unary(u, bytes, bytes, Buffer.alloc(LIMIT + 1, 1)), {
    code: grpc.status.RESOURCE_EXHAUSTED,
    details: `Received message larger than max (${LIMIT + 1} vs ${LIMIT})`,
  });
  await t.rejects(unary(u, bytes, bytes, Buffer.alloc(3 * LIMIT, 1)), { code: grpc.status.RESOURCE_EXHAUSTED });
  // Small on the wire, over the limit once inflated.
  const session = h2session();
  t.teardown(() => session.destroy());
  const zipped = await h2call(session, { ':path': u, 'grpc-encoding': 'gzip' }, grpcMessage(gzipSync(Buffer.alloc(LIMIT + 1)), true));
  t.equal(zipped.status, String(grpc.status.RESOURCE_EXHAUSTED), `status message: ${zipped.message}`);
  t.equal(unaryCalls, 1, 'the handler saw only the one within the limit');

  const received: number[] = [];
  const b = register(server, 'LimitBidi', 'bidi_stream', bytes, bytes, (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
    call.on('data', (m: Buffer) => {
      received.push(m.length);
      call.write(Buffer.from(`len ${m.length}`));
    });
    call.on('end', () => call.end());
  });
  const call = client.makeBidiStreamRequest(b, bytes.serialize, bytes.deserialize);
  const done = collect(call, (m) => {
    if (String(m) === 'len 5') call.write(Buffer.alloc(LIMIT + 1));
  });
  call.write(Buffer.from('small'));
  const r = await done;
  t.same(r.messages.map(String), ['len 5'], 'the message before it was answered');
  t.equal(r.status.code, grpc.status.RESOURCE_EXHAUSTED);
  t.equal(r.status.details, `Received message larger than max (${LIMIT + 1} vs ${LIMIT})`);
  t.same(received, [5], 'the handler never got the large one');
  t.same(
    statusesFor(u, b).map((s) => [s.type, s.code]),
    [
      ['unary', grpc.status.OK],
      ['unary', grpc.status.RESOURCE_EXHAUSTED],
      ['unary', grpc.status.RESOURCE_EXHAUSTED],
      ['unary', grpc.status.RESOURCE_EXHAUSTED],
      ['bidi_stream', grpc.status.RESOURCE_EXHAUSTED],
    ],
  );
});

t.test('limits: the refusal of a large unary request names its length, as grpc-js does', async (t) => {
  const u = register(server, 'LimitLength', 'unary', bytes, bytes, (_c: unknown, cb: grpc.sendUnaryData<Buffer>) => cb(null, Buffer.alloc(0)));
  await t.rejects(unary(u, bytes, bytes, Buffer.alloc(3 * LIMIT, 1)), {
    code: grpc.status.RESOURCE_EXHAUSTED,
    details: `Received message larger than max (${3 * LIMIT} vs ${LIMIT})`,
  }, 'the length in the details');
});

t.test('limits: a compressed bidi message over maxReceiveBytes once inflated gets RESOURCE_EXHAUSTED', async (t) => {
  const received: number[] = [];
  const b = register(server, 'LimitBidiGz', 'bidi_stream', bytes, bytes, (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
    call.on('data', (m: Buffer) => received.push(m.length));
    call.on('end', () => call.end());
  });
  const session = h2session();
  t.teardown(() => session.destroy());
  const zipped = gzipSync(Buffer.alloc(4 * LIMIT));
  t.ok(zipped.length < LIMIT, `${zipped.length} bytes on the wire`);
  const r = await h2call(session, { ':path': b, 'grpc-encoding': 'gzip' }, grpcMessage(zipped, true));
  t.equal(r.status, String(grpc.status.RESOURCE_EXHAUSTED), `status ${r.status} ${r.message}`);
  t.same(received, [], 'the handler does not get it');
});

// ---------------------------------------------------------------- 7. HTTP-level refusals

t.test('HTTP-level refusals: GET is 405, another content-type 415, an unknown path UNIMPLEMENTED', async (t) => {
  const session = h2session();
  t.teardown(() => session.destroy());
  const before = statuses.length;
  const get = await h2call(session, { ':method': 'GET', ':path': '/x' });
  t.equal(get.headers[':status'], 405);
  t.equal(get.status, undefined, 'no grpc-status');
  const json415 = await h2call(session, { ':path': '/x', 'content-type': 'application/json' }, Buffer.from('{}'));
  t.equal(json415.headers[':status'], 415);
  t.equal(json415.status, undefined);
  const none = await h2call(session, { ':path': '/x', 'content-type': undefined }, grpcMessage(Buffer.alloc(0)));
  t.equal(none.headers[':status'], 415, 'no content-type');
  t.equal(statuses.length, before, 'HTTP refusals are not gRPC statuses');

  const unknown = await h2call(session, { ':path': '/x' }, grpcMessage(Buffer.alloc(0)));
  t.equal(unknown.headers[':status'], 200);
  t.equal(unknown.headers['content-type'], 'application/grpc');
  t.equal(unknown.status, '12');
  t.equal(unknown.message, 'The server does not implement the method /x');
  t.equal(unknown.trailers, undefined, 'a trailers-only answer');
  t.same(statusesFor('/x'), [{ path: '/x', type: 'unary', code: grpc.status.UNIMPLEMENTED }]);
  // grpc-js's client reads the same.
  await t.rejects(unary(`/${SERVICE}/NoSuchMethod`, bytes, bytes, Buffer.alloc(0)), {
    code: grpc.status.UNIMPLEMENTED,
    details: `The server does not implement the method /${SERVICE}/NoSuchMethod`,
  });
});

// ---------------------------------------------------------------- 8. onStatus

t.test('onStatus: once per call with (path, type, code); none for a call the client cancelled', async (t) => {
  const before = statuses.length;
  const unaryHeld = deferred();
  const unaryGone = deferred();
  const u = register(server, 'StatusUnary', 'unary', bytes, bytes, (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
    if (String(call.request) !== 'hold') return call.request.length === 0 ? cb({ code: grpc.status.OUT_OF_RANGE, details: 'empty' }) : cb(null, call.request);
    call.on('cancelled', () => {
      cb(null, Buffer.from('too late')); // counts nothing
      unaryGone.resolve();
    });
    unaryHeld.resolve();
  });
  const streamGone = deferred();
  const s = register(server, 'StatusStream', 'server_stream', bytes, bytes, (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
    call.write(call.request);
    if (String(call.request) !== 'hold') {
      call.end();
      call.end();
      return;
    }
    call.on('cancelled', () => call.end());
    call.on('close', () => streamGone.resolve());
  });
  const b = register(server, 'StatusBidi', 'bidi_stream', bytes, bytes, (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
    call.on('data', (m: Buffer) => call.write(m));
    call.on('end', () => call.end());
  });
  // A stream only the client ends. (Not the one above: a node:http2 client cancels with END_STREAM
  // then RST_STREAM, and a handler that ends on 'end' has answered OK before the reset is read.)
  const bidiGone = deferred();
  const c = register(server, 'StatusBidiCancel', 'bidi_stream', bytes, bytes, (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
    call.on('data', (m: Buffer) => call.write(m));
    call.on('cancelled', () => call.end());
    call.on('close', () => bidiGone.resolve());
  });

  await unary(u, bytes, bytes, Buffer.from('x'));
  await t.rejects(unary(u, bytes, bytes, Buffer.alloc(0)), { code: grpc.status.OUT_OF_RANGE });
  t.equal((await collect(client.makeServerStreamRequest(s, bytes.serialize, bytes.deserialize, Buffer.from('y')))).status.code, grpc.status.OK);
  const ok = client.makeBidiStreamRequest(b, bytes.serialize, bytes.deserialize);
  const okDone = collect(ok);
  ok.write(Buffer.from('z'));
  ok.end();
  t.equal((await okDone).status.code, grpc.status.OK);

  // Cancelled: a unary call while its handler holds it, a server stream and a bidi stream after their first message.
  const unaryErr = new Promise<grpc.ServiceError | null>((resolve) => {
    const uc = client.makeUnaryRequest(u, bytes.serialize, bytes.deserialize, Buffer.from('hold'), (err) => resolve(err));
    void unaryHeld.promise.then(() => uc.cancel());
  });
  t.equal((await unaryErr)?.code, grpc.status.CANCELLED);
  await unaryGone.promise;
  const stream = client.makeServerStreamRequest(s, bytes.serialize, bytes.deserialize, Buffer.from('hold'));
  t.equal((await collect(stream, () => stream.cancel())).status.code, grpc.status.CANCELLED);
  await streamGone.promise;
  const bidi = client.makeBidiStreamRequest(c, bytes.serialize, bytes.deserialize);
  const bidiDone = collect(bidi, () => bidi.cancel());
  bidi.write(Buffer.from('then cancel'));
  t.equal((await bidiDone).status.code, grpc.status.CANCELLED);
  await bidiGone.promise;

  await unary(u, bytes, bytes, Buffer.from('last'));
  t.same(statuses.slice(before), [
    { path: u, type: 'unary', code: grpc.status.OK },
    { path: u, type: 'unary', code: grpc.status.OUT_OF_RANGE },
    { path: s, type: 'server_stream', code: grpc.status.OK },
    { path: b, type: 'bidi_stream', code: grpc.status.OK },
    { path: u, type: 'unary', code: grpc.status.OK },
  ]);
});

// ---------------------------------------------------------------- 9. deadlines

t.test("deadline: a server stream past it ends with DEADLINE_EXCEEDED and the handler sees 'cancelled'", async (t) => {
  const handlers: { cancelled: Promise<boolean> }[] = [];
  const path = register(server, 'Deadline', 'server_stream', bytes, bytes, (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
    call.write(Buffer.from('first'));
    // Then nothing: only the deadline ends the call.
    handlers.push({ cancelled: new Promise((resolve) => call.on('cancelled', () => resolve(call.cancelled))) });
  });

  // A raw request whose only timer is the server's.
  const session = h2session();
  t.teardown(() => session.destroy());
  const raw = await h2call(session, { ':path': path, 'grpc-timeout': '300m' }, grpcMessage(Buffer.from('q')));
  t.same(grpcMessages(raw.body).map(String), ['first']);
  t.equal(raw.status, String(grpc.status.DEADLINE_EXCEEDED));
  t.equal(raw.message, 'Deadline exceeded');
  t.ok(raw.trailers !== undefined, 'the status in trailers after the message');
  t.equal(await handlers[0]!.cancelled, true, "the handler saw 'cancelled', call.cancelled true");
  t.same(statusesFor(path), [{ path, type: 'server_stream', code: grpc.status.DEADLINE_EXCEEDED }]);

  // A grpc-js client with a deadline (its own timer may win: the handler is cancelled either way).
  const r = await collect(client.makeServerStreamRequest(path, bytes.serialize, bytes.deserialize, Buffer.from('q'), new grpc.Metadata(), { deadline: Date.now() + 500 }));
  t.same(r.messages.map(String), ['first']);
  t.equal(r.status.code, grpc.status.DEADLINE_EXCEEDED);
  t.equal(await handlers[1]!.cancelled, true);
});

// ---------------------------------------------------------------- 10. close()

t.test('close(): calls in flight finish, then no connection is left', async (t) => {
  const srv = new GrpcServer({ maxReceiveBytes: LIMIT });
  const m = await listenMux(['http://127.0.0.1:0'], { grpc: srv });
  t.teardown(() => m.close());
  const c = new grpc.Client(`127.0.0.1:${m.ports[0]}`, grpc.credentials.createInsecure());
  t.teardown(() => c.close());
  const release = deferred();
  const started = deferred();
  const path = register(srv, 'Slow', 'server_stream', bytes, bytes, (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
    call.write(Buffer.from('before close'));
    started.resolve();
    void release.promise.then(() => {
      call.write(Buffer.from('after close'));
      call.end();
    });
  });
  const got = collect(c.makeServerStreamRequest(path, bytes.serialize, bytes.deserialize, Buffer.from('go')));
  await started.promise;
  t.equal(srv.connectionCount, 1);
  const closing = srv.close();
  release.resolve();
  const r = await got;
  t.equal(r.status.code, grpc.status.OK, r.status.details);
  t.same(r.messages.map(String), ['before close', 'after close'], 'the call in flight finished');
  await closing;
  t.equal(srv.connectionCount, 0);
});

// ---------------------------------------------------------------- what kills the server (in a child process)

const DIST = new URL('../', import.meta.url).href;
const PKG = fileURLToPath(new URL('../../', import.meta.url));

/**
 * Runs `body` in a fresh node with a GrpcServer on a port (`server`, `client`, `json`, `def`
 * in scope); it prints its result as JSON. Gives the exit code, the result, and stderr's first line.
 */
async function inChild(body: string): Promise<{ exit: number | null; result: unknown; error: string }> {
  const script = `
    import * as grpc from '@grpc/grpc-js';
    const { GrpcServer } = await import(new URL('src/grpc/server.js', process.env.DIST));
    const { listenMux } = await import(new URL('src/listen.js', process.env.DIST));
    const json = { s: (v) => Buffer.from(JSON.stringify(v)), d: (b) => JSON.parse(b.toString()) };
    const def = (name, requestStream, responseStream, codec = json) => ({ [name]: { path: '/t.T/' + name, requestStream, responseStream,
      requestSerialize: codec.s, requestDeserialize: codec.d, responseSerialize: codec.s, responseDeserialize: codec.d } });
    const server = new GrpcServer({ maxReceiveBytes: 1 << 20 });
    const mux = await listenMux(['http://127.0.0.1:0'], { grpc: server });
    const client = new grpc.Client('127.0.0.1:' + mux.ports[0], grpc.credentials.createInsecure());
    const done = (result) => { process.stdout.write(JSON.stringify(result)); client.close(); void mux.close().then(() => process.exit(0)); };
    const deadline = () => ({ deadline: Date.now() + 5000 });
    ${body}
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { cwd: PKG, env: { ...process.env, DIST }, stdio: ['ignore', 'pipe', 'pipe'] });
  const kill = setTimeout(() => child.kill('SIGKILL'), 60_000);
  let out = '';
  let err = '';
  child.stdout.on('data', (c: Buffer) => (out += String(c)));
  child.stderr.on('data', (c: Buffer) => (err += String(c)));
  const exit = await new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  clearTimeout(kill);
  let result: unknown;
  try {
    result = out === '' ? undefined : JSON.parse(out);
  } catch {
    result = out;
  }
  const firstError = err.split('\n').find((l) => /^\w*Error\b.*:/.test(l)) ?? err.split('\n')[0] ?? '';
  return { exit, result, error: firstError };
}

t.test('the child-process harness itself: a well-behaved call', async (t) => {
  const r = await inChild(`
    server.addService(def('U', false, false), { U: (call, cb) => cb(null, call.request + 1) });
    client.makeUnaryRequest('/t.T/U', json.s, json.d, 41, new grpc.Metadata(), deadline(), (e, v) => done({ code: e?.code ?? 0, value: v }));
  `);
  t.equal(r.exit, 0, r.error);
  t.same(r.result, { code: 0, value: 42 });
});

t.test('a bidi message that does not deserialize gets INTERNAL, and the server lives', async (t) => {
  const r = await inChild(`
    server.addService(def('B', true, true), { B: (call) => { call.on('data', (m) => call.write(m)); call.on('end', () => call.end()); } });
    const id = (b) => b;
    const call = client.makeBidiStreamRequest('/t.T/B', id, id, new grpc.Metadata(), deadline());
    call.on('error', () => {});
    call.on('data', () => {});
    call.on('status', (s) => done({ code: s.code, details: s.details }));
    call.write(Buffer.from('{not json'));
    call.end();
  `);
  t.equal(r.exit, 0, `the server process exits 0 (${r.error})`);
  t.same(r.result, { code: grpc.status.INTERNAL, details: 'Error deserializing request' }, 'the status');
});

t.test('a handler that throws gets UNKNOWN, and the server lives', async (t) => {
  const r = await inChild(`
    server.addService(def('U', false, false), { U: () => { throw new Error('handler bug'); } });
    client.makeUnaryRequest('/t.T/U', json.s, json.d, 1, new grpc.Metadata(), deadline(), (e) => done({ code: e?.code, details: e?.details }));
  `);
  t.equal(r.exit, 0, `the server process exits 0 (${r.error})`);
  t.same(r.result, { code: grpc.status.UNKNOWN, details: 'Unknown error' }, 'the status');
});

t.test('a response that does not serialize gets INTERNAL, and the server lives', async (t) => {
  const r = await inChild(`
    const bad = { s: (v) => { if (v === 'bad') throw new Error('cannot'); return json.s(v); }, d: json.d };
    server.addService(def('U', false, false, bad), { U: (call, cb) => cb(null, 'bad') });
    client.makeUnaryRequest('/t.T/U', json.s, json.d, 1, new grpc.Metadata(), deadline(), (e) => done({ code: e?.code, details: e?.details }));
  `);
  t.equal(r.exit, 0, `the server process exits 0 (${r.error})`);
  t.same(r.result, { code: grpc.status.INTERNAL, details: 'Error serializing response' }, 'the status');
});

t.test('a client-streaming handler gets grpc-js\'s (call, callback)', async (t) => {
  const r = await inChild(`
    server.addService(def('Sum', true, false), { Sum: (call, cb) => { let s = 0; call.on('data', (n) => (s += n)); call.on('end', () => cb(null, s)); } });
    const call = client.makeClientStreamRequest('/t.T/Sum', json.s, json.d, new grpc.Metadata(), deadline(), (e, v) => done({ code: e?.code ?? 0, value: v }));
    call.write(1); call.write(2); call.write(3); call.end();
  `);
  t.equal(r.exit, 0, `the server process exits 0 (${r.error})`);
  t.same(r.result, { code: 0, value: 6 }, 'the answer');
});
