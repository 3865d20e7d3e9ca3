// Watch against etcd's semantics (mvcc watchable store + v3rpc watch server), on a real KvStore.
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { errEmptyWatcherRange, errWatcherDuplicateId } from '../src/errors.js';
import { KvStore } from '../src/store.js';
import { EventType, FilterType, type Event, type WatchResponse } from '../src/types.js';
import { EVENT_OVERHEAD_BYTES, fragment, INVALID_WATCH_ID, WatchHub, type WatchHubOptions, type WatchStream } from '../src/watch.js';

const b = (s: string): Buffer => Buffer.from(s);
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

async function until(what: string, cond: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await tick();
  }
}

let dirs = 0;
async function setup(t: Test, opts?: WatchHubOptions): Promise<{ store: KvStore; hub: WatchHub }> {
  const store = await KvStore.open(join(t.testdir(), `w-${++dirs}`));
  const hub = new WatchHub(store, opts);
  t.teardown(async () => {
    hub.close();
    await store.close();
  });
  return { store, hub };
}

interface Client {
  stream: WatchStream;
  resps: WatchResponse[];
  /** What send answers; a test flips it to simulate a congested transport. */
  accept: boolean;
  /** Responses that came through sendEvents (recorded in resps as the response they stand for). */
  viaSendEvents: number;
}

/** With `sendEvents`, the stream is given one: what it is handed is recorded as the response it stands for. */
function client(hub: WatchHub, opts?: { maxResponseBytes?: number; sendEvents?: boolean }): Client {
  const c: Client = { stream: undefined as unknown as WatchStream, resps: [], accept: true, viaSendEvents: 0 };
  const sendEvents = (watchId: number, revision: number, events: readonly Event[]): boolean => {
    c.viaSendEvents++;
    c.resps.push({ header: { revision }, watchId, created: false, canceled: false, compactRevision: 0, cancelReason: '', fragment: false, events: [...events] });
    return c.accept;
  };
  c.stream = hub.newStream(
    (r) => {
      c.resps.push(r);
      return c.accept;
    },
    { maxResponseBytes: opts?.maxResponseBytes, ...(opts?.sendEvents === true ? { sendEvents } : {}) },
  );
  return c;
}

const eventsOf = (resps: readonly WatchResponse[], id: number): Event[] =>
  resps.filter((r) => r.watchId === id && !r.created && !r.canceled).flatMap((r) => r.events);
const revs = (evs: readonly Event[]): number[] => evs.map((e) => e.kv.modRevision);
const keysOf = (evs: readonly Event[]): string[] => evs.map((e) => e.kv.key.toString('latin1'));
const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);

t.test('single key: created response, then only that key, one response per revision', async (t) => {
  const { store, hub } = await setup(t);
  const c = client(hub);
  c.stream.watch({ key: b('foo') });
  t.match(c.resps[0], { created: true, canceled: false, watchId: 0, header: { revision: store.rev } });
  store.put({ key: b('foo'), value: b('1') });
  store.put({ key: b('foobar'), value: b('x') });
  store.put({ key: b('fo'), value: b('x') });
  store.put({ key: b('foo'), value: b('2') });
  await until('two events', () => eventsOf(c.resps, 0).length >= 2);
  await tick();
  const evResps = c.resps.slice(1);
  t.equal(evResps.length, 2);
  t.same(
    evResps.map((r) => [r.header.revision, r.events[0]!.kv.value.toString(), r.events[0]!.kv.version]),
    [
      [2, '1', 1],
      [5, '2', 2],
    ],
  );
});

t.test('prefix and from-key ranges, binary keys compared as bytes', async (t) => {
  const { store, hub } = await setup(t);
  const c = client(hub);
  c.stream.watch({ key: b('foo'), rangeEnd: b('fop') }); // prefix "foo"
  c.stream.watch({ key: b('m'), rangeEnd: Buffer.of(0) }); // every key >= "m"
  c.stream.watch({ key: Buffer.of(0xff), rangeEnd: Buffer.of(0xff, 0xff) }); // prefix 0xff, not 0xff 0xff
  for (const k of ['fo', 'foo', 'foo/a', 'fop', 'l', 'm', 'zzz']) store.put({ key: b(k), value: b('v') });
  store.put({ key: Buffer.of(0xff, 0x01), value: b('v') });
  store.put({ key: Buffer.of(0xff, 0xff), value: b('v') });
  await until('events', () => eventsOf(c.resps, 2).length >= 1);
  t.same(keysOf(eventsOf(c.resps, 0)), ['foo', 'foo/a']);
  t.same(keysOf(eventsOf(c.resps, 1)), ['m', 'zzz', '\xff\x01', '\xff\xff']);
  t.same(keysOf(eventsOf(c.resps, 2)), ['\xff\x01']);
});

t.test('a txn writing several keys arrives as one response, in order', async (t) => {
  const { store, hub } = await setup(t);
  const c = client(hub);
  c.stream.watch({ key: b('a'), rangeEnd: b('z') });
  store.txn({
    success: [
      { requestPut: { key: b('c'), value: b('3') } },
      { requestPut: { key: b('a'), value: b('1') } },
      { requestPut: { key: b('zz'), value: b('out of range') } },
      { requestPut: { key: b('b'), value: b('2') } },
    ],
  });
  await until('response', () => c.resps.length >= 2);
  await tick();
  t.equal(c.resps.length, 2);
  t.same(keysOf(c.resps[1]!.events), ['c', 'a', 'b']);
  t.same(revs(c.resps[1]!.events), [2, 2, 2]);
  t.equal(c.resps[1]!.header.revision, 2);
});

t.test('delete events carry the key and the deleting revision only', async (t) => {
  const { store, hub } = await setup(t);
  store.put({ key: b('p/1'), value: b('x') });
  store.put({ key: b('p/2'), value: b('y') });
  const c = client(hub);
  c.stream.watch({ key: b('p/'), rangeEnd: b('p0') });
  const { header } = store.deleteRange({ key: b('p/'), rangeEnd: b('p0') });
  await until('delete', () => c.resps.length >= 2);
  const evs = eventsOf(c.resps, 0);
  t.same(
    evs.map((e) => [e.type, e.kv.key.toString(), e.kv.modRevision, e.kv.createRevision, e.kv.version, e.kv.value.length]),
    [
      [EventType.DELETE, 'p/1', header.revision, 0, 0, 0],
      [EventType.DELETE, 'p/2', header.revision, 0, 0, 0],
    ],
  );
});

t.test('filters drop puts or deletes; a response left empty is not sent', async (t) => {
  const { store, hub } = await setup(t);
  const c = client(hub);
  c.stream.watch({ key: b('k'), filters: [FilterType.NOPUT] });
  c.stream.watch({ key: b('k'), filters: [FilterType.NODELETE] });
  store.put({ key: b('k'), value: b('1') });
  store.deleteRange({ key: b('k') });
  store.put({ key: b('k'), value: b('2') });
  await until('events', () => eventsOf(c.resps, 1).length >= 2);
  await tick();
  t.same(
    eventsOf(c.resps, 0).map((e) => e.type),
    [EventType.DELETE],
  );
  t.same(
    eventsOf(c.resps, 1).map((e) => e.kv.value.toString()),
    ['1', '2'],
  );
  t.equal(c.resps.filter((r) => r.watchId === 0 && !r.created).length, 1, 'no empty responses for filtered revisions');
});

t.test('prevKv: the key at modRevision - 1, live and from storage', async (t) => {
  const { store, hub } = await setup(t);
  const live = client(hub);
  live.stream.watch({ key: b('a'), prevKv: true });
  live.stream.watch({ key: b('a') }); // same events, without prevKv, from the same fan-out
  const first = store.rev + 1;
  store.put({ key: b('a'), value: b('1') });
  store.put({ key: b('a'), value: b('2') });
  store.deleteRange({ key: b('a') });
  store.put({ key: b('a'), value: b('3') });
  await until('live', () => eventsOf(live.resps, 0).length >= 4);
  const prevs = (evs: Event[]): (string | undefined)[] => evs.map((e) => e.prevKv?.value.toString());
  t.same(prevs(eventsOf(live.resps, 0)), [undefined, '1', '2', undefined]);
  t.same(prevs(eventsOf(live.resps, 1)), [undefined, undefined, undefined, undefined]);
  t.equal(eventsOf(live.resps, 0)[1]!.prevKv!.modRevision, first);
  const other = client(hub);
  other.stream.watch({ key: b('a'), prevKv: true });
  store.put({ key: b('a'), value: b('4') });
  await until('both live', () => eventsOf(live.resps, 0).length >= 5 && eventsOf(other.resps, 0).length >= 1);
  t.equal(eventsOf(other.resps, 0)[0], eventsOf(live.resps, 0)[4], 'watchers asking for prevKv share one event object (a transport encodes it once)');

  const past = client(hub);
  past.stream.watch({ key: b('a'), prevKv: true, startRevision: first });
  await until('catch-up', () => eventsOf(past.resps, 0).length >= 5);
  t.same(prevs(eventsOf(past.resps, 0)), [undefined, '1', '2', undefined, '3']);
});

t.test('start revision in the past: catches up in batches under a write load, then live', async (t) => {
  // catchUpRevs 25 forces a dozen storage batches; writes keep landing while each read is in flight
  // (slower than a batch per read, or the watcher could never catch up, in etcd too).
  const { store, hub } = await setup(t, { catchUpRevs: 25 });
  for (let i = 0; i < 300; i++) store.put({ key: b(i % 3 === 0 ? 'other' : `w/${i}`), value: b(`${i}`) });
  await tick(); // let the fan-out pass, so revision 2 is history
  const c = client(hub);
  c.stream.watch({ key: b('w/'), rangeEnd: b('w0'), startRevision: 2 });
  let writing = true;
  let written = 0;
  const writer = (async () => {
    while (writing) {
      store.put({ key: b(written % 2 === 0 ? `w/x${written}` : 'other'), value: b('l') });
      written++;
      if (written % 3 === 0) await tick();
    }
  })();
  await until('joined the synced set', () => hub.syncedCount === 1 && hub.unsyncedCount === 0);
  const joinedAt = store.rev;
  for (let i = 0; i < 50; i++) {
    store.put({ key: b(`w/after${i}`), value: b('a') });
    await tick();
  }
  writing = false;
  await writer;
  const last = store.rev;
  // Every revision that touched w/ : the puts of the first 300 with i % 3 != 0, and so on.
  const expected = store
    .range({ key: b('w/'), rangeEnd: b('w0') })
    .kvs.map((kv) => kv.modRevision)
    .sort((x, y) => x - y);
  await until('all events', () => eventsOf(c.resps, 0).length >= expected.length);
  await tick();
  const got = revs(eventsOf(c.resps, 0));
  t.same(got, expected, 'exact revisions: no gap, no duplicate, in order');
  t.ok(joinedAt < last && got.filter((r) => r > joinedAt).length >= 50, 'kept receiving after joining');
  const headers = c.resps.slice(1).map((r) => r.header.revision);
  t.same(headers, [...headers].sort((x, y) => x - y), 'header revisions never go back');
  t.ok(
    c.resps.some((r) => r.events.length > 1 && r.header.revision > r.events.at(-1)!.kv.modRevision),
    'catch-up batches carry the revision at read time',
  );
});

t.test('a tiny tail buffer makes catch-up reread instead of losing events', async (t) => {
  const { store, hub } = await setup(t, { catchUpRevs: 5, maxPending: 1 });
  for (let i = 0; i < 100; i++) store.put({ key: b('k'), value: b(`${i}`) });
  await tick();
  const c = client(hub);
  c.stream.watch({ key: b('k'), startRevision: 10 });
  for (let i = 0; i < 200; i++) {
    store.put({ key: b('k'), value: b(`live${i}`) });
    if (i % 4 === 0) await tick();
  }
  await until('all', () => eventsOf(c.resps, 0).length >= store.rev - 10 + 1);
  await tick();
  t.same(revs(eventsOf(c.resps, 0)), range(10, store.rev));
});

t.test('future start revision: nothing before it', async (t) => {
  const { store, hub } = await setup(t);
  const c = client(hub);
  const start = store.rev + 3;
  c.stream.watch({ key: b('f'), startRevision: start });
  t.equal(hub.syncedCount, 1, 'a future watcher needs no catch-up');
  for (let i = 0; i < 5; i++) store.put({ key: b('f'), value: b(`${i}`) });
  await until('events', () => eventsOf(c.resps, 0).length >= 3);
  await tick();
  t.same(revs(eventsOf(c.resps, 0)), range(start, store.rev));
});

t.test('cancel; unknown ids are ignored', async (t) => {
  const { store, hub } = await setup(t);
  const c = client(hub);
  c.stream.watch({ key: b('x') });
  c.stream.watch({ key: b('x') });
  store.put({ key: b('x'), value: b('1') });
  await until('first', () => eventsOf(c.resps, 1).length === 1);
  c.stream.cancel(0);
  t.match(c.resps.at(-1), { watchId: 0, canceled: true, created: false, header: { revision: store.rev } });
  const n = c.resps.length;
  c.stream.cancel(0);
  c.stream.cancel(42);
  t.equal(c.resps.length, n, 'no response for an id not in use');
  store.put({ key: b('x'), value: b('2') });
  await until('second', () => eventsOf(c.resps, 1).length === 2);
  t.equal(eventsOf(c.resps, 0).length, 1, 'the cancelled watcher heard nothing more');
  t.equal(hub.syncedCount, 1);
});

t.test('ids: auto from 0 skipping ids in use, duplicates refused', async (t) => {
  const { hub } = await setup(t);
  const c = client(hub);
  c.stream.watch({ key: b('a'), watchId: 1 });
  c.stream.watch({ key: b('a') });
  c.stream.watch({ key: b('a'), watchId: 0 }); // 0 is "auto"
  c.stream.watch({ key: b('a'), watchId: 1 });
  t.same(
    c.resps.map((r) => [r.watchId, r.created, r.canceled]),
    [
      [1, true, false],
      [0, true, false],
      [2, true, false],
      [INVALID_WATCH_ID, true, true],
    ],
  );
  t.equal(c.resps[3]!.cancelReason, errWatcherDuplicateId().message);
  const other = client(hub);
  other.stream.watch({ key: b('a'), watchId: 1 });
  t.match(other.resps[0], { watchId: 1, canceled: false }, 'ids are per stream');
});

t.test('empty range is refused in the created response', async (t) => {
  const { hub } = await setup(t);
  const c = client(hub);
  c.stream.watch({ key: b('b'), rangeEnd: b('a') });
  c.stream.watch({ key: b('b'), rangeEnd: b('b') });
  c.stream.watch({ key: b('b'), rangeEnd: Buffer.of(0) });
  c.stream.watch({ key: b('b'), rangeEnd: Buffer.alloc(0) });
  t.same(
    c.resps.map((r) => [r.watchId, r.canceled, r.cancelReason]),
    [
      [-1, true, errEmptyWatcherRange().message],
      [-1, true, errEmptyWatcherRange().message],
      [0, false, ''],
      [1, false, ''],
    ],
  );
  t.equal(hub.syncedCount, 2);
});

t.test('a start revision below the compacted one is cancelled with compactRevision', async (t) => {
  const { store, hub } = await setup(t);
  for (let i = 0; i < 10; i++) store.put({ key: b('c'), value: b(`${i}`) });
  await store.compact(6).done;
  const c = client(hub);
  c.stream.watch({ key: b('c'), startRevision: 5 });
  c.stream.watch({ key: b('c'), startRevision: 6 }); // at the compacted revision is allowed
  t.match(c.resps[0], { created: true, watchId: 0, canceled: false });
  t.match(c.resps[1], { created: false, watchId: 0, canceled: true, compactRevision: 6 });
  t.match(c.resps[2], { created: true, watchId: 1, canceled: false });
  await until('catch-up', () => eventsOf(c.resps, 1).length >= 6);
  t.same(revs(eventsOf(c.resps, 1)), range(6, 11));
  c.stream.cancel(0);
  t.equal(c.resps.filter((r) => r.watchId === 0 && r.canceled).length, 1, 'the compacted watcher is gone');
});

t.test('compaction while a congested watcher is behind cancels it on drain', async (t) => {
  const { store, hub } = await setup(t);
  const c = client(hub);
  c.stream.watch({ key: b('c') });
  c.accept = false;
  store.put({ key: b('c'), value: b('1') });
  await until('first', () => eventsOf(c.resps, 0).length === 1);
  c.accept = true;
  for (let i = 0; i < 5; i++) store.put({ key: b('c'), value: b(`${i}`) });
  await tick();
  t.equal(eventsOf(c.resps, 0).length, 1, 'nothing sent while congested');
  await store.compact(store.rev).done;
  c.stream.drain();
  await until('cancel', () => c.resps.some((r) => r.canceled));
  t.match(c.resps.at(-1), { watchId: 0, canceled: true, compactRevision: store.compactRev });
  t.equal(hub.unsyncedCount + hub.syncedCount, 0);
});

t.test('progress notify: synced progress watchers, elided after events', async (t) => {
  const { store, hub } = await setup(t);
  const c = client(hub);
  c.stream.watch({ key: b('p'), progressNotify: true });
  c.stream.watch({ key: b('p') });
  const progress = (): WatchResponse[] => c.resps.filter((r) => !r.created && r.events.length === 0);
  c.stream.progressNotify();
  t.same(
    progress().map((r) => [r.watchId, r.header.revision]),
    [[0, store.rev]],
  );
  store.put({ key: b('p'), value: b('1') });
  await until('event', () => eventsOf(c.resps, 0).length === 1);
  c.stream.progressNotify();
  t.equal(progress().length, 1, 'a tick right after an event is elided, as v3rpc does');
  store.put({ key: b('other'), value: b('1') });
  c.stream.progressNotify();
  t.same(
    progress().map((r) => [r.watchId, r.header.revision]),
    [
      [0, 1],
      [0, store.rev],
    ],
  );
});

t.test('requestProgress answers for synced watchers only', async (t) => {
  const { store, hub } = await setup(t);
  store.put({ key: b('q'), value: b('1') });
  const c = client(hub);
  c.stream.watch({ key: b('q') });
  c.stream.watch({ key: b('q'), startRevision: 1 }); // unsynced until its read completes
  c.stream.requestProgress();
  const progress = (): WatchResponse[] => c.resps.filter((r) => !r.created && r.events.length === 0);
  t.same(
    progress().map((r) => [r.watchId, r.header.revision]),
    [[0, store.rev]],
  );
  await until('synced', () => hub.unsyncedCount === 0);
  c.stream.requestProgress();
  t.same(
    progress().slice(1).map((r) => r.watchId),
    [0, 1],
  );
});

t.test('a progress response never overtakes events still queued for fan-out', async (t) => {
  const { store, hub } = await setup(t);
  const c = client(hub);
  c.stream.watch({ key: b('q') });
  store.put({ key: b('q'), value: b('1') });
  c.stream.requestProgress(); // same tick as the write, before its fan-out microtask
  t.same(
    c.resps.slice(1).map((r) => [r.events.length, r.header.revision]),
    [
      [1, store.rev],
      [0, store.rev],
    ],
  );
});

t.test('cancel or close while a catch-up read is in flight: nothing after it', async (t) => {
  const { store, hub } = await setup(t);
  for (let i = 0; i < 50; i++) store.put({ key: b('h'), value: b(`${i}`) });
  await tick();
  const c = client(hub);
  c.stream.watch({ key: b('h'), startRevision: 2 });
  c.stream.watch({ key: b('h'), startRevision: 2 });
  c.stream.watch({ key: b('h'), startRevision: 2 });
  const gone = client(hub);
  gone.stream.watch({ key: b('h'), startRevision: 2 });
  await Promise.resolve(); // the read has started, not finished
  c.stream.cancel(1);
  gone.stream.close();
  await until('others caught up', () => eventsOf(c.resps, 0).length === 50 && eventsOf(c.resps, 2).length === 50);
  store.put({ key: b('h'), value: b('live') });
  await until('live', () => eventsOf(c.resps, 0).length === 51);
  t.equal(eventsOf(c.resps, 1).length, 0, 'the cancelled watcher got nothing');
  t.equal(gone.resps.length, 1, 'the closed stream got only its created response');
  t.equal(eventsOf(c.resps, 2).length, 51);
  t.equal(hub.syncedCount, 2);
});

t.test('a congested stream blocks neither writes nor another stream, and resumes exactly once', async (t) => {
  const { store, hub } = await setup(t);
  const slow = client(hub);
  const fast = client(hub);
  slow.stream.watch({ key: b('s/'), rangeEnd: b('s0') });
  slow.stream.watch({ key: b('s/1') });
  fast.stream.watch({ key: b('s/'), rangeEnd: b('s0') });
  slow.accept = false; // the next response fills the transport
  const first = store.rev + 1;
  for (let i = 0; i < 200; i++) {
    const { header } = store.put({ key: b(`s/${i % 4}`), value: b(`${i}`) });
    t.equal(header.revision, first + i, 'writes go on'); // each put returns at once
    if (i % 10 === 0) await tick();
  }
  await until('fast stream', () => eventsOf(fast.resps, 0).length === 200);
  t.same(revs(eventsOf(fast.resps, 0)), range(first, first + 199));
  const heldBack = slow.resps.length;
  t.ok(heldBack <= 3, 'the congested stream got at most the response that filled it');
  t.equal(hub.unsyncedCount, 2, 'both of its watchers became victims');

  slow.accept = true;
  slow.stream.drain();
  for (let i = 200; i < 260; i++) {
    store.put({ key: b(`s/${i % 4}`), value: b(`${i}`) });
    if (i % 7 === 0) await tick();
  }
  const last = store.rev;
  await until('slow catches up', () => eventsOf(slow.resps, 0).length === last - first + 1);
  await until('slow key watcher', () => eventsOf(slow.resps, 1).length === 65);
  await tick();
  t.same(revs(eventsOf(slow.resps, 0)), range(first, last));
  t.same(
    revs(eventsOf(slow.resps, 1)),
    range(first, last).filter((r) => (r - first) % 4 === 1),
  );
  t.equal(hub.unsyncedCount, 0);
});

t.test('congestion mid-fan-out: watchers not yet given that revision get it after drain', async (t) => {
  const { store, hub } = await setup(t);
  const c = client(hub);
  c.stream.watch({ key: b('m') });
  c.stream.watch({ key: b('m') });
  c.accept = false;
  const { header } = store.put({ key: b('m'), value: b('1') });
  await tick();
  t.same([eventsOf(c.resps, 0).length, eventsOf(c.resps, 1).length], [1, 0], 'the first response filled the transport');
  c.accept = true;
  c.stream.drain();
  await until('second watcher', () => eventsOf(c.resps, 1).length === 1);
  store.put({ key: b('m'), value: b('2') });
  await until('live', () => eventsOf(c.resps, 1).length === 2);
  t.same(revs(eventsOf(c.resps, 0)), [header.revision, header.revision + 1]);
  t.same(revs(eventsOf(c.resps, 1)), [header.revision, header.revision + 1]);
});

for (const sendEvents of [false, true]) {
  t.test(`random backpressure: every event exactly once, in order${sendEvents ? ', events through sendEvents' : ''}`, async (t) => {
    const { store, hub } = await setup(t, { catchUpRevs: 13 });
    let seed = 7;
    const rand = (): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    let congested = false;
    const c = client(hub, { sendEvents });
    const record = c.resps.push.bind(c.resps);
    c.resps.push = (...rs: WatchResponse[]): number => {
      const n = record(...rs);
      if (rand() < 0.3) {
        congested = true;
        c.accept = false;
      } else c.accept = true;
      return n;
    };
    c.stream.watch({ key: b('r/'), rangeEnd: b('r0'), startRevision: 1 });
    c.stream.watch({ key: b('r/0'), filters: [FilterType.NODELETE] });
    for (let i = 0; i < 600; i++) {
      if (i % 5 === 4) store.deleteRange({ key: b(`r/${i % 3}`) });
      else store.txn({ success: [{ requestPut: { key: b(`r/${i % 3}`), value: b('v') } }, { requestPut: { key: b('x'), value: b('v') } }] });
      if (i % 3 === 0) await tick();
      if (congested && rand() < 0.5) {
        congested = false;
        c.stream.drain();
      }
    }
    const deadline = Date.now() + 10_000;
    // Keep draining until the stream has everything.
    for (;;) {
      if (congested) {
        congested = false;
        c.stream.drain();
      }
      await tick();
      if (hub.unsyncedCount === 0 && !congested) break;
      if (Date.now() > deadline) throw new Error('never caught up');
    }
    const all = store.rev;
    const expected0: number[] = [];
    const expected1: number[] = [];
    // The expectation from storage (a delete of a missing key takes no revision): every r/ event.
    const hist = await store.history('r/', 'r0', 1, all, Number.MAX_SAFE_INTEGER);
    for (const e of hist.events) {
      if (expected0.at(-1) !== e.kv.modRevision) expected0.push(e.kv.modRevision);
      if (e.kv.key.toString() === 'r/0' && e.type === EventType.PUT) expected1.push(e.kv.modRevision);
    }
    t.same(revs(eventsOf(c.resps, 0)).filter((r, i, a) => a[i - 1] !== r), expected0);
    t.same(revs(eventsOf(c.resps, 0)).length, hist.events.length);
    t.same(revs(eventsOf(c.resps, 1)), expected1);
    if (sendEvents) t.ok(c.viaSendEvents > 50, `events went through sendEvents (${c.viaSendEvents} times)`);
    else t.equal(c.viaSendEvents, 0);
  });
}

t.test('sendEvents: the responses send would have had, a fragmenting watcher excepted', async (t) => {
  const { store, hub } = await setup(t);
  const plain = client(hub, { maxResponseBytes: 600 });
  const fast = client(hub, { maxResponseBytes: 600, sendEvents: true });
  for (const c of [plain, fast]) {
    c.stream.watch({ key: b('e/'), rangeEnd: b('e0') });
    c.stream.watch({ key: b('e/1'), prevKv: true });
    c.stream.watch({ key: b('e/'), rangeEnd: b('e0'), fragment: true });
  }
  store.put({ key: b('e/1'), value: b('a') });
  store.txn({ success: [{ requestPut: { key: b('e/1'), value: Buffer.alloc(200, 1) } }, { requestPut: { key: b('e/2'), value: Buffer.alloc(400, 2) } }] });
  store.deleteRange({ key: b('e/1') });
  await until('both streams', () => eventsOf(fast.resps, 0).length === 4 && eventsOf(plain.resps, 0).length === 4);
  t.same(fast.resps, plain.resps, 'the same responses, in the same order');
  t.equal(plain.viaSendEvents, 0);
  // Created responses (3) and the fragmented txn (2 pieces) went through send; every other events response through sendEvents.
  t.equal(fast.viaSendEvents, fast.resps.length - 3 - 2);
  const frag = fast.resps.filter((r) => r.watchId === 2 && r.events.length > 0);
  t.same(
    frag.map((r) => [r.events.length, r.fragment]),
    [
      [1, false],
      [1, true],
      [1, false],
      [1, false],
    ],
  );
});

t.test('fragment() splits as v3rpc sendFragments', async (t) => {
  const ev = (key: string, bytes: number): Event => ({
    type: EventType.PUT,
    kv: { key: b(key), value: Buffer.alloc(bytes), createRevision: 2, modRevision: 2, version: 1, lease: 0n },
  });
  const resp = (events: Event[]): WatchResponse => ({
    header: { revision: 2 },
    watchId: 3,
    created: false,
    canceled: false,
    compactRevision: 0,
    cancelReason: '',
    fragment: false,
    events,
  });
  const size = 1 + 100 + EVENT_OVERHEAD_BYTES; // 165 per event
  const evs = ['a', 'b', 'c', 'd', 'e'].map((k) => ev(k, 100));
  t.equal(fragment(resp(evs), 5 * size + 1).length, 1, 'under the limit: untouched');
  t.equal(fragment(resp([ev('big', 10_000)]), 100).length, 1, 'one event is never split');
  const pieces = fragment(resp(evs), 2 * size + 1);
  t.same(
    pieces.map((p) => [keysOf(p.events), p.fragment, p.watchId, p.header.revision]),
    [
      [['a', 'b'], true, 3, 2],
      [['c', 'd'], true, 3, 2],
      [['e'], false, 3, 2],
    ],
  );
  // An oversized event gets a piece of its own.
  const mixed = fragment(resp([ev('a', 10), ev('b', 1000), ev('c', 10)]), 300);
  t.same(
    mixed.map((p) => keysOf(p.events)),
    [['a'], ['b'], ['c']],
  );
  t.same(
    mixed.map((p) => p.fragment),
    [true, true, false],
  );
});

t.test('streams fragment only for watchers that asked', async (t) => {
  const { store, hub } = await setup(t);
  const c = client(hub, { maxResponseBytes: 600 });
  c.stream.watch({ key: b('f/'), rangeEnd: b('f0'), fragment: true, prevKv: true });
  c.stream.watch({ key: b('f/'), rangeEnd: b('f0') });
  const ops = ['f/1', 'f/2', 'f/3', 'f/4'].map((k) => ({ requestPut: { key: b(k), value: Buffer.alloc(200, 1) } }));
  store.txn({ success: ops });
  await until('both', () => eventsOf(c.resps, 1).length === 4);
  const frag = c.resps.filter((r) => r.watchId === 0 && !r.created);
  t.same(
    frag.map((r) => [r.events.length, r.fragment]),
    [
      [2, true],
      [2, false],
    ],
  );
  t.equal(c.resps.filter((r) => r.watchId === 1 && !r.created).length, 1);
});

t.test('send may write back into the store; a throwing send closes only its stream', async (t) => {
  const { store, hub } = await setup(t);
  const echo = hub.newStream((r) => {
    // Writing from inside a notification must not re-enter the fan-out that called it.
    if (r.events.length > 0 && r.events[0]!.kv.key.toString() === 'ping') store.put({ key: b('pong'), value: b('x') });
    return true;
  });
  echo.watch({ key: b('ping') });
  const bad = hub.newStream(() => {
    throw new Error('transport gone');
  });
  bad.watch({ key: b('nothing') }); // its created response throws: the stream closes
  const c = client(hub);
  c.stream.watch({ key: b('pong') });
  store.put({ key: b('ping'), value: b('1') });
  await until('pong', () => eventsOf(c.resps, 0).length === 1);
  t.equal(store.rev, 3);
  t.equal(hub.syncedCount, 2, 'the throwing stream left no watcher behind');
});

t.test('hub close stops everything', async (t) => {
  const { store, hub } = await setup(t);
  const c = client(hub);
  c.stream.watch({ key: b('z') });
  hub.close();
  store.put({ key: b('z'), value: b('1') });
  await tick();
  t.equal(c.resps.length, 1);
  t.throws(() => hub.newStream(() => true));
});
