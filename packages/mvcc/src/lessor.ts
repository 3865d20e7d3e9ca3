/**
 * Leases, as etcd's lessor (lease/lessor.go, 3.5). What the Raft log applies (grant, revoke,
 * checkpoint) is deterministic and staged synchronously on the Backend; what only the primary does
 * (expiry, keepalive, choosing checkpoints) runs on an injected clock and never writes, so every member
 * holds the same records whoever leads. Keys attached to a lease live only in memory: the store
 * rebuilds them from key records on load.
 *
 * Record under leaseKey(id), fixed so its bytes are a pure function of the lease:
 *   ID i64 | TTL i64 | remainingTTL i64   (seconds)
 */
import type { Backend } from './backend.js';
import { errCorrupt, errLeaseExists, errLeaseNotFound, errLeaseTTLTooLarge, errNotPrimary } from './errors.js';
import { leaseKey, SPACE_LEASES, spaceBounds } from './revision.js';

/** etcd's MaxLeaseTTL: 9,000,000,000 s (about 285 years). */
export const MAX_LEASE_TTL = 9_000_000_000;
/** etcd's leaseRevokeRate: revokes per second the primary aims for. */
export const LEASE_REVOKE_RATE = 1000;
/** etcd's expiredLeaseRetryInterval: how long a reported expired lease waits before being reported again. */
export const EXPIRED_LEASE_RETRY_MS = 3000;

const RECORD_BYTES = 24;
const NEVER = Number.POSITIVE_INFINITY;

export interface Lease {
  readonly ID: bigint;
  /** Granted TTL in seconds, after raising to the minimum. */
  readonly ttl: number;
  /** Last checkpointed remaining TTL in seconds; 0 when none. */
  readonly remainingTTL: number;
  /** Milliseconds on the injected clock; Infinity when not primary (never expires). */
  readonly expiry: number;
  /** Attached keys (latin1). */
  readonly keys: ReadonlySet<string>;
}

export interface LeaseCheckpoint {
  ID: bigint;
  remaining_TTL: number;
}

export interface LeaseTimeToLive {
  ID: bigint;
  /** Remaining seconds, truncated; -1 when the lease does not exist. */
  TTL: number;
  grantedTTL: number;
  keys: Buffer[];
}

export interface LessorOptions {
  /** Seconds; shorter grants are raised to it (etcd: ceil(1.5 × election timeout)). */
  minTTL: number;
  /** Milliseconds, monotonic. */
  now: () => number;
  /** Spreads lease expiries on promote so at most about 3/4 of this many fall in one second. */
  revokeRate?: number;
  /** See EXPIRED_LEASE_RETRY_MS. */
  expiredRetryMs?: number;
  /** A lease returned by checkpoints() is not returned again for this long (etcd: 5 min). 0: every call. */
  checkpointIntervalMs?: number;
}

/** What a lease with no key attached reports: most never get one (lease-grant grants 20,000 a second). */
const NO_KEYS: ReadonlySet<string> = new Set();

class LeaseState implements Lease {
  expiry = NEVER;
  /**
   * Made on the first attach: an empty Set is 162 bytes of heap, about 40% of a lease, and a
   * lease-grant burst keeps 300,000 leases live until they are revoked.
   */
  private attached: Set<string> | undefined = undefined;
  /** The remainingTTL last applied from the log (what is on disk); renew clears only the in-memory one. */
  applied: number;
  /** When the primary may next propose a checkpoint for this lease. */
  checkpointAt = Number.NEGATIVE_INFINITY;
  constructor(
    readonly ID: bigint,
    readonly ttl: number,
    public remainingTTL: number,
  ) {
    this.applied = remainingTTL;
  }

  get keys(): ReadonlySet<string> {
    return this.attached ?? NO_KEYS;
  }

  attach(key: string): void {
    (this.attached ??= new Set()).add(key);
  }

  detach(key: string): boolean {
    return this.attached?.delete(key) ?? false;
  }

  /** etcd's RemainingTTL(): the checkpointed value if any, else the full TTL. */
  baseTTL(): number {
    return this.remainingTTL > 0 ? this.remainingTTL : this.ttl;
  }
}

function encodeLease(id: bigint, ttl: number, remainingTTL: number): Buffer {
  const buf = Buffer.allocUnsafe(RECORD_BYTES);
  buf.writeBigInt64BE(id, 0);
  // trunc: BigInt() throws on fractions, which must not abort an apply.
  buf.writeBigInt64BE(BigInt(Math.trunc(ttl)), 8);
  buf.writeBigInt64BE(BigInt(Math.trunc(remainingTTL)), 16);
  return buf;
}

function decodeLease(key: Buffer, value: Buffer): { id: bigint; ttl: number; remainingTTL: number } {
  if (value.length !== RECORD_BYTES || key.length !== 9) throw errCorrupt(`lease record ${key.toString('hex')}`);
  const id = value.readBigInt64BE(0);
  if (id !== key.readBigInt64BE(1)) throw errCorrupt(`lease record ${key.toString('hex')} holds id ${id}`);
  return { id, ttl: Number(value.readBigInt64BE(8)), remainingTTL: Number(value.readBigInt64BE(16)) };
}

function cmpBig(a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Min-heap of (time, id) with update and removal by id, like etcd's LeaseExpiredNotifier. */
class ExpiryHeap {
  private readonly items: Array<{ id: bigint; time: number }> = [];
  private readonly index = new Map<bigint, number>();

  get size(): number {
    return this.items.length;
  }

  peek(): { id: bigint; time: number } | undefined {
    return this.items[0];
  }

  clear(): void {
    this.items.length = 0;
    this.index.clear();
  }

  upsert(id: bigint, time: number): void {
    const i = this.index.get(id);
    if (i === undefined) {
      this.items.push({ id, time });
      this.index.set(id, this.items.length - 1);
      this.up(this.items.length - 1);
      return;
    }
    this.items[i]!.time = time;
    this.down(this.up(i));
  }

  remove(id: bigint): void {
    const i = this.index.get(id);
    if (i === undefined) return;
    this.index.delete(id);
    const last = this.items.pop()!;
    if (i === this.items.length) return;
    this.items[i] = last;
    this.index.set(last.id, i);
    this.down(this.up(i));
  }

  private less(a: number, b: number): boolean {
    const x = this.items[a]!;
    const y = this.items[b]!;
    return x.time !== y.time ? x.time < y.time : x.id < y.id;
  }

  private swap(a: number, b: number): void {
    const x = this.items[a]!;
    const y = this.items[b]!;
    this.items[a] = y;
    this.items[b] = x;
    this.index.set(y.id, a);
    this.index.set(x.id, b);
  }

  private up(i: number): number {
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(i, p)) break;
      this.swap(i, p);
      i = p;
    }
    return i;
  }

  private down(i: number): void {
    const n = this.items.length;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) return;
      const r = l + 1;
      const c = r < n && this.less(r, l) ? r : l;
      if (!this.less(c, i)) return;
      this.swap(c, i);
      i = c;
    }
  }
}

export class Lessor {
  private readonly leaseMap = new Map<bigint, LeaseState>();
  /** Holds every lease while primary, none otherwise. */
  private readonly heap = new ExpiryHeap();
  private primary = false;
  private readonly minTTL: number;
  private readonly now: () => number;
  private readonly revokeRate: number;
  private readonly expiredRetryMs: number;
  private readonly checkpointIntervalMs: number;

  constructor(
    private readonly backend: Backend,
    opts: LessorOptions,
  ) {
    this.minTTL = opts.minTTL;
    this.now = opts.now;
    this.revokeRate = opts.revokeRate ?? LEASE_REVOKE_RATE;
    this.expiredRetryMs = opts.expiredRetryMs ?? EXPIRED_LEASE_RETRY_MS;
    this.checkpointIntervalMs = opts.checkpointIntervalMs ?? 0;
  }

  /** Reads every lease record back; they never expire until promote(). */
  static async load(backend: Backend, opts: LessorOptions): Promise<Lessor> {
    const lessor = new Lessor(backend, opts);
    await lessor.recover();
    return lessor;
  }

  /**
   * Replaces every lease with what the backend holds (after a restart or a snapshot restore).
   * Attachments are dropped: the store re-attaches from its key records.
   */
  async recover(): Promise<void> {
    // Iteration reads LevelDB directly, so staged writes must land first.
    await this.backend.flush();
    const loaded: LeaseState[] = [];
    for await (const [key, value] of this.backend.db.iterator(spaceBounds(SPACE_LEASES))) {
      const r = decodeLease(key, value);
      // etcd raises stored TTLs to the minimum too (in memory only).
      loaded.push(new LeaseState(r.id, Math.max(r.ttl, this.minTTL), r.remainingTTL));
    }
    this.leaseMap.clear();
    this.heap.clear();
    for (const l of loaded) this.leaseMap.set(l.ID, l);
    if (this.primary) {
      const now = this.now();
      for (const l of loaded) this.refresh(l, now, 0);
    }
  }

  get isPrimary(): boolean {
    return this.primary;
  }

  /** Applied from the log (LeaseGrant). */
  grant(id: bigint, ttl: number): Lease {
    // etcd rejects NoLease here as not found; the server picks a non-zero ID before proposing.
    if (id === 0n) throw errLeaseNotFound();
    if (ttl > MAX_LEASE_TTL) throw errLeaseTTLTooLarge();
    if (this.leaseMap.has(id)) throw errLeaseExists();
    const l = new LeaseState(id, Math.max(Math.trunc(ttl) || 0, this.minTTL), 0);
    this.leaseMap.set(id, l);
    if (this.primary) this.refresh(l, this.now(), 0);
    this.persist(l);
    return l;
  }

  /**
   * Applied from the log (LeaseRevoke). Returns the attached keys sorted, so every member deletes them
   * in the same order; the caller deletes them in the same apply.
   */
  revoke(id: bigint): string[] {
    const l = this.leaseMap.get(id);
    if (l === undefined) throw errLeaseNotFound();
    this.leaseMap.delete(id);
    this.heap.remove(id);
    this.backend.del(leaseKey(id));
    return sortedKeys(l);
  }

  /** Throws errLeaseNotFound for an absent lease, as etcd's Attach does. */
  attach(id: bigint, key: string): void {
    const l = this.leaseMap.get(id);
    if (l === undefined) throw errLeaseNotFound();
    l.attach(key);
  }

  /** False when the lease is gone (e.g. the store deleting keys of a lease revoke already removed). */
  detach(id: bigint, key: string): boolean {
    const l = this.leaseMap.get(id);
    if (l === undefined) return false;
    return l.detach(key);
  }

  lookup(id: bigint): Lease | undefined {
    return this.leaseMap.get(id);
  }

  /** Milliseconds until expiry (Infinity when not primary), or undefined for an absent lease. */
  remaining(id: bigint): number | undefined {
    const l = this.leaseMap.get(id);
    if (l === undefined) return undefined;
    return l.expiry === NEVER ? NEVER : l.expiry - this.now();
  }

  /**
   * Keepalive, primary only; returns the TTL. Clears the in-memory checkpoint at once (etcd waits for
   * a checkpoint of 0 to be applied); checkpoints() then offers {ID, 0} so the others clear theirs.
   */
  renew(id: bigint): number {
    if (!this.primary) throw errNotPrimary();
    const l = this.leaseMap.get(id);
    // An expired lease is waiting for its revoke to come back through the log.
    if (l === undefined) throw errLeaseNotFound();
    const now = this.now();
    if (l.expiry <= now) throw errLeaseNotFound();
    l.remainingTTL = 0;
    this.refresh(l, now, 0);
    return l.ttl;
  }

  /**
   * Becomes primary: every lease expires after its remaining (or full) TTL plus `extendMs`, so leases
   * the old leader was renewing survive the handover. As etcd, expiries are then spread so no more
   * than about 3/4 of revokeRate fall in one second.
   */
  promote(extendMs: number): void {
    this.primary = true;
    const now = this.now();
    for (const l of this.leaseMap.values()) {
      l.checkpointAt = Number.NEGATIVE_INFINITY;
      this.refresh(l, now, extendMs);
    }
    if (this.leaseMap.size < this.revokeRate) return;
    const leases = [...this.leaseMap.values()].sort(byExpiry);
    let baseWindow = leases[0]!.expiry - now;
    let nextWindow = baseWindow + 1000;
    let expires = 0;
    const target = Math.floor((3 * this.revokeRate) / 4);
    for (const l of leases) {
      const remaining = l.expiry - now;
      if (remaining > nextWindow) {
        baseWindow = remaining;
        nextWindow = baseWindow + 1000;
        expires = 1;
        continue;
      }
      expires++;
      if (expires <= target) continue;
      // Leases already n seconds past the window's start need n seconds less delay.
      const delay = (1000 * expires) / target - (remaining - baseWindow);
      nextWindow = baseWindow + delay;
      this.refresh(l, now, delay + extendMs);
    }
  }

  demote(): void {
    this.primary = false;
    this.heap.clear();
    for (const l of this.leaseMap.values()) l.expiry = NEVER;
  }

  /**
   * Primary only: up to `limit` leases past their expiry, earliest first (ties by ID). The server
   * proposes their revokes; a lease reported here is not reported again for expiredRetryMs, as etcd,
   * so a revoke in flight is not proposed twice.
   */
  expired(limit: number): bigint[] {
    if (!this.primary) return [];
    const now = this.now();
    const out: bigint[] = [];
    while (out.length < limit) {
      const top = this.heap.peek();
      if (top === undefined || top.time > now) break;
      this.heap.remove(top.id);
      out.push(top.id);
    }
    for (const id of out) this.heap.upsert(id, now + this.expiredRetryMs);
    return out;
  }

  /**
   * Applied from the log (LeaseCheckpoint). Sets and persists the remaining TTL; an absent lease is
   * ignored. The primary's expiry is left alone, as etcd: a checkpoint proposed before a keepalive may
   * be applied after it, and must not take the keepalive back. promote() applies it.
   */
  checkpoint(id: bigint, remainingTTL: number): void {
    const l = this.leaseMap.get(id);
    if (l === undefined) return;
    l.remainingTTL = remainingTTL;
    l.applied = remainingTTL;
    this.persist(l);
  }

  /**
   * Primary only: up to `limit` checkpoints to propose: live leases whose remaining TTL (whole seconds,
   * rounded up) is below their TTL, and {ID, 0} for leases renewed since a checkpoint was applied.
   * Leases waiting longest come first (ties by ID), then each waits checkpointIntervalMs.
   */
  checkpoints(limit: number): LeaseCheckpoint[] {
    if (!this.primary || limit <= 0) return [];
    const now = this.now();
    const due: Array<{ l: LeaseState; remaining: number }> = [];
    for (const l of this.leaseMap.values()) {
      if (l.checkpointAt > now || l.expiry <= now) continue;
      const remaining = Math.ceil((l.expiry - now) / 1000);
      if (remaining < l.ttl) due.push({ l, remaining });
      else if (l.applied > 0) due.push({ l, remaining: 0 });
    }
    due.sort((a, b) =>
      a.l.checkpointAt !== b.l.checkpointAt ? (a.l.checkpointAt < b.l.checkpointAt ? -1 : 1) : cmpBig(a.l.ID, b.l.ID),
    );
    const out: LeaseCheckpoint[] = [];
    for (const { l, remaining } of due.slice(0, limit)) {
      l.checkpointAt = now + this.checkpointIntervalMs;
      out.push({ ID: l.ID, remaining_TTL: remaining });
    }
    return out;
  }

  timeToLive(id: bigint, withKeys: boolean): LeaseTimeToLive {
    const l = this.leaseMap.get(id);
    if (l === undefined) return { ID: id, TTL: -1, grantedTTL: 0, keys: [] };
    // etcd: int64(remaining.Seconds()), truncating; `+ 0` turns -0 into 0.
    const ttl = this.primary ? Math.trunc((l.expiry - this.now()) / 1000) + 0 : l.baseTTL();
    return {
      ID: id,
      TTL: ttl,
      grantedTTL: l.ttl,
      keys: withKeys ? sortedKeys(l).map((k) => Buffer.from(k, 'latin1')) : [],
    };
  }

  leases(): bigint[] {
    return [...this.leaseMap.keys()].sort(cmpBig);
  }

  get size(): number {
    return this.leaseMap.size;
  }

  private refresh(l: LeaseState, now: number, extendMs: number): void {
    l.expiry = now + extendMs + l.baseTTL() * 1000;
    this.heap.upsert(l.ID, l.expiry);
  }

  private persist(l: LeaseState): void {
    this.backend.put(leaseKey(l.ID), encodeLease(l.ID, l.ttl, l.applied));
  }
}

function sortedKeys(l: LeaseState): string[] {
  // latin1 code units compare as bytes, so this is byte order.
  return [...l.keys].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

function byExpiry(a: LeaseState, b: LeaseState): number {
  return a.expiry - b.expiry || cmpBig(a.ID, b.ID);
}
