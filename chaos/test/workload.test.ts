// The watch's resume rule, on the events etcd3's Watcher emits: its own listeners move
// start_revision to the header revision + 1, ours (registered after) must put it back to where
// the events received so far end.
import { EventEmitter } from 'node:events';
import t from 'tap';
import type { Watcher } from 'etcd3';
import { resumeLikeClientV3 } from '../src/workload.js';

function fakeWatcher(start: number): EventEmitter & { request: { start_revision: string } } {
  const w = Object.assign(new EventEmitter(), { request: { start_revision: String(start) } });
  // etcd3's Watcher constructor registers these before anyone else can.
  const etcd3Rule = (res: { header: { revision: string } }): void => {
    w.request.start_revision = String(Number(res.header.revision) + 1);
  };
  w.on('connected', etcd3Rule);
  w.on('data', etcd3Rule);
  return w;
}
const ev = (rev: number): unknown => ({ type: 'Put', kv: { key: 'k', value: 'v', mod_revision: String(rev) } });

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
