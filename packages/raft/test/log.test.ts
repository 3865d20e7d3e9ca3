import t from 'tap';
import { RaftInvariantError, RaftLog } from '../src/log.js';
import { EntryType, MemoryStorage, StorageError, type Entry } from '../src/index.js';

const ent = (index: number, term: number, bytes = 0): Entry => ({ index, term, type: EntryType.Normal, data: new Uint8Array(bytes) });
const terms = (es: readonly Entry[] | StorageError) => (Array.isArray(es) ? es.map((e) => e.term) : es);

function logWith(stable: [number, number][], unstable: [number, number][] = []): RaftLog {
  const s = new MemoryStorage();
  s.append(stable.map(([i, tm]) => ent(i, tm)));
  const l = new RaftLog(s, 1 << 30);
  if (unstable.length > 0) l.append(unstable.map(([i, tm]) => ent(i, tm)));
  return l;
}

t.test('term, lastIndex and slices span storage and the unstable part', async (t) => {
  const l = logWith([[1, 1], [2, 1]], [[3, 2], [4, 2]]);
  t.equal(l.lastIndex(), 4);
  t.equal(l.persistedIndex(), 2);
  t.equal(l.term(3), 2);
  t.equal(l.term(0), 0);
  t.equal(l.term(9), StorageError.Unavailable);
  t.same(terms(l.slice(1, 5, 1 << 30)), [1, 1, 2, 2]);
  t.same(terms(l.slice(2, 4, 1 << 30)), [1, 2]);
  l.stableTo(4, 2);
  t.equal(l.persistedIndex(), 4);
  l.stableTo(9, 9);
  t.equal(l.persistedIndex(), 4, 'an unknown index is ignored');
});

t.test('maybeAppend: matching, conflicting and stale appends', async (t) => {
  const l = logWith([[1, 1], [2, 1], [3, 2]]);
  t.equal(l.maybeAppend(3, 3, 0, [ent(4, 3)]), undefined, 'mismatched previous term');
  t.equal(l.maybeAppend(3, 2, 3, [ent(4, 3), ent(5, 3)]), 5);
  t.equal(l.committed, 3);
  t.equal(l.maybeAppend(3, 2, 4, [ent(4, 4)]), 4, 'a conflict truncates the tail');
  t.equal(l.lastIndex(), 4);
  t.equal(l.term(4), 4);
  t.equal(l.maybeAppend(1, 1, 4, [ent(2, 1)]), 2, 'an old, matching append changes nothing');
  t.equal(l.lastIndex(), 4);
  t.throws(() => l.maybeAppend(1, 1, 4, [ent(2, 9)]), RaftInvariantError, 'a conflict below commit is a bug');
});

t.test('findConflictByTerm skips whole terms', async (t) => {
  const l = logWith([[1, 1], [2, 1], [3, 2], [4, 2], [5, 4], [6, 4]]);
  t.same(l.findConflictByTerm(6, 3), { index: 4, term: 2 });
  t.same(l.findConflictByTerm(6, 4), { index: 6, term: 4 });
  t.same(l.findConflictByTerm(6, 1), { index: 2, term: 1 });
  t.same(l.findConflictByTerm(6, 0), { index: 0, term: 0 });
});

t.test('isUpToDate compares last term then last index', async (t) => {
  const l = logWith([[1, 1], [2, 2]]);
  t.ok(l.isUpToDate(1, 3));
  t.ok(l.isUpToDate(2, 2));
  t.notOk(l.isUpToDate(1, 2));
  t.notOk(l.isUpToDate(9, 1));
});

t.test('committed entries are limited per Ready but never starved', async (t) => {
  const s = new MemoryStorage();
  s.append([ent(1, 1, 100), ent(2, 1, 100), ent(3, 1, 100)]);
  const l = new RaftLog(s, 150);
  l.commitTo(3);
  t.equal(l.nextCommittedEntries().length, 1);
  l.appliedTo(1);
  t.equal(l.nextCommittedEntries()[0]!.index, 2);
  t.throws(() => l.commitTo(9), RaftInvariantError);
  t.throws(() => l.appliedTo(0.5 + 9), RaftInvariantError);
});

t.test('compaction and restore', async (t) => {
  const s = new MemoryStorage();
  s.append([ent(1, 1), ent(2, 1), ent(3, 2)]);
  s.createSnapshot(2, { voters: [1], learners: [] }, new Uint8Array([7]));
  s.compact(2);
  const l = new RaftLog(s, 1 << 30);
  t.equal(l.firstIndex(), 3);
  t.equal(l.term(2), 1, 'the snapshot index keeps its term');
  t.equal(l.term(1), StorageError.Compacted);
  t.equal(l.slice(1, 3, 100), StorageError.Compacted);
  l.restore({ metadata: { index: 10, term: 5, confState: { voters: [1], learners: [] } }, data: new Uint8Array() });
  t.equal(l.lastIndex(), 10);
  t.equal(l.committed, 10);
  t.ok(l.hasPendingSnapshot());
});
