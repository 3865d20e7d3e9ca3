// The failpoint grammar and what a pass returns; the crashes themselves are exercised on real
// member processes in packages/cli/test/failpoints.test.ts.
import t from 'tap';
import { Failpoints, FailpointSpecError, parseFailpoints, parseTerm } from '../src/crashpoints.js';

t.test('terms', async (t) => {
  t.same(parseTerm('crash'), { action: { kind: 'crash' }, percent: 100, left: Infinity, text: 'crash' });
  t.same(parseTerm(' 2.5%3*error(EIO) '), { action: { kind: 'error', code: 'EIO' }, percent: 2.5, left: 3, text: '2.5%3*error(EIO)' });
  t.equal(parseTerm('off'), undefined);
  for (const bad of ['', 'panic', 'error(eio)', 'error()', '101%crash', '*crash', '3*', 'crash;']) {
    t.throws(() => parseTerm(bad), FailpointSpecError, `refused: ${JSON.stringify(bad)}`);
  }
});

t.test('specs', async (t) => {
  t.same([...parseFailpoints('walBeforeFsync=crash; raftAfterSave=10%crash;')].map(([n, x]) => `${n}=${x.text}`), ['walBeforeFsync=crash', 'raftAfterSave=10%crash']);
  t.same([...parseFailpoints('raftAfterSave=crash;raftAfterSave=off')], [], 'a later off disarms');
  t.throws(() => parseFailpoints('raftAfterSave'), /no action/);
  t.throws(() => parseFailpoints('fsync=crash'), /unknown failpoint "fsync" \(known: walBeforeFsync, raftBeforeSave, raftAfterSave\)/);
});

t.test('passes', async (t) => {
  const rolls = [0.5, 0.01, 0.99, 0.02];
  const fp = new Failpoints('raftAfterSave=5%2*crash', () => rolls.shift() ?? 0);
  t.equal(fp.pass('walBeforeFsync'), undefined, 'not armed');
  t.equal(fp.pass('raftAfterSave'), undefined, '50 >= 5: no');
  t.same(fp.pass('raftAfterSave'), { kind: 'crash' }, '1 < 5: fires');
  t.equal(fp.pass('raftAfterSave'), undefined, '99: no');
  t.same(fp.pass('raftAfterSave'), { kind: 'crash' }, 'fires a second time');
  t.equal(fp.pass('raftAfterSave'), undefined, 'then never again');
  fp.set('walBeforeFsync', 'error(ENOSPC)');
  t.same(fp.list(), ['raftAfterSave=5%2*crash', 'walBeforeFsync=error(ENOSPC)']);
  t.same(fp.pass('walBeforeFsync'), { kind: 'error', code: 'ENOSPC' });
  fp.set('walBeforeFsync', 'off');
  t.equal(fp.pass('walBeforeFsync'), undefined, 'disarmed');
  t.throws(() => fp.set('nowhere', 'crash'), /unknown failpoint/);
});

t.test('off for good without the variable; a bad spec is kept, not thrown', async (t) => {
  const off = new Failpoints(undefined);
  t.equal(off.enabled, false);
  t.throws(() => off.set('raftAfterSave', 'crash'), /failpoints are off: start the member with CAPSTAN_FAILPOINTS set/);
  const bad = new Failpoints('raftAfterSave=boom');
  t.match(bad.specError?.message, /failpoint action "boom"/);
  t.same(bad.list(), []);
});
