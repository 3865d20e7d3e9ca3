import t from 'tap';
import { committedIndex, majority, voteResult, VoteResult } from '../src/quorum.js';

t.test('majority', async (t) => {
  t.same([1, 2, 3, 4, 5, 6, 7].map(majority), [1, 2, 2, 3, 3, 4, 4]);
});

t.test('committedIndex is the highest index a majority holds', async (t) => {
  const acked = (m: Record<number, number>) => (id: number) => m[id];
  t.equal(committedIndex([1], acked({ 1: 5 })), 5);
  t.equal(committedIndex([1, 2, 3], acked({ 1: 5, 2: 3, 3: 1 })), 3);
  t.equal(committedIndex([1, 2, 3], acked({ 1: 5 })), 0, 'unknown members count as 0');
  t.equal(committedIndex([1, 2, 3, 4], acked({ 1: 9, 2: 8, 3: 2, 4: 1 })), 2, 'four voters need three');
  t.equal(committedIndex([1, 2, 3, 4, 5], acked({ 1: 9, 2: 8, 3: 7, 4: 1, 5: 1 })), 7);
  t.equal(committedIndex([], acked({})), Infinity);
});

t.test('voteResult', async (t) => {
  const v = (o: Record<number, boolean>) => new Map(Object.entries(o).map(([k, b]) => [Number(k), b]));
  t.equal(voteResult([1, 2, 3], v({ 1: true })), VoteResult.Pending);
  t.equal(voteResult([1, 2, 3], v({ 1: true, 2: true })), VoteResult.Won);
  t.equal(voteResult([1, 2, 3], v({ 1: true, 2: false, 3: false })), VoteResult.Lost);
  t.equal(voteResult([1, 2, 3, 4], v({ 1: true, 2: true, 3: false })), VoteResult.Pending, '2 of 4 is not a majority');
  t.equal(voteResult([1, 2, 3, 4], v({ 1: true, 2: false, 3: false })), VoteResult.Lost);
  t.equal(voteResult([1, 2, 3], v({ 9: true, 8: true })), VoteResult.Pending, 'non-voters do not count');
});
