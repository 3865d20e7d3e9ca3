// LinkProxy with real sockets on loopback: bytes intact, cuts both ways and one way, delay, heal,
// per-source state.
import t, { type Test } from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { LinkProxy, MAX_DELAY_MS, type LinkProxyOptions } from '../src/proxy.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** A target server: echoes (or only records) what each connection sends; keeps every accepted socket. */
interface Target {
  server: Server;
  port: number;
  accepted: Socket[];
  received: Buffer[][];
  close(): Promise<void>;
}

async function target(mode: 'echo' | 'record'): Promise<Target> {
  const accepted: Socket[] = [];
  const received: Buffer[][] = [];
  const server = createServer({ allowHalfOpen: true }, (s) => {
    accepted.push(s);
    const got: Buffer[] = [];
    received.push(got);
    s.on('error', () => {});
    s.on('data', (d: Buffer) => got.push(d));
    if (mode === 'echo') s.pipe(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    server,
    port,
    accepted,
    received,
    close: async () => {
      for (const s of accepted) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** A target behind a proxy, both closed when the test ends. */
async function proxied(
  t: Test,
  mode: 'echo' | 'record',
  classify?: LinkProxyOptions['classify'],
): Promise<{ tg: Target; p: LinkProxy }> {
  const tg = await target(mode);
  const p = await LinkProxy.listen({ target: { host: '127.0.0.1', port: tg.port }, ...(classify !== undefined ? { classify } : {}) });
  t.teardown(async () => {
    await p.close();
    await tg.close();
  });
  return { tg, p };
}

interface Client {
  sock: Socket;
  got: Buffer[];
  closed: Promise<void>;
  isClosed: () => boolean;
  ended: Promise<void>;
}

async function client(port: number, localAddress?: string): Promise<Client> {
  const sock = connect({ host: '127.0.0.1', port, allowHalfOpen: true, ...(localAddress ? { localAddress } : {}) });
  const got: Buffer[] = [];
  let closedFlag = false;
  sock.on('data', (d: Buffer) => got.push(d));
  sock.on('error', () => {});
  const closed = new Promise<void>((r) =>
    sock.once('close', () => {
      closedFlag = true;
      r();
    }),
  );
  const ended = new Promise<void>((r) => sock.once('end', () => r()));
  await new Promise<void>((resolve) => {
    sock.once('connect', () => resolve());
    sock.once('close', () => resolve());
  });
  return { sock, got, closed, isClosed: () => closedFlag, ended };
}

async function until(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > ms) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** Whether the promise settles within ms. */
async function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const r = await Promise.race([p.then(() => true), new Promise<boolean>((res) => (timer = setTimeout(() => res(false), ms)))]);
  clearTimeout(timer);
  return r;
}

const total = (bufs: Buffer[]): number => bufs.reduce((n, b) => n + b.length, 0);

/** Writes data in uneven chunks, half-closes, and waits for the echo to end; returns what came back. */
async function roundTrip(port: number, data: Buffer): Promise<Buffer> {
  const c = await client(port);
  let off = 0;
  let size = 1;
  while (off < data.length) {
    const n = Math.min(size, data.length - off);
    if (!c.sock.write(data.subarray(off, off + n))) await new Promise((r) => c.sock.once('drain', r));
    off += n;
    size = (size * 7 + 13) % 65_521;
  }
  c.sock.end();
  await c.ended;
  return Buffer.concat(c.got);
}

t.test('bytes pass through intact, both ways', async (t) => {
  const { p } = await proxied(t, 'echo');
  const data = randomBytes(4 * 1024 * 1024);
  const back = await roundTrip(p.port, data);
  t.equal(back.length, data.length);
  t.equal(sha(back), sha(data), 'the echo is byte for byte what was sent');
  t.equal(p.stats().forwardBytes, data.length);
  t.equal(p.stats().backwardBytes, data.length);
  // Several connections at once do not mix.
  const parts = [randomBytes(300_000), randomBytes(500_000), randomBytes(700_000)];
  const backs = await Promise.all(parts.map((d) => roundTrip(p.port, d)));
  t.same(backs.map(sha), parts.map(sha));
});

t.test('order and content kept under delay, and when the delay changes midway', async (t) => {
  const { p } = await proxied(t, 'echo');
  p.delay(30);
  const data = randomBytes(1024 * 1024);
  const pending = roundTrip(p.port, data);
  await sleep(20);
  p.delay(0);
  await sleep(5);
  p.delay(15, 'backward');
  const back = await pending;
  t.equal(sha(back), sha(data));
});

t.test('delay adds latency (a lower bound only)', async (t) => {
  const { p } = await proxied(t, 'echo');
  const c = await client(p.port);
  t.teardown(() => c.sock.destroy());
  const rtt = async (): Promise<number> => {
    const before = total(c.got);
    const start = performance.now();
    c.sock.write('x');
    await until('the echo', () => total(c.got) > before);
    return performance.now() - start;
  };
  const D = 150;
  p.delay(D);
  t.ok((await rtt()) >= 2 * D, 'both ways delayed');
  p.delay(0, 'backward');
  t.ok((await rtt()) >= D, 'forward delayed');
  p.delay(0);
  p.delay(D, 'backward');
  t.ok((await rtt()) >= D, 'backward delayed');
  t.throws(() => p.delay(-1), RangeError);
  t.throws(() => p.delay(MAX_DELAY_MS + 1), RangeError);
});

t.test('cut both ways: connections destroyed, new ones refused; heal lets new ones through', async (t) => {
  const { tg, p } = await proxied(t, 'echo');
  const c = await client(p.port);
  c.sock.write('ping');
  await until('echo before the cut', () => total(c.got) === 4);
  p.cut();
  t.ok(await within(c.closed, 5000), 'the open connection is closed');
  t.equal(tg.accepted[0]!.destroyed || (await within(new Promise((r) => tg.accepted[0]!.once('close', r)), 5000)), true, 'the target side is closed too');
  const before = tg.accepted.length;
  const c2 = await client(p.port);
  c2.sock.write('lost');
  t.ok(await within(c2.closed, 5000), 'a new connection is closed');
  t.equal(c2.got.length, 0);
  await sleep(100);
  t.equal(tg.accepted.length, before, 'the target never saw it');
  p.heal();
  const data = randomBytes(100_000);
  t.equal(sha(await roundTrip(p.port, data)), sha(data), 'after heal, new connections pass');
});

t.test('cut forward only: client bytes held (not dropped), target bytes flow; heal delivers them in order', async (t) => {
  const { tg, p } = await proxied(t, 'record');
  const c = await client(p.port);
  t.teardown(() => c.sock.destroy());
  c.sock.write('a');
  await until('the first byte', () => tg.received[0] !== undefined && total(tg.received[0]) === 1);
  p.cut('forward');
  const data = randomBytes(200_000);
  c.sock.write(data);
  tg.accepted[0]!.write('from target');
  await until('backward bytes', () => Buffer.concat(c.got).toString() === 'from target');
  await sleep(300);
  t.equal(total(tg.received[0]!), 1, 'nothing crossed forward during the cut');
  t.notOk(c.isClosed(), 'a one-way cut does not close the connection');
  p.heal();
  await until('held bytes', () => total(tg.received[0]!) === 1 + data.length);
  t.equal(sha(Buffer.concat(tg.received[0]!).subarray(1)), sha(data), 'held bytes arrive intact, in order');
});

t.test('cut backward only: target bytes held, client bytes flow; new connections too', async (t) => {
  const { tg, p } = await proxied(t, 'record');
  p.cut('backward');
  const c = await client(p.port);
  t.teardown(() => c.sock.destroy());
  c.sock.write('to target');
  await until('the target connection', () => tg.received.length === 1 && Buffer.concat(tg.received[0]!).toString() === 'to target');
  const data = randomBytes(200_000);
  tg.accepted[0]!.write(data);
  await sleep(300);
  t.equal(total(c.got), 0, 'nothing crossed backward during the cut');
  p.heal();
  await until('held bytes', () => total(c.got) === data.length);
  t.equal(sha(Buffer.concat(c.got)), sha(data));
});

t.test('per-source state: only the named source is cut', async (t) => {
  const { p } = await proxied(t, 'echo', async (s) => ({ '127.0.0.2': 'a', '127.0.0.3': 'b' })[s.remoteAddress ?? '']);
  const a = await client(p.port, '127.0.0.2');
  const b = await client(p.port, '127.0.0.3');
  t.teardown(() => {
    a.sock.destroy();
    b.sock.destroy();
  });
  a.sock.write('1');
  b.sock.write('1');
  await until('both echo', () => total(a.got) === 1 && total(b.got) === 1);
  p.cut('both', 'a');
  t.ok(await within(a.closed, 5000), "a's connection is closed");
  b.sock.write('2');
  await until('b still echoes', () => total(b.got) === 2);
  t.notOk(b.isClosed());
  const a2 = await client(p.port, '127.0.0.2');
  t.ok(await within(a2.closed, 5000), 'a new connection from a is closed');
  t.same(p.stats().accepted, { a: 2, b: 1 });
  // A proxy-wide delay applies to every source; a source's own delay only to it.
  p.heal('a');
  const a3 = await client(p.port, '127.0.0.2');
  t.teardown(() => a3.sock.destroy());
  const start = performance.now();
  p.delay(100, 'forward', 'b');
  a3.sock.write('x');
  await until('a echoes again', () => total(a3.got) === 1);
  b.sock.write('x');
  await until('b echoes', () => total(b.got) === 3);
  t.ok(performance.now() - start >= 100, "b's delay applied to b");
  t.same(p.get('b'), { forwardCut: false, backwardCut: false, forwardDelayMs: 100, backwardDelayMs: 0 });
  t.same(p.stateOf('a'), { forwardCut: false, backwardCut: false, forwardDelayMs: 0, backwardDelayMs: 0 });
});

t.test('a target that is down: the client is closed; close() stops listening', async (t) => {
  const tg = await target('echo');
  const port = tg.port;
  await tg.close();
  const p = await LinkProxy.listen({ target: { host: '127.0.0.1', port } });
  const c = await client(p.port);
  t.ok(await within(c.closed, 5000), 'closed when the target refuses');
  const tg2 = await target('echo');
  const p2 = await LinkProxy.listen({ target: { host: '127.0.0.1', port: tg2.port } });
  const c2 = await client(p2.port);
  c2.sock.write('x');
  await until('echo', () => total(c2.got) === 1);
  await p2.close();
  t.ok(await within(c2.closed, 5000), 'close() destroys open connections');
  const c3 = await client(p2.port);
  t.ok(c3.isClosed() || (await within(c3.closed, 5000)), 'nothing listens after close()');
  t.equal(total(c3.got), 0);
  await p.close();
  await tg2.close();
});
