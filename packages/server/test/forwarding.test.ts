// Forwarded requests on one gRPC stream per peer: real grpc-js server and client on loopback.
import * as grpc from '@grpc/grpc-js';
import t, { type Test } from 'tap';
import { ForwardClient, ForwardError, MAX_FORWARDS_INFLIGHT } from '../src/forwarding.js';
import { PEER_SERVICE, PeerTransport, type PeerHandlers } from '../src/peer.js';
import { packr } from '../src/peercodec.js';

const PeerClient = grpc.makeGenericClientConstructor(PEER_SERVICE, 'Peer');
type Forwards = { forwards(): grpc.ClientDuplexStream<Buffer, Buffer> };

function handlers(onForward: PeerHandlers['onForward']): PeerHandlers {
  return { onMessages: () => {}, onUnreachable: () => {}, onForward, onSnapshot: async () => {} };
}

/** A member's peer gRPC server answering forwards with `onForward`, on a port the OS picked (or `port`). */
async function serve(t: Test, onForward: PeerHandlers['onForward'], port = 0): Promise<{ server: grpc.Server; port: number }> {
  const server = new grpc.Server();
  new PeerTransport(handlers(onForward)).register(server);
  const bound = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  t.teardown(() => server.forceShutdown());
  return { server, port: bound };
}

function asker(t: Test, port: number): PeerTransport {
  const tr = new PeerTransport(handlers(async () => undefined));
  tr.setPeer(2, `http://127.0.0.1:${port}`);
  t.teardown(() => tr.close());
  return tr;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

t.test('many forwards in flight on one stream each get their own answer, in whatever order they come', async (t) => {
  let seen = 0;
  const { port } = await serve(t, async (req) => {
    seen++;
    const n = (req as { n: number }).n;
    await sleep(n % 7); // answers leave out of order
    if (n % 100 === 99) throw Object.assign(new Error(`no lease ${n}`), { code: 'NOT_FOUND' });
    return { n, ttl: BigInt(n) * 2n };
  });
  const tr = asker(t, port);
  const got = await Promise.all(Array.from({ length: 2000 }, (_, n) => tr.forward(2, { op: 'keepalive', n })));
  t.equal(seen, 2000, 'the leader handled every one');
  const wrong = got.filter((res, n) => (n % 100 === 99 ? (res as { error: { message: string } }).error.message !== `no lease ${n}` : (res as { n: number }).n !== n || (res as { ttl: bigint }).ttl !== BigInt(n) * 2n));
  t.same(wrong, [], 'every answer went to its own request (bigints intact)');
  t.same(got[99], { error: { code: 'NOT_FOUND', message: 'no lease 99' } }, 'a failed request comes back as an error payload with its code');
});

t.test('a broken stream fails what waits on it at once, and the next forward opens a new one', async (t) => {
  let release: () => void = () => {};
  const held = new Promise<void>((r) => (release = r));
  const first = await serve(t, async () => {
    await held;
    return 'late';
  });
  const tr = asker(t, first.port);
  const waiting = Promise.allSettled([tr.forward(2, { op: 'keepalive' }), tr.forward(2, { op: 'ttl' })]);
  await sleep(100);
  const started = performance.now();
  first.server.forceShutdown();
  const settled = await waiting;
  t.ok(performance.now() - started < 2000, 'failed when the stream broke, not at the deadline');
  t.same(settled.map((s) => s.status), ['rejected', 'rejected']);
  t.ok(settled.every((s) => s.status === 'rejected' && s.reason instanceof ForwardError), 'as ForwardErrors');
  release();
  const again = await serve(t, async (req) => ({ back: req }), first.port);
  t.same(await tr.forward(2, { op: 'cluster' }), { back: { op: 'cluster' } }, 'a new stream answers');
  t.equal(again.port, first.port);
});

t.test('a request with no answer fails at its deadline; the stream stays usable', async (t) => {
  const { port } = await serve(t, async (req) => ((req as { hang?: boolean }).hang === true ? new Promise(() => {}) : 'ok'));
  const client = new PeerClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as grpc.Client & Forwards;
  const fc = new ForwardClient(() => client.forwards(), 300);
  t.teardown(() => {
    fc.close();
    client.close();
  });
  const started = performance.now();
  const hung = await fc.request({ hang: true }).catch((e: unknown) => e);
  const took = performance.now() - started;
  t.ok(hung instanceof ForwardError && /no answer in 300 ms/.test(hung.message), String(hung));
  t.ok(took >= 290 && took < 2000, `failed after ${took.toFixed(0)} ms`);
  t.equal(await fc.request({}), 'ok', 'the stream answers the next request');
});

t.test('past the in-flight limit a forward fails at once; close fails the rest', async (t) => {
  const { port } = await serve(t, () => new Promise(() => {}));
  const client = new PeerClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as grpc.Client & Forwards;
  t.teardown(() => client.close());
  const fc = new ForwardClient(() => client.forwards());
  const all = Array.from({ length: MAX_FORWARDS_INFLIGHT }, () => fc.request({}).catch((e: unknown) => e));
  const over = await fc.request({}).catch((e: unknown) => e);
  t.ok(over instanceof ForwardError && /already in flight/.test(over.message), String(over));
  fc.close();
  const rest = await Promise.all(all);
  t.ok(rest.every((e) => e instanceof ForwardError && /peer removed/.test(e.message)), 'close failed every waiting request');
  const after = await fc.request({}).catch((e: unknown) => e);
  t.ok(after instanceof ForwardError, 'a closed client refuses');
});

t.test('a message that is not an envelope ends the stream with INVALID_ARGUMENT', async (t) => {
  let handled = 0;
  const { port } = await serve(t, async () => handled++);
  const client = new PeerClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as grpc.Client & Forwards;
  t.teardown(() => client.close());
  for (const bad of [Buffer.from([0xc1]), packr.pack({ op: 'keepalive' }), packr.pack(['x', 1]), packr.pack([1])]) {
    const call = client.forwards();
    const status = await new Promise<grpc.StatusObject>((resolve) => {
      call.on('error', () => {});
      call.on('status', resolve);
      call.write(bad);
    });
    t.equal(status.code, grpc.status.INVALID_ARGUMENT, `${bad.toString('hex')}: ${status.details}`);
  }
  t.equal(handled, 0, 'none reached the handler');
});

t.test('a peer that half-closes gets every answer before the stream ends', async (t) => {
  const { port } = await serve(t, async (req) => {
    await sleep(50);
    return req;
  });
  const client = new PeerClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as grpc.Client & Forwards;
  t.teardown(() => client.close());
  const call = client.forwards();
  const answers: unknown[] = [];
  call.on('data', (b: Buffer) => answers.push(packr.unpack(b)));
  const status = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
  call.write(packr.pack([1, 'a']));
  call.write(packr.pack([2, 'b']));
  call.end();
  t.equal((await status).code, grpc.status.OK);
  t.same(answers.sort(), [[1, 'a'], [2, 'b']]);
});
