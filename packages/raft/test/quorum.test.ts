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

t.test('committedIndex agrees with sorting, for every order of acknowledgements', async (t) => {
  // Every assignment of indexes 0..3 to five voters, ties included: 4^5 configurations.
  let checked = 0;
  for (let code = 0; code < 4 ** 5; code++) {
    const idx = [0, 1, 2, 3, 4].map((i) => Math.floor(code / 4 ** i) % 4);
    for (const n of [1, 2, 3, 4, 5]) {
      const voters = [1, 2, 3, 4, 5].slice(0, n);
      const want = idx.slice(0, n).sort((a, b) => b - a)[majority(n) - 1];
      if (committedIndex(voters, (id) => idx[id - 1]) !== want) t.fail(`${idx.slice(0, n).join(',')}`);
      checked++;
    }
  }
  t.equal(checked, 5 * 4 ** 5);
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
