// The watch's resume rule, on the events etcd3's Watcher emits: its own listeners move
// start_revision to the header revision + 1, ours (registered after) must put it back to where
// the events received so far end.
import { EventEmitter } from 'node:events';
import t from 'tap';
import type { Watcher } from 'etcd3';
import { openWatch, resumeLikeClientV3, type OpenWatchOptions, type WatchEvent } from '../src/workload.js';

function fakeWatcher(start: number): EventEmitter & { request: { start_revision: string } } {
  const w = Object.assign(new EventEmitter(), { request: { start_revision: String(start) } });
  // etcd3's Watcher constructor registers these before anyone else can.
  const etcd3Rule = (res: { header: { revision: string } }): void => {
    w.request.start_revision = String(Number(res.header.revision) + 1);
  };
  w.on('connected', etcd3Rule);
  w.on('data', (res: { header: { revision: string }; events: Array<{ type: string; kv: unknown }> }) => {
    for (const e of res.events) w.emit(e.type.toLowerCase(), e.kv, null);
    etcd3Rule(res);
  });
  return w;
}
const ev = (rev: number): { type: string; kv: unknown } => ({ type: 'Put', kv: { key: Buffer.from('k'), value: Buffer.from('v'), mod_revision: String(rev) } });

/** openWatch on a fake watcher from `start`, created at store revision `created`: what it records. */
async function openedWatch(start: number, created: number, opts: OpenWatchOptions = {}): Promise<{ w: ReturnType<typeof fakeWatcher>; events: WatchEvent[] }> {
  const w = fakeWatcher(start);
  const events: WatchEvent[] = [];
  const opened = openWatch({ watcher: () => w as unknown as Watcher }, events, opts);
  w.emit('connected', { header: { revision: String(created) }, events: [] });
  await opened;
  return { w, events };
}

t.test('a watch resumes after the last event it received, not after the created header', async (t) => {
  const w = fakeWatcher(1);
  resumeLikeClientV3(w as unknown as Watcher);
  w.emit('connected', { header: { revision: '5000' }, events: [] });
  t.equal(w.request.start_revision, '1', 'nothing received yet: resume from the start');
  w.emit('data', { header: { revision: '5000' }, events: [ev(3), ev(1000)] });
  t.equal(w.request.start_revision, '1001', 'a catch-up batch read to 5000 that ends at 1000');
  w.emit('connected', { header: { revision: '6000' }, events: [] });
  t.equal(w.request.start_revision, '1001', 'recreated on another member: still 1001');
  w.emit('data', { header: { revision: '7000' }, events: [] });
  t.equal(w.request.start_revision, '7001', 'a progress notification says everything to 7000 was sent');
  w.emit('data', { header: { revision: '7002' }, events: [ev(6999)] });
  t.equal(w.request.start_revision, '7001', 'never goes back');
});

t.test('openWatch listens before the created response, so a catch-up cut short resumes where its events end', async (t) => {
  // The created response carries the store's revision: far past the events still to come.
  const { w, events } = await openedWatch(41, 1976);
  t.equal(w.request.start_revision, '41', 'not 1977: the watch has received nothing yet');
  w.emit('data', { header: { revision: '1976' }, events: [ev(41), ev(42)] });
  t.equal(w.request.start_revision, '43');
  t.same(
    events.map((e) => e.modRevision),
    [41, 42],
  );
});

t.test('openWatch with a cap stops recording at the end of the response that reaches it', async (t) => {
  let full = 0;
  const { w, events } = await openedWatch(1, 100, { cap: 3, full: () => full++ });
  w.emit('data', { header: { revision: '100' }, events: [ev(1), ev(2)] });
  t.equal(full, 0, 'under the cap');
  w.emit('data', { header: { revision: '100' }, events: [ev(3), ev(4), ev(5)] });
  t.equal(full, 1, 'the cap was reached');
  w.emit('data', { header: { revision: '100' }, events: [ev(6)] });
  t.same(
    events.map((e) => [e.modRevision, e.response]),
    [
      [1, 0],
      [2, 0],
      [3, 1],
      [4, 1],
      [5, 1],
    ],
    'the whole second response, nothing after',
  );
  t.equal(full, 1, 'told once');
});

t.test('openWatch cancels a watcher whose created response does not come in time', async (t) => {
  const w = fakeWatcher(1);
  let cancelled = 0;
  Object.assign(w, { cancel: async () => void cancelled++ });
  await t.rejects(openWatch({ watcher: () => w as unknown as Watcher }, [], { timeoutMs: 20 }), /timed out/);
  t.equal(cancelled, 1);
});

t.test("events of the first response after each (re)creation are marked fresh, and every event has its receive time", async (t) => {
  const { w, events } = await openedWatch(1, 10);
  const before = performance.now();
  w.emit('data', { header: { revision: '10' }, events: [ev(1), ev(2)] });
  w.emit('data', { header: { revision: '10' }, events: [ev(3)] });
  w.emit('data', { header: { revision: '11' }, events: [] });
  w.emit('connected', { header: { revision: '12' }, events: [] });
  w.emit('data', { header: { revision: '12' }, events: [ev(4)] });
  w.emit('data', { header: { revision: '13' }, events: [ev(5)] });
  t.same(
    events.map((e) => [e.modRevision, e.fresh]),
    [
      [1, true],
      [2, true],
      [3, false],
      [4, true],
      [5, false],
    ],
  );
  t.ok(events.every((e) => e.at >= before && e.at <= performance.now()), 'received after the test sent them');
});
