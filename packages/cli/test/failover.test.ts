// Kill the leader (SIGKILL) of three real member processes under a steady write load from the
// etcd3 npm client: writes resume under a new leader, no acknowledged write is lost, and the
// killed member restarts from its data dir and catches up (by log, and by snapshot when
// --snapshot-count is small).
import t from 'tap';
import { Etcd3 } from 'etcd3';
import { etcdctl, healthy, hostPort, startMember, stopMember, threeMembers, until, type MemberProc } from './helpers/cluster.js';

const ELECTION_MS = 500;

async function leaderOf(members: MemberProc[]): Promise<MemberProc> {
  for (;;) {
    for (const m of members) {
      if (m.proc.exitCode !== null || m.proc.signalCode !== null) continue;
      const c = new Etcd3({ hosts: m.client, dialTimeout: 1000 });
      try {
        const s = await c.maintenance.status();
        if (s.leader !== '0' && s.leader === s.header.member_id) return m;
      } catch {
        // not answering yet
      } finally {
        c.close();
      }
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

for (const snapshotCount of [100_000, 20]) {
  t.test(`leader killed under load, restarted, catches up (snapshot-count ${snapshotCount})`, async (t) => {
    const dir = t.testdir();
    const specs = await threeMembers(dir, [`--snapshot-count=${snapshotCount}`, '--experimental-snapshot-catchup-entries=10']);
    const members: MemberProc[] = specs.map((m) => startMember(m));
    t.teardown(async () => {
      for (const m of members) await stopMember(m, 'SIGKILL');
    });
    await until('every member healthy', async () => (await Promise.all(members.map((m) => healthy(m.metrics)))).every(Boolean));
    const client = new Etcd3({ hosts: members.map((m) => m.client), dialTimeout: 1000 });
    t.teardown(() => client.close());
    const leader = await leaderOf(members);
    const others = members.filter((m) => m !== leader);
    const survivor = new Etcd3({ hosts: others.map((m) => m.client), dialTimeout: 1000 });
    t.teardown(() => survivor.close());

    const acked: string[] = [];
    const unknown: string[] = [];
    let stop = false;
    let killedAt = 0;
    let firstAfterKill = 0;
    const load = (async () => {
      for (let i = 0; !stop; i++) {
        const key = `load/${String(i).padStart(6, '0')}`;
        const started = Date.now();
        try {
          // A write to the member being killed hangs until the client gives up on it; its outcome
          // is then unknown. The timeout only bounds the load's stall, it is not an assertion.
          await withTimeout((killedAt === 0 ? client : survivor).put(key).value(`v${i}`).exec(), 1000);
          acked.push(key);
          if (killedAt !== 0 && started > killedAt && firstAfterKill === 0) firstAfterKill = Date.now();
        } catch {
          unknown.push(key);
          await new Promise((r) => setTimeout(r, 20));
        }
      }
    })();
    await until('some writes', () => acked.length >= 50);
    leader.proc.kill('SIGKILL');
    killedAt = Date.now();
    await new Promise((r) => leader.proc.once('exit', r));
    await until('writes after the kill', () => firstAfterKill !== 0, 20_000);
    const gap = firstAfterKill - killedAt;
    t.comment(`first acknowledged write ${gap} ms after the leader was killed (election timeout ${ELECTION_MS} ms)`);
    t.ok(gap > 0, `writes resumed under a new leader after ${gap} ms`);
    await until('more writes under the new leader', () => acked.length >= 150, 30_000);
    stop = true;
    await load;

    const got = await survivor.getAll().prefix('load/').keys();
    const have = new Set(got);
    const lost = acked.filter((k) => !have.has(k));
    t.same(lost, [], `all ${acked.length} acknowledged writes are there (${unknown.length} had unknown outcomes)`);

    // Restart the killed member from its data dir; it must catch up.
    const idx = members.indexOf(leader);
    members[idx] = startMember(specs[idx]!);
    const back = members[idx]!;
    await until('the restarted member healthy', () => healthy(back.metrics));
    const direct = new Etcd3({ hosts: back.client, dialTimeout: 1000 });
    t.teardown(() => direct.close());
    // A put that timed out on the client may still commit after `got` was read: compare with
    // what must be there, not with a snapshot of a store that may still move.
    const mine = new Set(await direct.getAll().prefix('load/').keys());
    t.same(acked.filter((k) => !mine.has(k)), [], 'the restarted member has every acknowledged write (a linearizable read waits for it to catch up)');
    t.ok(mine.size >= got.length, `and everything the survivors had before (${mine.size} >= ${got.length})`);
    const rev = Number((await survivor.maintenance.status()).header.revision);
    const hk = await etcdctl(members.map((m) => hostPort(m.client)).join(','), ['endpoint', 'hashkv', `--rev=${rev}`, '-w', 'json']);
    const hashes = (JSON.parse(hk.stdout) as Array<{ HashKV: { hash: number } }>).map((h) => h.HashKV.hash);
    t.equal(hashes.length, 3, hk.stderr);
    t.equal(new Set(hashes).size, 1, `HashKV at revision ${rev} equal on all three members`);
    const bySnapshot = back.log.join('').includes('installed snapshot from leader');
    t.equal(bySnapshot, snapshotCount < 100, snapshotCount < 100 ? 'it caught up by snapshot' : 'it caught up by log alone');
  });
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e as Error);
      },
    );
  });
}
