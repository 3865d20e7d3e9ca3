import t, { type Test } from 'tap';
import { Backend } from '../src/backend.js';
import { MvccError } from '../src/errors.js';
import { EXPIRED_LEASE_RETRY_MS, Lessor, MAX_LEASE_TTL, type LessorOptions } from '../src/lessor.js';
import { leaseKey } from '../src/revision.js';

/** A lessor on a fresh LevelDB and a clock the test moves by hand. */
async function setup(t: Test, opts: Partial<LessorOptions> = {}) {
  const dir = t.testdir();
  const clock = { ms: 1_000_000 };
  const now = () => clock.ms;
  const backend = await Backend.open(dir);
  t.teardown(() => backend.close());
  const lessor = await Lessor.load(backend, { minTTL: 2, now, ...opts });
  return { dir, clock, now, backend, lessor };
}

function kind(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return e instanceof MvccError ? e.kind : `not an MvccError: ${String(e)}`;
  }
  return undefined;
}

t.test('grant, lookup, attach and revoke returning sorted keys', async (t) => {
  const { lessor, backend } = await setup(t);
  const l = lessor.grant(7n, 10);
  t.equal(l.ID, 7n);
  t.equal(l.ttl, 10);
  t.equal(lessor.lookup(7n), l);
  t.equal(lessor.lookup(8n), undefined);
  t.ok(backend.getSync(leaseKey(7n)), 'record staged');
  for (const k of ['zeta', 'alpha', '\xff', 'mid', 'alpha']) lessor.attach(7n, k);
  t.equal(kind(() => lessor.attach(8n, 'x')), 'ErrLeaseNotFound');
  t.equal(lessor.detach(7n, 'mid'), true);
  t.equal(lessor.detach(7n, 'mid'), false);
  t.equal(lessor.detach(99n, 'mid'), false, 'detach from a gone lease is not an error');
  t.same(lessor.revoke(7n), ['alpha', 'zeta', '\xff']);
  t.equal(lessor.lookup(7n), undefined);
  t.equal(backend.getSync(leaseKey(7n)), undefined, 'record deleted');
  t.equal(kind(() => lessor.revoke(7n)), 'ErrLeaseNotFound');
});

t.test('a TTL below the minimum is raised to it', async (t) => {
  const { lessor } = await setup(t, { minTTL: 5 });
  t.equal(lessor.grant(1n, 1).ttl, 5);
  t.equal(lessor.grant(2n, 0).ttl, 5);
  t.equal(lessor.grant(3n, 6).ttl, 6);
});

t.test('grant rejects a too-large TTL, a duplicate ID and ID 0', async (t) => {
  const { lessor } = await setup(t);
  t.equal(kind(() => lessor.grant(1n, MAX_LEASE_TTL + 1)), 'ErrLeaseTTLTooLarge');
  t.equal(lessor.grant(1n, MAX_LEASE_TTL).ttl, MAX_LEASE_TTL);
  t.equal(kind(() => lessor.grant(1n, 5)), 'ErrLeaseExist');
  t.equal(lessor.lookup(1n)?.ttl, MAX_LEASE_TTL, 'the duplicate did not replace the lease');
  t.equal(kind(() => lessor.grant(0n, 5)), 'ErrLeaseNotFound');
  t.same(lessor.leases(), [1n]);
});

t.test('renew only on the primary; an expired lease cannot be renewed', async (t) => {
  const { lessor, clock } = await setup(t);
  lessor.grant(1n, 10);
  t.equal(kind(() => lessor.renew(1n)), 'ErrNotPrimary');
  lessor.promote(0);
  t.equal(kind(() => lessor.renew(2n)), 'ErrLeaseNotFound');
  clock.ms += 9_000;
  t.equal(lessor.renew(1n), 10);
  t.equal(lessor.remaining(1n), 10_000, 'expiry reset to now + TTL');
  clock.ms += 10_000;
  t.equal(kind(() => lessor.renew(1n)), 'ErrLeaseNotFound', 'expired: its revoke is on the way');
  lessor.demote();
  t.equal(kind(() => lessor.renew(1n)), 'ErrNotPrimary');
});

t.test('expired: ordered by expiry then ID, limited, not repeated while a revoke is in flight', async (t) => {
  const { lessor, clock } = await setup(t);
  lessor.promote(0);
  lessor.grant(30n, 5);
  lessor.grant(10n, 5);
  lessor.grant(20n, 3);
  lessor.grant(40n, 60);
  t.same(lessor.expired(10), [], 'nothing expired yet');
  clock.ms += 3_000;
  t.same(lessor.expired(10), [20n], 'expiry is inclusive');
  clock.ms += 2_000;
  t.same(lessor.expired(1), [10n], 'limit');
  t.same(lessor.expired(10), [30n], 'the rest; 20 and 10 wait for their retry');
  t.ok(lessor.lookup(10n), 'expired does not remove');
  lessor.revoke(10n);
  clock.ms += EXPIRED_LEASE_RETRY_MS;
  t.same(lessor.expired(10), [20n, 30n], 'unrevoked ones reported again');
  lessor.demote();
  clock.ms += 100_000;
  t.same(lessor.expired(10), [], 'a non-primary reports nothing');
  t.equal(lessor.remaining(40n), Infinity);
});

t.test('a lease granted on a non-primary never expires until promote', async (t) => {
  const { lessor, clock } = await setup(t);
  const l = lessor.grant(1n, 5);
  t.equal(l.expiry, Infinity);
  clock.ms += 3_600_000;
  lessor.promote(0);
  t.same(lessor.expired(10), []);
  t.equal(lessor.remaining(1n), 5_000);
});

t.test('promote extends every expiry; demote makes them never', async (t) => {
  const { lessor, clock } = await setup(t);
  lessor.grant(1n, 10);
  lessor.grant(2n, 20);
  lessor.checkpoint(2n, 4);
  lessor.promote(1_500);
  t.equal(lessor.isPrimary, true);
  t.equal(lessor.lookup(1n)?.expiry, clock.ms + 11_500);
  t.equal(lessor.lookup(2n)?.expiry, clock.ms + 5_500, 'from the checkpointed remaining TTL');
  clock.ms += 10_000;
  t.same(lessor.expired(10), [2n]);
  lessor.demote();
  t.equal(lessor.isPrimary, false);
  t.equal(lessor.lookup(1n)?.expiry, Infinity);
});

t.test('promote spreads a pile of same-time expiries over seconds', async (t) => {
  const { lessor, clock } = await setup(t, { revokeRate: 8 });
  for (let i = 1n; i <= 12n; i++) lessor.grant(i, 10);
  lessor.promote(0);
  // 3/4 of 8 = 6 per second keep their expiry; the rest are pushed back.
  const expiries = lessor.leases().map((id) => lessor.lookup(id)!.expiry - clock.ms);
  t.same(expiries.slice(0, 6), [10_000, 10_000, 10_000, 10_000, 10_000, 10_000]);
  // etcd's rateDelay: 1 s × expires / 6 for the 7th to 12th.
  t.same(
    expiries.slice(6).map((e) => Math.round(e)),
    [7, 8, 9, 10, 11, 12].map((n) => Math.round(10_000 + (1000 * n) / 6)),
  );
  clock.ms += 10_000;
  t.equal(lessor.expired(100).length, 6);
});

t.test('checkpoint persists the remaining TTL across a restart', async (t) => {
  const { lessor, backend, dir, clock, now } = await setup(t);
  lessor.grant(1n, 60);
  lessor.grant(2n, 30);
  lessor.attach(1n, 'k');
  lessor.checkpoint(1n, 7);
  lessor.checkpoint(99n, 7); // absent: ignored
  t.equal(lessor.lookup(1n)?.remainingTTL, 7);
  await backend.close();

  const reopened = await Backend.open(dir);
  t.teardown(() => reopened.close());
  const loaded = await Lessor.load(reopened, { minTTL: 2, now });
  t.same(loaded.leases(), [1n, 2n]);
  t.equal(loaded.lookup(1n)?.ttl, 60);
  t.equal(loaded.lookup(1n)?.remainingTTL, 7);
  t.equal(loaded.lookup(1n)?.keys.size, 0, 'attachments come back from the store, not from here');
  t.equal(loaded.lookup(1n)?.expiry, Infinity, 'loaded leases never expire until promote');
  loaded.promote(1_000);
  t.equal(loaded.lookup(1n)?.expiry, clock.ms + 8_000);
  t.equal(loaded.lookup(2n)?.expiry, clock.ms + 31_000);
});

t.test('load raises stored TTLs to the minimum; a revoked lease stays gone', async (t) => {
  const { lessor, backend, dir, now } = await setup(t);
  lessor.grant(1n, 3);
  lessor.grant(2n, 3);
  lessor.revoke(2n);
  await backend.close();
  const reopened = await Backend.open(dir);
  t.teardown(() => reopened.close());
  const loaded = await Lessor.load(reopened, { minTTL: 10, now });
  t.same(loaded.leases(), [1n]);
  t.equal(loaded.lookup(1n)?.ttl, 10);
});

t.test('renew writes nothing: only what the log applies reaches the backend', async (t) => {
  const { lessor, backend } = await setup(t);
  lessor.grant(1n, 10);
  lessor.checkpoint(1n, 4);
  const before = backend.getSync(leaseKey(1n));
  lessor.promote(0);
  lessor.renew(1n);
  t.same(backend.getSync(leaseKey(1n)), before);
  t.equal(lessor.lookup(1n)?.remainingTTL, 0);
});

t.test('expired matches a brute-force model under random grants, renews and revokes', async (t) => {
  const { lessor, clock } = await setup(t, { expiredRetryMs: 700 });
  lessor.promote(0);
  const due = new Map<bigint, { due: number; ttl: number }>();
  // mulberry32: an LCG's low bits cycle too fast for `% n`.
  let seed = 12345;
  const rand = (n: number) => {
    seed = (seed + 0x6d2b79f5) | 0;
    let x = Math.imul(seed ^ (seed >>> 15), seed | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) % n;
  };
  let mismatches = 0;
  let reported = 0;
  for (let step = 0; step < 3000; step++) {
    const id = BigInt(1 + rand(60));
    const op = rand(10);
    if (op < 3 && !due.has(id)) {
      const ttl = 2 + rand(8);
      lessor.grant(id, ttl);
      due.set(id, { due: clock.ms + ttl * 1000, ttl });
    } else if (op < 6 && due.has(id) && due.get(id)!.due > clock.ms && lessor.remaining(id)! > 0) {
      lessor.renew(id);
      due.get(id)!.due = clock.ms + due.get(id)!.ttl * 1000;
    } else if (op < 7 && due.has(id)) {
      lessor.revoke(id);
      due.delete(id);
    } else if (op < 9) {
      clock.ms += rand(1500);
    } else {
      const limit = 1 + rand(5);
      const want = [...due.entries()]
        .filter(([, v]) => v.due <= clock.ms)
        .sort(([a, x], [b, y]) => x.due - y.due || (a < b ? -1 : 1))
        .slice(0, limit)
        .map(([k]) => k);
      for (const k of want) due.get(k)!.due = clock.ms + 700;
      const got = lessor.expired(limit);
      reported += got.length;
      if (JSON.stringify(got.map(String)) !== JSON.stringify(want.map(String))) mismatches++;
    }
  }
  t.equal(mismatches, 0);
  t.ok(reported > 100, `the model saw expiries (${reported})`);
  t.same(lessor.leases(), [...due.keys()].sort((a, b) => (a < b ? -1 : 1)));
});

t.test('checkpoint on the primary keeps the expiry a keepalive set', async (t) => {
  const { lessor, clock } = await setup(t);
  lessor.grant(1n, 10);
  lessor.promote(0);
  clock.ms += 6_000;
  const [cp] = lessor.checkpoints(10);
  t.same(cp, { ID: 1n, remaining_TTL: 4 });
  lessor.renew(1n); // between proposing the checkpoint and applying it
  lessor.checkpoint(1n, 4);
  t.equal(lessor.remaining(1n), 10_000);
});

t.test('checkpoints: leases with remaining below TTL, rounded up; renewed ones cleared', async (t) => {
  const { lessor, clock } = await setup(t);
  t.same(lessor.checkpoints(10), [], 'none on a non-primary');
  lessor.grant(2n, 10);
  lessor.grant(1n, 20);
  lessor.grant(3n, 5);
  lessor.promote(0);
  t.same(lessor.checkpoints(10), [], 'all at full TTL');
  clock.ms += 4_500;
  t.same(lessor.checkpoints(10), [
    { ID: 1n, remaining_TTL: 16 },
    { ID: 2n, remaining_TTL: 6 },
    { ID: 3n, remaining_TTL: 1 },
  ]);
  lessor.checkpoint(2n, 6);
  lessor.renew(2n);
  t.equal(lessor.lookup(2n)?.remainingTTL, 0, 'renew clears the checkpoint');
  clock.ms += 600; // lease 3 has expired: not worth checkpointing
  t.same(lessor.checkpoints(10), [
    { ID: 1n, remaining_TTL: 15 },
    { ID: 2n, remaining_TTL: 0 },
  ]);
});

t.test('checkpoints: a limit rotates through the leases', async (t) => {
  const { lessor, clock } = await setup(t);
  for (let i = 1n; i <= 3n; i++) lessor.grant(i, 10);
  lessor.promote(0);
  clock.ms += 2_000;
  t.same(lessor.checkpoints(2).map((c) => c.ID), [1n, 2n]);
  t.same(lessor.checkpoints(2).map((c) => c.ID), [3n, 1n]);
});

t.test('timeToLive', async (t) => {
  const { lessor, clock } = await setup(t);
  lessor.grant(5n, 10);
  lessor.attach(5n, 'b');
  lessor.attach(5n, 'a');
  t.same(lessor.timeToLive(6n, true), { ID: 6n, TTL: -1, grantedTTL: 0, keys: [] });
  t.same(lessor.timeToLive(5n, false), { ID: 5n, TTL: 10, grantedTTL: 10, keys: [] }, 'non-primary: the TTL');
  lessor.checkpoint(5n, 3);
  t.equal(lessor.timeToLive(5n, false).TTL, 3, 'non-primary: the checkpoint');
  lessor.promote(0);
  clock.ms += 1_700;
  const ttl = lessor.timeToLive(5n, true);
  t.equal(ttl.TTL, 1, 'truncated');
  t.equal(ttl.grantedTTL, 10);
  t.same(ttl.keys, [Buffer.from('a'), Buffer.from('b')]);
  clock.ms += 1_000;
  t.ok(Object.is(lessor.timeToLive(5n, false).TTL, 0), 'no -0');
});

t.test('leases() is sorted by ID', async (t) => {
  const { lessor } = await setup(t);
  for (const id of [300n, -4n, 2n ** 62n, 1n]) lessor.grant(id, 5);
  t.same(lessor.leases(), [-4n, 1n, 300n, 2n ** 62n]);
  lessor.revoke(300n);
  t.same(lessor.leases(), [-4n, 1n, 2n ** 62n]);
});

t.test('recover replaces leases with what the backend holds', async (t) => {
  const { lessor, backend } = await setup(t);
  lessor.grant(1n, 5);
  lessor.grant(2n, 5);
  lessor.attach(1n, 'k');
  backend.del(leaseKey(2n)); // as if a snapshot without lease 2 were restored
  lessor.promote(0);
  await lessor.recover();
  t.same(lessor.leases(), [1n]);
  t.equal(lessor.lookup(1n)?.keys.size, 0);
  t.ok(Number.isFinite(lessor.lookup(1n)!.expiry), 'still primary: expiries set');
});
