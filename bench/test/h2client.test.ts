// The load generator's HTTP/2 client against Node's HTTP/2 server (nghttp2): flow control both
// ways, a header block over CONTINUATION frames, a reset stream and a lost connection. The gRPC
// side, against a real member, is in client.test.ts.
import t, { type Test } from 'tap';
import * as http2 from 'node:http2';
import type { AddressInfo, Socket } from 'node:net';
import { H2ClientConnection, type CloseReason, type StreamHandler } from '../src/h2client.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const OPTS = { windowBytes: 1 << 20, connectTimeoutMs: 5_000 };

/** A stream handler that keeps everything it is told. */
class Recorder implements StreamHandler {
  headers: Array<{ fields: string[]; end: boolean }> = [];
  bytes: Buffer[] = [];
  closed: Promise<CloseReason | undefined>;
  private done!: (why: CloseReason | undefined) => void;
  constructor() {
    this.closed = new Promise((resolve) => (this.done = resolve));
  }
  onHeaders(fields: string[], end: boolean): void {
    this.headers.push({ fields, end });
  }
  onData(payload: Buffer): void {
    this.bytes.push(Buffer.from(payload));
  }
  onClose(why: CloseReason | undefined): void {
    this.done(why);
  }
  field(name: string): string | undefined {
    for (const h of this.headers) for (let i = 0; i < h.fields.length; i += 2) if (h.fields[i] === name) return h.fields[i + 1];
    return undefined;
  }
}

async function serve(
  t: Test,
  onStream: (st: http2.ServerHttp2Stream, h: http2.IncomingHttpHeaders) => void,
  settings: http2.Settings = {},
  onSocket: (s: Socket) => void = () => {},
): Promise<H2ClientConnection> {
  const server = http2.createServer({ settings });
  server.on('stream', onStream);
  server.on('connection', onSocket);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const conn = await H2ClientConnection.connect('127.0.0.1', (server.address() as AddressInfo).port, OPTS);
  t.teardown(() => {
    conn.destroy();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return conn;
}

const REQUEST = [':method', 'POST', ':scheme', 'http', ':path', '/echo', ':authority', 'test', 'content-type', 'application/octet-stream'];

t.test('a request larger than the server lets us send at once waits for its window updates', async (t) => {
  const conn = await serve(
    t,
    (st) => {
      let n = 0;
      st.on('data', (b: Buffer) => (n += b.length));
      st.on('end', () => {
        st.respond({ ':status': 200, 'x-got': String(n) }, { waitForTrailers: true });
        st.on('wantTrailers', () => st.sendTrailers({ 'x-done': 'yes' }));
        st.end();
      });
    },
    // Node applies a small initial window to its streams; the connection window stays 64 KiB.
    { initialWindowSize: 1_000 },
  );
  const r = new Recorder();
  t.type(conn.open(REQUEST, r, Buffer.alloc(300_000, 1), true), 'number');
  t.equal(await r.closed, undefined, 'closed by both sides ending it');
  t.equal(r.field('x-got'), '300000', 'the server got every byte');
  t.equal(r.field('x-done'), 'yes', 'and its trailers came through');
  t.same(
    r.headers.map((h) => h.end),
    [false, true],
  );
});

t.test('a response larger than our window: we send window updates as we read', async (t) => {
  const size = 5 * OPTS.windowBytes + 123;
  const conn = await serve(t, (st) => {
    st.respond({ ':status': 200 });
    st.end(Buffer.alloc(size, 2));
  });
  const r = new Recorder();
  conn.open(REQUEST, r, undefined, true);
  t.equal(await r.closed, undefined);
  t.equal(Buffer.concat(r.bytes).length, size, 'every byte arrived');
});

t.test('a header block over CONTINUATION frames, and HPACK staying in step over many streams', async (t) => {
  const big = 'v'.repeat(40_000);
  const conn = await serve(t, (st, h) => {
    st.respond({ ':status': 200, 'x-big': h[':path'] === '/big' ? big : 'small', 'x-path': String(h[':path']) });
    st.end();
  });
  const paths = ['/big', '/a', '/b', '/a', '/big', '/c'];
  const rs = paths.map((p) => {
    const r = new Recorder();
    conn.open([':method', 'GET', ':scheme', 'http', ':path', p, ':authority', 'test'], r, undefined, true);
    return r;
  });
  await Promise.all(rs.map((r) => r.closed));
  t.same(
    rs.map((r) => r.field('x-path')),
    paths,
  );
  t.same(
    rs.map((r) => r.field('x-big')?.length),
    paths.map((p) => (p === '/big' ? big.length : 5)),
  );
});

t.test("a stream the server resets is closed with the server's code; the others go on", async (t) => {
  const conn = await serve(t, (st, h) => {
    // Node reports its own reset as the stream's error, on the server's side.
    st.on('error', () => {});
    if (h[':path'] === '/reset') st.close(http2.constants.NGHTTP2_REFUSED_STREAM);
    else {
      st.respond({ ':status': 200 });
      st.end('fine');
    }
  });
  const bad = new Recorder();
  const good = new Recorder();
  conn.open([':method', 'GET', ':scheme', 'http', ':path', '/reset', ':authority', 'test'], bad, undefined, true);
  conn.open([':method', 'GET', ':scheme', 'http', ':path', '/ok', ':authority', 'test'], good, undefined, true);
  t.same(await bad.closed, { rstCode: http2.constants.NGHTTP2_REFUSED_STREAM });
  t.equal(await good.closed, undefined);
  t.equal(Buffer.concat(good.bytes).toString(), 'fine');
  t.ok(conn.usable);
});

t.test('we reset a stream: the server sees it cancelled and the handler hears it once', async (t) => {
  let serverSaw!: (code: number | undefined) => void;
  const saw = new Promise<number | undefined>((resolve) => (serverSaw = resolve));
  const conn = await serve(t, (st) => {
    st.respond({ ':status': 200 });
    st.write('partial');
    st.on('close', () => serverSaw(st.rstCode));
  });
  const r = new Recorder();
  let closes = 0;
  const inner = r.onClose.bind(r);
  r.onClose = (why) => {
    closes++;
    inner(why);
  };
  const id = conn.open(REQUEST, r, undefined, false) as number;
  while (r.bytes.length === 0) await sleep(5);
  conn.reset(id);
  conn.reset(id);
  t.same(await r.closed, { rstCode: http2.constants.NGHTTP2_CANCEL });
  t.equal(closes, 1);
  t.equal(await saw, http2.constants.NGHTTP2_CANCEL);
});

t.test('a lost connection closes every open stream with an error, and no new one opens', async (t) => {
  let socket: Socket | undefined;
  let opened = 0;
  const conn = await serve(
    t,
    (st) => {
      st.on('error', () => {});
      opened++;
      st.respond({ ':status': 200 });
    },
    {},
    (s) => (socket = s),
  );
  const rs = [new Recorder(), new Recorder()];
  for (const r of rs) conn.open(REQUEST, r, undefined, false);
  while (opened < 2) await sleep(5);
  // The TCP connection itself, under Node's HTTP/2: no GOAWAY, no RST_STREAM, just gone.
  socket!.destroy();
  for (const r of rs) t.type((await r.closed)?.error, Error);
  t.equal(conn.usable, false);
  t.type(conn.open(REQUEST, new Recorder(), undefined, true), Error);
});

t.test('connect: a port where nothing listens fails, and so does one that does not speak HTTP/2', async (t) => {
  const server = http2.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await t.rejects(H2ClientConnection.connect('127.0.0.1', port, OPTS), /ECONNREFUSED/);

  const net = await import('node:net');
  const accepted: Socket[] = [];
  const silent = net.createServer((s) => accepted.push(s));
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const s of accepted) s.destroy();
    return new Promise<void>((resolve) => silent.close(() => resolve()));
  });
  await t.rejects(H2ClientConnection.connect('127.0.0.1', (silent.address() as AddressInfo).port, { ...OPTS, connectTimeoutMs: 300 }), /no HTTP\/2 SETTINGS within 300 ms/);
});
