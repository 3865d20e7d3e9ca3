// The load generator's client (Node's HTTP/2, no grpc-js): unary calls, a server's status and
// message, streams, a deadline the server does not keep, and message framing across chunks,
// against a real 1-member Capstan cluster and, for what a real server will not do, a bare HTTP/2
// server in this process.
import t from 'tap';
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { ChaosCluster } from '@capstan/chaos/cluster';
import { framedMessage as frame } from '@capstan/server';
import { Deframer, GrpcError, KV, LEASE, msg, RawClient, Status, WATCH } from '../src/client.js';

interface Kv {
  key: Buffer;
  value: Buffer;
}
const putReq = msg<{ key: Buffer; value: Buffer }>('PutRequest');
const rangeReq = msg<{ key: Buffer }>('RangeRequest');
const rangeRes = msg<{ kvs: Kv[]; count: number }>('RangeResponse');
const watchReq = msg<{ createRequest?: { key: Buffer } }>('WatchRequest');
const watchRes = msg<{ created: boolean; events: Array<{ kv: Kv }> }>('WatchResponse');
const grantReq = msg<{ TTL: number; ID: bigint }>('LeaseGrantRequest');
const grantRes = msg<{ ID: bigint; TTL: number }>('LeaseGrantResponse');
const keepAliveReq = msg<{ ID: bigint }>('LeaseKeepAliveRequest');
const keepAliveRes = msg<{ ID: bigint; TTL: number }>('LeaseKeepAliveResponse');

function errorOf(p: Promise<unknown>): Promise<GrpcError> {
  return p.then(
    () => {
      throw new Error('resolved, an error was expected');
    },
    (err: unknown) => err as GrpcError,
  );
}

t.test('framing: messages split over chunks and several in one chunk', async (t) => {
  const a = Buffer.from('first message');
  const b = Buffer.alloc(0);
  const c = Buffer.alloc(70_000, 7);
  const wire = Buffer.concat([frame(a), frame(b), frame(c)]);
  for (const cut of [1, 3, 5, 6, 17, 18, 19, 23, 40_000, wire.length - 1]) {
    const d = new Deframer();
    const got: Buffer[] = [];
    d.push(wire.subarray(0, cut), (m) => got.push(Buffer.from(m)));
    d.push(wire.subarray(cut), (m) => got.push(Buffer.from(m)));
    t.same(got, [a, b, c], `cut at ${cut}`);
    t.equal(d.pending, 0, `nothing left over (cut at ${cut})`);
  }
  const compressed = frame(a);
  compressed[0] = 1;
  t.throws(() => new Deframer().push(compressed, () => {}), { code: Status.INTERNAL }, 'a compressed message is refused');
});

t.test('against a Capstan member', async (t) => {
  const cluster = await ChaosCluster.start({ target: 'capstan', members: 1, resultsDir: t.testdir(), peerProxies: false });
  t.teardown(() => cluster.close());
  const client = await RawClient.open(cluster.clientEndpoints(), 2);
  t.teardown(() => client.close());
  t.equal(client.size, 2);

  t.test('a put, then a range that reads it, on either channel', async (t) => {
    await client.unaryAsync(0, `${KV}Put`, putReq.encode({ key: Buffer.from('k1'), value: Buffer.from('v1') }));
    const r = rangeRes.decode(await client.unaryAsync(1, `${KV}Range`, rangeReq.encode({ key: Buffer.from('k1') })));
    t.equal(r.kvs.length, 1);
    t.equal(r.kvs[0]!.value.toString(), 'v1');
  });

  t.test("a refused request fails with the server's status and etcd's message", async (t) => {
    const err = await errorOf(client.unaryAsync(0, `${KV}Put`, putReq.encode({ key: Buffer.alloc(0), value: Buffer.from('v') })));
    t.ok(err instanceof GrpcError);
    t.equal(err.code, 3, 'InvalidArgument');
    t.equal(err.details, 'etcdserver: key is not provided');
    const unknown = await errorOf(client.unaryAsync(0, `${KV}NoSuchMethod`, Buffer.alloc(0)));
    t.equal(unknown.code, 12, 'Unimplemented');
  });

  t.test('a watch stream gets its events, and cancelling it is a CANCELLED error', async (t) => {
    const s = client.stream(0, `${WATCH}Watch`);
    const responses: Array<{ created: boolean; events: Array<{ kv: Kv }> }> = [];
    let wake: (() => void) | undefined;
    s.on('data', (m: Buffer) => {
      responses.push(watchRes.decode(m));
      wake?.();
    });
    const until = async (n: number): Promise<void> => {
      while (responses.length < n) await new Promise<void>((r) => (wake = r));
    };
    s.write(watchReq.encode({ createRequest: { key: Buffer.from('w1') } }));
    await until(1);
    t.equal(responses[0]!.created, true);
    await client.unaryAsync(1, `${KV}Put`, putReq.encode({ key: Buffer.from('w1'), value: Buffer.from('x'.repeat(100_000)) }));
    await until(2);
    t.equal(responses[1]!.events[0]!.kv.value.length, 100_000, 'a 100 KB event arrives whole');
    t.equal(s.open, true);
    const ended = new Promise<GrpcError>((resolve) => s.on('error', resolve));
    s.cancel();
    t.equal((await ended).code, Status.CANCELLED);
    t.equal(s.open, false);
  });

  t.test('a lease keepalive stream answers each keepalive', async (t) => {
    const lease = grantRes.decode(await client.unaryAsync(0, `${LEASE}LeaseGrant`, grantReq.encode({ TTL: 60, ID: 0n })));
    const s = client.stream(1, `${LEASE}LeaseKeepAlive`);
    const got: Array<{ ID: bigint; TTL: number }> = [];
    const two = new Promise<void>((resolve) =>
      s.on('data', (m: Buffer) => {
        got.push(keepAliveRes.decode(m));
        if (got.length === 2) resolve();
      }),
    );
    s.write(keepAliveReq.encode({ ID: lease.ID }));
    s.write(keepAliveReq.encode({ ID: lease.ID }));
    await two;
    t.same(
      got.map((r) => [r.ID, r.TTL]),
      [
        [lease.ID, 60],
        [lease.ID, 60],
      ],
    );
    s.on('error', () => {});
    s.cancel();
  });
});

t.test('a server that never answers: the call fails with DEADLINE_EXCEEDED, not a hang', async (t) => {
  const server = http2.createServer();
  const seen: Array<string | string[] | undefined> = [];
  server.on('stream', (_st, headers) => seen.push(headers['grpc-timeout']));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const client = await RawClient.open([`127.0.0.1:${(server.address() as AddressInfo).port}`], 1);
  t.teardown(() => client.close());
  const t0 = performance.now();
  const err = await errorOf(client.unaryAsync(0, `${KV}Put`, Buffer.alloc(3), 300));
  const took = performance.now() - t0;
  t.equal(err.code, Status.DEADLINE_EXCEEDED);
  t.ok(took >= 300, `not before the deadline (${Math.round(took)} ms)`);
  t.same(seen, ['300m'], 'the deadline was sent as grpc-timeout');
});

t.test('a message the client cannot read fails the call with INTERNAL, and a stream is reset once', async (t) => {
  const server = http2.createServer();
  const resets: number[] = [];
  let streamClosed!: () => void;
  const closed = new Promise<void>((resolve) => (streamClosed = resolve));
  server.on('stream', (st, headers) => {
    st.on('error', () => {});
    const compressed = frame(Buffer.from('x'));
    compressed[0] = 1;
    if (headers[':path'] === `${KV}Put`) {
      // An unreadable answer, then OK: the answer's failure is what the call reports.
      st.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      st.on('wantTrailers', () => st.sendTrailers({ 'grpc-status': '0' }));
      st.end(compressed);
      return;
    }
    st.on('close', () => {
      resets.push(st.rstCode);
      streamClosed();
    });
    st.respond({ ':status': 200, 'content-type': 'application/grpc' });
    // Two unreadable messages in separate writes: the second must not reset the stream again.
    st.write(compressed);
    setTimeout(() => st.write(compressed), 20);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const client = await RawClient.open([`127.0.0.1:${(server.address() as AddressInfo).port}`], 1);
  t.teardown(() => client.close());

  const s = client.stream(0, `${WATCH}Watch`);
  const messages: Buffer[] = [];
  s.on('data', (m: Buffer) => messages.push(m));
  const err = await new Promise<GrpcError>((resolve) => s.on('error', resolve));
  t.equal(err.code, Status.INTERNAL);
  t.match(err.details, /compressed message/);
  t.same(messages, [], 'nothing unreadable was handed on');
  await closed;
  t.same(resets, [http2.constants.NGHTTP2_INTERNAL_ERROR], 'reset once, with INTERNAL_ERROR');

  const unary = await errorOf(client.unaryAsync(0, `${KV}Put`, Buffer.alloc(3)));
  t.equal(unary.code, Status.INTERNAL, 'a unary call too, though its trailers said OK');
  t.match(unary.details, /compressed message/);
});

t.test('a closed port: open() fails with the address in the message', async (t) => {
  const server = http2.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await t.rejects(RawClient.open([`127.0.0.1:${port}`], 1), new RegExp(`cannot connect to 127\\.0\\.0\\.1:${port}`));
});
