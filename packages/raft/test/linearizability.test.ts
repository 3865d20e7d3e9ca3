import t from 'tap';
import { checkOperations, kvModel, type KvInput, type KvOutput, type Operation } from '../sim/linearizability.js';
import { Rng } from '../sim/rng.js';

type Op = Operation<KvInput, KvOutput>;
const put = (client: number, key: string, value: string, call: number, ret?: number): Op =>
  ret === undefined ? { client, input: { kind: 'put', key, value }, call } : { client, input: { kind: 'put', key, value }, call, ret, output: { kind: 'put' } };
const get = (client: number, key: string, value: string | undefined, call: number, ret: number): Op => ({
  client, input: { kind: 'get', key }, call, ret, output: { kind: 'get', value },
});
const check = (ops: Op[]) => checkOperations(kvModel, ops);

t.test('sequential histories', async (t) => {
  t.ok(check([put(0, 'x', '1', 1, 2), get(0, 'x', '1', 3, 4)]).ok);
  t.ok(check([get(0, 'x', undefined, 1, 2)]).ok, 'an absent key reads as absent');
  t.notOk(check([put(0, 'x', '1', 1, 2), get(0, 'x', '9', 3, 4)]).ok, 'a value never written');
  t.notOk(check([put(0, 'x', '1', 1, 2), put(0, 'x', '2', 3, 4), get(1, 'x', '1', 5, 6)]).ok, 'a stale read');
});

t.test('concurrency allows either order', async (t) => {
  t.ok(check([put(0, 'x', '1', 1, 4), get(1, 'x', undefined, 2, 3)]).ok);
  t.ok(check([put(0, 'x', '1', 1, 4), get(1, 'x', '1', 2, 3)]).ok);
  t.ok(check([put(0, 'x', '1', 1, 6), put(1, 'x', '2', 2, 5), get(2, 'x', '1', 7, 8)]).ok);
  t.ok(check([put(0, 'x', '1', 1, 6), put(1, 'x', '2', 2, 5), get(2, 'x', '2', 7, 8)]).ok);
});

t.test('reads that go back in time are caught', async (t) => {
  const r = check([put(0, 'x', '1', 1, 2), get(1, 'x', '1', 3, 4), get(2, 'x', undefined, 5, 6)]);
  t.notOk(r.ok);
  if (!r.ok) {
    t.equal(r.partition, 'x');
    t.match(r.message, /get\(x\) -> <none>/, 'the message shows the offending read');
  }
});

t.test('an operation with an unknown outcome may or may not have happened, but only once', async (t) => {
  t.ok(check([put(0, 'x', '1', 1), get(1, 'x', undefined, 2, 3)]).ok, 'not (yet) applied');
  t.ok(check([put(0, 'x', '1', 1), get(1, 'x', '1', 2, 3)]).ok, 'applied');
  t.notOk(check([put(0, 'x', '1', 1), get(1, 'x', '1', 2, 3), get(1, 'x', undefined, 4, 5)]).ok, 'seen, then unseen');
  t.notOk(check([get(1, 'x', '1', 2, 3), put(0, 'x', '1', 4)]).ok, 'not before its call');
  t.ok(check([{ client: 3, input: { kind: 'get', key: 'x' }, call: 1 }]).ok, 'an unfinished read says nothing');
});

t.test('partitions are checked separately and named', async (t) => {
  const r = check([put(0, 'a', '1', 1, 2), get(0, 'a', '1', 3, 4), put(1, 'b', '1', 1.5, 2.5), get(1, 'b', '7', 5, 6)]);
  t.notOk(r.ok);
  if (!r.ok) t.equal(r.partition, 'b');
});

/** A real sequential execution, with each operation stretched over random overlapping times. */
function randomHistory(seed: number, clients: number, n: number, keys: number): Op[] {
  const rng = new Rng(seed);
  const state = new Map<string, string>();
  const ops: Op[] = [];
  const free = new Array<number>(clients).fill(0);
  let time = 0;
  for (let i = 0; i < n; i++) {
    const c = rng.int(clients);
    const key = `k${rng.int(keys)}`;
    // The op takes effect at `time`; its call is before it (but after the client's last return)
    // and its return after it.
    time += 1;
    const call = Math.max(free[c]!, time - rng.float() * 5) + 1e-3;
    const at = Math.max(time, call + 1e-3);
    time = at;
    const ret = at + rng.float() * 5 + 1e-3;
    free[c] = ret;
    if (rng.chance(0.5)) {
      state.set(key, `v${i}`);
      ops.push(put(c, key, `v${i}`, call, rng.chance(0.05) ? undefined : ret));
    } else {
      ops.push(get(c, key, state.get(key), call, ret));
    }
  }
  return ops;
}

t.test('random real executions are linearizable; a corrupted read is not', async (t) => {
  for (let seed = 1; seed <= 30; seed++) {
    const ops = randomHistory(seed, 4, 200, 5);
    const r = check(ops);
    t.ok(r.ok, `seed ${seed} ok`);
    const i = ops.findIndex((o) => o.input.kind === 'get');
    const bad = [...ops];
    bad[i] = { ...ops[i]!, output: { kind: 'get', value: 'never-written' } };
    t.notOk(check(bad).ok, `seed ${seed}: corrupted read caught`);
  }
});

t.test('a larger history checks quickly enough to run at the end of every seed', async (t) => {
  const ops = randomHistory(99, 5, 2000, 20);
  t.ok(check(ops).ok);
});
