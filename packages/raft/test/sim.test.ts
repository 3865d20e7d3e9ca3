// The simulator as a test: many seeds with zero violations, exactly replayable runs, faults that
// really happen, and a planted driver bug that must be caught.
import t from 'tap';
import { runSeeds } from '../sim/run.js';
import { simulate } from '../sim/simulate.js';
import { Invariants } from '../sim/invariants.js';
import { bootstrap, EntryType, MemoryStorage, type NodeId } from '../src/index.js';

const SEEDS = 300;
const STEPS = 10_000;

t.test(`${SEEDS} seeds x ${STEPS} steps: no violations`, async (t) => {
  const reports: string[] = [];
  const s = runSeeds({ first: 1, count: SEEDS, steps: STEPS, log: () => {}, report: (l) => reports.push(l) });
  t.equal(s.violations, 0, reports.join('\n') || 'no violation');
  t.equal(s.seeds, SEEDS);
  t.ok(s.steps >= SEEDS * STEPS * 0.99, `ran ${s.steps} steps`);
  const k = s.totals;
  t.comment(`totals: ${JSON.stringify(k)}`);
  // Faults and features that must actually have been exercised, or the run proves little.
  t.ok(k.elections > SEEDS, 'leaders were elected many times');
  t.ok(k.crashes > SEEDS, 'members crashed and restarted');
  t.ok(k.midReadyCrashes > 0, 'some crashes hit between persisting and sending');
  t.ok(k.writtenBehind > SEEDS * 10, 'leaders wrote Readys in the background');
  t.ok(k.partitions > SEEDS, 'links were cut');
  t.ok(k.snapshotsSent > 0, 'snapshots were sent to lagging members');
  t.ok(k.snapshotsTaken > SEEDS, 'logs were compacted');
  t.ok(k.confChangesApplied > SEEDS, 'membership changed');
  t.ok(k.transfers > 0, 'leadership was transferred');
  t.ok(k.writesOk > SEEDS * 10, 'writes were acknowledged');
  t.ok(k.readsOk > SEEDS * 10, 'linearizable reads were served');
  t.ok(k.opsUnknown > 0, 'some operations ended with an unknown outcome');
});

t.test('a seed replays exactly', async (t) => {
  for (const seed of [3, 4, 77]) {
    const a = simulate({ seed, steps: 3000, members: seed % 2 === 0 ? 5 : 3 });
    const b = simulate({ seed, steps: 3000, members: seed % 2 === 0 ? 5 : 3 });
    t.equal(a.digest, b.digest, `seed ${seed}: same event trace`);
    t.same(a.stats, b.stats, `seed ${seed}: same outcome`);
  }
  const c = simulate({ seed: 3, steps: 3000, members: 3 });
  const d = simulate({ seed: 5, steps: 3000, members: 3 });
  t.not(c.digest, d.digest, 'different seeds differ');
});

t.test('teeth: a driver that sends before persisting is caught', async (t) => {
  let caught: string | undefined;
  for (let seed = 1; seed <= 50 && caught === undefined; seed++) {
    const r = simulate({ seed, steps: STEPS, members: 3, sendBeforePersist: true });
    if (r.violation) caught = `seed ${seed} step ${r.violation.step}: ${r.violation.invariant}`;
  }
  t.ok(caught, `caught: ${caught}`);
});

t.test('teeth: an entry applied before a quorum has it on disk is caught', async (t) => {
  const storages = new Map<NodeId, MemoryStorage>();
  for (const id of [1, 2, 3]) {
    const s = new MemoryStorage();
    bootstrap(s, [1, 2, 3]);
    storages.set(id, s);
  }
  const e = { term: 2, index: 4, type: EntryType.Normal, data: new Uint8Array([1]) };
  storages.get(2)!.append([e]);
  const inv = new Invariants();
  t.throws(() => inv.durable(1, e, [[1, 2, 3]], storages), /committed is durable|only 1 of voters/, 'one of three holds it');
  storages.get(3)!.append([e]);
  t.doesNotThrow(() => inv.durable(1, e, [[1, 2, 3]], storages), 'two of three hold it, the leader itself not among them');
  t.doesNotThrow(() => inv.durable(1, e, [[1, 4, 5], [1, 2, 3]], storages), 'either configuration may hold it');
});
