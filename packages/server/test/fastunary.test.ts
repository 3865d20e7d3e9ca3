// Unary calls answered beside grpc-js (fastunary.ts): which calls take that path, and that what a
// client gets back there (answers, error statuses, limits) is what grpc-js would have sent.
import * as grpc from '@grpc/grpc-js';
import t from 'tap';
import { codec, serviceDefinition } from '../src/grpc/index.js';
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

const fastSince = (n: number): Array<[string, number]> => h.fastCalls.slice(n);

t.test('a plain unary call is answered beside grpc-js, with the same bytes a client decodes', async (t) => {
  const n = h.fastCalls.length;
  const put = putRes.decode(await call(KV.Put!.path, putReq.encode({ key: Buffer.from('fast/a'), value: Buffer.from('1') }))) as { header: { revision: number } };
  t.ok(put.header.revision > 0);
  const got = rangeRes.decode(await call(KV.Range!.path, rangeReq.encode({ key: Buffer.from('fast/a') })));
  t.equal(got.count, 1);
  t.equal(got.kvs[0]!.value.toString(), '1');
  t.same(fastSince(n), [
    [KV.Put!.path, grpc.status.OK],
    [KV.Range!.path, grpc.status.OK],
  ]);
});

t.test('a call with a deadline goes through grpc-js (it owns DEADLINE_EXCEEDED)', async (t) => {
  const n = h.fastCalls.length;
  const got = rangeRes.decode(await call(KV.Range!.path, rangeReq.encode({ key: Buffer.from('fast/a') }), { deadline: Date.now() + 5000 }));
  t.equal(got.count, 1);
  t.same(fastSince(n), [], 'not answered on the fast path');
});

t.test('errors: the status code and message grpc-js would send', async (t) => {
  const n = h.fastCalls.length;
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
    fastSince(n).map(([, code]) => code),
    [grpc.status.INVALID_ARGUMENT, grpc.status.INTERNAL, grpc.status.INVALID_ARGUMENT, grpc.status.RESOURCE_EXHAUSTED],
  );
  await t.rejects(call('/etcdserverpb.KV/NoSuchMethod', Buffer.alloc(0)), { code: grpc.status.UNIMPLEMENTED }, 'unknown methods are left to grpc-js');
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
