/**
 * The revisioned key space, as etcd's mvcc store plus the Range/Put/DeleteRange/Txn semantics of its
 * applier (etcdserver/apply.go): one main revision per write transaction, a sub revision per change,
 * an in-memory index of every key's revisions, and the records themselves in LevelDB.
 *
 * Reads and writes are synchronous: the index is in memory and LevelDB point reads are served by
 * getSync, so an apply never interleaves with another. LevelDB writes are staged by the Backend and
 * reach disk in one batch per event-loop turn.
 */
import { crc32c } from '@node-rs/crc32';
import { Backend, type BackendOptions } from './backend.js';
import { errCompacted, errCorrupt, errFutureRev, errKeyNotFound, errLeaseNotFound } from './errors.js';
import { KeepSet } from './keepset.js';
import { newIndexEntry, type KeyIndex } from './keyindex.js';
import { decodeKv, encodeKv, encodeTombstone } from './kvcodec.js';
import { isTombstoneKey, metaKey, readU64, revKey, revKeyLowerBound, revKeyMain, revKeySub, spaceBounds, SPACE_KEYS, writeU64 } from './revision.js';
import { latin1, TreeIndex, toRangeEnd, type RangeEnd } from './treeindex.js';
import {
  CompareResult,
  CompareTarget,
  EventType,
  SortOrder,
  SortTarget,
  type Compare,
  type DeleteRangeRequest,
  type DeleteRangeResponse,
  type Event,
  type HashKVResponse,
  type KeyValue,
  type PutRequest,
  type PutResponse,
  type RangeRequest,
  type RangeResponse,
  type RequestOp,
  type ResponseOp,
  type TxnRequest,
  type TxnResponse,
} from './types.js';
import { checkDelete, checkPut, checkRange, checkTxn, DEFAULT_MAX_TXN_OPS } from './validate.js';

/** etcd's compaction batch: records deleted per LevelDB batch before yielding to writes. */
export const COMPACTION_BATCH_LIMIT = 1000;
/** Index keys compacted per chunk before yielding. */
export const COMPACTION_INDEX_CHUNK = 2_000;
/** Records read per iterator step (history, hash, restore). */
const SCAN_BATCH = 1000;

export const CONSISTENT_INDEX_KEY = metaKey('consistent_index');
const META_CONSISTENT_INDEX = CONSISTENT_INDEX_KEY;
const META_SCHEDULED_COMPACT = metaKey('scheduledCompactRev');
const META_FINISHED_COMPACT = metaKey('finishedCompactRev');
const EMPTY = Buffer.alloc(0);

/** What the store needs of the lessor: whether a lease exists, and which keys hang on which lease. */
export interface LeaseHooks {
  exists(id: bigint): boolean;
  attach(id: bigint, key: string): void;
  detach(id: bigint, key: string): void;
}

const NO_LEASES: LeaseHooks = { exists: () => false, attach: () => {}, detach: () => {} };

export type TxnListener = (rev: number, events: readonly Event[]) => void;

export interface StoreOptions extends BackendOptions {
  maxTxnOps?: number;
}

/** One write transaction in progress: etcd's storeTxnWrite. */
interface Write {
  readonly beginRev: number;
  readonly events: Event[];
}

function u64(n: number): Buffer {
  const b = Buffer.allocUnsafe(8);
  writeU64(b, 0, n);
  return b;
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  return Buffer.compare(a, b);
}

export class KvStore {
  private index = new TreeIndex();
  /** A fresh etcd store is at revision 1: the first write gets 2. */
  private currentRev = 1;
  /** etcd's compactMainRev: reads below it are refused; -1 until the first compaction, as etcd. */
  private compactMainRev = -1;
  private consistent = 0;
  private readonly listeners = new Set<TxnListener>();
  private readonly resetListeners = new Set<() => void>();
  private leases: LeaseHooks = NO_LEASES;
  /** Compactions and hashes run one at a time, in order, so a hash never sees half a compaction. */
  private queue: Promise<void> = Promise.resolve();
  private readonly maxTxnOps: number;

  private constructor(
    readonly backend: Backend,
    options: StoreOptions,
  ) {
    this.maxTxnOps = options.maxTxnOps ?? DEFAULT_MAX_TXN_OPS;
  }

  static async open(dir: string, options: StoreOptions = {}): Promise<KvStore> {
    const backend = await Backend.open(dir, options);
    const s = new KvStore(backend, options);
    try {
      await s.restore();
    } catch (err) {
      await backend.close();
      throw err;
    }
    return s;
  }

  get rev(): number {
    return this.currentRev;
  }

  get compactRev(): number {
    return this.compactMainRev;
  }

  /** Index of the last Raft entry applied (written in the same batch as its changes). */
  get consistentIndex(): number {
    return this.consistent;
  }

  get keyCount(): number {
    return this.index.size;
  }

  /** Decodes a stored consistent index (absent: nothing applied yet). */
  consistentIndexIn(value: Buffer | undefined): number {
    return value === undefined ? 0 : readU64(value, 0);
  }

  setConsistentIndex(i: number): void {
    this.consistent = i;
    this.backend.putLatest(META_CONSISTENT_INDEX, u64(i));
  }

  setLeaseHooks(hooks: LeaseHooks): void {
    this.leases = hooks;
  }

  onTxn(fn: TxnListener): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /**
   * fn runs after the whole store was replaced (a Raft snapshot restored): watchers must catch up
   * from history, not from the transactions they were fed.
   */
  onReset(fn: () => void): () => void {
    this.resetListeners.add(fn);
    return () => this.resetListeners.delete(fn);
  }

  /** Rebuilds everything in memory from the backend, after its contents were replaced. */
  async reload(): Promise<void> {
    await this.queue;
    this.index = new TreeIndex();
    this.currentRev = 1;
    this.compactMainRev = -1;
    this.consistent = 0;
    await this.restore();
    for (const fn of this.resetListeners) fn();
  }

  /** Every live key's lease, for a lessor rebuilding its attachments. */
  forEachLeasedKey(fn: (lease: bigint, key: string) => void): void {
    this.index.forEach((ki) => {
      if (ki.isLive() && ki.lease !== 0n) fn(ki.lease, ki.key);
    });
  }

  async close(): Promise<void> {
    await this.queue;
    await this.backend.close();
  }

  // ------------------------------------------------------------------ requests

  range(req: RangeRequest): RangeResponse {
    checkRange(req);
    return this.rangeAt(req, this.currentRev);
  }

  put(req: PutRequest): PutResponse {
    checkPut(req);
    this.checkPutPreconditions(req, this.currentRev);
    return this.write((w) => this.putIn(w, req));
  }

  deleteRange(req: DeleteRangeRequest): DeleteRangeResponse {
    checkDelete(req);
    return this.write((w) => this.deleteRangeIn(w, req));
  }

  txn(req: TxnRequest): TxnResponse {
    checkTxn(req, this.maxTxnOps);
    // Every compare on the path, nested ones included, is evaluated before anything is written
    // (etcd's compareToPath), and so are the checks that would fail the txn midway.
    const path: boolean[] = [];
    this.choosePath(req, path);
    this.checkPath(req, path, 0);
    const readOnly = !this.writesOnPath(req, path, 0);
    const resp: TxnResponse = { header: { revision: 0 }, succeeded: path[0]!, responses: [] };
    if (readOnly) {
      const w: Write = { beginRev: this.currentRev, events: [] };
      this.applyTxn(w, req, path, 0, resp);
      resp.header.revision = this.currentRev;
      return resp;
    }
    return this.write((w) => {
      this.applyTxn(w, req, path, 0, resp);
      resp.header.revision = w.beginRev + (w.events.length > 0 ? 1 : 0);
      return resp;
    });
  }

  /** Deletes the given (latin1) keys in one revision, as a lease revoke does; returns the revision. */
  deleteKeys(keys: readonly string[]): number {
    return this.write((w) => {
      for (const k of keys) {
        const ki = this.index.get(k);
        if (ki !== undefined && ki.isLive()) this.deleteIn(w, ki);
      }
      return w.beginRev + (w.events.length > 0 ? 1 : 0);
    });
  }

  /**
   * etcd's Compact: refuses a revision already compacted or not yet written, then drops from the
   * index every revision at or below `rev` except each key's newest, and deletes the dropped
   * records from LevelDB in batches. `done` resolves when the records are gone.
   */
  compact(rev: number): { header: { revision: number }; done: Promise<void> } {
    if (rev <= this.compactMainRev) throw errCompacted();
    if (rev > this.currentRev) throw errFutureRev();
    this.compactMainRev = rev;
    this.backend.put(META_SCHEDULED_COMPACT, u64(rev));
    const done = this.enqueue(() => this.runCompaction(rev));
    done.catch(() => {});
    return { header: { revision: this.currentRev }, done };
  }

  /**
   * A hash of every record up to `rev` (0: the current revision) that compaction keeps: equal on
   * every member that applied the same log, whatever their physical compaction progress.
   */
  hashKV(rev: number): Promise<HashKVResponse> {
    if (rev > 0 && rev < this.compactMainRev) return Promise.reject(errCompacted());
    if (rev > this.currentRev) return Promise.reject(errFutureRev());
    return this.enqueue(() => this.hash(rev > 0 ? rev : this.currentRev));
  }

  /**
   * Events of main revisions from..to (inclusive) for keys in [key, end), read back from LevelDB in
   * revision order, stopping after maxRevs revisions; `next` is the first revision not returned.
   */
  async history(key: string, end: RangeEnd, from: number, to: number, maxRevs: number): Promise<{ events: Event[]; next: number }> {
    // At the compacted revision itself the live keys' records survive; etcd lets a watch start there.
    if (from < this.compactMainRev) throw errCompacted();
    await this.backend.flush();
    const events: Event[] = [];
    let revs = 0;
    let lastMain = -1;
    const it = this.backend.db.iterator({ gte: revKeyLowerBound(Math.max(from, 1)), lt: revKeyLowerBound(to + 1) });
    try {
      for (;;) {
        const batch = await it.nextv(SCAN_BATCH);
        if (batch.length === 0) break;
        for (const [k, v] of batch) {
          const main = revKeyMain(k);
          if (main !== lastMain) {
            if (revs === maxRevs) return { events, next: main };
            revs++;
            lastMain = main;
          }
          const kv = decodeKv(v);
          const ks = latin1(kv.key);
          if (ks < key || (end === undefined ? ks !== key : end !== null && ks >= end)) continue;
          if (isTombstoneKey(k)) {
            events.push({ type: EventType.DELETE, kv: { ...kv, modRevision: main } });
          } else {
            events.push({ type: EventType.PUT, kv });
          }
        }
      }
    } finally {
      await it.close();
    }
    return { events, next: to + 1 };
  }

  // ------------------------------------------------------------------ reading

  /**
   * etcd's applierV3backend.Range over the view at `curRev`: fetch (one more than the limit, or
   * everything when filtering or sorting), filter by mod/create revision, sort, cut to the limit.
   * `count` is the number of keys in the range at that revision, before the filters.
   */
  private rangeAt(r: RangeRequest, curRev: number): RangeResponse {
    let rev = r.revision ?? 0;
    if (rev > curRev) throw errFutureRev();
    if (rev <= 0) rev = curRev;
    if (rev < this.compactMainRev) throw errCompacted();
    const key = latin1(r.key);
    const end = toRangeEnd(r.rangeEnd);
    const header = { revision: curRev };
    if (r.countOnly === true) {
      return { header, kvs: [], more: false, count: this.index.count(key, end, rev) };
    }
    const filtered =
      (r.sortOrder ?? SortOrder.NONE) !== SortOrder.NONE ||
      (r.minModRevision ?? 0) !== 0 ||
      (r.maxModRevision ?? 0) !== 0 ||
      (r.minCreateRevision ?? 0) !== 0 ||
      (r.maxCreateRevision ?? 0) !== 0;
    const want = r.limit !== undefined && r.limit > 0 && !filtered ? r.limit + 1 : Infinity;
    let kvs: KeyValue[] = [];
    let count = 0;
    this.index.visit(key, end, rev, (_ki, at) => {
      count++;
      if (kvs.length < want) kvs.push(this.readKv(at.modMain, at.modSub));
    });
    const minMod = r.minModRevision ?? 0;
    const maxMod = r.maxModRevision ?? 0;
    const minCreate = r.minCreateRevision ?? 0;
    const maxCreate = r.maxCreateRevision ?? 0;
    if (minMod !== 0 || maxMod !== 0 || minCreate !== 0 || maxCreate !== 0) {
      kvs = kvs.filter(
        (kv) =>
          !(maxMod !== 0 && kv.modRevision > maxMod) &&
          !(minMod !== 0 && kv.modRevision < minMod) &&
          !(maxCreate !== 0 && kv.createRevision > maxCreate) &&
          !(minCreate !== 0 && kv.createRevision < minCreate),
      );
    }
    sortKvs(kvs, r.sortOrder ?? SortOrder.NONE, r.sortTarget ?? SortTarget.KEY);
    let more = false;
    if (r.limit !== undefined && r.limit > 0 && kvs.length > r.limit) {
      kvs.length = r.limit;
      more = true;
    }
    if (r.keysOnly === true) for (const kv of kvs) kv.value = EMPTY;
    return { header, kvs, more, count };
  }

  private readKv(main: number, sub: number): KeyValue {
    const v = this.backend.getSync(revKey(main, sub));
    if (v === undefined) throw errCorrupt(`record ${main}.${sub} is in the index but not in the database`);
    return decodeKv(v);
  }

  /** The live record of one key at `rev`, or undefined. */
  private getAt(key: Uint8Array, rev: number): KeyValue | undefined {
    const ki = this.index.get(latin1(key));
    const at = newIndexEntry();
    return ki !== undefined && ki.get(rev, at) ? this.readKv(at.modMain, at.modSub) : undefined;
  }

  // ------------------------------------------------------------------ writing

  private write<T>(fn: (w: Write) => T): T {
    const w: Write = { beginRev: this.currentRev, events: [] };
    const result = fn(w);
    if (w.events.length > 0) {
      this.currentRev = w.beginRev + 1;
      for (const l of this.listeners) l(this.currentRev, w.events);
    }
    return result;
  }

  /** The revision a read inside w sees: its own writes count once there are any. */
  private viewRev(w: Write): number {
    return w.beginRev + (w.events.length > 0 ? 1 : 0);
  }

  /** etcd's checkRequestPut, at the view a txn starts from. */
  private checkPutPreconditions(p: PutRequest, rev: number): void {
    if ((p.ignoreValue === true || p.ignoreLease === true) && this.getAt(p.key, rev) === undefined) throw errKeyNotFound();
    const lease = p.lease ?? 0n;
    if (lease !== 0n && !this.leases.exists(lease)) throw errLeaseNotFound();
  }

  private putIn(w: Write, p: PutRequest): PutResponse {
    const rev = w.beginRev + 1;
    const prev = p.ignoreValue === true || p.ignoreLease === true || p.prevKv === true ? this.getAt(p.key, this.viewRev(w)) : undefined;
    if ((p.ignoreValue === true || p.ignoreLease === true) && prev === undefined) throw errKeyNotFound();
    const value = p.ignoreValue === true ? prev!.value : (p.value ?? EMPTY);
    const lease = p.ignoreLease === true ? prev!.lease : (p.lease ?? 0n);
    const k = latin1(p.key);
    const key = Buffer.from(p.key);
    let ki = this.index.get(k);
    const at = newIndexEntry();
    let created = rev;
    let version = 1;
    let oldLease = 0n;
    if (ki !== undefined && ki.get(rev, at)) {
      created = at.createdMain;
      version = at.version + 1;
      oldLease = ki.lease;
    }
    const sub = w.events.length;
    const record = encodeKv(key, created, rev, version, value, lease);
    this.backend.put(revKey(rev, sub), record);
    ki = this.index.put(k, rev, sub);
    ki.lease = lease;
    if (oldLease !== 0n) this.leases.detach(oldLease, k);
    if (lease !== 0n) this.leases.attach(lease, k);
    w.events.push({ type: EventType.PUT, kv: decodeKv(record) });
    const resp: PutResponse = { header: { revision: rev } };
    if (p.prevKv === true && prev !== undefined) resp.prevKv = prev;
    return resp;
  }

  private deleteRangeIn(w: Write, d: DeleteRangeRequest): DeleteRangeResponse {
    const view = this.viewRev(w);
    const key = latin1(d.key);
    const end = toRangeEnd(d.rangeEnd);
    const doomed: KeyIndex[] = [];
    const prevKvs: KeyValue[] = [];
    this.index.visit(key, end, view, (ki, at) => {
      doomed.push(ki);
      if (d.prevKv === true) prevKvs.push(this.readKv(at.modMain, at.modSub));
    });
    for (const ki of doomed) this.deleteIn(w, ki);
    const revision = doomed.length > 0 || w.events.length > 0 ? w.beginRev + 1 : w.beginRev;
    return { header: { revision }, deleted: doomed.length, prevKvs };
  }

  private deleteIn(w: Write, ki: KeyIndex): void {
    const rev = w.beginRev + 1;
    const sub = w.events.length;
    const key = Buffer.from(ki.key, 'latin1');
    this.backend.put(revKey(rev, sub, true), encodeTombstone(key));
    const lease = ki.lease;
    this.index.tombstone(ki.key, rev, sub);
    if (lease !== 0n) this.leases.detach(lease, ki.key);
    w.events.push({
      type: EventType.DELETE,
      kv: { key, createRevision: 0, modRevision: rev, version: 0, value: EMPTY, lease: 0n },
    });
  }

  // ------------------------------------------------------------------ txn

  /** Appends to `path` the outcome of req's compares, then of each nested txn on the chosen branch. */
  private choosePath(req: TxnRequest, path: boolean[]): void {
    const ok = (req.compare ?? []).every((c) => this.compare(c));
    path.push(ok);
    for (const op of (ok ? req.success : req.failure) ?? []) {
      if (op.requestTxn !== undefined) this.choosePath(op.requestTxn, path);
    }
  }

  /** etcd's applyCompare: every key in the range must satisfy it; a missing key compares as zero. */
  private compare(c: Compare): boolean {
    const rev = this.currentRev;
    const kvs: KeyValue[] = [];
    this.index.visit(latin1(c.key), toRangeEnd(c.rangeEnd), rev, (_ki, at) => {
      kvs.push(this.readKv(at.modMain, at.modSub));
    });
    if (kvs.length === 0) {
      // No way to tell a missing value from an empty one on the wire, so etcd fails them all.
      if (c.target === CompareTarget.VALUE) return false;
      return compareKv(c, { key: EMPTY, createRevision: 0, modRevision: 0, version: 0, value: EMPTY, lease: 0n });
    }
    return kvs.every((kv) => compareKv(c, kv));
  }

  /** etcd's checkRequests on the chosen path: puts' preconditions and ranges' revisions. */
  private checkPath(req: TxnRequest, path: readonly boolean[], at: number): number {
    const ops = (path[at]! ? req.success : req.failure) ?? [];
    let next = at + 1;
    for (const op of ops) {
      if (op.requestPut !== undefined) this.checkPutPreconditions(op.requestPut, this.currentRev);
      else if (op.requestRange !== undefined) {
        const rev = op.requestRange.revision ?? 0;
        if (rev > this.currentRev) throw errFutureRev();
        if (rev > 0 && rev < this.compactMainRev) throw errCompacted();
      } else if (op.requestTxn !== undefined) next = this.checkPath(op.requestTxn, path, next);
    }
    return next;
  }

  private writesOnPath(req: TxnRequest, path: readonly boolean[], at: number): boolean {
    let next = at + 1;
    for (const op of (path[at]! ? req.success : req.failure) ?? []) {
      if (op.requestPut !== undefined || op.requestDeleteRange !== undefined) return true;
      if (op.requestTxn !== undefined) {
        if (this.writesOnPath(op.requestTxn, path, next)) return true;
        next += countPath(op.requestTxn, path, next);
      }
    }
    return false;
  }

  private applyTxn(w: Write, req: TxnRequest, path: readonly boolean[], at: number, resp: TxnResponse): number {
    const ops = (path[at]! ? req.success : req.failure) ?? [];
    let next = at + 1;
    for (const op of ops) resp.responses.push(this.applyOp(w, op, path, () => next, (n) => (next = n)));
    return next;
  }

  private applyOp(w: Write, op: RequestOp, path: readonly boolean[], getNext: () => number, setNext: (n: number) => void): ResponseOp {
    if (op.requestRange !== undefined) return { responseRange: this.rangeAt(op.requestRange, this.viewRev(w)) };
    if (op.requestPut !== undefined) return { responsePut: this.putIn(w, op.requestPut) };
    if (op.requestDeleteRange !== undefined) return { responseDeleteRange: this.deleteRangeIn(w, op.requestDeleteRange) };
    const t = op.requestTxn!;
    const at = getNext();
    const sub: TxnResponse = { header: { revision: 0 }, succeeded: path[at]!, responses: [] };
    setNext(this.applyTxn(w, t, path, at, sub));
    sub.header.revision = this.viewRev(w);
    return { responseTxn: sub };
  }

  // ------------------------------------------------------------------ compaction and hashing

  private enqueue<T>(job: () => Promise<T>): Promise<T> {
    const run = this.queue.then(job);
    this.queue = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  private async runCompaction(rev: number): Promise<void> {
    const keep = new KeepSet();
    let after: string | undefined;
    let first = true;
    // Chunks of the index between turns of the event loop, so applies go on meanwhile: they only
    // add revisions above `rev`, which compaction never touches.
    while (first || after !== undefined) {
      first = false;
      after = this.index.compactChunk(after, COMPACTION_INDEX_CHUNK, rev, keep);
      await yieldToWrites();
    }
    await this.backend.flush();
    let from = revKeyLowerBound(0);
    const upper = revKeyLowerBound(rev + 1);
    for (;;) {
      const doomed: Buffer[] = [];
      let last: Buffer | undefined;
      const it = this.backend.db.iterator({ gt: from, lt: upper, values: false });
      try {
        const batch = await it.nextv(COMPACTION_BATCH_LIMIT);
        for (const [k] of batch) {
          last = k;
          if (!keep.has(revKeyMain(k), revKeySub(k))) doomed.push(k);
        }
      } finally {
        await it.close();
      }
      if (last === undefined) break;
      for (const k of doomed) this.backend.del(k);
      from = last;
      await this.backend.flush();
    }
    this.backend.put(META_FINISHED_COMPACT, u64(rev));
    await this.backend.flush();
  }

  private async hash(rev: number): Promise<HashKVResponse> {
    const compactRev = this.compactMainRev;
    const currentRev = this.currentRev;
    const keep = this.index.keep(compactRev);
    await this.backend.flush();
    let h = crc32c('key');
    const it = this.backend.db.iterator({ ...spaceBounds(SPACE_KEYS), lt: revKeyLowerBound(rev + 1) });
    try {
      for (;;) {
        const batch = await it.nextv(SCAN_BATCH);
        if (batch.length === 0) break;
        for (const [k, v] of batch) {
          // Records compaction will delete but has not yet: members may differ in that progress.
          if (revKeyMain(k) <= compactRev && keep.mainCount > 0 && !keep.has(revKeyMain(k), revKeySub(k))) continue;
          h = crc32c(v, crc32c(k, h));
        }
      }
    } finally {
      await it.close();
    }
    return { header: { revision: currentRev }, hash: h, compactRevision: compactRev };
  }

  // ------------------------------------------------------------------ recovery

  /** Rebuilds the index from the records, as etcd's restore, and resumes an unfinished compaction. */
  private async restore(): Promise<void> {
    const ci = this.backend.getSync(META_CONSISTENT_INDEX);
    this.consistent = ci === undefined ? 0 : readU64(ci, 0);
    const scheduled = this.backend.getSync(META_SCHEDULED_COMPACT);
    const finished = this.backend.getSync(META_FINISHED_COMPACT);
    const scheduledRev = scheduled === undefined ? 0 : readU64(scheduled, 0);
    const finishedRev = finished === undefined ? 0 : readU64(finished, 0);
    const it = this.backend.db.iterator(spaceBounds(SPACE_KEYS));
    try {
      for (;;) {
        const batch = await it.nextv(SCAN_BATCH);
        if (batch.length === 0) break;
        for (const [k, v] of batch) this.restoreRecord(k, v);
      }
    } finally {
      await it.close();
    }
    if (scheduled !== undefined || finished !== undefined) this.compactMainRev = Math.max(scheduledRev, finishedRev);
    // Compaction can remove the newest record (a tombstone); the revision never goes back.
    if (this.currentRev < this.compactMainRev) this.currentRev = this.compactMainRev;
    if (scheduledRev > finishedRev) {
      const done = this.enqueue(() => this.runCompaction(scheduledRev));
      done.catch(() => {});
    }
  }

  private restoreRecord(k: Buffer, v: Buffer): void {
    const main = revKeyMain(k);
    const sub = revKeySub(k);
    const kv = decodeKv(v);
    const ks = latin1(kv.key);
    if (main > this.currentRev) this.currentRev = main;
    const ki = this.index.get(ks);
    if (isTombstoneKey(k)) {
      if (ki !== undefined) ki.tombstone(main, sub);
      return;
    }
    if (ki === undefined) {
      const fresh = this.index.put(ks, main, sub);
      fresh.restore(kv.createRevision, main, sub, kv.version);
      fresh.lease = kv.lease;
      return;
    }
    ki.put(main, sub);
    ki.lease = kv.lease;
    // A key recreated after its tombstone: its generation starts here.
  }
}

/** How many path slots a nested txn's chosen branch takes (itself plus its nested txns). */
function countPath(req: TxnRequest, path: readonly boolean[], at: number): number {
  let n = 1;
  for (const op of (path[at]! ? req.success : req.failure) ?? []) {
    if (op.requestTxn !== undefined) n += countPath(op.requestTxn, path, at + n);
  }
  return n;
}

function compareKv(c: Compare, kv: KeyValue): boolean {
  let r: number;
  switch (c.target) {
    case CompareTarget.VALUE:
      r = compareBytes(kv.value, c.value ?? EMPTY);
      break;
    case CompareTarget.CREATE:
      r = Math.sign(kv.createRevision - (c.createRevision ?? 0));
      break;
    case CompareTarget.MOD:
      r = Math.sign(kv.modRevision - (c.modRevision ?? 0));
      break;
    case CompareTarget.VERSION:
      r = Math.sign(kv.version - (c.version ?? 0));
      break;
    case CompareTarget.LEASE: {
      const want = c.lease ?? 0n;
      r = kv.lease === want ? 0 : kv.lease < want ? -1 : 1;
      break;
    }
    default:
      return false;
  }
  switch (c.result) {
    case CompareResult.EQUAL:
      return r === 0;
    case CompareResult.NOT_EQUAL:
      return r !== 0;
    case CompareResult.GREATER:
      return r > 0;
    case CompareResult.LESS:
      return r < 0;
    default:
      return true;
  }
}

/**
 * etcd's sort rules: results come key-ascending from the index, so ASCEND by KEY needs nothing,
 * and another target with order NONE sorts ascending. Stable, so ties keep key order.
 */
function sortKvs(kvs: KeyValue[], order: SortOrder, target: SortTarget): void {
  let o: SortOrder = order;
  if (target !== SortTarget.KEY && o === SortOrder.NONE) o = SortOrder.ASCEND;
  else if (target === SortTarget.KEY && o === SortOrder.ASCEND) o = SortOrder.NONE;
  if (o === SortOrder.NONE) return;
  const by = (a: KeyValue, b: KeyValue): number => {
    switch (target) {
      case SortTarget.KEY:
        return compareBytes(a.key, b.key);
      case SortTarget.VERSION:
        return a.version - b.version;
      case SortTarget.CREATE:
        return a.createRevision - b.createRevision;
      case SortTarget.MOD:
        return a.modRevision - b.modRevision;
      case SortTarget.VALUE:
        return compareBytes(a.value, b.value);
    }
  };
  kvs.sort(o === SortOrder.DESCEND ? (a, b) => by(b, a) : by);
}

function yieldToWrites(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
