// ChaosCluster on both targets (Capstan and Debian's etcd 3.4): three real members whose peer
// traffic goes through the proxies; the leader isolated and healed, a follower paused, a member
// SIGKILLed and restarted, a follower cut off inbound only, a bridge. And how a proxy tells which
// process dialed it.
import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { noop } from 'cockatiel';
import { Etcd3 } from 'etcd3';
import { memberTunables } from '@capstan/cli/member-env';
import { ChaosCluster, dialerOf, type Target } from '../src/cluster.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const CALL_MS = 2000;

function client(endpoints: string | string[]): Etcd3 {
  return new Etcd3({ hosts: endpoints, dialTimeout: CALL_MS, faultHandling: { host: () => noop, global: noop } });
}

const deadline = (): { deadline: number } => ({ deadline: Date.now() + CALL_MS });

/** Retries fn until it succeeds or ms pass; returns its last error message on failure. */
async function eventually<T>(fn: () => Promise<T>, ms = 15_000): Promise<{ ok: true; value: T } | { ok: false; error: string }> {
  const end = Date.now() + ms;
  let error = '';
  for (;;) {
    try {
      return { ok: true, value: await fn() };
    } catch (err) {
      error = String(err);
    }
    if (Date.now() > end) return { ok: false, error };
    await sleep(100);
  }
}

/** Until member i, read locally (serializable), has key = want. */
async function caughtUp(c: Etcd3, key: string, want: string, ms = 15_000): Promise<boolean> {
  const r = await eventually(async () => {
    const v = await c.get(key).serializable(true).options(deadline()).string();
    if (v !== want) throw new Error(`has ${v}`);
  }, ms);
  return r.ok;
}

async function put(c: Etcd3, key: string, value: string): Promise<{ ok: boolean; error?: string }> {
  const r = await eventually(() => c.put(key).value(value).options(deadline()).exec());
  return r.ok ? { ok: true } : { ok: false, error: r.error };
}

async function start(t: Test, target: Target): Promise<{ c: ChaosCluster; clients: Etcd3[] }> {
  const c = await ChaosCluster.start({ target, members: 3, resultsDir: t.testdir() });
  t.teardown(() => c.close());
  const clients = c.clientEndpoints().map((e) => client(e));
  t.teardown(() => {
    for (const x of clients) x.close();
  });
  return { c, clients };
}

for (const target of ['capstan', 'etcd'] as const) {
  t.test(`${target}: isolate the leader, heal, pause a follower, kill and restart a member`, async (t) => {
    const { c, clients } = await start(t, target);
    const all = client(c.clientEndpoints());
    t.teardown(() => all.close());
    if (target === 'capstan') {
      // As `capstan up` starts them: malloc's heap in huge pages.
      const tunables = `GLIBC_TUNABLES=${memberTunables(process.env.GLIBC_TUNABLES)}\0`;
      t.ok(readFileSync(`/proc/${c.pid(0)}/environ`, 'latin1').includes(tunables), 'a member starts with GLIBC_TUNABLES set');
    }

    t.ok((await put(all, 'k', 'v1')).ok, 'a write through the proxied cluster');
    t.equal(await all.get('k').options(deadline()).string(), 'v1');
    const l = await c.leader();
    t.ok(l !== undefined, `a leader (${l})`);
    const old = l!;
    const others = [0, 1, 2].filter((i) => i !== old);

    // The leader cut off both ways: the others elect another and take writes without it.
    c.isolate(old);
    t.ok(c.isCut(old, others[0]!) && c.isCut(others[1]!, old));
    let l2: number | undefined;
    const elected = await eventually(async () => {
      l2 = await c.leader({ among: others, timeoutMs: 1000 });
      if (l2 === undefined || l2 === old) throw new Error(`leader ${l2}`);
    });
    t.ok(elected.ok, `the others elect a new leader (${l2})`);
    const w2 = await put(clients[l2!]!, 'k', 'v2');
    t.ok(w2.ok, `the majority takes a write ${w2.error ?? ''}`);
    t.not(await clients[old]!.get('k').serializable(true).options(deadline()).string(), 'v2', 'the isolated member did not get it');
    c.heal();
    t.ok(await caughtUp(clients[old]!, 'k', 'v2'), 'healed, the old leader catches up');

    // A follower paused: writes go on; resumed, it catches up.
    const l3 = await c.leader();
    t.ok(l3 !== undefined);
    const f = [0, 1, 2].find((i) => i !== l3)!;
    c.stop(f);
    t.ok(c.isPaused(f) && c.isRunning(f));
    t.ok((await put(clients[l3!]!, 'k', 'v3')).ok, 'writes go on while a follower is stopped');
    c.cont(f);
    t.notOk(c.isPaused(f));
    t.ok(await caughtUp(clients[f]!, 'k', 'v3'), 'resumed, the follower catches up');

    // A member SIGKILLed: writes go on; restarted on its data, it catches up.
    const victim = f;
    const pid = c.pid(victim);
    await c.kill(victim);
    t.notOk(c.isRunning(victim), 'killed');
    const alive = [0, 1, 2].filter((i) => i !== victim);
    const survivors = client(alive.map((i) => c.clientEndpoints()[i]!));
    t.teardown(() => survivors.close());
    t.ok((await put(survivors, 'k', 'v4')).ok, 'writes go on with a member down');
    await c.restart(victim);
    t.ok(c.isRunning(victim) && c.pid(victim) !== pid, 'restarted as a new process');
    t.ok(await caughtUp(clients[victim]!, 'k', 'v4'), 'restarted, it catches up');
    const sources = new Set(c.proxyStats().flatMap((s) => Object.keys(s.accepted)));
    if (target === 'capstan') {
      t.equal(c.unidentified(), 0, 'every peer connection was attributed to a member');
      t.same([...sources].sort(), ['0', '1', '2'], 'each member dialed through the proxies');
    } else {
      // etcd's prober opens short-lived peer connections that can close before /proc shows who
      // made them (seen under a loaded CI machine: 2 of them); unattributed connections are
      // refused while a cut touches their destination, so partitions stay whole.
      for (const m of ['0', '1', '2']) t.ok(sources.has(m), `member ${m} dialed through the proxies`);
    }
  });

  t.test(`${target}: a follower cut off inbound only; a bridge; delayed links`, async (t) => {
    const { c, clients } = await start(t, target);
    const l = (await c.leader())!;
    t.ok(l !== undefined);
    const f = [0, 1, 2].find((i) => i !== l)!;
    t.ok((await put(clients[l]!, 'a', '1')).ok);
    t.ok(await caughtUp(clients[f]!, 'a', '1'));

    // Nothing reaches f (what it sends still leaves): the others go on, f falls behind.
    c.isolate(f, 'inbound');
    t.ok(c.isCut(l, f) && !c.isCut(f, l));
    const majority = client([0, 1, 2].filter((i) => i !== f).map((i) => c.clientEndpoints()[i]!));
    t.teardown(() => majority.close());
    const w = await put(majority, 'a', '2');
    t.ok(w.ok, `the others take a write ${w.error ?? ''}`);
    await sleep(500);
    t.equal(await clients[f]!.get('a').serializable(true).options(deadline()).string(), '1', 'the member cut off inbound did not get it');
    c.heal();
    t.ok(await caughtUp(clients[f]!, 'a', '2'), 'healed, it catches up');

    // A bridge: two members that cannot reach each other, both reaching the third.
    const bridge = (await c.leader())!;
    const { left, right } = c.bridge(bridge);
    t.same([...left, ...right].sort(), [0, 1, 2].filter((i) => i !== bridge));
    t.ok(c.isCut(left[0]!, right[0]!) && c.isCut(right[0]!, left[0]!) && !c.isCut(bridge, left[0]!) && !c.isCut(right[0]!, bridge));
    const all = client(c.clientEndpoints());
    t.teardown(() => all.close());
    t.ok((await put(all, 'a', '3')).ok, 'the bridged cluster takes writes');
    t.ok(await caughtUp(clients[bridge]!, 'a', '3'), 'the bridge member has the write');
    c.heal();
    for (const i of [0, 1, 2]) t.ok(await caughtUp(clients[i]!, 'a', '3'), `healed, member ${i} has it`);

    // Every link delayed: a write needs the leader's append to reach a follower and its ack to
    // come back, so it takes at least two delays (a lower bound only).
    const l2 = (await c.leader())!;
    t.ok((await put(clients[l2]!, 'a', '4')).ok);
    const D = 100;
    c.delay(D);
    const begin = performance.now();
    const leaderClient = clients[l2]!;
    await leaderClient.put('a').value('5').options({ deadline: Date.now() + 10_000 }).exec();
    const took = performance.now() - begin;
    t.ok(took >= 2 * D, `a write over delayed links took ${took.toFixed(0)} ms`);
    c.heal();
    t.equal(c.unidentified(), 0);
  });
}

t.test('dialerOf: the process that dialed a connection, from /proc', async (t) => {
  const accepted: Socket[] = [];
  const server = createServer((s) => accepted.push(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const child = spawn(process.execPath, ['-e', `require('net').connect(${port}, '127.0.0.1'); setTimeout(() => {}, 30000)`], { stdio: 'ignore' });
  t.teardown(() => {
    child.kill('SIGKILL');
    for (const s of accepted) s.destroy();
    server.close();
  });
  const start = Date.now();
  while (accepted.length === 0 && Date.now() - start < 10_000) await sleep(20);
  t.equal(accepted.length, 1, 'the child connected');
  t.equal(await dialerOf(accepted[0]!, new Map([['self', process.pid], ['child', child.pid!]])), 'child');
  t.equal(await dialerOf(accepted[0]!, new Map([['self', process.pid]])), undefined, 'not found among other processes');
});

t.test('without peer proxies (bench/): members dial each other directly and links cannot be cut', async (t) => {
  const c = await ChaosCluster.start({ target: 'capstan', members: 3, resultsDir: t.testdir(), peerProxies: false });
  t.teardown(() => c.close());
  const all = client(c.clientEndpoints());
  t.teardown(() => all.close());
  t.ok((await put(all, 'k', 'direct')).ok, 'a write replicated over direct peer links');
  const log = readFileSync(c.logPath(0), 'utf8');
  for (let i = 0; i < 3; i++) t.match(log, new RegExp(`m${i}=${c.peerURL(i).replace(/[.]/g, '\\.')}`), `m${i}'s advertised peer URL is its own listener`);
  t.same(c.proxyStats(), [], 'no proxies');
  t.throws(() => c.cutLink(0, 1), /without peer proxies/);
  t.throws(() => c.delay(50), /without peer proxies/);
  t.notOk(c.isCut(0, 1), 'the refused cut left nothing behind');
  t.ok((await put(all, 'k', 'still')).ok, 'the cluster still takes writes');
});
