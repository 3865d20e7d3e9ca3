import t from 'tap';
import { EntryType, MemoryStorage, StorageError, bootstrap, decodeConfChange, type Entry } from '../src/index.js';

const ent = (index: number, term: number, bytes = 0): Entry => ({ index, term, type: EntryType.Normal, data: new Uint8Array(bytes) });

t.test('append replaces a conflicting suffix', async (t) => {
  const s = new MemoryStorage();
  s.append([ent(1, 1), ent(2, 1), ent(3, 1)]);
  s.append([ent(2, 2)]);
  t.equal(s.lastIndex(), 2);
  t.equal(s.term(2), 2);
  t.throws(() => s.append([ent(5, 2)]), 'a gap is a driver bug');
});

t.test('entries respects bounds and the size limit', async (t) => {
  const s = new MemoryStorage();
  s.append([ent(1, 1, 10), ent(2, 1, 10), ent(3, 1, 10)]);
  t.equal(s.entries(0, 2, 100), StorageError.Compacted);
  t.equal(s.entries(1, 9, 100), StorageError.Unavailable);
  const one = s.entries(1, 4, 1);
  t.ok(Array.isArray(one) && one.length === 1, 'at least one entry even past the limit');
  const two = s.entries(1, 4, 60);
  t.ok(Array.isArray(two) && two.length === 2);
});

t.test('snapshots and compaction', async (t) => {
  const s = new MemoryStorage();
  s.append([ent(1, 1), ent(2, 1), ent(3, 2), ent(4, 2)]);
  const cs = { voters: [1, 2, 3], learners: [] };
  const snap = s.createSnapshot(3, cs, new Uint8Array([1]));
  t.notOk(typeof snap === 'string');
  t.equal(s.createSnapshot(2, cs, new Uint8Array()), StorageError.SnapshotOutOfDate);
  t.equal(s.compact(3), undefined);
  t.equal(s.firstIndex(), 4);
  t.equal(s.term(3), 2);
  t.equal(s.compact(2), StorageError.Compacted);
  t.equal(s.compact(9), StorageError.Unavailable);
  t.same(s.initialState().confState, cs);
  t.equal(s.applySnapshot({ metadata: { index: 2, term: 1, confState: cs }, data: new Uint8Array() }), StorageError.SnapshotOutOfDate);
  t.equal(s.applySnapshot({ metadata: { index: 9, term: 3, confState: cs }, data: new Uint8Array() }), undefined);
  t.equal(s.lastIndex(), 9);
  t.equal(s.firstIndex(), 10);
});

t.test('bootstrap writes the initial members as committed conf changes', async (t) => {
  const s = new MemoryStorage();
  bootstrap(s, [1, 2, 3]);
  t.equal(s.lastIndex(), 3);
  t.same(s.initialState().hardState, { term: 1, vote: 0, commit: 3 });
  const ents = s.entries(1, 4, 1 << 20) as Entry[];
  t.same(ents.map((e) => decodeConfChange(e.data).nodeId), [1, 2, 3]);
  t.throws(() => bootstrap(s, [1]), 'refuses a non-empty storage');
  t.throws(() => bootstrap(new MemoryStorage(), []));
});
