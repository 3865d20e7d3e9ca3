import t from 'tap';
import { parseArgs, parseDuration, USAGE } from '../src/flags.js';

const now = new Date('2026-12-03T01:02:03.456Z');

t.test('defaults, and every flag in both spellings', async (t) => {
  t.same(parseArgs([], now), {
    target: 'capstan',
    members: 3,
    durationMs: 60_000,
    seed: now.getTime() % 1_000_000,
    results: `chaos-results/capstan-3-seed${now.getTime() % 1_000_000}-2026-12-03T01-02-03-456Z`,
  });
  t.same(parseArgs(['--target', 'etcd', '--members=5', '--duration', '30m', '--seed=7', '--faults', 'kill,pause', '--results', '/tmp/r'], now), {
    target: 'etcd',
    members: 5,
    durationMs: 1_800_000,
    seed: 7,
    results: '/tmp/r',
    faults: ['kill', 'pause'],
  });
});

t.test('--help and -h ask for the usage, whatever else is there', async (t) => {
  t.equal(parseArgs(['--help'], now), 'help');
  t.equal(parseArgs(['--members', '4', '-h'], now), 'help');
  t.match(USAGE, /^usage: npm run chaos -- /);
});

t.test('bad flags are UsageErrors that name the problem', async (t) => {
  const bad: [string[], RegExp][] = [
    [['--target', 'zookeeper'], /--target is capstan or etcd/],
    [['--members', '4'], /--members is 3 or 5/],
    [['--duration', 'soon'], /bad duration "soon"/],
    [['--duration', '0s'], /more than 0/],
    [['--seed', '-1'], /--seed is a non-negative integer, not "-1"/],
    [['--seed', '1.5'], /non-negative integer/],
    [['--faults', 'kill,meteor'], /--faults: unknown "meteor" \(known: .*kill/],
    [['--faults', ''], /--faults: unknown ""/],
    [['--seed'], /flag needs an argument: --seed/],
    [['--colour', 'red'], /flag provided but not defined: --colour/],
    [['5'], /unexpected argument "5"/],
  ];
  for (const [argv, message] of bad) t.throws(() => parseArgs(argv, now), { name: 'UsageError', message }, argv.join(' '));
});

t.test('durations', async (t) => {
  t.equal(parseDuration('250ms'), 250);
  t.equal(parseDuration('90'), 90_000);
  t.equal(parseDuration('1.5m'), 90_000);
  t.equal(parseDuration('1h'), 3_600_000);
});
