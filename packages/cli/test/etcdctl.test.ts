// Debian's etcdctl 3.4 against three real `capstan member` processes on loopback.
import { spawn } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { ETCDCTL, etcdctl, freePortPairs, freePorts, healthy, hostPort, startMember, stopMember, threeMembers, until, type MemberProc } from './helpers/cluster.js';

if (ETCDCTL === undefined) {
  t.fail('etcdctl not found: npm test fetches it with scripts/fetch-etcd.sh');
} else {
  t.test('etcdctl against a three-member cluster', async (t) => {
    const dir = t.testdir();
    const members: MemberProc[] = (await threeMembers(dir)).map((m) => startMember(m));
    t.teardown(async () => {
      for (const m of members) await stopMember(m, 'SIGKILL');
    });
    await until('every member healthy', async () => (await Promise.all(members.map((m) => healthy(m.metrics)))).every(Boolean));
    const ep = members.map((m) => hostPort(m.client)).join(',');
    const one = hostPort(members[2]!.client);
    const ctl = (args: string[], input?: string): ReturnType<typeof etcdctl> => etcdctl(ep, args, { input });
    const ok = async (args: string[], input?: string): Promise<string> => {
      const r = await ctl(args, input);
      t.equal(r.code, 0, `etcdctl ${args.join(' ')} exits 0${r.code === 0 ? '' : `: ${r.stderr}`}`);
      return r.stdout;
    };

    t.test('put, get, del with their flags', async (t) => {
      t.equal(await ok(['put', 'foo', 'bar']), 'OK\n');
      t.equal(await ok(['put', 'foo', 'baz', '--prev-kv']), 'OK\nfoo\nbar\n');
      for (const k of ['a/1', 'a/2', 'a/3', 'b']) await ok(['put', k, `v-${k}`]);
      t.equal(await ok(['get', 'foo']), 'foo\nbaz\n');
      t.equal(await etcdctl(one, ['get', 'foo', '--consistency=s']).then((r) => r.stdout), 'foo\nbaz\n', 'serializable read on one member');
      t.equal(await ok(['get', 'a/', '--prefix', '--keys-only']), 'a/1\n\na/2\n\na/3\n\n');
      t.equal(await ok(['get', 'a/', '--prefix', '--limit=2', '--print-value-only']), 'v-a/1\nv-a/2\n');
      const count = JSON.parse(await ok(['get', 'a/', '--prefix', '--limit=1', '-w', 'json'])) as { count: number; more: boolean };
      t.same([count.count, count.more], [3, true], 'count and more as etcd reports them');
      t.equal(await ok(['get', 'a/', '--prefix', '--sort-by=KEY', '--order=DESCEND', '--keys-only']), 'a/3\n\na/2\n\na/1\n\n');
      t.equal(await ok(['get', 'a/3', '--from-key', '--keys-only']), 'a/3\n\nb\n\nfoo\n\n');
      t.equal(await ok(['get', 'foo', '--rev=2']), 'foo\nbar\n', 'the value at revision 2');
      const json = JSON.parse(await ok(['get', 'foo', '-w', 'json'])) as { kvs: Array<{ version: number; create_revision: number }> };
      t.same([json.kvs[0]!.version, json.kvs[0]!.create_revision], [2, 2]);
      t.equal(await ok(['del', 'a/', '--prefix', '--prev-kv']), '3\na/1\nv-a/1\na/2\nv-a/2\na/3\nv-a/3\n');
      t.equal(await ok(['del', 'nothing']), '0\n');
      const empty = await ctl(['put', '', 'x']);
      t.not(empty.code, 0);
      t.match(empty.stderr, /key is not provided/);
    });

    t.test('txn from interactive input', async (t) => {
      await ok(['put', 'user1', 'bad']);
      // After its three prompts, etcdctl prints the outcome and each response.
      const answer = (out: string): string => out.slice(out.indexOf('failure requests (get, put, del):\n') + 'failure requests (get, put, del):\n'.length);
      const out = await ok(['txn', '-i'], 'value("user1") = "bad"\n\ndel user1\nput result ok\n\nput result failed\n\n');
      t.equal(answer(out), 'SUCCESS\n\n1\n\nOK\n');
      t.equal(await ok(['get', 'result', '--print-value-only']), 'ok\n');
      const again = await ok(['txn', '-i'], 'value("user1") = "bad"\n\nput x 1\n\nput result failed\n\n');
      t.equal(answer(again), 'FAILURE\n\nOK\n');
    });

    t.test('watch with --rev, --prefix and --prev-kv', async (t) => {
      await ok(['put', 'w/x', '1']);
      const rev = (JSON.parse(await ok(['get', 'w/x', '-w', 'json'])) as { header: { revision: number } }).header.revision;
      await ok(['put', 'w/x', '2']);
      const p = spawn(ETCDCTL!, [`--endpoints=${ep}`, 'watch', 'w/', '--prefix', '--prev-kv', `--rev=${rev}`], { env: { ...process.env, ETCDCTL_API: '3' } });
      let out = '';
      p.stdout.on('data', (d: Buffer) => (out += d.toString()));
      await until('the catch-up events', () => out.includes('w/x\n2\n'));
      await ok(['del', 'w/x']);
      await until('the delete', () => out.includes('DELETE'));
      p.kill('SIGTERM');
      t.match(out, /^PUT\nw\/x\n1\nPUT\nw\/x\n1\nw\/x\n2\nDELETE\nw\/x\n(2\n)?w\/x\n/, 'puts from the past revision, then the delete with its previous value');
    });

    t.test('leases: grant, attach, time-to-live, list, keep-alive, revoke', async (t) => {
      const granted = await ok(['lease', 'grant', '60']);
      const m = /lease ([0-9a-f]+) granted with TTL\(60s\)/.exec(granted);
      t.ok(m, granted);
      const id = m![1]!;
      await ok(['put', 'leased', 'v', `--lease=${id}`]);
      const ttl = await ok(['lease', 'timetolive', id, '--keys']);
      t.match(ttl, new RegExp(`lease ${id} granted with TTL\\(60s\\), remaining\\(\\d+s\\), attached keys\\(\\[leased\\]\\)`));
      t.match(await ok(['lease', 'list']), new RegExp(`found 1 leases\\n${id}\\n`));
      t.match(await ok(['lease', 'keep-alive', '--once', id]), new RegExp(`lease ${id} keepalived with TTL\\(60\\)`));
      t.equal(await ok(['lease', 'revoke', id]), `lease ${id} revoked\n`);
      t.equal(await ok(['get', 'leased']), '', 'the attached key went with the lease');
      const gone = await ctl(['lease', 'timetolive', id]);
      t.match(gone.stdout, /already expired/);
    });

    t.test('cluster and maintenance', async (t) => {
      const list = (await ok(['member', 'list'])).trim().split('\n');
      t.equal(list.length, 3);
      for (const m of members) t.ok(list.some((l) => l.includes(`, started, ${m.name}, ${m.peer}, ${m.client}, false`)), `${m.name} listed: ${list.join(' | ')}`);
      const status = JSON.parse(await ok(['endpoint', 'status', '-w', 'json'])) as Array<{ Status: { leader: number; header: { member_id: number } } }>;
      t.equal(status.length, 3);
      t.equal(new Set(status.map((s) => s.Status.leader)).size, 1, 'every member names the same leader');
      const health = await ctl(['endpoint', 'health']);
      t.equal(health.code, 0);
      t.equal(health.stdout.concat(health.stderr).match(/is healthy: successfully committed proposal/g)?.length, 3, 'all three healthy');
      for (const m of members) {
        const h = (await (await fetch(`${m.client}/health`)).json()) as { health: string };
        t.equal(h.health, 'true', `/health on ${m.name}'s client URL, beside gRPC`);
      }
      t.same(await (await fetch(`${members[0]!.client}/version`)).json(), { etcdserver: '3.5.0', etcdcluster: '3.5.0' });
      const hashes = JSON.parse(await ok(['endpoint', 'hashkv', '-w', 'json'])) as Array<{ HashKV: { hash: number } }>;
      t.equal(new Set(hashes.map((h) => h.HashKV.hash)).size, 1, 'HashKV equal on every member');
      const file = join(dir, 'snap.db');
      t.match(await etcdctl(one, ['snapshot', 'save', file]).then((r) => r.stdout + r.stderr), /Snapshot saved at/);
      t.ok(existsSync(file) && statSync(file).size > 0, 'the snapshot file is written');
      t.equal(await ok(['alarm', 'list']), '');
      t.match(await etcdctl(one, ['defrag']).then((r) => r.stdout), /Finished defragmenting etcd member/);
      const rev = (JSON.parse(await ok(['get', 'foo', '-w', 'json'])) as { header: { revision: number } }).header.revision;
      t.equal(await ok(['compaction', String(rev)]), `compacted revision ${rev}\n`);
      const old = await ctl(['get', 'foo', '--rev=2']);
      t.not(old.code, 0);
      t.match(old.stderr, /etcdserver: mvcc: required revision has been compacted/);
    });

    t.test('URL endpoints: per-endpoint commands send the URL as :authority, which is served', async (t) => {
      const urls = members.map((m) => m.client).join(',');
      const status = await etcdctl(urls, ['endpoint', 'status', '-w', 'json']);
      t.equal(status.code, 0, status.stderr);
      t.same(
        (JSON.parse(status.stdout) as Array<{ Endpoint: string }>).map((s) => s.Endpoint),
        members.map((m) => m.client),
      );
      const file = join(dir, 'snap-url.db');
      const save = await etcdctl(members[0]!.client, ['snapshot', 'save', file]);
      t.match(save.stdout + save.stderr, /Snapshot saved at/);
      t.ok(existsSync(file) && statSync(file).size > 0, 'the snapshot file is written');
    });

    t.test('move-leader', async (t) => {
      const status = JSON.parse(await ok(['endpoint', 'status', '-w', 'json'])) as Array<{ Endpoint: string; Status: { leader: number; header: { member_id: number } } }>;
      const leader = status.find((s) => s.Status.header.member_id === s.Status.leader)!;
      const target = status.find((s) => s.Status.header.member_id !== s.Status.leader)!;
      const hex = BigInt(target.Status.header.member_id).toString(16);
      const r = await etcdctl(leader.Endpoint, ['move-leader', hex]);
      t.match(r.stdout, new RegExp(`Leadership transferred from ${BigInt(leader.Status.leader).toString(16)} to ${hex}`), r.stderr);
    });

    t.test('member add --learner, start it, promote, update, remove', async (t) => {
      const [clientPort] = await freePorts(1);
      const [peerPort] = await freePortPairs(1);
      const peer = `http://127.0.0.1:${peerPort}`;
      const client = `http://127.0.0.1:${clientPort}`;
      const added = await ok(['member', 'add', 'm4', '--learner', `--peer-urls=${peer}`]);
      const id = /Member\s+([0-9a-f]+) added to cluster/.exec(added)?.[1];
      t.ok(id, added);
      t.match(added, new RegExp(`ETCD_INITIAL_CLUSTER_STATE="existing"`));
      const cluster = /ETCD_INITIAL_CLUSTER="([^"]+)"/.exec(added)![1]!;
      t.match((await ok(['member', 'list'])), new RegExp(`${id}, unstarted, , ${peer}, , true`), 'listed as an unstarted learner');
      const m4 = startMember({
        name: 'm4',
        client,
        peer,
        metrics: `http://127.0.0.1:${peerPort! + 1}`,
        args: [
          '--name=m4',
          `--data-dir=${join(dir, 'm4')}`,
          `--listen-client-urls=${client}`,
          `--advertise-client-urls=${client}`,
          `--listen-peer-urls=${peer}`,
          `--initial-advertise-peer-urls=${peer}`,
          `--initial-cluster=${cluster}`,
          '--initial-cluster-state=existing',
          '--initial-cluster-token=e2e',
          `--listen-metrics-urls=http://127.0.0.1:${peerPort! + 1}`,
          '--heartbeat-interval=50',
          '--election-timeout=500',
        ],
      });
      members.push(m4);
      // Polled with ctl, not ok: an assertion per poll made the test's count vary from run to run.
      await until('the learner started and published itself', async () => {
        const r = await ctl(['member', 'list']);
        return r.code === 0 && r.stdout.includes(`${id}, started, m4, ${peer}, ${client}, true`);
      });
      await until('the learner has the data', async () => (await etcdctl(hostPort(client), ['get', 'foo', '--consistency=s', '--print-value-only'])).stdout === 'baz\n');
      t.match(await ok(['member', 'promote', id!]), new RegExp(`Member\\s+${id} promoted in cluster`));
      t.match(await ok(['member', 'list']), new RegExp(`${id}, started, m4, ${peer}, ${client}, false`), 'a voter now');
      t.equal(await etcdctl(hostPort(client), ['get', 'foo', '--print-value-only']).then((r) => r.stdout), 'baz\n', 'it serves linearizable reads');
      const again = await ctl(['member', 'promote', id!]);
      t.match(again.stderr, /can only promote a learner member/);
      t.match(await ok(['member', 'update', id!, `--peer-urls=${peer}`]), new RegExp(`Member\\s+${id} updated in cluster`));
      const dupe = await ctl(['member', 'add', 'm5', `--peer-urls=${peer}`]);
      t.match(dupe.stderr, /Peer URLs already exists/);
      t.match(await ok(['member', 'remove', id!]), new RegExp(`Member\\s+${id} removed from cluster`));
      const code = await new Promise<number | null>((resolve) => {
        if (m4.proc.exitCode !== null) resolve(m4.proc.exitCode);
        else m4.proc.once('exit', (c) => resolve(c));
      });
      t.equal(code, 0, 'the removed member stops by itself');
      t.equal((await ok(['member', 'list'])).trim().split('\n').length, 3);
      const missing = await ctl(['member', 'remove', id!]);
      t.match(missing.stderr, /member not found/);
      t.match(await ok(['put', 'after-remove', '1']), /OK/, 'the cluster goes on');
    });

    t.test('lock and elect', async (t) => {
      const holder = spawn(ETCDCTL!, [`--endpoints=${ep}`, 'lock', 'mylock'], { env: { ...process.env, ETCDCTL_API: '3' } });
      let held = '';
      holder.stdout.on('data', (d: Buffer) => (held += d.toString()));
      await until('the lock', () => held.startsWith('mylock/'));
      const contender = await etcdctl(ep, ['lock', 'mylock', '--ttl=1', 'echo', 'got-it'], { timeoutMs: 1500 });
      t.equal(contender.stdout, '', 'a second holder waits while the first holds it');
      holder.kill('SIGINT');
      await new Promise((r) => holder.once('exit', r));
      const next = await etcdctl(ep, ['lock', 'mylock', 'echo', 'got-it']);
      t.equal(next.stdout.trim(), 'got-it', 'then it gets it');
      const elect = spawn(ETCDCTL!, [`--endpoints=${ep}`, 'elect', 'myelection', 'p1'], { env: { ...process.env, ETCDCTL_API: '3' } });
      let elected = '';
      elect.stdout.on('data', (d: Buffer) => (elected += d.toString()));
      await until('the election', () => elected.includes('p1'));
      t.match(elected, /^myelection\/[0-9a-f]+\np1\n/);
      const leaderNow = await etcdctl(ep, ['elect', '-l', 'myelection'], { timeoutMs: 3000 });
      t.match(leaderNow.stdout, /^myelection\/[0-9a-f]+\np1\n/, 'elect -l observes the leader');
      elect.kill('SIGINT');
      await new Promise((r) => elect.once('exit', r));
    });
  });
}
