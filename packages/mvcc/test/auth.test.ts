// The auth store applied from log entries: users, roles, permissions, the enable rules, tokens
// with their TTL, and everything surviving a restart and a snapshot restore.
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { hashPassword, PermissionType, StateMachine, type ApplyRequest, type ApplyResult, type AuthHeader } from '../src/index.js';

const b = (s: string): Buffer => Buffer.from(s);
/** The lowest bcrypt cost, for speed; the cost is a parameter of the hash, not of the check. */
const COST = 4;

interface Harness {
  sm: StateMachine;
  index: number;
  clock: number;
  apply(req: ApplyRequest): ApplyResult;
  /** Applies and expects success. */
  ok(req: ApplyRequest): unknown;
  /** Applies and returns the error message (fails the test if it succeeded). */
  err(req: ApplyRequest): string;
}

let dirs = 0;
async function open(t: Test, dir = join(t.testdir(), `sm-${++dirs}`), tokenTTLMs = 10_000): Promise<Harness> {
  const h = {} as Harness;
  h.clock = 0;
  h.sm = await StateMachine.open(dir, { now: () => h.clock, tokenTTLMs });
  h.index = h.sm.consistentIndex;
  t.teardown(() => h.sm.close());
  h.apply = (req) => h.sm.apply(++h.index, req);
  h.ok = (req) => {
    const r = h.apply(req);
    if (r.kind !== 'ok') throw new Error(`expected success, got ${r.kind === 'error' ? r.error.message : r.kind}`);
    return r.response;
  };
  h.err = (req) => {
    const r = h.apply(req);
    if (r.kind !== 'error') throw new Error(`expected an error, got ${r.kind}`);
    return r.error.message;
  };
  return h;
}

const as = (username: string, authRevision: number): AuthHeader => ({ username, authRevision });
const perm = (permType: PermissionType, key: string, rangeEnd = ''): { permType: PermissionType; key: Buffer; rangeEnd: Buffer } => ({
  permType,
  key: b(key),
  rangeEnd: rangeEnd === '\0' ? Buffer.of(0) : b(rangeEnd),
});

/** root (with the root role) and alice (role r1), auth enabled. */
async function withUsers(h: Harness): Promise<void> {
  h.ok({ authUserAdd: { name: 'root', hashedPassword: await hashPassword('rootpw', COST) } });
  h.ok({ authUserGrantRole: { user: 'root', role: 'root' } });
  h.ok({ authUserAdd: { name: 'alice', hashedPassword: await hashPassword('alicepw', COST) } });
  h.ok({ authRoleAdd: { name: 'r1' } });
  h.ok({ authUserGrantRole: { user: 'alice', role: 'r1' } });
  h.ok({ authEnable: {} });
}

t.test('enabling needs a root user holding the root role', async (t) => {
  const h = await open(t);
  t.equal(h.err({ authEnable: {} }), 'etcdserver: root user does not exist');
  h.ok({ authUserAdd: { name: 'root', hashedPassword: await hashPassword('pw', COST) } });
  t.equal(h.err({ authEnable: {} }), 'etcdserver: root user does not have root role');
  h.ok({ authUserGrantRole: { user: 'root', role: 'root' } });
  h.ok({ authEnable: {} });
  t.equal(h.sm.auth.isEnabled, true);
  h.ok({ authEnable: {} });
  t.equal(h.err({ authUserRevokeRole: { name: 'root', role: 'root' }, header: as('root', h.sm.auth.revision) }), 'etcdserver: invalid auth management');
  t.equal(h.err({ authUserDelete: { name: 'root' }, header: as('root', h.sm.auth.revision) }), 'etcdserver: invalid auth management');
  t.equal(h.err({ authRoleDelete: { role: 'root' }, header: as('root', h.sm.auth.revision) }), 'etcdserver: invalid auth management');
});

t.test('users and roles: add, grant, revoke, delete, with etcd\'s errors, each change a new auth revision', async (t) => {
  const h = await open(t);
  const a = h.sm.auth;
  t.equal(a.revision, 1, 'a fresh store is at auth revision 1, as etcd');
  t.equal(h.err({ authUserAdd: { name: '' } }), 'etcdserver: user name is empty');
  h.ok({ authUserAdd: { name: 'bob', hashedPassword: await hashPassword('x', COST) } });
  t.equal(a.revision, 2);
  t.equal(h.err({ authUserAdd: { name: 'bob', hashedPassword: 'h' } }), 'etcdserver: user name already exists');
  t.equal(h.err({ authRoleAdd: { name: '' } }), 'etcdserver: role name is empty');
  h.ok({ authRoleAdd: { name: 'r2' } });
  h.ok({ authRoleAdd: { name: 'r1' } });
  t.equal(h.err({ authRoleAdd: { name: 'r1' } }), 'etcdserver: role name already exists');
  t.equal(h.err({ authUserGrantRole: { user: 'nobody', role: 'r1' } }), 'etcdserver: user name not found');
  t.equal(h.err({ authUserGrantRole: { user: 'bob', role: 'nothere' } }), 'etcdserver: role name not found');
  h.ok({ authUserGrantRole: { user: 'bob', role: 'r2' } });
  h.ok({ authUserGrantRole: { user: 'bob', role: 'r1' } });
  const rev = a.revision;
  h.ok({ authUserGrantRole: { user: 'bob', role: 'r1' } });
  t.equal(a.revision, rev, 'granting a role already held changes nothing');
  t.same(a.getUser('bob')?.roles, ['r1', 'r2'], 'roles kept sorted');
  t.equal(h.err({ authUserRevokeRole: { name: 'bob', role: 'r9' } }), 'etcdserver: role is not granted to the user');
  h.ok({ authRoleGrantPermission: { name: 'r1', perm: perm(PermissionType.WRITE, 'z') } });
  h.ok({ authRoleGrantPermission: { name: 'r1', perm: perm(PermissionType.READ, 'a/', 'a0') } });
  h.ok({ authRoleGrantPermission: { name: 'r1', perm: perm(PermissionType.READWRITE, 'z') } });
  t.same(
    a.getRole('r1')?.perms.map((p) => [p.permType, p.key.toString(), p.rangeEnd.toString()]),
    [
      [PermissionType.READ, 'a/', 'a0'],
      [PermissionType.READWRITE, 'z', ''],
    ],
    'sorted by key; a grant on the same key and range end replaces its type',
  );
  t.equal(h.err({ authRoleGrantPermission: { name: 'nope', perm: perm(PermissionType.READ, 'a') } }), 'etcdserver: role name not found');
  t.equal(h.err({ authRoleRevokePermission: { role: 'r1', key: b('q'), rangeEnd: b('') } }), 'etcdserver: permission is not granted to the role');
  t.equal(h.err({ authRoleRevokePermission: { role: 'nope', key: b('q'), rangeEnd: b('') } }), 'etcdserver: role name not found');
  h.ok({ authRoleRevokePermission: { role: 'r1', key: b('z'), rangeEnd: b('') } });
  t.equal(a.getRole('r1')?.perms.length, 1);
  h.ok({ authRoleDelete: { role: 'r2' } });
  t.same(a.getUser('bob')?.roles, ['r1'], 'a deleted role is taken from its users, as etcd 3.4');
  t.equal(h.err({ authRoleDelete: { role: 'r2' } }), 'etcdserver: role name not found');
  t.same(a.userList(), ['bob']);
  t.same(a.roleList(), ['r1']);
  h.ok({ authUserDelete: { name: 'bob' } });
  t.equal(h.err({ authUserDelete: { name: 'bob' } }), 'etcdserver: user name not found');
  t.equal(h.err({ authUserChangePassword: { name: 'bob', hashedPassword: 'h' } }), 'etcdserver: user name not found');
});

t.test('once enabled, auth changes need the root role; every other request is checked against its user\'s permissions', async (t) => {
  const h = await open(t);
  await withUsers(h);
  const a = h.sm.auth;
  const rev = (): number => a.revision;
  t.equal(h.err({ authRoleAdd: { name: 'x' }, header: as('alice', rev()) }), 'etcdserver: permission denied');
  t.equal(h.err({ authRoleAdd: { name: 'x' }, header: as('', 0) }), 'etcdserver: user name is empty');
  t.equal(h.err({ authRoleAdd: { name: 'x' }, header: as('ghost', rev()) }), 'etcdserver: user name not found');
  h.ok({ authRoleGrantPermission: { name: 'r1', perm: perm(PermissionType.READWRITE, 'foo') }, header: as('root', rev()) });
  h.ok({ authRoleGrantPermission: { name: 'r1', perm: perm(PermissionType.READ, '/a/', '/a0') }, header: as('root', rev()) });
  h.ok({ authRoleGrantPermission: { name: 'r1', perm: perm(PermissionType.WRITE, 'b', 'c') }, header: as('root', rev()) });
  h.ok({ authRoleGrantPermission: { name: 'r1', perm: perm(PermissionType.READ, 'm', '\0') }, header: as('root', rev()) });
  h.ok({ authRoleGrantPermission: { name: 'r1', perm: perm(PermissionType.READ, 'c', 'e') }, header: as('root', rev()) });
  const alice = as('alice', rev());
  h.ok({ put: { key: b('foo'), value: b('1') }, header: alice });
  h.ok({ put: { key: b('bz'), value: b('1') }, header: alice });
  t.equal(h.err({ put: { key: b('/a/x'), value: b('1') }, header: alice }), 'etcdserver: permission denied', 'read-only prefix');
  t.equal(h.err({ put: { key: b('bz'), value: b('1'), prevKv: true }, header: alice }), 'etcdserver: permission denied', 'prev_kv needs read too');
  t.equal(h.err({ deleteRange: { key: b('b'), rangeEnd: b('d') }, header: alice }), 'etcdserver: permission denied', 'a range past the grant');
  h.ok({ deleteRange: { key: b('b'), rangeEnd: b('c') }, header: alice });
  h.ok({ put: { key: b('/x'), value: b('1') } });
  t.ok(h.apply({ put: { key: b('/x'), value: b('2') } }).kind === 'ok', 'no header: the member\'s own entry is trusted');
  t.equal(h.err({ put: { key: b('foo'), value: b('1') }, header: as('', 0) }), 'etcdserver: user name is empty');
  h.ok({ range: { key: b('/a/'), rangeEnd: b('/a0') }, header: alice });
  h.ok({ range: { key: b('c'), rangeEnd: b('d') }, header: alice });
  h.ok({ range: { key: b('zzz') }, header: alice });
  h.ok({ range: { key: b('m'), rangeEnd: Buffer.of(0) }, header: alice });
  t.equal(h.err({ range: { key: b('l'), rangeEnd: Buffer.of(0) }, header: alice }), 'etcdserver: permission denied');
  t.equal(h.err({ range: { key: b('/b') }, header: alice }), 'etcdserver: permission denied');
  // Txn: compares need read, both branches are checked whichever runs.
  t.equal(
    h.err({ txn: { compare: [{ key: b('/b'), target: 0, result: 0, version: 0 }], success: [{ requestPut: { key: b('foo'), value: b('x') } }] }, header: alice }),
    'etcdserver: permission denied',
  );
  t.equal(
    h.err({ txn: { success: [{ requestPut: { key: b('foo'), value: b('x') } }], failure: [{ requestTxn: { success: [{ requestPut: { key: b('/a/x') } }] } }] }, header: alice }),
    'etcdserver: permission denied',
    'a nested txn in the other branch',
  );
  h.ok({ txn: { compare: [{ key: b('foo'), target: 0, result: 0, version: 1 }], success: [{ requestPut: { key: b('foo'), value: b('x') } }] }, header: alice });
  // Leases: attaching to, or revoking, a lease holding a key the user may not write.
  h.ok({ leaseGrant: { ID: 7n, TTL: 60 } });
  h.ok({ put: { key: b('/a/leased'), value: b('v'), lease: 7n }, header: as('root', rev()) });
  t.equal(h.err({ put: { key: b('foo'), value: b('v'), lease: 7n }, header: alice }), 'etcdserver: permission denied');
  t.equal(h.err({ leaseRevoke: { ID: 7n }, header: alice }), 'etcdserver: permission denied');
  h.ok({ leaseRevoke: { ID: 7n }, header: as('root', rev()) });
  // A revision captured before a change is refused after it (TOCTOU, etcd's ErrAuthOldRevision).
  const before = as('alice', rev());
  h.ok({ authUserRevokeRole: { name: 'alice', role: 'r1' }, header: as('root', rev()) });
  t.equal(h.err({ put: { key: b('foo'), value: b('y') }, header: before }), 'etcdserver: revision of auth store is old');
  t.equal(h.err({ put: { key: b('foo'), value: b('y') }, header: as('alice', rev()) }), 'etcdserver: permission denied', 'the revoked role no longer grants');
  t.equal(h.sm.store.range({ key: b('foo') }).kvs[0]?.value.toString(), 'x', 'no refused write changed the store');
});

t.test('passwords and tokens: bcrypt check, token per authenticate entry, TTL renewed by use, dropped on disable, delete and password change', async (t) => {
  const h = await open(t, undefined, 2000);
  const a = h.sm.auth;
  t.rejects(a.checkPassword('root', 'x'), { message: 'etcdserver: authentication is not enabled' });
  await withUsers(h);
  h.ok({ authUserAdd: { name: 'cn-only', noPassword: true } });
  t.equal(a.getUser('alice')?.password?.startsWith('$2'), true, 'stored as a bcrypt hash');
  await t.rejects(a.checkPassword('alice', 'wrong'), { message: 'etcdserver: authentication failed, invalid user ID or password', code: 'INVALID_ARGUMENT' });
  await t.rejects(a.checkPassword('ghost', 'x'), { message: 'etcdserver: authentication failed, invalid user ID or password' });
  await t.rejects(a.checkPassword('cn-only', 'x'), { message: 'auth: authentication failed, password was given for no password user', code: 'UNKNOWN' });
  t.equal(await a.checkPassword('alice', 'alicepw'), a.revision);
  const r = h.ok({ authenticate: { name: 'alice', simpleToken: 'abcdefghijklmnop' } }) as { token: string };
  t.equal(r.token, `abcdefghijklmnop.${h.index}`, "etcd's simple token: the prefix, a dot, the entry's index");
  t.equal(h.err({ authenticate: { name: 'cn-only', simpleToken: 'x' } }), 'etcdserver: authentication failed, invalid user ID or password');
  t.equal(a.tokenUser(r.token), 'alice');
  h.clock = 1500;
  t.equal(a.tokenUser(r.token), 'alice', 'used within the TTL: renewed');
  h.clock = 3000;
  t.equal(a.tokenUser(r.token), 'alice', 'still valid: the last use renewed it');
  h.clock = 5000;
  t.equal(a.tokenUser(r.token), undefined, 'expired after a TTL without use');
  const t1 = (h.ok({ authenticate: { name: 'alice', simpleToken: 'p' } }) as { token: string }).token;
  h.ok({ authUserChangePassword: { name: 'alice', hashedPassword: await hashPassword('new', COST) } });
  t.equal(a.tokenUser(t1), undefined, 'a password change drops the user\'s tokens');
  await t.rejects(a.checkPassword('alice', 'alicepw'));
  t.equal(typeof (await a.checkPassword('alice', 'new')), 'number');
  const t2 = (h.ok({ authenticate: { name: 'alice', simpleToken: 'p' } }) as { token: string }).token;
  const t3 = (h.ok({ authenticate: { name: 'root', simpleToken: 'q' } }) as { token: string }).token;
  h.ok({ authUserDelete: { name: 'alice' } });
  t.equal(a.tokenUser(t2), undefined, 'deleting the user drops its tokens');
  t.equal(a.tokenUser(t3), 'root');
  h.ok({ authDisable: {} });
  t.equal(a.tokenUser(t3), undefined, 'disabling auth drops every token');
  t.equal(h.err({ authenticate: { name: 'root', simpleToken: 'q' } }), 'etcdserver: authentication is not enabled');
});

t.test('auth state survives a restart (tokens do not) and travels in a snapshot', async (t) => {
  const dir = join(t.testdir(), 'restart');
  const h = await open(t, dir);
  await withUsers(h);
  h.ok({ authRoleGrantPermission: { name: 'r1', perm: perm(PermissionType.READ, 'k', 'l') } });
  const token = (h.ok({ authenticate: { name: 'alice', simpleToken: 'tok' } }) as { token: string }).token;
  const rev = h.sm.auth.revision;
  const { chunks } = await h.sm.snapshot();
  const blob: Buffer[] = [];
  for await (const c of chunks) blob.push(c);
  await h.sm.close();

  const again = await StateMachine.open(dir, { now: () => 0 });
  t.teardown(() => again.close());
  t.equal(again.auth.isEnabled, true);
  t.equal(again.auth.revision, rev);
  t.same(again.auth.userList(), ['alice', 'root']);
  t.same(again.auth.getRole('r1')?.perms.map((p) => p.key.toString()), ['k']);
  t.equal(again.auth.tokenUser(token), undefined, 'simple tokens live in memory only, as etcd\'s');
  t.equal(typeof (await again.auth.checkPassword('alice', 'alicepw')), 'number', 'the hash survived');

  const other = await open(t);
  t.equal(other.sm.auth.isEnabled, false);
  t.ok(await other.sm.restore((async function* () {
    yield* blob;
  })()));
  t.equal(other.sm.auth.isEnabled, true, 'a restored snapshot carries the auth store');
  t.same(other.sm.auth.userList(), ['alice', 'root']);
  t.equal(other.sm.auth.revision, rev);
  t.throws(() => other.sm.auth.isRangePermitted({ username: 'alice', revision: rev }, b('z')), { message: 'etcdserver: permission denied' });
  t.doesNotThrow(() => other.sm.auth.isRangePermitted({ username: 'alice', revision: rev }, b('k')));
});
