import t from 'tap';
import { Inflights } from '../src/inflights.js';
import { Progress } from '../src/progress.js';

t.test('inflights: a window by count and by bytes', async (t) => {
  const w = new Inflights(3, 0);
  w.add(1, 10);
  w.add(2, 10);
  t.notOk(w.full());
  w.add(3, 10);
  t.ok(w.full());
  t.throws(() => w.add(4, 10), 'adding to a full window is a bug');
  w.freeLE(2);
  t.equal(w.length, 1);
  w.add(4, 10);
  w.add(5, 10);
  t.ok(w.full(), 'wraps around the ring');
  w.freeFirstOne();
  t.equal(w.length, 2);
  w.freeLE(100);
  t.equal(w.length, 0);
  const b = new Inflights(100, 25);
  b.add(1, 10);
  b.add(2, 10);
  t.notOk(b.full());
  b.add(3, 10);
  t.ok(b.full(), 'full by bytes');
  b.freeLE(1);
  t.notOk(b.full());
  t.throws(() => new Inflights(0, 0));
});

t.test('progress: probe sends one at a time, replicate streams', async (t) => {
  const pr = new Progress(6, false, 2, 0);
  t.equal(pr.stateName, 'probe');
  t.notOk(pr.isPaused());
  pr.sentEntries(3, 8, 30);
  t.ok(pr.isPaused(), 'a probe waits for its answer');
  t.equal(pr.next, 6, 'probing does not move next optimistically');
  t.ok(pr.maybeUpdate(8));
  t.notOk(pr.isPaused());
  pr.becomeReplicate();
  t.equal(pr.next, 9);
  pr.sentEntries(2, 10, 20);
  pr.sentEntries(2, 12, 20);
  t.equal(pr.next, 13, 'replicate moves next optimistically');
  t.ok(pr.isPaused(), 'the window of 2 is full');
  t.notOk(pr.maybeUpdate(7), 'a stale ack tells nothing');
});

t.test('progress: rejections', async (t) => {
  const pr = new Progress(11, false, 4, 0);
  pr.match = 5;
  t.notOk(pr.maybeDecrTo(7, 3), 'a rejection of an index we did not probe is stale');
  t.ok(pr.maybeDecrTo(10, 3));
  t.equal(pr.next, 6, 'never below match+1');
  pr.becomeReplicate();
  t.notOk(pr.maybeDecrTo(5, 0), 'at or below match is stale in replicate');
  pr.next = 20;
  t.ok(pr.maybeDecrTo(15, 0));
  t.equal(pr.next, 6, 'replicate falls back to match+1');
});

t.test('progress: snapshot state', async (t) => {
  const pr = new Progress(3, false, 4, 0);
  pr.becomeSnapshot(50);
  t.ok(pr.isPaused());
  t.throws(() => pr.sentEntries(1, 3, 10));
  pr.becomeProbe(true);
  t.equal(pr.next, 51, 'after a delivered snapshot, probe past it');
  pr.becomeSnapshot(50);
  pr.becomeProbe(false);
  t.equal(pr.next, 1, 'after a failed one, probe from match');
});
