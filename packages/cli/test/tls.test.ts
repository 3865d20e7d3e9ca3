// TLS end to end: real `capstan member` processes with https client and peer URLs, Debian's
// etcdctl 3.4 and the etcd3 npm client with client certificates; refused clients and peers; auto
// TLS; `capstan up --tls`. Certificates come from @capstan/server's certs module.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { createCA, ensureClusterCerts, issueCert, writeKeyPair, type ClusterCertFiles } from '@capstan/server';
import { Etcd3 } from 'etcd3';
import t, { type Test } from 'tap';
import { FlagError, parseMemberFlags } from '../src/flags.js';
import { memberTunables } from '../src/memberenv.js';
import { etcdctlTLSArgs, memberTLS } from '../src/tls.js';
import { ETCDCTL, MAIN, etcdctl, freePortPairs, freePorts, healthy, hostPort, startMember, stopMember, threeMembers, until, type MemberProc } from './helpers/cluster.js';

const NAMES = ['m1', 'm2', 'm3'];

async function startCluster(t: Test, members: Array<Omit<MemberProc, 'proc' | 'log'>>): Promise<MemberProc[]> {
  const procs = members.map((m) => startMember(m));
  t.teardown(async () => {
    for (const m of procs) await stopMember(m, 'SIGKILL');
    // A failure is easier to read with what the members said.
    if (!t.passing()) for (const m of procs) t.comment(`${m.name} log (last 40 lines):\n${m.log.join('').split('\n').slice(-40).join('\n')}`);
  });
  return procs;
}

/** A member's certificate files for the test helpers, from ensureClusterCerts' layout. */
const certsOf = (c: ClusterCertFiles) => (name: string) => ({ ...c.members.get(name)!, caFile: c.caFile });

/** An etcd3 client over TLS; `client` false leaves out the client certificate. */
async function etcd3Client(host: string | string[], c: ClusterCertFiles, opts: { caFile?: string; client?: boolean } = {}): Promise<Etcd3> {
  return new Etcd3({
    hosts: host,
    credentials: {
      rootCertificate: await readFile(opts.caFile ?? c.caFile),
      ...(opts.client !== false ? { privateKey: await readFile(c.client.keyFile), certChain: await readFile(c.client.certFile) } : {}),
    },
    dialTimeout: 2000,
  });
}

function isJSON(line: string): boolean {
  try {
    JSON.parse(line);
    return true;
  } catch {
    return false;
  }
}

/** The processes whose parent is `ppid` (from /proc/<pid>/stat: the field after the state). */
function childrenOf(ppid: number): number[] {
  const kids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue; // gone since the listing
    }
    // The command name (in parentheses) may hold spaces: the fields after it are state, ppid, ...
    const [, parent] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(parent) === ppid) kids.push(Number(name));
  }
  return kids;
}

function environOf(pid: number): Record<string, string> {
  const env: Record<string, string> = {};
  for (const kv of readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0')) {
    const eq = kv.indexOf('=');
    if (eq > 0) env[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  return env;
}

const rejected = (m: MemberProc): boolean => m.log.join('').includes('"msg":"rejected connection"');

t.test('bad TLS flags and files: a clear error naming the flag or file', async (t) => {
  const dir = t.testdir();
  const c = await ensureClusterCerts(join(dir, 'tls'), ['m1']);
  const m1 = c.members.get('m1')!;
  await writeFile(join(dir, 'garbage.pem'), 'not a certificate\n');
  const https = ['--listen-client-urls=https://127.0.0.1:2379', '--advertise-client-urls=https://127.0.0.1:2379', `--data-dir=${join(dir, 'd')}`];
  const cases: Array<[string[], RegExp]> = [
    [['--cert-file', join(dir, 'missing.pem'), '--key-file', m1.keyFile], /--cert-file: cannot read ".*missing\.pem": ENOENT/],
    [['--cert-file', m1.certFile, '--key-file', c.client.keyFile], /--cert-file ".*m1\.pem" and --key-file ".*client-key\.pem": .*key values mismatch/],
    [['--cert-file', join(dir, 'garbage.pem'), '--key-file', m1.keyFile], /--cert-file ".*garbage\.pem" and --key-file/],
    [['--cert-file', m1.certFile, '--key-file', m1.keyFile, '--trusted-ca-file', join(dir, 'garbage.pem')], /--trusted-ca-file ".*garbage\.pem": no PEM certificate/],
    [['--auto-tls', '--peer-cert-file', m1.certFile, '--peer-key-file', m1.keyFile, '--peer-trusted-ca-file', join(dir, 'nope')], /--peer-trusted-ca-file: cannot read ".*nope"/],
  ];
  for (const [argv, re] of cases) {
    const err = await Promise.resolve(parse([...https, ...argv])).then(memberTLS).then(
      () => undefined,
      (e: unknown) => e,
    );
    t.type(err, FlagError, argv.map((a) => basename(a)).join(' '));
    t.match((err as Error).message, re);
  }
  const ok = await memberTLS(parse([...https, '--cert-file', m1.certFile, '--key-file', m1.keyFile, '--trusted-ca-file', c.caFile]));
  t.equal(ok.clientTLS?.clientCertAuth, true, 'a trusted CA file alone requires client certificates, as etcd');
  t.equal(ok.peerTLS, undefined, 'no peer TLS given');
  const auto = await memberTLS(parse([...https, '--auto-tls']));
  t.same([auto.clientTLS?.selfSigned, auto.clientTLS?.clientCertAuth], [true, false]);
  t.ok(existsSync(join(dir, 'd', 'fixtures', 'client', 'cert.pem')), 'auto TLS writes <data-dir>/fixtures/client');

  function parse(argv: string[]): ReturnType<typeof parseMemberFlags> {
    return parseMemberFlags(argv, {});
  }
});

if (ETCDCTL === undefined) {
  t.fail('etcdctl not found: npm test fetches it with scripts/fetch-etcd.sh');
} else {
  t.test('a three-member TLS cluster: etcdctl and etcd3 with client certificates', async (t) => {
    const dir = t.testdir();
    const c = await ensureClusterCerts(join(dir, 'tls'), NAMES);
    const members = await startCluster(t, await threeMembers(dir, [], { certs: certsOf(c) }));
    await until('every member healthy', async () => (await Promise.all(members.map((m) => healthy(m.metrics)))).every(Boolean));
    const ep = members.map((m) => hostPort(m.client)).join(',');
    const one = hostPort(members[0]!.client);
    const tlsArgs = etcdctlTLSArgs(c.caFile, c.client);

    t.test('etcdctl with --cacert, --cert and --key', async (t) => {
      const put = await etcdctl(ep, [...tlsArgs, 'put', 'secure', 'yes']);
      t.equal(put.code, 0, put.code === 0 ? 'put exits 0' : put.stderr);
      t.equal(put.stdout, 'OK\n');
      t.equal((await etcdctl(ep, [...tlsArgs, 'get', 'secure', '--print-value-only'])).stdout, 'yes\n');
      const health = await etcdctl(ep, [...tlsArgs, 'endpoint', 'health']);
      t.equal(health.code, 0, health.code === 0 ? 'endpoint health exits 0' : health.stderr);
      t.equal((health.stdout + health.stderr).match(/is healthy/g)?.length, 3, 'each endpoint healthy over TLS');
      const list = JSON.parse((await etcdctl(one, [...tlsArgs, 'member', 'list', '-w', 'json'])).stdout) as { members: Array<{ name: string; peerURLs: string[]; clientURLs: string[] }> };
      t.same(
        list.members.map((m) => [m.name, m.peerURLs[0]!.slice(0, 8), m.clientURLs[0]!.slice(0, 8)]).sort(),
        NAMES.map((n) => [n, 'https://', 'https://']),
        'members advertise https peer and client URLs',
      );
    });

    t.test('etcdctl refused: no client certificate, a client certificate from another CA, an unknown server CA, plaintext', async (t) => {
      const other = await createCA('other CA');
      const stranger = await issueCert(other, { commonName: 'root', usage: 'client' });
      await writeKeyPair(join(dir, 'stranger.pem'), join(dir, 'stranger-key.pem'), stranger);
      await writeFile(join(dir, 'other-ca.pem'), other.cert);
      const tries: Array<[string, string[]]> = [
        ['no client certificate', [`--cacert=${c.caFile}`]],
        ['a client certificate signed by another CA', [`--cacert=${c.caFile}`, `--cert=${join(dir, 'stranger.pem')}`, `--key=${join(dir, 'stranger-key.pem')}`]],
        ['a CA that did not sign the server certificate', etcdctlTLSArgs(join(dir, 'other-ca.pem'), c.client)],
        ['no TLS at all', []],
      ];
      for (const [what, args] of tries) {
        const r = await etcdctl(one, [...args, '--dial-timeout=1s', '--command-timeout=2s', 'put', 'refused', what]);
        t.not(r.code, 0, `${what}: refused (${r.stderr.trim().split('\n').pop()})`);
      }
      await until('the member logging the refused handshakes', () => rejected(members[0]!));
      t.ok(rejected(members[0]!), 'the member logged the refused handshakes');
      const get = await etcdctl(ep, [...tlsArgs, 'get', 'refused', '--print-value-only']);
      t.equal(get.stdout, '', 'no refused put went through');
      const notJSON = members.flatMap((m) => m.log.join('').split('\n')).filter((l) => l !== '' && !isJSON(l));
      t.same(notJSON, [], 'every log line of the TLS members is JSON');
    });

    t.test('the etcd3 client with TLS credentials', async (t) => {
      const client = await etcd3Client(members.map((m) => m.client), c);
      t.teardown(() => client.close());
      await client.put('etcd3/tls').value('ok');
      t.equal(await client.get('etcd3/tls').string(), 'ok');
      const w = await client.watch().key('etcd3/w').create();
      const seen = new Promise<string>((resolve) => w.on('put', (kv) => resolve(kv.value.toString())));
      await client.put('etcd3/w').value('event');
      t.equal(await seen, 'event', 'a watch over TLS');
      await w.cancel();

      const noCert = await etcd3Client(members[0]!.client, c, { client: false });
      t.teardown(() => noCert.close());
      await t.rejects(noCert.get('etcd3/tls').string(), 'without a client certificate: refused');
      await writeFile(join(dir, 'other-ca-2.pem'), (await createCA('another')).cert);
      const wrongCA = await etcd3Client(members[0]!.client, c, { caFile: join(dir, 'other-ca-2.pem') });
      t.teardown(() => wrongCA.close());
      await t.rejects(wrongCA.get('etcd3/tls').string(), 'trusting another CA: the server is refused');
    });

    t.test("with auth enabled, a verified client certificate's CN is the user (no --user)", async (t) => {
      const ca = { cert: await readFile(c.caFile, 'utf8'), key: await readFile(join(c.dir, 'ca-key.pem'), 'utf8') };
      const aliceFiles = { certFile: join(dir, 'alice.pem'), keyFile: join(dir, 'alice-key.pem') };
      await writeKeyPair(aliceFiles.certFile, aliceFiles.keyFile, await issueCert(ca, { commonName: 'alice', usage: 'client' }));
      const asRoot = tlsArgs; // client.pem: CN=root
      const asAlice = etcdctlTLSArgs(c.caFile, aliceFiles);
      const run = async (who: string[], args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> => etcdctl(ep, [...who, ...args]);
      const ok = async (who: string[], args: string[]): Promise<string> => {
        const r = await run(who, args);
        t.equal(r.code, 0, `etcdctl ${args.join(' ')} exits 0${r.code === 0 ? '' : `: ${r.stderr}`}`);
        return r.stdout;
      };
      await ok(asRoot, ['user', 'add', 'root:cn-test-root-pw']);
      await ok(asRoot, ['user', 'add', 'alice', '--no-password']);
      await ok(asRoot, ['role', 'add', 'cn']);
      await ok(asRoot, ['role', 'grant-permission', 'cn', 'readwrite', 'cn/', '--prefix']);
      await ok(asRoot, ['user', 'grant-role', 'alice', 'cn']);
      t.equal(await ok(asRoot, ['auth', 'enable']), 'Authentication Enabled\n');
      t.teardown(async () => void (await run(asRoot, ['auth', 'disable'])));

      t.equal(await ok(asRoot, ['put', 'root-only', 'r']), 'OK\n', 'CN=root may write anywhere');
      t.equal(await ok(asAlice, ['put', 'cn/a', '1']), 'OK\n', 'CN=alice may write under cn/');
      t.equal(await ok(asAlice, ['get', 'cn/a', '--print-value-only']), '1\n');
      const denied = await run(asAlice, ['get', 'root-only']);
      t.not(denied.code, 0, 'CN=alice may not read outside cn/');
      t.match(denied.stderr, /etcdserver: permission denied/);
      const asUser = await run(asAlice, ['--user=root:cn-test-root-pw', 'get', 'root-only', '--print-value-only']);
      t.equal(asUser.stdout, 'r\n', 'a token (--user) wins over the certificate');
      const wrong = await run(asAlice, ['--user=root:wrong', 'get', 'root-only']);
      t.match(wrong.stderr, /etcdserver: authentication failed, invalid user ID or password/, 'and a wrong password is not rescued by it');
      t.equal(await ok(asRoot, ['auth', 'disable']), 'Authentication Disabled\n', 'CN=root may disable auth');
    });
  });

  t.test('a peer whose certificate another CA signed can neither join nor send raft messages', async (t) => {
    const dir = t.testdir();
    const c = await ensureClusterCerts(join(dir, 'tls'), NAMES);
    const other = await createCA('rogue CA');
    const rogue = { certFile: join(dir, 'rogue-m3.pem'), keyFile: join(dir, 'rogue-m3-key.pem'), caFile: c.caFile };
    // The same name and hosts as m3's real certificate, and m3 trusts the cluster's CA: only the signer differs.
    await writeKeyPair(rogue.certFile, rogue.keyFile, await issueCert(other, { commonName: 'm3', hosts: ['127.0.0.1', 'localhost'] }));
    await writeFile(join(dir, 'rogue-ca.pem'), other.cert);
    const members = await startCluster(t, await threeMembers(dir, [], { certs: (n) => (n === 'm3' ? rogue : certsOf(c)(n)) }));
    const [m1, m2, m3] = members as [MemberProc, MemberProc, MemberProc];
    await until('m1 and m2 healthy (a leader and a quorum without m3)', async () => (await healthy(m1.metrics)) && (await healthy(m2.metrics)));
    const good = [m1, m2].map((m) => hostPort(m.client)).join(',');
    const tlsArgs = etcdctlTLSArgs(c.caFile, c.client);
    const put = await etcdctl(good, [...tlsArgs, 'put', 'k', 'v']);
    t.equal(put.code, 0, `m1 and m2 serve writes: ${put.stderr}`);
    // Each side refuses the other: m1 and m2 the certificate m3 presents as a client, m3's
    // handshakes fail as m1 and m2 refuse the certificate it serves with.
    await until('m1 or m2 logging a refused connection', () => rejected(m1) || rejected(m2));
    await until('m3 logging a refused connection', () => rejected(m3));
    t.ok((rejected(m1) || rejected(m2)) && rejected(m3), 'refused handshakes logged on both sides');
    t.equal(await healthy(m3.metrics), false, 'm3 has no leader');
    t.match(await (await fetch(`${m3.metrics}/metrics`)).text(), /^etcd_server_has_leader 0$/m);
    // m3 serves clients with its rogue certificate, so this read trusts the rogue CA.
    const read = await etcdctl(hostPort(m3.client), [...etcdctlTLSArgs(join(dir, 'rogue-ca.pem'), c.client), 'get', 'k', '--consistency=s', '-w', 'json']);
    t.equal(read.code, 0, read.stderr);
    t.equal((JSON.parse(read.stdout) as { kvs?: unknown[] }).kvs, undefined, 'm3 never applied the write');
    const list = JSON.parse((await etcdctl(good, [...tlsArgs, 'member', 'list', '-w', 'json'])).stdout) as { members: Array<{ name?: string; peerURLs: string[]; clientURLs?: string[] }> };
    const published = list.members.filter((m) => (m.clientURLs ?? []).length > 0).map((m) => m.name);
    t.same(published.sort(), ['m1', 'm2'], 'm3 never published its client URLs through the log: only m1 and m2 did');
  });

  t.test('--auto-tls and --peer-auto-tls: self-signed certificates made at start', async (t) => {
    const dir = t.testdir();
    const members = await startCluster(t, await threeMembers(dir, ['--auto-tls', '--peer-auto-tls'], { scheme: 'https' }));
    await until('every member healthy', async () => (await Promise.all(members.map((m) => healthy(m.metrics)))).every(Boolean));
    for (const side of ['client', 'peer']) t.ok(existsSync(join(dir, 'm1', 'fixtures', side, 'cert.pem')), `m1's fixtures/${side}/cert.pem`);
    const ep = members.map((m) => hostPort(m.client)).join(',');
    const insecure = ['--insecure-transport=false', '--insecure-skip-tls-verify'];
    t.equal((await etcdctl(ep, [...insecure, 'put', 'auto', 'tls'])).stdout, 'OK\n');
    t.equal((await etcdctl(ep, [...insecure, 'get', 'auto', '--print-value-only'])).stdout, 'tls\n');
    const verifying = await etcdctl(hostPort(members[0]!.client), ['--insecure-transport=false', '--dial-timeout=1s', '--command-timeout=2s', 'get', 'auto']);
    t.not(verifying.code, 0, 'a client that verifies the self-signed certificate refuses it');
  });

  t.test('capstan up --tls', async (t) => {
    const dir = t.testdir();
    const clientPorts = await freePorts(3);
    const peerPorts = await freePortPairs(3);
    const run = (extra: string[]): ReturnType<typeof spawn> =>
      spawn(process.execPath, [MAIN, 'up', `--data-dir=${dir}`, `--client-ports=${clientPorts.join(',')}`, `--peer-ports=${peerPorts.join(',')}`, ...extra], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
    const up = run(['--tls']);
    const exited = new Promise<number | null>((resolve) => up.once('exit', (code) => resolve(code)));
    t.teardown(async () => {
      if (up.exitCode === null && up.signalCode === null) up.kill('SIGTERM');
      await exited;
    });
    let out = '';
    up.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    up.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    await until('capstan up prints the etcdctl flags', () => /etcdctl flags: .*\n/.test(out), 30_000);
    t.match(out, /capstan up: ready: 3 members, endpoints https:\/\/127\.0\.0\.1:/);
    const members = childrenOf(up.pid!);
    t.equal(members.length, 3, 'capstan up runs three member processes');
    for (const pid of members) t.equal(environOf(pid).GLIBC_TUNABLES, memberTunables(process.env.GLIBC_TUNABLES), `member ${pid} starts with malloc in huge pages`);
    const flags = /etcdctl flags: (.*)\n/.exec(out)![1]!.split(' ');
    t.same(flags[0], `--endpoints=${clientPorts.map((p) => `127.0.0.1:${p}`).join(',')}`);
    t.same(flags.slice(1), etcdctlTLSArgs(join(dir, 'tls', 'ca.pem'), { certFile: join(dir, 'tls', 'client.pem'), keyFile: join(dir, 'tls', 'client-key.pem') }));
    const ep = flags[0]!.slice('--endpoints='.length);
    const put = await etcdctl(ep, [...flags.slice(1), 'put', 'up', 'tls']);
    t.equal(put.code, 0, put.stderr);
    t.equal((await etcdctl(ep, [...flags.slice(1), 'get', 'up', '--print-value-only'])).stdout, 'tls\n');
    t.not((await etcdctl(ep, [`--cacert=${join(dir, 'tls', 'ca.pem')}`, '--dial-timeout=1s', '--command-timeout=2s', 'get', 'up'])).code, 0, 'client certificates are required');
    const status = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const p = spawn(process.execPath, [MAIN, 'status', `--endpoints=${ep}`, ...flags.slice(1)], { stdio: ['ignore', 'pipe', 'pipe'] });
      let s = '';
      p.stdout.on('data', (d: Buffer) => (s += d.toString()));
      p.stderr.on('data', (d: Buffer) => (s += d.toString()));
      p.on('exit', (code) => resolve({ code, out: s }));
    });
    t.equal(status.code, 0, status.code === 0 ? 'capstan status exits 0' : status.out);
    t.equal(status.out.match(/\| infra\d /g)?.length, 3, 'capstan status reads every member over TLS');
    t.notMatch(status.out, /DeprecationWarning/, "no warning about grpc-js's IP servername");
    up.kill('SIGTERM');
    t.equal(await exited, 0, 'capstan up stops its members and exits 0');
    const plain = run([]);
    let err = '';
    plain.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    t.equal(await new Promise((resolve) => plain.once('exit', resolve)), 1, 'up without --tls on a TLS data dir');
    t.match(err, /started with --tls; run capstan up --tls/);
  });
}
