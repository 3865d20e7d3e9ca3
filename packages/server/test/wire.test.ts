// The hand-written encoder against protobufjs on etcd's own .proto: the same bytes, and bytes that
// decode back to what was encoded, for every field's edge (0, 2^53 - 1, negative, 64-bit IDs).
import t from 'tap';
import type { Event, KeyValue } from '@capstan/mvcc';
import { codec } from '../src/grpc/codec.js';
import { encodeDeleteRangeResponse, encodeEvent, encodeFramedWatchEvents, encodePutResponse, encodeRangeResponse, encodeWatchResponse, varintSize, type HeaderFields, type WatchResponseFields } from '../src/grpc/wire.js';

const watchRes = codec<Record<string, unknown>>('etcdserverpb.WatchResponse');
const eventCodec = codec<Event>('mvccpb.Event');
const rangeRes = codec<Record<string, unknown>>('etcdserverpb.RangeResponse');
const putRes = codec<Record<string, unknown>>('etcdserverpb.PutResponse');
const deleteRes = codec<Record<string, unknown>>('etcdserverpb.DeleteRangeResponse');

const kv = (over: Partial<KeyValue> = {}): KeyValue => ({
  key: Buffer.from('k/1'),
  createRevision: 3,
  modRevision: 9,
  version: 2,
  value: Buffer.from('value'),
  lease: 0n,
  ...over,
});

const header: HeaderFields = { clusterId: 0xfedcba9876543210n, memberId: 0x8e9e05c52164694dn, revision: 9, raftTerm: 4 };
const plain: WatchResponseFields = { watchId: 0, created: false, canceled: false, compactRevision: 0, cancelReason: '', fragment: false, events: [] };

t.test('varint sizes at each 7-bit boundary', async (t) => {
  t.equal(varintSize(0), 1);
  t.equal(varintSize(127), 1);
  t.equal(varintSize(128), 2);
  t.equal(varintSize(2 ** 21 - 1), 3);
  t.equal(varintSize(2 ** 53 - 1), 8);
  t.equal(varintSize(-1), 10);
});

t.test('events: the same bytes as protobufjs', async (t) => {
  const cases: Event[] = [
    { type: 0, kv: kv() },
    { type: 1, kv: kv({ value: Buffer.alloc(0), version: 0, createRevision: 0 }) },
    { type: 0, kv: kv({ key: Buffer.alloc(0), modRevision: 2 ** 53 - 1, lease: 0x7fffffffffffffffn }) },
    { type: 0, kv: kv({ value: Buffer.alloc(300, 7) }), prevKv: kv({ value: Buffer.from('old'), lease: 1n }) },
    { type: 0, kv: kv(), prevKv: kv({ key: Buffer.alloc(0), value: Buffer.alloc(0), createRevision: 0, modRevision: 0, version: 0 }) },
  ];
  for (const ev of cases) {
    t.same(encodeEvent(ev), eventCodec.encode(ev), JSON.stringify(ev, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v)));
  }
});

t.test('watch responses: the same bytes as protobufjs, and they decode back', async (t) => {
  const ev: Event = { type: 0, kv: kv(), prevKv: kv({ value: Buffer.from('old') }) };
  const cases: [WatchResponseFields, HeaderFields][] = [
    [plain, header],
    [{ ...plain, watchId: 7, events: [ev, { type: 1, kv: kv({ modRevision: 10 }) }] }, header],
    [{ ...plain, watchId: -1, created: true, canceled: true, cancelReason: 'permission denied: ünïcode' }, header],
    [{ ...plain, watchId: 3, canceled: true, compactRevision: 2 ** 40 + 5, fragment: true }, { clusterId: 0n, memberId: 1n, revision: 2 ** 53 - 1, raftTerm: 0 }],
  ];
  for (const [resp, h] of cases) {
    const mine = encodeWatchResponse(resp, h);
    const theirs = watchRes.encode({ header: h, ...resp });
    t.same(mine, theirs, `watchId ${resp.watchId}`);
    t.match(watchRes.decode(mine), { header: h, watchId: resp.watchId, created: resp.created, canceled: resp.canceled, compactRevision: resp.compactRevision, cancelReason: resp.cancelReason, fragment: resp.fragment });
  }
});

t.test("a fan-out's framed events message: the watch response's bytes behind gRPC's 5-byte prefix", async (t) => {
  const ev: Event = { type: 0, kv: kv(), prevKv: kv({ value: Buffer.from('old') }) };
  const del: Event = { type: 1, kv: kv({ modRevision: 10, value: Buffer.alloc(0) }) };
  const other: HeaderFields = { clusterId: 0n, memberId: 1n, revision: 2 ** 53 - 1, raftTerm: 0 };
  // The same header twice in a row (its bytes reused), then another (not reused).
  const cases: [number, Event[], HeaderFields][] = [
    [7, [ev], header],
    [0, [del], header],
    [300, [ev, del], header],
    [2 ** 31, [del], other],
    [1, [], header],
  ];
  // One header object refilled for every call, as the server's fan-out does.
  const reused = { ...header };
  for (const [watchId, events, h] of cases) {
    Object.assign(reused, h);
    const framed = encodeFramedWatchEvents(watchId, events, reused);
    const body = encodeWatchResponse({ ...plain, watchId, events }, h);
    t.equal(framed[0], 0, 'not compressed');
    t.equal(framed.readUInt32BE(1), body.length, 'the length prefix');
    t.same(framed.subarray(5), body, `watchId ${watchId}, ${events.length} events, revision ${h.revision}`);
  }
});

t.test('one event object is encoded once, however many responses carry it', async (t) => {
  let reads = 0;
  const inner = kv();
  const ev = {
    type: 0,
    get kv(): KeyValue {
      reads++;
      return inner;
    },
  } as Event;
  const a = encodeWatchResponse({ ...plain, watchId: 1, events: [ev] }, header);
  const afterFirst = reads;
  t.ok(afterFirst > 0);
  const b = encodeWatchResponse({ ...plain, watchId: 2, events: [ev] }, header);
  t.equal(reads, afterFirst, 'the second response reused the first encoding');
  t.same(watchRes.decode(b), { ...watchRes.decode(a), watchId: 2 });
});

t.test('range, put and delete responses: the same bytes as protobufjs', async (t) => {
  const kvs = [kv(), kv({ key: Buffer.from('k/2'), value: Buffer.alloc(0), lease: 0x7fffffffffffffffn }), kv({ key: Buffer.alloc(0), createRevision: 0, modRevision: 0, version: 0, value: Buffer.alloc(200, 3) })];
  const zero: HeaderFields = { clusterId: 0n, memberId: 0n, revision: 0, raftTerm: 0 };
  for (const h of [header, zero]) {
    for (const r of [{ kvs, more: true, count: 3 }, { kvs: [], more: false, count: 0 }, { kvs: kvs.slice(0, 1), more: false, count: 2 ** 40 }]) {
      t.same(encodeRangeResponse(r, h), rangeRes.encode({ header: h, ...r }), `range of ${r.kvs.length}, count ${r.count}`);
    }
    t.same(encodePutResponse({}, h), putRes.encode({ header: h }), 'put');
    t.same(encodePutResponse({ prevKv: kvs[1] }, h), putRes.encode({ header: h, prevKv: kvs[1] }), 'put with prev_kv');
    t.same(encodeDeleteRangeResponse({ deleted: 0, prevKvs: [] }, h), deleteRes.encode({ header: h, deleted: 0, prevKvs: [] }), 'delete of nothing');
    t.same(encodeDeleteRangeResponse({ deleted: 3, prevKvs: kvs }, h), deleteRes.encode({ header: h, deleted: 3, prevKvs: kvs }), 'delete with prev_kvs');
  }
  const many = Array.from({ length: 1000 }, (_, i) => kv({ key: Buffer.from(`bench/${String(i).padStart(8, '0')}`), modRevision: 1000 + i }));
  const decoded = rangeRes.decode(encodeRangeResponse({ kvs: many, more: false, count: 1000 }, header)) as { kvs: KeyValue[]; count: number };
  t.equal(decoded.kvs.length, 1000);
  t.equal(decoded.kvs[999]!.key.toString(), 'bench/00000999');
  t.equal(decoded.kvs[999]!.modRevision, 1999);
});
