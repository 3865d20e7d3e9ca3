/**
 * The state machine a member applies its committed Raft entries to: the key space and the lessor in
 * one LevelDB, each entry's changes written in the same batch as its index (etcd's consistent
 * index), so replaying the log after a crash skips what already reached disk.
 */
import { access, rename, rm, writeFile } from 'node:fs/promises';
import { ClassicLevel } from 'classic-level';
import { AuthStore, type AuthInfo } from './auth.js';
import { MvccError } from './errors.js';
import { decodeSnapshot, encodeSnapshot } from './snapshot.js';
import { Lessor, type LessorOptions } from './lessor.js';
import { CONSISTENT_INDEX_KEY, KvStore, type StoreOptions } from './store.js';
import type {
  ApplyRequest,
  ApplyResponse,
  AuthenticateResponse,
  AuthResponse,
  CompactionResponse,
  LeaseCheckpointResponse,
  LeaseGrantResponse,
  LeaseRevokeResponse,
} from './types.js';

/** etcd's minimum lease TTL with its default election timeout (1 s): ceil(1.5 × 1 s). */
export const DEFAULT_MIN_LEASE_TTL = 2;

export interface StateMachineOptions extends StoreOptions, Partial<LessorOptions> {
  /** --auth-token-ttl in milliseconds (simple tokens). */
  tokenTTLMs?: number;
}

/**
 * What applying an entry produced: a response, or the error etcd would answer with (a failed
 * request is still applied: it consumes its index and changes nothing), or nothing for an entry
 * this store had already applied before a restart.
 */
export type ApplyResult =
  | { readonly kind: 'ok'; readonly response: ApplyResponse; /** Compactions: resolves once the records are gone. */ readonly physical?: Promise<void> }
  | { readonly kind: 'error'; readonly error: MvccError }
  | { readonly kind: 'skipped' };

export class StateMachine {
  private constructor(
    readonly store: KvStore,
    readonly lessor: Lessor,
    readonly auth: AuthStore,
  ) {}

  static async open(dir: string, opts: StateMachineOptions = {}): Promise<StateMachine> {
    await finishRestore(dir);
    const store = await KvStore.open(dir, opts);
    try {
      const now = opts.now ?? (() => performance.now());
      const lessor = await Lessor.load(store.backend, {
        ...opts,
        minTTL: opts.minTTL ?? DEFAULT_MIN_LEASE_TTL,
        now,
      });
      const auth = await AuthStore.load(store.backend, { now, tokenTTLMs: opts.tokenTTLMs });
      const sm = new StateMachine(store, lessor, auth);
      sm.connect();
      return sm;
    } catch (err) {
      await store.close();
      throw err;
    }
  }

  get consistentIndex(): number {
    return this.store.consistentIndex;
  }

  /** Applies the request of committed entry `index`; entries at or below the consistent index are skipped. */
  apply(index: number, req: ApplyRequest): ApplyResult {
    if (index <= this.store.consistentIndex) return { kind: 'skipped' };
    let result: ApplyResult;
    try {
      result = this.dispatch(req, index);
    } catch (err) {
      if (!(err instanceof MvccError)) throw err;
      result = { kind: 'error', error: err };
    }
    // Staged with the changes, so the same LevelDB batch carries both.
    this.store.setConsistentIndex(index);
    return result;
  }

  /** Records an entry that carries no request (a Raft no-op or configuration change) as applied. */
  applyEmpty(index: number): void {
    if (index > this.store.consistentIndex) this.store.setConsistentIndex(index);
  }

  async close(): Promise<void> {
    await this.store.close();
  }

  /**
   * The whole store as a byte stream, for a Raft snapshot at `index` (the consistent index in the
   * same LevelDB snapshot the stream reads, so the two always agree, whatever is applied meanwhile).
   */
  async snapshot(): Promise<{ index: number; chunks: AsyncGenerator<Buffer> }> {
    const db = this.store.backend.db;
    await this.store.backend.flush();
    const snap = db.snapshot();
    let index: number;
    try {
      index = this.store.consistentIndexIn(await db.get(CONSISTENT_INDEX_KEY, { snapshot: snap }));
    } catch (err) {
      await snap.close();
      throw err;
    }
    const it = db.iterator({ snapshot: snap });
    async function* pairs(): AsyncGenerator<[Buffer, Buffer]> {
      try {
        for (;;) {
          const batch = await it.nextv(1000);
          if (batch.length === 0) return;
          yield* batch;
        }
      } finally {
        await it.close();
        await snap.close();
      }
    }
    return { index, chunks: encodeSnapshot(pairs()) };
  }

  /**
   * Replaces the whole store with a snapshot stream (a Raft snapshot from the leader). The stream
   * is written to a sibling directory and swapped in only once it is whole, so a cut transfer
   * leaves the store as it was; a crash after that point finishes the swap on the next open. The
   * caller applies nothing meanwhile. The same objects (store, lessor) stay in use.
   */
  async restore(chunks: AsyncIterable<Uint8Array>, opts: { onlyForward?: boolean } = {}): Promise<boolean> {
    const dir = this.store.backend.dir;
    const index = await writeRestore(dir, chunks);
    if (opts.onlyForward === true && index <= this.store.consistentIndex) {
      // A store older than this one would undo applied entries that Raft will not deliver again.
      await rm(`${dir}.restore`, { recursive: true, force: true });
      return false;
    }
    await this.store.backend.reopen(() => finishRestore(dir));
    await this.lessor.recover();
    await this.auth.recover();
    await this.store.reload();
    this.attachLeasedKeys();
    return true;
  }


  private dispatch(req: ApplyRequest, index: number): ApplyResult {
    const ok = (response: ApplyResponse): ApplyResult => ({ kind: 'ok', response });
    const s = this.store;
    const auth = this.auth;
    // etcd's authApplierV3: checked in log order against the auth store as it is at this entry,
    // with the auth revision the sender's token was checked at. No header: the member's own entry.
    const h = req.header;
    const ai: AuthInfo | undefined = h === undefined ? undefined : { username: h.username, revision: h.authRevision };
    if (req.authenticate !== undefined) return ok(this.applyAuth(req, index));
    if (isAuthChange(req)) {
      auth.checkAdmin(h);
      return ok(this.applyAuth(req, index));
    }
    if (req.range !== undefined) {
      if (ai !== undefined) auth.isRangePermitted(ai, req.range.key, req.range.rangeEnd);
      return ok(s.range(req.range));
    }
    if (req.put !== undefined) {
      const p = req.put;
      if (ai !== undefined) {
        auth.isPutPermitted(ai, p.key);
        if (p.lease !== undefined && p.lease !== 0n) this.checkLeasePuts(ai, p.lease);
        if (p.prevKv === true) auth.isRangePermitted(ai, p.key);
      }
      return ok(s.put(p));
    }
    if (req.deleteRange !== undefined) {
      const d = req.deleteRange;
      if (ai !== undefined) {
        auth.isDeleteRangePermitted(ai, d.key, d.rangeEnd);
        if (d.prevKv === true) auth.isRangePermitted(ai, d.key, d.rangeEnd);
      }
      return ok(s.deleteRange(d));
    }
    if (req.txn !== undefined) {
      if (ai !== undefined) auth.checkTxn(ai, req.txn);
      return ok(s.txn(req.txn));
    }
    if (req.compaction !== undefined) {
      const c = s.compact(req.compaction.revision);
      const response: CompactionResponse = { header: c.header };
      return { kind: 'ok', response, physical: c.done };
    }
    if (req.leaseGrant !== undefined) {
      const l = this.lessor.grant(req.leaseGrant.ID, req.leaseGrant.TTL);
      const response: LeaseGrantResponse = { header: { revision: s.rev }, ID: l.ID, TTL: l.ttl, error: '' };
      return ok(response);
    }
    if (req.leaseRevoke !== undefined) {
      if (ai !== undefined) this.checkLeasePuts(ai, req.leaseRevoke.ID);
      // The keys go in one revision, then the lease: etcd's revoke order.
      const keys = this.lessor.revoke(req.leaseRevoke.ID);
      s.deleteKeys(keys);
      const response: LeaseRevokeResponse = { header: { revision: s.rev } };
      return ok(response);
    }
    if (req.leaseCheckpoint !== undefined) {
      for (const c of req.leaseCheckpoint.checkpoints) this.lessor.checkpoint(c.ID, c.remaining_TTL);
      const response: LeaseCheckpointResponse = { header: { revision: s.rev } };
      return ok(response);
    }
    throw new MvccError('ErrEmptyRequest', 'INVALID_ARGUMENT', 'etcdserver: empty request');
  }

  /**
   * etcd's checkLeasePuts: attaching a key to a lease, or revoking it, needs write permission on
   * every key already attached (an admin needs none).
   */
  private checkLeasePuts(ai: AuthInfo, id: bigint): void {
    const l = this.lessor.lookup(id);
    if (l === undefined || !this.auth.isEnabled) return;
    try {
      this.auth.isAdminPermitted(ai);
      return;
    } catch {
      // not an admin: every key counts
    }
    for (const key of l.keys) this.auth.isPutPermitted(ai, Buffer.from(key, 'latin1'));
  }

  private applyAuth(req: ApplyRequest, index: number): AuthResponse | AuthenticateResponse {
    const a = this.auth;
    const header = { revision: this.store.rev };
    if (req.authenticate !== undefined) return { header, token: a.authenticate(req.authenticate.name, req.authenticate.simpleToken, index) };
    if (req.authEnable !== undefined) a.enable();
    else if (req.authDisable !== undefined) a.disable();
    else if (req.authUserAdd !== undefined) a.userAdd(req.authUserAdd);
    else if (req.authUserDelete !== undefined) a.userDelete(req.authUserDelete.name);
    else if (req.authUserChangePassword !== undefined) a.userChangePassword(req.authUserChangePassword.name, req.authUserChangePassword.hashedPassword);
    else if (req.authUserGrantRole !== undefined) a.userGrantRole(req.authUserGrantRole.user, req.authUserGrantRole.role);
    else if (req.authUserRevokeRole !== undefined) a.userRevokeRole(req.authUserRevokeRole.name, req.authUserRevokeRole.role);
    else if (req.authRoleAdd !== undefined) a.roleAdd(req.authRoleAdd.name);
    else if (req.authRoleDelete !== undefined) a.roleDelete(req.authRoleDelete.role);
    else if (req.authRoleGrantPermission !== undefined) a.roleGrantPermission(req.authRoleGrantPermission.name, req.authRoleGrantPermission.perm);
    else if (req.authRoleRevokePermission !== undefined) {
      const r = req.authRoleRevokePermission;
      a.roleRevokePermission(r.role, r.key, r.rangeEnd);
    }
    return { header };
  }

  /** Wires the store's lease checks to the lessor and re-attaches keys after a load. */
  private connect(): void {
    const lessor = this.lessor;
    this.store.setLeaseHooks({
      exists: (id) => lessor.lookup(id) !== undefined,
      attach: (id, key) => lessor.attach(id, key),
      detach: (id, key) => {
        lessor.detach(id, key);
      },
    });
    this.attachLeasedKeys();
  }

  private attachLeasedKeys(): void {
    const lessor = this.lessor;
    this.store.forEachLeasedKey((id, key) => {
      // A key whose lease record is gone stays as it is, as etcd's restore only logs it.
      if (lessor.lookup(id) !== undefined) lessor.attach(id, key);
    });
  }
}

/**
 * Requests that change the auth store: they need the root role once auth is on (etcd's
 * needAdminPermission). Authenticate is not one: its password was checked before it was proposed.
 */
function isAuthChange(req: ApplyRequest): boolean {
  return (
    req.authEnable !== undefined ||
    req.authDisable !== undefined ||
    req.authUserAdd !== undefined ||
    req.authUserDelete !== undefined ||
    req.authUserChangePassword !== undefined ||
    req.authUserGrantRole !== undefined ||
    req.authUserRevokeRole !== undefined ||
    req.authRoleAdd !== undefined ||
    req.authRoleDelete !== undefined ||
    req.authRoleGrantPermission !== undefined ||
    req.authRoleRevokePermission !== undefined
  );
}

/** Marks a restore directory as whole: only then may it replace the store. */
const RESTORE_COMPLETE = 'RESTORE_COMPLETE';

/** Swaps in a whole restored store, also when a crash came between writing it and the swap. */
async function finishRestore(dir: string): Promise<void> {
  const tmp = `${dir}.restore`;
  const whole = await access(`${tmp}/${RESTORE_COMPLETE}`).then(
    () => true,
    () => false,
  );
  if (!whole) return;
  await rm(dir, { recursive: true, force: true });
  await rm(`${tmp}/${RESTORE_COMPLETE}`);
  await rename(tmp, dir);
}

/**
 * Writes a snapshot stream into `${dir}.restore`, marked whole only once its trailer checked out;
 * returns the consistent index it holds.
 */
async function writeRestore(dir: string, chunks: AsyncIterable<Uint8Array>): Promise<number> {
  const tmp = `${dir}.restore`;
  await rm(tmp, { recursive: true, force: true });
  const db = new ClassicLevel<Buffer, Buffer>(tmp, { keyEncoding: 'buffer', valueEncoding: 'buffer' });
  await db.open();
  try {
    for await (const batch of decodeSnapshot(chunks)) {
      await db.batch(batch.map(([key, value]) => ({ type: 'put' as const, key, value })));
    }
    await db.batch([], { sync: true });
    const ci = await db.get(CONSISTENT_INDEX_KEY);
    await db.close();
    await writeFile(`${tmp}/${RESTORE_COMPLETE}`, '');
    return ci === undefined ? 0 : ci.readUInt32BE(0) * 2 ** 32 + ci.readUInt32BE(4);
  } catch (err) {
    await db.close();
    await rm(tmp, { recursive: true, force: true });
    throw err;
  }
}
