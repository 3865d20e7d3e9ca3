// Flags of npm run bench: defaults, --quick, and a clear FlagError (exit 2, no stack trace) for each bad input.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { DEFAULTS, FlagError, parseArgs, parseDuration, WORKLOAD_NAMES } from '../src/flags.js';

const ROOT = '/repo';
const MAIN = fileURLToPath(new URL('../src/main.js', import.meta.url));

t.test('defaults', async (t) => {
  const a = parseArgs([], ROOT);
  t.same(a.targets, ['capstan']);
  t.equal(a.members, 3);
  t.equal(a.durationMs, DEFAULTS.durationMs);
  t.equal(a.warmupMs, DEFAULTS.warmupMs);
  t.equal(a.settleMs, DEFAULTS.settleMs);
  t.equal(a.rounds, 1, 'one system: one block per workload');
  t.same(a.workloads, [...WORKLOAD_NAMES]);
  t.equal(a.channels, 16);
  t.equal(a.inflight, 16);
  t.equal(a.watchers, 100);
  t.match(a.results, /^\/repo\/bench\/results\/\d{4}-\d\d-\d\dT/);
  t.equal(a.endpoints, undefined);
  t.same(a.memberNodeArgs, []);
});

t.test('--against etcd --quick and the rest', async (t) => {
  const a = parseArgs(['--against', 'etcd', '--quick', '--members=5', '--workloads', 'watch,put', '--channels', '4', '--inflight=8', '--watchers', '10', '--results', 'out', '--cpu-prof'], ROOT);
  t.same(a.targets, ['capstan', 'etcd']);
  t.equal(a.members, 5);
  t.equal(a.durationMs, DEFAULTS.quickDurationMs);
  t.equal(a.warmupMs, DEFAULTS.quickWarmupMs);
  t.equal(a.settleMs, DEFAULTS.quickSettleMs);
  t.equal(a.rounds, DEFAULTS.quickRounds, 'two systems, --quick: 2 s rounds');
  t.same(a.workloads, ['put', 'watch'], 'canonical order');
  t.equal(a.channels, 4);
  t.equal(a.inflight, 8);
  t.equal(a.watchers, 10);
  t.equal(a.results, 'out');
  t.equal(a.cpuProf, true);
  t.equal(parseArgs(['--quick', '--duration', '3s'], ROOT).durationMs, 3000, '--duration wins over --quick');
  t.equal(parseArgs(['--duration', '2s'], ROOT).warmupMs, 500, 'warm-up at most a quarter of the duration');
  t.equal(parseArgs(['--settle', '0'], ROOT).settleMs, 0, '--settle 0: no settling');
  t.equal(parseArgs(['--quick', '--settle=12s'], ROOT).settleMs, 12_000, '--settle wins over --quick');
  t.equal(parseArgs([], ROOT).restMs, DEFAULTS.restMs, '--rest: 40 s by default');
  t.equal(DEFAULTS.restMs, 40_000);
  t.equal(parseArgs(['--quick'], ROOT).restMs, 0, 'none with --quick (3 minutes at most)');
  t.equal(parseArgs(['--quick', '--rest=5s'], ROOT).restMs, 5_000, '--rest wins over --quick');
  t.equal(parseArgs(['--rest', '0'], ROOT).restMs, 0);
  t.equal(parseArgs(['--endpoints', '127.0.0.1:2379'], ROOT).restMs, 0, 'no members started, no rest');
  t.equal(parseArgs(['--against', 'etcd'], ROOT).rounds, DEFAULTS.rounds, 'two systems: alternating rounds');
  t.equal(parseArgs(['--against', 'etcd', '--rounds', '3'], ROOT).rounds, 3);
  t.equal(parseArgs(['--against', 'etcd', '--rounds=1'], ROOT).rounds, 1, 'one block per system, as before rounds');
  t.equal(parseArgs(['--rounds', '1'], ROOT).rounds, 1, 'one round of one system is allowed');
  t.same(parseArgs(['--target', 'etcd'], ROOT).targets, ['etcd']);
  t.same(parseArgs(['--endpoints', '127.0.0.1:2379,http://127.0.0.1:22379'], ROOT).endpoints, ['127.0.0.1:2379', 'http://127.0.0.1:22379']);
  t.equal(parseDuration('--duration', '1.5s'), 1500);
  t.equal(parseDuration('--duration', '250ms'), 250);
  t.equal(parseDuration('--duration', '2m'), 120_000);
  t.equal(parseDuration('--duration', '7'), 7000);
  t.same(parseArgs(['--member-node-args', '--trace-gc  --max-semi-space-size=2'], ROOT).memberNodeArgs, ['--trace-gc', '--max-semi-space-size=2'], 'flags as the value, space form');
  t.same(parseArgs(['--against', 'etcd', '--member-node-args=--trace-gc'], ROOT).memberNodeArgs, ['--trace-gc']);
  t.same(parseArgs(['--against', 'etcd', '--member-flags', '--experimental-warning-apply-duration=20ms'], ROOT).memberFlags, ['--experimental-warning-apply-duration=20ms'], 'member flags, for both systems');
  t.same(parseArgs([], ROOT).memberFlags, []);
});

t.test('bad flags are FlagErrors with a message that says what is wrong', async (t) => {
  const cases: [string[], RegExp][] = [
    [['--target', 'redis'], /--target is capstan or etcd/],
    [['--against', 'capstan'], /--against takes etcd/],
    [['--against', 'etcd', '--target', 'etcd'], /leave out --target/],
    [['--against', 'etcd', '--endpoints', '127.0.0.1:2379'], /cannot be used with --endpoints/],
    [['--members', '4'], /--members is 3 or 5/],
    [['--endpoints', 'localhost'], /not host:port/],
    [['--endpoints', 'https://h:1'], /TLS/],
    [['--endpoints', 'h:1', '--members', '3'], /give one or the other/],
    [['--metrics-endpoints', 'h:1'], /goes with --endpoints/],
    [['--duration', 'soon'], /bad duration/],
    [['--settle', 'a while'], /--settle: bad duration/],
    [['--rest', 'forever'], /--rest: bad duration/],
    [['--endpoints', '127.0.0.1:2379', '--rest', '5s'], /--rest reads the memory of members this tool starts, not of --endpoints/],
    [['--duration', '100ms'], /at least 500ms/],
    [['--rounds', '2'], /goes with --against etcd/],
    [['--against', 'etcd', '--rounds', '0'], /between 1 and 100/],
    [['--against', 'etcd', '--duration', '2s', '--rounds', '5'], /rounds of 400 ms: each must measure at least 500 ms/],
    [['--workloads', 'put,bogus'], /unknown bogus/],
    [['--channels', '0'], /between 1 and 256/],
    [['--inflight', '-3'], /positive integer/],
    [['--watchers', 'many'], /positive integer/],
    [['--value-size', '8'], /at least 16/],
    [['--frobnicate'], /unknown flag --frobnicate/],
    [['--quick=yes'], /takes no value/],
    [['--duration'], /needs a value/],
    [['--channels', '--quick'], /needs a value/],
    [['--quick', '--quick'], /given twice/],
    [['stray'], /unexpected argument/],
    [['--target', 'etcd', '--cpu-prof'], /profiles Capstan members/],
    [['--member-node-args', 'trace-gc'], /takes node flags, each starting with --, not "trace-gc"/],
    [['--member-node-args', ' '], /takes node flags/],
    [['--target', 'etcd', '--member-node-args', '--trace-gc'], /is for Capstan members/],
    [['--endpoints', 'h:1', '--member-node-args', '--trace-gc'], /members this tool starts, not to --endpoints/],
    [['--member-flags', 'x=1'], /takes etcd's member flags, each starting with --, not "x=1"/],
    [['--member-flags', '--snapshot-count=5'], /cannot set --snapshot-count: the tool sets it, the same for both systems/],
    [['--member-flags', '--log-level=warn --heartbeat-interval=50'], /cannot set --heartbeat-interval/],
    [['--endpoints', 'h:1', '--member-flags', '--log-level=warn'], /--member-flags applies to members this tool starts, not to --endpoints/],
  ];
  for (const [argv, msg] of cases) {
    t.throws(() => parseArgs(argv, ROOT), msg, argv.join(' '));
    try {
      parseArgs(argv, ROOT);
    } catch (err) {
      t.ok(err instanceof FlagError, `${argv.join(' ')}: a FlagError`);
    }
  }
});

t.test('the command: exit 2 and the message with the usage, no stack trace; --help exits 0', async (t) => {
  const bad = spawnSync(process.execPath, [MAIN, '--members', '7'], { encoding: 'utf8', timeout: 30_000 });
  t.equal(bad.status, 2);
  t.match(bad.stderr, /^bench: --members is 3 or 5/);
  t.match(bad.stderr, /usage: npm run bench/);
  t.notMatch(bad.stderr, /\n\s+at /, 'no stack trace');
  t.equal(bad.stdout, '');
  const help = spawnSync(process.execPath, [MAIN, '--help'], { encoding: 'utf8', timeout: 30_000 });
  t.equal(help.status, 0);
  t.match(help.stdout, /usage: npm run bench/);
  for (const w of WORKLOAD_NAMES) t.match(help.stdout, new RegExp(`\\n  ${w} `), `help lists ${w}`);
});
