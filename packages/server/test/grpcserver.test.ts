// The client port's gRPC server (grpc/server.ts on h2/connection.ts): what a client gets back
// (answers, error statuses, limits, deadlines) is what grpc-js's server would have sent.
import * as http2 from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import t from 'tap';
import { codec, serviceDefinition } from '../src/grpc/index.js';
import { parseGrpcTimeout } from '../src/grpc/server.js';
import { serveLocal } from './helpers/local-member.js';

const h = await serveLocal();
t.teardown(() => h.stop());
const client = new grpc.Client(h.addr, grpc.credentials.createInsecure());
t.teardown(() => client.close());

const KV = serviceDefinition('KV');
const identity = (b: Buffer): Buffer => b;
const putReq = codec<Record<string, unknown>>('etcdserverpb.PutRequest');
const putRes = codec<Record<string, unknown>>('etcdserverpb.PutResponse');
const rangeReq = codec<Record<string, unknown>>('etcdserverpb.RangeRequest');
const rangeRes = codec<{ kvs: { value: Buffer }[]; count: number }>('etcdserverpb.RangeResponse');

/** A unary call on raw bytes, so tests can send what no codec would. */
function call(path: string, body: Buffer, opts: grpc.CallOptions = {}): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    client.makeUnaryRequest(path, identity, identity, body, new grpc.Metadata(), opts, (err, res) => (err ? reject(err) : resolve(res!))),
  );
}

const callsSince = (n: number): Array<[string, number]> => h.calls.slice(n);

t.test('a unary call is answered with the bytes a grpc-js client decodes', async (t) => {
  const n = h.calls.length;
  const put = putRes.decode(await call(KV.Put!.path, putReq.encode({ key: Buffer.from('fast/a'), value: Buffer.from('1') }))) as { header: { revision: number } };
  t.ok(put.header.revision > 0);
  const got = rangeRes.decode(await call(KV.Range!.path, rangeReq.encode({ key: Buffer.from('fast/a') })));
  t.equal(got.count, 1);
  t.equal(got.kvs[0]!.value.toString(), '1');
  t.same(callsSince(n), [
    [KV.Put!.path, grpc.status.OK],
    [KV.Range!.path, grpc.status.OK],
  ]);
});

t.test('a call with a deadline is answered, and its deadline kept', async (t) => {
  const n = h.calls.length;
  const got = rangeRes.decode(await call(KV.Range!.path, rangeReq.encode({ key: Buffer.from('fast/a') }), { deadline: Date.now() + 5000 }));
  t.equal(got.count, 1);
  t.same(callsSince(n), [[KV.Range!.path, grpc.status.OK]]);

  // A raw HTTP/2 call whose request never finishes: only the server's timer can answer it.
  const session = http2.connect(`http://${h.addr}`);
  session.on('error', () => {});
  t.teardown(() => session.destroy());
  const raw = (timeout: string): Promise<{ status: string; message: string; ms: number }> =>
    new Promise((resolve, reject) => {
      const t0 = Date.now();
      const req = session.request({ ':method': 'POST', ':path': KV.Range!.path, 'content-type': 'application/grpc', te: 'trailers', 'grpc-timeout': timeout });
      req.on('response', (headers) => {
        resolve({ status: String(headers['grpc-status']), message: decodeURIComponent(String(headers['grpc-message'])), ms: Date.now() - t0 });
        req.close(http2.constants.NGHTTP2_CANCEL);
      });
      req.on('error', reject);
    });
  const expired = await raw('100m');
  t.equal(expired.status, String(grpc.status.DEADLINE_EXCEEDED));
  t.equal(expired.message, 'Deadline exceeded');
  t.ok(expired.ms >= 95, `answered when the deadline passed (${expired.ms} ms)`);
  const bad = await raw('soon');
  t.equal(bad.status, String(grpc.status.INTERNAL));
  t.equal(bad.message, 'Invalid grpc-timeout value "soon"');
  t.same(callsSince(n + 1), [
    [KV.Range!.path, grpc.status.DEADLINE_EXCEEDED],
    [KV.Range!.path, grpc.status.INTERNAL],
  ]);
});

t.test('parseGrpcTimeout reads the header as grpc-js does', async (t) => {
  t.equal(parseGrpcTimeout('5S'), 5000);
  t.equal(parseGrpcTimeout('1500m'), 1500);
  t.equal(parseGrpcTimeout('2M'), 120_000);
  t.equal(parseGrpcTimeout('3000000u'), 3000);
  t.equal(parseGrpcTimeout('999999n'), 0);
  t.equal(parseGrpcTimeout('12'), undefined, 'no unit');
  t.equal(parseGrpcTimeout('x'), undefined);
});

t.test('errors: the status code and message grpc-js would send', async (t) => {
  const n = h.calls.length;
  await t.rejects(call(KV.Put!.path, putReq.encode({ key: Buffer.alloc(0), value: Buffer.from('x') })), {
    code: grpc.status.INVALID_ARGUMENT,
    details: 'etcdserver: key is not provided',
  });
  await t.rejects(call(KV.Range!.path, Buffer.from([0x0a, 0xff])), { code: grpc.status.INTERNAL, details: 'Error deserializing request' }, 'a request that does not decode');
  await t.rejects(call(KV.Put!.path, putReq.encode({ key: Buffer.from('big'), value: Buffer.alloc(1.6 * 1024 * 1024) })), {
    code: grpc.status.INVALID_ARGUMENT,
    details: 'etcdserver: request is too large',
  });
  await t.rejects(call(KV.Put!.path, putReq.encode({ key: Buffer.from('bigger'), value: Buffer.alloc(2.2 * 1024 * 1024) })), {
    code: grpc.status.RESOURCE_EXHAUSTED,
    details: /^Received message larger than max/,
  });
  t.same(
    callsSince(n).map(([, code]) => code),
    [grpc.status.INVALID_ARGUMENT, grpc.status.INTERNAL, grpc.status.INVALID_ARGUMENT, grpc.status.RESOURCE_EXHAUSTED],
  );
  await t.rejects(call('/etcdserverpb.KV/NoSuchMethod', Buffer.alloc(0)), { code: grpc.status.UNIMPLEMENTED, details: 'The server does not implement the method /etcdserverpb.KV/NoSuchMethod' }, 'an unknown method');
  t.equal(rangeRes.decode(await call(KV.Range!.path, rangeReq.encode({ key: Buffer.from('fast/a') }))).count, 1, 'the server goes on');
});

t.test('a message with a status text that needs escaping arrives intact', async (t) => {
  // Compaction of a future revision: etcd's message, sent through the percent-encoding of grpc-message.
  const compact = codec<Record<string, unknown>>('etcdserverpb.CompactionRequest');
  await t.rejects(call(KV.Compact!.path, compact.encode({ revision: 1_000_000 })), {
    code: grpc.status.OUT_OF_RANGE,
    details: 'etcdserver: mvcc: required revision is a future revision',
  });
});
