/**
 * The Auth service and the checks of the other services over an in-process member (no Raft): the
 * user from a token or from a client certificate's CN, etcd 3.4's codes for the calls it checks
 * (and leaves unchecked), and what reaches the log (a hash, never a password).
 */
import type { PeerCertificate } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import t, { type Test as Tap } from 'tap';
import { AuthGate, certCommonName, rawClient, rawWatch } from '../src/grpc/index.js';
import { serveLocal } from './helpers/local-member.js';

const h = await serveLocal({ tokenTTLMs: 60_000, services: { bcryptCost: 4 } });
t.teardown(() => h.stop());
const S = grpc.status;

const client = (service: string, token?: string): ReturnType<typeof rawClient>['call'] => {
  const c = rawClient(h.addr, service, { token });
  t.teardown(() => c.client.close());
  return c.call;
};

async function rejects(p: Promise<unknown>, code: grpc.status, details: string, tt: Tap = t): Promise<void> {
  await tt.rejects(p, { code, details }, details);
}

const auth = client('Auth');
await auth.UserAdd!({ name: 'root', password: 'rootpw' });
await auth.UserGrantRole!({ user: 'root', role: 'root' });
await auth.UserAdd!({ name: 'alice', password: 'alicepw' });
await auth.UserAdd!({ name: 'cn-only', options: { noPassword: true } });
await auth.RoleAdd!({ name: 'r1' });
await auth.RoleGrantPermission!({ name: 'r1', perm: { permType: 2, key: Buffer.from('k/'), rangeEnd: Buffer.from('k0') } });
await auth.UserGrantRole!({ user: 'alice', role: 'r1' });
await auth.AuthEnable!({});
const rootToken = (await auth.Authenticate!({ name: 'root', password: 'rootpw' })).token as string;
const aliceToken = (await auth.Authenticate!({ name: 'alice', password: 'alicepw' })).token as string;

t.test('the log holds bcrypt hashes, never a password', async (t) => {
  const adds = h.member.proposed.filter((r) => r.authUserAdd !== undefined);
  t.equal(adds.length, 3);
  for (const r of adds) {
    t.notOk('password' in r.authUserAdd!, 'no password field');
    if (r.authUserAdd!.noPassword !== true) t.match(r.authUserAdd!.hashedPassword, /^\$2[aby]\$04\$/, 'a bcrypt hash at --bcrypt-cost 4');
  }
  t.notOk(JSON.stringify(h.member.proposed).includes('alicepw'), 'no proposal carries the password');
});

t.test('Auth service: status, lookups for oneself, no-password users', async (t) => {
  await rejects(auth.AuthStatus!({}), S.INVALID_ARGUMENT, 'etcdserver: user name is empty', t);
  const st = await client('Auth', rootToken).AuthStatus!({});
  t.same([st.enabled, st.authRevision], [true, h.member.sm.auth.revision]);
  const asAlice = client('Auth', aliceToken);
  t.same((await asAlice.UserGet!({ name: 'alice' })).roles, ['r1']);
  t.equal((await asAlice.RoleGet!({ role: 'r1' })).perm[0].key.toString(), 'k/');
  await rejects(asAlice.UserGet!({ name: 'root' }), S.PERMISSION_DENIED, 'etcdserver: permission denied', t);
  await rejects(asAlice.RoleList!({}), S.PERMISSION_DENIED, 'etcdserver: permission denied', t);
  await rejects(asAlice.UserAdd!({ name: 'x', password: 'y' }), S.PERMISSION_DENIED, 'etcdserver: permission denied', t);
  await rejects(auth.Authenticate!({ name: 'cn-only', password: 'x' }), S.UNKNOWN, 'auth: authentication failed, password was given for no password user', t);
  await rejects(auth.Authenticate!({ name: 'alice', password: 'x' }), S.INVALID_ARGUMENT, 'etcdserver: authentication failed, invalid user ID or password', t);
});

t.test("etcd 3.4's checks: maintenance answers unconverted, leases and status unchecked, membership for root", async (t) => {
  const maint = client('Maintenance');
  await rejects(maint.Hash!({}), S.UNKNOWN, 'auth: user name is empty', t);
  await rejects(client('Maintenance', aliceToken).HashKV!({ revision: 0 }), S.UNKNOWN, 'auth: permission denied', t);
  await rejects(client('Maintenance', 'bogus.1').Defragment!({}), S.UNKNOWN, 'auth: invalid auth token', t);
  t.ok((await client('Maintenance', rootToken).HashKV!({ revision: 0 })).header, 'root may hash');
  t.ok((await maint.Status!({})).header, 'status needs no user');
  const lease = client('Lease');
  const g = await lease.LeaseGrant!({ TTL: 60 });
  t.ok(g.ID > 0n, 'a grant needs no user');
  t.equal((await lease.LeaseTimeToLive!({ ID: g.ID })).grantedTTL, 60);
  // A revoke needs write permission on the lease's keys (none yet: anyone may, as in etcd 3.4).
  await client('KV', rootToken).Put!({ key: Buffer.from('other'), value: Buffer.from('v'), lease: g.ID });
  await rejects(lease.LeaseRevoke!({ ID: g.ID }), S.INVALID_ARGUMENT, 'etcdserver: user name is empty', t);
  await rejects(client('Lease', aliceToken).LeaseRevoke!({ ID: g.ID }), S.PERMISSION_DENIED, 'etcdserver: permission denied', t);
  await client('Lease', rootToken).LeaseRevoke!({ ID: g.ID });
  t.equal((await client('Cluster').MemberList!({})).members.length, 1);
  await rejects(client('Cluster', aliceToken).MemberAdd!({ peerURLs: ['http://127.0.0.1:9'] }), S.PERMISSION_DENIED, 'etcdserver: permission denied', t);
  await rejects(client('KV', 'no-dot').Range!({ key: Buffer.from('k/1') }), S.UNAUTHENTICATED, 'etcdserver: invalid auth token', t);
});

t.test('a watch refused on one key leaves the stream open for the next', async (t) => {
  const w = rawWatch(h.addr, { token: aliceToken });
  t.teardown(() => w.close());
  w.call.write({ msg: { createRequest: { key: Buffer.from('other') } }, size: 0 });
  const no = await w.next();
  t.same([no.created, no.canceled, no.watchId, no.cancelReason], [true, true, -1, 'rpc error: code = PermissionDenied desc = etcdserver: permission denied']);
  w.call.write({ msg: { createRequest: { key: Buffer.from('k/'), rangeEnd: Buffer.from('k0') } }, size: 0 });
  const yes = await w.next();
  t.same([yes.created, yes.canceled], [true, false]);
  await client('KV', aliceToken).Put!({ key: Buffer.from('k/1'), value: Buffer.from('v') });
  const ev = await w.next();
  t.equal(ev.events[0].kv.key.toString(), 'k/1');
});

t.test("with --client-cert-auth a call without a token is its certificate's CN", async (t) => {
  // A fake call stands for one whose TLS connection presented a verified certificate (the real
  // thing is in packages/cli's TLS test).
  const md = new grpc.Metadata();
  const tlsWith = (CN: string) => ({ transportSecurityType: 'ssl', sslPeerCertificate: { subject: { CN } } as PeerCertificate });
  const withCert = { metadata: md, getAuthContext: () => tlsWith('cn-only') };
  t.equal(certCommonName(withCert), 'cn-only');
  t.equal(certCommonName({ getAuthContext: () => null }), undefined, 'a call without an auth context (plain TCP)');
  t.equal(certCommonName({ getAuthContext: () => ({ transportSecurityType: 'ssl' }) }), undefined, 'TLS without a client certificate');
  const rev = h.member.sm.auth.revision;
  t.same(await new AuthGate(h.member, { bcryptCost: 4, clientCertAuth: true }).info(withCert), { username: 'cn-only', revision: rev });
  t.equal(await new AuthGate(h.member, { bcryptCost: 4 }).info(withCert), undefined, 'ignored without --client-cert-auth');
  const tokenMd = new grpc.Metadata();
  tokenMd.set('token', aliceToken);
  t.same(await new AuthGate(h.member, { bcryptCost: 4, clientCertAuth: true }).info({ ...withCert, metadata: tokenMd }), { username: 'alice', revision: rev }, 'a token wins over the certificate');
  const gate = new AuthGate(h.member, { bcryptCost: 4, clientCertAuth: true });
  await t.rejects(gate.checkRange(withCert, Buffer.from('k/1')), { message: 'etcdserver: permission denied' }, 'the CN user has no role yet');
  await client('Auth', rootToken).UserGrantRole!({ user: 'cn-only', role: 'r1' });
  await t.resolves(gate.checkRange(withCert, Buffer.from('k/1')), 'granted r1, the CN user may read k/');
});
