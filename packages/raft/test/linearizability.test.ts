import t from 'tap';
import { performance } from 'node:perf_hooks';
import {
  checkOperations,
  kvModel,
  type CheckResult,
  type KvInput,
  type KvOutput,
  type Operation,
} from '../sim/linearizability.js';

type Op = Operation<KvInput, KvOutput>;

const put = (client: number, key: string, value: string, call: number, ret?: number): Op =>
  ret === undefined
    ? { client, input: { kind: 'put', key, value }, call }
    : { client, input: { kind: 'put', key, value }, call, ret, output: { kind: 'put' } };
const get = (client: number, key: string, value: string | undefined, call: number, ret: number): Op => ({
  client, input: { kind: 'get', key }, call, ret, output: { kind: 'get', value },
});
const cas = (client: number, key: string, expect: string | undefined, value: string, call: number, ret?: number, ok?: boolean): Op =>
  ret === undefined
    ? { client, input: { kind: 'cas', key, expect, value }, call }
    : { client, input: { kind: 'cas', key, expect, value }, call, ret, output: { kind: 'cas', ok: ok! } };
const check = (ops: Op[], maxSteps?: number): CheckResult =>
  checkOperations(kvModel, ops, maxSteps === undefined ? {} : { maxSteps });

t.test('sequential histories', async (t) => {
  t.equal(check([]).ok, true, 'the empty history');
  t.equal(check([put(0, 'x', '1', 1, 2), get(0, 'x', '1', 3, 4)]).ok, true);
  t.equal(check([get(0, 'x', undefined, 1, 2)]).ok, true, 'an absent key reads as absent');
  t.equal(check([put(0, 'x', '', 1, 2), get(0, 'x', '', 3, 4)]).ok, true, 'the empty string is a value');
  t.equal(check([put(0, 'x', '', 1, 2), get(0, 'x', undefined, 3, 4)]).ok, false, 'the empty string is not absence');
  t.equal(check([put(0, 'x', '1', 1, 2), get(0, 'x', '9', 3, 4)]).ok, false, 'a value never written');
  t.equal(check([get(0, 'x', '1', 1, 2), put(0, 'x', '1', 3, 4)]).ok, false, 'a value read before it was written');
  t.equal(check([put(0, 'x', '1', 1, 2), put(0, 'x', '2', 3, 4), get(1, 'x', '1', 5, 6)]).ok, false, 'a stale read');
  t.equal(check([put(0, 'x', '1', 1, 2), put(0, 'x', '2', 3, 4), get(1, 'x', '2', 5, 6)]).ok, true);
});

t.test('overlapping operations may take effect in either order', async (t) => {
  t.equal(check([put(0, 'x', '1', 1, 4), get(1, 'x', undefined, 2, 3)]).ok, true, 'read before the write');
  t.equal(check([put(0, 'x', '1', 1, 4), get(1, 'x', '1', 2, 3)]).ok, true, 'read after the write');
  t.equal(check([put(0, 'x', '1', 1, 6), put(1, 'x', '2', 2, 5), get(2, 'x', '1', 7, 8)]).ok, true);
  t.equal(check([put(0, 'x', '1', 1, 6), put(1, 'x', '2', 2, 5), get(2, 'x', '2', 7, 8)]).ok, true);
  // Both puts finished before the reads, so the reads must agree on which was last.
  t.equal(
    check([put(0, 'x', '1', 1, 6), put(1, 'x', '2', 2, 5), get(2, 'x', '1', 7, 8), get(2, 'x', '2', 9, 10)]).ok,
    false,
  );
  // Equal times cannot order two ops, so a tie counts as an overlap.
  t.equal(check([put(0, 'x', '1', 1, 5), get(1, 'x', undefined, 5, 6)]).ok, true, 'a tie is concurrent');
  t.equal(check([put(0, 'x', '1', 1, 5), get(1, 'x', undefined, 6, 7)]).ok, false, 'one tick later it is not');
  t.equal(check([put(0, 'x', '1', 3, 3), get(1, 'x', '1', 4, 4)]).ok, true, 'an instantaneous op');
});

t.test('the classic violation: a read goes back in time', async (t) => {
  // put(x,1) overlaps both reads, but the reads do not overlap each other: once one has seen 1,
  // a later one must not see the old value.
  t.equal(check([put(0, 'x', '1', 1, 10), get(1, 'x', '1', 2, 3), get(2, 'x', undefined, 4, 5)]).ok, false);
  t.equal(check([put(0, 'x', '1', 1, 10), get(1, 'x', undefined, 2, 3), get(2, 'x', '1', 4, 5)]).ok, true, 'the other way round is fine');
  t.equal(check([put(0, 'x', '1', 1, 10), get(1, 'x', '1', 2, 5), get(2, 'x', undefined, 3, 6)]).ok, true, 'overlapping reads may disagree');

  const r = check([
    put(0, 'x', '0', 1, 2),
    put(0, 'x', '1', 3, 20),
    get(1, 'x', '1', 4, 5),
    get(2, 'x', '0', 6, 7),
    // Later operations are not part of the smallest failing prefix.
    put(1, 'x', 'later', 8, 9),
    get(2, 'x', 'later', 10, 11),
  ]);
  t.equal(r.ok, false);
  if (r.ok === false) {
    t.equal(r.partition, 'x');
    t.match(r.message, /partition "x"/, 'the message names the partition');
    t.match(r.message, /as of time 7 /, 'the violation shows at the stale read\'s return');
    t.match(r.message, /first 4 operations/);
    t.match(r.message, /client 2 \[6, 7\] get\(x\) -> "0"/, 'with times and the offending read');
    t.match(r.message, /client 1 \[4, 5\] get\(x\) -> "1"/);
    t.match(r.message, /client 0 \[3, 20\] put\(x, "1"\).*pending at 7/, 'an op still running at that time is shown as pending');
    t.notMatch(r.message, /later/, 'operations after the violation are left out');
    t.equal(r.message.split('\n').length, 5, 'a header and one line per operation');
  }
});

t.test('an operation that never completed may or may not have happened, but only once', async (t) => {
  t.equal(check([put(0, 'x', '1', 1), get(1, 'x', undefined, 2, 3)]).ok, true, 'not (yet) applied');
  t.equal(check([put(0, 'x', '1', 1), get(1, 'x', '1', 2, 3)]).ok, true, 'applied');
  t.equal(check([put(0, 'x', '1', 1), get(1, 'x', undefined, 2, 3), get(1, 'x', '1', 100, 101)]).ok, true, 'applied much later');
  t.equal(check([put(0, 'x', '1', 1), get(1, 'x', '1', 2, 3), get(1, 'x', undefined, 4, 5)]).ok, false, 'seen, then unseen');
  t.equal(check([get(1, 'x', '1', 2, 3), put(0, 'x', '1', 4)]).ok, false, 'not before its call');
  t.equal(
    check([put(0, 'x', '1', 1), put(1, 'x', '2', 2, 3), get(1, 'x', '1', 4, 5), get(1, 'x', '2', 6, 7)]).ok,
    false,
    'it takes effect at one moment: it cannot be both before and after a later write',
  );
  // Never-completed ops cannot constrain anything otherwise: many of them, none ever seen.
  const unseen: Op[] = [];
  for (let i = 0; i < 40; i++) unseen.push(put(9, 'x', `ghost${i}`, i * 10));
  for (let i = 0; i < 40; i++) unseen.push(put(0, 'x', `v${i}`, i * 10 + 1, i * 10 + 2), get(1, 'x', `v${i}`, i * 10 + 3, i * 10 + 4));
  t.equal(check(unseen).ok, true, 'unseen writes are left out');
  t.equal(
    check([{ client: 3, input: { kind: 'get', key: 'x' }, call: 1 }, put(0, 'x', '1', 2, 3)]).ok,
    true,
    'a read that never completed says nothing',
  );
  t.equal(check([put(0, 'x', '1', 1, Infinity), get(1, 'x', undefined, 2, 3)]).ok, true, 'a return at +Infinity means unknown');
});

t.test('compare-and-set', async (t) => {
  t.equal(check([cas(0, 'x', undefined, '1', 1, 2, true), get(0, 'x', '1', 3, 4)]).ok, true, 'create if absent');
  t.equal(check([cas(0, 'x', undefined, '1', 1, 2, false)]).ok, false, 'on an absent key, expecting absent must succeed');
  t.equal(check([cas(0, 'x', '0', '1', 1, 2, true)]).ok, false, 'expecting a value the key never had cannot succeed');
  t.equal(check([cas(0, 'x', '0', '1', 1, 2, false), get(0, 'x', undefined, 3, 4)]).ok, true, 'a failed cas changes nothing');
  t.equal(check([cas(0, 'x', '0', '1', 1, 2, false), get(0, 'x', '1', 3, 4)]).ok, false, 'a failed cas must not write');
  t.equal(
    check([put(0, 'x', '0', 1, 2), cas(1, 'x', '0', '1', 3, 4, true), cas(2, 'x', '0', '2', 5, 6, true)]).ok,
    false,
    'two sequential cas on the same expected value cannot both succeed',
  );
  t.equal(
    check([put(0, 'x', '0', 1, 2), cas(1, 'x', '0', '1', 3, 6, true), cas(2, 'x', '0', '2', 4, 7, false), get(0, 'x', '1', 8, 9)]).ok,
    true,
    'of two concurrent cas on the same value, one wins',
  );
  t.equal(
    check([put(0, 'x', '0', 1, 2), cas(1, 'x', '0', '1', 3, 6, true), cas(2, 'x', '0', '2', 4, 7, true)]).ok,
    false,
    'and only one',
  );
  t.equal(
    check([put(0, 'x', '0', 1, 2), cas(1, 'x', '0', '1', 3, 6, true), cas(2, 'x', '1', '2', 4, 7, true), get(0, 'x', '2', 8, 9)]).ok,
    true,
    'concurrent cas chain in the order that works',
  );
  t.equal(check([put(0, 'x', '0', 1, 2), cas(1, 'x', '0', '1', 3), get(0, 'x', '1', 4, 5)]).ok, true, 'an unfinished cas may have applied');
  t.equal(check([put(0, 'x', '0', 1, 2), cas(1, 'x', '0', '1', 3), get(0, 'x', '0', 4, 5)]).ok, true, 'or not');
  t.equal(check([put(0, 'x', '5', 1, 2), cas(1, 'x', '0', '1', 3), get(0, 'x', '1', 4, 5)]).ok, false, 'but only if its expectation held');
});

t.test('partitions are checked separately, and a violation names its key', async (t) => {
  const r = check([
    put(0, 'a', '1', 1, 2),
    get(0, 'a', '1', 3, 4),
    put(1, 'b', '1', 1.5, 2.5),
    get(1, 'b', '7', 5, 6),
    put(2, 'c', '1', 1, 10),
    get(2, 'c', '1', 11, 12),
  ]);
  t.equal(r.ok, false);
  if (r.ok === false) {
    t.equal(r.partition, 'b');
    t.match(r.message, /partition "b"/);
    t.match(r.message, /get\(b\) -> "7"/);
    t.notMatch(r.message, /\(a\)|\(c\)/, 'only the failing key is printed');
  }
  // A value of one key says nothing about another.
  t.equal(check([put(0, 'a', '1', 1, 2), get(0, 'b', '1', 3, 4)]).ok, false);
  t.equal(check([put(0, 'a', '1', 1, 2), get(0, 'b', undefined, 3, 4), get(0, 'a', '1', 5, 6)]).ok, true);
});

t.test('the search budget', async (t) => {
  const hard = [put(0, 'x', '1', 1, 10), put(1, 'x', '2', 2, 10), put(2, 'x', '3', 3, 10), get(3, 'x', '1', 11, 12)];
  t.equal(check(hard).ok, true, 'needs some search');
  const r = check(hard, 2);
  t.equal(r.ok, 'unknown', 'a tiny budget gives up');
  if (r.ok === 'unknown') {
    t.equal(r.partition, 'x');
    t.match(r.message, /partition "x"/);
  }
  const both = check([...hard, get(4, 'y', 'never', 1, 2)], 2);
  t.equal(both.ok, false, 'a definite violation elsewhere still wins over an exhausted budget');
  if (both.ok === false) t.equal(both.partition, 'y');
  t.throws(() => check([put(0, 'x', '1', 5, 4)]), RangeError, 'a return before its call is rejected');
});

// ---------------------------------------------------------------- random histories

/** mulberry32: a tiny seeded PRNG, so every history here is reproducible from its seed. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

interface GenOptions {
  readonly clients: number;
  readonly ops: number;
  readonly keys: number;
  /** Chance that an op never completes (and then, at even odds, whether it took effect). */
  readonly unknown: number;
}

/**
 * A real sequential execution on a map, each op stretched around its moment of effect into a
 * random [call, ret] window (each client runs one op at a time). Linearizable by construction:
 * the moments of effect are a linearization.
 */
function randomHistory(seed: number, g: GenOptions): Op[] {
  const rnd = mulberry32(seed);
  const int = (n: number): number => Math.floor(rnd() * n);
  const value = new Map<string, string>();
  const written: string[] = [];
  const free = new Array<number>(g.clients).fill(0);
  const ops: Op[] = [];
  let now = 0;
  for (let i = 0; i < g.ops; i++) {
    now += 1 + int(3);
    const idle = free.flatMap((f, c) => (f <= now ? [c] : []));
    if (idle.length === 0) {
      now = Math.min(...free);
      i--;
      continue;
    }
    const c = idle[int(idle.length)]!;
    const key = `k${int(g.keys)}`;
    const call = Math.max(free[c]!, now - int(20));
    const ret = now + int(20);
    free[c] = ret;
    const cur = value.get(key);
    const unknown = rnd() < g.unknown;
    const applied = !unknown || rnd() < 0.5;
    const r = rnd();
    let op: Op;
    if (r < 0.4) {
      const v = `v${i}`;
      written.push(v);
      if (applied) value.set(key, v);
      op = put(c, key, v, call, unknown ? undefined : ret);
    } else if (r < 0.85) {
      op = unknown ? { client: c, input: { kind: 'get', key }, call } : get(c, key, cur, call, ret);
    } else {
      const v = `v${i}`;
      written.push(v);
      const expect = rnd() < 0.6 ? cur : rnd() < 0.5 ? undefined : written[int(written.length)];
      const hit = expect === cur;
      if (applied && hit) value.set(key, v);
      op = unknown ? cas(c, key, expect, v, call) : cas(c, key, expect, v, call, ret, hit);
    }
    ops.push(op);
  }
  return ops;
}

function shuffle<T>(xs: readonly T[], seed: number): T[] {
  const rnd = mulberry32(seed);
  const out = [...xs];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

t.test('random real executions are linearizable; one corrupted read is not', async (t) => {
  const g: GenOptions = { clients: 4, ops: 300, keys: 5, unknown: 0.05 };
  let caught = 0;
  for (let seed = 1; seed <= 50; seed++) {
    const ops = randomHistory(seed, g);
    const r = check(ops);
    if (r.ok !== true) t.fail(`seed ${seed}: ${r.message}`);
    if (check(shuffle(ops, seed)).ok !== true) t.fail(`seed ${seed}: the order of the input array mattered`);
    const reads = ops.flatMap((o, i) => (o.input.kind === 'get' && o.ret !== undefined ? [i] : []));
    const i = reads[Math.floor(reads.length / 2)]!;
    const bad = [...ops];
    bad[i] = { ...ops[i]!, output: { kind: 'get', value: 'never-written' } };
    const b = check(bad);
    if (b.ok === false && b.partition === ops[i]!.input.key && b.message.includes('"never-written"')) caught++;
    else t.fail(`seed ${seed}: corrupted read of ${ops[i]!.input.key} not reported: ${JSON.stringify(b)}`);
  }
  t.equal(caught, 50, 'every corrupted read was caught and named');
});

/** Every order allowed by real time, every subset of never-completed ops: the definition itself. */
function bruteForce(ops: readonly Op[]): boolean {
  const done = ops.map(() => false);
  const mustFinish = ops.filter((o) => o.ret !== undefined).length;
  const go = (state: string | null, finished: number): boolean => {
    if (finished === mustFinish) return true;
    for (let i = 0; i < ops.length; i++) {
      if (done[i]) continue;
      const o = ops[i]!;
      if (ops.some((p, j) => !done[j] && j !== i && p.ret !== undefined && p.ret < o.call)) continue;
      const next = kvModel.step(state, o.input, o.output);
      if (next === undefined) continue;
      done[i] = true;
      if (go(next, finished + (o.ret !== undefined ? 1 : 0))) return true;
      done[i] = false;
    }
    return false;
  };
  return go(null, 0);
}

t.test('agrees with brute force on small arbitrary histories', async (t) => {
  const rnd = mulberry32(7);
  const int = (n: number): number => Math.floor(rnd() * n);
  const vals = ['a', 'b', undefined];
  let yes = 0;
  let no = 0;
  for (let round = 0; round < 3000; round++) {
    const ops: Op[] = [];
    const n = 1 + int(6);
    for (let i = 0; i < n; i++) {
      const call = int(10);
      const ret = int(4) === 0 ? undefined : call + int(6);
      const v = vals[int(3)];
      const r = int(3);
      if (r === 0) ops.push(put(i, 'x', v ?? 'c', call, ret));
      else if (r === 1 && ret !== undefined) ops.push(get(i, 'x', v, call, ret));
      else ops.push(cas(i, 'x', v, vals[int(2)]!, call, ret, int(2) === 0));
    }
    const want = bruteForce(ops);
    const got = check(ops).ok;
    if (got !== want) {
      t.fail(`round ${round}: checker says ${got}, brute force ${want}: ${JSON.stringify(ops)}`);
      break;
    }
    if (want) yes++;
    else no++;
  }
  t.ok(yes > 500 && no > 500, `both outcomes were exercised (${yes} linearizable, ${no} not)`);
});

t.test('performance: 5 clients, 2,000 ops, 20 keys', async (t) => {
  const ops = randomHistory(2024, { clients: 5, ops: 2000, keys: 20, unknown: 0.05 });
  const t0 = performance.now();
  const r = check(ops);
  const ms = performance.now() - t0;
  t.equal(r.ok, true);
  t.comment(`2,000 ops over 20 keys: ${ms.toFixed(1)} ms`);

  // The simulator's load: many runs of a few hundred to a few thousand ops.
  const t1 = performance.now();
  let total = 0;
  for (let seed = 1; seed <= 100; seed++) {
    const h = randomHistory(seed, { clients: 5, ops: 300 + ((seed * 37) % 2700), keys: 10 + (seed % 41), unknown: 0.08 });
    total += h.length;
    if (check(h).ok !== true) t.fail(`seed ${seed} not linearizable`);
  }
  t.comment(`100 histories, ${total} ops: ${(performance.now() - t1).toFixed(1)} ms`);

  // Few keys and many unfinished writes is the hard case for the search.
  const dense = randomHistory(5, { clients: 5, ops: 3000, keys: 3, unknown: 0.1 });
  const t2 = performance.now();
  t.equal(check(dense).ok, true);
  t.comment(`3,000 ops over 3 keys, 10% unfinished: ${(performance.now() - t2).toFixed(1)} ms`);
});
