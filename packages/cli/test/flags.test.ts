import t from 'tap';
import { DEFAULT_SNAPSHOT_COUNT } from '@capstan/server';
import { FlagError, parseGoDuration, parseMemberFlags, parseRetention, DEFAULT_QUOTA_BACKEND_BYTES } from '../src/flags.js';

t.test('etcd defaults', async (t) => {
  const f = parseMemberFlags([], {});
  t.same(
    [f.name, f.dataDir, f.listenClientURLs, f.initialAdvertisePeerURLs, [...f.initialCluster], f.initialClusterState, f.initialClusterToken],
    ['default', 'default.etcd', ['http://localhost:2379'], ['http://localhost:2380'], [['default', ['http://localhost:2380']]], 'new', 'etcd-cluster'],
  );
  t.same([f.heartbeatMs, f.electionMs, f.snapshotCount, f.quotaBackendBytes, f.maxRequestBytes, f.maxTxnOps], [100, 1000, 10000, DEFAULT_QUOTA_BACKEND_BYTES, 1572864, 128]);
  t.equal(f.snapshotCount, DEFAULT_SNAPSHOT_COUNT, "the flag's default is the member's (written out: flags.ts loads before the server)");
  t.same([f.authTokenTTLMs, f.bcryptCost], [300_000, 10], "etcd's --auth-token-ttl 300 s and --bcrypt-cost 10");
  t.equal(f.quietGC, true, 'Capstan collects garbage once quiet unless told not to');
});

t.test('--experimental-quiet-gc: on by default, off with =false or its variable', async (t) => {
  t.equal(parseMemberFlags(['--experimental-quiet-gc=false'], {}).quietGC, false);
  t.equal(parseMemberFlags([], { ETCD_EXPERIMENTAL_QUIET_GC: 'false' }).quietGC, false);
  t.equal(parseMemberFlags(['--experimental-quiet-gc'], {}).quietGC, true);
  t.throws(() => parseMemberFlags(['--experimental-quiet-gc=sometimes'], {}), /invalid boolean value "sometimes" for -experimental-quiet-gc/);
});

t.test('auth flags: simple tokens with a TTL in seconds, the bcrypt cost', async (t) => {
  const f = parseMemberFlags(['--auth-token', 'simple', '--auth-token-ttl=2', '--bcrypt-cost=4'], {});
  t.same([f.authTokenTTLMs, f.bcryptCost], [2000, 4]);
  t.equal(parseMemberFlags([], { ETCD_AUTH_TOKEN_TTL: '30' }).authTokenTTLMs, 30_000);
});

t.test('flags, = and space forms, and ETCD_ variables (a flag wins and the variable is reported)', async (t) => {
  const f = parseMemberFlags(
    ['--name', 'n1', '--initial-advertise-peer-urls=http://127.0.0.1:3380', '--initial-cluster', 'n1=http://127.0.0.1:3380,n2=http://127.0.0.1:4380', '-snapshot-count=5'],
    { ETCD_NAME: 'ignored', ETCD_DATA_DIR: '/tmp/d', ETCD_ELECTION_TIMEOUT: '2000', PATH: '/bin' },
  );
  t.same([f.name, f.dataDir, f.electionMs, f.snapshotCount, f.initialCluster.size], ['n1', '/tmp/d', 2000, 5, 2]);
  t.same(f.shadowed, ['ETCD_NAME']);
});

t.test('bad input: a clear error for each', async (t) => {
  const table: Array<[string[], Record<string, string>, RegExp]> = [
    [['--bogus'], {}, /flag provided but not defined: -bogus/],
    [['--name'], {}, /flag needs an argument: -name/],
    [['stray'], {}, /'stray' is not a valid flag/],
    [['--snapshot-count', 'ten'], {}, /invalid value "ten" for flag -snapshot-count/],
    [['--heartbeat-interval', '300'], {}, /should be at least as 5 times as --heartbeat-interval/],
    [['--initial-cluster-state', 'maybe'], {}, /valid values are "new", "existing"/],
    [['--name', 'x', '--initial-cluster', 'y=http://127.0.0.1:2380'], {}, /couldn't find local name "x"/],
    [['--initial-cluster', 'default=http://127.0.0.1:9999'], {}, /missing from --initial-advertise-peer-urls/],
    [['--listen-client-urls', 'localhost'], {}, /URL/],
    [['--listen-client-urls', 'ftp://h:1'], {}, /URL scheme must be http/],
    [['--listen-client-urls', 'https://127.0.0.1:2379'], {}, /TLS key\/cert \(--cert-file, --key-file\) must be provided for client url https:\/\/127\.0\.0\.1:2379 with HTTPS scheme/],
    [['--listen-metrics-urls', 'https://127.0.0.1:2381'], {}, /TLS key\/cert \(--cert-file, --key-file\) must be provided for metrics url/],
    [['--listen-peer-urls', 'https://127.0.0.1:2380', '--auto-tls'], {}, /TLS key\/cert \(--peer-cert-file, --peer-key-file\) must be provided for peer url https:\/\/127\.0\.0\.1:2380/],
    [['--cert-file', '/x.pem'], {}, /--cert-file and --key-file must both be given/],
    [['--peer-key-file', '/x-key.pem'], {}, /--peer-cert-file and --peer-key-file must both be given/],
    [['--client-cert-auth=maybe'], {}, /invalid boolean value "maybe" for -client-cert-auth/],
    [[], { ETCD_PEER_AUTO_TLS: 'yes' }, /invalid boolean value "yes" for -peer-auto-tls/],
    [['--auto-compaction-mode', 'daily'], {}, /unknown auto-compaction-mode/],
    [['--auto-compaction-retention', '1x'], {}, /invalid auto-compaction-retention/],
    [['--quota-backend-bytes', String(9 * 1024 ** 3)], {}, /exceeds maximum recommended quota/],
    [['--name', 'a', '--name', 'b'], {}, /given twice/],
    [[], { ETCD_NOT_A_FLAG: '1' }, /unrecognized environment variable ETCD_NOT_A_FLAG/],
    [['--auth-token', 'jwt,sign-method=RS256'], {}, /auth: invalid auth options.*jwt is not supported/],
    [['--auth-token', 'opaque'], {}, /auth: invalid auth options/],
    [['--auth-token-ttl', '0'], {}, /--auth-token-ttl must be > 0/],
  ];
  for (const [argv, env, re] of table) {
    t.throws(() => parseMemberFlags(argv, env), FlagError, argv.join(' ') || JSON.stringify(env));
    try {
      parseMemberFlags(argv, env);
    } catch (err) {
      t.match((err as Error).message, re);
    }
  }
});

t.test('TLS flags: https URLs with certificates or auto TLS; ignored settings are warned of', async (t) => {
  const f = parseMemberFlags(
    ['--listen-client-urls=https://127.0.0.1:2379', '--cert-file=/c.pem', '--key-file=/k.pem', '--trusted-ca-file=/ca.pem', '--client-cert-auth', '--listen-peer-urls=https://127.0.0.1:2380', '--peer-client-cert-auth=false'],
    { ETCD_PEER_AUTO_TLS: 'true' },
  );
  t.same(f.clientTLS, { certFile: '/c.pem', keyFile: '/k.pem', trustedCAFile: '/ca.pem', clientCertAuth: true, autoTLS: false });
  t.same(f.peerTLS, { certFile: '', keyFile: '', trustedCAFile: '', clientCertAuth: false, autoTLS: true });
  t.same(f.warnings, []);
  const plain = parseMemberFlags(['--cert-file=/c.pem', '--key-file=/k.pem'], {});
  t.match(plain.warnings, [/scheme is HTTP while client TLS flags are present/]);
  const both = parseMemberFlags(['--listen-peer-urls=https://127.0.0.1:2380', '--peer-auto-tls', '--peer-cert-file=/c.pem', '--peer-key-file=/k.pem'], {});
  t.match(both.warnings, [/ignoring peer auto TLS since certs given/]);
});

t.test('periodic retention: hours, or a Go duration', async (t) => {
  t.equal(parseRetention('1'), 3600_000);
  t.equal(parseRetention('30m'), 1800_000);
  t.equal(parseRetention('1h30m'), 5400_000);
  t.equal(parseRetention('1.5s'), 1500);
  t.equal(parseRetention('x'), undefined);
  t.equal(parseRetention(''), undefined);
});

t.test('Go durations, and --experimental-warning-apply-duration (etcd: 100ms)', async (t) => {
  t.equal(parseGoDuration('100ms'), 100);
  t.equal(parseGoDuration('1.5s'), 1500);
  t.equal(parseGoDuration('1h30m'), 5_400_000);
  t.equal(parseGoDuration('250us'), 0.25);
  t.equal(parseGoDuration('250µs'), 0.25);
  t.equal(parseGoDuration('1ns'), 1e-6);
  t.equal(parseGoDuration('.5s'), 500);
  t.equal(parseGoDuration('-2s'), -2000);
  t.equal(parseGoDuration('0'), 0);
  for (const bad of ['', '10', 'ms', '1x', '1.2.3s', '1s ', '--1s']) t.equal(parseGoDuration(bad), undefined, JSON.stringify(bad));
  t.equal(parseMemberFlags([], {}).warningApplyMs, 100);
  t.equal(parseMemberFlags(['--experimental-warning-apply-duration=250ms'], {}).warningApplyMs, 250);
  t.equal(parseMemberFlags([], { ETCD_EXPERIMENTAL_WARNING_APPLY_DURATION: '1s' }).warningApplyMs, 1000);
  t.throws(() => parseMemberFlags(['--experimental-warning-apply-duration=fast'], {}), new FlagError('invalid value "fast" for flag -experimental-warning-apply-duration: parse error'));
});
